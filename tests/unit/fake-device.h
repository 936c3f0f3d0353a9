/* SPDX-License-Identifier: BSD-3-Clause */
/* A scriptable in-memory device for the unit tests.
 *
 * Opened by URI through fake_device_class:
 *
 *     fake://NAME?size=1M&min=4096&max=65536&mode=held&fua=0&flush=1...
 *
 * It keeps real data (so reads, writes and read-modify-writes can be
 * checked), logs every command, and behaves like a strict NBD server:
 * a command that is unaligned to min or longer than max fails with EINVAL,
 * which makes every test also a test of R7.  Data takes effect when a
 * command completes, so writes land in completion order.
 *
 * Modes (how commands complete):
 *   immediate  inside submit, on the submitting thread
 *   held       only when the test calls fake_complete(), any order
 *   thread     a background thread, random order, random small delays
 *   channel    replies "arrive" on an eventfd and are completed only by
 *              the channel's leader (exercises leader/follower)
 *
 * Faults: a completion errno per command index, a submit failure at a
 * command index (R6), an errno for any command touching a byte range, and
 * partial reads (half the data, then the error).
 *
 * Two fakes can be two paths to one export: data=NAME shares the data of
 * the fake NAME (opened first).  fence=ghost makes a fence behave like
 * cutting the connection to a server that is alive but stopped: held
 * commands fail with ENOTCONN under a ghost (R10), and the writes among
 * them land later, when the test says the server resumes
 * (fake_land_ghosts); without it, a fence drops them, as a server that
 * died would.
 */
#ifndef NDM_TEST_FAKE_DEVICE_H
#define NDM_TEST_FAKE_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "nbd-dm/device.h"

extern const struct ndm_device_class fake_device_class;

enum fake_mode { FAKE_IMMEDIATE, FAKE_HELD, FAKE_THREAD, FAKE_CHANNEL };

/* What a command looked like, in submission order. */
struct fake_cmd {
  unsigned index;
  enum ndm_op op;
  uint32_t flags;
  uint64_t offset;
  uint64_t len;
};

struct fake_dev;

/* The fake opened as fake://name (NULL if not opened). */
struct fake_dev *fake_lookup (const char *name);
/* Forget all fakes (between tests; the md must be freed first). */
void fake_reset (void);

uint8_t *fake_data (struct fake_dev *fd);
/* Until the core closes it. */
bool fake_is_open (struct fake_dev *fd);
uint64_t fake_size (struct fake_dev *fd);

/* Faults (set before the I/O they apply to). */
void fake_fail_at (struct fake_dev *fd, unsigned index, int err);
void fake_fail_submit_at (struct fake_dev *fd, unsigned index, int err);
void fake_fail_range (struct fake_dev *fd, uint64_t offset, uint64_t len,
                      int err);
void fake_partial_reads (struct fake_dev *fd, bool on);

/* A path going away and coming back: while down, commands fail at submit
 * with ENOTCONN, probes fail, connected() is false, down_reason() says
 * "device URI: connect: Connection refused".  fake://missing...
 * opened tolerant starts absent and down; up, it is present.
 */
void fake_set_down (struct fake_dev *fd, bool down);
/* Its server went away and a new one may be answering soon (an nbd
 * device in its reconnect window): commands fail at submit with EAGAIN,
 * which the core retries on the same device unless the clone is failfast.
 */
void fake_set_coming_back (struct fake_dev *fd, bool on);
/* What probe() reports as the export size (default: the real size). */
void fake_set_probe_size (struct fake_dev *fd, uint64_t size);
/* Probes so far, and fences. */
unsigned fake_probes (struct fake_dev *fd);
unsigned fake_fences (struct fake_dev *fd);
/* Fence it now, as a device that timed out would be (io-timeout). */
void fake_fence_now (struct fake_dev *fd);
/* fence=ghost: the stopped server resumes: the writes it held land (in
 * the order it received them), then it closes the cut connection: its
 * ghost is resolved.
 */
void fake_land_ghosts (struct fake_dev *fd);
/* Writes its ghosts quarantine now. */
unsigned fake_quarantined (struct fake_dev *fd);

/* The command log, copied. */
GArray *fake_log (struct fake_dev *fd);          /* of struct fake_cmd */
unsigned fake_submitted (struct fake_dev *fd);
unsigned fake_count_op (struct fake_dev *fd, enum ndm_op op);
uint64_t fake_max_pending_bytes (struct fake_dev *fd);

/* held mode: commands submitted and not completed. */
unsigned fake_pending (struct fake_dev *fd);
/* Block until at least n commands are pending (5 s, then the test fails). */
void fake_wait_pending (struct fake_dev *fd, unsigned n);
/* channel mode: block until the channel's leader has prepared to poll it
 * n times in all, each time an owner goes round its wait loop (5 s, then
 * the test fails).  Relaxed on purpose: the test knows the owner went
 * round, and TSan is told of no order from it, so what the owner did
 * there stays concurrent with what the test does next.
 */
void fake_wait_prepared (struct fake_dev *fd, unsigned n);
/* Complete the pending command with this submission index. */
void fake_complete (struct fake_dev *fd, unsigned index, int err);
void fake_complete_all (struct fake_dev *fd);

#endif /* NDM_TEST_FAKE_DEVICE_H */
