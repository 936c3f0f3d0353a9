/* SPDX-License-Identifier: BSD-3-Clause */
/* The path checker as a service any target can use (core/checker.c),
 * seen from a target that is not multipath: "legs", whose every device
 * is a checker item and whose callbacks only record what they were
 * told.  What multipath's tests already show through multipath (flap
 * damping, reinstating by hand, a refused thread) is not repeated here:
 * this is the contract between the checker and its owner.
 */
#include "nbd-dm/target.h"
#include "checker.h"
#include "harness.h"

#define NR_LEGS 3

struct leg {
  struct ndm_checked chk;
  char name;                    /* 'a', 'b', ... in table order */
};

struct legs_c {
  struct ndm_mutex lock;        /* the checker's owner lock */
  struct ndm_checker checker;
  struct leg legs[NR_LEGS];
  unsigned nr_legs;
  /* Protected by lock. */
  GString *calls;               /* "fail a (why); fence a; reinstate a; " */
  unsigned rounds;
  bool decline;                 /* fail_locked refuses to fail */
};

/* The live target's context, for the test to look at. */
static struct legs_c *legs;

static struct leg *
leg_of (struct ndm_checked *item)
{
  return (struct leg *) item;   /* chk is the first member */
}

static bool
legs_fail_locked (void *owner, struct ndm_checked *item, const char *why)
{
  struct legs_c *lc = owner;

  g_string_append_printf (lc->calls, "fail %c (%s); ", leg_of (item)->name,
                          why);
  if (lc->decline)
    return false;
  return ndm_checker_fail_locked (&lc->checker, item, why);
}

static void
legs_reinstate_locked (void *owner, struct ndm_checked *item)
{
  struct legs_c *lc = owner;

  g_string_append_printf (lc->calls, "reinstate %c; ", leg_of (item)->name);
  ndm_checker_reinstate_locked (&lc->checker, item);
}

/* Without the lock, as the checker calls it: take it to record. */
static void
legs_fence (void *owner, struct ndm_checked *item)
{
  struct legs_c *lc = owner;

  ndm_mutex_lock (&lc->lock);
  g_string_append_printf (lc->calls, "fence %c; ", leg_of (item)->name);
  ndm_mutex_unlock (&lc->lock);
}

static void
legs_round_locked (void *owner, gint64 now)
{
  struct legs_c *lc = owner;

  lc->rounds++;
}

static const struct ndm_checker_ops legs_checker_ops = {
  .target = "legs", .noun = "leg", .thread_name = "test-legs-check",
  .fail_locked = legs_fail_locked,
  .reinstate_locked = legs_reinstate_locked,
  .fence = legs_fence,
  .round_locked = legs_round_locked,
};

static void legs_dtr (struct ndm_target *ti);

/* <start> <length> legs <device>... */
static int
legs_ctr (struct ndm_target *ti, unsigned argc, char **argv, GError **err)
{
  struct legs_c *lc = g_new0 (struct legs_c, 1);
  unsigned i;

  ndm_mutex_init (&lc->lock, NDM_LOCK_TARGET);
  ndm_checker_init (&lc->checker, ti, &legs_checker_ops, &lc->lock, lc);
  lc->calls = g_string_new (NULL);
  ti->private = lc;
  for (i = 0; i < argc && i < NR_LEGS; i++) {
    struct ndm_device *dev = ndm_table_get_device_tolerant (ti, argv[i],
                                                            err);

    if (dev == NULL) {
      legs_dtr (ti);
      return -1;
    }
    lc->legs[i].name = 'a' + i;
    ndm_checker_add (&lc->checker, &lc->legs[i].chk, dev);
    lc->nr_legs++;
  }
  legs = lc;
  return 0;
}

static void
legs_dtr (struct ndm_target *ti)
{
  struct legs_c *lc = ti->private;
  unsigned i;

  ndm_checker_clear (&lc->checker);
  for (i = 0; i < lc->nr_legs; i++)
    g_free (lc->legs[i].chk.reason);
  g_string_free (lc->calls, TRUE);
  ndm_mutex_clear (&lc->lock);
  if (legs == lc)
    legs = NULL;
  g_free (lc);
}

static int
legs_map (struct ndm_target *ti, struct ndm_clone *clone)
{
  struct legs_c *lc = ti->private;

  ndm_clone_remap (clone, lc->legs[0].chk.dev,
                   ndm_clone_target_offset (clone));
  return NDM_MAPIO_REMAPPED;
}

static void
legs_resume (struct ndm_target *ti)
{
  struct legs_c *lc = ti->private;

  ndm_mutex_lock (&lc->lock);
  ndm_checker_resume_locked (&lc->checker);
  ndm_mutex_unlock (&lc->lock);
}

static const struct ndm_target_type legs_target = {
  .name = "legs", .version = { 1, 0, 0 },
  .ctr = legs_ctr, .dtr = legs_dtr, .map = legs_map,
  .resume = legs_resume,
};

/* A mapped device of one legs target over fakes, loaded; live (resumed)
 * if start.
 */
static struct ndm_md *
legs_md (const char *devices, bool start)
{
  static const struct ndm_target_type *const targets[] = {
    &legs_target, NULL,
  };
  g_autofree char *table = g_strdup_printf ("0 2048 legs %s", devices);
  struct ndm_config cfg;
  struct ndm_md *md;
  GError *err = NULL;

  ndm_config_init (&cfg);
  cfg.device_class = &fake_device_class;
  cfg.extra_targets = targets;
  cfg.checker_interval_ms = 20;
  md = ndm_md_new (&cfg);
  if (ndm_md_load (md, table, &err) == -1)
    g_error ("table '%s': %s", table, err->message);
  if (start)
    ndm_md_start (md);
  return md;
}

static char *
calls (void)
{
  char *s;

  ndm_mutex_lock (&legs->lock);
  s = g_strdup (legs->calls->str);
  ndm_mutex_unlock (&legs->lock);
  return s;
}

/* Wait (10 s at most) until the calls so far are want, or if prefix
 * begin with it.
 */
static void
wait_calls_full (const char *want, bool prefix)
{
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;

  for (;;) {
    g_autofree char *got = calls ();

    if (prefix ? g_str_has_prefix (got, want) : strcmp (got, want) == 0)
      return;
    if (g_get_monotonic_time () > end)
      g_error ("calls '%s', expected '%s'", got, want);
    g_usleep (5000);
  }
}

static void
wait_calls (const char *want)
{
  wait_calls_full (want, false);
}

/* At load: the first reachable leg sets the size, one of another size is
 * refused (its reason worded with the owner's noun) and one that cannot
 * be reached is kept, failed, with the device's own reason (a refused TLS
 * key, in the real one).  No callback: the owner
 * decides what a refused item means at load.
 */
static void
test_add_identity (void)
{
  struct ndm_md *md = legs_md ("fake://a fake://b?size=2M fake://missing-c",
                               false);
  g_autofree char *got = NULL;

  g_assert_cmpuint (legs->checker.size, ==, 1048576);
  g_assert_true (legs->legs[0].chk.active);
  g_assert_null (legs->legs[0].chk.reason);
  g_assert_false (legs->legs[1].chk.active);
  g_assert_cmpstr (legs->legs[1].chk.reason, ==, "size 2097152 bytes, the "
                   "other legs have 1048576: not the same data");
  g_assert_false (legs->legs[2].chk.active);
  g_assert_cmpstr (legs->legs[2].chk.reason, ==, "device fake://missing-c: "
                   "connect: Connection refused");
  got = calls ();
  g_assert_cmpstr (got, ==, "");
  h_md_free (md);
}

/* Nothing is probed before the table is live (resume). */
static void
test_no_thread_before_resume (void)
{
  struct ndm_md *md = legs_md ("fake://a", false);
  struct fake_dev *a = fake_lookup ("a");

  g_usleep (10 * 20 * 1000);
  g_assert_cmpuint (fake_probes (a), ==, 0);
  ndm_md_start (md);
  while (fake_probes (a) == 0)
    g_usleep (5000);
  h_md_free (md);
}

/* A leg in service stops answering: the owner is told why, under its
 * lock, and then asked to fence it; once it answers again it is put
 * back.  A leg that answers all along is never named.  Every round
 * starts with round_locked.
 */
static void
test_fail_fence_reinstate (void)
{
  struct ndm_md *md = legs_md ("fake://a fake://b", true);
  struct fake_dev *a = fake_lookup ("a");
  unsigned rounds;

  fake_set_down (a, true);
  wait_calls ("fail a (checker: device fake://a: probe: connect: "
              "Connection refused); fence a; ");
  ndm_mutex_lock (&legs->lock);
  g_assert_false (legs->legs[0].chk.active);
  g_assert_cmpuint (legs->legs[0].chk.fail_count, ==, 1);
  g_assert_true (legs->legs[1].chk.active);
  rounds = legs->rounds;
  ndm_mutex_unlock (&legs->lock);
  g_assert_cmpuint (rounds, >=, 1);

  fake_set_down (a, false);
  wait_calls ("fail a (checker: device fake://a: probe: connect: "
              "Connection refused); fence a; reinstate a; ");
  ndm_mutex_lock (&legs->lock);
  g_assert_true (legs->legs[0].chk.active);
  g_assert_null (legs->legs[0].chk.reason);
  g_assert_cmpuint (legs->rounds, >, rounds);
  ndm_mutex_unlock (&legs->lock);
  h_md_free (md);
}

/* An owner that does not take the leg out (fail_locked returns false)
 * is not asked to fence it; the leg, still in service, is probed and
 * reported again next round.
 */
static void
test_fail_declined_not_fenced (void)
{
  struct ndm_md *md = legs_md ("fake://a", false);
  const char *fail = "fail a (checker: device fake://a: probe: connect: "
    "Connection refused); ";
  g_autofree char *twice = g_strconcat (fail, fail, NULL);

  legs->decline = true;         /* before the thread exists */
  fake_set_down (fake_lookup ("a"), true);
  ndm_md_start (md);
  wait_calls_full (twice, true);
  ndm_mutex_lock (&legs->lock);
  g_assert_true (legs->legs[0].chk.active);
  g_assert_cmpuint (legs->legs[0].chk.fail_count, ==, 0);
  ndm_mutex_unlock (&legs->lock);
  h_md_free (md);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/checker/add/identity", test_add_identity);
  g_test_add_func ("/checker/thread/not-before-resume",
                   test_no_thread_before_resume);
  g_test_add_func ("/checker/round/fail-fence-reinstate",
                   test_fail_fence_reinstate);
  g_test_add_func ("/checker/round/fail-declined-not-fenced",
                   test_fail_declined_not_fenced);
  return g_test_run ();
}
