/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the bio, one piece of a clone bound to one device.
 *
 * A bio is made by a target's map (through ndm_clone_map_bio, which splits
 * it to the device's limits), started by the request owner, completed by
 * whoever reads the device's reply, and freed by the owner once the request
 * is settled.  It points into the client's buffer (R8) unless it must
 * bounce (unaligned, R7).
 *
 * A bio may take several device commands (steps): read the covering
 * blocks into a bounce buffer, write them back, flush for an emulated FUA.
 * Every step after the first is started by the owner, never from a
 * completion.
 */
#ifndef NBD_DM_BIO_H
#define NBD_DM_BIO_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "nbd-dm/ndm.h"

struct ndm_clone;
struct ndm_device;
struct ndm_channel;
struct ndm_ghost;
struct ndm_prison;

/* A range held in a prison (core/prison.c, core-private): by a bio that
 * read-modify-writes it, or quarantined by a ghost.
 */
struct ndm_cell {
  GList link;                   /* in its prison's cells */
  uint64_t offset;              /* device bytes */
  uint64_t len;
  struct ndm_ghost *ghost;      /* quarantine: whose; NULL: a bio's */
  bool shared;                  /* a bio's direct write: only an RMW
                                   (not shared) excludes it */
  int64_t deadline;             /* quarantine: writes fail from then (us) */
  struct ndm_prison *prison;    /* quarantine: with a reference */
};

/* Where a bio is in its life (core-private). */
enum ndm_bio_state {
  NDM_BIO_NEW,                  /* mapped, not started */
  NDM_BIO_INFLIGHT,             /* a device command is out */
  NDM_BIO_READY,                /* a step ended; the owner starts the next */
  NDM_BIO_DONE,                 /* status is final */
};

/* What a bio's device commands do (core-private, core/bio.c). */
enum ndm_bio_step {
  NDM_STEP_IO,                  /* the bio's own op, no bounce */
  NDM_STEP_RMW_READ,            /* read covering blocks into bounce */
  NDM_STEP_RMW_WRITE,           /* write the bounce back */
  NDM_STEP_FLUSH,               /* emulated FUA */
};

struct ndm_bio {
  struct ndm_bio *next;         /* clone's bios, in map order */
  struct ndm_clone *clone;
  struct ndm_device *dev;
  enum ndm_op op;
  uint32_t flags;               /* NDM_REQ_* as asked for */
  uint64_t dev_offset;          /* bytes */
  uint64_t len;                 /* bytes */
  char *buf;                    /* slice of the client buffer, or NULL */
  uint64_t clone_off;           /* bytes from the clone's start (R2) */

  int status;                   /* 0 or positive errno; final when DONE */
  bool cancelled;               /* never started: an earlier start of its
                                   request failed (R6); status is 0 */
  unsigned fail_seq;            /* order in which failures and
                                   cancellations arrived (R3) */

  /* Core-private. */
  int state;                    /* enum ndm_bio_state, atomic */
  enum ndm_bio_step step;
  bool rmw;                     /* unaligned: bounce through rmw_* */
  bool emulate_fua;             /* write then flush */
  bool rmw_locked;              /* holds rmw_cell in its prison (an RMW,
                                   or a write an RMW may meet, shared) */
  char *bounce;
  uint64_t rmw_offset;          /* aligned device range of the bounce */
  uint64_t rmw_len;
  uint64_t budget;              /* bytes charged to the in-flight cap */
  struct ndm_channel *ch;       /* the command's channel: set by the
                                   device's submit before it starts it */
  GArray *extents;              /* block status answer, device offsets */
  struct ndm_bio *ready_next;   /* request's ready or deferred list */
  unsigned reissues;            /* steps sent again after ESHUTDOWN */
  struct ndm_prison *prison;    /* of the data: its target's or device's */
  struct ndm_cell rmw_cell;
  enum ndm_op cmd_op;           /* the command out, for the device's */
  uint64_t cmd_offset;          /* stats, and a ghost's quarantine */
  uint64_t cmd_len;
  int64_t t_cmd;
};

/* Whether a DONE bio failed: its device (or the core, before sending it)
 * refused it.  A bio cancelled unstarted (R6) did not fail: it never
 * reached a device, and its clone runs again if the request goes on.
 */
static inline bool
ndm_bio_failed (const struct ndm_bio *bio)
{
  return bio->status != 0;
}

#endif /* NBD_DM_BIO_H */
