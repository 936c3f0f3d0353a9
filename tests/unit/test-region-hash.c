/* SPDX-License-Identifier: BSD-3-Clause */
/* The region hash (core/region-hash.c): region states, held writes and
 * their release, recovery's quiesce, with hand-made write clones whose
 * owner is the test thread (a release kicks it and zeroes not_before).
 */
#include <string.h>

#include "core.h"
#include "harness.h"
#include "mem-log.h"
#include "region-hash.h"

#define RS 4096                 /* region size of every log here */

struct fix {
  struct ndm_mutex lock;        /* the mirror's */
  struct ndm_dirty_log *log;
  struct ndm_region_hash rh;
};

/* The owner of every test clone: a release kicks its waiter. */
static struct ndm_request test_rq;

/* A hash over regions regions; stored: the memory log, else core.
 * args as the log's words after "core".
 */
static void
fix_init (struct fix *f, bool stored, const char *args, uint64_t regions)
{
  g_autofree char *words = g_strconcat ("core ", args, NULL);
  unsigned used;

  ndm_mutex_init (&f->lock, NDM_LOCK_TARGET);
  f->log = stored ? mem_log_new (args, regions * RS, 2)
    : core_log_new (words, regions * RS, &used);
  g_assert_cmpint (ndm_dirty_log_load (f->log, NULL), >=, 0);
  ndm_rh_init (&f->rh, f->log, &f->lock, regions * RS);
  test_rq.owner = ndm_waiter_self ();
}

static void
fix_clear (struct fix *f)
{
  ndm_rh_clear (&f->rh);
  ndm_dirty_log_free (f->log);
  ndm_mutex_clear (&f->lock);
}

/* A write clone as map would hold it: not_before far away. */
static struct ndm_rh_io *
clone_init (struct ndm_clone *c)
{
  struct ndm_rh_io *io;

  memset (c, 0, sizeof *c);
  c->rq = &test_rq;
  c->not_before = G_MAXINT64;
  io = ndm_clone_per_io (c);
  io->link.data = c;
  return io;
}

static bool
released (struct ndm_clone *c)
{
  return ndm_clone_not_before (c) == 0;
}

static enum ndm_rh_write
start (struct fix *f, struct ndm_clone *c, uint64_t first, uint64_t last,
       uint64_t also_wait)
{
  enum ndm_rh_write w;

  c->not_before = G_MAXINT64;
  ndm_mutex_lock (&f->lock);
  w = ndm_rh_write_start_locked (&f->rh, ndm_clone_per_io (c), first, last,
                                 also_wait);
  ndm_mutex_unlock (&f->lock);
  return w;
}

static void
end (struct fix *f, struct ndm_clone *c)
{
  ndm_mutex_lock (&f->lock);
  ndm_rh_write_end_locked (&f->rh, ndm_clone_per_io (c));
  ndm_mutex_unlock (&f->lock);
}

static enum ndm_region_state
state (struct fix *f, uint64_t r)
{
  enum ndm_region_state s;

  ndm_mutex_lock (&f->lock);
  s = ndm_rh_state_locked (&f->rh, r);
  ndm_mutex_unlock (&f->lock);
  return s;
}

static unsigned
pending (struct fix *f, uint64_t r)
{
  struct ndm_region *reg;
  unsigned n;

  ndm_mutex_lock (&f->lock);
  reg = g_hash_table_lookup (f->rh.regions, &r);
  n = reg != NULL ? reg->pending : 0;
  ndm_mutex_unlock (&f->lock);
  return n;
}

static unsigned
nr_structs (struct fix *f)
{
  unsigned n;

  ndm_mutex_lock (&f->lock);
  n = g_hash_table_size (f->rh.regions);
  ndm_mutex_unlock (&f->lock);
  return n;
}

static bool
marked (struct fix *f, uint64_t r)
{
  uint64_t at = r;
  bool m;

  ndm_mutex_lock (&f->log->lock);
  m = ndm_dirty_log_next_marked_locked (f->log, &at) && at == r;
  ndm_mutex_unlock (&f->log->lock);
  return m;
}

static bool
in_sync (struct fix *f, uint64_t r)
{
  bool s;

  ndm_mutex_lock (&f->log->lock);
  s = ndm_dirty_log_in_sync_locked (f->log, r);
  ndm_mutex_unlock (&f->log->lock);
  return s;
}

static void
nosync (struct fix *f, uint64_t first, uint64_t last)
{
  ndm_mutex_lock (&f->lock);
  ndm_rh_mark_nosync_locked (&f->rh, first, last);
  ndm_mutex_unlock (&f->lock);
}

static bool
prepare (struct fix *f, uint64_t *r)
{
  bool got;

  ndm_mutex_lock (&f->lock);
  got = ndm_rh_recovery_prepare_locked (&f->rh, r);
  ndm_mutex_unlock (&f->lock);
  return got;
}

static bool
recovery_wait (struct fix *f)
{
  bool ok;

  ndm_mutex_lock (&f->lock);
  ok = ndm_rh_recovery_wait_locked (&f->rh);
  ndm_mutex_unlock (&f->lock);
  return ok;
}

static void
recovery_end (struct fix *f, bool ok)
{
  ndm_mutex_lock (&f->lock);
  ndm_rh_recovery_end_locked (&f->rh, ok);
  ndm_mutex_unlock (&f->lock);
}

/* One group commit of a stored log, and the release that follows. */
static int64_t
commit_and_release (struct fix *f, bool clears)
{
  int err = 0;
  int64_t t = mem_log_commit (f->log, clears, &err);

  ndm_rh_log_committed (&f->rh, t < 0 ? 0 : t, t < 0);
  return t;
}

/* ---- writes ------------------------------------------------------------- */

static void
test_region_of_offset (void)
{
  struct fix f;

  fix_init (&f, false, "2 16 nosync", 64);
  g_assert_cmpuint (f.rh.region_size, ==, 8192);
  g_assert_cmpuint (f.rh.nr_regions, ==, 32);
  g_assert_cmpuint (ndm_rh_region (&f.rh, 8191), ==, 0);
  g_assert_cmpuint (ndm_rh_region (&f.rh, 8192), ==, 1);
  fix_clear (&f);
}

/* CLEAN: counted, marked, DIRTY; the last end makes it CLEAN, unmarked,
 * with no struct left.
 */
static void
test_write_clean (void)
{
  struct fix f;
  struct ndm_clone a, b;

  fix_init (&f, false, "2 8 nosync", 64);
  clone_init (&a);
  clone_init (&b);
  g_assert_cmpint (state (&f, 3), ==, NDM_RH_CLEAN);
  g_assert_cmpint (start (&f, &a, 3, 4, 0), ==, NDM_RH_WRITE_GO);
  g_assert_cmpint (start (&f, &b, 4, 4, 0), ==, NDM_RH_WRITE_GO);
  g_assert_cmpint (state (&f, 3), ==, NDM_RH_DIRTY);
  g_assert_cmpuint (pending (&f, 4), ==, 2);
  g_assert_true (marked (&f, 3) && marked (&f, 4));
  end (&f, &a);
  g_assert_cmpint (state (&f, 3), ==, NDM_RH_CLEAN);
  g_assert_false (marked (&f, 3));
  g_assert_cmpint (state (&f, 4), ==, NDM_RH_DIRTY);
  end (&f, &b);
  end (&f, &b);                 /* a second end is a no-op */
  g_assert_cmpint (state (&f, 4), ==, NDM_RH_CLEAN);
  g_assert_cmpuint (nr_structs (&f), ==, 0);
  fix_clear (&f);
}

/* A stored log: the first write to a clean region waits for its mark's
 * commit, and so does a second write to it meanwhile; the commit
 * releases both and they go.  Their end makes the region CLEAN with the
 * mark on the device until a clear commit.
 */
static void
test_write_waits_for_mark (void)
{
  struct fix f;
  struct ndm_clone a, b;

  fix_init (&f, true, "2 8 nosync", 64);
  clone_init (&a);
  clone_init (&b);
  g_assert_cmpint (start (&f, &a, 2, 2, 0), ==, NDM_RH_WRITE_WAIT_LOG);
  g_assert_cmpint (start (&f, &b, 2, 2, 0), ==, NDM_RH_WRITE_WAIT_LOG);
  g_assert_false (released (&a) || released (&b));
  g_assert_cmpint (state (&f, 2), ==, NDM_RH_DIRTY);
  g_assert_cmpuint (pending (&f, 2), ==, 2);
  g_assert_cmpint (commit_and_release (&f, false), >, 0);
  g_assert_true (released (&a) && released (&b));
  g_assert_cmpint (start (&f, &a, 2, 2, 0), ==, NDM_RH_WRITE_GO);
  g_assert_cmpint (start (&f, &b, 2, 2, 0), ==, NDM_RH_WRITE_GO);
  g_assert_cmpuint (pending (&f, 2), ==, 2);
  end (&f, &a);
  end (&f, &b);
  g_assert_cmpint (state (&f, 2), ==, NDM_RH_CLEAN);
  g_assert_true (mem_log_dev_bit (f.log, 2));
  /* Written again before the clear is committed: no commit needed. */
  g_assert_cmpint (start (&f, &a, 2, 2, 0), ==, NDM_RH_WRITE_GO);
  end (&f, &a);
  g_assert_cmpint (commit_and_release (&f, true), >, 0);
  g_assert_false (mem_log_dev_bit (f.log, 2));
  g_assert_cmpstr (mem_log_of (f.log)->order->str, ==, "WFW");
  fix_clear (&f);
}

/* NOSYNC (a core log without nosync: nothing is known equal): a write
 * goes, marked, and the region stays NOSYNC after it.
 */
static void
test_write_nosync (void)
{
  struct fix f;
  struct ndm_clone a;

  fix_init (&f, false, "1 8", 16);
  clone_init (&a);
  g_assert_cmpint (state (&f, 5), ==, NDM_RH_NOSYNC);
  g_assert_cmpint (start (&f, &a, 5, 5, 0), ==, NDM_RH_WRITE_GO);
  g_assert_cmpint (state (&f, 5), ==, NDM_RH_NOSYNC);
  end (&f, &a);
  g_assert_cmpint (state (&f, 5), ==, NDM_RH_NOSYNC);
  g_assert_true (marked (&f, 5));
  g_assert_cmpuint (nr_structs (&f), ==, 0);
  fix_clear (&f);
}

/* A map again over another range (a requeued tail): the counts move. */
static void
test_write_remap_moves_counts (void)
{
  struct fix f;
  struct ndm_clone a;

  fix_init (&f, false, "2 8 nosync", 16);
  clone_init (&a);
  g_assert_cmpint (start (&f, &a, 1, 2, 0), ==, NDM_RH_WRITE_GO);
  g_assert_cmpint (start (&f, &a, 2, 3, 0), ==, NDM_RH_WRITE_GO);
  g_assert_cmpint (state (&f, 1), ==, NDM_RH_CLEAN);
  g_assert_cmpuint (pending (&f, 2), ==, 1);
  g_assert_cmpuint (pending (&f, 3), ==, 1);
  end (&f, &a);
  g_assert_cmpuint (nr_structs (&f), ==, 0);
  fix_clear (&f);
}

/* ---- recovery ----------------------------------------------------------- */

/* A write to a RECOVERING region is held, not counted; the copy's end
 * releases it, ok (in sync, CLEAN) or failed (NOSYNC, handed out again).
 */
static void
recovery_holds (bool ok)
{
  struct fix f;
  struct ndm_clone a;
  uint64_t r;

  fix_init (&f, false, "2 8 nosync", 16);
  clone_init (&a);
  nosync (&f, 3, 3);
  g_assert_cmpint (state (&f, 3), ==, NDM_RH_NOSYNC);
  g_assert_true (prepare (&f, &r));
  g_assert_cmpuint (r, ==, 3);
  g_assert_cmpint (state (&f, 3), ==, NDM_RH_RECOVERING);
  g_assert_cmpint (start (&f, &a, 2, 4, 0), ==, NDM_RH_WRITE_WAIT_RECOVERY);
  g_assert_cmpuint (pending (&f, 2), ==, 0);
  g_assert_cmpuint (pending (&f, 3), ==, 0);
  g_assert_true (recovery_wait (&f));
  g_assert_false (released (&a));
  /* One region at a time. */
  g_assert_false (prepare (&f, &r));
  recovery_end (&f, ok);
  g_assert_true (released (&a));
  g_assert_cmpint (state (&f, 3), ==, ok ? NDM_RH_CLEAN : NDM_RH_NOSYNC);
  g_assert_cmpint (in_sync (&f, 3), ==, ok);
  g_assert_cmpint (marked (&f, 3), ==, !ok);
  g_assert_cmpint (start (&f, &a, 2, 4, 0), ==, NDM_RH_WRITE_GO);
  end (&f, &a);
  g_assert_cmpint (prepare (&f, &r), ==, !ok);
  if (!ok) {
    g_assert_cmpuint (r, ==, 3);
    recovery_end (&f, true);
  }
  g_assert_cmpuint (nr_structs (&f), ==, 0);
  fix_clear (&f);
}

static void
test_recovery_end_ok (void)
{
  recovery_holds (true);
}

static void
test_recovery_end_failed (void)
{
  recovery_holds (false);
}

struct waiter {
  struct fix *f;
  gint done;
  bool result;
};

static gpointer
wait_thread (gpointer data)
{
  struct waiter *w = data;

  w->result = recovery_wait (w->f);
  g_atomic_int_set (&w->done, 1);
  return NULL;
}

/* Region 6 is picked for recovery while a's write to it is in flight,
 * b's write comes after and is held, and a thread waits for the quiesce.
 */
static GThread *
recovery_with_pending (struct fix *f, struct ndm_clone *a,
                       struct ndm_clone *b, struct waiter *w)
{
  uint64_t r;

  fix_init (f, false, "2 8 nosync", 16);
  clone_init (a);
  clone_init (b);
  nosync (f, 6, 6);
  g_assert_cmpint (start (f, a, 6, 6, 0), ==, NDM_RH_WRITE_GO);
  g_assert_true (prepare (f, &r));
  g_assert_cmpuint (r, ==, 6);
  g_assert_cmpint (start (f, b, 6, 6, 0), ==, NDM_RH_WRITE_WAIT_RECOVERY);
  w->f = f;
  return g_thread_new ("recovery-wait", wait_thread, w);
}

/* Recovery waits until the write in flight ends (pending 0), while a new
 * write to the region is held.
 */
static void
test_recovery_waits_for_pending (void)
{
  struct fix f;
  struct ndm_clone a, b;
  struct waiter w = { 0 };
  GThread *t = recovery_with_pending (&f, &a, &b, &w);

  g_usleep (50 * 1000);
  g_assert_cmpint (g_atomic_int_get (&w.done), ==, 0);
  end (&f, &a);
  g_thread_join (t);
  g_assert_true (w.result);
  g_assert_false (released (&b));
  recovery_end (&f, true);
  g_assert_true (released (&b));
  g_assert_cmpint (state (&f, 6), ==, NDM_RH_CLEAN);
  fix_clear (&f);
}

/* Presuspend stops a recovery that waits for pending: the wait says
 * false, the region is NOSYNC again, held writes go; nothing is handed
 * out until resume starts recovery again.
 */
static void
test_recovery_stopped (void)
{
  struct fix f;
  struct ndm_clone a, b;
  struct waiter w = { 0 };
  GThread *t = recovery_with_pending (&f, &a, &b, &w);
  uint64_t r;

  g_usleep (20 * 1000);
  ndm_mutex_lock (&f.lock);
  ndm_rh_stop_recovery_locked (&f.rh);
  ndm_mutex_unlock (&f.lock);
  g_thread_join (t);
  g_assert_false (w.result);
  g_assert_true (released (&b));
  g_assert_cmpint (state (&f, 6), ==, NDM_RH_NOSYNC);
  g_assert_false (prepare (&f, &r));
  g_assert_cmpint (start (&f, &b, 6, 6, 0), ==, NDM_RH_WRITE_GO);
  end (&f, &a);
  end (&f, &b);
  ndm_mutex_lock (&f.lock);
  ndm_rh_start_recovery_locked (&f.rh);
  ndm_mutex_unlock (&f.lock);
  g_assert_true (prepare (&f, &r));
  g_assert_cmpuint (r, ==, 6);
  g_assert_true (recovery_wait (&f));
  recovery_end (&f, true);
  fix_clear (&f);
}

/* A leg out of service: writes make NOSYNC (marked, never cleared) and
 * nothing is copied.
 */
static void
test_degraded (void)
{
  struct fix f;
  struct ndm_clone a, b;
  uint64_t r;

  fix_init (&f, false, "2 8 nosync", 16);
  clone_init (&a);
  clone_init (&b);
  g_assert_cmpint (start (&f, &a, 2, 2, 0), ==, NDM_RH_WRITE_GO);
  ndm_mutex_lock (&f.lock);
  f.rh.degraded = true;
  ndm_mutex_unlock (&f.lock);
  g_assert_cmpint (start (&f, &b, 1, 2, 0), ==, NDM_RH_WRITE_GO);
  g_assert_cmpint (state (&f, 1), ==, NDM_RH_NOSYNC);
  g_assert_cmpint (state (&f, 2), ==, NDM_RH_NOSYNC);
  end (&f, &a);
  end (&f, &b);
  g_assert_cmpint (state (&f, 1), ==, NDM_RH_NOSYNC);
  g_assert_true (marked (&f, 1) && marked (&f, 2));
  g_assert_false (prepare (&f, &r));
  ndm_mutex_lock (&f.lock);
  f.rh.degraded = false;
  ndm_mutex_unlock (&f.lock);
  g_assert_true (prepare (&f, &r));
  g_assert_cmpuint (r, ==, 1);
  fix_clear (&f);
}

/* A leg leaves: regions written since their last committed clear (in
 * flight, or ended with the clear not yet on the device) are NOSYNC;
 * a clean one is not.
 */
static void
test_mark_dirty_nosync (void)
{
  struct fix f;
  struct ndm_clone a, b;
  uint64_t n;

  fix_init (&f, true, "2 8 nosync", 16);
  clone_init (&a);
  clone_init (&b);
  start (&f, &a, 1, 1, 0);
  start (&f, &b, 2, 2, 0);
  g_assert_cmpint (commit_and_release (&f, false), >, 0);
  g_assert_cmpint (start (&f, &a, 1, 1, 0), ==, NDM_RH_WRITE_GO);
  g_assert_cmpint (start (&f, &b, 2, 2, 0), ==, NDM_RH_WRITE_GO);
  end (&f, &a);
  g_assert_cmpint (state (&f, 1), ==, NDM_RH_CLEAN);
  ndm_mutex_lock (&f.lock);
  n = ndm_rh_mark_dirty_nosync_locked (&f.rh);
  ndm_mutex_unlock (&f.lock);
  g_assert_cmpuint (n, ==, 2);
  g_assert_cmpint (state (&f, 1), ==, NDM_RH_NOSYNC);
  g_assert_cmpint (state (&f, 2), ==, NDM_RH_NOSYNC);
  g_assert_cmpint (state (&f, 3), ==, NDM_RH_CLEAN);
  end (&f, &b);
  g_assert_cmpint (state (&f, 2), ==, NDM_RH_NOSYNC);
  /* Kept marked: a clear commit does not clear them. */
  g_assert_cmpint (commit_and_release (&f, true), >=, 0);
  g_assert_true (mem_log_dev_bit (f.log, 1) && mem_log_dev_bit (f.log, 2));
  ndm_mutex_lock (&f.lock);
  g_assert_cmpuint (ndm_rh_mark_dirty_nosync_locked (&f.rh), ==, 0);
  ndm_mutex_unlock (&f.lock);
  fix_clear (&f);
}

/* ---- log commits -------------------------------------------------------- */

/* A commit releases the clones waiting for a ticket up to its own, not
 * those waiting for the next; a failed commit releases them all.
 */
static void
test_log_committed_up_to_ticket (void)
{
  struct fix f;
  struct ndm_clone a, b;
  int64_t t;
  int err = 0;

  fix_init (&f, true, "2 8 nosync", 16);
  clone_init (&a);
  clone_init (&b);
  g_assert_cmpint (start (&f, &a, 1, 1, 0), ==, NDM_RH_WRITE_WAIT_LOG);
  t = mem_log_commit (f.log, false, &err);
  g_assert_cmpint (t, >, 0);
  g_assert_cmpint (start (&f, &b, 2, 2, 0), ==, NDM_RH_WRITE_WAIT_LOG);
  ndm_rh_log_committed (&f.rh, t, false);
  g_assert_true (released (&a));
  g_assert_false (released (&b));
  ndm_rh_log_committed (&f.rh, 0, true);
  g_assert_true (released (&b));
  g_assert_true (g_queue_is_empty (&f.rh.log_waiters));
  end (&f, &a);
  end (&f, &b);
  fix_clear (&f);
}

/* The log failed: a write that needs a mark goes on with it in memory,
 * or, with fail_without_log (keep_log), fails and counts nothing.
 */
static void
log_failed (bool fail_without_log)
{
  struct fix f;
  struct ndm_clone a;

  fix_init (&f, true, "2 8 nosync", 16);
  clone_init (&a);
  f.rh.fail_without_log = fail_without_log;
  g_assert_cmpint (start (&f, &a, 1, 1, 0), ==, NDM_RH_WRITE_WAIT_LOG);
  mem_log_of (f.log)->fail_write = EIO;
  g_assert_cmpint (commit_and_release (&f, false), ==, -1);
  g_assert_true (released (&a));
  g_assert_cmpint (start (&f, &a, 1, 1, 0), ==, fail_without_log
                   ? NDM_RH_WRITE_FAIL : NDM_RH_WRITE_GO);
  g_assert_cmpuint (pending (&f, 1), ==, fail_without_log ? 0 : 1);
  end (&f, &a);
  g_assert_cmpuint (nr_structs (&f), ==, 0);
  fix_clear (&f);
}

static void
test_log_failed_goes_on (void)
{
  log_failed (false);
}

static void
test_log_failed_keep_log (void)
{
  log_failed (true);
}

/* also_wait: a write whose leg failure is being recorded waits for that
 * header commit even where its region needs no mark.
 */
static void
test_also_wait (void)
{
  struct fix f;
  struct ndm_clone a;
  uint64_t h;

  fix_init (&f, true, "2 8 nosync", 16);
  clone_init (&a);
  start (&f, &a, 1, 1, 0);
  commit_and_release (&f, false);
  ndm_mutex_lock (&f.log->lock);
  h = ndm_dirty_log_set_leg_failed_locked (f.log, 0, true);
  ndm_mutex_unlock (&f.log->lock);
  g_assert_cmpint (start (&f, &a, 1, 1, h), ==, NDM_RH_WRITE_WAIT_LOG);
  g_assert_cmpint (commit_and_release (&f, false), ==, (int64_t) h);
  g_assert_true (released (&a));
  g_assert_cmpint (start (&f, &a, 1, 1, h), ==, NDM_RH_WRITE_GO);
  end (&f, &a);
  fix_clear (&f);
}

/* ---- verify ------------------------------------------------------------- */

/* Verify quiesces an in-sync region as a copy does and puts it back as
 * it was; a region not in sync is the resync's.
 */
static void
test_verify (void)
{
  struct fix f;
  struct ndm_clone a;
  uint64_t r;

  fix_init (&f, false, "2 8 nosync", 16);
  clone_init (&a);
  nosync (&f, 9, 9);
  ndm_mutex_lock (&f.lock);
  g_assert_false (ndm_rh_verify_prepare_locked (&f.rh, 9));
  g_assert_true (ndm_rh_verify_prepare_locked (&f.rh, 5));
  g_assert_false (ndm_rh_verify_prepare_locked (&f.rh, 4));
  ndm_mutex_unlock (&f.lock);
  g_assert_false (prepare (&f, &r));
  g_assert_cmpint (state (&f, 5), ==, NDM_RH_RECOVERING);
  g_assert_cmpint (start (&f, &a, 5, 5, 0), ==, NDM_RH_WRITE_WAIT_RECOVERY);
  g_assert_true (recovery_wait (&f));
  ndm_mutex_lock (&f.lock);
  ndm_rh_verify_end_locked (&f.rh);
  ndm_mutex_unlock (&f.lock);
  g_assert_true (released (&a));
  g_assert_cmpint (state (&f, 5), ==, NDM_RH_CLEAN);
  g_assert_true (in_sync (&f, 5));
  g_assert_true (prepare (&f, &r));
  g_assert_cmpuint (r, ==, 9);
  recovery_end (&f, true);
  fix_clear (&f);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/region-hash/region-of-offset", test_region_of_offset);
  g_test_add_func ("/region-hash/write/clean", test_write_clean);
  g_test_add_func ("/region-hash/write/waits-for-mark",
                   test_write_waits_for_mark);
  g_test_add_func ("/region-hash/write/nosync", test_write_nosync);
  g_test_add_func ("/region-hash/write/remap-moves-counts",
                   test_write_remap_moves_counts);
  g_test_add_func ("/region-hash/recovery/end-ok", test_recovery_end_ok);
  g_test_add_func ("/region-hash/recovery/end-failed",
                   test_recovery_end_failed);
  g_test_add_func ("/region-hash/recovery/waits-for-pending",
                   test_recovery_waits_for_pending);
  g_test_add_func ("/region-hash/recovery/stopped", test_recovery_stopped);
  g_test_add_func ("/region-hash/degraded", test_degraded);
  g_test_add_func ("/region-hash/mark-dirty-nosync", test_mark_dirty_nosync);
  g_test_add_func ("/region-hash/log/committed-up-to-ticket",
                   test_log_committed_up_to_ticket);
  g_test_add_func ("/region-hash/log/failed-goes-on",
                   test_log_failed_goes_on);
  g_test_add_func ("/region-hash/log/failed-keep-log",
                   test_log_failed_keep_log);
  g_test_add_func ("/region-hash/log/also-wait", test_also_wait);
  g_test_add_func ("/region-hash/verify", test_verify);
  return g_test_run ();
}
