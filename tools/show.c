/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dmsetup show: a human view of the multipath and mirror targets, as
 * `multipath -ll` and `multipathd show paths` give of dm-multipath: a
 * block per target, its size and settings on a line, then a tree of its
 * path groups and paths, or of its legs, each with its state, why it
 * failed, how often, the damping left and when it is checked next; a
 * mirror adds the resync's progress.
 *
 * It is rendered here from the server's `status --json`, so the server
 * keeps one source of those facts (the targets' status_json); a member
 * the server does not send is left out, not guessed.
 *
 * Single-threaded; the caller prints errors.
 */
#include <stdbool.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "show.h"

/* ---- reading the JSON: a missing or mistyped member is absent ---------- */

static guint
length_of (JsonArray *a)
{
  return a != NULL ? json_array_get_length (a) : 0;
}

static JsonObject *
element_object (JsonArray *a, guint i)
{
  JsonNode *n = json_array_get_element (a, i);

  return JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

static JsonObject *
member_object (JsonObject *o, const char *name)
{
  JsonNode *n = o != NULL ? json_object_get_member (o, name) : NULL;

  return n != NULL && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n)
    : NULL;
}

static JsonArray *
member_array (JsonObject *o, const char *name)
{
  JsonNode *n = o != NULL ? json_object_get_member (o, name) : NULL;

  return n != NULL && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n)
    : NULL;
}

/* The member as a value node (a number, string or boolean), or NULL. */
static JsonNode *
member_value (JsonObject *o, const char *name)
{
  JsonNode *n = o != NULL ? json_object_get_member (o, name) : NULL;

  return n != NULL && JSON_NODE_HOLDS_VALUE (n) ? n : NULL;
}

static const char *
member_string (JsonObject *o, const char *name)
{
  JsonNode *n = member_value (o, name);

  return n != NULL && json_node_get_value_type (n) == G_TYPE_STRING ?
    json_node_get_string (n) : NULL;
}

static bool
member_int (JsonObject *o, const char *name, gint64 *v)
{
  JsonNode *n = member_value (o, name);

  if (n == NULL || json_node_get_value_type (n) != G_TYPE_INT64)
    return false;
  *v = json_node_get_int (n);
  return true;
}

static bool
member_true (JsonObject *o, const char *name)
{
  JsonNode *n = member_value (o, name);

  return n != NULL && json_node_get_value_type (n) == G_TYPE_BOOLEAN &&
    json_node_get_boolean (n);
}

/* ---- pieces of a line ------------------------------------------------------ */

/* " key=value", the value quoted when it holds a blank (a reason). */
static void
put_kv (GString *line, const char *key, const char *value)
{
  if (value == NULL)
    return;
  if (strchr (value, ' ') != NULL || value[0] == '\0')
    g_string_append_printf (line, " %s='%s'", key, value);
  else
    g_string_append_printf (line, " %s=%s", key, value);
}

static void
put_int (GString *line, JsonObject *o, const char *member, const char *key)
{
  gint64 v;

  if (member_int (o, member, &v))
    g_string_append_printf (line, " %s=%" G_GINT64_FORMAT, key, v);
}

/* " key=1.5s" from a member in milliseconds; nothing when it is absent
 * or zero (no damping left, nothing to wait for).
 */
static void
put_ms (GString *line, JsonObject *o, const char *member, const char *key)
{
  gint64 ms;

  if (member_int (o, member, &ms) && ms > 0)
    g_string_append_printf (line, " %s=%.1fs", key, ms / 1000.0);
}

/* Bytes as multipath -ll writes a size ("16M", "1.5G"): the biggest
 * power-of-1024 unit it reaches, one decimal unless whole.  (GLib's
 * g_format_size puts a no-break space in, which scripts trip on.)
 */
static char *
human_size (gint64 bytes)
{
  static const char units[] = "KMGTPE";
  double v = bytes;
  int u = -1;

  while (v >= 1024 && units[u + 1] != '\0') {
    v /= 1024;
    u++;
  }
  if (u < 0)
    return g_strdup_printf ("%" G_GINT64_FORMAT, bytes);
  if (v == (gint64) v)
    return g_strdup_printf ("%" G_GINT64_FORMAT "%c", (gint64) v, units[u]);
  return g_strdup_printf ("%.1f%c", v, units[u]);
}

static void
put_bytes (GString *line, const char *key, gint64 bytes)
{
  g_autofree char *s = human_size (bytes);

  put_kv (line, key, s);
}

/* The tree's branches, as multipath -ll draws them. */
static const char *
branch (bool last)
{
  return last ? "`-" : "|-";
}

static const char *
trunk (bool last)
{
  return last ? "  " : "| ";
}

/* A path or a leg: its state, then why it failed, how often, the damping
 * left (a flapping one is not put back before) and the next check.
 */
static void
put_checked (GString *line, JsonObject *item)
{
  gint64 ms;

  put_kv (line, "reason", member_string (item, "reason"));
  put_int (line, item, "fail_count", "fail_count");
  put_ms (line, item, "damped_ms", "damped");
  /* 0 is news here (a round runs now); null: no checker thread runs. */
  if (member_int (item, "next_check_ms", &ms))
    g_string_append_printf (line, " next_check=%.1fs", ms / 1000.0);
}

/* ---- the targets ------------------------------------------------------------ */

static void
show_head (FILE *f, JsonObject *t)
{
  gint64 start = 0, length = 0;

  member_int (t, "start", &start);
  member_int (t, "length", &length);
  fprintf (f, "%s %" G_GINT64_FORMAT " %" G_GINT64_FORMAT "\n",
           member_string (t, "type"), start, length);
}

static void
show_multipath (FILE *f, JsonObject *t, JsonObject *d)
{
  g_autoptr (GString) line = g_string_new (NULL);
  JsonArray *groups = member_array (d, "groups");
  gint64 length = 0, valid;
  guint i, j, nr_paths = 0;

  show_head (f, t);
  member_int (t, "length", &length);
  put_bytes (line, "size", length * 512);
  g_string_append_printf (line, " features='%s'",
                          member_true (d, "queue_if_no_path") ?
                          "queue_if_no_path" : "");
  for (i = 0; i < length_of (groups); i++)
    nr_paths += length_of (member_array (element_object (groups, i),
                                         "paths"));
  if (member_int (d, "valid_paths", &valid))
    g_string_append_printf (line, " valid_paths=%" G_GINT64_FORMAT "/%u",
                            valid, nr_paths);
  put_kv (line, "queueing", member_true (d, "queueing") ? "yes" : "no");
  fprintf (f, "%s\n", line->str + 1);

  for (i = 0; i < length_of (groups); i++) {
    JsonObject *g = element_object (groups, i);
    JsonArray *paths = member_array (g, "paths");
    bool last_g = i + 1 == length_of (groups);

    g_string_truncate (line, 0);
    put_int (line, g, "group", "group");
    put_kv (line, "policy", member_string (g, "selector"));
    put_kv (line, "status", member_string (g, "state"));
    fprintf (f, "%s+-%s\n", branch (last_g), line->str);
    for (j = 0; j < length_of (paths); j++) {
      JsonObject *p = element_object (paths, j);

      g_string_truncate (line, 0);
      put_checked (line, p);
      fprintf (f, "%s%s %s %s%s\n", trunk (last_g),
               branch (j + 1 == length_of (paths)),
               member_string (p, "path") ?: "?",
               member_string (p, "state") ?: "?", line->str);
    }
  }
}

static void
show_mirror (FILE *f, JsonObject *t, JsonObject *d)
{
  g_autoptr (GString) line = g_string_new (NULL);
  JsonObject *log = member_object (d, "log");
  JsonObject *resync = member_object (d, "resync");
  JsonArray *legs = member_array (d, "legs");
  gint64 length = 0, regions = 0, in_sync = 0, region_size = 0, v;
  guint i;

  show_head (f, t);
  member_int (t, "length", &length);
  put_bytes (line, "size", length * 512);
  put_kv (line, "log", member_string (log, "type"));
  put_kv (line, "log_device", member_string (log, "device"));
  if (member_int (d, "region_size", &region_size))
    put_bytes (line, "region_size", region_size);
  if (member_true (d, "handle_errors"))
    g_string_append (line, " handle_errors");
  if (member_true (d, "keep_log"))
    g_string_append (line, " keep_log");
  put_kv (line, "read_balance", member_string (d, "read_balance"));
  fprintf (f, "%s\n", line->str + 1);

  /* The resync: regions in sync of all, as a percentage too. */
  g_string_truncate (line, 0);
  if (member_int (d, "regions", &regions) &&
      member_int (d, "in_sync", &in_sync))
    g_string_append_printf (line, " in_sync=%" G_GINT64_FORMAT "/%"
                            G_GINT64_FORMAT " (%.1f%%)", in_sync, regions,
                            regions > 0 ? 100.0 * in_sync / regions : 100.0);
  put_kv (line, "resync", member_string (resync, "state"));
  if (member_int (resync, "rate", &v) && v > 0) {
    g_autofree char *rate = human_size (v);

    g_string_append_printf (line, " rate=%s/s", rate);
  }
  if (member_int (resync, "rate_limit", &v) && v > 0) {
    g_autofree char *cap = human_size (v);

    g_string_append_printf (line, " rate_limit=%s/s", cap);
  }
  put_ms (line, resync, "eta_ms", "eta");
  if (member_int (resync, "copied", &v))
    put_bytes (line, "copied", v);
  fprintf (f, "%s\n", line->str + (line->len > 0));

  for (i = 0; i < length_of (legs); i++) {
    JsonObject *leg = element_object (legs, i);

    g_string_truncate (line, 0);
    put_kv (line, "health", member_string (leg, "health"));
    put_checked (line, leg);
    put_int (line, leg, "read_errors", "read_errors");
    put_int (line, leg, "write_errors", "write_errors");
    put_int (line, leg, "read_repairs", "read_repairs");
    fprintf (f, "%s %s %s%s\n", branch (i + 1 == length_of (legs)),
             member_string (leg, "leg") ?: "?",
             member_string (leg, "state") ?: "?", line->str);
  }
}

int
render_show (const char *json, FILE *f, GError **err)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonNode *root;
  JsonArray *targets;
  guint i;
  bool first = true;

  if (!json_parser_load_from_data (parser, json, -1, err))
    return -1;
  root = json_parser_get_root (parser);
  targets = root != NULL && JSON_NODE_HOLDS_OBJECT (root) ?
    member_array (json_node_get_object (root), "targets") : NULL;
  if (targets == NULL) {
    g_set_error (err, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                 "the server's status has no \"targets\" list");
    return -1;
  }
  for (i = 0; i < length_of (targets); i++) {
    JsonObject *t = element_object (targets, i);
    const char *type = member_string (t, "type");
    JsonObject *d = member_object (t, "detail");

    if (type == NULL || d == NULL)
      continue;
    if (strcmp (type, "multipath") != 0 && strcmp (type, "mirror") != 0)
      continue;
    if (!first)
      fputc ('\n', f);
    first = false;
    if (strcmp (type, "multipath") == 0)
      show_multipath (f, t, d);
    else
      show_mirror (f, t, d);
  }
  return 0;
}
