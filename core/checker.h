/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the path checker, a core service for targets (multipathd's
 * checker, dm's path checker).
 *
 * A target whose devices it can live without (multipath's paths, a
 * mirror's legs) gives each of them to a checker as an item.  The
 * checker owns the set: it says at load whether an item can serve (it
 * answers and is the same data: identity is the size), and from the
 * target's first resume a thread of its own probes every item each
 * checker-interval (a handshake and a one-block read on a connection of
 * its own).  It calls the target back, under the target's lock, to take
 * out of service an item that stops answering and to put back a failed
 * one that answers as it should and whose data connections are up.  An
 * item failing again within flap-window of coming back is probed again
 * only after flap-damping.
 *
 * Locks: the checker has none of its own.  It uses its owner's lock
 * (order 2 in core/request.c), which protects the checker's fields below
 * and every item's state; the owner's callbacks run with it held.
 * Probes and fences run without it.
 */
#ifndef NBD_DM_CHECKER_H
#define NBD_DM_CHECKER_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "nbd-dm/target.h"

/* One checked item, in the owner's own per-device struct. */
struct ndm_checked {
  struct ndm_device *dev;       /* set by ndm_checker_add */
  const struct ndm_checker *checker; /* the one that checks it, too */
  /* Protected by the owner's lock. */
  bool active;                  /* in service ('A'), else failed ('F') */
  unsigned fail_count;          /* times taken out of service */
  gint64 reinstated_at;         /* us, 0 = never failed */
  gint64 damp_until;            /* us: not reinstated before (flapping) */
  char *reason;                 /* why it is failed, for logs and JSON;
                                   the owner frees it with the item */
};

/* The owner's side: names for logs and threads, and callbacks, called
 * with the owner's lock held unless said.
 */
struct ndm_checker_ops {
  const char *target;           /* the owner's type, in logs: "multipath" */
  const char *noun;             /* what an item is, in logs: "path" */
  const char *thread_name;      /* "ndm-mpath-check" */
  enum ndm_log_category log_category;  /* of each probe's debug line */
  /* Required.  An item in service does not answer (why): take it out of
   * service (ndm_checker_fail_locked first).  Returns true if this call
   * did: fence is then called without the lock.
   */
  bool (*fail_locked) (void *owner, struct ndm_checked *item,
                       const char *why);
  /* Required.  A failed item answers as it should: put it back
   * (ndm_checker_reinstate_locked first).
   */
  void (*reinstate_locked) (void *owner, struct ndm_checked *item);
  /* Optional.  Without the lock: cut the connections of an item that
   * fail_locked took out of service.
   */
  void (*fence) (void *owner, struct ndm_checked *item);
  /* Optional.  First thing of every round, now in us (multipath counts
   * its no_path_retry intervals).
   */
  void (*round_locked) (void *owner, gint64 now);
};

struct ndm_checker {
  struct ndm_target *ti;        /* its config */
  const struct ndm_checker_ops *ops;
  void *owner;                  /* passed to ops */
  struct ndm_mutex *lock;       /* the owner's */
  GPtrArray *items;             /* struct ndm_checked *, the owner's, in
                                   table order; fixed once ctr ends, so
                                   read without the lock */
  uint64_t size;                /* bytes every item must have: the first
                                   reachable item's; fixed once ctr ends */
  /* Protected by *lock. */
  GCond cond;                   /* the thread: stop */
  GThread *thread;
  bool resumed;                 /* the thread is due */
  bool stopping;
  gint64 next_round;            /* monotonic us the thread's next round
                                   starts; 0 while no thread runs */
};

/* For the owner's ctr: an empty checker. */
void ndm_checker_init (struct ndm_checker *c, struct ndm_target *ti,
                       const struct ndm_checker_ops *ops,
                       struct ndm_mutex *lock, void *owner);
/* For the owner's dtr, without the owner's lock: stop the thread and
 * free what init made.  The items stay the owner's.
 */
void ndm_checker_clear (struct ndm_checker *c);

/* For ctr: check dev as item's device.  One that cannot be reached is
 * kept, failed (why: the device's down_reason, else "not reachable"),
 * for the thread; the first reachable one sets the size, and one of
 * another size is refused (failed, with why).  Returns whether the item
 * can serve now.
 */
bool ndm_checker_add (struct ndm_checker *c, struct ndm_checked *item,
                      struct ndm_device *dev);

/* With the owner's lock held.  The table is live (resume): start the
 * thread if it is missing.  Without it failed items are never put back,
 * so every failure tries again (R13: it could not be made before).
 */
void ndm_checker_resume_locked (struct ndm_checker *c);

/* With the owner's lock held.  Take item out of service (the thread's
 * probe, the owner's I/O, an operator), recording why and damping it if
 * it flaps.  Returns false if it was out of service already.
 */
bool ndm_checker_fail_locked (struct ndm_checker *c, struct ndm_checked *item,
                              const char *why);
/* With the owner's lock held.  Put item back in service.  Returns false
 * if it was in service already.
 */
bool ndm_checker_reinstate_locked (struct ndm_checker *c,
                                   struct ndm_checked *item);
/* With the owner's lock held.  The item's checker facts, as members of
 * the object the owner is building for it (the owner names the item and
 * its state): "reason": why it is failed, or null; "fail_count": N;
 * "damped_ms": how long a failed item stays out for flapping, 0 if not;
 * "next_check_ms": how long until it is probed (0: a round runs now), or
 * null while no checker thread runs (the table is not live).
 * Members, not a value of their own: they sit next to the owner's
 * "state", which the reason explains.
 */
void ndm_checked_json_locked (const struct ndm_checked *item,
                              JsonBuilder *b);

#endif /* NBD_DM_CHECKER_H */
