/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: I/O statistics (see stats.h).
 *
 * Thread model: start/done/requeue from any thread, relaxed atomics;
 * clear/format/json from the control thread.
 */
#include <string.h>

#include "stats.h"

/* The op each class counts, whose name it goes by ("read", "zero");
 * every other op (cache, block status) counts as NDM_STAT_OTHER.
 */
static const enum ndm_op class_op[NDM_STAT_OTHER] = {
  [NDM_STAT_READ] = NDM_OP_READ, [NDM_STAT_WRITE] = NDM_OP_WRITE,
  [NDM_STAT_FLUSH] = NDM_OP_FLUSH, [NDM_STAT_TRIM] = NDM_OP_TRIM,
  [NDM_STAT_ZERO] = NDM_OP_ZERO,
};
static const char *const class_plural[NDM_STAT_CLASSES] = {
  [NDM_STAT_READ] = "reads", [NDM_STAT_WRITE] = "writes",
  [NDM_STAT_FLUSH] = "flushes", [NDM_STAT_TRIM] = "trims",
  [NDM_STAT_ZERO] = "zeroes", [NDM_STAT_OTHER] = "others",
};

const struct ndm_stats_percentile
ndm_stats_percentiles[NDM_STATS_NR_PERCENTILES] = {
  { 0.5, "p50", "p50" }, { 0.9, "p90", "p90" }, { 0.99, "p99", "p99" },
  { 0.999, "p99.9", "p999" },
};

const char *
ndm_stats_class_name (enum ndm_stat_class c)
{
  return c == NDM_STAT_OTHER ? "other" : ndm_op_name (class_op[c]);
}

enum ndm_stat_class
ndm_stats_class_of (enum ndm_op op)
{
  unsigned c;

  for (c = 0; c < NDM_STAT_OTHER; c++)
    if (class_op[c] == op)
      return c;
  return NDM_STAT_OTHER;
}

#define LOAD(x) __atomic_load_n (&(x), __ATOMIC_RELAXED)
#define ADD(x, n) __atomic_fetch_add (&(x), (n), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n (&(x), (v), __ATOMIC_RELAXED)

struct ndm_io_stats *
ndm_stats_new (void)
{
  struct ndm_io_stats *s = g_new0 (struct ndm_io_stats, 1);

  s->since = g_get_monotonic_time ();
  return s;
}

void
ndm_stats_free (struct ndm_io_stats *s)
{
  g_free (s);
}

int64_t
ndm_stats_start (struct ndm_io_stats *s)
{
  ADD (s->inflight, 1);
  return g_get_monotonic_time ();
}

/* The latency's bucket costs a count of leading zeros (latency.h), and
 * its sum one more relaxed add on the same cache lines.
 */
void
ndm_stats_done (struct ndm_io_stats *s, enum ndm_op op, uint64_t bytes,
                int error, int64_t start)
{
  enum ndm_stat_class c = ndm_stats_class_of (op);
  int64_t us = g_get_monotonic_time () - start;

  if (us < 0)
    us = 0;
  ADD (s->inflight, -1);
  ADD (s->ops[c], 1);
  if (c != NDM_STAT_FLUSH)
    ADD (s->bytes[c], bytes);   /* a flush's range is not data moved */
  if (error != 0)
    ADD (s->errors, 1);
  ADD (s->lat[c][ndm_lat_bucket (us)], 1);
  ADD (s->lat_sum[c], (uint64_t) us);
}

void
ndm_stats_requeue (struct ndm_io_stats *s)
{
  ADD (s->requeues, 1);
}

void
ndm_stats_abandon (struct ndm_io_stats *s)
{
  ADD (s->inflight, -1);
}

#define TAKE(x) __atomic_exchange_n (&(x), 0, __ATOMIC_RELAXED)

/* Each counter is exchanged for zero, so an I/O ending meanwhile is
 * counted either in the snapshot or after it, never lost.
 */
void
ndm_stats_take (struct ndm_io_stats *s, struct ndm_io_stats *snap)
{
  int64_t now = g_get_monotonic_time ();
  unsigned c, b;

  for (c = 0; c < NDM_STAT_CLASSES; c++) {
    snap->ops[c] = TAKE (s->ops[c]);
    snap->bytes[c] = TAKE (s->bytes[c]);
    for (b = 0; b < NDM_LAT_BUCKETS; b++)
      snap->lat[c][b] = TAKE (s->lat[c][b]);
    snap->lat_sum[c] = TAKE (s->lat_sum[c]);
  }
  snap->errors = TAKE (s->errors);
  snap->requeues = TAKE (s->requeues);
  snap->inflight = LOAD (s->inflight);
  snap->since = __atomic_exchange_n (&s->since, now, __ATOMIC_RELAXED);
}

void
ndm_stats_read (const struct ndm_io_stats *s, struct ndm_io_stats *snap)
{
  unsigned c, b;

  for (c = 0; c < NDM_STAT_CLASSES; c++) {
    snap->ops[c] = LOAD (s->ops[c]);
    snap->bytes[c] = LOAD (s->bytes[c]);
    for (b = 0; b < NDM_LAT_BUCKETS; b++)
      snap->lat[c][b] = LOAD (s->lat[c][b]);
    snap->lat_sum[c] = LOAD (s->lat_sum[c]);
  }
  snap->errors = LOAD (s->errors);
  snap->requeues = LOAD (s->requeues);
  snap->inflight = LOAD (s->inflight);
  snap->since = LOAD (s->since);
}

double
ndm_stats_seconds (const struct ndm_io_stats *s)
{
  return (g_get_monotonic_time () - LOAD (s->since)) / 1e6;
}

/* A latency for people: "52.5us", "1.25ms", "2.00s". */
static void
format_us (double us, GString *out)
{
  if (us >= 1e6)
    g_string_append_printf (out, "%.2fs", us / 1e6);
  else if (us >= 1e3)
    g_string_append_printf (out, "%.2fms", us / 1e3);
  else
    g_string_append_printf (out, "%.1fus", us);
}

/* Bucket b's range, for people: "48-56us", ">=7516192768us". */
static void
bucket_label (unsigned b, GString *out)
{
  if (b == NDM_LAT_BUCKETS - 1)
    g_string_append_printf (out, ">=%" G_GUINT64_FORMAT "us",
                            (guint64) ndm_lat_lower (b));
  else
    g_string_append_printf (out, "%" G_GUINT64_FORMAT "-%" G_GUINT64_FORMAT
                            "us", (guint64) ndm_lat_lower (b),
                            (guint64) ndm_lat_upper (b));
}

void
ndm_stats_format (const struct ndm_io_stats *live, const char *indent,
                  GString *out)
{
  struct ndm_io_stats s;
  unsigned c, b, p;

  ndm_stats_read (live, &s);
  g_string_append (out, indent);
  for (c = 0; c < NDM_STAT_CLASSES; c++) {
    g_string_append_printf (out, "%s %" G_GUINT64_FORMAT, class_plural[c],
                            (guint64) s.ops[c]);
    if (c != NDM_STAT_FLUSH)
      g_string_append_printf (out, " (%" G_GUINT64_FORMAT " bytes)",
                              (guint64) s.bytes[c]);
    g_string_append (out, ", ");
  }
  g_string_append_printf (out, "errors %" G_GUINT64_FORMAT ", requeues %"
                          G_GUINT64_FORMAT ", in-flight %" G_GINT64_FORMAT
                          ", over %.1f s\n", (guint64) s.errors,
                          (guint64) s.requeues, (gint64) s.inflight,
                          ndm_stats_seconds (&s));
  for (c = 0; c < NDM_STAT_CLASSES; c++) {
    bool first = true;

    if (ndm_lat_percentile (s.lat[c], 0.5) < 0)
      continue;
    g_string_append_printf (out, "%s  %s latency:", indent,
                            ndm_stats_class_name (c));
    for (p = 0; p < NDM_STATS_NR_PERCENTILES; p++) {
      g_string_append_printf (out, "%s %s ", p ? "," : "",
                              ndm_stats_percentiles[p].name);
      format_us (ndm_lat_percentile (s.lat[c],
                                     ndm_stats_percentiles[p].q), out);
    }
    for (b = 0; b < NDM_LAT_BUCKETS; b++) {
      if (s.lat[c][b] == 0)
        continue;
      g_string_append (out, first ? "; " : ", ");
      bucket_label (b, out);
      g_string_append_printf (out, " %" G_GUINT64_FORMAT,
                              (guint64) s.lat[c][b]);
      first = false;
    }
    g_string_append_c (out, '\n');
  }
}

static void
json_uint (JsonBuilder *b, const char *name, uint64_t v)
{
  json_builder_set_member_name (b, name);
  json_builder_add_int_value (b, (gint64) MIN (v, (uint64_t) G_MAXINT64));
}

/* One class's histogram: {"count":N,"sum":US,"p50":US,...,"buckets":
 * [{"ge":LO,"lt":HI,"count":N},...]}, the empty buckets left out, the
 * last one without "lt"; the percentiles null without samples.
 */
static void
histogram_json (const uint64_t *hist, uint64_t sum, JsonBuilder *b)
{
  uint64_t count = 0;
  unsigned i;

  for (i = 0; i < NDM_LAT_BUCKETS; i++)
    count += hist[i];
  json_builder_begin_object (b);
  json_uint (b, "count", count);
  json_uint (b, "sum", sum);
  for (i = 0; i < NDM_STATS_NR_PERCENTILES; i++) {
    double v = ndm_lat_percentile (hist, ndm_stats_percentiles[i].q);

    json_builder_set_member_name (b, ndm_stats_percentiles[i].json);
    if (v < 0)
      json_builder_add_null_value (b);
    else
      json_builder_add_double_value (b, v);
  }
  json_builder_set_member_name (b, "buckets");
  json_builder_begin_array (b);
  for (i = 0; i < NDM_LAT_BUCKETS; i++) {
    if (hist[i] == 0)
      continue;
    json_builder_begin_object (b);
    json_uint (b, "ge", ndm_lat_lower (i));
    if (i < NDM_LAT_BUCKETS - 1)
      json_uint (b, "lt", ndm_lat_upper (i));
    json_uint (b, "count", hist[i]);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
}

void
ndm_stats_json (const struct ndm_io_stats *live, JsonBuilder *b)
{
  struct ndm_io_stats s;
  unsigned c;

  ndm_stats_read (live, &s);
  json_builder_begin_object (b);
  for (c = 0; c < NDM_STAT_CLASSES; c++) {
    g_autofree char *bytes = g_strdup_printf ("%s_bytes",
                                              ndm_stats_class_name (c));

    json_uint (b, class_plural[c], s.ops[c]);
    json_uint (b, bytes, s.bytes[c]);
  }
  json_uint (b, "errors", s.errors);
  json_uint (b, "requeues", s.requeues);
  json_builder_set_member_name (b, "in_flight");
  json_builder_add_int_value (b, s.inflight);
  json_builder_set_member_name (b, "seconds");
  json_builder_add_double_value (b, ndm_stats_seconds (&s));
  json_builder_set_member_name (b, "latency_us");
  json_builder_begin_object (b);
  for (c = 0; c < NDM_STAT_CLASSES; c++) {
    json_builder_set_member_name (b, ndm_stats_class_name (c));
    histogram_json (s.lat[c], s.lat_sum[c], b);
  }
  json_builder_end_object (b);
  json_builder_end_object (b);
}
