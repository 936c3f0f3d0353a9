/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the latency histograms' buckets and their percentiles, one
 * geometry for the server (core/stats.c, its JSON and OpenMetrics) and
 * for nbd-dmsetup (tools/stats-report.c, which compiles core/latency.c in
 * and links no core), so the two cannot read a histogram differently.
 *
 * Buckets are HDR-like, in microseconds: 4 sub-buckets per power of two.
 * Values 0 to 3 have a bucket each; from 4 on, bucket 4 * (e - 1) + s
 * holds [(4 + s) << (e - 2), (5 + s) << (e - 2)), where e = floor(log2 v)
 * and s the two bits after the leading one.  Any bucket is at most a
 * quarter as wide as its lower bound, so a percentile read from it is off
 * by less than 25% (12.5% with the interpolation below for a flat bucket).
 * The last bucket holds everything from its lower bound (7 << 30 us, two
 * hours) up.
 *
 * Thread model: constants and pure functions, any thread.
 */
#ifndef NBD_DM_LATENCY_H
#define NBD_DM_LATENCY_H

#include <stdint.h>

#define NDM_LAT_SUB_BITS 2
#define NDM_LAT_SUB      (1u << NDM_LAT_SUB_BITS)
#define NDM_LAT_BUCKETS  128

/* The bucket of a latency of us microseconds.  Inline: the data path
 * calls it for every request and every device command.
 */
static inline unsigned
ndm_lat_bucket (uint64_t us)
{
  unsigned e, b;

  if (us < NDM_LAT_SUB)
    return us;
  e = 63 - __builtin_clzll (us);
  b = NDM_LAT_SUB * (e - NDM_LAT_SUB_BITS + 1) +
    ((us >> (e - NDM_LAT_SUB_BITS)) & (NDM_LAT_SUB - 1));
  return b < NDM_LAT_BUCKETS ? b : NDM_LAT_BUCKETS - 1;
}

/* Bucket b holds [ndm_lat_lower (b), ndm_lat_upper (b)); the last one's
 * upper bound is UINT64_MAX, meaning none.
 */
uint64_t ndm_lat_lower (unsigned b);
uint64_t ndm_lat_upper (unsigned b);

/* The q-quantile (0 <= q <= 1: 0.5 for p50) of the latencies counted in
 * hist[NDM_LAT_BUCKETS], in microseconds: the bucket holding the sample
 * of rank q * total, interpolated linearly inside it (the last bucket
 * answers its lower bound).  -1 when the histogram is empty.
 */
double ndm_lat_percentile (const uint64_t *hist, double q);

#endif /* NBD_DM_LATENCY_H */
