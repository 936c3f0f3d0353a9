/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: prisons — ranges of shared data that writes must not enter yet
 * (dm's bio prison: cells that detain bios by block range).
 *
 * A prison belongs to the data, not to a connection: every device has
 * one, and a target whose devices hold the same data (multipath's paths)
 * puts all its bios in one prison (ndm_target_set_prison).  Two kinds of
 * cell live in it, in device byte offsets:
 *
 *   - a read-modify-write cell (R7), held by the bio that bounces a block
 *     from its read to its write: another write to the block waits, or
 *     one of the two updates would be lost.  A direct write where an RMW
 *     may meet it holds a shared cell for its flight, so that an RMW does
 *     not read the block before it lands and write the old bytes back
 *     after.  Two paths to one export are two devices, so this must be
 *     the data's prison, not the device's;
 *
 *   - a quarantine cell (R10), left by a write whose command failed on a
 *     connection that was cut while its server may be alive (a ghost):
 *     that server may still execute the write when it resumes, over
 *     anything written since.  Writes that overlap wait until the ghost is
 *     resolved (the server closed the connection: nothing from it can land
 *     any more), up to the ghost's deadline (fence-timeout), and fail with
 *     EIO from then on, for as long as the cell stays.  Reads never wait:
 *     the data they see is older or newer, and no acknowledged write is
 *     overwritten by reading.
 *
 * Thread model: detain and release run on request owners; quarantine in
 * completions (under a device's handle lock: leaf locks only); resolve on
 * whatever thread learns the server's fate.  Lock order (4c and 4d in
 * core/request.c): ndm_ghost.lock, then ndm_prison.lock; neither is held
 * across anything but list work, waiter kicks and the log.
 */
#include <errno.h>
#include <string.h>

#include "core.h"
#include "log.h"

struct ndm_prison {
  gint refs;                    /* atomic: its device or target, cells */
  struct ndm_mutex lock;        /* protects cells, waiters */
  GQueue cells;                 /* struct ndm_cell * */
  GQueue waiters;               /* struct ndm_waiter *, detained */
  gint nr_quarantined;          /* atomic: quarantine cells (fast path) */
};

struct ndm_ghost {
  gint refs;                    /* atomic */
  struct ndm_mutex lock;        /* protects cells, resolved */
  GSList *cells;                /* its quarantine cells */
  bool resolved;
  bool announced;               /* the first quarantine was logged */
  char *uri;                    /* of its device, for messages */
  char *why;                    /* why its connection was cut */
  gint64 deadline;              /* us: overlapping writes fail from then */
};

/* ---- prisons ---------------------------------------------------------------- */

struct ndm_prison *
ndm_prison_new (void)
{
  struct ndm_prison *p = g_new0 (struct ndm_prison, 1);

  p->refs = 1;
  ndm_mutex_init (&p->lock, NDM_LOCK_PRISON);
  g_queue_init (&p->cells);
  g_queue_init (&p->waiters);
  return p;
}

struct ndm_prison *
ndm_prison_ref (struct ndm_prison *p)
{
  g_atomic_int_inc (&p->refs);
  return p;
}

void
ndm_prison_unref (struct ndm_prison *p)
{
  if (p == NULL || !g_atomic_int_dec_and_test (&p->refs))
    return;
  g_assert (g_queue_is_empty (&p->cells));
  g_queue_clear (&p->waiters);
  ndm_mutex_clear (&p->lock);
  g_free (p);
}

unsigned
ndm_prison_quarantined (struct ndm_prison *p)
{
  return g_atomic_int_get (&p->nr_quarantined);
}

static inline bool
overlaps (const struct ndm_cell *c, uint64_t offset, uint64_t len)
{
  return c->offset < offset + len && offset < c->offset + c->len;
}

/* With p->lock held: wake every detained waiter; each looks again. */
static void
prison_wake_locked (struct ndm_prison *p)
{
  struct ndm_waiter *w;

  ndm_assert_held (&p->lock);
  while ((w = g_queue_pop_head (&p->waiters)) != NULL)
    ndm_waiter_kick (w);
}

int
ndm_prison_detain (struct ndm_prison *p, struct ndm_cell *hold,
                   uint64_t offset, uint64_t len, bool writes,
                   struct ndm_waiter *w, gint64 *wait_until, int *err)
{
  gint64 now = 0;
  bool wait = false;
  GList *l;

  /* Reads move at once (R10); and the common case takes no lock. */
  if (hold == NULL && (!writes || ndm_prison_quarantined (p) == 0))
    return 0;

  ndm_mutex_lock (&p->lock);
  for (l = p->cells.head; l != NULL; l = l->next) {
    struct ndm_cell *c = l->data;

    if (!overlaps (c, offset, len))
      continue;
    if (c->ghost == NULL) {
      /* A read-modify-write of the block excludes every other write to
       * it; direct writes (shared) do not exclude each other.
       */
      if (hold != NULL && !(hold->shared && c->shared))
        wait = true;
      continue;
    }
    if (now == 0)
      now = g_get_monotonic_time ();
    if (now >= c->deadline) {
      ndm_mutex_unlock (&p->lock);
      *err = EIO;
      return -1;
    }
    wait = true;
    if (*wait_until == 0 || c->deadline < *wait_until)
      *wait_until = c->deadline;
  }
  if (wait) {
    if (g_queue_find (&p->waiters, w) == NULL)
      g_queue_push_tail (&p->waiters, w);
    ndm_mutex_unlock (&p->lock);
    return 1;
  }
  if (hold != NULL) {
    hold->offset = offset;
    hold->len = len;
    hold->ghost = NULL;
    hold->link.data = hold;
    g_queue_push_tail_link (&p->cells, &hold->link);
  }
  ndm_mutex_unlock (&p->lock);
  return 0;
}

void
ndm_prison_release (struct ndm_prison *p, struct ndm_cell *cell)
{
  ndm_mutex_lock (&p->lock);
  g_queue_unlink (&p->cells, &cell->link);
  prison_wake_locked (p);
  ndm_mutex_unlock (&p->lock);
}

/* ---- ghosts ------------------------------------------------------------------ */

struct ndm_ghost *
ndm_ghost_new (struct ndm_device *dev, const char *why)
{
  struct ndm_ghost *g = g_new0 (struct ndm_ghost, 1);
  unsigned timeout_ms = dev->md != NULL ? dev->md->cfg.fence_timeout_ms
    : NDM_DEFAULT_FENCE_TIMEOUT_MS;

  g->refs = 1;
  ndm_mutex_init (&g->lock, NDM_LOCK_GHOST);
  g->uri = g_strdup (dev->uri);
  g->why = g_strdup (why);
  g->deadline = g_get_monotonic_time () + timeout_ms * INT64_C (1000);
  return g;
}

void
ndm_ghost_ref (struct ndm_ghost *g)
{
  g_atomic_int_inc (&g->refs);
}

void
ndm_ghost_unref (struct ndm_ghost *g)
{
  if (g == NULL || !g_atomic_int_dec_and_test (&g->refs))
    return;
  /* Cells hold no reference: whoever lets the last one go must have
   * resolved it.  If not (a bug), its cells go now rather than point at
   * freed memory; the server does not stop for it (R13).
   */
  if (g->cells != NULL) {
    g_critical ("ghost of %s freed with quarantined ranges", g->uri);
    ndm_ghost_resolve (g, "its last reference went");
  }
  ndm_mutex_clear (&g->lock);
  g_free (g->uri);
  g_free (g->why);
  g_free (g);
}

unsigned
ndm_ghost_cells (struct ndm_ghost *g)
{
  unsigned n;

  ndm_mutex_lock (&g->lock);
  n = g_slist_length (g->cells);
  ndm_mutex_unlock (&g->lock);
  return n;
}

bool
ndm_ghost_resolved (struct ndm_ghost *g)
{
  bool r;

  ndm_mutex_lock (&g->lock);
  r = g->resolved;
  ndm_mutex_unlock (&g->lock);
  return r;
}

void
ndm_ghost_quarantine (struct ndm_ghost *g, struct ndm_prison *p,
                      uint64_t offset, uint64_t len)
{
  struct ndm_cell *c;

  ndm_mutex_lock (&g->lock);
  if (g->resolved) {
    ndm_mutex_unlock (&g->lock);
    return;                     /* its server is gone: nothing can land */
  }
  c = g_new0 (struct ndm_cell, 1);
  c->offset = offset;
  c->len = len;
  c->ghost = g;
  c->deadline = g->deadline;
  c->prison = ndm_prison_ref (p);
  c->link.data = c;
  g->cells = g_slist_prepend (g->cells, c);
  ndm_mutex_lock (&p->lock);
  g_queue_push_tail_link (&p->cells, &c->link);
  g_atomic_int_inc (&p->nr_quarantined);
  ndm_mutex_unlock (&p->lock);
  if (!g->announced) {
    g->announced = true;
    ndm_log_error ("device %s: a write may still land after its connection "
                   "was cut (%s): writes over it wait for the server to "
                   "close the connection, then go on, or fail when "
                   "fence-timeout is up", g->uri, g->why);
  }
  ndm_mutex_unlock (&g->lock);
}

void
ndm_ghost_resolve (struct ndm_ghost *g, const char *how)
{
  GSList *cells, *l;
  unsigned n = 0;

  ndm_mutex_lock (&g->lock);
  if (g->resolved) {
    ndm_mutex_unlock (&g->lock);
    return;
  }
  g->resolved = true;
  cells = g_steal_pointer (&g->cells);
  ndm_mutex_unlock (&g->lock);

  for (l = cells; l != NULL; l = l->next) {
    struct ndm_cell *c = l->data;
    struct ndm_prison *p = c->prison;

    ndm_mutex_lock (&p->lock);
    g_queue_unlink (&p->cells, &c->link);
    g_atomic_int_add (&p->nr_quarantined, -1);
    prison_wake_locked (p);
    ndm_mutex_unlock (&p->lock);
    ndm_prison_unref (p);
    g_free (c);
    n++;
  }
  g_slist_free (cells);
  /* The end of a quarantine is recovery: info. */
  if (n > 0)
    ndm_log_info ("device %s: the connection cut earlier (%s) can land "
                   "nothing any more (%s): %u quarantined range%s "
                   "released", g->uri, g->why, how, n, n == 1 ? "" : "s");
}
