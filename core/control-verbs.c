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
  { "--clear", NDM_CONTROL_OPT_CLEAR,
    .help = "print the counters, then zero them" },
  { "--noflush", NDM_CONTROL_OPT_NOFLUSH,
    .help = "hold I/O a target requeues, not drain it" },
  { "--allow-resize", NDM_CONTROL_OPT_ALLOW_RESIZE,
    .help = "a table of another size while clients are connected" },
  { "--format", NDM_CONTROL_OPT_FORMAT, .value = "FORMAT",
    .values = "text|openmetrics",
    .help = "stats as text (the default) or in the OpenMetrics format" },
  { "--inactive", NDM_CONTROL_OPT_INACTIVE,
    .help = "the table loaded by reload, not yet live" },
  { "--target", NDM_CONTROL_OPT_TARGET, .value = "TYPE",
    .help = "only the targets of that type" },
  { "--columns", NDM_CONTROL_OPT_COLUMNS, .short_name = 'C',
    .help = "info as a heading and a row, for scripts" },
  { "--options", NDM_CONTROL_OPT_FIELDS, .value = "FIELDS",
    .short_name = 'o', .help = "the fields of --columns, comma-separated" },
  { "--noheadings", NDM_CONTROL_OPT_NOHEADINGS,
    .help = "--columns without the heading" },
  { "--separator", NDM_CONTROL_OPT_SEPARATOR, .value = "SEP",
    .help = "--columns separated by SEP, not aligned" },
  { NULL, 0 },
};

const struct ndm_control_verb ndm_control_verbs[] = {
  { .name = "info", .named = true,
    .options = NDM_CONTROL_OPT_COLUMNS | NDM_CONTROL_OPT_FIELDS |
      NDM_CONTROL_OPT_NOHEADINGS | NDM_CONTROL_OPT_SEPARATOR },
  { .name = "table", .named = true,
    .options = NDM_CONTROL_OPT_INACTIVE | NDM_CONTROL_OPT_TARGET },
  { .name = "status", .named = true, .options = NDM_CONTROL_OPT_TARGET },
  { .name = "show", .named = true, .via = "status" },
  { .name = "deps", .named = true },
  { .name = "stats", .named = true,
    .options = NDM_CONTROL_OPT_CLEAR | NDM_CONTROL_OPT_FORMAT },
  { .name = "message", .min_words = 2, .max_words = G_MAXUINT,
    .words = "<sector> <message> [args...]", .number = "sector",
    .named = true },
  { .name = "suspend", .options = NDM_CONTROL_OPT_NOFLUSH, .named = true },
  { .name = "reload", .options = NDM_CONTROL_OPT_ALLOW_RESIZE,
    .min_words = 1, .max_words = 1, .words = "<table>",
    .expected = "the table as one word (lines separated by ';')",
    .table_word = true, .named = true },
  { .name = "resume", .named = true },
  { .name = "clear", .named = true },
  { .name = "wait", .max_words = 1, .words = "[<event_nr>]",
    .expected = "at most one word, the event number",
    .number = "event number", .named = true },
  { .name = "targets" },
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
    return o->value != NULL;    /* any value of a valued option */
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
    else if ((v->options & o->bit) && o->value != NULL)
      g_string_append_printf (s, " [%s %s]", o->name, o->value);
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

/* A word the verb's number could be: digits only, as the checks of that
 * number (ndm_parse_u64, nbd-dmsetup's is_number) want them.
 */
static bool
is_digits (const char *s)
{
  if (*s == '\0')
    return false;
  for (; *s != '\0'; s++)
    if (!g_ascii_isdigit (*s))
      return false;
  return true;
}

bool
ndm_control_verb_names_device (const struct ndm_control_verb *v,
                               unsigned n, char *const *words)
{
  if (!v->named || n == 0)
    return false;
  if (n > v->max_words)
    return true;
  return v->number != NULL && !is_digits (words[0]);
}
