/* SPDX-License-Identifier: BSD-3-Clause */
/* Many owners at once: random reads, writes, zeroes and trims from several
 * threads, completions in random order from another thread ("thread"
 * fakes) or only through the channel's leader ("channel" fakes: the
 * leader/follower path, with leadership handed on between owners).  Each
 * thread owns a region, so a model of it says what every read must see.
 * One scripted case makes a completion meet its owner on the ready list.
 */
#include "harness.h"

#define THREADS 8
#define OPS 300

struct worker {
  struct ndm_md *md;
  uint64_t base, size;          /* this thread's region */
  uint8_t *model;
  unsigned id;
};

static gpointer
worker (gpointer data)
{
  struct worker *wk = data;
  g_autofree uint8_t *buf = g_malloc (wk->size);
  GRand *rand = g_rand_new_with_seed (wk->id * 7919 + 1);
  unsigned i;

  for (i = 0; i < OPS; i++) {
    uint64_t o = g_rand_int_range (rand, 0, wk->size - 1);
    uint64_t len = g_rand_int_range (rand, 1, MIN (wk->size - o, 70000) + 1);
    int op = g_rand_int_range (rand, 0, 10);

    if (op < 4) {
      h_fill (buf, len, wk->id * 1000 + i);
      g_assert_cmpint (h_io (wk->md, NDM_OP_WRITE, buf, len, wk->base + o,
                             (i % 5 == 0) ? NDM_REQ_FUA : 0), ==, 0);
      memcpy (wk->model + o, buf, len);
    }
    else if (op < 5) {
      g_assert_cmpint (h_io (wk->md, NDM_OP_ZERO, NULL, len, wk->base + o,
                             0), ==, 0);
      memset (wk->model + o, 0, len);
    }
    else if (op < 6)
      g_assert_cmpint (h_io (wk->md, NDM_OP_FLUSH, NULL, 0, 0, 0), ==, 0);
    else {
      g_assert_cmpint (h_io (wk->md, NDM_OP_READ, buf, len, wk->base + o,
                             0), ==, 0);
      if (memcmp (buf, wk->model + o, len) != 0)
        g_error ("thread %u op %u: read of %" PRIu64 " at %" PRIu64
                 " differs from what was written", wk->id, i, len, o);
    }
  }
  g_rand_free (rand);
  return NULL;
}

static void
run_workers (const char *table, uint64_t size)
{
  struct ndm_md *md = h_md_new (table, NULL);
  struct worker wk[THREADS];
  GThread *t[THREADS];
  uint64_t region = size / THREADS;
  g_autofree uint8_t *buf = g_malloc (region);
  unsigned i;

  for (i = 0; i < THREADS; i++) {
    wk[i].md = md;
    wk[i].base = i * region;
    wk[i].size = region;
    wk[i].id = i;
    wk[i].model = g_malloc0 (region);
    t[i] = g_thread_new ("worker", worker, &wk[i]);
  }
  for (i = 0; i < THREADS; i++)
    g_thread_join (t[i]);
  for (i = 0; i < THREADS; i++) {
    g_assert_cmpint (h_io (md, NDM_OP_READ, buf, region, wk[i].base, 0), ==,
                     0);
    g_assert_cmpmem (buf, region, wk[i].model, region);
    g_free (wk[i].model);
  }
  h_md_free (md);
}

/* Out-of-order completions from a device thread. */
static void
test_thread_completions (void)
{
  run_workers (
    "0 2048 striped 2 16 fake://a?mode=thread&size=2M 0 "
    "fake://b?mode=thread&size=2M&max=8192 0\n"
    "2048 2048 linear fake://c?mode=thread&size=2M&min=4096&fua=0 0",
    4096 * 512);
}

/* Leader/follower: replies are read only by whichever owner leads. */
static void
test_leader_follower (void)
{
  run_workers (
    "0 2048 striped 2 16 fake://a?mode=channel&size=2M 0 "
    "fake://b?mode=channel&size=2M 0\n"
    "2048 2048 linear fake://c?mode=channel&size=2M&min=4096 0",
    4096 * 512);
}

/* Leader/follower with replies arriving late and in random order. */
static void
test_leader_follower_delayed (void)
{
  run_workers (
    "0 4096 linear fake://a?mode=thread&channel=1&size=2M&max=16384 0",
    4096 * 512);
}

/* The ready list: the owner looks at rq->ready without the lock at the
 * top of each round (request_run_ready), a completion whose step ended
 * adds to it under the lock, so both sides must be atomic.  Scripted so
 * the two always meet: a's write is sent, the owner reads b's reply and
 * goes round once more (looking at the list), and only then does a's
 * write step end, making the emulated FUA's flush ready.  The test learns
 * that the owner went round through a relaxed counter, so TSan sees no
 * order between the owner's look and the completion's store: a plain
 * store there is reported on every run of the TSan build.  In any build,
 * the step that ends while the owner sleeps must wake it, and the request
 * end with the data on both devices.
 */
static void
test_ready_races_owner (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 linear fake://a?mode=held&size=1M&fua=0 0\n"
    "8 8 linear fake://b?mode=channel&size=1M 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  uint8_t buf[8192];
  struct h_io *io;

  h_fill (buf, sizeof buf, 1);
  io = h_io_start (md, NDM_OP_WRITE, buf, sizeof buf, 0, NDM_REQ_FUA);
  fake_wait_pending (a, 1);           /* a's write, sent before b's */
  fake_wait_prepared (b, 2);          /* b's reply read, one more round */
  fake_complete (a, 0, 0);            /* the flush step is ready */
  fake_wait_pending (a, 1);
  fake_complete (a, 1, 0);
  g_assert_cmpint (h_io_wait_bounded (io, 10), ==, 0);
  g_assert_cmpmem (fake_data (a), 4096, buf, 4096);
  g_assert_cmpmem (fake_data (b), 4096, buf + 4096, 4096);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_FLUSH), ==, 1);
  h_md_free (md);
}

/* Tiny caps: requests queue on the budgets instead of failing. */
static void
test_tiny_caps (void)
{
  struct ndm_config cfg;
  struct ndm_md *md;
  struct worker wk[THREADS];
  GThread *t[THREADS];
  unsigned i;

  ndm_config_init (&cfg);
  cfg.max_inflight = 8192;
  cfg.max_bounce = 4096;
  md = h_md_new ("0 4096 linear fake://a?mode=thread&size=2M&min=4096 0",
                 &cfg);
  for (i = 0; i < THREADS; i++) {
    wk[i].md = md;
    wk[i].base = i * (4096 * 512 / THREADS);
    wk[i].size = 4096 * 512 / THREADS;
    wk[i].id = i;
    wk[i].model = g_malloc0 (wk[i].size);
    t[i] = g_thread_new ("worker", worker, &wk[i]);
  }
  for (i = 0; i < THREADS; i++) {
    g_thread_join (t[i]);
    g_free (wk[i].model);
  }
  h_md_free (md);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/concurrency/thread/random-order-completions",
                   test_thread_completions);
  g_test_add_func ("/concurrency/channel/leader-follower",
                   test_leader_follower);
  g_test_add_func ("/concurrency/channel/leader-follower-delayed",
                   test_leader_follower_delayed);
  g_test_add_func ("/concurrency/r8/tiny-caps", test_tiny_caps);
  g_test_add_func ("/concurrency/ready/step-end-races-owner",
                   test_ready_races_owner);
  return g_test_run ();
}
