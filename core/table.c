/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: tables — parse dmsetup syntax, construct targets, look up the
 * target of an offset, print dmsetup table/status lines.
 *
 *     <start> <length> <target> <args...>     # sectors of 512 bytes
 *
 * Lines are split on newline or ';'; '#' starts a comment.  Targets must be
 * contiguous from sector 0 (no gap, no overlap).  Every error names the
 * line, quotes the word and says what was expected; on error nothing of
 * the table survives.  Numbers are decimal; a count of sectors, and so
 * the device, ends below 2^63 bytes (NDM_MAX_SECTORS: NBD sizes are
 * int64_t), checked here once for every target.
 *
 * Thread model: create runs on the control path.  find_target runs on any
 * request owner's thread against a table it holds a reference on; tables
 * are immutable once made.
 */
#include <errno.h>
#include <string.h>

#include "core.h"
#include "stats.h"

/* Not G_DEFINE_QUARK: its cache is a plain static that the first callers
 * write and read unordered (threads of different devices fail at once),
 * a data race TSan reports.  Every caller stores the same value, so a
 * relaxed atomic is all the order needed.
 */
GQuark
ndm_error_quark (void)
{
  static GQuark quark;
  GQuark q = __atomic_load_n (&quark, __ATOMIC_RELAXED);

  if (q == 0) {
    q = g_quark_from_static_string ("ndm-error-quark");
    __atomic_store_n (&quark, q, __ATOMIC_RELAXED);
  }
  return q;
}

static const struct ndm_target_type *const builtin_targets[] = {
  &ndm_linear_target,
  &ndm_striped_target,
  &ndm_zero_target,
  &ndm_error_target,
  &ndm_flakey_target,
  &ndm_delay_target,
  &ndm_dust_target,
  &ndm_multipath_target,
  &ndm_mirror_target,
};

const struct ndm_target_type *
ndm_target_type_nth (size_t i)
{
  return i < G_N_ELEMENTS (builtin_targets) ? builtin_targets[i] : NULL;
}

const struct ndm_target_type *
ndm_target_type_lookup (const char *name)
{
  const struct ndm_target_type *tt;
  size_t i;

  for (i = 0; (tt = ndm_target_type_nth (i)) != NULL; i++)
    if (strcmp (tt->name, name) == 0)
      return tt;
  return NULL;
}

char *
ndm_target_type_names (void)
{
  GString *s = g_string_new (NULL);
  const struct ndm_target_type *tt;
  size_t i;

  for (i = 0; (tt = ndm_target_type_nth (i)) != NULL; i++)
    g_string_append_printf (s, "%s%s", i ? ", " : "", tt->name);
  return g_string_free (s, FALSE);
}

/* Decimal digits only, as dmsetup reads them: no sign, no 0x, no blanks.
 * A number of digits that does not fit max is "too large", not "not a
 * number": the operator wrote a number, just one we cannot take.
 */
static int
parse_u64 (const char *arg, const char *what, const char *unit,
           uint64_t max, const char *why_max, uint64_t *out, GError **err)
{
  guint64 v;

  if (arg[0] == '\0' || arg[strspn (arg, "0123456789")] != '\0') {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "%s '%s' is not a number%s", what, arg, unit);
    return -1;
  }
  if (!g_ascii_string_to_unsigned (arg, 10, 0, max, &v, NULL)) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "%s '%s' is too large: expected at most %" PRIu64 "%s",
                 what, arg, max, why_max);
    return -1;
  }
  *out = v;
  return 0;
}

int
ndm_parse_u64 (const char *arg, const char *what, uint64_t *out,
               GError **err)
{
  return parse_u64 (arg, what, "", G_MAXUINT64, "", out, err);
}

int
ndm_parse_sectors (const char *arg, const char *what, uint64_t *out,
                   GError **err)
{
  return parse_u64 (arg, what, " of sectors", NDM_MAX_SECTORS,
                    " sectors (NBD sizes are below 2^63 bytes)", out, err);
}

enum device_use { DEVICE_DATA, DEVICE_DATA_TOLERANT, DEVICE_METADATA };

static struct ndm_device *
table_get_device (struct ndm_target *ti, const char *uri,
                  enum device_use use, GError **err)
{
  struct ndm_table *t = ti->table;
  struct ndm_device *dev = ndm_md_get_device (t->md, uri,
                                              use == DEVICE_DATA_TOLERANT,
                                              err);
  unsigned i;

  if (dev == NULL)
    return NULL;
  if (use == DEVICE_METADATA) {
    /* Two logs on one device would overwrite each other's header and
     * bitmap: refused, as a device can hold one target's metadata.
     */
    if (g_ptr_array_find (t->metadata_devices, dev, NULL)) {
      ndm_md_put_device (t->md, dev);     /* the table holds one already */
      g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                   "device %s holds another target's metadata already: "
                   "each log needs a device of its own", uri);
      return NULL;
    }
    g_ptr_array_add (t->metadata_devices, dev);
  }
  else if (!g_ptr_array_find (t->data_devices, dev, NULL))
    g_ptr_array_add (t->data_devices, dev);
  for (i = 0; i < t->devices->len; i++)
    if (t->devices->pdata[i] == dev) {
      ndm_md_put_device (t->md, dev);     /* the table holds one already */
      return dev;
    }
  g_ptr_array_add (t->devices, dev);
  return dev;
}

struct ndm_device *
ndm_table_get_device (struct ndm_target *ti, const char *uri, GError **err)
{
  return table_get_device (ti, uri, DEVICE_DATA, err);
}

struct ndm_device *
ndm_table_get_metadata_device (struct ndm_target *ti, const char *uri,
                               GError **err)
{
  return table_get_device (ti, uri, DEVICE_METADATA, err);
}

void
ndm_target_set_prison (struct ndm_target *ti, struct ndm_device *dev)
{
  ndm_prison_unref (ti->prison);
  ti->prison = ndm_prison_ref (dev->prison);
}

struct ndm_device *
ndm_table_get_device_tolerant (struct ndm_target *ti, const char *uri,
                               GError **err)
{
  return table_get_device (ti, uri, DEVICE_DATA_TOLERANT, err);
}

/* Split text into lines on '\n' and ';', strip comments. */
static char **
table_lines (const char *text)
{
  char **lines = g_strsplit_set (text, "\n;", -1);
  char **l;

  for (l = lines; *l != NULL; l++) {
    char *hash = strchr (*l, '#');

    if (hash != NULL)
      *hash = '\0';
  }
  return lines;
}

/* Words of one line, without empty ones from repeated blanks. */
static char **
line_words (const char *line, unsigned *n)
{
  char **words = g_strsplit_set (line, " \t\r\v\f", -1);
  unsigned i, j;

  for (i = j = 0; words[i] != NULL; i++) {
    if (words[i][0] == '\0')
      g_free (words[i]);
    else
      words[j++] = words[i];
  }
  words[j] = NULL;
  *n = j;
  return words;
}

static void
table_free (struct ndm_table *t)
{
  unsigned i;

  for (i = 0; i < t->nr_targets; i++) {
    struct ndm_target *ti = &t->targets[i];

    if (ti->type != NULL && ti->type->dtr != NULL)
      ti->type->dtr (ti);
    if (ti->stats != NULL)
      ndm_stats_free (ti->stats);
    ndm_prison_unref (ti->prison);
  }
  for (i = 0; i < t->devices->len; i++)
    ndm_md_put_device (t->md, t->devices->pdata[i]);
  g_ptr_array_unref (t->devices);
  g_ptr_array_unref (t->data_devices);
  g_ptr_array_unref (t->metadata_devices);
  g_free (t->targets);
  g_free (t);
}

void
ndm_table_ref (struct ndm_table *t)
{
  g_atomic_int_inc (&t->refs);
}

void
ndm_table_unref (struct ndm_table *t)
{
  if (g_atomic_int_dec_and_test (&t->refs))
    table_free (t);
}

/* What the mapped device can advertise (R12): the intersection over its
 * data devices, but for flush.  A device only a target's own metadata
 * lives on (a mirror's disk log) is written by that target alone, which
 * flushes it itself: its trim, cache, block size or multi-conn say
 * nothing about what clients may send.  Zero and error targets have no devices and
 * can do anything, and have nothing to flush.
 *
 * Flush is the exception (R9): a device that advertises no flush has no
 * volatile cache, so it needs none and takes nothing from the others.
 * One device that can flush is enough to advertise it, and a flush goes
 * to the devices that can (ndm_clone_map_flush).  An absent device's caps
 * are unknown until it is reached: it may have a cache, so it counts as
 * one that can.  FUA follows flush: per bio it is native where the device
 * has it, write+flush where the device only flushes, a plain write where
 * the device has no cache (bio_add).
 */
static void
table_compute_caps (struct ndm_table *t)
{
  struct ndm_caps *c = &t->caps;
  unsigned i;

  c->write = c->trim = true;
  c->cache = c->multi_conn = true;
  c->flush = false;
  c->block_min = 1;             /* unaligned requests bounce (R7) */
  c->block_pref = 4096;
  c->block_max = NDM_DEFAULT_MAX_DATA;
  for (i = 0; i < t->data_devices->len; i++) {
    const struct ndm_device *dev = t->data_devices->pdata[i];

    if (dev->absent) {
      c->flush = true;          /* nothing known yet */
      continue;
    }
    c->write &= !dev->caps.read_only;
    c->flush |= dev->caps.flush;
    c->trim &= dev->caps.trim;
    c->cache &= dev->caps.cache;
    c->multi_conn &= dev->caps.multi_conn;
    c->block_pref = MAX (c->block_pref, dev->limits.pref_block);
    c->block_pref = MAX (c->block_pref, dev->limits.min_block);
  }
  c->fua = c->flush;
  /* Fast zero is advertised whenever zero is (it always is, emulated
   * where a device cannot): NBD allows a server to answer every fast zero
   * with a quick ENOTSUP, and nbd-dm does wherever a piece cannot be fast
   * (request_cannot_be_fast), before anything is written.  Advertising
   * it always also keeps nbdkit 1.32 alive: it aborts on a fast zero the
   * export did not advertise, which a client may send anyway.
   */
  c->fast_zero = c->write;
  c->block_pref = MIN (c->block_pref, c->block_max);
}

/* dm's device_area_is_invalid: the range a target uses must fit its
 * device.  Checked here, for every target, rather than in each ctr.
 */
static int
device_area_check (struct ndm_target *ti, struct ndm_device *dev,
                   uint64_t start, uint64_t len, void *data)
{
  GError **err = data;

  if (dev->absent)
    return 0;                   /* checked when it is reached (multipath) */
  if (start > dev->size || len > dev->size - start) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "device %s is too small: %" PRIu64 " sectors, the target "
                 "uses sectors %" PRIu64 " to %" PRIu64, dev->uri,
                 dev->size >> NDM_SECTOR_SHIFT, start >> NDM_SECTOR_SHIFT,
                 (start + len) >> NDM_SECTOR_SHIFT);
    return -1;
  }
  return 0;
}

/* A target's error e (consumed), prefixed with the line and the target.
 * A target that fails must say why; one that forgets (e NULL) must not
 * take the server down with it (a bad reload reaches a live server, R13):
 * it gets a plain message, and a critical, fatal in the unit tests and
 * under G_DEBUG=fatal-criticals, so the forgetting target is found.
 */
static void
target_error (GError **err, unsigned lineno,
              const struct ndm_target_type *type, GError *e,
              const char *what)
{
  if (e == NULL) {
    g_critical ("target %s failed without setting its error (line %u)",
                type->name, lineno);
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "line %u: %s: the target %s without saying why",
                 lineno, type->name, what);
    return;
  }
  g_set_error (err, e->domain, e->code, "line %u: %s: %s",
               lineno, type->name, e->message);
  g_error_free (e);
}

static int
table_add_line (struct ndm_table *t, unsigned lineno, char **words,
                unsigned nwords, uint64_t *next_start, GError **err)
{
  struct ndm_target *ti = &t->targets[t->nr_targets];
  const struct ndm_target_type *type;
  GError *e = NULL;
  uint64_t start, len;

  if (nwords < 3) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "line %u: expected '<start> <length> <target> [args...]', "
                 "got '%s'", lineno, words[0]);
    return -1;
  }
  if (ndm_parse_sectors (words[0], "start", &start, &e) == -1 ||
      ndm_parse_sectors (words[1], "length", &len, &e) == -1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "line %u: %s", lineno, e->message);
    g_error_free (e);
    return -1;
  }
  if (start != *next_start) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "line %u: start %s %s: expected %" PRIu64
                 " (targets must be contiguous from sector 0)",
                 lineno, words[0],
                 start > *next_start ? "leaves a gap" : "overlaps",
                 *next_start);
    return -1;
  }
  if (len == 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "line %u: length '%s': expected at least 1 sector",
                 lineno, words[1]);
    return -1;
  }
  /* start is where the lines before end: at most NDM_MAX_SECTORS. */
  if (len > NDM_MAX_SECTORS - start) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "line %u: length '%s' is too large: the device would end "
                 "at sector %" PRIu64 ", past %" PRIu64 " (NBD sizes are "
                 "below 2^63 bytes)", lineno, words[1], start + len,
                 (uint64_t) NDM_MAX_SECTORS);
    return -1;
  }
  type = NULL;
  if (t->md->cfg.extra_targets != NULL) {
    const struct ndm_target_type *const *x;

    for (x = t->md->cfg.extra_targets; *x != NULL && type == NULL; x++)
      if (strcmp ((*x)->name, words[2]) == 0)
        type = *x;
  }
  if (type == NULL)
    type = ndm_target_type_lookup (words[2]);
  if (type == NULL) {
    g_autofree char *known = ndm_target_type_names ();

    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "line %u: unknown target type '%s': expected one of %s",
                 lineno, words[2], known);
    return -1;
  }

  ti->table = t;
  ti->begin = start;
  ti->len = len;
  ti->line = lineno;
  if (type->ctr (ti, nwords - 3, words + 3, &e) == -1) {
    target_error (err, lineno, type, e, "refused its arguments");
    return -1;
  }
  ti->type = type;              /* from now on dtr runs */
  ti->stats = ndm_stats_new ();
  t->nr_targets++;
  if (type->iterate_devices != NULL &&
      type->iterate_devices (ti, device_area_check, &e) != 0) {
    target_error (err, lineno, type, e, "refused its devices");
    return -1;
  }
  *next_start = start + len;
  return 0;
}

struct ndm_table *
ndm_table_create (struct ndm_md *md, const char *text, GError **err)
{
  g_auto (GStrv) lines = table_lines (text);
  struct ndm_table *t = g_new0 (struct ndm_table, 1);
  uint64_t next_start = 0;
  unsigned i;

  t->md = md;
  t->refs = 1;
  t->devices = g_ptr_array_new ();
  t->data_devices = g_ptr_array_new ();
  t->metadata_devices = g_ptr_array_new ();
  t->targets = g_new0 (struct ndm_target, g_strv_length (lines) + 1);

  for (i = 0; lines[i] != NULL; i++) {
    unsigned n;
    g_auto (GStrv) words = line_words (lines[i], &n);

    if (n == 0)
      continue;
    if (table_add_line (t, i + 1, words, n, &next_start, err) == -1) {
      table_free (t);
      return NULL;
    }
  }
  if (t->nr_targets == 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "the table is empty: expected at least one line "
                 "'<start> <length> <target> [args...]'");
    table_free (t);
    return NULL;
  }
  t->size = next_start << NDM_SECTOR_SHIFT;
  table_compute_caps (t);
  return t;
}

struct ndm_target *
ndm_table_find_target (struct ndm_table *t, uint64_t offset)
{
  uint64_t sector = offset >> NDM_SECTOR_SHIFT;
  unsigned lo = 0, hi = t->nr_targets;

  /* Binary search for the last target with begin <= sector. */
  while (hi - lo > 1) {
    unsigned mid = lo + (hi - lo) / 2;

    if (t->targets[mid].begin <= sector)
      lo = mid;
    else
      hi = mid;
  }
  return &t->targets[lo];
}

void
ndm_target_format (struct ndm_target *ti, enum ndm_status_type type,
                   GString *out)
{
  gsize before;

  g_string_append_printf (out, "%" PRIu64 " %" PRIu64 " %s ",
                          ti->begin, ti->len, ti->type->name);
  before = out->len;
  if (ti->type->status != NULL)
    ti->type->status (ti, type, out);
  if (out->len == before)
    g_string_truncate (out, before - 1);  /* no args: no trailing blank */
  g_string_append_c (out, '\n');
}

void
ndm_table_format (struct ndm_table *t, enum ndm_status_type type,
                  GString *out)
{
  unsigned i;

  for (i = 0; i < t->nr_targets; i++)
    ndm_target_format (&t->targets[i], type, out);
}
