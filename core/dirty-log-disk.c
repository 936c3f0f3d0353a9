/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the disk dirty log type (dm-log's "disk"): a mirror's region
 * bitmap kept on an NBD device, so that after a restart only the regions
 * that were being written are copied.
 *
 *     disk <#log args> <log device> <region size> [sync|nosync]
 *
 * This file parses <log device>; the generic part (core/dirty-log.c)
 * parses the rest and runs the commits.  The format, byte by byte, is in
 * docs/targets/mirror.md, "Dirty log": block 0 is a 4096-byte header
 * (magic, version, geometry, failed legs, uuid, generation, CRC-32C),
 * then a bit per region (bit r % 8 of byte r / 8), stored in blocks of
 * log->block_size.
 *
 * A log is checked, never repaired: a foreign magic, a bad CRC or
 * another geometry is refused, since a wrong URI or another mirror's log
 * must not be overwritten, and a log of other geometry names other
 * regions.  An all-zero header is a new log.
 *
 * Thread model: ctr, dtr, check (ctr) and load (first resume) on the
 * control thread; write on the log's own thread, and at postsuspend on
 * the control thread; status on the control thread.  All I/O is
 * ndm_target_io on the calling thread, without log->lock; the lock is
 * taken only to read or set the log's fields (failed_legs, committed,
 * health).
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#include "nbd-dm/target.h"
#include "crc32c.h"
#include "dirty-log.h"
#include "log.h"

#define DISK_CRC_OFFSET (NDM_DIRTY_LOG_HEADER_SIZE - 4)
/* A commit's block: the device's preferred block, not past this. */
#define DISK_MAX_BLOCK 65536u
#define LONG_BITS (8 * sizeof (unsigned long))

struct disk_log_c {
  /* The control thread's at load, then the log thread's. */
  uint8_t uuid[16];
  uint64_t generation;          /* of the header on the device */
};

/* A commit's unit: a whole preferred block where the device says one (so
 * the engine writes it without read-modify-write), at least a sector.
 */
static uint32_t
disk_block_size (const struct ndm_device *dev)
{
  return MAX (NDM_SECTOR_SIZE,
              MAX (dev->limits.min_block,
                   MIN (dev->limits.pref_block, DISK_MAX_BLOCK)));
}

/* <log device>: argv[0]; the words after it are the generic part's. */
static int
disk_ctr (struct ndm_dirty_log *log, struct ndm_target *ti, unsigned argc,
          char **argv, GError **err)
{
  struct ndm_device *dev;

  if (argc < 1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "disk log: expected '<log device> <region size> "
                 "[sync|nosync]', got no log device");
    return -1;
  }
  dev = ndm_table_get_metadata_device (ti, argv[0], err);
  if (dev == NULL)
    return -1;
  if (dev->caps.read_only) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "disk log %s is read-only: a log must be written",
                 argv[0]);
    return -1;
  }
  log->dev = dev;
  log->block_size = disk_block_size (dev);
  log->context = g_new0 (struct disk_log_c, 1);
  return 0;
}

static void
disk_dtr (struct ndm_dirty_log *log)
{
  g_free (log->context);
  log->context = NULL;
}

/* ---- the header, encoded at the offsets of struct ndm_dirty_log_header
 * (held to docs/targets/mirror.md by tests/unit/test-mirror-headers.c) */

static void
put_le32 (uint8_t *buf, size_t off, uint32_t v)
{
  v = GUINT32_TO_LE (v);
  memcpy (buf + off, &v, sizeof v);
}

static void
put_le64 (uint8_t *buf, size_t off, uint64_t v)
{
  v = GUINT64_TO_LE (v);
  memcpy (buf + off, &v, sizeof v);
}

static uint32_t
get_le32 (const uint8_t *buf, size_t off)
{
  uint32_t v;

  memcpy (&v, buf + off, sizeof v);
  return GUINT32_FROM_LE (v);
}

static uint64_t
get_le64 (const uint8_t *buf, size_t off)
{
  uint64_t v;

  memcpy (&v, buf + off, sizeof v);
  return GUINT64_FROM_LE (v);
}

#define HOFF(field) offsetof (struct ndm_dirty_log_header, field)

/* buf: NDM_DIRTY_LOG_HEADER_SIZE bytes, all of them written. */
static void
header_encode (const struct ndm_dirty_log_header *h, uint8_t *buf)
{
  memset (buf, 0, NDM_DIRTY_LOG_HEADER_SIZE);
  memcpy (buf + HOFF (magic), h->magic, sizeof h->magic);
  put_le32 (buf, HOFF (version), h->version);
  put_le32 (buf, HOFF (header_size), h->header_size);
  put_le64 (buf, HOFF (region_size), h->region_size);
  put_le64 (buf, HOFF (nr_regions), h->nr_regions);
  put_le32 (buf, HOFF (nr_legs), h->nr_legs);
  put_le32 (buf, HOFF (flags), h->flags);
  put_le64 (buf, HOFF (failed_legs), h->failed_legs);
  memcpy (buf + HOFF (uuid), h->uuid, sizeof h->uuid);
  put_le64 (buf, HOFF (generation), h->generation);
  put_le32 (buf, DISK_CRC_OFFSET, ndm_crc32c (buf, DISK_CRC_OFFSET));
}

static void
header_decode (const uint8_t *buf, struct ndm_dirty_log_header *h)
{
  memcpy (h->magic, buf + HOFF (magic), sizeof h->magic);
  h->version = get_le32 (buf, HOFF (version));
  h->header_size = get_le32 (buf, HOFF (header_size));
  h->region_size = get_le64 (buf, HOFF (region_size));
  h->nr_regions = get_le64 (buf, HOFF (nr_regions));
  h->nr_legs = get_le32 (buf, HOFF (nr_legs));
  h->flags = get_le32 (buf, HOFF (flags));
  h->failed_legs = get_le64 (buf, HOFF (failed_legs));
  memcpy (h->uuid, buf + HOFF (uuid), sizeof h->uuid);
  h->generation = get_le64 (buf, HOFF (generation));
}

/* The header of this log as it is now, failed_legs given. */
static void
header_make (struct ndm_dirty_log *log, uint64_t failed_legs,
             uint64_t generation, struct ndm_dirty_log_header *h)
{
  struct disk_log_c *dc = log->context;

  memset (h, 0, sizeof *h);
  memcpy (h->magic, NDM_DIRTY_LOG_MAGIC, sizeof h->magic);
  h->version = NDM_DIRTY_LOG_VERSION;
  h->header_size = NDM_DIRTY_LOG_HEADER_SIZE;
  h->region_size = log->region_size;
  h->nr_regions = log->nr_regions;
  h->nr_legs = log->nr_legs;
  h->failed_legs = failed_legs;
  memcpy (h->uuid, dc->uuid, sizeof h->uuid);
  h->generation = generation;
}

/* ---- I/O: every write stable before the function returns (R9) ------ */

/* F outranks D, as in dm's status: a failed flush may have lost more. */
static void
disk_set_health (struct ndm_dirty_log *log, enum ndm_dirty_log_health h)
{
  ndm_mutex_lock (&log->lock);
  if (h == NDM_DIRTY_LOG_FLUSH_FAILED ||
      log->health == NDM_DIRTY_LOG_ALIVE)
    log->health = h;
  ndm_mutex_unlock (&log->lock);
}

static int
disk_io (struct ndm_dirty_log *log, enum ndm_op op, uint32_t flags,
         uint64_t offset, void *buf, uint64_t len, int *err)
{
  const struct ndm_io_where where = { log->dev, offset };

  return ndm_target_io (log->ti, op, flags, &where, 1, buf, len, NULL, err);
}

/* With FUA where the device has it; else disk_sync makes it stable.  A
 * failure is the log's D.
 */
static int
disk_write (struct ndm_dirty_log *log, uint64_t offset, void *buf,
            uint64_t len, int *err)
{
  uint32_t flags = log->dev->caps.fua ? NDM_REQ_FUA : 0;

  if (disk_io (log, NDM_OP_WRITE, flags, offset, buf, len, err) == -1) {
    disk_set_health (log, NDM_DIRTY_LOG_WRITE_FAILED);
    return -1;
  }
  return 0;
}

/* After disk_write: a flush unless the writes were FUA, or the device has
 * no volatile cache (no flush advertised: R9).  A failure is the log's F.
 * Separate from the writes, and not the engine's FUA emulation, so that
 * the letter says which failed and a commit of several runs flushes once.
 */
static int
disk_sync (struct ndm_dirty_log *log, int *err)
{
  if (log->dev->caps.fua || !log->dev->caps.flush)
    return 0;
  if (disk_io (log, NDM_OP_FLUSH, 0, 0, NULL, 0, err) == -1) {
    disk_set_health (log, NDM_DIRTY_LOG_FLUSH_FAILED);
    return -1;
  }
  return 0;
}

static int
disk_write_header (struct ndm_dirty_log *log, uint64_t failed_legs,
                   uint64_t generation, int *err)
{
  g_autofree uint8_t *buf = g_malloc (NDM_DIRTY_LOG_HEADER_SIZE);
  struct ndm_dirty_log_header h;

  header_make (log, failed_legs, generation, &h);
  header_encode (&h, buf);
  return disk_write (log, 0, buf, NDM_DIRTY_LOG_HEADER_SIZE, err);
}

/* ---- load ------------------------------------------------------------ */

static uint64_t
bitmap_bytes (const struct ndm_dirty_log *log)
{
  return ndm_dirty_log_dev_bytes (log) - NDM_DIRTY_LOG_HEADER_SIZE;
}

static bool
all_zero (const uint8_t *buf, size_t len)
{
  size_t i;

  for (i = 0; i < len; i++)
    if (buf[i] != 0)
      return false;
  return true;
}

/* Stored bitmap -> log->committed (bits past nr_regions ignored). */
static void
bitmap_load (struct ndm_dirty_log *log, const uint8_t *bits,
             uint64_t failed_legs)
{
  uint64_t r, words = (log->nr_regions + LONG_BITS - 1) / LONG_BITS;

  ndm_mutex_lock (&log->lock);
  memset (log->committed, 0, words * sizeof (unsigned long));
  for (r = 0; r < log->nr_regions; r++)
    if (bits[r / 8] & (1u << (r % 8)))
      log->committed[r / LONG_BITS] |= 1ul << (r % LONG_BITS);
  log->failed_legs = failed_legs;
  log->health = NDM_DIRTY_LOG_ALIVE;
  ndm_mutex_unlock (&log->lock);
}

/* A new log: every region marked unless the table says nosync (the legs
 * were never compared: dm's disk log starts likewise), written before the
 * header, so that a crash between the two leaves a zero header, a new log
 * again, and never a header over a bitmap that is not this log's.
 */
static int
disk_create (struct ndm_dirty_log *log, GError **err)
{
  struct disk_log_c *dc = log->context;
  uint64_t len = bitmap_bytes (log), r;
  g_autofree uint8_t *bits = g_malloc0 (len);
  unsigned i;
  int e = 0;

  if (log->sync != NDM_DIRTY_LOG_SYNC_NONE)
    for (r = 0; r < log->nr_regions; r++)
      bits[r / 8] |= 1u << (r % 8);
  for (i = 0; i < sizeof dc->uuid; i += 4) {
    uint32_t x = g_random_int ();

    memcpy (dc->uuid + i, &x, 4);
  }
  dc->uuid[6] = (dc->uuid[6] & 0x0f) | 0x40;    /* RFC 4122 version 4 */
  dc->uuid[8] = (dc->uuid[8] & 0x3f) | 0x80;
  if (disk_write (log, NDM_DIRTY_LOG_HEADER_SIZE, bits, len, &e) == -1 ||
      disk_sync (log, &e) == -1 ||
      disk_write_header (log, 0, 1, &e) == -1 || disk_sync (log, &e) == -1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "disk log %s: writing a new log: %s", log->dev->uri,
                 g_strerror (e));
    return -1;
  }
  dc->generation = 1;
  bitmap_load (log, bits, 0);
  ndm_log_info ("disk log %s: new log for %u legs, %" PRIu64 " regions of "
                "%" PRIu64 " sectors", log->dev->uri, log->nr_legs,
                log->nr_regions, log->region_size >> NDM_SECTOR_SHIFT);
  return 0;
}

/* A header that is not all zero: this log's, or refused with why. */
static int
header_check (struct ndm_dirty_log *log, const uint8_t *buf,
              const struct ndm_dirty_log_header *h, GError **err)
{
  const char *uri = log->dev->uri;
  uint32_t crc = get_le32 (buf, DISK_CRC_OFFSET);
  uint32_t want_crc = ndm_crc32c (buf, DISK_CRC_OFFSET);
  unsigned i;

  if (memcmp (h->magic, NDM_DIRTY_LOG_MAGIC, sizeof h->magic) != 0) {
    GString *hex = g_string_new (NULL);

    for (i = 0; i < sizeof h->magic; i++)
      g_string_append_printf (hex, "%02x", (unsigned char) h->magic[i]);
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "disk log %s is not a mirror log (magic 0x%s): refusing "
                 "to overwrite it", uri, hex->str);
    g_string_free (hex, TRUE);
    return -1;
  }
  if (h->version != NDM_DIRTY_LOG_VERSION) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "disk log %s has version %" PRIu32 ": this nbd-dm reads "
                 "version %u only", uri, h->version, NDM_DIRTY_LOG_VERSION);
    return -1;
  }
  if (crc != want_crc) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "disk log %s: header CRC 0x%08" PRIx32 " does not match "
                 "its bytes (0x%08" PRIx32 "): a damaged header, refusing "
                 "to overwrite it (zero its first %u bytes to start afresh)",
                 uri, crc, want_crc, NDM_DIRTY_LOG_HEADER_SIZE);
    return -1;
  }
  if (h->header_size != NDM_DIRTY_LOG_HEADER_SIZE || h->flags != 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "disk log %s has header size %" PRIu32 " and flags 0x%"
                 PRIx32 ": version %u has %u and 0", uri, h->header_size,
                 h->flags, NDM_DIRTY_LOG_VERSION, NDM_DIRTY_LOG_HEADER_SIZE);
    return -1;
  }
  if (h->region_size != log->region_size ||
      h->nr_regions != log->nr_regions || h->nr_legs != log->nr_legs) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "disk log %s was made for %" PRIu32 " legs, %" PRIu64
                 " regions of %" PRIu64 " sectors; this table has %u legs, %"
                 PRIu64 " regions of %" PRIu64 " sectors: not reused (zero "
                 "its first %u bytes to start afresh)", uri, h->nr_legs,
                 h->nr_regions, h->region_size >> NDM_SECTOR_SHIFT,
                 log->nr_legs, log->nr_regions,
                 log->region_size >> NDM_SECTOR_SHIFT,
                 NDM_DIRTY_LOG_HEADER_SIZE);
    return -1;
  }
  return 0;
}

/* The header, read and checked (a zero one: a new log, written now);
 * its uuid and generation kept for the header commits.  *created says
 * whether the log was made now.
 */
static int
disk_read_header (struct ndm_dirty_log *log, bool *created,
                  struct ndm_dirty_log_header *h, GError **err)
{
  struct disk_log_c *dc = log->context;
  uint64_t need = ndm_dirty_log_dev_bytes (log);
  g_autofree uint8_t *buf = NULL;
  int e = 0;

  *created = false;
  if (log->dev->size < need) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "disk log %s has %" PRIu64 " bytes, too few for %" PRIu64
                 " regions: it needs %" PRIu64 " (a %u-byte header, then "
                 "the bitmap in %zu-byte blocks)", log->dev->uri,
                 log->dev->size, log->nr_regions, need,
                 NDM_DIRTY_LOG_HEADER_SIZE, log->block_size);
    return -1;
  }
  buf = g_malloc (NDM_DIRTY_LOG_HEADER_SIZE);
  if (disk_io (log, NDM_OP_READ, 0, 0, buf, NDM_DIRTY_LOG_HEADER_SIZE,
               &e) == -1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "disk log %s: reading its header: %s", log->dev->uri,
                 g_strerror (e));
    return -1;
  }
  if (all_zero (buf, NDM_DIRTY_LOG_HEADER_SIZE)) {
    *created = true;
    return disk_create (log, err);
  }
  header_decode (buf, h);
  if (header_check (log, buf, h, err) == -1)
    return -1;
  memcpy (dc->uuid, h->uuid, sizeof dc->uuid);
  dc->generation = h->generation;
  return 0;
}

/* At ctr: the header only.  The bitmap may still be written by the
 * table this one replaces (a reload naming the same log device): it is
 * read at the first resume, once that table has stopped.
 */
static int
disk_check (struct ndm_dirty_log *log, GError **err)
{
  struct ndm_dirty_log_header h;
  bool created;

  return disk_read_header (log, &created, &h, err);
}

static int
disk_load (struct ndm_dirty_log *log, GError **err)
{
  g_autofree uint8_t *bits = NULL;
  struct ndm_dirty_log_header h;
  bool created;
  int e = 0;

  if (disk_read_header (log, &created, &h, err) == -1)
    return -1;
  if (created)
    return 0;                   /* disk_create loaded its bitmap */
  bits = g_malloc (bitmap_bytes (log));
  if (disk_io (log, NDM_OP_READ, 0, NDM_DIRTY_LOG_HEADER_SIZE, bits,
               bitmap_bytes (log), &e) == -1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "disk log %s: reading its bitmap: %s", log->dev->uri,
                 g_strerror (e));
    return -1;
  }
  /* Bits of legs this table has not: a leg count that matches says there
   * are none, but a bit there would name no leg.
   */
  if (log->nr_legs < 64)
    h.failed_legs &= (UINT64_C (1) << log->nr_legs) - 1;
  bitmap_load (log, bits, h.failed_legs);
  ndm_log_debug (NDM_LOG_MIRROR, "disk log %s: generation %" PRIu64 ", failed legs 0x%"
                 PRIx64, log->dev->uri, h.generation, h.failed_legs);
  return 0;
}

/* ---- write: one commit ---------------------------------------------- */

/* c's blocks, a run of consecutive indexes per write, then the header,
 * then one flush where the writes were not FUA.
 */
static int
disk_commit_write (struct ndm_dirty_log *log,
                   const struct ndm_dirty_log_commit *c, int *err)
{
  struct disk_log_c *dc = log->context;
  guint nr = c->blocks != NULL ? c->blocks->len : 0;
  const uint64_t *idx = nr > 0 ? (const uint64_t *) c->blocks->data : NULL;
  uint8_t *buf = c->buf;
  guint i, n;
  uint64_t failed_legs;

  if (nr == 0 && !c->header)
    return 0;
  g_assert (c->block_size == log->block_size);
  for (i = 0; i < nr; i += n) {
    for (n = 1; i + n < nr && idx[i + n] == idx[i] + n; n++)
      ;
    if (disk_write (log, NDM_DIRTY_LOG_HEADER_SIZE +
                    idx[i] * c->block_size, buf + (uint64_t) i *
                    c->block_size, (uint64_t) n * c->block_size,
                    err) == -1)
      return -1;
  }
  if (c->header) {
    /* The failed legs as they are now, not at the commit's snapshot: a
     * bit set since is safe to write early, and one cleared since is a
     * leg in sync again.
     */
    ndm_mutex_lock (&log->lock);
    failed_legs = log->failed_legs;
    ndm_mutex_unlock (&log->lock);
    if (disk_write_header (log, failed_legs, dc->generation + 1, err) == -1)
      return -1;
    dc->generation++;
  }
  return disk_sync (log, err);
}

/* ---- status ----------------------------------------------------------- */

/* INFO: 3 disk <log device> <A|D|F>
 * TABLE: disk <2|3> <log device> <region size> [sync|nosync] (dm's, with
 * the space after the last word)
 */
static void
disk_status (struct ndm_dirty_log *log, enum ndm_status_type type,
             GString *out)
{
  ndm_assert_held (&log->lock);
  if (type == NDM_STATUS_INFO) {
    g_string_append_printf (out, "3 disk %s %c", log->dev->uri,
                            (char) log->health);
    return;
  }
  g_string_append_printf (out, "disk %u %s %" PRIu64 " ",
                          log->sync == NDM_DIRTY_LOG_SYNC_DEFAULT ? 2 : 3,
                          log->dev->uri,
                          log->region_size >> NDM_SECTOR_SHIFT);
  if (log->sync != NDM_DIRTY_LOG_SYNC_DEFAULT)
    g_string_append (out, log->sync == NDM_DIRTY_LOG_SYNC_NONE ?
                     "nosync " : "sync ");
}

const struct ndm_dirty_log_type ndm_dirty_log_disk = {
  .name = "disk", .min_args = 2, .max_args = 3,
  .ctr = disk_ctr, .dtr = disk_dtr, .check = disk_check, .load = disk_load,
  .write = disk_commit_write, .status = disk_status,
};
