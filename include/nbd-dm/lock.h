/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: mutexes that know who holds them (STYLE.md's lock rules,
 * enforced).
 *
 * struct ndm_mutex is a GMutex with a rank in the lock order (written out
 * at the top of core/request.c).  With NDM_LOCK_DEBUG (Debug and sanitizer
 * builds: see CMakeLists.txt) it also records the thread that holds it,
 * and:
 *   - ndm_assert_held (&m), the first line of every function whose name
 *     ends in _locked, aborts when the calling thread does not hold m:
 *     a caller that forgot the lock is a race no test may ever lose;
 *   - taking a lock while holding one of the same or an inner rank aborts,
 *     naming both: an inversion is a deadlock waiting for the interleaving
 *     that closes the circle, and this finds it in any run that takes the
 *     two locks, whatever the timing;
 *   - unlocking a lock the thread does not hold, or taking one it holds,
 *     aborts.
 * Without NDM_LOCK_DEBUG it is exactly a GMutex, the functions are GLib's
 * and ndm_assert_held compiles to nothing: a release build pays nothing.
 *
 * A GCond waits with ndm_cond_wait / ndm_cond_wait_until, which give up
 * and take back the ownership around the wait as g_cond_wait does the
 * mutex.
 *
 * GRWLock (ndm_md.table_lock, nbd_conn.io_lock) stays a GRWLock: a reader
 * lock has many owners at once, and each is taken around one short
 * critical section.
 *
 * Thread model: as GMutex's.
 */
#ifndef NBD_DM_LOCK_H
#define NBD_DM_LOCK_H

#include <glib.h>

/* Ranks, outermost first: a thread may take a lock only while every lock
 * it holds has a lower rank.  The order and what each lock protects are
 * documented at the top of core/request.c.
 */
enum ndm_lock_rank {
  NDM_LOCK_COMMAND,             /* ndm_md.command_lock */
  NDM_LOCK_STATE,               /* ndm_md.state_lock */
  NDM_LOCK_DEVICES,             /* ndm_md.devices_lock */
  NDM_LOCK_TARGET,              /* <target>_c.lock, the path checker's */
  NDM_LOCK_REQUEST,             /* ndm_request.lock */
  NDM_LOCK_POOL,                /* a device's connection pool (nbd_dev) */
  NDM_LOCK_WATCH,               /* the fence watcher's (devices/nbd.c) */
  NDM_LOCK_GHOST,               /* ndm_ghost.lock */
  NDM_LOCK_PRISON,              /* ndm_prison.lock */
  NDM_LOCK_LEAF,                /* never nested with each other */
  NDM_LOCK_LOG,                 /* the error log's limiter: innermost */
  NDM_LOCK_NR_RANKS
};

struct ndm_mutex {
  GMutex m;                     /* first: a GCond waits on &m */
#ifdef NDM_LOCK_DEBUG
  gpointer owner;               /* atomic: the holding thread, or NULL */
  const char *name;
  enum ndm_lock_rank rank;
#endif
};

#ifdef NDM_LOCK_DEBUG

/* A mutex of static storage, not initialised by ndm_mutex_init. */
#define NDM_MUTEX_INIT(rank_, name_) \
  { .owner = NULL, .name = (name_), .rank = (rank_) }

#define ndm_mutex_init(m, rank) ndm_mutex_init_named ((m), (rank), #m)
#define ndm_mutex_lock(m) ndm_mutex_lock_at ((m), G_STRFUNC)
#define ndm_mutex_trylock(m) ndm_mutex_trylock_at ((m), G_STRFUNC)
#define ndm_mutex_unlock(m) ndm_mutex_unlock_at ((m), G_STRFUNC)
#define ndm_cond_wait(c, m) ndm_cond_wait_at ((c), (m), G_STRFUNC)
#define ndm_cond_wait_until(c, m, end) \
  ndm_cond_wait_until_at ((c), (m), (end), G_STRFUNC)
#define ndm_assert_held(m) ndm_mutex_assert_held_at ((m), #m, G_STRFUNC)

void ndm_mutex_init_named (struct ndm_mutex *m, enum ndm_lock_rank rank,
                           const char *name);
void ndm_mutex_clear (struct ndm_mutex *m);
void ndm_mutex_lock_at (struct ndm_mutex *m, const char *func);
gboolean ndm_mutex_trylock_at (struct ndm_mutex *m, const char *func);
void ndm_mutex_unlock_at (struct ndm_mutex *m, const char *func);
void ndm_cond_wait_at (GCond *c, struct ndm_mutex *m, const char *func);
gboolean ndm_cond_wait_until_at (GCond *c, struct ndm_mutex *m,
                                 gint64 end_time, const char *func);
void ndm_mutex_assert_held_at (const struct ndm_mutex *m,
                               const char *expr, const char *func);

#else /* !NDM_LOCK_DEBUG */

#define NDM_MUTEX_INIT(rank_, name_) { .m = { NULL } }
#define ndm_assert_held(m) ((void) 0)

static inline void
ndm_mutex_init (struct ndm_mutex *m, enum ndm_lock_rank rank)
{
  g_mutex_init (&m->m);
}

static inline void
ndm_mutex_clear (struct ndm_mutex *m)
{
  g_mutex_clear (&m->m);
}

static inline void
ndm_mutex_lock (struct ndm_mutex *m)
{
  g_mutex_lock (&m->m);
}

static inline gboolean
ndm_mutex_trylock (struct ndm_mutex *m)
{
  return g_mutex_trylock (&m->m);
}

static inline void
ndm_mutex_unlock (struct ndm_mutex *m)
{
  g_mutex_unlock (&m->m);
}

static inline void
ndm_cond_wait (GCond *c, struct ndm_mutex *m)
{
  g_cond_wait (c, &m->m);
}

static inline gboolean
ndm_cond_wait_until (GCond *c, struct ndm_mutex *m, gint64 end_time)
{
  return g_cond_wait_until (c, &m->m, end_time);
}

#endif /* !NDM_LOCK_DEBUG */

#endif /* NBD_DM_LOCK_H */
