/* SPDX-License-Identifier: BSD-3-Clause */
/* kcopyd, a target's background copier (core/kcopyd.c), against the fake
 * device: a copy reaches every place and is flushed there; a source that
 * fails ends it, a place that fails is left out of the later pieces; the
 * bounce buffers are charged to max-bounce, waited for at the cap (never
 * past it) and given back, and requests waiting at the cap go first; the
 * throttle's token bucket bounds the bytes per second (counted on a test
 * clock, not timed); pauses while clients have requests in flight; a
 * stop ends every wait; a compare finds a difference and a read failure.
 */
#include "core.h"
#include "harness.h"
#include "kcopyd.h"

#define K4 4096
#define KIB 1024

/* Fakes a, b and c of 1 MiB (a's query qa), max-bounce bounce bytes. */
struct kc_case {
  struct ndm_md *md;
  struct ndm_kcopyd *kc;
  struct fake_dev *a, *b, *c;
  struct ndm_io_where from, to[2];
  bool src_failed;
  uint64_t dst_failed;
  int err;
};

static void
kc_case_init (struct kc_case *k, const char *qa, uint64_t bounce,
              uint64_t rate)
{
  g_autofree char *table = g_strdup_printf (
    "0 8 linear fake://a?size=1M%s 0\n"
    "8 8 linear fake://b?size=1M 0\n"
    "16 8 linear fake://c?size=1M 0", qa);
  struct ndm_config cfg;

  ndm_config_init (&cfg);
  cfg.max_bounce = bounce;
  k->md = h_md_new (table, &cfg);
  k->kc = ndm_kcopyd_new (h_first_target (k->md), rate);
  k->a = fake_lookup ("a");
  k->b = fake_lookup ("b");
  k->c = fake_lookup ("c");
  h_fill (fake_data (k->a), 1 << 20, 7);
  k->from = (struct ndm_io_where) { h_device_of (k->md, "a"), 0 };
  k->to[0] = (struct ndm_io_where) { h_device_of (k->md, "b"), 64 * KIB };
  k->to[1] = (struct ndm_io_where) { h_device_of (k->md, "c"), 128 * KIB };
  k->src_failed = true;
  k->dst_failed = ~UINT64_C (0);
  k->err = 0;
}

static int
kc_case_copy (struct kc_case *k, uint64_t len)
{
  return ndm_kcopyd_copy (k->kc, &k->from, k->to, 2, len, &k->src_failed,
                          &k->dst_failed, &k->err);
}

static void
kc_case_fini (struct kc_case *k)
{
  ndm_kcopyd_free (k->kc);
  h_md_free (k->md);
}

static unsigned
count_writes (struct fake_dev *fd)
{
  return fake_count_op (fd, NDM_OP_WRITE);
}

/* ---- copies -------------------------------------------------------------------- */

/* 200 KiB through 32 KiB pieces (max-bounce 64 KiB): both places get a's
 * bytes, each is flushed once, after its writes.
 */
static void
test_copy_to_every_place (void)
{
  struct kc_case k;
  g_autoptr (GArray) log = NULL;
  struct fake_cmd *last;
  uint64_t bytes, rate;

  kc_case_init (&k, "", 64 * KIB, 0);
  g_assert_cmpint (kc_case_copy (&k, 200 * KIB), ==, 0);
  g_assert_false (k.src_failed);
  g_assert_cmpuint (k.dst_failed, ==, 0);
  g_assert_cmpmem (fake_data (k.b) + 64 * KIB, 200 * KIB, fake_data (k.a),
                   200 * KIB);
  g_assert_cmpmem (fake_data (k.c) + 128 * KIB, 200 * KIB, fake_data (k.a),
                   200 * KIB);
  g_assert_cmpuint (count_writes (k.b), ==, 7);
  g_assert_cmpuint (fake_count_op (k.b, NDM_OP_FLUSH), ==, 1);
  g_assert_cmpuint (fake_count_op (k.c, NDM_OP_FLUSH), ==, 1);
  log = fake_log (k.c);
  last = &g_array_index (log, struct fake_cmd, log->len - 1);
  g_assert_cmpint (last->op, ==, NDM_OP_FLUSH);
  ndm_kcopyd_stats (k.kc, &bytes, &rate);
  g_assert_cmpuint (bytes, ==, 200 * KIB);
  g_assert_cmpuint (h_bounce_used (k.md), ==, 0);
  kc_case_fini (&k);
}

/* The source's read fails: nothing is written, the copy ends. */
static void
test_copy_source_fails (void)
{
  struct kc_case k;

  kc_case_init (&k, "", 64 * KIB, 0);
  fake_fail_at (k.a, 1, EIO);           /* the second piece's read */
  g_assert_cmpint (kc_case_copy (&k, 200 * KIB), ==, -1);
  g_assert_true (k.src_failed);
  g_assert_cmpuint (k.dst_failed, ==, 0);
  g_assert_cmpint (k.err, ==, EIO);
  g_assert_cmpuint (count_writes (k.b), ==, 1);
  g_assert_cmpuint (fake_count_op (k.b, NDM_OP_FLUSH), ==, 0);
  g_assert_cmpuint (h_bounce_used (k.md), ==, 0);
  kc_case_fini (&k);
}

/* b fails its first write: it gets no later piece and no flush; c gets
 * the whole copy and its flush.
 */
static void
test_copy_one_destination_fails (void)
{
  struct kc_case k;

  kc_case_init (&k, "", 64 * KIB, 0);
  fake_fail_at (k.b, 0, EIO);
  g_assert_cmpint (kc_case_copy (&k, 200 * KIB), ==, -1);
  g_assert_false (k.src_failed);
  g_assert_cmpuint (k.dst_failed, ==, 1);
  g_assert_cmpint (k.err, ==, EIO);
  g_assert_cmpuint (fake_submitted (k.b), ==, 1);
  g_assert_cmpmem (fake_data (k.c) + 128 * KIB, 200 * KIB, fake_data (k.a),
                   200 * KIB);
  g_assert_cmpuint (fake_count_op (k.c, NDM_OP_FLUSH), ==, 1);
  kc_case_fini (&k);
}

/* ---- bounce buffers (R8) ------------------------------------------------------- */

struct copy_thread {
  struct kc_case *k;
  uint64_t len;
  int r;
  gint done;
};

static gpointer
copy_thread (gpointer data)
{
  struct copy_thread *t = data;

  t->r = kc_case_copy (t->k, t->len);
  g_atomic_int_set (&t->done, 1);
  return NULL;
}

static GThread *
copy_start (struct copy_thread *t, struct kc_case *k, uint64_t len)
{
  *t = (struct copy_thread) { .k = k, .len = len };
  return g_thread_new ("copy", copy_thread, t);
}

/* The test fails (instead of hanging) if the copy has not ended in 5 s. */
static int
copy_join (struct copy_thread *t, GThread *th)
{
  gint64 end = g_get_monotonic_time () + 5 * G_TIME_SPAN_SECOND;

  while (!g_atomic_int_get (&t->done)) {
    if (g_get_monotonic_time () > end)
      g_error ("the copy has not ended after 5 s");
    g_usleep (1000);
  }
  g_thread_join (th);
  return t->r;
}

/* max-bounce 16 KiB: pieces of 8 KiB.  With a held source, the bytes
 * charged while a piece is read are one piece and never more than the
 * cap; at the cap (the test holds it all) the copy waits, reads nothing
 * and does not fail; everything is given back at the end.
 */
static void
test_bounce_charged_waits (void)
{
  struct kc_case k;
  struct copy_thread t;
  struct ndm_waiter *w = ndm_waiter_self ();
  GThread *th;
  unsigned i;

  kc_case_init (&k, "&mode=held", 16 * KIB, 0);
  g_assert_true (ndm_budget_try_get (&k.md->bounce, 16 * KIB, w));
  th = copy_start (&t, &k, 64 * KIB);
  g_usleep (100000);
  g_assert_cmpuint (fake_submitted (k.a), ==, 0);
  g_assert_false (g_atomic_int_get (&t.done));
  ndm_budget_put (&k.md->bounce, 16 * KIB);
  for (i = 0; i < 8; i++) {
    fake_wait_pending (k.a, 1);
    g_assert_cmpuint (h_bounce_used (k.md), ==, 8 * KIB);
    fake_complete (k.a, i, 0);
  }
  g_assert_cmpint (copy_join (&t, th), ==, 0);
  g_assert_cmpuint (h_bounce_used (k.md), ==, 0);
  g_assert_cmpmem (fake_data (k.b) + 64 * KIB, 64 * KIB, fake_data (k.a),
                   64 * KIB);
  kc_case_fini (&k);
}

/* A request waiting at the bounce cap goes first: while one waits (the
 * test's waiter, queued for more than is free), the copy does not take
 * the room that is free, although its piece would fit; once none waits
 * it goes on.
 */
static void
test_bounce_waiters_first (void)
{
  struct kc_case k;
  struct copy_thread t;
  struct ndm_waiter *w = ndm_waiter_self ();
  GThread *th;

  kc_case_init (&k, "&mode=held", 16 * KIB, 0);
  g_assert_true (ndm_budget_try_get (&k.md->bounce, 8 * KIB, w));
  g_assert_false (ndm_budget_try_get (&k.md->bounce, 16 * KIB, w));
  th = copy_start (&t, &k, 8 * KIB);
  g_usleep (100000);
  g_assert_cmpuint (fake_submitted (k.a), ==, 0);
  ndm_budget_forget (&k.md->bounce, w);
  fake_wait_pending (k.a, 1);
  g_assert_cmpuint (h_bounce_used (k.md), ==, 16 * KIB);
  fake_complete_all (k.a);
  g_assert_cmpint (copy_join (&t, th), ==, 0);
  ndm_budget_put (&k.md->bounce, 8 * KIB);
  kc_case_fini (&k);
}

/* ---- throttle, yield, stop ----------------------------------------------------- */

/* A test clock: time moves only when the copier sleeps. */
struct test_clock {
  int64_t now;                  /* us */
  unsigned sleeps;
  int64_t slept;
  int64_t min_sleep;
};

static int64_t
test_now (void *data)
{
  struct test_clock *c = data;

  return c->now;
}

static void
test_sleep (void *data, int64_t us)
{
  struct test_clock *c = data;

  c->now += us;
  c->slept += us;
  c->sleeps++;
  if (c->min_sleep == 0 || us < c->min_sleep)
    c->min_sleep = us;
}

static void
use_test_clock (struct ndm_kcopyd *kc, struct test_clock *c)
{
  struct ndm_kcopyd_clock clock = { test_now, test_sleep, c };

  *c = (struct test_clock) { .now = 1000 * G_TIME_SPAN_SECOND };
  ndm_kcopyd_set_clock (kc, &clock);
}

/* 512 KiB at 32 KiB/s in 32 KiB pieces: the copy takes 16 s of the
 * test clock, less the bucket's burst (one second's worth) and one
 * piece, and no more than 16 s and a tick per piece; the measured rate
 * is the cap.
 */
static void
test_throttle_bounds_rate (void)
{
  struct kc_case k;
  struct test_clock c;
  uint64_t bytes, rate;
  const uint64_t cap = 32 * KIB, len = 512 * KIB;

  kc_case_init (&k, "", 64 * KIB, cap);
  use_test_clock (k.kc, &c);
  g_assert_cmpint (kc_case_copy (&k, len), ==, 0);
  g_assert_cmpint (c.slept, >=,
                   (int64_t) ((len - cap - 32 * KIB) * G_USEC_PER_SEC / cap));
  g_assert_cmpint (c.slept, <=,
                   (int64_t) (len * G_USEC_PER_SEC / cap) + 32);
  ndm_kcopyd_stats (k.kc, &bytes, &rate);
  g_assert_cmpuint (bytes, ==, len);
  g_assert_cmpuint (rate, >=, cap / 2);
  g_assert_cmpuint (rate, <=, cap * 2);

  /* No cap: no wait at all. */
  ndm_kcopyd_set_rate (k.kc, 0);
  c.slept = 0;
  g_assert_cmpint (kc_case_copy (&k, len), ==, 0);
  g_assert_cmpint (c.slept, ==, 0);
  kc_case_fini (&k);
}

/* While a client request is in flight (a read held on a), each piece is
 * preceded by a pause; once it ended, none.
 */
static void
test_yield_to_clients (void)
{
  struct kc_case k;
  struct test_clock c;
  char buf[K4];
  struct h_io *io;

  kc_case_init (&k, "&mode=held", 64 * KIB, 0);
  k.from.dev = h_device_of (k.md, "b");
  k.to[0] = (struct ndm_io_where) { h_device_of (k.md, "c"), 0 };
  use_test_clock (k.kc, &c);
  io = h_io_start (k.md, NDM_OP_READ, buf, sizeof buf, 0, 0);
  fake_wait_pending (k.a, 1);
  g_assert_cmpint (ndm_kcopyd_copy (k.kc, &k.from, k.to, 1, 128 * KIB,
                                    &k.src_failed, &k.dst_failed, &k.err),
                   ==, 0);
  g_assert_cmpuint (c.sleeps, ==, 4);
  g_assert_cmpint (c.min_sleep, >=, NDM_KCOPYD_YIELD_MIN_US);
  fake_complete_all (k.a);
  g_assert_cmpint (h_io_wait (io), ==, 0);
  c.sleeps = 0;
  g_assert_cmpint (ndm_kcopyd_copy (k.kc, &k.from, k.to, 1, 128 * KIB,
                                    &k.src_failed, &k.dst_failed, &k.err),
                   ==, 0);
  g_assert_cmpuint (c.sleeps, ==, 0);
  kc_case_fini (&k);
}

/* A copy waiting for its throttle (1 KiB/s: the second piece would wait
 * half a minute) ends at a stop with ESHUTDOWN, and so does the next
 * until the stop is lifted; a lifted cap (rate 0) ends the wait too.
 */
static void
test_stop_ends_throttle_wait (void)
{
  struct kc_case k;
  struct copy_thread t;
  GThread *th;

  kc_case_init (&k, "", 64 * KIB, 1024);
  th = copy_start (&t, &k, 64 * KIB);
  while (count_writes (k.b) == 0)
    g_usleep (1000);
  g_usleep (20000);
  ndm_kcopyd_stop (k.kc, true);
  g_assert_cmpint (copy_join (&t, th), ==, -1);
  g_assert_cmpint (k.err, ==, ESHUTDOWN);
  g_assert_false (k.src_failed);
  g_assert_cmpuint (k.dst_failed, ==, 0);
  g_assert_cmpuint (count_writes (k.b), ==, 1);
  g_assert_cmpint (kc_case_copy (&k, K4), ==, -1);
  g_assert_cmpint (k.err, ==, ESHUTDOWN);

  /* The debt of the first piece is not paid yet: this one waits. */
  ndm_kcopyd_stop (k.kc, false);
  th = copy_start (&t, &k, 64 * KIB);
  g_usleep (50000);
  g_assert_cmpuint (count_writes (k.b), ==, 1);
  ndm_kcopyd_set_rate (k.kc, 0);
  g_assert_cmpint (copy_join (&t, th), ==, 0);
  g_assert_cmpuint (h_bounce_used (k.md), ==, 0);
  kc_case_fini (&k);
}

/* A copy waiting at the bounce cap ends at a stop, charging nothing. */
static void
test_stop_ends_bounce_wait (void)
{
  struct kc_case k;
  struct copy_thread t;
  struct ndm_waiter *w = ndm_waiter_self ();
  GThread *th;

  kc_case_init (&k, "", 16 * KIB, 0);
  g_assert_true (ndm_budget_try_get (&k.md->bounce, 16 * KIB, w));
  th = copy_start (&t, &k, 64 * KIB);
  g_usleep (50000);
  ndm_kcopyd_stop (k.kc, true);
  g_assert_cmpint (copy_join (&t, th), ==, -1);
  g_assert_cmpint (k.err, ==, ESHUTDOWN);
  g_assert_cmpuint (fake_submitted (k.a), ==, 0);
  g_assert_cmpuint (h_bounce_used (k.md), ==, 16 * KIB);
  g_assert_cmpint (g_atomic_int_get (&k.md->bounce.nr_waiting), ==, 0);
  ndm_budget_put (&k.md->bounce, 16 * KIB);
  kc_case_fini (&k);
}

/* ---- compare ------------------------------------------------------------------- */

static void
test_compare (void)
{
  struct kc_case k;
  struct ndm_io_where where[3];
  uint64_t differs = ~UINT64_C (0), failed = ~UINT64_C (0);
  int err = 0;

  kc_case_init (&k, "", 64 * KIB, 0);
  memcpy (fake_data (k.b), fake_data (k.a), 1 << 20);
  memcpy (fake_data (k.c), fake_data (k.a), 1 << 20);
  where[0] = (struct ndm_io_where) { h_device_of (k.md, "a"), 0 };
  where[1] = (struct ndm_io_where) { h_device_of (k.md, "b"), 0 };
  where[2] = (struct ndm_io_where) { h_device_of (k.md, "c"), 0 };
  g_assert_cmpint (ndm_kcopyd_compare (k.kc, where, 3, 256 * KIB, &differs,
                                       &failed, &err), ==, 0);
  g_assert_cmpuint (differs, ==, 0);
  g_assert_cmpuint (failed, ==, 0);

  /* One byte of c in the last piece differs. */
  fake_data (k.c)[256 * KIB - 1] ^= 1;
  g_assert_cmpint (ndm_kcopyd_compare (k.kc, where, 3, 256 * KIB, &differs,
                                       &failed, &err), ==, 0);
  g_assert_cmpuint (differs, ==, 4);
  g_assert_cmpuint (failed, ==, 0);

  /* b's read fails: named, and c is still compared. */
  fake_fail_range (k.b, 0, 1 << 20, EIO);
  g_assert_cmpint (ndm_kcopyd_compare (k.kc, where, 3, 256 * KIB, &differs,
                                       &failed, &err), ==, -1);
  g_assert_cmpuint (failed, ==, 2);
  g_assert_cmpuint (differs, ==, 4);
  g_assert_cmpint (err, ==, EIO);
  g_assert_cmpuint (h_bounce_used (k.md), ==, 0);
  kc_case_fini (&k);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/kcopyd/copy/every-place", test_copy_to_every_place);
  g_test_add_func ("/kcopyd/copy/source-fails", test_copy_source_fails);
  g_test_add_func ("/kcopyd/copy/one-destination-fails",
                   test_copy_one_destination_fails);
  g_test_add_func ("/kcopyd/r8/bounce-charged-waits",
                   test_bounce_charged_waits);
  g_test_add_func ("/kcopyd/r8/waiters-first", test_bounce_waiters_first);
  g_test_add_func ("/kcopyd/throttle/bounds-rate", test_throttle_bounds_rate);
  g_test_add_func ("/kcopyd/yield/clients-in-flight", test_yield_to_clients);
  g_test_add_func ("/kcopyd/stop/ends-throttle-wait",
                   test_stop_ends_throttle_wait);
  g_test_add_func ("/kcopyd/stop/ends-bounce-wait",
                   test_stop_ends_bounce_wait);
  g_test_add_func ("/kcopyd/compare/difference-and-failure", test_compare);
  return g_test_run ();
}
