/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: I/O statistics, per target and per device (core-private).
 *
 * Counters are updated with relaxed atomics by whoever starts or ends an
 * I/O (request owners, completions), read by the control thread.  A
 * reader may see a counter a few updates ahead of another; nothing needs
 * a consistent snapshot.
 */
#ifndef NBD_DM_STATS_H
#define NBD_DM_STATS_H

#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "nbd-dm/ndm.h"

/* Latency buckets, log2 of microseconds: bucket 0 is < 1 us, bucket i is
 * [2^(i-1), 2^i) us, the last one everything longer.
 */
#define NDM_LAT_BUCKETS 32

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
  uint64_t lat[NDM_STAT_CLASSES][NDM_LAT_BUCKETS];
  int64_t since;                /* monotonic us of creation or clear */
};

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

/* "reads 3 (12288 bytes), writes ..., in-flight 0" and, per class with
 * samples, a latency line "  read latency: <1us 0, 1-2us 4, ...".
 */
void ndm_stats_format (const struct ndm_io_stats *s, const char *indent,
                       GString *out);
/* The same facts as one JSON object added to b. */
void ndm_stats_json (const struct ndm_io_stats *s, JsonBuilder *b);

#endif /* NBD_DM_STATS_H */
