/* SPDX-License-Identifier: BSD-3-Clause */
/* The lock checks of struct ndm_mutex (include/nbd-dm/lock.h): in a build
 * with NDM_LOCK_DEBUG, a _locked function run without its lock aborts, so
 * do an inversion of the lock order, a lock taken twice and an unlock of
 * a lock not held; holding the lock, or taking locks in order, does not.
 * A release build compiles the checks out: every case skips there.
 *
 * Each abort is provoked in a subprocess (g_test_trap_subprocess, one
 * runner over abort_cases) and checked by its message.
 */
#include <stdbool.h>

#include "nbd-dm/lock.h"

#ifdef NDM_LOCK_DEBUG
#define NEEDS_CHECKS() do { } while (0)
#else
#define NEEDS_CHECKS()                                                  \
  do {                                                                  \
    g_test_skip ("NDM_LOCK_DEBUG is off: the checks are compiled out"); \
    return;                                                             \
  } while (0)
#endif

/* What a _locked function looks like. */
struct counter {
  struct ndm_mutex lock;        /* protects n */
  unsigned n;
};

static void
counter_bump_locked (struct counter *c)
{
  ndm_assert_held (&c->lock);
  c->n++;
}

static void
abort_assert_without_lock (void)
{
  struct counter c = { .n = 0 };

  ndm_mutex_init (&c.lock, NDM_LOCK_TARGET);
  counter_bump_locked (&c);
}

static void
test_assert_with_lock (void)
{
  struct counter c = { .n = 0 };

  NEEDS_CHECKS ();
  ndm_mutex_init (&c.lock, NDM_LOCK_TARGET);
  ndm_mutex_lock (&c.lock);
  counter_bump_locked (&c);
  counter_bump_locked (&c);
  ndm_mutex_unlock (&c.lock);
  ndm_mutex_clear (&c.lock);
  g_assert_cmpuint (c.n, ==, 2);
}

/* Held, but by another thread: not good enough. */
struct holder {
  struct counter *c;
  GMutex gate;
  GCond cond;
  int step;                     /* 1: holds c->lock; 2: may let go */
};

static gpointer
holder_thread (gpointer data)
{
  struct holder *h = data;

  ndm_mutex_lock (&h->c->lock);
  g_mutex_lock (&h->gate);
  h->step = 1;
  g_cond_broadcast (&h->cond);
  while (h->step != 2)
    g_cond_wait (&h->cond, &h->gate);
  g_mutex_unlock (&h->gate);
  ndm_mutex_unlock (&h->c->lock);
  return NULL;
}

static void
abort_assert_other_thread (void)
{
  struct counter c = { .n = 0 };
  struct holder h = { .c = &c };

  ndm_mutex_init (&c.lock, NDM_LOCK_TARGET);
  g_mutex_init (&h.gate);
  g_cond_init (&h.cond);
  g_thread_unref (g_thread_new ("holder", holder_thread, &h));
  g_mutex_lock (&h.gate);
  while (h.step != 1)
    g_cond_wait (&h.cond, &h.gate);
  g_mutex_unlock (&h.gate);
  counter_bump_locked (&c);
}

/* ---- the order ------------------------------------------------------------ */

static void
test_order_kept (void)
{
  struct ndm_mutex state, target, leaf, log;

  NEEDS_CHECKS ();
  ndm_mutex_init (&state, NDM_LOCK_STATE);
  ndm_mutex_init (&target, NDM_LOCK_TARGET);
  ndm_mutex_init (&leaf, NDM_LOCK_LEAF);
  ndm_mutex_init (&log, NDM_LOCK_LOG);
  ndm_mutex_lock (&state);
  ndm_mutex_lock (&target);
  ndm_mutex_lock (&leaf);
  ndm_mutex_lock (&log);
  ndm_mutex_unlock (&log);
  ndm_mutex_unlock (&leaf);
  /* Let go of an outer one first: the inner one is still held. */
  ndm_mutex_unlock (&state);
  ndm_mutex_lock (&leaf);
  ndm_assert_held (&target);
  ndm_assert_held (&leaf);
  ndm_mutex_unlock (&leaf);
  ndm_mutex_unlock (&target);
  /* Nothing held: any rank again. */
  ndm_mutex_lock (&leaf);
  ndm_mutex_unlock (&leaf);
  ndm_mutex_lock (&state);
  ndm_mutex_unlock (&state);
  ndm_mutex_clear (&log);
  ndm_mutex_clear (&leaf);
  ndm_mutex_clear (&target);
  ndm_mutex_clear (&state);
}

/* Takes a lock of rank first, then one of rank second. */
static void
take_both (enum ndm_lock_rank first, enum ndm_lock_rank second)
{
  struct ndm_mutex held, taken;

  ndm_mutex_init (&held, first);
  ndm_mutex_init (&taken, second);
  ndm_mutex_lock (&held);
  ndm_mutex_lock (&taken);
}

static void
abort_order_inverted (void)
{
  take_both (NDM_LOCK_PRISON, NDM_LOCK_GHOST);
}

/* Two leaves are never nested (either order could be the other's). */
static void
abort_order_two_leaves (void)
{
  take_both (NDM_LOCK_LEAF, NDM_LOCK_LEAF);
}

static void
abort_taken_twice (void)
{
  struct ndm_mutex m;

  ndm_mutex_init (&m, NDM_LOCK_TARGET);
  ndm_mutex_lock (&m);
  ndm_mutex_lock (&m);
}

static void
abort_unlock_not_held (void)
{
  struct ndm_mutex m;

  ndm_mutex_init (&m, NDM_LOCK_LEAF);
  ndm_mutex_unlock (&m);
}

/* A trylock cannot deadlock, so it may go against the order; once it
 * succeeds the lock is held like any other.
 */
static void
test_trylock (void)
{
  struct ndm_mutex target, leaf;

  NEEDS_CHECKS ();
  ndm_mutex_init (&target, NDM_LOCK_TARGET);
  ndm_mutex_init (&leaf, NDM_LOCK_LEAF);
  ndm_mutex_lock (&leaf);
  g_assert_true (ndm_mutex_trylock (&target));
  ndm_assert_held (&target);
  ndm_mutex_unlock (&target);
  ndm_mutex_unlock (&leaf);
  ndm_mutex_clear (&leaf);
  ndm_mutex_clear (&target);
}

/* ---- condition variables -------------------------------------------------- */

struct waiting {
  struct ndm_mutex lock;        /* protects ready, done */
  GCond cond;
  bool ready, done;
};

static gpointer
waker_thread (gpointer data)
{
  struct waiting *w = data;

  /* Takes the lock while the waiter is in its wait: it owns it now. */
  ndm_mutex_lock (&w->lock);
  ndm_assert_held (&w->lock);
  w->ready = true;
  g_cond_broadcast (&w->cond);
  ndm_mutex_unlock (&w->lock);
  return NULL;
}

static void
test_cond_wait_hands_over (void)
{
  struct waiting w = { .ready = false };
  GThread *t;

  NEEDS_CHECKS ();
  ndm_mutex_init (&w.lock, NDM_LOCK_STATE);
  g_cond_init (&w.cond);
  ndm_mutex_lock (&w.lock);
  t = g_thread_new ("waker", waker_thread, &w);
  while (!w.ready)
    ndm_cond_wait (&w.cond, &w.lock);
  ndm_assert_held (&w.lock);
  w.ready = false;
  g_thread_join (t);
  t = g_thread_new ("waker", waker_thread, &w);
  while (!w.ready)
    g_assert_true (ndm_cond_wait_until (&w.cond, &w.lock,
                                        g_get_monotonic_time () +
                                        60 * G_TIME_SPAN_SECOND));
  ndm_assert_held (&w.lock);
  ndm_mutex_unlock (&w.lock);
  g_thread_join (t);
  g_cond_clear (&w.cond);
  ndm_mutex_clear (&w.lock);
}

/* Waiting on an outer lock while holding an inner one takes the outer one
 * again inside the inner: an inversion like any other.
 */
static void
abort_cond_wait_inverted (void)
{
  struct ndm_mutex state, leaf;
  GCond cond;

  ndm_mutex_init (&state, NDM_LOCK_STATE);
  ndm_mutex_init (&leaf, NDM_LOCK_LEAF);
  g_cond_init (&cond);
  ndm_mutex_lock (&leaf);
  g_assert_true (ndm_mutex_trylock (&state));
  ndm_cond_wait_until (&cond, &state, g_get_monotonic_time ());
}

static void
abort_cond_wait_not_held (void)
{
  struct ndm_mutex m;
  GCond cond;

  ndm_mutex_init (&m, NDM_LOCK_STATE);
  g_cond_init (&cond);
  ndm_cond_wait_until (&cond, &m, g_get_monotonic_time ());
}

/* ---- running the cases that must abort ----------------------------------- */

struct abort_case {
  const char *path;
  void (*run) (void);           /* in the subprocess: must not return */
  const char *stderr_pattern;   /* g_test_trap_assert_stderr's */
};

static const struct abort_case abort_cases[] = {
  { "/lock/held/missing-aborts", abort_assert_without_lock,
    "*counter_bump_locked: ndm_assert_held (&c->lock): lock not held by "
    "this thread*" },
  { "/lock/held/by-another-thread-aborts", abort_assert_other_thread,
    "*counter_bump_locked: ndm_assert_held (&c->lock): lock not held*" },
  { "/lock/order/inverted-aborts", abort_order_inverted,
    "*take_both: taking &taken (rank ghost) while holding &held (rank "
    "prison): lock order violated*" },
  { "/lock/order/two-leaves-abort", abort_order_two_leaves,
    "*taking &taken (rank leaf) while holding &held (rank leaf)*" },
  { "/lock/order/taken-twice-aborts", abort_taken_twice,
    "*taking &m, which this thread holds already*" },
  { "/lock/unlock/not-held-aborts", abort_unlock_not_held,
    "*unlocking &m, which this thread does not hold*" },
  { "/lock/cond/wait-inverted-aborts", abort_cond_wait_inverted,
    "*waiting on &state (rank state) while holding &leaf (rank leaf)*" },
  { "/lock/cond/wait-not-held-aborts", abort_cond_wait_not_held,
    "*abort_cond_wait_not_held*not held*" },
};

static void
test_aborts (gconstpointer data)
{
  const struct abort_case *c = data;

  NEEDS_CHECKS ();
  if (g_test_subprocess ()) {
    c->run ();
    g_printerr ("%s: the check did not fire\n", c->path);
    return;
  }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr (c->stderr_pattern);
}

int
main (int argc, char *argv[])
{
  size_t i;

  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/lock/held/present", test_assert_with_lock);
  g_test_add_func ("/lock/order/kept", test_order_kept);
  g_test_add_func ("/lock/trylock/held", test_trylock);
  g_test_add_func ("/lock/cond/wait-hands-over", test_cond_wait_hands_over);
  for (i = 0; i < G_N_ELEMENTS (abort_cases); i++)
    g_test_add_data_func (abort_cases[i].path, &abort_cases[i], test_aborts);
  return g_test_run ();
}
