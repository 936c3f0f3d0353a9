/* SPDX-License-Identifier: BSD-3-Clause */
/* striped: every byte lands where dm's stripe math puts it; trim and zero
 * go to each stripe's range once; block status is merged back chunk by
 * chunk (R11).
 */
#include "harness.h"

struct stripe_geom {
  unsigned n;
  uint64_t chunk;               /* bytes */
  uint64_t phys[4];             /* bytes */
  const char *dev[4];
};

/* dm's math, in bytes: where target byte off lives. */
static uint8_t *
stripe_byte (const struct stripe_geom *g, uint64_t off)
{
  uint64_t chunk = off / g->chunk;
  unsigned stripe = chunk % g->n;
  uint64_t row = chunk / g->n;

  return fake_data (fake_lookup (g->dev[stripe])) + g->phys[stripe] +
    row * g->chunk + off % g->chunk;
}

static void
check_mapping (struct ndm_md *md, const struct stripe_geom *g, uint64_t size)
{
  g_autofree uint8_t *w = g_malloc (size), *r = g_malloc (size);
  unsigned i;
  uint64_t off;

  /* Random pieces, unaligned, crossing chunk boundaries. */
  h_fill (w, size, 9);
  for (i = 0; i < 200; i++) {
    uint64_t o = g_random_int_range (0, size - 1);
    uint64_t len = g_random_int_range (1, MIN (size - o, 3 * g->chunk) + 1);

    g_assert_cmpint (h_io (md, NDM_OP_WRITE, w + o, len, o, 0), ==, 0);
  }
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, w, size, 0, 0), ==, 0);
  for (off = 0; off < size; off++)
    if (*stripe_byte (g, off) != w[off])
      g_error ("byte %" PRIu64 " is not where the stripe math puts it", off);
  g_assert_cmpint (h_io (md, NDM_OP_READ, r, size, 0, 0), ==, 0);
  g_assert_cmpmem (r, size, w, size);
}

static void
test_math_power_of_two (void)
{
  struct stripe_geom g = {
    .n = 3, .chunk = 8 * 512, .phys = { 0, 4096, 65536 },
    .dev = { "a", "b", "c" },
  };
  struct ndm_md *md = h_md_new (
    "0 768 striped 3 8 fake://a 0 fake://b 8 fake://c 128", NULL);

  check_mapping (md, &g, 768 * 512);
  h_md_free (md);
}

/* dm allows chunk sizes that are not powers of two. */
static void
test_math_odd_chunk (void)
{
  struct stripe_geom g = {
    .n = 2, .chunk = 3 * 512, .phys = { 512, 0 }, .dev = { "a", "b" },
  };
  struct ndm_md *md = h_md_new (
    "0 600 striped 2 3 fake://a 1 fake://b 0", NULL);

  check_mapping (md, &g, 600 * 512);
  h_md_free (md);
}

/* A chunk larger than the device's max request is split further (R7). */
static void
test_chunk_bigger_than_device_max (void)
{
  struct stripe_geom g = {
    .n = 2, .chunk = 128 * 512, .phys = { 0, 0 }, .dev = { "a", "b" },
  };
  struct ndm_md *md = h_md_new (
    "0 1024 striped 2 128 fake://a?max=16384 0 fake://b?max=16384 0", NULL);

  check_mapping (md, &g, 1024 * 512);
  h_md_free (md);
}

/* Trim and zero: one command per stripe, covering exactly its share. */
static void
test_trim_zero_per_stripe (void)
{
  struct stripe_geom g = {
    .n = 2, .chunk = 8 * 512, .phys = { 0, 0 }, .dev = { "a", "b" },
  };
  struct ndm_md *md = h_md_new (
    "0 256 striped 2 8 fake://a 0 fake://b 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  uint64_t size = 256 * 512, off;
  g_autofree uint8_t *w = g_malloc (size);

  h_fill (w, size, 11);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, w, size, 0, 0), ==, 0);
  /* Zero [1000, 50000): bytes from the middle of chunk 0 to chunk 12. */
  g_assert_cmpint (h_io (md, NDM_OP_ZERO, NULL, 49000, 1000, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_ZERO), ==, 1);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_ZERO), ==, 1);
  for (off = 0; off < size; off++) {
    uint8_t want = off >= 1000 && off < 50000 ? 0 : w[off];

    if (*stripe_byte (&g, off) != want)
      g_error ("zero: byte %" PRIu64 " is %u, want %u", off,
               *stripe_byte (&g, off), want);
  }
  g_assert_cmpint (h_io (md, NDM_OP_TRIM, NULL, size, 0, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_TRIM), ==, 1);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_TRIM), ==, 1);
  h_md_free (md);
}

/* Block status of [0, len) of md is exactly want[0..n). */
static void
expect_extents (struct ndm_md *md, uint64_t len,
                const struct ndm_extent *want, unsigned n)
{
  g_autoptr (GArray) ext = g_array_new (FALSE, FALSE,
                                        sizeof (struct ndm_extent));
  unsigned i;
  int err;

  g_assert_cmpint (ndm_md_extents (md, len, 0, 0, ext, &err), ==, 0);
  g_assert_cmpuint (ext->len, ==, n);
  for (i = 0; i < n; i++) {
    struct ndm_extent *e = &g_array_index (ext, struct ndm_extent, i);

    g_assert_cmpuint (e->offset, ==, want[i].offset);
    g_assert_cmpuint (e->length, ==, want[i].length);
    g_assert_cmpuint (e->type, ==, want[i].type);
  }
}

/* R11: data in chunks 1 and 4 only; block status says so, merged. */
static void
test_extents_merged (void)
{
  struct ndm_md *md = h_md_new (
    "0 256 striped 2 8 fake://a 0 fake://b 0", NULL);
  g_autoptr (GArray) ext = g_array_new (FALSE, FALSE,
                                        sizeof (struct ndm_extent));
  char chunk[4096];
  int err;
  static const struct ndm_extent want[] = {
    { 0, 4096, NDM_EXTENT_HOLE | NDM_EXTENT_ZERO },
    { 4096, 4096, 0 },
    { 8192, 8192, NDM_EXTENT_HOLE | NDM_EXTENT_ZERO },
    { 16384, 4096, 0 },
    { 20480, 256 * 512 - 20480, NDM_EXTENT_HOLE | NDM_EXTENT_ZERO },
  };

  memset (chunk, 1, sizeof chunk);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, chunk, 4096, 4096, 0), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, chunk, 4096, 16384, 0), ==, 0);
  expect_extents (md, 256 * 512, want, G_N_ELEMENTS (want));

  /* From an unaligned offset, with REQ_ONE: the first extent only. */
  g_array_set_size (ext, 0);
  g_assert_cmpint (ndm_md_extents (md, 20000, 5000, NDM_REQ_ONE, ext, &err),
                   ==, 0);
  g_assert_cmpuint (ext->len, ==, 1);
  g_assert_cmpuint (g_array_index (ext, struct ndm_extent, 0).offset, ==,
                    5000);
  g_assert_cmpuint (g_array_index (ext, struct ndm_extent, 0).length, ==,
                    3192);
  h_md_free (md);
}

/* R11: a chunk that is part hole, part data on its stripe is answered
 * extent by extent, not with the first extent's type for all of it.
 * Chunks of 8 KiB over the fake's 4 KiB blocks: chunk 0 (stripe a) has
 * data in its second half, chunk 1 (stripe b) in its first half.
 */
static void
test_extents_within_chunk (void)
{
  struct ndm_md *md = h_md_new (
    "0 128 striped 2 16 fake://a 0 fake://b 0", NULL);
  char block[4096];
  static const struct ndm_extent want[] = {
    { 0, 4096, NDM_EXTENT_HOLE | NDM_EXTENT_ZERO },
    { 4096, 8192, 0 },
    { 12288, 128 * 512 - 12288, NDM_EXTENT_HOLE | NDM_EXTENT_ZERO },
  };

  memset (block, 1, sizeof block);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, block, 4096, 4096, 0), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, block, 4096, 8192, 0), ==, 0);
  expect_extents (md, 128 * 512, want, G_N_ELEMENTS (want));
  h_md_free (md);
}

/* R9: flush of a striped segment reaches each stripe's device. */
static void
test_flush_all_stripes (void)
{
  struct ndm_md *md = h_md_new (
    "0 768 striped 3 8 fake://a 0 fake://b 0 fake://c 0", NULL);

  g_assert_cmpint (h_io (md, NDM_OP_FLUSH, NULL, 0, 0, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (fake_lookup ("a"), NDM_OP_FLUSH), ==, 1);
  g_assert_cmpuint (fake_count_op (fake_lookup ("b"), NDM_OP_FLUSH), ==, 1);
  g_assert_cmpuint (fake_count_op (fake_lookup ("c"), NDM_OP_FLUSH), ==, 1);
  h_md_free (md);
}

/* R6 x striped: a stripe's device is down and a trim, zero or block status
 * starts in the other stripe's chunk.  Stripe 1 has the lower clone
 * offset; a start failure on stripe 0 must not cancel it into the
 * frontier (which used to requeue the same round for ever): the request
 * ends with the start error, once.
 */
static void
test_dead_stripe_nodata (void)
{
  static const enum ndm_op ops[] = {
    NDM_OP_TRIM, NDM_OP_ZERO, NDM_OP_BLOCK_STATUS,
  };
  unsigned i;

  for (i = 0; i < G_N_ELEMENTS (ops); i++) {
    struct ndm_md *md = h_md_new (
      "0 256 striped 2 8 fake://a 0 fake://b 0", NULL);
    struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
    g_autoptr (GArray) ext = g_array_new (FALSE, FALSE,
                                          sizeof (struct ndm_extent));
    struct h_io *io;
    int err = 0;

    fake_set_down (a, true);
    if (ops[i] == NDM_OP_BLOCK_STATUS)
      g_assert_cmpint (ndm_md_extents (md, 65536, 4096, 0, ext, &err), ==,
                       -1);
    else {
      io = h_io_start (md, ops[i], NULL, 65536, 4096, 0);
      err = h_io_wait_bounded (io, 5);
    }
    g_assert_cmpint (err, ==, EIO);
    /* Each stripe saw its command once: no second round. */
    g_assert_cmpuint (fake_submitted (a), ==, 1);
    g_assert_cmpuint (fake_submitted (b), <=, 1);
    h_md_free (md);
  }
}

/* R6 x striped x fast zero, nothing broken: devices with a 4 KiB block,
 * a fast zero from stripe 1's chunk to 100 bytes into stripe 0's.  Stripe
 * 0's unaligned piece cannot be fast (ENOTSUP at start); the client gets
 * ENOTSUP at once.
 */
static void
test_fast_zero_unaligned (void)
{
  struct ndm_md *md = h_md_new (
    "0 256 striped 2 8 fake://a?min=4096 0 fake://b?min=4096 0", NULL);
  struct h_io *io = h_io_start (md, NDM_OP_ZERO, NULL, 4096 + 100, 4096,
                                NDM_REQ_FAST_ZERO);

  g_assert_cmpint (h_io_wait_bounded (io, 5), ==, ENOTSUP);
  /* Refused before anything was sent (NBD: SHOULD NOT alter the export). */
  g_assert_cmpuint (fake_submitted (fake_lookup ("a")), ==, 0);
  g_assert_cmpuint (fake_submitted (fake_lookup ("b")), ==, 0);
  /* Without the flag the same range is zeroed (read-modify-write). */
  g_assert_cmpint (h_io (md, NDM_OP_ZERO, NULL, 4096 + 100, 4096, 0), ==, 0);
  h_md_free (md);
}

/* R2 x striped trim: pieces of one stripe's range that the device takes
 * in several commands each carry their own clone offset, so a failure in
 * a later piece credits everything before it, and no more.
 */
static void
test_nodata_pieces_clone_offsets (void)
{
  /* 2 stripes of 4 KiB chunks; one trim command per chunk.  Stripe a's
   * second piece holds chunk 2 (clone offset 8K), stripe b's first
   * chunk 1 (4K): b's error is at the frontier although a's arrives
   * first.  (Offsets taken from the device range would put a's piece at
   * 4K, tied with b's, and the first to arrive would win.)
   */
  struct ndm_md *md = h_md_new (
    "0 64 striped 2 8 fake://a?maxlen=4096 0 fake://b?maxlen=4096 0", NULL);

  fake_fail_at (fake_lookup ("a"), 1, ENOSPC);
  fake_fail_at (fake_lookup ("b"), 0, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_TRIM, NULL, 32768, 0, 0), ==, EIO);
  g_assert_cmpuint (fake_count_op (fake_lookup ("a"), NDM_OP_TRIM), ==, 4);
  h_md_free (md);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/striped/math/power-of-two-chunk",
                   test_math_power_of_two);
  g_test_add_func ("/striped/math/odd-chunk", test_math_odd_chunk);
  g_test_add_func ("/striped/r7/chunk-bigger-than-device-max",
                   test_chunk_bigger_than_device_max);
  g_test_add_func ("/striped/nodata/trim-zero-per-stripe",
                   test_trim_zero_per_stripe);
  g_test_add_func ("/striped/r11/extents-merged", test_extents_merged);
  g_test_add_func ("/striped/r11/extents-within-chunk",
                   test_extents_within_chunk);
  g_test_add_func ("/striped/r9/flush-all-stripes", test_flush_all_stripes);
  g_test_add_func ("/striped/r6/dead-stripe-nodata-ends",
                   test_dead_stripe_nodata);
  g_test_add_func ("/striped/r6/fast-zero-unaligned-enotsup",
                   test_fast_zero_unaligned);
  g_test_add_func ("/striped/r2/nodata-piece-clone-offsets",
                   test_nodata_pieces_clone_offsets);
  return g_test_run ();
}
