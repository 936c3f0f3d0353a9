/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the statistics over HTTP for Prometheus-style scrapers
 * (metrics=ADDR): GET /metrics answers what `nbd-dmsetup stats
 * --format=openmetrics` prints, in the OpenMetrics text format.
 *
 * ADDR is a Unix socket path (it contains a '/': /run/dm.metrics,
 * ./dm.metrics; created mode 0600 as the control socket is) or a numeric
 * IP address and port: 127.0.0.1:9100, [::1]:9100.
 *
 * Thread model: new (binds the socket, so a bad ADDR stops start-up) and
 * free on the front end's control thread; start after fork, which starts
 * the HTTP library's thread.  Requests are answered on that thread.
 */
#ifndef NBD_DM_METRICS_H
#define NBD_DM_METRICS_H

#include <glib.h>

#include "nbd-dm/ndm.h"

struct ndm_metrics;

/* Listen at addr for md's statistics.  NULL with *err naming addr if it
 * is not an address, or cannot be listened on.
 */
struct ndm_metrics *ndm_metrics_new (struct ndm_md *md, const char *addr,
                                     GError **err);

/* Start answering (after fork: threads do not survive it). */
int ndm_metrics_start (struct ndm_metrics *m, GError **err);

/* Stop answering, close the socket, remove a socket file.  NULL is ok. */
void ndm_metrics_free (struct ndm_metrics *m);

#endif /* NBD_DM_METRICS_H */
