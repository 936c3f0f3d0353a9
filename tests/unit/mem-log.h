/* SPDX-License-Identifier: BSD-3-Clause */
/* A dirty log type for tests: it stores the bitmap in memory, the way a
 * disk log stores it on its device, and records what commits did.  The
 * core type stores nothing, so only a storing type shows tickets, group
 * commits and the clears' order.
 */
#ifndef NDM_TEST_MEM_LOG_H
#define NDM_TEST_MEM_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "dirty-log.h"

struct mem_log {
  unsigned char *dev;           /* the stored bitmap, as on a device */
  size_t dev_len;
  GString *order;               /* 'F' legs flushed, 'W' blocks written */
  unsigned writes;
  struct ndm_dirty_log_commit last;  /* the last write's, blocks and buf
                                        not kept */
  unsigned last_nr_blocks;
  int fail_write;               /* errno for writes, 0: they succeed */
  bool write_sets_f;            /* a failing write says its flush failed */
  int fail_flush;               /* errno for the legs' flush, 0: none */
  /* Called in the middle of a commit, without the lock (in flush_legs,
   * else in write): what other threads do meanwhile.
   */
  void (*during) (struct ndm_dirty_log *log, void *data);
  void *during_data;
};

/* A core log from its words ("core 1 8"), the words taken in *used. */
struct ndm_dirty_log *core_log_new (const char *args, uint64_t target_bytes,
                                    unsigned *used);
/* A log made from "core <args>" whose type is then the memory one:
 * args without the type, e.g. "1 8" or "2 8 nosync".
 */
struct ndm_dirty_log *mem_log_new (const char *args, uint64_t target_bytes,
                                   unsigned nr_legs);
struct mem_log *mem_log_of (struct ndm_dirty_log *log);
/* Whether region's bit is set in the stored bitmap. */
bool mem_log_dev_bit (struct ndm_dirty_log *log, uint64_t region);
void mem_log_dev_set (struct ndm_dirty_log *log, uint64_t region);
/* flush_legs for ndm_dirty_log_commit; data is the log. */
int mem_log_flush_legs (void *data, int *err);
/* ndm_dirty_log_commit with mem_log_flush_legs. */
int64_t mem_log_commit (struct ndm_dirty_log *log, bool clears, int *err);

#endif /* NDM_TEST_MEM_LOG_H */
