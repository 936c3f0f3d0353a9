/* SPDX-License-Identifier: BSD-3-Clause */
/* multipath: several paths (NBD exports) to the same data; I/O goes down
 * one path, and when a path fails only the unfinished tail of a request
 * goes down another, so clients never notice (dm-mpath, request-based).
 *
 *   <start> <length> multipath <#features> <features...>
 *       <#hw_handler args> [<hw_handler> ...] <#path groups> <initial group>
 *       {<selector> <#selector args> <selector args...>
 *        <#paths> <#path args> {<path> <path args...>}...}...
 *
 * Features: queue_if_no_path (hold I/O while no path works, instead of
 * EIO); no_path_retry <N|queue|fail> (nbd-dm, multipath.conf's knob:
 * queue for N checker intervals once the last path failed, then fail;
 * where given it overrides queue_if_no_path, and counts afresh once a
 * path is back).  The messages queue_if_no_path / fail_if_no_path set
 * the feature as dm's do.
 * Hardware handlers do not exist here: #hw_handler args must be 0.
 * Selectors: round-robin, queue-length, service-time (core/selectors/).
 * Paths are NBD URIs; one that cannot be reached at load is kept, failed,
 * for the checker; at least one must answer (docs/targets/multipath.md).
 *
 * Failover (DESIGN.md R3-R5, R10): a path error on a bio (the connection,
 * not the data: ndm_errno_is_path_error) fails the path, fences its
 * device (its connections are cut) and returns REQUEUE: the core re-maps
 * only the tail [start + credited, end) and map picks another path.
 * Cutting a connection does not recall what a live server already
 * received, so a write the cut failed is quarantined in the data's prison
 * (all paths share one: ndm_target_set_prison) until its server closes
 * the connection; the tail, and any later write over it, waits for that
 * in the core, up to fence-timeout (R10).  Reads move at once.  Target
 * errors (EIO from a live server, ENOSPC, EPERM, ...) are returned
 * unchanged and the path stays up.  With no valid path, I/O is held
 * (queue_if_no_path, bounded by no_path_retry and no-path-timeout) or
 * fails with EIO at once.
 *
 * Path checker (core/checker.c, one per target): every path is an item
 * of it; it probes them each checker-interval, as multipathd does, and
 * calls back here: an active path that does not answer is failed and
 * fenced; a failed one is reinstated when it answers with the target's
 * size and its data connections are up.  A path that fails again within
 * flap-window of coming back is probed again only after flap-damping.
 * The message queue_if_no_path starts the no_path_retry count afresh
 * (multipathd's restorequeueing).
 *
 * Thread model and locks: map and end_io run on request owners, message
 * and status on the control thread, the checker on its own; all take
 * multipath_c.lock (order 2 in core/request.c), which also covers the
 * selectors and the checker's state.  Device fences and probes run
 * without it.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "nbd-dm/bio.h"
#include "nbd-dm/target.h"
#include "../checker.h"
#include "../json.h"
#include "../log.h"
#include "../selectors/selector.h"

struct mp_group;

struct mp_path {
  struct ndm_path path;         /* dev and the selector's context */
  struct ndm_checked chk;       /* the checker's: dev again, 'A' or 'F',
                                   fail count, reason, damping */
  struct mp_group *pg;
};

struct mp_group {
  unsigned num;                 /* from 1, in table order */
  struct ndm_path_selector ps;
  GPtrArray *paths;             /* struct mp_path * */
  bool bypassed;                /* 'D' */
};

struct multipath_c {
  struct ndm_target *ti;
  struct ndm_mutex lock;        /* protects everything below, and the
                                   checker's state */
  struct ndm_checker checker;   /* every path, in table order (path_at) */
  GPtrArray *groups;            /* struct mp_group *, owning their paths */
  struct mp_group *current_pg;
  struct mp_group *next_pg;     /* switch to it (switch_group, initial) */
  unsigned nr_valid;
  /* Whether I/O is held while no path is valid: should_queue_locked. */
  bool queue_if_no_path;        /* the feature (table or message) */
  bool has_no_path_retry;       /* no_path_retry in the table: it decides */
  int no_path_retry;            /* -1 queue, 0 fail, N intervals (any
                                   holding is bounded by no-path-timeout) */
  bool retries_exhausted;       /* N intervals passed without a path */
  bool fail_if_no_path;         /* the message: overrides both */
  bool suspending;              /* a flush suspend drains: no holding */
  gint64 no_path_since;         /* us, when the last path failed */
  unsigned initial_pg;
};

/* The clone's scratch space (ndm_clone_per_io). */
struct mp_io {
  struct mp_path *path;         /* chosen by the last map, or NULL */
  gint64 queued_since;          /* us: first map that found no path */
  uint64_t nr_bytes;            /* told to the selector at start_io */
};

G_STATIC_ASSERT (sizeof (struct mp_io) <= NDM_PER_IO_SIZE);

/* ---- table parsing ------------------------------------------------------------ */

/* Words of the table, consumed in order, with a "what is missing" error. */
struct args {
  unsigned argc;
  char **argv;
};

static const char *
shift (struct args *a, const char *what, GError **err)
{
  if (a->argc == 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "the table ends where %s was expected", what);
    return NULL;
  }
  a->argc--;
  return *a->argv++;
}

static int
shift_u64 (struct args *a, const char *what, uint64_t max, uint64_t *out,
           GError **err)
{
  const char *w = shift (a, what, err);

  if (w == NULL || ndm_parse_u64 (w, what, out, err) == -1)
    return -1;
  if (*out > max) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "%s '%s': expected at most %" PRIu64, what, w, max);
    return -1;
  }
  return 0;
}

/* A count of the words that follow it (dm's dm_read_arg_group): checked
 * against what is left once the count itself is taken, so the group it
 * announces can be taken whole.
 */
static int
shift_count (struct args *a, const char *what, struct args *group,
             GError **err)
{
  const char *w = shift (a, what, err);
  uint64_t n;

  if (w == NULL || ndm_parse_u64 (w, what, &n, err) == -1)
    return -1;
  if (n > a->argc) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "%s '%s' is more than the %u word%s after it", what, w,
                 a->argc, a->argc == 1 ? "" : "s");
    return -1;
  }
  group->argc = n;
  group->argv = a->argv;
  a->argc -= n;
  a->argv += n;
  return 0;
}

static int
parse_features (struct multipath_c *m, struct args *a, GError **err)
{
  struct args f;

  if (shift_count (a, "#features", &f, err) == -1)
    return -1;
  while (f.argc > 0) {
    const char *w = shift (&f, "a feature", err);

    if (w == NULL)
      return -1;
    if (!g_ascii_strcasecmp (w, "queue_if_no_path"))
      m->queue_if_no_path = true;
    else if (!g_ascii_strcasecmp (w, "no_path_retry")) {
      const char *v;
      uint64_t nr;

      /* Its value is one of the #features words, never the word after
       * them (that is #hw_handler args).
       */
      if (f.argc == 0) {
        g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                     "feature no_path_retry has no value within "
                     "#features: expected no_path_retry <N|queue|fail>, "
                     "2 words");
        return -1;
      }
      v = shift (&f, "no_path_retry's value", err);
      m->has_no_path_retry = true;
      if (!g_ascii_strcasecmp (v, "queue"))
        m->no_path_retry = -1;
      else if (!g_ascii_strcasecmp (v, "fail"))
        m->no_path_retry = 0;
      else if (ndm_parse_u64 (v, "no_path_retry", &nr, NULL) == 0 &&
               nr > 0 && nr <= 100000)
        m->no_path_retry = nr;
      else {
        g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                     "no_path_retry '%s': expected a number of checker "
                     "intervals, queue or fail", v);
        return -1;
      }
    }
    else {
      g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                   "unknown feature '%s': expected queue_if_no_path or "
                   "no_path_retry <N|queue|fail>", w);
      return -1;
    }
  }
  return 0;
}

static void
path_free (gpointer data)
{
  struct mp_path *p = data;

  g_free (p->chk.reason);
  g_free (p);
}

static void
group_free (struct mp_group *pg)
{
  if (pg->ps.type != NULL)
    pg->ps.type->destroy (&pg->ps);
  g_ptr_array_unref (pg->paths);
  g_free (pg);
}

/* The path a checker item is. */
static struct mp_path *
path_of (struct ndm_checked *item)
{
  return (struct mp_path *) ((char *) item - offsetof (struct mp_path, chk));
}

/* The i-th path in table order.  The list is fixed once ctr ends: no
 * lock needed.
 */
static struct mp_path *
path_at (struct multipath_c *m, unsigned i)
{
  return path_of (m->checker.items->pdata[i]);
}

static unsigned
nr_paths (struct multipath_c *m)
{
  return m->checker.items->len;
}

/* The path whose device dev is, or NULL. */
static struct mp_path *
path_of_device (struct multipath_c *m, struct ndm_device *dev)
{
  unsigned i;

  for (i = 0; i < nr_paths (m); i++) {
    struct mp_path *p = path_at (m, i);

    if (p->path.dev == dev)
      return p;
  }
  return NULL;
}

static struct mp_group *
parse_group (struct ndm_target *ti, struct multipath_c *m, struct args *a,
             unsigned num, GError **err)
{
  struct mp_group *pg = g_new0 (struct mp_group, 1);
  const char *name = shift (a, "a path selector", err);
  struct args sel;
  uint64_t npaths, nargs;
  unsigned i;

  pg->num = num;
  pg->paths = g_ptr_array_new_with_free_func (path_free);
  if (name == NULL)
    goto err;
  pg->ps.type = ndm_ps_type_lookup (name);
  if (pg->ps.type == NULL) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "group %u: unknown path selector '%s': expected "
                 "round-robin, queue-length or service-time", num, name);
    goto err;
  }
  if (shift_count (a, "#selector args", &sel, err) == -1 ||
      pg->ps.type->create (&pg->ps, sel.argc, sel.argv, err) == -1) {
    pg->ps.type = NULL;
    goto err;
  }
  if (shift_u64 (a, "#paths", 1024, &npaths, err) == -1 ||
      shift_u64 (a, "#path args", pg->ps.type->table_args, &nargs, err)
      == -1)
    goto err;
  if (npaths == 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "group %u: #paths is 0: expected at least one path", num);
    goto err;
  }
  for (i = 0; i < npaths; i++) {
    struct mp_path *p = g_new0 (struct mp_path, 1);
    const char *uri = shift (a, "a path", err);

    g_ptr_array_add (pg->paths, p);
    p->pg = pg;
    if (uri == NULL || a->argc < nargs) {
      if (uri != NULL)
        g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                     "path %s: expected %" PRIu64 " path args", uri, nargs);
      goto err;
    }
    p->path.dev = ndm_table_get_device_tolerant (ti, uri, err);
    if (p->path.dev != NULL && path_of_device (m, p->path.dev) != NULL) {
      g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                   "path %s is listed twice: expected each path once", uri);
      goto err;
    }
    if (p->path.dev == NULL ||
        pg->ps.type->add_path (&pg->ps, &p->path, nargs, a->argv, err)
        == -1)
      goto err;
    a->argc -= nargs;
    a->argv += nargs;
    if (ndm_checker_add (&m->checker, &p->chk, p->path.dev))
      m->nr_valid++;
    else
      pg->ps.type->fail_path (&pg->ps, &p->path);
  }
  return pg;

 err:
  group_free (pg);
  return NULL;
}

static void multipath_dtr (struct ndm_target *ti);
static const struct ndm_checker_ops multipath_checker_ops;

static int
multipath_ctr (struct ndm_target *ti, unsigned argc, char **argv,
               GError **err)
{
  struct multipath_c *m = g_new0 (struct multipath_c, 1);
  struct args a = { argc, argv };
  uint64_t nhw, npgs, initial;
  unsigned i;

  m->ti = ti;
  ndm_mutex_init (&m->lock, NDM_LOCK_TARGET);
  ndm_checker_init (&m->checker, ti, &multipath_checker_ops, &m->lock, m);
  m->groups = g_ptr_array_new ();
  m->no_path_retry = -1;
  ti->private = m;

  if (parse_features (m, &a, err) == -1 ||
      shift_u64 (&a, "#hw_handler args", G_MAXUINT32, &nhw, err) == -1)
    goto err;
  if (nhw != 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "#hw_handler args '%" PRIu64 "': hardware handlers do not "
                 "exist for NBD paths, expected 0", nhw);
    goto err;
  }
  if (shift_u64 (&a, "#path groups", 1024, &npgs, err) == -1 ||
      shift_u64 (&a, "the initial group", npgs, &initial, err) == -1)
    goto err;
  if (npgs == 0 || initial == 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "expected at least one path group and an initial group "
                 "from 1 to #path groups");
    goto err;
  }
  for (i = 1; i <= npgs; i++) {
    struct mp_group *pg = parse_group (ti, m, &a, i, err);

    if (pg == NULL)
      goto err;
    g_ptr_array_add (m->groups, pg);
  }
  if (a.argc != 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "unexpected '%s' after %" PRIu64 " path groups", a.argv[0],
                 npgs);
    goto err;
  }
  if (m->nr_valid == 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "no path can be used: at least one must answer at load");
    goto err;
  }
  m->initial_pg = initial;
  m->next_pg = m->groups->pdata[initial - 1];
  /* One data behind every path: one prison for all of them (R7, R10),
   * the first path's, so a reload naming the same first path keeps its
   * quarantines.
   */
  ndm_target_set_prison (ti, path_at (m, 0)->path.dev);
  return 0;

 err:
  multipath_dtr (ti);
  ti->private = NULL;
  return -1;
}

static void
multipath_dtr (struct ndm_target *ti)
{
  struct multipath_c *m = ti->private;
  unsigned i;

  if (m == NULL)
    return;
  ndm_checker_clear (&m->checker);
  for (i = 0; i < m->groups->len; i++)
    group_free (m->groups->pdata[i]);
  g_ptr_array_unref (m->groups);
  ndm_mutex_clear (&m->lock);
  g_free (m);
}

/* ---- path state ------------------------------------------------------------------ */

/* With m->lock held.  Returns true if this call failed it (the caller
 * then fences its device, outside the lock).  Any failure (re)starts the
 * checker if it is missing, and damps a flapping path (core/checker.c).
 */
static bool
fail_path_locked (struct multipath_c *m, struct mp_path *p, const char *why)
{
  ndm_assert_held (&m->lock);
  if (!ndm_checker_fail_locked (&m->checker, &p->chk, why))
    return false;
  p->pg->ps.type->fail_path (&p->pg->ps, &p->path);
  if (--m->nr_valid == 0)
    m->no_path_since = g_get_monotonic_time ();
  ndm_log_error ("multipath: failing path %s (%s): %u valid path%s left",
                 p->path.dev->uri, why, m->nr_valid,
                 m->nr_valid == 1 ? "" : "s");
  ndm_target_event (m->ti);
  return true;
}

static void
fence_path (struct mp_path *p)
{
  struct ndm_device *dev = p->path.dev;

  if (dev->ops->fence != NULL)
    dev->ops->fence (dev, "fenced: its multipath path failed");
}

/* With m->lock held. */
static void
reinstate_path_locked (struct multipath_c *m, struct mp_path *p)
{
  ndm_assert_held (&m->lock);
  if (!ndm_checker_reinstate_locked (&m->checker, &p->chk))
    return;
  p->pg->ps.type->reinstate_path (&p->pg->ps, &p->path);
  m->nr_valid++;
  m->no_path_since = 0;
  m->retries_exhausted = false;    /* no_path_retry counts afresh */
  /* At error level, as the failure was: operators watch for both. */
  ndm_log_error ("multipath: reinstating path %s: %u valid path%s",
                 p->path.dev->uri, m->nr_valid, m->nr_valid == 1 ? "" : "s");
  ndm_target_event (m->ti);
}

/* ---- choosing a path ------------------------------------------------------------ */

/* With m->lock held: a path in pg, making pg current if one is found. */
static struct mp_path *
choose_in_group_locked (struct multipath_c *m, struct mp_group *pg,
                        uint64_t nr)
{
  struct ndm_path *path;

  ndm_assert_held (&m->lock);
  path = pg->ps.type->select_path (&pg->ps, nr);
  if (path == NULL)
    return NULL;
  m->current_pg = pg;
  return (struct mp_path *) path;
}

/* With m->lock held: dm's choice.  Stay on the current group while it has
 * a valid path; else the group asked for; else the first group with one,
 * bypassed groups only when nothing else is left.
 */
static struct mp_path *
choose_path_locked (struct multipath_c *m, uint64_t nr)
{
  struct mp_path *p;
  int bypassed;
  unsigned i;

  ndm_assert_held (&m->lock);
  if (m->nr_valid == 0)
    return NULL;
  if (m->next_pg != NULL) {
    struct mp_group *pg = m->next_pg;

    m->next_pg = NULL;
    if ((p = choose_in_group_locked (m, pg, nr)) != NULL)
      return p;
  }
  if (m->current_pg != NULL &&
      (p = choose_in_group_locked (m, m->current_pg, nr)))
    return p;
  for (bypassed = 0; bypassed <= 1; bypassed++)
    for (i = 0; i < m->groups->len; i++) {
      struct mp_group *pg = m->groups->pdata[i];

      if (pg->bypassed == bypassed &&
          (p = choose_in_group_locked (m, pg, nr)))
        return p;
    }
  return NULL;
}

/* A flush goes to every valid path: each server acknowledged writes of
 * its own and only it can make them stable.
 */
static void
map_flush_locked (struct multipath_c *m, struct ndm_clone *clone)
{
  unsigned i;

  ndm_assert_held (&m->lock);
  for (i = 0; i < nr_paths (m); i++) {
    struct mp_path *p = path_at (m, i);

    if (p->chk.active)
      ndm_clone_map_flush (clone, p->path.dev);
  }
}

/* With m->lock held: hold I/O while no path is valid?  no_path_retry,
 * where given, overrides queue_if_no_path as in multipath.conf.
 */
static bool
should_queue_locked (const struct multipath_c *m)
{
  ndm_assert_held (&m->lock);
  if (m->fail_if_no_path || m->suspending)
    return false;
  if (m->has_no_path_retry)
    return m->no_path_retry != 0 && !m->retries_exhausted;
  return m->queue_if_no_path;
}

/* With m->lock held: no valid path for the clone.  Hold it (queue) or
 * not, by queue_if_no_path and the no-path-timeout deadline.
 */
static bool
hold_without_path_locked (struct multipath_c *m, struct mp_io *io)
{
  const struct ndm_config *cfg = ndm_target_config (m->ti);
  gint64 now = g_get_monotonic_time ();
  bool hold;

  ndm_assert_held (&m->lock);
  hold = should_queue_locked (m);
  if (io->queued_since == 0)
    io->queued_since = now;
  if (hold && cfg->no_path_timeout_ms != 0 &&
      now - io->queued_since > cfg->no_path_timeout_ms * INT64_C (1000)) {
    ndm_log_error ("multipath: no path for %.1f s (no-path-timeout): held "
                   "I/O fails", cfg->no_path_timeout_ms / 1000.0);
    hold = false;
  }
  if (!hold)
    io->queued_since = 0;
  return hold;
}

/* With m->lock held: tell the selector the clone's I/O on io->path
 * ended.
 */
static void
end_io_locked (struct multipath_c *m, struct mp_io *io)
{
  struct mp_group *pg = io->path->pg;

  ndm_assert_held (&m->lock);
  if (pg->ps.type->end_io != NULL)
    pg->ps.type->end_io (&pg->ps, &io->path->path, io->nr_bytes);
  io->path = NULL;
}

static int
multipath_map (struct ndm_target *ti, struct ndm_clone *clone)
{
  struct multipath_c *m = ti->private;
  struct mp_io *io = ndm_clone_per_io (clone);
  struct mp_path *p;

  ndm_mutex_lock (&m->lock);
  /* A flush goes to every valid path: no selector's turn is used. */
  p = NULL;
  if (m->nr_valid > 0 && clone->op != NDM_OP_FLUSH)
    p = choose_path_locked (m, clone->len);
  if (m->nr_valid == 0 || (p == NULL && clone->op != NDM_OP_FLUSH)) {
    bool hold = hold_without_path_locked (m, io);

    ndm_mutex_unlock (&m->lock);
    if (hold)
      return NDM_MAPIO_DELAY_REQUEUE;
    clone->kill_error = EIO;
    return NDM_MAPIO_KILL;
  }
  io->queued_since = 0;
  if (clone->op == NDM_OP_FLUSH) {
    map_flush_locked (m, clone);
    ndm_mutex_unlock (&m->lock);
    return NDM_MAPIO_REMAPPED;
  }
  io->path = p;
  io->nr_bytes = clone->len;
  if (p->pg->ps.type->start_io != NULL)
    p->pg->ps.type->start_io (&p->pg->ps, &p->path, clone->len);
  ndm_mutex_unlock (&m->lock);

  /* Every path has the data at the same place: 1:1. */
  ndm_clone_remap (clone, p->path.dev, ndm_clone_target_offset (clone));
  return NDM_MAPIO_REMAPPED;
}

/* With m->lock held: fail the path of every bio that met a path error
 * (the path's state is a fact, whatever the request's outcome).  Those
 * this call failed are added to *fence (made when needed) for the caller
 * to fence without the lock.
 */
static void
fail_bio_paths_locked (struct multipath_c *m, struct ndm_clone *clone,
                GPtrArray **fence)
{
  struct ndm_bio *bio;

  ndm_assert_held (&m->lock);
  ndm_clone_for_each_bio (bio, clone) {
    g_autofree char *why = NULL;
    struct mp_path *p;

    if (!ndm_bio_failed (bio) || !ndm_errno_is_path_error (bio->status))
      continue;
    p = path_of_device (m, bio->dev);
    if (p == NULL)
      continue;
    if (!p->chk.active)
      continue;
    why = g_strdup_printf ("%s on a %" PRIu64 "-byte %s at byte %" PRIu64,
                           ndm_errno_name (bio->status), bio->len,
                           ndm_op_writes (clone->op) ? "write" : "command",
                           bio->dev_offset);
    if (fail_path_locked (m, p, why)) {
      if (*fence == NULL)
        *fence = g_ptr_array_new ();
      g_ptr_array_add (*fence, p);
    }
  }
}

static int
multipath_end_io (struct ndm_target *ti, struct ndm_clone *clone,
                  int *error)
{
  struct multipath_c *m = ti->private;
  struct mp_io *io = ndm_clone_per_io (clone);
  g_autoptr (GPtrArray) fence = NULL;
  unsigned i;
  int r = NDM_ENDIO_DONE;

  ndm_mutex_lock (&m->lock);
  if (io->path != NULL)
    end_io_locked (m, io);
  fail_bio_paths_locked (m, clone, &fence);
  /* R3: the error at the frontier decides.  A path error there: R4, the
   * core re-maps [credited, len) only, on another path.  With nowhere to
   * go and no queueing, R5: a request that exhausts its paths fails with
   * EIO.  A target error is the data's answer: unchanged, path stays up.
   */
  if (*error != 0 && ndm_errno_is_path_error (*error)) {
    if (m->nr_valid == 0 && !should_queue_locked (m))
      *error = EIO;
    else
      r = NDM_ENDIO_REQUEUE;
  }
  ndm_mutex_unlock (&m->lock);
  for (i = 0; fence != NULL && i < fence->len; i++)
    fence_path (fence->pdata[i]);
  return r;
}

/* The clone's bios never started (R6): the selector forgets its I/O. */
static void
multipath_release_clone (struct ndm_target *ti, struct ndm_clone *clone)
{
  struct multipath_c *m = ti->private;
  struct mp_io *io = ndm_clone_per_io (clone);

  ndm_mutex_lock (&m->lock);
  if (io->path != NULL)
    end_io_locked (m, io);
  ndm_mutex_unlock (&m->lock);
}

/* ---- suspend --------------------------------------------------------------------- */

/* A flush suspend must drain: held I/O fails (dm's presuspend turns
 * queue_if_no_path off); a noflush one keeps it held across the swap.
 */
static void
multipath_presuspend (struct ndm_target *ti, bool noflush)
{
  struct multipath_c *m = ti->private;

  ndm_mutex_lock (&m->lock);
  if (!noflush)
    m->suspending = true;
  ndm_mutex_unlock (&m->lock);
}

static void
multipath_resume (struct ndm_target *ti)
{
  struct multipath_c *m = ti->private;

  ndm_mutex_lock (&m->lock);
  m->suspending = false;
  ndm_checker_resume_locked (&m->checker);
  ndm_mutex_unlock (&m->lock);
}

/* ---- the path checker's callbacks (core/checker.c) -------------------------------- */

/* With m->lock held, as every callback: a probe failed on an active
 * path.
 */
static bool
checker_fail_locked (void *owner, struct ndm_checked *item, const char *why)
{
  struct multipath_c *m = owner;

  ndm_assert_held (&m->lock);
  return fail_path_locked (m, path_of (item), why);
}

static void
checker_reinstate_locked (void *owner, struct ndm_checked *item)
{
  struct multipath_c *m = owner;

  ndm_assert_held (&m->lock);
  reinstate_path_locked (m, path_of (item));
}

/* Without the lock. */
static void
checker_fence (void *owner, struct ndm_checked *item)
{
  fence_path (path_of (item));
}

/* no_path_retry N: N rounds without a path, then stop holding I/O. */
static void
checker_round_locked (void *owner, gint64 now)
{
  struct multipath_c *m = owner;
  const struct ndm_config *cfg = ndm_target_config (m->ti);

  ndm_assert_held (&m->lock);
  if (m->nr_valid == 0 && m->has_no_path_retry && m->no_path_retry > 0 &&
      !m->retries_exhausted &&
      now - m->no_path_since >=
      (gint64) m->no_path_retry * cfg->checker_interval_ms * 1000) {
    m->retries_exhausted = true;
    ndm_log_error ("multipath: no path for %d checker intervals "
                   "(no_path_retry): held I/O fails", m->no_path_retry);
    ndm_target_event (m->ti);
  }
}

static const struct ndm_checker_ops multipath_checker_ops = {
  .target = "multipath", .noun = "path", .thread_name = "ndm-mpath-check",
  .fail_locked = checker_fail_locked,
  .reinstate_locked = checker_reinstate_locked,
  .fence = checker_fence,
  .round_locked = checker_round_locked,
};

/* ---- messages ---------------------------------------------------------------- */

/* The path named uri, or NULL with msg's error. */
static struct mp_path *
find_path (struct multipath_c *m, const char *msg, const char *uri,
           GError **err)
{
  unsigned i;

  for (i = 0; i < nr_paths (m); i++) {
    struct mp_path *p = path_at (m, i);

    if (strcmp (p->path.dev->uri, uri) == 0)
      return p;
  }
  g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
               "%s: no path '%s' in this target", msg, uri);
  return NULL;
}

/* reinstate_path by hand: only a path that is the same data and can be
 * reached (the checker asks the same of the paths it reinstates).
 */
static bool
path_may_serve (struct multipath_c *m, struct mp_path *p, GError **err)
{
  struct ndm_device *dev = p->path.dev;

  if (__atomic_load_n (&dev->absent, __ATOMIC_ACQUIRE)) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "reinstate_path: path %s has not been reached yet",
                 dev->uri);
    return false;
  }
  if (dev->size != m->checker.size) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "reinstate_path: path %s has %" PRIu64 " bytes, the "
                 "others %" PRIu64 ": not the same data", dev->uri,
                 dev->size, m->checker.size);
    return false;
  }
  return true;
}

static struct mp_group *
find_group (struct multipath_c *m, const char *arg, GError **err)
{
  uint64_t n;

  if (ndm_parse_u64 (arg, "group", &n, err) == -1)
    return NULL;
  if (n == 0 || n > m->groups->len) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "group '%s': expected 1 to %u", arg, m->groups->len);
    return NULL;
  }
  return m->groups->pdata[n - 1];
}

/* queue_if_no_path and fail_if_no_path.  As dm: the feature itself
 * changes (and the table line with it); as multipathd's
 * restorequeueing, no_path_retry counts afresh.
 */
static int
message_queueing (struct ndm_target *ti, unsigned argc, char **argv,
                  GString *result, GError **err)
{
  struct multipath_c *m = ti->private;

  ndm_mutex_lock (&m->lock);
  m->queue_if_no_path = !g_ascii_strcasecmp (argv[0], "queue_if_no_path");
  m->fail_if_no_path = !m->queue_if_no_path;
  m->retries_exhausted = false;
  if (m->nr_valid == 0)
    m->no_path_since = g_get_monotonic_time ();
  ndm_mutex_unlock (&m->lock);
  ndm_target_event (ti);
  return 0;
}

static int
message_fail_path (struct ndm_target *ti, unsigned argc, char **argv,
                   GString *result, GError **err)
{
  struct multipath_c *m = ti->private;
  struct mp_path *p = find_path (m, argv[0], argv[1], err);
  bool fence;

  if (p == NULL)
    return -1;
  ndm_mutex_lock (&m->lock);
  fence = fail_path_locked (m, p, "failed by message");
  ndm_mutex_unlock (&m->lock);
  if (fence)
    fence_path (p);
  return 0;
}

static int
message_reinstate_path (struct ndm_target *ti, unsigned argc, char **argv,
                        GString *result, GError **err)
{
  struct multipath_c *m = ti->private;
  struct mp_path *p = find_path (m, argv[0], argv[1], err);

  if (p == NULL || !path_may_serve (m, p, err))
    return -1;
  ndm_mutex_lock (&m->lock);
  reinstate_path_locked (m, p);
  ndm_mutex_unlock (&m->lock);
  return 0;
}

static int
message_switch_group (struct ndm_target *ti, unsigned argc, char **argv,
                      GString *result, GError **err)
{
  struct multipath_c *m = ti->private;
  struct mp_group *pg = find_group (m, argv[1], err);
  unsigned i;

  if (pg == NULL)
    return -1;
  ndm_mutex_lock (&m->lock);
  for (i = 0; i < m->groups->len; i++)
    ((struct mp_group *) m->groups->pdata[i])->bypassed = false;
  m->next_pg = pg;
  m->current_pg = NULL;
  ndm_mutex_unlock (&m->lock);
  ndm_target_event (ti);
  return 0;
}

/* enable_group and disable_group.  As dm's bypass_pg: the group is
 * chosen afresh at the next I/O.
 */
static int
message_bypass_group (struct ndm_target *ti, unsigned argc, char **argv,
                      GString *result, GError **err)
{
  struct multipath_c *m = ti->private;
  struct mp_group *pg = find_group (m, argv[1], err);

  if (pg == NULL)
    return -1;
  ndm_mutex_lock (&m->lock);
  pg->bypassed = !g_ascii_strcasecmp (argv[0], "disable_group");
  m->current_pg = NULL;
  ndm_mutex_unlock (&m->lock);
  ndm_target_event (ti);
  return 0;
}

/* docs/targets/multipath.md, "Messages"; device_dead is the core's. */
static const struct ndm_target_message multipath_messages[] = {
  { "queue_if_no_path", 0, 0, NULL, message_queueing },
  { "fail_if_no_path", 0, 0, NULL, message_queueing },
  { "fail_path", 1, 1, "<path>", message_fail_path },
  { "reinstate_path", 1, 1, "<path>", message_reinstate_path },
  { "switch_group", 1, 1, "<group>", message_switch_group },
  { "enable_group", 1, 1, "<group>", message_bypass_group },
  { "disable_group", 1, 1, "<group>", message_bypass_group },
  { NULL },
};

/* ---- status ---------------------------------------------------------------------- */

/* dm-mpath's layouts (Documentation/admin-guide/device-mapper):
 * info:  2 <queue_io> <pg_init_count> 0 <#groups> <group>
 *        {A|D|E <#ps args> <ps args> <#paths> <#path info args>
 *         {<path> A|F <fail count> <path info args>}...}...
 * table: <#features> <features> 0 <#groups> <group>
 *        {<selector> <#ps args> <ps args> <#paths> <#path args>
 *         {<path> <path args>}...}...
 */
static void
multipath_status (struct ndm_target *ti, enum ndm_status_type type,
                  GString *result)
{
  struct multipath_c *m = ti->private;
  gsize start = result->len;
  unsigned i, j, pg_num;

  ndm_mutex_lock (&m->lock);
  if (type == NDM_STATUS_INFO)
    g_string_append_printf (result, "2 %u 0 ",
                            m->nr_valid == 0 && should_queue_locked (m));
  else {
    g_string_append_printf (result, "%u ", m->queue_if_no_path +
                            m->has_no_path_retry * 2);
    if (m->queue_if_no_path)
      g_string_append (result, "queue_if_no_path ");
    if (m->has_no_path_retry) {
      /* fail_if_no_path overrides it: the line says so, and a table
       * saved from it reloads to the same behaviour.
       */
      int npr = m->fail_if_no_path ? 0 : m->no_path_retry;

      if (npr < 0)
        g_string_append (result, "no_path_retry queue ");
      else if (npr == 0)
        g_string_append (result, "no_path_retry fail ");
      else
        g_string_append_printf (result, "no_path_retry %d ", npr);
    }
  }
  g_string_append (result, "0 ");
  pg_num = m->next_pg ? m->next_pg->num
    : m->current_pg ? m->current_pg->num : 1;
  g_string_append_printf (result, "%u %u ", m->groups->len, pg_num);

  for (i = 0; i < m->groups->len; i++) {
    struct mp_group *pg = m->groups->pdata[i];
    const struct ndm_ps_type *t = pg->ps.type;

    if (type == NDM_STATUS_INFO)
      g_string_append_printf (result, "%c ", pg->bypassed ? 'D'
                              : pg == m->current_pg ? 'A' : 'E');
    else
      g_string_append_printf (result, "%s ", t->name);
    t->status (&pg->ps, NULL, type, result);
    g_string_append_printf (result, "%u %u ", pg->paths->len,
                            type == NDM_STATUS_INFO ? t->info_args
                            : t->table_args);
    for (j = 0; j < pg->paths->len; j++) {
      struct mp_path *p = pg->paths->pdata[j];

      g_string_append_printf (result, "%s ", p->path.dev->uri);
      if (type == NDM_STATUS_INFO)
        g_string_append_printf (result, "%s %u ", p->chk.active ? "A" : "F",
                                p->chk.fail_count);
      t->status (&pg->ps, &p->path, type, result);
    }
  }
  ndm_mutex_unlock (&m->lock);
  /* dm leaves a trailing blank; dmsetup users see none in the docs. */
  while (result->len > start && result->str[result->len - 1] == ' ')
    g_string_truncate (result, result->len - 1);
}

/* A group's state: dm's status letter, as a word. */
static const char *
group_state_locked (struct multipath_c *m, struct mp_group *pg)
{
  ndm_assert_held (&m->lock);
  return pg->bypassed ? "disabled" : pg == m->current_pg ? "active"
    : "enabled";
}

/* {"queue_if_no_path":..,"holds_io":..,"queueing":..,"valid_paths":N,
 *  "groups":[{"group":1,"state":"active"|"enabled"|"disabled",
 *  "selector":"round-robin","paths":[{"path":uri,"state":"active"|
 *  "failed","reason":".."|null,"fail_count":N,"damped_ms":N}]}]}
 */
static void
multipath_status_json (struct ndm_target *ti, JsonBuilder *b)
{
  struct multipath_c *m = ti->private;
  unsigned i, j;

  ndm_mutex_lock (&m->lock);
  json_builder_begin_object (b);
  /* queue_if_no_path: the feature; holds_io: whether I/O is held when
   * no path is valid, all settings weighed; queueing: held now.
   */
  ndm_json_member_bool (b, "queue_if_no_path", m->queue_if_no_path);
  ndm_json_member_bool (b, "holds_io", should_queue_locked (m));
  ndm_json_member_bool (b, "queueing",
                        m->nr_valid == 0 && should_queue_locked (m));
  ndm_json_member_uint (b, "valid_paths", m->nr_valid);
  json_builder_set_member_name (b, "groups");
  json_builder_begin_array (b);
  for (i = 0; i < m->groups->len; i++) {
    struct mp_group *pg = m->groups->pdata[i];

    json_builder_begin_object (b);
    ndm_json_member_uint (b, "group", pg->num);
    ndm_json_member_string (b, "state", group_state_locked (m, pg));
    ndm_json_member_string (b, "selector", pg->ps.type->name);
    json_builder_set_member_name (b, "paths");
    json_builder_begin_array (b);
    for (j = 0; j < pg->paths->len; j++) {
      struct mp_path *p = pg->paths->pdata[j];

      json_builder_begin_object (b);
      ndm_json_member_string (b, "path", p->path.dev->uri);
      ndm_json_member_string (b, "state", p->chk.active ? "active"
                              : "failed");
      ndm_checked_json_locked (&p->chk, b);
      json_builder_end_object (b);
    }
    json_builder_end_array (b);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  ndm_mutex_unlock (&m->lock);
}

/* A path refused for its size is not used: no range to check.  Its
 * reason is read under m->lock, which the checker holds to rewrite it
 * (status and messages run this on control threads); a device's size
 * only once it is present (dev->absent's release/acquire).  fn is called
 * without the lock.
 */
static int
multipath_iterate_devices (struct ndm_target *ti, ndm_iterate_devices_fn fn,
                           void *data)
{
  struct multipath_c *m = ti->private;
  g_autoptr (GPtrArray) devs = g_ptr_array_new ();
  unsigned i;
  int r = 0;

  ndm_mutex_lock (&m->lock);
  for (i = 0; i < nr_paths (m); i++) {
    struct mp_path *p = path_at (m, i);
    struct ndm_device *dev = p->path.dev;

    if (p->chk.reason == NULL ||
        (!__atomic_load_n (&dev->absent, __ATOMIC_ACQUIRE) &&
         dev->size == m->checker.size))
      g_ptr_array_add (devs, dev);
  }
  ndm_mutex_unlock (&m->lock);
  for (i = 0; i < devs->len && r == 0; i++)
    r = fn (ti, devs->pdata[i], 0, ti->len << NDM_SECTOR_SHIFT, data);
  return r;
}

const struct ndm_target_type ndm_multipath_target = {
  .name = "multipath", .version = { 1, 14, 0 },
  .ctr = multipath_ctr, .dtr = multipath_dtr,                /* required */
  .map = multipath_map, .end_io = multipath_end_io,
  .release_clone = multipath_release_clone,
  .status = multipath_status, .status_json = multipath_status_json,
  .messages = multipath_messages,                            /* optional */
  .iterate_devices = multipath_iterate_devices,
  .presuspend = multipath_presuspend, .resume = multipath_resume,
};
