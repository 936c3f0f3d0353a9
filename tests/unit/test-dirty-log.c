/* SPDX-License-Identifier: BSD-3-Clause */
/* The dirty log's generic part and core type (core/dirty-log.c): the
 * table words, the bitmaps, and the group commit's orderings, against
 * the memory type of mem-log.c where something must be stored.
 */
#include <errno.h>
#include <string.h>

#include "harness.h"
#include "mem-log.h"

#define MiB (UINT64_C (1) << 20)

/* ---- table words -------------------------------------------------------- */

struct create_error {
  const char *name;
  const char *args;             /* split on blanks; "" is no word */
  uint64_t target_bytes;
  unsigned nr_legs;
  const char *want;
};

/* The log's "log" object of status --json, as JSON text. */
static char *
log_json (struct ndm_dirty_log *log)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;

  ndm_dirty_log_status_json (log, b);
  root = json_builder_get_root (b);
  return json_to_string (root, false);
}

static const struct create_error create_errors[] = {
  { "no-type", "", MiB, 2,
    "the table ends where the log type was expected" },
  { "unknown-type", "mem 1 8", MiB, 2,
    "unknown log type 'mem': expected core" },
  { "no-nargs", "core", MiB, 2,
    "the table ends where #log args was expected" },
  { "nargs-not-a-number", "core x 8", MiB, 2,
    "#log args 'x' is not a number" },
  { "nargs-zero", "core 0", MiB, 2,
    "#log args '0' for core: expected 1 or 2" },
  { "nargs-too-many", "core 3 8 sync x", MiB, 2,
    "#log args '3' for core: expected 1 or 2" },
  { "nargs-past-the-end", "core 2 8", MiB, 2,
    "#log args '2' is more than the 1 word after it" },
  { "region-size-not-a-number", "core 1 x", MiB, 2,
    "region size 'x' is not a number of sectors" },
  { "region-size-zero", "core 1 0", MiB, 2,
    "region size '0': expected at least 8 sectors" },
  { "region-size-below-8", "core 1 4", MiB, 2,
    "region size '4': expected at least 8 sectors" },
  { "region-size-not-a-power-of-two", "core 1 12", MiB, 2,
    "region size '12' is not a power of two" },
  { "region-size-too-small-for-device", "core 1 8",
    UINT64_C (1) << 41, 2,
    "region size '8' makes 536870912 regions: expected at most 268435456" },
  { "sync-word", "core 2 8 fast", MiB, 2,
    "log argument 'fast': expected sync or nosync" },
  { "sync-word-case", "core 2 8 SYNC", MiB, 2,
    "log argument 'SYNC': expected sync or nosync" },
  { "too-many-legs", "core 1 8", MiB, 33,
    "a log for 33 legs: expected 1 to 32" },
  { "no-legs", "core 1 8", MiB, 0,
    "a log for 0 legs: expected 1 to 32" },
};

static void
test_create_error (gconstpointer data)
{
  const struct create_error *row = data;
  g_auto (GStrv) argv = *row->args ? g_strsplit (row->args, " ", -1)
    : g_new0 (char *, 1);
  g_autoptr (GError) err = NULL;
  unsigned used = 99;

  g_assert_null (ndm_dirty_log_create (NULL, g_strv_length (argv), argv,
                                       row->target_bytes, row->nr_legs,
                                       &used, &err));
  g_assert_nonnull (err);
  if (strstr (err->message, row->want) == NULL) {
    g_test_message ("got '%s', want '%s'", err->message, row->want);
    g_test_fail ();
  }
  g_assert_cmpuint (used, ==, 99);
}

static char *
status_of (struct ndm_dirty_log *log, enum ndm_status_type type)
{
  GString *s = g_string_new (NULL);

  ndm_dirty_log_status (log, type, s);
  return g_string_free (s, false);
}

/* The words taken, the geometry, and dm's status words back. */
static void
test_create_core (void)
{
  struct {
    const char *args;
    unsigned used;
    enum ndm_dirty_log_sync sync;
    const char *table;
  } rows[] = {
    { "core 1 1024 2 nbd://a 0 nbd://b 0", 3, NDM_DIRTY_LOG_SYNC_DEFAULT,
      "core 1 1024 " },
    { "core 2 8 nosync", 4, NDM_DIRTY_LOG_SYNC_NONE, "core 2 8 nosync " },
    { "core 2 16 sync 2", 4, NDM_DIRTY_LOG_SYNC_FORCE, "core 2 16 sync " },
  };
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (rows); i++) {
    unsigned used = 0;
    struct ndm_dirty_log *log = core_log_new (rows[i].args, 10 * MiB + 1, &used);
    g_autofree char *table = status_of (log, NDM_STATUS_TABLE);
    g_autofree char *info = status_of (log, NDM_STATUS_INFO);
    uint64_t rs = g_ascii_strtoull (rows[i].args + 7, NULL, 10) * 512;

    g_assert_cmpuint (used, ==, rows[i].used);
    g_assert_cmpint (log->sync, ==, rows[i].sync);
    g_assert_cmpuint (log->region_size, ==, rs);
    g_assert_cmpuint (log->nr_regions, ==, (10 * MiB + 1 + rs - 1) / rs);
    g_assert_cmpstr (table, ==, rows[i].table);
    g_assert_cmpstr (info, ==, "1 core");
    ndm_dirty_log_free (log);
  }
  ndm_dirty_log_free (NULL);
}

/* ---- load --------------------------------------------------------------- */

/* Core: nothing says which regions are equal, so all are copied, unless
 * nosync; sync is the same as the default.
 */
static void
test_load_core (void)
{
  struct {
    const char *args;
    int64_t not_in_sync;
  } rows[] = {
    { "core 1 8", 10 }, { "core 2 8 sync", 10 }, { "core 2 8 nosync", 0 },
  };
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (rows); i++) {
    unsigned used;
    struct ndm_dirty_log *log = core_log_new (rows[i].args, 40960, &used);
    g_autoptr (GError) err = NULL;

    g_assert_cmpint (ndm_dirty_log_load (log, &err), ==,
                     rows[i].not_in_sync);
    g_assert_no_error (err);
    ndm_mutex_lock (&log->lock);
    g_assert_cmpuint (ndm_dirty_log_sync_count_locked (log), ==,
                      10 - rows[i].not_in_sync);
    g_assert_cmpint (ndm_dirty_log_in_sync_locked (log, 9), ==,
                     rows[i].not_in_sync == 0);
    ndm_mutex_unlock (&log->lock);
    g_assert_cmpuint (log->dirty_at_load, ==, 0);
    ndm_dirty_log_free (log);
  }
}

/* A storing type: the marked regions, and only those, are not in sync
 * (sync: all; nosync: none).
 */
static void
test_load_stored (void)
{
  struct {
    const char *args;
    int64_t not_in_sync;
  } rows[] = {
    { "1 8", 2 }, { "2 8 sync", 100 }, { "2 8 nosync", 0 },
  };
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (rows); i++) {
    struct ndm_dirty_log *log = mem_log_new (rows[i].args, 100 * 4096, 2);
    g_autoptr (GError) err = NULL;

    mem_log_dev_set (log, 3);
    mem_log_dev_set (log, 64);
    g_assert_cmpint (ndm_dirty_log_load (log, &err), ==,
                     rows[i].not_in_sync);
    g_assert_cmpuint (log->dirty_at_load, ==, 2);
    ndm_mutex_lock (&log->lock);
    g_assert_cmpint (ndm_dirty_log_in_sync_locked (log, 3), ==,
                     rows[i].not_in_sync == 0);
    g_assert_cmpint (ndm_dirty_log_in_sync_locked (log, 4), ==,
                     rows[i].not_in_sync != 100);
    ndm_mutex_unlock (&log->lock);
    ndm_dirty_log_free (log);
  }
}

/* ---- marks -------------------------------------------------------------- */

/* The core type stores nothing: a mark is "on the device" at once. */
static void
test_mark_core (void)
{
  unsigned used;
  struct ndm_dirty_log *log = core_log_new ("core 2 8 nosync", 40960, &used);
  int err = 0;

  ndm_dirty_log_load (log, NULL);
  ndm_mutex_lock (&log->lock);
  g_assert_cmpuint (ndm_dirty_log_mark_locked (log, 5), ==, 0);
  g_assert_cmpuint (ndm_dirty_log_set_leg_failed_locked (log, 1, true), ==,
                    0);
  g_assert_cmpuint (log->failed_legs, ==, 2);
  ndm_mutex_unlock (&log->lock);
  g_assert_cmpint (ndm_dirty_log_commit (log, true, NULL, NULL, &err), ==, 0);
  ndm_dirty_log_free (log);
}

static struct ndm_dirty_log *
stored_log (uint64_t regions)
{
  struct ndm_dirty_log *log = mem_log_new ("2 8 nosync", regions * 4096, 2);

  g_assert_cmpint (ndm_dirty_log_load (log, NULL), ==, 0);
  return log;
}

static uint64_t
mark (struct ndm_dirty_log *log, uint64_t region)
{
  uint64_t t;

  ndm_mutex_lock (&log->lock);
  t = ndm_dirty_log_mark_locked (log, region);
  ndm_mutex_unlock (&log->lock);
  return t;
}

static void
clear (struct ndm_dirty_log *log, uint64_t region)
{
  ndm_mutex_lock (&log->lock);
  ndm_dirty_log_clear_locked (log, region);
  ndm_mutex_unlock (&log->lock);
}

static bool
committed (struct ndm_dirty_log *log, uint64_t ticket)
{
  bool c;

  ndm_mutex_lock (&log->lock);
  c = ndm_dirty_log_committed_locked (log, ticket);
  ndm_mutex_unlock (&log->lock);
  return c;
}

/* A mark's ticket is not committed until a commit wrote it; then the
 * device has the bit, in the stored form, and a mark of it needs none.
 */
static void
test_mark_ticket_until_commit (void)
{
  struct ndm_dirty_log *log = stored_log (100000);
  struct mem_log *m = mem_log_of (log);
  uint64_t t;
  int err = 0;

  t = mark (log, 40000);
  g_assert_cmpuint (t, !=, 0);
  g_assert_false (committed (log, t));
  g_assert_false (mem_log_dev_bit (log, 40000));
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, (int64_t) t);
  g_assert_true (committed (log, t));
  g_assert_true (mem_log_dev_bit (log, 40000));
  g_assert_false (mem_log_dev_bit (log, 40001));
  /* Region 40000 is in the second 4096-byte block of the bitmap. */
  g_assert_cmpuint (m->last_nr_blocks, ==, 1);
  g_assert_cmpuint (m->last.block_size, ==, 4096);
  g_assert_false (m->last.clears);
  g_assert_false (m->last.header);
  g_assert_cmpuint (mark (log, 40000), ==, 0);
  /* Nothing changed: nothing to do. */
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, 0);
  g_assert_cmpuint (m->writes, ==, 1);
  ndm_dirty_log_free (log);
}

/* Marks made before a commit share it: one write, one ticket. */
static void
test_mark_group_commit (void)
{
  struct ndm_dirty_log *log = stored_log (100000);
  struct mem_log *m = mem_log_of (log);
  uint64_t t[4] = { mark (log, 1), mark (log, 2), mark (log, 50000),
                    mark (log, 99999) };
  int err = 0, i;

  for (i = 1; i < 4; i++)
    g_assert_cmpuint (t[i], ==, t[0]);
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, (int64_t) t[0]);
  g_assert_cmpuint (m->writes, ==, 1);
  g_assert_cmpuint (m->last_nr_blocks, ==, 3);
  for (i = 0; i < 4; i++)
    g_assert_true (committed (log, t[i]));
  g_assert_true (mem_log_dev_bit (log, 99999));
  g_assert_cmpuint (log->commits, ==, 1);
  ndm_dirty_log_free (log);
}

struct remark {
  uint64_t region;
  uint64_t ticket;
};

static void
remark_during (struct ndm_dirty_log *log, void *data)
{
  struct remark *r = data;

  r->ticket = mark (log, r->region);
}

/* A mark made while a commit writes goes to the next commit. */
static void
test_mark_during_commit_waits_next (void)
{
  struct ndm_dirty_log *log = stored_log (64);
  struct mem_log *m = mem_log_of (log);
  struct remark r = { .region = 7 };
  uint64_t t = mark (log, 6);
  int err = 0;

  m->during = remark_during;
  m->during_data = &r;
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, (int64_t) t);
  g_assert_cmpuint (r.ticket, ==, t + 1);
  g_assert_false (committed (log, r.ticket));
  g_assert_false (mem_log_dev_bit (log, 7));
  m->during = NULL;
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, (int64_t) t + 1);
  g_assert_true (committed (log, r.ticket));
  g_assert_true (mem_log_dev_bit (log, 7));
  ndm_dirty_log_free (log);
}

/* A second mark of a region whose mark is being written: the bit is
 * not committed yet, so it gets the next ticket, and the next commit
 * runs for it even with nothing left to write (no I/O).
 */
static void
test_mark_same_region_during_commit (void)
{
  struct ndm_dirty_log *log = stored_log (64);
  struct mem_log *m = mem_log_of (log);
  struct remark r = { .region = 6 };
  uint64_t t = mark (log, 6);
  int err = 0;

  m->during = remark_during;
  m->during_data = &r;
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, (int64_t) t);
  m->during = NULL;
  g_assert_cmpuint (r.ticket, ==, t + 1);
  g_assert_false (committed (log, r.ticket));
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, (int64_t) t + 1);
  g_assert_true (committed (log, r.ticket));
  g_assert_cmpuint (m->writes, ==, 1);
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, 0);
  ndm_dirty_log_free (log);
}

/* ---- clears ------------------------------------------------------------- */

/* A region cleared in memory is still on the device: a mark of it needs
 * no commit, and a mark commit never clears it.
 */
static void
test_clear_mark_commit_never_clears (void)
{
  struct ndm_dirty_log *log = stored_log (64);
  struct mem_log *m = mem_log_of (log);
  int err = 0;

  mark (log, 3);
  mark (log, 4);
  g_assert_cmpint (mem_log_commit (log, false, &err), >, 0);
  clear (log, 3);
  mark (log, 5);
  g_assert_cmpint (mem_log_commit (log, false, &err), >, 0);
  g_assert_true (mem_log_dev_bit (log, 3));
  g_assert_true (mem_log_dev_bit (log, 5));
  g_assert_cmpstr (m->order->str, ==, "WW");
  g_assert_cmpuint (mark (log, 3), ==, 0);
  ndm_dirty_log_free (log);
}

/* A clear commit flushes the legs before it writes the clear. */
static void
test_clear_after_legs_flushed (void)
{
  struct ndm_dirty_log *log = stored_log (64);
  struct mem_log *m = mem_log_of (log);
  int64_t t;
  int err = 0;

  mark (log, 3);
  mark (log, 4);
  g_assert_cmpint (mem_log_commit (log, false, &err), >, 0);
  clear (log, 3);
  t = mem_log_commit (log, true, &err);
  g_assert_cmpint (t, >, 0);
  g_assert_cmpstr (m->order->str, ==, "WFW");
  g_assert_true (m->last.clears);
  g_assert_false (mem_log_dev_bit (log, 3));
  g_assert_true (mem_log_dev_bit (log, 4));
  /* Cleared on the device: a new mark needs a commit. */
  g_assert_cmpuint (mark (log, 3), ==, (uint64_t) t + 1);
  ndm_dirty_log_free (log);
}

/* A clear commit whose flush of the legs fails writes nothing: the marks
 * stay on the device, and count as there (a mark of them needs no
 * commit); the log's letter is the log device's, still A.
 */
static void
test_clear_flush_fails_keeps_marks (void)
{
  struct ndm_dirty_log *log = stored_log (64);
  struct mem_log *m = mem_log_of (log);
  uint64_t r;
  int err = 0;

  mark (log, 3);
  g_assert_cmpint (mem_log_commit (log, false, &err), >, 0);
  clear (log, 3);
  m->fail_flush = EIO;
  g_assert_cmpint (mem_log_commit (log, true, &err), ==, -1);
  g_assert_cmpint (err, ==, EIO);
  g_assert_cmpstr (m->order->str, ==, "WF");
  g_assert_true (mem_log_dev_bit (log, 3));
  g_assert_cmpint (log->health, ==, NDM_DIRTY_LOG_ALIVE);
  ndm_mutex_lock (&log->lock);
  r = 0;
  g_assert_true (ndm_dirty_log_next_marked_locked (log, &r));
  g_assert_cmpuint (r, ==, 3);
  ndm_mutex_unlock (&log->lock);
  g_assert_cmpuint (mark (log, 3), ==, 0);
  ndm_dirty_log_free (log);
}

/* While a clear commit runs, its cleared regions are still "marked" for a
 * leg that leaves: their data may not be stable on it yet.
 */
static void
clearing_seen_during (struct ndm_dirty_log *log, void *data)
{
  uint64_t r = 0;

  ndm_mutex_lock (&log->lock);
  *(bool *) data = ndm_dirty_log_next_marked_locked (log, &r) && r == 3;
  ndm_mutex_unlock (&log->lock);
}

static void
test_clear_in_flight_still_marked (void)
{
  struct ndm_dirty_log *log = stored_log (64);
  struct mem_log *m = mem_log_of (log);
  bool seen = false;
  uint64_t r = 0;
  int err = 0;

  mark (log, 3);
  g_assert_cmpint (mem_log_commit (log, false, &err), >, 0);
  clear (log, 3);
  m->during = clearing_seen_during;
  m->during_data = &seen;
  g_assert_cmpint (mem_log_commit (log, true, &err), >, 0);
  g_assert_true (seen);
  ndm_mutex_lock (&log->lock);
  g_assert_false (ndm_dirty_log_next_marked_locked (log, &r));
  ndm_mutex_unlock (&log->lock);
  ndm_dirty_log_free (log);
}

/* A region marked again while its clear commit runs waits for the next
 * commit: the one in flight is about to write it clean.
 */
static void
test_clear_remark_waits_next (void)
{
  struct ndm_dirty_log *log = stored_log (64);
  struct mem_log *m = mem_log_of (log);
  struct remark r = { .region = 3 };
  int64_t t;
  int err = 0;

  mark (log, 3);
  g_assert_cmpint (mem_log_commit (log, false, &err), >, 0);
  clear (log, 3);
  m->during = remark_during;
  m->during_data = &r;
  t = mem_log_commit (log, true, &err);
  m->during = NULL;
  g_assert_cmpint (t, >, 0);
  g_assert_cmpuint (r.ticket, ==, (uint64_t) t + 1);
  g_assert_false (committed (log, r.ticket));
  g_assert_false (mem_log_dev_bit (log, 3));
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, t + 1);
  g_assert_true (committed (log, r.ticket));
  g_assert_true (mem_log_dev_bit (log, 3));
  ndm_dirty_log_free (log);
}

/* Clear commits are at most every NDM_LOG_CLEAR_MS: one asked sooner is
 * a mark commit; so is one with nothing to clear (no flush of the legs).
 */
static void
test_clear_at_most_every_interval (void)
{
  struct ndm_dirty_log *log = stored_log (64);
  struct mem_log *m = mem_log_of (log);
  int err = 0;

  mark (log, 3);
  mark (log, 4);
  g_assert_cmpint (mem_log_commit (log, true, &err), >, 0);
  g_assert_cmpstr (m->order->str, ==, "W");     /* nothing to clear */
  clear (log, 3);
  g_assert_cmpint (mem_log_commit (log, true, &err), >, 0);
  g_assert_cmpstr (m->order->str, ==, "WFW");
  clear (log, 4);
  mark (log, 5);
  g_assert_cmpint (mem_log_commit (log, true, &err), >, 0);
  g_assert_cmpstr (m->order->str, ==, "WFWW");
  g_assert_true (mem_log_dev_bit (log, 4));
  ndm_mutex_lock (&log->lock);
  log->last_clear -= NDM_LOG_CLEAR_MS * INT64_C (1000);
  ndm_mutex_unlock (&log->lock);
  g_assert_cmpint (mem_log_commit (log, true, &err), >, 0);
  g_assert_cmpstr (m->order->str, ==, "WFWWFW");
  g_assert_false (mem_log_dev_bit (log, 4));
  ndm_dirty_log_free (log);
}

/* ---- commit failures, header, stop -------------------------------------- */

/* A failed write: the letter is D, the ticket not committed; the marks
 * go in the next commit.  No clear is tried while the log is failed.
 */
static void
test_commit_write_fails (void)
{
  struct ndm_dirty_log *log = stored_log (64);
  struct mem_log *m = mem_log_of (log);
  uint64_t t = mark (log, 3);
  g_autofree char *json = NULL, *health = NULL;
  int err = 0;

  m->fail_write = EIO;
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, -1);
  g_assert_cmpint (err, ==, EIO);
  g_assert_cmpint (log->health, ==, NDM_DIRTY_LOG_WRITE_FAILED);
  g_assert_false (committed (log, t));
  g_assert_false (mem_log_dev_bit (log, 3));
  m->fail_write = 0;
  g_assert_cmpuint (mark (log, 3), ==, t + 1);
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, (int64_t) t + 1);
  g_assert_true (committed (log, t));
  g_assert_true (mem_log_dev_bit (log, 3));
  clear (log, 3);
  g_assert_cmpint (mem_log_commit (log, true, &err), ==, 0);
  g_assert_true (mem_log_dev_bit (log, 3));
  g_assert_cmpstr (m->order->str, ==, "WW");
  json = log_json (log);
  health = h_json_str (json, "$.health");
  g_assert_cmpstr (health, ==, "D");
  /* A load (resume) starts it afresh. */
  ndm_dirty_log_load (log, NULL);
  g_assert_cmpint (log->health, ==, NDM_DIRTY_LOG_ALIVE);
  ndm_dirty_log_free (log);
}

/* A type's write that says its flush failed leaves F, not D. */
static void
test_commit_flush_of_log_fails (void)
{
  struct ndm_dirty_log *log = stored_log (64);
  struct mem_log *m = mem_log_of (log);
  int err = 0;

  mark (log, 3);
  m->fail_write = EIO;
  m->write_sets_f = true;
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, -1);
  g_assert_cmpint (log->health, ==, NDM_DIRTY_LOG_FLUSH_FAILED);
  ndm_dirty_log_free (log);
}

/* A leg failed: a header commit with the failed legs as they were when
 * it was copied; set again, nothing changes.
 */
static void
test_commit_header (void)
{
  struct ndm_dirty_log *log = stored_log (64);
  struct mem_log *m = mem_log_of (log);
  uint64_t t;
  int err = 0;

  ndm_mutex_lock (&log->lock);
  t = ndm_dirty_log_set_leg_failed_locked (log, 1, true);
  g_assert_cmpuint (ndm_dirty_log_set_leg_failed_locked (log, 1, true), ==,
                    0);
  ndm_mutex_unlock (&log->lock);
  g_assert_cmpuint (t, !=, 0);
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, (int64_t) t);
  g_assert_true (m->last.header);
  g_assert_cmpuint (m->last.failed_legs, ==, 2);
  g_assert_cmpuint (m->last_nr_blocks, ==, 0);
  g_assert_true (committed (log, t));
  ndm_mutex_lock (&log->lock);
  t = ndm_dirty_log_set_leg_failed_locked (log, 1, false);
  ndm_mutex_unlock (&log->lock);
  m->fail_write = EIO;
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, -1);
  m->fail_write = 0;
  /* The header not written is written by the next commit. */
  g_assert_cmpint (mem_log_commit (log, false, &err), >, (int64_t) t);
  g_assert_true (m->last.header);
  g_assert_cmpuint (m->last.failed_legs, ==, 0);
  g_assert_true (committed (log, t));
  ndm_dirty_log_free (log);
}

/* A stopped log (postsuspend) writes nothing. */
static void
test_commit_stopped (void)
{
  struct ndm_dirty_log *log = stored_log (64);
  uint64_t t = mark (log, 3);
  int err = 0;

  ndm_mutex_lock (&log->lock);
  log->stopped = true;
  ndm_mutex_unlock (&log->lock);
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, 0);
  g_assert_false (committed (log, t));
  g_assert_cmpuint (mem_log_of (log)->writes, ==, 0);
  ndm_dirty_log_free (log);
}

/* ---- suspend ------------------------------------------------------------ */

/* dm's flush at suspend: a clear commit at once, though the last was less
 * than NDM_LOG_CLEAR_MS ago (the legs flushed first), so a clean stop
 * leaves only regions still written marked; then no commit writes until
 * resume.
 */
static void
test_suspend_clears_at_once (void)
{
  struct ndm_dirty_log *log = stored_log (64);
  struct mem_log *m = mem_log_of (log);
  uint64_t t;
  int err = 0;

  mark (log, 3);
  mark (log, 4);
  mark (log, 9);
  g_assert_cmpint (mem_log_commit (log, true, &err), >, 0);
  clear (log, 3);
  g_assert_cmpint (mem_log_commit (log, true, &err), >, 0);
  g_assert_cmpstr (m->order->str, ==, "WFW");
  clear (log, 4);
  g_assert_cmpint (mem_log_commit (log, true, &err), ==, 0);  /* too soon */
  g_assert_true (mem_log_dev_bit (log, 4));
  g_assert_cmpint (ndm_dirty_log_suspend (log, mem_log_flush_legs, log, &err),
                   >, 0);
  g_assert_cmpstr (m->order->str, ==, "WFWFW");
  g_assert_false (mem_log_dev_bit (log, 4));
  g_assert_true (mem_log_dev_bit (log, 9));     /* still written */

  t = mark (log, 5);
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, 0);
  g_assert_false (committed (log, t));
  ndm_dirty_log_resume (log);
  g_assert_cmpint (mem_log_commit (log, false, &err), ==, (int64_t) t);
  g_assert_true (mem_log_dev_bit (log, 5));
  ndm_dirty_log_free (log);
}

/* A log never loaded (its table never went live) knows nothing of the
 * device: suspend neither flushes the legs nor writes.
 */
static void
test_suspend_not_loaded (void)
{
  struct ndm_dirty_log *log = mem_log_new ("2 8 nosync", 64 * 4096, 2);
  struct mem_log *m = mem_log_of (log);
  int err = 0;

  mem_log_dev_set (log, 7);
  ndm_mutex_lock (&log->lock);
  log->committed[0] = 1;        /* as if a check had read something */
  ndm_mutex_unlock (&log->lock);
  g_assert_cmpint (ndm_dirty_log_suspend (log, mem_log_flush_legs, log, &err),
                   ==, 0);
  g_assert_cmpstr (m->order->str, ==, "");
  g_assert_true (mem_log_dev_bit (log, 7));
  ndm_dirty_log_free (log);
}

/* ---- in-sync bits ------------------------------------------------------- */

/* Resync work: regions not in sync, from the cursor round to it again,
 * none twice while recovering; set_region_sync ends the recovering.
 */
static void
test_resync_work (void)
{
  unsigned used;
  struct ndm_dirty_log *log = core_log_new ("core 2 8 nosync", 200 * 4096, &used);
  uint64_t r;

  ndm_dirty_log_load (log, NULL);
  ndm_mutex_lock (&log->lock);
  g_assert_false (ndm_dirty_log_get_resync_work_locked (log, &r));
  ndm_dirty_log_set_region_sync_locked (log, 150, false);
  ndm_dirty_log_set_region_sync_locked (log, 70, false);
  ndm_dirty_log_set_region_sync_locked (log, 199, false);
  g_assert_cmpuint (ndm_dirty_log_sync_count_locked (log), ==, 197);
  g_assert_true (ndm_dirty_log_get_resync_work_locked (log, &r));
  g_assert_cmpuint (r, ==, 70);
  g_assert_true (ndm_dirty_log_get_resync_work_locked (log, &r));
  g_assert_cmpuint (r, ==, 150);
  /* A region behind the cursor goes out of sync: found after wrapping. */
  ndm_dirty_log_set_region_sync_locked (log, 5, false);
  g_assert_true (ndm_dirty_log_get_resync_work_locked (log, &r));
  g_assert_cmpuint (r, ==, 199);
  g_assert_true (ndm_dirty_log_get_resync_work_locked (log, &r));
  g_assert_cmpuint (r, ==, 5);
  g_assert_false (ndm_dirty_log_get_resync_work_locked (log, &r));
  /* A failed copy: not in sync, not recovering: handed out again. */
  ndm_dirty_log_set_region_sync_locked (log, 150, false);
  ndm_dirty_log_set_region_sync_locked (log, 70, true);
  g_assert_true (ndm_dirty_log_get_resync_work_locked (log, &r));
  g_assert_cmpuint (r, ==, 150);
  g_assert_cmpuint (ndm_dirty_log_sync_count_locked (log), ==, 197);
  g_assert_true (ndm_dirty_log_in_sync_locked (log, 70));
  g_assert_false (ndm_dirty_log_in_sync_locked (log, 5));
  ndm_mutex_unlock (&log->lock);
  ndm_dirty_log_free (log);
}

static void
test_status_json (void)
{
  struct ndm_dirty_log *log = stored_log (64);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (JsonNode) want = NULL;
  g_autoptr (JsonNode) got = NULL;
  g_autofree char *json = NULL;
  int err = 0;

  mark (log, 1);
  mark (log, 2);
  mem_log_commit (log, false, &err);
  json = log_json (log);
  /* Every member, typed: compared as JSON values, not as text. */
  g_assert_true (json_parser_load_from_data (parser, "{\"type\":\"mem\","
                 "\"device\":null,\"health\":\"A\",\"region_size\":4096,"
                 "\"regions\":64,\"in_sync\":64,\"marked\":2,"
                 "\"failed_legs\":0,\"dirty_at_load\":0,\"commits\":1}",
                 -1, NULL));
  want = json_node_copy (json_parser_get_root (parser));
  got = h_json_at (json, "$");
  if (!json_node_equal (want, got))
    g_error ("log JSON %s, expected %s", json, json_to_string (want, false));
  ndm_dirty_log_free (log);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  H_ADD_CASES ("/dirty-log/create/error", create_errors, test_create_error);
  g_test_add_func ("/dirty-log/create/core", test_create_core);
  g_test_add_func ("/dirty-log/load/core", test_load_core);
  g_test_add_func ("/dirty-log/load/stored", test_load_stored);
  g_test_add_func ("/dirty-log/mark/core-at-once", test_mark_core);
  g_test_add_func ("/dirty-log/mark/ticket-until-commit",
                   test_mark_ticket_until_commit);
  g_test_add_func ("/dirty-log/mark/group-commit", test_mark_group_commit);
  g_test_add_func ("/dirty-log/mark/during-commit-waits-next",
                   test_mark_during_commit_waits_next);
  g_test_add_func ("/dirty-log/mark/same-region-during-commit",
                   test_mark_same_region_during_commit);
  g_test_add_func ("/dirty-log/clear/mark-commit-never-clears",
                   test_clear_mark_commit_never_clears);
  g_test_add_func ("/dirty-log/clear/after-legs-flushed",
                   test_clear_after_legs_flushed);
  g_test_add_func ("/dirty-log/clear/flush-fails-keeps-marks",
                   test_clear_flush_fails_keeps_marks);
  g_test_add_func ("/dirty-log/clear/in-flight-still-marked",
                   test_clear_in_flight_still_marked);
  g_test_add_func ("/dirty-log/clear/remark-waits-next",
                   test_clear_remark_waits_next);
  g_test_add_func ("/dirty-log/clear/at-most-every-interval",
                   test_clear_at_most_every_interval);
  g_test_add_func ("/dirty-log/commit/write-fails", test_commit_write_fails);
  g_test_add_func ("/dirty-log/commit/log-flush-fails",
                   test_commit_flush_of_log_fails);
  g_test_add_func ("/dirty-log/commit/header", test_commit_header);
  g_test_add_func ("/dirty-log/commit/stopped", test_commit_stopped);
  g_test_add_func ("/dirty-log/suspend/clears-at-once",
                   test_suspend_clears_at_once);
  g_test_add_func ("/dirty-log/suspend/not-loaded-not-written",
                   test_suspend_not_loaded);
  g_test_add_func ("/dirty-log/sync/resync-work", test_resync_work);
  g_test_add_func ("/dirty-log/status/json", test_status_json);
  return g_test_run ();
}
