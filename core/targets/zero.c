/* SPDX-License-Identifier: BSD-3-Clause */
/* zero: reads return zeros, writes are dropped.
 *
 *     <start> <length> zero
 *
 * No device; every request completes in map (docs/targets/zero.md).
 * Block status answers "hole, reads as zero", so copies stay sparse.
 */
#include <string.h>

#include "nbd-dm/target.h"

static int
zero_ctr (struct ndm_target *ti, unsigned argc, char **argv, GError **err)
{
  if (argc != 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "takes no arguments, got '%s'", argv[0]);
    return -1;
  }
  return 0;
}

static int
zero_map (struct ndm_target *ti, struct ndm_clone *clone)
{
  switch (clone->op) {
  case NDM_OP_READ:
    memset (clone->buf, 0, clone->len);
    break;
  case NDM_OP_BLOCK_STATUS:
    ndm_clone_add_extent (clone, 0, clone->len,
                          NDM_EXTENT_HOLE | NDM_EXTENT_ZERO);
    break;
  default:
    /* Writes, trims, zeroes, caches and flushes succeed with no effect. */
    break;
  }
  return NDM_MAPIO_SUBMITTED;
}

const struct ndm_target_type ndm_zero_target = {
  .name = "zero", .version = { 1, 2, 0 },
  .ctr = zero_ctr, .map = zero_map,                          /* required */
};
