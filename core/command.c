/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the control commands — dmsetup's verbs for one mapped device,
 * as text (dmsetup's strings where dmsetup has the verb) or JSON (the
 * same facts).  The socket server (core/control.c) parses lines into argv
 * and calls ndm_md_command_full; the unit tests call it directly.
 *
 * Thread model: any thread, any number at once.  Verbs that change the
 * device's state serialise in core/md.c; the others only read it.
 */
#include <errno.h>
#include <string.h>

#include "nbd-dm/control.h"
#include "core.h"
#include "command.h"
#include "json.h"
#include "log.h"
#include "stats.h"

typedef int (*verb_fn) (struct cmd *c, GString *out, GError **err);

const char *
ndm_cmd_device_name (struct ndm_md *md)
{
  return md->cfg.name[0] ? md->cfg.name : "nbd-dm";
}

/* ---- info, table, status ---------------------------------------------------- */

static int
verb_info (struct cmd *c, GString *out, GError **err)
{
  struct ndm_md *md = c->md;
  struct ndm_table *t;
  const char *name = ndm_cmd_device_name (md);
  bool suspended = g_atomic_int_get (&md->suspended);
  bool inactive;

  if (c->columns)
    return ndm_cmd_info_columns (c, out, err);
  if (c->fields != NULL || c->noheadings || c->separator != NULL) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "info: --options, --noheadings and --separator need "
                 "--columns");
    return -1;
  }
  t = ndm_md_get_table (md);

  ndm_mutex_lock (&md->state_lock);
  inactive = md->inactive != NULL;
  ndm_mutex_unlock (&md->state_lock);

  if (c->json) {
    g_autoptr (JsonBuilder) b = ndm_json_payload_new ();

    ndm_json_member_string (b, "name", name);
    ndm_json_member_string (b, "state", suspended ? "suspended" : "active");
    ndm_json_member_bool (b, "live_table", true);
    ndm_json_member_bool (b, "inactive_table", inactive);
    ndm_json_member_int (b, "open_count", g_atomic_int_get (&md->open_count));
    ndm_json_member_uint (b, "event_nr",
                          (unsigned) g_atomic_int_get (&md->event_nr));
    ndm_json_member_uint (b, "targets", t->nr_targets);
    ndm_json_member_uint (b, "size_sectors", t->size >> NDM_SECTOR_SHIFT);
    ndm_json_member_uint (b, "size_bytes", t->size);
    ndm_json_payload_end (b, out);
  }
  else {
    /* dmsetup info's labels and layout, for the fields that exist here. */
    g_string_append_printf (out, "%-19s%s\n", "Name:", name);
    g_string_append_printf (out, "%-19s%s\n", "State:",
                            suspended ? "SUSPENDED" : "ACTIVE");
    g_string_append_printf (out, "%-19s%s\n", "Tables present:",
                            inactive ? "LIVE & INACTIVE" : "LIVE");
    g_string_append_printf (out, "%-19s%d\n", "Open count:",
                            g_atomic_int_get (&md->open_count));
    g_string_append_printf (out, "%-19s%u\n", "Event number:",
                            g_atomic_int_get (&md->event_nr));
    g_string_append_printf (out, "%-19s%u\n", "Number of targets:",
                            t->nr_targets);
  }
  ndm_table_unref (t);
  return 0;
}

struct dev_list {
  GPtrArray *devs;
};

static int
collect_device (struct ndm_target *ti, struct ndm_device *dev,
                uint64_t start, uint64_t len, void *data)
{
  struct dev_list *l = data;
  unsigned i;

  for (i = 0; i < l->devs->len; i++)
    if (l->devs->pdata[i] == dev)
      return 0;
  g_ptr_array_add (l->devs, dev);
  return 0;
}

static const char *const device_state_names[] = {
  [NDM_DEVICE_UP] = "up",
  [NDM_DEVICE_DEGRADED] = "degraded",
  [NDM_DEVICE_DOWN] = "down",
};

/* How dev stands; st->reason is the caller's to free. */
void
ndm_cmd_device_status (struct ndm_device *dev, struct ndm_device_status *st)
{
  memset (st, 0, sizeof *st);
  st->state = NDM_DEVICE_UP;
  if (dev->ops->status != NULL)
    dev->ops->status (dev, st);
}

/* "up", "degraded 1/2" or "down (reason)"; then ", N writes quarantined"
 * while cut connections may still land some.
 */
void
ndm_cmd_device_status_format (const struct ndm_device_status *st,
                              GString *out)
{
  g_string_append (out, device_state_names[st->state]);
  if (st->state == NDM_DEVICE_DEGRADED)
    g_string_append_printf (out, " %u/%u", st->conns_up, st->conns);
  else if (st->state == NDM_DEVICE_DOWN)
    g_string_append_printf (out, " (%s)", st->reason ? st->reason : "?");
  if (st->quarantined > 0)
    g_string_append_printf (out, ", %u write%s quarantined", st->quarantined,
                            st->quarantined == 1 ? "" : "s");
}

/* A device's object: {"uri":..,"state":"up"|"degraded"|"down","reason":
 * ..|null,"connections":N,"connections_up":N,"quarantined_writes":N}, and
 * "io":{..} with the counters io if not NULL.
 */
void
ndm_cmd_device_json (struct ndm_device *dev, const struct ndm_io_stats *io,
                     JsonBuilder *b)
{
  struct ndm_device_status st;

  ndm_cmd_device_status (dev, &st);
  json_builder_begin_object (b);
  ndm_json_member_string (b, "uri", dev->uri);
  ndm_json_member_string (b, "state", device_state_names[st.state]);
  ndm_json_member_string (b, "reason", st.reason);
  ndm_json_member_uint (b, "connections", st.conns);
  ndm_json_member_uint (b, "connections_up", st.conns_up);
  ndm_json_member_uint (b, "quarantined_writes", st.quarantined);
  if (io != NULL) {
    json_builder_set_member_name (b, "io");
    ndm_stats_json (io, b);
  }
  json_builder_end_object (b);
  g_free (st.reason);
}

/* Open a target's object with the members every verb gives it; the
 * caller adds its own and ends it.
 */
static void
target_json_begin (struct ndm_target *ti, JsonBuilder *b)
{
  json_builder_begin_object (b);
  ndm_json_member_uint (b, "start", ti->begin);
  ndm_json_member_uint (b, "length", ti->len);
  ndm_json_member_string (b, "type", ti->type->name);
}

/* The table --inactive names: the one reload loaded and resume has not
 * made live, with a reference; NULL if there is none.
 */
static struct ndm_table *
get_inactive_table (struct ndm_md *md)
{
  struct ndm_table *t;

  ndm_mutex_lock (&md->state_lock);
  t = md->inactive;
  if (t != NULL)
    ndm_table_ref (t);
  ndm_mutex_unlock (&md->state_lock);
  return t;
}

/* --target TYPE: the type, which must be one the server knows (dmsetup
 * only filters, but a typo here would look like "no such target").
 */
static int
target_filter (struct cmd *c, const struct ndm_target_type **only,
               GError **err)
{
  *only = NULL;
  if (c->target_type == NULL)
    return 0;
  *only = ndm_target_type_lookup (c->target_type);
  if (*only == NULL) {
    g_autofree char *known = ndm_target_type_names ();

    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "%s: unknown target type '%s': expected one of %s",
                 c->v->name, c->target_type, known);
    return -1;
  }
  return 0;
}

/* table and status: dmsetup's lines, or per target JSON: the line's
 * words as an array ("args" or "status"), of the live table (or with
 * --inactive the loaded one: none prints nothing, as dmsetup), its
 * targets of one type with --target.  Status JSON adds the target's
 * "detail" (null if it has none) and its devices with their state.
 */
static int
table_or_status (struct cmd *c, GString *out, enum ndm_status_type type,
                 GError **err)
{
  const struct ndm_target_type *only;
  struct ndm_table *t;
  g_autoptr (JsonBuilder) b = NULL;
  unsigned i, j;

  if (target_filter (c, &only, err) == -1)
    return -1;
  t = c->inactive ? get_inactive_table (c->md) : ndm_md_get_table (c->md);
  if (!c->json) {
    for (i = 0; t != NULL && i < t->nr_targets; i++)
      if (only == NULL || t->targets[i].type == only)
        ndm_target_format (&t->targets[i], type, out);
    if (t != NULL)
      ndm_table_unref (t);
    return 0;
  }
  b = ndm_json_payload_new ();
  json_builder_set_member_name (b, "targets");
  json_builder_begin_array (b);
  for (i = 0; t != NULL && i < t->nr_targets; i++) {
    struct ndm_target *ti = &t->targets[i];
    g_autoptr (GString) s = NULL;

    if (only != NULL && ti->type != only)
      continue;
    s = g_string_new (NULL);

    if (ti->type->status != NULL)
      ti->type->status (ti, type, s);
    target_json_begin (ti, b);
    json_builder_set_member_name (b, type == NDM_STATUS_TABLE ? "args"
                                  : "status");
    ndm_json_add_words (b, s->str);
    if (type == NDM_STATUS_INFO) {
      struct dev_list l = { .devs = g_ptr_array_new () };

      json_builder_set_member_name (b, "detail");
      if (ti->type->status_json != NULL)
        ti->type->status_json (ti, b);
      else
        json_builder_add_null_value (b);
      if (ti->type->iterate_devices != NULL)
        ti->type->iterate_devices (ti, collect_device, &l);
      json_builder_set_member_name (b, "devices");
      json_builder_begin_array (b);
      for (j = 0; j < l.devs->len; j++)
        ndm_cmd_device_json (l.devs->pdata[j], NULL, b);
      json_builder_end_array (b);
      g_ptr_array_unref (l.devs);
    }
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  ndm_json_payload_end (b, out);
  if (t != NULL)
    ndm_table_unref (t);
  return 0;
}

static int
verb_table (struct cmd *c, GString *out, GError **err)
{
  return table_or_status (c, out, NDM_STATUS_TABLE, err);
}

static int
verb_status (struct cmd *c, GString *out, GError **err)
{
  return table_or_status (c, out, NDM_STATUS_INFO, err);
}

/* ---- stats ---------------------------------------------------------------------- */

/* The counters to show: with --clear, taken (and zeroed) into *snap. */
static const struct ndm_io_stats *
stats_view (struct cmd *c, struct ndm_io_stats *s, struct ndm_io_stats *snap)
{
  if (!c->clear)
    return s;
  ndm_stats_take (s, snap);
  return snap;
}

static int
verb_stats (struct cmd *c, GString *out, GError **err)
{
  struct ndm_table *t;
  struct ndm_io_stats snap;
  g_autoptr (JsonBuilder) b = NULL;
  unsigned i;

  if (c->format != NULL && strcmp (c->format, "openmetrics") == 0) {
    if (c->json || c->clear) {
      g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                   "stats: --format=openmetrics takes neither --json nor "
                   "--clear (its counters only grow, as Prometheus "
                   "expects)");
      return -1;
    }
    t = ndm_md_get_table (c->md);
    ndm_table_openmetrics (t, out);
    ndm_table_unref (t);
    return 0;
  }
  t = ndm_md_get_table (c->md);
  if (c->json) {
    b = ndm_json_payload_new ();
    json_builder_set_member_name (b, "targets");
    json_builder_begin_array (b);
  }
  for (i = 0; i < t->nr_targets; i++) {
    struct ndm_target *ti = &t->targets[i];

    if (c->json) {
      target_json_begin (ti, b);
      json_builder_set_member_name (b, "io");
      ndm_stats_json (stats_view (c, ti->stats, &snap), b);
      if (ti->type->stats != NULL) {
        json_builder_set_member_name (b, ti->type->name);
        ti->type->stats (ti, b, NULL);
      }
      json_builder_end_object (b);
    }
    else {
      g_string_append_printf (out, "target %" PRIu64 " %" PRIu64 " %s\n",
                              ti->begin, ti->len, ti->type->name);
      ndm_stats_format (stats_view (c, ti->stats, &snap), "  ", out);
      if (ti->type->stats != NULL) {
        g_string_append_printf (out, "  %s: ", ti->type->name);
        ti->type->stats (ti, NULL, out);
        g_string_append_c (out, '\n');
      }
    }
  }
  if (c->json) {
    json_builder_end_array (b);
    json_builder_set_member_name (b, "devices");
    json_builder_begin_array (b);
  }
  for (i = 0; i < t->devices->len; i++) {
    struct ndm_device *dev = t->devices->pdata[i];

    if (c->json)
      ndm_cmd_device_json (dev, stats_view (c, dev->stats, &snap), b);
    else {
      g_autoptr (GString) st = g_string_new (NULL);
      struct ndm_device_status ds;

      ndm_cmd_device_status (dev, &ds);
      ndm_cmd_device_status_format (&ds, st);
      g_free (ds.reason);
      g_string_append_printf (out, "device %s (%s)\n", dev->uri, st->str);
      ndm_stats_format (stats_view (c, dev->stats, &snap), "  ", out);
    }
  }
  if (c->json) {
    json_builder_end_array (b);
    ndm_json_payload_end (b, out);
  }
  ndm_table_unref (t);
  return 0;
}

/* ---- message ----------------------------------------------------------------------- */

struct find_device {
  const char *uri;
  struct ndm_device *dev;
};

static int
find_device (struct ndm_target *ti, struct ndm_device *dev, uint64_t start,
             uint64_t len, void *data)
{
  struct find_device *f = data;

  if (strcmp (dev->uri, f->uri) == 0)
    f->dev = dev;
  return 0;
}

/* message <sector> device_dead <device>: a message of the core, for any
 * target with devices.  The operator knows the device's server is gone
 * (its process killed, its machine off): what its cut connections had
 * sent can never land, so the writes they quarantine (R10) are released.
 */
static int
message_device_dead (struct ndm_target *ti, int argc, char **argv,
                     GError **err)
{
  struct find_device f = { .uri = argc == 1 ? argv[0] : NULL };

  if (argc != 1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "message: device_dead: expected one argument, the "
                 "device, got %d", argc);
    return -1;
  }
  if (ti->type->iterate_devices != NULL)
    ti->type->iterate_devices (ti, find_device, &f);
  if (f.dev == NULL) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "message: device_dead: no device '%s' in the %s target at "
                 "sector %" PRIu64, argv[0], ti->type->name, ti->begin);
    return -1;
  }
  if (f.dev->ops->declare_dead == NULL) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "message: device_dead: %s devices cannot be declared dead",
                 f.dev->ops->name);
    return -1;
  }
  ndm_log_error ("device %s: declared dead by the operator", f.dev->uri);
  f.dev->ops->declare_dead (f.dev);
  return 0;
}

static int
verb_message (struct cmd *c, GString *out, GError **err)
{
  struct ndm_table *t;
  struct ndm_target *ti;
  GError *e = NULL;
  uint64_t sector = c->number;
  int r;

  t = ndm_md_get_table (c->md);
  if (sector >= t->size >> NDM_SECTOR_SHIFT) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "message: sector %" PRIu64 " is past the end of the device "
                 "(%" PRIu64 " sectors)", sector,
                 t->size >> NDM_SECTOR_SHIFT);
    ndm_table_unref (t);
    return -1;
  }
  ti = ndm_table_find_target (t, sector << NDM_SECTOR_SHIFT);
  if (!g_ascii_strcasecmp (c->argv[1], "device_dead")) {
    r = message_device_dead (ti, c->argc - 2, c->argv + 2, err);
    ndm_table_unref (t);
    return r;
  }
  if (ti->type->messages == NULL) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "message: the %s target at sector %" PRIu64 " does not "
                 "support messages", ti->type->name, ti->begin);
    ndm_table_unref (t);
    return -1;
  }
  {
    g_autoptr (GString) res = g_string_new (NULL);

    r = ndm_target_message_dispatch (ti, ti->type->messages, c->argc - 1,
                                     c->argv + 1, res, &e);
    if (r == -1) {
      g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE, "message: %s: %s",
                   ti->type->name, e->message);
      g_error_free (e);
    }
    else if (c->json) {
      /* The target's answer, as dmsetup prints it, in one string. */
      g_autoptr (JsonBuilder) b = ndm_json_payload_new ();

      while (res->len > 0 && res->str[res->len - 1] == '\n')
        g_string_truncate (res, res->len - 1);
      ndm_json_member_string (b, "result", res->str);
      ndm_json_payload_end (b, out);
    }
    else if (res->len > 0) {
      g_string_append_len (out, res->str, res->len);
      if (res->str[res->len - 1] != '\n')
        g_string_append_c (out, '\n');
    }
  }
  ndm_table_unref (t);
  return r;
}

/* ---- suspend, reload, resume, clear, wait ------------------------------------ */

static int
verb_suspend (struct cmd *c, GString *out, GError **err)
{
  ndm_log_info ("control: suspend%s", c->noflush ? " --noflush" : "");
  return ndm_md_suspend (c->md, c->noflush, err);
}

static int
verb_reload (struct cmd *c, GString *out, GError **err)
{
  if (ndm_md_reload (c->md, c->argv[0], c->allow_resize, err) == -1) {
    g_prefix_error (err, "reload: ");
    return -1;
  }
  ndm_log_info ("control: reload: a new table is loaded");
  return 0;
}

static int
verb_resume (struct cmd *c, GString *out, GError **err)
{
  ndm_log_info ("control: resume");
  return ndm_md_resume (c->md, err);
}

static int
verb_clear (struct cmd *c, GString *out, GError **err)
{
  return ndm_md_clear (c->md, err);
}

static int
verb_wait (struct cmd *c, GString *out, GError **err)
{
  unsigned after = g_atomic_int_get (&c->md->event_nr), nr;

  if (c->argc == 1) {
    if (c->number > G_MAXUINT) {
      /* dm's event numbers are 32 bits: a bigger one would never come. */
      g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                   "wait: event number '%s' is more than %u", c->argv[0],
                   G_MAXUINT);
      return -1;
    }
    after = c->number;
  }
  /* In slices, so a client that hung up or a server that stops is seen. */
  for (;;) {
    nr = ndm_md_wait_event (c->md, after, g_get_monotonic_time () +
                            200 * G_TIME_SPAN_MILLISECOND);
    if (nr > after)
      break;
    if (c->cancelled != NULL && c->cancelled (c->cancel_data)) {
      g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE, "wait: cancelled");
      return -1;
    }
  }
  if (c->json) {
    g_autoptr (JsonBuilder) b = ndm_json_payload_new ();

    ndm_json_member_uint (b, "event_nr", nr);
    ndm_json_payload_end (b, out);
  }
  else
    g_string_append_printf (out, "%u\n", nr);
  return 0;
}

static int
verb_version (struct cmd *c, GString *out, GError **err)
{
  if (c->json) {
    g_autoptr (JsonBuilder) b = ndm_json_payload_new ();

    /* "version" is the JSON format's, as in every payload. */
    ndm_json_member_int (b, "protocol", NDM_CONTROL_PROTOCOL);
    ndm_json_member_string (b, "program", "nbd-dm");
    ndm_json_member_string (b, "program_version", NDM_VERSION_STRING);
    ndm_json_payload_end (b, out);
  }
  else
    g_string_append_printf (out, "nbd-dm %s, control protocol %d\n",
                            NDM_VERSION_STRING, NDM_CONTROL_PROTOCOL);
  return 0;
}

static int
verb_help (struct cmd *c, GString *out, GError **err)
{
  const struct ndm_control_verb *v;
  g_autoptr (JsonBuilder) b = NULL;

  if (c->json) {
    b = ndm_json_payload_new ();
    json_builder_set_member_name (b, "verbs");
    json_builder_begin_array (b);
  }
  for (v = ndm_control_verbs; v->name != NULL; v++) {
    g_autofree char *usage = NULL;

    if (v->via != NULL)
      continue;                 /* nbd-dmsetup's, not the server's */
    usage = ndm_control_verb_usage (v, NULL);
    if (!c->json) {
      g_string_append_printf (out, "%s\n", usage);
      continue;
    }
    json_builder_begin_object (b);
    ndm_json_member_string (b, "name", v->name);
    ndm_json_member_string (b, "usage", usage);
    json_builder_end_object (b);
  }
  if (c->json) {
    json_builder_end_array (b);
    ndm_json_payload_end (b, out);
  }
  return 0;
}

/* What runs each verb of the spec (include/nbd-dm/control.h), which has
 * already checked its options and the number of its words.
 */
static const struct handler {
  const char *name;
  verb_fn fn;
} handlers[] = {
  { "info", verb_info },
  { "table", verb_table },
  { "status", verb_status },
  { "stats", verb_stats },
  { "message", verb_message },
  { "suspend", verb_suspend },
  { "reload", verb_reload },
  { "resume", verb_resume },
  { "clear", verb_clear },
  { "wait", verb_wait },
  { "deps", ndm_cmd_deps },
  { "targets", ndm_cmd_targets },
  { "version", verb_version },
  { "help", verb_help },
};

static verb_fn
handler_of (const struct ndm_control_verb *v)
{
  size_t i;

  for (i = 0; v != NULL && i < G_N_ELEMENTS (handlers); i++)
    if (strcmp (handlers[i].name, v->name) == 0)
      return handlers[i].fn;
  return NULL;
}

/* The value of the option in argv[*i] ("--target=TYPE", or the next
 * word), or NULL with *err set.  A flag's word holds no '='.
 */
static const char *
option_value (const struct ndm_control_option *o, int argc, char **argv,
              int *i, GError **err)
{
  const char *eq = strchr (argv[*i], '=');

  if (o->value == NULL && eq == NULL)
    return "";
  if (o->value == NULL)
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "option '%s' takes no value", o->name);
  else if (eq != NULL)
    return eq + 1;
  else if (*i + 1 < argc)
    return argv[++*i];
  else
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "option '%s' needs a value, %s", o->name, o->value);
  return NULL;
}

/* Split options from words; only options the verb takes are accepted. */
static int
parse_options (int argc, char **argv, struct cmd *c, GError **err)
{
  const struct ndm_control_verb *v = c->v;
  int i, n = 0;

  c->argv = g_new0 (char *, argc + 1);
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    const struct ndm_control_option *o;
    g_autofree char *name = NULL;
    const char *value;

    if (strcmp (a, "--") == 0) {
      for (i++; i < argc; i++)
        c->argv[n++] = argv[i];
      break;
    }
    if (strncmp (a, "--", 2) != 0) {
      c->argv[n++] = argv[i];
      continue;
    }
    if (strcmp (a, "--json") == 0) {
      c->json = true;
      continue;
    }
    name = g_strndup (a, strcspn (a, "="));
    o = ndm_control_option_lookup (name);
    if (o == NULL || !(v->options & o->bit)) {
      g_autofree char *usage = ndm_control_verb_usage (v, NULL);

      g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                   "%s: unknown option '%s' (usage: %s)", v->name, name,
                   usage);
      return -1;
    }
    value = option_value (o, argc, argv, &i, err);
    if (value == NULL) {
      g_prefix_error (err, "%s: ", v->name);
      return -1;
    }
    if (o->value != NULL && !ndm_control_option_value_ok (o, value)) {
      g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                   "%s: %s: unknown value '%s' (expected %s)", v->name,
                   name, value, o->values);
      return -1;
    }
    switch (o->bit) {
    case NDM_CONTROL_OPT_CLEAR: c->clear = true; break;
    case NDM_CONTROL_OPT_NOFLUSH: c->noflush = true; break;
    case NDM_CONTROL_OPT_ALLOW_RESIZE: c->allow_resize = true; break;
    case NDM_CONTROL_OPT_FORMAT: c->format = value; break;
    case NDM_CONTROL_OPT_INACTIVE: c->inactive = true; break;
    case NDM_CONTROL_OPT_TARGET: c->target_type = value; break;
    case NDM_CONTROL_OPT_COLUMNS: c->columns = true; break;
    case NDM_CONTROL_OPT_FIELDS: c->fields = value; break;
    case NDM_CONTROL_OPT_NOHEADINGS: c->noheadings = true; break;
    case NDM_CONTROL_OPT_SEPARATOR: c->separator = value; break;
    }
  }
  c->argc = n;
  return 0;
}

/* dmsetup names the device first; here the socket does, so a name is
 * optional, but one that is not this device's must not act on it.
 */
static int
check_device_name (struct cmd *c, GError **err)
{
  const char *mine = ndm_cmd_device_name (c->md);

  if (!ndm_control_verb_names_device (c->v, c->argc, c->argv))
    return 0;
  if (strcmp (c->argv[0], mine) != 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "%s: device '%s' is not served here: this control socket's "
                 "device is '%s' (name=)", c->v->name, c->argv[0], mine);
    return -1;
  }
  c->argv++;
  c->argc--;
  return 0;
}

/* The words against the spec: their count, and the number it says the
 * first one is (parsed into c->number).
 */
static int
check_words (struct cmd *c, GError **err)
{
  const struct ndm_control_verb *v = c->v;
  g_autofree char *why = NULL;
  GError *e = NULL;

  if (check_device_name (c, err) == -1)
    return -1;
  why = ndm_control_verb_check_count (v, c->argc, c->argv);
  if (why != NULL) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE, "%s", why);
    return -1;
  }
  if (v->number != NULL && c->argc > 0 &&
      ndm_parse_u64 (c->argv[0], v->number, &c->number, &e) == -1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE, "%s: %s", v->name,
                 e->message);
    g_error_free (e);
    return -1;
  }
  return 0;
}

int
ndm_md_command_full (struct ndm_md *md, int argc, char **argv, GString *out,
                     bool (*cancelled) (void *), void *cancel_data,
                     GError **err)
{
  struct cmd c = {
    .md = md, .cancelled = cancelled, .cancel_data = cancel_data,
  };
  verb_fn fn;
  int r;

  if (argc < 1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "empty request: expected a verb ('help' lists them)");
    return -1;
  }
  c.v = ndm_control_verb_lookup (argv[0]);
  fn = handler_of (c.v);
  if (fn == NULL) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "unknown command '%s' ('help' lists the commands)", argv[0]);
    return -1;
  }
  if (parse_options (argc, argv, &c, err) == -1)
    r = -1;
  else {
    char **words = c.argv;      /* check_words may step past a name */

    r = check_words (&c, err) == -1 ? -1 : fn (&c, out, err);
    c.argv = words;
  }
  g_free (c.argv);
  return r;
}

int
ndm_md_command (struct ndm_md *md, int argc, char **argv, GString *out,
                GError **err)
{
  return ndm_md_command_full (md, argc, argv, out, NULL, NULL, err);
}
