/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: a mirror's regions in flight (see region-hash.h;
 * dm-region-hash.c).
 *
 * A region has a struct ndm_region while write clones count on it
 * (pending > 0) or while it is RECOVERING; otherwise its state is the
 * dirty log's in-sync bit (CLEAN or NOSYNC) and the struct is freed.
 * So a struct's state agrees with that bit: DIRTY and CLEAN are in sync,
 * NOSYNC is not, RECOVERING is whatever its copy or verify leaves.
 *
 * Thread model and locks: as region-hash.h says.  Every function below
 * but init, clear and ndm_rh_log_committed runs with the owner's lock
 * held, and takes the log's lock (a leaf) inside it for the bits.
 */
#include <string.h>

#include "region-hash.h"

void
ndm_rh_init (struct ndm_region_hash *rh, struct ndm_dirty_log *log,
             struct ndm_mutex *lock, uint64_t target_bytes)
{
  memset (rh, 0, sizeof *rh);
  rh->lock = lock;
  rh->log = log;
  rh->region_size = log->region_size;
  rh->region_shift = __builtin_ctzll (log->region_size);
  rh->nr_regions = (target_bytes + rh->region_size - 1) >> rh->region_shift;
  rh->regions = g_hash_table_new_full (g_int64_hash, g_int64_equal, NULL,
                                       g_free);
  g_queue_init (&rh->log_waiters);
  g_cond_init (&rh->cond);
}

void
ndm_rh_clear (struct ndm_region_hash *rh)
{
  g_hash_table_unref (rh->regions);
  g_cond_clear (&rh->cond);
}

static struct ndm_region *
rh_lookup_locked (struct ndm_region_hash *rh, uint64_t region)
{
  ndm_assert_held (rh->lock);
  return g_hash_table_lookup (rh->regions, &region);
}

/* The region's struct, made from the log's bit if it has none.  With
 * the log's lock held too.
 */
static struct ndm_region *
rh_get_locked (struct ndm_region_hash *rh, uint64_t region)
{
  struct ndm_region *reg;

  ndm_assert_held (rh->lock);
  ndm_assert_held (&rh->log->lock);
  reg = rh_lookup_locked (rh, region);
  if (reg != NULL)
    return reg;
  reg = g_new0 (struct ndm_region, 1);
  reg->key = region;
  reg->state = ndm_dirty_log_in_sync_locked (rh->log, region)
    ? NDM_RH_CLEAN : NDM_RH_NOSYNC;
  g_queue_init (&reg->held);
  g_hash_table_insert (rh->regions, &reg->key, reg);
  return reg;
}

enum ndm_region_state
ndm_rh_state_locked (struct ndm_region_hash *rh, uint64_t region)
{
  struct ndm_region *reg;
  bool in_sync;

  ndm_assert_held (rh->lock);
  reg = rh_lookup_locked (rh, region);
  if (reg != NULL)
    return reg->state;
  ndm_mutex_lock (&rh->log->lock);
  in_sync = ndm_dirty_log_in_sync_locked (rh->log, region);
  ndm_mutex_unlock (&rh->log->lock);
  return in_sync ? NDM_RH_CLEAN : NDM_RH_NOSYNC;
}

/* ---- holds -------------------------------------------------------------- */

static struct ndm_clone *
io_clone (struct ndm_rh_io *io)
{
  return io->link.data;
}

/* The struct ndm_rh_io a queue's link is in. */
static struct ndm_rh_io *
link_io (GList *l)
{
  return G_STRUCT_MEMBER_P (l, -G_STRUCT_OFFSET (struct ndm_rh_io, link));
}

static void
io_queue (GQueue *q, struct ndm_rh_io *io)
{
  g_queue_push_tail_link (q, &io->link);
  io->queued = 1;
}

/* Take io out of the queue it waits on: the log's when it waits for a
 * ticket, else the region being copied (the only one that holds).
 */
static void
io_unqueue_locked (struct ndm_region_hash *rh, struct ndm_rh_io *io)
{
  ndm_assert_held (rh->lock);
  if (!io->queued)
    return;
  if (io->ticket != 0)
    g_queue_unlink (&rh->log_waiters, &io->link);
  else
    g_queue_unlink (&rh->recovering->held, &io->link);
  io->queued = 0;
  io->ticket = 0;
}

/* Every clone held on reg maps again: its copy ended. */
static void
release_held_locked (struct ndm_region_hash *rh, struct ndm_region *reg)
{
  GList *l;

  ndm_assert_held (rh->lock);
  while ((l = g_queue_pop_head_link (&reg->held)) != NULL) {
    struct ndm_rh_io *io = link_io (l);

    io->queued = 0;
    ndm_clone_release_delay (io_clone (io));
  }
}

/* ---- writes ------------------------------------------------------------- */

/* reg's last write ended, or its copy did (pending 0): DIRTY goes clean
 * (the mark cleared lazily), NOSYNC stays, and either is described by
 * the log alone from now.  A RECOVERING one is quiesced.
 */
static void
region_idle_locked (struct ndm_region_hash *rh, struct ndm_region *reg)
{
  ndm_assert_held (rh->lock);
  if (reg->state == NDM_RH_RECOVERING) {
    if (reg == rh->recovering) {
      rh->quiesced = true;
      g_cond_broadcast (&rh->cond);
    }
    return;
  }
  if (reg->state == NDM_RH_DIRTY || reg->state == NDM_RH_CLEAN) {
    ndm_mutex_lock (&rh->log->lock);
    ndm_dirty_log_clear_locked (rh->log, reg->key);
    ndm_mutex_unlock (&rh->log->lock);
  }
  g_hash_table_remove (rh->regions, &reg->key);
}

/* Give back the counts io took on [first, last]. */
static void
io_uncount_locked (struct ndm_region_hash *rh, struct ndm_rh_io *io)
{
  uint64_t r;

  ndm_assert_held (rh->lock);
  if (!io->counted)
    return;
  io->counted = 0;
  for (r = io->first; r <= io->last; r++) {
    struct ndm_region *reg = rh_lookup_locked (rh, r);

    g_assert (reg != NULL && reg->pending > 0);
    if (--reg->pending == 0)
      region_idle_locked (rh, reg);
  }
}

/* Count a write on region r and mark it; returns the mark's ticket. */
static uint64_t
region_write_locked (struct ndm_region_hash *rh, uint64_t r)
{
  struct ndm_region *reg;

  ndm_assert_held (&rh->log->lock);
  reg = rh_get_locked (rh, r);
  reg->pending++;
  if (rh->degraded && reg->state != NDM_RH_NOSYNC) {
    /* A leg misses this write: the region differs until copied. */
    reg->state = NDM_RH_NOSYNC;
    ndm_dirty_log_set_region_sync_locked (rh->log, r, false);
  }
  else if (reg->state == NDM_RH_CLEAN)
    reg->state = NDM_RH_DIRTY;
  return ndm_dirty_log_mark_locked (rh->log, r);
}

enum ndm_rh_write
ndm_rh_write_start_locked (struct ndm_region_hash *rh, struct ndm_rh_io *io,
                           uint64_t first, uint64_t last, uint64_t also_wait)
{
  struct ndm_region *rec;
  struct ndm_rh_io old;
  uint64_t r, ticket = also_wait;
  bool log_failed;

  ndm_assert_held (rh->lock);
  g_assert (first <= last && last < rh->nr_regions);
  rec = rh->recovering;
  old = *io;
  io_unqueue_locked (rh, io);

  if (rec != NULL && rec->key >= first && rec->key <= last) {
    /* Held, not counted: the copy waits for pending to drain. */
    io_uncount_locked (rh, io);
    io->first = first;
    io->last = last;
    io_queue (&rec->held, io);
    return NDM_RH_WRITE_WAIT_RECOVERY;
  }

  /* Count the new range before giving back the old, so a region in
   * both never passes through idle (and its mark through a clear).
   */
  ndm_mutex_lock (&rh->log->lock);
  for (r = first; r <= last; r++) {
    uint64_t t = region_write_locked (rh, r);

    ticket = MAX (ticket, t);
  }
  log_failed = rh->log->health != NDM_DIRTY_LOG_ALIVE;
  if (ticket != 0 && ndm_dirty_log_committed_locked (rh->log, ticket))
    ticket = 0;
  ndm_mutex_unlock (&rh->log->lock);
  io_uncount_locked (rh, &old);
  io->first = first;
  io->last = last;
  io->counted = 1;

  if (ticket == 0)
    return NDM_RH_WRITE_GO;
  if (log_failed) {
    if (!rh->fail_without_log)
      return NDM_RH_WRITE_GO;
    io_uncount_locked (rh, io);
    return NDM_RH_WRITE_FAIL;
  }
  io->ticket = ticket;
  io_queue (&rh->log_waiters, io);
  return NDM_RH_WRITE_WAIT_LOG;
}

void
ndm_rh_write_end_locked (struct ndm_region_hash *rh, struct ndm_rh_io *io)
{
  ndm_assert_held (rh->lock);
  io_unqueue_locked (rh, io);
  io_uncount_locked (rh, io);
}

/* ---- out of sync -------------------------------------------------------- */

/* Region r differs between legs: out of sync, and marked so a restart
 * copies it too.  Returns whether it was in sync.
 */
static bool
region_nosync_locked (struct ndm_region_hash *rh, uint64_t r)
{
  struct ndm_region *reg;
  bool was;

  ndm_assert_held (&rh->log->lock);
  reg = rh_lookup_locked (rh, r);
  was = ndm_dirty_log_in_sync_locked (rh->log, r);
  ndm_dirty_log_mark_locked (rh->log, r);
  /* A RECOVERING one stays so: its end reads the bit. */
  if (reg != NULL && reg->state != NDM_RH_RECOVERING)
    reg->state = NDM_RH_NOSYNC;
  if (was)
    ndm_dirty_log_set_region_sync_locked (rh->log, r, false);
  return was;
}

void
ndm_rh_mark_nosync_locked (struct ndm_region_hash *rh, uint64_t first,
                           uint64_t last)
{
  uint64_t r;

  ndm_assert_held (rh->lock);
  ndm_mutex_lock (&rh->log->lock);
  for (r = first; r <= last; r++)
    region_nosync_locked (rh, r);
  ndm_mutex_unlock (&rh->log->lock);
}

uint64_t
ndm_rh_mark_dirty_nosync_locked (struct ndm_region_hash *rh)
{
  uint64_t r = 0, changed = 0;

  ndm_assert_held (rh->lock);
  ndm_mutex_lock (&rh->log->lock);
  while (ndm_dirty_log_next_marked_locked (rh->log, &r)) {
    if (region_nosync_locked (rh, r))
      changed++;
    r++;
  }
  ndm_mutex_unlock (&rh->log->lock);
  return changed;
}

/* ---- the log's commits -------------------------------------------------- */

void
ndm_rh_log_committed (struct ndm_region_hash *rh, uint64_t ticket,
                      bool failed)
{
  GList *l, *next;

  ndm_mutex_lock (rh->lock);
  for (l = rh->log_waiters.head; l != NULL; l = next) {
    struct ndm_rh_io *io = link_io (l);

    next = l->next;
    if (!failed && io->ticket > ticket)
      continue;
    g_queue_unlink (&rh->log_waiters, l);
    io->queued = 0;
    io->ticket = 0;
    ndm_clone_release_delay (io_clone (io));
  }
  ndm_mutex_unlock (rh->lock);
}

/* ---- recovery and verify ------------------------------------------------ */

/* Make reg the region being copied or compared: writes are held on it
 * from now, and it is quiesced once its pending count is 0.  Returns
 * false for none.
 */
static bool
recovery_begin_locked (struct ndm_region_hash *rh, struct ndm_region *reg)
{
  ndm_assert_held (rh->lock);
  if (reg == NULL)
    return false;
  reg->state = NDM_RH_RECOVERING;
  rh->recovering = reg;
  rh->quiesced = reg->pending == 0;
  return true;
}

bool
ndm_rh_recovery_prepare_locked (struct ndm_region_hash *rh,
                                uint64_t *region)
{
  struct ndm_region *reg = NULL;

  ndm_assert_held (rh->lock);
  if (rh->recovery_stopped || rh->degraded || rh->recovering != NULL)
    return false;
  ndm_mutex_lock (&rh->log->lock);
  if (ndm_dirty_log_get_resync_work_locked (rh->log, region))
    reg = rh_get_locked (rh, *region);
  ndm_mutex_unlock (&rh->log->lock);
  return recovery_begin_locked (rh, reg);
}

bool
ndm_rh_recovery_wait_locked (struct ndm_region_hash *rh)
{
  struct ndm_region *reg;

  ndm_assert_held (rh->lock);
  reg = rh->recovering;
  while (rh->recovering == reg && reg != NULL && !rh->quiesced)
    ndm_cond_wait (&rh->cond, rh->lock);
  return reg != NULL && rh->recovering == reg;
}

/* The region being copied or compared is done: it leaves RECOVERING as
 * the bits say, its held clones map again.
 */
static void
recovery_finish_locked (struct ndm_region_hash *rh)
{
  struct ndm_region *reg;
  bool in_sync;

  ndm_assert_held (rh->lock);
  reg = rh->recovering;
  rh->recovering = NULL;
  rh->quiesced = false;
  release_held_locked (rh, reg);
  ndm_mutex_lock (&rh->log->lock);
  in_sync = ndm_dirty_log_in_sync_locked (rh->log, reg->key);
  ndm_mutex_unlock (&rh->log->lock);
  reg->state = in_sync ? NDM_RH_DIRTY : NDM_RH_NOSYNC;
  if (reg->pending == 0)
    region_idle_locked (rh, reg);
}

void
ndm_rh_recovery_end_locked (struct ndm_region_hash *rh, bool ok)
{
  struct ndm_region *reg;

  ndm_assert_held (rh->lock);
  reg = rh->recovering;
  g_assert (reg != NULL);
  ndm_mutex_lock (&rh->log->lock);
  /* A leg that left during the copy missed it. */
  ndm_dirty_log_set_region_sync_locked (rh->log, reg->key,
                                        ok && !rh->degraded);
  ndm_mutex_unlock (&rh->log->lock);
  recovery_finish_locked (rh);
}

bool
ndm_rh_verify_prepare_locked (struct ndm_region_hash *rh, uint64_t region)
{
  struct ndm_region *reg = NULL;

  ndm_assert_held (rh->lock);
  if (rh->recovery_stopped || rh->recovering != NULL)
    return false;
  ndm_mutex_lock (&rh->log->lock);
  /* One not in sync is the resync's to copy: nothing to compare. */
  if (ndm_dirty_log_in_sync_locked (rh->log, region))
    reg = rh_get_locked (rh, region);
  ndm_mutex_unlock (&rh->log->lock);
  return recovery_begin_locked (rh, reg);
}

void
ndm_rh_verify_end_locked (struct ndm_region_hash *rh)
{
  ndm_assert_held (rh->lock);
  g_assert (rh->recovering != NULL);
  recovery_finish_locked (rh);
}

/* ---- suspend ------------------------------------------------------------ */

void
ndm_rh_stop_recovery_locked (struct ndm_region_hash *rh)
{
  struct ndm_region *reg;

  ndm_assert_held (rh->lock);
  reg = rh->recovering;
  rh->recovery_stopped = true;
  g_cond_broadcast (&rh->cond);
  if (reg == NULL || rh->quiesced)
    return;                     /* none, or its copy runs: its end releases */
  /* Still waiting for pending: give it back as it was (a copy's region
   * NOSYNC, a verify's in sync; its bit says which) and let its writes
   * go.  Setting the bit it has ends the log's recovering.
   */
  ndm_mutex_lock (&rh->log->lock);
  ndm_dirty_log_set_region_sync_locked (rh->log, reg->key,
                                        ndm_dirty_log_in_sync_locked
                                        (rh->log, reg->key));
  ndm_mutex_unlock (&rh->log->lock);
  recovery_finish_locked (rh);
}

void
ndm_rh_start_recovery_locked (struct ndm_region_hash *rh)
{
  ndm_assert_held (rh->lock);
  rh->recovery_stopped = false;
}
