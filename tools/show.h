/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dmsetup show: the human view of multipath and mirror segments,
 * rendered from the server's `status --json` (tools/show.c).
 */
#ifndef NBD_DMSETUP_SHOW_H
#define NBD_DMSETUP_SHOW_H

#include <stdio.h>

#include <glib.h>

/* Render the payload of `status --json` (one line of JSON) to f.
 * Returns -1 with *err if it is not JSON of that shape.
 */
int render_show (const char *json, FILE *f, GError **err);

#endif /* NBD_DMSETUP_SHOW_H */
