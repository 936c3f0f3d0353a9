/* SPDX-License-Identifier: BSD-3-Clause */
/* Tuning keys: the table in core/config.c is consistent, its defaults are
 * the ones nbd-dm always had, each bad value has its own error case, and
 * --help and the man page (docs/nbdkit-dm-plugin.pod, "Tuning
 * parameters") list every key with the table's default and no other.
 * /table/config/keys (test-table.c) checks the common keys.  Sizes and
 * booleans are read by the front end's parsers: here the harness's
 * stand-in for nbdkit's; nbdkit's own syntax is tested through the plugin
 * (tests/integration/test-dm-key-syntax.sh).
 */
#include <string.h>

#include "core.h"
#include "config.h"
#include "harness.h"

static void
test_table_fields (void)
{
  size_t i, j;

  g_assert_cmpuint (ndm_config_nr_keys, >, 0);
  for (i = 0; i < ndm_config_nr_keys; i++) {
    const struct ndm_config_key *key = &ndm_config_keys[i];

    g_test_message ("key %s", key->name);
    for (j = 0; j < i; j++)
      g_assert_cmpstr (ndm_config_keys[j].name, !=, key->name);
    g_assert_true (ndm_config_key_find (key->name) == key);
    g_assert_cmpuint (key->offset + key->size, <=,
                      sizeof (struct ndm_config));
    g_assert_nonnull (ndm_config_kind_value_name (key->kind));
    g_assert_cmpuint (strlen (key->help), >, 0);
    g_assert_false (g_str_has_suffix (key->help, "."));
    g_assert_cmpuint (key->min, <=, key->max);
    if (key->kind == NDM_CONFIG_STRING) {
      g_assert_cmpuint (key->max, <, key->size);
      g_assert_cmpuint (strlen (key->def_string), >=, key->min);
      g_assert_cmpuint (strlen (key->def_string), <=, key->max);
    }
    else {
      g_assert_cmpuint (key->size, ==,
                        ndm_config_kind_field_size (key->kind));
      g_assert_cmpuint (key->def, >=, key->min);
      g_assert_cmpuint (key->def, <=, key->max);
    }
  }
  g_assert_null (ndm_config_key_find ("table"));
}

/* The defaults from before the table: a row that changes one shows here. */
static void
test_init_defaults (void)
{
  struct ndm_config cfg;

  memset (&cfg, 0xa5, sizeof cfg);
  ndm_config_init (&cfg);
  g_assert_cmpstr (cfg.name, ==, "nbd-dm");
  g_assert_cmpuint (cfg.connections, ==, 2);
  g_assert_cmpuint (cfg.max_inflight, ==, 256 << 20);
  g_assert_cmpuint (cfg.max_bounce, ==, 64 << 20);
  g_assert_cmpuint (cfg.connect_timeout_ms, ==, 10000);
  g_assert_cmpuint (cfg.reconnect_ms, ==, 1000);
  g_assert_cmpuint (cfg.io_timeout_ms, ==, 0);
  g_assert_cmpuint (cfg.fence_timeout_ms, ==, NDM_DEFAULT_FENCE_TIMEOUT_MS);
  g_assert_cmpuint (cfg.fence_timeout_ms, ==, 30000);
  g_assert_cmpuint (cfg.checker_interval_ms, ==, 2000);
  g_assert_cmpuint (cfg.flap_window_ms, ==, 60000);
  g_assert_cmpuint (cfg.flap_damping_ms, ==, 30000);
  g_assert_cmpuint (cfg.no_path_timeout_ms, ==, 20000);
  g_assert_false (cfg.structured_replies);
  g_assert_null (cfg.device_class);
  g_assert_null (cfg.extra_targets);
  g_assert_null (cfg.quitting);
}

/* Each kind: what the user writes, what the field holds. */
static void
test_set_kinds (void)
{
  struct ndm_config cfg;
  GError *err = NULL;

  h_config_init (&cfg);
  g_assert_cmpint (ndm_config_set (&cfg, "name", "vol0", &err), ==, 1);
  g_assert_cmpstr (cfg.name, ==, "vol0");
  g_assert_cmpint (ndm_config_set (&cfg, "name", "0123456789012345678901234"
                                   "56789012345678901234567890123456789012",
                                   &err), ==, 1);
  g_assert_cmpuint (strlen (cfg.name), ==, 63);
  g_assert_cmpint (ndm_config_set (&cfg, "checker-interval", "5", &err), ==,
                   1);
  g_assert_cmpuint (cfg.checker_interval_ms, ==, 5000);
  g_assert_cmpint (ndm_config_set (&cfg, "no-path-timeout", "0", &err), ==,
                   1);
  g_assert_cmpuint (cfg.no_path_timeout_ms, ==, 0);
  g_assert_cmpint (ndm_config_set (&cfg, "io-timeout", "86400", &err), ==,
                   1);
  g_assert_cmpuint (cfg.io_timeout_ms, ==, 86400000);
  g_assert_cmpint (ndm_config_set (&cfg, "reconnect-delay", "250", &err),
                   ==, 1);
  g_assert_cmpuint (cfg.reconnect_ms, ==, 250);
  g_assert_cmpint (ndm_config_set (&cfg, "max-inflight", "1k", &err), ==, 1);
  g_assert_cmpuint (cfg.max_inflight, ==, 1024);
  g_assert_cmpint (ndm_config_set (&cfg, "max-bounce", "2G", &err), ==, 1);
  g_assert_cmpuint (cfg.max_bounce, ==, UINT64_C (2) << 30);
  g_assert_cmpuint (cfg.resync_rate, ==, 0);
  g_assert_cmpint (ndm_config_set (&cfg, "resync-rate", "64M/s", &err), ==,
                   1);
  g_assert_cmpuint (cfg.resync_rate, ==, 64 << 20);
  g_assert_cmpint (ndm_config_set (&cfg, "resync-rate", "512k", &err), ==,
                   1);
  g_assert_cmpuint (cfg.resync_rate, ==, 512 << 10);
  g_assert_cmpint (ndm_config_set (&cfg, "resync-rate", "0", &err), ==, 1);
  g_assert_cmpuint (cfg.resync_rate, ==, 0);
  g_assert_cmpint (ndm_config_set (&cfg, "structured-replies", "ON", &err),
                   ==, 1);
  g_assert_true (cfg.structured_replies);
  g_assert_cmpint (ndm_config_set (&cfg, "structured-replies", "0", &err),
                   ==, 1);
  g_assert_false (cfg.structured_replies);
  g_assert_cmpint (ndm_config_set (&cfg, "structured-replies", "True",
                                   &err), ==, 1);
  g_assert_true (cfg.structured_replies);
  g_assert_cmpint (ndm_config_set (&cfg, "structured-replies", "no",
                                   &err), ==, 1);
  g_assert_false (cfg.structured_replies);
  g_assert_null (err);
}

/* What the front end's parsers were handed, and what they answer. */
static GPtrArray *seen;
static int64_t size_answer;

static int64_t
recording_size (const char *value)
{
  g_ptr_array_add (seen, g_strdup (value));
  return size_answer;
}

static int
recording_bool (const char *value)
{
  g_ptr_array_add (seen, g_strdup (value));
  return 1;
}

/* The core hands sizes and booleans to the front end as written (a rate
 * without its "/s"), and stores what it answers, range-checked.
 */
static void
test_set_front_end_parsers (void)
{
  struct ndm_config cfg;
  GError *err = NULL;

  seen = g_ptr_array_new_with_free_func (g_free);
  ndm_config_init (&cfg);
  cfg.parse_size = recording_size;
  cfg.parse_bool = recording_bool;
  size_answer = UINT64_C (1) << 40;
  g_assert_cmpint (ndm_config_set (&cfg, "max-inflight", "1T", &err), ==, 1);
  g_assert_cmpuint (cfg.max_inflight, ==, UINT64_C (1) << 40);
  size_answer = 512;
  g_assert_cmpint (ndm_config_set (&cfg, "resync-rate", "1s/s", &err), ==,
                   1);
  g_assert_cmpuint (cfg.resync_rate, ==, 512);
  g_assert_cmpint (ndm_config_set (&cfg, "structured-replies", "y", &err),
                   ==, 1);
  g_assert_true (cfg.structured_replies);
  g_assert_no_error (err);
  g_assert_cmpuint (seen->len, ==, 3);
  g_assert_cmpstr (seen->pdata[0], ==, "1T");
  g_assert_cmpstr (seen->pdata[1], ==, "1s");
  g_assert_cmpstr (seen->pdata[2], ==, "y");

  /* The parser's -1, and a size it reads but the key's range refuses. */
  size_answer = -1;
  g_assert_cmpint (ndm_config_set (&cfg, "max-bounce", "1X", &err), ==, -1);
  g_assert_cmpstr (err->message, ==, "max-bounce: '1X' is not a size: "
                   "expected a positive number of bytes with an optional "
                   "suffix (64k, 256M, 1T)");
  g_clear_error (&err);
  size_answer = 0;
  g_assert_cmpint (ndm_config_set (&cfg, "max-bounce", "0k", &err), ==, -1);
  g_assert_nonnull (strstr (err->message, "max-bounce: '0k' is not a size"));
  g_clear_error (&err);
  g_assert_cmpuint (cfg.max_bounce, ==, 64 << 20);
  g_ptr_array_unref (seen);
}

/* Without a front end's parser, sizes and booleans are refused, naming
 * the key: the core has no syntax of its own for them.
 */
static void
test_set_no_parsers (void)
{
  struct ndm_config cfg;
  GError *err = NULL;
  uint64_t rate;

  ndm_config_init (&cfg);
  g_assert_null (cfg.parse_size);
  g_assert_null (cfg.parse_bool);
  g_assert_cmpint (ndm_config_set (&cfg, "max-inflight", "4096", &err), ==,
                   -1);
  g_assert_nonnull (strstr (err->message, "max-inflight: '4096'"));
  g_clear_error (&err);
  g_assert_cmpint (ndm_config_set (&cfg, "structured-replies", "1", &err),
                   ==, -1);
  g_assert_nonnull (strstr (err->message, "structured-replies: '1'"));
  g_clear_error (&err);
  g_assert_false (ndm_config_parse_rate (&cfg, "0", &rate));
  g_assert_cmpint (ndm_config_set (&cfg, "connections", "4", &err), ==, 1);
  g_assert_no_error (err);
}

static const struct bad_value {
  const char *key, *value, *want;
} bad_values[] = {
  { "name", "", "name: '': expected 1 to 63 characters, no blanks" },
  { "name", "a b", "name: 'a b': expected 1 to 63 characters, no blanks" },
  { "name", "0123456789012345678901234567890123456789012345678901234567890123",
    "name: '0123456789012345678901234567890123456789012345678901234567890123"
    "': expected 1 to 63 characters, no blanks" },
  { "connections", "65", "connections: '65' is not a number from 1 to 64" },
  { "connections", "+2", "connections: '+2' is not a number from 1 to 64" },
  { "max-inflight", "0", "max-inflight: '0' is not a size: expected a "
    "positive number of bytes with an optional suffix (64k, 256M, 1T)" },
  { "max-inflight", "1Q", "max-inflight: '1Q' is not a size: expected a "
    "positive number of bytes with an optional suffix (64k, 256M, 1T)" },
  { "max-bounce", "17179869184G", "max-bounce: '17179869184G' is not a "
    "size: expected a positive number of bytes with an optional suffix "
    "(64k, 256M, 1T)" },
  { "resync-rate", "10 parsecs", "resync-rate: '10 parsecs' is not a rate: "
    "expected a size per second (64M, 64M/s) or 0" },
  { "resync-rate", "64M/h", "resync-rate: '64M/h' is not a rate: "
    "expected a size per second (64M, 64M/s) or 0" },
  { "resync-rate", "/s", "resync-rate: '/s' is not a rate: "
    "expected a size per second (64M, 64M/s) or 0" },
  { "resync-rate", "-1M/s", "resync-rate: '-1M/s' is not a rate: "
    "expected a size per second (64M, 64M/s) or 0" },
  { "resync-rate", "17179869184G/s", "resync-rate: '17179869184G/s' is not "
    "a rate: expected a size per second (64M, 64M/s) or 0" },
  { "connect-timeout", "3601",
    "connect-timeout: '3601' is not a number from 1 to 3600" },
  { "reconnect-delay", "1.5",
    "reconnect-delay: '1.5' is not a number from 1 to 3600000" },
  { "checker-interval", "0",
    "checker-interval: '0' is not a number from 1 to 86400" },
  { "no-path-timeout", "86401",
    "no-path-timeout: '86401' is not a number from 0 to 86400" },
  { "flap-window", "-1", "flap-window: '-1' is not a number from 0 to 86400" },
  { "flap-damping", "soon",
    "flap-damping: 'soon' is not a number from 0 to 86400" },
  { "fence-timeout", "0", "fence-timeout: '0' is not a number from 1 to 86400" },
  { "io-timeout", "", "io-timeout: '' is not a number from 0 to 86400" },
  { "structured-replies", "maybe", "structured-replies: 'maybe' is not a "
    "boolean: expected yes or no (true, on, 1; false, off, 0)" },
  { "structured-replies", "", "structured-replies: '' is not a "
    "boolean: expected yes or no (true, on, 1; false, off, 0)" },
};

/* A bad value fails with its message and leaves the config as it was. */
static void
test_set_bad_value (gconstpointer data)
{
  const struct bad_value *bad = data;
  struct ndm_config cfg, before;
  GError *err = NULL;

  h_config_init (&cfg);
  before = cfg;
  g_assert_cmpint (ndm_config_set (&cfg, bad->key, bad->value, &err), ==,
                   -1);
  g_assert_error (err, NDM_ERROR, NDM_ERROR_CONFIG);
  g_assert_cmpstr (err->message, ==, bad->want);
  g_assert_cmpmem (&cfg, sizeof cfg, &before, sizeof before);
  g_clear_error (&err);
}

static char *
key_default (const struct ndm_config_key *key)
{
  GString *out = g_string_new (NULL);

  ndm_config_key_format_default (key, out);
  return g_string_free (out, FALSE);
}

/* Each key has its entry in --help, with the table's default. */
static void
test_help_every_key (void)
{
  g_autoptr (GString) help = g_string_new (NULL);
  g_auto (GStrv) lines = NULL;
  size_t i, n;

  ndm_config_help (help);
  lines = g_strsplit (help->str, "\n", -1);
  for (n = 0; lines[n] != NULL; n++)
    g_assert_cmpuint (strlen (lines[n]), <=, 78);
  for (i = 0; i < ndm_config_nr_keys; i++) {
    const struct ndm_config_key *key = &ndm_config_keys[i];
    g_autofree char *head = g_strdup_printf ("%s=%s ", key->name,
      ndm_config_key_value_name (key));
    g_autofree char *def = key_default (key);
    g_autofree char *want = g_strdup_printf ("(default %s).", def);
    g_autoptr (GString) entry = g_string_new (NULL);

    for (n = 0; lines[n] != NULL && !g_str_has_prefix (lines[n], head); n++)
      ;
    g_assert_nonnull (lines[n]);
    g_string_append (entry, lines[n]);
    for (n++; lines[n] != NULL && lines[n][0] == ' '; n++)
      g_string_append (entry, lines[n]);
    g_assert_true (g_str_has_suffix (entry->str, want));
  }
}

/* The man page's "Tuning parameters" list: key -> its text, POD's
 * formatting codes dropped and blanks squeezed.
 */
static GHashTable *
man_tuning_items (void)
{
  g_autofree char *pod = NULL;
  g_auto (GStrv) lines = NULL;
  g_autoptr (GError) err = NULL;
  GHashTable *items = g_hash_table_new_full (g_str_hash, g_str_equal,
                                             g_free, g_free);
  g_autoptr (GString) text = g_string_new (NULL);
  g_autofree char *key = NULL;
  bool in_section = false;
  size_t i;

  g_assert_true (g_file_get_contents (NDM_MAN_PAGE, &pod, NULL, &err));
  lines = g_strsplit (pod, "\n", -1);
  for (i = 0; lines[i] != NULL; i++) {
    const char *l = lines[i];
    bool item = g_str_has_prefix (l, "=item ");

    if (item || g_str_has_prefix (l, "=back") ||
        g_str_has_prefix (l, "=head")) {
      if (key != NULL) {
        g_auto (GStrv) words = g_strsplit_set (text->str, " \t", -1);
        g_auto (GStrv) kept = g_new0 (char *, g_strv_length (words) + 1);
        size_t w, k = 0;

        for (w = 0; words[w] != NULL; w++)
          if (words[w][0] != '\0')
            kept[k++] = g_strdup (words[w]);
        g_assert_false (g_hash_table_contains (items, key));
        g_hash_table_insert (items, g_steal_pointer (&key),
                             g_strjoinv (" ", kept));
      }
      g_string_truncate (text, 0);
    }
    if (g_str_has_prefix (l, "=head"))
      in_section = strcmp (l, "=head2 Tuning parameters") == 0;
    else if (in_section && item && g_str_has_prefix (l, "=item B<")) {
      const char *end = strstr (l, "=>");

      g_assert_nonnull (end);
      key = g_strndup (l + strlen ("=item B<"),
                       end - l - strlen ("=item B<"));
    }
    else if (key != NULL) {
      const char *p;

      for (p = l; *p != '\0'; p++)
        if (g_ascii_isupper (p[0]) && p[1] == '<')
          p++;
        else if (*p != '>')
          g_string_append_c (text, *p);
      g_string_append_c (text, ' ');
    }
  }
  g_assert_cmpuint (g_hash_table_size (items), >, 0);
  return items;
}

/* The man page's default: the word after "(default", up to ")", ",",
 * ";", ":" or a blank.
 */
static char *
man_default (const char *text)
{
  const char *p = strstr (text, "(default ");

  if (p == NULL)
    return NULL;
  p += strlen ("(default ");
  return g_strndup (p, strcspn (p, "),;: "));
}

static void
test_man_every_key_with_its_default (void)
{
  g_autoptr (GHashTable) items = man_tuning_items ();
  size_t i;

  for (i = 0; i < ndm_config_nr_keys; i++) {
    const struct ndm_config_key *key = &ndm_config_keys[i];
    const char *text = g_hash_table_lookup (items, key->name);
    g_autofree char *def = key_default (key);
    g_autofree char *man = NULL;

    if (text == NULL) {
      g_test_message ("%s: no '=item B<%s=>' under \"Tuning parameters\" "
                      "in %s", key->name, key->name, NDM_MAN_PAGE);
      g_test_fail ();
      continue;
    }
    man = man_default (text);
    if (g_strcmp0 (man, def) != 0) {
      g_test_message ("%s: the man page says (default %s), the table %s",
                      key->name, man != NULL ? man : "nothing", def);
      g_test_fail ();
    }
  }
}

static void
test_man_no_key_the_table_lacks (void)
{
  g_autoptr (GHashTable) items = man_tuning_items ();
  GHashTableIter iter;
  gpointer key;

  g_hash_table_iter_init (&iter, items);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    if (ndm_config_key_find (key) == NULL) {
      g_test_message ("%s: in the man page, not in core/config.c",
                      (const char *) key);
      g_test_fail ();
    }
}

int
main (int argc, char *argv[])
{
  size_t i;

  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/config/table/fields", test_table_fields);
  g_test_add_func ("/config/init/defaults", test_init_defaults);
  g_test_add_func ("/config/set/kinds", test_set_kinds);
  g_test_add_func ("/config/set/front-end-parsers",
                   test_set_front_end_parsers);
  g_test_add_func ("/config/set/no-parsers", test_set_no_parsers);
  for (i = 0; i < G_N_ELEMENTS (bad_values); i++) {
    g_autofree char *path = g_strdup_printf ("/config/set/error/%02zu-%s",
                                             i + 1, bad_values[i].key);

    g_test_add_data_func (path, &bad_values[i], test_set_bad_value);
  }
  g_test_add_func ("/config/help/every-key", test_help_every_key);
  g_test_add_func ("/config/man/every-key-with-its-default",
                   test_man_every_key_with_its_default);
  g_test_add_func ("/config/man/no-key-the-table-lacks",
                   test_man_no_key_the_table_lacks);
  return g_test_run ();
}
