/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: I/O statistics, per target and per device (core-private).
 *
 * Counters are updated with relaxed atomics by whoever starts or ends an
 * I/O (request owners, completions), read by the control thread.  A
 * reader may see a counter a few updates ahead of another; nothing needs
 * a consistent snapshot, except a histogram's count, which the readers
 * derive from its buckets (ndm_stats_read copies them once).
 */
#ifndef NBD_DM_STATS_H
#define NBD_DM_STATS_H

#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "nbd-dm/ndm.h"
#include "nbd-dm/latency.h"

enum ndm_stat_class {
  NDM_STAT_READ,
  NDM_STAT_WRITE,
  NDM_STAT_FLUSH,
  NDM_STAT_TRIM,
  NDM_STAT_ZERO,
  NDM_STAT_OTHER,               /* cache, block status */
  NDM_STAT_CLASSES,
};

struct ndm_io_stats {
  uint64_t ops[NDM_STAT_CLASSES];
  uint64_t bytes[NDM_STAT_CLASSES];
  uint64_t errors;
  uint64_t requeues;
  int64_t inflight;
  /* Next to the fields above: a read's or a write's end touches the
   * same two cache lines as before the sum was kept, plus its bucket's.
   */
  uint64_t lat_sum[NDM_STAT_CLASSES];   /* microseconds, all samples */
  int64_t since;                /* monotonic us of creation or clear */
  uint64_t lat[NDM_STAT_CLASSES][NDM_LAT_BUCKETS];  /* include/nbd-dm/
                                                       latency.h */
};

/* The percentiles every view shows, as fractions and as named in JSON
 * ("p50") and OpenMetrics.
 */
#define NDM_STATS_NR_PERCENTILES 4
extern const struct ndm_stats_percentile {
  double q;
  const char *name;             /* "p50", "p99.9" */
  const char *json;             /* "p50", "p999" */
} ndm_stats_percentiles[NDM_STATS_NR_PERCENTILES];

struct ndm_io_stats *ndm_stats_new (void);
void ndm_stats_free (struct ndm_io_stats *s);

/* An I/O of op started; returns the start time to give to _done. */
int64_t ndm_stats_start (struct ndm_io_stats *s);
void ndm_stats_done (struct ndm_io_stats *s, enum ndm_op op, uint64_t bytes,
                     int error, int64_t start);
void ndm_stats_requeue (struct ndm_io_stats *s);
/* A started I/O moved elsewhere without finishing here (a table swap). */
void ndm_stats_abandon (struct ndm_io_stats *s);

/* Move the counters into *snap and zero them (not in-flight, which is a
 * gauge: copied).  For stats --clear: what is shown is what is cleared.
 */
void ndm_stats_take (struct ndm_io_stats *s, struct ndm_io_stats *snap);

/* Copy the counters into *snap, leaving them: what one view (an
 * OpenMetrics scrape) shows of one target or device.
 */
void ndm_stats_read (const struct ndm_io_stats *s, struct ndm_io_stats *snap);

/* The class an op counts in, and that class's name ("read", "other"). */
enum ndm_stat_class ndm_stats_class_of (enum ndm_op op);
const char *ndm_stats_class_name (enum ndm_stat_class c);

/* The seconds the counters cover: since creation or the last clear. */
double ndm_stats_seconds (const struct ndm_io_stats *s);

/* "reads 3 (12288 bytes), writes ..., in-flight 0" and, per class with
 * samples, a latency line "  read latency: p50 52.5us, ...; 48-56us 4,
 * ...".
 */
void ndm_stats_format (const struct ndm_io_stats *s, const char *indent,
                       GString *out);
/* The same facts as one JSON object added to b: counts, bytes, errors,
 * and per class its histogram (non-empty buckets with their bounds), the
 * samples' count and sum, and the percentiles.
 */
void ndm_stats_json (const struct ndm_io_stats *s, JsonBuilder *b);

struct ndm_table;

/* Every target's and device's counters in the OpenMetrics text format,
 * "# EOF" included (core/metrics.c).
 */
void ndm_table_openmetrics (struct ndm_table *t, GString *out);

#endif /* NBD_DM_STATS_H */
