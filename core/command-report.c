/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the control verbs that report on the device for scripts, as
 * dmsetup's do: `info --columns` (dmsetup info -c, its fields, -o and
 * --noheadings), `deps` (dmsetup deps, a device being a URI here, with
 * its state) and `targets` (dmsetup targets: the built-in registry).
 *
 * Thread model: any control thread; they only read the device's state.
 */
#include <string.h>

#include "core.h"
#include "command.h"
#include "json.h"

/* ---- info --columns ------------------------------------------------------ */

enum info_field_id {
  FIELD_NAME, FIELD_ATTR, FIELD_OPEN, FIELD_SEGMENTS, FIELD_EVENTS,
};

/* dmsetup's fields that exist here, under dmsetup's names and headings,
 * in dmsetup's default order.  A number is right-aligned, and a number
 * in JSON.
 */
static const struct info_field {
  const char *name;
  const char *heading;
  bool number;
} info_fields[] = {
  [FIELD_NAME] = { "name", "Name", false },
  [FIELD_ATTR] = { "attr", "Stat", false },
  [FIELD_OPEN] = { "open", "Open", true },
  [FIELD_SEGMENTS] = { "segments", "Targ", true },
  [FIELD_EVENTS] = { "events", "Event", true },
};

/* The row's values, read once so that its fields agree. */
static void
info_row (struct ndm_md *md, char *values[G_N_ELEMENTS (info_fields)])
{
  struct ndm_table *t = ndm_md_get_table (md);
  bool inactive;

  ndm_mutex_lock (&md->state_lock);
  inactive = md->inactive != NULL;
  ndm_mutex_unlock (&md->state_lock);

  values[FIELD_NAME] = g_strdup (ndm_cmd_device_name (md));
  /* dmsetup's attr: (L)ive table, (I)nactive table, (s)uspended, (r)ead-
   * only or (w)ritable; nbd-dm's device is writable when its table is.
   */
  values[FIELD_ATTR] =
    g_strdup_printf ("L%c%c%c", inactive ? 'I' : '-',
                     g_atomic_int_get (&md->suspended) ? 's' : '-',
                     t->caps.write ? 'w' : 'r');
  values[FIELD_OPEN] = g_strdup_printf ("%d",
                                        g_atomic_int_get (&md->open_count));
  values[FIELD_SEGMENTS] = g_strdup_printf ("%u", t->nr_targets);
  values[FIELD_EVENTS] = g_strdup_printf ("%u",
                                          g_atomic_int_get (&md->event_nr));
  ndm_table_unref (t);
}

static int
info_field_lookup (const char *name)
{
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (info_fields); i++)
    if (strcmp (info_fields[i].name, name) == 0)
      return i;
  return -1;
}

/* --options: "f1,f2", or "+f1,f2" for the default fields and those.
 * The field ids go to ids; on error *err names the bad word.
 */
static int
parse_fields (const char *spec, GArray *ids, GError **err)
{
  g_auto (GStrv) words = NULL;
  size_t i;

  if (spec == NULL || spec[0] == '+')
    for (i = 0; i < G_N_ELEMENTS (info_fields); i++)
      g_array_append_val (ids, i);
  if (spec == NULL)
    return 0;
  words = g_strsplit (spec + (spec[0] == '+'), ",", -1);
  for (i = 0; words[i] != NULL; i++) {
    int id = info_field_lookup (g_strstrip (words[i]));

    if (id < 0) {
      GString *known = g_string_new (NULL);
      size_t k;

      for (k = 0; k < G_N_ELEMENTS (info_fields); k++)
        g_string_append_printf (known, "%s%s", k ? ", " : "",
                                info_fields[k].name);
      g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                   "info: unknown field '%s' in --options '%s': expected "
                   "one of %s", words[i], spec, known->str);
      g_string_free (known, TRUE);
      return -1;
    }
    g_array_append_val (ids, id);
  }
  return 0;
}

/* Text: a heading (unless --noheadings) and the row; columns aligned on
 * a blank, as dmsetup's report, or joined by --separator unaligned.
 */
static void
info_columns_text (struct cmd *c, GArray *ids, char **values, GString *out)
{
  const char *sep = c->separator != NULL ? c->separator : " ";
  bool align = c->separator == NULL;
  int line;
  guint i;

  for (line = c->noheadings ? 1 : 0; line < 2; line++) {
    for (i = 0; i < ids->len; i++) {
      const struct info_field *f = &info_fields[g_array_index (ids, int, i)];
      const char *value = values[g_array_index (ids, int, i)];
      const char *s = line == 0 ? f->heading : value;
      int width = align ? MAX (strlen (f->heading), strlen (value)) : 0;

      if (i > 0)
        g_string_append (out, sep);
      /* The last column is not padded: no trailing blanks. */
      if (f->number)
        g_string_append_printf (out, "%*s", width, s);
      else if (i + 1 < ids->len)
        g_string_append_printf (out, "%-*s", width, s);
      else
        g_string_append (out, s);
    }
    g_string_append_c (out, '\n');
  }
}

int
ndm_cmd_info_columns (struct cmd *c, GString *out, GError **err)
{
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int));
  char *values[G_N_ELEMENTS (info_fields)];
  size_t i;

  if (parse_fields (c->fields, ids, err) == -1)
    return -1;
  info_row (c->md, values);
  if (!c->json)
    info_columns_text (c, ids, values, out);
  else {
    g_autoptr (JsonBuilder) b = ndm_json_payload_new ();

    json_builder_set_member_name (b, "rows");
    json_builder_begin_array (b);
    json_builder_begin_object (b);
    for (i = 0; i < ids->len; i++) {
      int id = g_array_index (ids, int, i);

      if (info_fields[id].number)
        ndm_json_member_int (b, info_fields[id].name,
                             g_ascii_strtoll (values[id], NULL, 10));
      else
        ndm_json_member_string (b, info_fields[id].name, values[id]);
    }
    json_builder_end_object (b);
    json_builder_end_array (b);
    ndm_json_payload_end (b, out);
  }
  for (i = 0; i < G_N_ELEMENTS (info_fields); i++)
    g_free (values[i]);
  return 0;
}

/* ---- deps ------------------------------------------------------------------ */

/* dmsetup's line, with URIs for (major, minor), then a line per device
 * with the state of its connections:
 *
 *   2 dependencies  : (nbd+unix:///?socket=/a.sock) (nbd+unix:///?...)
 *     nbd+unix:///?socket=/a.sock up
 *
 * or {"devices":[...]}, each device's object as status and stats give it.
 */
int
ndm_cmd_deps (struct cmd *c, GString *out, GError **err)
{
  struct ndm_table *t = ndm_md_get_table (c->md);
  g_autoptr (JsonBuilder) b = NULL;
  guint i;

  if (c->json) {
    b = ndm_json_payload_new ();
    json_builder_set_member_name (b, "devices");
    json_builder_begin_array (b);
    for (i = 0; i < t->devices->len; i++)
      ndm_cmd_device_json (t->devices->pdata[i], NULL, b);
    json_builder_end_array (b);
    ndm_json_payload_end (b, out);
    ndm_table_unref (t);
    return 0;
  }
  g_string_append_printf (out, "%u dependencies\t:", t->devices->len);
  for (i = 0; i < t->devices->len; i++)
    g_string_append_printf (out, " (%s)",
                            ((struct ndm_device *) t->devices->pdata[i])->uri);
  g_string_append_c (out, '\n');
  for (i = 0; i < t->devices->len; i++) {
    struct ndm_device *dev = t->devices->pdata[i];
    struct ndm_device_status st;

    ndm_cmd_device_status (dev, &st);
    g_string_append_printf (out, "  %s ", dev->uri);
    ndm_cmd_device_status_format (&st, out);
    g_string_append_c (out, '\n');
    g_free (st.reason);
  }
  ndm_table_unref (t);
  return 0;
}

/* ---- targets --------------------------------------------------------------- */

/* dmsetup's "striped          v1.6.0", one line per built-in type, or
 * {"targets":[{"name":"striped","version":[1,6,0]},...]}.
 */
int
ndm_cmd_targets (struct cmd *c, GString *out, GError **err)
{
  g_autoptr (JsonBuilder) b = NULL;
  const struct ndm_target_type *tt;
  size_t i, k;

  if (c->json) {
    b = ndm_json_payload_new ();
    json_builder_set_member_name (b, "targets");
    json_builder_begin_array (b);
  }
  for (i = 0; (tt = ndm_target_type_nth (i)) != NULL; i++) {
    if (!c->json) {
      g_string_append_printf (out, "%-16s v%u.%u.%u\n", tt->name,
                              tt->version[0], tt->version[1],
                              tt->version[2]);
      continue;
    }
    json_builder_begin_object (b);
    ndm_json_member_string (b, "name", tt->name);
    json_builder_set_member_name (b, "version");
    json_builder_begin_array (b);
    for (k = 0; k < G_N_ELEMENTS (tt->version); k++)
      json_builder_add_int_value (b, tt->version[k]);
    json_builder_end_array (b);
    json_builder_end_object (b);
  }
  if (c->json) {
    json_builder_end_array (b);
    ndm_json_payload_end (b, out);
  }
  return 0;
}
