/* SPDX-License-Identifier: BSD-3-Clause */
/* The disk dirty log type (core/dirty-log-disk.c) and its CRC-32C
 * (core/crc32c.c), against the fake device as the log device.
 *
 * The generic part of the log (core/dirty-log.c) is not used: "dlog", a
 * test target, makes a struct ndm_dirty_log by hand in its ctr, as the
 * mirror's will through ndm_dirty_log_create, and calls the disk type's
 * ctr and load, so that load's errors are the table's:
 *
 *     <start> <length> dlog <log device> <region sectors> <#legs>
 *                           [sync|nosync]
 */
#include "core.h"
#include "harness.h"
#include "crc32c.h"
#include "dirty-log.h"
#include "nbd-dm/control.h"

#define K4 4096
#define LONG_BITS (8 * sizeof (unsigned long))

static void
dlog_free (struct ndm_dirty_log *log)
{
  if (log->type != NULL && log->type->dtr != NULL)
    log->type->dtr (log);
  g_free (log->committed);
  ndm_mutex_clear (&log->lock);
  g_free (log);
}

static int
dlog_ctr (struct ndm_target *ti, unsigned argc, char **argv, GError **err)
{
  struct ndm_dirty_log *log;
  uint64_t sectors, legs;

  if (argc < 3 || argc > 4 ||
      ndm_parse_u64 (argv[1], "region size", &sectors, err) == -1 ||
      ndm_parse_u64 (argv[2], "#legs", &legs, err) == -1) {
    if (err != NULL && *err == NULL)
      g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                   "dlog: <log device> <region sectors> <#legs> [sync]");
    return -1;
  }
  log = g_new0 (struct ndm_dirty_log, 1);
  ndm_mutex_init (&log->lock, NDM_LOCK_LEAF);
  log->ti = ti;
  log->region_size = sectors << NDM_SECTOR_SHIFT;
  log->nr_regions = ((ti->len << NDM_SECTOR_SHIFT) + log->region_size - 1) /
    log->region_size;
  log->nr_legs = legs;
  log->sync = argc < 4 ? NDM_DIRTY_LOG_SYNC_DEFAULT :
    strcmp (argv[3], "nosync") == 0 ? NDM_DIRTY_LOG_SYNC_NONE :
    NDM_DIRTY_LOG_SYNC_FORCE;
  log->health = NDM_DIRTY_LOG_ALIVE;
  log->committed = g_new0 (unsigned long,
                           (log->nr_regions + LONG_BITS - 1) / LONG_BITS);
  if (ndm_dirty_log_disk.ctr (log, ti, 1, argv, err) == -1) {
    dlog_free (log);
    return -1;
  }
  log->type = &ndm_dirty_log_disk;
  if (log->type->load (log, err) == -1) {
    dlog_free (log);
    return -1;
  }
  ti->private = log;
  return 0;
}

static void
dlog_dtr (struct ndm_target *ti)
{
  dlog_free (ti->private);
}

static int
dlog_map (struct ndm_target *ti, struct ndm_clone *clone)
{
  clone->kill_error = EIO;
  return NDM_MAPIO_KILL;
}

static int
dlog_iterate_devices (struct ndm_target *ti, ndm_iterate_devices_fn fn,
                      void *data)
{
  struct ndm_dirty_log *log = ti->private;

  return fn (ti, log->dev, 0, ndm_dirty_log_dev_bytes (log), data);
}

static const struct ndm_target_type dlog_target = {
  .name = "dlog", .version = { 1, 0, 0 },
  .ctr = dlog_ctr, .dtr = dlog_dtr, .map = dlog_map,
  .iterate_devices = dlog_iterate_devices,
};

static const struct ndm_target_type *const dlog_targets[] = {
  &dlog_target, NULL,
};

/* Load table on md, or fail the test. */
static void
dlog_load (struct ndm_md *md, const char *table)
{
  GError *err = NULL;

  g_assert_cmpint (ndm_md_load (md, table, &err), ==, 0);
  g_assert_no_error (err);
}

/* The log of md's (first) dlog target. */
static struct ndm_dirty_log *
log_of (struct ndm_md *md)
{
  struct ndm_table *t = ndm_md_get_table (md);
  struct ndm_dirty_log *log = t->targets[0].private;

  ndm_table_unref (t);          /* md's live reference keeps it */
  return log;
}

/* One test's mapped device: a dlog target on the fake "log". */
struct dcase {
  struct ndm_md *md;
  struct ndm_dirty_log *log;
  struct fake_dev *fd;
  uint8_t *d;                   /* the fake's bytes */
  unsigned from;                /* its commands before the test's own */
};

static void
dcase_init (struct dcase *t, const char *table)
{
  t->md = h_md_new_empty (dlog_targets);
  dlog_load (t->md, table);
  t->log = log_of (t->md);
  t->fd = fake_lookup ("log");
  t->d = fake_data (t->fd);
  t->from = fake_submitted (t->fd);
}

/* The commands the fake got since dcase_init (0: since it was opened). */
static GArray *
dcase_cmds (struct dcase *t, unsigned from)
{
  GArray *cmds = fake_log (t->fd);

  g_array_remove_range (cmds, 0, from);
  return cmds;
}

static void
assert_cmd (const GArray *cmds, unsigned i, enum ndm_op op, uint64_t offset,
            uint64_t len, uint32_t flags)
{
  const struct fake_cmd *c = &g_array_index (cmds, struct fake_cmd, i);

  g_assert_cmpint (c->op, ==, op);
  if (op != NDM_OP_FLUSH) {
    g_assert_cmpuint (c->offset, ==, offset);
    g_assert_cmpuint (c->len, ==, len);
  }
  g_assert_cmphex (c->flags, ==, flags);
}

static const uint64_t block0[] = { 0 };

/* Write a commit of the n blocks idx through the type, block i's bytes
 * all 0x10 + i (so bit 4 of each of their bytes marked).
 */
static int
dcase_commit (struct dcase *t, const uint64_t *idx, unsigned n, bool header,
              int *err)
{
  struct ndm_dirty_log_commit c = {
    .ticket = 1, .header = header, .block_size = t->log->block_size,
  };
  unsigned i;
  int r;

  c.blocks = g_array_new (FALSE, FALSE, sizeof (uint64_t));
  g_array_append_vals (c.blocks, idx, n);
  c.buf = g_malloc ((size_t) n * c.block_size);
  for (i = 0; i < n; i++)
    memset ((uint8_t *) c.buf + (size_t) i * c.block_size, 0x10 + idx[i],
            c.block_size);
  r = t->log->type->write (t->log, &c, err);
  g_array_unref (c.blocks);
  g_free (c.buf);
  return r;
}

static uint32_t
le32_at (const uint8_t *p, size_t off)
{
  return p[off] | p[off + 1] << 8 | p[off + 2] << 16 |
    (uint32_t) p[off + 3] << 24;
}

static uint64_t
le64_at (const uint8_t *p, size_t off)
{
  return le32_at (p, off) | (uint64_t) le32_at (p, off + 4) << 32;
}

static void
set_le32 (uint8_t *p, size_t off, uint32_t v)
{
  unsigned i;

  for (i = 0; i < 4; i++)
    p[off + i] = v >> (8 * i);
}

static bool
committed_bit (struct ndm_dirty_log *log, uint64_t r)
{
  return (log->committed[r / LONG_BITS] >> (r % LONG_BITS)) & 1;
}

static char *
log_status (struct ndm_dirty_log *log, enum ndm_status_type type)
{
  GString *out = g_string_new (NULL);

  ndm_mutex_lock (&log->lock);
  log->type->status (log, type, out);
  ndm_mutex_unlock (&log->lock);
  return g_string_free (out, FALSE);
}

/* ---- CRC-32C ---------------------------------------------------------- */

/* The check value of the CRC catalogue and RFC 3720's (iSCSI) vectors. */
static void
test_crc32c_vectors (void)
{
  uint8_t buf[32];
  unsigned i;

  g_assert_cmphex (ndm_crc32c ("123456789", 9), ==, 0xe3069283);
  g_assert_cmphex (ndm_crc32c ("", 0), ==, 0);
  memset (buf, 0, sizeof buf);
  g_assert_cmphex (ndm_crc32c (buf, sizeof buf), ==, 0x8a9136aa);
  memset (buf, 0xff, sizeof buf);
  g_assert_cmphex (ndm_crc32c (buf, sizeof buf), ==, 0x62a8ab43);
  for (i = 0; i < sizeof buf; i++)
    buf[i] = i;
  g_assert_cmphex (ndm_crc32c (buf, sizeof buf), ==, 0x46dd794e);
  for (i = 0; i < sizeof buf; i++)
    buf[i] = 31 - i;
  g_assert_cmphex (ndm_crc32c (buf, sizeof buf), ==, 0x113fdb5c);
}

/* ---- a new log --------------------------------------------------------- */

/* 100 regions of 16 sectors (the last bitmap byte half used), 2 legs: a
 * zero header becomes this log's, the bitmap before the header, each
 * with FUA, every region marked.
 */
static void
test_new_log_initialised (void)
{
  struct dcase t;
  g_autoptr (GArray) cmds = NULL;
  uint64_t r;
  unsigned i;

  dcase_init (&t, "0 1600 dlog fake://log?size=64K 16 2");
  g_assert_cmpmem (t.d, 8, "NBDDMLOG", 8);
  g_assert_cmpuint (le32_at (t.d, 8), ==, 1);
  g_assert_cmpuint (le32_at (t.d, 12), ==, 4096);
  g_assert_cmpuint (le64_at (t.d, 16), ==, 16 * 512);
  g_assert_cmpuint (le64_at (t.d, 24), ==, 100);
  g_assert_cmpuint (le32_at (t.d, 32), ==, 2);
  g_assert_cmpuint (le32_at (t.d, 36), ==, 0);
  g_assert_cmpuint (le64_at (t.d, 40), ==, 0);
  g_assert_cmphex (t.d[54] >> 4, ==, 4);        /* a random (v4) uuid */
  g_assert_cmphex (t.d[56] >> 6, ==, 2);
  g_assert_cmpuint (le64_at (t.d, 64), ==, 1);
  for (i = 72; i < 4092; i++)
    g_assert_cmpuint (t.d[i], ==, 0);
  g_assert_cmphex (le32_at (t.d, 4092), ==, ndm_crc32c (t.d, 4092));

  for (i = 0; i < 12; i++)
    g_assert_cmphex (t.d[4096 + i], ==, 0xff);
  g_assert_cmphex (t.d[4096 + 12], ==, 0x0f);
  for (i = 13; i < K4; i++)
    g_assert_cmpuint (t.d[4096 + i], ==, 0);
  for (r = 0; r < 100; r++)
    g_assert_true (committed_bit (t.log, r));
  g_assert_cmpuint (t.log->failed_legs, ==, 0);

  /* Read the header, then the bitmap written, then the header. */
  cmds = dcase_cmds (&t, 0);
  g_assert_cmpuint (cmds->len, ==, 3);
  assert_cmd (cmds, 0, NDM_OP_READ, 0, 4096, 0);
  assert_cmd (cmds, 1, NDM_OP_WRITE, 4096, 4096, NDM_REQ_FUA);
  assert_cmd (cmds, 2, NDM_OP_WRITE, 0, 4096, NDM_REQ_FUA);
  h_md_free (t.md);
}

/* nosync: the legs are equal, nothing is marked; on a device without FUA
 * each write is followed by a flush before the next.
 */
static void
test_new_log_nosync_without_fua (void)
{
  struct dcase t;
  g_autoptr (GArray) cmds = NULL;
  unsigned i;

  dcase_init (&t, "0 1600 dlog fake://log?size=64K&fua=0 16 2 nosync");
  for (i = 0; i < K4; i++)
    g_assert_cmpuint (t.d[4096 + i], ==, 0);
  for (i = 0; i < 100; i++)
    g_assert_false (committed_bit (t.log, i));
  g_assert_cmpuint (le64_at (t.d, 64), ==, 1);
  cmds = dcase_cmds (&t, 0);
  g_assert_cmpuint (cmds->len, ==, 5);
  assert_cmd (cmds, 1, NDM_OP_WRITE, 4096, 4096, 0);
  assert_cmd (cmds, 2, NDM_OP_FLUSH, 0, 0, 0);
  assert_cmd (cmds, 3, NDM_OP_WRITE, 0, 4096, 0);
  assert_cmd (cmds, 4, NDM_OP_FLUSH, 0, 0, 0);
  h_md_free (t.md);
}

/* Load runs in ctr, before the device is started (before nbdkit forks):
 * its I/O needs no thread but the caller's, which leads the channel its
 * commands went to.  Then a commit on a thread of its own, as the log's.
 */
static gpointer
commit_thread (gpointer data)
{
  struct dcase *t = data;
  int err = 0;

  g_assert_cmpint (dcase_commit (t, block0, 1, true, &err), ==, 0);
  return NULL;
}

static void
test_load_in_ctr_channel_mode (void)
{
  struct dcase t;

  dcase_init (&t, "0 1600 dlog fake://log?size=64K&mode=channel 16 2");
  g_assert_cmpmem (t.d, 8, "NBDDMLOG", 8);
  g_assert_cmphex (t.d[4096], ==, 0xff);
  g_thread_join (g_thread_new ("commit", commit_thread, &t));
  g_assert_cmphex (t.d[4096], ==, 0x10);
  g_assert_cmpuint (le64_at (t.d, 64), ==, 2);
  h_md_free (t.md);
}

/* ---- commits ----------------------------------------------------------- */

/* Blocks 0, 2 and 3 of 512 bytes: two writes (2 and 3 are one run) at
 * 4096 + 512 * index, each with FUA, no flush.
 */
static void
test_commit_fua (void)
{
  static const uint64_t idx[] = { 0, 2, 3 };
  struct dcase t;
  g_autoptr (GArray) cmds = NULL;
  int err = 0;

  dcase_init (&t, "0 98304 dlog fake://log?size=64K&pref=512 8 2");
  g_assert_cmpuint (t.log->block_size, ==, 512);
  g_assert_cmpuint (t.log->nr_regions, ==, 12288);      /* 3 blocks */
  g_assert_cmpint (dcase_commit (&t, idx, 3, false, &err), ==, 0);
  cmds = dcase_cmds (&t, t.from);
  g_assert_cmpuint (cmds->len, ==, 2);
  assert_cmd (cmds, 0, NDM_OP_WRITE, 4096, 512, NDM_REQ_FUA);
  assert_cmd (cmds, 1, NDM_OP_WRITE, 4096 + 2 * 512, 1024, NDM_REQ_FUA);
  g_assert_cmphex (t.d[4096], ==, 0x10);
  g_assert_cmphex (t.d[4096 + 511], ==, 0x10);
  g_assert_cmphex (t.d[4096 + 512], ==, 0xff);  /* block 1: as made */
  g_assert_cmphex (t.d[4096 + 1024], ==, 0x12);
  g_assert_cmphex (t.d[4096 + 1536], ==, 0x13);
  g_assert_cmphex (t.d[4096 + 2047], ==, 0x13);
  g_assert_cmpuint (le64_at (t.d, 64), ==, 1);  /* no header asked */
  h_md_free (t.md);
}

/* Without FUA: the writes, then one flush; an empty commit, nothing. */
static void
test_commit_write_flush (void)
{
  static const uint64_t idx[] = { 1, 2 };
  struct dcase t;
  g_autoptr (GArray) cmds = NULL;
  int err = 0;

  dcase_init (&t, "0 98304 dlog fake://log?size=64K&pref=512&fua=0 8 2");
  g_assert_cmpint (dcase_commit (&t, idx, 0, false, &err), ==, 0);
  g_assert_cmpuint (fake_submitted (t.fd), ==, t.from);
  g_assert_cmpint (dcase_commit (&t, idx, 2, false, &err), ==, 0);
  cmds = dcase_cmds (&t, t.from);
  g_assert_cmpuint (cmds->len, ==, 2);
  assert_cmd (cmds, 0, NDM_OP_WRITE, 4096 + 512, 1024, 0);
  assert_cmd (cmds, 1, NDM_OP_FLUSH, 0, 0, 0);
  g_assert_cmphex (t.d[4096 + 512], ==, 0x11);
  g_assert_cmphex (t.d[4096 + 1024], ==, 0x12);
  h_md_free (t.md);
}

/* A failed write is the log's D; status says so. */
static void
test_commit_write_error (void)
{
  struct dcase t;
  g_autofree char *before = NULL, *after = NULL;
  int err = 0;

  dcase_init (&t, "0 1600 dlog fake://log?size=64K 16 2");
  before = log_status (t.log, NDM_STATUS_INFO);
  g_assert_cmpstr (before, ==, "3 disk fake://log?size=64K A");
  fake_fail_at (t.fd, t.from, EIO);
  g_assert_cmpint (dcase_commit (&t, block0, 1, false, &err), ==, -1);
  g_assert_cmpint (err, ==, EIO);
  g_assert_cmpint (t.log->health, ==, NDM_DIRTY_LOG_WRITE_FAILED);
  after = log_status (t.log, NDM_STATUS_INFO);
  g_assert_cmpstr (after, ==, "3 disk fake://log?size=64K D");
  /* A commit that works does not make the log alive again (as dm). */
  g_assert_cmpint (dcase_commit (&t, block0, 1, false, &err), ==, 0);
  g_assert_cmpint (t.log->health, ==, NDM_DIRTY_LOG_WRITE_FAILED);
  h_md_free (t.md);
}

/* A failed flush is the log's F. */
static void
test_commit_flush_error (void)
{
  struct dcase t;
  g_autofree char *after = NULL;
  int err = 0;

  dcase_init (&t, "0 1600 dlog fake://log?size=64K&fua=0 16 2");
  fake_fail_at (t.fd, t.from + 1, EIO);         /* the flush */
  g_assert_cmpint (dcase_commit (&t, block0, 1, false, &err), ==, -1);
  g_assert_cmpint (err, ==, EIO);
  g_assert_cmpint (t.log->health, ==, NDM_DIRTY_LOG_FLUSH_FAILED);
  after = log_status (t.log, NDM_STATUS_INFO);
  g_assert_cmpstr (after, ==, "3 disk fake://log?size=64K&fua=0 F");
  /* A write failing after it leaves F: a lost flush may have lost more. */
  fake_fail_at (t.fd, fake_submitted (t.fd), EIO);
  g_assert_cmpint (dcase_commit (&t, block0, 1, false, &err), ==, -1);
  g_assert_cmpint (t.log->health, ==, NDM_DIRTY_LOG_FLUSH_FAILED);
  h_md_free (t.md);
}

/* ---- reload ----------------------------------------------------------- */

/* A log written by a commit (marks, and a header with failed legs) is
 * read back by the next table of the same geometry: the same bits, the
 * same failed legs, the same uuid; the generation went up at each header
 * write, and not at the load.
 */
static void
test_reload_reads_bitmap (void)
{
  static const char table[] = "0 1600 dlog fake://log?size=64K 16 3 nosync";
  struct dcase t;
  uint8_t uuid[16];
  uint64_t r;
  int err = 0;

  dcase_init (&t, table);
  /* Bit 4 of each byte: regions 4, 12, ..., 100; legs 0 and 2 failed. */
  ndm_mutex_lock (&t.log->lock);
  t.log->failed_legs = 0x5;
  ndm_mutex_unlock (&t.log->lock);
  memcpy (uuid, t.d + 48, sizeof uuid);
  g_assert_cmpint (dcase_commit (&t, block0, 1, true, &err), ==, 0);
  g_assert_cmpuint (le64_at (t.d, 64), ==, 2);
  g_assert_cmpint (dcase_commit (&t, block0, 1, true, &err), ==, 0);
  g_assert_cmpuint (le64_at (t.d, 64), ==, 3);
  g_assert_cmpuint (le64_at (t.d, 40), ==, 0x5);
  g_assert_cmphex (le32_at (t.d, 4092), ==, ndm_crc32c (t.d, 4092));

  dlog_load (t.md, table);      /* a new target, the same fake */
  t.log = log_of (t.md);
  for (r = 0; r < 100; r++)
    g_assert_cmpint (committed_bit (t.log, r), ==, r % 8 == 4);
  g_assert_cmphex (t.log->failed_legs, ==, 0x5);
  g_assert_cmpmem (t.d + 48, 16, uuid, 16);     /* not made anew */
  g_assert_cmpuint (le64_at (t.d, 64), ==, 3);
  h_md_free (t.md);
}

/* ---- status ----------------------------------------------------------- */

static void
test_status_table (void)
{
  static const struct {
    const char *table, *want;
  } rows[] = {
    { "0 1600 dlog fake://log?size=64K 16 2",
      "disk 2 fake://log?size=64K 16 " },
    { "0 1600 dlog fake://log?size=64K 16 2 nosync",
      "disk 3 fake://log?size=64K 16 nosync " },
    { "0 1600 dlog fake://log?size=64K 16 2 sync",
      "disk 3 fake://log?size=64K 16 sync " },
  };
  unsigned i;

  for (i = 0; i < G_N_ELEMENTS (rows); i++) {
    struct dcase t;
    g_autofree char *got = NULL;

    dcase_init (&t, rows[i].table);
    got = log_status (t.log, NDM_STATUS_TABLE);
    g_assert_cmpstr (got, ==, rows[i].want);
    h_md_free (t.md);
  }
}

/* ---- refused logs: one case per row ----------------------------------- */

/* What a row does to the log the first table made, before the second. */
enum poke {
  POKE_NONE, POKE_ELF, POKE_VERSION, POKE_BYTE, POKE_HEADER_SIZE,
  POKE_FLAGS, POKE_READ_FAILS, POKE_NEW_WRITE_FAILS,
};

struct refused {
  const char *name;
  const char *first;            /* makes the log (NULL: none) */
  enum poke poke;
  const char *second;           /* then fails with want */
  const char *want;
};

#define LOG "fake://log?size=64K"
#define MADE "0 1600 dlog " LOG " 16 2"

static const struct refused refused_rows[] = {
  { "magic", MADE, POKE_ELF, MADE,
    "line 1: dlog: disk log " LOG " is not a mirror log (magic "
    "0x7f454c4602010100): refusing to overwrite it" },
  { "version", MADE, POKE_VERSION, MADE,
    "disk log " LOG " has version 2: this nbd-dm reads version 1 only" },
  { "crc", MADE, POKE_BYTE, MADE,
    "disk log " LOG ": header CRC 0x" },
  { "crc-says", MADE, POKE_BYTE, MADE,
    "a damaged header, refusing to overwrite it (zero its first 4096 "
    "bytes to start afresh)" },
  { "header-size", MADE, POKE_HEADER_SIZE, MADE,
    "disk log " LOG " has header size 8192 and flags 0x0: version 1 has "
    "4096 and 0" },
  { "flags", MADE, POKE_FLAGS, MADE,
    "disk log " LOG " has header size 4096 and flags 0x1: version 1 has "
    "4096 and 0" },
  { "region-size", MADE, POKE_NONE, "0 1600 dlog " LOG " 32 2",
    "disk log " LOG " was made for 2 legs, 100 regions of 16 sectors; this "
    "table has 2 legs, 50 regions of 32 sectors: not reused (zero its "
    "first 4096 bytes to start afresh)" },
  { "region-count", MADE, POKE_NONE, "0 3200 dlog " LOG " 16 2",
    "was made for 2 legs, 100 regions of 16 sectors; this table has 2 "
    "legs, 200 regions of 16 sectors" },
  { "legs", MADE, POKE_NONE, "0 1600 dlog " LOG " 16 3",
    "was made for 2 legs, 100 regions of 16 sectors; this table has 3 "
    "legs, 100 regions of 16 sectors" },
  { "device-too-small", NULL, POKE_NONE,
    "0 1600 dlog fake://log?size=4K 16 2",
    "line 1: dlog: disk log fake://log?size=4K has 4096 bytes, too few for "
    "100 regions: it needs 8192 (a 4096-byte header, then the bitmap in "
    "4096-byte blocks)" },
  { "bitmap-past-device", NULL, POKE_NONE,
    "0 524288 dlog fake://log?size=8K&pref=512 8 2",
    "has 8192 bytes, too few for 65536 regions: it needs 12288" },
  { "read-error", MADE, POKE_READ_FAILS, MADE,
    "line 1: dlog: disk log " LOG ": reading its header: Input/output "
    "error" },
  { "new-log-write-error", MADE, POKE_NEW_WRITE_FAILS, MADE,
    "line 1: dlog: disk log " LOG ": writing a new log: Input/output "
    "error" },
  { "read-only", NULL, POKE_NONE, "0 1600 dlog fake://log?ro=1 16 2",
    "line 1: dlog: disk log fake://log?ro=1 is read-only: a log must be "
    "written" },
};

/* Set the header's CRC right after a change (the row is about the
 * change, not the CRC).
 */
static void
fix_crc (uint8_t *d)
{
  set_le32 (d, 4092, ndm_crc32c (d, 4092));
}

static void
test_refused (gconstpointer data)
{
  const struct refused *row = data;
  struct ndm_md *md = h_md_new_empty (dlog_targets);
  GError *err = NULL;

  if (row->first != NULL) {
    uint8_t *d;

    dlog_load (md, row->first);
    d = fake_data (fake_lookup ("log"));
    switch (row->poke) {
    case POKE_NONE:
      break;
    case POKE_ELF:
      memcpy (d, "\x7f" "ELF\x02\x01\x01\x00", 8);
      fix_crc (d);
      break;
    case POKE_VERSION:
      set_le32 (d, 8, 2);
      fix_crc (d);
      break;
    case POKE_BYTE:
      d[100] ^= 1;              /* in the zero part: only the CRC sees */
      break;
    case POKE_HEADER_SIZE:
      set_le32 (d, 12, 8192);
      fix_crc (d);
      break;
    case POKE_FLAGS:
      set_le32 (d, 36, 1);
      fix_crc (d);
      break;
    case POKE_READ_FAILS:
      fake_fail_range (fake_lookup ("log"), 0, 512, EIO);
      break;
    case POKE_NEW_WRITE_FAILS:
      memset (d, 0, K4);        /* a new log, whose bitmap cannot be written */
      fake_fail_range (fake_lookup ("log"), K4, 512, EIO);
      break;
    }
  }
  g_assert_cmpint (ndm_md_load (md, row->second, &err), ==, -1);
  g_assert_nonnull (err);
  if (strstr (err->message, row->want) == NULL)
    g_test_fail_printf ("error '%s' does not contain '%s'", err->message,
                        row->want);
  g_clear_error (&err);
  h_md_free (md);
}

/* A refused log is left as it was: nothing was written to it. */
static void
test_refused_not_written (void)
{
  struct dcase t;
  g_autofree uint8_t *before = NULL;
  unsigned writes;
  GError *err = NULL;

  dcase_init (&t, MADE);
  t.d[100] ^= 1;
  before = g_memdup2 (t.d, 64 * 1024);
  writes = fake_count_op (t.fd, NDM_OP_WRITE);
  g_assert_cmpint (ndm_md_load (t.md, MADE, &err), ==, -1);
  g_assert_nonnull (err);
  g_clear_error (&err);
  g_assert_cmpuint (fake_count_op (t.fd, NDM_OP_WRITE), ==, writes);
  g_assert_cmpmem (t.d, 64 * 1024, before, 64 * 1024);
  h_md_free (t.md);
}

/* ---- the generic part over the disk type ------------------------------ */

/* "glog <log type> <#log args> <args>...": a log of two legs made as
 * the mirror makes its own, through ndm_dirty_log_create and
 * ndm_dirty_log_load.
 */
static int
glog_ctr (struct ndm_target *ti, unsigned argc, char **argv, GError **err)
{
  struct ndm_dirty_log *log;
  unsigned used = 0;

  log = ndm_dirty_log_create (ti, argc, argv, ti->len << NDM_SECTOR_SHIFT, 2,
                              &used, err);
  if (log == NULL)
    return -1;
  if (used != argc) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE, "glog: '%s' after the log",
                 argv[used]);
    ndm_dirty_log_free (log);
    return -1;
  }
  if (ndm_dirty_log_load (log, err) == -1) {
    ndm_dirty_log_free (log);
    return -1;
  }
  ti->private = log;
  return 0;
}

static void
glog_dtr (struct ndm_target *ti)
{
  ndm_dirty_log_free (ti->private);
}

static const struct ndm_target_type glog_target = {
  .name = "glog", .version = { 1, 0, 0 },
  .ctr = glog_ctr, .dtr = glog_dtr, .map = dlog_map,
  .iterate_devices = dlog_iterate_devices,
};

static int
legs_flushed (void *data, int *err)
{
  (*(unsigned *) data)++;
  return 0;
}

/* Marks committed by the generic part reach the log device through the
 * disk type, and a log loaded again from the device says those regions,
 * and only those, are not in sync.
 */
static void
test_generic_round_trip (void)
{
  static const struct ndm_target_type *const targets[] = {
    &glog_target, NULL,
  };
  struct ndm_md *md = h_md_new_empty (targets);
  g_autoptr (GString) out = g_string_new (NULL);
  char *reload[] = {
    "reload", "0 1600 glog disk 2 fake://log2?size=64K&data=log 16",
  };
  char *resume[] = { "resume" };
  struct ndm_table *t;
  struct ndm_dirty_log *log;
  uint64_t t3, t9;
  unsigned flushes = 0;
  GError *gerr = NULL;
  int err = 0;

  g_assert_cmpint (ndm_md_load (md, "0 1600 glog disk 3 "
                                "fake://log?size=64K 16 nosync", &gerr), ==,
                   0);
  g_assert_no_error (gerr);
  ndm_md_start (md);
  t = ndm_md_get_table (md);
  log = t->targets[0].private;
  ndm_mutex_lock (&log->lock);
  t3 = ndm_dirty_log_mark_locked (log, 3);
  t9 = ndm_dirty_log_mark_locked (log, 9);
  g_assert_cmpuint (t3, !=, 0);
  g_assert_false (ndm_dirty_log_committed_locked (log, t9));
  ndm_mutex_unlock (&log->lock);
  g_assert_cmpint (ndm_dirty_log_commit (log, false, legs_flushed, &flushes,
                                         &err), >, 0);
  ndm_mutex_lock (&log->lock);
  g_assert_true (ndm_dirty_log_committed_locked (log, t3));
  g_assert_true (ndm_dirty_log_committed_locked (log, t9));
  ndm_mutex_unlock (&log->lock);
  g_assert_cmpint (fake_data (fake_lookup ("log"))[K4], ==, 1 << 3);
  g_assert_cmpint (fake_data (fake_lookup ("log"))[K4 + 1], ==, 1 << 1);
  ndm_table_unref (t);

  g_assert_cmpint (ndm_md_command (md, 2, reload, out, &gerr), ==, 0);
  g_assert_no_error (gerr);
  g_assert_cmpint (ndm_md_command (md, 1, resume, out, &gerr), ==, 0);
  t = ndm_md_get_table (md);
  log = t->targets[0].private;
  ndm_mutex_lock (&log->lock);
  g_assert_false (ndm_dirty_log_in_sync_locked (log, 3));
  g_assert_false (ndm_dirty_log_in_sync_locked (log, 9));
  g_assert_true (ndm_dirty_log_in_sync_locked (log, 4));
  g_assert_cmpuint (ndm_dirty_log_sync_count_locked (log), ==,
                    log->nr_regions - 2);
  ndm_mutex_unlock (&log->lock);
  ndm_table_unref (t);
  h_md_free (md);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/dirty-log-disk/crc32c/vectors", test_crc32c_vectors);
  g_test_add_func ("/dirty-log-disk/load/new-log-initialised",
                   test_new_log_initialised);
  g_test_add_func ("/dirty-log-disk/load/new-log-nosync-without-fua",
                   test_new_log_nosync_without_fua);
  g_test_add_func ("/dirty-log-disk/load/in-ctr-channel-mode",
                   test_load_in_ctr_channel_mode);
  g_test_add_func ("/dirty-log-disk/load/reload-reads-bitmap",
                   test_reload_reads_bitmap);
  H_ADD_CASES ("/dirty-log-disk/load/refused", refused_rows, test_refused);
  g_test_add_func ("/dirty-log-disk/load/refused-log-not-written",
                   test_refused_not_written);
  g_test_add_func ("/dirty-log-disk/write/fua", test_commit_fua);
  g_test_add_func ("/dirty-log-disk/write/write-then-flush",
                   test_commit_write_flush);
  g_test_add_func ("/dirty-log-disk/write/write-error-d",
                   test_commit_write_error);
  g_test_add_func ("/dirty-log-disk/write/flush-error-f",
                   test_commit_flush_error);
  g_test_add_func ("/dirty-log-disk/status/table", test_status_table);
  g_test_add_func ("/dirty-log-disk/generic/round-trip",
                   test_generic_round_trip);
  return g_test_run ();
}
