/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: bios — splitting to device limits (R7), bounce buffers for
 * unaligned pieces (R7, R8), emulated FUA (R9), and the steps a bio goes
 * through between its device commands.
 *
 * ndm_clone_map_bio() is what targets call from map.  It cuts the piece
 * into bios the device accepts: at most max_data bytes per read or write,
 * aligned to the device's minimum block.  A piece that starts or ends
 * inside a block gets a bio of its own for that block, done through a
 * bounce buffer: read the block, then (writes and zeroes) patch it and
 * write it back.  Two such read-modify-writes of the same block would lose
 * one update, so each holds its block range as a cell in the prison of
 * its data (core/prison.c: the device's, or its target's where several
 * devices are paths to one export) while it runs, and a second waits.  An
 * aligned write never shares a block with another write unless the client
 * overlapped them, which NBD leaves undefined.  Every write also passes
 * the prison's quarantines (R10) before it starts.
 *
 * Thread model: map, start and cancel run on the request owner's thread.
 * ndm_bio_endio runs wherever the device completes the command (a leader
 * reading replies, a fake device's thread): it only records, copies a
 * bounced read out, releases what the bio held, and hands the bio back to
 * the owner (READY) or marks it DONE.  Every device command after the
 * first is started by the owner.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

#include "core.h"
#include "stats.h"

/* ---- allocation: a per-thread cache, owners allocate and free ---------- */

#define BIO_CACHE_MAX 256

struct bio_cache {
  struct ndm_bio *head;
  unsigned n;
};

static void
bio_cache_free (gpointer data)
{
  struct bio_cache *c = data;

  while (c->head != NULL) {
    struct ndm_bio *bio = c->head;

    c->head = bio->next;
    g_free (bio);
  }
  g_free (c);
}

static GPrivate bio_cache_key = G_PRIVATE_INIT (bio_cache_free);

static struct bio_cache *
bio_cache_get (void)
{
  struct bio_cache *c = g_private_get (&bio_cache_key);

  if (c == NULL) {
    c = g_new0 (struct bio_cache, 1);
    g_private_set (&bio_cache_key, c);
  }
  return c;
}

struct ndm_bio *
ndm_bio_alloc (void)
{
  struct bio_cache *c = bio_cache_get ();
  struct ndm_bio *bio = c->head;

  if (bio != NULL) {
    c->head = bio->next;
    c->n--;
    memset (bio, 0, sizeof *bio);
  }
  else
    bio = g_new0 (struct ndm_bio, 1);
  return bio;
}

void
ndm_bio_free (struct ndm_bio *bio)
{
  struct bio_cache *c = bio_cache_get ();

  g_assert (bio->bounce == NULL && !bio->rmw_locked && bio->budget == 0);
  if (bio->extents != NULL)
    g_array_unref (bio->extents);
  if (c->n >= BIO_CACHE_MAX) {
    g_free (bio);
    return;
  }
  bio->next = c->head;
  c->head = bio;
  c->n++;
}

/* ---- the zero region: emulated write-zeroes send from here ------------- */

static gpointer
zero_region_map (gpointer unused)
{
  /* Never written, so every page is the kernel's shared zero page: 64 MiB
   * of address space, no memory.
   */
  void *p = mmap (NULL, NDM_HARD_MAX_DATA, PROT_READ,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

  g_assert (p != MAP_FAILED);
  return p;
}

const void *
ndm_zero_buffer (uint64_t len)
{
  static GOnce once = G_ONCE_INIT;

  g_assert (len <= NDM_HARD_MAX_DATA);
  return g_once (&once, zero_region_map, NULL);
}

/* ---- mapping: clone piece -> bios ---------------------------------------- */

static inline uint64_t
align_down (uint64_t x, uint64_t a)
{
  return x & ~(a - 1);
}

static inline uint64_t
align_up (uint64_t x, uint64_t a)
{
  return (x + a - 1) & ~(a - 1);
}

/* R7: a write that does not bounce still holds a shared cell where a
 * read-modify-write may meet it: on a device with blocks (min > 1), and
 * in a prison that several paths share (their limits may differ).
 * Otherwise an RMW that read the block before this write landed writes
 * the old bytes back over it, after it was acknowledged.
 */
static bool
bio_may_meet_rmw (const struct ndm_bio *bio)
{
  return bio->dev->limits.min_block > 1 || bio->prison != bio->dev->prison;
}

/* Bios are kept in clone-offset order (stable among equal offsets: the
 * legs of one piece stay in map order), whatever order a target maps
 * them in: they are started in this order, so a start failure (R6)
 * cancels only bios at or after its own offset, and a cancelled bio can
 * never be a clone's frontier (R2, R3).  Targets map mostly in order,
 * so the tail is checked first.
 */
static void
clone_insert_bio (struct ndm_clone *clone, struct ndm_bio *bio)
{
  struct ndm_bio **pp = clone->bios_tail;

  if (clone->bios != NULL) {
    struct ndm_bio *last = (struct ndm_bio *)
      ((char *) clone->bios_tail - offsetof (struct ndm_bio, next));

    if (last->clone_off > bio->clone_off)
      for (pp = &clone->bios; (*pp)->clone_off <= bio->clone_off;
           pp = &(*pp)->next)
        ;
  }
  bio->next = *pp;
  *pp = bio;
  if (bio->next == NULL)
    clone->bios_tail = &bio->next;
  clone->nr_bios++;
}

static struct ndm_bio *
bio_add (struct ndm_clone *clone, struct ndm_device *dev,
         uint64_t dev_offset, uint64_t clone_off, uint64_t len)
{
  struct ndm_bio *bio = ndm_bio_alloc ();

  bio->clone = clone;
  bio->dev = dev;
  bio->op = clone->op;
  bio->flags = clone->flags;
  bio->dev_offset = dev_offset;
  bio->len = len;
  bio->clone_off = clone_off;
  if (clone->buf != NULL)
    bio->buf = clone->buf + clone_off;
  bio->state = NDM_BIO_NEW;
  bio->prison = clone->ti->prison != NULL ? clone->ti->prison : dev->prison;

  if ((bio->flags & NDM_REQ_FUA) && ndm_op_writes (bio->op)) {
    if (!dev->caps.fua) {
      bio->flags &= ~NDM_REQ_FUA;
      bio->emulate_fua = dev->caps.flush;
    }
  }
  if (ndm_op_writes (bio->op) && dev->caps.read_only)
    bio->status = EPERM;          /* fails when started, like a device would */

  clone_insert_bio (clone, bio);
  return bio;
}

/* A piece inside one device block: read-modify-write through a bounce. */
static void
bio_add_rmw (struct ndm_clone *clone, struct ndm_device *dev,
             uint64_t dev_offset, uint64_t clone_off, uint64_t len)
{
  uint32_t align = dev->limits.min_block;
  struct ndm_bio *bio = bio_add (clone, dev, dev_offset, clone_off, len);

  bio->rmw = true;
  bio->rmw_offset = align_down (dev_offset, align);
  bio->rmw_len = align_up (dev_offset + len, align) - bio->rmw_offset;
  if (bio->rmw_offset + bio->rmw_len > dev->size)
    bio->rmw_len = dev->size - bio->rmw_offset;
  /* A fast zero must not be slow: say so at once (NBD allows it). */
  if (bio->op == NDM_OP_ZERO && (bio->flags & NDM_REQ_FAST_ZERO))
    bio->status = ENOTSUP;
}

/* Read, write, and zero: unaligned head and tail bounce, the aligned
 * middle goes in pieces of at most max bytes.
 */
static void
map_aligned_pieces (struct ndm_clone *clone, struct ndm_device *dev,
                    uint64_t dev_offset, uint64_t clone_off, uint64_t len,
                    uint64_t max)
{
  uint32_t align = dev->limits.min_block;
  uint64_t pos = 0;

  if (dev_offset & (align - 1)) {
    uint64_t head = MIN (len, align - (dev_offset & (align - 1)));

    bio_add_rmw (clone, dev, dev_offset, clone_off, head);
    pos = head;
  }
  while (len - pos >= align) {
    uint64_t n = MIN (align_down (len - pos, align), max);

    bio_add (clone, dev, dev_offset + pos, clone_off + pos, n);
    pos += n;
  }
  if (pos < len)
    bio_add_rmw (clone, dev, dev_offset + pos, clone_off + pos, len - pos);
}

/* Trim, cache, block status: no data, so no bounce.  Trim keeps only the
 * aligned inside (it is advisory); cache and block status round out.
 */
static void
map_nodata_pieces (struct ndm_clone *clone, struct ndm_device *dev,
                   uint64_t dev_offset, uint64_t clone_off, uint64_t len)
{
  uint32_t align = dev->limits.min_block;
  uint64_t max = ndm_clone_max_bio_len (clone, dev);
  uint64_t start, end, pos;

  if (clone->op == NDM_OP_TRIM) {
    start = align_up (dev_offset, align);
    end = align_down (dev_offset + len, align);
  }
  else {
    start = dev_offset;
    end = dev_offset + len;
  }
  for (pos = start; pos < end; ) {
    uint64_t n = MIN (end - pos, max);
    /* The clone bytes of this bio start at the piece's first byte. */
    uint64_t coff = clone_off + (pos > dev_offset ? pos - dev_offset : 0);
    struct ndm_bio *bio = bio_add (clone, dev, pos, coff, n);

    if (clone->op == NDM_OP_BLOCK_STATUS && !dev->caps.extents)
      ndm_bio_complete_locally (bio);
    pos += n;
  }
}

uint64_t
ndm_clone_max_bio_len (const struct ndm_clone *clone,
                       const struct ndm_device *dev)
{
  uint32_t align = dev->limits.min_block;
  uint64_t max;

  switch (clone->op) {
  case NDM_OP_READ:
  case NDM_OP_WRITE:
    max = dev->limits.max_data;
    break;
  case NDM_OP_ZERO:
    /* Emulated zeroes are writes from the zero region. */
    max = dev->caps.zero ? dev->limits.max_len : dev->limits.max_data;
    break;
  default:
    max = dev->limits.max_len;
    break;
  }
  return MAX (align_down (max, align), align);
}

void
ndm_clone_map_bio (struct ndm_clone *clone, struct ndm_device *dev,
                   uint64_t dev_offset, uint64_t clone_off, uint64_t len)
{
  g_assert (clone_off + len <= clone->len);

  switch (clone->op) {
  case NDM_OP_READ:
  case NDM_OP_WRITE:
    map_aligned_pieces (clone, dev, dev_offset, clone_off, len,
                        ndm_clone_max_bio_len (clone, dev));
    break;
  case NDM_OP_ZERO:
    if ((clone->flags & NDM_REQ_FAST_ZERO) &&
        !(dev->caps.zero && dev->caps.fast_zero)) {
      /* Emulated by writing zeros, or a device that did not say it can
       * zero fast (the flag must not reach it: a server that did not
       * advertise it may refuse, or abort, nbdkit 1.32 does): not fast.
       */
      struct ndm_bio *bio = bio_add (clone, dev, dev_offset, clone_off, len);

      bio->status = ENOTSUP;
      break;
    }
    map_aligned_pieces (clone, dev, dev_offset, clone_off, len,
                        ndm_clone_max_bio_len (clone, dev));
    break;
  case NDM_OP_TRIM:
    if (dev->caps.trim)
      map_nodata_pieces (clone, dev, dev_offset, clone_off, len);
    break;
  case NDM_OP_CACHE:
    if (dev->caps.cache)
      map_nodata_pieces (clone, dev, dev_offset, clone_off, len);
    break;
  case NDM_OP_BLOCK_STATUS:
    map_nodata_pieces (clone, dev, dev_offset, clone_off, len);
    break;
  case NDM_OP_FLUSH:
    ndm_clone_map_flush (clone, dev);
    break;
  }
}

void
ndm_clone_remap (struct ndm_clone *clone, struct ndm_device *dev,
                 uint64_t dev_offset)
{
  if (clone->op == NDM_OP_FLUSH)
    ndm_clone_map_flush (clone, dev);
  else
    ndm_clone_map_bio (clone, dev, dev_offset, 0, clone->len);
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
 * when its flush succeeded (ndm_request_note_flushes, at the end of each
 * round); within a round one flush bio per device is enough.
 */
void
ndm_clone_map_flush (struct ndm_clone *clone, struct ndm_device *dev)
{
  struct ndm_request *rq = clone->rq;
  struct ndm_bio *bio;

  if (!dev->caps.flush || dev_in (rq->flushed, dev) ||
      dev_in (rq->flush_mapped, dev))
    return;
  if (rq->flush_mapped == NULL)
    rq->flush_mapped = g_ptr_array_new ();
  g_ptr_array_add (rq->flush_mapped, dev);

  bio = bio_add (clone, dev, 0, 0, 0);
  bio->op = NDM_OP_FLUSH;
  bio->flags = 0;
}

void
ndm_request_note_flushes (struct ndm_request *rq)
{
  unsigned i;

  for (i = 0; i < rq->nr_clones; i++) {
    struct ndm_bio *bio;

    ndm_clone_for_each_bio (bio, &rq->clones[i])
      if (bio->op == NDM_OP_FLUSH && bio->status == 0 &&
          !dev_in (rq->flushed, bio->dev)) {
        if (rq->flushed == NULL)
          rq->flushed = g_ptr_array_new ();
        g_ptr_array_add (rq->flushed, bio->dev);
      }
  }
  if (rq->flush_mapped != NULL)
    g_ptr_array_set_size (rq->flush_mapped, 0);
}

void
ndm_bio_complete_locally (struct ndm_bio *bio)
{
  /* A device without base:allocation: all data, as NBD's default says. */
  ndm_bio_add_extent (bio, bio->dev_offset, bio->len, 0);
  bio->state = NDM_BIO_DONE;
}

void
ndm_bio_add_extent (struct ndm_bio *bio, uint64_t offset, uint64_t length,
                    uint32_t type)
{
  struct ndm_extent e = { .offset = offset, .length = length, .type = type };

  if (bio->extents == NULL)
    bio->extents = g_array_new (FALSE, FALSE, sizeof (struct ndm_extent));
  g_array_append_val (bio->extents, e);
}

/* ---- starting and completing ------------------------------------------------ */

/* Give back what the bio holds, record its status, mark it DONE and tell
 * the request (counted: it was started, so the request's pending count
 * includes it).  After this the caller must not touch bio.
 */
static void
bio_done (struct ndm_bio *bio, int status, bool counted)
{
  struct ndm_request *rq = bio->clone->rq;
  struct ndm_md *md = rq->md;

  if (bio->bounce != NULL) {
    g_free (bio->bounce);
    bio->bounce = NULL;
    ndm_budget_put (&md->bounce, bio->rmw_len);
  }
  if (bio->rmw_locked) {
    ndm_prison_release (bio->prison, &bio->rmw_cell);
    bio->rmw_locked = false;
  }
  if (bio->budget != 0) {
    ndm_budget_put (&md->inflight, bio->budget);
    bio->budget = 0;
  }
  bio->status = status;
  if (status != 0)
    bio->fail_seq = g_atomic_int_add (&rq->fail_seq, 1);
  g_atomic_int_set (&bio->state, NDM_BIO_DONE);
  if (counted)
    ndm_request_bio_done (rq, bio);
}

void
ndm_bio_cancel (struct ndm_bio *bio, int status)
{
  g_assert (bio->state == NDM_BIO_NEW);
  bio_done (bio, status, false);
}

/* The device command for the bio's current step. */
static void
bio_cmd (struct ndm_bio *bio, struct ndm_cmd *cmd)
{
  struct ndm_device *dev = bio->dev;
  uint32_t align = dev->limits.min_block;

  memset (cmd, 0, sizeof *cmd);
  switch (bio->step) {
  case NDM_STEP_IO:
    cmd->op = bio->op;
    cmd->offset = bio->dev_offset;
    cmd->len = bio->len;
    cmd->buf = bio->buf;
    cmd->flags = bio->flags & NDM_REQ_FUA;
    switch (bio->op) {
    case NDM_OP_ZERO:
      if (!dev->caps.zero) {
        cmd->op = NDM_OP_WRITE;
        cmd->buf = (void *) ndm_zero_buffer (bio->len);
      }
      else
        cmd->flags |= bio->flags & (NDM_REQ_MAY_TRIM | NDM_REQ_FAST_ZERO);
      break;
    case NDM_OP_CACHE:
    case NDM_OP_BLOCK_STATUS:
      /* Rounded out to the device's block; answers are clipped back. */
      cmd->offset = align_down (bio->dev_offset, align);
      cmd->len = MIN (align_up (bio->dev_offset + bio->len, align),
                      dev->size) - cmd->offset;
      cmd->flags = bio->flags & NDM_REQ_ONE;
      break;
    default:
      break;
    }
    break;
  case NDM_STEP_RMW_READ:
    cmd->op = NDM_OP_READ;
    cmd->offset = bio->rmw_offset;
    cmd->len = bio->rmw_len;
    cmd->buf = bio->bounce;
    break;
  case NDM_STEP_RMW_WRITE:
    cmd->op = NDM_OP_WRITE;
    cmd->offset = bio->rmw_offset;
    cmd->len = bio->rmw_len;
    cmd->buf = bio->bounce;
    cmd->flags = bio->flags & NDM_REQ_FUA;
    break;
  case NDM_STEP_FLUSH:
    cmd->op = NDM_OP_FLUSH;
    break;
  }
}

static int
bio_issue (struct ndm_bio *bio, int *err)
{
  struct ndm_request *rq = bio->clone->rq;
  struct ndm_device *dev = bio->dev;
  struct ndm_channel *ch = NULL;
  struct ndm_cmd cmd;

  bio_cmd (bio, &cmd);
  bio->cmd_op = cmd.op;
  bio->cmd_offset = cmd.offset;
  bio->cmd_len = cmd.len;
  bio->t_cmd = ndm_stats_start (dev->stats);
  if (dev->ops->submit (dev, bio, &cmd, ndm_request_channel_for (rq, dev),
                        &ch, err) == -1) {
    ndm_stats_done (dev->stats, cmd.op, cmd.len, *err, bio->t_cmd);
    return -1;
  }
  if (ch != NULL)
    ndm_request_add_channel (rq, dev, ch);
  return 0;
}

/* Bytes of the bio's data on the wire, charged to the in-flight cap. */
static uint64_t
bio_data_bytes (const struct ndm_bio *bio)
{
  if (bio->rmw)
    return bio->rmw_len;
  if (bio->op == NDM_OP_READ || bio->op == NDM_OP_WRITE ||
      (bio->op == NDM_OP_ZERO && !bio->dev->caps.zero))
    return bio->len;
  return 0;
}

/* A device said EAGAIN at submit (no connection yet, one is coming): the
 * owner looks again after NDM_DEVICE_RETRY_US, leading its channels
 * meanwhile.  The device bounds how long it says so.
 */
static void
bio_retry_later (struct ndm_request *rq)
{
  int64_t when = g_get_monotonic_time () + NDM_DEVICE_RETRY_US;

  if (rq->wait_until == 0 || when < rq->wait_until)
    rq->wait_until = when;
}

static int
bio_start_new (struct ndm_bio *bio, int *err)
{
  struct ndm_request *rq = bio->clone->rq;
  struct ndm_md *md = rq->md;
  uint64_t data = bio_data_bytes (bio);
  int64_t not_before;

  /* A target delays it (delay): the owner waits, leading its channels.
   * Atomic: a suspend may release it early (ndm_clone_release_delay).
   */
  not_before = ndm_clone_not_before (bio->clone);
  if (not_before != 0 && g_get_monotonic_time () < not_before) {
    if (rq->wait_until == 0 || not_before < rq->wait_until)
      rq->wait_until = not_before;
    return 1;
  }

  if (bio->status != 0) {
    /* Known to fail before any command (read-only device, fast zero that
     * cannot be fast): a start failure like any other (R6).
     */
    *err = bio->status;
    bio_done (bio, *err, false);
    return -1;
  }

  /* The data's prison: a write waits out a quarantine (R10) and a
   * read-modify-write of another write in its block, or a direct write
   * in flight there (R7).  Past a
   * quarantine's deadline the write fails: a start failure (R6).
   */
  if (!bio->rmw_locked) {
    bool writes = ndm_op_writes (bio->op);
    bool cell = writes && (bio->rmw || bio_may_meet_rmw (bio));
    int r;

    if (cell) {
      bio->rmw_cell.shared = !bio->rmw;
      r = ndm_prison_detain (bio->prison, &bio->rmw_cell,
                             bio->rmw ? bio->rmw_offset : bio->dev_offset,
                             bio->rmw ? bio->rmw_len : bio->len, true,
                             rq->owner, &rq->wait_until, err);
    }
    else
      r = ndm_prison_detain (bio->prison, NULL, bio->dev_offset, bio->len,
                             writes, rq->owner, &rq->wait_until, err);
    if (r == 1)
      return 1;
    if (r == -1) {
      bio_done (bio, *err, false);
      return -1;
    }
    bio->rmw_locked = cell;
  }

  if (data != 0 && bio->budget == 0) {
    if (!ndm_budget_try_get (&md->inflight, data, rq->owner)) {
      rq->waits_inflight = true;
      return 1;
    }
    bio->budget = data;
    if (rq->waits_inflight) {
      ndm_budget_forget (&md->inflight, rq->owner);
      rq->waits_inflight = false;
    }
  }
  if (bio->rmw && bio->bounce == NULL) {
    if (!ndm_budget_try_get (&md->bounce, bio->rmw_len, rq->owner)) {
      rq->waits_bounce = true;
      return 1;
    }
    if (rq->waits_bounce) {
      ndm_budget_forget (&md->bounce, rq->owner);
      rq->waits_bounce = false;
    }
    bio->bounce = g_malloc (bio->rmw_len);
  }
  bio->step = bio->rmw ? NDM_STEP_RMW_READ : NDM_STEP_IO;

  g_atomic_int_inc (&rq->pending);
  g_atomic_int_set (&bio->state, NDM_BIO_INFLIGHT);
  if (bio_issue (bio, err) == -1) {
    if (*err == EAGAIN) {
      /* The device has no connection now and one is coming: start
       * again soon, keeping what the bio holds.
       */
      g_atomic_int_set (&bio->state, NDM_BIO_NEW);
      g_atomic_int_add (&rq->pending, -1);
      bio_retry_later (rq);
      return 1;
    }
    bio_done (bio, *err, true);
    return -1;
  }
  return 0;
}

static void
bio_start_next_step (struct ndm_bio *bio)
{
  struct ndm_request *rq = bio->clone->rq;
  int err;

  if (bio->step == NDM_STEP_RMW_WRITE) {
    char *dst = bio->bounce + (bio->dev_offset - bio->rmw_offset);

    if (bio->op == NDM_OP_ZERO)
      memset (dst, 0, bio->len);
    else
      memcpy (dst, bio->buf, bio->len);
  }
  g_atomic_int_set (&bio->state, NDM_BIO_INFLIGHT);
  if (bio_issue (bio, &err) == -1) {
    if (err == EAGAIN) {
      g_atomic_int_set (&bio->state, NDM_BIO_READY);
      bio->ready_next = rq->deferred;
      rq->deferred = bio;
      bio_retry_later (rq);
      return;
    }
    bio_done (bio, err, true);
  }
}

int
ndm_bio_start (struct ndm_bio *bio, int *err)
{
  switch (g_atomic_int_get (&bio->state)) {
  case NDM_BIO_NEW:
    return bio_start_new (bio, err);
  case NDM_BIO_READY:
    bio_start_next_step (bio);
    return 0;
  default:
    g_assert_not_reached ();
  }
}

/* The owner must go on with this bio: it is READY for bio->step. */
static void
bio_ready (struct ndm_bio *bio, enum ndm_bio_step next)
{
  bio->step = next;
  g_atomic_int_set (&bio->state, NDM_BIO_READY);
  ndm_request_bio_ready (bio->clone->rq, bio);
}

void
ndm_bio_quarantine (struct ndm_bio *bio, int status, struct ndm_ghost *g)
{
  if (status != 0 && g != NULL && ndm_op_writes (bio->cmd_op))
    ndm_ghost_quarantine (g, bio->prison, bio->cmd_offset, bio->cmd_len);
}

void
ndm_bio_endio (struct ndm_bio *bio, int status)
{
  ndm_stats_done (bio->dev->stats, bio->cmd_op, bio->cmd_len, status,
                  bio->t_cmd);
  if (status == ESHUTDOWN && bio->reissues < NDM_MAX_REISSUES) {
    /* The server did not run it: it is going away, and may be coming
     * back (restarted behind the same address).  The same step again,
     * on a fresh connection to the same device (the device drops those
     * of the old server and says EAGAIN until it has one).
     */
    bio->reissues++;
    bio_ready (bio, bio->step);
    return;
  }
  if (status == 0) {
    switch (bio->step) {
    case NDM_STEP_IO:
      if (bio->emulate_fua) {
        bio_ready (bio, NDM_STEP_FLUSH);
        return;
      }
      break;
    case NDM_STEP_RMW_READ:
      if (bio->op == NDM_OP_READ) {
        memcpy (bio->buf, bio->bounce + (bio->dev_offset - bio->rmw_offset),
                bio->len);
        break;
      }
      bio_ready (bio, NDM_STEP_RMW_WRITE);
      return;
    case NDM_STEP_RMW_WRITE:
      if (bio->emulate_fua) {
        bio_ready (bio, NDM_STEP_FLUSH);
        return;
      }
      break;
    case NDM_STEP_FLUSH:
      break;
    }
  }
  bio_done (bio, status, true);
}
