/* SPDX-License-Identifier: BSD-3-Clause */
/* dust: a linear mapping whose reads fail on chosen "bad blocks", like a
 * disk with unreadable sectors (dm-dust).
 *
 *     <start> <length> dust <device> <offset> <blksz>
 *
 * <blksz> is in bytes: a power of 2, at least 512, at most the target's
 * length (and 1 GiB).  Blocks are numbered on the device (offset
 * included), as dm-dust numbers them.  While enabled, a read touching a
 * bad block fails with EIO; a write to a bad block removes it from the
 * list (the drive remapped the sector) unless it was added with a write
 * fail count, in which case that many writes fail first.  Messages:
 * addbadblock <block> [<write fail count>], removebadblock <block>,
 * queryblock <block>, countbadblocks, clearbadblocks, listbadblocks,
 * enable, disable, quiet (docs/targets/dust.md).
 */
#include <errno.h>
#include <string.h>

#include "nbd-dm/target.h"
#include "../log.h"

#define DUST_MAX_BLKSZ (1u << 30)

struct dust_c {
  struct ndm_device *dev;
  uint64_t start;               /* sectors */
  uint32_t blksz;               /* bytes */
  unsigned blk_shift;           /* log2 (blksz) */
  struct ndm_mutex lock;        /* protects bad, fail_reads, quiet */
  GTree *bad;                   /* block -> write fail count */
  bool fail_reads;              /* enabled */
  bool quiet;
};

static gint
block_cmp (gconstpointer a, gconstpointer b, gpointer unused)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

  return x < y ? -1 : x > y;
}

static int
dust_ctr (struct ndm_target *ti, unsigned argc, char **argv, GError **err)
{
  g_autofree struct dust_c *dc = g_new0 (struct dust_c, 1);
  uint64_t blksz, max = MIN ((uint64_t) DUST_MAX_BLKSZ,
                             ti->len << NDM_SECTOR_SHIFT);

  if (argc != 3) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "expected 3 arguments '<device> <offset> <blksz>', got %u",
                 argc);
    return -1;
  }
  if (ndm_parse_sectors (argv[1], "offset", &dc->start, err) == -1 ||
      ndm_parse_u64 (argv[2], "block size", &blksz, err) == -1)
    return -1;
  if (blksz < NDM_SECTOR_SIZE || (blksz & (blksz - 1)) != 0 ||
      blksz > max) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "block size '%s': expected a power of 2 from 512 to %"
                 PRIu64 " bytes", argv[2], max);
    return -1;
  }
  dc->dev = ndm_table_get_device (ti, argv[0], err);
  if (dc->dev == NULL)
    return -1;
  dc->blksz = blksz;
  dc->blk_shift = g_bit_nth_lsf (blksz, -1);
  ndm_mutex_init (&dc->lock, NDM_LOCK_TARGET);
  dc->bad = g_tree_new_full (block_cmp, NULL, g_free, g_free);
  ti->private = g_steal_pointer (&dc);
  return 0;
}

static void
dust_dtr (struct ndm_target *ti)
{
  struct dust_c *dc = ti->private;

  g_tree_unref (dc->bad);
  ndm_mutex_clear (&dc->lock);
  g_free (dc);
}

/* With dc->lock held: what the bad block list says about [first, last]. */
static int
dust_check_locked (struct dust_c *dc, enum ndm_op op, uint64_t first,
                   uint64_t last)
{
  uint64_t b;

  ndm_assert_held (&dc->lock);
  for (b = first; b <= last; b++) {
    unsigned *fails = g_tree_lookup (dc->bad, &b);

    if (fails == NULL)
      continue;
    if (!ndm_op_writes (op))
      return EIO;
    if (*fails > 0) {
      (*fails)--;
      return EIO;
    }
    g_tree_remove (dc->bad, &b);
    if (!dc->quiet)
      ndm_log_info ("dust: block %" PRIu64 " removed from badblocklist by "
                    "write", b);
  }
  return 0;
}

static int
dust_map (struct ndm_target *ti, struct ndm_clone *clone)
{
  struct dust_c *dc = ti->private;
  uint64_t dev_off = (dc->start << NDM_SECTOR_SHIFT) +
    ndm_clone_target_offset (clone);
  int err = 0;

  if (clone->op != NDM_OP_FLUSH && clone->op != NDM_OP_BLOCK_STATUS &&
      clone->op != NDM_OP_CACHE) {
    ndm_mutex_lock (&dc->lock);
    if (dc->fail_reads && g_tree_nnodes (dc->bad) > 0)
      err = dust_check_locked (dc, clone->op, dev_off >> dc->blk_shift,
                               (dev_off + clone->len - 1) >> dc->blk_shift);
    ndm_mutex_unlock (&dc->lock);
  }
  if (err != 0) {
    clone->kill_error = err;
    return NDM_MAPIO_KILL;
  }
  ndm_clone_remap (clone, dc->dev, dev_off);
  return NDM_MAPIO_REMAPPED;
}

/* ---- messages: dm-dust's, with its answers and errors ---------------------- */

/* A block number is checked against the whole device, as dm-dust does,
 * the number of blocks itself included.
 */
static int
check_block (struct dust_c *dc, uint64_t block, GError **err)
{
  uint64_t nr_blocks = dc->dev->size >> dc->blk_shift;

  if (block > nr_blocks) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "selected block value out of range: %" PRIu64 " (the "
                 "device has %" PRIu64 " blocks)", block, nr_blocks);
    return -1;
  }
  return 0;
}

static int
parse_block (struct dust_c *dc, const char *arg, uint64_t *block,
             GError **err)
{
  if (ndm_parse_u64 (arg, "block", block, err) == -1)
    return -1;
  return check_block (dc, *block, err);
}

static int
dust_addbadblock (struct ndm_target *ti, unsigned argc, char **argv,
                  GString *result, GError **err)
{
  struct dust_c *dc = ti->private;
  uint64_t block, fails = 0;
  int r = 0;

  if (ndm_parse_u64 (argv[1], "block", &block, err) == -1 ||
      (argc == 3 &&
       ndm_parse_u64 (argv[2], "write fail count", &fails, err) == -1) ||
      check_block (dc, block, err) == -1)
    return -1;
  if (fails > 255) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "selected write fail count out of range: %" PRIu64
                 " (0 to 255)", fails);
    return -1;
  }
  ndm_mutex_lock (&dc->lock);
  if (g_tree_lookup (dc->bad, &block) != NULL) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "block %" PRIu64 " already in badblocklist", block);
    r = -1;
  }
  else {
    g_tree_insert (dc->bad, g_memdup2 (&block, sizeof block),
                   g_memdup2 (&(unsigned) { fails }, sizeof (unsigned)));
    if (!dc->quiet)
      ndm_log_info ("dust: badblock added at block %" PRIu64 " with "
                    "write fail count %" PRIu64, block, fails);
  }
  ndm_mutex_unlock (&dc->lock);
  return r;
}

static int
dust_removebadblock (struct ndm_target *ti, unsigned argc, char **argv,
                     GString *result, GError **err)
{
  struct dust_c *dc = ti->private;
  uint64_t block;
  int r = 0;

  if (parse_block (dc, argv[1], &block, err) == -1)
    return -1;
  ndm_mutex_lock (&dc->lock);
  if (!g_tree_remove (dc->bad, &block)) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "block %" PRIu64 " not found in badblocklist", block);
    r = -1;
  }
  else if (!dc->quiet)
    ndm_log_info ("dust: badblock removed at block %" PRIu64, block);
  ndm_mutex_unlock (&dc->lock);
  return r;
}

static int
dust_queryblock (struct ndm_target *ti, unsigned argc, char **argv,
                 GString *result, GError **err)
{
  struct dust_c *dc = ti->private;
  uint64_t block;

  if (parse_block (dc, argv[1], &block, err) == -1)
    return -1;
  ndm_mutex_lock (&dc->lock);
  g_string_append_printf (result, "dust_query_block: block %" PRIu64
                          " %sfound in badblocklist", block,
                          g_tree_lookup (dc->bad, &block) ? "" : "not ");
  ndm_mutex_unlock (&dc->lock);
  return 0;
}

static int
dust_countbadblocks (struct ndm_target *ti, unsigned argc, char **argv,
                     GString *result, GError **err)
{
  struct dust_c *dc = ti->private;

  ndm_mutex_lock (&dc->lock);
  g_string_append_printf (result, "countbadblocks: %d badblock(s) found",
                          g_tree_nnodes (dc->bad));
  ndm_mutex_unlock (&dc->lock);
  return 0;
}

static int
dust_clearbadblocks (struct ndm_target *ti, unsigned argc, char **argv,
                     GString *result, GError **err)
{
  struct dust_c *dc = ti->private;

  ndm_mutex_lock (&dc->lock);
  g_string_append (result, g_tree_nnodes (dc->bad) > 0
                   ? "dust_clear_badblocks: badblocks cleared"
                   : "dust_clear_badblocks: no badblocks found");
  g_tree_remove_all (dc->bad);
  ndm_mutex_unlock (&dc->lock);
  return 0;
}

static gboolean
list_block (gpointer key, gpointer value, gpointer data)
{
  g_string_append_printf (data, "%" PRIu64 "\n", *(uint64_t *) key);
  return FALSE;
}

static int
dust_listbadblocks (struct ndm_target *ti, unsigned argc, char **argv,
                    GString *result, GError **err)
{
  struct dust_c *dc = ti->private;

  ndm_mutex_lock (&dc->lock);
  if (g_tree_nnodes (dc->bad) == 0)
    g_string_append (result, "No blocks in badblocklist");
  else
    g_tree_foreach (dc->bad, list_block, result);
  ndm_mutex_unlock (&dc->lock);
  return 0;
}

/* enable and disable. */
static int
dust_fail_reads (struct ndm_target *ti, unsigned argc, char **argv,
                 GString *result, GError **err)
{
  struct dust_c *dc = ti->private;
  bool on = !g_ascii_strcasecmp (argv[0], "enable");

  ndm_mutex_lock (&dc->lock);
  dc->fail_reads = on;
  ndm_log_info ("dust: %s read failures on bad sectors",
                on ? "enabling" : "disabling");
  ndm_mutex_unlock (&dc->lock);
  return 0;
}

static int
dust_quiet (struct ndm_target *ti, unsigned argc, char **argv,
            GString *result, GError **err)
{
  struct dust_c *dc = ti->private;

  ndm_mutex_lock (&dc->lock);
  dc->quiet = !dc->quiet;
  ndm_mutex_unlock (&dc->lock);
  return 0;
}

/* dm-dust's words for a name it does not know (the core would list the
 * names instead).
 */
static int
dust_unrecognized (struct ndm_target *ti, unsigned argc, char **argv,
                   GString *result, GError **err)
{
  g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
               "unrecognized message '%s' received", argv[0]);
  return -1;
}

/* docs/targets/dust.md, "Messages". */
static const struct ndm_target_message dust_messages[] = {
  { "addbadblock", 1, 2, "<block> [<write fail count>]", dust_addbadblock },
  { "removebadblock", 1, 1, "<block>", dust_removebadblock },
  { "queryblock", 1, 1, "<block>", dust_queryblock },
  { "countbadblocks", 0, 0, NULL, dust_countbadblocks },
  { "clearbadblocks", 0, 0, NULL, dust_clearbadblocks },
  { "listbadblocks", 0, 0, NULL, dust_listbadblocks },
  { "enable", 0, 0, NULL, dust_fail_reads },
  { "disable", 0, 0, NULL, dust_fail_reads },
  { "quiet", 0, 0, NULL, dust_quiet },
  { NULL, .fn = dust_unrecognized },
};

/* status: <device> fail_read_on_bad_block|bypass verbose|quiet
 * table:  <device> <offset> <blksz>
 */
static void
dust_status (struct ndm_target *ti, enum ndm_status_type type,
             GString *result)
{
  struct dust_c *dc = ti->private;

  if (type == NDM_STATUS_TABLE) {
    g_string_append_printf (result, "%s %" PRIu64 " %u", dc->dev->uri,
                            dc->start, dc->blksz);
    return;
  }
  ndm_mutex_lock (&dc->lock);
  g_string_append_printf (result, "%s %s %s", dc->dev->uri,
                          dc->fail_reads ? "fail_read_on_bad_block"
                          : "bypass", dc->quiet ? "quiet" : "verbose");
  ndm_mutex_unlock (&dc->lock);
}

static int
dust_iterate_devices (struct ndm_target *ti, ndm_iterate_devices_fn fn,
                      void *data)
{
  struct dust_c *dc = ti->private;

  return fn (ti, dc->dev, dc->start << NDM_SECTOR_SHIFT,
             ti->len << NDM_SECTOR_SHIFT, data);
}

const struct ndm_target_type ndm_dust_target = {
  .name = "dust", .version = { 1, 0, 0 },
  .ctr = dust_ctr, .dtr = dust_dtr, .map = dust_map,         /* required */
  .messages = dust_messages, .status = dust_status,          /* optional */
  .iterate_devices = dust_iterate_devices,
};
