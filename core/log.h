/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: core logging.  The front end installs where messages go
 * (nbdkit_error / nbdkit_debug in the plugin); the default is stderr.
 */
#ifndef NBD_DM_LOG_H
#define NBD_DM_LOG_H

#include <inttypes.h>
#include <stdbool.h>

#include "nbd-dm/ndm.h"

void ndm_log_error (const char *fmt, ...) G_GNUC_PRINTF (1, 2);
void ndm_log_info (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

/* Debug messages cost one atomic load while their category is off: the
 * arguments are not evaluated, the message not formatted.
 */
bool ndm_log_debug_on (enum ndm_log_category category);
void ndm_log_debug_emit (const char *fmt, ...) G_GNUC_PRINTF (1, 2);
#define ndm_log_debug(category, ...)                    \
  do {                                                  \
    if (ndm_log_debug_on (category))                    \
      ndm_log_debug_emit (__VA_ARGS__);                 \
  } while (0)

/* "EIO", "ENOTCONN", ... (or "unknown errno"). */
const char *ndm_errno_name (int err);

#endif /* NBD_DM_LOG_H */
