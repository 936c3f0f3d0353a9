/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: latency buckets' bounds and percentiles (include/nbd-dm/
 * latency.h).  Compiled into the core and into nbd-dmsetup.
 *
 * Thread model: pure functions, any thread.
 */
#include "nbd-dm/latency.h"

uint64_t
ndm_lat_lower (unsigned b)
{
  unsigned e = b / NDM_LAT_SUB + NDM_LAT_SUB_BITS - 1;

  if (b < NDM_LAT_SUB)
    return b;
  return (uint64_t) (NDM_LAT_SUB + b % NDM_LAT_SUB) << (e - NDM_LAT_SUB_BITS);
}

uint64_t
ndm_lat_upper (unsigned b)
{
  if (b >= NDM_LAT_BUCKETS - 1)
    return UINT64_MAX;
  return ndm_lat_lower (b + 1);
}

double
ndm_lat_percentile (const uint64_t *hist, double q)
{
  uint64_t total = 0, below = 0;
  double rank;
  unsigned b;

  for (b = 0; b < NDM_LAT_BUCKETS; b++)
    total += hist[b];
  if (total == 0)
    return -1;
  q = q < 0 ? 0 : q > 1 ? 1 : q;
  rank = q * (double) total;
  for (b = 0; b < NDM_LAT_BUCKETS; b++) {
    double lo, hi;

    if (hist[b] == 0)
      continue;
    /* The first bucket whose samples reach the rank; the last non-empty
     * one at the latest (rounding may leave rank a hair above total).
     */
    if ((double) (below + hist[b]) < rank && below + hist[b] < total) {
      below += hist[b];
      continue;
    }
    lo = ndm_lat_lower (b);
    if (b == NDM_LAT_BUCKETS - 1)
      return lo;
    hi = ndm_lat_upper (b);
    return lo + (hi - lo) * ((rank - (double) below) / (double) hist[b]);
  }
  return -1;                    /* not reached: total > 0 */
}
