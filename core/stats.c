/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: I/O statistics (see stats.h).
 *
 * Thread model: start/done/requeue from any thread, relaxed atomics;
 * clear/format/json from the control thread.
 */
#include <string.h>

#include "stats.h"
#include "json.h"

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

static const char *
class_name (unsigned c)
{
  return c == NDM_STAT_OTHER ? "other" : ndm_op_name (class_op[c]);
}

static enum ndm_stat_class
op_class (enum ndm_op op)
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

static unsigned
lat_bucket (int64_t us)
{
  unsigned b = 0;

  while (us > 0 && b < NDM_LAT_BUCKETS - 1) {
    us >>= 1;
    b++;
  }
  return b;
}

void
ndm_stats_done (struct ndm_io_stats *s, enum ndm_op op, uint64_t bytes,
                int error, int64_t start)
{
  enum ndm_stat_class c = op_class (op);

  ADD (s->inflight, -1);
  ADD (s->ops[c], 1);
  if (c != NDM_STAT_FLUSH)
    ADD (s->bytes[c], bytes);   /* a flush's range is not data moved */
  if (error != 0)
    ADD (s->errors, 1);
  ADD (s->lat[c][lat_bucket (g_get_monotonic_time () - start)], 1);
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
  }
  snap->errors = TAKE (s->errors);
  snap->requeues = TAKE (s->requeues);
  snap->inflight = LOAD (s->inflight);
  snap->since = __atomic_exchange_n (&s->since, now, __ATOMIC_RELAXED);
}

/* Bucket b's range, for people. */
static void
bucket_label (unsigned b, GString *out)
{
  if (b == 0)
    g_string_append (out, "<1us");
  else if (b == NDM_LAT_BUCKETS - 1)
    g_string_append_printf (out, ">=%" G_GUINT64_FORMAT "us",
                            (guint64) 1 << (b - 1));
  else
    g_string_append_printf (out, "%" G_GUINT64_FORMAT "-%" G_GUINT64_FORMAT
                            "us", (guint64) 1 << (b - 1), (guint64) 1 << b);
}

void
ndm_stats_format (const struct ndm_io_stats *s, const char *indent,
                  GString *out)
{
  unsigned c, b;

  g_string_append (out, indent);
  for (c = 0; c < NDM_STAT_CLASSES; c++) {
    g_string_append_printf (out, "%s %" G_GUINT64_FORMAT, class_plural[c],
                            (guint64) LOAD (s->ops[c]));
    if (c != NDM_STAT_FLUSH)
      g_string_append_printf (out, " (%" G_GUINT64_FORMAT " bytes)",
                              (guint64) LOAD (s->bytes[c]));
    g_string_append (out, ", ");
  }
  g_string_append_printf (out, "errors %" G_GUINT64_FORMAT ", requeues %"
                          G_GUINT64_FORMAT ", in-flight %" G_GINT64_FORMAT
                          ", over %.1f s\n",
                          (guint64) LOAD (s->errors),
                          (guint64) LOAD (s->requeues),
                          (gint64) LOAD (s->inflight),
                          (g_get_monotonic_time () - LOAD (s->since)) / 1e6);
  for (c = 0; c < NDM_STAT_CLASSES; c++) {
    bool first = true;

    for (b = 0; b < NDM_LAT_BUCKETS; b++) {
      uint64_t n = LOAD (s->lat[c][b]);

      if (n == 0)
        continue;
      if (first)
        g_string_append_printf (out, "%s  %s latency:", indent,
                                class_name (c));
      g_string_append_printf (out, "%s ", first ? "" : ",");
      bucket_label (b, out);
      g_string_append_printf (out, " %" G_GUINT64_FORMAT, (guint64) n);
      first = false;
    }
    if (!first)
      g_string_append_c (out, '\n');
  }
}

void
ndm_stats_json (const struct ndm_io_stats *s, JsonBuilder *b)
{
  unsigned c, i;

  json_builder_begin_object (b);
  for (c = 0; c < NDM_STAT_CLASSES; c++) {
    g_autofree char *bytes = g_strdup_printf ("%s_bytes", class_name (c));

    ndm_json_member_uint (b, class_plural[c], LOAD (s->ops[c]));
    ndm_json_member_uint (b, bytes, LOAD (s->bytes[c]));
  }
  ndm_json_member_uint (b, "errors", LOAD (s->errors));
  ndm_json_member_uint (b, "requeues", LOAD (s->requeues));
  ndm_json_member_int (b, "in_flight", LOAD (s->inflight));
  ndm_json_member_double (b, "seconds", (g_get_monotonic_time ()
                                         - LOAD (s->since)) / 1e6);
  json_builder_set_member_name (b, "latency_us_log2");
  json_builder_begin_object (b);
  for (c = 0; c < NDM_STAT_CLASSES; c++) {
    json_builder_set_member_name (b, class_name (c));
    json_builder_begin_array (b);
    for (i = 0; i < NDM_LAT_BUCKETS; i++)
      json_builder_add_int_value (b, LOAD (s->lat[c][i]));
    json_builder_end_array (b);
  }
  json_builder_end_object (b);
  json_builder_end_object (b);
}
