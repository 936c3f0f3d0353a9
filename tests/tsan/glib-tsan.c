/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: tell ThreadSanitizer about GLib's GMutex and GCond.
 *
 * Linked into the unit tests and the plugin of a -DNDM_SANITIZE=TSAN
 * build only (the ndm-tsan-glib target of tests/tsan/CMakeLists.txt),
 * with the linker's --wrap for each function below: a call to
 * g_mutex_lock in the core or a test lands in __wrap_g_mutex_lock, which
 * calls GLib's (__real_g_mutex_lock) and tells TSan what it did.  Calls
 * GLib makes to itself are not redirected: what they protect is GLib's
 * own memory, which TSan does not see either.  In the plugin, nbdkit
 * loads this with the TSan runtime already preloaded (README.md).
 *
 * Why: TSan sees synchronisation only where it intercepts it (pthread_*,
 * atomics in instrumented code, reads and writes of fds).  GLib is not
 * instrumented, and on Linux its GMutex and GCond are its own futex code,
 * not pthread's: without this TSan sees no happens-before from them and
 * reports every access made under a GMutex as a race.  GRWLock,
 * GRecMutex, GPrivate and GThread are pthread_rwlock_*, pthread_mutex_*,
 * pthread_key_* and pthread_create/join underneath, which TSan
 * intercepts; the /tsan/glib/ cases of tests/tsan/test-tsan.c check both
 * halves of that, so a GLib that moves GRWLock to futexes fails there
 * first.
 *
 * The __tsan_mutex_* annotations make each GMutex a mutex for TSan rather
 * than a bare release/acquire pair, so it also reports unlocking a mutex
 * not held, destroying a held one, and lock-order inversions (potential
 * deadlocks) between GMutexes.
 *
 * GSlice is switched off (G_SLICE=always-malloc, see tsan_slice_off): it
 * hands blocks freed by one thread to another through per-thread
 * magazines and GLib's own locks, so TSan, seeing neither a free nor a
 * malloc, reports the new owner's first access against the old owner's.
 *
 * g_once is wrapped too: its fast path, inlined in the caller, is an
 * acquire load of once->status whose release (GLib storing READY) TSan
 * never sees, so what the initialiser made (memory, and file descriptors,
 * which TSan tracks too) raced with every later caller's use of it
 * (integration test test-multipath-no-path: dead_socket's fd in
 * core/devices/nbd.c, reached from two devices' threads).  g_once_init_enter/leave are not wrapped: nbd-dm
 * does not use them.
 *
 * GLib's error-domain lock (a static GRWLock) is made at the first GError
 * of the process: GLib allocates it and publishes it with its own atomics,
 * which TSan does not see, so the next thread's first GError raced with
 * the allocation (integration test test-multipath-no-path: two devices'
 * reconnect threads failing at once).  tsan_glib_errors_early makes that
 * first GError at start-up, before any thread, so pthread_create orders
 * it before every thread's use: no race left to report, and no
 * suppression that could hide one of ours.
 *
 * Thread model: every function runs on the caller's thread, as GLib's.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <sanitizer/tsan_interface.h>

/* GLib's own, reached through --wrap. */
void __real_g_mutex_init (GMutex *m);
void __real_g_mutex_clear (GMutex *m);
void __real_g_mutex_lock (GMutex *m);
gboolean __real_g_mutex_trylock (GMutex *m);
void __real_g_mutex_unlock (GMutex *m);
void __real_g_cond_wait (GCond *c, GMutex *m);
gboolean __real_g_cond_wait_until (GCond *c, GMutex *m, gint64 end_time);
gpointer __real_g_once_impl (GOnce *once, GThreadFunc func, gpointer arg);

/* Only the linker refers to these: declared to keep
 * -Wmissing-prototypes quiet.
 */
void __wrap_g_mutex_init (GMutex *m);
void __wrap_g_mutex_clear (GMutex *m);
void __wrap_g_mutex_lock (GMutex *m);
gboolean __wrap_g_mutex_trylock (GMutex *m);
void __wrap_g_mutex_unlock (GMutex *m);
void __wrap_g_cond_wait (GCond *c, GMutex *m);
gboolean __wrap_g_cond_wait_until (GCond *c, GMutex *m, gint64 end_time);
gpointer __wrap_g_once_impl (GOnce *once, GThreadFunc func, gpointer arg);
const char *__tsan_default_options (void);

void
__wrap_g_mutex_init (GMutex *m)
{
  __real_g_mutex_init (m);
  __tsan_mutex_create (m, 0);
}

void
__wrap_g_mutex_clear (GMutex *m)
{
  __tsan_mutex_destroy (m, 0);
  __real_g_mutex_clear (m);
}

void
__wrap_g_mutex_lock (GMutex *m)
{
  __tsan_mutex_pre_lock (m, 0);
  __real_g_mutex_lock (m);
  __tsan_mutex_post_lock (m, 0, 0);
}

gboolean
__wrap_g_mutex_trylock (GMutex *m)
{
  gboolean r;

  __tsan_mutex_pre_lock (m, __tsan_mutex_try_lock);
  r = __real_g_mutex_trylock (m);
  __tsan_mutex_post_lock (m, __tsan_mutex_try_lock |
                          (r ? 0 : __tsan_mutex_try_lock_failed), 0);
  return r;
}

void
__wrap_g_mutex_unlock (GMutex *m)
{
  __tsan_mutex_pre_unlock (m, 0);
  __real_g_mutex_unlock (m);
  __tsan_mutex_post_unlock (m, 0);
}

/* A wait releases the mutex and takes it again, as pthread_cond_wait,
 * whose TSan interceptor does the same.  No edge from signal or broadcast
 * to the waiter: as with pthread, the order comes from the mutex.
 */
static void
cond_wait_release (GMutex *m)
{
  __tsan_mutex_pre_unlock (m, 0);
  __tsan_mutex_post_unlock (m, 0);
}

static void
cond_wait_reacquire (GMutex *m)
{
  __tsan_mutex_pre_lock (m, 0);
  __tsan_mutex_post_lock (m, 0, 0);
}

void
__wrap_g_cond_wait (GCond *c, GMutex *m)
{
  cond_wait_release (m);
  __real_g_cond_wait (c, m);
  cond_wait_reacquire (m);
}

gboolean
__wrap_g_cond_wait_until (GCond *c, GMutex *m, gint64 end_time)
{
  gboolean r;

  cond_wait_release (m);
  r = __real_g_cond_wait_until (c, m, end_time);
  cond_wait_reacquire (m);
  return r;
}

/* The initialiser releases on the GOnce before GLib stores READY, and the
 * fast path's acquire load of once->status is at that same address (the
 * first field), so TSan pairs them.  A caller that waited in g_once_impl
 * for another thread's initialiser acquires when it returns.
 */
struct once_call {
  GOnce *once;
  GThreadFunc func;
  gpointer arg;
};

static gpointer
once_run (gpointer data)
{
  struct once_call *call = data;
  gpointer r = call->func (call->arg);

  __tsan_release (call->once);
  return r;
}

gpointer
__wrap_g_once_impl (GOnce *once, GThreadFunc func, gpointer arg)
{
  struct once_call call = { once, func, arg };
  gpointer r = __real_g_once_impl (once, once_run, &call);

  __tsan_acquire (once);
  return r;
}

/* Runs when the program or the plugin is loaded (nbdkit loads the plugin
 * before it starts a thread).
 */
__attribute__ ((constructor)) static void
tsan_glib_errors_early (void)
{
  g_error_free (g_error_new_literal (G_FILE_ERROR, G_FILE_ERROR_FAILED,
                                     "tsan: GLib's error-domain lock"));
}

/* The canary of tests/tsan/test-plugin.sh: with NDM_TSAN_CANARY set, a
 * race TSan must report, in the program or plugin this is linked into,
 * at load.  It shows the whole chain works where the tests cannot see it
 * fail otherwise: the runtime preloaded into nbdkit, the plugin
 * instrumented, the options halting the server, the log check failing.
 */
static uint64_t canary_data;
static uint64_t canary_flag;    /* relaxed: orders nothing */

static gpointer
canary_writer (gpointer unused)
{
  canary_data = 42;
  __atomic_store_n (&canary_flag, 1, __ATOMIC_RELAXED);
  return NULL;
}

__attribute__ ((constructor)) static void
tsan_canary (void)
{
  GThread *t;

  if (getenv ("NDM_TSAN_CANARY") == NULL)
    return;
  t = g_thread_new ("tsan-canary", canary_writer, NULL);
  while (__atomic_load_n (&canary_flag, __ATOMIC_RELAXED) == 0)
    g_thread_yield ();
  fprintf (stderr, "tsan canary: read %" G_GUINT64_FORMAT "\n", canary_data);
  g_thread_join (t);
}

/* GSlice reads G_SLICE once, at GLib's first allocation, which comes
 * before any constructor of ours: setting it here would be too late.  So
 * a program started without it starts itself again with it (ctest or by
 * hand alike); glibc passes main's argv to constructors, a dlopened
 * library's too: nbdkit loading the plugin restarts the same way
 * (functions.sh sets G_SLICE for it, so the tests do not need that).
 */
__attribute__ ((constructor)) static void
tsan_slice_off (int argc, char **argv, char **envp)
{
  const char *v = getenv ("G_SLICE");

  if (v != NULL && strstr (v, "always-malloc") != NULL)
    return;
  setenv ("G_SLICE", "always-malloc", 1);
  execv ("/proc/self/exe", argv);
  fprintf (stderr, "%s: cannot restart with G_SLICE=always-malloc: %s\n",
           argv[0], strerror (errno));
  _exit (EXIT_FAILURE);
}

/* Read by the TSan runtime at start-up; TSAN_OPTIONS adds to it.  Any
 * report ends the test program at once with a status of its own, so a
 * race fails the test that ran into it, whoever runs the binary.  Not
 * read in the plugin: nbdkit loads it after the runtime has started
 * (functions.sh passes the same options in TSAN_OPTIONS).
 */
const char *
__tsan_default_options (void)
{
  return "halt_on_error=1:exitcode=66:second_deadlock_stack=1";
}
