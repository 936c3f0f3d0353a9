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
 *     with "--").  "--json" may be given to any verb.  A verb that acts
 *     on the device may be given its name first, as dmsetup takes it
 *     ("status vol0"): it must be the server's name=.
 *   - Every request gets exactly one reply:
 *         ok <N>\n            followed by exactly N payload lines, or
 *         error <message>\n   one line saying what was wrong.
 *     With --json a payload is one line of JSON, one object, valid UTF-8,
 *     whose first member is "version" (core/json.h; the shapes are in
 *     nbd-dmsetup(8), JSON); verbs that only act (suspend, reload,
 *     resume, clear) have no payload either way.  A line longer than
 *     the limit gets an error reply and the connection is closed.
 *
 * Verbs and their payloads (text form; dmsetup's where dmsetup has them):
 *   info                      "Name: ...", "State: ACTIVE|SUSPENDED",
 *                             "Tables present: LIVE[ & INACTIVE]",
 *                             "Open count: N", "Event number: N",
 *                             "Number of targets: N"
 *   info --columns [--options=FIELDS] [--noheadings] [--separator=SEP]
 *                             dmsetup info -c: a heading and a row
 *   table [--inactive] [--target=TYPE]
 *                             <start> <length> <target> <args> per target
 *                             (of the loaded table, or of that type only)
 *   status [--target=TYPE]    <start> <length> <target> <status> per target
 *   deps                      "N dependencies\t: (URI) ...", then a line
 *                             per device with its state
 *   targets                   "<name> v<major>.<minor>.<patch>" per type
 *   stats [--clear] [--format=text|openmetrics]
 *                             counters per target and per device; in
 *                             the OpenMetrics text format, ending "# EOF"
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

/* ---- the verbs' spec ----------------------------------------------------
 *
 * One table (core/control-verbs.c) says which verbs exist, which options
 * each takes and how many words.  The server checks requests against it
 * before a verb runs and builds its usage strings and `help` from it;
 * nbd-dmsetup, which links that file and not the core, checks its command
 * line and prints --help from it.  So the two cannot disagree.
 */

/* The options a verb may take, besides --json, which every verb takes. */
enum {
  NDM_CONTROL_OPT_CLEAR = 1 << 0,         /* stats --clear */
  NDM_CONTROL_OPT_NOFLUSH = 1 << 1,       /* suspend --noflush */
  NDM_CONTROL_OPT_ALLOW_RESIZE = 1 << 2,  /* reload --allow-resize */
  NDM_CONTROL_OPT_INACTIVE = 1 << 3,      /* table --inactive */
  NDM_CONTROL_OPT_TARGET = 1 << 4,        /* status|table --target TYPE */
  NDM_CONTROL_OPT_COLUMNS = 1 << 5,       /* info --columns, and its: */
  NDM_CONTROL_OPT_FIELDS = 1 << 6,        /*   --options FIELDS */
  NDM_CONTROL_OPT_NOHEADINGS = 1 << 7,    /*   --noheadings */
  NDM_CONTROL_OPT_SEPARATOR = 1 << 8,     /*   --separator SEP */
  NDM_CONTROL_OPT_FORMAT = 1 << 9,        /* stats --format=FORMAT */
};

/* An option with a value is written "--target=TYPE" or "--target TYPE"
 * (the next word); nbd-dmsetup sends the first.
 */
struct ndm_control_option {
  const char *name;             /* "--clear"; first, as in every table
                                   ndm_control_*_lookup searches */
  unsigned bit;                 /* NDM_CONTROL_OPT_* */
  const char *value;            /* its value's name ("TYPE"); NULL: a flag */
  const char *values;           /* NULL: any value; else the values it
                                   takes, '|' between them ("text|
                                   openmetrics") */
  char short_name;              /* nbd-dmsetup's one-letter spelling (as
                                   dmsetup's -C, -o), 0 if none */
  const char *help;             /* what it does, for nbd-dmsetup --help */
};

/* Every option of the enum above; a NULL name ends it. */
extern const struct ndm_control_option ndm_control_options[];

struct ndm_control_verb {
  const char *name;
  unsigned options;             /* NDM_CONTROL_OPT_* bits it takes */
  unsigned min_words, max_words;  /* after the verb, options not counted;
                                     max G_MAXUINT: no limit */
  const char *words;            /* their synopsis ("<sector> <message>
                                   [args...]"), NULL if none */
  const char *expected;         /* what a wrong count is told it should
                                   be; NULL: the synopsis, quoted */
  const char *number;           /* the first word is a decimal number:
                                   its name in errors ("sector"), or NULL */
  bool table_word;              /* the word is a table, lines separated by
                                   ';' (nbd-dmsetup: from FILE or --text) */
  bool named;                   /* acts on the device, so it may be named
                                   first, as dmsetup's verbs take it (see
                                   ndm_control_verb_names_device) */
  const char *via;              /* nbd-dmsetup's own: it sends this verb
                                   with --json and renders the answer;
                                   the server has no such verb */
};

/* Every verb, in the order `help` lists them; a NULL name ends it. */
extern const struct ndm_control_verb ndm_control_verbs[];

/* By exact name; NULL if there is none. */
const struct ndm_control_verb *ndm_control_verb_lookup (const char *name);
const struct ndm_control_option *ndm_control_option_lookup (const char *name);

/* Whether value may follow o: one of o->values, or any if it has none. */
bool ndm_control_option_value_ok (const struct ndm_control_option *o,
                                  const char *value);

/* "stats [--clear] [--format=text|openmetrics]", "reload
 * [--allow-resize] <table>": the verb, its
 * options, then words, or v->words if words is NULL.  Free with g_free.
 */
char *ndm_control_verb_usage (const struct ndm_control_verb *v,
                              const char *words);

/* NULL if n words (words[0..n-1]) is a count v takes, else the message
 * that says why not ("info: unexpected word 'x' (usage: info)"); the
 * caller frees it.  The words themselves are not checked.
 */
char *ndm_control_verb_check_count (const struct ndm_control_verb *v,
                                    unsigned n, char *const *words);

/* Whether words[0] of the n words after v is a device name: dmsetup
 * names the device before a verb's own words, nbd-dm's socket names it,
 * so the name is optional.  It is one when there is a word more than v
 * takes, or when v's first word is a number and words[0] is not one.
 */
bool ndm_control_verb_names_device (const struct ndm_control_verb *v,
                                    unsigned n, char *const *words);

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
