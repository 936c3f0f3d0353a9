/* SPDX-License-Identifier: BSD-3-Clause */
/* Waiters when file descriptors run out, and what retired waiters keep
 * (core/waiter.c, R13).
 *
 * The fd shortage is real: the process's soft RLIMIT_NOFILE is lowered to
 * the lowest free descriptor, so the next eventfd() fails with EMFILE.
 * Threads that must hold their waiters at the same time are a "crowd":
 * each member runs a step, reports, and waits for the next step.
 */
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core.h"
#include "harness.h"

#define LINEAR "0 2048 linear fake://a?size=1M 0"

/* ---- file descriptors ---------------------------------------------------- */

static unsigned
count_fds (void)
{
  GDir *d = g_dir_open ("/proc/self/fd", 0, NULL);
  unsigned n = 0;

  g_assert_nonnull (d);
  while (g_dir_read_name (d) != NULL)
    n++;
  g_dir_close (d);
  return n - 1;                 /* the GDir's own */
}

/* Lower the soft fd limit so that no new fd can be made.  Returns the
 * limits to give back to restore_fds.
 */
static struct rlimit
exhaust_fds (void)
{
  struct rlimit old, lim;
  int fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);

  /* The lowest free number: every one below it is taken. */
  g_assert_cmpint (fd, >=, 0);
  close (fd);
  g_assert_cmpint (getrlimit (RLIMIT_NOFILE, &old), ==, 0);
  lim = old;
  lim.rlim_cur = fd;
  g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &lim), ==, 0);
  g_assert_cmpint (open ("/dev/null", O_RDONLY | O_CLOEXEC), ==, -1);
  g_assert_cmpint (errno, ==, EMFILE);
  return old;
}

static void
restore_fds (struct rlimit old)
{
  g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &old), ==, 0);
}

/* ---- crowds: threads that hold their waiters at the same time ------------ */

enum crowd_action {
  CROWD_WAITER,                 /* take a waiter (ndm_waiter_self) */
  CROWD_READ,                   /* run a 4 KiB read through md */
};

struct crowd;

struct member {
  struct crowd *c;
  GThread *thread;
  int result[2];                /* per step: 0 or an errno */
  struct ndm_waiter *w;         /* after a step that succeeded */
};

struct crowd {
  GMutex lock;
  GCond cond;
  enum crowd_action action;
  struct ndm_md *md;
  unsigned n;
  unsigned go;                  /* steps that may start; 2: exit */
  unsigned done[2];
  struct member *m;
};

static int
member_act (struct member *m)
{
  char buf[4096];
  int r;

  if (m->c->action == CROWD_WAITER) {
    m->w = ndm_waiter_self ();
    return m->w != NULL ? 0 : ENOMEM;
  }
  r = h_io (m->c->md, NDM_OP_READ, buf, sizeof buf, 0, 0);
  if (r == 0)
    m->w = ndm_waiter_self ();  /* the one the read used */
  return r;
}

static gpointer
member_thread (gpointer data)
{
  struct member *m = data;
  struct crowd *c = m->c;
  unsigned step;

  for (step = 0; step < 2; step++) {
    g_mutex_lock (&c->lock);
    while (c->go <= step)
      g_cond_wait (&c->cond, &c->lock);
    g_mutex_unlock (&c->lock);
    /* Step 1 only retries what failed in step 0. */
    if (step == 0 || m->result[0] != 0)
      m->result[step] = member_act (m);
    g_mutex_lock (&c->lock);
    c->done[step]++;
    g_cond_broadcast (&c->cond);
    g_mutex_unlock (&c->lock);
  }
  g_mutex_lock (&c->lock);
  while (c->go <= 2)
    g_cond_wait (&c->cond, &c->lock);
  g_mutex_unlock (&c->lock);
  return NULL;
}

/* n threads that run step 0 at once and wait. */
static struct crowd *
crowd_new (unsigned n, enum crowd_action action, struct ndm_md *md)
{
  struct crowd *c = g_new0 (struct crowd, 1);
  unsigned i;

  g_mutex_init (&c->lock);
  g_cond_init (&c->cond);
  c->action = action;
  c->md = md;
  c->n = n;
  c->go = 1;
  c->m = g_new0 (struct member, n);
  for (i = 0; i < n; i++) {
    c->m[i].c = c;
    c->m[i].thread = g_thread_new ("member", member_thread, &c->m[i]);
  }
  g_mutex_lock (&c->lock);
  while (c->done[0] < n)
    g_cond_wait (&c->cond, &c->lock);
  g_mutex_unlock (&c->lock);
  return c;
}

/* Members whose step 0 failed try again; returns when all are done. */
static void
crowd_retry (struct crowd *c)
{
  g_mutex_lock (&c->lock);
  c->go = 2;
  g_cond_broadcast (&c->cond);
  while (c->done[1] < c->n)
    g_cond_wait (&c->cond, &c->lock);
  g_mutex_unlock (&c->lock);
}

/* Let every member exit, and wait until they have: their waiters are
 * retired once g_thread_join returns (thread-specific data destructors
 * run before a thread counts as gone).
 */
static void
crowd_free (struct crowd *c)
{
  unsigned i;

  g_mutex_lock (&c->lock);
  c->go = 3;
  g_cond_broadcast (&c->cond);
  g_mutex_unlock (&c->lock);
  for (i = 0; i < c->n; i++)
    g_thread_join (c->m[i].thread);
  g_mutex_clear (&c->lock);
  g_cond_clear (&c->cond);
  g_free (c->m);
  g_free (c);
}

/* n threads take a waiter each, at the same time, and exit. */
static void
crowd_come_and_go (unsigned n)
{
  crowd_free (crowd_new (n, CROWD_WAITER, NULL));
}

/* ---- R13: out of fds, the request fails and the next one runs ------------ */

/* Threads that find no spare waiter need an eventfd; with none to be had
 * their read fails with ENOMEM (not an abort), the reads of threads that
 * got a spare succeed, and once fds are back the failed threads' next
 * read succeeds, with a waiter from the free list (retired without its
 * fd, given a fresh one).
 */
static void
test_eventfd_failure (void)
{
  struct ndm_md *md = h_md_new (LINEAR, NULL);
  g_autoptr (GHashTable) retired = g_hash_table_new (NULL, NULL);
  struct crowd *c;
  struct rlimit old;
  unsigned i, failed = 0;

  /* More than NDM_WAITER_SPARE threads come and go: the free list then
   * holds waiters without an fd, and more of them than spares.
   */
  c = crowd_new (2 * NDM_WAITER_SPARE + 1, CROWD_WAITER, NULL);
  for (i = 0; i < c->n; i++) {
    g_assert_nonnull (c->m[i].w);
    g_hash_table_add (retired, c->m[i].w);
  }
  crowd_free (c);

  old = exhaust_fds ();
  c = crowd_new (NDM_WAITER_SPARE + 1, CROWD_READ, md);
  for (i = 0; i < c->n; i++) {
    if (c->m[i].result[0] != 0) {
      g_assert_cmpint (c->m[i].result[0], ==, ENOMEM);
      failed++;
    }
  }
  /* At most NDM_WAITER_SPARE found a spare. */
  g_assert_cmpuint (failed, >=, 1);

  restore_fds (old);
  crowd_retry (c);
  for (i = 0; i < c->n; i++) {
    if (c->m[i].result[0] == 0)
      continue;
    g_assert_cmpint (c->m[i].result[1], ==, 0);
    g_assert_true (g_hash_table_contains (retired, c->m[i].w));
  }
  crowd_free (c);
  h_md_free (md);
}

/* ---- retired waiters give their fds back --------------------------------- */

/* Many threads that run requests at once, then exit, leave at most
 * NDM_WAITER_SPARE eventfds behind.
 */
static void
test_fds_bounded (void)
{
  struct ndm_md *md = h_md_new (LINEAR, NULL);
  unsigned before, during, round;

  before = count_fds ();
  for (round = 0; round < 3; round++) {
    struct crowd *c = crowd_new (4 * NDM_WAITER_SPARE, CROWD_READ, md);
    unsigned i;

    for (i = 0; i < c->n; i++)
      g_assert_cmpint (c->m[i].result[0], ==, 0);
    /* Each holds an eventfd now (some of them spares, counted before). */
    during = count_fds ();
    g_assert_cmpuint (during, >=, before + 3 * NDM_WAITER_SPARE);
    crowd_free (c);
    g_assert_cmpuint (count_fds (), <=, before + NDM_WAITER_SPARE);
  }
  h_md_free (md);
}

/* ---- retirement never closes an fd a kicker may write -------------------- */

/* The interleaving the proof at the top of core/waiter.c is about: a
 * kicker has won the CAS on "sleeping" and is about to write the eventfd
 * while its owner wakes for another reason, returns and exits, and its
 * retirement would close the fd (the spares are full).  The retirement
 * must wait for the kicker; closing at once would let the write land in
 * whatever file gets that fd number next.
 */
static struct {
  GMutex lock;
  GCond cond;
  struct ndm_waiter *w;         /* the one watched */
  int efd;
  bool kicker_paused, release_kicker;
  bool retire_kept, retire_waits, retire_closed;
} race;

static void
race_hook (struct ndm_waiter *w, enum ndm_waiter_hook_point point)
{
  g_mutex_lock (&race.lock);
  if (w == race.w) {
    switch (point) {
    case NDM_WAITER_HOOK_KICK_WRITE:
      race.kicker_paused = true;
      g_cond_broadcast (&race.cond);
      while (!race.release_kicker)
        g_cond_wait (&race.cond, &race.lock);
      break;
    case NDM_WAITER_HOOK_RETIRE_KEPT:
      race.retire_kept = true;
      g_cond_broadcast (&race.cond);
      break;
    case NDM_WAITER_HOOK_RETIRE_WAIT:
      race.retire_waits = true;
      g_cond_broadcast (&race.cond);
      break;
    case NDM_WAITER_HOOK_RETIRE_CLOSED:
      race.retire_closed = true;
      g_cond_broadcast (&race.cond);
      break;
    }
  }
  g_mutex_unlock (&race.lock);
}

/* The owner: sleeps on its waiter and a pipe; the test wakes it through
 * the pipe, and it exits.
 */
static gpointer
race_owner (gpointer data)
{
  int *wake = data;
  struct ndm_waiter *w = ndm_waiter_self ();
  struct pollfd pfd[2] = { { .fd = *wake, .events = POLLIN } };

  g_assert_nonnull (w);
  g_mutex_lock (&race.lock);
  race.w = w;
  race.efd = w->efd;
  g_cond_broadcast (&race.cond);
  g_mutex_unlock (&race.lock);

  ndm_waiter_prepare (w);
  g_assert_cmpint (ndm_waiter_poll (w, pfd, 1, -1), ==, 1);
  g_assert_true (pfd[0].revents & POLLIN);
  return NULL;
}

static gpointer
race_kicker (gpointer data)
{
  ndm_waiter_kick (data);
  return NULL;
}

static void
test_retire_waits_for_kicker (void)
{
  int wake[2];
  GThread *owner, *kicker;

  g_assert_cmpint (pipe (wake), ==, 0);
  ndm_waiter_test_hook = race_hook;
  owner = g_thread_new ("owner", race_owner, &wake[0]);
  g_mutex_lock (&race.lock);
  while (race.w == NULL)
    g_cond_wait (&race.cond, &race.lock);
  g_mutex_unlock (&race.lock);

  /* Fill the spares, so that the owner's retirement closes its fd. */
  crowd_come_and_go (NDM_WAITER_SPARE + 1);

  /* Kick only once the owner sleeps: the kick then takes the write path
   * (otherwise it would only set "kicked").  Only the owner sets
   * "sleeping", and nothing else can wake it.
   */
  while (!g_atomic_int_get (&race.w->sleeping))
    g_usleep (1000);
  kicker = g_thread_new ("kicker", race_kicker, race.w);
  g_mutex_lock (&race.lock);
  while (!race.kicker_paused)
    g_cond_wait (&race.cond, &race.lock);
  g_mutex_unlock (&race.lock);

  /* Wake the owner another way; it returns and its thread retires. */
  g_assert_cmpint (write (wake[1], "x", 1), ==, 1);
  g_mutex_lock (&race.lock);
  while (!race.retire_kept && !race.retire_waits && !race.retire_closed)
    g_cond_wait (&race.cond, &race.lock);
  g_mutex_unlock (&race.lock);
  g_assert_false (race.retire_kept);    /* the spares were full */
  g_assert_false (race.retire_closed);
  g_assert_cmpint (fcntl (race.efd, F_GETFD), !=, -1);

  g_mutex_lock (&race.lock);
  race.release_kicker = true;
  g_cond_broadcast (&race.cond);
  g_mutex_unlock (&race.lock);
  g_thread_join (kicker);
  g_thread_join (owner);
  /* Now closed: the kicker was its last writer. */
  g_assert_true (race.retire_closed);

  ndm_waiter_test_hook = NULL;
  race.w = NULL;
  close (wake[0]);
  close (wake[1]);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/waiter/r13/eventfd-failure-fails-request",
                   test_eventfd_failure);
  g_test_add_func ("/waiter/fds/retired-give-back", test_fds_bounded);
  g_test_add_func ("/waiter/retire/waits-for-kicker",
                   test_retire_waits_for_kicker);
  return g_test_run ();
}
