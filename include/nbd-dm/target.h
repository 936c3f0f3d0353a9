/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the target interface (dm's struct target_type).
 *
 * A table line "<start> <length> <target> <args...>" becomes one struct
 * ndm_target whose type is one of the built-in ops tables (core/targets/).
 * For each client request the core makes one clone per target segment the
 * request touches and calls the target's map, which turns the clone into
 * bios with ndm_clone_map_bio().  When every bio of the clone has completed
 * the core settles the clone (credited bytes and frontier error, R2/R3)
 * and calls end_io, which decides.
 *
 * Thread model: ctr, dtr, status, status_json, stats, message,
 * iterate_devices, presuspend and resume run on the control path (one
 * thread, no data path lock held).  map, end_io, release_clone and extents run on the request
 * owner's thread, concurrently for different requests; they may take the target's own lock (order 2 in
 * core/request.c) but never block on I/O.
 */
#ifndef NBD_DM_TARGET_H
#define NBD_DM_TARGET_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "nbd-dm/ndm.h"
#include "nbd-dm/device.h"

struct ndm_table;
struct ndm_request;
struct ndm_bio;
struct ndm_io_stats;

/* map results (dm's DM_MAPIO_*) */
#define NDM_MAPIO_SUBMITTED     0  /* the target completed the clone itself */
#define NDM_MAPIO_REMAPPED      1  /* bios were added; the core submits them */
#define NDM_MAPIO_REQUEUE       2  /* map again at once */
#define NDM_MAPIO_DELAY_REQUEUE 3  /* map again after a delay */
#define NDM_MAPIO_KILL          4  /* fail with clone->kill_error (or EIO) */

/* Bytes of per-clone scratch space for the target (dm's per_io_data):
 * zero when the clone is made, kept across requeues.
 */
#define NDM_PER_IO_SIZE 64

/* end_io results (dm's DM_ENDIO_*) */
#define NDM_ENDIO_DONE          0  /* complete with *error as left */
#define NDM_ENDIO_ERROR         1  /* complete with *error (must be != 0) */
#define NDM_ENDIO_REQUEUE       2  /* re-map [credited, len) at once (R4) */
#define NDM_ENDIO_DELAY_REQUEUE 3  /* same, after a delay */

enum ndm_status_type {
  NDM_STATUS_INFO,              /* dmsetup status */
  NDM_STATUS_TABLE,             /* dmsetup table: the args as loaded */
};

/* One table line. */
struct ndm_target {
  const struct ndm_target_type *type;
  struct ndm_table *table;
  uint64_t begin;               /* sectors */
  uint64_t len;                 /* sectors */
  unsigned line;                /* in the table text, for messages */
  void *private;                /* the target's context */
  struct ndm_io_stats *stats;   /* core-private */
  struct ndm_prison *prison;    /* core-private: see ndm_target_set_prison */
};

/* One client request's part within one target.  Targets read it; only the
 * core writes it, except kill_error, map_context, not_before, and buf as
 * described there.
 */
struct ndm_clone {
  struct ndm_request *rq;
  struct ndm_target *ti;
  enum ndm_op op;
  uint32_t flags;               /* NDM_REQ_* */
  uint64_t offset;              /* bytes, in the mapped device */
  uint64_t len;                 /* bytes */
  char *buf;                    /* client data for offset, or NULL.  A
                                   write's map may point it at a copy of
                                   its own (to change the data sent
                                   without touching the client's); it
                                   must restore it in end_io. */

  /* Settled by the core before end_io. */
  uint64_t credited;            /* R2: good bytes from the start */
  int error;                    /* R3: the error at the frontier, or 0 */

  int kill_error;               /* map: the errno for NDM_MAPIO_KILL */
  void *map_context;            /* map -> end_io, owned by the target */
  int64_t not_before;           /* map: start no bio before this
                                   (g_get_monotonic_time), 0 = now; with
                                   DELAY_REQUEUE: map again then, sooner
                                   or later than the default delay (a
                                   hold until ndm_clone_release_delay) */
  bool failfast;                /* map: the target has another device to
                                   go to (a path, a leg), so a device
                                   going away fails this round's bios at
                                   once with a path error (ESHUTDOWN
                                   replies are not sent again, a device
                                   reconnecting does not make them wait):
                                   dm's REQ_FAILFAST_TRANSPORT */
  union {                       /* the target's, see ndm_clone_per_io */
    unsigned char bytes[NDM_PER_IO_SIZE];
    uint64_t align;
  } per_io;

  /* Core-private. */
  int map_result;               /* NDM_MAPIO_* of the last map */
  int64_t t_start;              /* for the target's latency stats */
  uint64_t orig_len;            /* bytes when the request came in */
  struct ndm_bio *bios;         /* in map order */
  struct ndm_bio **bios_tail;
  unsigned nr_bios;
  unsigned requeues;
  bool cancelled;               /* settled: the frontier bio was cancelled
                                   unstarted (R6), credited stops there */
  bool quit;                    /* abandoned: the front end quits */
  bool finished;
  GArray *extents;              /* block status answer, clone offsets */
};

/* From another thread, under the target's lock (delay's presuspend): the
 * clone's bios may start now, whatever map put in not_before, or a clone
 * map held with DELAY_REQUEUE is mapped again at once.  Only for a clone
 * mapped and not yet ended (end_io or release_clone not yet run).
 */
void ndm_clone_release_delay (struct ndm_clone *clone);

/* clone->not_before, read from another thread. */
static inline int64_t
ndm_clone_not_before (struct ndm_clone *clone)
{
  return __atomic_load_n (&clone->not_before, __ATOMIC_ACQUIRE);
}

/* The target's scratch space in the clone (NDM_PER_IO_SIZE bytes). */
static inline void *
ndm_clone_per_io (struct ndm_clone *clone)
{
  return clone->per_io.bytes;
}

/* Byte offset of the clone within its target. */
static inline uint64_t
ndm_clone_target_offset (const struct ndm_clone *clone)
{
  return clone->offset - (clone->ti->begin << NDM_SECTOR_SHIFT);
}

/* Map [clone_off, clone_off + len) of the clone to dev at dev_offset.
 * The core splits it into bios to the device's limits and alignment (R7).
 * For ops without data a bio may stand for a scattered set of clone bytes
 * (a stripe's share of a trim); clone_off is then its lowest clone byte.
 */
void ndm_clone_map_bio (struct ndm_clone *clone, struct ndm_device *dev,
                        uint64_t dev_offset, uint64_t clone_off,
                        uint64_t len);

/* Map the whole clone 1:1 onto dev at dev_offset (linear). */
void ndm_clone_remap (struct ndm_clone *clone, struct ndm_device *dev,
                      uint64_t dev_offset);

/* The most bytes ndm_clone_map_bio puts in one bio of the clone's op for
 * dev (R7).  A target whose device range is not contiguous in the clone
 * (striped trim and zero) cuts its range at this size itself, so that
 * each call's clone_off is the clone offset of its first byte.
 */
uint64_t ndm_clone_max_bio_len (const struct ndm_clone *clone,
                                const struct ndm_device *dev);

/* Flush clone: add a flush bio for dev unless the request has one. */
void ndm_clone_map_flush (struct ndm_clone *clone, struct ndm_device *dev);

/* ---- background I/O (dm-io): a target's own reads and writes ---------- */

/* Where ndm_target_io does its op: a device and a byte offset on it. */
struct ndm_io_where {
  struct ndm_device *dev;
  uint64_t offset;
};

#define NDM_IO_MAX_WHERE 64

/* A target's own I/O, outside any client request: a disk log's blocks,
 * a resync's copy, a read repair.  Runs op on every device of where[0,
 * n) (distinct devices, n at most NDM_IO_MAX_WHERE; a read reads
 * where[0] only) with the same len bytes of buf (NULL for flush and
 * trim), and waits.  The bytes go through the engine as a client's do:
 * split to each device's limits and bounced where unaligned (R7),
 * charged to the in-flight and bounce caps, waiting at them (R8), and a
 * write waits out a quarantine (R10).  It passes no suspend gate: a
 * target stops its background work in presuspend.
 *
 * Returns 0 if every device did it, else -1 with *err the errno of the
 * first device (by index) that failed, and bit i of *failed set for each
 * device i that failed (failed may be NULL).  ENOMEM if the thread can
 * get no waiter (R13).  Any thread that may block (a target's own
 * thread, the control thread), never a completion, holding no lock.
 */
int ndm_target_io (struct ndm_target *ti, enum ndm_op op, uint32_t flags,
                   const struct ndm_io_where *where, unsigned n, void *buf,
                   uint64_t len, uint64_t *failed, int *err);

/* Block status answer from a target without bios (zero target). */
void ndm_clone_add_extent (struct ndm_clone *clone, uint64_t clone_off,
                           uint64_t length, uint32_t type);

/* For end_io and extents: walk the clone's bios in map order. */
#define ndm_clone_for_each_bio(bio, clone) \
  for ((bio) = (clone)->bios; (bio) != NULL; (bio) = (bio)->next)

/* One message a target understands (dmsetup message): a row of its
 * table (ndm_target_type.messages), dm's "<name> <args...>" with the
 * name matched whatever its case.  The core finds the row and checks the
 * count of arguments before fn runs, and words the errors from the table
 * (ndm_target_message_dispatch): an unknown name lists every row's name
 * and usage, a wrong count says what the row expects.
 */
struct ndm_target_message {
  const char *name;             /* NULL: the end of the table */
  unsigned min_args, max_args;  /* words after the name */
  const char *usage;            /* those words as the docs write them,
                                   "<path>", or NULL for none */
  /* argv[0] is the name as sent; argc - 1 is within [min_args,
   * max_args].  The row that ends the table may have an fn too: it then
   * answers every name no row has, with any count of arguments (dust
   * words that error as dm-dust does).
   */
  int (*fn) (struct ndm_target *ti, unsigned argc, char **argv,
             GString *result, GError **err);
};

/* Run message argv[0] (argc words) by table: find its row, check its
 * count of arguments, call its fn.  The errors it makes itself:
 *   unknown message 'frob': expected queue_if_no_path, fail_path <path>
 *     or switch_group <group>
 *   fail_path: expected one argument, the path, got 2 arguments
 *   queryblock requires an additional argument: expected one argument,
 *     the block
 */
int ndm_target_message_dispatch (struct ndm_target *ti,
                                 const struct ndm_target_message *table,
                                 unsigned argc, char **argv, GString *result,
                                 GError **err);

typedef int (*ndm_iterate_devices_fn) (struct ndm_target *ti,
                                       struct ndm_device *dev,
                                       uint64_t start, uint64_t len,
                                       void *data);

struct ndm_target_type {
  const char *name;
  unsigned version[3];

  /* Required.  Parse args (dm syntax), get devices with
   * ndm_table_get_device().  On error set *err quoting the bad word; the
   * core prefixes "line N: <target>: ".
   */
  int (*ctr) (struct ndm_target *ti, unsigned argc, char **argv,
              GError **err);
  /* Optional.  Free what ctr made. */
  void (*dtr) (struct ndm_target *ti);
  /* Required.  Turn the clone into bios; return NDM_MAPIO_*. */
  int (*map) (struct ndm_target *ti, struct ndm_clone *clone);
  /* Optional.  Decide on a settled clone; may change *error.  Without it:
   * DONE, with the settled error.
   */
  int (*end_io) (struct ndm_target *ti, struct ndm_clone *clone,
                 int *error);
  /* Optional.  The clone's round ends without end_io: its bios from
   * the frontier on never started (a start before them failed, R6), or
   * a clone map held (REQUEUE, DELAY_REQUEUE) will not be mapped again
   * (its request ends, or a resume re-cuts it).  Release what map took
   * and restore clone->buf if map replaced it (dm's release_clone_rq).
   */
  void (*release_clone) (struct ndm_target *ti, struct ndm_clone *clone);
  /* Optional.  Block status: turn the bios' device extents into clone
   * extents with ndm_clone_add_extent().  Without it: bios are taken as
   * contiguous pieces of the clone in map order.
   */
  void (*extents) (struct ndm_target *ti, struct ndm_clone *clone);
  /* Optional.  Append the dmsetup status or table args (no prefix). */
  void (*status) (struct ndm_target *ti, enum ndm_status_type type,
                  GString *result);
  /* Optional.  Status facts the dm line has no room for (why a path is
   * failed, say), for status --json: add one object to b (its "detail").
   * Strings from outside go through ndm_json_add_string (core/json.h).
   */
  void (*status_json) (struct ndm_target *ti, JsonBuilder *b);
  /* Optional.  dmsetup message: the messages the target understands,
   * run through ndm_target_message_dispatch.
   */
  const struct ndm_target_message *messages;
  /* Optional.  Counters of the target's own for `stats` (the mirror's
   * read repairs): with b NULL, one line of text ("read repairs 3, ...")
   * appended to out, no newline; else one JSON object added to b (out
   * unused).  The core prints them under the target's I/O counters, as
   * "<target>: <text>" and as the member "<target>":<object>.  Not
   * cleared by stats --clear: they are the target's state, as its status
   * shows it.
   */
  void (*stats) (struct ndm_target *ti, JsonBuilder *b, GString *out);
  /* Required for targets with devices.  Call fn for each device with the
   * byte range it uses; the table checks each range fits its device.
   */
  int (*iterate_devices) (struct ndm_target *ti, ndm_iterate_devices_fn fn,
                          void *data);
  /* Optional.  The device is being suspended: stop holding I/O back
   * (delay stops delaying; multipath stops queueing unless noflush), so
   * the suspend can drain.
   */
  void (*presuspend) (struct ndm_target *ti, bool noflush);
  /* Optional.  No I/O of the table runs now (a suspend has drained, or
   * the mapped device is freed, as dm's destroy suspends first): stop
   * background work that does I/O through the table (ndm_target_io),
   * such as the mirror's log thread, so none runs past the table.
   * resume starts it again.
   */
  void (*postsuspend) (struct ndm_target *ti);
  /* Optional.  The table is live again (after a suspend) or for the first
   * time (after a reload and resume).
   */
  void (*resume) (struct ndm_target *ti);
};

/* Something happened that `nbd-dmsetup wait` should see (dm_table_event):
 * an error counted, a path failed.  Any thread, any lock held.
 */
void ndm_target_event (struct ndm_target *ti);

/* For ctr: get (open or share, dm_get_device) the device of uri.
 * The table releases it when the target is destroyed.
 */
struct ndm_device *ndm_table_get_device (struct ndm_target *ti,
                                         const char *uri, GError **err);
/* The same for a device only the target's own metadata lives on (a
 * mirror's disk log): no client data goes there, so what it can do
 * does not limit what the mapped device advertises (R12), unless
 * another target of the table uses it for data.
 */
struct ndm_device *ndm_table_get_metadata_device (struct ndm_target *ti,
                                                  const char *uri,
                                                  GError **err);
/* The same for a target that can live without the device for now
 * (multipath): an unreachable one comes back absent (dev->absent), not as
 * an error, and its range is not checked until it is reached.
 */
struct ndm_device *ndm_table_get_device_tolerant (struct ndm_target *ti,
                                                  const char *uri,
                                                  GError **err);

/* For ctr of a target whose devices hold the same data (multipath's
 * paths): every bio of the target, whatever its device, takes its
 * read-modify-write cells and meets quarantines (R7, R10) in dev's
 * prison, so writes through different devices to the same block are
 * serialised where the data is.  Device offsets must mean the same place
 * on every device of the target.
 */
void ndm_target_set_prison (struct ndm_target *ti, struct ndm_device *dev);

/* The mapped device's tuning (checker intervals and the like). */
const struct ndm_config *ndm_target_config (struct ndm_target *ti);

/* For ctr: parse a non-negative decimal integer argument, quoting it on
 * error: "<what> 'abc' is not a number", or "<what> '99999999999999999999'
 * is too large: expected at most 18446744073709551615".
 */
int ndm_parse_u64 (const char *arg, const char *what, uint64_t *out,
                   GError **err);
/* The same for a count of sectors ("<what> 'abc' is not a number of
 * sectors"), at most NDM_MAX_SECTORS: so a target may shift it to bytes
 * and add a length of the table to it without checking for wrap-around.
 */
int ndm_parse_sectors (const char *arg, const char *what, uint64_t *out,
                       GError **err);

/* The built-in target types (dm's _inits[]: builtin_targets in
 * core/table.c, the one list to add a target to).  _nth gives the i-th in
 * that order, NULL past the last, so front ends can list them.
 */
const struct ndm_target_type *ndm_target_type_nth (size_t i);
const struct ndm_target_type *ndm_target_type_lookup (const char *name);
/* "linear, striped, ...": their names for a message.  Free with g_free. */
char *ndm_target_type_names (void);
extern const struct ndm_target_type ndm_linear_target;
extern const struct ndm_target_type ndm_striped_target;
extern const struct ndm_target_type ndm_zero_target;
extern const struct ndm_target_type ndm_error_target;
extern const struct ndm_target_type ndm_flakey_target;
extern const struct ndm_target_type ndm_delay_target;
extern const struct ndm_target_type ndm_dust_target;
extern const struct ndm_target_type ndm_multipath_target;
extern const struct ndm_target_type ndm_mirror_target;

#endif /* NBD_DM_TARGET_H */
