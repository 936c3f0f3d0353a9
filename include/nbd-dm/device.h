/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: devices, the things a table's targets send bios to.
 *
 * A device is an ops table (submit, start, status, close) plus what the
 * core needs to know to split and align bios for it: its size, limits and
 * capabilities, read from the NBD handshake.  core/devices/nbd.c implements
 * it with libnbd; tests/unit/fake-device.c with scripted completions.
 *
 * Completion contract: submit either returns 0 and the device later calls
 * ndm_bio_endio() exactly once for that command (possibly before submit
 * returns, from any thread), or returns -1 with a positive errno and never
 * calls it.  A completion only records: it must not submit, block or call
 * back into the device.
 *
 * Leader/follower: a device whose completions need someone to read them
 * (a socket) hands each started command's channel to the core (*chp, with
 * a reference).  The request owner then waits by leading that channel:
 * polling its fd and calling its service op, which completes everybody's
 * bios, not only its own (see core/channel.c and docs/design.md).
 */
#ifndef NBD_DM_DEVICE_H
#define NBD_DM_DEVICE_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "nbd-dm/lock.h"
#include "nbd-dm/ndm.h"

struct ndm_bio;
struct ndm_md;

/* ---- waiters: one per thread, how the core sleeps and wakes ---------- */

struct ndm_waiter;

/* The calling thread's waiter (created on first use, never freed while
 * the process runs, so a late kick is harmless), or NULL if the thread
 * has none and cannot get one now (no fd or memory for it; logged).  The
 * next call tries again.
 */
struct ndm_waiter *ndm_waiter_self (void);

/* Make w's next or current wait return.  Any thread; async-signal-unsafe. */
void ndm_waiter_kick (struct ndm_waiter *w);

/* ---- channels: one pollable connection ------------------------------- */

struct ndm_channel;

struct ndm_channel_ops {
  /* Leader only.  Fill pfd->fd and pfd->events for the next poll, and
   * lower *timeout_ms (ms, -1 = none) if the channel must be looked at
   * again by then even without events (an I/O timeout).  Return -1 when
   * there is nothing to poll (the channel is dead and every command it
   * had was completed with an error).
   */
  int (*prepare) (struct ndm_channel *ch, struct pollfd *pfd,
                  int *timeout_ms);
  /* Leader only.  poll(2) reported revents on the fd: read replies and
   * complete their bios, send what is queued.
   */
  void (*service) (struct ndm_channel *ch, short revents);
  /* The last reference was dropped.  Not called from a completion. */
  void (*release) (struct ndm_channel *ch);
};

struct ndm_channel {
  const struct ndm_channel_ops *ops;
  struct ndm_mutex lock;        /* protects leader, standby */
  struct ndm_waiter *leader;    /* protected by lock */
  GQueue standby;               /* waiters with commands here; by lock */
  gint inflight;                /* atomic: commands started, not ended */
  gint refs;                    /* atomic */
};

void ndm_channel_init (struct ndm_channel *ch,
                       const struct ndm_channel_ops *ops);
void ndm_channel_ref (struct ndm_channel *ch);
void ndm_channel_unref (struct ndm_channel *ch);

/* A command was started on / ended on ch.  ended is called before the
 * command's ndm_bio_endio().
 */
void ndm_channel_started (struct ndm_channel *ch);
void ndm_channel_ended (struct ndm_channel *ch);

/* Wake ch's leader so it prepares its poll again (a command could not be
 * sent at once, or the channel died).  Any thread.
 */
void ndm_channel_kick_leader (struct ndm_channel *ch);

/* ---- devices ----------------------------------------------------------- */

/* One command as the device must send it: aligned and sized to its limits
 * by the core.  buf is NULL for commands without data.
 */
struct ndm_cmd {
  enum ndm_op op;
  uint32_t flags;               /* NDM_REQ_*, only those the device has */
  uint64_t offset;
  uint64_t len;
  void *buf;
};

struct ndm_device_limits {
  uint32_t min_block;           /* commands aligned to this (power of 2) */
  uint32_t pref_block;
  uint32_t max_data;            /* max bytes of one read or write */
  uint32_t max_len;             /* max bytes of one trim/zero/cache/status */
};

struct ndm_device_caps {
  bool read_only;
  bool flush;
  bool fua;
  bool trim;
  bool zero;
  bool fast_zero;
  bool cache;
  bool extents;                 /* base:allocation negotiated */
  bool multi_conn;
};

/* How a device's connection pool stands, for status and stats. */
enum ndm_device_state {
  NDM_DEVICE_UP,                /* every connection up */
  NDM_DEVICE_DEGRADED,          /* some */
  NDM_DEVICE_DOWN,              /* none: reconnecting in the background */
};

struct ndm_device_status {
  enum ndm_device_state state;
  unsigned conns_up;
  unsigned conns;
  unsigned quarantined;         /* writes of cut connections that may
                                   still land (R10) */
  char *reason;                 /* why it is down (NULL if not, or not
                                   known); the caller frees it */
};

struct ndm_device;

struct ndm_device_ops {
  const char *name;
  /* Required.  Start cmd for bio.  hint is a channel the same request
   * already uses on this device (may be NULL or dead).  On success *chp is
   * the channel the command went to, with a reference for the caller, or
   * NULL for devices that complete on their own.
   */
  int (*submit) (struct ndm_device *dev, struct ndm_bio *bio,
                 const struct ndm_cmd *cmd, struct ndm_channel *hint,
                 struct ndm_channel **chp, int *err);
  /* Optional.  Start background work (reconnects).  After fork. */
  void (*start) (struct ndm_device *dev);
  /* Optional.  Fill *st (zeroed by the caller).  Without it a device is
   * taken as up.
   */
  void (*status) (struct ndm_device *dev, struct ndm_device_status *st);
  /* Optional.  Fence the device: close its connections so that nothing
   * it has in flight completes successfully later; its commands end with a
   * path error soon after.  It reconnects in the background.  Any thread
   * outside completions.
   */
  void (*fence) (struct ndm_device *dev, const char *why);
  /* Optional.  Check the server answers, on a connection of its own: the
   * handshake and one block read.  *size gets the export size (for path
   * identity).  Blocks up to timeout_ms.  Path checkers call it.
   */
  int (*probe) (struct ndm_device *dev, unsigned timeout_ms, uint64_t *size,
                GError **err);
  /* Optional.  Whether a command submitted now could be sent (some
   * connection is up).  Without it: true.
   */
  bool (*connected) (struct ndm_device *dev);
  /* Optional.  The operator says the device's server is gone (its
   * process killed, its machine off): resolve every ghost of the device
   * (ndm_ghost_resolve), releasing what they quarantine.
   */
  void (*declare_dead) (struct ndm_device *dev);
  /* Optional.  How many of the device's cut connections may still land
   * writes: their ghosts are unresolved (the server has neither answered
   * nor closed them, and the operator has not declared it dead), or they
   * are being cut now.  A target puts a failed device back into service
   * and copies data onto it (a mirror leg) only at 0, or a write of such
   * a connection could land over the copy later (R10).  Without it: 0
   * (the device never leaves a ghost).  Any thread outside completions;
   * it takes only locks ranked below a target's.
   */
  unsigned (*unresolved_ghosts) (struct ndm_device *dev);
  /* Required.  Nothing is in flight; free everything. */
  void (*close) (struct ndm_device *dev);
};

struct ndm_device {
  const struct ndm_device_ops *ops;
  char *uri;                    /* as written in the table */
  uint64_t size;                /* bytes; 0 while absent */
  bool absent;                  /* opened tolerant and never reached yet:
                                   size, limits and caps unknown */
  struct ndm_device_limits limits;
  struct ndm_device_caps caps;

  /* Core-private. */
  struct ndm_md *md;
  struct ndm_io_stats *stats;
  unsigned refs;                /* targets holding it; by md->devices_lock */
  struct ndm_prison *prison;    /* its data's cells (core/prison.c) */
};

/* Opens devices by URI.  The returned device has ops, uri, size, limits and
 * caps filled in; the core fills the rest.
 */
struct ndm_device_class {
  const char *name;
  /* Open uri.  With tolerant, a server that cannot be reached is not an
   * error: the device is returned absent and keeps trying in the
   * background (multipath paths); a bad URI still is.
   */
  struct ndm_device *(*open) (const char *uri, const struct ndm_config *cfg,
                              bool tolerant, GError **err);
};

extern const struct ndm_device_class ndm_nbd_device_class;

/* The URI schemes ndm_nbd_device_class opens ("nbd://", ...; NULL ends
 * the list): the one list behind its check, its error message and the
 * plugin's --dump-plugin.  Adding one here is all it takes, if libnbd
 * connects to it.
 */
extern const char *const ndm_nbd_uri_schemes[];

/* Whether uri starts with one of ndm_nbd_uri_schemes. */
bool ndm_nbd_uri_ok (const char *uri);

/* The schemes in one string, sep between two of them and last_sep before
 * the last: (", ", " or ") makes "nbd://, ... or nbds+vsock://".  The
 * caller frees it (g_free).
 */
char *ndm_nbd_uri_schemes_list (const char *sep, const char *last_sep);

/* Fill limits the device did not announce: R7's defaults. */
void ndm_device_limits_fixup (struct ndm_device_limits *limits);

/* Called by a device, exactly once per started command (see above). */
void ndm_bio_endio (struct ndm_bio *bio, int status);

/* ---- ghosts: commands that may still land (R10) ------------------------ */

/* A connection was cut while its server may be alive (fenced: a path
 * failed, io-timeout, a server that stopped answering).  Closing our end
 * does not recall what the server already received: a stopped or hung
 * server runs it when it resumes, over anything written since.  A ghost
 * stands for such a connection until its fate is known.  The device
 * creates one when it cuts the connection and passes it with every
 * command the connection fails (ndm_bio_quarantine): a failed write is
 * then quarantined in its data's prison, and overlapping writes wait
 * (fence-timeout at most, then EIO) until the device resolves the ghost:
 * once nothing of it can land any more, because the server closed the
 * connection or the operator said the server is dead.  Any thread but
 * the resolve, which must not run under a device's handle lock.
 */
struct ndm_ghost;
struct ndm_ghost *ndm_ghost_new (struct ndm_device *dev, const char *why);
void ndm_ghost_ref (struct ndm_ghost *g);
void ndm_ghost_unref (struct ndm_ghost *g);
/* Nothing of it can land any more; how says why (for the log). */
void ndm_ghost_resolve (struct ndm_ghost *g, const char *how);
bool ndm_ghost_resolved (struct ndm_ghost *g);
/* Ranges it quarantines now. */
unsigned ndm_ghost_cells (struct ndm_ghost *g);

/* A command of a cut connection failed with status: if it wrote, what it
 * wrote is quarantined under g (nothing if g is NULL or status 0).  Call
 * it before ndm_channel_ended and ndm_bio_endio: whoever sees the command
 * ended must see its quarantine, and its owner meets it when it maps the
 * tail.
 */
void ndm_bio_quarantine (struct ndm_bio *bio, int status,
                         struct ndm_ghost *g);

/* Block status answer for the command of bio (device offsets).  From the
 * completion path, before ndm_bio_endio().
 */
void ndm_bio_add_extent (struct ndm_bio *bio, uint64_t offset,
                         uint64_t length, uint32_t type);

#endif /* NBD_DM_DEVICE_H */
