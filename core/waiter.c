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
 * thread; ndm_waiter_kick on any thread.  Waiters are recycled, not freed,
 * when their thread exits: a completion may still kick the waiter of an
 * owner that has just returned, which must stay harmless (a spurious wake).
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core.h"

static GMutex free_lock;                 /* protects free_waiters */
static GSList *free_waiters;

static void
waiter_retire (gpointer data)
{
  struct ndm_waiter *w = data;

  g_mutex_lock (&free_lock);
  free_waiters = g_slist_prepend (free_waiters, w);
  g_mutex_unlock (&free_lock);
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

  g_mutex_lock (&free_lock);
  if (free_waiters != NULL) {
    w = free_waiters->data;
    free_waiters = g_slist_delete_link (free_waiters, free_waiters);
  }
  g_mutex_unlock (&free_lock);

  if (w == NULL) {
    w = g_new0 (struct ndm_waiter, 1);
    w->efd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd == -1) {
      /* Without a way to sleep the data path cannot run at all. */
      perror ("nbd-dm: eventfd");
      abort ();
    }
  }
  else
    waiter_drain (w);
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
  if (g_atomic_int_compare_and_exchange (&w->sleeping, 1, 0)) {
    ssize_t r;

    do
      r = write (w->efd, &one, sizeof one);
    while (r == -1 && errno == EINTR);
    /* EAGAIN means the counter is full: the waiter will wake anyway. */
  }
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
