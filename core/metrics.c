/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the statistics in the OpenMetrics text format (Prometheus'
 * exposition format, https://openmetrics.io), for `stats
 * --format=openmetrics` and for the metrics= HTTP endpoint
 * (core/metrics-http.c): one text, whoever asks.
 *
 * Every family is a counter (samples "<family>_total"), a gauge or a
 * histogram ("_bucket{le=...}", "_sum", "_count") of the same counters
 * `stats` shows (core/stats.c), in base units (bytes, seconds): per
 * target segment, labelled start, length (sectors) and type, and per
 * device, labelled uri.  Ops are the label op.  A histogram's buckets are
 * the latency buckets of include/nbd-dm/latency.h, each le its upper bound;
 * only ops with samples have one, so a device that never trims shows no
 * trim histogram.
 *
 * Thread model: any thread, any number at once: it only reads the
 * counters (relaxed atomics) of a table it holds a reference to.
 */
#include <string.h>

#include "core.h"
#include "stats.h"

/* What one target or device is called in the samples: its labels, and
 * its counters read once, so a histogram's count is its buckets' sum.
 */
struct om_subject {
  GString *labels;              /* 'start="0",length="2048",type="linear"' */
  struct ndm_io_stats s;
};

/* A label value: UTF-8 (a URI may hold any byte), with '\\', '"' and
 * newline escaped as the format says.
 */
static void
label_value (GString *out, const char *name, const char *value)
{
  g_autofree char *valid = g_utf8_make_valid (value, -1);
  const char *p;

  g_string_append_printf (out, "%s%s=\"", out->len ? "," : "", name);
  for (p = valid; *p; p++) {
    switch (*p) {
    case '\\': g_string_append (out, "\\\\"); break;
    case '"': g_string_append (out, "\\\""); break;
    case '\n': g_string_append (out, "\\n"); break;
    default: g_string_append_c (out, *p);
    }
  }
  g_string_append_c (out, '"');
}

/* Microseconds as seconds, exactly, without trailing zeros: the le
 * values of neighbouring buckets must stay distinct and ordered.
 */
static void
append_seconds (GString *out, uint64_t us)
{
  size_t end;

  g_string_append_printf (out, "%" G_GUINT64_FORMAT ".%06" G_GUINT64_FORMAT,
                          (guint64) (us / 1000000), (guint64) (us % 1000000));
  end = out->len;
  while (out->str[end - 1] == '0')
    end--;
  if (out->str[end - 1] == '.')
    end++;                      /* "2.0": keep one digit */
  g_string_truncate (out, end);
}

enum om_value {
  OM_OPS, OM_BYTES, OM_ERRORS, OM_REQUEUES, OM_IN_FLIGHT, OM_LATENCY,
};

/* The families, in the order they are written; each once for targets
 * ("ndm_target_" + name) and once for devices ("ndm_device_" + name).
 */
static const struct om_family {
  const char *name;
  const char *type;             /* counter, gauge, histogram */
  const char *unit;             /* NULL or the name's suffix */
  enum om_value value;
  bool per_op;                  /* a sample per op, labelled op */
  const char *help;
} families[] = {
  { "ios", "counter", NULL, OM_OPS, true,
    "I/Os finished (a target: pieces of client requests; a device: "
    "commands sent), by op" },
  { "bytes", "counter", "bytes", OM_BYTES, true,
    "Bytes of the finished I/Os, by op (flushes move none)" },
  { "errors", "counter", NULL, OM_ERRORS, false, "I/Os that failed" },
  { "requeues", "counter", NULL, OM_REQUEUES, false,
    "Times a piece of a request was mapped again" },
  { "in_flight", "gauge", NULL, OM_IN_FLIGHT, false,
    "I/Os started and not finished" },
  { "latency_seconds", "histogram", "seconds", OM_LATENCY, true,
    "Latency of the finished I/Os, by op" },
};

static uint64_t
hist_count (const uint64_t *hist)
{
  uint64_t n = 0;
  unsigned b;

  for (b = 0; b < NDM_LAT_BUCKETS; b++)
    n += hist[b];
  return n;
}

static void
histogram (GString *out, const char *name, const char *labels,
           const uint64_t *hist, uint64_t sum_us)
{
  uint64_t cum = 0;
  unsigned b;

  for (b = 0; b < NDM_LAT_BUCKETS; b++) {
    cum += hist[b];
    g_string_append_printf (out, "%s_bucket{%s,le=\"", name, labels);
    if (b == NDM_LAT_BUCKETS - 1)
      g_string_append (out, "+Inf");
    else
      append_seconds (out, ndm_lat_upper (b));
    g_string_append_printf (out, "\"} %" G_GUINT64_FORMAT "\n",
                            (guint64) cum);
  }
  g_string_append_printf (out, "%s_sum{%s} ", name, labels);
  append_seconds (out, sum_us);
  g_string_append_printf (out, "\n%s_count{%s} %" G_GUINT64_FORMAT "\n",
                          name, labels, (guint64) cum);
}

static void
family (GString *out, const char *kind, const struct om_family *f,
        const struct om_subject *subj, unsigned n)
{
  g_autofree char *name = g_strdup_printf ("ndm_%s_%s", kind, f->name);
  const char *suffix = strcmp (f->type, "counter") == 0 ? "_total" : "";
  unsigned i, c;

  g_string_append_printf (out, "# TYPE %s %s\n", name, f->type);
  if (f->unit != NULL)
    g_string_append_printf (out, "# UNIT %s %s\n", name, f->unit);
  g_string_append_printf (out, "# HELP %s %s.\n", name, f->help);
  for (i = 0; i < n; i++) {
    const struct ndm_io_stats *s = &subj[i].s;
    const char *labels = subj[i].labels->str;

    if (!f->per_op) {
      uint64_t v = f->value == OM_ERRORS ? s->errors
        : f->value == OM_REQUEUES ? s->requeues
        : (uint64_t) MAX (s->inflight, 0);

      g_string_append_printf (out, "%s%s{%s} %" G_GUINT64_FORMAT "\n", name,
                              suffix, labels, (guint64) v);
      continue;
    }
    for (c = 0; c < NDM_STAT_CLASSES; c++) {
      g_autoptr (GString) l = g_string_new (labels);

      label_value (l, "op", ndm_stats_class_name (c));
      if (f->value == OM_LATENCY) {
        if (hist_count (s->lat[c]) > 0)
          histogram (out, name, l->str, s->lat[c], s->lat_sum[c]);
      }
      else if (f->value == OM_OPS || c != NDM_STAT_FLUSH)
        g_string_append_printf (out, "%s%s{%s} %" G_GUINT64_FORMAT "\n",
                                name, suffix, l->str,
                                (guint64) (f->value == OM_OPS ? s->ops[c]
                                           : s->bytes[c]));
    }
  }
}

void
ndm_table_openmetrics (struct ndm_table *t, GString *out)
{
  unsigned nt = t->nr_targets, nd = t->devices->len, i;
  struct om_subject *targets = g_new0 (struct om_subject, MAX (nt, 1));
  struct om_subject *devices = g_new0 (struct om_subject, MAX (nd, 1));
  size_t f;

  for (i = 0; i < nt; i++) {
    struct ndm_target *ti = &t->targets[i];
    g_autofree char *start = g_strdup_printf ("%" PRIu64, ti->begin);
    g_autofree char *len = g_strdup_printf ("%" PRIu64, ti->len);

    targets[i].labels = g_string_new (NULL);
    label_value (targets[i].labels, "start", start);
    label_value (targets[i].labels, "length", len);
    label_value (targets[i].labels, "type", ti->type->name);
    ndm_stats_read (ti->stats, &targets[i].s);
  }
  for (i = 0; i < nd; i++) {
    struct ndm_device *dev = t->devices->pdata[i];

    devices[i].labels = g_string_new (NULL);
    label_value (devices[i].labels, "uri", dev->uri);
    ndm_stats_read (dev->stats, &devices[i].s);
  }
  for (f = 0; f < G_N_ELEMENTS (families); f++)
    family (out, "target", &families[f], targets, nt);
  for (f = 0; f < G_N_ELEMENTS (families); f++)
    family (out, "device", &families[f], devices, nd);
  g_string_append (out, "# EOF\n");

  for (i = 0; i < nt; i++)
    g_string_free (targets[i].labels, TRUE);
  for (i = 0; i < nd; i++)
    g_string_free (devices[i].labels, TRUE);
  g_free (targets);
  g_free (devices);
}
