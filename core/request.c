/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the request engine.
 *
 * A request is one client command.  The thread that received it (the
 * owner) does everything here: it cuts the request into one clone per
 * target segment, has each target map its clone to bios, starts the bios
 * in order, waits, and when nothing is in flight settles each clone (the
 * merge rule, R2/R3) and asks its target's end_io what to do.  REQUEUE
 * re-maps only the unfinished tail (R4).  The owner replies only when no
 * bio of the request is in flight (R1).
 *
 * Waiting is leader/follower (core/channel.c): the owner leads the
 * channels its bios went to, so the thread that waits is the thread that
 * reads the replies.
 *
 * Lock order, outermost first.  A thread takes a lock only while every
 * lock it holds is above it in this list; locks on one line are never
 * nested with each other.  Every mutex is a struct ndm_mutex
 * (nbd-dm/lock.h) with its rank from this list (enum ndm_lock_rank), and
 * a debug or sanitizer build aborts on any taking out of this order.
 *   c. ndm_md.command_lock           control only: one state-changing
 *                                    command at a time (suspend, reload,
 *                                    resume, clear), held across drains,
 *                                    device opens and the swap; no
 *                                    request thread ever takes it
 *   0. ndm_md.state_lock             suspend state; control path and the
 *                                    request gate's slow paths
 *   1. ndm_md.table_lock (GRWLock)   taken only to ref the live table
 *                                    (and to swap it, under 0); not
 *                                    checked: a GRWLock, not an ndm_mutex
 *      ndm_md.devices_lock           the device registry; taken by
 *                                    whoever makes or frees a table (the
 *                                    last unref may be a request's) and
 *                                    held across a device's open and
 *                                    start (4a, 4b)
 *   2. <target>_c.lock               target state: multipath_c.lock (path
 *                                    groups, paths, selectors),
 *                                    delay_c.lock, dust_c.lock,
 *                                    flakey_c.rand_lock; a path checker
 *                                    (core/checker.c) has no lock of its
 *                                    own: its thread takes its target's
 *   3. ndm_request.lock              the ready list; nothing under it
 *   4. device and leaf locks, in this order:
 *      a. nbd_dev.lock               a device's connection pool, state
 *                                    words, last error (devices/nbd.c;
 *                                    multipath asks whether a path is
 *                                    connected under 2)
 *      b. the fence watcher's lock   the cut connections it watches
 *                                    (devices/nbd.c); resolving a ghost
 *                                    and a connection's last unref run
 *                                    under it
 *      c. ndm_ghost.lock             a ghost's quarantine cells
 *      d. ndm_prison.lock            a prison's cells and detained waiters
 *      e. leaves, never nested:      ndm_channel.lock, ndm_budget.lock,
 *                                    ndm_md.event_lock, ndm_control.lock
 *                                    (the control clients), the waiter
 *                                    free list (core/waiter.c),
 *                                    ndm_dirty_log.lock (a mirror's log
 *                                    bits, taken under the target's lock),
 *                                    ndm_kcopyd.lock (a target's copier:
 *                                    its throttle and counters)
 *      f. the error log's limiter    (core/log.c) innermost: a thread may
 *                                    log under any lock
 * Under 4a and the leaves nothing happens but waiter kicks (atomics and
 * an eventfd write), thread starts and logging.  Statistics take no lock.
 * No ndm_mutex is held across a device submit or poll: libnbd runs
 * completion callbacks under its handle lock, and those callbacks take
 * locks 3 and 4c-f.  nbd_conn.io_lock (a GRWLock, devices/nbd.c: reader
 * around each nbd_aio_* call, writer for the cut) is taken with no ndm
 * lock held; callbacks run inside it as reader.
 *
 * Thread model: ndm_request_run runs on the owner's thread.
 * ndm_request_bio_ready and ndm_request_bio_done run in completions.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "core.h"
#include "log.h"
#include "stats.h"

/* Every bio of the request, clone by clone (i is the clone's index). */
#define request_for_each_bio(rq, i, bio)                        \
  for ((i) = 0; (i) < (rq)->nr_clones; (i)++)                   \
    ndm_clone_for_each_bio ((bio), &(rq)->clones[(i)])

/* ---- called from completions ----------------------------------------------- */

void
ndm_request_bio_ready (struct ndm_request *rq, struct ndm_bio *bio)
{
  struct ndm_waiter *owner = rq->owner;

  /* rq->ready is read without the lock (request_settled, the fast path
   * of request_run_ready): every store is atomic too.
   */
  ndm_mutex_lock (&rq->lock);
  bio->ready_next = rq->ready;
  g_atomic_pointer_set (&rq->ready, bio);
  ndm_mutex_unlock (&rq->lock);
  ndm_waiter_kick (owner);
}

/* R3: among failures at one clone offset (legs of a mirror), the first
 * to arrive wins.  A bio cancelled unstarted (R6) takes its place in the
 * same order: it arrived after the start failure that cancelled it.
 */
static void
request_number_failure (struct ndm_request *rq, struct ndm_bio *bio)
{
  if (ndm_bio_failed (bio) || bio->cancelled)
    bio->fail_seq = g_atomic_int_add (&rq->fail_seq, 1);
}

void
ndm_request_bio_done (struct ndm_request *rq, struct ndm_bio *bio)
{
  /* Read the owner before the decrement: once pending reaches 0 the owner
   * may return and rq is gone.  Waiters outlive requests.
   */
  struct ndm_waiter *owner = rq->owner;

  request_number_failure (rq, bio);
  if (g_atomic_int_dec_and_test (&rq->pending))
    ndm_waiter_kick (owner);
}

/* ---- channels the request uses ------------------------------------------- */

static struct ndm_channel *
request_channel_for (struct ndm_request *rq, struct ndm_device *dev)
{
  unsigned i;

  for (i = 0; i < rq->nr_channels; i++)
    if (rq->channels[i].dev == dev)
      return rq->channels[i].ch;
  return NULL;
}

static void
request_add_channel (struct ndm_request *rq, struct ndm_device *dev,
                     struct ndm_channel *ch)
{
  unsigned i;

  for (i = 0; i < rq->nr_channels; i++)
    if (rq->channels[i].ch == ch) {
      ndm_channel_unref (ch);   /* we hold one already */
      return;
    }
  if (rq->nr_channels == rq->max_channels) {
    unsigned n = rq->max_channels * 2;

    if (rq->channels == rq->inline_channels) {
      rq->channels = g_new (struct ndm_rq_channel, n);
      memcpy (rq->channels, rq->inline_channels,
              sizeof rq->inline_channels);
    }
    else
      rq->channels = g_renew (struct ndm_rq_channel, rq->channels, n);
    rq->max_channels = n;
  }
  rq->channels[rq->nr_channels].ch = ch;
  rq->channels[rq->nr_channels].dev = dev;
  rq->nr_channels++;
}

static void
request_release_channels (struct ndm_request *rq)
{
  unsigned i;

  for (i = 0; i < rq->nr_channels; i++) {
    ndm_channel_unlead (rq->channels[i].ch, rq->owner);
    ndm_channel_unref (rq->channels[i].ch);
  }
  if (rq->channels != rq->inline_channels)
    g_free (rq->channels);
  rq->channels = rq->inline_channels;
  rq->nr_channels = 0;
}

/* ---- the merge rule ---------------------------------------------------------- */

/* R2 and R3, the only place they are written.  Every bio of the clone is
 * DONE.  The credited bytes are the longest prefix of the clone in which
 * every bio succeeded: up to the lowest clone offset of a failed (or
 * cancelled, R6) bio, or the whole clone.  The error is that bio's: the
 * lowest-offset failure, and among failures at the same offset (legs of
 * a mirror) the first to arrive; a failure that arrived later never
 * replaces it.  Out-of-order successes beyond a failure are not credited.
 */
void
ndm_clone_settle (struct ndm_clone *clone)
{
  struct ndm_bio *bio, *front = NULL;

  clone->cancelled = false;
  if (clone->kill_error != 0) {
    clone->credited = 0;
    clone->error = clone->kill_error;
    return;
  }
  ndm_clone_for_each_bio (bio, clone) {
    g_assert (g_atomic_int_get (&bio->state) == NDM_BIO_DONE);
    if (!ndm_bio_failed (bio) && !bio->cancelled)
      continue;
    if (front == NULL || bio->clone_off < front->clone_off ||
        (bio->clone_off == front->clone_off &&
         bio->fail_seq < front->fail_seq))
      front = bio;
  }
  clone->credited = front != NULL ? front->clone_off : clone->len;
  clone->error = front != NULL ? front->status : 0;
  clone->cancelled = front != NULL && front->cancelled;
}

/* The bio at the frontier, for the error message. */
static struct ndm_bio *
clone_frontier_bio (struct ndm_clone *clone)
{
  struct ndm_bio *bio;

  ndm_clone_for_each_bio (bio, clone)
    if (bio->status == clone->error && bio->clone_off == clone->credited)
      return bio;
  return NULL;
}

/* ---- mapping ------------------------------------------------------------------ */

static void
clone_free_bios (struct ndm_clone *clone)
{
  struct ndm_bio *bio, *next;

  for (bio = clone->bios; bio != NULL; bio = next) {
    next = bio->next;
    ndm_bio_free (bio);
  }
  clone->bios = NULL;
  clone->bios_tail = &clone->bios;
  clone->nr_bios = 0;
}

/* Map (or re-map) the clone.  Returns the target's NDM_MAPIO_* result. */
static int
clone_map (struct ndm_clone *clone)
{
  struct ndm_target *ti = clone->ti;
  int r;

  clone->kill_error = 0;
  clone->credited = 0;
  clone->error = 0;
  clone->not_before = 0;
  clone->failfast = false;
  r = ti->type->map (ti, clone);
  clone->map_result = r;
  switch (r) {
  case NDM_MAPIO_SUBMITTED:
  case NDM_MAPIO_REMAPPED:
  case NDM_MAPIO_REQUEUE:
  case NDM_MAPIO_DELAY_REQUEUE:
    break;
  case NDM_MAPIO_KILL:
    if (clone->kill_error == 0)
      clone->kill_error = EIO;
    clone_free_bios (clone);
    break;
  default:
    g_assert_not_reached ();
  }
  return r;
}

/* A new clone at the end of rq->clones (which may move: see fix_tails). */
static struct ndm_clone *
clone_append (struct ndm_request *rq, unsigned *max)
{
  if (rq->nr_clones == *max) {
    *max *= 2;
    if (rq->clones == rq->inline_clones) {
      rq->clones = g_new (struct ndm_clone, *max);
      memcpy (rq->clones, rq->inline_clones, sizeof rq->inline_clones);
    }
    else
      rq->clones = g_renew (struct ndm_clone, rq->clones, *max);
  }
  return &rq->clones[rq->nr_clones++];
}

/* Clones for [pos, stop) of rq->table, one per target it touches; buf is
 * the client data at pos (or NULL).  Block status with REQ_ONE stops at
 * the first target.
 */
static void
request_cut (struct ndm_request *rq, unsigned *max, uint64_t pos,
             uint64_t stop, char *buf)
{
  struct ndm_table *t = rq->table;
  struct ndm_target *ti, *end = t->targets + t->nr_targets;
  uint64_t start = pos;

  /* Callers check the range against this table first (the front door,
   * request_rebind): a range past its end would wrap n_bytes below.
   */
  g_assert (pos < stop && stop <= t->size);
  for (ti = ndm_table_find_target (t, pos); ti < end && pos < stop; ti++) {
    uint64_t tend = (ti->begin + ti->len) << NDM_SECTOR_SHIFT;
    uint64_t n_bytes = MIN (tend, stop) - pos;
    struct ndm_clone *clone = clone_append (rq, max);

    *clone = (struct ndm_clone) {
      .rq = rq, .ti = ti, .op = rq->op, .flags = rq->flags,
      .offset = pos, .len = n_bytes, .orig_len = n_bytes,
      .buf = buf != NULL ? buf + (pos - start) : NULL,
      .t_start = ndm_stats_start (ti->stats),
    };
    pos += n_bytes;
    if (rq->op == NDM_OP_BLOCK_STATUS && (rq->flags & NDM_REQ_ONE))
      break;
  }
}

/* Once rq->clones stops moving: point each clone's bio tail into it. */
static void
request_fix_tails (struct ndm_request *rq)
{
  unsigned i;

  for (i = 0; i < rq->nr_clones; i++) {
    struct ndm_bio **tail = &rq->clones[i].bios;

    while (*tail != NULL)
      tail = &(*tail)->next;
    rq->clones[i].bios_tail = tail;
  }
}

/* Cut the request into clones.  A flush goes to every target (each maps
 * it to its devices, deduplicated per device).
 */
static void
request_make_clones (struct ndm_request *rq)
{
  unsigned max = NDM_RQ_INLINE_CLONES;

  rq->clones = rq->inline_clones;
  rq->nr_clones = 0;
  if (rq->op == NDM_OP_FLUSH)
    request_cut (rq, &max, 0, rq->table->size, NULL);
  else
    request_cut (rq, &max, rq->offset, rq->offset + rq->len, rq->buf);
  request_fix_tails (rq);
}

static bool
dev_in (const GPtrArray *devs, const struct ndm_device *dev)
{
  unsigned i;

  for (i = 0; devs != NULL && i < devs->len; i++)
    if (devs->pdata[i] == dev)
      return true;
  return false;
}

/* R9: a device is flushed once per request.  It counts as flushed only
 * when its flush succeeded (request_note_flushes, at the end of each
 * round); within a round one flush bio per device is enough.
 */
void
ndm_clone_map_flush (struct ndm_clone *clone, struct ndm_device *dev)
{
  struct ndm_request *rq = clone->rq;

  if (!dev->caps.flush || dev_in (rq->flushed, dev) ||
      dev_in (rq->flush_mapped, dev))
    return;
  if (rq->flush_mapped == NULL)
    rq->flush_mapped = g_ptr_array_new ();
  g_ptr_array_add (rq->flush_mapped, dev);
  ndm_bio_add_flush (clone, dev);
}

/* When a round is over, before its clones are decided: devices whose
 * flush bio succeeded count as flushed for the rest of the request (R9:
 * a requeued flush skips them, and only them).
 */
static void
request_note_flushes (struct ndm_request *rq)
{
  struct ndm_bio *bio;
  unsigned i;

  request_for_each_bio (rq, i, bio)
    if (bio->op == NDM_OP_FLUSH && !ndm_bio_failed (bio) &&
        !bio->cancelled && !dev_in (rq->flushed, bio->dev)) {
      if (rq->flushed == NULL)
        rq->flushed = g_ptr_array_new ();
      g_ptr_array_add (rq->flushed, bio->dev);
    }
  if (rq->flush_mapped != NULL)
    g_ptr_array_set_size (rq->flush_mapped, 0);
}

void
ndm_clone_release_delay (struct ndm_clone *clone)
{
  __atomic_store_n (&clone->not_before, 0, __ATOMIC_RELEASE);
  ndm_waiter_kick (clone->rq->owner);
}

/* The clone's outcome is final: count it for its target. */
static void
clone_finish (struct ndm_clone *clone, int error)
{
  clone->finished = true;
  clone->error = error;
  ndm_stats_done (clone->ti->stats, clone->op, clone->orig_len, error,
                  clone->t_start);
}

/* ---- starting, waiting ------------------------------------------------------ */

/* The owner waits on a budget's queue (R8) while a bio waits for it,
 * and leaves the queue once no bio does.
 */
static void
request_budget_wait (struct ndm_request *rq, struct ndm_budget *b,
                     bool *waits, bool now)
{
  if (*waits && !now)
    ndm_budget_forget (b, rq->owner);
  *waits = now;
}

static void
request_wait_until (struct ndm_request *rq, int64_t until)
{
  if (until != 0 && (rq->wait_until == 0 || until < rq->wait_until))
    rq->wait_until = until;
}

/* Start one bio, NEW or READY, and keep the request's books: pending,
 * the channels it leads, what it waits for, the arrival order of a
 * failure.
 */
static enum ndm_bio_start_result
request_start_bio (struct ndm_request *rq, struct ndm_bio *bio, int *err)
{
  struct ndm_bio_start s = {
    .owner = rq->owner,
    .channel = request_channel_for (rq, bio->dev),
  };
  bool fresh = g_atomic_int_get (&bio->state) == NDM_BIO_NEW;
  enum ndm_bio_start_result r;

  /* Counted before its command goes out: the completion may run before
   * ndm_bio_start returns.  A READY bio is counted since its first step.
   */
  if (fresh)
    g_atomic_int_inc (&rq->pending);
  r = ndm_bio_start (bio, &s);
  if (fresh) {
    bool waits = r == NDM_BIO_WAITS;

    request_budget_wait (rq, &rq->md->inflight, &rq->waits_inflight,
                         waits && s.wait == NDM_BIO_WAIT_INFLIGHT);
    request_budget_wait (rq, &rq->md->bounce, &rq->waits_bounce,
                         waits && s.wait == NDM_BIO_WAIT_BOUNCE);
  }
  switch (r) {
  case NDM_BIO_ISSUED:
    if (s.new_channel != NULL)
      request_add_channel (rq, bio->dev, s.new_channel);
    if (fresh)
      rq->nr_started++;
    break;
  case NDM_BIO_WAITS:
    if (fresh)
      g_atomic_int_add (&rq->pending, -1);
    request_wait_until (rq, s.until);
    break;
  case NDM_BIO_FAILED:
    g_atomic_int_add (&rq->pending, -1);
    request_number_failure (rq, bio);
    *err = s.err;
    break;
  }
  return r;
}

/* Continue bios whose step ended. */
static void
request_run_ready (struct ndm_request *rq)
{
  struct ndm_bio *list, *bio;
  int err;

  /* Deferred ones first: they are looked at again whenever the owner
   * wakes (a device said EAGAIN; trying early costs a look at its pool).
   */
  list = g_steal_pointer (&rq->deferred);
  if (g_atomic_pointer_get (&rq->ready) != NULL) {
    struct ndm_bio **tail = &list;

    while (*tail != NULL)
      tail = &(*tail)->ready_next;
    ndm_mutex_lock (&rq->lock);
    *tail = rq->ready;
    g_atomic_pointer_set (&rq->ready, NULL);
    ndm_mutex_unlock (&rq->lock);
  }

  while ((bio = list) != NULL) {
    list = bio->ready_next;
    if (request_start_bio (rq, bio, &err) == NDM_BIO_WAITS) {
      bio->ready_next = rq->deferred;
      rq->deferred = bio;
    }
  }
}

/* R6: a start failed; the bios not yet started never will be. */
static void
request_cancel_rest (struct ndm_request *rq)
{
  for (; rq->cursor_clone < rq->nr_clones; rq->cursor_clone++) {
    struct ndm_clone *clone = &rq->clones[rq->cursor_clone];

    if (rq->cursor_bio == NULL)
      rq->cursor_bio = clone->bios;
    for (; rq->cursor_bio != NULL; rq->cursor_bio = rq->cursor_bio->next)
      if (g_atomic_int_get (&rq->cursor_bio->state) == NDM_BIO_NEW) {
        ndm_bio_cancel (rq->cursor_bio);
        request_number_failure (rq, rq->cursor_bio);
      }
  }
}

/* Start NEW bios in map order, up to one that must wait. */
static void
request_start_bios (struct ndm_request *rq)
{
  int err;

  if (rq->stop) {
    request_cancel_rest (rq);
    return;
  }
  for (; rq->cursor_clone < rq->nr_clones; rq->cursor_clone++) {
    struct ndm_clone *clone = &rq->clones[rq->cursor_clone];

    if (clone->finished)
      continue;
    if (rq->cursor_bio == NULL)
      rq->cursor_bio = clone->bios;
    for (; rq->cursor_bio != NULL; rq->cursor_bio = rq->cursor_bio->next) {
      struct ndm_bio *bio = rq->cursor_bio;

      if (g_atomic_int_get (&bio->state) != NDM_BIO_NEW)
        continue;
      switch (request_start_bio (rq, bio, &err)) {
      case NDM_BIO_ISSUED:
        break;
      case NDM_BIO_WAITS:
        return;                 /* in order: nothing after it starts */
      case NDM_BIO_FAILED:
        rq->start_error = err;
        rq->stop = true;
        rq->cursor_bio = bio->next;
        request_cancel_rest (rq);
        return;
      }
    }
  }
}

static bool
request_settled (struct ndm_request *rq)
{
  return g_atomic_int_get (&rq->pending) == 0 &&
    g_atomic_pointer_get (&rq->ready) == NULL &&
    rq->cursor_clone >= rq->nr_clones;
}

/* Sleep until something changes: lead the request's channels (reading
 * replies for everyone) and wait on the owner's waiter.
 */
static void
request_wait (struct ndm_request *rq, int timeout_ms)
{
  struct pollfd *pfd = g_newa (struct pollfd, rq->nr_channels + 1);
  struct ndm_channel **led = g_newa (struct ndm_channel *,
                                     rq->nr_channels + 1);
  unsigned i, n = 0;
  int r;

  for (i = 0; i < rq->nr_channels; i++)
    if (ndm_channel_lead (rq->channels[i].ch, rq->owner, &pfd[n],
                          &timeout_ms))
      led[n++] = rq->channels[i].ch;

  r = ndm_waiter_poll (rq->owner, pfd, n, timeout_ms);
  if (r <= 0)
    return;
  ndm_waiter_batch_begin ();
  for (i = 0; i < n; i++)
    if (pfd[i].revents != 0)
      led[i]->ops->service (led[i], pfd[i].revents);
  ndm_waiter_batch_end ();
}

/* Run until every bio is DONE. */
static void
request_drive (struct ndm_request *rq)
{
  for (;;) {
    int timeout = -1;

    ndm_waiter_prepare (rq->owner);
    rq->wait_until = 0;
    request_run_ready (rq);
    request_start_bios (rq);
    if (request_settled (rq))
      return;
    if (rq->wait_until != 0) {
      gint64 left = rq->wait_until - g_get_monotonic_time ();

      timeout = left > 0 ? (int) ((left + 999) / 1000) : 0;
    }
    request_wait (rq, timeout);
  }
}

void (*ndm_request_held_test_hook) (struct ndm_clone *clone);

/* The unfinished clones a target holds with a not_before; *end is
 * lowered to the soonest.
 */
static unsigned
request_held_clones (struct ndm_request *rq, gint64 *end, bool lower)
{
  unsigned i, n = 0;

  for (i = 0; i < rq->nr_clones; i++) {
    struct ndm_clone *clone = &rq->clones[i];
    int64_t nb = ndm_clone_not_before (clone);

    if (clone->finished || nb <= 0)
      continue;
    n++;
    if (lower && nb < *end)
      *end = nb;
    if (G_UNLIKELY (ndm_request_held_test_hook != NULL))
      ndm_request_held_test_hook (clone);
  }
  return n;
}

/* DM_*_DELAY_REQUEUE: wait, leading channels (others may need us), for
 * NDM_DELAY_REQUEUE_MS, or until the clones' not_before where a target
 * set one: sooner (a quick retry) or later (a clone held until an event,
 * such as the end of a mirror region's recovery).  The wait ends early
 * when the target releases a held clone (ndm_clone_release_delay), and
 * it looks at the quit gate every NDM_QUIT_POLL_MS (R13); a target that
 * holds clones longer than NDM_DELAY_REQUEUE_MS releases them in its
 * presuspend, so that a suspend does not wait for them.  Returns -1 if
 * the front end quits.
 */
static int
request_delay (struct ndm_request *rq)
{
  gint64 now = g_get_monotonic_time ();
  gint64 end = INT64_MAX;
  unsigned held;

  /* One look at the clones both counts the held ones and finds the
   * soonest not_before: a release that comes after it lowers the count
   * below held and ends the wait.  (Two looks lost a release that came
   * between them: no clone was held any more, yet the wait had no end;
   * the fuzzer found it, a mirror write whose log commit came then.)
   */
  held = request_held_clones (rq, &end, true);
  if (held == 0)
    end = now + NDM_DELAY_REQUEUE_MS * 1000;
  for (;;) {
    gint64 slice;

    /* Held for a path or a leg: give up if the server stops. */
    if (ndm_md_quitting (rq->md))
      return -1;
    ndm_waiter_prepare (rq->owner);
    now = g_get_monotonic_time ();
    if (now >= end || request_held_clones (rq, &end, false) < held)
      return 0;
    slice = MIN (end - now, NDM_QUIT_POLL_MS * 1000);
    request_wait (rq, (int) ((slice + 999) / 1000));
  }
}

/* A clone whose last map held it (REQUEUE or DELAY_REQUEUE: no bios)
 * ends without being mapped again: its target forgets it (a mirror's
 * writes held for a region under recovery).
 */
static void
clone_release_held (struct ndm_clone *clone)
{
  struct ndm_target *ti = clone->ti;

  if ((clone->map_result == NDM_MAPIO_REQUEUE ||
       clone->map_result == NDM_MAPIO_DELAY_REQUEUE) &&
      ti->type->release_clone != NULL)
    ti->type->release_clone (ti, clone);
}

/* The request ends between rounds although clones were requeued (nothing
 * of it is in flight): the front end quits (quit), or rounds went on
 * starting nothing.  What is unfinished ends with error.
 */
static void
request_abandon (struct ndm_request *rq, int error, bool quit)
{
  unsigned i;

  for (i = 0; i < rq->nr_clones; i++) {
    struct ndm_clone *clone = &rq->clones[i];

    if (clone->finished)
      continue;
    clone_release_held (clone);
    clone->quit = quit;
    clone_finish (clone, error);
    if (i < rq->first_err)
      rq->first_err = i;
  }
}

/* ---- deciding ---------------------------------------------------------------- */

/* R4: what is left to do is [credited, len), recomputed from the credited
 * byte count alone: offset, length and buffer move together.
 */
static void
clone_advance (struct ndm_clone *clone)
{
  /* Block status is an answer, not data moved: the head's answer went
   * with the bios freed here, so all of it is asked again.
   */
  uint64_t done = clone->op == NDM_OP_BLOCK_STATUS ? 0 : clone->credited;

  g_assert (done <= clone->len);
  clone->offset += done;
  clone->len -= done;
  if (clone->buf != NULL)
    clone->buf += done;
  clone->credited = 0;
  clone_free_bios (clone);
}

static void
log_clone_error (struct ndm_request *rq, struct ndm_clone *clone)
{
  struct ndm_bio *bio = clone_frontier_bio (clone);

  if (bio != NULL)
    ndm_log_error ("%s: device %s: %s at sector %" PRIu64
                   " (%s of %" PRIu64 " bytes at %" PRIu64 ")",
                   clone->ti->type->name, bio->dev->uri,
                   ndm_errno_name (clone->error),
                   bio->dev_offset >> NDM_SECTOR_SHIFT, ndm_op_name (rq->op),
                   rq->len, rq->offset);
  else
    ndm_log_error ("%s: %s at sector %" PRIu64 " (%s of %" PRIu64
                   " bytes at %" PRIu64 ")",
                   clone->ti->type->name, ndm_errno_name (clone->error),
                   (clone->offset + clone->credited) >> NDM_SECTOR_SHIFT,
                   ndm_op_name (rq->op), rq->len, rq->offset);
}

/* Settle one unfinished clone and get its target's decision (NDM_ENDIO_*)
 * and final error.
 */
static int
clone_decide (struct ndm_clone *clone, int *error)
{
  struct ndm_target *ti = clone->ti;

  if (clone->map_result == NDM_MAPIO_REQUEUE ||
      clone->map_result == NDM_MAPIO_DELAY_REQUEUE) {
    /* The target could not map it yet (no usable path): nothing ran. */
    clone->credited = 0;
    clone->error = *error = 0;
    return clone->map_result == NDM_MAPIO_REQUEUE ?
      NDM_ENDIO_REQUEUE : NDM_ENDIO_DELAY_REQUEUE;
  }

  ndm_clone_settle (clone);
  *error = clone->error;
  if (clone->cancelled) {
    /* Never started because an earlier start failed (R6): nothing of it
     * reached a device, so no target decides; if the request goes on,
     * it runs again.
     */
    if (ti->type->release_clone != NULL)
      ti->type->release_clone (ti, clone);
    return NDM_ENDIO_REQUEUE;
  }
  if (ti->type->end_io != NULL && clone->kill_error == 0)
    return ti->type->end_io (ti, clone, error);
  return *error != 0 ? NDM_ENDIO_ERROR : NDM_ENDIO_DONE;
}

/* One round is over (nothing in flight).  Decide each unfinished clone.
 * Returns true if some clone was re-mapped and another round must run;
 * *delay says whether to wait first.  rq->first_err is the index of the
 * first clone, in offset order, that finished with an error (nr_clones if
 * none): its error is the request's (R3 across clones).  Clones after it
 * are not run again; clones before it go on, and if one of them fails in
 * a later round its error takes over.
 */
static bool
request_decide (struct ndm_request *rq, bool *delay)
{
  bool again = false;
  unsigned i;

  *delay = false;
  request_note_flushes (rq);
  for (i = 0; i < rq->nr_clones; i++) {
    struct ndm_clone *clone = &rq->clones[i];
    int r, error;

    if (clone->finished)
      continue;
    r = clone_decide (clone, &error);
    if (i > rq->first_err) {
      /* The request fails anyway; its target has still seen the outcome
       * (a path may have failed).  One it wants to map again (held by
       * its map, or requeued by its end_io) is not: it forgets it, else
       * a mirror keeps the freed clone queued, or its region's pending
       * count for ever, and the region's copy then releases the freed
       * clone or waits for ever with writes held (the soak).
       */
      if ((r == NDM_ENDIO_REQUEUE || r == NDM_ENDIO_DELAY_REQUEUE) &&
          clone->ti->type->release_clone != NULL)
        clone->ti->type->release_clone (clone->ti, clone);
      clone_finish (clone, error);
      continue;
    }
    switch (r) {
    case NDM_ENDIO_DONE:
    case NDM_ENDIO_ERROR:
      clone_finish (clone, error);
      if (error != 0) {
        log_clone_error (rq, clone);
        rq->first_err = i;
      }
      break;
    case NDM_ENDIO_DELAY_REQUEUE:
      *delay = true;
      /* fall through */
    case NDM_ENDIO_REQUEUE:
      ndm_log_debug (NDM_LOG_REQUEST, "%s: %s of %" PRIu64 " bytes at %"
                     PRIu64 ": %s from byte %" PRIu64 " of the clone%s%s",
                     clone->ti->type->name, ndm_op_name (rq->op), rq->len,
                     rq->offset, r == NDM_ENDIO_REQUEUE ? "requeued" : "held",
                     clone->credited, error != 0 ? " after " : "",
                     error != 0 ? ndm_errno_name (error) : "");
      clone->requeues++;
      ndm_stats_requeue (clone->ti->stats);
      clone_advance (clone);
      again = true;
      break;
    default:
      g_assert_not_reached ();
    }
  }
  return again;
}

/* ---- block status ---------------------------------------------------------- */

/* Default: the clone's bios are contiguous pieces of it in map order. */
static void
clone_extents_contiguous (struct ndm_clone *clone)
{
  struct ndm_bio *bio;
  uint64_t pos = 0;

  ndm_clone_for_each_bio (bio, clone) {
    uint64_t covered = 0;
    unsigned j;

    if (bio->clone_off != pos || bio->extents == NULL)
      return;
    for (j = 0; j < bio->extents->len; j++) {
      const struct ndm_extent *e =
        &g_array_index (bio->extents, struct ndm_extent, j);
      uint64_t s = MAX (e->offset, bio->dev_offset + covered);
      uint64_t end = MIN (e->offset + e->length, bio->dev_offset + bio->len);

      if (s != bio->dev_offset + covered)
        break;                  /* a gap in the device's answer */
      if (end <= s)
        continue;
      ndm_clone_add_extent (clone, bio->clone_off + covered, end - s,
                            e->type);
      covered += end - s;
    }
    pos += covered;
    if (covered < bio->len)
      return;                   /* the device answered a prefix only */
  }
}

void
ndm_clone_add_extent (struct ndm_clone *clone, uint64_t clone_off,
                      uint64_t length, uint32_t type)
{
  struct ndm_extent e = {
    .offset = clone->offset + clone_off, .length = length, .type = type,
  };
  struct ndm_extent *last;

  if (length == 0)
    return;
  if (clone->extents == NULL)
    clone->extents = g_array_new (FALSE, FALSE, sizeof (struct ndm_extent));
  if (clone->extents->len > 0) {
    last = &g_array_index (clone->extents, struct ndm_extent,
                           clone->extents->len - 1);
    if (last->type == type && last->offset + last->length == e.offset) {
      last->length += length;
      return;
    }
  }
  g_array_append_val (clone->extents, e);
}

/* Concatenate the clones' answers, in order, up to the first clone that
 * answered less than all of itself.  Adjacent extents of one type merge.
 */
static void
request_collect_extents (struct ndm_request *rq, GArray *out)
{
  uint64_t pos = rq->offset;
  unsigned i, j;

  for (i = 0; i < rq->nr_clones; i++) {
    struct ndm_clone *clone = &rq->clones[i];
    uint64_t end = clone->offset + clone->len;

    if (clone->extents == NULL)
      break;
    for (j = 0; j < clone->extents->len; j++) {
      struct ndm_extent e =
        g_array_index (clone->extents, struct ndm_extent, j);

      if (e.offset != pos)
        return;
      if (out->len > 0) {
        struct ndm_extent *last =
          &g_array_index (out, struct ndm_extent, out->len - 1);

        if (last->type == e.type && last->offset + last->length == pos) {
          last->length += e.length;
          pos += e.length;
          continue;
        }
      }
      g_array_append_val (out, e);
      pos += e.length;
    }
    if (pos < end)
      return;
  }
}

/* ---- noflush suspend: held between rounds ------------------------------------ */

/* A noflush suspend held this request between two rounds; the live table
 * may be another now.  Finished clones keep their outcome; what is left
 * of each unfinished one is cut anew by the new table, so it lands where
 * the new mapping says (data written to the old mapping would be lost to
 * the client).  rq->first_err is recomputed for the new clone array.
 */
static void
request_rebind (struct ndm_request *rq)
{
  struct ndm_table *t = ndm_md_get_table (rq->md);
  struct ndm_clone *old;
  unsigned i, n_old, max = NDM_RQ_INLINE_CLONES;

  if (t == rq->table) {
    ndm_table_unref (t);
    return;
  }
  n_old = rq->nr_clones;
  old = g_memdup2 (rq->clones, n_old * sizeof *old);
  if (rq->clones != rq->inline_clones)
    g_free (rq->clones);
  rq->clones = rq->inline_clones;
  rq->nr_clones = 0;
  if (rq->old_tables == NULL)
    rq->old_tables = g_ptr_array_new_with_free_func (
      (GDestroyNotify) ndm_table_unref);
  g_ptr_array_add (rq->old_tables, rq->table);
  rq->table = t;

  for (i = 0; i < n_old; i++) {
    struct ndm_clone *c = &old[i];
    uint64_t end = c->offset + c->len;

    if (c->finished) {
      *clone_append (rq, &max) = *c;
      continue;
    }
    clone_release_held (c);
    ndm_stats_abandon (c->ti->stats);
    clone_free_bios (c);
    if (c->extents != NULL)
      g_array_unref (c->extents);
    if (rq->op == NDM_OP_FLUSH)
      continue;                 /* cut below, against the whole table */
    if (c->offset < t->size)
      request_cut (rq, &max, c->offset, MIN (end, t->size), c->buf);
    if (end > t->size) {
      /* The table shrank under the held request: what lies past its end
       * fails as it would at the front door.  The clone keeps its old
       * target (its table is in old_tables) for the log.
       */
      struct ndm_clone *past = clone_append (rq, &max);
      uint64_t from = MAX (c->offset, t->size);

      *past = *c;
      past->offset = from;
      past->len = end - from;
      past->buf = c->buf != NULL ? c->buf + (from - c->offset) : NULL;
      past->bios = NULL;
      past->nr_bios = 0;
      past->extents = NULL;
      past->finished = true;
      past->error = EINVAL;
      ndm_log_error ("request out of range after a resume: %" PRIu64
                     " bytes at %" PRIu64 ", the device has %" PRIu64
                     " bytes now", past->len, from, t->size);
    }
  }
  /* A flush goes to every device of the table it ends on (R9); those
   * flushed before stay flushed (rq->flushed).
   */
  if (rq->op == NDM_OP_FLUSH)
    request_cut (rq, &max, 0, t->size, NULL);
  g_free (old);
  request_fix_tails (rq);

  rq->first_err = rq->nr_clones;
  for (i = 0; i < rq->nr_clones; i++)
    if (rq->clones[i].finished && rq->clones[i].error != 0) {
      rq->first_err = i;
      break;
    }
}

/* ---- the request -------------------------------------------------------------- */

/* A fast zero fails with ENOTSUP where some piece of it cannot be fast
 * (a device without fast zero, an unaligned piece that would bounce):
 * decided before anything of it is sent, since NBD says such a failure
 * SHOULD NOT alter the export.
 */
static bool
request_cannot_be_fast (struct ndm_request *rq)
{
  struct ndm_bio *bio;
  unsigned i;

  request_for_each_bio (rq, i, bio)
    if (bio->status == ENOTSUP)
      return true;
  return false;
}

/* The request ends before any bio starts (a fast zero refused whole):
 * what each map took goes back, as for a clone whose bios never started
 * (R6).  Without it a delay target's queue keeps the freed clone (its
 * status then reads it) and a multipath selector counts the I/O in
 * flight for ever; and a clone its map held (a mirror's write to a
 * region being copied, or waiting for its log mark) stays queued on
 * the mirror, which releases the freed clone when the copy ends (the
 * soak: a use after free in the resync thread).
 */
static void
request_release_unstarted (struct ndm_request *rq)
{
  unsigned i;

  for (i = 0; i < rq->nr_clones; i++) {
    struct ndm_clone *clone = &rq->clones[i];
    struct ndm_target *ti = clone->ti;

    if (clone->map_result == NDM_MAPIO_REMAPPED &&
        ti->type->release_clone != NULL)
      ti->type->release_clone (ti, clone);
    else
      clone_release_held (clone);
  }
}

static void
request_init (struct ndm_request *rq, struct ndm_md *md, enum ndm_op op,
              void *buf, uint64_t count, uint64_t offset, uint32_t flags)
{
  memset (rq, 0, offsetof (struct ndm_request, inline_channels));
  rq->md = md;
  rq->owner = ndm_waiter_self ();
  rq->op = op;
  rq->flags = flags;
  rq->offset = offset;
  rq->len = count;
  rq->buf = buf;
  ndm_mutex_init (&rq->lock, NDM_LOCK_REQUEST);
  rq->channels = rq->inline_channels;
  rq->max_channels = NDM_RQ_INLINE_CHANNELS;
  rq->clones = rq->inline_clones;
}

static void
request_fini (struct ndm_request *rq)
{
  unsigned i;

  request_release_channels (rq);
  if (rq->waits_inflight)
    ndm_budget_forget (&rq->md->inflight, rq->owner);
  if (rq->waits_bounce)
    ndm_budget_forget (&rq->md->bounce, rq->owner);
  for (i = 0; i < rq->nr_clones; i++) {
    clone_free_bios (&rq->clones[i]);
    if (rq->clones[i].extents != NULL)
      g_array_unref (rq->clones[i].extents);
  }
  if (rq->clones != rq->inline_clones)
    g_free (rq->clones);
  if (rq->flushed != NULL)
    g_ptr_array_unref (rq->flushed);
  if (rq->flush_mapped != NULL)
    g_ptr_array_unref (rq->flush_mapped);
  if (rq->old_tables != NULL)
    g_ptr_array_unref (rq->old_tables);
  ndm_mutex_clear (&rq->lock);
  ndm_table_unref (rq->table);
}

/* ---- the request's steps ------------------------------------------------ */

/* The front door: a range past the device's end is refused (EINVAL), and
 * an empty one (not a flush) is done at once.
 */
enum request_admit { ADMIT_RUN, ADMIT_EMPTY, ADMIT_REFUSED };

static enum request_admit
request_admit (struct ndm_request *rq)
{
  uint64_t size = rq->table->size;

  if (rq->op == NDM_OP_FLUSH)
    return ADMIT_RUN;
  if (rq->offset > size || rq->len > size - rq->offset) {
    ndm_log_error ("request out of range: %" PRIu64 " bytes at %" PRIu64
                   ", the device has %" PRIu64 " bytes",
                   rq->len, rq->offset, size);
    return ADMIT_REFUSED;
  }
  return rq->len == 0 ? ADMIT_EMPTY : ADMIT_RUN;
}

/* Cut the request into clones and have each target map its own.
 * Returns false if the request is refused whole before anything starts:
 * a fast zero that cannot be fast.
 */
static bool
request_map (struct ndm_request *rq)
{
  unsigned i;

  request_make_clones (rq);
  for (i = 0; i < rq->nr_clones; i++)
    clone_map (&rq->clones[i]);
  rq->first_err = rq->nr_clones;
  if (rq->op == NDM_OP_ZERO && (rq->flags & NDM_REQ_FAST_ZERO) &&
      request_cannot_be_fast (rq)) {
    request_release_unstarted (rq);
    return false;
  }
  return true;
}

/* Map again what was requeued, then start from the first of them. */
static void
request_remap (struct ndm_request *rq)
{
  unsigned i;

  rq->stop = false;
  rq->nr_started = 0;
  rq->start_error = 0;
  rq->cursor_clone = rq->nr_clones;
  rq->cursor_bio = NULL;
  for (i = 0; i < rq->nr_clones; i++) {
    struct ndm_clone *clone = &rq->clones[i];

    if (clone->finished)
      continue;
    if (rq->cursor_clone == rq->nr_clones)
      rq->cursor_clone = i;
    /* A DELAY_REQUEUE here is waited for when the round is decided. */
    clone_map (clone);
  }
}

/* R13: rounds that start nothing and ask for no delay (a target that
 * requeues what cannot start) are bounded: the request fails with the
 * start error.  Returns false when it gave up.
 */
static bool
request_count_empty_round (struct ndm_request *rq, bool delay)
{
  int e;

  if (rq->nr_started > 0) {
    rq->empty_rounds = 0;
    return true;
  }
  if (delay || ++rq->empty_rounds < NDM_MAX_EMPTY_ROUNDS)
    return true;
  e = rq->start_error != 0 ? rq->start_error : EIO;
  ndm_log_error ("request gives up after %u rounds that started "
                 "nothing: %s (%" PRIu64 " bytes at %" PRIu64 ")",
                 rq->empty_rounds, ndm_errno_name (e), rq->len, rq->offset);
  request_abandon (rq, e, false);
  return false;
}

/* Between two rounds, the gates every round passes (R13): the quit gate,
 * the bound on empty rounds, a noflush suspend (park, then rebind to the
 * table it resumed with), the delay a target asked for.  Returns true if
 * another round runs; false if the request ended (what was unfinished is
 * abandoned).
 */
static bool
request_next_round (struct ndm_request *rq, bool delay)
{
  if (ndm_md_quitting (rq->md)) {
    request_abandon (rq, ESHUTDOWN, true);
    return false;
  }
  if (!request_count_empty_round (rq, delay))
    return false;
  if (g_atomic_int_get (&rq->md->suspended)) {
    /* Leave the channels first: other owners may be waiting for this
     * one to read their replies, and the suspend for them.
     */
    request_release_channels (rq);
    switch (ndm_md_park (rq->md)) {
    case 1:
      request_rebind (rq);
      break;
    case 0:
      break;
    case -1:
      request_abandon (rq, ESHUTDOWN, true);
      return false;
    }
  }
  if (delay && request_delay (rq) == -1) {
    request_abandon (rq, ESHUTDOWN, true);
    return false;
  }
  request_remap (rq);
  return true;
}

/* Rounds until every clone is finished: run the bios, decide, and pass
 * the gates between rounds.
 */
static void
request_run_rounds (struct ndm_request *rq)
{
  bool delay;

  do
    request_drive (rq);
  while (request_decide (rq, &delay) && request_next_round (rq, delay));
}

/* Block status: each target's answer (its own extents op, or the
 * default for contiguous bios), concatenated.  Returns false if nobody
 * answered for the first byte.
 */
static bool
request_extents (struct ndm_request *rq, GArray *out)
{
  unsigned i;

  for (i = 0; i < rq->nr_clones; i++) {
    struct ndm_clone *clone = &rq->clones[i];

    if (clone->ti->type->extents != NULL)
      clone->ti->type->extents (clone->ti, clone);
    else if (clone->bios != NULL)
      clone_extents_contiguous (clone);
  }
  request_collect_extents (rq, out);
  if (out->len == 0)
    return false;
  if (rq->flags & NDM_REQ_ONE)
    g_array_set_size (out, 1);
  return true;
}

/* The request's outcome: the error of its first failed clone (R3 across
 * clones), or its answer.
 */
static enum ndm_request_result
request_result (struct ndm_request *rq, GArray *out, int *err)
{
  const struct ndm_clone *failed = NULL;

  if (rq->first_err < rq->nr_clones)
    failed = &rq->clones[rq->first_err];
  if (failed != NULL && failed->quit)
    return NDM_RQ_QUIT;
  if (failed != NULL) {
    *err = failed->error;
    return NDM_RQ_ERROR;
  }
  if (rq->op == NDM_OP_BLOCK_STATUS && !request_extents (rq, out)) {
    *err = EIO;
    return NDM_RQ_ERROR;
  }
  return NDM_RQ_OK;
}

static enum ndm_request_result
request_run (struct ndm_request *rq, GArray *out, int *err)
{
  switch (request_admit (rq)) {
  case ADMIT_REFUSED:
    *err = EINVAL;
    return NDM_RQ_ERROR;
  case ADMIT_EMPTY:
    return NDM_RQ_OK;
  case ADMIT_RUN:
    break;
  }
  if (!request_map (rq)) {
    *err = ENOTSUP;
    return NDM_RQ_ERROR;
  }
  request_run_rounds (rq);
  return request_result (rq, out, err);
}

enum ndm_request_result
ndm_request_run (struct ndm_md *md, enum ndm_op op, void *buf,
                 uint64_t count, uint64_t offset, uint32_t flags,
                 GArray *out, int *err)
{
  struct ndm_request rq;
  enum ndm_request_result r;

  /* No waiter, no way to wait for the bios: fail before starting any
   * (R13).  ENOMEM, not EIO: the server is short of fds or memory, the
   * data is fine and the request may be retried as it is.
   */
  if (ndm_waiter_self () == NULL) {
    *err = ENOMEM;
    return NDM_RQ_ERROR;
  }
  if (ndm_md_enter (md) == -1)
    return NDM_RQ_QUIT;
  request_init (&rq, md, op, buf, count, offset, flags);
  rq.table = ndm_md_get_table (md);
  r = request_run (&rq, out, err);
  request_fini (&rq);
  ndm_md_exit (md);
  return r;
}

/* ---- background I/O for targets (dm-io) --------------------------------- */

/* Map the devices of where whose bit is in todo into the clone: a read
 * from the first only.
 */
static void
io_map (struct ndm_clone *clone, const struct ndm_io_where *where,
        unsigned n, uint64_t todo)
{
  unsigned i;

  for (i = 0; i < n; i++) {
    if (!(todo & (UINT64_C (1) << i)))
      continue;
    if (clone->op == NDM_OP_FLUSH)
      ndm_clone_map_flush (clone, where[i].dev);
    else
      ndm_clone_map_bio (clone, where[i].dev, where[i].offset, 0,
                         clone->len);
    if (clone->op == NDM_OP_READ)
      break;
  }
}

/* After a round: which devices failed, and which must run again (a bio
 * cancelled because another device's start failed, R6: the devices of
 * background I/O do not depend on each other).
 */
static uint64_t
io_settle (struct ndm_clone *clone, const struct ndm_io_where *where,
           unsigned n, uint64_t *failed, int *errs)
{
  uint64_t again = 0;
  struct ndm_bio *bio;
  unsigned i;

  for (i = 0; i < n; i++)
    ndm_clone_for_each_bio (bio, clone) {
      uint64_t bit = UINT64_C (1) << i;

      if (bio->dev != where[i].dev)
        continue;
      if (bio->cancelled)
        again |= bit;
      else if (ndm_bio_failed (bio) && !(*failed & bit)) {
        *failed |= bit;
        errs[i] = bio->status;
      }
    }
  return again & ~*failed;
}

int
ndm_target_io (struct ndm_target *ti, enum ndm_op op, uint32_t flags,
               const struct ndm_io_where *where, unsigned n, void *buf,
               uint64_t len, uint64_t *failed, int *err)
{
  struct ndm_md *md = ti->table->md;
  struct ndm_request rq;
  struct ndm_clone *clone;
  uint64_t bad = 0, todo;
  int errs[NDM_IO_MAX_WHERE];

  g_assert (n > 0 && n <= NDM_IO_MAX_WHERE);
  g_assert (op != NDM_OP_BLOCK_STATUS && op != NDM_OP_CACHE);
  if (ndm_waiter_self () == NULL) {
    *err = ENOMEM;
    return -1;
  }
  request_init (&rq, md, op, buf, len, 0, flags);
  ndm_table_ref (ti->table);
  rq.table = ti->table;
  rq.nr_clones = 1;
  clone = &rq.clones[0];
  *clone = (struct ndm_clone) {
    .rq = &rq, .ti = ti, .op = op, .flags = flags, .len = len,
    .orig_len = len, .buf = buf, .map_result = NDM_MAPIO_REMAPPED,
  };
  clone->bios_tail = &clone->bios;
  /* Each round runs at least the first device not yet done, or fails
   * it: at most n rounds.
   */
  for (todo = n == 64 ? ~UINT64_C (0) : (UINT64_C (1) << n) - 1;
       todo != 0; todo = io_settle (clone, where, n, &bad, errs)) {
    clone_free_bios (clone);
    io_map (clone, where, n, todo);
    rq.stop = false;
    rq.cursor_clone = 0;
    rq.cursor_bio = NULL;
    request_drive (&rq);
    request_note_flushes (&rq);
  }
  request_fini (&rq);
  if (failed != NULL)
    *failed = bad;
  if (bad == 0)
    return 0;
  *err = errs[__builtin_ctzll (bad)];
  return -1;
}
