/* SPDX-License-Identifier: BSD-3-Clause */
/* The mirror's two core interfaces, planned in docs/targets/mirror.md,
 * exist as headers before their code (core/dirty-log.h,
 * core/region-hash.h).  This only holds them to what the page says:
 * they compile, the disk log's header has the documented layout, and a
 * write clone's part of the region hash fits in its per_io space.  The
 * mirror's own tests replace it.
 */
#include <stddef.h>

#include "nbd-dm/target.h"
#include "dirty-log.h"
#include "region-hash.h"

/* The byte offsets of the table in docs/targets/mirror.md, "Dirty log". */
static void
test_log_header_layout (void)
{
  g_assert_cmpuint (sizeof (NDM_DIRTY_LOG_MAGIC) - 1, ==, 8);
  g_assert_cmpuint (offsetof (struct ndm_dirty_log_header, version), ==, 8);
  g_assert_cmpuint (offsetof (struct ndm_dirty_log_header, header_size),
                    ==, 12);
  g_assert_cmpuint (offsetof (struct ndm_dirty_log_header, region_size),
                    ==, 16);
  g_assert_cmpuint (offsetof (struct ndm_dirty_log_header, nr_regions),
                    ==, 24);
  g_assert_cmpuint (offsetof (struct ndm_dirty_log_header, nr_legs), ==, 32);
  g_assert_cmpuint (offsetof (struct ndm_dirty_log_header, flags), ==, 36);
  g_assert_cmpuint (offsetof (struct ndm_dirty_log_header, failed_legs),
                    ==, 40);
  g_assert_cmpuint (offsetof (struct ndm_dirty_log_header, uuid), ==, 48);
  g_assert_cmpuint (offsetof (struct ndm_dirty_log_header, generation),
                    ==, 64);
  g_assert_cmpuint (sizeof (struct ndm_dirty_log_header), <=,
                    NDM_DIRTY_LOG_HEADER_SIZE - 4);
  /* failed_legs has a bit for every leg a table may have. */
  g_assert_cmpuint (NDM_DIRTY_LOG_MAX_LEGS, <=, 64);
}

/* The mirror keeps a leg bitmap (32 legs) after the region hash's part. */
static void
test_rh_io_fits_per_io (void)
{
  g_assert_cmpuint (sizeof (struct ndm_rh_io) + sizeof (uint32_t), <=,
                    NDM_PER_IO_SIZE);
  g_assert_cmpint (NDM_RH_CLEAN, !=, NDM_RH_RECOVERING);
  g_assert_cmpint (NDM_RH_WRITE_GO, ==, 0);
}

static void
test_region_of_offset (void)
{
  struct ndm_region_hash rh = { .region_size = 4096, .region_shift = 12 };

  g_assert_cmpuint (ndm_rh_region (&rh, 0), ==, 0);
  g_assert_cmpuint (ndm_rh_region (&rh, 4095), ==, 0);
  g_assert_cmpuint (ndm_rh_region (&rh, 4096), ==, 1);
  g_assert_cmpuint (ndm_rh_region (&rh, UINT64_C (1) << 40), ==,
                    UINT64_C (1) << 28);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/mirror-headers/log-header/layout",
                   test_log_header_layout);
  g_test_add_func ("/mirror-headers/region-hash/per-io-fits",
                   test_rh_io_fits_per_io);
  g_test_add_func ("/mirror-headers/region-hash/region-of-offset",
                   test_region_of_offset);
  return g_test_run ();
}
