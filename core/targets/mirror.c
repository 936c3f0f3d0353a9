/* SPDX-License-Identifier: BSD-3-Clause */
/* mirror: two or more NBD exports on independent servers hold the same
 * data (dm-raid1): writes go to every leg in service, reads are spread
 * over the legs in sync, and the device serves while one leg is left.
 *
 *   <start> <length> mirror <log type> <#log args> <log args>...
 *       <#legs> <leg> <offset> [<leg> <offset>]...
 *       [<#features> <feature>...]
 *
 * Log types (core/dirty-log.c, core/dirty-log-disk.c): core <region size>
 * [sync|nosync], disk <log device> <region size> [sync|nosync].
 * Features: handle_errors, keep_log (needs handle_errors), and the
 * extension read_balance <default_leg|round-robin|queue-length>.  Legs
 * are NBD URIs, opened tolerantly as multipath's paths: an unreachable
 * one is kept failed, as long as one answers (docs/targets/mirror.md).
 *
 * Writes (R9, R10): one clone, one bio per leg in service at the same
 * clone offset.  The region hash (core/region-hash.c) counts the write on
 * its regions and has the log mark each clean one before any bio leaves
 * (a held clone: DELAY_REQUEUE with no bios, released by the log's
 * commit).  A leg that fails a write is out of sync for every region
 * that may differ on it, and is recorded in the log's header before the
 * write is acknowledged: the core re-maps the tail onto the legs that did
 * not fail, and that map waits for the header commit.  With handle_errors
 * the leg also leaves service (fenced); the last leg in sync never does.
 *
 * Reads: one leg for the whole clone, by the read policy among the legs
 * in sync when every region it covers is in sync, else the default leg
 * (the first in service and in sync).  A read that fails with EIO or a
 * path error goes again, its tail only (R4), to another leg in sync.
 *
 * Resync: a thread copies each region out of sync from the default leg
 * to the other legs in service while no leg is out of service, holding
 * new writes to the region it copies (core/region-hash.h).  The copies
 * go through the mirror's kcopyd (core/kcopyd.c): bounce buffers charged
 * to max-bounce, the resync-rate cap (the key, or the resync_rate
 * message), and a pause per piece while clients have requests in flight.
 *
 * Reinstatement: the core's checker probes the legs from the first
 * resume; a failed leg that answers is put back (or by reinstate_leg)
 * only once its device says none of its cut connections can still land
 * a write (R10: unresolved_ghosts, 0 after the server closed them or the
 * operator's device_dead), else such a write could land over what the
 * resync copies.  It is then in service, out of sync: the regions
 * written while it was out (every region, for a leg out since load) are
 * copied to it before it serves reads, and its letter is A again.
 *
 * Read repair (md's fix_read_error): a read that failed with EIO on a
 * leg and was served by another queues its regions for that leg; the
 * resync thread copies each back from a leg in sync, the region
 * quiesced as for a copy.  Verify (DRBD's): the same thread compares the
 * legs in sync region by region, quiesced, records the regions that
 * differ, and repair makes those out of sync for the resync.  Both go
 * through the resync's kcopyd (throttled, yielding to clients).
 *
 * Thread model and locks: map, end_io and release_clone run on request
 * owners, message and status on the control thread, the log's commits on
 * this mirror's log thread (ndm-mirror-log, a disk log only), the copies
 * on its resync thread (ndm-mirror-sync).  All take
 * mirror_c.lock (order 2 in core/request.c), which also covers the region
 * hash and the legs' checker state; the dirty log's lock is a leaf under
 * it.  Fences and the log's I/O run without it.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "nbd-dm/bio.h"
#include "nbd-dm/target.h"
#include "../checker.h"
#include "../config.h"
#include "../dirty-log.h"
#include "../json.h"
#include "../kcopyd.h"
#include "../log.h"
#include "../region-hash.h"
#include "../thread.h"

#define MIRROR_MAX_LEGS 32       /* bits of mirror_io.failed, and the
                                    log's failed legs */

enum mirror_read_balance {
  MIRROR_QUEUE_LENGTH,          /* the default */
  MIRROR_ROUND_ROBIN,
  MIRROR_DEFAULT_LEG,
};

static const char *const read_balance_names[] = {
  [MIRROR_QUEUE_LENGTH] = "queue-length",
  [MIRROR_ROUND_ROBIN] = "round-robin",
  [MIRROR_DEFAULT_LEG] = "default_leg",
};

struct mirror_leg {
  struct ndm_checked chk;       /* dev; active: in service (writes go
                                   to it); fail count, reason */
  unsigned idx;                 /* table order */
  uint64_t offset;              /* bytes: where its copy starts */
  /* Protected by mirror_c.lock. */
  bool in_sync;                 /* holds every region's current data: a
                                   read source */
  char health;                  /* status letter, the most severe seen */
  bool missed;                  /* it failed a write, a flush or a copy
                                   in this table's life: never a source
                                   again, whatever the resync copies
                                   (dm keeps such a leg's letter too),
                                   until it is reinstated */
  bool stale;                   /* out of service since load: any region
                                   may differ on it */
  bool reinstated;              /* put back (or named failed by the disk
                                   log at load), being resynced: its
                                   letter is A again once in sync */
  uint64_t write_errors, read_errors, reads;
  uint64_t read_repairs;        /* regions rewritten after a read of
                                   them failed here with EIO */
  unsigned inflight;            /* read clones on it (queue-length) */
};

enum mirror_verify {
  MIRROR_VERIFY_NEVER,          /* no verify message yet: no status word */
  MIRROR_VERIFY_RUNNING,
  MIRROR_VERIFY_IDLE,           /* the last one ended */
};

struct mirror_c {
  struct ndm_target *ti;
  struct ndm_mutex lock;        /* protects the legs' state, the region
                                   hash, the checker and what follows */
  struct ndm_checker checker;   /* every leg, in table order */
  struct mirror_leg *legs;
  unsigned nr_legs;
  struct ndm_dirty_log *log;
  struct ndm_region_hash rh;
  bool handle_errors, keep_log;
  enum mirror_read_balance read_balance;
  unsigned rr_next;             /* round-robin's next leg */
  uint64_t header_ticket;       /* the log commit recording the last leg
                                   that missed a write: writes wait for
                                   it, so none is acknowledged before a
                                   restart knows not to copy from it */
  GThread *log_thread;          /* commits a disk log's marks */
  bool log_thread_stop;         /* protected by log->lock */
  GThread *sync_thread;         /* copies regions out of sync */
  struct ndm_kcopyd *kc;        /* its copies: bounce, throttle, yield;
                                   stopped with the thread */
  bool sync_stop;               /* presuspend, dtr */
  bool syncing;                 /* a copy runs (JSON) */
  uint64_t resynced;            /* bytes copied, for JSON */
  GHashTable *repairs;          /* read repairs to do, each a region
                                   number * MIRROR_MAX_LEGS + the leg's
                                   index (uint64_t keys) */
  enum mirror_verify verify;
  unsigned verify_gen;          /* + 1 at each verify message: a
                                   comparison begun before is dropped */
  uint64_t verify_next;         /* the region the verify compares next */
  GArray *verify_diff;          /* uint64_t: regions the last verify
                                   found different, in order */
  uint8_t *trimmed;             /* bit r: region r was trimmed since load
                                   or its last copy (legs may read
                                   differently there): verify skips it */
};

/* The clone's scratch space: the region hash's part first (it finds its
 * clone through it), then the legs this clone failed on, which its tail
 * is never sent to again.
 */
struct mirror_io {
  union {
    struct ndm_rh_io rh;        /* writes, trims, zeroes */
    struct {                    /* reads */
      struct mirror_leg *leg;   /* the leg counted in flight */
      uint32_t eio;             /* legs that failed it with EIO: repaired
                                   once another leg served it */
      uint64_t first, last;     /* the regions of those failures */
    } rd;
  } u;
  uint32_t failed;
};

G_STATIC_ASSERT (sizeof (struct mirror_io) <= NDM_PER_IO_SIZE);

/* ---- table parsing ------------------------------------------------------------ */

static struct mirror_leg *
leg_of (struct ndm_checked *item)
{
  return (struct mirror_leg *) ((char *) item -
                                offsetof (struct mirror_leg, chk));
}

/* The leg whose device dev is, or NULL (the log device). */
static struct mirror_leg *
leg_of_device (struct mirror_c *m, struct ndm_device *dev)
{
  unsigned i;

  for (i = 0; i < m->nr_legs; i++)
    if (m->legs[i].chk.dev == dev)
      return &m->legs[i];
  return NULL;
}

/* #legs is after the log's words, but the log is made for a count of
 * legs: read it ahead where the words allow, else guess 2 and let the
 * log's parser or the legs' report what is wrong.
 */
static unsigned
peek_nr_legs (unsigned argc, char **argv)
{
  uint64_t nargs, nlegs;

  if (argc < 2 || ndm_parse_u64 (argv[1], "#log args", &nargs, NULL) == -1 ||
      nargs >= argc - 2 ||
      ndm_parse_u64 (argv[2 + nargs], "#legs", &nlegs, NULL) == -1 ||
      nlegs < 1 || nlegs > MIRROR_MAX_LEGS)
    return 2;
  return nlegs;
}

static int
parse_legs (struct ndm_target *ti, struct mirror_c *m, unsigned *argc,
            char ***argv, GError **err)
{
  uint64_t n;
  unsigned i;

  if (*argc == 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "the table ends where #legs was expected");
    return -1;
  }
  if (ndm_parse_u64 ((*argv)[0], "#legs", &n, err) == -1)
    return -1;
  if (n < 2 || n > MIRROR_MAX_LEGS) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "#legs '%s': expected 2 to %u", (*argv)[0], MIRROR_MAX_LEGS);
    return -1;
  }
  if (n != m->log->nr_legs) {
    /* peek_nr_legs read another count: cannot happen once the log's
     * words parsed, but say so rather than use a log of another size.
     */
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "#legs '%s' does not follow the log's words", (*argv)[0]);
    return -1;
  }
  (*argc)--;
  (*argv)++;
  if (*argc < 2 * n) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "%" PRIu64 " legs need %" PRIu64 " '<leg> <offset>' words, "
                 "got %u", n, 2 * n, *argc);
    return -1;
  }
  m->nr_legs = n;
  m->legs = g_new0 (struct mirror_leg, n);
  for (i = 0; i < n; i++) {
    struct mirror_leg *leg = &m->legs[i];
    const char *uri = (*argv)[2 * i];
    struct ndm_device *dev;
    uint64_t off;

    leg->idx = i;
    leg->health = 'A';
    dev = ndm_table_get_device_tolerant (ti, uri, err);
    if (dev == NULL)
      return -1;
    if (leg_of_device (m, dev) != NULL) {
      g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                   "leg %s is listed twice: expected each leg once", uri);
      return -1;
    }
    if (dev == m->log->dev) {
      g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                   "log device %s is also a leg", uri);
      return -1;
    }
    if (ndm_parse_sectors ((*argv)[2 * i + 1], "leg offset", &off, err)
        == -1)
      return -1;
    leg->offset = off << NDM_SECTOR_SHIFT;
    leg->in_sync = ndm_checker_add (&m->checker, &leg->chk, dev);
    if (!leg->in_sync) {
      leg->health = 'U';
      leg->stale = true;
    }
  }
  *argc -= 2 * n;
  *argv += 2 * n;
  return 0;
}

/* Why the leg's device cannot hold its copy in whole blocks, or NULL:
 * the region size, the leg's offset and the target's length must be
 * multiples of its minimum block (dm refuses a device area not aligned
 * to the logical block).  Else a resync, repair or verify piece would
 * read-modify-write its neighbours, charging max-bounce beside the
 * piece it holds (kcopyd), and could wait for ever on itself.
 */
static char *
leg_block_misfit (struct mirror_c *m, struct mirror_leg *leg)
{
  const struct ndm_device *dev = leg->chk.dev;
  uint64_t block = dev->limits.min_block;

  if (block > m->log->region_size)
    return g_strdup_printf ("region size '%" PRIu64 "' is below leg %s's "
                            "minimum block of %" PRIu64 " bytes",
                            m->log->region_size >> NDM_SECTOR_SHIFT,
                            dev->uri, block);
  if (block > 1 && leg->offset % block != 0)
    return g_strdup_printf ("leg %s offset '%" PRIu64 "' is not a "
                            "multiple of its minimum block of %" PRIu64
                            " bytes", dev->uri,
                            leg->offset >> NDM_SECTOR_SHIFT, block);
  if (block > 1 && (m->ti->len << NDM_SECTOR_SHIFT) % block != 0)
    return g_strdup_printf ("length %" PRIu64 " is not a multiple of leg "
                            "%s's minimum block of %" PRIu64 " bytes",
                            m->ti->len, dev->uri, block);
  return NULL;
}

/* The legs that answered at load must be one size (the size is what
 * tells a leg's data apart: the checker refuses any other later, so a
 * table that starts with one would run degraded for good) and fit in
 * whole blocks (leg_block_misfit).  A leg that did not answer is
 * checked when it does (leg_cannot_return_locked).
 */
static int
check_legs (struct mirror_c *m, GError **err)
{
  struct mirror_leg *first = NULL;
  unsigned i;

  for (i = 0; i < m->nr_legs; i++) {
    struct ndm_device *dev = m->legs[i].chk.dev;
    g_autofree char *misfit = NULL;

    /* A reload's devices reconnect in the background meanwhile. */
    if (__atomic_load_n (&dev->absent, __ATOMIC_ACQUIRE))
      continue;
    if (first == NULL)
      first = &m->legs[i];
    if (dev->size != first->chk.dev->size) {
      g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                   "leg %s has %" PRIu64 " bytes, leg %s %" PRIu64
                   ": expected legs of one size", dev->uri, dev->size,
                   first->chk.dev->uri, first->chk.dev->size);
      return -1;
    }
    misfit = leg_block_misfit (m, &m->legs[i]);
    if (misfit != NULL) {
      g_set_error_literal (err, NDM_ERROR, NDM_ERROR_TABLE, misfit);
      return -1;
    }
  }
  return 0;
}

static int
parse_features (struct mirror_c *m, unsigned argc, char **argv,
                GError **err)
{
  uint64_t n;
  unsigned i;

  if (argc == 0)
    return 0;
  if (ndm_parse_u64 (argv[0], "#features", &n, err) == -1)
    return -1;
  if (n > argc - 1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "#features '%s' is more than the %u word%s after it",
                 argv[0], argc - 1, argc - 1 == 1 ? "" : "s");
    return -1;
  }
  if (n < argc - 1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "unexpected '%s' after %" PRIu64 " feature words",
                 argv[1 + n], n);
    return -1;
  }
  for (i = 1; i <= n; i++) {
    const char *w = argv[i];

    if (!g_ascii_strcasecmp (w, "handle_errors"))
      m->handle_errors = true;
    else if (!g_ascii_strcasecmp (w, "keep_log"))
      m->keep_log = true;
    else if (!g_ascii_strcasecmp (w, "read_balance")) {
      unsigned p;

      if (i == n) {
        g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                     "feature read_balance has no value within #features: "
                     "expected read_balance <policy>, 2 words");
        return -1;
      }
      w = argv[++i];
      for (p = 0; p < G_N_ELEMENTS (read_balance_names); p++)
        if (!g_ascii_strcasecmp (w, read_balance_names[p]))
          break;
      if (p == G_N_ELEMENTS (read_balance_names)) {
        g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                     "read_balance '%s': expected default_leg, round-robin "
                     "or queue-length", w);
        return -1;
      }
      m->read_balance = p;
    }
    else {
      g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                   "unknown feature '%s': expected handle_errors, keep_log "
                   "or read_balance <policy>", w);
      return -1;
    }
  }
  if (m->keep_log && !m->handle_errors) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "keep_log needs handle_errors");
    return -1;
  }
  return 0;
}

static void mirror_dtr (struct ndm_target *ti);
static void stop_sync_thread (struct mirror_c *m);
static const struct ndm_checker_ops mirror_checker_ops;

static int
mirror_ctr (struct ndm_target *ti, unsigned argc, char **argv, GError **err)
{
  struct mirror_c *m = g_new0 (struct mirror_c, 1);
  uint64_t bytes = ti->len << NDM_SECTOR_SHIFT;
  unsigned used, i, usable = 0;

  m->ti = ti;
  ndm_mutex_init (&m->lock, NDM_LOCK_TARGET);
  m->kc = ndm_kcopyd_new (ti, ndm_target_config (ti)->resync_rate);
  ndm_checker_init (&m->checker, ti, &mirror_checker_ops, &m->lock, m);
  ti->private = m;

  m->log = ndm_dirty_log_create (ti, argc, argv, bytes,
                                 peek_nr_legs (argc, argv), &used, err);
  if (m->log == NULL)
    goto err;
  argc -= used;
  argv += used;
  if (parse_legs (ti, m, &argc, &argv, err) == -1 ||
      check_legs (m, err) == -1 ||
      parse_features (m, argc, argv, err) == -1)
    goto err;
  for (i = 0; i < m->nr_legs; i++)
    usable += m->legs[i].chk.active;
  if (usable == 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "no leg can be used: at least one must answer at load");
    goto err;
  }
  /* The header now, so that a log of another geometry or magic fails
   * the table as a bad word does; the bitmap at the first resume.
   */
  if (ndm_dirty_log_check (m->log, err) == -1)
    goto err;

  ndm_rh_init (&m->rh, m->log, &m->lock, bytes);
  m->repairs = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free,
                                      NULL);
  m->verify_diff = g_array_new (false, false, sizeof (uint64_t));
  m->trimmed = g_malloc0 ((m->rh.nr_regions + 7) / 8);
  m->rh.fail_without_log = m->keep_log;
  return 0;

 err:
  mirror_dtr (ti);
  ti->private = NULL;
  return -1;
}

/* The table's first resume: no I/O of it ran yet, and a table that wrote
 * the same log before (a reload's old one) made its last commit in its
 * postsuspend.  The log's marks become the regions out of sync; a leg
 * its header says missed writes is no source until they are copied.
 */
static void
load_log (struct mirror_c *m)
{
  g_autoptr (GError) err = NULL;
  int64_t todo = ndm_dirty_log_load (m->log, &err);
  unsigned i;

  if (todo == -1) {
    ndm_log_error ("mirror: %s: every region is taken as out of sync",
                   err->message);
    ndm_target_event (m->ti);
  }
  else if (m->log->dev != NULL)
    ndm_log_info ("mirror: disk log %s: %" PRIu64 " of %" PRIu64 " regions "
                  "marked at load; %" PRId64 " to resync", m->log->dev->uri,
                  m->log->dirty_at_load, m->log->nr_regions, todo);
  ndm_mutex_lock (&m->lock);
  ndm_mutex_lock (&m->log->lock);
  for (i = 0; i < m->nr_legs; i++) {
    struct mirror_leg *leg = &m->legs[i];

    if (m->log->failed_legs & (UINT64_C (1) << i)) {
      /* It missed writes before the last stop: no source until the
       * resync has copied them, then A again, as a reinstated leg.
       */
      leg->in_sync = false;
      leg->health = leg->chk.active ? 'S' : leg->health;
      leg->reinstated = leg->chk.active;
    }
    else if (!leg->chk.active)
      /* It misses every write from now: recorded like a write error. */
      m->header_ticket = MAX (m->header_ticket,
                              ndm_dirty_log_set_leg_failed_locked (m->log, i,
                                                                   true));
    if (!leg->chk.active)
      m->rh.degraded = true;
  }
  ndm_mutex_unlock (&m->log->lock);
  ndm_mutex_unlock (&m->lock);
}

static void
stop_log_thread (struct mirror_c *m)
{
  if (m->log_thread == NULL)
    return;
  ndm_mutex_lock (&m->log->lock);
  m->log_thread_stop = true;
  g_cond_broadcast (&m->log->cond);
  ndm_mutex_unlock (&m->log->lock);
  g_thread_join (m->log_thread);
  m->log_thread = NULL;
}

static void
mirror_dtr (struct ndm_target *ti)
{
  struct mirror_c *m = ti->private;
  unsigned i;

  if (m == NULL)
    return;
  ndm_checker_clear (&m->checker);
  if (m->log != NULL) {
    if (m->rh.regions != NULL)
      stop_sync_thread (m);
    stop_log_thread (m);
    if (m->rh.regions != NULL)
      ndm_rh_clear (&m->rh);
    ndm_dirty_log_free (m->log);
  }
  for (i = 0; m->legs != NULL && i < m->nr_legs; i++)
    g_free (m->legs[i].chk.reason);
  g_free (m->legs);
  if (m->repairs != NULL)
    g_hash_table_unref (m->repairs);
  if (m->verify_diff != NULL)
    g_array_unref (m->verify_diff);
  g_free (m->trimmed);
  ndm_kcopyd_free (m->kc);
  ndm_mutex_clear (&m->lock);
  g_free (m);
}

/* ---- leg state ------------------------------------------------------------------- */

/* dm's order of letters, most severe first: a leg shows the worst it
 * has seen (docs/targets/mirror.md, "Status and table output").
 */
static unsigned
letter_rank (char c)
{
  const char *order = "AURSDF";
  const char *p = strchr (order, c);

  return p != NULL ? (unsigned) (p - order) : 0;
}

static void
set_letter_locked (struct mirror_c *m, struct mirror_leg *leg, char c)
{
  ndm_assert_held (&m->lock);
  if (letter_rank (c) > letter_rank (leg->health))
    leg->health = c;
}

/* With m->lock held: the legs in sync, but leg. */
static unsigned
other_in_sync_locked (struct mirror_c *m, struct mirror_leg *leg)
{
  unsigned i, n = 0;

  ndm_assert_held (&m->lock);
  for (i = 0; i < m->nr_legs; i++)
    n += &m->legs[i] != leg && m->legs[i].chk.active && m->legs[i].in_sync;
  return n;
}

/* With m->lock held: leg is no read source from now, and the log's
 * header says so in a commit that the writes mapped from now wait for.
 */
static void
leg_out_of_sync_locked (struct mirror_c *m, struct mirror_leg *leg)
{
  uint64_t t;

  ndm_assert_held (&m->lock);
  leg->in_sync = false;
  ndm_mutex_lock (&m->log->lock);
  t = ndm_dirty_log_set_leg_failed_locked (m->log, leg->idx, true);
  ndm_mutex_unlock (&m->log->lock);
  m->header_ticket = MAX (m->header_ticket, t);
  ndm_target_event (m->ti);
}

/* With m->lock held: leg missed a write or a flush (letter c), so every
 * region that may differ on it is out of sync, and the log's header says
 * it is not a source, in a commit that the clone's requeued tail waits
 * for.  With handle_errors (or from fail_leg, by_message) it also leaves
 * service.  The last leg in sync is never touched (md raid1's rule): its
 * errors go to the client.  Returns true if the leg left service now:
 * the caller fences it without the lock.
 */
static bool
leg_missed_write_locked (struct mirror_c *m, struct mirror_leg *leg,
                         char c, const char *why, bool by_message)
{
  bool fail = m->handle_errors || by_message;

  ndm_assert_held (&m->lock);
  set_letter_locked (m, leg, c);
  if (leg->in_sync && other_in_sync_locked (m, leg) == 0) {
    ndm_log_error ("mirror: leg %s: %s: the last leg in sync stays in "
                   "service", leg->chk.dev->uri, why);
    return false;
  }
  /* Its unflushed writes may be lost too: whatever is marked may differ
   * on it.
   */
  ndm_rh_mark_dirty_nosync_locked (&m->rh);
  leg->missed = true;
  if (!leg->in_sync && (!fail || !leg->chk.active))
    return false;               /* out of sync and recorded already */
  leg_out_of_sync_locked (m, leg);
  if (!fail || !ndm_checker_fail_locked (&m->checker, &leg->chk, why)) {
    ndm_log_error ("mirror: leg %s: %s: out of sync, kept in service",
                   leg->chk.dev->uri, why);
    return false;
  }
  m->rh.degraded = true;
  ndm_log_error ("mirror: failing leg %s (%s): %u leg%s in sync left",
                 leg->chk.dev->uri, why, other_in_sync_locked (m, leg),
                 other_in_sync_locked (m, leg) == 1 ? "" : "s");
  return true;
}

static void
fence_leg (struct mirror_leg *leg)
{
  struct ndm_device *dev = leg->chk.dev;

  if (dev->ops->fence != NULL)
    dev->ops->fence (dev, "fenced: its mirror leg failed");
}

/* ---- the log's thread ----------------------------------------------------------- */

/* Legs in service, for a clear commit's flush and a flush clone. */
static unsigned
legs_in_service_locked (struct mirror_c *m, struct ndm_io_where *where)
{
  unsigned i, n = 0;

  ndm_assert_held (&m->lock);
  for (i = 0; i < m->nr_legs; i++)
    if (m->legs[i].chk.active)
      where[n++] = (struct ndm_io_where) { m->legs[i].chk.dev, 0 };
  return n;
}

/* dm-log's flush callback: a clear may reach the log only once the data
 * of its regions is stable on every leg in service.
 */
static int
flush_legs (void *data, int *err)
{
  struct mirror_c *m = data;
  struct ndm_io_where where[MIRROR_MAX_LEGS];
  unsigned n;

  ndm_mutex_lock (&m->lock);
  n = legs_in_service_locked (m, where);
  ndm_mutex_unlock (&m->lock);
  return ndm_target_io (m->ti, NDM_OP_FLUSH, 0, where, n, NULL, 0, NULL,
                        err);
}

/* ndm-mirror-log: a mark commit as soon as a write waits for one (marks
 * made meanwhile ride along: group commit), a clear commit when nothing
 * asked for NDM_LOG_CLEAR_MS.
 */
static gpointer
log_thread (gpointer data)
{
  struct mirror_c *m = data;
  struct ndm_dirty_log *log = m->log;

  for (;;) {
    bool marks;
    int64_t r;
    int err = 0;

    ndm_mutex_lock (&log->lock);
    marks = log->wanted_ticket >= log->next_ticket;
    if (!marks && !m->log_thread_stop)
      ndm_cond_wait_until (&log->cond, &log->lock, g_get_monotonic_time () +
                           NDM_LOG_CLEAR_MS * G_TIME_SPAN_MILLISECOND);
    if (m->log_thread_stop) {
      ndm_mutex_unlock (&log->lock);
      return NULL;
    }
    marks = log->wanted_ticket >= log->next_ticket;
    ndm_mutex_unlock (&log->lock);

    /* A clear commit whenever one is due, marks waiting or not: under a
     * steady stream of first writes clears would never come, and a
     * crash would cost a copy of every region written since the start.
     * Marks then ride in the clear commit, behind a leg flush, at most
     * once every NDM_LOG_CLEAR_MS.
     */
    r = ndm_dirty_log_commit (log, true, flush_legs, m, &err);
    if (r > 0)
      ndm_rh_log_committed (&m->rh, r, false);
    else if (r == -1) {
      ndm_log_error ("mirror: dirty log commit failed: %s",
                     ndm_errno_name (err));
      ndm_target_event (m->ti);
      ndm_rh_log_committed (&m->rh, 0, true);
    }
  }
}

/* ---- writes ---------------------------------------------------------------------- */

/* With m->lock held: regions first..last were trimmed (or copied: not
 * any more).  A trim leaves the bytes unspecified (NBD), so legs may read
 * differently there without a fault: verify does not compare them.
 */
static void
set_trimmed_locked (struct mirror_c *m, uint64_t first, uint64_t last,
                    bool on)
{
  uint64_t r;

  ndm_assert_held (&m->lock);
  for (r = first; r <= last; r++)
    if (on)
      m->trimmed[r / 8] |= 1u << (r % 8);
    else
      m->trimmed[r / 8] &= ~(1u << (r % 8));
}

/* How long a held write waits before it is mapped again anyway: the
 * commit or copy it waits for releases it sooner.
 */
#define MIRROR_HOLD_US (NDM_LOG_CLEAR_MS * G_TIME_SPAN_MILLISECOND)

static int
map_write (struct mirror_c *m, struct ndm_clone *clone, struct mirror_io *io)
{
  uint64_t toff = ndm_clone_target_offset (clone);
  uint64_t first = ndm_rh_region (&m->rh, toff);
  uint64_t last = ndm_rh_region (&m->rh, toff + clone->len - 1);
  struct mirror_leg *to[MIRROR_MAX_LEGS];
  unsigned i, n = 0;

  ndm_mutex_lock (&m->lock);
  for (i = 0; i < m->nr_legs; i++)
    if (m->legs[i].chk.active && !(io->failed & (1u << i)))
      to[n++] = &m->legs[i];
  if (n == 0) {
    ndm_rh_write_end_locked (&m->rh, &io->u.rh);
    ndm_mutex_unlock (&m->lock);
    clone->kill_error = EIO;
    return NDM_MAPIO_KILL;
  }
  io->u.rh.link.data = clone;
  switch (ndm_rh_write_start_locked (&m->rh, &io->u.rh, first, last,
                                     m->header_ticket)) {
  case NDM_RH_WRITE_GO:
    break;
  case NDM_RH_WRITE_WAIT_LOG:
  case NDM_RH_WRITE_WAIT_RECOVERY:
    clone->not_before = g_get_monotonic_time () + MIRROR_HOLD_US;
    ndm_mutex_unlock (&m->lock);
    return NDM_MAPIO_DELAY_REQUEUE;
  case NDM_RH_WRITE_FAIL:
    ndm_mutex_unlock (&m->lock);
    clone->kill_error = EIO;
    return NDM_MAPIO_KILL;
  }
  if (clone->op == NDM_OP_TRIM)
    set_trimmed_locked (m, first, last, true);
  ndm_mutex_unlock (&m->lock);

  /* The set of legs is fixed for this round: one that fails meanwhile
   * gets its bios, and fails them, or they land harmlessly.
   */
  for (i = 0; i < n; i++)
    ndm_clone_map_bio (clone, to[i]->chk.dev, to[i]->offset + toff, 0,
                       clone->len);
  return NDM_MAPIO_REMAPPED;
}

/* Every leg in service, and the log device, flushes: each holds
 * acknowledged writes of its own (R9).
 */
static int
map_flush (struct mirror_c *m, struct ndm_clone *clone, struct mirror_io *io)
{
  unsigned i;

  ndm_mutex_lock (&m->lock);
  for (i = 0; i < m->nr_legs; i++)
    /* Not again to a leg whose flush failed in an earlier round. */
    if (m->legs[i].chk.active && !(io->failed & (1u << i)))
      ndm_clone_map_flush (clone, m->legs[i].chk.dev);
  ndm_mutex_unlock (&m->lock);
  if (m->log->dev != NULL)
    ndm_clone_map_flush (clone, m->log->dev);
  return NDM_MAPIO_REMAPPED;
}

/* With m->lock held: a read's bio failed with EIO on leg, a live leg's
 * answer about its blocks (a lost connection says nothing about them):
 * once another leg serves the read, its regions are copied back to leg
 * (read repair, md raid1's fix_read_error).
 */
static void
note_read_eio_locked (struct mirror_c *m, struct mirror_io *io,
                      struct mirror_leg *leg, struct ndm_bio *bio)
{
  uint64_t toff = bio->dev_offset - leg->offset;
  uint64_t first = ndm_rh_region (&m->rh, toff);
  uint64_t last = ndm_rh_region (&m->rh, toff + bio->len - 1);

  ndm_assert_held (&m->lock);
  if (io->u.rd.eio == 0 || first < io->u.rd.first)
    io->u.rd.first = first;
  if (io->u.rd.eio == 0 || last > io->u.rd.last)
    io->u.rd.last = last;
  io->u.rd.eio |= 1u << leg->idx;
}

/* With m->lock held: region r of leg is to be repaired. */
static void
repair_add_locked (struct mirror_c *m, struct mirror_leg *leg, uint64_t r)
{
  uint64_t *key = g_new (uint64_t, 1);

  ndm_assert_held (&m->lock);
  *key = r * MIRROR_MAX_LEGS + leg->idx;
  g_hash_table_add (m->repairs, key);
}

/* With m->lock held: the read that failed with EIO on the legs of
 * io->u.rd.eio was served by another: their regions of it are queued for
 * the sync thread, which repairs them before it copies anything else.
 * Not here: the copy must wait for the region's writes to drain, and an
 * owner never blocks.
 */
static void
read_served_locked (struct mirror_c *m, struct mirror_io *io)
{
  unsigned i;
  uint64_t r;

  ndm_assert_held (&m->lock);
  for (i = 0; i < m->nr_legs; i++)
    if (io->u.rd.eio & (1u << i))
      for (r = io->u.rd.first; r <= io->u.rd.last; r++)
        repair_add_locked (m, &m->legs[i], r);
  io->u.rd.eio = 0;
  g_cond_broadcast (&m->rh.cond);
}

/* A fast zero the leg could not do fast after all (it advertised fast
 * zero, then answered ENOTSUP): the client's answer (R5: unchanged),
 * not a fault of the leg, which stays in service and in sync.
 */
static bool
fast_zero_refused_by (const struct ndm_clone *clone,
                      const struct ndm_bio *bio)
{
  return clone->op == NDM_OP_ZERO && (clone->flags & NDM_REQ_FAST_ZERO) &&
    ndm_bio_failed (bio) && bio->status == ENOTSUP;
}

/* With m->lock held: the legs whose bios failed in this round, added to
 * io->failed; their errors counted.  Those that left service now are
 * added to fence.
 */
static uint32_t
note_failed_legs_locked (struct mirror_c *m, struct ndm_clone *clone,
                         struct mirror_io *io, GPtrArray *fence)
{
  struct ndm_bio *bio;
  uint32_t now = 0;

  ndm_assert_held (&m->lock);
  ndm_clone_for_each_bio (bio, clone) {
    struct mirror_leg *leg;
    g_autofree char *why = NULL;
    char letter;

    if (!ndm_bio_failed (bio) || fast_zero_refused_by (clone, bio))
      continue;
    leg = leg_of_device (m, bio->dev);
    if (leg != NULL && clone->op == NDM_OP_READ && bio->status == EIO)
      note_read_eio_locked (m, io, leg, bio);
    if (leg == NULL || (now & (1u << leg->idx)))
      continue;                 /* the log device, or counted */
    now |= 1u << leg->idx;
    why = g_strdup_printf ("%s on a %" PRIu64 "-byte %s at byte %" PRIu64,
                           ndm_errno_name (bio->status), bio->len,
                           ndm_op_name (clone->op), bio->dev_offset);
    if (clone->op == NDM_OP_READ) {
      leg->read_errors++;
      set_letter_locked (m, leg, 'R');
      /* A lost connection is the leg's, not the block's. */
      if (m->handle_errors && ndm_errno_is_path_error (bio->status) &&
          leg_missed_write_locked (m, leg, 'R', why, false))
        g_ptr_array_add (fence, leg);
      continue;
    }
    leg->write_errors++;
    letter = clone->op == NDM_OP_FLUSH ? 'F' : 'D';
    if (leg_missed_write_locked (m, leg, letter, why, false))
      g_ptr_array_add (fence, leg);
  }
  io->failed |= now;
  return now;
}

/* A target error from every leg is the request's answer (R5); anything
 * else once no leg is left is EIO.
 */
static int
all_legs_failed (int error)
{
  return error != 0 && !ndm_errno_is_path_error (error) ? error : EIO;
}

static int
end_io_write (struct mirror_c *m, struct ndm_clone *clone,
              struct mirror_io *io, int *error, GPtrArray *fence)
{
  struct ndm_bio *bio;
  uint32_t failed_now;
  unsigned i;

  ndm_mutex_lock (&m->lock);
  failed_now = note_failed_legs_locked (m, clone, io, fence);
  ndm_clone_for_each_bio (bio, clone)
    if (fast_zero_refused_by (clone, bio)) {
      /* The client zeroes another way now; the legs that did zero fast
       * differ from this one until then, or until the resync.
       */
      uint64_t toff = ndm_clone_target_offset (clone);

      ndm_rh_mark_nosync_locked (&m->rh, ndm_rh_region (&m->rh, toff),
                                 ndm_rh_region (&m->rh,
                                                toff + clone->len - 1));
      ndm_rh_write_end_locked (&m->rh, &io->u.rh);
      ndm_mutex_unlock (&m->lock);
      *error = ENOTSUP;
      return NDM_ENDIO_ERROR;
    }
  if (failed_now == 0 && *error == 0) {
    ndm_rh_write_end_locked (&m->rh, &io->u.rh);
    ndm_mutex_unlock (&m->lock);
    return NDM_ENDIO_DONE;
  }
  for (i = 0; i < m->nr_legs; i++)
    if (m->legs[i].chk.active && m->legs[i].in_sync &&
        (io->failed & (1u << i)))
      goto fail;                /* the last leg in sync missed it */
  for (i = 0; i < m->nr_legs; i++)
    if (m->legs[i].chk.active && !(io->failed & (1u << i))) {
      /* R4: the tail again, on the legs that did not fail it; its map
       * waits for the header commit that records the failed leg.
       */
      ndm_mutex_unlock (&m->lock);
      return NDM_ENDIO_REQUEUE;
    }
 fail:
  ndm_rh_write_end_locked (&m->rh, &io->u.rh);
  ndm_mutex_unlock (&m->lock);
  *error = all_legs_failed (*error);
  return NDM_ENDIO_ERROR;
}

/* A flush succeeds if one leg flushed and every leg still in service
 * did: a leg that did not has left service (or is out of sync), so what
 * it holds is not relied on.  A leg whose flush never started (cancelled
 * by an earlier start failure, R6) and that is still in service is
 * flushed in another round (R9: every live leg).
 */
static int
end_io_flush (struct mirror_c *m, struct ndm_clone *clone,
              struct mirror_io *io, int *error, GPtrArray *fence)
{
  struct ndm_bio *bio;
  bool one_ok = false, again = false;

  ndm_mutex_lock (&m->lock);
  note_failed_legs_locked (m, clone, io, fence);
  ndm_clone_for_each_bio (bio, clone) {
    struct mirror_leg *leg = leg_of_device (m, bio->dev);

    if (leg == NULL)
      continue;                 /* the log device */
    if (bio->cancelled)
      again |= leg->chk.active && !(io->failed & (1u << leg->idx));
    else if (!ndm_bio_failed (bio))
      one_ok = true;
  }
  ndm_mutex_unlock (&m->lock);
  if (again)
    return NDM_ENDIO_REQUEUE;
  if (*error == 0)
    return NDM_ENDIO_DONE;
  if (one_ok) {
    *error = 0;
    return NDM_ENDIO_DONE;
  }
  *error = all_legs_failed (*error);
  return NDM_ENDIO_ERROR;
}

/* ---- reads ----------------------------------------------------------------------- */

/* With m->lock held: whether every region of [first, last] is the same
 * on every leg in sync.
 */
static bool
regions_in_sync_locked (struct mirror_c *m, uint64_t first, uint64_t last)
{
  uint64_t r;

  ndm_assert_held (&m->lock);
  for (r = first; r <= last; r++) {
    enum ndm_region_state s = ndm_rh_state_locked (&m->rh, r);

    if (s == NDM_RH_NOSYNC || s == NDM_RH_RECOVERING)
      return false;
  }
  return true;
}

/* With m->lock held: the leg for a read, none in skip.  Regions not in
 * sync are read from the default leg only (the first in sync: the one
 * the resync copies from); others by the policy.
 */
static struct mirror_leg *
choose_read_leg_locked (struct mirror_c *m, bool in_sync, uint32_t skip)
{
  struct mirror_leg *best = NULL;
  unsigned i, k;

  ndm_assert_held (&m->lock);
  if (!in_sync || m->read_balance == MIRROR_DEFAULT_LEG) {
    for (i = 0; i < m->nr_legs; i++)
      if (m->legs[i].chk.active && m->legs[i].in_sync &&
          !(skip & (1u << i)))
        return &m->legs[i];
    return NULL;
  }
  /* From the round-robin cursor, so queue-length's ties go in turn. */
  for (k = 0; k < m->nr_legs; k++) {
    struct mirror_leg *leg = &m->legs[(m->rr_next + k) % m->nr_legs];

    if (!leg->chk.active || !leg->in_sync || (skip & (1u << leg->idx)))
      continue;
    if (m->read_balance == MIRROR_ROUND_ROBIN) {
      best = leg;
      break;
    }
    if (best == NULL || leg->inflight < best->inflight)
      best = leg;
  }
  if (best != NULL)
    m->rr_next = (best->idx + 1) % m->nr_legs;
  return best;
}

static int
map_read (struct mirror_c *m, struct ndm_clone *clone, struct mirror_io *io)
{
  uint64_t toff = ndm_clone_target_offset (clone);
  struct mirror_leg *leg;
  bool in_sync;

  ndm_mutex_lock (&m->lock);
  in_sync = regions_in_sync_locked (m, ndm_rh_region (&m->rh, toff),
                                    ndm_rh_region (&m->rh,
                                                   toff + clone->len - 1));
  leg = choose_read_leg_locked (m, in_sync, io->failed);
  if (leg == NULL) {
    ndm_mutex_unlock (&m->lock);
    clone->kill_error = EIO;
    return NDM_MAPIO_KILL;
  }
  leg->inflight++;
  leg->reads++;
  io->u.rd.leg = leg;
  ndm_mutex_unlock (&m->lock);
  ndm_clone_remap (clone, leg->chk.dev, leg->offset + toff);
  return NDM_MAPIO_REMAPPED;
}

/* With m->lock held: the read's leg forgets it. */
static void
read_done_locked (struct mirror_c *m, struct mirror_io *io)
{
  ndm_assert_held (&m->lock);
  if (io->u.rd.leg != NULL) {
    io->u.rd.leg->inflight--;
    io->u.rd.leg = NULL;
  }
}

/* EIO or a lost connection is the leg's: the tail goes to another leg in
 * sync.  EINVAL, ENOSPC and the like describe the request: unchanged
 * (R5).
 */
static int
end_io_read (struct mirror_c *m, struct ndm_clone *clone,
             struct mirror_io *io, int *error, GPtrArray *fence)
{
  ndm_mutex_lock (&m->lock);
  read_done_locked (m, io);
  if (*error != EIO && !ndm_errno_is_path_error (*error)) {
    if (*error == 0 && io->u.rd.eio != 0)
      read_served_locked (m, io);
    ndm_mutex_unlock (&m->lock);
    return NDM_ENDIO_DONE;
  }
  note_failed_legs_locked (m, clone, io, fence);
  ndm_mutex_unlock (&m->lock);
  /* map finds another leg or none (EIO). */
  return NDM_ENDIO_REQUEUE;
}

/* ---- resync ---------------------------------------------------------------------- */

/* A copy moves at most this much at a time: a client command waits behind
 * no more than one piece per leg.
 */
#define MIRROR_COPY_PIECE (1024 * 1024)

/* How often an idle resync thread looks for work: regions go out of sync
 * on owners (a write a leg missed) that do not wake it.
 */
#define MIRROR_SYNC_IDLE_US (200 * G_TIME_SPAN_MILLISECOND)

/* With m->lock held: every region is in sync on every leg in service:
 * the legs out of sync that missed nothing in this table's life (the
 * disk log's failed legs at load) or were reinstated since are sources
 * again, and leave the log's header; a reinstated one's letter is A.  A
 * leg that missed writes here and is still in service stays out (dm
 * keeps its letter; only a reload or a reinstatement clears it).
 * Returns whether a leg became a source.
 */
static bool
resync_done_locked (struct mirror_c *m)
{
  uint64_t in_sync;
  unsigned i;
  bool changed = false;

  ndm_assert_held (&m->lock);
  ndm_mutex_lock (&m->log->lock);
  in_sync = ndm_dirty_log_sync_count_locked (m->log);
  if (in_sync == m->log->nr_regions && !m->rh.degraded)
    for (i = 0; i < m->nr_legs; i++) {
      struct mirror_leg *leg = &m->legs[i];

      if (!leg->chk.active || leg->in_sync || leg->missed)
        continue;
      leg->in_sync = true;
      if (leg->reinstated) {
        leg->health = 'A';
        leg->reinstated = false;
      }
      ndm_dirty_log_set_leg_failed_locked (m->log, i, false);
      changed = true;
    }
  ndm_mutex_unlock (&m->log->lock);
  if (changed)
    ndm_log_info ("mirror: every region in sync: legs back as sources");
  return changed;
}

/* Without the lock: copy [start, start + len) of the target from src to
 * the n legs of dst through the kcopyd, then make it stable there.
 * Returns 0, or -1 with *src_failed set (the read failed) or the legs
 * that failed in *dst_failed (bit i: dst[i]), or neither (stopped: a
 * suspend or the table's end; no memory): the region was not copied
 * and no leg is to blame.
 */
static int
copy_range (struct mirror_c *m, struct mirror_leg *src,
            struct mirror_leg **dst, unsigned n, uint64_t start,
            uint64_t len, bool *src_failed, uint64_t *dst_failed)
{
  struct ndm_io_where from = { src->chk.dev, src->offset + start };
  struct ndm_io_where to[MIRROR_MAX_LEGS];
  unsigned i;
  int err, r;

  for (i = 0; i < n; i++)
    to[i] = (struct ndm_io_where) { dst[i]->chk.dev, dst[i]->offset + start };
  r = ndm_kcopyd_copy (m->kc, &from, to, n, len, src_failed, dst_failed,
                       &err);
  if (r == 0 || *dst_failed != 0)
    __atomic_add_fetch (&m->resynced, len, __ATOMIC_RELAXED);
  return r;
}

/* With m->lock held, after the copy of region r: a source that failed is
 * out of sync (if another leg is in sync); a destination that failed is
 * failed with handle_errors (the region stays out of sync), else, as
 * dm-raid1 tells kcopyd to ignore errors, the region counts as in sync
 * and the leg is no source from now.  Returns whether the region is in
 * sync.  Legs that left service are added to fence.
 */
static bool
copy_ended_locked (struct mirror_c *m, uint64_t r, struct mirror_leg *src,
                   struct mirror_leg **dst, unsigned n, bool src_failed,
                   uint64_t dst_failed, GPtrArray *fence)
{
  g_autofree char *why = NULL;
  bool ok = !src_failed;
  unsigned i;

  ndm_assert_held (&m->lock);
  if (src_failed) {
    why = g_strdup_printf ("a resync read of region %" PRIu64 " failed", r);
    src->read_errors++;
    if (leg_missed_write_locked (m, src, 'R', why, false))
      g_ptr_array_add (fence, src);
    return false;
  }
  for (i = 0; i < n; i++) {
    struct mirror_leg *leg = dst[i];

    if (!(dst_failed & (UINT64_C (1) << i)))
      continue;
    leg->write_errors++;
    if (m->handle_errors) {
      g_free (why);
      why = g_strdup_printf ("a resync write of region %" PRIu64 " failed",
                             r);
      if (leg_missed_write_locked (m, leg, 'S', why, false))
        g_ptr_array_add (fence, leg);
      ok = false;
      continue;
    }
    /* Ignored for the region (else the copy would go round for ever),
     * not for the leg: it is no source from now.
     */
    set_letter_locked (m, leg, 'S');
    leg->missed = true;
    if (leg->in_sync && other_in_sync_locked (m, leg) > 0)
      leg_out_of_sync_locked (m, leg);
  }
  if (ok)
    set_trimmed_locked (m, r, r, false);
  return ok;
}

/* With m->lock held: fence the legs in fence, without the lock. */
static void
fence_legs_locked (struct mirror_c *m, GPtrArray *fence)
{
  unsigned i;

  ndm_assert_held (&m->lock);
  if (fence->len == 0)
    return;
  ndm_mutex_unlock (&m->lock);
  for (i = 0; i < fence->len; i++)
    fence_leg (fence->pdata[i]);
  ndm_mutex_lock (&m->lock);
}

/* With m->lock held, on the sync thread: a copy or compare did not
 * finish and no leg is to blame (stopped, or no memory): wait a while
 * rather than try again at once, unless stopped.
 */
static void
sync_pause_locked (struct mirror_c *m)
{
  ndm_assert_held (&m->lock);
  if (!m->sync_stop)
    ndm_cond_wait_until (&m->rh.cond, &m->lock,
                         g_get_monotonic_time () + MIRROR_SYNC_IDLE_US);
}

/* ---- read repair ----------------------------------------------------------------- */

/* With m->lock held: take a queued repair (its region and leg); false if
 * there is none.
 */
static bool
repair_take_locked (struct mirror_c *m, uint64_t *r, struct mirror_leg **leg)
{
  GHashTableIter it;
  gpointer key;
  uint64_t k;

  ndm_assert_held (&m->lock);
  g_hash_table_iter_init (&it, m->repairs);
  if (!g_hash_table_iter_next (&it, &key, NULL))
    return false;
  k = *(uint64_t *) key;
  g_hash_table_iter_remove (&it);
  *r = k / MIRROR_MAX_LEGS;
  *leg = &m->legs[k % MIRROR_MAX_LEGS];
  return true;
}

/* With m->lock held, after the repair's copy of region r from src to leg.
 * A write that failed is a write failure of leg ('S', as a resync copy's:
 * with handle_errors out of service), and the region is out of sync: leg
 * may hold anything there now.  A read from src that failed is src's read
 * error; leg keeps its bad block until the next read of it fails again.
 */
static void
repair_ended_locked (struct mirror_c *m, uint64_t r, struct mirror_leg *src,
                     struct mirror_leg *leg, bool src_failed,
                     uint64_t dst_failed, GPtrArray *fence)
{
  g_autofree char *why = NULL;

  ndm_assert_held (&m->lock);
  if (src_failed) {
    src->read_errors++;
    set_letter_locked (m, src, 'R');
    ndm_log_error ("mirror: read repair of region %" PRIu64 " on leg %s: "
                   "its read from leg %s failed", r, leg->chk.dev->uri,
                   src->chk.dev->uri);
    return;
  }
  if (dst_failed != 0) {
    leg->write_errors++;
    why = g_strdup_printf ("a read repair's write of region %" PRIu64
                           " failed", r);
    ndm_rh_mark_nosync_locked (&m->rh, r, r);
    if (leg_missed_write_locked (m, leg, 'S', why, false))
      g_ptr_array_add (fence, leg);
    return;
  }
  leg->read_repairs++;
  ndm_log_info ("mirror: read repair: region %" PRIu64 " of leg %s "
                "rewritten from leg %s", r, leg->chk.dev->uri,
                src->chk.dev->uri);
}

/* With m->lock held, on the sync thread: do one queued read repair: copy
 * the region from an in-sync leg (the default, but the one repaired) to
 * the leg whose read failed, the region quiesced as for a resync copy
 * (new writes held, those in flight drained), so a client write is never
 * overwritten by older data.  Done here, before the resync's next copy,
 * because the hash quiesces one region at a time and this thread is the
 * one that does.  A region out of sync by now needs none: the resync
 * copies it to every leg in service.  Returns whether it took one (the
 * lock was released meanwhile); false also when stopped (the repair stays
 * queued for the resume).
 */
static bool
repair_next_locked (struct mirror_c *m)
{
  g_autoptr (GPtrArray) fence = g_ptr_array_new ();
  uint64_t bytes = m->ti->len << NDM_SECTOR_SHIFT;
  struct mirror_leg *leg, *src;
  uint64_t r, start, dst_failed;
  bool src_failed;
  int done;

  ndm_assert_held (&m->lock);
  if (m->sync_stop || !repair_take_locked (m, &r, &leg))
    return false;
  src = choose_read_leg_locked (m, false, 1u << leg->idx);
  if (!leg->chk.active || src == NULL)
    return true;                /* out of service since, or no source */
  if (!ndm_rh_verify_prepare_locked (&m->rh, r)) {
    if (!m->rh.recovery_stopped)
      return true;              /* out of sync: the resync's */
    repair_add_locked (m, leg, r);
    return false;
  }
  if (!ndm_rh_recovery_wait_locked (&m->rh)) {
    repair_add_locked (m, leg, r);
    return false;
  }
  start = r << m->rh.region_shift;
  ndm_mutex_unlock (&m->lock);
  done = copy_range (m, src, &leg, 1, start,
                     MIN (m->rh.region_size, bytes - start), &src_failed,
                     &dst_failed);
  ndm_mutex_lock (&m->lock);
  if (done == -1 && !src_failed && dst_failed == 0) {
    /* Not copied, no leg to blame (stopped): again at resume. */
    repair_add_locked (m, leg, r);
    ndm_rh_verify_end_locked (&m->rh);
    sync_pause_locked (m);
    return true;
  }
  repair_ended_locked (m, r, src, leg, src_failed, dst_failed, fence);
  ndm_rh_verify_end_locked (&m->rh);
  fence_legs_locked (m, fence);
  return true;
}

/* ---- verify (DRBD's online verify) ----------------------------------------- */

/* With m->lock held, after region r was compared on legs[0, n): a read
 * that failed is that leg's read error ('R'), and with EIO (err is the
 * first failure's: kcopyd keeps one) its region is repaired as a client
 * read's would be; a leg that differs makes the region a mismatch,
 * recorded, nothing changed.
 */
static void
verify_compared_locked (struct mirror_c *m, uint64_t r,
                        struct mirror_leg **legs, unsigned n,
                        uint64_t differs, uint64_t failed, int err)
{
  unsigned i;

  ndm_assert_held (&m->lock);
  for (i = 0; i < n; i++)
    if (failed & (UINT64_C (1) << i)) {
      legs[i]->read_errors++;
      set_letter_locked (m, legs[i], 'R');
      if (err == EIO)
        repair_add_locked (m, legs[i], r);
    }
  if ((differs & ~failed) == 0)
    return;
  g_array_append_val (m->verify_diff, r);
  ndm_log_info ("mirror: verify: region %" PRIu64 " differs between legs",
                r);
}

/* With m->lock held, on the sync thread, when there is nothing to copy:
 * compare the next region of a running verify on the legs in sync,
 * quiesced as for a copy (new writes held, those in flight drained), so a
 * write half landed is never a mismatch.  Regions not in sync are the
 * resync's, trimmed ones may differ rightly: passed over.  At the end,
 * an event.  Returns whether it took a region (the lock was released
 * meanwhile); false when stopped, the region to be compared at resume.
 */
static bool
verify_next_locked (struct mirror_c *m)
{
  uint64_t bytes = m->ti->len << NDM_SECTOR_SHIFT;
  struct ndm_io_where where[MIRROR_MAX_LEGS];
  struct mirror_leg *legs[MIRROR_MAX_LEGS];
  uint64_t r, start, differs, failed;
  unsigned i, n = 0, gen;
  int done, err;

  ndm_assert_held (&m->lock);
  if (m->verify != MIRROR_VERIFY_RUNNING || m->sync_stop)
    return false;
  r = m->verify_next;
  if (r == m->rh.nr_regions) {
    m->verify = MIRROR_VERIFY_IDLE;
    ndm_log_info ("mirror: verify done: %u of %" PRIu64 " regions differ",
                  m->verify_diff->len, m->rh.nr_regions);
    ndm_target_event (m->ti);
    return false;
  }
  start = r << m->rh.region_shift;
  for (i = 0; i < m->nr_legs; i++)
    if (m->legs[i].chk.active && m->legs[i].in_sync) {
      legs[n] = &m->legs[i];
      where[n++] = (struct ndm_io_where) { m->legs[i].chk.dev,
                                           m->legs[i].offset + start };
    }
  if (n < 2 || (m->trimmed[r / 8] & (1u << (r % 8))) ||
      !ndm_rh_verify_prepare_locked (&m->rh, r)) {
    m->verify_next++;           /* nothing to compare */
    /* Let owners in: a verify of a degraded mirror passes every region
     * here.
     */
    ndm_mutex_unlock (&m->lock);
    g_thread_yield ();
    ndm_mutex_lock (&m->lock);
    return true;
  }
  if (!ndm_rh_recovery_wait_locked (&m->rh))
    return false;
  gen = m->verify_gen;
  ndm_mutex_unlock (&m->lock);
  done = ndm_kcopyd_compare (m->kc, where, n,
                             MIN (m->rh.region_size, bytes - start),
                             &differs, &failed, &err);
  ndm_mutex_lock (&m->lock);
  ndm_rh_verify_end_locked (&m->rh);
  if (done == -1 && failed == 0)
    /* Stopped (compared again at resume), or no memory for a waiter:
     * not at once again.
     */
    sync_pause_locked (m);
  else if (gen == m->verify_gen) {
    verify_compared_locked (m, r, legs, n, differs, failed, err);
    m->verify_next++;
  }
  return true;
}

/* ndm-mirror-sync: dm-raid1's recovery, one region at a time.  The region
 * is made RECOVERING (new writes to it held), its writes in flight
 * drain, it is copied from the default leg to every other leg in
 * service, and its held writes are released: they were mapped after the
 * copy, so the copy never overwrites them and none is lost.
 */
static gpointer
sync_thread (gpointer data)
{
  struct mirror_c *m = data;
  uint64_t bytes = m->ti->len << NDM_SECTOR_SHIFT;

  ndm_mutex_lock (&m->lock);
  while (!m->sync_stop) {
    struct mirror_leg *src, *dst[MIRROR_MAX_LEGS];
    g_autoptr (GPtrArray) fence = NULL;
    uint64_t r, start, len, dst_failed;
    bool src_failed, copied, ok;
    unsigned i, n = 0;

    if (repair_next_locked (m))
      continue;                 /* read repairs first: a client saw them */
    if (!ndm_rh_recovery_prepare_locked (&m->rh, &r)) {
      if (resync_done_locked (m))
        /* Nothing to copy to a reinstated leg: in sync at once. */
        ndm_target_event (m->ti);
      if (verify_next_locked (m))
        continue;
      m->syncing = false;
      ndm_cond_wait_until (&m->rh.cond, &m->lock,
                           g_get_monotonic_time () + MIRROR_SYNC_IDLE_US);
      continue;
    }
    if (!ndm_rh_recovery_wait_locked (&m->rh))
      continue;                 /* stopped meanwhile: NOSYNC again */
    src = choose_read_leg_locked (m, false, 0);
    for (i = 0; src != NULL && i < m->nr_legs; i++)
      if (m->legs[i].chk.active && &m->legs[i] != src)
        dst[n++] = &m->legs[i];
    if (src == NULL || n == 0) {
      /* No source (every leg in sync is out) or nowhere to copy to:
       * the region waits, and so does the thread.
       */
      ndm_rh_recovery_end_locked (&m->rh, src != NULL);
      ndm_cond_wait_until (&m->rh.cond, &m->lock,
                           g_get_monotonic_time () + MIRROR_SYNC_IDLE_US);
      continue;
    }
    m->syncing = true;
    start = r << m->rh.region_shift;
    len = MIN (m->rh.region_size, bytes - start);
    ndm_mutex_unlock (&m->lock);

    copied = copy_range (m, src, dst, n, start, len, &src_failed,
                         &dst_failed) == 0;

    fence = g_ptr_array_new ();
    ndm_mutex_lock (&m->lock);
    /* Not copied and no leg to blame (stopped): out of sync still. */
    ok = (copied || src_failed || dst_failed != 0) &&
      copy_ended_locked (m, r, src, dst, n, src_failed, dst_failed, fence);
    ndm_rh_recovery_end_locked (&m->rh, ok);
    if (ok) {
      uint64_t in_sync;

      ndm_mutex_lock (&m->log->lock);
      in_sync = ndm_dirty_log_sync_count_locked (m->log);
      ndm_mutex_unlock (&m->log->lock);
      if (in_sync == m->log->nr_regions) {
        resync_done_locked (m);
        ndm_log_info ("mirror: resync complete: %" PRIu64 "/%" PRIu64
                      " regions in sync", in_sync, m->log->nr_regions);
        ndm_target_event (m->ti);
      }
    }
    if (fence->len > 0) {
      ndm_mutex_unlock (&m->lock);
      for (i = 0; i < fence->len; i++)
        fence_leg (fence->pdata[i]);
      ndm_mutex_lock (&m->lock);
    }
    if (!ok && !m->sync_stop)
      /* Not at once again: a block that fails for good would spin. */
      ndm_cond_wait_until (&m->rh.cond, &m->lock,
                           g_get_monotonic_time () + MIRROR_SYNC_IDLE_US);
  }
  m->syncing = false;
  ndm_mutex_unlock (&m->lock);
  return NULL;
}

/* Control thread.  The copy in flight ends first (io-timeout bounds it);
 * a region still waiting for its writes to drain goes back out of sync
 * and its held writes go on.
 */
static void
stop_sync_thread (struct mirror_c *m)
{
  GThread *t;

  ndm_mutex_lock (&m->lock);
  m->sync_stop = true;
  ndm_rh_stop_recovery_locked (&m->rh);
  /* A copy waiting for its throttle or the bounce cap ends now. */
  ndm_kcopyd_stop (m->kc, true);
  t = m->sync_thread;
  m->sync_thread = NULL;
  ndm_mutex_unlock (&m->lock);
  if (t != NULL)
    g_thread_join (t);
}

static void
start_sync_thread (struct mirror_c *m)
{
  ndm_mutex_lock (&m->lock);
  m->sync_stop = false;
  ndm_kcopyd_stop (m->kc, false);
  ndm_rh_start_recovery_locked (&m->rh);
  if (m->sync_thread == NULL)
    m->sync_thread = ndm_thread_try_new ("ndm-mirror-sync", sync_thread, m);
  ndm_mutex_unlock (&m->lock);
}

/* ---- map and end_io -------------------------------------------------------------- */

static int
mirror_map (struct ndm_target *ti, struct ndm_clone *clone)
{
  struct mirror_c *m = ti->private;
  struct mirror_io *io = ndm_clone_per_io (clone);

  if (clone->op == NDM_OP_FLUSH)
    return map_flush (m, clone, io);
  if (ndm_op_writes (clone->op))
    return map_write (m, clone, io);
  /* Reads, cache and block status go where a read would. */
  return map_read (m, clone, io);
}

static int
mirror_end_io (struct ndm_target *ti, struct ndm_clone *clone, int *error)
{
  struct mirror_c *m = ti->private;
  struct mirror_io *io = ndm_clone_per_io (clone);
  g_autoptr (GPtrArray) fence = g_ptr_array_new ();
  unsigned i;
  int r;

  if (clone->op == NDM_OP_FLUSH)
    r = end_io_flush (m, clone, io, error, fence);
  else if (ndm_op_writes (clone->op))
    r = end_io_write (m, clone, io, error, fence);
  else
    r = end_io_read (m, clone, io, error, fence);
  for (i = 0; i < fence->len; i++)
    fence_leg (fence->pdata[i]);
  return r;
}

/* The clone will not be mapped again: give back its counts. */
static void
mirror_release_clone (struct ndm_target *ti, struct ndm_clone *clone)
{
  struct mirror_c *m = ti->private;
  struct mirror_io *io = ndm_clone_per_io (clone);

  if (clone->op == NDM_OP_FLUSH)
    return;
  ndm_mutex_lock (&m->lock);
  if (ndm_op_writes (clone->op))
    ndm_rh_write_end_locked (&m->rh, &io->u.rh);
  else
    read_done_locked (m, io);
  ndm_mutex_unlock (&m->lock);
}

/* ---- suspend and resume ------------------------------------------------------- */

/* Nothing of the table runs now: the log's thread stops, so no commit
 * goes on past the table (a suspend's next table, or this one at its
 * resume, finds the log as it was left).  Then dm's flush at suspend: a
 * last clear commit, so that the log on the device marks only regions
 * out of sync or still written (none after a drain), and a clean stop
 * (SIGTERM, or suspend then exit) costs the next start no copy.
 */
static void
mirror_postsuspend (struct ndm_target *ti)
{
  struct mirror_c *m = ti->private;
  int64_t r;
  int err = 0;

  stop_sync_thread (m);
  stop_log_thread (m);
  r = ndm_dirty_log_suspend (m->log, flush_legs, m, &err);
  if (r > 0)
    ndm_rh_log_committed (&m->rh, r, false);
  else if (r == -1) {
    ndm_log_error ("mirror: dirty log commit at suspend failed: %s: its "
                   "marks stay, the next start copies those regions",
                   ndm_errno_name (err));
    ndm_target_event (m->ti);
    ndm_rh_log_committed (&m->rh, 0, true);
  }
}

/* The resync stops: its ndm_target_io passes no suspend gate, and a
 * write held for a region's copy must go on for the drain.
 */
static void
mirror_presuspend (struct ndm_target *ti, bool noflush)
{
  stop_sync_thread (ti->private);
}

static void
mirror_resume (struct ndm_target *ti)
{
  struct mirror_c *m = ti->private;

  if (!m->log->loaded)
    load_log (m);
  else
    ndm_dirty_log_resume (m->log);
  /* A disk log's marks are committed from the first resume on: before
   * it, nbdkit may not have forked yet.  Writes wait for the thread;
   * without one (R13: it could not be made) they wait until a resume
   * makes it.
   */
  if (m->log->dev != NULL && m->log_thread == NULL) {
    ndm_mutex_lock (&m->log->lock);
    m->log_thread_stop = false;
    ndm_mutex_unlock (&m->log->lock);
    m->log_thread = ndm_thread_try_new ("ndm-mirror-log", log_thread, m);
  }
  start_sync_thread (m);
  ndm_mutex_lock (&m->lock);
  ndm_checker_resume_locked (&m->checker);
  ndm_mutex_unlock (&m->lock);
}

/* ---- the legs' checker ---------------------------------------------------------- */

/* With m->lock held: why the failed leg may not come back now, or NULL.
 * It must answer as the same data, and nothing a cut connection of it
 * was sent may land any more (R10): the resync would copy under it.
 */
static char *
leg_cannot_return_locked (struct mirror_c *m, struct mirror_leg *leg)
{
  struct ndm_device *dev = leg->chk.dev;
  char *misfit;
  unsigned ghosts;

  ndm_assert_held (&m->lock);
  if (__atomic_load_n (&dev->absent, __ATOMIC_ACQUIRE))
    return g_strdup ("it has not been reached yet");
  if (dev->size != m->checker.size)
    return g_strdup_printf ("it has %" PRIu64 " bytes, the other legs %"
                            PRIu64 ": not the same data", dev->size,
                            m->checker.size);
  misfit = leg_block_misfit (m, leg);
  if (misfit != NULL)
    return misfit;
  if (dev->ops->connected != NULL && !dev->ops->connected (dev))
    return g_strdup ("its connections are not back yet");
  ghosts = dev->ops->unresolved_ghosts != NULL ?
    dev->ops->unresolved_ghosts (dev) : 0;
  if (ghosts > 0)
    return g_strdup_printf ("%u cut connection%s may still land writes "
                            "(R10): waiting for its server to close %s, "
                            "or for device_dead", ghosts,
                            ghosts == 1 ? "" : "s",
                            ghosts == 1 ? "it" : "them");
  return NULL;
}

/* With m->lock held: put the failed leg back, out of sync.  What it
 * missed is NOSYNC already (written while the hash was degraded, or
 * marked when it failed), or everything for a leg out since load; the
 * resync copies it once no leg is out of service.
 */
static void
reinstate_leg_locked (struct mirror_c *m, struct mirror_leg *leg,
                      const char *by)
{
  unsigned i;

  ndm_assert_held (&m->lock);
  if (!ndm_checker_reinstate_locked (&m->checker, &leg->chk))
    return;
  leg->in_sync = false;
  leg->missed = false;
  leg->reinstated = true;
  if (leg->stale) {
    ndm_rh_mark_nosync_locked (&m->rh, 0, m->rh.nr_regions - 1);
    leg->stale = false;
  }
  m->rh.degraded = false;
  for (i = 0; i < m->nr_legs; i++)
    if (!m->legs[i].chk.active)
      m->rh.degraded = true;
  ndm_log_info ("mirror: leg %s reinstated (%s): resyncing", leg->chk.dev->uri,
                by);
  g_cond_broadcast (&m->rh.cond);
  ndm_target_event (m->ti);
}

static bool
checker_fail_locked (void *owner, struct ndm_checked *item, const char *why)
{
  struct mirror_c *m = owner;

  return leg_missed_write_locked (m, leg_of (item), 'U', why, true);
}

static void
checker_reinstate_locked (void *owner, struct ndm_checked *item)
{
  struct mirror_c *m = owner;
  g_autofree char *why = leg_cannot_return_locked (m, leg_of (item));

  if (why == NULL) {
    reinstate_leg_locked (m, leg_of (item), "it answers");
    return;
  }
  /* Asked every round: said once. */
  if (item->reason == NULL || strcmp (item->reason, why) != 0) {
    ndm_log_info ("mirror: leg %s answers; not reinstated: %s",
                  item->dev->uri, why);
    g_free (item->reason);
    item->reason = g_steal_pointer (&why);
  }
}

static void
checker_fence (void *owner, struct ndm_checked *item)
{
  fence_leg (leg_of (item));
}

static const struct ndm_checker_ops mirror_checker_ops = {
  .target = "mirror", .noun = "leg", .thread_name = "ndm-mirror-check",
  .fail_locked = checker_fail_locked,
  .reinstate_locked = checker_reinstate_locked,
  .fence = checker_fence,
};

/* ---- messages ---------------------------------------------------------------- */

static struct mirror_leg *
find_leg (struct mirror_c *m, const char *msg, const char *uri,
          GError **err)
{
  unsigned i;

  for (i = 0; i < m->nr_legs; i++)
    if (strcmp (m->legs[i].chk.dev->uri, uri) == 0)
      return &m->legs[i];
  g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
               "%s: no leg '%s' in this target", msg, uri);
  return NULL;
}

/* As a write error with handle_errors: out of service, fenced. */
static int
message_fail_leg (struct ndm_target *ti, unsigned argc, char **argv,
                  GString *result, GError **err)
{
  struct mirror_c *m = ti->private;
  struct mirror_leg *leg = find_leg (m, argv[0], argv[1], err);
  bool fence = false, last;

  if (leg == NULL)
    return -1;
  ndm_mutex_lock (&m->lock);
  last = leg->chk.active && leg->in_sync && other_in_sync_locked (m, leg) == 0;
  if (!last)
    fence = leg_missed_write_locked (m, leg, 'U', "failed by message", true);
  ndm_mutex_unlock (&m->lock);
  if (last) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "fail_leg: leg %s is the last leg in sync: it stays in "
                 "service", argv[1]);
    return -1;
  }
  if (fence)
    fence_leg (leg);
  return 0;
}

/* What the checker does for a leg that answers, on demand (flap damping
 * aside: the operator decides).
 */
static int
message_reinstate_leg (struct ndm_target *ti, unsigned argc, char **argv,
                       GString *result, GError **err)
{
  struct mirror_c *m = ti->private;
  struct mirror_leg *leg = find_leg (m, argv[0], argv[1], err);
  g_autofree char *why = NULL;

  if (leg == NULL)
    return -1;
  ndm_mutex_lock (&m->lock);
  if (leg->chk.active)
    why = g_strdup ("it is in service");
  else
    why = leg_cannot_return_locked (m, leg);
  if (why == NULL)
    reinstate_leg_locked (m, leg, "by message");
  ndm_mutex_unlock (&m->lock);
  if (why != NULL) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "reinstate_leg: leg %s not reinstated: %s", argv[1], why);
    return -1;
  }
  return 0;
}

/* Every region out of sync: the resync copies all of it from the
 * default leg again (a leg whose export was replaced behind our back).
 * The legs keep their state: those in sync stay sources, and reads of a
 * region not copied yet go to the default leg only, as for any region
 * out of sync.  A disk log marks the regions, so a restart before the
 * end copies what is left.
 */
static int
message_resync (struct ndm_target *ti, unsigned argc, char **argv,
                GString *result, GError **err)
{
  struct mirror_c *m = ti->private;

  ndm_mutex_lock (&m->lock);
  ndm_rh_mark_nosync_locked (&m->rh, 0, m->rh.nr_regions - 1);
  g_cond_broadcast (&m->rh.cond);
  ndm_mutex_unlock (&m->lock);
  ndm_log_info ("mirror: every region out of sync by message: resyncing");
  ndm_target_event (ti);
  return 0;
}

/* This mirror's cap from now, over the resync-rate key's; a throttle
 * wait in progress looks at it at once.
 */
static int
message_resync_rate (struct ndm_target *ti, unsigned argc, char **argv,
                     GString *result, GError **err)
{
  struct mirror_c *m = ti->private;
  uint64_t rate;

  if (!ndm_config_parse_rate (argv[1], &rate)) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "resync_rate '%s': expected a size per second (64M, "
                 "64M/s) or 0", argv[1]);
    return -1;
  }
  ndm_kcopyd_set_rate (m->kc, rate);
  return 0;
}

/* DRBD's online verify, on the sync thread: compare the legs in sync
 * region by region; a verify running starts again from region 0.
 */
static int
message_verify (struct ndm_target *ti, unsigned argc, char **argv,
                GString *result, GError **err)
{
  struct mirror_c *m = ti->private;

  ndm_mutex_lock (&m->lock);
  m->verify = MIRROR_VERIFY_RUNNING;
  m->verify_gen++;
  m->verify_next = 0;
  g_array_set_size (m->verify_diff, 0);
  g_cond_broadcast (&m->rh.cond);
  ndm_mutex_unlock (&m->lock);
  ndm_log_info ("mirror: verify started");
  return 0;
}

/* The regions the last verify found different go out of sync: the
 * resync copies them from the default leg.  Not before a verify ended:
 * its list is not complete.
 */
static int
message_repair (struct ndm_target *ti, unsigned argc, char **argv,
                GString *result, GError **err)
{
  struct mirror_c *m = ti->private;
  enum mirror_verify v;
  uint64_t checked;
  unsigned i;

  ndm_mutex_lock (&m->lock);
  v = m->verify;
  checked = m->verify_next;
  if (v == MIRROR_VERIFY_IDLE) {
    for (i = 0; i < m->verify_diff->len; i++) {
      uint64_t r = g_array_index (m->verify_diff, uint64_t, i);

      ndm_rh_mark_nosync_locked (&m->rh, r, r);
    }
    g_cond_broadcast (&m->rh.cond);
    ndm_log_info ("mirror: repair: %u regions out of sync, to be copied "
                  "from the default leg", m->verify_diff->len);
  }
  ndm_mutex_unlock (&m->lock);
  if (v == MIRROR_VERIFY_NEVER) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "repair: no verify has run");
    return -1;
  }
  if (v == MIRROR_VERIFY_RUNNING) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_MESSAGE,
                 "repair: a verify is running (%" PRIu64 "/%" PRIu64
                 " regions checked): repair once it has ended", checked,
                 m->rh.nr_regions);
    return -1;
  }
  return 0;
}

/* docs/targets/mirror.md, "Messages"; device_dead is the core's. */
static const struct ndm_target_message mirror_messages[] = {
  { "fail_leg", 1, 1, "<leg>", message_fail_leg },
  { "reinstate_leg", 1, 1, "<leg>", message_reinstate_leg },
  { "resync", 0, 0, NULL, message_resync },
  { "resync_rate", 1, 1, "<SIZE/s>", message_resync_rate },
  { "verify", 0, 0, NULL, message_verify },
  { "repair", 0, 0, NULL, message_repair },
  { NULL },
};

/* ---- status ---------------------------------------------------------------------- */

/* dm-raid1's layouts:
 * info:  <#legs> <leg>... <in sync>/<regions> 1 <letters> <log status>
 * table: <log words> <#legs> {<leg> <offset>}... [<#features> <feature>...]
 */
static void
mirror_status (struct ndm_target *ti, enum ndm_status_type type,
               GString *result)
{
  struct mirror_c *m = ti->private;
  unsigned i, nf;

  ndm_mutex_lock (&m->lock);
  if (type == NDM_STATUS_INFO) {
    uint64_t in_sync;

    g_string_append_printf (result, "%u ", m->nr_legs);
    for (i = 0; i < m->nr_legs; i++)
      g_string_append_printf (result, "%s ", m->legs[i].chk.dev->uri);
    ndm_mutex_lock (&m->log->lock);
    in_sync = ndm_dirty_log_sync_count_locked (m->log);
    ndm_mutex_unlock (&m->log->lock);
    g_string_append_printf (result, "%" PRIu64 "/%" PRIu64 " 1 ", in_sync,
                            m->log->nr_regions);
    for (i = 0; i < m->nr_legs; i++)
      g_string_append_c (result, m->legs[i].health);
    g_string_append_c (result, ' ');
    ndm_dirty_log_status (m->log, type, result);
    if (m->verify != MIRROR_VERIFY_NEVER)
      g_string_append_printf (result, " verify %" PRIu64 "/%" PRIu64 " %u",
                              m->verify_next, m->rh.nr_regions,
                              m->verify_diff->len);
  }
  else {
    ndm_dirty_log_status (m->log, type, result);
    g_string_append_printf (result, "%u", m->nr_legs);
    for (i = 0; i < m->nr_legs; i++)
      g_string_append_printf (result, " %s %" PRIu64,
                              m->legs[i].chk.dev->uri,
                              m->legs[i].offset >> NDM_SECTOR_SHIFT);
    /* read_balance only when not the default: a dm table comes back as
     * it was.
     */
    nf = m->handle_errors + m->keep_log +
      (m->read_balance != MIRROR_QUEUE_LENGTH) * 2;
    if (nf > 0)
      g_string_append_printf (result, " %u", nf);
    if (m->handle_errors)
      g_string_append (result, " handle_errors");
    if (m->keep_log)
      g_string_append (result, " keep_log");
    if (m->read_balance != MIRROR_QUEUE_LENGTH)
      g_string_append_printf (result, " read_balance %s",
                              read_balance_names[m->read_balance]);
  }
  ndm_mutex_unlock (&m->lock);
}

/* With m->lock held. */
static const char *
leg_state_locked (struct mirror_c *m, struct mirror_leg *leg)
{
  ndm_assert_held (&m->lock);
  return !leg->chk.active ? "failed" : leg->in_sync ? "in_sync"
    : "resyncing";
}

/* With m->lock held: the "resync" object, {"state":"running"|"idle",
 * "rate_limit":N,"rate":N,"eta_ms":N,"copied":N}: the cap and the
 * measured rate in bytes/s, the time left at that rate for the regions
 * out of sync (0 when idle or before a rate is measured), the bytes
 * copied so far.
 */
static void
resync_json_locked (struct mirror_c *m, uint64_t in_sync, JsonBuilder *b)
{
  uint64_t bytes, rate, eta_ms = 0;
  double left;

  ndm_assert_held (&m->lock);
  ndm_kcopyd_stats (m->kc, &bytes, &rate);
  left = (double) (m->log->nr_regions - in_sync) * m->log->region_size;
  if (m->syncing && rate > 0)
    eta_ms = (uint64_t) (left * 1000 / rate);
  json_builder_begin_object (b);
  ndm_json_member_string (b, "state", m->syncing ? "running" : "idle");
  ndm_json_member_uint (b, "rate_limit", ndm_kcopyd_rate (m->kc));
  ndm_json_member_uint (b, "rate", rate);
  ndm_json_member_uint (b, "eta_ms", eta_ms);
  ndm_json_member_uint (b, "copied",
                        __atomic_load_n (&m->resynced, __ATOMIC_RELAXED));
  json_builder_end_object (b);
}

/* The most regions the JSON lists of a verify's mismatches. */
#define MIRROR_VERIFY_LIST 64

/* With m->lock held: the "verify" object, {"state":"running"|"idle",
 * "checked":N,"mismatches":N,"regions":[the first MIRROR_VERIFY_LIST]}.
 */
static void
verify_json_locked (struct mirror_c *m, JsonBuilder *b)
{
  unsigned i;

  ndm_assert_held (&m->lock);
  json_builder_begin_object (b);
  ndm_json_member_string (b, "state", m->verify == MIRROR_VERIFY_RUNNING
                          ? "running" : "idle");
  ndm_json_member_uint (b, "checked", m->verify_next);
  ndm_json_member_uint (b, "mismatches", m->verify_diff->len);
  json_builder_set_member_name (b, "regions");
  json_builder_begin_array (b);
  for (i = 0; i < m->verify_diff->len && i < MIRROR_VERIFY_LIST; i++)
    json_builder_add_int_value (b, g_array_index (m->verify_diff, uint64_t,
                                                  i));
  json_builder_end_array (b);
  json_builder_end_object (b);
}

/* With m->lock held: a leg's object, {"leg":uri,"state":"in_sync"|
 * "resyncing"|"failed","health":"A","reason":".."|null,"fail_count":N,
 * "damped_ms":N,"write_errors":N,"read_errors":N,"read_repairs":N,
 * "reads":N}.
 */
static void
leg_json_locked (struct mirror_c *m, struct mirror_leg *leg, JsonBuilder *b)
{
  char health[2] = { leg->health, '\0' };

  ndm_assert_held (&m->lock);
  json_builder_begin_object (b);
  ndm_json_member_string (b, "leg", leg->chk.dev->uri);
  ndm_json_member_string (b, "state", leg_state_locked (m, leg));
  /* dm's letter, as the status line's: why in one letter, kept apart
   * from state (A alive, D write, S sync, R read, F flush failed, U not
   * yet claimed).
   */
  ndm_json_member_string (b, "health", health);
  ndm_checked_json_locked (&leg->chk, b);
  ndm_json_member_uint (b, "write_errors", leg->write_errors);
  ndm_json_member_uint (b, "read_errors", leg->read_errors);
  ndm_json_member_uint (b, "read_repairs", leg->read_repairs);
  ndm_json_member_uint (b, "reads", leg->reads);
  json_builder_end_object (b);
}

/* {"regions":N,"in_sync":N,"region_size":B,"handle_errors":..,
 *  "keep_log":..,"read_balance":"..","default_leg":uri|null,"log":{..},
 *  "resync":{..},"verify":{..},"legs":[{..}]}
 */
static void
mirror_status_json (struct ndm_target *ti, JsonBuilder *b)
{
  struct mirror_c *m = ti->private;
  struct mirror_leg *def;
  uint64_t in_sync;
  unsigned i;

  ndm_mutex_lock (&m->lock);
  ndm_mutex_lock (&m->log->lock);
  in_sync = ndm_dirty_log_sync_count_locked (m->log);
  ndm_mutex_unlock (&m->log->lock);
  json_builder_begin_object (b);
  ndm_json_member_uint (b, "regions", m->log->nr_regions);
  ndm_json_member_uint (b, "in_sync", in_sync);
  ndm_json_member_uint (b, "region_size", m->log->region_size);
  ndm_json_member_bool (b, "handle_errors", m->handle_errors);
  ndm_json_member_bool (b, "keep_log", m->keep_log);
  ndm_json_member_string (b, "read_balance",
                          read_balance_names[m->read_balance]);
  def = choose_read_leg_locked (m, false, 0);
  ndm_json_member_string (b, "default_leg",
                          def != NULL ? def->chk.dev->uri : NULL);
  json_builder_set_member_name (b, "log");
  ndm_dirty_log_status_json (m->log, b);
  json_builder_set_member_name (b, "resync");
  resync_json_locked (m, in_sync, b);
  json_builder_set_member_name (b, "verify");
  verify_json_locked (m, b);
  json_builder_set_member_name (b, "legs");
  json_builder_begin_array (b);
  for (i = 0; i < m->nr_legs; i++)
    leg_json_locked (m, &m->legs[i], b);
  json_builder_end_array (b);
  json_builder_end_object (b);
  ndm_mutex_unlock (&m->lock);
}

/* stats: read repairs N, resynced B bytes, verify mismatches M (the
 * last verify's), or the same as {"read_repairs":N,"resynced":B,
 * "verify_mismatches":M}.
 */
static void
mirror_stats (struct ndm_target *ti, JsonBuilder *b, GString *out)
{
  struct mirror_c *m = ti->private;
  uint64_t repairs = 0, resynced;
  unsigned i, mismatches;

  ndm_mutex_lock (&m->lock);
  for (i = 0; i < m->nr_legs; i++)
    repairs += m->legs[i].read_repairs;
  mismatches = m->verify_diff->len;
  ndm_mutex_unlock (&m->lock);
  resynced = __atomic_load_n (&m->resynced, __ATOMIC_RELAXED);
  if (b == NULL) {
    g_string_append_printf (out, "read repairs %" PRIu64 ", resynced %"
                            PRIu64 " bytes, verify mismatches %u", repairs,
                            resynced, mismatches);
    return;
  }
  json_builder_begin_object (b);
  ndm_json_member_uint (b, "read_repairs", repairs);
  ndm_json_member_uint (b, "resynced", resynced);
  ndm_json_member_uint (b, "verify_mismatches", mismatches);
  json_builder_end_object (b);
}

/* Each leg's copy, and the log's bytes on its device.  A leg refused for
 * its size is not used: no range to check (as multipath's paths).
 */
static int
mirror_iterate_devices (struct ndm_target *ti, ndm_iterate_devices_fn fn,
                        void *data)
{
  struct mirror_c *m = ti->private;
  g_autoptr (GPtrArray) legs = g_ptr_array_new ();
  unsigned i;
  int r = 0;

  ndm_mutex_lock (&m->lock);
  for (i = 0; i < m->nr_legs; i++) {
    struct mirror_leg *leg = &m->legs[i];
    struct ndm_device *dev = leg->chk.dev;

    if (leg->chk.reason == NULL ||
        (!__atomic_load_n (&dev->absent, __ATOMIC_ACQUIRE) &&
         dev->size == m->checker.size))
      g_ptr_array_add (legs, leg);
  }
  ndm_mutex_unlock (&m->lock);
  for (i = 0; i < legs->len && r == 0; i++) {
    struct mirror_leg *leg = legs->pdata[i];

    r = fn (ti, leg->chk.dev, leg->offset, ti->len << NDM_SECTOR_SHIFT, data);
  }
  if (r == 0 && m->log->dev != NULL)
    r = fn (ti, m->log->dev, 0, ndm_dirty_log_dev_bytes (m->log), data);
  return r;
}

const struct ndm_target_type ndm_mirror_target = {
  .name = "mirror", .version = { 1, 14, 0 },
  .ctr = mirror_ctr, .dtr = mirror_dtr, .map = mirror_map,   /* required */
  .end_io = mirror_end_io, .release_clone = mirror_release_clone,
  .status = mirror_status, .status_json = mirror_status_json,
  .messages = mirror_messages, .stats = mirror_stats,        /* optional */
  .iterate_devices = mirror_iterate_devices,
  .presuspend = mirror_presuspend, .postsuspend = mirror_postsuspend,
  .resume = mirror_resume,
};
