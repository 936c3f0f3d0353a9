/* SPDX-License-Identifier: BSD-3-Clause */
/* A dirty log type for tests (see mem-log.h). */
#include <errno.h>
#include <string.h>

#include "mem-log.h"

static int
mem_log_ctr (struct ndm_dirty_log *log, struct ndm_target *ti,
             unsigned argc, char **argv, GError **err)
{
  return 0;
}

static void
mem_log_dtr (struct ndm_dirty_log *log)
{
  struct mem_log *m = log->context;

  g_string_free (m->order, true);
  g_free (m->dev);
  g_free (m);
}

/* The stored bits into committed, as a disk log's load does. */
static int
mem_log_load (struct ndm_dirty_log *log, GError **err)
{
  uint64_t r;

  for (r = 0; r < log->nr_regions; r++) {
    unsigned long bit = 1UL << (r % (8 * sizeof (unsigned long)));
    unsigned long *w = &log->committed[r / (8 * sizeof (unsigned long))];

    if (mem_log_dev_bit (log, r))
      *w |= bit;
    else
      *w &= ~bit;
  }
  return 0;
}

static void
mem_log_during (struct ndm_dirty_log *log)
{
  struct mem_log *m = log->context;

  if (m->during != NULL)
    m->during (log, m->during_data);
}

static int
mem_log_write (struct ndm_dirty_log *log, const struct ndm_dirty_log_commit *c,
               int *err)
{
  struct mem_log *m = log->context;
  unsigned i;

  g_string_append_c (m->order, 'W');
  m->writes++;
  m->last = *c;
  m->last.blocks = NULL;
  m->last.buf = NULL;
  m->last_nr_blocks = c->blocks->len;
  if (!c->clears)
    mem_log_during (log);
  if (m->fail_write != 0) {
    if (m->write_sets_f) {
      ndm_mutex_lock (&log->lock);
      log->health = NDM_DIRTY_LOG_FLUSH_FAILED;
      ndm_mutex_unlock (&log->lock);
    }
    *err = m->fail_write;
    return -1;
  }
  for (i = 0; i < c->blocks->len; i++) {
    uint64_t b = g_array_index (c->blocks, uint64_t, i);

    g_assert_cmpuint ((b + 1) * c->block_size, <=, m->dev_len);
    memcpy (m->dev + b * c->block_size,
            (const char *) c->buf + i * c->block_size, c->block_size);
  }
  return 0;
}

static void
mem_log_status (struct ndm_dirty_log *log, enum ndm_status_type type,
                GString *out)
{
  ndm_assert_held (&log->lock);
  g_string_append (out, "1 mem");
}

static const struct ndm_dirty_log_type mem_log_type = {
  .name = "mem", .min_args = 1, .max_args = 2,
  .ctr = mem_log_ctr, .dtr = mem_log_dtr, .load = mem_log_load,
  .write = mem_log_write, .status = mem_log_status,
};

static struct ndm_dirty_log *
log_new (const char *args, uint64_t target_bytes, unsigned nr_legs,
         unsigned *used)
{
  g_auto (GStrv) argv = g_strsplit (args, " ", -1);
  g_autoptr (GError) err = NULL;
  struct ndm_dirty_log *log;

  log = ndm_dirty_log_create (NULL, g_strv_length (argv), argv, target_bytes,
                              nr_legs, used, &err);
  g_assert_no_error (err);
  return log;
}

struct ndm_dirty_log *
core_log_new (const char *args, uint64_t target_bytes, unsigned *used)
{
  return log_new (args, target_bytes, 2, used);
}

struct ndm_dirty_log *
mem_log_new (const char *args, uint64_t target_bytes, unsigned nr_legs)
{
  g_autofree char *words = g_strconcat ("core ", args, NULL);
  struct ndm_dirty_log *log;
  struct mem_log *m;
  unsigned used;

  log = log_new (words, target_bytes, nr_legs, &used);
  m = g_new0 (struct mem_log, 1);
  m->order = g_string_new (NULL);
  m->dev_len = (log->nr_regions + 8 * log->block_size - 1)
    / (8 * log->block_size) * log->block_size;
  m->dev = g_malloc0 (m->dev_len);
  log->type = &mem_log_type;
  log->context = m;
  return log;
}

struct mem_log *
mem_log_of (struct ndm_dirty_log *log)
{
  return log->context;
}

bool
mem_log_dev_bit (struct ndm_dirty_log *log, uint64_t region)
{
  return (mem_log_of (log)->dev[region / 8] >> (region % 8)) & 1;
}

void
mem_log_dev_set (struct ndm_dirty_log *log, uint64_t region)
{
  mem_log_of (log)->dev[region / 8] |= 1 << (region % 8);
}

int
mem_log_flush_legs (void *data, int *err)
{
  struct ndm_dirty_log *log = data;
  struct mem_log *m = log->context;

  g_string_append_c (m->order, 'F');
  mem_log_during (log);
  if (m->fail_flush != 0) {
    *err = m->fail_flush;
    return -1;
  }
  return 0;
}

int64_t
mem_log_commit (struct ndm_dirty_log *log, bool clears, int *err)
{
  return ndm_dirty_log_commit (log, clears, mem_log_flush_legs, log, err);
}
