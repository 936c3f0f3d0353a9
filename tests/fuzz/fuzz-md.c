/* SPDX-License-Identifier: BSD-3-Clause */
/* The fuzzers' mapped device and the checks every state of it must pass:
 * every printer answers, and the `table` output is a table that loads
 * back to itself.
 *
 * Thread model: the fuzzing thread, except the log function, which runs
 * on whichever thread logs.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "nbd-dm/control.h"
#include "fuzz-support.h"

/* A request that gives up after rounds that started nothing was spinning
 * (R13): the core's backstop ends it, and the fuzzer calls it a fault.
 * Other messages are expected (error segments log their errors) and only
 * cost time.
 */
static void
fuzz_log (enum ndm_log_level level, const char *msg)
{
  if (strstr (msg, "rounds that started nothing") != NULL) {
    fprintf (stderr, "fuzz: a request spun: %s\n", msg);
    abort ();
  }
}

void
fuzz_init (void)
{
  static bool done;

  if (done)
    return;
  done = true;
  ndm_set_log_fn (fuzz_log);
  /* The core reports broken invariants (a target failing without an
   * error, a ghost freed with quarantined ranges) as criticals.
   */
  g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
}

struct ndm_md *
fuzz_md_new (void)
{
  struct ndm_config cfg;

  ndm_config_init (&cfg);
  cfg.device_class = &fuzz_device_class;
  /* Short enough that held I/O (queue_if_no_path, no_path_retry, R10)
   * ends within an input's time, long enough to be held at all.
   */
  cfg.checker_interval_ms = 5;
  cfg.no_path_timeout_ms = 5;
  cfg.fence_timeout_ms = 5;
  cfg.flap_window_ms = 20;
  cfg.flap_damping_ms = 10;
  cfg.reconnect_ms = 5;
  return ndm_md_new (&cfg);
}

static GString *
command (struct ndm_md *md, const char *verb, const char *option)
{
  char *argv[] = { (char *) verb, (char *) option, NULL };
  GString *out = g_string_new (NULL);
  GError *err = NULL;

  if (ndm_md_command (md, option != NULL ? 2 : 1, argv, out, &err) == -1) {
    fprintf (stderr, "fuzz: '%s %s' failed: %s\n", verb,
             option != NULL ? option : "", err->message);
    abort ();
  }
  return out;
}

/* verb --json: one line, valid UTF-8 whatever bytes the table held, one
 * JSON object opening with "version" (nbd-dmsetup(8), JSON).
 */
static void
check_json (struct ndm_md *md, const char *verb)
{
  g_autoptr (GString) out = command (md, verb, "--json");
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GList) members = NULL;
  GError *err = NULL;
  JsonNode *root;

  if (!g_utf8_validate (out->str, out->len, NULL) ||
      strchr (out->str, '\n') != out->str + out->len - 1 ||
      !json_parser_load_from_data (parser, out->str, out->len, &err) ||
      !JSON_NODE_HOLDS_OBJECT (root = json_parser_get_root (parser)) ||
      (members = json_object_get_members (json_node_get_object (root)))
      == NULL || strcmp (members->data, "version") != 0) {
    fprintf (stderr, "fuzz: '%s --json' is not one line of valid JSON "
             "opening with \"version\" (%s):\n%s", verb,
             err != NULL ? err->message : "", out->str);
    abort ();
  }
}

char *
fuzz_check_printers (struct ndm_md *md, bool all)
{
  /* Not stats: it prints 32 latency buckets a counter class for every
   * target and device, costs more than the rest of an input, and is
   * the same code whatever the table; the control fuzzer sends it.
   */
  static const char *const verbs[] = { "info", "status" };
  g_autoptr (GString) direct = g_string_new (NULL);
  GString *table = command (md, "table", NULL);
  size_t i;

  g_string_free (command (md, "status", NULL), TRUE);
  if (!all)
    return g_string_free (table, FALSE);
  /* The plugin prints with ndm_md_table; the control socket with the
   * command: one table.
   */
  ndm_md_table (md, direct);
  if (strcmp (direct->str, table->str) != 0) {
    fprintf (stderr, "fuzz: ndm_md_table and 'table' differ:\n%s---\n%s",
             direct->str, table->str);
    abort ();
  }
  ndm_md_status (md, direct);
  check_json (md, "table");
  for (i = 0; i < G_N_ELEMENTS (verbs); i++) {
    g_string_free (command (md, verbs[i], NULL), TRUE);
    check_json (md, verbs[i]);
  }
  return g_string_free (table, FALSE);
}

void
fuzz_check_round_trip (const char *table_text, uint64_t size)
{
  unsigned before = fuzz_device_enter_md ();
  struct ndm_md *md = fuzz_md_new ();
  GError *err = NULL;
  g_autofree char *again = NULL;

  if (ndm_md_load (md, table_text, &err) == -1) {
    fprintf (stderr, "fuzz: the table printed does not load: %s\n%s",
             err->message, table_text);
    abort ();
  }
  again = fuzz_check_printers (md, false);
  if (strcmp (again, table_text) != 0 || ndm_md_get_size (md) != size) {
    fprintf (stderr, "fuzz: the table printed reloads as another one "
             "(%" PRIu64 " bytes, then %" PRIu64 "):\n%s---\n%s", size,
             ndm_md_get_size (md), table_text, again);
    abort ();
  }
  ndm_md_free (md);
  fuzz_device_leave_md (before);
}

char *
fuzz_split_requests (char *text)
{
  char *mark;

  if (strncmp (text, "%%\n", 3) == 0 || strcmp (text, "%%") == 0)
    mark = text;
  else if ((mark = strstr (text, "\n%%\n")) != NULL ||
           ((mark = strstr (text, "\n%%")) != NULL && mark[3] == '\0'))
    mark++;
  else
    return NULL;
  *mark = '\0';
  return mark[2] == '\0' ? mark + 2 : mark + 3;
}
