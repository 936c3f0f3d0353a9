/* SPDX-License-Identifier: BSD-3-Clause */
/* linear: map a range of the mapped device onto one device.
 *
 *     <start> <length> linear <device> <offset>
 *
 * <offset> is in sectors on <device> (docs/targets/linear.md).
 */
#include <errno.h>

#include "nbd-dm/bio.h"
#include "nbd-dm/target.h"

struct linear_c {
  struct ndm_device *dev;
  uint64_t start;               /* sectors on dev */
};

static int
linear_ctr (struct ndm_target *ti, unsigned argc, char **argv, GError **err)
{
  g_autofree struct linear_c *lc = g_new0 (struct linear_c, 1);

  if (argc != 2) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "expected 2 arguments '<device> <offset>', got %u", argc);
    return -1;
  }
  if (ndm_parse_sectors (argv[1], "offset", &lc->start, err) == -1)
    return -1;
  lc->dev = ndm_table_get_device (ti, argv[0], err);
  if (lc->dev == NULL)
    return -1;
  ti->private = g_steal_pointer (&lc);
  return 0;
}

static void
linear_dtr (struct ndm_target *ti)
{
  g_free (ti->private);
}

static int
linear_map (struct ndm_target *ti, struct ndm_clone *clone)
{
  struct linear_c *lc = ti->private;

  ndm_clone_remap (clone, lc->dev, (lc->start << NDM_SECTOR_SHIFT) +
                   ndm_clone_target_offset (clone));
  return NDM_MAPIO_REMAPPED;
}

/* status: nothing.  table: <device> <offset> */
static void
linear_status (struct ndm_target *ti, enum ndm_status_type type,
               GString *result)
{
  struct linear_c *lc = ti->private;

  if (type == NDM_STATUS_TABLE)
    g_string_append_printf (result, "%s %" PRIu64, lc->dev->uri, lc->start);
}

static int
linear_iterate_devices (struct ndm_target *ti, ndm_iterate_devices_fn fn,
                        void *data)
{
  struct linear_c *lc = ti->private;

  return fn (ti, lc->dev, lc->start << NDM_SECTOR_SHIFT,
             ti->len << NDM_SECTOR_SHIFT, data);
}

const struct ndm_target_type ndm_linear_target = {
  .name = "linear", .version = { 1, 4, 0 },
  .ctr = linear_ctr, .dtr = linear_dtr, .map = linear_map,   /* required */
  .status = linear_status,                                   /* optional */
  .iterate_devices = linear_iterate_devices,
};
