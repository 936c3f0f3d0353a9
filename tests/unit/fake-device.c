/* SPDX-License-Identifier: BSD-3-Clause */
/* The fake device of the unit tests (see fake-device.h).
 *
 * Thread model: submit on request owners; fake_* calls on the test thread;
 * a completion thread in "thread" mode; the channel's leader in "channel"
 * mode.  fd->lock protects everything mutable and is never held while
 * ndm_bio_endio runs.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "nbd-dm/bio.h"
#include "fake-device.h"

#define FAKE_BLOCK 4096         /* allocation granularity for extents */

struct pending {
  struct ndm_bio *bio;
  struct ndm_cmd cmd;
  unsigned index;
};

struct fake_chan {
  struct ndm_channel ch;
  struct fake_dev *fd;
  int efd;                      /* "the socket": readable = replies */
  unsigned prepares;            /* relaxed atomic: fake_wait_prepared */
};

/* A write a cut connection's server still holds (fence=ghost). */
struct ghost_write {
  struct ndm_cmd cmd;           /* buf is a copy */
};

struct fake_dev {
  struct ndm_device dev;
  char *name;
  enum fake_mode mode;
  bool ghost_fence;             /* fence=ghost */
  struct fake_dev *data_owner;  /* data=NAME: whose data; else NULL */

  GMutex lock;
  GCond cond;
  uint8_t *data;
  bool *allocated;              /* per FAKE_BLOCK, for block status */
  GPtrArray *pending;           /* struct pending *, submitted */
  GQueue arrived;               /* channel mode: replies to read */
  GArray *log;                  /* struct fake_cmd */
  GHashTable *fail_at;          /* index -> errno */
  unsigned fail_submit_at;
  int fail_submit_err;
  uint64_t fail_off, fail_len;
  int fail_err;
  bool partial_reads;
  uint64_t pending_bytes, max_pending_bytes;
  GThread *thread;
  bool stopping;
  bool closed;
  bool down;
  bool coming_back;
  uint64_t probe_size;
  unsigned probes, fences;
  struct fake_chan *chan;
  struct ndm_ghost *ghost;      /* of the last ghost fence, unresolved */
  GPtrArray *ghost_writes;      /* struct ghost_write *, to land */
};

static GMutex registry_lock;
static GHashTable *registry;    /* name -> struct fake_dev * (open ones) */

/* ---- applying a command to the data ---------------------------------------- */

static void
mark (struct fake_dev *fd, uint64_t off, uint64_t len, bool alloc)
{
  uint64_t b;

  for (b = off / FAKE_BLOCK; b * FAKE_BLOCK < off + len; b++)
    fd->allocated[b] = alloc;
}

/* With fd->lock held: do what the command says, return its errno.  May
 * record extents on the bio (before endio, as the contract says).
 */
static int
apply (struct fake_dev *fd, struct pending *p)
{
  const struct ndm_cmd *c = &p->cmd;
  gpointer v;
  int err = 0;

  if (g_hash_table_lookup_extended (fd->fail_at, GUINT_TO_POINTER (p->index),
                                    NULL, &v))
    err = GPOINTER_TO_INT (v);
  else if (fd->fail_len != 0 && c->op != NDM_OP_FLUSH &&
           c->offset < fd->fail_off + fd->fail_len &&
           fd->fail_off < c->offset + c->len)
    err = fd->fail_err;

  if (err != 0) {
    if (c->op == NDM_OP_READ && fd->partial_reads)
      memcpy (c->buf, fd->data + c->offset, c->len / 2);
    return err;
  }

  switch (c->op) {
  case NDM_OP_READ:
    memcpy (c->buf, fd->data + c->offset, c->len);
    break;
  case NDM_OP_WRITE:
    memcpy (fd->data + c->offset, c->buf, c->len);
    mark (fd, c->offset, c->len, true);
    break;
  case NDM_OP_ZERO:
    memset (fd->data + c->offset, 0, c->len);
    mark (fd, c->offset, c->len, !(c->flags & NDM_REQ_MAY_TRIM));
    break;
  case NDM_OP_TRIM:
    memset (fd->data + c->offset, 0, c->len);
    mark (fd, c->offset, c->len, false);
    break;
  case NDM_OP_BLOCK_STATUS: {
    uint64_t pos = c->offset, end = c->offset + c->len;

    /* Answer in FAKE_BLOCK runs, like a server would, stopping at the
     * first change when REQ_ONE.
     */
    while (pos < end) {
      bool a = fd->allocated[pos / FAKE_BLOCK];
      uint64_t run = pos;

      while (run < end && fd->allocated[run / FAKE_BLOCK] == a)
        run = MIN ((run / FAKE_BLOCK + 1) * FAKE_BLOCK, end);
      ndm_bio_add_extent (p->bio, pos, run - pos,
                          a ? 0 : NDM_EXTENT_HOLE | NDM_EXTENT_ZERO);
      pos = run;
      if (c->flags & NDM_REQ_ONE)
        break;
    }
    break;
  }
  case NDM_OP_FLUSH:
  case NDM_OP_CACHE:
    break;
  }
  return 0;
}

/* Complete p: apply it under the lock, end it outside. */
static void
finish (struct fake_dev *fd, struct pending *p, int forced_err)
{
  int err;

  g_mutex_lock (&fd->lock);
  err = forced_err != 0 ? forced_err : apply (fd, p);
  if (p->cmd.op == NDM_OP_READ || p->cmd.op == NDM_OP_WRITE)
    fd->pending_bytes -= p->cmd.len;
  g_mutex_unlock (&fd->lock);

  if (fd->chan != NULL)
    ndm_channel_ended (&fd->chan->ch);
  ndm_bio_endio (p->bio, err);
  g_free (p);
}

/* ---- the channel (leader/follower) ----------------------------------------- */

static int
chan_prepare (struct ndm_channel *ch, struct pollfd *pfd, int *timeout_ms)
{
  struct fake_chan *fc = (struct fake_chan *) ch;

  __atomic_fetch_add (&fc->prepares, 1, __ATOMIC_RELAXED);
  pfd->fd = fc->efd;
  pfd->events = POLLIN;
  pfd->revents = 0;
  return 0;
}

static void
chan_service (struct ndm_channel *ch, short revents)
{
  struct fake_chan *fc = (struct fake_chan *) ch;
  struct fake_dev *fd = fc->fd;
  uint64_t v;

  if (read (fc->efd, &v, sizeof v) != sizeof v)
    return;
  for (;;) {
    struct pending *p;

    g_mutex_lock (&fd->lock);
    p = g_queue_pop_head (&fd->arrived);
    g_mutex_unlock (&fd->lock);
    if (p == NULL)
      break;
    finish (fd, p, 0);
  }
}

static void
chan_release (struct ndm_channel *ch)
{
  struct fake_chan *fc = (struct fake_chan *) ch;

  close (fc->efd);
  g_free (fc);
}

static const struct ndm_channel_ops fake_channel_ops = {
  .prepare = chan_prepare,
  .service = chan_service,
  .release = chan_release,
};

/* A reply arrived on the "socket". */
static void
chan_arrive (struct fake_dev *fd, struct pending *p)
{
  static const uint64_t one = 1;

  g_mutex_lock (&fd->lock);
  g_queue_push_tail (&fd->arrived, p);
  g_mutex_unlock (&fd->lock);
  if (write (fd->chan->efd, &one, sizeof one) != sizeof one)
    abort ();
}

/* ---- completion thread ------------------------------------------------------- */

static gpointer
completion_thread (gpointer data)
{
  struct fake_dev *fd = data;

  g_mutex_lock (&fd->lock);
  while (!fd->stopping) {
    struct pending *p;

    if (fd->pending->len == 0) {
      g_cond_wait (&fd->cond, &fd->lock);
      continue;
    }
    /* Random order, random small delay: out-of-order completions. */
    p = g_ptr_array_steal_index_fast (
      fd->pending, g_random_int_range (0, fd->pending->len));
    g_mutex_unlock (&fd->lock);
    if (g_random_int_range (0, 4) == 0)
      g_usleep (g_random_int_range (0, 200));
    if (fd->chan != NULL)
      chan_arrive (fd, p);
    else
      finish (fd, p, 0);
    g_mutex_lock (&fd->lock);
  }
  g_mutex_unlock (&fd->lock);
  return NULL;
}

/* ---- device ops --------------------------------------------------------------- */

static int
fake_submit (struct ndm_device *dev, struct ndm_bio *bio,
             const struct ndm_cmd *cmd, struct ndm_channel *hint,
             struct ndm_channel **chp, int *err)
{
  struct fake_dev *fd = (struct fake_dev *) dev;
  struct pending *p;
  uint32_t align = dev->limits.min_block;
  bool bad;

  g_mutex_lock (&fd->lock);
  {
    struct fake_cmd fc = {
      .index = fd->log->len, .op = cmd->op, .flags = cmd->flags,
      .offset = cmd->offset, .len = cmd->len,
    };

    g_array_append_val (fd->log, fc);
    if (fd->down) {
      *err = ENOTCONN;
      g_mutex_unlock (&fd->lock);
      return -1;
    }
    if (fd->coming_back) {
      *err = EAGAIN;
      g_mutex_unlock (&fd->lock);
      return -1;
    }
    if (fc.index == fd->fail_submit_at) {
      *err = fd->fail_submit_err;
      g_mutex_unlock (&fd->lock);
      return -1;
    }
  }
  p = g_new0 (struct pending, 1);
  p->bio = bio;
  p->cmd = *cmd;
  p->index = fd->log->len - 1;
  /* A strict server: misaligned or oversized commands are refused, and
   * so are a flush or FUA it did not advertise (R12).
   */
  bad = cmd->op != NDM_OP_FLUSH &&
    ((cmd->offset | cmd->len) & (align - 1) ||
     cmd->offset + cmd->len > dev->size ||
     ((cmd->op == NDM_OP_READ || cmd->op == NDM_OP_WRITE) &&
      cmd->len > dev->limits.max_data));
  bad |= (cmd->op == NDM_OP_FLUSH && !dev->caps.flush) ||
    ((cmd->flags & NDM_REQ_FUA) && !dev->caps.fua);
  if (cmd->op == NDM_OP_READ || cmd->op == NDM_OP_WRITE) {
    fd->pending_bytes += cmd->len;
    fd->max_pending_bytes = MAX (fd->max_pending_bytes, fd->pending_bytes);
  }
  if (fd->chan != NULL) {
    bio->ch = &fd->chan->ch;
    ndm_channel_ref (&fd->chan->ch);
    ndm_channel_started (&fd->chan->ch);
    *chp = &fd->chan->ch;
  }
  if (bad) {
    g_mutex_unlock (&fd->lock);
    finish (fd, p, EINVAL);
    return 0;
  }
  switch (fd->mode) {
  case FAKE_IMMEDIATE:
    g_mutex_unlock (&fd->lock);
    finish (fd, p, 0);
    return 0;
  case FAKE_HELD:
  case FAKE_THREAD:
    g_ptr_array_add (fd->pending, p);
    g_cond_broadcast (&fd->cond);
    g_mutex_unlock (&fd->lock);
    return 0;
  case FAKE_CHANNEL:
    g_mutex_unlock (&fd->lock);
    chan_arrive (fd, p);
    return 0;
  }
  g_assert_not_reached ();
}

static void
fake_start (struct ndm_device *dev)
{
}

static bool
cmd_writes (const struct ndm_cmd *c)
{
  return c->op == NDM_OP_WRITE || c->op == NDM_OP_ZERO ||
    c->op == NDM_OP_TRIM;
}

/* Fence: every held command fails with ENOTCONN.  Without fence=ghost its
 * data is dropped, as a closed connection's would be; with it the
 * server keeps the writes (copied: the client's buffer goes) to land
 * them later, and the commands fail under a ghost.
 */
static void
fake_fence (struct ndm_device *dev, const char *why)
{
  struct fake_dev *fd = (struct fake_dev *) dev;
  struct ndm_ghost *g = NULL;
  GPtrArray *held;
  unsigned i;

  g_mutex_lock (&fd->lock);
  fd->fences++;
  held = fd->pending;
  fd->pending = g_ptr_array_new ();
  if (fd->ghost_fence && held->len > 0) {
    if (fd->ghost == NULL)
      fd->ghost = ndm_ghost_new (dev, why);
    g = fd->ghost;
    for (i = 0; i < held->len; i++) {
      struct pending *p = held->pdata[i];
      struct ghost_write *gw;

      if (!cmd_writes (&p->cmd))
        continue;
      gw = g_new0 (struct ghost_write, 1);
      gw->cmd = p->cmd;
      if (p->cmd.buf != NULL)
        gw->cmd.buf = g_memdup2 (p->cmd.buf, p->cmd.len);
      g_ptr_array_add (fd->ghost_writes, gw);
    }
  }
  g_mutex_unlock (&fd->lock);
  for (i = 0; i < held->len; i++) {
    struct pending *p = held->pdata[i];

    ndm_bio_quarantine (p->bio, ENOTCONN, g);
    finish (fd, p, ENOTCONN);
  }
  g_ptr_array_unref (held);
}

static void
ghost_write_free (gpointer data)
{
  struct ghost_write *gw = data;

  g_free (gw->cmd.buf);
  g_free (gw);
}

/* The ghost's server is gone (or resumed and done): nothing more lands. */
static void
fake_resolve (struct fake_dev *fd, const char *how)
{
  struct ndm_ghost *g;

  g_mutex_lock (&fd->lock);
  g = g_steal_pointer (&fd->ghost);
  g_ptr_array_set_size (fd->ghost_writes, 0);
  g_mutex_unlock (&fd->lock);
  if (g != NULL) {
    ndm_ghost_resolve (g, how);
    ndm_ghost_unref (g);
  }
}

static void
fake_declare_dead (struct ndm_device *dev)
{
  fake_resolve ((struct fake_dev *) dev, "declared dead");
}

/* fence=ghost: the last ghost fence's, until fake_land_ghosts. */
static unsigned
fake_unresolved_ghosts (struct ndm_device *dev)
{
  struct fake_dev *fd = (struct fake_dev *) dev;
  unsigned n;

  g_mutex_lock (&fd->lock);
  n = fd->ghost != NULL;
  g_mutex_unlock (&fd->lock);
  return n;
}

static int
fake_probe (struct ndm_device *dev, unsigned timeout_ms, uint64_t *size,
            GError **err)
{
  struct fake_dev *fd = (struct fake_dev *) dev;
  int r = 0;

  g_mutex_lock (&fd->lock);
  fd->probes++;
  if (fd->down || dev->absent) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE, "device %s: probe: "
                 "connect: Connection refused", dev->uri);
    r = -1;
  }
  else
    *size = fd->probe_size ? fd->probe_size : dev->size;
  g_mutex_unlock (&fd->lock);
  return r;
}

/* What the real device says: why its last connection failed. */
static char *
fake_down_reason (struct ndm_device *dev)
{
  struct fake_dev *fd = (struct fake_dev *) dev;
  char *why = NULL;

  g_mutex_lock (&fd->lock);
  if (fd->down || dev->absent)
    why = g_strdup_printf ("device %s: connect: Connection refused",
                           dev->uri);
  g_mutex_unlock (&fd->lock);
  return why;
}

static bool
fake_connected (struct ndm_device *dev)
{
  struct fake_dev *fd = (struct fake_dev *) dev;
  bool up;

  g_mutex_lock (&fd->lock);
  up = !fd->down && !dev->absent;
  g_mutex_unlock (&fd->lock);
  return up;
}

static void
fake_close (struct ndm_device *dev)
{
  struct fake_dev *fd = (struct fake_dev *) dev;

  g_mutex_lock (&fd->lock);
  fd->stopping = true;
  fd->closed = true;
  g_cond_broadcast (&fd->cond);
  g_mutex_unlock (&fd->lock);
  if (fd->thread != NULL)
    g_thread_join (fd->thread);
  g_assert_cmpuint (fd->pending->len, ==, 0);
  fake_resolve (fd, "the device is closed");
  if (fd->chan != NULL)
    ndm_channel_unref (&fd->chan->ch);
  /* The data and the log stay readable until fake_reset. */
}

static const struct ndm_device_ops fake_device_ops = {
  .name = "fake",
  .submit = fake_submit,
  .start = fake_start,
  .fence = fake_fence,
  .probe = fake_probe,
  .down_reason = fake_down_reason,
  .connected = fake_connected,
  .declare_dead = fake_declare_dead,
  .unresolved_ghosts = fake_unresolved_ghosts,
  .close = fake_close,
};

static uint64_t
param_u64 (GHashTable *params, const char *key, uint64_t dflt)
{
  const char *v = g_hash_table_lookup (params, key);
  char *end;
  uint64_t n;

  if (v == NULL)
    return dflt;
  n = g_ascii_strtoull (v, &end, 10);
  if (*end == 'K' || *end == 'k')
    n <<= 10;
  else if (*end == 'M' || *end == 'm')
    n <<= 20;
  return n;
}

static struct ndm_device *
fake_open (const char *uri, const struct ndm_config *cfg, bool tolerant,
           GError **err)
{
  g_autoptr (GHashTable) params =
    g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_auto (GStrv) kv = NULL;
  const char *q, *mode;
  struct fake_dev *fd;
  char *name;
  unsigned i;

  if (!g_str_has_prefix (uri, "fake://")) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE,
                 "device '%s' is not a fake:// URI", uri);
    return NULL;
  }
  q = strchr (uri, '?');
  name = q ? g_strndup (uri + 7, q - uri - 7) : g_strdup (uri + 7);
  if (g_str_has_prefix (name, "missing") && !tolerant) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE,
                 "device %s: connect: No such file or directory", uri);
    g_free (name);
    return NULL;
  }
  if (q != NULL) {
    kv = g_strsplit (q + 1, "&", -1);
    for (i = 0; kv[i] != NULL; i++) {
      char *eq = strchr (kv[i], '=');

      if (eq != NULL)
        g_hash_table_insert (params, g_strndup (kv[i], eq - kv[i]),
                             g_strdup (eq + 1));
    }
  }

  fd = g_new0 (struct fake_dev, 1);
  fd->name = name;
  fd->dev.ops = &fake_device_ops;
  fd->dev.uri = g_strdup (uri);
  fd->dev.size = param_u64 (params, "size", 1 << 20);
  fd->dev.limits.min_block = param_u64 (params, "min", 1);
  fd->dev.limits.pref_block = param_u64 (params, "pref", 0);
  fd->dev.limits.max_data = param_u64 (params, "max", 0);
  fd->dev.limits.max_len = param_u64 (params, "maxlen", 0);
  fd->dev.caps.read_only = param_u64 (params, "ro", 0);
  fd->dev.caps.flush = param_u64 (params, "flush", 1);
  fd->dev.caps.fua = param_u64 (params, "fua", 1);
  fd->dev.caps.trim = param_u64 (params, "trim", 1);
  fd->dev.caps.zero = param_u64 (params, "zero", 1);
  fd->dev.caps.fast_zero = param_u64 (params, "fastzero", 1);
  fd->dev.caps.cache = param_u64 (params, "cache", 1);
  fd->dev.caps.extents = param_u64 (params, "extents", 1);
  fd->dev.caps.multi_conn = param_u64 (params, "multiconn", 1);
  g_mutex_init (&fd->lock);
  g_cond_init (&fd->cond);
  if (g_hash_table_lookup (params, "data") != NULL) {
    /* Another path to that fake's export: its data, and its size. */
    fd->data_owner = fake_lookup (g_hash_table_lookup (params, "data"));
    g_assert_nonnull (fd->data_owner);
    fd->dev.size = fd->data_owner->dev.size;
    fd->data = fd->data_owner->data;
    fd->allocated = fd->data_owner->allocated;
  }
  else {
    fd->data = g_malloc0 (fd->dev.size);
    fd->allocated = g_new0 (bool, fd->dev.size / FAKE_BLOCK + 1);
  }
  fd->ghost_fence = g_strcmp0 (g_hash_table_lookup (params, "fence"),
                               "ghost") == 0;
  fd->ghost_writes = g_ptr_array_new_with_free_func (ghost_write_free);
  fd->pending = g_ptr_array_new ();
  g_queue_init (&fd->arrived);
  fd->log = g_array_new (FALSE, FALSE, sizeof (struct fake_cmd));
  fd->fail_at = g_hash_table_new (g_direct_hash, g_direct_equal);
  fd->fail_submit_at = G_MAXUINT;
  if (g_str_has_prefix (name, "missing")) {
    /* Opened tolerant: absent, and it stays so. */
    fd->dev.absent = true;
    fd->down = true;
  }

  mode = g_hash_table_lookup (params, "mode");
  if (mode == NULL || strcmp (mode, "immediate") == 0)
    fd->mode = FAKE_IMMEDIATE;
  else if (strcmp (mode, "held") == 0)
    fd->mode = FAKE_HELD;
  else if (strcmp (mode, "thread") == 0)
    fd->mode = FAKE_THREAD;
  else if (strcmp (mode, "channel") == 0)
    fd->mode = FAKE_CHANNEL;
  else
    g_error ("fake: unknown mode %s", mode);
  if (fd->mode == FAKE_CHANNEL ||
      (fd->mode == FAKE_THREAD && param_u64 (params, "channel", 0))) {
    fd->chan = g_new0 (struct fake_chan, 1);
    ndm_channel_init (&fd->chan->ch, &fake_channel_ops);
    fd->chan->fd = fd;
    fd->chan->efd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
  }
  if (fd->mode == FAKE_THREAD)
    fd->thread = g_thread_new ("fake-complete", completion_thread, fd);

  g_mutex_lock (&registry_lock);
  if (registry == NULL)
    registry = g_hash_table_new (g_str_hash, g_str_equal);
  g_hash_table_insert (registry, fd->name, fd);
  g_mutex_unlock (&registry_lock);
  return &fd->dev;
}

const struct ndm_device_class fake_device_class = {
  .name = "fake",
  .open = fake_open,
};

/* ---- test API ------------------------------------------------------------------ */

struct fake_dev *
fake_lookup (const char *name)
{
  struct fake_dev *fd;

  g_mutex_lock (&registry_lock);
  fd = registry ? g_hash_table_lookup (registry, name) : NULL;
  g_mutex_unlock (&registry_lock);
  return fd;
}

static void
fake_free (gpointer data)
{
  struct fake_dev *fd = data;

  if (fd->data_owner == NULL) {
    g_free (fd->data);
    g_free (fd->allocated);
  }
  g_ptr_array_unref (fd->ghost_writes);
  g_ptr_array_unref (fd->pending);
  g_queue_clear (&fd->arrived);
  g_array_unref (fd->log);
  g_hash_table_unref (fd->fail_at);
  g_cond_clear (&fd->cond);
  g_mutex_clear (&fd->lock);
  g_free (fd->dev.uri);
  g_free (fd->name);
  g_free (fd);
}

void
fake_reset (void)
{
  g_mutex_lock (&registry_lock);
  if (registry != NULL) {
    GHashTableIter it;
    gpointer v;

    g_hash_table_iter_init (&it, registry);
    while (g_hash_table_iter_next (&it, NULL, &v))
      fake_free (v);
    g_hash_table_remove_all (registry);
  }
  g_mutex_unlock (&registry_lock);
}

uint8_t *
fake_data (struct fake_dev *fd)
{
  return fd->data;
}

bool
fake_is_open (struct fake_dev *fd)
{
  bool open;

  g_mutex_lock (&fd->lock);
  open = !fd->closed;
  g_mutex_unlock (&fd->lock);
  return open;
}

uint64_t
fake_size (struct fake_dev *fd)
{
  return fd->dev.size;
}

void
fake_fail_at (struct fake_dev *fd, unsigned index, int err)
{
  g_mutex_lock (&fd->lock);
  g_hash_table_insert (fd->fail_at, GUINT_TO_POINTER (index),
                       GINT_TO_POINTER (err));
  g_mutex_unlock (&fd->lock);
}

void
fake_fail_submit_at (struct fake_dev *fd, unsigned index, int err)
{
  g_mutex_lock (&fd->lock);
  fd->fail_submit_at = index;
  fd->fail_submit_err = err;
  g_mutex_unlock (&fd->lock);
}

void
fake_fail_range (struct fake_dev *fd, uint64_t offset, uint64_t len,
                 int err)
{
  g_mutex_lock (&fd->lock);
  fd->fail_off = offset;
  fd->fail_len = len;
  fd->fail_err = err;
  g_mutex_unlock (&fd->lock);
}

void
fake_partial_reads (struct fake_dev *fd, bool on)
{
  g_mutex_lock (&fd->lock);
  fd->partial_reads = on;
  g_mutex_unlock (&fd->lock);
}

GArray *
fake_log (struct fake_dev *fd)
{
  GArray *copy;

  g_mutex_lock (&fd->lock);
  copy = g_array_copy (fd->log);
  g_mutex_unlock (&fd->lock);
  return copy;
}

unsigned
fake_submitted (struct fake_dev *fd)
{
  unsigned n;

  g_mutex_lock (&fd->lock);
  n = fd->log->len;
  g_mutex_unlock (&fd->lock);
  return n;
}

unsigned
fake_count_op (struct fake_dev *fd, enum ndm_op op)
{
  unsigned i, n = 0;

  g_mutex_lock (&fd->lock);
  for (i = 0; i < fd->log->len; i++)
    n += g_array_index (fd->log, struct fake_cmd, i).op == op;
  g_mutex_unlock (&fd->lock);
  return n;
}

uint64_t
fake_max_pending_bytes (struct fake_dev *fd)
{
  uint64_t n;

  g_mutex_lock (&fd->lock);
  n = fd->max_pending_bytes;
  g_mutex_unlock (&fd->lock);
  return n;
}

unsigned
fake_pending (struct fake_dev *fd)
{
  unsigned n;

  g_mutex_lock (&fd->lock);
  n = fd->pending->len;
  g_mutex_unlock (&fd->lock);
  return n;
}

void
fake_wait_pending (struct fake_dev *fd, unsigned n)
{
  gint64 deadline = g_get_monotonic_time () + 5 * G_TIME_SPAN_SECOND;

  g_mutex_lock (&fd->lock);
  while (fd->pending->len < n) {
    if (!g_cond_wait_until (&fd->cond, &fd->lock, deadline)) {
      unsigned have = fd->pending->len;

      g_mutex_unlock (&fd->lock);
      g_error ("fake %s: waited 5 s for %u pending commands, have %u",
               fd->name, n, have);
    }
  }
  g_mutex_unlock (&fd->lock);
}

/* Relaxed, so that TSan learns no order from the leader here (see the
 * header); a sleep between looks orders nothing either.
 */
void
fake_wait_prepared (struct fake_dev *fd, unsigned n)
{
  gint64 deadline = g_get_monotonic_time () + 5 * G_TIME_SPAN_SECOND;

  g_assert_nonnull (fd->chan);
  while (__atomic_load_n (&fd->chan->prepares, __ATOMIC_RELAXED) < n) {
    if (g_get_monotonic_time () > deadline)
      g_error ("fake %s: waited 5 s for the leader to prepare %u times, "
               "it did %u", fd->name, n,
               __atomic_load_n (&fd->chan->prepares, __ATOMIC_RELAXED));
    g_usleep (100);
  }
}

void
fake_complete (struct fake_dev *fd, unsigned index, int err)
{
  struct pending *p = NULL;
  unsigned i;

  g_mutex_lock (&fd->lock);
  for (i = 0; i < fd->pending->len; i++) {
    struct pending *cand = fd->pending->pdata[i];

    if (cand->index == index) {
      p = g_ptr_array_steal_index (fd->pending, i);
      break;
    }
  }
  if (p != NULL && err != 0)
    g_hash_table_insert (fd->fail_at, GUINT_TO_POINTER (index),
                         GINT_TO_POINTER (err));
  g_mutex_unlock (&fd->lock);
  if (p == NULL)
    g_error ("fake %s: command %u is not pending", fd->name, index);
  finish (fd, p, 0);
}

void
fake_complete_all (struct fake_dev *fd)
{
  for (;;) {
    struct pending *p = NULL;

    g_mutex_lock (&fd->lock);
    if (fd->pending->len > 0)
      p = g_ptr_array_steal_index (fd->pending, 0);
    g_mutex_unlock (&fd->lock);
    if (p == NULL)
      return;
    finish (fd, p, 0);
  }
}

void
fake_set_coming_back (struct fake_dev *fd, bool on)
{
  g_mutex_lock (&fd->lock);
  fd->coming_back = on;
  g_mutex_unlock (&fd->lock);
}

void
fake_set_down (struct fake_dev *fd, bool down)
{
  g_mutex_lock (&fd->lock);
  fd->down = down;
  if (!down)
    __atomic_store_n (&fd->dev.absent, false, __ATOMIC_RELEASE);
  g_mutex_unlock (&fd->lock);
}

void
fake_set_probe_size (struct fake_dev *fd, uint64_t size)
{
  g_mutex_lock (&fd->lock);
  fd->probe_size = size;
  g_mutex_unlock (&fd->lock);
}

unsigned
fake_probes (struct fake_dev *fd)
{
  unsigned n;

  g_mutex_lock (&fd->lock);
  n = fd->probes;
  g_mutex_unlock (&fd->lock);
  return n;
}

void
fake_fence_now (struct fake_dev *fd)
{
  fake_fence (&fd->dev, "fenced by the test");
}

void
fake_land_ghosts (struct fake_dev *fd)
{
  unsigned i;

  g_mutex_lock (&fd->lock);
  for (i = 0; i < fd->ghost_writes->len; i++) {
    struct ghost_write *gw = fd->ghost_writes->pdata[i];
    struct pending p = { .cmd = gw->cmd, .index = G_MAXUINT };

    apply (fd, &p);
  }
  g_mutex_unlock (&fd->lock);
  fake_resolve (fd, "the stopped server resumed and closed");
}

unsigned
fake_quarantined (struct fake_dev *fd)
{
  unsigned n;

  g_mutex_lock (&fd->lock);
  n = fd->ghost != NULL ? ndm_ghost_cells (fd->ghost) : 0;
  g_mutex_unlock (&fd->lock);
  return n;
}

unsigned
fake_fences (struct fake_dev *fd)
{
  unsigned n;

  g_mutex_lock (&fd->lock);
  n = fd->fences;
  g_mutex_unlock (&fd->lock);
  return n;
}
