/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: target messages by table (see struct ndm_target_message).
 *
 * Thread model: the control thread, as every message; no lock.
 */
#include <string.h>

#include "nbd-dm/target.h"

/* What a row takes, for errors: "no argument", "one argument, the path"
 * (a lone "<word>" is read as "the word"), "1 to 2 arguments, <block>
 * [<write fail count>]".
 */
static void
append_expected (GString *out, const struct ndm_target_message *row)
{
  const char *u = row->usage != NULL ? row->usage : "";
  size_t len = strlen (u);

  if (row->max_args == 0) {
    g_string_append (out, "no argument");
    return;
  }
  if (row->max_args == 1 && len > 2 && u[0] == '<' && u[len - 1] == '>' &&
      strchr (u + 1, '<') == NULL) {
    g_string_append_printf (out, "%s argument, the %.*s",
                            row->min_args == 0 ? "at most one" : "one",
                            (int) len - 2, u + 1);
    return;
  }
  if (row->min_args == row->max_args)
    g_string_append_printf (out, "%u argument%s", row->max_args,
                            row->max_args == 1 ? "" : "s");
  else
    g_string_append_printf (out, "%u to %u arguments", row->min_args,
                            row->max_args);
  if (len > 0)
    g_string_append_printf (out, ", %s", u);
}

/* "expected a, b <x> or c": every row, in table order. */
static void
append_names (GString *out, const struct ndm_target_message *table)
{
  const struct ndm_target_message *row;

  g_string_append (out, "expected ");
  for (row = table; row->name != NULL; row++) {
    if (row != table)
      g_string_append (out, row[1].name == NULL ? " or " : ", ");
    g_string_append (out, row->name);
    if (row->usage != NULL)
      g_string_append_printf (out, " %s", row->usage);
  }
}

int
ndm_target_message_dispatch (struct ndm_target *ti,
                             const struct ndm_target_message *table,
                             unsigned argc, char **argv, GString *result,
                             GError **err)
{
  const char *name = argc > 0 ? argv[0] : "";
  const struct ndm_target_message *row;
  g_autoptr (GString) msg = g_string_new (NULL);
  unsigned nargs = argc > 0 ? argc - 1 : 0;

  for (row = table; row->name != NULL; row++)
    if (!g_ascii_strcasecmp (row->name, name))
      break;
  if (row->name == NULL && row->fn != NULL && argc > 0)
    return row->fn (ti, argc, argv, result, err);
  if (row->name == NULL) {
    g_string_printf (msg, "unknown message '%s': ", name);
    append_names (msg, table);
  }
  else if (nargs < row->min_args) {
    if (row->min_args - nargs == 1)
      g_string_printf (msg, "%s requires an additional argument: ", name);
    else
      g_string_printf (msg, "%s requires %u more arguments: ", name,
                       row->min_args - nargs);
    g_string_append (msg, "expected ");
    append_expected (msg, row);
  }
  else if (nargs > row->max_args) {
    g_string_printf (msg, "%s: expected ", name);
    append_expected (msg, row);
    g_string_append_printf (msg, ", got %u argument%s", nargs,
                            nargs == 1 ? "" : "s");
  }
  else
    return row->fn (ti, argc, argv, result, err);
  g_set_error_literal (err, NDM_ERROR, NDM_ERROR_MESSAGE, msg->str);
  return -1;
}
