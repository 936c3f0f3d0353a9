/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: a target's background copier (dm-kcopyd): the copies and
 * compares of a mirror's resync, read repair and verify, through bounce
 * buffers charged to max-bounce (R8), throttled by a token bucket, and
 * yielding to client I/O.  core/kcopyd.c says how; docs/design.md
 * ("A target's copies") why.
 */
#ifndef NBD_DM_KCOPYD_H
#define NBD_DM_KCOPYD_H

#include <stdbool.h>
#include <stdint.h>

#include "nbd-dm/target.h"

/* A copy or compare moves at most this much at a time (less when
 * max-bounce is small): a client command waits behind no more than one
 * piece per device, and a stop behind no more than one piece's I/O.
 */
#define NDM_KCOPYD_PIECE (1024 * 1024)

/* While client requests are in flight, the pause before a piece is as
 * long as the last piece took, within these bounds (md raid1 drops to
 * its minimum resync speed while the array is not idle; this is that,
 * made proportional): the copy takes at most about half of the devices'
 * time from clients.
 */
#define NDM_KCOPYD_YIELD_MIN_US 1000
#define NDM_KCOPYD_YIELD_MAX_US (100 * 1000)

/* The measured rate is over this many seconds. */
#define NDM_KCOPYD_RATE_WINDOW_S 4

struct ndm_kcopyd;                       /* one per target */

/* Control thread (ctr): a copier for ti's copies, rate bytes/s (0: no
 * cap), not stopped.
 */
struct ndm_kcopyd *ndm_kcopyd_new (struct ndm_target *ti, uint64_t rate);
/* Control thread (dtr): nothing may use kc any more. */
void ndm_kcopyd_free (struct ndm_kcopyd *kc);

/* Any thread: the cap from now (0: none); a throttle wait in progress
 * looks again at once.
 */
void ndm_kcopyd_set_rate (struct ndm_kcopyd *kc, uint64_t rate);
uint64_t ndm_kcopyd_rate (struct ndm_kcopyd *kc);

/* Any thread, any lock of a target held (the kcopyd's lock is a leaf).
 * stop: every wait (throttle, bounce, yield) ends at once, and copies
 * and compares return -1 with *err ESHUTDOWN at their next piece, until
 * stop is false again.  The I/O of a piece under way is not cut: it ends
 * as any I/O does (io-timeout bounds it).
 */
void ndm_kcopyd_stop (struct ndm_kcopyd *kc, bool stop);

/* A thread that may block (a target's own), holding no lock.  Copy len
 * bytes from `from` to the n places `to` (each its own device and
 * offset, n at most NDM_IO_MAX_WHERE), piece by piece, then flush them.
 * A place that fails is left out of the later pieces and the flush.
 * Returns 0, or -1 with *src_failed (the read failed: the copy ends),
 * or bit i of *dst_failed (to[i] failed), *err the first errno; or -1
 * with neither (*err ESHUTDOWN: stopped, ENOMEM: no waiter) when the
 * copy did not finish and no device is to blame.
 */
int ndm_kcopyd_copy (struct ndm_kcopyd *kc, const struct ndm_io_where *from,
                     const struct ndm_io_where *to, unsigned n, uint64_t len,
                     bool *src_failed, uint64_t *dst_failed, int *err);

/* As ndm_kcopyd_copy.  Read len bytes from each of the n places and
 * compare each with where[0]: bit i of *differs set when where[i]
 * differs; bit i of *failed when its read failed (bit 0: nothing could
 * be compared from there on).  Returns 0, or -1 (a read failed, or
 * stopped: *failed 0 and *err ESHUTDOWN).
 */
int ndm_kcopyd_compare (struct ndm_kcopyd *kc, const struct ndm_io_where *where,
                        unsigned n, uint64_t len, uint64_t *differs,
                        uint64_t *failed, int *err);

/* Any thread.  For JSON: bytes read by copies and compares so far, and
 * the measured rate (bytes/s over the last NDM_KCOPYD_RATE_WINDOW_S
 * seconds, or since the first byte if later).
 */
void ndm_kcopyd_stats (struct ndm_kcopyd *kc, uint64_t *bytes,
                       uint64_t *rate);

/* Tests only: the clock the throttle, the yield and the measured rate
 * use.  now is monotonic microseconds; sleep is called instead of a
 * real wait for a throttle or yield pause of us microseconds (it returns
 * at once and the copier looks at the clock again), so a test counts
 * time without waiting for it.  NULL: the real clock.
 */
struct ndm_kcopyd_clock {
  int64_t (*now) (void *data);
  void (*sleep) (void *data, int64_t us);
  void *data;
};
void ndm_kcopyd_set_clock (struct ndm_kcopyd *kc,
                           const struct ndm_kcopyd_clock *clock);

#endif /* NBD_DM_KCOPYD_H */
