/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: a mirror's regions in flight (dm's region hash,
 * dm-region-hash.c), implemented in core/region-hash.c; see
 * docs/targets/mirror.md, "Region hash".
 *
 * A region is region_size bytes of the target, the same range on every
 * leg.  Its state, as dm's:
 *   CLEAN       in sync, no write in flight, not marked in the log;
 *   DIRTY       in sync, writes in flight or marked;
 *   NOSYNC      the legs may differ: reads go to the default leg only,
 *               and the resync will copy it;
 *   RECOVERING  being copied (or verified): new writes are held.
 * Only regions that are not CLEAN-and-idle have a struct ndm_region, in a
 * hash by number; the others are described by the dirty log's bits.
 *
 * Holding a write: the clone's map returns NDM_MAPIO_DELAY_REQUEUE with no
 * bios and the clone waits on a queue here, linked through its per_io
 * (struct ndm_rh_io).  Whoever ends the wait (a log commit, the end of a
 * region's copy, presuspend) calls ndm_clone_release_delay on it, under
 * the lock, and the owner maps it again.  No bio exists while a clone is
 * held, so nothing can reach a leg early; the owner keeps leading its
 * channels; the request sees the quit and suspend gates between rounds.
 * The core ends the delay as soon as not_before is reset, however far
 * it was, and calls release_clone for a clone that is not mapped again
 * (docs/design.md, "Delayed clones").
 *
 * Ownership: the hash owns its struct ndm_region (freed when CLEAN and
 * idle); queued clones stay their owners', the queues only link them.
 *
 * Thread model: the _locked functions run on request owners (the
 * mirror's map, end_io, release_clone), on the resync thread and on the
 * control thread.  ndm_rh_log_committed runs on the dirty log's thread.
 *
 * Locks: the region hash has no lock of its own.  It uses its owner's,
 * the mirror's target lock (rank NDM_LOCK_TARGET), which protects every
 * field below but the fixed ones; under it the dirty log's lock (a leaf)
 * is taken.  No I/O under either; ndm_clone_release_delay only kicks.
 */
#ifndef NBD_DM_REGION_HASH_H
#define NBD_DM_REGION_HASH_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "nbd-dm/lock.h"
#include "nbd-dm/target.h"

#include "dirty-log.h"

enum ndm_region_state {
  NDM_RH_CLEAN,
  NDM_RH_DIRTY,
  NDM_RH_NOSYNC,
  NDM_RH_RECOVERING,
};

/* What ndm_rh_write_start_locked says a write clone may do. */
enum ndm_rh_write {
  NDM_RH_WRITE_GO,              /* map the bios now */
  NDM_RH_WRITE_WAIT_LOG,        /* held for a log commit; pending kept */
  NDM_RH_WRITE_WAIT_RECOVERY,   /* held for a region's copy; no pending */
  NDM_RH_WRITE_FAIL,            /* the log failed, fail_without_log: EIO */
};

/* One region in flight. */
struct ndm_region {
  uint64_t key;                 /* region number */
  enum ndm_region_state state;
  unsigned pending;             /* write clones mapped or held for the
                                   log, not yet ended */
  GQueue held;                  /* struct ndm_rh_io of clones waiting for
                                   this region's copy to end */
};

/* The region hash's part of a write clone, in its per_io space (the
 * mirror's per_io starts with it).  Zero when the clone is made.
 */
struct ndm_rh_io {
  uint64_t first, last;         /* regions the clone covers */
  uint64_t ticket;              /* log commit it waits for, 0 if none */
  GList link;                   /* in a held queue; data = the clone */
  uint8_t counted;              /* pending is counted on first..last */
  uint8_t queued;               /* link is in a queue */
};

G_STATIC_ASSERT (sizeof (struct ndm_rh_io) + sizeof (uint32_t)
                 <= NDM_PER_IO_SIZE);

struct ndm_region_hash {
  /* Fixed once init returns. */
  struct ndm_mutex *lock;       /* the owner's */
  struct ndm_dirty_log *log;    /* the owner's */
  uint64_t region_size;         /* bytes, a power of two */
  unsigned region_shift;
  uint64_t nr_regions;
  bool fail_without_log;        /* a write whose mark cannot be written
                                   fails (the table's keep_log) rather
                                   than going on with the mark in memory */

  /* Protected by *lock. */
  GHashTable *regions;          /* key -> struct ndm_region * */
  GQueue log_waiters;           /* struct ndm_rh_io held for a commit */
  struct ndm_region *recovering;  /* the one being copied (dm's
                                     MAX_RECOVERY 1), or NULL */
  bool quiesced;                /* its pending reached 0: copy may go */
  bool recovery_stopped;        /* presuspend: prepare hands out nothing */
  bool degraded;                /* a leg is out of service: it misses
                                   writes, so a written region is NOSYNC
                                   (never cleared) and nothing is copied
                                   until every leg is back */
  GCond cond;                   /* the resync thread: quiesced, stopped */
};

/* For the mirror's ctr: an empty hash over log (which must live longer),
 * for target_bytes bytes, using the mirror's lock.
 */
void ndm_rh_init (struct ndm_region_hash *rh, struct ndm_dirty_log *log,
                  struct ndm_mutex *lock, uint64_t target_bytes);
/* For dtr, nothing held and no clone queued. */
void ndm_rh_clear (struct ndm_region_hash *rh);

/* The region of a byte offset in the target.  Any thread, no lock. */
static inline uint64_t
ndm_rh_region (const struct ndm_region_hash *rh, uint64_t target_offset)
{
  return target_offset >> rh->region_shift;
}

/* With the lock held.  A region's state (CLEAN or NOSYNC from the log
 * when it has no struct).
 */
enum ndm_region_state ndm_rh_state_locked (struct ndm_region_hash *rh,
                                           uint64_t region);

/* With the lock held, from map of a write, trim or zero.  io is the
 * clone's (its clone in io->link.data); first and last its regions.
 * Forgets any earlier wait of io, then: a RECOVERING region holds the
 * clone on that region (WAIT_RECOVERY, nothing counted, earlier counts
 * given back); else pending is counted on every region (before the
 * counts of an earlier map over another range are given back), a clean
 * one becomes DIRTY (NOSYNC while degraded), every one is marked in the
 * log (no cost when its mark is on the device, and a second write to a
 * region whose mark is being committed must wait for it too), and if a
 * mark is not committed yet the clone waits for it (WAIT_LOG, the
 * counts kept).  A log whose health is not A makes no clone wait: it
 * goes on, or with fail_without_log fails (WRITE_FAIL, counts given
 * back).  also_wait is another ticket the clone must see
 * committed first, 0 if none: the header commit that records a leg
 * failed by this clone's last round (its tail is acknowledged only once
 * a restart cannot copy from that leg).  On a wait the caller sets
 * clone->not_before to its bound and returns NDM_MAPIO_DELAY_REQUEUE.
 */
enum ndm_rh_write ndm_rh_write_start_locked (struct ndm_region_hash *rh,
                                             struct ndm_rh_io *io,
                                             uint64_t first, uint64_t last,
                                             uint64_t also_wait);
/* With the lock held, from end_io and release_clone of a write clone
 * (and map before it maps again): take io out of any queue and give
 * back its pending counts.  A region whose count reaches 0 becomes CLEAN
 * (its mark cleared lazily) if it was DIRTY, stays NOSYNC, or, if it is
 * RECOVERING, is quiesced (the resync thread is woken).
 */
void ndm_rh_write_end_locked (struct ndm_region_hash *rh,
                              struct ndm_rh_io *io);

/* With the lock held.  A write failed on some leg, or a read on one
 * leg needs repair: regions first..last are NOSYNC.
 */
void ndm_rh_mark_nosync_locked (struct ndm_region_hash *rh,
                                uint64_t first, uint64_t last);
/* With the lock held.  A leg left service: every region marked in the
 * log (written since its last clear, so maybe unflushed on that leg) is
 * NOSYNC.  Returns how many changed.
 */
uint64_t ndm_rh_mark_dirty_nosync_locked (struct ndm_region_hash *rh);

/* The dirty log's thread, after ndm_dirty_log_commit committed ticket:
 * takes the lock and releases every clone waiting for a ticket up to it.
 * With failed set (the commit failed), releases them all: they map
 * again and fail (NDM_RH_WRITE_FAIL) or go on, as fail_without_log says.
 */
void ndm_rh_log_committed (struct ndm_region_hash *rh, uint64_t ticket,
                           bool failed);

/* Recovery, on the resync thread (dm's three recovery steps).
 * prepare: with the lock held, take the next region not in sync from
 * the log's resync work, make it RECOVERING (new writes held from now)
 * and return its number; false if there is none, recovery is stopped,
 * or the hash is degraded.
 * wait: with the lock held, wait until its pending count is 0 (the
 * lock is released while waiting); false if recovery was stopped
 * meanwhile (the region went back to NOSYNC).  end: with the lock held,
 * after the copy (without the lock): ok sets it in sync (DIRTY while
 * marked, then cleared like any write's region), else NOSYNC again;
 * either way every held clone is released.
 */
bool ndm_rh_recovery_prepare_locked (struct ndm_region_hash *rh,
                                     uint64_t *region);
bool ndm_rh_recovery_wait_locked (struct ndm_region_hash *rh);
void ndm_rh_recovery_end_locked (struct ndm_region_hash *rh, bool ok);

/* The same quiesce for verify: an in-sync region is RECOVERING for the
 * time of its comparison; end puts it back as it was.
 */
bool ndm_rh_verify_prepare_locked (struct ndm_region_hash *rh,
                                   uint64_t region);
void ndm_rh_verify_end_locked (struct ndm_region_hash *rh);

/* With the lock held, from presuspend: hand out no more recovery, end a
 * recovery that waits for pending (NOSYNC again; a verify's region back
 * as it was) and release its held clones.  A copy already under way (the
 * region quiesced) keeps its holds until its recovery_end, one region's
 * copy later.  start, from resume, undoes it.
 */
void ndm_rh_stop_recovery_locked (struct ndm_region_hash *rh);
void ndm_rh_start_recovery_locked (struct ndm_region_hash *rh);

#endif /* NBD_DM_REGION_HASH_H */
