/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the control verbs' spec (include/nbd-dm/control.h): which verbs
 * there are, their options and their words.  The server (core/command.c)
 * and nbd-dmsetup (tools/, which compiles this file in: it links GLib and
 * nothing of the core) both check against it, and both print their usage
 * from it.  Adding a verb: a row here, its function in command.c's
 * handlers, its section in docs/nbd-dmsetup.pod.
 *
 * Thread model: constant data and pure functions, any thread.
 */
#include <string.h>

#include "nbd-dm/control.h"

const struct ndm_control_option ndm_control_options[] = {
  { "--clear", NDM_CONTROL_OPT_CLEAR },
  { "--noflush", NDM_CONTROL_OPT_NOFLUSH },
  { "--allow-resize", NDM_CONTROL_OPT_ALLOW_RESIZE },
  { "--format", NDM_CONTROL_OPT_FORMAT, .values = "text|openmetrics" },
  { NULL, 0 },
};

const struct ndm_control_verb ndm_control_verbs[] = {
  { .name = "info" },
  { .name = "table" },
  { .name = "status" },
  { .name = "stats", .options = NDM_CONTROL_OPT_CLEAR |
                                NDM_CONTROL_OPT_FORMAT },
  { .name = "message", .min_words = 2, .max_words = G_MAXUINT,
    .words = "<sector> <message> [args...]", .number = "sector" },
  { .name = "suspend", .options = NDM_CONTROL_OPT_NOFLUSH },
  { .name = "reload", .options = NDM_CONTROL_OPT_ALLOW_RESIZE,
    .min_words = 1, .max_words = 1, .words = "<table>",
    .expected = "the table as one word (lines separated by ';')",
    .table_word = true },
  { .name = "resume" },
  { .name = "clear" },
  { .name = "wait", .max_words = 1, .words = "[<event_nr>]",
    .expected = "at most one word, the event number",
    .number = "event number" },
  { .name = "version" },
  { .name = "help" },
  { .name = NULL },
};

/* The row named name of a table whose rows start with their name and
 * end with a NULL one.
 */
static const void *
table_lookup (const void *rows, size_t stride, const char *name)
{
  const char *row;

  for (row = rows; *(const char *const *) row != NULL; row += stride)
    if (strcmp (*(const char *const *) row, name) == 0)
      return row;
  return NULL;
}

const struct ndm_control_verb *
ndm_control_verb_lookup (const char *name)
{
  return table_lookup (ndm_control_verbs, sizeof ndm_control_verbs[0], name);
}

const struct ndm_control_option *
ndm_control_option_lookup (const char *name)
{
  return table_lookup (ndm_control_options, sizeof ndm_control_options[0],
                       name);
}

bool
ndm_control_option_value_ok (const struct ndm_control_option *o,
                             const char *value)
{
  g_auto (GStrv) values = NULL;

  if (o->values == NULL)
    return false;
  values = g_strsplit (o->values, "|", -1);
  return g_strv_contains ((const char *const *) values, value);
}

char *
ndm_control_verb_usage (const struct ndm_control_verb *v, const char *words)
{
  GString *s = g_string_new (v->name);
  const struct ndm_control_option *o;

  for (o = ndm_control_options; o->name != NULL; o++)
    if ((v->options & o->bit) && o->values != NULL)
      g_string_append_printf (s, " [%s=%s]", o->name, o->values);
    else if (v->options & o->bit)
      g_string_append_printf (s, " [%s]", o->name);
  if (words == NULL)
    words = v->words;
  if (words != NULL)
    g_string_append_printf (s, " %s", words);
  return g_string_free (s, FALSE);
}

char *
ndm_control_verb_check_count (const struct ndm_control_verb *v, unsigned n,
                              char *const *words)
{
  g_autofree char *usage = NULL;

  if (n >= v->min_words && n <= v->max_words)
    return NULL;
  /* A verb without words names the first one it did not expect. */
  if (v->max_words == 0) {
    usage = ndm_control_verb_usage (v, NULL);
    return g_strdup_printf ("%s: unexpected word '%s' (usage: %s)", v->name,
                            words[0], usage);
  }
  if (v->expected != NULL)
    return g_strdup_printf ("%s: expected %s, got %u word%s", v->name,
                            v->expected, n, n == 1 ? "" : "s");
  return g_strdup_printf ("%s: expected '%s', got %u word%s", v->name,
                          v->words, n, n == 1 ? "" : "s");
}
