/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: per-thread waiters, how request owners sleep and are woken.
 *
 * Each thread that runs requests has one waiter: an eventfd plus two flags.
 * A waker sets "kicked" and writes the eventfd only if the waiter is in
 * poll(2) ("sleeping"), so a thread that completes its own bio, or a waiter
 * that is busy anyway, costs no system call.  The waiter clears "kicked"
 * before it checks what it waits for and looks at it again after setting
 * "sleeping": with sequentially consistent atomics on both sides a kick is
 * never lost (the waker either sees "sleeping" or the waiter sees "kicked").
 *
 * Thread model: ndm_waiter_self, _prepare and _poll run on the waiter's own
 * thread; ndm_waiter_kick on any thread.  The retirement (waiter_retire)
 * runs on the waiter's thread as it exits.
 *
 * Running out of file descriptors (R13).  ndm_waiter_self returns NULL
 * when the thread has no waiter and cannot get an eventfd (or memory) for
 * one; the request then fails (ndm_request_run: ENOMEM) and the thread
 * tries again at its next request.  Nothing here aborts.
 *
 * Retirement.  A completion may kick the waiter of an owner that has just
 * returned, and its thread may be exiting: the struct is therefore never
 * freed (retired waiters go on a free list and are reused), and a late
 * kick is a spurious wake of whoever has the waiter then.  Keeping every
 * retired waiter's eventfd would pile up one fd per thread that ever ran
 * a request, so only NDM_WAITER_SPARE of them keep theirs ("spare"); the
 * others close it ("bare") and get a fresh one when reused.  Closing is
 * the delicate part: a kicker that decided to write must never find the
 * fd closed, or reused by another file that would take its 8 bytes.  So:
 *
 *   kicker:   kicked = 1; if sleeping == 0, done (no write);
 *             kickers++; if CAS (sleeping, 1 -> 0) then write (efd);
 *             kickers--
 *   owner:    sleeping = 1 ... poll ... sleeping = 0   (ndm_waiter_poll)
 *   retire:   sleeping = 0; wait until kickers == 0; close (efd)
 *
 * All of these are sequentially consistent atomics, so they have one
 * total order.  Only the owner sets "sleeping" to 1, and a retiring owner
 * never does again.  A kicker writes only after its CAS read a 1, that is
 * after an owner's "sleeping = 1" and before the owner's next
 * "sleeping = 0" (a successful CAS is the next modification after the
 * store it read).  That store precedes the retirement's look at
 * "kickers", and the kicker's increment precedes its CAS: the retirement
 * sees the kicker counted, and waits, until the kicker's decrement, which
 * follows its write.  A kicker that comes later finds "sleeping" 0, fails
 * its CAS (or does not try) and touches nothing but flags.  The kicker
 * reads efd only after its CAS, which read the value stored after efd was
 * set, and efd changes again only after the kicker's decrement: it never
 * sees a stale or a closed fd.  Kickers never block between increment and
 * decrement (a nonblocking write), so the wait is short; it spins with
 * g_thread_yield and holds no lock.  A spare keeps its fd and needs no
 * wait: a late write to it is a spurious wake of its next owner.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core.h"
#include "log.h"

void (*ndm_waiter_test_hook) (struct ndm_waiter *w,
                              enum ndm_waiter_hook_point point);

static inline void
test_hook (struct ndm_waiter *w, enum ndm_waiter_hook_point point)
{
  if (G_UNLIKELY (ndm_waiter_test_hook != NULL))
    ndm_waiter_test_hook (w, point);
}

/* Free lists, linked through w->next; a leaf lock. */
static struct ndm_mutex free_lock =
  NDM_MUTEX_INIT (NDM_LOCK_LEAF, "the waiters' free list");
static struct ndm_waiter *spare_waiters;        /* efd open; by free_lock */
static unsigned nr_spare;                       /* by free_lock */
static struct ndm_waiter *bare_waiters;         /* efd -1; by free_lock */

static void
free_push (struct ndm_waiter **list, struct ndm_waiter *w)
{
  ndm_mutex_lock (&free_lock);
  w->next = *list;
  *list = w;
  ndm_mutex_unlock (&free_lock);
}

/* The waiter's thread is exiting (GPrivate destructor): keep the waiter,
 * and its fd only while there are few spares.  See the top of the file
 * for why the wait makes the close safe.
 */
static void
waiter_retire (gpointer data)
{
  struct ndm_waiter *w = data;
  bool keep;

  g_atomic_int_set (&w->sleeping, 0);

  ndm_mutex_lock (&free_lock);
  keep = nr_spare < NDM_WAITER_SPARE;
  if (keep) {
    w->next = spare_waiters;
    spare_waiters = w;
    nr_spare++;
  }
  ndm_mutex_unlock (&free_lock);
  if (keep) {
    test_hook (w, NDM_WAITER_HOOK_RETIRE_KEPT);
    return;
  }

  while (g_atomic_int_get (&w->kickers) != 0) {
    test_hook (w, NDM_WAITER_HOOK_RETIRE_WAIT);
    g_thread_yield ();
  }
  close (w->efd);
  w->efd = -1;
  test_hook (w, NDM_WAITER_HOOK_RETIRE_CLOSED);
  free_push (&bare_waiters, w);
}

static GPrivate self_key = G_PRIVATE_INIT (waiter_retire);

static void
waiter_drain (struct ndm_waiter *w)
{
  uint64_t v;

  while (read (w->efd, &v, sizeof v) == sizeof v)
    ;
}

struct ndm_waiter *
ndm_waiter_self (void)
{
  struct ndm_waiter *w = g_private_get (&self_key);

  if (w != NULL)
    return w;

  /* A spare first: it needs no new fd. */
  ndm_mutex_lock (&free_lock);
  if (spare_waiters != NULL) {
    w = spare_waiters;
    spare_waiters = w->next;
    nr_spare--;
  }
  else if (bare_waiters != NULL) {
    w = bare_waiters;
    bare_waiters = w->next;
  }
  ndm_mutex_unlock (&free_lock);

  if (w == NULL) {
    w = g_try_new0 (struct ndm_waiter, 1);
    if (w == NULL) {
      ndm_log_error ("cannot run a request on this thread: out of memory "
                     "for its waiter");
      return NULL;
    }
    w->efd = -1;
  }
  if (w->efd == -1) {
    w->efd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd == -1) {
      /* Out of fds most likely (EMFILE, ENFILE).  This request fails and
       * the next one on this thread tries again; the server goes on.
       */
      ndm_log_error ("cannot run a request on this thread: eventfd: %s",
                     g_strerror (errno));
      free_push (&bare_waiters, w);
      return NULL;
    }
  }
  else
    waiter_drain (w);
  w->next = NULL;
  g_atomic_int_set (&w->sleeping, 0);
  g_atomic_int_set (&w->kicked, 0);
  g_private_set (&self_key, w);
  return w;
}

/* Kicks made while a leader services a channel wait until it is done:
 * libnbd runs our completion callbacks under its handle lock, and every
 * write(2) to an eventfd in there is time other submitters wait on that
 * lock.  The owners' state (pending, ready) is already updated; only the
 * wake-up is deferred, by the length of one notify.
 */
#define KICK_BATCH_MAX 64

struct kick_batch {
  bool active;
  unsigned n;
  struct ndm_waiter *w[KICK_BATCH_MAX];
};

static __thread struct kick_batch kick_batch;

void
ndm_waiter_batch_begin (void)
{
  kick_batch.active = true;
}

void
ndm_waiter_batch_end (void)
{
  unsigned i, n = kick_batch.n;

  kick_batch.active = false;
  kick_batch.n = 0;
  for (i = 0; i < n; i++)
    ndm_waiter_kick (kick_batch.w[i]);
}

void
ndm_waiter_kick (struct ndm_waiter *w)
{
  static const uint64_t one = 1;

  if (kick_batch.active) {
    unsigned i;

    for (i = 0; i < kick_batch.n; i++)
      if (kick_batch.w[i] == w)
        return;
    if (kick_batch.n < KICK_BATCH_MAX) {
      kick_batch.w[kick_batch.n++] = w;
      return;
    }
  }
  g_atomic_int_set (&w->kicked, 1);
  /* Not in poll: it will see "kicked".  The common case, and the only
   * one for a retired waiter; no need to be counted.
   */
  if (!g_atomic_int_get (&w->sleeping))
    return;
  g_atomic_int_inc (&w->kickers);
  if (g_atomic_int_compare_and_exchange (&w->sleeping, 1, 0)) {
    int efd;
    ssize_t r;

    test_hook (w, NDM_WAITER_HOOK_KICK_WRITE);
    efd = w->efd;
    do
      r = write (efd, &one, sizeof one);
    while (r == -1 && errno == EINTR);
    /* EAGAIN means the counter is full: the waiter will wake anyway. */
  }
  g_atomic_int_add (&w->kickers, -1);
}

void
ndm_waiter_prepare (struct ndm_waiter *w)
{
  g_atomic_int_set (&w->kicked, 0);
}

int
ndm_waiter_poll (struct ndm_waiter *w, struct pollfd *fds, unsigned nfds,
                 int timeout_ms)
{
  int r;

  fds[nfds].fd = w->efd;
  fds[nfds].events = POLLIN;
  fds[nfds].revents = 0;

  g_atomic_int_set (&w->sleeping, 1);
  if (g_atomic_int_get (&w->kicked)) {
    /* Kicked between prepare and now: do not sleep.  Whoever kicked may
     * also have seen sleeping == 1 and written the eventfd; the next poll
     * then returns at once, which is only a spurious wake.
     */
    g_atomic_int_set (&w->sleeping, 0);
    fds[nfds].revents = POLLIN;
    return 1;
  }
  do
    r = poll (fds, nfds + 1, timeout_ms);
  while (r == -1 && errno == EINTR);
  g_atomic_int_set (&w->sleeping, 0);
  if (r > 0 && (fds[nfds].revents & POLLIN))
    waiter_drain (w);
  return r;
}
