/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dmsetup stats --interval: the server keeps counters since start (or
 * the last --clear); rates are what changed between two fetches of
 * `stats --json` divided by the seconds between them, as the server
 * counts them ("seconds"), so the tool's own delays do not skew them.
 * Latency percentiles come from the difference of the two histograms,
 * read with the server's bucket geometry (include/nbd-dm/latency.h,
 * whose one file is compiled in here too).
 *
 * Single-threaded; SIGINT and SIGTERM end the loop after the report in
 * progress.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "nbd-dm/latency.h"
#include "stats-report.h"

/* The classes a report shows: reads and writes, as iostat does. */
enum { RD, WR, NR_DIRS };
static const char *const dir_plural[NR_DIRS] = { "reads", "writes" };
static const char *const dir_name[NR_DIRS] = { "read", "write" };

/* One target's or device's counters, as a stats payload has them. */
struct counters {
  double seconds;               /* since creation or the last clear */
  uint64_t ops[NR_DIRS];
  uint64_t bytes[NR_DIRS];
  uint64_t hist[NR_DIRS][NDM_LAT_BUCKETS];
};

/* What one report shows of one target or device. */
struct subject {
  char *key;                    /* matches it across two payloads */
  char *name;                   /* "target 0 2048 linear", "device URI" */
  JsonObject *ident;            /* its identifying members */
  struct counters c;
};

static void
subject_clear (gpointer p)
{
  struct subject *s = p;

  g_free (s->key);
  g_free (s->name);
  json_object_unref (s->ident);
}

static bool
get_uint (JsonObject *o, const char *name, uint64_t *v, char **why)
{
  JsonNode *n = json_object_get_member (o, name);

  if (n == NULL || json_node_get_value_type (n) != G_TYPE_INT64 ||
      json_node_get_int (n) < 0) {
    *why = g_strdup_printf ("'%s' is missing or not a count", name);
    return false;
  }
  *v = json_node_get_int (n);
  return true;
}

/* A member io: {"reads":..,"read_bytes":..,"seconds":..,"latency_us":
 * {"read":{"buckets":[{"ge":LO,...,"count":N},...]},...}}.
 */
static bool
parse_counters (JsonObject *o, struct counters *c, char **why)
{
  JsonObject *io, *lat;
  JsonNode *secs;
  unsigned d, i;

  memset (c, 0, sizeof *c);
  if (!json_object_has_member (o, "io") ||
      !JSON_NODE_HOLDS_OBJECT (json_object_get_member (o, "io"))) {
    *why = g_strdup ("no object 'io'");
    return false;
  }
  io = json_object_get_object_member (o, "io");
  secs = json_object_get_member (io, "seconds");
  if (secs == NULL || !JSON_NODE_HOLDS_VALUE (secs)) {
    *why = g_strdup ("'seconds' is missing");
    return false;
  }
  c->seconds = json_node_get_double (secs);
  if (!json_object_has_member (io, "latency_us") ||
      !JSON_NODE_HOLDS_OBJECT (json_object_get_member (io, "latency_us"))) {
    *why = g_strdup ("no object 'latency_us'");
    return false;
  }
  lat = json_object_get_object_member (io, "latency_us");
  for (d = 0; d < NR_DIRS; d++) {
    g_autofree char *bytes = g_strdup_printf ("%s_bytes", dir_name[d]);
    JsonObject *h;
    JsonArray *buckets;

    if (!get_uint (io, dir_plural[d], &c->ops[d], why) ||
        !get_uint (io, bytes, &c->bytes[d], why))
      return false;
    if (!json_object_has_member (lat, dir_name[d]) ||
        !JSON_NODE_HOLDS_OBJECT (json_object_get_member (lat, dir_name[d]))
        || !json_object_has_member (
             h = json_object_get_object_member (lat, dir_name[d]),
             "buckets") ||
        !JSON_NODE_HOLDS_ARRAY (json_object_get_member (h, "buckets"))) {
      *why = g_strdup_printf ("no %s histogram", dir_name[d]);
      return false;
    }
    buckets = json_object_get_array_member (h, "buckets");
    for (i = 0; i < json_array_get_length (buckets); i++) {
      JsonNode *bn = json_array_get_element (buckets, i);
      uint64_t ge, n;

      if (!JSON_NODE_HOLDS_OBJECT (bn) ||
          !get_uint (json_node_get_object (bn), "ge", &ge, why) ||
          !get_uint (json_node_get_object (bn), "count", &n, why))
        return false;
      c->hist[d][ndm_lat_bucket (ge)] += n;
    }
  }
  return true;
}

/* Members of a target (start, length, type) or a device (uri) that say
 * which it is.
 */
static bool
parse_subjects (JsonNode *root, GArray *out, char **why)
{
  static const struct {
    const char *array, *kind;
    const char *ids[3];
  } kinds[] = {
    { "targets", "target", { "start", "length", "type" } },
    { "devices", "device", { "uri", NULL, NULL } },
  };
  JsonObject *o;
  size_t k, j;
  unsigned i;

  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    *why = g_strdup ("not a JSON object");
    return false;
  }
  o = json_node_get_object (root);
  for (k = 0; k < G_N_ELEMENTS (kinds); k++) {
    JsonArray *a;

    if (!json_object_has_member (o, kinds[k].array) ||
        !JSON_NODE_HOLDS_ARRAY (json_object_get_member (o, kinds[k].array))) {
      *why = g_strdup_printf ("no array '%s'", kinds[k].array);
      return false;
    }
    a = json_object_get_array_member (o, kinds[k].array);
    for (i = 0; i < json_array_get_length (a); i++) {
      JsonNode *en = json_array_get_element (a, i);
      g_autoptr (GString) name = g_string_new (kinds[k].kind);
      struct subject s = { .ident = json_object_new () };

      if (!JSON_NODE_HOLDS_OBJECT (en)) {
        *why = g_strdup_printf ("%s %u is not an object", kinds[k].kind, i);
        json_object_unref (s.ident);
        return false;
      }
      for (j = 0; j < G_N_ELEMENTS (kinds[k].ids) && kinds[k].ids[j]; j++) {
        JsonNode *id = json_object_get_member (json_node_get_object (en),
                                               kinds[k].ids[j]);

        if (id == NULL || !JSON_NODE_HOLDS_VALUE (id)) {
          *why = g_strdup_printf ("%s %u has no '%s'", kinds[k].kind, i,
                                  kinds[k].ids[j]);
          json_object_unref (s.ident);
          return false;
        }
        json_object_set_member (s.ident, kinds[k].ids[j],
                                json_node_copy (id));
        if (json_node_get_value_type (id) == G_TYPE_STRING)
          g_string_append_printf (name, " %s", json_node_get_string (id));
        else
          g_string_append_printf (name, " %" G_GINT64_FORMAT,
                                  json_node_get_int (id));
      }
      s.name = g_strdup (name->str);
      s.key = g_strdup (name->str);
      g_array_append_val (out, s);
      if (!parse_counters (json_node_get_object (en),
                           &g_array_index (out, struct subject,
                                           out->len - 1).c, why)) {
        char *inner = *why;

        *why = g_strdup_printf ("%s: %s", name->str, inner);
        g_free (inner);
        return false;
      }
    }
  }
  return true;
}

/* What changed from prev to cur.  Counters that went back were cleared
 * (or belong to a new table's target of the same place): they count
 * from zero, over the seconds they cover.
 */
static void
counters_delta (const struct counters *prev, const struct counters *cur,
                struct counters *d)
{
  bool fresh = prev == NULL || cur->seconds < prev->seconds;
  unsigned i, b;

  for (i = 0; !fresh && i < NR_DIRS; i++) {
    fresh = cur->ops[i] < prev->ops[i] || cur->bytes[i] < prev->bytes[i];
    for (b = 0; !fresh && b < NDM_LAT_BUCKETS; b++)
      fresh = cur->hist[i][b] < prev->hist[i][b];
  }
  *d = *cur;
  if (fresh)
    return;
  d->seconds = cur->seconds - prev->seconds;
  for (i = 0; i < NR_DIRS; i++) {
    d->ops[i] -= prev->ops[i];
    d->bytes[i] -= prev->bytes[i];
    for (b = 0; b < NDM_LAT_BUCKETS; b++)
      d->hist[i][b] -= prev->hist[i][b];
  }
}

static double
per_second (uint64_t n, double seconds)
{
  return seconds > 0 ? n / seconds : 0;
}

/* A latency for the table: "63us", "1.79ms", "2.10s"; "-" for none. */
static void
table_latency (GString *out, double us)
{
  g_autofree char *s = NULL;

  if (us < 0)
    s = g_strdup ("-");
  else if (us >= 1e6)
    s = g_strdup_printf ("%.2fs", us / 1e6);
  else if (us >= 1e3)
    s = g_strdup_printf ("%.2fms", us / 1e3);
  else
    s = g_strdup_printf ("%.0fus", us);
  g_string_append_printf (out, " %7s", s);
}

static void
json_double (JsonBuilder *b, const char *name, double v)
{
  json_builder_set_member_name (b, name);
  if (v < 0)
    json_builder_add_null_value (b);
  else
    json_builder_add_double_value (b, v);
}

static void
report_subject (const struct subject *s, const struct counters *d,
                JsonBuilder *b, GString *table)
{
  double p[NR_DIRS][2];
  unsigned i;

  for (i = 0; i < NR_DIRS; i++) {
    p[i][0] = ndm_lat_percentile (d->hist[i], 0.5);
    p[i][1] = ndm_lat_percentile (d->hist[i], 0.99);
  }
  if (b == NULL) {
    g_string_append_printf (table, "%9.1f %9.1f %8.2f %8.2f",
                            per_second (d->ops[RD], d->seconds),
                            per_second (d->ops[WR], d->seconds),
                            per_second (d->bytes[RD], d->seconds) / 1048576,
                            per_second (d->bytes[WR], d->seconds) / 1048576);
    for (i = 0; i < NR_DIRS; i++) {
      table_latency (table, p[i][0]);
      table_latency (table, p[i][1]);
    }
    g_string_append_printf (table, "  %s\n", s->name);
    return;
  }
  json_builder_begin_object (b);
  {
    g_autoptr (GList) ids = json_object_get_members (s->ident);
    GList *l;

    for (l = ids; l != NULL; l = l->next) {
      json_builder_set_member_name (b, l->data);
      json_builder_add_value (b, json_object_dup_member (s->ident,
                                                         l->data));
    }
  }
  json_double (b, "seconds", d->seconds);
  for (i = 0; i < NR_DIRS; i++) {
    g_autofree char *bytes = g_strdup_printf ("%s_bytes", dir_name[i]);
    g_autofree char *iops = g_strdup_printf ("%s_iops", dir_name[i]);
    g_autofree char *mib = g_strdup_printf ("%s_mib_s", dir_name[i]);
    g_autofree char *p50 = g_strdup_printf ("%s_p50_us", dir_name[i]);
    g_autofree char *p99 = g_strdup_printf ("%s_p99_us", dir_name[i]);

    json_builder_set_member_name (b, dir_plural[i]);
    json_builder_add_int_value (b, d->ops[i]);
    json_builder_set_member_name (b, bytes);
    json_builder_add_int_value (b, d->bytes[i]);
    json_double (b, iops, per_second (d->ops[i], d->seconds));
    json_double (b, mib, per_second (d->bytes[i], d->seconds) / 1048576);
    json_double (b, p50, p[i][0]);
    json_double (b, p99, p[i][1]);
  }
  json_builder_end_object (b);
}

bool
stats_report_interval (JsonNode *prev, JsonNode *cur, bool json,
                       GDateTime *time, GString *out, char **why)
{
  g_autoptr (GArray) before = g_array_new (FALSE, TRUE,
                                           sizeof (struct subject));
  g_autoptr (GArray) now = g_array_new (FALSE, TRUE, sizeof (struct subject));
  g_autoptr (JsonBuilder) b = json ? json_builder_new () : NULL;
  g_autofree char *stamp = g_date_time_format (time, "%H:%M:%S");
  const char *section = NULL;
  unsigned i, j;

  g_array_set_clear_func (before, subject_clear);
  g_array_set_clear_func (now, subject_clear);
  if ((prev != NULL && !parse_subjects (prev, before, why)) ||
      !parse_subjects (cur, now, why))
    return false;

  if (b != NULL) {
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "time");
    json_builder_add_string_value (b, stamp);
  }
  for (i = 0; i < now->len; i++) {
    const struct subject *s = &g_array_index (now, struct subject, i);
    const struct counters *p = NULL;
    const char *kind = g_str_has_prefix (s->key, "target") ? "targets"
      : "devices";
    struct counters d;

    for (j = 0; j < before->len && p == NULL; j++)
      if (strcmp (g_array_index (before, struct subject, j).key, s->key)
          == 0)
        p = &g_array_index (before, struct subject, j).c;
    counters_delta (p, &s->c, &d);
    if (i == 0 && b == NULL) {
      g_string_append_printf (out, "%s  interval %.2f s\n", stamp,
                              d.seconds);
      g_string_append_printf (out, "%9s %9s %8s %8s %7s %7s %7s %7s  %s\n",
                              "r/s", "w/s", "rMiB/s", "wMiB/s", "r_p50",
                              "r_p99", "w_p50", "w_p99", "name");
    }
    if (b != NULL && g_strcmp0 (section, kind) != 0) {
      if (section != NULL)
        json_builder_end_array (b);
      json_builder_set_member_name (b, kind);
      json_builder_begin_array (b);
      section = kind;
    }
    report_subject (s, &d, b, out);
  }
  if (b != NULL) {
    g_autoptr (JsonGenerator) g = json_generator_new ();
    g_autoptr (JsonNode) root = NULL;
    g_autofree char *text = NULL;

    if (section != NULL)
      json_builder_end_array (b);
    json_builder_end_object (b);
    root = json_builder_get_root (b);
    json_generator_set_root (g, root);
    text = json_generator_to_data (g, NULL);
    g_string_append_printf (out, "%s\n", text);
  }
  else
    g_string_append_c (out, '\n');
  return true;
}

static volatile sig_atomic_t stop;

static void
on_signal (int sig)
{
  stop = 1;
}

/* Sleep until deadline (monotonic us) or a signal says stop. */
static void
sleep_until (gint64 deadline)
{
  for (;;) {
    gint64 left = deadline - g_get_monotonic_time ();
    struct timespec ts;

    if (left <= 0 || stop)
      return;
    ts.tv_sec = left / G_USEC_PER_SEC;
    ts.tv_nsec = (left % G_USEC_PER_SEC) * 1000;
    nanosleep (&ts, NULL);      /* EINTR: the loop checks stop */
  }
}

static JsonNode *
parse_payload (const char *text, char **why)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  GError *err = NULL;

  if (!json_parser_load_from_data (p, text, -1, &err)) {
    *why = g_strdup_printf ("the server's stats are not JSON: %s",
                            err->message);
    g_error_free (err);
    return NULL;
  }
  return json_node_copy (json_parser_get_root (p));
}

int
stats_report_run (stats_report_fetch_fn fetch, void *data, double interval,
                  unsigned count, bool json)
{
  struct sigaction sa = { .sa_handler = on_signal };  /* no SA_RESTART */
  g_autoptr (JsonNode) prev = NULL;
  gint64 next;
  unsigned n;

  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);

  next = g_get_monotonic_time ();
  for (n = 0; !stop && (count == 0 || n <= count); n++) {
    g_autofree char *text = fetch (data);
    g_autoptr (GDateTime) now = g_date_time_new_now_local ();
    g_autoptr (GString) out = g_string_new (NULL);
    g_autofree char *why = NULL;
    JsonNode *cur = parse_payload (text, &why);

    /* The first fetch is the baseline: rates need two. */
    if (cur != NULL && prev != NULL &&
        !stats_report_interval (prev, cur, json, now, out, &why))
      g_clear_pointer (&cur, json_node_unref);
    if (cur == NULL) {
      fprintf (stderr, "nbd-dmsetup: stats --interval: %s\n", why);
      return 1;
    }
    fputs (out->str, stdout);
    fflush (stdout);
    g_clear_pointer (&prev, json_node_unref);
    prev = cur;
    if (count != 0 && n == count)
      break;
    /* On a fixed beat, so reports do not drift by the fetch's time. */
    next += (gint64) (interval * G_USEC_PER_SEC);
    sleep_until (next);
  }
  return 0;
}
