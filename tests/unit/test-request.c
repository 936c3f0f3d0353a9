/* SPDX-License-Identifier: BSD-3-Clause */
/* The request engine against the fake device: one case per rule of
 * DESIGN.md section 3 (R1-R6, R9) and per branch of the merge rule.
 *
 * Most cases use a "held" fake with max=4096, so a 16 KiB request is four
 * bios (commands 0..3, clone offsets 0, 4K, 8K, 12K) that the test
 * completes in the order it wants, and the probe target, which records
 * the credited bytes and error its end_io saw.
 */
#include "core.h"
#include "harness.h"

#define HELD "fake://a?size=1M&mode=held&max=4096"
#define K4 4096

static struct h_endio
last_endio (void)
{
  GArray *e = h_probe_endios ();

  g_assert_cmpuint (e->len, >, 0);
  return g_array_index (e, struct h_endio, e->len - 1);
}

/* Sleep a little and check the request is still waiting.  A request that
 * wrongly replied would have done so by now; this is an assertion that
 * something does NOT happen, not a timing measurement.
 */
static void
assert_still_waiting (struct h_io *io)
{
  g_usleep (30 * 1000);
  g_assert_false (h_io_done (io));
}

/* R1: an early error must not reply while other bios are in flight. */
static void
test_r1_no_reply_while_inflight (void)
{
  struct ndm_md *md = h_md_new ("0 2048 probe " HELD " 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  g_autofree char *buf = g_malloc (4 * K4);
  struct h_io *io = h_io_start (md, NDM_OP_READ, buf, 4 * K4, 0, 0);

  fake_wait_pending (a, 4);
  fake_complete (a, 0, EIO);
  assert_still_waiting (io);
  fake_complete (a, 2, 0);
  fake_complete (a, 1, 0);
  assert_still_waiting (io);
  fake_complete (a, 3, 0);
  g_assert_cmpint (h_io_wait (io), ==, EIO);
  g_assert_cmpuint (last_endio ().credited, ==, 0);
  h_md_free (md);
}

/* R1 with success: the reply waits for the last bio too. */
static void
test_r1_success_waits_for_last (void)
{
  struct ndm_md *md = h_md_new ("0 2048 probe " HELD " 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  g_autofree char *buf = g_malloc (4 * K4);
  struct h_io *io = h_io_start (md, NDM_OP_READ, buf, 4 * K4, 0, 0);

  fake_wait_pending (a, 4);
  fake_complete (a, 3, 0);
  fake_complete (a, 0, 0);
  fake_complete (a, 1, 0);
  assert_still_waiting (io);
  fake_complete (a, 2, 0);
  g_assert_cmpint (h_io_wait (io), ==, 0);
  h_md_free (md);
}

/* R2: successes after a failure are not credited, whatever their order. */
static void
test_r2_credit_from_head (void)
{
  struct ndm_md *md = h_md_new ("0 2048 probe " HELD " 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  g_autofree char *buf = g_malloc (4 * K4);
  struct h_io *io = h_io_start (md, NDM_OP_READ, buf, 4 * K4, 0, 0);
  struct h_endio e;

  fake_wait_pending (a, 4);
  fake_complete (a, 3, 0);
  fake_complete (a, 2, 0);
  fake_complete (a, 0, 0);
  fake_complete (a, 1, EIO);
  g_assert_cmpint (h_io_wait (io), ==, EIO);
  e = last_endio ();
  g_assert_cmpuint (e.credited, ==, K4);
  g_assert_cmpint (e.error, ==, EIO);
  h_md_free (md);
}

/* R2: all good, completed backwards: the whole clone is credited and the
 * data is where it belongs.
 */
static void
test_r2_all_good_out_of_order (void)
{
  struct ndm_md *md = h_md_new ("0 2048 probe " HELD " 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  g_autofree char *buf = g_malloc (4 * K4);
  struct h_io *io;
  struct h_endio e;

  h_fill (fake_data (a), 4 * K4, 7);
  io = h_io_start (md, NDM_OP_READ, buf, 4 * K4, 0, 0);
  fake_wait_pending (a, 4);
  fake_complete (a, 3, 0);
  fake_complete (a, 2, 0);
  fake_complete (a, 1, 0);
  fake_complete (a, 0, 0);
  g_assert_cmpint (h_io_wait (io), ==, 0);
  e = last_endio ();
  g_assert_cmpuint (e.credited, ==, 4 * K4);
  g_assert_cmpint (e.error, ==, 0);
  g_assert_cmpmem (buf, 4 * K4, fake_data (a), 4 * K4);
  h_md_free (md);
}

/* R3: a failure further on arriving first does not win over the one at
 * the frontier.
 */
static void
test_r3_frontier_error_wins (void)
{
  struct ndm_md *md = h_md_new ("0 2048 probe " HELD " 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  g_autofree char *buf = g_malloc (4 * K4);
  struct h_io *io = h_io_start (md, NDM_OP_WRITE, buf, 4 * K4, 0, 0);
  struct h_endio e;

  fake_wait_pending (a, 4);
  fake_complete (a, 3, ENOSPC);
  fake_complete (a, 1, EIO);
  fake_complete (a, 0, 0);
  fake_complete (a, 2, 0);
  g_assert_cmpint (h_io_wait (io), ==, EIO);
  e = last_endio ();
  g_assert_cmpuint (e.credited, ==, K4);
  g_assert_cmpint (e.error, ==, EIO);
  h_md_free (md);
}

/* R3: a later failure never overwrites the frontier's. */
static void
test_r3_later_error_never_overwrites (void)
{
  struct ndm_md *md = h_md_new ("0 2048 probe " HELD " 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  g_autofree char *buf = g_malloc (4 * K4);
  struct h_io *io = h_io_start (md, NDM_OP_WRITE, buf, 4 * K4, 0, 0);
  struct h_endio e;

  fake_wait_pending (a, 4);
  fake_complete (a, 1, EIO);
  fake_complete (a, 3, ENOSPC);
  fake_complete (a, 2, EPERM);
  fake_complete (a, 0, 0);
  g_assert_cmpint (h_io_wait (io), ==, EIO);
  e = last_endio ();
  g_assert_cmpuint (e.credited, ==, K4);
  g_assert_cmpint (e.error, ==, EIO);
  h_md_free (md);
}

/* R3 at equal offsets (mirror legs): the first to arrive wins.  Settled
 * directly on a hand-made clone: no target here maps two bios to one
 * offset yet.
 */
static void
test_r3_same_offset_first_arrival (void)
{
  struct ndm_clone clone = { .len = 8192 };
  struct ndm_bio leg0 = { .clone_off = 0, .len = 8192, .status = EIO,
                          .fail_seq = 1, .state = NDM_BIO_DONE };
  struct ndm_bio leg1 = { .clone_off = 0, .len = 8192, .status = ENOSPC,
                          .fail_seq = 0, .state = NDM_BIO_DONE };
  struct ndm_bio tail = { .clone_off = 4096, .len = 4096, .status = EPERM,
                          .fail_seq = 2, .state = NDM_BIO_DONE };

  clone.bios = &leg0;
  leg0.next = &leg1;
  leg1.next = &tail;
  ndm_clone_settle (&clone);
  g_assert_cmpuint (clone.credited, ==, 0);
  g_assert_cmpint (clone.error, ==, ENOSPC);

  /* And without failures: everything is credited. */
  leg0.status = leg1.status = tail.status = 0;
  ndm_clone_settle (&clone);
  g_assert_cmpuint (clone.credited, ==, 8192);
  g_assert_cmpint (clone.error, ==, 0);

  /* A killed clone (map said KILL) is all error. */
  clone.kill_error = EIO;
  ndm_clone_settle (&clone);
  g_assert_cmpuint (clone.credited, ==, 0);
  g_assert_cmpint (clone.error, ==, EIO);
}

/* "legs <dev> <dev>": the clone on both devices at the same offset, as
 * mirror legs are; end_io records the error it was given.
 */
static int legs_error;

static int
legs_ctr (struct ndm_target *ti, unsigned argc, char **argv, GError **err)
{
  struct ndm_device **dev = g_new0 (struct ndm_device *, 2);

  if (argc != 2 || (dev[0] = ndm_table_get_device (ti, argv[0], err)) == NULL ||
      (dev[1] = ndm_table_get_device (ti, argv[1], err)) == NULL) {
    g_free (dev);
    if (err != NULL && *err == NULL)
      g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE, "legs: 2 devices");
    return -1;
  }
  ti->private = dev;
  return 0;
}

static void
legs_dtr (struct ndm_target *ti)
{
  g_free (ti->private);
}

static int
legs_map (struct ndm_target *ti, struct ndm_clone *clone)
{
  struct ndm_device **dev = ti->private;

  ndm_clone_remap (clone, dev[0], ndm_clone_target_offset (clone));
  ndm_clone_remap (clone, dev[1], ndm_clone_target_offset (clone));
  return NDM_MAPIO_REMAPPED;
}

static int
legs_end_io (struct ndm_target *ti, struct ndm_clone *clone, int *error)
{
  legs_error = *error;
  return NDM_ENDIO_DONE;
}

static const struct ndm_target_type legs_target = {
  .name = "legs", .version = { 1, 0, 0 },
  .ctr = legs_ctr, .dtr = legs_dtr, .map = legs_map, .end_io = legs_end_io,
};

/* Sector 0-7 linear on c, 8-15 legs on a and b. */
static struct ndm_md *
legs_md_new (void)
{
  static const struct ndm_target_type *const targets[] = {
    &legs_target, NULL,
  };
  struct ndm_md *md = h_md_new_empty (targets);
  GError *err = NULL;

  g_assert_cmpint (ndm_md_load (md, "0 8 linear fake://c?size=1M 0\n"
                                "8 8 legs fake://a?size=1M fake://b?size=1M",
                                &err), ==, 0);
  g_assert_no_error (err);
  return md;
}

/* R3 at equal offsets through the engine: a start failure (R6) arrives
 * when it happens, after failures that completed before it, even when
 * earlier failures of the request (another clone's) were numbered first.
 * Leg a's write fails as it completes, then leg b's fails to start: a's
 * error is the clone's.
 */
static void
test_r3_start_failure_arrives_in_order (void)
{
  struct ndm_md *md = legs_md_new ();
  g_autofree char *buf = g_malloc0 (8192);

  fake_fail_at (fake_lookup ("c"), 0, EPERM);
  fake_fail_at (fake_lookup ("a"), 0, EIO);
  fake_fail_submit_at (fake_lookup ("b"), 0, ENOSPC);
  legs_error = 0;
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 8192, 0, 0), ==, EPERM);
  g_assert_cmpint (legs_error, ==, EIO);
  h_md_free (md);
}

/* R3 and R6 at equal offsets: leg a fails to start, which cancels leg b
 * at the same offset; the cancellation arrived after the failure, so the
 * clone's error is a's and its target decides (a cancelled frontier
 * would requeue it unseen).
 */
static void
test_r3_cancelled_leg_arrives_after_failure (void)
{
  struct ndm_md *md = legs_md_new ();
  g_autofree char *buf = g_malloc0 (8192);

  fake_fail_at (fake_lookup ("c"), 0, EPERM);
  fake_fail_submit_at (fake_lookup ("a"), 0, ENOSPC);
  legs_error = 0;
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 8192, 0, 0), ==, EPERM);
  g_assert_cmpint (legs_error, ==, ENOSPC);
  g_assert_cmpuint (fake_submitted (fake_lookup ("b")), ==, 0);
  h_md_free (md);
}

/* R3 across clones: the client sees the error of the first clone (by
 * offset) that failed, not the first to fail in time.
 */
static void
test_r3_first_clone_error_reaches_client (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 probe fake://a?size=1M&mode=held 0\n"
    "8 8 probe fake://b?size=1M&mode=held 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc (8192);
  struct h_io *io = h_io_start (md, NDM_OP_WRITE, buf, 8192, 0, 0);

  fake_wait_pending (a, 1);
  fake_wait_pending (b, 1);
  fake_complete (b, 0, ENOSPC);
  fake_complete (a, 0, EIO);
  g_assert_cmpint (h_io_wait (io), ==, EIO);

  io = h_io_start (md, NDM_OP_WRITE, buf, 8192, 0, 0);
  fake_wait_pending (a, 1);
  fake_wait_pending (b, 1);
  fake_complete (a, 1, 0);
  fake_complete (b, 1, ENOSPC);
  g_assert_cmpint (h_io_wait (io), ==, ENOSPC);
  h_md_free (md);
}

/* R3 across rounds: clone 0 is requeued while clone 1 fails; if clone 0
 * then fails too, its error (the lower offset) is the request's; if it
 * succeeds, clone 1's is.
 */
static void
test_r3_requeued_earlier_clone_error_wins (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 probe fake://a?size=1M&mode=held 0\n"
    "8 8 probe fake://b?size=1M&mode=held 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc (8192);
  struct h_io *io;

  h_probe_requeue (1);
  io = h_io_start (md, NDM_OP_WRITE, buf, 8192, 0, 0);
  fake_wait_pending (a, 1);
  fake_wait_pending (b, 1);
  fake_complete (a, 0, ENOTCONN);       /* requeued by the probe */
  fake_complete (b, 0, ENOSPC);
  fake_wait_pending (a, 1);             /* clone 0 runs again ... */
  g_assert_cmpuint (fake_submitted (b), ==, 1);   /* ... clone 1 does not */
  fake_complete (a, 1, EIO);
  g_assert_cmpint (h_io_wait (io), ==, EIO);

  h_probe_requeue (1);
  io = h_io_start (md, NDM_OP_WRITE, buf, 8192, 0, 0);
  fake_wait_pending (a, 1);
  fake_wait_pending (b, 1);
  fake_complete (a, 2, ENOTCONN);
  fake_complete (b, 1, ENOSPC);
  fake_wait_pending (a, 1);
  fake_complete (a, 3, 0);
  g_assert_cmpint (h_io_wait (io), ==, ENOSPC);
  h_md_free (md);
}

/* R4: REQUEUE re-maps [credited, end) only, with the device offset and
 * buffer recomputed from the credited count: the data of the tail lands
 * exactly where it belongs.
 */
static void
test_r4_requeue_remainder_only (void)
{
  struct ndm_md *md = h_md_new ("0 2048 probe " HELD " 8", NULL);
  struct fake_dev *a = fake_lookup ("a");
  g_autofree char *buf = g_malloc (4 * K4);
  g_autoptr (GArray) log = NULL;
  struct h_io *io;
  struct h_endio e;
  unsigned i;

  h_fill (buf, 4 * K4, 3);
  h_probe_requeue (1);
  io = h_io_start (md, NDM_OP_WRITE, buf, 4 * K4, 0, 0);
  fake_wait_pending (a, 4);
  fake_complete (a, 0, 0);
  fake_complete (a, 2, 0);
  fake_complete (a, 3, 0);
  fake_complete (a, 1, ENOTCONN);       /* a path error: the probe requeues */
  fake_wait_pending (a, 3);
  fake_complete_all (a);
  g_assert_cmpint (h_io_wait (io), ==, 0);

  /* Commands 4..6 are the tail: 4K, 8K, 12K of the clone (+ 8 sectors). */
  log = fake_log (a);
  g_assert_cmpuint (log->len, ==, 7);
  for (i = 0; i < 3; i++) {
    struct fake_cmd *c = &g_array_index (log, struct fake_cmd, 4 + i);

    g_assert_cmpint (c->op, ==, NDM_OP_WRITE);
    g_assert_cmpuint (c->offset, ==, 4096 + (i + 1) * K4);
    g_assert_cmpuint (c->len, ==, K4);
  }
  g_assert_cmpmem (fake_data (a) + 4096, 4 * K4, buf, 4 * K4);

  g_assert_cmpuint (h_probe_endios ()->len, ==, 2);
  e = g_array_index (h_probe_endios (), struct h_endio, 0);
  g_assert_cmpuint (e.credited, ==, K4);
  g_assert_cmpint (e.error, ==, ENOTCONN);
  e = g_array_index (h_probe_endios (), struct h_endio, 1);
  g_assert_cmpuint (e.offset, ==, K4);
  g_assert_cmpuint (e.len, ==, 3 * K4);
  g_assert_cmpuint (e.credited, ==, 3 * K4);
  g_assert_cmpint (e.error, ==, 0);
  h_md_free (md);
}

/* R5: path errors reach the client as EIO (nbdkit would make them
 * EINVAL); target errors pass unchanged; unknown errnos become EIO.
 * One case per row.
 */
static const struct client_errno {
  const char *name;
  int dev, client;
} client_errnos[] = {
  { "ENOTCONN", ENOTCONN, EIO }, { "ESHUTDOWN", ESHUTDOWN, EIO },
  { "ECONNRESET", ECONNRESET, EIO }, { "ETIMEDOUT", ETIMEDOUT, EIO },
  { "EPIPE", EPIPE, EIO }, { "EIO", EIO, EIO }, { "ENOSPC", ENOSPC, ENOSPC },
  { "EPERM", EPERM, EPERM }, { "EINVAL", EINVAL, EINVAL },
  { "EOVERFLOW", EOVERFLOW, EOVERFLOW }, { "ENOTSUP", ENOTSUP, ENOTSUP },
  { "EBADMSG", EBADMSG, EIO }, { "ENOENT", ENOENT, EIO },
};

static void
test_r5_client_errno (gconstpointer data)
{
  const struct client_errno *c = data;
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a?size=1M 0", NULL);
  char buf[512];

  fake_fail_range (fake_lookup ("a"), 0, 512, c->dev);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, 0, 0), ==, c->client);
  h_md_free (md);
}

static void
test_r5_write_enotsup (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear fake://a?size=1M 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  char buf[512];

  /* ENOTSUP from a write is EIO: NBD knows it for a fast zero only, and
   * nbdkit 1.32 aborts on a write that fails with it.
   */
  fake_fail_range (a, 0, 512, ENOTSUP);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 512, 0, 0), ==, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_TRIM, NULL, 512, 0, 0), ==, ENOTSUP);
  fake_fail_range (a, 0, 0, 0);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, 0, 0), ==, 0);
  h_md_free (md);
}

static void
test_r5_errno_classes (void)
{
  /* While shutting down, path errors say so. */
  g_assert_cmpint (ndm_errno_for_client (ENOTCONN, true), ==, ESHUTDOWN);
  g_assert_true (ndm_errno_is_path_error (ECONNRESET));
  g_assert_false (ndm_errno_is_path_error (ENOSPC));
  g_assert_false (ndm_errno_is_path_error (EIO));
}

/* ESHUTDOWN means the server did not run the command (it is going away,
 * maybe to be restarted behind the same address): the same command is
 * sent again on the same device, up to NDM_MAX_REISSUES times, and only
 * then is the error the request's (a path error: EIO).
 */
static void
test_r5_eshutdown_reissued (void)
{
  struct ndm_md *md = h_md_new ("0 2048 linear " HELD " 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  g_autofree char *buf = g_malloc (K4);
  g_autoptr (GArray) log = NULL;
  struct h_io *io;
  unsigned i;

  h_fill (buf, K4, 5);
  io = h_io_start (md, NDM_OP_WRITE, buf, K4, 8192, 0);
  fake_wait_pending (a, 1);
  fake_complete (a, 0, ESHUTDOWN);
  fake_wait_pending (a, 1);
  fake_complete (a, 1, 0);
  g_assert_cmpint (h_io_wait_bounded (io, 5), ==, 0);
  g_assert_cmpmem (fake_data (a) + 8192, K4, buf, K4);
  log = fake_log (a);
  g_assert_cmpuint (log->len, ==, 2);
  g_assert_cmpuint (g_array_index (log, struct fake_cmd, 1).offset, ==, 8192);

  io = h_io_start (md, NDM_OP_WRITE, buf, K4, 8192, 0);
  for (i = 0; i <= NDM_MAX_REISSUES; i++) {
    fake_wait_pending (a, 1);
    fake_complete (a, 2 + i, ESHUTDOWN);
  }
  g_assert_cmpint (h_io_wait_bounded (io, 5), ==, EIO);
  h_md_free (md);
}

/* R6: the start of bio 2 fails; bios 0 and 1 are waited for, bio 3 is
 * never started, and the result is decided by R2/R3.
 */
static void
test_r6_submit_failure_waits (void)
{
  struct ndm_md *md = h_md_new ("0 2048 probe " HELD " 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  g_autofree char *buf = g_malloc (4 * K4);
  struct h_io *io;
  struct h_endio e;

  fake_fail_submit_at (a, 2, ENOTCONN);
  io = h_io_start (md, NDM_OP_WRITE, buf, 4 * K4, 0, 0);
  fake_wait_pending (a, 2);
  assert_still_waiting (io);
  g_assert_cmpuint (fake_submitted (a), ==, 3);   /* 0, 1 and the failed 2 */
  fake_complete (a, 1, 0);
  assert_still_waiting (io);
  fake_complete (a, 0, 0);
  g_assert_cmpint (h_io_wait (io), ==, EIO);      /* ENOTCONN, mapped */
  g_assert_cmpuint (fake_submitted (a), ==, 3);
  e = last_endio ();
  g_assert_cmpuint (e.credited, ==, 2 * K4);
  g_assert_cmpint (e.error, ==, ENOTCONN);
  h_md_free (md);
}

/* R6 across clones: a start failure in the first segment means the second
 * segment is never started; if the target requeues, it runs after all.
 */
static void
test_r6_later_clones_not_started (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 probe fake://a?size=1M&mode=held 0\n"
    "8 8 probe fake://b?size=1M&mode=held 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc (8192);

  fake_fail_submit_at (a, 0, ENOTCONN);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 8192, 0, 0), ==, EIO);
  g_assert_cmpuint (fake_submitted (b), ==, 0);

  /* Requeued by the probe: both segments run. */
  fake_fail_submit_at (a, 1, ENOTCONN);
  h_probe_requeue (1);
  {
    struct h_io *io = h_io_start (md, NDM_OP_WRITE, buf, 8192, 0, 0);

    fake_wait_pending (a, 1);
    fake_wait_pending (b, 1);
    fake_complete_all (a);
    fake_complete_all (b);
    g_assert_cmpint (h_io_wait (io), ==, 0);
  }
  h_md_free (md);
}

/* R9: a flush reaches every device of the table, once each. */
static void
test_r9_flush_every_device_once (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 linear fake://a 0\n"
    "8 8 linear fake://b 0\n"
    "16 8 linear fake://a 8\n"
    "24 8 zero\n"
    "32 8 error", NULL);

  g_assert_cmpint (h_io (md, NDM_OP_FLUSH, NULL, 0, 0, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (fake_lookup ("a"), NDM_OP_FLUSH), ==, 1);
  g_assert_cmpuint (fake_count_op (fake_lookup ("b"), NDM_OP_FLUSH), ==, 1);
  h_md_free (md);
}

/* R9 across rounds: a device counts as flushed only when its flush
 * succeeded.  a's flush fails at submit, which cancels b's (R6); the
 * probe requeues: both are flushed in the next round.  Then a's flush
 * succeeds and b's fails with a path error: only b's is sent again.
 */
static void
test_r9_requeued_flush (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 probe fake://a 0\n"
    "8 8 probe fake://b 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");

  fake_fail_submit_at (a, 0, ENOTCONN);
  h_probe_requeue (1);
  g_assert_cmpint (h_io (md, NDM_OP_FLUSH, NULL, 0, 0, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_FLUSH), ==, 2);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_FLUSH), ==, 1);

  fake_fail_at (b, 1, ENOTCONN);
  h_probe_requeue (1);
  g_assert_cmpint (h_io (md, NDM_OP_FLUSH, NULL, 0, 0, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_FLUSH), ==, 3);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_FLUSH), ==, 3);
  h_md_free (md);
}

/* R9: a flush fails if any device's flush fails, and waits for all. */
static void
test_r9_flush_failure (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 linear fake://a?mode=held 0\n"
    "8 8 linear fake://b?mode=held 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  struct h_io *io = h_io_start (md, NDM_OP_FLUSH, NULL, 0, 0, 0);

  fake_wait_pending (a, 1);
  fake_wait_pending (b, 1);
  fake_complete (b, 0, EIO);
  assert_still_waiting (io);
  fake_complete (a, 0, 0);
  g_assert_cmpint (h_io_wait (io), ==, EIO);
  h_md_free (md);
}

/* R9: FUA passes per bio; a device without FUA gets write + flush. */
static void
test_r9_fua_native_and_emulated (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 linear fake://a?fua=1 0\n"
    "8 8 linear fake://b?fua=0 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autoptr (GArray) la = NULL, lb = NULL;
  char buf[8192];

  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 8192, 0, NDM_REQ_FUA), ==, 0);
  la = fake_log (a);
  lb = fake_log (b);
  g_assert_cmpuint (la->len, ==, 1);
  g_assert_cmpint (g_array_index (la, struct fake_cmd, 0).op, ==,
                   NDM_OP_WRITE);
  g_assert_true (g_array_index (la, struct fake_cmd, 0).flags & NDM_REQ_FUA);
  g_assert_cmpuint (lb->len, ==, 2);
  g_assert_cmpint (g_array_index (lb, struct fake_cmd, 0).op, ==,
                   NDM_OP_WRITE);
  g_assert_false (g_array_index (lb, struct fake_cmd, 0).flags & NDM_REQ_FUA);
  g_assert_cmpint (g_array_index (lb, struct fake_cmd, 1).op, ==,
                   NDM_OP_FLUSH);
  h_md_free (md);
}

/* R9: an emulated FUA write is acknowledged only once its flush has
 * succeeded: a failed flush fails the write (it may not be durable).
 */
static void
test_r9_fua_emulated_flush_fails (void)
{
  struct ndm_md *md = h_md_new ("0 8 linear fake://b?fua=0 0", NULL);
  struct fake_dev *b = fake_lookup ("b");
  char buf[4096];

  memset (buf, 'F', sizeof buf);
  fake_fail_at (b, 1, EIO);     /* the flush after the write */
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4096, 0, NDM_REQ_FUA), ==,
                   EIO);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_FLUSH), ==, 1);
  h_md_free (md);
}

/* Command i of a fake's log is op, with FUA or without. */
static void
expect_cmd (struct fake_dev *fd, unsigned i, enum ndm_op op, bool fua)
{
  g_autoptr (GArray) log = fake_log (fd);
  const struct fake_cmd *cmd;

  g_assert_cmpuint (i, <, log->len);
  cmd = &g_array_index (log, struct fake_cmd, i);
  g_assert_cmpint (cmd->op, ==, op);
  g_assert_cmpint (!!(cmd->flags & NDM_REQ_FUA), ==, fua);
}

/* R9: a device without flush has no cache.  A flush goes to the devices
 * that can flush, never to it (a strict fake refuses what it did not
 * advertise); a FUA write reaches it as a plain write, and the others
 * with native FUA (a) or as write+flush (c).
 */
static void
test_r9_device_without_flush (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 linear fake://a 0\n"
    "8 8 linear fake://b?flush=0&fua=0 0\n"
    "16 8 linear fake://c?fua=0 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  struct fake_dev *c = fake_lookup ("c");
  char buf[3 * 4096];

  g_assert_cmpint (h_io (md, NDM_OP_FLUSH, NULL, 0, 0, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_FLUSH), ==, 1);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_FLUSH), ==, 0);
  g_assert_cmpuint (fake_count_op (c, NDM_OP_FLUSH), ==, 1);

  memset (buf, 'f', sizeof buf);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, sizeof buf, 0, NDM_REQ_FUA),
                   ==, 0);
  g_assert_cmpuint (fake_submitted (a), ==, 2);
  expect_cmd (a, 1, NDM_OP_WRITE, true);
  g_assert_cmpuint (fake_submitted (b), ==, 1);
  expect_cmd (b, 0, NDM_OP_WRITE, false);
  g_assert_cmpuint (fake_submitted (c), ==, 3);
  expect_cmd (c, 1, NDM_OP_WRITE, false);
  expect_cmd (c, 2, NDM_OP_FLUSH, false);
  g_assert_cmpint (fake_data (b)[0], ==, 'f');
  h_md_free (md);
}

/* error target: EIO; the segments around it keep serving. */
static void
test_target_error (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 linear fake://a 0\n"
    "8 8 error\n"
    "16 8 linear fake://a 8", NULL);
  char buf[4096];

  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 4096, 0, 0), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 4096, 4096, 0), ==, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 512, 4096 + 512, 0), ==,
                   EIO);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 4096, 8192, 0), ==, 0);
  /* Spanning into the error segment fails as a whole. */
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 4096, 2048, 0), ==, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_FLUSH, NULL, 0, 0, 0), ==, 0);
  h_md_free (md);
}

/* zero target: reads zeros, drops writes, reports a zero hole. */
static void
test_target_zero (void)
{
  struct ndm_md *md = h_md_new ("0 16 zero", NULL);
  g_autoptr (GArray) ext = g_array_new (FALSE, FALSE,
                                        sizeof (struct ndm_extent));
  char buf[8192], zeros[8192] = { 0 };
  int err;

  memset (buf, 'x', sizeof buf);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 8192, 0, 0), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 8192, 0, 0), ==, 0);
  g_assert_cmpmem (buf, 8192, zeros, 8192);
  g_assert_cmpint (ndm_md_extents (md, 8192, 0, 0, ext, &err), ==, 0);
  g_assert_cmpuint (ext->len, ==, 1);
  g_assert_cmpuint (g_array_index (ext, struct ndm_extent, 0).length, ==,
                    8192);
  g_assert_cmpuint (g_array_index (ext, struct ndm_extent, 0).type, ==,
                    NDM_EXTENT_HOLE | NDM_EXTENT_ZERO);
  h_md_free (md);
}

/* Requests outside the device are refused with EINVAL, and the device
 * keeps serving.
 */
static void
test_out_of_range (void)
{
  struct ndm_md *md = h_md_new ("0 8 linear fake://a 0", NULL);
  char buf[4096];

  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, 4096, 0), ==, EINVAL);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 1024, 3584, 0), ==, EINVAL);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, 3584, 0), ==, 0);
  h_md_free (md);
}

/* R10 without paths: linear over a device whose connection is cut (here
 * by the test, as io-timeout would) while its server is alive but
 * stopped.  The write it had fails (EIO: nothing retries it), but the
 * server may still run it, so the client's next write over it waits for
 * the server; when the server resumes, the stale write lands first and
 * the new one after it.  (The new write used to be sent on a new
 * connection at once, and the resumed server overwrote it.)
 */
static void
test_r10_linear_cut_quarantines (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 linear fake://a?mode=held&fence=ghost 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  char x[4096], y[4096];
  struct h_io *io;

  memset (x, 'X', sizeof x);
  memset (y, 'Y', sizeof y);
  io = h_io_start (md, NDM_OP_WRITE, x, sizeof x, 0, 0);
  fake_wait_pending (a, 1);
  fake_fence_now (a);
  g_assert_cmpint (h_io_wait_bounded (io, 5), ==, EIO);
  io = h_io_start (md, NDM_OP_WRITE, y, 512, 1024, 0);
  assert_still_waiting (io);
  g_assert_cmpuint (fake_pending (a), ==, 0);
  fake_land_ghosts (a);
  fake_wait_pending (a, 1);
  fake_complete_all (a);
  g_assert_cmpint (h_io_wait_bounded (io, 5), ==, 0);
  g_assert_cmpint (fake_data (a)[0], ==, 'X');
  g_assert_cmpint (fake_data (a)[1024], ==, 'Y');
  h_md_free (md);
}

/* R13: a target that requeues what cannot start (here the probe, over a
 * device whose every submit fails) does not hold the request for ever:
 * after NDM_MAX_EMPTY_ROUNDS rounds that started nothing it fails with
 * the start error.
 */
static void
test_r13_empty_rounds_bounded (void)
{
  struct ndm_md *md = h_md_new ("0 8 probe fake://a 0", NULL);
  struct fake_dev *a = fake_lookup ("a");
  char buf[4096];
  struct h_io *io;

  fake_set_down (a, true);
  h_probe_requeue (G_MAXUINT);
  io = h_io_start (md, NDM_OP_WRITE, buf, sizeof buf, 0, 0);
  g_assert_cmpint (h_io_wait_bounded (io, 10), ==, EIO);
  g_assert_cmpuint (fake_submitted (a), ==, NDM_MAX_EMPTY_ROUNDS);
  h_md_free (md);
}

static gint quit_now;

static bool
quit_now_fn (void)
{
  return g_atomic_int_get (&quit_now);
}

/* R13: every round sees the quit gate.  The probe requeues every failed
 * round for ever, each round starting a command; when the front end
 * quits, the request ends with ESHUTDOWN.
 */
static void
test_r13_rounds_see_quit (void)
{
  struct ndm_config cfg;
  struct ndm_md *md;
  struct fake_dev *a;
  char buf[4096];
  struct h_io *io;

  ndm_config_init (&cfg);
  cfg.quitting = quit_now_fn;
  g_atomic_int_set (&quit_now, 0);
  md = h_md_new ("0 8 probe fake://a 0", &cfg);
  a = fake_lookup ("a");
  fake_fail_range (a, 0, 4096, EIO);
  h_probe_requeue (G_MAXUINT);
  io = h_io_start (md, NDM_OP_READ, buf, sizeof buf, 0, 0);
  while (fake_submitted (a) < 10)
    g_usleep (1000);
  g_assert_false (h_io_done (io));
  g_atomic_int_set (&quit_now, 1);
  g_assert_cmpint (h_io_wait_bounded (io, 5), ==, ESHUTDOWN);
  h_md_free (md);
}

/* "hold <dev>": map holds every clone with DELAY_REQUEUE until the test
 * releases it (a mirror's write to a region under recovery), then maps
 * it linear onto dev.
 */
static GMutex hold_lock;
static struct ndm_clone *hold_clone;    /* the clone held now */
static bool hold_open;                  /* map no longer holds */
static unsigned hold_releases;          /* release_clone calls */

static int
hold_ctr (struct ndm_target *ti, unsigned argc, char **argv, GError **err)
{
  if (argc != 1 || (ti->private = ndm_table_get_device (ti, argv[0],
                                                        err)) == NULL) {
    if (err != NULL && *err == NULL)
      g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE, "hold: a device");
    return -1;
  }
  return 0;
}

static int
hold_map (struct ndm_target *ti, struct ndm_clone *clone)
{
  int r = NDM_MAPIO_REMAPPED;

  g_mutex_lock (&hold_lock);
  if (!hold_open) {
    /* Far later than NDM_DELAY_REQUEUE_MS: only a release ends it. */
    clone->not_before = g_get_monotonic_time () + 60 * G_TIME_SPAN_SECOND;
    hold_clone = clone;
    r = NDM_MAPIO_DELAY_REQUEUE;
  }
  g_mutex_unlock (&hold_lock);
  if (r == NDM_MAPIO_REMAPPED)
    ndm_clone_remap (clone, ti->private, ndm_clone_target_offset (clone));
  return r;
}

static void
hold_release_clone (struct ndm_target *ti, struct ndm_clone *clone)
{
  g_mutex_lock (&hold_lock);
  if (clone == hold_clone)
    hold_clone = NULL;
  hold_releases++;
  g_mutex_unlock (&hold_lock);
}

static const struct ndm_target_type hold_target = {
  .name = "hold", .version = { 1, 0, 0 },
  .ctr = hold_ctr, .map = hold_map, .release_clone = hold_release_clone,
};

static struct ndm_md *
hold_md_new (struct ndm_config *cfg)
{
  static const struct ndm_target_type *const targets[] = {
    &hold_target, NULL,
  };
  struct ndm_config c;
  struct ndm_md *md;
  GError *err = NULL;

  if (cfg != NULL)
    c = *cfg;
  else
    ndm_config_init (&c);
  c.device_class = &fake_device_class;
  c.extra_targets = targets;
  md = ndm_md_new (&c);
  hold_clone = NULL;
  hold_open = false;
  hold_releases = 0;
  g_assert_cmpint (ndm_md_load (md, "0 8 hold fake://a?size=1M", &err), ==,
                   0);
  g_assert_no_error (err);
  ndm_md_start (md);
  return md;
}

/* Until the request's clone is held. */
static void
hold_wait_held (void)
{
  gint64 give_up = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;

  for (;;) {
    bool held;

    g_mutex_lock (&hold_lock);
    held = hold_clone != NULL;
    g_mutex_unlock (&hold_lock);
    if (held)
      return;
    g_assert_cmpint (g_get_monotonic_time (), <, give_up);
    g_usleep (1000);
  }
}

/* A clone held by DELAY_REQUEUE with a not_before far off waits for
 * it, longer than the default delay, and runs as soon as its target
 * releases it (ndm_clone_release_delay), not when not_before comes.
 */
static void
test_delay_requeue_held_until_released (void)
{
  struct ndm_md *md = hold_md_new (NULL);
  char buf[4096];
  struct h_io *io;

  h_fill (buf, sizeof buf, 7);
  io = h_io_start (md, NDM_OP_WRITE, buf, sizeof buf, 0, 0);
  hold_wait_held ();
  g_usleep (3 * NDM_DELAY_REQUEUE_MS * 1000);
  g_assert_false (h_io_done (io));
  g_assert_cmpuint (fake_submitted (fake_lookup ("a")), ==, 0);
  g_mutex_lock (&hold_lock);
  hold_open = true;
  ndm_clone_release_delay (hold_clone);
  g_mutex_unlock (&hold_lock);
  g_assert_cmpint (h_io_wait_bounded (io, 10), ==, 0);
  g_assert_cmpmem (fake_data (fake_lookup ("a")), sizeof buf, buf,
                   sizeof buf);
  g_assert_cmpuint (hold_releases, ==, 0);
  h_md_free (md);
}

/* A release that comes right after request_delay has counted the held
 * clone still ends the wait (the fuzzer found a wait without end: the
 * count was taken twice, and a release between the two left no clone
 * held and no deadline).
 */
static void
release_when_counted (struct ndm_clone *clone)
{
  g_mutex_lock (&hold_lock);
  if (clone == hold_clone && !hold_open) {
    hold_open = true;
    ndm_clone_release_delay (clone);
  }
  g_mutex_unlock (&hold_lock);
}

static void
test_delay_requeue_released_while_counted (void)
{
  struct ndm_md *md = hold_md_new (NULL);
  char buf[4096];

  h_fill (buf, sizeof buf, 8);
  ndm_request_held_test_hook = release_when_counted;
  g_assert_cmpint (h_io_wait_bounded (h_io_start (md, NDM_OP_WRITE, buf,
                                                  sizeof buf, 0, 0), 10),
                   ==, 0);
  ndm_request_held_test_hook = NULL;
  g_assert_true (hold_open);
  g_assert_cmpmem (fake_data (fake_lookup ("a")), sizeof buf, buf,
                   sizeof buf);
  h_md_free (md);
}

/* R13: a held clone sees the quit gate while it waits, and its target
 * is told the clone will not be mapped again (release_clone), so that
 * it forgets it.
 */
static void
test_delay_requeue_quit_releases_held (void)
{
  struct ndm_config cfg;
  struct ndm_md *md;
  char buf[4096];
  struct h_io *io;

  ndm_config_init (&cfg);
  cfg.quitting = quit_now_fn;
  g_atomic_int_set (&quit_now, 0);
  md = hold_md_new (&cfg);
  io = h_io_start (md, NDM_OP_WRITE, buf, sizeof buf, 0, 0);
  hold_wait_held ();
  g_atomic_int_set (&quit_now, 1);
  g_assert_cmpint (h_io_wait_bounded (io, 10), ==, ESHUTDOWN);
  g_assert_cmpuint (hold_releases, ==, 1);
  g_assert_null (hold_clone);
  h_md_free (md);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/request/r1/no-reply-while-inflight-after-error",
                   test_r1_no_reply_while_inflight);
  g_test_add_func ("/request/r1/success-waits-for-last-bio",
                   test_r1_success_waits_for_last);
  g_test_add_func ("/request/r2/credit-only-from-head",
                   test_r2_credit_from_head);
  g_test_add_func ("/request/r2/all-good-out-of-order",
                   test_r2_all_good_out_of_order);
  g_test_add_func ("/request/r3/frontier-error-wins",
                   test_r3_frontier_error_wins);
  g_test_add_func ("/request/r3/later-error-never-overwrites",
                   test_r3_later_error_never_overwrites);
  g_test_add_func ("/request/r3/same-offset-first-arrival-wins",
                   test_r3_same_offset_first_arrival);
  g_test_add_func ("/request/r3/start-failure-arrives-in-order",
                   test_r3_start_failure_arrives_in_order);
  g_test_add_func ("/request/delay-requeue/held-until-released",
                   test_delay_requeue_held_until_released);
  g_test_add_func ("/request/delay/released-while-counted",
                   test_delay_requeue_released_while_counted);
  g_test_add_func ("/request/delay-requeue/quit-releases-held",
                   test_delay_requeue_quit_releases_held);
  g_test_add_func ("/request/r3/cancelled-leg-arrives-after-failure",
                   test_r3_cancelled_leg_arrives_after_failure);
  g_test_add_func ("/request/r3/first-clone-error-reaches-client",
                   test_r3_first_clone_error_reaches_client);
  g_test_add_func ("/request/r3/requeued-earlier-clone-error-wins",
                   test_r3_requeued_earlier_clone_error_wins);
  g_test_add_func ("/request/r4/requeue-remainder-only",
                   test_r4_requeue_remainder_only);
  H_ADD_CASES ("/request/r5/client-errno", client_errnos,
               test_r5_client_errno);
  g_test_add_func ("/request/r5/write-enotsup-is-eio", test_r5_write_enotsup);
  g_test_add_func ("/request/r5/errno-classes", test_r5_errno_classes);
  g_test_add_func ("/request/r5/eshutdown-reissued",
                   test_r5_eshutdown_reissued);
  g_test_add_func ("/request/r6/submit-failure-waits-for-started",
                   test_r6_submit_failure_waits);
  g_test_add_func ("/request/r6/later-clones-not-started",
                   test_r6_later_clones_not_started);
  g_test_add_func ("/request/r9/flush-every-device-once",
                   test_r9_flush_every_device_once);
  g_test_add_func ("/request/r9/flush-failure", test_r9_flush_failure);
  g_test_add_func ("/request/r9/fua-emulated-flush-fails",
                   test_r9_fua_emulated_flush_fails);
  g_test_add_func ("/request/r9/device-without-flush",
                   test_r9_device_without_flush);
  g_test_add_func ("/request/r9/requeued-flush-every-device",
                   test_r9_requeued_flush);
  g_test_add_func ("/request/r10/linear-cut-quarantines",
                   test_r10_linear_cut_quarantines);
  g_test_add_func ("/request/r13/empty-rounds-bounded",
                   test_r13_empty_rounds_bounded);
  g_test_add_func ("/request/r13/rounds-see-quit", test_r13_rounds_see_quit);
  g_test_add_func ("/request/r9/fua-native-and-emulated",
                   test_r9_fua_native_and_emulated);
  g_test_add_func ("/target/error/eio-and-rest-serves", test_target_error);
  g_test_add_func ("/target/zero/reads-zero-drops-writes", test_target_zero);
  g_test_add_func ("/request/range/out-of-range-einval", test_out_of_range);
  return g_test_run ();
}
