/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: tell ThreadSanitizer about GLib's GMutex and GCond.
 *
 * Linked into the unit tests of a -DNDM_SANITIZE=TSAN build only (the
 * ndm-tsan-glib target of tests/tsan/CMakeLists.txt), with the linker's
 * --wrap for each function below: a call to g_mutex_lock in the core or
 * a test lands in __wrap_g_mutex_lock, which calls GLib's
 * (__real_g_mutex_lock) and tells TSan what it did.  Calls GLib makes to itself are not redirected: what
 * they protect is GLib's own memory, which TSan does not see either.
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
 * Not annotated: g_once.  Its fast path is a plain read of once->status
 * in the caller, which no annotation here can make an acquire.  The
 * core's two g_once publish an mmap'd address and an fd, nothing TSan
 * tracks; one that initialised memory for other threads to read would be
 * reported, and would want a GMutex instead.
 *
 * Thread model: every function runs on the caller's thread, as GLib's.
 */
#include <errno.h>
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

/* GSlice reads G_SLICE once, at GLib's first allocation, which comes
 * before any constructor of ours: setting it here would be too late.  So
 * a program started without it starts itself again with it (ctest or by
 * hand alike); glibc passes main's argv to constructors.
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
 * race fails the test that ran into it, whoever runs the binary.
 */
const char *
__tsan_default_options (void)
{
  return "halt_on_error=1:exitcode=66:second_deadlock_stack=1";
}
