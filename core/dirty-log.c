/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: a mirror's dirty region log, the generic part and the core
 * type (see dirty-log.h; dm-log.c).
 *
 * The bitmaps live here, one bit per region, in arrays of unsigned long
 * padded to whole stored blocks, so a block is copied without bounds
 * checks and bits past the last region stay 0.  A type only stores them
 * (its write gets bytes in the stored form).
 *
 * Thread model: as dirty-log.h says.  ndm_dirty_log_commit drops the
 * lock around flush_legs and the type's write; everything else runs
 * under it or before the log is shared.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <string.h>

#include "dirty-log.h"
#include "json.h"

#define LONG_BITS (sizeof (unsigned long) * CHAR_BIT)

/* Five bitmaps of 2^28 bits are 160 MiB: past that the region size is
 * too small for the device (at 4 KiB regions that is 1 TiB; at dm's
 * default 512 KiB, 128 TiB), and a larger one is the answer.
 */
#define NDM_DIRTY_LOG_MAX_REGIONS (UINT64_C (1) << 28)

/* The log types (dm's dirty log types), by name.  The mirror's ctr finds
 * its <log type> here.
 */
static const struct ndm_dirty_log_type *const log_types[] = {
  &ndm_dirty_log_core,
  &ndm_dirty_log_disk,
};

/* ---- bitmaps ------------------------------------------------------------ */

static inline bool
bit_test (const unsigned long *b, uint64_t i)
{
  return (b[i / LONG_BITS] >> (i % LONG_BITS)) & 1;
}

static inline void
bit_assign (unsigned long *b, uint64_t i, bool v)
{
  unsigned long m = 1UL << (i % LONG_BITS);

  if (v)
    b[i / LONG_BITS] |= m;
  else
    b[i / LONG_BITS] &= ~m;
}

static size_t
log_nr_words (const struct ndm_dirty_log *log)
{
  uint64_t bits_per_block = (uint64_t) log->block_size * CHAR_BIT;
  uint64_t blocks = (log->nr_regions + bits_per_block - 1) / bits_per_block;

  return blocks * (log->block_size / sizeof (unsigned long));
}

static size_t
log_words_per_block (const struct ndm_dirty_log *log)
{
  return log->block_size / sizeof (unsigned long);
}

/* Set the first nr bits of b (v) or clear them; bits past nr stay 0. */
static void
bitmap_fill (const struct ndm_dirty_log *log, unsigned long *b, bool v)
{
  uint64_t i;

  memset (b, 0, log_nr_words (log) * sizeof *b);
  if (!v)
    return;
  for (i = 0; i < log->nr_regions / LONG_BITS; i++)
    b[i] = ~0UL;
  if (log->nr_regions % LONG_BITS != 0)
    b[i] = (1UL << (log->nr_regions % LONG_BITS)) - 1;
}

static uint64_t
bitmap_weight (const struct ndm_dirty_log *log, const unsigned long *b)
{
  size_t i, n = log_nr_words (log);
  uint64_t w = 0;

  for (i = 0; i < n; i++)
    w += __builtin_popcountl (b[i]);
  return w;
}

/* ---- create, free, load ------------------------------------------------- */

static const struct ndm_dirty_log_type *
log_type_lookup (const char *name)
{
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (log_types); i++)
    if (strcmp (log_types[i]->name, name) == 0)
      return log_types[i];
  return NULL;
}

/* "core or disk", from the table, for the unknown-type error. */
static char *
log_type_names (void)
{
  GString *s = g_string_new (NULL);
  size_t i, n = G_N_ELEMENTS (log_types);

  for (i = 0; i < n; i++)
    g_string_append_printf (s, "%s%s", i == 0 ? "" : i + 1 == n ? " or "
                            : ", ", log_types[i]->name);
  return g_string_free (s, false);
}

/* "1 or 2", "2 to 4", "1" */
static char *
arg_range (unsigned min, unsigned max)
{
  if (min == max)
    return g_strdup_printf ("%u", min);
  return g_strdup_printf ("%u %s %u", min, max == min + 1 ? "or" : "to",
                          max);
}

/* The words after the type's own: "<region size> [sync|nosync]". */
static int
parse_region_words (struct ndm_dirty_log *log, unsigned argc, char **argv,
                    uint64_t target_bytes, GError **err)
{
  uint64_t sectors;

  if (ndm_parse_sectors (argv[0], "region size", &sectors, err) == -1)
    return -1;
  if (sectors < 8) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "region size '%s': expected at least 8 sectors", argv[0]);
    return -1;
  }
  if ((sectors & (sectors - 1)) != 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "region size '%s' is not a power of two", argv[0]);
    return -1;
  }
  log->region_size = sectors << NDM_SECTOR_SHIFT;
  log->nr_regions = (target_bytes + log->region_size - 1) / log->region_size;
  if (log->nr_regions > NDM_DIRTY_LOG_MAX_REGIONS) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "region size '%s' makes %" PRIu64 " regions: expected at "
                 "most %" PRIu64 " (a larger region size)", argv[0],
                 log->nr_regions, NDM_DIRTY_LOG_MAX_REGIONS);
    return -1;
  }

  log->sync = NDM_DIRTY_LOG_SYNC_DEFAULT;
  if (argc == 2) {
    if (strcmp (argv[1], "sync") == 0)
      log->sync = NDM_DIRTY_LOG_SYNC_FORCE;
    else if (strcmp (argv[1], "nosync") == 0)
      log->sync = NDM_DIRTY_LOG_SYNC_NONE;
    else {
      g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                   "log argument '%s': expected sync or nosync", argv[1]);
      return -1;
    }
  }
  return 0;
}

static void
log_free_bitmaps (struct ndm_dirty_log *log)
{
  g_free (log->dirty);
  g_free (log->committed);
  g_free (log->in_sync);
  g_free (log->recovering);
  g_free (log->clearing);
}

struct ndm_dirty_log *
ndm_dirty_log_create (struct ndm_target *ti, unsigned argc, char **argv,
                      uint64_t target_bytes, unsigned nr_legs,
                      unsigned *used, GError **err)
{
  const struct ndm_dirty_log_type *type;
  g_autofree struct ndm_dirty_log *log = NULL;
  g_autofree char *names = NULL;
  g_autofree char *range = NULL;
  uint64_t nargs;
  unsigned ntype;
  size_t words;

  if (argc < 1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "the table ends where the log type was expected");
    return NULL;
  }
  type = log_type_lookup (argv[0]);
  if (type == NULL) {
    names = log_type_names ();
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "unknown log type '%s': expected %s", argv[0], names);
    return NULL;
  }
  if (argc < 2) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "the table ends where #log args was expected");
    return NULL;
  }
  if (ndm_parse_u64 (argv[1], "#log args", &nargs, err) == -1)
    return NULL;
  if (nargs < type->min_args || nargs > type->max_args) {
    range = arg_range (type->min_args, type->max_args);
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "#log args '%s' for %s: expected %s", argv[1], type->name,
                 range);
    return NULL;
  }
  if (nargs > argc - 2) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "#log args '%s' is more than the %u word%s after it",
                 argv[1], argc - 2, argc - 2 == 1 ? "" : "s");
    return NULL;
  }
  if (nr_legs < 1 || nr_legs > NDM_DIRTY_LOG_MAX_LEGS) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "a log for %u legs: expected 1 to %u", nr_legs,
                 NDM_DIRTY_LOG_MAX_LEGS);
    return NULL;
  }

  log = g_new0 (struct ndm_dirty_log, 1);
  log->type = type;
  log->ti = ti;
  log->nr_legs = nr_legs;
  log->block_size = 4096;
  /* The type's words come first, the region size is the last required
   * one: min_args counts it.
   */
  ntype = type->min_args - 1;
  if (parse_region_words (log, nargs - ntype, argv + 2 + ntype,
                          target_bytes, err) == -1)
    return NULL;
  if (type->ctr (log, ti, ntype, argv + 2, err) == -1)
    return NULL;

  g_assert (log->block_size % sizeof (unsigned long) == 0);
  words = log_nr_words (log);
  log->dirty = g_new0 (unsigned long, words);
  log->committed = g_new0 (unsigned long, words);
  log->in_sync = g_new0 (unsigned long, words);
  log->recovering = g_new0 (unsigned long, words);
  log->clearing = g_new0 (unsigned long, words);
  ndm_mutex_init (&log->lock, NDM_LOCK_LEAF);
  g_cond_init (&log->cond);
  log->next_ticket = 1;
  log->health = NDM_DIRTY_LOG_ALIVE;
  *used = 2 + nargs;
  return g_steal_pointer (&log);
}

void
ndm_dirty_log_free (struct ndm_dirty_log *log)
{
  if (log == NULL)
    return;
  if (log->type->dtr != NULL)
    log->type->dtr (log);
  log_free_bitmaps (log);
  ndm_mutex_clear (&log->lock);
  g_cond_clear (&log->cond);
  g_free (log);
}

/* Whether the type keeps the bitmap anywhere (core: no).  One that does
 * not has every mark and clear on its "device" at once.
 */
static bool
log_stores (const struct ndm_dirty_log *log)
{
  return log->type->write != NULL;
}

int
ndm_dirty_log_check (struct ndm_dirty_log *log, GError **err)
{
  return log->type->check != NULL ? log->type->check (log, err) : 0;
}

/* The load failed: nothing is known of what the device holds.  Every
 * region is marked and out of sync (copied, never wrongly taken as
 * equal), and none counts as on the device, so the next commit writes
 * every mark.
 */
static void
load_failed_locked (struct ndm_dirty_log *log)
{
  ndm_assert_held (&log->lock);
  bitmap_fill (log, log->dirty, true);
  bitmap_fill (log, log->committed, false);
  bitmap_fill (log, log->in_sync, false);
  bitmap_fill (log, log->recovering, false);
  bitmap_fill (log, log->clearing, false);
  log->sync_count = 0;
  log->resync_cursor = 0;
  log->dirty_at_load = log->nr_regions;
  log->health = NDM_DIRTY_LOG_WRITE_FAILED;
  log->loaded = true;
  log->stopped = false;
  log->wanted_ticket = log->next_ticket;
}

int64_t
ndm_dirty_log_load (struct ndm_dirty_log *log, GError **err)
{
  size_t i, n = log_nr_words (log);
  uint64_t out;

  if (log->type->load != NULL && log->type->load (log, err) == -1) {
    ndm_mutex_lock (&log->lock);
    load_failed_locked (log);
    ndm_mutex_unlock (&log->lock);
    return -1;
  }

  ndm_mutex_lock (&log->lock);
  log->dirty_at_load = log->type->load != NULL
    ? bitmap_weight (log, log->committed) : 0;
  switch (log->sync) {
  case NDM_DIRTY_LOG_SYNC_NONE:
    bitmap_fill (log, log->in_sync, true);
    bitmap_fill (log, log->dirty, false);
    break;
  case NDM_DIRTY_LOG_SYNC_FORCE:
    /* Marked too, so a restart without "sync" still copies them. */
    bitmap_fill (log, log->in_sync, false);
    bitmap_fill (log, log->dirty, true);
    break;
  case NDM_DIRTY_LOG_SYNC_DEFAULT:
    if (log->type->load == NULL) {
      /* Nothing says which regions are equal: all may differ. */
      bitmap_fill (log, log->in_sync, false);
      bitmap_fill (log, log->dirty, true);
    }
    else {
      bitmap_fill (log, log->in_sync, true);
      for (i = 0; i < n; i++) {
        log->dirty[i] = log->committed[i];
        log->in_sync[i] &= ~log->committed[i];
      }
    }
    break;
  }
  if (!log_stores (log))
    memcpy (log->committed, log->dirty, n * sizeof *log->dirty);
  bitmap_fill (log, log->recovering, false);
  bitmap_fill (log, log->clearing, false);
  log->sync_count = bitmap_weight (log, log->in_sync);
  log->resync_cursor = 0;
  log->health = NDM_DIRTY_LOG_ALIVE;
  log->loaded = true;
  log->stopped = false;
  out = log->nr_regions - log->sync_count;
  ndm_mutex_unlock (&log->lock);
  return out;
}

/* ---- marks and clears --------------------------------------------------- */

uint64_t
ndm_dirty_log_mark_locked (struct ndm_dirty_log *log, uint64_t region)
{
  ndm_assert_held (&log->lock);
  bit_assign (log->dirty, region, true);
  if (!log_stores (log)) {
    bit_assign (log->committed, region, true);
    return 0;
  }
  if (bit_test (log->committed, region))
    return 0;
  log->wanted_ticket = log->next_ticket;
  g_cond_signal (&log->cond);
  return log->next_ticket;
}

void
ndm_dirty_log_clear_locked (struct ndm_dirty_log *log, uint64_t region)
{
  ndm_assert_held (&log->lock);
  bit_assign (log->dirty, region, false);
  if (!log_stores (log))
    bit_assign (log->committed, region, false);
}

bool
ndm_dirty_log_committed_locked (struct ndm_dirty_log *log, uint64_t ticket)
{
  ndm_assert_held (&log->lock);
  return ticket <= log->committed_ticket;
}

bool
ndm_dirty_log_next_marked_locked (struct ndm_dirty_log *log,
                                  uint64_t *region)
{
  size_t i, n = log_nr_words (log);
  unsigned long w;

  ndm_assert_held (&log->lock);
  if (*region >= log->nr_regions)
    return false;
  i = *region / LONG_BITS;
  w = (log->dirty[i] | log->committed[i] | log->clearing[i])
    & (~0UL << (*region % LONG_BITS));
  for (;;) {
    if (w != 0) {
      *region = i * LONG_BITS + __builtin_ctzl (w);
      return *region < log->nr_regions;
    }
    if (++i == n)
      return false;
    w = log->dirty[i] | log->committed[i] | log->clearing[i];
  }
}

uint64_t
ndm_dirty_log_set_leg_failed_locked (struct ndm_dirty_log *log, unsigned leg,
                                     bool failed)
{
  uint64_t bit = UINT64_C (1) << leg;

  ndm_assert_held (&log->lock);
  g_assert (leg < log->nr_legs);
  if (((log->failed_legs & bit) != 0) == failed)
    return 0;
  if (failed)
    log->failed_legs |= bit;
  else
    log->failed_legs &= ~bit;
  if (!log_stores (log))
    return 0;
  log->header_changed = true;
  log->wanted_ticket = log->next_ticket;
  g_cond_signal (&log->cond);
  return log->next_ticket;
}

/* ---- the group commit --------------------------------------------------- */

/* Block b of the bitmap whose words are src, in the stored form: bit r % 8
 * of byte r / 8, whatever the host's byte order.
 */
static void
block_to_bytes (const struct ndm_dirty_log *log, const unsigned long *src,
                uint64_t b, unsigned char *out)
{
  const unsigned long *w = src + b * log_words_per_block (log);
  size_t j;

  for (j = 0; j < log->block_size; j++)
    out[j] = (w[j / sizeof (unsigned long)]
              >> (CHAR_BIT * (j % sizeof (unsigned long)))) & 0xff;
}

/* Under the lock: what a commit of this kind writes (the changed blocks,
 * in c) and, in stored, the bits it puts on the device (committed from
 * its end).  A clear commit also takes its cleared bits out of
 * committed now and into clearing.
 */
static void
commit_copy_locked (struct ndm_dirty_log *log, struct ndm_dirty_log_commit *c,
                    unsigned long *stored)
{
  size_t wpb = log_words_per_block (log);
  size_t i, n = log_nr_words (log);
  uint64_t b;

  ndm_assert_held (&log->lock);
  for (i = 0; i < n; i++)
    stored[i] = c->clears ? log->dirty[i] : log->dirty[i] | log->committed[i];
  for (b = 0; b < n / wpb; b++) {
    bool changed = false;

    for (i = b * wpb; i < (b + 1) * wpb && !changed; i++)
      changed = stored[i] != log->committed[i];
    if (!changed)
      continue;
    g_array_append_val (c->blocks, b);
  }
  c->buf = g_malloc (c->blocks->len * log->block_size);
  for (i = 0; i < c->blocks->len; i++)
    block_to_bytes (log, stored, g_array_index (c->blocks, uint64_t, i),
                    (unsigned char *) c->buf + i * log->block_size);
  if (c->clears)
    for (i = 0; i < n; i++) {
      log->clearing[i] = log->committed[i] & ~log->dirty[i];
      log->committed[i] &= log->dirty[i];
    }
}

/* Under the lock: whether a clear commit would clear anything. */
static bool
clears_pending_locked (struct ndm_dirty_log *log)
{
  size_t i, n = log_nr_words (log);

  ndm_assert_held (&log->lock);
  for (i = 0; i < n; i++)
    if (log->committed[i] & ~log->dirty[i])
      return true;
  return false;
}

static void
commit_free (struct ndm_dirty_log_commit *c)
{
  g_array_unref (c->blocks);
  g_free (c->buf);
}

/* ndm_dirty_log_commit; clear_now: a clear commit whatever the time
 * since the last (suspend).
 */
static int64_t
log_commit (struct ndm_dirty_log *log, bool clears, bool clear_now,
            int (*flush_legs) (void *data, int *err), void *data, int *err)
{
  struct ndm_dirty_log_commit c = { .block_size = log->block_size };
  g_autofree unsigned long *stored = NULL;
  size_t i, n = log_nr_words (log);
  int64_t now = g_get_monotonic_time ();
  bool flushed = true, write_failed = false;
  int rc = 0;

  if (!log_stores (log))
    return 0;

  stored = g_new (unsigned long, n);
  c.blocks = g_array_new (false, false, sizeof (uint64_t));
  ndm_mutex_lock (&log->lock);
  g_assert (!log->committing);
  if (log->stopped) {
    ndm_mutex_unlock (&log->lock);
    commit_free (&c);
    return 0;
  }
  c.clears = clears && log->health == NDM_DIRTY_LOG_ALIVE &&
    (clear_now || log->last_clear == 0 ||
     now - log->last_clear >= NDM_LOG_CLEAR_MS * INT64_C (1000)) &&
    clears_pending_locked (log);
  if (c.clears)
    log->last_clear = now;
  commit_copy_locked (log, &c, stored);
  c.header = log->header_changed;
  c.failed_legs = log->failed_legs;
  if (c.blocks->len == 0 && !c.header &&
      log->wanted_ticket < log->next_ticket) {
    /* No mark, clear or header waits for the device; no ticket given. */
    ndm_mutex_unlock (&log->lock);
    commit_free (&c);
    return 0;
  }
  c.ticket = log->next_ticket++;
  log->header_changed = false;
  log->committing = true;
  ndm_mutex_unlock (&log->lock);

  if (c.clears && flush_legs != NULL && flush_legs (data, err) == -1) {
    flushed = false;
    rc = -1;
  }
  if (rc == 0 && (c.blocks->len > 0 || c.header)) {
    rc = log->type->write (log, &c, err);
    write_failed = rc == -1;
  }

  ndm_mutex_lock (&log->lock);
  log->committing = false;
  if (c.clears) {
    /* Legs that were not all flushed: no clear was written, those marks
     * are on the device still.  Once they were, a region cleared here is
     * stable on every leg, whatever the write did.
     */
    for (i = 0; i < n; i++) {
      if (!flushed)
        log->committed[i] |= log->clearing[i];
      log->clearing[i] = 0;
    }
  }
  if (rc == 0) {
    size_t wpb = log_words_per_block (log);

    for (i = 0; i < c.blocks->len; i++) {
      uint64_t b = g_array_index (c.blocks, uint64_t, i);
      size_t w;

      for (w = b * wpb; w < (b + 1) * wpb; w++)
        log->committed[w] |= stored[w];
    }
    log->committed_ticket = c.ticket;
    log->commits++;
  }
  else {
    /* Marks not written stay uncommitted: their regions ask the next
     * commit, and so does a header not written.
     */
    if (c.header)
      log->header_changed = true;
    if (write_failed && log->health == NDM_DIRTY_LOG_ALIVE)
      log->health = NDM_DIRTY_LOG_WRITE_FAILED;
  }
  ndm_mutex_unlock (&log->lock);
  commit_free (&c);
  return rc == 0 ? (int64_t) c.ticket : -1;
}

int64_t
ndm_dirty_log_commit (struct ndm_dirty_log *log, bool clears,
                      int (*flush_legs) (void *data, int *err), void *data,
                      int *err)
{
  return log_commit (log, clears, false, flush_legs, data, err);
}

int64_t
ndm_dirty_log_suspend (struct ndm_dirty_log *log,
                       int (*flush_legs) (void *data, int *err), void *data,
                       int *err)
{
  int64_t r = 0;
  bool loaded;

  ndm_mutex_lock (&log->lock);
  loaded = log->loaded && !log->stopped;
  ndm_mutex_unlock (&log->lock);
  /* Never loaded: memory knows nothing of the device, and a commit would
   * write its empty bitmap over the marks there.
   */
  if (loaded && log_stores (log))
    r = log_commit (log, true, true, flush_legs, data, err);
  ndm_mutex_lock (&log->lock);
  log->stopped = true;
  ndm_mutex_unlock (&log->lock);
  return r;
}

void
ndm_dirty_log_resume (struct ndm_dirty_log *log)
{
  ndm_mutex_lock (&log->lock);
  log->stopped = false;
  ndm_mutex_unlock (&log->lock);
}

/* ---- in-sync bits ------------------------------------------------------- */

bool
ndm_dirty_log_in_sync_locked (struct ndm_dirty_log *log, uint64_t region)
{
  ndm_assert_held (&log->lock);
  return bit_test (log->in_sync, region);
}

void
ndm_dirty_log_set_region_sync_locked (struct ndm_dirty_log *log,
                                      uint64_t region, bool in_sync)
{
  ndm_assert_held (&log->lock);
  bit_assign (log->recovering, region, false);
  if (bit_test (log->in_sync, region) == in_sync)
    return;
  bit_assign (log->in_sync, region, in_sync);
  if (in_sync)
    log->sync_count++;
  else
    log->sync_count--;
}

uint64_t
ndm_dirty_log_sync_count_locked (struct ndm_dirty_log *log)
{
  ndm_assert_held (&log->lock);
  return log->sync_count;
}

/* The first region in [from, to) neither in sync nor recovering. */
static bool
find_resync_work (struct ndm_dirty_log *log, uint64_t from, uint64_t to,
                  uint64_t *region)
{
  uint64_t i = from / LONG_BITS;
  unsigned long w;

  if (from >= to)
    return false;
  w = ~(log->in_sync[i] | log->recovering[i]) & (~0UL << (from % LONG_BITS));
  for (;;) {
    if (w != 0) {
      *region = i * LONG_BITS + __builtin_ctzl (w);
      return *region < to;
    }
    if (++i * LONG_BITS >= to)
      return false;
    w = ~(log->in_sync[i] | log->recovering[i]);
  }
}

bool
ndm_dirty_log_get_resync_work_locked (struct ndm_dirty_log *log,
                                      uint64_t *region)
{
  uint64_t from;

  ndm_assert_held (&log->lock);
  if (log->sync_count == log->nr_regions)
    return false;
  from = log->resync_cursor < log->nr_regions ? log->resync_cursor : 0;
  if (!find_resync_work (log, from, log->nr_regions, region) &&
      !find_resync_work (log, 0, from, region))
    return false;
  bit_assign (log->recovering, *region, true);
  log->resync_cursor = *region + 1;
  return true;
}

/* ---- status ------------------------------------------------------------- */

void
ndm_dirty_log_status (struct ndm_dirty_log *log, enum ndm_status_type type,
                      GString *out)
{
  ndm_mutex_lock (&log->lock);
  log->type->status (log, type, out);
  ndm_mutex_unlock (&log->lock);
}

void
ndm_dirty_log_status_json (struct ndm_dirty_log *log, JsonBuilder *b)
{
  char health[2] = { 0 };

  ndm_mutex_lock (&log->lock);
  health[0] = (char) log->health;
  json_builder_begin_object (b);
  ndm_json_member_string (b, "type", log->type->name);
  ndm_json_member_string (b, "device", log->dev ? log->dev->uri : NULL);
  /* dm's letter, as the status line's: an enum of its own. */
  ndm_json_member_string (b, "health", health);
  ndm_json_member_uint (b, "region_size", log->region_size);
  ndm_json_member_uint (b, "regions", log->nr_regions);
  ndm_json_member_uint (b, "in_sync", log->sync_count);
  ndm_json_member_uint (b, "marked", bitmap_weight (log, log->dirty));
  ndm_json_member_uint (b, "failed_legs", log->failed_legs);
  ndm_json_member_uint (b, "dirty_at_load", log->dirty_at_load);
  ndm_json_member_uint (b, "commits", log->commits);
  json_builder_end_object (b);
  ndm_mutex_unlock (&log->lock);
}

/* ---- the core type: stores nothing -------------------------------------- */

/* core <region size> [sync|nosync]: no words of its own. */
static int
core_log_ctr (struct ndm_dirty_log *log, struct ndm_target *ti,
              unsigned argc, char **argv, GError **err)
{
  return 0;
}

/* Status: INFO "1 core"; TABLE "core <#args> <region size> [no]sync ". */
static void
core_log_status (struct ndm_dirty_log *log, enum ndm_status_type type,
                 GString *out)
{
  ndm_assert_held (&log->lock);
  if (type == NDM_STATUS_INFO) {
    g_string_append (out, "1 core");
    return;
  }
  g_string_append_printf (out, "core %u %" PRIu64 " ",
                          log->sync == NDM_DIRTY_LOG_SYNC_DEFAULT ? 1 : 2,
                          log->region_size >> NDM_SECTOR_SHIFT);
  if (log->sync != NDM_DIRTY_LOG_SYNC_DEFAULT)
    g_string_append (out, log->sync == NDM_DIRTY_LOG_SYNC_NONE ? "nosync "
                     : "sync ");
}

const struct ndm_dirty_log_type ndm_dirty_log_core = {
  .name = "core", .min_args = 1, .max_args = 2,
  .ctr = core_log_ctr, .status = core_log_status,
};
