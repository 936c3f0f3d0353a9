/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the control plane — a line protocol on a Unix socket, and the
 * commands behind it (dmsetup's verbs for one mapped device).
 *
 * Protocol (version 1):
 *
 *   - A Unix stream socket, created mode 0600, removed at exit.  Several
 *     clients may be connected; each gets its replies in request order.
 *   - A request is one line ending in '\n', at most NDM_CONTROL_MAX_LINE
 *     bytes not counting the '\n'.  Words are separated by blanks and may
 *     be quoted as in the shell ('...', "..." with backslash escapes).
 *     The first word is the verb; words starting with "--" are options,
 *     up to a word "--" which ends them (so a message argument may start
 *     with "--").  "--json" may be given to any verb.
 *   - Every request gets exactly one reply:
 *         ok <N>\n            followed by exactly N payload lines, or
 *         error <message>\n   one line saying what was wrong.
 *     With --json a payload is one line of JSON (message: {"result":
 *     "<the target's answer>"}); verbs that only act (suspend, reload,
 *     resume, clear) have no payload either way.  A line longer than
 *     the limit gets an error reply and the connection is closed.
 *
 * Verbs and their payloads (text form; dmsetup's where dmsetup has them):
 *   info                      "Name: ...", "State: ACTIVE|SUSPENDED",
 *                             "Tables present: LIVE[ & INACTIVE]",
 *                             "Open count: N", "Event number: N",
 *                             "Number of targets: N"
 *   table                     <start> <length> <target> <args> per target
 *   status                    <start> <length> <target> <status> per target
 *   stats [--clear]           counters per target and per device
 *   message <sector> <word>...  the target holding <sector> answers
 *   suspend [--noflush]       returns once nothing is in flight
 *   reload [--allow-resize] <table>
 *                             the table as one word, its lines separated
 *                             by ';' as in table-text=; a client sending a
 *                             file strips each line's '#' comment and joins
 *                             the lines with ';', so line numbers in
 *                             errors are the file's
 *   resume                    the loaded table goes live (if any), held
 *                             requests go on
 *   clear                     drops the loaded, not yet live, table
 *   wait [<event_nr>]         returns when the event number (32 bits, as
 *                             dm's) exceeds event_nr (default: the
 *                             current one); the payload is the new one
 *   version                   protocol and program version
 *   help                      the verbs
 *
 * Thread model: the control server runs an accept thread and a thread per
 * client (at most NDM_CONTROL_MAX_CLIENTS), started after fork.  Commands
 * that change the device's state (suspend, reload, resume, clear) are
 * serialised by the mapped device.
 */
#ifndef NBD_DM_CONTROL_H
#define NBD_DM_CONTROL_H

#include <stdbool.h>

#include <glib.h>

#include "nbd-dm/ndm.h"

#define NDM_CONTROL_PROTOCOL    1
#define NDM_CONTROL_MAX_LINE    (1 << 20)
#define NDM_CONTROL_MAX_CLIENTS 16

/* Run one command (argv[0] is the verb) against md, as the control socket
 * would: the payload lines go to out (each ending in '\n'); on error *err
 * says why.  Any thread; may block (suspend drains, wait waits).
 */
int ndm_md_command (struct ndm_md *md, int argc, char **argv, GString *out,
                    GError **err);

struct ndm_control;

/* Create the control socket at path (mode 0600; an existing socket file
 * there is replaced, anything else is an error).  No thread yet.
 */
struct ndm_control *ndm_control_new (struct ndm_md *md, const char *path,
                                     GError **err);

/* Start serving (after fork: threads do not survive it).  Returns -1
 * with *err if its thread cannot be made.
 */
int ndm_control_start (struct ndm_control *ctl, GError **err);

/* Stop serving, close clients, remove the socket file. */
void ndm_control_free (struct ndm_control *ctl);

#endif /* NBD_DM_CONTROL_H */
