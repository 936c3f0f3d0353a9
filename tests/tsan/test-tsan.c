/* SPDX-License-Identifier: BSD-3-Clause */
/* Checks of the TSan build itself (built only with -DNDM_SANITIZE=TSAN).
 *
 * The unit tests pass under TSan for two reasons that could silently stop
 * holding: TSan reports races and fails the test program
 * (__tsan_default_options in glib-tsan.c), and it sees the order GLib's
 * locks give (the GMutex/GCond annotations of glib-tsan.c, TSan's own
 * pthread interceptors for GRWLock).  A TSan stage where either broke
 * would pass whatever the core did; these cases fail instead.
 *
 * Racy cases run in a g_test subprocess: the report ends that process.
 *
 * Thread model: each case starts its threads and joins them.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <glib.h>

#define ROUNDS 1000

/* glib-tsan.c wraps g_mutex_lock for code linked with --wrap; the real
 * one is what TSan would see without it.
 */
void __real_g_mutex_lock (GMutex *m);
void __real_g_mutex_unlock (GMutex *m);
gpointer __real_g_once_impl (GOnce *once, GThreadFunc func, gpointer arg);

/* Each field checked for races is 8 bytes, so it has a shadow granule of
 * its own: TSan keeps a few accesses per 8 bytes, and those to a
 * neighbour could push out the one a race is against.
 */
struct shared {
  GMutex lock;
  GCond cond;
  GRWLock rwlock;
  uint64_t counter;             /* protected by lock, or rwlock */
  uint64_t data;                /* written before ready is set */
  uint64_t flag;                /* relaxed atomics only: no order at all */
  bool ready;                   /* protected by lock */
};

/* Lock through glib-tsan.c's wrappers (false: GLib's own, unseen). */
static bool wrapped;

static void
shared_init (struct shared *s, bool wrap)
{
  memset (s, 0, sizeof *s);
  g_mutex_init (&s->lock);
  g_cond_init (&s->cond);
  g_rw_lock_init (&s->rwlock);
  wrapped = wrap;
}

static void
shared_clear (struct shared *s)
{
  g_rw_lock_clear (&s->rwlock);
  g_cond_clear (&s->cond);
  g_mutex_clear (&s->lock);
}

static void
run_two (GThreadFunc fn, struct shared *s)
{
  GThread *a = g_thread_new ("tsan-a", fn, s);
  GThread *b = g_thread_new ("tsan-b", fn, s);

  g_thread_join (a);
  g_thread_join (b);
}

/* In a subprocess, expect it to end with a TSan data race report. */
static void
expect_race_reported (void)
{
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*WARNING: ThreadSanitizer: data race*");
}

static gpointer
count_under_mutex (gpointer data)
{
  struct shared *s = data;
  unsigned i;

  for (i = 0; i < ROUNDS; i++) {
    if (wrapped)
      g_mutex_lock (&s->lock);
    else
      __real_g_mutex_lock (&s->lock);
    s->counter++;
    if (wrapped)
      g_mutex_unlock (&s->lock);
    else
      __real_g_mutex_unlock (&s->lock);
  }
  return NULL;
}

static gpointer
canary_writer (gpointer data)
{
  struct shared *s = data;

  s->data = 42;
  __atomic_store_n (&s->flag, 1, __ATOMIC_RELAXED);
  return NULL;
}

/* A plain store, published by a relaxed atomic, which orders nothing:
 * the race TSan must always report, whatever the timing (rq->ready's was
 * of this kind).
 */
static void
test_canary_relaxed (void)
{
  if (g_test_subprocess ()) {
    struct shared s;
    GThread *t;

    shared_init (&s, true);
    t = g_thread_new ("tsan-writer", canary_writer, &s);
    while (__atomic_load_n (&s.flag, __ATOMIC_RELAXED) == 0)
      g_thread_yield ();
    g_assert_cmpuint (s.data, ==, 42);
    g_thread_join (t);
    shared_clear (&s);
    return;
  }
  expect_race_reported ();
}

/* GLib's GMutex is invisible to TSan by itself: if this stops being
 * reported, GLib's GMutex went through pthread and glib-tsan.c is no
 * longer needed for it.
 */
static void
test_mutex_unwrapped (void)
{
  if (g_test_subprocess ()) {
    struct shared s;

    shared_init (&s, false);
    run_two (count_under_mutex, &s);
    shared_clear (&s);
    return;
  }
  expect_race_reported ();
}

/* Two threads count with fn, through the wrappers: nothing reported,
 * nothing lost.
 */
static void
count_twice (GThreadFunc fn)
{
  struct shared s;

  shared_init (&s, true);
  run_two (fn, &s);
  g_assert_cmpuint (s.counter, ==, 2 * ROUNDS);
  shared_clear (&s);
}

static void
test_mutex_wrapped (void)
{
  count_twice (count_under_mutex);
}

static gpointer
count_under_trylock (gpointer data)
{
  struct shared *s = data;
  unsigned i;

  for (i = 0; i < ROUNDS; i++) {
    while (!g_mutex_trylock (&s->lock))
      g_thread_yield ();
    s->counter++;
    g_mutex_unlock (&s->lock);
  }
  return NULL;
}

static void
test_trylock (void)
{
  count_twice (count_under_trylock);
}

/* The hand-over every waiter in the core does: data written, a flag set
 * under the mutex, the other side waits for the flag and reads the data
 * after unlocking.
 */
static gpointer
cond_producer (gpointer data)
{
  struct shared *s = data;

  s->data = 42;
  g_mutex_lock (&s->lock);
  s->ready = true;
  g_cond_broadcast (&s->cond);
  g_mutex_unlock (&s->lock);
  return NULL;
}

static void
cond_handover (bool until)
{
  struct shared s;
  GThread *t;

  shared_init (&s, true);
  t = g_thread_new ("tsan-producer", cond_producer, &s);
  g_mutex_lock (&s.lock);
  while (!s.ready) {
    if (until)
      g_cond_wait_until (&s.cond, &s.lock,
                         g_get_monotonic_time () + G_TIME_SPAN_MILLISECOND);
    else
      g_cond_wait (&s.cond, &s.lock);
  }
  g_mutex_unlock (&s.lock);
  g_assert_cmpuint (s.data, ==, 42);
  g_thread_join (t);
  shared_clear (&s);
}

static void
test_cond_wait (void)
{
  cond_handover (false);
}

static void
test_cond_wait_until (void)
{
  cond_handover (true);
}

/* g_once: the initialiser writes plainly, a later caller takes the fast
 * path and reads.  Nothing but the GOnce orders the two.
 */
static GOnce once_block = G_ONCE_INIT;
static uint64_t once_data;
static uint64_t once_done;      /* relaxed: orders nothing */

static gpointer
once_init (gpointer unused)
{
  once_data = 42;
  return &once_data;
}

static gpointer
once_initialiser (gpointer data)
{
  if (wrapped)
    g_once (&once_block, once_init, NULL);
  else
    __real_g_once_impl (&once_block, once_init, NULL);
  __atomic_store_n (&once_done, 1, __ATOMIC_RELAXED);
  return NULL;
}

static void
once_handover (bool wrap)
{
  GThread *t;
  uint64_t *p;

  wrapped = wrap;
  t = g_thread_new ("tsan-once", once_initialiser, NULL);
  while (__atomic_load_n (&once_done, __ATOMIC_RELAXED) == 0)
    g_thread_yield ();
  p = g_once (&once_block, once_init, NULL);
  g_assert_cmpuint (*p, ==, 42);
  g_thread_join (t);
}

static void
test_once (void)
{
  if (g_test_subprocess ()) {
    once_handover (true);
    return;
  }
  /* A subprocess: the GOnce is the process's, used once. */
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

/* Without the wrapper, the fast path orders nothing for TSan: if this
 * stops being reported, GLib's g_once became visible to TSan by itself.
 */
static void
test_once_unwrapped (void)
{
  if (g_test_subprocess ()) {
    once_handover (false);
    return;
  }
  expect_race_reported ();
}

/* GError: a thread's first error after another's, nothing ordering
 * them (two devices failing at once).
 */
static uint64_t error_made;     /* relaxed: orders nothing */

static gpointer
error_first (gpointer unused)
{
  g_error_free (g_error_new_literal (G_FILE_ERROR, G_FILE_ERROR_IO, "a"));
  __atomic_store_n (&error_made, 1, __ATOMIC_RELAXED);
  return NULL;
}

static void
test_error_first_use (void)
{
  if (g_test_subprocess ()) {
    GThread *t = g_thread_new ("tsan-error", error_first, NULL);

    while (__atomic_load_n (&error_made, __ATOMIC_RELAXED) == 0)
      g_thread_yield ();
    g_error_free (g_error_new_literal (G_FILE_ERROR, G_FILE_ERROR_IO, "b"));
    g_thread_join (t);
    return;
  }
  /* A subprocess: the first GError of the process. */
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

static gpointer
count_under_rwlock (gpointer data)
{
  struct shared *s = data;
  unsigned i, seen = 0;

  for (i = 0; i < ROUNDS; i++) {
    g_rw_lock_writer_lock (&s->rwlock);
    s->counter++;
    g_rw_lock_writer_unlock (&s->rwlock);
    g_rw_lock_reader_lock (&s->rwlock);
    seen += s->counter > 0;
    g_rw_lock_reader_unlock (&s->rwlock);
  }
  g_assert_cmpuint (seen, ==, ROUNDS);
  return NULL;
}

/* GRWLock is pthread_rwlock underneath, which TSan intercepts: not
 * wrapped.  If GLib moves it to futexes this reports a race.
 */
static void
test_rwlock (void)
{
  count_twice (count_under_rwlock);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/tsan/canary/relaxed-publish-reported",
                   test_canary_relaxed);
  g_test_add_func ("/tsan/glib/mutex-unwrapped-reported",
                   test_mutex_unwrapped);
  g_test_add_func ("/tsan/glib/mutex", test_mutex_wrapped);
  g_test_add_func ("/tsan/glib/mutex-trylock", test_trylock);
  g_test_add_func ("/tsan/glib/cond-wait", test_cond_wait);
  g_test_add_func ("/tsan/glib/cond-wait-until", test_cond_wait_until);
  g_test_add_func ("/tsan/glib/rwlock", test_rwlock);
  g_test_add_func ("/tsan/glib/once", test_once);
  g_test_add_func ("/tsan/glib/error-first-use", test_error_first_use);
  g_test_add_func ("/tsan/glib/once-unwrapped-reported",
                   test_once_unwrapped);
  return g_test_run ();
}
