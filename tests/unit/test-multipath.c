/* SPDX-License-Identifier: BSD-3-Clause */
/* multipath: failover requeues exactly the uncredited tail (R4) with
 * offsets and buffers in step, target errors are not retried (R5), a
 * fenced path's commands never complete successfully later (R10), each
 * selector distributes as documented, no-path queueing, the checker,
 * flap damping, path identity, messages and the dm-mpath status format.
 *
 * Paths are fakes whose data differs on purpose: which bytes a client
 * gets back shows which path served them and at which offset.
 */
#include <stdio.h>

#include "nbd-dm/control.h"
#include "harness.h"
#include "thread.h"

#define KIB 1024

static char *
command (struct ndm_md *md, const char *line, GError **err)
{
  g_auto (GStrv) argv = g_strsplit (line, " ", -1);
  GString *out = g_string_new (NULL);

  if (ndm_md_command (md, g_strv_length (argv), argv, out, err) == -1) {
    g_string_free (out, TRUE);
    return NULL;
  }
  return g_string_free (out, FALSE);
}

static char *
command_ok (struct ndm_md *md, const char *line)
{
  GError *err = NULL;
  char *out = command (md, line, &err);

  if (out == NULL)
    g_error ("'%s': %s", line, err->message);
  return out;
}

static char *
status (struct ndm_md *md)
{
  char *s = command_ok (md, "status");

  g_strchomp (s);
  return s;
}

/* " <uri> A|F <fail count>" of path uri in the status line. */
static char *
path_state (struct ndm_md *md, const char *uri)
{
  g_autofree char *s = status (md);
  g_autofree char *key = g_strdup_printf (" %s ", uri);
  const char *p = strstr (s, key);
  char state[2];
  unsigned fails;

  g_assert_nonnull (p);
  g_assert_cmpint (sscanf (p + strlen (key), "%1s %u", state, &fails), ==, 2);
  return g_strdup_printf ("%s %u", state, fails);
}

/* Poll (the checker runs on its own thread) until path uri is in state
 * want ("A 1"); the test fails after 10 s.
 */
static void
wait_path_state (struct ndm_md *md, const char *uri, const char *want)
{
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;

  for (;;) {
    g_autofree char *got = path_state (md, uri);

    if (strcmp (got, want) == 0)
      return;
    if (g_get_monotonic_time () > end)
      g_error ("path %s: state '%s', expected '%s'", uri, got, want);
    g_usleep (5000);
  }
}

static void
wait_total_pending (struct fake_dev *a, struct fake_dev *b, unsigned n)
{
  gint64 end = g_get_monotonic_time () + 5 * G_TIME_SPAN_SECOND;

  while (fake_pending (a) + fake_pending (b) != n) {
    if (g_get_monotonic_time () > end)
      g_error ("expected %u commands pending, have %u + %u", n,
               fake_pending (a), fake_pending (b));
    g_usleep (1000);
  }
}

/* The whole log of fd as "op offset+len" words, for exact comparisons. */
static char *
log_string (struct fake_dev *fd)
{
  static const char *const op[] = {
    [NDM_OP_READ] = "r", [NDM_OP_WRITE] = "w", [NDM_OP_FLUSH] = "f",
    [NDM_OP_TRIM] = "t", [NDM_OP_ZERO] = "z", [NDM_OP_CACHE] = "c",
    [NDM_OP_BLOCK_STATUS] = "b",
  };
  g_autoptr (GArray) log = fake_log (fd);
  GString *s = g_string_new (NULL);
  unsigned i;

  for (i = 0; i < log->len; i++) {
    const struct fake_cmd *c = &g_array_index (log, struct fake_cmd, i);

    g_string_append_printf (s, "%s%s %" PRIu64 "+%" PRIu64, i ? ", " : "",
                            op[c->op], c->offset, c->len);
  }
  return g_string_free (s, FALSE);
}

/* Two paths of 1 MiB, 16 KiB maximum request, a held (the test completes
 * its commands), b immediate.  Round-robin with a first.
 */
#define TWO_PATHS \
  "0 2048 multipath 0 0 1 1 round-robin 0 2 1 " \
  "fake://a?mode=held&max=16384 1 fake://b?max=16384 1"

/* ---- R4: the tail, and only the tail ------------------------------------------ */

static void
test_write_tail_requeued (void)
{
  struct ndm_md *md = h_md_new (TWO_PATHS, NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc (64 * KIB);
  g_autofree char *blog = NULL, *st = NULL;
  const uint64_t off = 8 * KIB;
  struct h_io *io;

  h_fill (buf, 64 * KIB, 7);
  io = h_io_start (md, NDM_OP_WRITE, buf, 64 * KIB, off, 0);
  fake_wait_pending (a, 4);
  /* Out of order: the pieces after the failed one succeed first. */
  fake_complete (a, 2, 0);
  fake_complete (a, 3, 0);
  fake_complete (a, 1, ECONNRESET);
  g_assert_false (h_io_done (io));      /* R1: piece 0 is in flight */
  fake_complete (a, 0, 0);
  g_assert_cmpint (h_io_wait (io), ==, 0);

  /* a has the head; b got [off + 16K, off + 64K) and nothing else. */
  g_assert_cmpmem (fake_data (a) + off, 16 * KIB, buf, 16 * KIB);
  blog = log_string (b);
  g_assert_cmpstr (blog, ==, "w 24576+16384, w 40960+16384, w 57344+16384");
  g_assert_cmpmem (fake_data (b) + off + 16 * KIB, 48 * KIB,
                   buf + 16 * KIB, 48 * KIB);
  g_assert_cmpint (fake_data (b)[off + 16 * KIB - 1], ==, 0);

  /* The path failed, was fenced, and the status says so. */
  g_assert_cmpuint (fake_fences (a), ==, 1);
  st = path_state (md, "fake://a?mode=held&max=16384");
  g_assert_cmpstr (st, ==, "F 1");
  h_md_free (md);
}

static void
test_read_tail_requeued (void)
{
  struct ndm_md *md = h_md_new (TWO_PATHS, NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc0 (64 * KIB);
  g_autofree char *blog = NULL;
  const uint64_t off = 4 * KIB;
  struct h_io *io;

  /* Different data on each path: the buffer shows who served what. */
  h_fill (fake_data (a), 1 << 20, 1);
  h_fill (fake_data (b), 1 << 20, 2);
  io = h_io_start (md, NDM_OP_READ, buf, 64 * KIB, off, 0);
  fake_wait_pending (a, 4);
  fake_complete (a, 0, 0);
  fake_complete (a, 1, 0);
  fake_complete (a, 3, 0);
  fake_complete (a, 2, ENOTCONN);
  g_assert_cmpint (h_io_wait (io), ==, 0);

  g_assert_cmpmem (buf, 32 * KIB, fake_data (a) + off, 32 * KIB);
  g_assert_cmpmem (buf + 32 * KIB, 32 * KIB, fake_data (b) + off + 32 * KIB,
                   32 * KIB);
  blog = log_string (b);
  g_assert_cmpstr (blog, ==, "r 36864+16384, r 53248+16384");
  h_md_free (md);
}

/* A path error at the very first byte re-sends all of it. */
static void
test_tail_from_zero (void)
{
  struct ndm_md *md = h_md_new (TWO_PATHS, NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  char buf[8 * KIB];
  g_autofree char *blog = NULL;
  struct h_io *io;

  h_fill (buf, sizeof buf, 3);
  io = h_io_start (md, NDM_OP_WRITE, buf, sizeof buf, 0, 0);
  fake_wait_pending (a, 1);
  fake_complete (a, 0, ECONNRESET);
  g_assert_cmpint (h_io_wait (io), ==, 0);
  blog = log_string (b);
  g_assert_cmpstr (blog, ==, "w 0+8192");
  g_assert_cmpmem (fake_data (b), sizeof buf, buf, sizeof buf);
  h_md_free (md);
}

/* Block status over a path that fails half way: the answer still covers
 * the whole request (its head is asked again: extents are an answer, not
 * data moved, and the head's answer went with the failed round).
 */
static void
test_block_status_failover (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 0 0 1 1 round-robin 0 2 1 fake://a?maxlen=16384 1 "
    "fake://b?maxlen=16384 1", NULL);
  g_autoptr (GArray) ext = g_array_new (FALSE, FALSE,
                                        sizeof (struct ndm_extent));
  uint64_t covered = 0;
  unsigned i;
  int err;

  fake_fail_at (fake_lookup ("a"), 1, ENOTCONN);
  g_assert_cmpint (ndm_md_extents (md, 65536, 0, 0, ext, &err), ==, 0);
  for (i = 0; i < ext->len; i++) {
    const struct ndm_extent *e = &g_array_index (ext, struct ndm_extent, i);

    g_assert_cmpuint (e->offset, ==, covered);
    covered += e->length;
  }
  g_assert_cmpuint (covered, >=, 65536);
  g_assert_cmpuint (fake_count_op (fake_lookup ("b"), NDM_OP_BLOCK_STATUS),
                    >, 0);
  h_md_free (md);
}

/* ---- R5: target errors ------------------------------------------------------ */

static const struct target_error {
  const char *name;
  int err;
} target_errors[] = {
  { "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EPERM", EPERM },
  { "EINVAL", EINVAL },
};

/* One case per row of target_errors. */
static void
test_target_error_not_retried (gconstpointer data)
{
  int error = ((const struct target_error *) data)->err;
  struct ndm_md *md = h_md_new (TWO_PATHS, NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc (32 * KIB);
  g_autofree char *st = NULL;
  struct h_io *io;

  h_fill (buf, 32 * KIB, 5);
  io = h_io_start (md, NDM_OP_WRITE, buf, 32 * KIB, 0, 0);
  fake_wait_pending (a, 2);
  fake_complete (a, 1, error);
  fake_complete (a, 0, 0);
  g_assert_cmpint (h_io_wait (io), ==, error);
  g_assert_cmpuint (fake_submitted (b), ==, 0);
  g_assert_cmpuint (fake_fences (a), ==, 0);
  st = path_state (md, "fake://a?mode=held&max=16384");
  g_assert_cmpstr (st, ==, "A 0");
  h_md_free (md);
}

/* The error at the frontier decides (R3): a target error before a path
 * error is the answer; the path still fails (its connection is gone).
 */
static void
test_target_error_before_path_error (void)
{
  struct ndm_md *md = h_md_new (TWO_PATHS, NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc (32 * KIB);
  g_autofree char *st = NULL;
  struct h_io *io;

  io = h_io_start (md, NDM_OP_READ, buf, 32 * KIB, 0, 0);
  fake_wait_pending (a, 2);
  fake_complete (a, 1, ECONNRESET);
  fake_complete (a, 0, EIO);
  g_assert_cmpint (h_io_wait (io), ==, EIO);
  g_assert_cmpuint (fake_submitted (b), ==, 0);
  st = path_state (md, "fake://a?mode=held&max=16384");
  g_assert_cmpstr (st, ==, "F 1");
  h_md_free (md);
}

/* ---- R10: a fenced path's commands ------------------------------------------ */

/* Request 1 fails path a; request 2 still has commands on a.  The fence
 * fails them (they can never complete successfully later, nor land), and
 * request 2 goes on over b.
 */
static void
test_fenced_commands_discarded (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 0 0 1 1 round-robin 0 2 1 "
    "fake://a?mode=held&max=16384 2 fake://b?mode=held&max=16384 1", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *b1 = g_malloc (16 * KIB), *b2 = g_malloc (16 * KIB);
  struct h_io *io1, *io2;

  h_fill (b1, 16 * KIB, 11);
  h_fill (b2, 16 * KIB, 12);
  /* repeat_count 2: both go to a. */
  io1 = h_io_start (md, NDM_OP_WRITE, b1, 16 * KIB, 0, 0);
  fake_wait_pending (a, 1);
  io2 = h_io_start (md, NDM_OP_WRITE, b2, 16 * KIB, 64 * KIB, 0);
  fake_wait_pending (a, 2);

  fake_complete (a, 0, ENOTCONN);
  /* The fence took request 2's command off a: nothing left to complete,
   * and its data never reached a.
   */
  fake_wait_pending (b, 2);
  g_assert_cmpuint (fake_pending (a), ==, 0);
  g_assert_cmpuint (fake_fences (a), ==, 1);
  g_assert_cmpint (fake_data (a)[64 * KIB], ==, 0);
  fake_complete_all (b);
  g_assert_cmpint (h_io_wait (io1), ==, 0);
  g_assert_cmpint (h_io_wait (io2), ==, 0);
  g_assert_cmpmem (fake_data (b), 16 * KIB, b1, 16 * KIB);
  g_assert_cmpmem (fake_data (b) + 64 * KIB, 16 * KIB, b2, 16 * KIB);
  g_assert_cmpuint (fake_submitted (b), ==, 2);
  h_md_free (md);
}

/* ---- R7 x multipath: read-modify-write where the data is --------------------- */

/* Two paths to one export (p2 shares p1's data), 4 KiB blocks.  Two
 * 512-byte writes to one block go down different paths; each must
 * read-modify-write the block, and the second must wait for the first:
 * the paths are two devices, but the block is one.  (It used to read the
 * old block on p2 while p1's update was still out: one update lost.)
 */
static void
test_rmw_two_paths_one_block (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 0 0 1 1 round-robin 0 2 1 "
    "fake://p1?mode=held&min=4096 1 fake://p2?data=p1&mode=held&min=4096 1",
    NULL);
  struct fake_dev *p1 = fake_lookup ("p1"), *p2 = fake_lookup ("p2");
  char sa[512], sb[512], got[1024];
  struct h_io *a, *b;

  memset (sa, 'a', sizeof sa);
  memset (sb, 'b', sizeof sb);
  a = h_io_start (md, NDM_OP_WRITE, sa, 512, 0, 0);      /* to p1 */
  fake_wait_pending (p1, 1);                              /* its read */
  b = h_io_start (md, NDM_OP_WRITE, sb, 512, 512, 0);    /* to p2 */
  g_usleep (30 * 1000);
  g_assert_cmpuint (fake_submitted (p2), ==, 0);          /* b waits */
  fake_complete (p1, 0, 0);
  fake_wait_pending (p1, 1);                              /* a's write */
  g_assert_cmpuint (fake_submitted (p2), ==, 0);
  fake_complete (p1, 1, 0);
  g_assert_cmpint (h_io_wait (a), ==, 0);
  fake_wait_pending (p2, 1);
  fake_complete (p2, 0, 0);
  fake_wait_pending (p2, 1);
  fake_complete (p2, 1, 0);
  g_assert_cmpint (h_io_wait (b), ==, 0);
  memcpy (got, fake_data (p1), sizeof got);
  g_assert_cmpmem (got, 512, sa, 512);
  g_assert_cmpmem (got + 512, 512, sb, 512);
  h_md_free (md);
}

/* ---- R10: no ghost writes --------------------------------------------------- */

/* p1's server is alive but stopped (fence=ghost): what it received runs
 * when it resumes.  p2 is the other path to the same data.
 */
#define GHOST_PATHS \
  "0 2048 multipath 0 0 1 1 round-robin 0 2 1 " \
  "fake://p1?mode=held&fence=ghost 1 fake://p2?data=p1 1"
#define P1 "fake://p1?mode=held&fence=ghost"

static bool
done_within (struct h_io *io, unsigned ms)
{
  gint64 end = g_get_monotonic_time () + ms * G_TIME_SPAN_MILLISECOND;

  while (!h_io_done (io) && g_get_monotonic_time () < end)
    g_usleep (1000);
  return h_io_done (io);
}

/* Write X hangs on p1; the path fails and is fenced.  X may not move to
 * p2 while p1's server may still run it: it waits, and so does a later
 * write over it, while writes elsewhere and reads go on.  When p1's
 * server resumes, X lands there first; only then is X written on p2 and
 * acknowledged, and Y after it: the acknowledged Y is what stays.  (X
 * used to be re-sent at once, and the resumed server wrote the stale X
 * over the acknowledged Y.)
 */
static void
test_ghost_write_waits_for_server (void)
{
  struct ndm_md *md = h_md_new (GHOST_PATHS, NULL);
  struct fake_dev *p1 = fake_lookup ("p1"), *p2 = fake_lookup ("p2");
  char x[4096], y[4096], z[4096], got[4096];
  g_autoptr (GPtrArray) log = NULL;
  struct h_io *io;

  h_log_start ();
  memset (x, 'X', sizeof x);
  memset (y, 'Y', sizeof y);
  memset (z, 'Z', sizeof z);
  io = h_io_start (md, NDM_OP_WRITE, x, sizeof x, 0, 0);
  fake_wait_pending (p1, 1);
  g_free (command_ok (md, "message 0 fail_path " P1));
  g_assert_false (done_within (io, 50));
  g_assert_cmpuint (fake_submitted (p2), ==, 0);
  g_assert_cmpuint (fake_quarantined (p1), ==, 1);
  /* Elsewhere, writes go on; reads of the quarantined block too. */
  g_assert_cmpint (h_io_wait_bounded (h_io_start (md, NDM_OP_WRITE, z,
                                                  sizeof z, 65536, 0), 5),
                   ==, 0);
  g_assert_cmpint (h_io_wait_bounded (h_io_start (md, NDM_OP_READ, got,
                                                  sizeof got, 0, 0), 5),
                   ==, 0);
  g_assert_false (h_io_done (io));

  fake_land_ghosts (p1);                /* the stopped server resumes */
  g_assert_cmpint (h_io_wait_bounded (io, 5), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, y, sizeof y, 0, 0), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_READ, got, sizeof got, 0, 0), ==, 0);
  g_assert_cmpmem (got, sizeof got, y, sizeof y);
  g_assert_cmpmem (fake_data (p1), 4096, y, sizeof y);
  g_assert_cmpuint (fake_quarantined (p1), ==, 0);
  /* The quarantine is an error (writes wait); its release recovery. */
  log = h_log_stop ();
  g_assert_true (h_log_error_or_none (log, "a write may still land after "
                                      "its connection was cut"));
  g_assert_cmpint (h_log_level_of (log, "1 quarantined range released"),
                   ==, 'I');
  h_md_free (md);
}

/* The server never comes back: after fence-timeout the waiting write
 * fails with EIO, and so does every later write over the quarantined
 * range, at once, until the operator says the server is dead.
 */
static void
test_ghost_write_deadline (void)
{
  struct ndm_config cfg;
  struct ndm_md *md;
  struct fake_dev *p1;
  char x[4096], y[4096], got[4096];
  struct h_io *io;

  ndm_config_init (&cfg);
  cfg.fence_timeout_ms = 200;
  md = h_md_new (GHOST_PATHS, &cfg);
  p1 = fake_lookup ("p1");
  memset (x, 'X', sizeof x);
  memset (y, 'Y', sizeof y);
  io = h_io_start (md, NDM_OP_WRITE, x, sizeof x, 0, 0);
  fake_wait_pending (p1, 1);
  g_free (command_ok (md, "message 0 fail_path " P1));
  g_assert_cmpint (h_io_wait_bounded (io, 5), ==, EIO);
  /* Past the deadline: at once, and only over the quarantined range. */
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, y, 512, 3584, 0), ==, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_ZERO, NULL, 8192, 0, 0), ==, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, y, sizeof y, 4096, 0), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_READ, got, sizeof got, 0, 0), ==, 0);

  g_free (command_ok (md, "message 0 device_dead " P1));
  g_assert_cmpuint (fake_quarantined (p1), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, y, sizeof y, 0, 0), ==, 0);
  g_assert_cmpmem (fake_data (p1), 4096, y, sizeof y);
  h_md_free (md);
}

/* A read fenced on p1 moves to p2 at once: no write of it can land. */
static void
test_ghost_read_moves_at_once (void)
{
  struct ndm_md *md = h_md_new (GHOST_PATHS, NULL);
  struct fake_dev *p1 = fake_lookup ("p1");
  char got[4096];
  struct h_io *io;

  memset (fake_data (p1), 'D', 4096);
  io = h_io_start (md, NDM_OP_READ, got, sizeof got, 0, 0);
  fake_wait_pending (p1, 1);
  g_free (command_ok (md, "message 0 fail_path " P1));
  g_assert_cmpint (h_io_wait_bounded (io, 5), ==, 0);
  g_assert_cmpint (got[0], ==, 'D');
  g_assert_cmpuint (fake_quarantined (p1), ==, 0);
  h_md_free (md);
}

/* R6: a clone whose bios never started is released, so the selector
 * does not count an I/O that never ran (queue-length would shun the path).
 */
static void
test_cancelled_clone_released (void)
{
  struct ndm_md *md = h_md_new (
    "0 1024 multipath 0 0 1 1 queue-length 0 1 1 fake://a 1\n"
    "1024 1024 multipath 0 0 1 1 queue-length 0 1 1 fake://b 1", NULL);
  g_autofree char *st = NULL;
  char buf[1024];

  fake_fail_submit_at (fake_lookup ("a"), 0, ENOMEM);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 1024, 1023 * 512, 0), !=, 0);
  g_assert_cmpuint (fake_submitted (fake_lookup ("b")), ==, 0);
  st = status (md);
  g_assert_true (g_str_has_suffix (st, "fake://b A 0 0"));
  h_md_free (md);
}

/* A fast zero refused whole (a piece of it cannot be fast) ends before
 * any bio starts: the multipath clone it mapped is released, so
 * queue-length does not count it in flight for ever.  Found by
 * tests/fuzz (fuzz-control).
 */
static void
test_refused_fast_zero_released (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 multipath 0 0 1 1 queue-length 0 1 1 fake://a 1\n"
    "8 8 linear fake://b?fastzero=0 0", NULL);
  g_autofree char *st = NULL;

  g_assert_cmpint (h_io (md, NDM_OP_ZERO, NULL, 8192, 0, NDM_REQ_FAST_ZERO),
                   ==, ENOTSUP);
  g_assert_cmpuint (fake_submitted (fake_lookup ("a")), ==, 0);
  st = status (md);
  g_assert_nonnull (strstr (st, "fake://a A 0 0\n"));
  h_md_free (md);
}

/* ---- selectors ---------------------------------------------------------------- */

/* Which path (a, b, c) served each of n reads issued one after another. */
static char *
read_sequence (struct ndm_md *md, unsigned n)
{
  GString *s = g_string_new (NULL);
  char buf[512];
  unsigned i;

  for (i = 0; i < n; i++) {
    const char *names[] = { "a", "b", "c" };
    unsigned before[3], j;

    for (j = 0; j < 3; j++)
      before[j] = fake_lookup (names[j]) ? fake_submitted (fake_lookup
                                                           (names[j])) : 0;
    g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, i * 512, 0), ==, 0);
    for (j = 0; j < 3; j++)
      if (fake_lookup (names[j]) &&
          fake_submitted (fake_lookup (names[j])) > before[j])
        g_string_append (s, names[j]);
  }
  return g_string_free (s, FALSE);
}

static void
test_round_robin (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 0 0 1 1 round-robin 0 3 1 fake://a 2 fake://b 1 "
    "fake://c 1", NULL);
  g_autofree char *seq = read_sequence (md, 8);
  g_autofree char *seq2 = NULL, *out = NULL;

  /* repeat_count I/Os per turn, in table order. */
  g_assert_cmpstr (seq, ==, "aabcaabc");
  /* A failed path leaves the turn; reinstated, it rejoins. */
  g_free (command_ok (md, "message 0 fail_path fake://b"));
  seq2 = read_sequence (md, 6);
  g_assert_cmpstr (seq2, ==, "aacaac");
  g_free (command_ok (md, "message 0 reinstate_path fake://b"));
  out = read_sequence (md, 4);
  g_assert_cmpstr (out, ==, "aabc");
  h_md_free (md);
}

/* queue-length: the path with the fewest I/Os in flight. */
static void
test_queue_length (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 0 0 1 1 queue-length 0 2 1 fake://a?mode=held 1 "
    "fake://b 1", NULL);
  struct fake_dev *a = fake_lookup ("a");
  g_autofree char *seq = NULL, *st = NULL;
  char buf[512];
  struct h_io *io;

  /* Idle: the first goes to a (the search starts at a). */
  io = h_io_start (md, NDM_OP_READ, buf, 512, 0, 0);
  fake_wait_pending (a, 1);
  /* a has one in flight: everything goes to b, however many. */
  seq = read_sequence (md, 6);
  g_assert_cmpstr (seq, ==, "bbbbbb");
  /* dm-queue-length's info: in-flight per path. */
  st = status (md);
  g_assert_nonnull (strstr (st, "fake://a?mode=held A 0 1 "));
  g_assert_true (g_str_has_suffix (st, "fake://b A 0 0"));
  fake_complete_all (a);
  g_assert_cmpint (h_io_wait (io), ==, 0);
  h_md_free (md);
}

/* service-time: least (in-flight bytes + this I/O) / relative throughput. */
static void
test_service_time (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 0 0 1 1 service-time 0 2 2 fake://a?mode=held 1 10 "
    "fake://b?mode=held 1 25", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  /* (in flight + 4K) / throughput, a at 10, b at 25:
   * 1: a .4  b .16 -> b    2: b .32 -> b    3: b .48 a .4 -> a
   * 4: a .8 b .48 -> b     5: b .64 -> b
   */
  const char *want = "bbabb";
  struct h_io *io[5];
  char buf[5][4096];
  unsigned i;

  for (i = 0; i < 5; i++) {
    unsigned na = fake_pending (a);

    io[i] = h_io_start (md, NDM_OP_READ, buf[i], 4096, i * 4096, 0);
    wait_total_pending (a, b, i + 1);
    g_assert_cmpint (fake_pending (a) > na ? 'a' : 'b', ==, want[i]);
  }
  fake_complete_all (a);
  fake_complete_all (b);
  for (i = 0; i < 5; i++)
    g_assert_cmpint (h_io_wait (io[i]), ==, 0);
  h_md_free (md);
}

static const struct h_table_error selector_arg_errors[] = {
  { "repeat-count-not-a-number",
    "0 8 multipath 0 0 1 1 round-robin 0 1 1 fake://a x",
    "repeat_count 'x'" },
  { "unknown-selector", "0 8 multipath 0 0 1 1 fastest 0 1 0 fake://a",
    "unknown path selector 'fastest'" },
  { "relative-throughput-too-large",
    "0 8 multipath 0 0 1 1 service-time 0 1 2 fake://a 1 101",
    "relative_throughput '101'" },
  { "round-robin-two-path-args",
    "0 8 multipath 0 0 1 1 round-robin 0 1 2 fake://a 1 1", "#path args" },
};

/* ---- table --------------------------------------------------------------------- */

static const struct h_table_error table_errors[] = {
  { "unknown-feature",
    "0 8 multipath 1 bogus 0 1 1 round-robin 0 1 0 fake://a",
    "unknown feature 'bogus'" },
  { "hardware-handler",
    "0 8 multipath 0 1 alua 1 1 round-robin 0 1 0 fake://a",
    "hardware handlers" },
  { "initial-group-past-groups",
    "0 8 multipath 0 0 1 2 round-robin 0 1 0 fake://a", "the initial group" },
  { "no-path", "0 8 multipath 0 0 1 1 round-robin 0 1 0",
    "a path was expected" },
  { "path-listed-twice",
    "0 8 multipath 0 0 1 1 round-robin 0 2 0 fake://a fake://a",
    "listed twice" },
  { "no-path-retry-not-a-number", "0 8 multipath 2 no_path_retry soon 0 1 1 "
    "round-robin 0 1 0 fake://a", "no_path_retry 'soon'" },
  { "no-usable-path",
    "0 8 multipath 0 0 1 1 round-robin 0 1 0 fake://missing-a",
    "no path can be used" },
  { "extra-word", "0 8 multipath 0 0 1 1 round-robin 0 1 0 fake://a extra",
    "unexpected 'extra'" },
};

/* Each count word is checked against the words left once it is taken.
 * #features one too high read past the words (a heap overflow under
 * ASan, SIGSEGV otherwise), and 'no_path_retry' last in the line made
 * the ctr fail without an error, which table.c dereferenced: both killed
 * a live server on reload.  The first two tables are the fuzzer's
 * (shared/repro/fuzz-crashes/table-multipath-features-heap-overflow and
 * -null-gerror, up to their NUL byte, where the table text ends).
 */
static const struct h_table_error table_count_errors[] = {
  { "features-past-end", "0 4096 multipath 1",
    "line 1: multipath: #features '1' is more than the 0 words after it" },
  { "no-path-retry-last", "0 4096 multipath 2 no_path_retry",
    "line 1: multipath: #features '2' is more than the 1 word after it" },
  { "no-path-retry-without-value", "0 8 multipath 1 no_path_retry 0 1 1 "
    "round-robin 0 1 0 fake://a", "line 1: multipath: feature "
    "no_path_retry has no value within #features" },
  { "features-one-too-many", "0 8 multipath 3 queue_if_no_path "
    "no_path_retry", "#features '3' is more than the 2 words after it" },
  { "features-2^64-1", "0 8 multipath 18446744073709551615 "
    "queue_if_no_path", "#features '18446744073709551615' is more than the "
    "1 word after it" },
  { "selector-args-past-end",
    "0 8 multipath 0 0 1 1 round-robin 4 1 0 fake://a",
    "line 1: multipath: #selector args '4' is more than the 3 words after "
    "it" },
  { "round-robin-selector-args",
    "0 8 multipath 0 0 1 1 round-robin 3 1 0 fake://a",
    "round-robin takes no selector arguments, got 3" },
  { "paths-past-end", "0 8 multipath 0 0 1 1 round-robin 0 2 1 fake://a 1",
    "the table ends where a path was expected" },
  { "path-args-past-end",
    "0 8 multipath 0 0 1 1 service-time 0 1 2 fake://a 1",
    "path fake://a: expected 2 path args" },
  { "groups-past-end", "0 8 multipath 0 0 2 1 round-robin 0 1 0 fake://a",
    "the table ends where a path selector was expected" },
};

/* dm-mpath's status and table lines. */
static void
test_status_format (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 3 queue_if_no_path no_path_retry 5 0 2 1 "
    "round-robin 0 2 1 fake://a 1 fake://b 1 "
    "queue-length 0 1 1 fake://c 1", NULL);
  g_autofree char *st = status (md), *tbl = command_ok (md, "table");
  g_autofree char *st2 = NULL;
  char buf[512];

  g_assert_cmpstr (st, ==, "0 2048 multipath 2 0 0 0 2 1 "
                   "E 0 2 0 fake://a A 0 fake://b A 0 "
                   "E 0 1 1 fake://c A 0 0");
  g_assert_cmpstr (tbl, ==, "0 2048 multipath 3 queue_if_no_path "
                   "no_path_retry 5 0 2 1 round-robin 0 2 1 fake://a 1 "
                   "fake://b 1 queue-length 0 1 1 fake://c 1\n");
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, 0, 0), ==, 0);
  g_free (command_ok (md, "message 0 fail_path fake://b"));
  g_free (command_ok (md, "message 0 disable_group 2"));
  /* As dm: the group is chosen afresh at the next I/O. */
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, 0, 0), ==, 0);
  st2 = status (md);
  g_assert_cmpstr (st2, ==, "0 2048 multipath 2 0 0 0 2 1 "
                   "A 0 2 0 fake://a A 0 fake://b F 1 "
                   "D 0 1 1 fake://c A 0 0");
  h_md_free (md);
}

/* ---- groups and messages ------------------------------------------------------ */

static void
test_groups (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 0 0 2 1 round-robin 0 1 1 fake://a 1 "
    "round-robin 0 1 1 fake://b 1", NULL);
  g_autofree char *s1 = NULL, *s2 = NULL, *s3 = NULL, *s4 = NULL;
  g_autofree char *s5 = NULL;

  s1 = read_sequence (md, 2);
  g_assert_cmpstr (s1, ==, "aa");
  /* The current group's last path fails: the next group takes over. */
  g_free (command_ok (md, "message 0 fail_path fake://a"));
  s2 = read_sequence (md, 2);
  g_assert_cmpstr (s2, ==, "bb");
  /* Back: the current group stays current until told. */
  g_free (command_ok (md, "message 0 reinstate_path fake://a"));
  s3 = read_sequence (md, 1);
  g_assert_cmpstr (s3, ==, "b");
  /* enable_group, as dm's, makes the next I/O choose again: the first
   * group with a valid path.
   */
  g_free (command_ok (md, "message 0 enable_group 1"));
  s4 = read_sequence (md, 1);
  g_assert_cmpstr (s4, ==, "a");
  g_free (command_ok (md, "message 0 switch_group 2"));
  s5 = read_sequence (md, 1);
  g_assert_cmpstr (s5, ==, "b");
  h_md_free (md);
}

#define TWO_GROUPS \
  "0 2048 multipath 0 0 2 1 round-robin 0 1 1 fake://a 1 " \
  "round-robin 0 1 1 fake://b 1"
static const struct h_command_error message_errors[] = {
  { "switch-group-past-groups", TWO_GROUPS, "message 0 switch_group 3",
    "expected 1 to 2" },
  { "fail-path-unknown", TWO_GROUPS, "message 0 fail_path fake://zz",
    "no path 'fake://zz'" },
  { "unknown", TWO_GROUPS, "message 0 frobnicate",
    "unknown message 'frobnicate'" },
  { "device-dead-no-device", GHOST_PATHS, "message 0 device_dead",
    "expected one argument" },
  { "device-dead-unknown", GHOST_PATHS,
    "message 0 device_dead fake://nope", "no device 'fake://nope'" },
};
#undef TWO_GROUPS

/* ---- no path ------------------------------------------------------------------ */

static struct ndm_config *
fast_config (struct ndm_config *cfg, unsigned no_path_timeout_ms)
{
  ndm_config_init (cfg);
  cfg->checker_interval_ms = 20;
  cfg->no_path_timeout_ms = no_path_timeout_ms;
  return cfg;
}

/* Without queue_if_no_path, a request that exhausts its paths fails with
 * EIO (R5), not the paths' errno.
 */
static void
test_no_path_fails (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 0 0 1 1 round-robin 0 2 1 fake://a 1 fake://b 1",
    NULL);
  char buf[512];

  fake_set_down (fake_lookup ("a"), true);
  fake_set_down (fake_lookup ("b"), true);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, 0, 0), ==, EIO);
  /* And at once from then on: no path to try. */
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, 0, 0), ==, EIO);
  g_assert_cmpuint (fake_submitted (fake_lookup ("a")), ==, 1);
  g_assert_cmpuint (fake_submitted (fake_lookup ("b")), ==, 1);
  h_md_free (md);
}

/* queue_if_no_path: held until the checker brings a path back. */
static void
test_queue_until_path_returns (void)
{
  struct ndm_config cfg;
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 1 queue_if_no_path 0 1 1 round-robin 0 2 1 fake://a 1 "
    "fake://b 1", fast_config (&cfg, 0));
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  char buf[4096];
  g_autofree char *st = NULL;
  struct h_io *io;

  h_fill (buf, sizeof buf, 9);
  fake_set_down (a, true);
  fake_set_down (b, true);
  io = h_io_start (md, NDM_OP_WRITE, buf, sizeof buf, 0, 0);
  wait_path_state (md, "fake://a", "F 1");
  wait_path_state (md, "fake://b", "F 1");
  st = status (md);
  g_assert_true (g_str_has_prefix (st, "0 2048 multipath 2 1 0 "));
  g_assert_false (h_io_done (io));
  fake_set_down (b, false);
  g_assert_cmpint (h_io_wait (io), ==, 0);
  g_assert_cmpmem (fake_data (b), sizeof buf, buf, sizeof buf);
  wait_path_state (md, "fake://b", "A 1");
  h_md_free (md);
}

/* queue_if_no_path with a deadline: EIO once it passes. */
static void
test_queue_deadline (void)
{
  struct ndm_config cfg;
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 1 queue_if_no_path 0 1 1 round-robin 0 1 1 fake://a 1",
    fast_config (&cfg, 200));
  char buf[512];

  fake_set_down (fake_lookup ("a"), true);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, 0, 0), ==, EIO);
  h_md_free (md);
}

/* fail_if_no_path releases what is held, with EIO. */
static void
test_fail_if_no_path_releases (void)
{
  struct ndm_config cfg;
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 1 queue_if_no_path 0 1 1 round-robin 0 1 1 fake://a 1",
    fast_config (&cfg, 0));
  char buf[512];
  struct h_io *io;

  fake_set_down (fake_lookup ("a"), true);
  io = h_io_start (md, NDM_OP_READ, buf, 512, 0, 0);
  wait_path_state (md, "fake://a", "F 1");
  g_assert_false (h_io_done (io));
  g_free (command_ok (md, "message 0 fail_if_no_path"));
  g_assert_cmpint (h_io_wait (io), ==, EIO);
  h_md_free (md);
}

/* no_path_retry N: N checker intervals of queueing, then EIO. */
static void
test_no_path_retry (void)
{
  struct ndm_config cfg;
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 2 no_path_retry 3 0 1 1 round-robin 0 1 1 fake://a 1",
    fast_config (&cfg, 0));
  char buf[512];
  g_autofree char *tbl = NULL;

  fake_set_down (fake_lookup ("a"), true);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, 0, 0), ==, EIO);
  /* The checker gave up queueing, and the table line says it queued. */
  tbl = command_ok (md, "table");
  g_assert_nonnull (strstr (tbl, "multipath 2 no_path_retry 3 0 "));
  h_md_free (md);
}

/* ---- checker ------------------------------------------------------------------ */

static void
test_checker_reinstates (void)
{
  struct ndm_config cfg;
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 0 0 1 1 round-robin 0 2 1 fake://a 1 fake://b 1",
    fast_config (&cfg, 0));
  struct fake_dev *a = fake_lookup ("a");
  char buf[512];

  fake_set_down (a, true);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, 0, 0), ==, 0);
  wait_path_state (md, "fake://a", "F 1");
  /* Down, it is probed and stays failed. */
  while (fake_probes (a) < 2)
    g_usleep (5000);
  wait_path_state (md, "fake://a", "F 1");
  fake_set_down (a, false);
  wait_path_state (md, "fake://a", "A 1");
  h_md_free (md);
}

/* A path whose server went away, the device waiting for a new one (EAGAIN
 * at submit): with another valid path the clone goes there at once and
 * the path fails (dm-mpath's failfast clones), instead of waiting for the
 * device's reconnect window (found with a path server stopped by
 * SIGTERM: half the writes held 8-16 s).
 */
static void
test_failfast_path_going_away (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 0 0 1 1 round-robin 0 2 1 fake://a 1 fake://b 1", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  char buf[4 * KIB];
  unsigned i;

  h_fill (buf, sizeof buf, 11);
  fake_set_coming_back (a, true);
  /* Round-robin: one of two writes goes to a first. */
  for (i = 0; i < 2; i++)
    g_assert_cmpint (h_io_wait_bounded (h_io_start (md, NDM_OP_WRITE, buf,
                                                    sizeof buf, i * sizeof buf,
                                                    0), 10), ==, 0);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_WRITE), ==, 1);
  g_assert_cmpmem (fake_data (b), sizeof buf, buf, sizeof buf);
  g_assert_cmpmem (fake_data (b) + sizeof buf, sizeof buf, buf, sizeof buf);
  wait_path_state (md, "fake://a", "F 1");
  fake_set_coming_back (a, false);
  h_md_free (md);
}

/* The last valid path is not failfast: a restart of its server is
 * waited for, and the write goes through it then.
 */
static void
test_failfast_last_path_waits (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 0 0 1 1 round-robin 0 2 1 fake://a 1 fake://b 1", NULL);
  struct fake_dev *a = fake_lookup ("a");
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;
  char buf[4 * KIB];
  struct h_io *io;

  g_free (command_ok (md, "message 0 fail_path fake://b"));
  h_fill (buf, sizeof buf, 12);
  fake_set_coming_back (a, true);
  io = h_io_start (md, NDM_OP_WRITE, buf, sizeof buf, 0, 0);
  while (fake_count_op (a, NDM_OP_WRITE) < 3 && !h_io_done (io) &&
         g_get_monotonic_time () < end)
    g_usleep (1000);
  g_assert_false (h_io_done (io));
  g_assert_cmpuint (fake_count_op (a, NDM_OP_WRITE), >=, 3);
  fake_set_coming_back (a, false);
  g_assert_cmpint (h_io_wait_bounded (io, 10), ==, 0);
  g_assert_cmpmem (fake_data (a), sizeof buf, buf, sizeof buf);
  h_md_free (md);
}

/* A path that fails needs a human: an error; one that comes back does
 * not: info.  Each probe is a debug line of the multipath category, only
 * while it is on.
 */
static void
test_log_levels (void)
{
  struct ndm_config cfg;
  struct ndm_md *md;
  struct fake_dev *a;
  g_autoptr (GPtrArray) quiet = NULL;
  g_autoptr (GPtrArray) verbose = NULL;
  unsigned probes;

  h_log_start ();
  md = h_md_new (
    "0 2048 multipath 0 0 1 1 round-robin 0 2 1 fake://a 1 fake://b 1",
    fast_config (&cfg, 0));
  a = fake_lookup ("a");
  fake_set_down (a, true);
  wait_path_state (md, "fake://a", "F 1");
  fake_set_down (a, false);
  wait_path_state (md, "fake://a", "A 1");
  quiet = h_log_stop ();
  g_assert_true (h_log_error_or_none (quiet, "multipath: failing path "
                                      "fake://a"));
  g_assert_cmpint (h_log_level_of (quiet, "multipath: reinstating path "
                                   "fake://a"), ==, 'I');
  g_assert_cmpint (h_log_level_of (quiet, "probed"), ==, 0);

  ndm_log_set_debug (NDM_LOG_MULTIPATH, 1);
  h_log_start ();
  probes = fake_probes (a);
  while (fake_probes (a) < probes + 2)
    g_usleep (5000);
  verbose = h_log_stop ();
  ndm_log_set_debug (NDM_LOG_MULTIPATH, 0);
  g_assert_cmpint (h_log_level_of (verbose, "multipath: path fake://a "
                                   "(active) probed: it answers"), ==, 'D');
  h_md_free (md);
}

static bool
refuse_checker (const char *name)
{
  return strcmp (name, "ndm-mpath-check") == 0;
}

/* R13: the checker thread cannot be made when the target is resumed
 * (no threads left): I/O is served all the same, and the next path
 * failure tries again, so the failed path is still reinstated.
 */
static void
test_checker_thread_refused (void)
{
  struct ndm_config cfg;
  struct ndm_md *md;
  struct fake_dev *a;
  char buf[512];

  g_atomic_pointer_set (&ndm_thread_test_refuse, refuse_checker);
  md = h_md_new (
    "0 2048 multipath 0 0 1 1 round-robin 0 2 1 fake://a 1 fake://b 1",
    fast_config (&cfg, 0));
  a = fake_lookup ("a");
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, 0, 0), ==, 0);
  g_atomic_pointer_set (&ndm_thread_test_refuse, NULL);
  g_free (command_ok (md, "message 0 fail_path fake://a"));
  g_assert_cmpuint (fake_probes (a), ==, 0);
  wait_path_state (md, "fake://a", "A 1");      /* the checker, at last */
  h_md_free (md);
}

/* As multipathd's checker: an active path that stops answering is
 * failed (and fenced) before any I/O finds out.
 */
static void
test_checker_fails_silent_path (void)
{
  struct ndm_config cfg;
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 0 0 1 1 round-robin 0 2 1 fake://a 1 fake://b 1",
    fast_config (&cfg, 0));
  struct fake_dev *a = fake_lookup ("a");
  g_autofree char *json = NULL, *state = NULL, *reason = NULL;
  gint64 end;

  fake_set_down (a, true);
  wait_path_state (md, "fake://a", "F 1");
  /* The checker shows the path failed, then fences it (outside its
   * lock): wait for the fence too.
   */
  end = g_get_monotonic_time () + 5 * G_TIME_SPAN_SECOND;
  while (fake_fences (a) == 0 && g_get_monotonic_time () < end)
    g_usleep (1000);
  g_assert_cmpuint (fake_fences (a), ==, 1);
  g_assert_cmpuint (fake_submitted (a), ==, 0);
  json = command_ok (md, "status --json");
  state = h_json_str (json, "$.targets[0].detail.groups[0].paths[0].state");
  g_assert_cmpstr (state, ==, "failed");
  reason = h_json_str (json, "$.targets[0].detail.groups[0].paths[0].reason");
  g_assert_cmpstr (reason, ==, "checker: device fake://a: probe: connect: "
                   "Connection refused");
  g_assert_cmpint (h_json_int (json, "$.targets[0].detail.groups[0].paths[0]"
                               ".fail_count"), ==, 1);
  g_assert_cmpint (h_json_int (json, "$.targets[0].detail.valid_paths"), ==,
                   1);
  g_assert_false (h_json_bool (json, "$.targets[0].detail.queueing"));
  fake_set_down (a, false);
  wait_path_state (md, "fake://a", "A 1");
  h_md_free (md);
}

/* A path failing again within flap-window waits flap-damping: no probe
 * meanwhile; reinstate_path overrides.
 */
static void
test_flap_damping (void)
{
  struct ndm_config cfg;
  struct ndm_md *md;
  struct fake_dev *a;
  unsigned probes;

  fast_config (&cfg, 0);
  cfg.flap_window_ms = 60000;
  cfg.flap_damping_ms = 60000;
  md = h_md_new ("0 2048 multipath 0 0 1 1 round-robin 0 2 1 fake://a 1 "
                 "fake://b 1", &cfg);
  a = fake_lookup ("a");

  g_free (command_ok (md, "message 0 fail_path fake://a"));
  wait_path_state (md, "fake://a", "A 1");      /* the checker */
  g_free (command_ok (md, "message 0 fail_path fake://a"));
  probes = fake_probes (a);
  /* Many checker intervals pass: damped, not probed, still failed. */
  g_usleep (20 * cfg.checker_interval_ms * 1000);
  g_assert_cmpuint (fake_probes (a), ==, probes);
  wait_path_state (md, "fake://a", "F 2");
  g_free (command_ok (md, "message 0 reinstate_path fake://a"));
  wait_path_state (md, "fake://a", "A 2");
  h_md_free (md);
}

/* Identity: a path with another size is refused, at load and by the
 * checker.
 */
static void
test_identity (void)
{
  struct ndm_config cfg;
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 0 0 1 1 round-robin 0 2 1 fake://a 1 "
    "fake://b?size=2M 1", fast_config (&cfg, 0));
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *seq = NULL, *json = NULL, *path = NULL;
  GError *err = NULL;
  unsigned probes;

  wait_path_state (md, "fake://b?size=2M", "F 0");
  /* The dm line has no room for why; JSON says it. */
  json = command_ok (md, "status --json");
  h_json_expect (json, "$.targets[0].detail.groups[0].paths[1]",
                 "{\"path\":\"fake://b?size=2M\","
                 "\"state\":\"failed\",\"reason\":\"size 2097152 bytes, "
                 "the other paths have 1048576: not the same data\","
                 "\"fail_count\":0,\"damped_ms\":0}");
  /* The checker runs every 20 ms: the next probe is at most that far. */
  path = g_strdup ("$.targets[0].detail.groups[0].paths[1].next_check_ms");
  g_assert_cmpint (h_json_int (json, path), >=, 0);
  g_assert_cmpint (h_json_int (json, path), <=, 20);
  seq = read_sequence (md, 4);
  g_assert_cmpstr (seq, ==, "aaaa");
  /* The checker keeps refusing it. */
  while (fake_probes (b) < 2)
    g_usleep (5000);
  wait_path_state (md, "fake://b?size=2M", "F 0");

  /* A path that comes back with another size is refused too. */
  fake_set_probe_size (a, 4096);
  g_free (command_ok (md, "message 0 fail_path fake://a"));
  probes = fake_probes (a);
  while (fake_probes (a) < probes + 2)
    g_usleep (5000);
  wait_path_state (md, "fake://a", "F 1");
  /* Nor by hand. */
  g_assert_null (command (md, "message 0 reinstate_path fake://b?size=2M",
                          &err));
  g_assert_nonnull (strstr (err->message, "not the same data"));
  g_clear_error (&err);
  fake_set_probe_size (a, 0);
  wait_path_state (md, "fake://a", "A 1");
  h_md_free (md);
}

/* A path unreachable at load is kept, failed, and reinstated once it
 * answers.
 */
static void
test_absent_at_load (void)
{
  struct ndm_config cfg;
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 0 0 1 1 round-robin 0 2 1 fake://a 1 "
    "fake://missing-b 1", fast_config (&cfg, 0));
  g_autofree char *seq = NULL;

  wait_path_state (md, "fake://missing-b", "F 0");
  seq = read_sequence (md, 2);
  g_assert_cmpstr (seq, ==, "aa");
  fake_set_down (fake_lookup ("missing-b"), false);
  wait_path_state (md, "fake://missing-b", "A 0");
  /* Its first contact is no reinstatement: failing now is no flap. */
  g_free (command_ok (md, "message 0 fail_path fake://missing-b"));
  wait_path_state (md, "fake://missing-b", "A 1");
  h_md_free (md);
}

static gpointer
bring_back_a (gpointer data)
{
  g_usleep (100 * 1000);
  fake_set_down (data, false);
  return NULL;
}

/* Status lists the target's devices (iterate_devices) while the checker
 * rewrites a path's reason.  Here the status runs before the checker
 * reinstates a, with nothing between them but time: the status thread
 * takes no lock after its look at the reason, and the device comes back
 * from another thread.  Under TSan the look and the rewrite must be
 * ordered (the target's lock), else this reports a race.
 */
static void
test_status_while_checker_rewrites (void)
{
  struct ndm_config cfg;
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 0 0 1 1 round-robin 0 2 1 fake://a 1 fake://b 1",
    fast_config (&cfg, 0));
  struct fake_dev *a = fake_lookup ("a");
  g_autofree char *json = NULL, *uri = NULL;
  GThread *t;

  fake_set_down (a, true);
  wait_path_state (md, "fake://a", "F 1");
  t = g_thread_new ("bring-back", bring_back_a, a);
  json = command_ok (md, "status --json");
  uri = h_json_str (json, "$.targets[0].devices[0].uri");
  g_assert_cmpstr (uri, ==, "fake://a");
  g_usleep (300 * 1000);        /* the checker reinstates a meanwhile */
  g_thread_join (t);
  wait_path_state (md, "fake://a", "A 1");
  h_md_free (md);
}

/* Flush goes to every valid path; a failed one is skipped. */
static void
test_flush (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 multipath 0 0 1 1 round-robin 0 3 1 fake://a 1 fake://b 1 "
    "fake://c 1", NULL);

  g_free (command_ok (md, "message 0 fail_path fake://c"));
  g_assert_cmpint (h_io (md, NDM_OP_FLUSH, NULL, 0, 0, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (fake_lookup ("a"), NDM_OP_FLUSH), ==, 1);
  g_assert_cmpuint (fake_count_op (fake_lookup ("b"), NDM_OP_FLUSH), ==, 1);
  g_assert_cmpuint (fake_count_op (fake_lookup ("c"), NDM_OP_FLUSH), ==, 0);
  h_md_free (md);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/multipath/r4/write-tail", test_write_tail_requeued);
  g_test_add_func ("/multipath/failfast/path-going-away",
                   test_failfast_path_going_away);
  g_test_add_func ("/multipath/failfast/last-path-waits",
                   test_failfast_last_path_waits);
  g_test_add_func ("/multipath/r4/read-tail", test_read_tail_requeued);
  g_test_add_func ("/multipath/r4/from-zero", test_tail_from_zero);
  g_test_add_func ("/multipath/r4/block-status", test_block_status_failover);
  H_ADD_CASES ("/multipath/r5/target-errors", target_errors,
               test_target_error_not_retried);
  g_test_add_func ("/multipath/r3/target-error-first",
                   test_target_error_before_path_error);
  g_test_add_func ("/multipath/r10/fenced-discarded",
                   test_fenced_commands_discarded);
  g_test_add_func ("/multipath/r6/cancelled-released",
                   test_cancelled_clone_released);
  g_test_add_func ("/multipath/r6/refused-fast-zero-released",
                   test_refused_fast_zero_released);
  g_test_add_func ("/multipath/selector/round-robin", test_round_robin);
  g_test_add_func ("/multipath/selector/queue-length", test_queue_length);
  g_test_add_func ("/multipath/selector/service-time", test_service_time);
  h_add_table_errors ("/multipath/selector/args/error", selector_arg_errors,
                      G_N_ELEMENTS (selector_arg_errors));
  h_add_table_errors ("/multipath/table/error", table_errors,
                      G_N_ELEMENTS (table_errors));
  h_add_table_errors ("/multipath/table/counts", table_count_errors,
                      G_N_ELEMENTS (table_count_errors));
  g_test_add_func ("/multipath/status", test_status_format);
  g_test_add_func ("/multipath/groups", test_groups);
  h_add_command_errors ("/multipath/message/error", message_errors,
                        G_N_ELEMENTS (message_errors));
  g_test_add_func ("/multipath/no-path/fail", test_no_path_fails);
  g_test_add_func ("/multipath/no-path/queue", test_queue_until_path_returns);
  g_test_add_func ("/multipath/no-path/deadline", test_queue_deadline);
  g_test_add_func ("/multipath/no-path/fail-if-no-path",
                   test_fail_if_no_path_releases);
  g_test_add_func ("/multipath/no-path/retry", test_no_path_retry);
  g_test_add_func ("/multipath/checker/reinstate", test_checker_reinstates);
  g_test_add_func ("/multipath/checker/log-levels", test_log_levels);
  g_test_add_func ("/multipath/checker/fails-silent",
                   test_checker_fails_silent_path);
  g_test_add_func ("/multipath/checker/flap", test_flap_damping);
  g_test_add_func ("/multipath/checker/thread-refused",
                   test_checker_thread_refused);
  g_test_add_func ("/multipath/checker/identity", test_identity);
  g_test_add_func ("/multipath/checker/absent", test_absent_at_load);
  g_test_add_func ("/multipath/checker/status-while-rewriting",
                   test_status_while_checker_rewrites);
  g_test_add_func ("/multipath/flush", test_flush);
  g_test_add_func ("/multipath/r7/rmw-two-paths-one-block",
                   test_rmw_two_paths_one_block);
  g_test_add_func ("/multipath/r10/ghost-write-waits-for-server",
                   test_ghost_write_waits_for_server);
  g_test_add_func ("/multipath/r10/ghost-write-deadline",
                   test_ghost_write_deadline);
  g_test_add_func ("/multipath/r10/read-moves-at-once",
                   test_ghost_read_moves_at_once);
  return g_test_run ();
}
