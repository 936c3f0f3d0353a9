/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dmsetup stats --interval SECS [--count N]: rates over each
 * interval, per target segment and per device, as dmstats report
 * --interval and iostat -x print them (tools/stats-report.c).
 */
#ifndef NBD_DM_STATS_REPORT_H
#define NBD_DM_STATS_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include <glib.h>
#include <json-glib/json-glib.h>

/* One `stats --json` payload from the server, to g_free; it does not
 * return if the server cannot be asked (nbd-dmsetup's fail()).
 */
typedef char *(*stats_report_fetch_fn) (void *data);

/* Every interval seconds (until count reports if count > 0, or until
 * SIGINT or SIGTERM), fetch the counters and print what changed since
 * the fetch before: a table, or with json a line of JSON, per report.
 * Returns the exit status: 0, or 1 if a payload was not the JSON
 * `stats --json` sends (said on stderr).
 */
int stats_report_run (stats_report_fetch_fn fetch, void *data,
                      double interval, unsigned count, bool json);

/* One report: what changed from prev (NULL: nothing before) to cur, two
 * parsed `stats --json` payloads, appended to out as a table (with a
 * header line "HH:MM:SS  interval S s" stamped with time) or as one
 * line of JSON.  A target or device absent from prev, or whose counters
 * went back (stats --clear), counts from zero over the seconds its
 * counters cover.  Returns false with *why if either is not a stats
 * payload.
 */
bool stats_report_interval (JsonNode *prev, JsonNode *cur, bool json,
                            GDateTime *time, GString *out, char **why);

#endif /* NBD_DM_STATS_REPORT_H */
