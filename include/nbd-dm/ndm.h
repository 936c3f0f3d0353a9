/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the public API of the core, for front ends (the nbdkit plugin,
 * the unit tests).
 *
 * A mapped device (struct ndm_md) owns a live table built from dmsetup
 * syntax and the devices (NBD exports) it names.  A front end hands it one
 * client request at a time per thread through ndm_md_io() and friends; the
 * call returns when nothing of the request is in flight any more (R1).
 *
 * Thread model: every ndm_md_* data call may run in parallel on any number
 * of threads.  ndm_md_new/load/start/free are called by one thread while no
 * data call runs.
 */
#ifndef NBD_DM_NDM_H
#define NBD_DM_NDM_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#define NDM_SECTOR_SHIFT 9
#define NDM_SECTOR_SIZE  (1u << NDM_SECTOR_SHIFT)

/* NBD sizes and offsets are int64_t, so a mapped device, and every range
 * a target uses on a device, ends below 2^63 bytes: at most 2^54 - 1
 * sectors.  Any such count fits an int64_t once shifted to bytes, and the
 * sum of two fits a uint64_t.  Table parsing enforces it (core/table.c).
 */
#define NDM_MAX_SECTORS  (INT64_MAX >> NDM_SECTOR_SHIFT)

/* What a request, clone or bio does.  The names are the NBD commands. */
enum ndm_op {
  NDM_OP_READ,
  NDM_OP_WRITE,
  NDM_OP_FLUSH,
  NDM_OP_TRIM,
  NDM_OP_ZERO,
  NDM_OP_CACHE,
  NDM_OP_BLOCK_STATUS,
};

/* Whether op changes the data: what a read-only device refuses, what FUA
 * applies to, what a ghost write (R10) may be.
 */
static inline bool
ndm_op_writes (enum ndm_op op)
{
  return op == NDM_OP_WRITE || op == NDM_OP_ZERO || op == NDM_OP_TRIM;
}

/* The op as messages name it ("read", "block status"); "unknown op" for
 * a value outside the enum.
 */
static inline const char *
ndm_op_name (enum ndm_op op)
{
  switch (op) {
  case NDM_OP_READ: return "read";
  case NDM_OP_WRITE: return "write";
  case NDM_OP_FLUSH: return "flush";
  case NDM_OP_TRIM: return "trim";
  case NDM_OP_ZERO: return "zero";
  case NDM_OP_CACHE: return "cache";
  case NDM_OP_BLOCK_STATUS: return "block status";
  }
  return "unknown op";
}

/* Request flags, with NBD's meaning. */
#define NDM_REQ_FUA       (1u << 0)
#define NDM_REQ_MAY_TRIM  (1u << 1)   /* zero: a hole that reads as 0 is ok */
#define NDM_REQ_FAST_ZERO (1u << 2)   /* zero: fail with ENOTSUP unless fast */
#define NDM_REQ_ONE       (1u << 3)   /* block status: one extent is enough */

/* Extent types, NBD base:allocation bits. */
#define NDM_EXTENT_HOLE 1u
#define NDM_EXTENT_ZERO 2u

struct ndm_extent {
  uint64_t offset;              /* bytes */
  uint64_t length;              /* bytes */
  uint32_t type;                /* NDM_EXTENT_* bits */
};

/* Error domain of the control path: table, devices, keys, messages. */
#define NDM_ERROR ndm_error_quark ()
GQuark ndm_error_quark (void);
enum ndm_error_code {
  NDM_ERROR_TABLE,              /* bad table text */
  NDM_ERROR_DEVICE,             /* device could not be opened */
  NDM_ERROR_CONFIG,             /* bad tuning key */
  NDM_ERROR_MESSAGE,            /* bad or unsupported message */
};

struct ndm_device_class;
struct ndm_target_type;

/* Tuning, shared by every device of a mapped device.  The keys, their
 * fields, ranges and defaults are one table in core/config.c, documented
 * in nbdkit-dm-plugin(1); ndm_config_init and ndm_config_set use it.
 */
struct ndm_config {
  char name[64];                /* for `info` */
  char metrics[108];            /* metrics=ADDR, "" for none
                                   (nbd-dm/metrics.h); a sun_path's size */
  unsigned connections;         /* per device that allows multi-conn */
  uint64_t max_inflight;        /* bytes of data bios in flight (R8) */
  uint64_t max_bounce;          /* bytes of bounce buffers (R7, R8) */
  uint64_t resync_rate;         /* mirror: bytes/s its copies read, 0 no
                                   cap (core/kcopyd.c) */
  unsigned connect_timeout_ms;  /* NBD handshake, at start-up */
  unsigned reconnect_ms;        /* delay between reconnect attempts */
  unsigned io_timeout_ms;       /* fence a device silent this long; 0 off */
  unsigned fence_timeout_ms;    /* R10: writes wait this long for a cut
                                   connection's server to close it */
  unsigned checker_interval_ms; /* multipath: probe every path */
  unsigned flap_window_ms;      /* multipath: a path failing again within
                                   this of its reinstatement flaps */
  unsigned flap_damping_ms;     /* multipath: a flapping path waits this */
  unsigned no_path_timeout_ms;  /* multipath: queued I/O fails after it */
  bool structured_replies;      /* on data connections (not the first) */
  /* Who opens "devices"; NULL means NBD URIs through libnbd.  The unit
   * tests put a fake here. */
  const struct ndm_device_class *device_class;
  /* Target types beside the built-in ones (NULL-terminated), looked up
   * first.  The unit tests add probes here.
   */
  const struct ndm_target_type *const *extra_targets;
  /* Optional: true once the front end shuts down (or the calling
   * request's client went away).  Requests held by a suspend or waiting
   * for a path ask it every NDM_QUIT_POLL_MS and end with ESHUTDOWN, so
   * a server can stop while I/O is held.  Called on request threads.
   */
  bool (*quitting) (void);
  /* How the user writes sizes and booleans: the front end's syntax
   * (the plugin: nbdkit_parse_size and nbdkit_parse_bool, whose
   * signatures these are), so a key reads as every other nbdkit key.
   * The SIZE, RATE and BOOL tuning keys and the mirror's resync_rate
   * message go through them; each returns -1 for a value that is not
   * one (after saying why, if it wants).  NULL: such values are refused.
   */
  int64_t (*parse_size) (const char *value);
  int (*parse_bool) (const char *value);
};

#define NDM_QUIT_POLL_MS 200

/* Every tuning key at its default; the other fields zero. */
void ndm_config_init (struct ndm_config *cfg);

/* Parse one tuning key.  Returns 1 if the key was one of ours and its value
 * was good, 0 if the key is not a tuning key, -1 with *err naming the key
 * and the bad value otherwise.
 */
int ndm_config_set (struct ndm_config *cfg, const char *key,
                    const char *value, GError **err);

/* Append the tuning keys' --help text to out: per key "key=VALUE", then
 * what it does and its default, in lines of at most 78 columns
 * (core/config.c).
 */
void ndm_config_help (GString *out);

/* Append one "key=VALUE  text" entry laid out the same way, for a front
 * end's own keys.
 */
void ndm_config_help_entry (GString *out, const char *key,
                            const char *value_name, const char *text);

/* What the mapped device can do, derived from its devices (R12). */
struct ndm_caps {
  bool write;
  bool flush;
  bool fua;                     /* with flush: native, emulated by write and
                                   flush, or a plain write to a device
                                   without a cache */
  bool trim;
  bool fast_zero;               /* whenever writable; ENOTSUP where not
                                   fast (see table_compute_caps) */
  bool cache;
  bool multi_conn;
  uint32_t block_min;           /* advertised block sizes (bytes) */
  uint32_t block_pref;
  uint32_t block_max;
};

struct ndm_md;

/* Create an empty mapped device.  cfg is copied. */
struct ndm_md *ndm_md_new (const struct ndm_config *cfg);

/* Parse a table in dmsetup syntax (lines split on '\n' or ';'), open its
 * devices, construct its targets and make it live.  On error nothing
 * changes and *err quotes the line, the bad word and what was expected.
 */
int ndm_md_load (struct ndm_md *md, const char *text, GError **err);

/* Start background work (device reconnects).  nbdkit calls this after it
 * forked; threads do not survive fork(2).
 */
void ndm_md_start (struct ndm_md *md);

void ndm_md_free (struct ndm_md *md);

uint64_t ndm_md_get_size (struct ndm_md *md);
void ndm_md_get_caps (struct ndm_md *md, struct ndm_caps *caps);

/* Serve one request: read, write, flush, trim, zero or cache.  buf is the
 * client's buffer (count bytes) for read and write, NULL otherwise.
 * Returns 0, or -1 with a positive errno in *err, already mapped for an
 * NBD client (see ndm_errno_for_client).
 */
int ndm_md_io (struct ndm_md *md, enum ndm_op op, void *buf, uint64_t count,
               uint64_t offset, uint32_t flags, int *err);

/* Block status for [offset, offset + count): appends contiguous extents
 * starting at offset to out (GArray of struct ndm_extent).  At least one
 * extent on success; fewer bytes than count may be described.
 */
int ndm_md_extents (struct ndm_md *md, uint64_t count, uint64_t offset,
                    uint32_t flags, GArray *out, int *err);

/* dmsetup table / status lines of the live table, one per target. */
void ndm_md_table (struct ndm_md *md, GString *out);
void ndm_md_status (struct ndm_md *md, GString *out);

/* Like dm (DESIGN.md section 6).  suspend stops dispatching new requests
 * and returns once none is in flight; with noflush, a request that would
 * run another round (a requeue) is held instead, and goes on after resume
 * on whatever table is live then.  reload builds a table beside the live
 * one (errors quote the line, nothing changes); a size different from the
 * live one is refused while clients are connected unless allow_resize.
 * resume makes the loaded table live (suspending first if needed) and lets
 * held and waiting requests go on.  clear drops a loaded table.
 * Control path; they serialise among themselves.
 */
int ndm_md_suspend (struct ndm_md *md, bool noflush, GError **err);
int ndm_md_reload (struct ndm_md *md, const char *text, bool allow_resize,
                   GError **err);
int ndm_md_resume (struct ndm_md *md, GError **err);
int ndm_md_clear (struct ndm_md *md, GError **err);

/* A client connected / left (for the size rule and `info`). */
void ndm_md_client_open (struct ndm_md *md);
void ndm_md_client_close (struct ndm_md *md);

/* Tell the core the front end is shutting down: path errors then reach
 * clients as ESHUTDOWN instead of EIO.
 */
void ndm_md_set_shutting_down (struct ndm_md *md);

/* Where the core's messages go (default: errors to stderr).  fn is
 * called from any thread.  ERROR is for what needs a human (a path, leg
 * or device failed, data errors, held I/O failing); INFO for what an
 * operator follows, recovery included (a path reinstated, a leg back, a
 * resync done, a connection back); DEBUG for detail, per category, only
 * while the front end turned that category on.
 */
enum ndm_log_level { NDM_LOG_ERROR, NDM_LOG_INFO, NDM_LOG_DEBUG };
typedef void (*ndm_log_fn) (enum ndm_log_level level, const char *msg);
void ndm_set_log_fn (ndm_log_fn fn);

/* The subsystems whose debug messages are turned on one by one (the
 * plugin: nbdkit -D dm.NAME=1, NAME from ndm_log_category_name).
 */
enum ndm_log_category {
  NDM_LOG_DEVICE,               /* connections, limits, quarantines */
  NDM_LOG_REQUEST,              /* requeues and holds of requests */
  NDM_LOG_MULTIPATH,            /* path checks and choices */
  NDM_LOG_MIRROR,               /* legs, regions, resync, dirty log */
  NDM_LOG_CONTROL,              /* control commands */
  NDM_LOG_NR_CATEGORIES
};

/* "device", "request", ...: the category's name; NULL past the last. */
const char *ndm_log_category_name (unsigned category);

/* Debug messages of category on (level > 0) or off (0, the default).
 * Any thread, any time.
 */
void ndm_log_set_debug (enum ndm_log_category category, int level);

/* R5: errors that another path might not have (the connection, not the
 * data).  Target errors (EIO from a live device, ENOSPC, EPERM, EINVAL,
 * EOVERFLOW, ENOTSUP) are not path errors.
 */
bool ndm_errno_is_path_error (int err);

/* The errno an NBD client should see for err.  nbdkit turns any errno it
 * does not know into EINVAL, so everything else becomes EIO (or
 * ESHUTDOWN while shutting down).
 */
int ndm_errno_for_client (int err, bool shutting_down);

#endif /* NBD_DM_NDM_H */
