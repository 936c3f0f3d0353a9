/* SPDX-License-Identifier: BSD-3-Clause */
/* Control commands and suspend/reload/resume (DESIGN.md section 6, 7),
 * through ndm_md_command as the control socket runs them.
 */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "nbd-dm/control.h"
#include "harness.h"
#include "log.h"
#include "thread.h"

/* The value at path of json is want (compact JSON text: "24", "\"up\""). */
static void
json_is (const char *json, const char *path, const char *want)
{
  g_autofree char *got = h_json_text (json, path);

  if (strcmp (got, want) != 0)
    g_error ("%s is %s, expected %s, in %s", path, got, want, json);
}

/* Run "verb args..." (split on blanks); returns 0 or -1, output in out. */
static int
cmd (struct ndm_md *md, GString *out, GError **err, const char *line)
{
  g_auto (GStrv) argv = g_strsplit (line, " ", -1);

  g_string_truncate (out, 0);
  return ndm_md_command (md, g_strv_length (argv), argv, out, err);
}

static void
cmd_ok (struct ndm_md *md, GString *out, const char *line)
{
  GError *err = NULL;

  if (cmd (md, out, &err, line) == -1)
    g_error ("'%s' failed: %s", line, err->message);
}

static void
cmd_fails (struct ndm_md *md, const char *line, const char *want)
{
  g_autoptr (GString) out = g_string_new (NULL);
  GError *err = NULL;

  g_assert_cmpint (cmd (md, out, &err, line), ==, -1);
  if (strstr (err->message, want) == NULL)
    g_error ("'%s': error '%s' does not contain '%s'", line, err->message,
             want);
  g_error_free (err);
}

static void
test_info_table_status (void)
{
  struct ndm_md *md = h_md_new (
    "0 16 striped 2 8 fake://a 0 fake://b 0\n16 8 zero", NULL);
  g_autoptr (GString) out = g_string_new (NULL);

  cmd_ok (md, out, "info");
  g_assert_cmpstr (out->str, ==,
                   "Name:              nbd-dm\n"
                   "State:             ACTIVE\n"
                   "Tables present:    LIVE\n"
                   "Open count:        0\n"
                   "Event number:      0\n"
                   "Number of targets: 2\n");
  cmd_ok (md, out, "table");
  g_assert_cmpstr (out->str, ==, "0 16 striped 2 8 fake://a 0 fake://b 0\n"
                   "16 8 zero\n");
  cmd_ok (md, out, "status");
  g_assert_cmpstr (out->str, ==, "0 16 striped 2 fake://a fake://b 1 AA\n"
                   "16 8 zero\n");
  cmd_ok (md, out, "info --json");
  json_is (out->str, "$.state", "\"active\"");
  json_is (out->str, "$.size_sectors", "24");
  json_is (out->str, "$.size_bytes", "12288");
  json_is (out->str, "$.inactive_table", "false");
  cmd_ok (md, out, "table --json");
  json_is (out->str, "$.targets[0].args",
           "[\"2\",\"8\",\"fake://a\",\"0\",\"fake://b\",\"0\"]");
  json_is (out->str, "$.targets[1].args", "[]");
  cmd_ok (md, out, "status --json");
  json_is (out->str, "$.targets[0].status",
           "[\"2\",\"fake://a\",\"fake://b\",\"1\",\"AA\"]");
  json_is (out->str, "$.targets[0].start", "0");
  json_is (out->str, "$.targets[1].start", "16");
  json_is (out->str, "$.targets[1].length", "8");
  json_is (out->str, "$.targets[0].detail", "null");
  json_is (out->str, "$.targets[0].devices[1].uri", "\"fake://b\"");
  json_is (out->str, "$.targets[0].devices[1].state", "\"up\"");
  json_is (out->str, "$.targets[0].devices[1].reason", "null");
  json_is (out->str, "$.targets[1].devices", "[]");
  h_md_free (md);
}

#define TWO_TARGETS "0 16 linear fake://a 0\n16 8 zero"
static const struct h_command_error bad_commands[] = {
  { "empty-request", TWO_TARGETS, "", "empty request" },
  { "unknown-verb", TWO_TARGETS, "frobnicate",
    "unknown command 'frobnicate'" },
  { "info-extra-word", TWO_TARGETS, "info nbd-dm extra",
    "info: unexpected word 'extra'" },
  { "info-other-device", TWO_TARGETS, "info vol1",
    "info: device 'vol1' is not served here: this control socket's device "
    "is 'nbd-dm' (name=)" },
  { "status-unknown-target", TWO_TARGETS, "status --target=lineer",
    "status: unknown target type 'lineer': expected one of linear," },
  { "status-target-no-value", TWO_TARGETS, "status --target",
    "status: option '--target' needs a value, TYPE" },
  { "table-flag-with-value", TWO_TARGETS, "table --inactive=yes",
    "table: option '--inactive' takes no value" },
  { "info-unknown-field", TWO_TARGETS, "info --columns --options=name,bogus",
    "info: unknown field 'bogus' in --options 'name,bogus': expected one "
    "of name, attr, open, segments, events" },
  { "info-options-without-columns", TWO_TARGETS, "info --noheadings",
    "info: --options, --noheadings and --separator need --columns" },
  { "suspend-unknown-option", TWO_TARGETS, "suspend --clear",
    "suspend: unknown option '--clear'" },
  { "message-no-arguments", TWO_TARGETS, "message",
    "message: expected '<sector> <message>" },
  { "message-sector-not-a-number", TWO_TARGETS, "message nbd-dm x hello",
    "message: sector 'x' is not a number" },
  { "message-sector-past-end", TWO_TARGETS, "message 24 hello",
    "sector 24 is past the end" },
  { "message-linear", TWO_TARGETS, "message 0 hello",
    "the linear target at sector 0 does not support messages" },
  { "message-zero", TWO_TARGETS, "message 16 hello",
    "the zero target at sector 16 does not support messages" },
  { "wait-not-a-number", TWO_TARGETS, "wait nbd-dm x",
    "event number 'x' is not a number" },
  { "reload-no-table", TWO_TARGETS, "reload",
    "reload: expected the table as one word" },
};
#undef TWO_TARGETS

static void
test_help_and_version (void)
{
  struct ndm_md *md = h_md_new ("0 16 linear fake://a 0\n16 8 zero", NULL);
  g_autoptr (GString) out = g_string_new (NULL);

  cmd_ok (md, out, "help");
  g_assert_nonnull (strstr (out->str, "suspend [--noflush]\n"));
  cmd_ok (md, out, "version");
  g_assert_nonnull (strstr (out->str, "control protocol 1"));
  h_md_free (md);
}

/* The verbs' spec (control.h) is what the server checks: each verb has
 * a handler, refuses a word count outside the spec with the spec's
 * message, and takes exactly the spec's options.
 */
static void
test_spec_word_counts (void)
{
  struct ndm_md *md = h_md_new ("0 16 linear fake://a 0", NULL);
  const struct ndm_control_verb *v;

  /* The messages, written out. */
  cmd_fails (md, "info nbd-dm extra",
             "info: unexpected word 'extra' (usage: info [--columns] "
             "[--options FIELDS] [--noheadings] [--separator SEP])");
  cmd_fails (md, "stats --clear nbd-dm x",
             "stats: unexpected word 'x' (usage: stats [--clear] "
             "[--format=text|openmetrics])");
  cmd_fails (md, "message 0",
             "message: expected '<sector> <message> [args...]', got 1 word");
  cmd_fails (md, "reload", "reload: expected the table as one word (lines "
             "separated by ';'), got 0 words");
  cmd_fails (md, "wait nbd-dm 1 2",
             "wait: expected at most one word, the event number, got 2 "
             "words");
  /* Every verb, one word too many (after the device's name, which the
   * word too many would otherwise be) and one too few.
   */
  for (v = ndm_control_verbs; v->name != NULL; v++) {
    g_autoptr (GString) line = g_string_new (v->name);
    g_autofree char *why = NULL;
    char *words[] = { "1", "2", "3" };
    unsigned i;

    if (v->via != NULL)
      continue;                 /* nbd-dmsetup's own */
    if (v->named)
      g_string_append (line, " nbd-dm");

    if (v->max_words != G_MAXUINT) {
      g_assert_cmpuint (v->max_words + 1, <=, G_N_ELEMENTS (words));
      for (i = 0; i <= v->max_words; i++)
        g_string_append_printf (line, " %s", words[i]);
      why = ndm_control_verb_check_count (v, v->max_words + 1, words);
      g_assert_nonnull (why);
      cmd_fails (md, line->str, why);
      if (v->max_words == 0) {
        g_autofree char *usage = ndm_control_verb_usage (v, NULL);
        g_autofree char *want = g_strdup_printf ("(usage: %s)", usage);

        cmd_fails (md, line->str, want);
      }
    }
    if (v->min_words > 0) {
      g_free (why);
      g_string_assign (line, v->name);
      for (i = 0; i + 1 < v->min_words; i++)
        g_string_append_printf (line, " %s", words[i]);
      why = ndm_control_verb_check_count (v, v->min_words - 1, words);
      g_assert_nonnull (why);
      cmd_fails (md, line->str, why);
    }
  }
  h_md_free (md);
}

static void
test_spec_help (void)
{
  struct ndm_md *md = h_md_new ("0 16 linear fake://a 0", NULL);
  g_autoptr (GString) out = g_string_new (NULL);
  const struct ndm_control_verb *v;
  unsigned n = 0;

  cmd_ok (md, out, "help");
  g_assert_cmpstr (out->str, ==,
                   "info [--columns] [--options FIELDS] [--noheadings] "
                   "[--separator SEP]\n"
                   "table [--inactive] [--target TYPE]\n"
                   "status [--target TYPE]\ndeps\n"
                   "stats [--clear] [--format=text|openmetrics]\n"
                   "message <sector> <message> [args...]\n"
                   "suspend [--noflush]\nreload [--allow-resize] <table>\n"
                   "resume\nclear\nwait [<event_nr>]\ntargets\nversion\n"
                   "help\n");
  cmd_ok (md, out, "help --json");
  for (v = ndm_control_verbs; v->name != NULL; v++) {
    g_autofree char *usage = ndm_control_verb_usage (v, NULL);
    g_autofree char *path = g_strdup_printf ("$.verbs[%u]", n);
    g_autofree char *name_path = g_strdup_printf ("%s.name", path);
    g_autofree char *usage_path = g_strdup_printf ("%s.usage", path);
    g_autofree char *name = NULL;
    g_autofree char *got = NULL;

    if (v->via != NULL)
      continue;                 /* nbd-dmsetup's own, not the server's */
    name = h_json_str (out->str, name_path);
    got = h_json_str (out->str, usage_path);
    g_assert_cmpstr (name, ==, v->name);
    g_assert_cmpstr (got, ==, usage);
    n++;
  }
  h_md_free (md);
}

/* Every verb with --json: one line, one JSON object, with "version" 1
 * (an integer) first; the verbs that only act print nothing.  A verb
 * added to the spec without a row here fails the test.
 */
static const struct json_case {
  const char *argv[4];          /* --json added */
  bool payload;
} json_cases[] = {
  { { "info" }, true },
  { { "table" }, true },
  { { "status" }, true },
  { { "stats" }, true },
  { { "message", "16", "countbadblocks" }, true },
  { { "suspend" }, false },
  { { "reload", "0 16 linear fake://a 0;16 8 zero" }, false },
  { { "clear" }, false },
  { { "reload", "0 16 linear fake://a 0;16 8 zero" }, false },
  { { "resume" }, false },
  { { "wait", "0" }, true },
  { { "deps" }, true },
  { { "targets" }, true },
  { { "info", "--columns" }, true },
  { { "table", "--inactive" }, true },
  { { "status", "--target=dust" }, true },
  { { "version" }, true },
  { { "help" }, true },
};

static void
test_json_every_verb (void)
{
  struct ndm_md *md = h_md_new ("0 16 linear fake://a 0\n"
                                "16 8 dust fake://b 0 512", NULL);
  g_autoptr (GString) out = g_string_new (NULL);
  const struct ndm_control_verb *v;
  size_t i;

  for (v = ndm_control_verbs; v->name != NULL; v++) {
    for (i = 0; i < G_N_ELEMENTS (json_cases); i++)
      if (strcmp (json_cases[i].argv[0], v->name) == 0)
        break;
    if (i == G_N_ELEMENTS (json_cases) && v->via == NULL)
      g_error ("verb '%s' has no JSON case", v->name);
  }
  for (i = 0; i < G_N_ELEMENTS (json_cases); i++) {
    const struct json_case *jc = &json_cases[i];
    char *argv[G_N_ELEMENTS (jc->argv) + 1] = { NULL };
    GError *err = NULL;
    int argc;

    for (argc = 0; jc->argv[argc] != NULL; argc++)
      argv[argc] = (char *) jc->argv[argc];
    argv[argc++] = (char *) "--json";
    g_string_truncate (out, 0);
    if (ndm_md_command (md, argc, argv, out, &err) == -1)
      g_error ("%s --json: %s", jc->argv[0], err->message);
    if (!jc->payload) {
      g_assert_cmpstr (out->str, ==, "");
      continue;
    }
    /* One line; "version" an integer, and first for a reader's eyes. */
    g_assert_true (strchr (out->str, '\n') == out->str + out->len - 1);
    g_assert_true (g_str_has_prefix (out->str, "{\"version\":1,"));
    g_assert_cmpint (h_json_int (out->str, "$.version"), ==, 1);
  }
  h_md_free (md);
}

/* A name= that is not UTF-8 (Latin-1 "café", and a stray byte) comes
 * out valid, each bad byte as U+FFFD; valid UTF-8 is kept as it is.
 */
static void
test_json_utf8_name (void)
{
  static const struct {
    const char *name, *want;
  } names[] = {
    { "caf\xe9", "caf\xef\xbf\xbd" },
    { "a\xff\xfe" "b", "a\xef\xbf\xbd\xef\xbf\xbd" "b" },
    { "caf\xc3\xa9", "caf\xc3\xa9" },
  };
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (names); i++) {
    struct ndm_config c;
    struct ndm_md *md;
    g_autoptr (GString) out = g_string_new (NULL);
    g_autofree char *name = NULL;

    ndm_config_init (&c);
    g_strlcpy (c.name, names[i].name, sizeof c.name);
    md = h_md_new ("0 16 linear fake://a 0", &c);
    cmd_ok (md, out, "info --json");
    g_assert_true (g_utf8_validate (out->str, -1, NULL));
    name = h_json_str (out->str, "$.name");
    g_assert_cmpstr (name, ==, names[i].want);
    h_md_free (md);
  }
}

/* Each verb reaches the option check (so it has a handler), and takes
 * exactly the options of its spec.  Where it takes one, a wrong word
 * count stops it before it acts.
 */
static void
test_spec_options (void)
{
  struct ndm_md *md = h_md_new ("0 16 linear fake://a 0", NULL);
  const struct ndm_control_verb *v;
  const struct ndm_control_option *o;
  unsigned n = 0;

  for (v = ndm_control_verbs; v->name != NULL; v++, n++) {
    g_autofree char *usage = ndm_control_verb_usage (v, NULL);
    g_autofree char *line = g_strdup_printf ("%s --frobnicate", v->name);
    g_autofree char *want = g_strdup_printf ("%s: unknown option "
                                             "'--frobnicate' (usage: %s)",
                                             v->name, usage);

    if (v->via != NULL) {
      g_autofree char *unknown = g_strdup_printf ("unknown command '%s'",
                                                  v->name);

      cmd_fails (md, line, unknown);     /* nbd-dmsetup's own */
      continue;
    }
    cmd_fails (md, line, want);
    for (o = ndm_control_options; o->name != NULL; o++) {
      /* An option with values given its first one: "--format=text". */
      g_autofree char *word = o->values == NULL ? g_strdup (o->name)
        : g_strdup_printf ("%s=%.*s", o->name, (int) strcspn (o->values,
                                                               "|"),
                           o->values);
      g_autofree char *l = g_strdup_printf ("%s %s%s", v->name, word,
                                            v->max_words == 0 ? " x" : "");
      g_autofree char *refused = g_strdup_printf ("%s: unknown option '%s'",
                                                  v->name, o->name);
      g_autoptr (GString) out = g_string_new (NULL);
      GError *err = NULL;

      g_assert_cmpint (cmd (md, out, &err, l), ==, -1);
      if ((v->options & o->bit) != 0)
        g_assert_null (strstr (err->message, "unknown option"));
      else
        g_assert_true (g_str_has_prefix (err->message, refused));
      g_clear_error (&err);
    }
  }
  g_assert_cmpuint (n, ==, 15);
  g_assert_true (ndm_control_verb_lookup ("suspend")->options ==
                 NDM_CONTROL_OPT_NOFLUSH);
  g_assert_true (ndm_control_verb_lookup ("stats")->options ==
                 (NDM_CONTROL_OPT_CLEAR | NDM_CONTROL_OPT_FORMAT));
  g_assert_true (ndm_control_verb_lookup ("reload")->options ==
                 NDM_CONTROL_OPT_ALLOW_RESIZE);
  g_assert_null (ndm_control_verb_lookup ("Info"));
  h_md_free (md);
}

static void
test_stats (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a?max=4096 0", NULL);
  g_autoptr (GString) out = g_string_new (NULL);
  char buf[16384];

  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 16384, 0, 0), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 8192, 0, 0), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, 1 << 20, 0), ==, EINVAL);
  fake_fail_range (fake_lookup ("a"), 0, 1, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, 0, 0), ==, EIO);

  cmd_ok (md, out, "stats");
  /* The target saw 2 reads (one failed) and a write of 16 KiB; the device
   * got them as 4 KiB commands.
   */
  g_assert_nonnull (strstr (out->str, "target 0 2048 linear\n  reads 2 "
                                      "(8704 bytes), writes 1 (16384 bytes)"));
  g_assert_nonnull (strstr (out->str, "device fake://a?max=4096 (up)\n"
                                      "  reads 3 (8704 bytes), writes 4 "
                                      "(16384 bytes)"));
  g_assert_nonnull (strstr (out->str, "errors 1"));
  g_assert_nonnull (strstr (out->str, "read latency:"));
  cmd_ok (md, out, "stats --json --clear");
  json_is (out->str, "$.targets[0].io.writes", "1");
  json_is (out->str, "$.targets[0].io.write_bytes", "16384");
  json_is (out->str, "$.targets[0].io.errors", "1");
  json_is (out->str, "$.devices[0].uri", "\"fake://a?max=4096\"");
  json_is (out->str, "$.devices[0].io.writes", "4");
  cmd_ok (md, out, "stats");
  g_assert_nonnull (strstr (out->str, "reads 0 (0 bytes), writes 0"));

  /* --format takes a value, one of the spec's. */
  cmd_ok (md, out, "stats --format=text");
  g_assert_true (g_str_has_prefix (out->str, "target 0 2048 linear\n"));
  cmd_ok (md, out, "stats --format=openmetrics");
  g_assert_true (g_str_has_prefix (out->str, "# TYPE ndm_target_ios "
                                   "counter\n"));
  g_assert_true (g_str_has_suffix (out->str, "\n# EOF\n"));
  cmd_fails (md, "stats --format=xml", "stats: --format: unknown value "
             "'xml' (expected text|openmetrics)");
  cmd_fails (md, "stats --format", "stats: option '--format' needs a "
             "value, FORMAT");
  cmd_fails (md, "stats --clear=1", "stats: option '--clear' takes no "
             "value");
  cmd_fails (md, "stats --format=openmetrics --clear", "stats: "
             "--format=openmetrics takes neither --json nor --clear");
  h_md_free (md);
}

/* Suspend: new requests wait; resume lets them go. */
static void
test_suspend_holds_new_requests (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a 0", NULL);
  g_autoptr (GString) out = g_string_new (NULL);
  char buf[4096];
  struct h_io *io;

  cmd_ok (md, out, "suspend");
  cmd_ok (md, out, "info");
  g_assert_nonnull (strstr (out->str, "State:             SUSPENDED\n"));
  io = h_io_start (md, NDM_OP_WRITE, buf, 4096, 0, 0);
  g_usleep (30 * 1000);
  g_assert_false (h_io_done (io));
  g_assert_cmpuint (fake_submitted (fake_lookup ("a")), ==, 0);
  cmd_ok (md, out, "resume");
  g_assert_cmpint (h_io_wait (io), ==, 0);
  g_assert_cmpuint (fake_submitted (fake_lookup ("a")), ==, 1);
  h_md_free (md);
}

struct suspender {
  struct ndm_md *md;
  bool noflush;
  GThread *thread;
  gint done;
};

static gpointer
suspend_thread (gpointer data)
{
  struct suspender *s = data;

  g_assert_cmpint (ndm_md_suspend (s->md, s->noflush, NULL), ==, 0);
  g_atomic_int_set (&s->done, 1);
  return NULL;
}

/* Start a suspend on its own thread and return once the device says it
 * is suspended (the gate is closed; the drain may go on), so that what
 * the test does next happens under the suspend, whatever the scheduler.
 */
static void
suspend_start (struct suspender *s, struct ndm_md *md, bool noflush)
{
  g_autoptr (GString) out = g_string_new (NULL);
  gint64 end = g_get_monotonic_time () + 5 * G_TIME_SPAN_SECOND;

  s->md = md;
  s->noflush = noflush;
  s->done = 0;
  s->thread = g_thread_new ("suspend", suspend_thread, s);
  for (;;) {
    cmd_ok (md, out, "info");
    if (strstr (out->str, "SUSPENDED") != NULL)
      return;
    if (g_get_monotonic_time () > end)
      g_error ("the device did not say SUSPENDED within 5 s");
    g_usleep (1000);
  }
}

/* Suspend drains: it returns only when the in-flight request finished. */
static void
test_suspend_drains (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a?mode=held 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  struct suspender s;
  char buf[4096];
  struct h_io *io = h_io_start (md, NDM_OP_WRITE, buf, 4096, 0, 0);

  fake_wait_pending (a, 1);
  suspend_start (&s, md, false);
  g_usleep (30 * 1000);
  g_assert_false (g_atomic_int_get (&s.done));
  fake_complete (a, 0, 0);
  g_assert_cmpint (h_io_wait (io), ==, 0);
  g_thread_join (s.thread);
  g_assert_true (s.done);
  g_assert_cmpint (ndm_md_resume (md, NULL), ==, 0);
  h_md_free (md);
}

/* Reload then resume: the next request goes to the new table's device;
 * a bad reload changes nothing.
 */
static void
test_reload_resume (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a 0", NULL);
  g_autoptr (GString) out = g_string_new (NULL);
  GError *err = NULL;
  char buf[4096];
  char *reload[] = { "reload", "0 2040 linear fake://b 8;# comment", NULL };
  char *bad[] = { "reload", "0 2048 linear fake://c 0;2048 8 lineer", NULL };

  g_assert_cmpint (ndm_md_command (md, 2, bad, out, &err), ==, -1);
  g_assert_nonnull (strstr (err->message, "reload: line 2: unknown target "
                            "type 'lineer'"));
  g_clear_error (&err);
  g_assert_false (fake_is_open (fake_lookup ("c")));  /* and closed again */
  cmd_ok (md, out, "info");
  g_assert_nonnull (strstr (out->str, "Tables present:    LIVE\n"));

  if (ndm_md_command (md, 2, reload, out, &err) == -1)
    g_error ("reload: %s", err->message);
  cmd_ok (md, out, "info");
  g_assert_nonnull (strstr (out->str, "Tables present:    LIVE & INACTIVE\n"));
  /* Still the old table until resume. */
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4096, 0, 0), ==, 0);
  g_assert_cmpuint (fake_submitted (fake_lookup ("b")), ==, 0);
  cmd_ok (md, out, "resume");
  cmd_ok (md, out, "table");
  g_assert_cmpstr (out->str, ==, "0 2040 linear fake://b 8\n");
  cmd_ok (md, out, "info");
  g_assert_nonnull (strstr (out->str, "Event number:      1\n"));
  memset (buf, 7, sizeof buf);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4096, 0, 0), ==, 0);
  g_assert_cmpint (fake_data (fake_lookup ("b"))[4096], ==, 7);

  /* clear drops a loaded table. */
  g_assert_cmpint (ndm_md_command (md, 2, reload, out, &err), ==, 0);
  cmd_ok (md, out, "clear");
  cmd_ok (md, out, "info");
  g_assert_nonnull (strstr (out->str, "Tables present:    LIVE\n"));
  h_md_free (md);
}

/* A table of another size is refused while clients are connected. */
static void
test_resize_rule (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a?size=4M 0", NULL);
  g_autoptr (GString) out = g_string_new (NULL);
  GError *err = NULL;
  char *grow[] = { "reload", "0 4096 linear fake://a?size=4M 0", NULL };
  char *grow_forced[] = { "reload", "--allow-resize",
                          "0 4096 linear fake://a?size=4M 0", NULL };

  ndm_md_client_open (md);
  g_assert_cmpint (ndm_md_command (md, 2, grow, out, &err), ==, -1);
  g_assert_nonnull (strstr (err->message, "the new table has 4096 sectors "
                            "and the live one 2048"));
  g_clear_error (&err);
  g_assert_cmpint (ndm_md_command (md, 3, grow_forced, out, &err), ==, 0);
  cmd_ok (md, out, "resume");
  g_assert_cmpuint (ndm_md_get_size (md), ==, 4096 * 512);
  ndm_md_client_close (md);

  /* Loaded with nobody connected, resumed after a client came: refused
   * then, the live table serving on, the loaded one kept.
   */
  g_assert_cmpint (ndm_md_command (md, 2, (char *[]) { "reload",
      "0 2048 linear fake://a?size=4M 0", NULL }, out, &err), ==, 0);
  ndm_md_client_open (md);
  g_assert_cmpint (ndm_md_command (md, 1, (char *[]) { "resume", NULL },
                                   out, &err), ==, -1);
  g_assert_nonnull (strstr (err->message, "resume: clients connected since "
                            "the reload: the new table has 2048 sectors"));
  g_clear_error (&err);
  g_assert_cmpuint (ndm_md_get_size (md), ==, 4096 * 512);
  cmd_ok (md, out, "info");
  g_assert_null (strstr (out->str, "SUSPENDED"));
  g_assert_nonnull (strstr (out->str, "LIVE & INACTIVE"));
  ndm_md_client_close (md);
  h_md_free (md);
}

/* noflush: a request that must run another round is held, not run; after
 * reload and resume its tail lands on the new table.
 */
static void
test_noflush_holds_requeue_onto_new_table (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 probe fake://a?mode=held&max=4096 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b;
  g_autofree char *buf = g_malloc (8192);
  struct suspender s;
  struct h_io *io;
  GError *err = NULL;

  h_fill (buf, 8192, 21);
  h_probe_requeue (1);
  io = h_io_start (md, NDM_OP_WRITE, buf, 8192, 0, 0);
  fake_wait_pending (a, 2);
  suspend_start (&s, md, true);
  g_usleep (20 * 1000);
  g_assert_false (g_atomic_int_get (&s.done));    /* still in flight */
  fake_complete (a, 0, 0);
  fake_complete (a, 1, ENOTCONN);                 /* the probe requeues */
  g_thread_join (s.thread);                        /* drained: held */
  g_assert_false (h_io_done (io));
  g_assert_cmpuint (fake_submitted (a), ==, 2);    /* nothing re-sent yet */

  g_assert_cmpint (ndm_md_reload (md, "0 2048 probe fake://b?mode=held 0",
                                  false, &err), ==, 0);
  b = fake_lookup ("b");
  g_assert_cmpint (ndm_md_resume (md, NULL), ==, 0);
  fake_wait_pending (b, 1);
  fake_complete_all (b);
  g_assert_cmpint (h_io_wait (io), ==, 0);
  /* Only the tail went to the new device, at its offset. */
  g_assert_cmpmem (fake_data (b) + 4096, 4096, buf + 4096, 4096);
  g_assert_cmpint (fake_data (b)[0], ==, 0);
  g_assert_cmpmem (fake_data (a), 4096, buf, 4096);
  h_md_free (md);
}

/* noflush onto a smaller table (reload --allow-resize): the part of a
 * held request past the new end fails with EINVAL, as it would at the
 * front door; the part before it lands on the new table.  (It used to be
 * dropped and acknowledged, or cut into a clone of ~2^64 bytes.)
 */
static void
test_noflush_onto_smaller_table (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 probe fake://a?mode=held&max=4096 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b;
  g_autofree char *buf = g_malloc (16384);
  struct suspender s;
  struct h_io *io;

  h_fill (buf, 16384, 22);
  h_probe_requeue (1);
  /* Bytes [4096, 20480): the tail [8192, 20480) is held. */
  io = h_io_start (md, NDM_OP_WRITE, buf, 16384, 4096, 0);
  fake_wait_pending (a, 4);
  suspend_start (&s, md, true);
  fake_complete (a, 0, 0);
  fake_complete (a, 1, ENOTCONN);
  fake_complete (a, 2, 0);
  fake_complete (a, 3, 0);
  g_thread_join (s.thread);
  g_assert_false (h_io_done (io));

  /* 12 KiB: the held tail crosses the new end. */
  g_assert_cmpint (ndm_md_reload (md, "0 24 probe fake://b?mode=held 0",
                                  true, NULL), ==, 0);
  b = fake_lookup ("b");
  g_assert_cmpint (ndm_md_resume (md, NULL), ==, 0);
  fake_wait_pending (b, 1);
  fake_complete_all (b);
  g_assert_cmpint (h_io_wait_bounded (io, 5), ==, EINVAL);
  g_assert_cmpmem (fake_data (b) + 8192, 4096, buf + 4096, 4096);

  /* And a tail wholly past the new end. */
  g_assert_cmpint (ndm_md_reload (
                     md, "0 2048 probe fake://c?mode=held&max=4096 0", true,
                     NULL), ==, 0);
  g_assert_cmpint (ndm_md_resume (md, NULL), ==, 0);
  h_probe_requeue (1);
  io = h_io_start (md, NDM_OP_WRITE, buf, 8192, 65536, 0);
  fake_wait_pending (fake_lookup ("c"), 2);
  suspend_start (&s, md, true);
  fake_complete (fake_lookup ("c"), 0, ENOTCONN);
  fake_complete (fake_lookup ("c"), 1, 0);
  g_thread_join (s.thread);
  g_assert_cmpint (ndm_md_reload (md, "0 16 zero", true, NULL), ==, 0);
  g_assert_cmpint (ndm_md_resume (md, NULL), ==, 0);
  g_assert_cmpint (h_io_wait_bounded (io, 5), ==, EINVAL);
  h_md_free (md);
}

/* noflush x flush (R9): a flush held by a noflush suspend and resumed on
 * another table flushes every device of that table, not only those under
 * the old table's unfinished clones (device c is new: it used to be
 * skipped, the flush acknowledged).
 */
static void
test_noflush_flush_onto_new_table (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 probe fake://a?mode=held 0\n8 8 probe fake://b 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *c;
  struct suspender s;
  struct h_io *io;

  h_probe_requeue (1);
  io = h_io_start (md, NDM_OP_FLUSH, NULL, 0, 0, 0);
  fake_wait_pending (a, 1);
  suspend_start (&s, md, true);
  fake_complete (a, 0, ENOTCONN);          /* the probe requeues */
  g_thread_join (s.thread);
  g_assert_cmpint (ndm_md_reload (md, "0 8 probe fake://a?mode=held 0\n"
                                  "8 8 linear fake://c 0", false, NULL),
                   ==, 0);
  c = fake_lookup ("c");
  g_assert_cmpint (ndm_md_resume (md, NULL), ==, 0);
  fake_wait_pending (a, 1);
  fake_complete_all (a);
  g_assert_cmpint (h_io_wait_bounded (io, 5), ==, 0);
  g_assert_cmpuint (fake_count_op (c, NDM_OP_FLUSH), ==, 1);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_FLUSH), ==, 2);
  h_md_free (md);
}

struct waiter {
  struct ndm_md *md;
  GString *out;
  int r;
};

static gpointer
wait_thread (gpointer data)
{
  struct waiter *w = data;
  char *argv[] = { "wait", "0", NULL };

  w->r = ndm_md_command (w->md, 2, argv, w->out, NULL);
  return NULL;
}

/* wait returns when the event number passes the one given. */
static void
test_wait_event (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a 0", NULL);
  struct waiter w = { .md = md, .out = g_string_new (NULL) };
  GThread *t = g_thread_new ("wait", wait_thread, &w);

  g_usleep (30 * 1000);
  g_assert_cmpuint (w.out->len, ==, 0);
  g_assert_cmpint (ndm_md_reload (md, "0 2048 linear fake://b 0", false,
                                  NULL), ==, 0);
  g_assert_cmpint (ndm_md_resume (md, NULL), ==, 0);
  g_thread_join (t);
  g_assert_cmpint (w.r, ==, 0);
  g_assert_cmpstr (w.out->str, ==, "1\n");
  g_string_free (w.out, TRUE);
  h_md_free (md);
}

/* ---- the control socket under shortage (R13) ------------------------------ */

static int
sock_connect (const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

  g_assert_cmpint (fd, >=, 0);
  g_strlcpy (sa.sun_path, path, sizeof sa.sun_path);
  g_assert_cmpint (connect (fd, (struct sockaddr *) &sa, sizeof sa), ==, 0);
  return fd;
}

/* The first line the server sends on fd (it must send one: 5 s). */
static char *
sock_line (int fd)
{
  GString *s = g_string_new (NULL);
  struct timeval tv = { .tv_sec = 5 };
  char c;

  setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (recv (fd, &c, 1, 0) == 1 && c != '\n')
    g_string_append_c (s, c);
  return g_string_free (s, FALSE);
}

static bool
refuse_control_threads (const char *name)
{
  return strcmp (name, "ndm-control") == 0;
}

/* No thread can be made for a control client: the client is told so
 * and closed, and the server serves the next one once it can.  (It used
 * to abort in g_thread_new: an operator's connection killed the server.)
 */
static void
test_control_client_thread_refused (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a 0", NULL);
  g_autofree char *dir = g_dir_make_tmp ("ndm-ctl-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "ctl", NULL);
  struct ndm_control *ctl = ndm_control_new (md, path, NULL);
  g_autofree char *l1 = NULL, *l2 = NULL;
  int fd;

  g_assert_nonnull (ctl);
  g_assert_cmpint (ndm_control_start (ctl, NULL), ==, 0);
  g_atomic_pointer_set (&ndm_thread_test_refuse, refuse_control_threads);
  fd = sock_connect (path);
  l1 = sock_line (fd);
  g_assert_true (g_str_has_prefix (l1, "error "));
  g_assert_nonnull (strstr (l1, "cannot start a thread"));
  close (fd);

  g_atomic_pointer_set (&ndm_thread_test_refuse, NULL);
  fd = sock_connect (path);
  g_assert_cmpint (send (fd, "version\n", 8, 0), ==, 8);
  l2 = sock_line (fd);
  g_assert_true (g_str_has_prefix (l2, "ok "));
  close (fd);
  ndm_control_free (ctl);
  rmdir (dir);
  h_md_free (md);
}

static gint logged;

static void
count_log (enum ndm_log_level level, const char *msg)
{
  unsigned n;

  /* Suppressed lines count too: the rate limiter says how many. */
  if (sscanf (msg, "%u similar error messages suppressed", &n) == 1)
    g_atomic_int_add (&logged, n);
  else
    g_atomic_int_inc (&logged);
}

/* Out of descriptors, accept(2) fails with EMFILE and the client stays
 * in the backlog: the accept thread must wait, not spin.  Over 1.5 s it
 * tries about 15 times; spinning, it tried hundreds of thousands.
 */
static void
test_control_accept_emfile_backs_off (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a 0", NULL);
  g_autofree char *dir = g_dir_make_tmp ("ndm-ctl-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "ctl", NULL);
  struct ndm_control *ctl = ndm_control_new (md, path, NULL);
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  struct rlimit old, low;
  int fd, probe;

  g_assert_cmpint (ndm_control_start (ctl, NULL), ==, 0);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  g_strlcpy (sa.sun_path, path, sizeof sa.sun_path);
  g_assert_cmpint (getrlimit (RLIMIT_NOFILE, &old), ==, 0);
  /* Lower the limit to the highest descriptor now open: no new one. */
  probe = dup (0);
  close (probe);
  low = old;
  low.rlim_cur = probe;
  g_atomic_int_set (&logged, 0);
  ndm_set_log_fn (count_log);
  g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &low), ==, 0);
  g_assert_cmpint (connect (fd, (struct sockaddr *) &sa, sizeof sa), ==, 0);
  g_usleep (1500 * 1000);
  g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &old), ==, 0);
  g_usleep (300 * 1000);                /* flushes the suppressed count */
  ndm_log_error ("end of test");
  ndm_set_log_fn (NULL);
  g_assert_cmpint (g_atomic_int_get (&logged), <, 200);
  /* Once there are descriptors again, the waiting client is served. */
  g_assert_cmpint (send (fd, "version\n", 8, 0), ==, 8);
  {
    g_autofree char *l = sock_line (fd);

    g_assert_true (g_str_has_prefix (l, "ok "));
  }
  close (fd);
  ndm_control_free (ctl);
  rmdir (dir);
  h_md_free (md);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/control/verbs/info-table-status",
                   test_info_table_status);
  h_add_command_errors ("/control/verbs/error", bad_commands,
                        G_N_ELEMENTS (bad_commands));
  g_test_add_func ("/control/verbs/help-and-version", test_help_and_version);
  g_test_add_func ("/control/verbs/stats", test_stats);
  g_test_add_func ("/control/json/every-verb", test_json_every_verb);
  g_test_add_func ("/control/json/utf8-name", test_json_utf8_name);
  g_test_add_func ("/control/spec/word-counts", test_spec_word_counts);
  g_test_add_func ("/control/spec/help-every-verb", test_spec_help);
  g_test_add_func ("/control/spec/options", test_spec_options);
  g_test_add_func ("/control/suspend/holds-new-requests",
                   test_suspend_holds_new_requests);
  g_test_add_func ("/control/suspend/drains", test_suspend_drains);
  g_test_add_func ("/control/reload/resume-swaps-bad-changes-nothing",
                   test_reload_resume);
  g_test_add_func ("/control/reload/resize-refused-with-clients",
                   test_resize_rule);
  g_test_add_func ("/control/suspend/noflush-requeue-onto-new-table",
                   test_noflush_holds_requeue_onto_new_table);
  g_test_add_func ("/control/wait/event", test_wait_event);
  g_test_add_func ("/control/suspend/noflush-onto-smaller-table",
                   test_noflush_onto_smaller_table);
  g_test_add_func ("/control/suspend/noflush-flush-onto-new-table",
                   test_noflush_flush_onto_new_table);
  g_test_add_func ("/control/r13/client-thread-refused",
                   test_control_client_thread_refused);
  g_test_add_func ("/control/r13/accept-emfile-backs-off",
                   test_control_accept_emfile_backs_off);
  return g_test_run ();
}
