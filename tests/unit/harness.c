/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit-test harness (see harness.h). */
#include <stdlib.h>

#include "nbd-dm/bio.h"
#include "nbd-dm/control.h"
#include "nbd-dm/target.h"
#include "core.h"
#include "harness.h"

/* ---- the probe target ------------------------------------------------------ */

/* <start> <length> probe <device> <offset> */
struct probe_c {
  struct ndm_device *dev;
  uint64_t start;
};

static GMutex probe_lock;
static GArray *probe_endios;
static unsigned probe_requeues;

static int
probe_ctr (struct ndm_target *ti, unsigned argc, char **argv, GError **err)
{
  struct probe_c *pc;

  if (argc != 2) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE, "probe: 2 args");
    return -1;
  }
  pc = g_new0 (struct probe_c, 1);
  if (ndm_parse_sectors (argv[1], "offset", &pc->start, err) == -1 ||
      (pc->dev = ndm_table_get_device (ti, argv[0], err)) == NULL) {
    g_free (pc);
    return -1;
  }
  ti->private = pc;
  return 0;
}

static void
probe_dtr (struct ndm_target *ti)
{
  g_free (ti->private);
}

static int
probe_map (struct ndm_target *ti, struct ndm_clone *clone)
{
  struct probe_c *pc = ti->private;

  ndm_clone_remap (clone, pc->dev, (pc->start << NDM_SECTOR_SHIFT) +
                   ndm_clone_target_offset (clone));
  return NDM_MAPIO_REMAPPED;
}

static int
probe_end_io (struct ndm_target *ti, struct ndm_clone *clone, int *error)
{
  struct h_endio e = {
    .offset = clone->offset, .len = clone->len,
    .credited = clone->credited, .error = *error,
  };
  int r = NDM_ENDIO_DONE;

  g_mutex_lock (&probe_lock);
  g_array_append_val (probe_endios, e);
  if (*error != 0 && probe_requeues > 0) {
    probe_requeues--;
    r = NDM_ENDIO_REQUEUE;
  }
  g_mutex_unlock (&probe_lock);
  return r;
}

static const struct ndm_target_type probe_target = {
  .name = "probe", .version = { 1, 0, 0 },
  .ctr = probe_ctr, .dtr = probe_dtr, .map = probe_map,
  .end_io = probe_end_io,
};

static const struct ndm_target_type *const test_targets[] = {
  &probe_target, NULL,
};

GArray *
h_probe_endios (void)
{
  return probe_endios;
}

void
h_probe_requeue (unsigned n)
{
  g_mutex_lock (&probe_lock);
  probe_requeues = n;
  g_mutex_unlock (&probe_lock);
}

/* ---- md --------------------------------------------------------------------- */

struct ndm_md *
h_md_new (const char *table, struct ndm_config *cfg)
{
  struct ndm_config c;
  struct ndm_md *md;
  GError *err = NULL;

  if (cfg == NULL) {
    ndm_config_init (&c);
    cfg = &c;
  }
  cfg->device_class = &fake_device_class;
  cfg->extra_targets = test_targets;
  g_mutex_lock (&probe_lock);
  if (probe_endios == NULL)
    probe_endios = g_array_new (FALSE, FALSE, sizeof (struct h_endio));
  g_array_set_size (probe_endios, 0);
  probe_requeues = 0;
  g_mutex_unlock (&probe_lock);

  md = ndm_md_new (cfg);
  if (ndm_md_load (md, table, &err) == -1)
    g_error ("table '%s': %s", table, err->message);
  ndm_md_start (md);
  return md;
}

void
h_md_free (struct ndm_md *md)
{
  ndm_md_free (md);
  fake_reset ();
}

struct ndm_md *
h_md_new_empty (const struct ndm_target_type *const *extra)
{
  struct ndm_config c;

  ndm_config_init (&c);
  c.device_class = &fake_device_class;
  c.extra_targets = extra != NULL ? extra : test_targets;
  return ndm_md_new (&c);
}

/* Load table on a device with no table: NULL if it fails with a message
 * containing want, else why not (the caller frees it).
 */
static char *
table_error_mismatch (const char *table, const char *want)
{
  struct ndm_md *md = h_md_new_empty (NULL);
  GError *err = NULL;
  char *why = NULL;

  if (ndm_md_load (md, table, &err) == 0)
    why = g_strdup_printf ("table '%s' loaded: expected an error "
                           "containing '%s'", table, want);
  else if (err == NULL)
    why = g_strdup_printf ("table '%s' failed without an error", table);
  else if (strstr (err->message, want) == NULL)
    why = g_strdup_printf ("table '%s': error '%s' does not contain '%s'",
                           table, err->message, want);
  g_clear_error (&err);
  ndm_md_free (md);
  fake_reset ();
  return why;
}

void
h_expect_table_error (const char *table, const char *want)
{
  g_autofree char *why = table_error_mismatch (table, want);

  if (why != NULL)
    g_error ("%s", why);
}

/* A failing row marks its case failed and the run goes on to the next
 * row: g_test_fail, not an abort.
 */
static void
table_error_case (gconstpointer data)
{
  const struct h_table_error *row = data;
  g_autofree char *why = table_error_mismatch (row->table, row->want);

  if (why != NULL)
    g_test_fail_printf ("%s", why);
}

void
h_add_cases (const char *prefix, const void *rows, size_t n, size_t size,
             GTestDataFunc fn)
{
  size_t i;

  for (i = 0; i < n; i++) {
    const void *row = (const char *) rows + i * size;
    g_autofree char *path =
      g_strdup_printf ("%s/%s", prefix, *(const char *const *) row);

    g_test_add_data_func (path, row, fn);
  }
}

void
h_add_table_errors (const char *prefix, const struct h_table_error *rows,
                    size_t n)
{
  h_add_cases (prefix, rows, n, sizeof *rows, table_error_case);
}

/* Run line as a control command (split on blanks); -1 with err set if it
 * fails.
 */
static int
run_command (struct ndm_md *md, const char *line, GError **err)
{
  g_auto (GStrv) argv = g_strsplit (line, " ", -1);
  g_autoptr (GString) out = g_string_new (NULL);

  return ndm_md_command (md, g_strv_length (argv), argv, out, err);
}

char *
h_command (struct ndm_md *md, const char *line, GError **err)
{
  g_auto (GStrv) argv = g_strsplit (line, " ", -1);
  GString *out = g_string_new (NULL);

  if (ndm_md_command (md, g_strv_length (argv), argv, out, err) == -1) {
    g_string_free (out, TRUE);
    return NULL;
  }
  return g_strchomp (g_string_free (out, FALSE));
}

char *
h_command_ok (struct ndm_md *md, const char *line)
{
  GError *err = NULL;
  char *out = h_command (md, line, &err);

  if (out == NULL)
    g_error ("'%s': %s", line, err->message);
  return out;
}

JsonNode *
h_json_at (const char *json, const char *path)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (JsonPath) jp = json_path_new ();
  g_autoptr (JsonNode) found = NULL;
  GError *err = NULL;
  JsonArray *a;

  if (!json_parser_load_from_data (parser, json, -1, &err))
    g_error ("not JSON (%s): %s", err->message, json);
  if (!json_path_compile (jp, path, &err))
    g_error ("JSONPath '%s': %s", path, err->message);
  found = json_path_match (jp, json_parser_get_root (parser));
  a = json_node_get_array (found);
  if (json_array_get_length (a) != 1)
    g_error ("JSONPath '%s' matches %u values in %s", path,
             json_array_get_length (a), json);
  return json_node_copy (json_array_get_element (a, 0));
}

char *
h_json_text (const char *json, const char *path)
{
  g_autoptr (JsonNode) n = h_json_at (json, path);

  return json_to_string (n, false);
}

/* The value at path, which must be of type (the caller frees it). */
static JsonNode *
json_typed_at (const char *json, const char *path, GType type)
{
  JsonNode *n = h_json_at (json, path);

  if (json_node_get_value_type (n) != type)
    g_error ("'%s' is not a %s in %s", path, g_type_name (type), json);
  return n;
}

char *
h_json_str (const char *json, const char *path)
{
  g_autoptr (JsonNode) n = json_typed_at (json, path, G_TYPE_STRING);

  return g_strdup (json_node_get_string (n));
}

gint64
h_json_int (const char *json, const char *path)
{
  g_autoptr (JsonNode) n = json_typed_at (json, path, G_TYPE_INT64);

  return json_node_get_int (n);
}

bool
h_json_bool (const char *json, const char *path)
{
  g_autoptr (JsonNode) n = json_typed_at (json, path, G_TYPE_BOOLEAN);

  return json_node_get_boolean (n);
}

static bool
node_has (JsonNode *got, JsonNode *want)
{
  JsonObject *g, *w;
  GList *members, *m;
  bool ok = true;

  if (!JSON_NODE_HOLDS_OBJECT (want) || !JSON_NODE_HOLDS_OBJECT (got))
    return json_node_equal (got, want);
  g = json_node_get_object (got);
  w = json_node_get_object (want);
  members = json_object_get_members (w);
  for (m = members; m != NULL && ok; m = m->next)
    ok = json_object_has_member (g, m->data) &&
      node_has (json_object_get_member (g, m->data),
                json_object_get_member (w, m->data));
  g_list_free (members);
  return ok;
}

bool
h_json_has (const char *json, const char *path, const char *want)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (JsonNode) got = h_json_at (json, path);
  GError *err = NULL;

  if (!json_parser_load_from_data (parser, want, -1, &err))
    g_error ("expected value is not JSON (%s): %s", err->message, want);
  return node_has (got, json_parser_get_root (parser));
}

void
h_json_expect (const char *json, const char *path, const char *want)
{
  if (!h_json_has (json, path, want))
    g_error ("%s does not have %s in %s", path, want, json);
}

static void
command_error_case (gconstpointer data)
{
  const struct h_command_error *row = data;
  g_auto (GStrv) lines = g_strsplit (row->commands, "\n", -1);
  guint n = g_strv_length (lines), i;
  const char *last = n > 0 ? lines[n - 1] : "";
  struct ndm_md *md = h_md_new (row->table, NULL);
  GError *err = NULL;

  for (i = 0; i + 1 < n; i++)
    if (run_command (md, lines[i], &err) == -1) {
      g_test_fail_printf ("'%s': %s", lines[i], err->message);
      goto out;
    }
  if (run_command (md, last, &err) == 0)
    g_test_fail_printf ("'%s' succeeded: expected an error containing "
                        "'%s'", last, row->want);
  else if (err == NULL)
    g_test_fail_printf ("'%s' failed without an error", last);
  else if (strstr (err->message, row->want) == NULL)
    g_test_fail_printf ("'%s': error '%s' does not contain '%s'", last,
                        err->message, row->want);
 out:
  g_clear_error (&err);
  h_md_free (md);
}

void
h_add_command_errors (const char *prefix, const struct h_command_error *rows,
                      size_t n)
{
  h_add_cases (prefix, rows, n, sizeof *rows, command_error_case);
}

/* ---- requests on a helper thread ------------------------------------------- */

struct h_io {
  struct ndm_md *md;
  enum ndm_op op;
  void *buf;
  uint64_t count, offset;
  uint32_t flags;
  GThread *thread;
  gint done;
  int result;
};

static gpointer
io_thread (gpointer data)
{
  struct h_io *io = data;
  int err = 0;

  if (ndm_md_io (io->md, io->op, io->buf, io->count, io->offset, io->flags,
                 &err) == 0)
    err = 0;
  io->result = err;
  g_atomic_int_set (&io->done, 1);
  return NULL;
}

struct h_io *
h_io_start (struct ndm_md *md, enum ndm_op op, void *buf, uint64_t count,
            uint64_t offset, uint32_t flags)
{
  struct h_io *io = g_new0 (struct h_io, 1);

  io->md = md;
  io->op = op;
  io->buf = buf;
  io->count = count;
  io->offset = offset;
  io->flags = flags;
  io->thread = g_thread_new ("h-io", io_thread, io);
  return io;
}

bool
h_io_done (struct h_io *io)
{
  return g_atomic_int_get (&io->done);
}

int
h_io_wait (struct h_io *io)
{
  int r;

  g_thread_join (io->thread);
  r = io->result;
  g_free (io);
  return r;
}

int
h_io_wait_bounded (struct h_io *io, unsigned seconds)
{
  gint64 deadline = g_get_monotonic_time () + seconds * G_TIME_SPAN_SECOND;

  while (!h_io_done (io)) {
    if (g_get_monotonic_time () > deadline)
      g_error ("the request did not end within %u s", seconds);
    g_usleep (1000);
  }
  return h_io_wait (io);
}

int
h_io (struct ndm_md *md, enum ndm_op op, void *buf, uint64_t count,
      uint64_t offset, uint32_t flags)
{
  int err = 0;

  return ndm_md_io (md, op, buf, count, offset, flags, &err) == 0 ? 0 : err;
}

void
h_fill (void *buf, size_t len, uint64_t seed)
{
  uint8_t *p = buf;
  size_t i;

  for (i = 0; i < len; i++)
    p[i] = (uint8_t) ((i * 2654435761u) >> 13) ^ (uint8_t) (seed * 131 + i / 512);
}

struct ndm_target *
h_first_target (struct ndm_md *md)
{
  struct ndm_table *t = ndm_md_get_table (md);
  struct ndm_target *ti = &t->targets[0];

  ndm_table_unref (t);          /* md's live reference keeps it */
  return ti;
}

struct ndm_device *
h_device_of (struct ndm_md *md, const char *name)
{
  struct ndm_table *t = ndm_md_get_table (md);
  struct ndm_device *dev = NULL;
  unsigned i;

  for (i = 0; i < t->devices->len; i++) {
    struct ndm_device *d = t->devices->pdata[i];

    if (g_str_has_prefix (d->uri, "fake://") &&
        strncmp (d->uri + 7, name, strlen (name)) == 0 &&
        (d->uri[7 + strlen (name)] == '?' ||
         d->uri[7 + strlen (name)] == '\0'))
      dev = d;
  }
  ndm_table_unref (t);
  g_assert_nonnull (dev);
  return dev;
}

uint64_t
h_bounce_used (struct ndm_md *md)
{
  return __atomic_load_n (&md->bounce.used, __ATOMIC_SEQ_CST);
}
