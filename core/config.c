/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the tuning keys, in one table.
 *
 * Each row is one key of nbdkit-dm-plugin(1): its name, its kind, the
 * field of struct ndm_config it sets, its range and default in the unit
 * the user writes, and its --help text.  ndm_config_init (the defaults),
 * ndm_config_set (the parser) and ndm_config_help (--help) read only
 * the table; the /config/man tests check the man page against it.  How a
 * kind's values are written, stored and shown is in the kinds table below
 * it, one row per kind.  Sizes and booleans are read by the front end's
 * parsers (cfg->parse_size, cfg->parse_bool: nbdkit's in the plugin), so
 * they are written as for every other key of the server; the core checks
 * the range and stores the number.
 *
 * Thread model: any thread; nothing here keeps state.
 */
#include <stddef.h>
#include <string.h>

#include "core.h"
#include "config.h"
#include "log.h"

#define FIELD(f)                                      \
  .offset = offsetof (struct ndm_config, f),          \
  .size = sizeof ((struct ndm_config *) NULL)->f

/* Seconds in a day, an hour: the longest timeouts, whose milliseconds
 * still fit an unsigned.
 */
#define DAY_S  86400
#define HOUR_S 3600

const struct ndm_config_key ndm_config_keys[] = {
  { .name = "name", .kind = NDM_CONFIG_STRING, FIELD (name),
    .min = 1, .max = sizeof ((struct ndm_config *) NULL)->name - 1,
    .def_string = "nbd-dm",
    .help = "The device's name in nbd-dmsetup info" },
  { .name = "metrics", .kind = NDM_CONFIG_STRING, FIELD (metrics),
    .min = 0, .max = sizeof ((struct ndm_config *) NULL)->metrics - 1,
    .def_string = "", .value_name = "ADDR",
    .help = "Serve the statistics over HTTP (GET /metrics, OpenMetrics) "
            "at a Unix socket path (with a '/') or IP:PORT" },
  { .name = "connections", .kind = NDM_CONFIG_COUNT, FIELD (connections),
    .min = 1, .max = 64, .def = 2,
    .help = "Connections per device that allows multi-conn" },
  { .name = "max-inflight", .kind = NDM_CONFIG_SIZE, FIELD (max_inflight),
    .min = 1, .max = UINT64_MAX, .def = 256 * NDM_MIB,
    .help = "Bytes of data in flight to devices before new requests wait" },
  { .name = "max-bounce", .kind = NDM_CONFIG_SIZE, FIELD (max_bounce),
    .min = 1, .max = UINT64_MAX, .def = 64 * NDM_MIB,
    .help = "Bytes of bounce buffers for unaligned I/O before requests "
            "wait" },
  { .name = "resync-rate", .kind = NDM_CONFIG_RATE, FIELD (resync_rate),
    .min = 0, .max = UINT64_MAX, .def = 0,
    .help = "Mirror: bytes per second that resync, repair and verify read "
            "from the legs, for every mirror; 0: no cap" },
  { .name = "connect-timeout", .kind = NDM_CONFIG_SECONDS,
    FIELD (connect_timeout_ms), .min = 1, .max = HOUR_S, .def = 10,
    .help = "Give up connecting to a device" },
  { .name = "reconnect-delay", .kind = NDM_CONFIG_MILLISECONDS,
    FIELD (reconnect_ms), .min = 1, .max = HOUR_S * 1000, .def = 1000,
    .help = "Between attempts to reconnect a lost device" },
  { .name = "checker-interval", .kind = NDM_CONFIG_SECONDS,
    FIELD (checker_interval_ms), .min = 1, .max = DAY_S, .def = 2,
    .help = "Multipath: how often every path is probed" },
  { .name = "no-path-timeout", .kind = NDM_CONFIG_SECONDS,
    FIELD (no_path_timeout_ms), .min = 0, .max = DAY_S, .def = 20,
    .help = "Multipath: queued I/O fails after waiting this long for a "
            "path; 0: no limit" },
  { .name = "flap-window", .kind = NDM_CONFIG_SECONDS,
    FIELD (flap_window_ms), .min = 0, .max = DAY_S, .def = 60,
    .help = "Multipath: a path failing again this soon after it came back "
            "flaps" },
  { .name = "flap-damping", .kind = NDM_CONFIG_SECONDS,
    FIELD (flap_damping_ms), .min = 0, .max = DAY_S, .def = 30,
    .help = "Multipath: a flapping path is reinstated only after this "
            "long" },
  { .name = "fence-timeout", .kind = NDM_CONFIG_SECONDS,
    FIELD (fence_timeout_ms), .min = 1, .max = DAY_S,
    .def = NDM_DEFAULT_FENCE_TIMEOUT_MS / 1000,
    .help = "How long a write waits for the server of a cut connection to "
            "close it, when a write it had may still land there; then it "
            "fails" },
  { .name = "io-timeout", .kind = NDM_CONFIG_SECONDS,
    FIELD (io_timeout_ms), .min = 0, .max = DAY_S, .def = 0,
    .help = "Fence a device connection that has commands out and answers "
            "nothing for this long; 0: wait for ever" },
  { .name = "structured-replies", .kind = NDM_CONFIG_BOOL,
    FIELD (structured_replies), .min = 0, .max = 1, .def = false,
    .help = "Use them on the data connections too; the first connection "
            "of each device always does, for block status, and the others "
            "read faster without" },
};

const size_t ndm_config_nr_keys = G_N_ELEMENTS (ndm_config_keys);

/* Binary suffixes, largest first: the default of a size is shown with
 * the largest that divides it ("256M"), a form every size syntax reads.
 */
static const struct {
  char suffix;
  uint64_t mult;
} size_units[] = {
  { 'G', NDM_GIB }, { 'M', NDM_MIB }, { 'K', NDM_KIB },
};

/* The front end reads sizes (cfg->parse_size): nbd-dm's keys take what
 * every other key of the server takes.
 */
static bool
front_end_size (const struct ndm_config *cfg, const char *value,
                uint64_t *out)
{
  int64_t v;

  if (cfg->parse_size == NULL)
    return false;
  v = cfg->parse_size (value);
  if (v < 0)
    return false;
  *out = v;
  return true;
}

static int
parse_size (const struct ndm_config *cfg, const struct ndm_config_key *key,
            const char *value, uint64_t *out, GError **err)
{
  uint64_t v;

  if (!front_end_size (cfg, value, &v) || v < key->min || v > key->max) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG,
                 "%s: '%s' is not a size: expected a positive number of "
                 "bytes with an optional suffix (64k, 256M, 1T)", key->name,
                 value);
    return -1;
  }
  *out = v;
  return 0;
}

bool
ndm_config_parse_rate (const struct ndm_config *cfg, const char *value,
                       uint64_t *out)
{
  g_autofree char *size = NULL;

  if (g_str_has_suffix (value, "/s"))
    size = g_strndup (value, strlen (value) - strlen ("/s"));
  return front_end_size (cfg, size != NULL ? size : value, out);
}

/* "64M/s", "64M", "0": bytes per second. */
static int
parse_rate (const struct ndm_config *cfg, const struct ndm_config_key *key,
            const char *value, uint64_t *out, GError **err)
{
  uint64_t v;

  if (!ndm_config_parse_rate (cfg, value, &v) || v < key->min ||
      v > key->max) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG,
                 "%s: '%s' is not a rate: expected a size per second "
                 "(64M, 64M/s) or 0", key->name, value);
    return -1;
  }
  *out = v;
  return 0;
}

static int
parse_number (const struct ndm_config *cfg, const struct ndm_config_key *key,
              const char *value, uint64_t *out, GError **err)
{
  if (!g_ascii_string_to_unsigned (value, 10, key->min, key->max, out,
                                   NULL)) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG,
                 "%s: '%s' is not a number from %" PRIu64 " to %" PRIu64,
                 key->name, value, key->min, key->max);
    return -1;
  }
  return 0;
}

/* The front end reads booleans (cfg->parse_bool). */
static int
parse_bool (const struct ndm_config *cfg, const struct ndm_config_key *key,
            const char *value, uint64_t *out, GError **err)
{
  int v = cfg->parse_bool != NULL ? cfg->parse_bool (value) : -1;

  if (v < 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG,
                 "%s: '%s' is not a boolean: expected yes or no (true, "
                 "on, 1; false, off, 0)", key->name, value);
    return -1;
  }
  *out = v != 0;
  return 0;
}

/* How each kind of value is written (parse: NULL for a string, which is
 * copied, not converted), how much of it the field holds (scale: field
 * units per unit the user writes), the field's size (0: per key) and the
 * unit the parsed value is logged in (NULL: a boolean, logged as one).
 */
static const struct {
  const char *value_name;
  int (*parse) (const struct ndm_config *cfg,
                const struct ndm_config_key *key, const char *value,
                uint64_t *out, GError **err);
  unsigned scale;
  size_t field_size;
  const char *unit;
} kinds[] = {
  [NDM_CONFIG_STRING]       = { "NAME", NULL,         1,    0, "" },
  [NDM_CONFIG_COUNT]        = { "N",    parse_number, 1,    sizeof (unsigned),
                                "" },
  [NDM_CONFIG_SIZE]         = { "SIZE", parse_size,   1,    sizeof (uint64_t),
                                " bytes" },
  [NDM_CONFIG_RATE]         = { "RATE", parse_rate,   1,    sizeof (uint64_t),
                                " bytes/s" },
  [NDM_CONFIG_SECONDS]      = { "SECS", parse_number, 1000, sizeof (unsigned),
                                " s" },
  [NDM_CONFIG_MILLISECONDS] = { "MS",   parse_number, 1,    sizeof (unsigned),
                                " ms" },
  [NDM_CONFIG_BOOL]         = { "BOOL", parse_bool,   1,    sizeof (bool),
                                NULL },
};

const char *
ndm_config_kind_value_name (enum ndm_config_kind kind)
{
  return kinds[kind].value_name;
}

const char *
ndm_config_key_value_name (const struct ndm_config_key *key)
{
  return key->value_name != NULL ? key->value_name
    : kinds[key->kind].value_name;
}

size_t
ndm_config_kind_field_size (enum ndm_config_kind kind)
{
  return kinds[kind].field_size;
}

/* v is in the unit the user writes, and in the key's range. */
static void
config_store (struct ndm_config *cfg, const struct ndm_config_key *key,
              uint64_t v)
{
  char *field = (char *) cfg + key->offset;

  switch (key->kind) {
  case NDM_CONFIG_SIZE:
  case NDM_CONFIG_RATE:
    *(uint64_t *) field = v;
    break;
  case NDM_CONFIG_COUNT:
  case NDM_CONFIG_SECONDS:
  case NDM_CONFIG_MILLISECONDS:
    *(unsigned *) field = v * kinds[key->kind].scale;
    break;
  case NDM_CONFIG_BOOL:
    *(bool *) field = v != 0;
    break;
  case NDM_CONFIG_STRING:
    g_assert_not_reached ();    /* copied by config_set_string */
  }
}

static int
config_set_string (struct ndm_config *cfg, const struct ndm_config_key *key,
                   const char *value, GError **err)
{
  size_t len = strlen (value);

  if (len < key->min || len > key->max || len >= key->size ||
      strpbrk (value, " \t\n") != NULL) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG,
                 "%s: '%s': expected %" PRIu64 " to %" PRIu64
                 " characters, no blanks", key->name, value, key->min,
                 key->max);
    return -1;
  }
  g_strlcpy ((char *) cfg + key->offset, value, key->size);
  return 0;
}

const struct ndm_config_key *
ndm_config_key_find (const char *name)
{
  size_t i;

  for (i = 0; i < ndm_config_nr_keys; i++)
    if (strcmp (ndm_config_keys[i].name, name) == 0)
      return &ndm_config_keys[i];
  return NULL;
}

void
ndm_config_init (struct ndm_config *cfg)
{
  size_t i;

  memset (cfg, 0, sizeof *cfg);
  for (i = 0; i < ndm_config_nr_keys; i++) {
    const struct ndm_config_key *key = &ndm_config_keys[i];

    if (key->kind == NDM_CONFIG_STRING)
      g_strlcpy ((char *) cfg + key->offset, key->def_string, key->size);
    else
      config_store (cfg, key, key->def);
  }
}

int
ndm_config_set (struct ndm_config *cfg, const char *name, const char *value,
                GError **err)
{
  const struct ndm_config_key *key = ndm_config_key_find (name);
  uint64_t v;

  if (key == NULL)
    return 0;
  if (key->kind == NDM_CONFIG_STRING)
    return config_set_string (cfg, key, value, err) == -1 ? -1 : 1;
  if (kinds[key->kind].parse (cfg, key, value, &v, err) == -1)
    return -1;
  config_store (cfg, key, v);
  /* What the syntax made of the value: "1T" is a number here. */
  if (kinds[key->kind].unit == NULL)
    ndm_log_info ("config: %s=%s: %s", key->name, value,
                  v ? "true" : "false");
  else
    ndm_log_info ("config: %s=%s: %" PRIu64 "%s", key->name, value, v,
                  kinds[key->kind].unit);
  return 1;
}

void
ndm_config_key_format_default (const struct ndm_config_key *key,
                               GString *out)
{
  size_t i;

  switch (key->kind) {
  case NDM_CONFIG_STRING:
    g_string_append (out, key->def_string[0] ? key->def_string : "none");
    return;
  case NDM_CONFIG_BOOL:
    g_string_append (out, key->def ? "true" : "false");
    return;
  case NDM_CONFIG_SIZE:
  case NDM_CONFIG_RATE:
    for (i = 0; key->def != 0 && i < G_N_ELEMENTS (size_units); i++)
      if (key->def % size_units[i].mult == 0) {
        g_string_append_printf (out, "%" PRIu64 "%c%s",
                                key->def / size_units[i].mult,
                                size_units[i].suffix,
                                key->kind == NDM_CONFIG_RATE ? "/s" : "");
        return;
      }
    break;
  case NDM_CONFIG_COUNT:
  case NDM_CONFIG_SECONDS:
  case NDM_CONFIG_MILLISECONDS:
    break;
  }
  g_string_append_printf (out, "%" PRIu64, key->def);
}

/* nbdkit prints --help as it is: each key's text starts at HELP_COLUMN
 * (two spaces after a longer key=VALUE) and lines end by HELP_WIDTH.
 */
#define HELP_COLUMN 23
#define HELP_WIDTH  78

/* Lay out "key=VALUE" and the words after it; a word is never broken. */
static void
help_layout (GString *out, const char *key, const char *value_name,
             char **words)
{
  size_t start = out->len, col, pad, i;
  bool first = true;

  g_string_append_printf (out, "%s=%s", key, value_name);
  col = out->len - start;
  pad = col + 2 <= HELP_COLUMN ? HELP_COLUMN - col : 2;
  g_string_append_printf (out, "%*s", (int) pad, "");
  col += pad;
  for (i = 0; words[i] != NULL; i++) {
    size_t len = strlen (words[i]);

    if (len == 0)
      continue;
    if (!first && col + 1 + len > HELP_WIDTH) {
      g_string_append_printf (out, "\n%*s", HELP_COLUMN, "");
      col = HELP_COLUMN;
    }
    else if (!first) {
      g_string_append_c (out, ' ');
      col++;
    }
    g_string_append (out, words[i]);
    col += len;
    first = false;
  }
  g_string_append_c (out, '\n');
}

void
ndm_config_help_entry (GString *out, const char *key, const char *value_name,
                       const char *text)
{
  g_auto (GStrv) words = g_strsplit (text, " ", -1);

  help_layout (out, key, value_name, words);
}

/* Each key's help, then "(default D)." kept on one line. */
void
ndm_config_help (GString *out)
{
  g_autoptr (GString) def = g_string_new (NULL);
  size_t i;

  for (i = 0; i < ndm_config_nr_keys; i++) {
    const struct ndm_config_key *key = &ndm_config_keys[i];
    g_auto (GStrv) help = g_strsplit (key->help, " ", -1);
    g_autoptr (GPtrArray) words = g_ptr_array_new ();
    char **w;

    for (w = help; *w != NULL; w++)
      g_ptr_array_add (words, *w);
    g_string_assign (def, "(default ");
    ndm_config_key_format_default (key, def);
    g_string_append (def, ").");
    g_ptr_array_add (words, def->str);
    g_ptr_array_add (words, NULL);
    help_layout (out, key->name, ndm_config_key_value_name (key),
                 (char **) words->pdata);
  }
}
