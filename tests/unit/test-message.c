/* SPDX-License-Identifier: BSD-3-Clause */
/* Target messages by table (ndm_target_message_dispatch): the row runs
 * whatever the case of its name, and each error the table finds is
 * worded from the table: an unknown name lists every row, a wrong count
 * of arguments says what the row expects.  And every row of the targets'
 * tables is in their docs.
 */
#include <stdio.h>

#include "nbd-dm/target.h"

/* What the last row run saw. */
static GString *ran;

static int
record (struct ndm_target *ti, unsigned argc, char **argv, GString *result,
        GError **err)
{
  unsigned i;

  g_string_truncate (ran, 0);
  for (i = 0; i < argc; i++)
    g_string_append_printf (ran, "%s%s", i ? " " : "", argv[i]);
  g_string_append (result, "answer");
  return 0;
}

static int
refuse (struct ndm_target *ti, unsigned argc, char **argv, GString *result,
        GError **err)
{
  g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE, "%s: no such thing '%s'",
               argv[0], argv[1]);
  return -1;
}

static const struct ndm_target_message table[] = {
  { "stop", 0, 0, NULL, record },
  { "fail_path", 1, 1, "<path>", record },
  { "add", 1, 2, "<block> [<count>]", record },
  { "pair", 2, 2, "<from> <to>", record },
  { "lookup", 1, 1, "<name>", refuse },
  { NULL },
};

/* Dispatch line (split on blanks) by t: the answer, or NULL and *err. */
static char *
dispatch (const struct ndm_target_message *t, const char *line,
          GError **err)
{
  g_auto (GStrv) argv = g_strsplit (line, " ", -1);
  GString *out = g_string_new (NULL);

  if (ndm_target_message_dispatch (NULL, t, g_strv_length (argv), argv, out,
                                   err) == -1) {
    g_string_free (out, TRUE);
    return NULL;
  }
  return g_string_free (out, FALSE);
}

/* line must fail with exactly want. */
static void
expect_error (const struct ndm_target_message *t, const char *line,
              const char *want)
{
  GError *err = NULL;
  g_autofree char *out = dispatch (t, line, &err);

  g_assert_null (out);
  g_assert_nonnull (err);
  g_assert_cmpstr (err->message, ==, want);
  g_assert_cmpint (err->code, ==, NDM_ERROR_MESSAGE);
  g_error_free (err);
}

static void
test_runs_row (void)
{
  GError *err = NULL;
  g_autofree char *out = dispatch (table, "ADD 7 2", &err);

  g_assert_no_error (err);
  g_assert_cmpstr (out, ==, "answer");
  /* The name as sent, and every argument. */
  g_assert_cmpstr (ran->str, ==, "ADD 7 2");
}

static void
test_row_error_unchanged (void)
{
  expect_error (table, "lookup x", "lookup: no such thing 'x'");
}

static void
test_unknown_lists_names (void)
{
  expect_error (table, "frob 1", "unknown message 'frob': expected stop, "
                "fail_path <path>, add <block> [<count>], pair <from> <to> "
                "or lookup <name>");
}

static void
test_too_few_one (void)
{
  expect_error (table, "fail_path", "fail_path requires an additional "
                "argument: expected one argument, the path");
}

static void
test_too_few_range (void)
{
  expect_error (table, "add", "add requires an additional argument: "
                "expected 1 to 2 arguments, <block> [<count>]");
}

static void
test_too_few_several (void)
{
  expect_error (table, "pair", "pair requires 2 more arguments: expected 2 "
                "arguments, <from> <to>");
}

static void
test_too_many_none (void)
{
  expect_error (table, "Stop now", "Stop: expected no argument, got 1 "
                "argument");
}

static void
test_too_many_one (void)
{
  expect_error (table, "fail_path a b", "fail_path: expected one argument, "
                "the path, got 2 arguments");
}

static void
test_too_many_range (void)
{
  expect_error (table, "add 1 2 3", "add: expected 1 to 2 arguments, "
                "<block> [<count>], got 3 arguments");
}

/* A table that ends with an fn answers the names it does not have. */
static void
test_fallback (void)
{
  static const struct ndm_target_message with_fallback[] = {
    { "stop", 0, 0, NULL, record },
    { NULL, .fn = record },
  };
  GError *err = NULL;
  g_autofree char *out = dispatch (with_fallback, "sparkle 1 2 3", &err);

  g_assert_no_error (err);
  g_assert_cmpstr (out, ==, "answer");
  g_assert_cmpstr (ran->str, ==, "sparkle 1 2 3");
  /* Its rows are still checked. */
  expect_error (with_fallback, "stop 1",
                "stop: expected no argument, got 1 argument");
}

/* Every row of type's table is a row "| `name usage` |" of the messages
 * table of docs/targets/<type>.md.
 */
static void
check_docs (const char *name)
{
  const struct ndm_target_type *type = ndm_target_type_lookup (name);
  g_autofree char *path = g_strdup_printf ("%s/docs/targets/%s.md",
                                           NDM_SOURCE_DIR, name);
  g_autofree char *text = NULL;
  const struct ndm_target_message *row;
  GError *err = NULL;

  g_assert_nonnull (type);
  g_assert_nonnull (type->messages);
  if (!g_file_get_contents (path, &text, NULL, &err))
    g_error ("%s", err->message);
  for (row = type->messages; row->name != NULL; row++) {
    g_autofree char *want =
      g_strdup_printf ("\n| `%s%s%s` |", row->name, row->usage ? " " : "",
                       row->usage ? row->usage : "");

    if (strstr (text, want) == NULL)
      g_error ("%s: no row '%s' in the messages table", path, want + 1);
  }
}

static void
test_docs_multipath (void)
{
  check_docs ("multipath");
}

static void
test_docs_dust (void)
{
  check_docs ("dust");
}

int
main (int argc, char *argv[])
{
  int r;

  g_test_init (&argc, &argv, NULL);
  ran = g_string_new (NULL);
  g_test_add_func ("/message/dispatch/runs-row", test_runs_row);
  g_test_add_func ("/message/dispatch/row-error-unchanged",
                   test_row_error_unchanged);
  g_test_add_func ("/message/dispatch/fallback", test_fallback);
  g_test_add_func ("/message/error/unknown-lists-names",
                   test_unknown_lists_names);
  g_test_add_func ("/message/error/too-few-one", test_too_few_one);
  g_test_add_func ("/message/error/too-few-range", test_too_few_range);
  g_test_add_func ("/message/error/too-few-several", test_too_few_several);
  g_test_add_func ("/message/error/too-many-none", test_too_many_none);
  g_test_add_func ("/message/error/too-many-one", test_too_many_one);
  g_test_add_func ("/message/error/too-many-range", test_too_many_range);
  g_test_add_func ("/message/docs/multipath", test_docs_multipath);
  g_test_add_func ("/message/docs/dust", test_docs_dust);
  r = g_test_run ();
  g_string_free (ran, TRUE);
  return r;
}
