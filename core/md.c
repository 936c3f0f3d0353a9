/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the mapped device (dm's mapped_device).
 *
 * It owns the live table, a loaded inactive one, the device registry and
 * the suspend state, and is the entry point for front ends: ndm_md_io and
 * ndm_md_extents run one request each on the calling thread.
 *
 * Suspend works like dm's: a flag stops the request gate, and the
 * suspender waits until every request that got past it has finished
 * (flush) or is parked between two rounds (noflush).  The gate's fast path
 * is one atomic increment and one atomic read: the gate increments
 * "active" then reads "suspended", the suspender sets "suspended" then
 * reads "active", so with sequentially consistent atomics one of them
 * sees the other.  resume swaps the table pointer under table_lock: a
 * request holds a reference on the table it started with, so the old one
 * lives until its last request ends.
 *
 * Thread model: new, load, start and free on one thread while no request
 * runs; suspend, reload, resume, clear on the control path (serialised by
 * command_lock); io/extents/size/caps on any number of threads.  The live
 * table pointer is protected by table_lock (order 1 in core/request.c),
 * taken for reading only long enough to take a reference; state_lock
 * (order 0) is taken before it.
 */
#include <errno.h>

#include "core.h"
#include "log.h"

struct ndm_md *
ndm_md_new (const struct ndm_config *cfg)
{
  struct ndm_md *md = g_new0 (struct ndm_md, 1);

  md->cfg = *cfg;
  if (md->cfg.device_class == NULL)
    md->cfg.device_class = &ndm_nbd_device_class;
  g_rw_lock_init (&md->table_lock);
  ndm_mutex_init (&md->command_lock, NDM_LOCK_COMMAND);
  ndm_mutex_init (&md->state_lock, NDM_LOCK_STATE);
  g_cond_init (&md->state_cond);
  ndm_mutex_init (&md->event_lock, NDM_LOCK_LEAF);
  g_cond_init (&md->event_cond);
  ndm_mutex_init (&md->devices_lock, NDM_LOCK_DEVICES);
  md->devices = g_hash_table_new (g_str_hash, g_str_equal);
  ndm_budget_init (&md->inflight, "max-inflight", cfg->max_inflight);
  ndm_budget_init (&md->bounce, "max-bounce", cfg->max_bounce);
  return md;
}

static void target_resume (struct ndm_target *ti);
static void table_for_each_target (struct ndm_table *t,
                                   void (*fn) (struct ndm_target *));

int
ndm_md_load (struct ndm_md *md, const char *text, GError **err)
{
  struct ndm_table *t = ndm_table_create (md, text, err), *old;

  if (t == NULL)
    return -1;
  g_rw_lock_writer_lock (&md->table_lock);
  old = md->live;
  md->live = t;
  g_rw_lock_writer_unlock (&md->table_lock);
  if (old != NULL)
    ndm_table_unref (old);
  return 0;
}

static void
device_start (gpointer key, gpointer value, gpointer data)
{
  struct ndm_device *dev = value;

  if (dev->ops->start != NULL)
    dev->ops->start (dev);
}

/* After fork: devices' threads, then the first activation of the table's
 * targets, which is a resume as in dm (a target may start a thread).
 */
void
ndm_md_start (struct ndm_md *md)
{
  struct ndm_table *t;

  ndm_mutex_lock (&md->devices_lock);
  md->started = true;
  g_hash_table_foreach (md->devices, device_start, NULL);
  ndm_mutex_unlock (&md->devices_lock);
  t = ndm_md_get_table (md);
  table_for_each_target (t, target_resume);
  ndm_table_unref (t);
}

static void table_for_each_target (struct ndm_table *t,
                                   void (*fn) (struct ndm_target *));
static void target_postsuspend (struct ndm_target *ti);

void
ndm_md_free (struct ndm_md *md)
{
  if (md == NULL)
    return;
  /* As dm's destroy: a live table is suspended first, so no target
   * thread does I/O through it while it is freed.
   */
  if (md->live != NULL && !g_atomic_int_get (&md->suspended))
    table_for_each_target (md->live, target_postsuspend);
  if (md->live != NULL)
    ndm_table_unref (md->live);
  if (md->inactive != NULL)
    ndm_table_unref (md->inactive);
  g_assert (g_hash_table_size (md->devices) == 0);
  g_hash_table_unref (md->devices);
  ndm_mutex_clear (&md->devices_lock);
  g_cond_clear (&md->event_cond);
  ndm_mutex_clear (&md->event_lock);
  g_cond_clear (&md->state_cond);
  ndm_mutex_clear (&md->state_lock);
  ndm_mutex_clear (&md->command_lock);
  g_rw_lock_clear (&md->table_lock);
  ndm_budget_clear (&md->inflight);
  ndm_budget_clear (&md->bounce);
  g_free (md);
}

struct ndm_table *
ndm_md_get_table (struct ndm_md *md)
{
  struct ndm_table *t;

  g_rw_lock_reader_lock (&md->table_lock);
  t = md->live;
  ndm_table_ref (t);
  g_rw_lock_reader_unlock (&md->table_lock);
  return t;
}

uint64_t
ndm_md_get_size (struct ndm_md *md)
{
  struct ndm_table *t = ndm_md_get_table (md);
  uint64_t size = t->size;

  ndm_table_unref (t);
  return size;
}

void
ndm_md_get_caps (struct ndm_md *md, struct ndm_caps *caps)
{
  struct ndm_table *t = ndm_md_get_table (md);

  *caps = t->caps;
  ndm_table_unref (t);
}

void
ndm_md_set_shutting_down (struct ndm_md *md)
{
  g_atomic_int_set (&md->shutting_down, 1);
}

/* Not latched into shutting_down: quitting() may speak of the calling
 * request's client only.
 */
bool
ndm_md_quitting (struct ndm_md *md)
{
  return g_atomic_int_get (&md->shutting_down) ||
    (md->cfg.quitting != NULL && md->cfg.quitting ());
}

/* The errno a client sees for a request that did not succeed. */
static int
md_client_errno (struct ndm_md *md, enum ndm_request_result r, int e)
{
  /* Abandoned because the front end quits: ESHUTDOWN whatever the
   * server's state (ndm_errno_for_client would say EIO).
   */
  if (r == NDM_RQ_QUIT)
    return ESHUTDOWN;
  return ndm_errno_for_client (e, g_atomic_int_get (&md->shutting_down));
}

int
ndm_md_io (struct ndm_md *md, enum ndm_op op, void *buf, uint64_t count,
           uint64_t offset, uint32_t flags, int *err)
{
  enum ndm_request_result r;
  int e = 0;

  g_assert (op != NDM_OP_BLOCK_STATUS);
  r = ndm_request_run (md, op, buf, count, offset, flags, NULL, &e);
  if (r == NDM_RQ_OK)
    return 0;
  /* ENOTSUP is an answer NBD knows for a fast zero only.  nbdkit 1.32
   * turns it into a plain write for a zero, and aborts if a write fails
   * with it: a device that refuses a write so is an EIO.
   */
  if ((e == ENOTSUP || e == EOPNOTSUPP) && op == NDM_OP_WRITE)
    e = EIO;
  *err = md_client_errno (md, r, e);
  return -1;
}

int
ndm_md_extents (struct ndm_md *md, uint64_t count, uint64_t offset,
                uint32_t flags, GArray *out, int *err)
{
  enum ndm_request_result r;
  int e = 0;

  r = ndm_request_run (md, NDM_OP_BLOCK_STATUS, NULL, count, offset, flags,
                       out, &e);
  if (r == NDM_RQ_OK)
    return 0;
  *err = md_client_errno (md, r, e);
  return -1;
}

void
ndm_md_table (struct ndm_md *md, GString *out)
{
  struct ndm_table *t = ndm_md_get_table (md);

  ndm_table_format (t, NDM_STATUS_TABLE, out);
  ndm_table_unref (t);
}

void
ndm_md_status (struct ndm_md *md, GString *out)
{
  struct ndm_table *t = ndm_md_get_table (md);

  ndm_table_format (t, NDM_STATUS_INFO, out);
  ndm_table_unref (t);
}

/* ---- the request gate ------------------------------------------------------ */

static void
md_wake_state_waiters (struct ndm_md *md)
{
  ndm_mutex_lock (&md->state_lock);
  g_cond_broadcast (&md->state_cond);
  ndm_mutex_unlock (&md->state_lock);
}

void
ndm_md_exit (struct ndm_md *md)
{
  g_atomic_int_add (&md->active, -1);
  if (g_atomic_int_get (&md->suspended))
    md_wake_state_waiters (md);         /* a suspend may be draining */
}

/* With md->state_lock held: wait while suspended, in slices, so a front
 * end that quits is seen.  Returns -1 if it does.
 */
static int
md_wait_resumed_locked (struct ndm_md *md)
{
  ndm_assert_held (&md->state_lock);
  while (g_atomic_int_get (&md->suspended)) {
    ndm_cond_wait_until (&md->state_cond, &md->state_lock,
                       g_get_monotonic_time () +
                       NDM_QUIT_POLL_MS * G_TIME_SPAN_MILLISECOND);
    if (g_atomic_int_get (&md->suspended) && ndm_md_quitting (md))
      return -1;
  }
  return 0;
}

int
ndm_md_enter (struct ndm_md *md)
{
  int r;

  for (;;) {
    g_atomic_int_inc (&md->active);
    if (!g_atomic_int_get (&md->suspended))
      return 0;
    ndm_md_exit (md);
    ndm_mutex_lock (&md->state_lock);
    r = md_wait_resumed_locked (md);
    ndm_mutex_unlock (&md->state_lock);
    if (r == -1)
      return -1;
  }
}

int
ndm_md_park (struct ndm_md *md)
{
  int r;

  if (!g_atomic_int_get (&md->suspended))
    return 0;
  ndm_mutex_lock (&md->state_lock);
  if (!g_atomic_int_get (&md->suspended) || !md->noflush) {
    ndm_mutex_unlock (&md->state_lock);
    return 0;
  }
  g_atomic_int_inc (&md->parked);
  g_cond_broadcast (&md->state_cond);
  r = md_wait_resumed_locked (md);
  g_atomic_int_add (&md->parked, -1);
  ndm_mutex_unlock (&md->state_lock);
  return r == -1 ? -1 : 1;
}

/* ---- events ------------------------------------------------------------------ */

void
ndm_md_event (struct ndm_md *md)
{
  g_atomic_int_inc (&md->event_nr);
  ndm_mutex_lock (&md->event_lock);
  g_cond_broadcast (&md->event_cond);
  ndm_mutex_unlock (&md->event_lock);
}

void
ndm_target_event (struct ndm_target *ti)
{
  ndm_md_event (ti->table->md);
}

unsigned
ndm_md_wait_event (struct ndm_md *md, unsigned after, gint64 deadline)
{
  unsigned nr;

  ndm_mutex_lock (&md->event_lock);
  while ((nr = g_atomic_int_get (&md->event_nr)) <= after &&
         ndm_cond_wait_until (&md->event_cond, &md->event_lock, deadline))
    ;
  ndm_mutex_unlock (&md->event_lock);
  return g_atomic_int_get (&md->event_nr);
}

/* ---- suspend, reload, resume ------------------------------------------------ */

static void
table_for_each_target (struct ndm_table *t, void (*fn) (struct ndm_target *))
{
  unsigned i;

  for (i = 0; i < t->nr_targets; i++)
    fn (&t->targets[i]);
}

static void
target_presuspend (struct ndm_target *ti, bool noflush)
{
  if (ti->type->presuspend != NULL)
    ti->type->presuspend (ti, noflush);
}

static void
target_postsuspend (struct ndm_target *ti)
{
  if (ti->type->postsuspend != NULL)
    ti->type->postsuspend (ti);
}

static void
target_resume (struct ndm_target *ti)
{
  if (ti->type->resume != NULL)
    ti->type->resume (ti);
}

/* With command_lock held. */
static void
md_suspend_locked (struct ndm_md *md, bool noflush)
{
  struct ndm_table *t;
  unsigned i;

  ndm_assert_held (&md->command_lock);
  if (g_atomic_int_get (&md->suspended))
    return;
  ndm_mutex_lock (&md->state_lock);
  md->noflush = noflush;
  g_atomic_int_set (&md->suspended, 1);
  ndm_mutex_unlock (&md->state_lock);

  /* Targets holding I/O back (delay) let it go, or the drain would wait
   * for them.
   */
  t = ndm_md_get_table (md);
  for (i = 0; i < t->nr_targets; i++)
    target_presuspend (&t->targets[i], noflush);
  ndm_table_unref (t);

  ndm_mutex_lock (&md->state_lock);
  while (g_atomic_int_get (&md->active) > g_atomic_int_get (&md->parked))
    ndm_cond_wait (&md->state_cond, &md->state_lock);
  ndm_mutex_unlock (&md->state_lock);

  t = ndm_md_get_table (md);
  table_for_each_target (t, target_postsuspend);
  ndm_table_unref (t);
}

int
ndm_md_suspend (struct ndm_md *md, bool noflush, GError **err)
{
  ndm_mutex_lock (&md->command_lock);
  md_suspend_locked (md, noflush);
  ndm_mutex_unlock (&md->command_lock);
  return 0;
}

/* With command_lock held: may table t replace the live one?  Not with
 * another size while clients are connected (NBD cannot tell them), unless
 * the operator forces it.  Checked at reload and again at resume, since
 * clients may connect in between.
 */
static int
md_check_resize_locked (struct ndm_md *md, struct ndm_table *t,
                        bool allow_resize, GError **err)
{
  uint64_t live_size;
  int clients = g_atomic_int_get (&md->open_count);

  ndm_assert_held (&md->command_lock);
  live_size = ndm_md_get_size (md);
  if (t->size == live_size || clients == 0 || allow_resize)
    return 0;
  g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
               "the new table has %" PRIu64 " sectors and the live one %"
               PRIu64 ": NBD cannot tell the %d connected client%s that "
               "the size changed (--allow-resize to load it anyway)",
               t->size >> NDM_SECTOR_SHIFT, live_size >> NDM_SECTOR_SHIFT,
               clients, clients == 1 ? "" : "s");
  return -1;
}

/* With command_lock held: t (or none) becomes the loaded table. */
static void
md_set_inactive_locked (struct ndm_md *md, struct ndm_table *t,
                        bool resize_ok)
{
  struct ndm_table *old;

  ndm_assert_held (&md->command_lock);
  ndm_mutex_lock (&md->state_lock);
  old = md->inactive;
  md->inactive = t;
  md->inactive_resize_ok = resize_ok;
  ndm_mutex_unlock (&md->state_lock);
  if (old != NULL)
    ndm_table_unref (old);
}

int
ndm_md_reload (struct ndm_md *md, const char *text, bool allow_resize,
               GError **err)
{
  struct ndm_table *t;

  ndm_mutex_lock (&md->command_lock);
  t = ndm_table_create (md, text, err);
  if (t == NULL) {
    ndm_mutex_unlock (&md->command_lock);
    return -1;
  }
  if (md_check_resize_locked (md, t, allow_resize, err) == -1) {
    ndm_table_unref (t);
    ndm_mutex_unlock (&md->command_lock);
    return -1;
  }
  md_set_inactive_locked (md, t, allow_resize);
  ndm_mutex_unlock (&md->command_lock);
  return 0;
}

int
ndm_md_clear (struct ndm_md *md, GError **err)
{
  ndm_mutex_lock (&md->command_lock);
  md_set_inactive_locked (md, NULL, false);
  ndm_mutex_unlock (&md->command_lock);
  return 0;
}

int
ndm_md_resume (struct ndm_md *md, GError **err)
{
  struct ndm_table *new, *old = NULL, *t;

  ndm_mutex_lock (&md->command_lock);
  if (md->inactive != NULL &&
      md_check_resize_locked (md, md->inactive, md->inactive_resize_ok,
                              err) == -1) {
    g_prefix_error (err, "resume: clients connected since the reload: ");
    ndm_mutex_unlock (&md->command_lock);
    return -1;
  }
  /* Like dm: resuming with a loaded table suspends first if needed. */
  if (md->inactive != NULL)
    md_suspend_locked (md, false);
  if (!g_atomic_int_get (&md->suspended)) {
    ndm_mutex_unlock (&md->command_lock);
    return 0;
  }

  ndm_mutex_lock (&md->state_lock);
  new = md->inactive;
  md->inactive = NULL;
  if (new != NULL) {
    g_rw_lock_writer_lock (&md->table_lock);
    old = md->live;
    md->live = new;
    g_rw_lock_writer_unlock (&md->table_lock);
  }
  ndm_mutex_unlock (&md->state_lock);

  t = ndm_md_get_table (md);
  table_for_each_target (t, target_resume);
  ndm_table_unref (t);

  ndm_mutex_lock (&md->state_lock);
  g_atomic_int_set (&md->suspended, 0);
  g_cond_broadcast (&md->state_cond);
  ndm_mutex_unlock (&md->state_lock);
  ndm_mutex_unlock (&md->command_lock);

  if (new != NULL)
    ndm_md_event (md);
  if (old != NULL)
    ndm_table_unref (old);
  return 0;
}

const struct ndm_config *
ndm_target_config (struct ndm_target *ti)
{
  return &ti->table->md->cfg;
}

void
ndm_md_client_open (struct ndm_md *md)
{
  g_atomic_int_inc (&md->open_count);
}

void
ndm_md_client_close (struct ndm_md *md)
{
  g_atomic_int_add (&md->open_count, -1);
}
