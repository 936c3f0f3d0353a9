/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the checks behind struct ndm_mutex (include/nbd-dm/lock.h) in
 * an NDM_LOCK_DEBUG build; without it the wrapper is GLib's GMutex and
 * this file is empty.
 *
 * Each thread keeps, per rank, how many locks of that rank it holds and
 * the last one taken (for the message).  A lock records its owner as the
 * address of that per-thread record: unique among live threads, known
 * without a call into GLib (g_thread_self would make a GThread for every
 * nbdkit thread).
 *
 * The owner is read and written with atomics: ndm_assert_held reads it
 * without the lock when the caller does not hold it (the failing case),
 * which TSan must not report as a race.  Everything else here is
 * thread-local.
 *
 * Failures are g_error: a debug build's assertion, like the core's
 * g_assert, never compiled into a release build.
 *
 * Thread model: every function runs on the calling thread.
 */
#include <stdbool.h>

#include "nbd-dm/lock.h"

#ifdef NDM_LOCK_DEBUG

struct lock_thread {
  unsigned held[NDM_LOCK_NR_RANKS];
  const struct ndm_mutex *last[NDM_LOCK_NR_RANKS];
};

/* initial-exec: in the static TLS block that comes with the thread, not
 * in one ld.so mallocs for a dlopened plugin and frees after the thread
 * is gone on another thread, which TSan, not seeing the order, reports as
 * a race with this thread's last unlock (a waiter retiring at exit).
 */
static __thread struct lock_thread self
  __attribute__ ((tls_model ("initial-exec")));

static const char *const rank_names[NDM_LOCK_NR_RANKS] = {
  [NDM_LOCK_COMMAND] = "command",
  [NDM_LOCK_STATE] = "state",
  [NDM_LOCK_DEVICES] = "devices",
  [NDM_LOCK_TARGET] = "target",
  [NDM_LOCK_REQUEST] = "request",
  [NDM_LOCK_POOL] = "pool",
  [NDM_LOCK_WATCH] = "watch",
  [NDM_LOCK_GHOST] = "ghost",
  [NDM_LOCK_PRISON] = "prison",
  [NDM_LOCK_LEAF] = "leaf",
  [NDM_LOCK_LOG] = "log",
};

static inline bool
held_by_self (const struct ndm_mutex *m)
{
  return __atomic_load_n (&m->owner, __ATOMIC_RELAXED) == &self;
}

/* No lock of m's rank or an inner one may be held when m is taken. */
static void
check_order (struct ndm_mutex *m, const char *func)
{
  unsigned r;

  if (held_by_self (m))
    g_error ("%s: taking %s, which this thread holds already: a GMutex "
             "is not recursive, this deadlocks", func, m->name);
  for (r = m->rank; r < NDM_LOCK_NR_RANKS; r++)
    if (self.held[r] > 0)
      g_error ("%s: taking %s (rank %s) while holding %s (rank %s): lock "
               "order violated (core/request.c)", func, m->name,
               rank_names[m->rank], self.last[r]->name, rank_names[r]);
}

static void
took (struct ndm_mutex *m)
{
  g_atomic_pointer_set (&m->owner, &self);
  self.held[m->rank]++;
  self.last[m->rank] = m;
}

static void
giving_up (struct ndm_mutex *m, const char *func)
{
  if (!held_by_self (m))
    g_error ("%s: unlocking %s, which this thread does not hold", func,
             m->name);
  g_atomic_pointer_set (&m->owner, NULL);
  self.held[m->rank]--;
}

void
ndm_mutex_init_named (struct ndm_mutex *m, enum ndm_lock_rank rank,
                      const char *name)
{
  g_mutex_init (&m->m);
  m->owner = NULL;
  m->name = name;
  m->rank = rank;
}

void
ndm_mutex_clear (struct ndm_mutex *m)
{
  if (g_atomic_pointer_get (&m->owner) != NULL)
    g_error ("clearing %s while a thread holds it", m->name);
  g_mutex_clear (&m->m);
}

void
ndm_mutex_lock_at (struct ndm_mutex *m, const char *func)
{
  check_order (m, func);
  g_mutex_lock (&m->m);
  took (m);
}

/* A trylock cannot deadlock: no order check. */
gboolean
ndm_mutex_trylock_at (struct ndm_mutex *m, const char *func)
{
  if (!g_mutex_trylock (&m->m))
    return FALSE;
  took (m);
  return TRUE;
}

void
ndm_mutex_unlock_at (struct ndm_mutex *m, const char *func)
{
  giving_up (m, func);
  g_mutex_unlock (&m->m);
}

/* The wait gives m up and takes it back while the thread still holds its
 * other locks: those must be outer to m, as for any other taking of m.
 * The thread's counts stand through the wait (it runs nothing meanwhile).
 */
static void
wait_begin (struct ndm_mutex *m, const char *func)
{
  unsigned r;

  ndm_mutex_assert_held_at (m, m->name, func);
  for (r = m->rank + 1; r < NDM_LOCK_NR_RANKS; r++)
    if (self.held[r] > 0)
      g_error ("%s: waiting on %s (rank %s) while holding %s (rank %s): "
               "lock order violated (core/request.c)", func, m->name,
               rank_names[m->rank], self.last[r]->name, rank_names[r]);
  g_atomic_pointer_set (&m->owner, NULL);
}

void
ndm_cond_wait_at (GCond *c, struct ndm_mutex *m, const char *func)
{
  wait_begin (m, func);
  g_cond_wait (c, &m->m);
  g_atomic_pointer_set (&m->owner, &self);
}

gboolean
ndm_cond_wait_until_at (GCond *c, struct ndm_mutex *m, gint64 end_time,
                        const char *func)
{
  gboolean r;

  wait_begin (m, func);
  r = g_cond_wait_until (c, &m->m, end_time);
  g_atomic_pointer_set (&m->owner, &self);
  return r;
}

void
ndm_mutex_assert_held_at (const struct ndm_mutex *m, const char *expr,
                          const char *func)
{
  if (!held_by_self (m))
    g_error ("%s: ndm_assert_held (%s): lock not held by this thread",
             func, expr);
}

#endif /* NDM_LOCK_DEBUG */
