/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: byte budgets, the caps of R8 (in-flight bytes, bounce memory).
 *
 * At the cap a request waits, it does not fail.  The fast path is one
 * atomic add; only a request that finds the budget full takes the lock and
 * queues its waiter, and only then does a put take the lock to kick.
 * A charge always succeeds when nothing is charged, so a single request
 * bigger than the cap still makes progress.
 *
 * Thread model: try_get and forget on the owner's thread; put on any
 * thread, including completions.  b->lock is a leaf lock.
 */
#include "core.h"

void
ndm_budget_init (struct ndm_budget *b, const char *name, uint64_t cap)
{
  b->name = name;
  b->cap = cap;
  b->used = 0;
  b->nr_waiting = 0;
  ndm_mutex_init (&b->lock, NDM_LOCK_LEAF);
  g_queue_init (&b->waiters);
}

void
ndm_budget_clear (struct ndm_budget *b)
{
  g_queue_clear (&b->waiters);
  ndm_mutex_clear (&b->lock);
}

static bool
budget_charge (struct ndm_budget *b, uint64_t n)
{
  uint64_t before = __atomic_fetch_add (&b->used, n, __ATOMIC_SEQ_CST);

  if (before == 0 || before + n <= b->cap)
    return true;
  __atomic_fetch_sub (&b->used, n, __ATOMIC_SEQ_CST);
  return false;
}

bool
ndm_budget_try_get (struct ndm_budget *b, uint64_t n, struct ndm_waiter *w)
{
  if (budget_charge (b, n))
    return true;

  ndm_mutex_lock (&b->lock);
  if (g_queue_find (&b->waiters, w) == NULL) {
    g_queue_push_tail (&b->waiters, w);
    g_atomic_int_inc (&b->nr_waiting);
  }
  ndm_mutex_unlock (&b->lock);

  /* A put may have run between the failed charge and the queueing and
   * seen no waiter: try once more now that we are visible.
   */
  if (budget_charge (b, n)) {
    ndm_budget_forget (b, w);
    return true;
  }
  return false;
}

void
ndm_budget_forget (struct ndm_budget *b, struct ndm_waiter *w)
{
  ndm_mutex_lock (&b->lock);
  if (g_queue_remove (&b->waiters, w))
    g_atomic_int_add (&b->nr_waiting, -1);
  ndm_mutex_unlock (&b->lock);
}

void
ndm_budget_put (struct ndm_budget *b, uint64_t n)
{
  GList *l;

  __atomic_fetch_sub (&b->used, n, __ATOMIC_SEQ_CST);
  if (g_atomic_int_get (&b->nr_waiting) == 0)
    return;

  /* Wake them all: each retries its own charge; a full budget is rare. */
  ndm_mutex_lock (&b->lock);
  for (l = b->waiters.head; l != NULL; l = l->next)
    ndm_waiter_kick (l->data);
  ndm_mutex_unlock (&b->lock);
}
