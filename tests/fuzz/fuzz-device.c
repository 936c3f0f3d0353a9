/* SPDX-License-Identifier: BSD-3-Clause */
/* The fuzzers' device class: any device word of a fuzzed table becomes a
 * fake device (tests/unit/fake-device.c), with its limits read from the
 * word's query and clamped (fuzz-support.h lists the keys).  The fake
 * itself trusts its tests (it asserts on a bad mode, allocates any size),
 * so the fuzzed word never reaches it: this file writes the fake:// URI.
 *
 * Thread model: open runs on the control path (table construction), on
 * the fuzzing thread; reset between inputs.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "fake-device.h"
#include "fuzz-support.h"

/* Enough for every table the corpora hold; more opens fail as an
 * unreachable device would, which the parser must take too.
 */
#define FUZZ_MAX_DEVICES 32
#define FUZZ_MAX_SIZE    (8u << 20)
#define FUZZ_MAX_BLOCK   (64u << 10)
#define FUZZ_MAX_DATA    (64u << 20)

static unsigned opened;             /* by the mapped device being built */
static unsigned serial;             /* fakes since the last reset */
static GHashTable *names;           /* name as written -> fake name */

/* A number with an optional K or M; out of range or not a number: dflt. */
static uint64_t
query_u64 (GHashTable *q, const char *key, uint64_t dflt, uint64_t max)
{
  const char *v = g_hash_table_lookup (q, key);
  guint64 n;
  char *end;

  if (v == NULL || !g_ascii_isdigit (v[0]))
    return dflt;
  n = g_ascii_strtoull (v, &end, 10);
  if (n > max)
    return dflt;
  if ((*end == 'K' || *end == 'k') && n <= max >> 10)
    n <<= 10;
  else if ((*end == 'M' || *end == 'm') && n <= max >> 20)
    n <<= 20;
  return n <= max ? n : dflt;
}

/* A block size NBD allows: a power of two (here up to 64 KiB). */
static uint64_t
query_block (GHashTable *q, const char *key)
{
  uint64_t n = query_u64 (q, key, 0, FUZZ_MAX_BLOCK);

  return n != 0 && (n & (n - 1)) == 0 ? n : 0;
}

static GHashTable *
parse_query (const char *query)
{
  GHashTable *q = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                         g_free);
  g_auto (GStrv) kv = g_strsplit (query, "&", -1);
  unsigned i;

  for (i = 0; kv[i] != NULL; i++) {
    char *eq = strchr (kv[i], '=');

    if (eq != NULL)
      g_hash_table_replace (q, g_strndup (kv[i], eq - kv[i]),
                            g_strdup (eq + 1));
    else if (strcmp (kv[i], "noext") == 0)
      g_hash_table_replace (q, g_strdup ("extents"), g_strdup ("0"));
    else
      g_hash_table_replace (q, g_strdup (kv[i]), g_strdup ("1"));
  }
  return q;
}

static void
add_flag (GString *uri, GHashTable *q, const char *key)
{
  if (g_hash_table_lookup (q, key) != NULL)
    g_string_append_printf (uri, "&%s=%u", key,
                            query_u64 (q, key, 1, 1) != 0);
}

static struct ndm_device *
fuzz_open (const char *uri, const struct ndm_config *cfg, bool tolerant,
           GError **err)
{
  static const char *const flags[] = {
    "ro", "flush", "fua", "trim", "zero", "fastzero", "cache", "extents",
    "multiconn",
  };
  const char *sep = strstr (uri, "://");
  const char *name_start = sep != NULL ? sep + 3 : uri;
  const char *qm = strchr (name_start, '?');
  g_autofree char *name = qm != NULL ?
    g_strndup (name_start, qm - name_start) : g_strdup (name_start);
  g_autoptr (GHashTable) q = parse_query (qm != NULL ? qm + 1 : "");
  g_autoptr (GString) fake = g_string_new ("fake://");
  g_autofree char *fake_name = NULL;
  const char *owner;
  struct ndm_device *dev;
  struct fake_dev *fd;
  struct ndm_uri checked;
  uint64_t v;
  size_t i;

  /* The real class's check of the word comes first, so the URI parser is
   * fuzzed too and a word it refuses goes no further here either.
   */
  if (ndm_uri_parse (uri, &checked, err) == -1)
    return NULL;
  ndm_uri_clear (&checked);
  if (opened >= FUZZ_MAX_DEVICES) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE,
                 "device %s: connect: too many devices for the fuzzer", uri);
    return NULL;
  }
  opened++;
  fake_name = g_strdup_printf ("%s%u", g_str_has_prefix (name, "missing") ?
                               "missing" : "f", serial++);
  /* An export's size is a multiple of its minimum block (NBD). */
  v = query_block (q, "min");
  g_string_append_printf (fake, "%s?size=%" PRIu64, fake_name,
                          query_u64 (q, "size", 1 << 20, FUZZ_MAX_SIZE) &
                          ~(MAX (v, 1) - 1));
  if (v != 0)
    g_string_append_printf (fake, "&min=%" PRIu64, v);
  if ((v = query_block (q, "pref")) != 0)
    g_string_append_printf (fake, "&pref=%" PRIu64, v);
  if ((v = query_u64 (q, "max", 0, FUZZ_MAX_DATA)) != 0)
    g_string_append_printf (fake, "&max=%" PRIu64, v);
  if ((v = query_u64 (q, "maxlen", 0, UINT32_MAX)) != 0)
    g_string_append_printf (fake, "&maxlen=%" PRIu64, v);
  for (i = 0; i < G_N_ELEMENTS (flags); i++)
    add_flag (fake, q, flags[i]);
  if (g_strcmp0 (g_hash_table_lookup (q, "mode"), "channel") == 0)
    g_string_append (fake, "&mode=channel");
  owner = g_hash_table_lookup (q, "data");
  if (owner != NULL && names != NULL &&
      (owner = g_hash_table_lookup (names, owner)) != NULL)
    g_string_append_printf (fake, "&data=%s", owner);

  dev = fake_device_class.open (fake->str, cfg, tolerant, err);
  if (dev == NULL)
    return NULL;
  fd = fake_lookup (fake_name);
  if (strstr (name, "dead") != NULL)
    fake_set_down (fd, true);
  if ((v = query_u64 (q, "fail", G_MAXUINT, G_MAXUINT)) != G_MAXUINT)
    fake_fail_at (fd, v, EIO);
  if ((v = query_u64 (q, "subfail", G_MAXUINT, G_MAXUINT)) != G_MAXUINT)
    fake_fail_submit_at (fd, v, ENOMEM);
  if (g_hash_table_lookup (q, "partial") != NULL)
    fake_partial_reads (fd, true);
  if (names == NULL)
    names = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  if (!g_hash_table_contains (names, name))
    g_hash_table_insert (names, g_strdup (name), g_strdup (fake_name));

  /* The core keys its devices by this string and prints it. */
  g_free (dev->uri);
  dev->uri = g_strdup (uri);
  return dev;
}

const struct ndm_device_class fuzz_device_class = {
  .name = "fuzz",
  .open = fuzz_open,
};

void
fuzz_device_reset (void)
{
  fake_reset ();
  if (names != NULL)
    g_hash_table_remove_all (names);
  opened = 0;
  serial = 0;
}

unsigned
fuzz_device_enter_md (void)
{
  unsigned before = opened;

  opened = 0;
  return before;
}

void
fuzz_device_leave_md (unsigned before)
{
  opened = before;
}
