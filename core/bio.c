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
 * A bio knows its request only through the two completion calls
 * (ndm_request_bio_ready, ndm_request_bio_done), as dm's end_clone_bio
 * knows its tio: ndm_bio_start says why a bio cannot start (a delay and
 * its deadline, a budget, a cell) and core/request.c keeps the books.
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

/* Uninitialised: bio_add fills it whole. */
static struct ndm_bio *
bio_alloc (void)
{
  struct bio_cache *c = bio_cache_get ();
  struct ndm_bio *bio = c->head;

  if (bio == NULL)
    return g_new (struct ndm_bio, 1);
  c->head = bio->next;
  c->n--;
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
  struct ndm_bio *bio = bio_alloc ();

  *bio = (struct ndm_bio) {
    .clone = clone, .dev = dev, .op = clone->op, .flags = clone->flags,
    .dev_offset = dev_offset, .len = len, .clone_off = clone_off,
    .buf = clone->buf != NULL ? clone->buf + clone_off : NULL,
    .state = NDM_BIO_NEW,
    .prison = clone->ti->prison != NULL ? clone->ti->prison : dev->prison,
  };

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

void
ndm_bio_add_flush (struct ndm_clone *clone, struct ndm_device *dev)
{
  struct ndm_bio *bio = bio_add (clone, dev, 0, 0, 0);

  bio->op = NDM_OP_FLUSH;
  bio->flags = 0;
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

/* The data mapped device's: its budgets (R8) charged by this bio. */
static struct ndm_md *
bio_md (const struct ndm_bio *bio)
{
  return bio->clone->ti->table->md;
}

/* Give back what the bio holds, record its status and mark it DONE.
 * After this only the owner may touch bio.
 */
static void
bio_finish (struct ndm_bio *bio, int status)
{
  struct ndm_md *md = bio_md (bio);

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
  g_atomic_int_set (&bio->state, NDM_BIO_DONE);
}

void
ndm_bio_cancel (struct ndm_bio *bio)
{
  g_assert (bio->state == NDM_BIO_NEW);
  bio->cancelled = true;
  bio_finish (bio, 0);
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
  case NDM_STEP_RMW_WRITE:
    /* The covering blocks, through the bounce buffer. */
    cmd->offset = bio->rmw_offset;
    cmd->len = bio->rmw_len;
    cmd->buf = bio->bounce;
    if (bio->step == NDM_STEP_RMW_READ)
      cmd->op = NDM_OP_READ;
    else {
      cmd->op = NDM_OP_WRITE;
      cmd->flags = bio->flags & NDM_REQ_FUA;
    }
    break;
  case NDM_STEP_FLUSH:
    cmd->op = NDM_OP_FLUSH;
    break;
  }
}

static enum ndm_bio_start_result
bio_wait (struct ndm_bio_start *s, enum ndm_bio_wait why, int64_t until)
{
  s->wait = why;
  s->until = until;
  return NDM_BIO_WAITS;
}

/* Send the command of the bio's current step.  Returns ISSUED; WAITS
 * (the device has no connection now and one is coming: the bio keeps
 * what it holds, goes back to state was, and is started again soon); or
 * FAILED with s->err, the bio DONE.
 */
static enum ndm_bio_start_result
bio_issue (struct ndm_bio *bio, enum ndm_bio_state was,
           struct ndm_bio_start *s)
{
  struct ndm_device *dev = bio->dev;
  struct ndm_cmd cmd;

  bio_cmd (bio, &cmd);
  bio->cmd_op = cmd.op;
  bio->cmd_offset = cmd.offset;
  bio->cmd_len = cmd.len;
  bio->t_cmd = ndm_stats_start (dev->stats);
  g_atomic_int_set (&bio->state, NDM_BIO_INFLIGHT);
  if (dev->ops->submit (dev, bio, &cmd, s->channel, &s->new_channel,
                        &s->err) == 0)
    return NDM_BIO_ISSUED;
  if (s->err == EAGAIN && !bio->clone->failfast) {
    /* No command went out: nothing to count. */
    ndm_stats_abandon (dev->stats);
    g_atomic_int_set (&bio->state, was);
    return bio_wait (s, NDM_BIO_WAIT_DEVICE,
                     g_get_monotonic_time () + NDM_DEVICE_RETRY_US);
  }
  /* The device is coming back, but the target has somewhere else to go
   * now: a path error it acts on (fail the path or leg, go elsewhere).
   */
  if (s->err == EAGAIN)
    s->err = ENOTCONN;
  ndm_stats_done (dev->stats, cmd.op, cmd.len, s->err, bio->t_cmd);
  bio_finish (bio, s->err);
  return NDM_BIO_FAILED;
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

static enum ndm_bio_start_result
bio_start_failed (struct ndm_bio *bio, struct ndm_bio_start *s, int err)
{
  s->err = err;
  bio_finish (bio, err);
  return NDM_BIO_FAILED;
}

/* The data's prison: a write waits out a quarantine (R10) and a
 * read-modify-write of another write in its block, or a direct write in
 * flight there (R7).  Past a quarantine's deadline the write fails: a
 * start failure (R6).  Returns 0 (go), 1 (wait until s->until or a
 * kick), -1 with s->err.
 */
static int
bio_detain (struct ndm_bio *bio, struct ndm_bio_start *s)
{
  bool writes = ndm_op_writes (bio->op);
  bool cell = writes && (bio->rmw || bio_may_meet_rmw (bio));
  int r;

  if (bio->rmw_locked)
    return 0;
  s->until = 0;
  if (cell) {
    bio->rmw_cell.shared = !bio->rmw;
    r = ndm_prison_detain (bio->prison, &bio->rmw_cell,
                           bio->rmw ? bio->rmw_offset : bio->dev_offset,
                           bio->rmw ? bio->rmw_len : bio->len, true,
                           s->owner, &s->until, &s->err);
  }
  else
    r = ndm_prison_detain (bio->prison, NULL, bio->dev_offset, bio->len,
                           writes, s->owner, &s->until, &s->err);
  if (r == 0)
    bio->rmw_locked = cell;
  return r;
}

static enum ndm_bio_start_result
bio_start_new (struct ndm_bio *bio, struct ndm_bio_start *s)
{
  struct ndm_md *md = bio_md (bio);
  uint64_t data = bio_data_bytes (bio);
  int64_t not_before;

  /* A target delays it (delay).  Atomic: a suspend may release it early
   * (ndm_clone_release_delay).
   */
  not_before = ndm_clone_not_before (bio->clone);
  if (not_before != 0 && g_get_monotonic_time () < not_before)
    return bio_wait (s, NDM_BIO_WAIT_DELAY, not_before);

  /* Known to fail before any command (read-only device, fast zero that
   * cannot be fast): a start failure like any other (R6).
   */
  if (bio->status != 0)
    return bio_start_failed (bio, s, bio->status);

  switch (bio_detain (bio, s)) {
  case 1:
    return bio_wait (s, NDM_BIO_WAIT_PRISON, s->until);
  case -1:
    return bio_start_failed (bio, s, s->err);
  }

  if (data != 0 && bio->budget == 0) {
    if (!ndm_budget_try_get (&md->inflight, data, s->owner))
      return bio_wait (s, NDM_BIO_WAIT_INFLIGHT, 0);
    bio->budget = data;
  }
  if (bio->rmw && bio->bounce == NULL) {
    if (!ndm_budget_try_get (&md->bounce, bio->rmw_len, s->owner))
      return bio_wait (s, NDM_BIO_WAIT_BOUNCE, 0);
    bio->bounce = g_malloc (bio->rmw_len);
  }
  bio->step = bio->rmw ? NDM_STEP_RMW_READ : NDM_STEP_IO;
  return bio_issue (bio, NDM_BIO_NEW, s);
}

static enum ndm_bio_start_result
bio_start_next_step (struct ndm_bio *bio, struct ndm_bio_start *s)
{
  if (bio->step == NDM_STEP_RMW_WRITE) {
    char *dst = bio->bounce + (bio->dev_offset - bio->rmw_offset);

    if (bio->op == NDM_OP_ZERO)
      memset (dst, 0, bio->len);
    else
      memcpy (dst, bio->buf, bio->len);
  }
  return bio_issue (bio, NDM_BIO_READY, s);
}

enum ndm_bio_start_result
ndm_bio_start (struct ndm_bio *bio, struct ndm_bio_start *s)
{
  s->new_channel = NULL;
  switch (g_atomic_int_get (&bio->state)) {
  case NDM_BIO_NEW:
    return bio_start_new (bio, s);
  case NDM_BIO_READY:
    return bio_start_next_step (bio, s);
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
  if (status == ESHUTDOWN && !bio->clone->failfast &&
      bio->reissues < NDM_MAX_REISSUES) {
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
    case NDM_STEP_RMW_WRITE:
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
    case NDM_STEP_FLUSH:
      break;
    }
  }
  bio_finish (bio, status);
  ndm_request_bio_done (bio->clone->rq, bio);
}
