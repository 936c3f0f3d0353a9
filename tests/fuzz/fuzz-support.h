/* SPDX-License-Identifier: BSD-3-Clause */
/* What the libFuzzer targets share: a device class that turns any device
 * word of a fuzzed table into a bounded fake device, the request lines
 * run through the engine, and the checks every state must pass.
 *
 * Thread model: one fuzzing thread; the core may run its own (multipath
 * checkers), which these functions never touch.
 */
#ifndef NDM_FUZZ_SUPPORT_H
#define NDM_FUZZ_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "nbd-dm/ndm.h"

/* ---- fuzz-device.c -------------------------------------------------------- */

/* Opens every URI as a fake device (tests/unit/fake-device.c) whose
 * limits come from the URI's query, clamped so that no input can ask for
 * much memory or a mode that waits for a test thread:
 *
 *     <scheme>://<name>[?key=value&key&...]
 *
 *   size=N[K|M]  bytes (default 1M, at most 8M)
 *   min= pref= max= maxlen=      block limits (bytes, NBD's meaning)
 *   ro= flush= fua= trim= zero= fastzero= cache= extents= multiconn= 0|1
 *   noext        extents=0
 *   mode=channel replies are read by the owner leading the channel
 *   fail=N       the command with submission index N completes with EIO
 *   subfail=N    submitting command N fails with ENOMEM (R6)
 *   partial      reads complete half their data, then fail
 *   data=NAME    another path to the fake NAME opened earlier
 *
 * A name containing "dead" is a device that is down (ENOTCONN at
 * submit); one starting with "missing" cannot be reached (a tolerant
 * open, i.e. a multipath path, gets it absent).  The device keeps the URI
 * as written, so the table prints it back and reloads it.
 */
extern const struct ndm_device_class fuzz_device_class;

/* Forget every fake and name (after the mapped devices are freed). */
void fuzz_device_reset (void);

/* At most 32 devices open per mapped device (more fail to open, as an
 * unreachable server would).  A second mapped device beside the first
 * counts its own from enter to leave (leave takes what enter returned).
 */
unsigned fuzz_device_enter_md (void);
void fuzz_device_leave_md (unsigned before);

/* ---- fuzz-md.c ------------------------------------------------------------ */

/* Once per process: quiet logs, GLib criticals and warnings fatal, and the
 * core's own backstops (a request that gives up after rounds that start
 * nothing) treated as the spin they stop.
 */
void fuzz_init (void);

/* A mapped device over fuzz devices, short multipath timers. */
struct ndm_md *fuzz_md_new (void);

/* The live table's `table` lines; `status` must work too, and with all
 * the other printers (table, status, info; text and JSON), and the
 * plugin's table printer must agree with the command's.  Caller frees.
 */
char *fuzz_check_printers (struct ndm_md *md, bool all);

/* The round trip: table_text, the `table` output of some mapped device
 * of size bytes, loads into a fresh one that prints it identically.
 */
void fuzz_check_round_trip (const char *table_text, uint64_t size);

/* Split an input at its first line "%%": the part after it (or NULL) is
 * returned, and the line is cut from text.
 */
char *fuzz_split_requests (char *text);

/* ---- fuzz-io.c ------------------------------------------------------------ */

/* Run request lines against md, each as nbdkit would hand it over:
 *
 *     read|write|trim|zero|cache|extents <offset> <count> [fua] [may_trim]
 *                                              [fast] [one]
 *     flush
 *
 * Offsets and counts are folded into the device (counts up to 256 KiB, at
 * least 1); operations and flags the device does not advertise are left
 * out, as nbdkit would.  Every reply must be one an NBD client can get.
 * Unknown lines are skipped.  At most max_requests run.
 */
void fuzz_run_requests (struct ndm_md *md, const char *lines,
                        unsigned max_requests);

/* Whether a line starting with word is a request line. */
bool fuzz_is_request (const char *word);

/* Run one request line (as above); false if it is not one. */
bool fuzz_run_request (struct ndm_md *md, char **words, unsigned nwords);

#endif /* NDM_FUZZ_SUPPORT_H */
