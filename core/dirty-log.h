/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the dirty region log of a mirror (dm's dirty log, dm-log.c).
 * The generic part and the core type are core/dirty-log.c; see
 * docs/targets/mirror.md, "Dirty log".
 *
 * The log says which regions of a mirror may differ between its legs.
 * Its rule: a region is marked, and for a disk log that mark is written
 * to the log device and flushed, before the first write to a clean
 * region reaches any leg.  Marks are cleared lazily once the region's
 * writes ended on every leg and every leg was flushed after them.
 *
 * The generic part (this file) keeps the bitmaps in memory and runs the
 * group commit; a type (struct ndm_dirty_log_type: core, disk) only
 * stores them.  The core type stores nothing: after a start every region
 * is copied unless the table says nosync.
 *
 * Thread model:
 *   - create and check run in the mirror's ctr, load at its first
 *     resume, suspend in postsuspend, free in dtr: the control thread
 *     (for the first table, before nbdkit forks: check's I/O runs on the
 *     calling thread, which leads the log device's connection itself);
 *   - the _locked functions run on request owners (map, end_io,
 *     release_clone), the resync thread and the control thread (status,
 *     messages), with the log's lock held;
 *   - ndm_dirty_log_commit runs on the log's own thread (one per disk
 *     log, started at the mirror's first resume), never on an owner: it
 *     waits for the log device.
 *
 * Locks: ndm_dirty_log.lock, a leaf (rank NDM_LOCK_LEAF): taken under the
 * mirror's lock or alone, and nothing is taken under it.  No I/O is done
 * with it held: a commit copies what it writes under the lock, then
 * writes without it.
 */
#ifndef NBD_DM_DIRTY_LOG_H
#define NBD_DM_DIRTY_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "nbd-dm/lock.h"
#include "nbd-dm/target.h"

/* The disk log's header (docs/targets/mirror.md, "Dirty log"): block 0
 * of the log device, little-endian, checked by a CRC-32C of its first
 * 4092 bytes; the bitmap follows at NDM_DIRTY_LOG_HEADER_SIZE.
 */
#define NDM_DIRTY_LOG_MAGIC "NBDDMLOG"          /* 8 bytes, no NUL */
#define NDM_DIRTY_LOG_VERSION 1u
#define NDM_DIRTY_LOG_HEADER_SIZE 4096u
#define NDM_DIRTY_LOG_MAX_LEGS 32u               /* bits of failed_legs */

struct ndm_dirty_log_header {
  char magic[8];
  uint32_t version;
  uint32_t header_size;
  uint64_t region_size;         /* bytes */
  uint64_t nr_regions;
  uint32_t nr_legs;
  uint32_t flags;               /* 0: reserved */
  uint64_t failed_legs;         /* bit i: leg i missed writes, not a
                                   resync source until in sync again */
  uint8_t uuid[16];             /* random when the log is made */
  uint64_t generation;          /* +1 at every header write */
  /* zero up to byte 4092, then the CRC-32C */
};

/* Clears wait at most this long for a mark commit to carry them. */
#define NDM_LOG_CLEAR_MS 1000

/* The table's sync word after the region size (dm's DEFAULTSYNC, ...). */
enum ndm_dirty_log_sync {
  NDM_DIRTY_LOG_SYNC_DEFAULT,   /* neither: core copies all, disk what
                                   its bitmap marks */
  NDM_DIRTY_LOG_SYNC_FORCE,     /* "sync": copy every region at load */
  NDM_DIRTY_LOG_SYNC_NONE,      /* "nosync": every region in sync */
};

/* The log device's letter in status (dm's: alive, a write failed, a
 * flush failed).
 */
enum ndm_dirty_log_health {
  NDM_DIRTY_LOG_ALIVE = 'A',
  NDM_DIRTY_LOG_WRITE_FAILED = 'D',
  NDM_DIRTY_LOG_FLUSH_FAILED = 'F',
};

struct ndm_dirty_log;

/* What a commit writes: blocks of the stored form, copied under the lock
 * so the log may change while they are written.  ndm_dirty_log_commit
 * makes and frees it; the type's write only reads it.
 */
struct ndm_dirty_log_commit {
  uint64_t ticket;              /* satisfied once this is on the device */
  bool clears;                  /* a clear commit: the legs are flushed
                                   before it is written */
  bool header;                  /* the header changed (failed legs) */
  uint64_t failed_legs;         /* the header's, as of the copy */
  GArray *blocks;               /* uint64_t: indexes of changed bitmap
                                   blocks; block i is bytes [i *
                                   block_size, (i + 1) * block_size) of
                                   the bitmap, at NDM_DIRTY_LOG_HEADER_SIZE
                                   + i * block_size on the log device */
  void *buf;                    /* their bytes, in the same order, in the
                                   stored form (bit r % 8 of byte r / 8);
                                   bits past the last region are 0 */
  size_t block_size;
};

/* A log type (dm's dirty log type): how the bitmap is kept.
 * One row each in the mirror's list of types, looked up by name.
 */
struct ndm_dirty_log_type {
  const char *name;             /* "core", "disk" */
  unsigned min_args, max_args;  /* after <#log args>, sync word included */
  /* Required.  Control thread.  Parse the type's words before the region
   * size (disk: the log device, with ndm_table_get_device), quoting a
   * bad word; the generic part parses the region size and sync word.
   */
  int (*ctr) (struct ndm_dirty_log *log, struct ndm_target *ti,
              unsigned argc, char **argv, GError **err);
  /* Optional.  Control thread, without the lock.  Free what ctr made. */
  void (*dtr) (struct ndm_dirty_log *log);
  /* Optional (none: nothing stored).  Control thread (ctr), without the
   * lock.  Read the header and check it against the log's geometry (a
   * zero header is a new log: write one); the bitmap is not read, since
   * another table may still be writing it (a reload).  Errors quote the
   * device and what differs.
   */
  int (*check) (struct ndm_dirty_log *log, GError **err);
  /* Optional (none: nothing stored).  Control thread (first resume),
   * without the lock.  As check, then read the bitmap into
   * log->committed and the header's failed legs into log->failed_legs.
   */
  int (*load) (struct ndm_dirty_log *log, GError **err);
  /* Optional (none: a commit is done at once).  The log's thread, without
   * the lock.  Write c's blocks and make them stable (FUA, or write and
   * flush), through the core's synchronous I/O on the log device.  Returns
   * 0, or -1 with a positive errno in *err.  The letter then becomes D
   * (a write failed) unless write set it to F itself, under log->lock,
   * because its flush failed.
   */
  int (*write) (struct ndm_dirty_log *log,
                const struct ndm_dirty_log_commit *c, int *err);
  /* Required.  With log->lock held (ndm_dirty_log_status takes it).
   * The dm log words for status (INFO: "1 core", "3 disk <dev> A";
   * TABLE: "core 1 1024 ", each word followed by a space as dm's),
   * appended to out.
   */
  void (*status) (struct ndm_dirty_log *log, enum ndm_status_type type,
                  GString *out);
};

extern const struct ndm_dirty_log_type ndm_dirty_log_core;
extern const struct ndm_dirty_log_type ndm_dirty_log_disk;

struct ndm_dirty_log {
  const struct ndm_dirty_log_type *type;
  struct ndm_target *ti;
  void *context;                /* the type's */
  /* Fixed once create returns. */
  uint64_t region_size;         /* bytes, a power of two, >= 4096 */
  uint64_t nr_regions;
  unsigned nr_legs;
  enum ndm_dirty_log_sync sync;
  struct ndm_device *dev;       /* the log device (set by the type's
                                   ctr), NULL when nothing is stored */
  size_t block_size;            /* bytes of a stored bitmap block: 4096
                                   unless the type's ctr sets it (disk:
                                   the log device's preferred block, 512
                                   to 64 KiB, a power of two) */
  bool loaded;                  /* the control thread's: load ran, so
                                   memory says what the device holds and
                                   may be written over it */

  struct ndm_mutex lock;        /* protects everything below */
  GCond cond;                   /* the log's thread: work, stop */
  unsigned long *dirty;         /* marked in memory */
  unsigned long *committed;     /* on the device whatever commit in
                                   flight lands: a mark from its
                                   commit's end, a clear from its
                                   snapshot (dirty for the core type) */
  unsigned long *in_sync;       /* dm's sync bits: the same on every
                                   leg in service */
  unsigned long *recovering;    /* handed out as resync work */
  uint64_t sync_count;          /* bits set in in_sync */
  uint64_t resync_cursor;       /* where the next resync search starts */
  unsigned long *clearing;      /* cleared by the clear commit in
                                   flight: maybe not stable on every leg
                                   until its flush_legs returned */
  uint64_t next_ticket;         /* the ticket the next commit satisfies */
  uint64_t wanted_ticket;       /* the last ticket handed out: the next
                                   commit runs, if need be without I/O */
  uint64_t committed_ticket;    /* the last commit done */
  bool committing;              /* the thread is writing one now */
  bool header_changed;          /* failed_legs differs from the device */
  int64_t last_clear;           /* g_get_monotonic_time of the last
                                   clear commit, 0: none yet */
  bool stopped;                 /* suspended: no more writes until
                                   ndm_dirty_log_resume */
  uint64_t failed_legs;         /* the header's, in memory */
  enum ndm_dirty_log_health health;
  uint64_t commits;             /* for JSON */
  uint64_t dirty_at_load;       /* marked regions found by load */
};

/* Bytes of the log device a log uses from its start: the header, then
 * the bitmap (a bit per region) in whole blocks of log->block_size.
 * For the mirror's iterate_devices and the disk type's size check; only
 * for a log with a device.
 */
static inline uint64_t
ndm_dirty_log_dev_bytes (const struct ndm_dirty_log *log)
{
  uint64_t bitmap = (log->nr_regions + 7) / 8;

  return NDM_DIRTY_LOG_HEADER_SIZE +
    (bitmap + log->block_size - 1) / log->block_size * log->block_size;
}

/* Control thread (ctr).  argv starts at the log type: "<type> <#log args>
 * <args>...".  Makes the log for nr_regions regions of nr_legs legs and
 * sets *used to the words it took.  The caller owns the result.
 */
struct ndm_dirty_log *ndm_dirty_log_create (struct ndm_target *ti,
                                            unsigned argc, char **argv,
                                            uint64_t target_bytes,
                                            unsigned nr_legs,
                                            unsigned *used, GError **err);
/* Control thread, the log's thread stopped.  NULL is ignored. */
void ndm_dirty_log_free (struct ndm_dirty_log *log);

/* Control thread, ctr.  Check what the type stores against this log's
 * geometry (the disk type: the header; a new log is written), so that a
 * log that is not this table's fails the table, at start-up as at
 * reload.  Nothing else is read.  Returns 0, or -1 with *err set.
 */
int ndm_dirty_log_check (struct ndm_dirty_log *log, GError **err);

/* Control thread, the table's first resume: no I/O of the mirror runs,
 * and the table that wrote the log before (a reload's old table) has
 * made its last commit (ndm_dirty_log_suspend).  Read what the type
 * stores and apply the sync word: marked regions (all for "sync" or a
 * new core log, none for "nosync") are not in sync.  With "sync" every
 * region is marked too, so a restart without the word still copies
 * what this start did not.  The health is A again.  Returns the count
 * of regions not in sync, or -1 with *err set: then nothing is known of
 * the device, so every region is marked and not in sync (a copy of
 * everything, never a region wrongly taken as equal) and the health is
 * D.  Either way the log is loaded from then on.
 */
int64_t ndm_dirty_log_load (struct ndm_dirty_log *log, GError **err);

/* Control thread, postsuspend (no write of the mirror in flight, the
 * log's thread stopped).  dm's flush at suspend: a clear commit now,
 * whatever the time since the last (flush_legs first, as for every clear
 * commit), so that a clean stop leaves marked only the regions whose
 * writes have not ended (none after a drain) or that are out of sync.
 * Then the log is stopped: commits do nothing until
 * ndm_dirty_log_resume.  A log not loaded yet (a table never resumed)
 * is not written.  Returns as ndm_dirty_log_commit.
 */
int64_t ndm_dirty_log_suspend (struct ndm_dirty_log *log,
                               int (*flush_legs) (void *data, int *err),
                               void *data, int *err);
/* Control thread, resume after a suspend: commits run again. */
void ndm_dirty_log_resume (struct ndm_dirty_log *log);

/* With log->lock held.  Mark region for a write.  Returns 0 when the
 * mark is on the device already (or the type stores nothing), else the
 * ticket of the commit that will carry it: the write must not reach any
 * leg before ndm_dirty_log_committed_locked says that ticket is done.
 * Wakes the log's thread.
 */
uint64_t ndm_dirty_log_mark_locked (struct ndm_dirty_log *log,
                                    uint64_t region);
/* With log->lock held.  The region's writes ended on every leg: clear
 * its mark in memory; a later commit writes it, after flushing the legs.
 */
void ndm_dirty_log_clear_locked (struct ndm_dirty_log *log,
                                 uint64_t region);
/* With log->lock held.  Whether region is marked in memory, on the
 * device, or by a clear commit in flight (so maybe not stable on every
 * leg yet): the first such region at or after *region, in *region; false
 * if there is none.  For a leg that leaves service.
 */
bool ndm_dirty_log_next_marked_locked (struct ndm_dirty_log *log,
                                       uint64_t *region);
/* With log->lock held.  Whether the commit of ticket is done (0: yes). */
bool ndm_dirty_log_committed_locked (struct ndm_dirty_log *log,
                                     uint64_t ticket);
/* With log->lock held.  Record that leg missed writes (failed) or is in
 * sync again, in the header.  Returns the ticket of the header commit, 0
 * if nothing changed or nothing is stored.
 */
uint64_t ndm_dirty_log_set_leg_failed_locked (struct ndm_dirty_log *log,
                                              unsigned leg, bool failed);

/* The log's thread, without the lock.  One group commit.  A mark commit
 * (clears false) copies, under the lock, every block changed since the
 * last commit with the committed bits or'ed into the marks, so it clears
 * nothing and never waits for the legs.  A clear commit (clears true, at
 * most every NDM_LOG_CLEAR_MS) copies the marks as they are, counts the
 * cleared bits as not committed from then on (a region marked again
 * meanwhile waits for the next commit), then calls flush_legs (every leg
 * in service; dm's flush_callback_fn) and gives up if it fails, since a
 * region may read clean only once its data is stable on every leg: the
 * clears count as on the device again (they are), and the marks it
 * carried wait for the next commit.  A clear commit asked for sooner
 * than NDM_LOG_CLEAR_MS after the last, with nothing cleared, or while
 * the log's health is not A, is made as a mark commit.
 * Then the type's write.  Returns the ticket committed (0: nothing to
 * do, or the log is stopped), or -1 with *err set: the log's health
 * changed if the write failed (not if flush_legs did).  The caller then
 * releases what waited (ndm_rh_log_committed, failed set on -1).
 */
int64_t ndm_dirty_log_commit (struct ndm_dirty_log *log, bool clears,
                              int (*flush_legs) (void *data, int *err),
                              void *data, int *err);

/* With log->lock held: the in-sync bits (dm's in_sync, set_region_sync,
 * get_sync_count, get_resync_work).  get_resync_work hands out the next
 * region not in sync and not recovering, from the cursor (wrapping
 * round), and marks it recovering; false when there is none.
 * set_region_sync ends the region's recovering either way.
 */
bool ndm_dirty_log_in_sync_locked (struct ndm_dirty_log *log,
                                   uint64_t region);
void ndm_dirty_log_set_region_sync_locked (struct ndm_dirty_log *log,
                                           uint64_t region, bool in_sync);
uint64_t ndm_dirty_log_sync_count_locked (struct ndm_dirty_log *log);
bool ndm_dirty_log_get_resync_work_locked (struct ndm_dirty_log *log,
                                           uint64_t *region);

/* Control thread: status words (the type's) and the "log" object of the
 * mirror's JSON detail (added to b).  Take the lock themselves.
 */
void ndm_dirty_log_status (struct ndm_dirty_log *log,
                           enum ndm_status_type type, GString *out);
void ndm_dirty_log_status_json (struct ndm_dirty_log *log, JsonBuilder *b);

#endif /* NBD_DM_DIRTY_LOG_H */
