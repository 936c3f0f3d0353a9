/* SPDX-License-Identifier: BSD-3-Clause */
/* Statistics: the latency buckets and percentiles of include/nbd-dm/
 * latency.h (which nbd-dmsetup shares), the counters of core/stats.c,
 * their JSON, and the OpenMetrics text of core/metrics.c.
 */
#include <math.h>
#include <string.h>

#include "core.h"
#include "harness.h"
#include "stats.h"

/* ---- buckets --------------------------------------------------------------- */

/* Bucket i ends where i + 1 starts, from 0 up, and none is wider than a
 * quarter of its lower bound (past the exact ones), so no value falls
 * between two buckets and a percentile is off by at most that much.
 */
static void
test_buckets_contiguous (void)
{
  unsigned b;

  g_assert_cmpuint (ndm_lat_lower (0), ==, 0);
  for (b = 0; b < NDM_LAT_BUCKETS - 1; b++) {
    uint64_t lo = ndm_lat_lower (b), hi = ndm_lat_upper (b);

    g_assert_cmpuint (hi, ==, ndm_lat_lower (b + 1));
    g_assert_cmpuint (lo, <, hi);
    if (b >= NDM_LAT_SUB)
      g_assert_cmpuint ((hi - lo) * 4, <=, lo);
  }
  g_assert_cmpuint (ndm_lat_upper (NDM_LAT_BUCKETS - 1), ==, UINT64_MAX);
  g_assert_cmpuint (ndm_lat_lower (NDM_LAT_BUCKETS - 1), ==,
                    UINT64_C (7) << 30);
}

/* Every value lands in the bucket whose bounds hold it. */
static void
test_buckets_hold_their_values (void)
{
  uint64_t v;
  unsigned shift;

  for (v = 0; v < (1u << 20); v++) {
    unsigned b = ndm_lat_bucket (v);

    if (ndm_lat_lower (b) > v || ndm_lat_upper (b) <= v)
      g_error ("%" PRIu64 " us in bucket %u [%" PRIu64 ", %" PRIu64 ")", v,
               b, ndm_lat_lower (b), ndm_lat_upper (b));
  }
  for (shift = 20; shift < 64; shift++) {
    uint64_t p = UINT64_C (1) << shift, vs[] = { p - 1, p, p + 1 };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS (vs); i++) {
      unsigned b = ndm_lat_bucket (vs[i]);

      g_assert_cmpuint (ndm_lat_lower (b), <=, vs[i]);
      g_assert_true (b == NDM_LAT_BUCKETS - 1 ||
                     vs[i] < ndm_lat_upper (b));
    }
  }
  g_assert_cmpuint (ndm_lat_bucket (UINT64_MAX), ==, NDM_LAT_BUCKETS - 1);
}

/* The geometry, written out: 4 sub-buckets per power of two. */
static void
test_buckets_known (void)
{
  static const struct { uint64_t us; unsigned b; } rows[] = {
    { 0, 0 }, { 1, 1 }, { 3, 3 }, { 4, 4 }, { 7, 7 }, { 8, 8 }, { 9, 8 },
    { 10, 9 }, { 12, 10 }, { 15, 11 }, { 16, 12 }, { 20, 13 }, { 1000, 35 },
    { 1024, 36 }, { 1279, 36 }, { 1280, 37 },
  };
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (rows); i++) {
    g_test_message ("%" PRIu64 " us", rows[i].us);
    g_assert_cmpuint (ndm_lat_bucket (rows[i].us), ==, rows[i].b);
  }
  g_assert_cmpuint (ndm_lat_lower (35), ==, 896);
  g_assert_cmpuint (ndm_lat_upper (35), ==, 1024);
}

/* ---- percentiles ------------------------------------------------------------- */

static void
add (uint64_t *hist, uint64_t us, uint64_t n)
{
  hist[ndm_lat_bucket (us)] += n;
}

static void
assert_near (double got, double want, double rel)
{
  if (fabs (got - want) > rel * want)
    g_error ("got %.3f, want %.3f within %.1f%%", got, want, rel * 100);
}

static void
test_percentile_empty (void)
{
  uint64_t hist[NDM_LAT_BUCKETS] = { 0 };

  g_assert_cmpfloat (ndm_lat_percentile (hist, 0.5), ==, -1);
}

/* 0 to 16383 us, one sample each (so every bucket they touch is full):
 * the interpolation inside buckets gives them back within a percent.
 */
static void
test_percentile_uniform (void)
{
  uint64_t hist[NDM_LAT_BUCKETS] = { 0 };
  uint64_t v;

  for (v = 0; v < 16384; v++)
    add (hist, v, 1);
  assert_near (ndm_lat_percentile (hist, 0.5), 8192, 0.01);
  assert_near (ndm_lat_percentile (hist, 0.9), 14745.6, 0.01);
  assert_near (ndm_lat_percentile (hist, 0.99), 16220.2, 0.01);
  assert_near (ndm_lat_percentile (hist, 0.999), 16367.6, 0.01);
  assert_near (ndm_lat_percentile (hist, 1), 16384, 0.01);
}

/* All at 1000 us: every percentile is in 1000's bucket, [896, 1024). */
static void
test_percentile_constant (void)
{
  uint64_t hist[NDM_LAT_BUCKETS] = { 0 };
  double qs[] = { 0, 0.5, 0.9, 0.99, 0.999, 1 };
  size_t i;

  add (hist, 1000, 1000);
  for (i = 0; i < G_N_ELEMENTS (qs); i++) {
    double p = ndm_lat_percentile (hist, qs[i]);

    g_assert_cmpfloat (p, >=, 896);
    g_assert_cmpfloat (p, <=, 1024);
  }
}

/* 90% at 100 us, 10% at 10 ms: p50 and p90 are the fast ones', p99 the
 * slow ones'; the p99 of log2 buckets would be anywhere in [8, 16) ms.
 */
static void
test_percentile_bimodal (void)
{
  uint64_t hist[NDM_LAT_BUCKETS] = { 0 };

  add (hist, 100, 900);
  add (hist, 10000, 100);
  g_assert_cmpfloat (ndm_lat_percentile (hist, 0.5), >=, 96);
  g_assert_cmpfloat (ndm_lat_percentile (hist, 0.5), <, 112);
  g_assert_cmpfloat (ndm_lat_percentile (hist, 0.9), <=, 112);
  g_assert_cmpfloat (ndm_lat_percentile (hist, 0.99), >=, 8192);
  g_assert_cmpfloat (ndm_lat_percentile (hist, 0.99), <, 10240);
}

/* The last bucket has no upper bound: its lower one is the answer. */
static void
test_percentile_last_bucket (void)
{
  uint64_t hist[NDM_LAT_BUCKETS] = { 0 };

  add (hist, UINT64_C (1) << 40, 3);
  g_assert_cmpfloat (ndm_lat_percentile (hist, 0.99), ==,
                     (double) ndm_lat_lower (NDM_LAT_BUCKETS - 1));
}

/* ---- counters -------------------------------------------------------------- */

/* A done I/O lands in the bucket of its latency, and in the sum. */
static void
test_done_counts_latency (void)
{
  struct ndm_io_stats *s = ndm_stats_new ();
  struct ndm_io_stats snap;
  int64_t start = ndm_stats_start (s) - 1000;
  uint64_t total = 0;
  unsigned b, at = NDM_LAT_BUCKETS;

  ndm_stats_done (s, NDM_OP_WRITE, 4096, 0, start);
  ndm_stats_read (s, &snap);
  g_assert_cmpuint (snap.ops[NDM_STAT_WRITE], ==, 1);
  g_assert_cmpuint (snap.bytes[NDM_STAT_WRITE], ==, 4096);
  g_assert_cmpint (snap.inflight, ==, 0);
  for (b = 0; b < NDM_LAT_BUCKETS; b++) {
    total += snap.lat[NDM_STAT_WRITE][b];
    if (snap.lat[NDM_STAT_WRITE][b] != 0)
      at = b;
  }
  g_assert_cmpuint (total, ==, 1);
  g_assert_cmpuint (snap.lat_sum[NDM_STAT_WRITE], >=, 1000);
  g_assert_cmpuint (ndm_lat_lower (at), <=, snap.lat_sum[NDM_STAT_WRITE]);
  g_assert_cmpuint (ndm_lat_upper (at), >, snap.lat_sum[NDM_STAT_WRITE]);

  /* take: the snapshot gets them, the counters start again. */
  ndm_stats_take (s, &snap);
  g_assert_cmpuint (snap.lat_sum[NDM_STAT_WRITE], >=, 1000);
  ndm_stats_read (s, &snap);
  g_assert_cmpuint (snap.lat_sum[NDM_STAT_WRITE], ==, 0);
  g_assert_cmpuint (snap.lat[NDM_STAT_WRITE][at], ==, 0);
  ndm_stats_free (s);
}

/* ---- JSON ---------------------------------------------------------------------- */

static JsonObject *
stats_object (const struct ndm_io_stats *s, JsonNode **root)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();

  ndm_stats_json (s, b);
  *root = json_builder_get_root (b);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (*root));
  return json_node_get_object (*root);
}

/* One object: counts, and per class a histogram of non-empty buckets
 * with their bounds, its count and sum, and percentiles (null if none).
 */
static void
test_json (void)
{
  struct ndm_io_stats *s = ndm_stats_new ();
  g_autoptr (JsonNode) root = NULL;
  JsonObject *o, *lat, *read, *write, *bucket;
  JsonArray *buckets;
  unsigned i;

  for (i = 0; i < 3; i++)
    s->lat[NDM_STAT_READ][ndm_lat_bucket (100)]++;
  s->lat[NDM_STAT_READ][ndm_lat_bucket (10000)]++;
  s->lat_sum[NDM_STAT_READ] = 10300;
  s->ops[NDM_STAT_READ] = 4;
  s->bytes[NDM_STAT_READ] = 16384;
  o = stats_object (s, &root);
  g_assert_cmpint (json_object_get_int_member (o, "reads"), ==, 4);
  g_assert_cmpint (json_object_get_int_member (o, "read_bytes"), ==, 16384);
  g_assert_cmpint (json_object_get_int_member (o, "flushes"), ==, 0);
  g_assert_cmpint (json_object_get_int_member (o, "in_flight"), ==, 0);
  lat = json_object_get_object_member (o, "latency_us");
  g_assert_cmpuint (json_object_get_size (lat), ==, NDM_STAT_CLASSES);
  read = json_object_get_object_member (lat, "read");
  g_assert_cmpint (json_object_get_int_member (read, "count"), ==, 4);
  g_assert_cmpint (json_object_get_int_member (read, "sum"), ==, 10300);
  g_assert_cmpfloat (json_object_get_double_member (read, "p50"), ==,
                     ndm_lat_percentile (s->lat[NDM_STAT_READ], 0.5));
  g_assert_cmpfloat (json_object_get_double_member (read, "p999"), >=,
                     8192);
  buckets = json_object_get_array_member (read, "buckets");
  g_assert_cmpuint (json_array_get_length (buckets), ==, 2);
  bucket = json_array_get_object_element (buckets, 0);
  g_assert_cmpint (json_object_get_int_member (bucket, "ge"), ==, 96);
  g_assert_cmpint (json_object_get_int_member (bucket, "lt"), ==, 112);
  g_assert_cmpint (json_object_get_int_member (bucket, "count"), ==, 3);
  write = json_object_get_object_member (lat, "write");
  g_assert_cmpint (json_object_get_int_member (write, "count"), ==, 0);
  g_assert_true (json_object_get_null_member (write, "p50"));
  g_assert_cmpuint (json_array_get_length (
                      json_object_get_array_member (write, "buckets")), ==, 0);
  ndm_stats_free (s);
}

/* ---- OpenMetrics -------------------------------------------------------------- */

/* The lines of a text that start with prefix. */
static unsigned
count_prefix (const char *text, const char *prefix)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  unsigned n = 0;
  char **l;

  for (l = lines; *l != NULL; l++)
    n += g_str_has_prefix (*l, prefix);
  return n;
}

/* After a write of 8 KiB cut into two 4 KiB commands: the target counts
 * one write, the device two, each with a histogram of 128 cumulative
 * buckets ending at +Inf, its count the +Inf bucket's.  The families a
 * parser needs are there, and the text ends with # EOF.
 */
static void
test_openmetrics (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a?max=4096 0", NULL);
  g_autofree char *text = NULL;
  char buf[8192] = { 0 };
  const char *p;

  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, sizeof buf, 0, 0), ==, 0);
  text = h_command_ok (md, "stats --format=openmetrics");
  g_assert_true (g_str_has_suffix (text, "\n# EOF"));   /* chomped */
#define T "start=\"0\",length=\"2048\",type=\"linear\""
#define D "uri=\"fake://a?max=4096\""
  g_assert_nonnull (strstr (text, "\n# TYPE ndm_target_bytes counter\n"
                            "# UNIT ndm_target_bytes bytes\n"));
  g_assert_nonnull (strstr (text, "\nndm_target_ios_total{" T
                            ",op=\"write\"} 1\n"));
  g_assert_nonnull (strstr (text, "\nndm_target_bytes_total{" T
                            ",op=\"write\"} 8192\n"));
  g_assert_nonnull (strstr (text, "\nndm_target_in_flight{" T "} 0\n"));
  g_assert_nonnull (strstr (text, "\nndm_device_ios_total{" D
                            ",op=\"write\"} 2\n"));
  g_assert_nonnull (strstr (text, "\nndm_device_latency_seconds_bucket{" D
                            ",op=\"write\",le=\"+Inf\"} 2\n"
                            "ndm_device_latency_seconds_sum{" D
                            ",op=\"write\"} "));
  g_assert_nonnull (strstr (text, "\nndm_device_latency_seconds_count{" D
                            ",op=\"write\"} 2\n"));
  /* The buckets' bounds in seconds, exact: 4 us, then 1.024 ms. */
  g_assert_nonnull (strstr (text, "{" D ",op=\"write\",le=\"0.000004\"} "));
  g_assert_nonnull (strstr (text, "{" D ",op=\"write\",le=\"0.001024\"} "));
  g_assert_cmpuint (count_prefix (text, "ndm_device_latency_seconds_bucket{"
                                  D ",op=\"write\""), ==, NDM_LAT_BUCKETS);
  /* No reads: no read histogram; but a read count of 0. */
  g_assert_cmpuint (count_prefix (text, "ndm_target_latency_seconds_bucket{"
                                  T ",op=\"read\""), ==, 0);
  g_assert_nonnull (strstr (text, "\nndm_target_ios_total{" T
                            ",op=\"read\"} 0\n"));
  /* A flush moves no bytes: no bytes sample for it. */
  g_assert_null (strstr (text, "bytes_total{" T ",op=\"flush\"}"));
  /* Each family's metadata comes once, before its samples. */
  g_assert_cmpuint (count_prefix (text, "# TYPE "), ==, 12);
  for (p = text; (p = strstr (p, "# TYPE ndm_")) != NULL; p++)
    g_assert_nonnull (strstr (p, "\n# HELP "));
#undef T
#undef D
  h_md_free (md);
}

/* Label values are escaped as the format says: '\\', '"', newline. */
static void
test_openmetrics_escapes_labels (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://q\"b\\c 0", NULL);
  g_autofree char *text = h_command_ok (md, "stats --format=openmetrics");

  g_assert_nonnull (strstr (text, "\nndm_device_ios_total{uri=\"fake://q"
                            "\\\"b\\\\c\",op=\"read\"} 0\n"));
  h_md_free (md);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/stats/buckets/contiguous", test_buckets_contiguous);
  g_test_add_func ("/stats/buckets/hold-their-values",
                   test_buckets_hold_their_values);
  g_test_add_func ("/stats/buckets/known", test_buckets_known);
  g_test_add_func ("/stats/percentile/empty", test_percentile_empty);
  g_test_add_func ("/stats/percentile/uniform", test_percentile_uniform);
  g_test_add_func ("/stats/percentile/constant", test_percentile_constant);
  g_test_add_func ("/stats/percentile/bimodal", test_percentile_bimodal);
  g_test_add_func ("/stats/percentile/last-bucket",
                   test_percentile_last_bucket);
  g_test_add_func ("/stats/done/counts-latency", test_done_counts_latency);
  g_test_add_func ("/stats/json/histograms", test_json);
  g_test_add_func ("/stats/openmetrics/families", test_openmetrics);
  g_test_add_func ("/stats/openmetrics/escapes-labels",
                   test_openmetrics_escapes_labels);
  return g_test_run ();
}
