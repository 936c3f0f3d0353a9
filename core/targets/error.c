/* SPDX-License-Identifier: BSD-3-Clause */
/* error: every I/O fails with EIO.
 *
 *     <start> <length> error
 *
 * Like dm's error target it gets no flushes (a flush of the whole device
 * still succeeds); reads, writes, trims, zeroes, caches and block status
 * fail (docs/targets/error.md).
 *
 * Arguments are refused, as zero refuses them.  dm's error target takes
 * none either, but ignores any it is given, except that since its
 * version 1.7 exactly two are '<device> <offset>', a device whose limits
 * (zones) it copies.  NBD devices have no zones, so that form would only
 * open a connection to nothing's benefit; and a word ignored is a typo
 * or a misplaced line that nobody is told about.
 */
#include <errno.h>

#include "nbd-dm/target.h"

static int
error_ctr (struct ndm_target *ti, unsigned argc, char **argv, GError **err)
{
  if (argc != 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "takes no arguments, got '%s'%s", argv[0],
                 argc == 2 ? " (dm's '<device> <offset>' form is for zoned "
                 "devices, which NBD does not have)" : "");
    return -1;
  }
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
