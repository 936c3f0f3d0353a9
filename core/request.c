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
 * Lock order, outermost first:
 *   c. ndm_md.command_lock           control only: one state-changing
 *                                    command at a time (suspend, reload,
 *                                    resume, clear), held across drains,
 *                                    device opens and the swap; no
 *                                    request thread ever takes it
 *   0. ndm_md.state_lock             suspend state; control path and the
 *                                    request gate's slow paths
 *   1. ndm_md.table_lock (GRWLock)   taken only to ref the live table
 *   2. <target>_c.lock                path/leg state (targets that have one),
 *                                    and their path checker's
 *                                    (core/checker.c: no lock of its own;
 *                                    its thread takes this one)
 *   3. ndm_request.lock               the ready list
 *   4. leaf locks:                    ndm_channel.lock, ndm_budget.lock,
 *                                     ndm_md.event_lock, never nested;
 *                                     ndm_ghost.lock before
 *                                     ndm_prison.lock (core/prison.c)
 * No ndm lock is held across a device submit or poll: libnbd runs
 * completion callbacks under its handle lock, and those callbacks take
 * locks 3 and 4.  ndm_md.devices_lock is control-path only.
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

/* ---- called from completions ----------------------------------------------- */

void
ndm_request_bio_ready (struct ndm_request *rq, struct ndm_bio *bio)
{
  struct ndm_waiter *owner = rq->owner;

  /* rq->ready is read without the lock (request_settled, the fast path
   * of request_run_ready): every store is atomic too.
   */
  g_mutex_lock (&rq->lock);
  bio->ready_next = rq->ready;
  g_atomic_pointer_set (&rq->ready, bio);
  g_mutex_unlock (&rq->lock);
  ndm_waiter_kick (owner);
}

void
ndm_request_bio_done (struct ndm_request *rq, struct ndm_bio *bio)
{
  /* Read the owner before the decrement: once pending reaches 0 the owner
   * may return and rq is gone.  Waiters outlive requests.
   */
  struct ndm_waiter *owner = rq->owner;

  if (g_atomic_int_dec_and_test (&rq->pending))
    ndm_waiter_kick (owner);
}

/* ---- channels the request uses ------------------------------------------- */

struct ndm_channel *
ndm_request_channel_for (struct ndm_request *rq, struct ndm_device *dev)
{
  unsigned i;

  for (i = 0; i < rq->nr_channels; i++)
    if (rq->channels[i].dev == dev)
      return rq->channels[i].ch;
  return NULL;
}

void
ndm_request_add_channel (struct ndm_request *rq, struct ndm_device *dev,
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
 * every bio succeeded: up to the lowest clone offset of a failed bio, or
 * the whole clone.  The error is that failed bio's: the lowest-offset
 * failure, and among failures at the same offset (legs of a mirror) the
 * first to arrive; a failure that arrived later never replaces it.
 * Out-of-order successes beyond a failure are not credited.
 */
void
ndm_clone_settle (struct ndm_clone *clone)
{
  struct ndm_bio *bio, *front = NULL;

  if (clone->kill_error != 0) {
    clone->credited = 0;
    clone->error = clone->kill_error;
    return;
  }
  ndm_clone_for_each_bio (bio, clone) {
    g_assert (g_atomic_int_get (&bio->state) == NDM_BIO_DONE);
    if (bio->status == 0)
      continue;
    if (front == NULL || bio->clone_off < front->clone_off ||
        (bio->clone_off == front->clone_off &&
         bio->fail_seq < front->fail_seq))
      front = bio;
  }
  clone->credited = front != NULL ? front->clone_off : clone->len;
  clone->error = front != NULL ? front->status : 0;
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

    memset (clone, 0, sizeof *clone);
    clone->rq = rq;
    clone->ti = ti;
    clone->op = rq->op;
    clone->flags = rq->flags;
    clone->offset = pos;
    clone->len = n_bytes;
    clone->buf = buf != NULL ? buf + (pos - start) : NULL;
    clone->orig_len = n_bytes;
    clone->t_start = ndm_stats_start (ti->stats);
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
    g_mutex_lock (&rq->lock);
    *tail = rq->ready;
    g_atomic_pointer_set (&rq->ready, NULL);
    g_mutex_unlock (&rq->lock);
  }

  while ((bio = list) != NULL) {
    list = bio->ready_next;
    ndm_bio_start (bio, &err);
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
      if (g_atomic_int_get (&rq->cursor_bio->state) == NDM_BIO_NEW)
        ndm_bio_cancel (rq->cursor_bio, NDM_ECANCELED);
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
      int r;

      if (g_atomic_int_get (&bio->state) != NDM_BIO_NEW)
        continue;
      r = ndm_bio_start (bio, &err);
      if (r == 1)
        return;                 /* waits for budget or an RMW range */
      if (r == 0)
        rq->nr_started++;
      if (r == -1) {
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

/* DM_*_DELAY_REQUEUE: keep leading channels (others may need us) while
 * the delay runs: NDM_DELAY_REQUEUE_MS, or less where a target asked for
 * a sooner retry (clone->not_before, e.g. multipath waiting for a fenced
 * path to retire its commands).
 */
static int
request_delay (struct ndm_request *rq)
{
  gint64 end = g_get_monotonic_time () + NDM_DELAY_REQUEUE_MS * 1000;
  gint64 now;
  unsigned i;

  /* Held for a path or a leg: give up if the server stops. */
  if (ndm_md_quitting (rq->md))
    return -1;

  for (i = 0; i < rq->nr_clones; i++) {
    struct ndm_clone *clone = &rq->clones[i];
    int64_t nb = ndm_clone_not_before (clone);

    if (!clone->finished && nb > 0 && nb < end)
      end = nb;
  }

  while ((now = g_get_monotonic_time ()) < end) {
    ndm_waiter_prepare (rq->owner);
    request_wait (rq, (int) ((end - now + 999) / 1000));
  }
  return 0;
}

/* The request ends between rounds although clones were requeued (nothing
 * of it is in flight): the front end quits (NDM_EQUIT), or rounds went
 * on starting nothing.  What is unfinished ends with error.
 */
static void
request_abandon (struct ndm_request *rq, unsigned *first_err, int error)
{
  unsigned i;

  for (i = 0; i < rq->nr_clones; i++) {
    struct ndm_clone *clone = &rq->clones[i];

    if (clone->finished)
      continue;
    clone_finish (clone, error);
    if (i < *first_err)
      *first_err = i;
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
  static const char *const opname[] = {
    [NDM_OP_READ] = "read", [NDM_OP_WRITE] = "write",
    [NDM_OP_FLUSH] = "flush", [NDM_OP_TRIM] = "trim",
    [NDM_OP_ZERO] = "zero", [NDM_OP_CACHE] = "cache",
    [NDM_OP_BLOCK_STATUS] = "block status",
  };
  struct ndm_bio *bio = clone_frontier_bio (clone);

  if (bio != NULL)
    ndm_log_error ("%s: device %s: %s at sector %" PRIu64
                   " (%s of %" PRIu64 " bytes at %" PRIu64 ")",
                   clone->ti->type->name, bio->dev->uri,
                   ndm_errno_name (clone->error),
                   bio->dev_offset >> NDM_SECTOR_SHIFT, opname[rq->op],
                   rq->len, rq->offset);
  else
    ndm_log_error ("%s: %s at sector %" PRIu64 " (%s of %" PRIu64
                   " bytes at %" PRIu64 ")",
                   clone->ti->type->name, ndm_errno_name (clone->error),
                   (clone->offset + clone->credited) >> NDM_SECTOR_SHIFT,
                   opname[rq->op], rq->len, rq->offset);
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
  if (*error == NDM_ECANCELED) {
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
 * *delay says whether to wait first.  *first_err is the index of the
 * first clone, in offset order, that finished with an error (nr_clones if
 * none): its error is the request's (R3 across clones).  Clones after it
 * are not run again; clones before it go on, and if one of them fails in
 * a later round its error takes over.
 */
static bool
request_decide (struct ndm_request *rq, unsigned *first_err, bool *delay)
{
  bool again = false;
  unsigned i;

  *delay = false;
  ndm_request_note_flushes (rq);
  for (i = 0; i < rq->nr_clones; i++) {
    struct ndm_clone *clone = &rq->clones[i];
    int r, error;

    if (clone->finished)
      continue;
    r = clone_decide (clone, &error);
    if (i > *first_err) {
      /* The request fails anyway; its target has still seen the outcome
       * (a path may have failed).
       */
      clone_finish (clone, error == NDM_ECANCELED ? 0 : error);
      continue;
    }
    switch (r) {
    case NDM_ENDIO_DONE:
    case NDM_ENDIO_ERROR:
      clone_finish (clone, error);
      if (error != 0) {
        log_clone_error (rq, clone);
        *first_err = i;
      }
      break;
    case NDM_ENDIO_DELAY_REQUEUE:
      *delay = true;
      /* fall through */
    case NDM_ENDIO_REQUEUE:
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
 * the client).  *first_err is recomputed for the new clone array.
 */
static void
request_rebind (struct ndm_request *rq, unsigned *first_err)
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

  *first_err = rq->nr_clones;
  for (i = 0; i < rq->nr_clones; i++)
    if (rq->clones[i].finished && rq->clones[i].error != 0) {
      *first_err = i;
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
  unsigned i;

  for (i = 0; i < rq->nr_clones; i++) {
    struct ndm_bio *bio;

    ndm_clone_for_each_bio (bio, &rq->clones[i])
      if (bio->status == ENOTSUP)
        return true;
  }
  return false;
}

/* The request ends before any bio starts (a fast zero refused whole):
 * what each map took goes back, as for a clone whose bios never started
 * (R6).  Without it a delay target's queue keeps the freed clone (its
 * status then reads it) and a multipath selector counts the I/O in
 * flight for ever.
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
  g_mutex_init (&rq->lock);
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
  g_mutex_clear (&rq->lock);
  ndm_table_unref (rq->table);
}

static int
request_run (struct ndm_md *md, enum ndm_op op, void *buf, uint64_t count,
             uint64_t offset, uint32_t flags, GArray *out, int *err)
{
  struct ndm_request rq;
  unsigned first_err, empty_rounds = 0;
  int rq_error = 0;
  bool delay;
  unsigned i;

  request_init (&rq, md, op, buf, count, offset, flags);
  rq.table = ndm_md_get_table (md);
  if (op != NDM_OP_FLUSH &&
      (offset > rq.table->size || count > rq.table->size - offset)) {
    ndm_log_error ("request out of range: %" PRIu64 " bytes at %" PRIu64
                   ", the device has %" PRIu64 " bytes",
                   count, offset, rq.table->size);
    request_fini (&rq);
    *err = EINVAL;
    return -1;
  }
  if (count == 0 && op != NDM_OP_FLUSH) {
    request_fini (&rq);
    return 0;
  }

  request_make_clones (&rq);
  for (i = 0; i < rq.nr_clones; i++)
    clone_map (&rq.clones[i]);
  if (op == NDM_OP_ZERO && (flags & NDM_REQ_FAST_ZERO) &&
      request_cannot_be_fast (&rq)) {
    request_release_unstarted (&rq);
    request_fini (&rq);
    *err = ENOTSUP;
    return -1;
  }

  first_err = rq.nr_clones;
  for (;;) {
    int parked = 0;

    request_drive (&rq);
    if (!request_decide (&rq, &first_err, &delay))
      break;
    /* R13: every round sees the quit gate, and rounds that start nothing
     * and ask for no delay (a target that requeues what cannot start)
     * are bounded: the request fails with the start error.
     */
    if (ndm_md_quitting (md)) {
      request_abandon (&rq, &first_err, NDM_EQUIT);
      break;
    }
    if (rq.nr_started > 0)
      empty_rounds = 0;
    else if (!delay && ++empty_rounds >= NDM_MAX_EMPTY_ROUNDS) {
      int e = rq.start_error != 0 ? rq.start_error : EIO;

      ndm_log_error ("request gives up after %u rounds that started "
                     "nothing: %s (%" PRIu64 " bytes at %" PRIu64 ")",
                     empty_rounds, ndm_errno_name (e), rq.len, rq.offset);
      request_abandon (&rq, &first_err, e);
      break;
    }
    if (g_atomic_int_get (&md->suspended)) {
      /* Leave the channels first: other owners may be waiting for this
       * one to read their replies, and the suspend for them.
       */
      request_release_channels (&rq);
      parked = ndm_md_park (md);
      if (parked == 1)
        request_rebind (&rq, &first_err);
    }
    if (parked == -1 || (delay && request_delay (&rq) == -1)) {
      request_abandon (&rq, &first_err, NDM_EQUIT);
      break;
    }

    /* Map again what was requeued, then start from the first of them. */
    rq.stop = false;
    rq.nr_started = 0;
    rq.start_error = 0;
    rq.cursor_clone = rq.nr_clones;
    rq.cursor_bio = NULL;
    for (i = 0; i < rq.nr_clones; i++) {
      struct ndm_clone *clone = &rq.clones[i];

      if (clone->finished)
        continue;
      if (rq.cursor_clone == rq.nr_clones)
        rq.cursor_clone = i;
      /* A DELAY_REQUEUE here is waited for when the round is decided. */
      clone_map (clone);
    }
  }
  if (first_err < rq.nr_clones)
    rq_error = rq.clones[first_err].error;

  if (rq_error == 0 && op == NDM_OP_BLOCK_STATUS) {
    for (i = 0; i < rq.nr_clones; i++) {
      struct ndm_clone *clone = &rq.clones[i];

      if (clone->ti->type->extents != NULL)
        clone->ti->type->extents (clone->ti, clone);
      else if (clone->bios != NULL)
        clone_extents_contiguous (clone);
    }
    request_collect_extents (&rq, out);
    if (out->len == 0)
      rq_error = EIO;           /* nobody answered for the first byte */
    else if (flags & NDM_REQ_ONE)
      g_array_set_size (out, 1);
  }

  request_fini (&rq);
  if (rq_error != 0) {
    *err = rq_error;
    return -1;
  }
  return 0;
}

int
ndm_request_run (struct ndm_md *md, enum ndm_op op, void *buf,
                 uint64_t count, uint64_t offset, uint32_t flags,
                 GArray *out, int *err)
{
  int r;

  /* No waiter, no way to wait for the bios: fail before starting any
   * (R13).  ENOMEM, not EIO: the server is short of fds or memory, the
   * data is fine and the request may be retried as it is.
   */
  if (ndm_waiter_self () == NULL) {
    *err = ENOMEM;
    return -1;
  }
  if (ndm_md_enter (md) == -1) {
    *err = NDM_EQUIT;
    return -1;
  }
  r = request_run (md, op, buf, count, offset, flags, out, err);
  ndm_md_exit (md);
  return r;
}
