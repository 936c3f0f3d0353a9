/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: a target's background copier, after dm-kcopyd: the copies and
 * compares of a mirror's resync, read repair and verify.
 *
 * A copy goes piece by piece (NDM_KCOPYD_PIECE, less when max-bounce is
 * small), each through a buffer of its own that is charged to the mapped
 * device's bounce budget (R8) for as long as it lives: at the cap the
 * copy waits, it never fails and never allocates past the cap.  A piece
 * is at most half of max-bounce (rounded to the devices' block), so the
 * other half is left for read-modify-writes, clients' and the copy's own
 * (a leg at an unaligned offset): its own always fit beside it.  Clients
 * go first at the cap: a copy that finds requests queued on the budget
 * does not join the queue (the budget wakes every waiter and the first
 * to charge wins) but looks again every NDM_KCOPYD_POLITE_US until none
 * waits.
 *
 * Before each piece, in this order:
 *   - the throttle: a token bucket of `rate` bytes/s whose tokens are
 *     the bytes a piece reads (a copy reads a piece once, a compare once
 *     per place).  A piece goes when the bucket is not in debt and takes
 *     its bytes, going into debt if it must; the next waits until the
 *     debt is paid.  The bucket holds at most one second's worth and
 *     NDM_KCOPYD_PIECE, so an idle copier bursts one piece at most.
 *   - the yield: while client requests are in flight on the mapped
 *     device (md->active: requests past the gate; a target's own I/O
 *     never enters it), a pause as long as the last piece took, within
 *     NDM_KCOPYD_YIELD_MIN_US and _MAX_US.  md raid1 drops to its
 *     minimum speed while the array is not idle; this makes the drop
 *     proportional to the devices' speed: clients get at least about
 *     half of the time, whatever the cap, and an idle device copies at
 *     full speed.
 *   - the charge (above).
 * Every wait sees ndm_kcopyd_stop: a suspend or a table's end never
 * waits for a slow throttle or a full budget.
 *
 * Thread model: copies and compares run on a target's own threads (one
 * or several), which wait; set_rate, stop and stats on any thread.
 * kc->lock is a leaf (core/request.c's order): under it nothing happens
 * but arithmetic and waiter kicks; the budget's lock is never taken with
 * it held.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "core.h"
#include "kcopyd.h"

/* How often a copy looks again while clients wait at the bounce cap, and
 * how long it waits for its own charge before looking at the budget
 * again (a put kicks it sooner; this only bounds a lost race).
 */
#define NDM_KCOPYD_POLITE_US   1000
#define NDM_KCOPYD_CHARGE_US   (100 * 1000)

/* The measured rate over a shorter time than this is not shown: one
 * piece in a millisecond is no rate.
 */
#define NDM_KCOPYD_RATE_MIN_SPAN_US (250 * 1000)

#define US_PER_S 1000000

struct rate_slot {
  int64_t sec;                  /* which second of the clock */
  uint64_t bytes;               /* read in it */
};

struct ndm_kcopyd {
  struct ndm_target *ti;
  struct ndm_mutex lock;        /* leaf: protects all below */
  uint64_t rate;                /* bytes/s, 0: no cap */
  bool stop;
  double tokens;                /* bytes; negative: in debt */
  int64_t refilled_at;          /* clock us of the last refill */
  int64_t last_piece_us;        /* how long the last piece took */
  GQueue sleepers;              /* struct ndm_waiter * waiting here */
  uint64_t bytes;               /* read by copies and compares */
  int64_t first_at;             /* clock us of the first byte, 0: none */
  struct rate_slot slots[NDM_KCOPYD_RATE_WINDOW_S];
  struct ndm_kcopyd_clock clock;        /* .now NULL: the real one */
};

static int64_t
kc_now (struct ndm_kcopyd *kc)
{
  if (kc->clock.now != NULL)
    return kc->clock.now (kc->clock.data);
  return g_get_monotonic_time ();
}

struct ndm_kcopyd *
ndm_kcopyd_new (struct ndm_target *ti, uint64_t rate)
{
  struct ndm_kcopyd *kc = g_new0 (struct ndm_kcopyd, 1);

  kc->ti = ti;
  kc->rate = rate;
  ndm_mutex_init (&kc->lock, NDM_LOCK_LEAF);
  g_queue_init (&kc->sleepers);
  return kc;
}

void
ndm_kcopyd_free (struct ndm_kcopyd *kc)
{
  if (kc == NULL)
    return;
  g_assert (g_queue_is_empty (&kc->sleepers));
  ndm_mutex_clear (&kc->lock);
  g_free (kc);
}

void
ndm_kcopyd_set_clock (struct ndm_kcopyd *kc,
                      const struct ndm_kcopyd_clock *clock)
{
  ndm_mutex_lock (&kc->lock);
  if (clock != NULL)
    kc->clock = *clock;
  else
    memset (&kc->clock, 0, sizeof kc->clock);
  kc->refilled_at = 0;
  ndm_mutex_unlock (&kc->lock);
}

/* With kc->lock held: every thread waiting here looks again. */
static void
kick_sleepers_locked (struct ndm_kcopyd *kc)
{
  GList *l;

  ndm_assert_held (&kc->lock);
  for (l = kc->sleepers.head; l != NULL; l = l->next)
    ndm_waiter_kick (l->data);
}

void
ndm_kcopyd_set_rate (struct ndm_kcopyd *kc, uint64_t rate)
{
  ndm_mutex_lock (&kc->lock);
  kc->rate = rate;
  kick_sleepers_locked (kc);
  ndm_mutex_unlock (&kc->lock);
}

uint64_t
ndm_kcopyd_rate (struct ndm_kcopyd *kc)
{
  uint64_t rate;

  ndm_mutex_lock (&kc->lock);
  rate = kc->rate;
  ndm_mutex_unlock (&kc->lock);
  return rate;
}

void
ndm_kcopyd_stop (struct ndm_kcopyd *kc, bool stop)
{
  ndm_mutex_lock (&kc->lock);
  kc->stop = stop;
  if (stop)
    kick_sleepers_locked (kc);
  ndm_mutex_unlock (&kc->lock);
}

/* Whether the copier is stopped, and if not, w is one of its sleepers
 * (so a stop or a new rate kicks it).  The caller prepared w first: a
 * kick from here on is not lost.
 */
static bool
sleeper_add (struct ndm_kcopyd *kc, struct ndm_waiter *w)
{
  bool stop;

  ndm_mutex_lock (&kc->lock);
  stop = kc->stop;
  if (!stop)
    g_queue_push_tail (&kc->sleepers, w);
  ndm_mutex_unlock (&kc->lock);
  return !stop;
}

static void
sleeper_remove (struct ndm_kcopyd *kc, struct ndm_waiter *w)
{
  ndm_mutex_lock (&kc->lock);
  g_queue_remove (&kc->sleepers, w);
  ndm_mutex_unlock (&kc->lock);
}

/* Sleep us microseconds on w (already a sleeper), or until kicked. */
static void
sleep_kickable (struct ndm_kcopyd *kc, struct ndm_waiter *w, int64_t us)
{
  struct pollfd fds[1];

  if (kc->clock.sleep != NULL) {
    kc->clock.sleep (kc->clock.data, us);
    return;
  }
  ndm_waiter_poll (w, fds, 0, (int) MIN ((us + 999) / 1000, G_MAXINT));
}

/* Wait us microseconds, or less if kicked.  Returns -1 with ESHUTDOWN
 * if the copier is (or gets) stopped.
 */
static int
kc_sleep (struct ndm_kcopyd *kc, struct ndm_waiter *w, int64_t us, int *err)
{
  bool stop;

  ndm_waiter_prepare (w);
  if (sleeper_add (kc, w)) {
    sleep_kickable (kc, w, us);
    sleeper_remove (kc, w);
  }
  ndm_mutex_lock (&kc->lock);
  stop = kc->stop;
  ndm_mutex_unlock (&kc->lock);
  if (stop) {
    *err = ESHUTDOWN;
    return -1;
  }
  return 0;
}

/* The token bucket: wait until it is out of debt, then take n bytes. */
static int
kc_throttle (struct ndm_kcopyd *kc, struct ndm_waiter *w, uint64_t n,
             int *err)
{
  for (;;) {
    int64_t now = kc_now (kc), wait_us;
    double burst;

    ndm_mutex_lock (&kc->lock);
    if (kc->stop) {
      ndm_mutex_unlock (&kc->lock);
      *err = ESHUTDOWN;
      return -1;
    }
    if (kc->rate == 0) {
      /* No cap: nothing to count.  A cap set later starts afresh. */
      kc->tokens = 0;
      kc->refilled_at = now;
      ndm_mutex_unlock (&kc->lock);
      return 0;
    }
    if (kc->refilled_at != 0 && now > kc->refilled_at)
      kc->tokens += (double) (now - kc->refilled_at) * kc->rate / US_PER_S;
    kc->refilled_at = now;
    burst = MIN ((double) kc->rate, (double) NDM_KCOPYD_PIECE);
    if (kc->tokens > burst)
      kc->tokens = burst;
    if (kc->tokens >= 0) {
      kc->tokens -= n;
      ndm_mutex_unlock (&kc->lock);
      return 0;
    }
    wait_us = (int64_t) (-kc->tokens * US_PER_S / kc->rate) + 1;
    ndm_mutex_unlock (&kc->lock);
    if (kc_sleep (kc, w, wait_us, err) == -1)
      return -1;
  }
}

/* While clients have requests in flight: a pause as long as the last
 * piece took (within bounds), so a copy takes about half of the devices'
 * time at most.
 */
static int
kc_yield (struct ndm_kcopyd *kc, struct ndm_waiter *w, int *err)
{
  struct ndm_md *md = kc->ti->table->md;
  int64_t us;

  if (g_atomic_int_get (&md->active) == 0)
    return 0;
  ndm_mutex_lock (&kc->lock);
  us = CLAMP (kc->last_piece_us, NDM_KCOPYD_YIELD_MIN_US,
              NDM_KCOPYD_YIELD_MAX_US);
  ndm_mutex_unlock (&kc->lock);
  return kc_sleep (kc, w, us, err);
}

/* Charge n bytes of bounce buffer to the mapped device's budget, waiting
 * at the cap; clients waiting there go first.
 */
static int
kc_charge (struct ndm_kcopyd *kc, struct ndm_waiter *w, uint64_t n,
           int *err)
{
  struct ndm_budget *b = &kc->ti->table->md->bounce;
  struct pollfd fds[1];
  bool queued = false;

  for (;;) {
    int64_t us;

    ndm_waiter_prepare (w);
    if (!sleeper_add (kc, w))
      break;
    if (!queued && g_atomic_int_get (&b->nr_waiting) > 0)
      us = NDM_KCOPYD_POLITE_US;
    else if (ndm_budget_try_get (b, n, w)) {
      sleeper_remove (kc, w);
      /* A charge that succeeds at once does not leave the queue. */
      if (queued)
        ndm_budget_forget (b, w);
      return 0;
    }
    else {
      queued = true;
      us = NDM_KCOPYD_CHARGE_US;
    }
    /* Not the test clock: this is a real wait for a real budget. */
    ndm_waiter_poll (w, fds, 0, (int) ((us + 999) / 1000));
    sleeper_remove (kc, w);
  }
  if (queued)
    ndm_budget_forget (b, w);
  *err = ESHUTDOWN;
  return -1;
}

static void
kc_uncharge (struct ndm_kcopyd *kc, uint64_t n)
{
  ndm_budget_put (&kc->ti->table->md->bounce, n);
}

/* With kc->lock held: the slot of second sec, emptied if it held an
 * older second.
 */
static struct rate_slot *
rate_slot_locked (struct ndm_kcopyd *kc, int64_t sec)
{
  struct rate_slot *s = &kc->slots[sec % NDM_KCOPYD_RATE_WINDOW_S];

  ndm_assert_held (&kc->lock);
  if (s->sec != sec) {
    s->sec = sec;
    s->bytes = 0;
  }
  return s;
}

/* n bytes were read in a piece that started at t0 and ends now. */
static void
kc_account (struct ndm_kcopyd *kc, uint64_t n, int64_t t0)
{
  int64_t now = kc_now (kc);

  ndm_mutex_lock (&kc->lock);
  kc->bytes += n;
  if (kc->first_at == 0)
    kc->first_at = MAX (t0, 1);
  rate_slot_locked (kc, now / US_PER_S)->bytes += n;
  kc->last_piece_us = now - t0;
  ndm_mutex_unlock (&kc->lock);
}

void
ndm_kcopyd_stats (struct ndm_kcopyd *kc, uint64_t *bytes, uint64_t *rate)
{
  int64_t now = kc_now (kc), sec = now / US_PER_S, from, span;
  uint64_t sum = 0;
  unsigned i;

  ndm_mutex_lock (&kc->lock);
  *bytes = kc->bytes;
  for (i = 0; i < NDM_KCOPYD_RATE_WINDOW_S; i++)
    if (kc->slots[i].sec > sec - NDM_KCOPYD_RATE_WINDOW_S &&
        kc->slots[i].sec <= sec)
      sum += kc->slots[i].bytes;
  from = MAX (kc->first_at,
              (sec - NDM_KCOPYD_RATE_WINDOW_S + 1) * US_PER_S);
  ndm_mutex_unlock (&kc->lock);
  span = MAX (now - from, NDM_KCOPYD_RATE_MIN_SPAN_US);
  *rate = sum == 0 ? 0 : (uint64_t) ((double) sum * US_PER_S / span);
}

/* The size of the pieces of an op over these places with nbufs buffers
 * per piece: NDM_KCOPYD_PIECE, at most half of max-bounce for all the
 * buffers, in whole blocks of the largest minimum block among them.
 */
static uint64_t
kc_piece (struct ndm_kcopyd *kc, const struct ndm_io_where *a, unsigned na,
          const struct ndm_io_where *b, unsigned nb, unsigned nbufs)
{
  uint64_t cap = kc->ti->table->md->bounce.cap;
  uint64_t piece = MIN (NDM_KCOPYD_PIECE, cap / (2 * nbufs));
  uint64_t block = 1;
  unsigned i;

  for (i = 0; i < na; i++)
    block = MAX (block, a[i].dev->limits.min_block);
  for (i = 0; i < nb; i++)
    block = MAX (block, b[i].dev->limits.min_block);
  piece -= piece % block;
  return MAX (piece, block);
}

/* The work of one piece: throttle (tokens bytes), yield, charge. */
static int
kc_piece_begin (struct ndm_kcopyd *kc, struct ndm_waiter *w,
                uint64_t tokens, uint64_t charge, int *err)
{
  if (kc_throttle (kc, w, tokens, err) == -1 ||
      kc_yield (kc, w, err) == -1)
    return -1;
  return kc_charge (kc, w, charge, err);
}

static void
set_first_err (int *err, int *have, int e)
{
  if (!*have) {
    *err = e;
    *have = 1;
  }
}

int
ndm_kcopyd_copy (struct ndm_kcopyd *kc, const struct ndm_io_where *from,
                 const struct ndm_io_where *to, unsigned n, uint64_t len,
                 bool *src_failed, uint64_t *dst_failed, int *err)
{
  struct ndm_waiter *w = ndm_waiter_self ();
  struct ndm_io_where where[NDM_IO_MAX_WHERE];
  unsigned idx[NDM_IO_MAX_WHERE];
  uint64_t piece, off;
  unsigned i, m = 0;
  int have_err = 0, e;

  g_assert (n > 0 && n <= NDM_IO_MAX_WHERE);
  *src_failed = false;
  *dst_failed = 0;
  if (w == NULL) {
    *err = ENOMEM;
    return -1;
  }
  piece = kc_piece (kc, from, 1, to, n, 1);
  for (off = 0; off < len; off += piece) {
    uint64_t p = MIN (len - off, piece), failed = 0;
    g_autofree char *buf = NULL;
    int64_t t0;

    if (kc_piece_begin (kc, w, p, p, err) == -1)
      return -1;
    buf = g_try_malloc (p);
    if (buf == NULL) {
      kc_uncharge (kc, p);
      *err = ENOMEM;
      return -1;
    }
    t0 = kc_now (kc);
    {
      struct ndm_io_where src = { from->dev, from->offset + off };

      if (ndm_target_io (kc->ti, NDM_OP_READ, 0, &src, 1, buf, p, NULL,
                         &e) == -1) {
        kc_uncharge (kc, p);
        *src_failed = true;
        set_first_err (err, &have_err, e);
        return -1;
      }
    }
    for (i = 0, m = 0; i < n; i++)
      if (!(*dst_failed & (UINT64_C (1) << i))) {
        where[m] = (struct ndm_io_where) { to[i].dev, to[i].offset + off };
        idx[m++] = i;
      }
    if (ndm_target_io (kc->ti, NDM_OP_WRITE, 0, where, m, buf, p, &failed,
                       &e) == -1) {
      set_first_err (err, &have_err, e);
      for (i = 0; i < m; i++)
        if (failed & (UINT64_C (1) << i))
          *dst_failed |= UINT64_C (1) << idx[i];
    }
    kc_uncharge (kc, p);
    kc_account (kc, p, t0);
    if (*dst_failed == (n == 64 ? ~UINT64_C (0) : (UINT64_C (1) << n) - 1))
      return -1;                /* nowhere left to copy to */
  }
  for (i = 0, m = 0; i < n; i++)
    if (!(*dst_failed & (UINT64_C (1) << i))) {
      where[m] = to[i];
      idx[m++] = i;
    }
  if (m > 0) {
    uint64_t failed = 0;

    if (ndm_target_io (kc->ti, NDM_OP_FLUSH, 0, where, m, NULL, 0, &failed,
                       &e) == -1) {
      set_first_err (err, &have_err, e);
      for (i = 0; i < m; i++)
        if (failed & (UINT64_C (1) << i))
          *dst_failed |= UINT64_C (1) << idx[i];
    }
  }
  return *dst_failed != 0 ? -1 : 0;
}

int
ndm_kcopyd_compare (struct ndm_kcopyd *kc, const struct ndm_io_where *where,
                    unsigned n, uint64_t len, uint64_t *differs,
                    uint64_t *failed, int *err)
{
  struct ndm_waiter *w = ndm_waiter_self ();
  uint64_t piece, off;
  int have_err = 0, e;
  unsigned i;

  g_assert (n > 0 && n <= NDM_IO_MAX_WHERE);
  *differs = 0;
  *failed = 0;
  if (w == NULL) {
    *err = ENOMEM;
    return -1;
  }
  piece = kc_piece (kc, where, n, NULL, 0, 2);
  for (off = 0; off < len; off += piece) {
    uint64_t p = MIN (len - off, piece), got = 0;
    g_autofree char *ref = NULL, *buf = NULL;
    int64_t t0;

    if (kc_piece_begin (kc, w, p * n, 2 * p, err) == -1)
      return -1;
    ref = g_try_malloc (p);
    buf = g_try_malloc (p);
    if (ref == NULL || buf == NULL) {
      kc_uncharge (kc, 2 * p);
      *err = ENOMEM;
      return -1;
    }
    t0 = kc_now (kc);
    for (i = 0; i < n; i++) {
      struct ndm_io_where at = { where[i].dev, where[i].offset + off };
      uint64_t bit = UINT64_C (1) << i;

      if (*failed & bit)
        continue;
      if (ndm_target_io (kc->ti, NDM_OP_READ, 0, &at, 1, i == 0 ? ref : buf,
                         p, NULL, &e) == -1) {
        *failed |= bit;
        set_first_err (err, &have_err, e);
        if (i == 0)
          break;                /* nothing to compare with */
        continue;
      }
      got += p;
      if (i > 0 && memcmp (ref, buf, p) != 0)
        *differs |= bit;
    }
    kc_uncharge (kc, 2 * p);
    kc_account (kc, got, t0);
    if (*failed & 1)
      return -1;
  }
  return *failed != 0 ? -1 : 0;
}
