/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dmsetup stats --interval (tools/stats-report.c): rates and
 * percentiles over the interval between two `stats --json` payloads,
 * not over the counters since start; a cleared counter or a new target
 * counts from zero; a payload that is not stats is refused.
 */
#include <string.h>

#include "nbd-dm/latency.h"
#include "stats-report.h"

/* A payload with one linear target and one device, whose reads and
 * writes are counted with latencies of read_us and write_us each.
 */
static JsonNode *
payload (double seconds, uint64_t reads, uint64_t read_us, uint64_t writes,
         uint64_t write_us)
{
  g_autofree char *io = NULL;
  g_autofree char *text = NULL;
  g_autoptr (JsonParser) p = json_parser_new ();
  unsigned rb = ndm_lat_bucket (read_us), wb = ndm_lat_bucket (write_us);

  io = g_strdup_printf (
    "{\"reads\":%" G_GUINT64_FORMAT ",\"read_bytes\":%" G_GUINT64_FORMAT ","
    "\"writes\":%" G_GUINT64_FORMAT ",\"write_bytes\":%" G_GUINT64_FORMAT ","
    "\"seconds\":%.3f,\"latency_us\":{"
    "\"read\":{\"buckets\":[{\"ge\":%" G_GUINT64_FORMAT ",\"count\":%"
    G_GUINT64_FORMAT "}]},"
    "\"write\":{\"buckets\":[{\"ge\":%" G_GUINT64_FORMAT ",\"count\":%"
    G_GUINT64_FORMAT "}]}}}",
    reads, reads * 4096, writes, writes * 1048576, seconds,
    ndm_lat_lower (rb), reads, ndm_lat_lower (wb), writes);
  text = g_strdup_printf (
    "{\"targets\":[{\"start\":0,\"length\":2048,\"type\":\"linear\","
    "\"io\":%s}],\"devices\":[{\"uri\":\"nbd+unix:///?socket=/a\","
    "\"state\":\"up\",\"io\":%s}]}", io, io);
  g_assert_true (json_parser_load_from_data (p, text, -1, NULL));
  return json_node_copy (json_parser_get_root (p));
}

/* The report's one JSON line, parsed; its targets[0] in *target. */
static JsonNode *
report (JsonNode *prev, JsonNode *cur, JsonObject **target)
{
  g_autoptr (GDateTime) t = g_date_time_new_utc (2026, 12, 6, 14, 0, 0);
  g_autoptr (GString) out = g_string_new (NULL);
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autofree char *why = NULL;
  JsonNode *root;

  g_assert_true (stats_report_interval (prev, cur, true, t, out, &why));
  g_assert_cmpuint (strcspn (out->str, "\n") + 1, ==, out->len);
  g_assert_true (json_parser_load_from_data (p, out->str, -1, NULL));
  root = json_node_copy (json_parser_get_root (p));
  *target = json_array_get_object_element (
    json_object_get_array_member (json_node_get_object (root), "targets"), 0);
  return root;
}

static double
dbl (JsonObject *o, const char *name)
{
  return json_object_get_double_member (o, name);
}

/* 1000 reads at 100 us before; then 500 more at 5 ms in 2 seconds: the
 * interval's rates and percentiles are the 500's alone.
 */
static void
test_rates_over_interval (void)
{
  g_autoptr (JsonNode) a = payload (10, 1000, 100, 10, 100);
  g_autoptr (JsonNode) b = NULL;
  g_autoptr (JsonNode) r = NULL;
  JsonObject *t;
  JsonNode *cur;

  /* The same histogram bucket, with both counts: make b by hand. */
  {
    g_autoptr (JsonParser) p = json_parser_new ();
    unsigned b100 = ndm_lat_bucket (100), b5k = ndm_lat_bucket (5000);
    g_autofree char *io = g_strdup_printf (
      "{\"reads\":1500,\"read_bytes\":%d,\"writes\":10,"
      "\"write_bytes\":10485760,\"seconds\":12.0,\"latency_us\":{"
      "\"read\":{\"buckets\":[{\"ge\":%" G_GUINT64_FORMAT ",\"count\":1000},"
      "{\"ge\":%" G_GUINT64_FORMAT ",\"count\":500}]},"
      "\"write\":{\"buckets\":[{\"ge\":%" G_GUINT64_FORMAT ",\"count\":10}]}"
      "}}", 1500 * 4096, ndm_lat_lower (b100), ndm_lat_lower (b5k),
      ndm_lat_lower (b100));
    g_autofree char *text = g_strdup_printf (
      "{\"targets\":[{\"start\":0,\"length\":2048,\"type\":\"linear\","
      "\"io\":%s}],\"devices\":[{\"uri\":\"nbd+unix:///?socket=/a\","
      "\"io\":%s}]}", io, io);

    g_assert_true (json_parser_load_from_data (p, text, -1, NULL));
    b = json_node_copy (json_parser_get_root (p));
  }
  r = report (a, b, &t);
  g_assert_cmpint (json_object_get_int_member (t, "reads"), ==, 500);
  g_assert_cmpint (json_object_get_int_member (t, "writes"), ==, 0);
  g_assert_cmpfloat_with_epsilon (dbl (t, "seconds"), 2.0, 1e-9);
  g_assert_cmpfloat_with_epsilon (dbl (t, "read_iops"), 250.0, 1e-9);
  g_assert_cmpfloat_with_epsilon (dbl (t, "read_mib_s"),
                                  250.0 * 4096 / 1048576, 1e-9);
  g_assert_cmpfloat_with_epsilon (dbl (t, "write_iops"), 0, 1e-9);
  g_assert_cmpfloat (dbl (t, "read_p50_us"), >=, 4096);
  g_assert_cmpfloat (dbl (t, "read_p50_us"), <, 5120);
  g_assert_true (json_object_get_null_member (t, "write_p50_us"));
  g_assert_cmpstr (json_object_get_string_member (t, "type"), ==, "linear");
  cur = json_object_get_member (json_node_get_object (r), "devices");
  g_assert_cmpstr (json_object_get_string_member (
                     json_array_get_object_element (json_node_get_array (cur),
                                                    0), "uri"), ==,
                   "nbd+unix:///?socket=/a");
}

/* No report before: the counters since they began, over their seconds. */
static void
test_first_counts_from_zero (void)
{
  g_autoptr (JsonNode) a = payload (4, 100, 50, 20, 2000);
  g_autoptr (JsonNode) r = NULL;
  JsonObject *t;

  r = report (NULL, a, &t);
  g_assert_cmpint (json_object_get_int_member (t, "reads"), ==, 100);
  g_assert_cmpfloat_with_epsilon (dbl (t, "read_iops"), 25.0, 1e-9);
  g_assert_cmpfloat_with_epsilon (dbl (t, "write_mib_s"), 5.0, 1e-9);
}

/* Counters that went back (stats --clear between two reports) count
 * from zero over the seconds since the clear.
 */
static void
test_cleared_counts_from_zero (void)
{
  g_autoptr (JsonNode) a = payload (100, 5000, 50, 0, 50);
  g_autoptr (JsonNode) b = payload (2, 40, 50, 0, 50);
  g_autoptr (JsonNode) r = NULL;
  JsonObject *t;

  r = report (a, b, &t);
  g_assert_cmpint (json_object_get_int_member (t, "reads"), ==, 40);
  g_assert_cmpfloat_with_epsilon (dbl (t, "read_iops"), 20.0, 1e-9);
}

/* The table: a header with the time and the interval, a line per
 * target and device, numbers first and the name last.
 */
static void
test_table (void)
{
  g_autoptr (JsonNode) a = payload (1, 0, 50, 0, 50);
  g_autoptr (JsonNode) b = payload (3, 200, 50, 100, 3000);
  g_autoptr (GDateTime) t = g_date_time_new_local (2026, 12, 6, 14, 5, 9);
  g_autoptr (GString) out = g_string_new (NULL);
  g_autofree char *why = NULL;
  g_auto (GStrv) lines = NULL;

  g_assert_true (stats_report_interval (a, b, false, t, out, &why));
  lines = g_strsplit (out->str, "\n", -1);
  g_assert_cmpstr (lines[0], ==, "14:05:09  interval 2.00 s");
  g_assert_cmpstr (lines[1], ==, "      r/s       w/s   rMiB/s   wMiB/s   "
                   "r_p50   r_p99   w_p50   w_p99  name");
  g_assert_true (g_str_has_prefix (lines[2], "    100.0      50.0     0.39"
                                   "    50.00    "));
  g_assert_true (g_str_has_suffix (lines[2], "ms  target 0 2048 linear"));
  g_assert_true (g_str_has_suffix (lines[3],
                                   "  device nbd+unix:///?socket=/a"));
  g_assert_cmpstr (lines[4], ==, "");
}

static void
test_not_stats (void)
{
  static const char *const bad[] = {
    "[1,2]", "{\"targets\":[]}", "{\"targets\":[{\"start\":0}],"
    "\"devices\":[]}", "{\"targets\":[],\"devices\":[{\"uri\":\"x\","
    "\"io\":{\"seconds\":1,\"latency_us\":{}}}]}",
  };
  g_autoptr (GDateTime) t = g_date_time_new_now_local ();
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (JsonParser) p = json_parser_new ();
    g_autoptr (GString) out = g_string_new (NULL);
    g_autofree char *why = NULL;

    g_assert_true (json_parser_load_from_data (p, bad[i], -1, NULL));
    g_assert_false (stats_report_interval (NULL, json_parser_get_root (p),
                                           false, t, out, &why));
    g_test_message ("%s: %s", bad[i], why);
    g_assert_nonnull (why);
  }
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/stats-report/rates/over-interval",
                   test_rates_over_interval);
  g_test_add_func ("/stats-report/rates/first-from-zero",
                   test_first_counts_from_zero);
  g_test_add_func ("/stats-report/rates/cleared-from-zero",
                   test_cleared_counts_from_zero);
  g_test_add_func ("/stats-report/table", test_table);
  g_test_add_func ("/stats-report/not-stats", test_not_stats);
  return g_test_run ();
}
