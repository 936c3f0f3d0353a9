/* SPDX-License-Identifier: BSD-3-Clause */
/* error: every I/O fails with EIO.
 *
 *     <start> <length> error
 *
 * Like dm's error target it gets no flushes (a flush of the whole device
 * still succeeds); reads, writes, trims, zeroes, caches and block status
 * fail (docs/targets/error.md).
 */
#include <errno.h>

#include "nbd-dm/target.h"

static int
error_ctr (struct ndm_target *ti, unsigned argc, char **argv, GError **err)
{
  /* dm's error target ignores its arguments; so do we. */
  return 0;
}

static int
error_map (struct ndm_target *ti, struct ndm_clone *clone)
{
  if (clone->op == NDM_OP_FLUSH)
    return NDM_MAPIO_SUBMITTED;
  clone->kill_error = EIO;
  return NDM_MAPIO_KILL;
}

const struct ndm_target_type ndm_error_target = {
  .name = "error", .version = { 1, 7, 0 },
  .ctr = error_ctr, .map = error_map,                        /* required */
};
