/* SPDX-License-Identifier: BSD-3-Clause */
/* Bios: splitting to device limits and read-modify-write (R7), the caps
 * that make requests wait (R8), emulations (zero, FUA), capability
 * refusals, and block status (R11) on one device.
 *
 * The fake refuses misaligned or oversized commands with EINVAL, so every
 * data check here is also a check that nothing misaligned was sent.
 */
#include "core.h"
#include "harness.h"

static void
assert_cmd (GArray *log, unsigned i, enum ndm_op op, uint64_t offset,
            uint64_t len)
{
  struct fake_cmd *c;

  g_assert_cmpuint (i, <, log->len);
  c = &g_array_index (log, struct fake_cmd, i);
  g_assert_cmpint (c->op, ==, op);
  g_assert_cmpuint (c->offset, ==, offset);
  g_assert_cmpuint (c->len, ==, len);
}

/* R7: a request larger than the device's maximum is sent in pieces. */
static void
test_split_to_max (void)
{
  struct ndm_md *md = h_md_new (
    "0 4096 linear fake://a?size=2M&max=65536 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  g_autofree char *w = g_malloc (1 << 20), *r = g_malloc (1 << 20);
  g_autoptr (GArray) log = NULL;
  unsigned i;

  h_fill (w, 1 << 20, 1);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, w, 1 << 20, 4096, 0), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_READ, r, 1 << 20, 4096, 0), ==, 0);
  g_assert_cmpmem (r, 1 << 20, w, 1 << 20);
  log = fake_log (a);
  g_assert_cmpuint (log->len, ==, 32);
  for (i = 0; i < 16; i++) {
    assert_cmd (log, i, NDM_OP_WRITE, 4096 + i * 65536, 65536);
    assert_cmd (log, 16 + i, NDM_OP_READ, 4096 + i * 65536, 65536);
  }
  h_md_free (md);
}

/* R7: a 512-byte write to a 4096-byte-block device: read the block,
 * patch it, write it back; the rest of the block survives.
 */
static void
test_rmw_small_write (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a?min=4096 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  g_autofree uint8_t *expect = g_malloc (1 << 20);
  g_autoptr (GArray) log = NULL;
  char sector[512];

  h_fill (fake_data (a), 1 << 20, 2);
  memcpy (expect, fake_data (a), 1 << 20);
  memset (sector, 'B', sizeof sector);
  memcpy (expect + 4096 + 512, sector, 512);

  g_assert_cmpint (h_io (md, NDM_OP_WRITE, sector, 512, 4096 + 512, 0), ==,
                   0);
  log = fake_log (a);
  g_assert_cmpuint (log->len, ==, 2);
  assert_cmd (log, 0, NDM_OP_READ, 4096, 4096);
  assert_cmd (log, 1, NDM_OP_WRITE, 4096, 4096);
  g_assert_cmpmem (fake_data (a), 1 << 20, expect, 1 << 20);
  h_md_free (md);
}

/* R7: head and tail inside blocks bounce; the aligned middle goes
 * straight from the client buffer.
 */
static void
test_rmw_head_middle_tail (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a?min=4096 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  g_autofree uint8_t *expect = g_malloc (1 << 20);
  g_autofree char *w = g_malloc (10000), *r = g_malloc (10000);
  g_autoptr (GArray) log = NULL;
  unsigned i, reads = 0, writes = 0;

  h_fill (fake_data (a), 1 << 20, 3);
  memcpy (expect, fake_data (a), 1 << 20);
  h_fill (w, 10000, 4);
  memcpy (expect + 1000, w, 10000);

  g_assert_cmpint (h_io (md, NDM_OP_WRITE, w, 10000, 1000, 0), ==, 0);
  g_assert_cmpmem (fake_data (a), 1 << 20, expect, 1 << 20);
  log = fake_log (a);
  /* head block 0 (RMW), middle 4096+4096 (direct), tail block 8192 (RMW) */
  for (i = 0; i < log->len; i++) {
    struct fake_cmd *c = &g_array_index (log, struct fake_cmd, i);

    reads += c->op == NDM_OP_READ;
    writes += c->op == NDM_OP_WRITE;
  }
  g_assert_cmpuint (reads, ==, 2);
  g_assert_cmpuint (writes, ==, 3);

  /* Unaligned read across blocks: bounced, and correct. */
  g_assert_cmpint (h_io (md, NDM_OP_READ, r, 10000, 1000, 0), ==, 0);
  g_assert_cmpmem (r, 10000, w, 10000);
  g_assert_cmpint (h_io (md, NDM_OP_READ, r, 100, 4050, 0), ==, 0);
  g_assert_cmpmem (r, 100, expect + 4050, 100);
  h_md_free (md);
}

/* R7: a read-modify-write and a direct write of the same block exclude
 * each other, whichever starts first.  Otherwise the RMW reads the block,
 * the direct write lands and is acknowledged, and the RMW's write-back
 * puts the old bytes back around its own: an acknowledged write lost
 * (found by the soak, tests/soak).
 */
static void
test_rmw_direct_write_same_block (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a?min=4096&mode=held 0",
                                NULL);
  struct fake_dev *a = fake_lookup ("a");
  char small[512], block[4096];
  struct h_io *rmw, *direct;
  unsigned round;

  memset (small, 's', sizeof small);
  memset (block, 'D', sizeof block);
  for (round = 0; round < 2; round++) {
    uint64_t base = round * 4096;

    if (round == 0) {           /* the RMW first, in its read */
      rmw = h_io_start (md, NDM_OP_WRITE, small, 512, base + 512, 0);
      fake_wait_pending (a, 1);
      direct = h_io_start (md, NDM_OP_WRITE, block, 4096, base, 0);
    }
    else {                      /* the direct write first, in flight */
      direct = h_io_start (md, NDM_OP_WRITE, block, 4096, base, 0);
      fake_wait_pending (a, 1);
      rmw = h_io_start (md, NDM_OP_WRITE, small, 512, base + 512, 0);
    }
    g_usleep (30 * 1000);
    g_assert_cmpuint (fake_pending (a), ==, 1);         /* the other waits */
    while (!h_io_done (rmw) || !h_io_done (direct)) {
      if (fake_pending (a) > 0)
        fake_complete_all (a);
      g_usleep (1000);
    }
    g_assert_cmpint (h_io_wait (rmw), ==, 0);
    g_assert_cmpint (h_io_wait (direct), ==, 0);
    /* Outside the small write, only the direct write's bytes. */
    g_assert_cmpmem (fake_data (a) + base, 512, block, 512);
    g_assert_cmpmem (fake_data (a) + base + 1024, 3072, block, 3072);
  }
  h_md_free (md);
}

struct rmw_worker {
  struct ndm_md *md;
  unsigned id;
  int last[4];                  /* per block: the last i written, or -1 */
};

static gpointer
rmw_worker (gpointer data)
{
  struct rmw_worker *wk = data;
  unsigned i;

  /* Each worker owns sector id of every block: neighbours in the same
   * device block, never the same bytes.  Byte 0 of the sector says which
   * of the worker's writes it was, so a lost update (an RMW writing back
   * a stale copy of the block) shows as an older number.
   */
  for (i = 0; i < 4; i++)
    wk->last[i] = -1;
  for (i = 0; i < 200; i++) {
    uint64_t block = g_random_int_range (0, 4);
    char sector[512];

    memset (sector, 'a' + wk->id, sizeof sector);
    sector[0] = (char) i;
    g_assert_cmpint (h_io (wk->md, NDM_OP_WRITE, sector, 512,
                           block * 4096 + wk->id * 512, 0), ==, 0);
    wk->last[block] = i;
  }
  return NULL;
}

/* R7: read-modify-writes of neighbouring sectors in one block must not
 * lose each other's update (completions in random order, with delays).
 */
static void
test_rmw_neighbours_concurrent (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 linear fake://a?min=4096&mode=thread 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  struct rmw_worker wk[8];
  GThread *t[8];
  unsigned i, b;

  for (i = 0; i < 8; i++) {
    wk[i].md = md;
    wk[i].id = i;
    t[i] = g_thread_new ("rmw", rmw_worker, &wk[i]);
  }
  for (i = 0; i < 8; i++)
    g_thread_join (t[i]);
  for (b = 0; b < 4; b++)
    for (i = 0; i < 8; i++) {
      uint8_t *s = fake_data (a) + b * 4096 + i * 512;

      if (wk[i].last[b] == -1)
        g_assert_cmpint (s[1], ==, 0);
      else {
        g_assert_cmpint (s[1], ==, 'a' + i);
        g_assert_cmpint (s[0], ==, (uint8_t) wk[i].last[b]);
      }
    }
  h_md_free (md);
}

/* R7: unaligned zero patches zeros into the edge blocks; unaligned trim
 * keeps only the aligned inside (it is advisory).
 */
static void
test_unaligned_zero_and_trim (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a?min=4096 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  g_autofree uint8_t *expect = g_malloc (1 << 20);
  g_autoptr (GArray) log = NULL;

  h_fill (fake_data (a), 1 << 20, 5);
  memcpy (expect, fake_data (a), 1 << 20);
  memset (expect + 100, 0, 9000);
  g_assert_cmpint (h_io (md, NDM_OP_ZERO, NULL, 9000, 100, 0), ==, 0);
  g_assert_cmpmem (fake_data (a), 1 << 20, expect, 1 << 20);

  g_assert_cmpint (h_io (md, NDM_OP_TRIM, NULL, 9000, 20000, 0), ==, 0);
  log = fake_log (a);
  assert_cmd (log, log->len - 1, NDM_OP_TRIM, 20480, 8192);
  /* A trim inside one block sends nothing and succeeds. */
  g_assert_cmpint (h_io (md, NDM_OP_TRIM, NULL, 1000, 40000, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_TRIM), ==, 1);
  h_md_free (md);
}

/* R8: an owner that waited at a cap leaves the budget's queue once it
 * got it; left there, every later put would kick it, long after its
 * request ended.
 */
static void
assert_no_budget_waiters (struct ndm_md *md)
{
  g_assert_cmpint (g_atomic_int_get (&md->inflight.nr_waiting), ==, 0);
  g_assert_cmpint (g_atomic_int_get (&md->bounce.nr_waiting), ==, 0);
  g_assert_true (g_queue_is_empty (&md->inflight.waiters));
  g_assert_true (g_queue_is_empty (&md->bounce.waiters));
}

/* R8: at the in-flight cap a request waits (it does not fail), and runs
 * once the earlier one completes.
 */
static void
test_inflight_cap_waits (void)
{
  struct ndm_config cfg;
  struct ndm_md *md;
  struct fake_dev *a;
  g_autofree char *b1 = g_malloc (65536), *b2 = g_malloc (65536);
  struct h_io *io1, *io2;

  ndm_config_init (&cfg);
  cfg.max_inflight = 65536;
  md = h_md_new ("0 2048 linear fake://a?mode=held 0", &cfg);
  a = fake_lookup ("a");

  io1 = h_io_start (md, NDM_OP_WRITE, b1, 65536, 0, 0);
  fake_wait_pending (a, 1);
  io2 = h_io_start (md, NDM_OP_WRITE, b2, 65536, 65536, 0);
  g_usleep (30 * 1000);
  g_assert_cmpuint (fake_submitted (a), ==, 1);     /* io2 waits */
  g_assert_false (h_io_done (io2));
  fake_complete (a, 0, 0);
  g_assert_cmpint (h_io_wait (io1), ==, 0);
  fake_wait_pending (a, 1);
  fake_complete (a, 1, 0);
  g_assert_cmpint (h_io_wait (io2), ==, 0);
  g_assert_cmpuint (fake_max_pending_bytes (a), ==, 65536);
  assert_no_budget_waiters (md);
  h_md_free (md);
}

/* R8: one request bigger than the cap still runs, a piece at a time. */
static void
test_inflight_cap_big_request (void)
{
  struct ndm_config cfg;
  struct ndm_md *md;
  struct fake_dev *a;
  g_autofree char *w = g_malloc (65536), *r = g_malloc (65536);

  ndm_config_init (&cfg);
  cfg.max_inflight = 16384;
  md = h_md_new ("0 2048 linear fake://a?mode=thread&max=16384 0", &cfg);
  a = fake_lookup ("a");
  h_fill (w, 65536, 6);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, w, 65536, 0, 0), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_READ, r, 65536, 0, 0), ==, 0);
  g_assert_cmpmem (r, 65536, w, 65536);
  g_assert_cmpuint (fake_max_pending_bytes (a), ==, 16384);
  h_md_free (md);
}

/* R8: bounce memory is capped too: a second unaligned write waits. */
static void
test_bounce_cap_waits (void)
{
  struct ndm_config cfg;
  struct ndm_md *md;
  struct fake_dev *a;
  char s1[512], s2[512];
  struct h_io *io1, *io2;

  ndm_config_init (&cfg);
  cfg.max_bounce = 4096;
  md = h_md_new ("0 2048 linear fake://a?mode=held&min=4096 0", &cfg);
  a = fake_lookup ("a");
  memset (s1, 1, sizeof s1);
  memset (s2, 2, sizeof s2);

  io1 = h_io_start (md, NDM_OP_WRITE, s1, 512, 0, 0);
  fake_wait_pending (a, 1);                 /* io1's read of block 0 */
  io2 = h_io_start (md, NDM_OP_WRITE, s2, 512, 8192, 0);
  g_usleep (30 * 1000);
  g_assert_cmpuint (fake_submitted (a), ==, 1);
  fake_complete (a, 0, 0);
  fake_wait_pending (a, 1);                 /* io1's write back */
  fake_complete (a, 1, 0);
  g_assert_cmpint (h_io_wait (io1), ==, 0);
  fake_wait_pending (a, 1);                 /* io2's read */
  fake_complete (a, 2, 0);
  fake_wait_pending (a, 1);
  fake_complete (a, 3, 0);
  g_assert_cmpint (h_io_wait (io2), ==, 0);
  g_assert_cmpint (fake_data (a)[0], ==, 1);
  g_assert_cmpint (fake_data (a)[8192], ==, 2);
  assert_no_budget_waiters (md);
  h_md_free (md);
}

/* A device that cannot write zeros gets zeros written; a fast zero is
 * refused with ENOTSUP before anything is sent.
 */
static void
test_zero_emulated (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 linear fake://a?zero=0&fastzero=0&max=65536 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  static const uint8_t zeros[200000];

  memset (fake_data (a), 0xff, fake_size (a));
  g_assert_cmpint (h_io (md, NDM_OP_ZERO, NULL, 200000, 1000, 0), ==, 0);
  g_assert_cmpmem (fake_data (a) + 1000, 200000, zeros, 200000);
  g_assert_cmpint (fake_data (a)[999], ==, 0xff);
  g_assert_cmpint (fake_data (a)[201000], ==, 0xff);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_ZERO), ==, 0);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_WRITE), ==, 4);

  g_assert_cmpint (h_io (md, NDM_OP_ZERO, NULL, 4096, 0, NDM_REQ_FAST_ZERO),
                   ==, ENOTSUP);
  g_assert_cmpuint (fake_submitted (a), ==, 4);
  h_md_free (md);
}

/* Zero flags reach a device that can zero. */
static void
test_zero_native_flags (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  g_autoptr (GArray) log = NULL;
  struct fake_cmd *c;

  g_assert_cmpint (h_io (md, NDM_OP_ZERO, NULL, 8192, 0,
                         NDM_REQ_MAY_TRIM | NDM_REQ_FAST_ZERO), ==, 0);
  log = fake_log (a);
  g_assert_cmpuint (log->len, ==, 1);
  c = &g_array_index (log, struct fake_cmd, 0);
  g_assert_cmpint (c->op, ==, NDM_OP_ZERO);
  g_assert_cmpuint (c->flags, ==, NDM_REQ_MAY_TRIM | NDM_REQ_FAST_ZERO);
  h_md_free (md);
}

/* Fast zero: ENOTSUP at once, with nothing sent to any device, where a
 * piece cannot be fast: a device that cannot zero (emulated by writes),
 * one that can but did not say it can fast (the flag must not reach it),
 * or an unaligned piece (read-modify-write).
 */
static void
test_fast_zero_refused_whole (void)
{
  static const char *const tables[] = {
    "0 8 linear fake://a 0\n8 8 linear fake://b?zero=0 0",
    "0 8 linear fake://a 0\n8 8 linear fake://b?fastzero=0 0",
    "0 8 linear fake://a 0\n8 8 linear fake://b?min=4096 0",
  };
  unsigned i;

  for (i = 0; i < G_N_ELEMENTS (tables); i++) {
    struct ndm_md *md = h_md_new (tables[i], NULL);
    struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");

    g_assert_cmpint (h_io (md, NDM_OP_ZERO, NULL, 8192 - 512, 0,
                           NDM_REQ_FAST_ZERO), ==, ENOTSUP);
    g_assert_cmpuint (fake_submitted (a), ==, 0);
    g_assert_cmpuint (fake_submitted (b), ==, 0);
    /* Without the flag it is done, slowly where it must be. */
    g_assert_cmpint (h_io (md, NDM_OP_ZERO, NULL, 8192 - 512, 0, 0), ==, 0);
    h_md_free (md);
  }
}

/* A read-only device refuses writes with EPERM, sending nothing. */
static void
test_read_only_device (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a?ro=1 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  struct ndm_caps caps;
  char buf[4096];

  ndm_md_get_caps (md, &caps);
  g_assert_false (caps.write);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4096, 0, 0), ==, EPERM);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 4096, 0, 0), ==, 0);
  g_assert_cmpuint (fake_submitted (a), ==, 1);
  h_md_free (md);
}

/* A read that fails after filling half the buffer still fails. */
static void
test_partial_read_fails (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  char buf[8192];

  fake_partial_reads (a, true);
  fake_fail_range (a, 0, 1, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 8192, 0, 0), ==, EIO);
  h_md_free (md);
}

static struct ndm_extent
ext_at (GArray *ext, unsigned i)
{
  g_assert_cmpuint (i, <, ext->len);
  return g_array_index (ext, struct ndm_extent, i);
}

/* R11: block status passes through a linear segment, translated. */
static void
test_extents_linear (void)
{
  struct ndm_md *md = h_md_new ("0 2032 linear fake://a 16", NULL);
  g_autoptr (GArray) ext = g_array_new (FALSE, FALSE,
                                        sizeof (struct ndm_extent));
  char buf[4096];
  int err;

  memset (buf, 1, sizeof buf);
  /* Mapped 4096 is device 12288: one data block between holes. */
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4096, 4096, 0), ==, 0);
  g_assert_cmpint (ndm_md_extents (md, 65536, 0, 0, ext, &err), ==, 0);
  g_assert_cmpuint (ext->len, ==, 3);
  g_assert_cmpuint (ext_at (ext, 0).offset, ==, 0);
  g_assert_cmpuint (ext_at (ext, 0).length, ==, 4096);
  g_assert_cmpuint (ext_at (ext, 0).type, ==,
                    NDM_EXTENT_HOLE | NDM_EXTENT_ZERO);
  g_assert_cmpuint (ext_at (ext, 1).offset, ==, 4096);
  g_assert_cmpuint (ext_at (ext, 1).length, ==, 4096);
  g_assert_cmpuint (ext_at (ext, 1).type, ==, 0);
  g_assert_cmpuint (ext_at (ext, 2).offset, ==, 8192);

  /* REQ_ONE: one extent. */
  g_array_set_size (ext, 0);
  g_assert_cmpint (ndm_md_extents (md, 65536, 4096, NDM_REQ_ONE, ext, &err),
                   ==, 0);
  g_assert_cmpuint (ext->len, ==, 1);
  g_assert_cmpuint (ext_at (ext, 0).length, ==, 4096);
  h_md_free (md);
}

/* R11: a device without base:allocation answers "all data"; segments
 * concatenate; a zero segment is a hole.
 */
static void
test_extents_across_segments (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 linear fake://a?extents=0 0\n"
    "8 16 zero\n"
    "24 8 linear fake://b 0", NULL);
  g_autoptr (GArray) ext = g_array_new (FALSE, FALSE,
                                        sizeof (struct ndm_extent));
  int err;

  g_assert_cmpint (ndm_md_extents (md, 16384, 0, 0, ext, &err), ==, 0);
  g_assert_cmpuint (ext->len, ==, 2);
  g_assert_cmpuint (ext_at (ext, 0).length, ==, 4096);
  g_assert_cmpuint (ext_at (ext, 0).type, ==, 0);
  g_assert_cmpuint (ext_at (ext, 1).offset, ==, 4096);
  g_assert_cmpuint (ext_at (ext, 1).length, ==, 12288);    /* zero + b */
  g_assert_cmpuint (ext_at (ext, 1).type, ==,
                    NDM_EXTENT_HOLE | NDM_EXTENT_ZERO);
  h_md_free (md);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/bio/r7/split-to-device-max", test_split_to_max);
  g_test_add_func ("/bio/r7/rmw-small-write", test_rmw_small_write);
  g_test_add_func ("/bio/r7/rmw-head-middle-tail",
                   test_rmw_head_middle_tail);
  g_test_add_func ("/bio/r7/rmw-direct-write-same-block",
                   test_rmw_direct_write_same_block);
  g_test_add_func ("/bio/r7/rmw-neighbours-concurrent",
                   test_rmw_neighbours_concurrent);
  g_test_add_func ("/bio/r7/unaligned-zero-and-trim",
                   test_unaligned_zero_and_trim);
  g_test_add_func ("/bio/r8/inflight-cap-waits", test_inflight_cap_waits);
  g_test_add_func ("/bio/r8/inflight-cap-big-request",
                   test_inflight_cap_big_request);
  g_test_add_func ("/bio/r8/bounce-cap-waits", test_bounce_cap_waits);
  g_test_add_func ("/bio/zero/emulated-by-writes", test_zero_emulated);
  g_test_add_func ("/bio/zero/native-flags", test_zero_native_flags);
  g_test_add_func ("/bio/zero/fast-zero-refused-whole",
                   test_fast_zero_refused_whole);
  g_test_add_func ("/bio/caps/read-only-device-eperm",
                   test_read_only_device);
  g_test_add_func ("/bio/read/partial-read-fails", test_partial_read_fails);
  g_test_add_func ("/bio/r11/extents-linear", test_extents_linear);
  g_test_add_func ("/bio/r11/extents-across-segments",
                   test_extents_across_segments);
  return g_test_run ();
}
