/* SPDX-License-Identifier: BSD-3-Clause */
/* mirror: a write reaches every leg in service and succeeds while one leg
 * took it (both completion orders, with and without handle_errors); every
 * leg failing is EIO, or the target error unchanged (R5); the last leg in
 * sync is never failed; FUA per leg and flush to every leg and the log
 * device (R9); the disk log's mark is on the log device before any leg
 * sees the first write to a clean region, and a failed leg is in the
 * log's header before the write is acknowledged; reads are balanced by
 * the policy, read out-of-sync regions from the default leg only, and
 * move to another leg on EIO but not on a request error; messages, table
 * and status in dm-raid1's format (docs/targets/mirror.md).
 *
 * Legs are fakes: "held" ones let the test order completions.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core.h"
#include "crc32c.h"
#include "dirty-log.h"
#include "harness.h"

#define KIB 1024

/* "<in sync>/<regions> 1 <letters>" of the (first) mirror's status line. */
static char *
sync_and_letters (struct ndm_md *md)
{
  g_autofree char *s = h_command_ok (md, "status");
  const char *line = strstr (s, " mirror ");
  g_auto (GStrv) w = NULL;

  g_assert_nonnull (line);
  while (line > s && line[-1] != '\n')
    line--;
  w = g_strsplit (line, " ", -1);
  unsigned nlegs = atoi (w[3]);

  return g_strdup_printf ("%s %s %s", w[4 + nlegs], w[5 + nlegs],
                          w[6 + nlegs]);
}

/* The mapped device's event count now. */
static unsigned
event_nr (struct ndm_md *md)
{
  return ndm_md_wait_event (md, G_MAXUINT, 0);
}

/* status --json */
static char *
status_json (struct ndm_md *md)
{
  return h_command_ok (md, "status --json");
}

/* Poll until get(md) is want (or, with path, until the JSON get returns
 * has want at path: h_json_has), completing what the held legs among a
 * and b (NULL: none) were sent meanwhile (the resync, repairs and verify
 * run on their own thread); the test fails after 10 s.
 */
static void
wait_for (struct ndm_md *md, char *(*get) (struct ndm_md *),
          const char *path, const char *want, struct fake_dev *a,
          struct fake_dev *b)
{
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;

  for (;;) {
    g_autofree char *got = get (md);

    if (path != NULL ? h_json_has (got, path, want)
        : strcmp (got, want) == 0)
      return;
    if (a != NULL)
      fake_complete_all (a);
    if (b != NULL)
      fake_complete_all (b);
    if (g_get_monotonic_time () > end)
      g_error ("got '%s', expected '%s'", got, want);
    g_usleep (2000);
  }
}

/* Until the status's "<in sync>/<regions> 1 <letters>" is want. */
static void
wait_sync (struct ndm_md *md, const char *want, struct fake_dev *a,
           struct fake_dev *b)
{
  wait_for (md, sync_and_letters, NULL, want, a, b);
}

/* Until status --json has want at path (h_json_has). */
static void
wait_json (struct ndm_md *md, const char *path, const char *want,
           struct fake_dev *a, struct fake_dev *b)
{
  wait_for (md, status_json, path, want, a, b);
}

/* The paths of the first target's detail, and of its leg i. */
#define DETAIL "$.targets[0].detail"
#define LEG(i) DETAIL ".legs[" #i "]"

/* 1 MiB legs, 64 KiB regions (16 regions), the core log with every
 * region in sync at load, a and b held.
 */
#define LEGS_HELD "2 fake://a?mode=held 0 fake://b?mode=held 0"
#define MIRROR_CORE(features) \
  "0 2048 mirror core 2 128 nosync " LEGS_HELD features
/* The same with a and b completing at once. */
#define CORE_AB(features) \
  "0 2048 mirror core 2 128 nosync 2 fake://a 0 fake://b 0" features

/* ---- writes: one leg fails ------------------------------------------------------ */

/* Writes of len bytes at offset in fd's log (the client's; a copy's are
 * a region long).
 */
static unsigned
client_writes (struct fake_dev *fd, uint64_t offset, uint64_t len)
{
  g_autoptr (GArray) log = fake_log (fd);
  unsigned i, n = 0;

  for (i = 0; i < log->len; i++) {
    const struct fake_cmd *c = &g_array_index (log, struct fake_cmd, i);

    n += c->op == NDM_OP_WRITE && c->offset == offset && c->len == len;
  }
  return n;
}

struct one_leg_fails {
  const char *name;
  bool handle_errors;
  bool a_first;                 /* a's failure completes before b's ok */
};

static const struct one_leg_fails one_leg_fails[] = {
  { "handle-errors/leg0-fails-first", true, true },
  { "handle-errors/leg0-fails-last", true, false },
  { "no-handle-errors/leg0-fails-first", false, true },
  { "no-handle-errors/leg0-fails-last", false, false },
};

/* a fails the write, b takes it: no client error either way; the tail
 * (all of it: a's bio at offset 0 failed) goes again to b only; the
 * region is out of sync; a is out of service (handle_errors: fenced,
 * 'D', and a later write skips it) or kept in service with 'D' (dm's
 * default: a later write still goes to it, and the resync copies the
 * region to it).
 */
static void
test_one_leg_fails (gconstpointer data)
{
  const struct one_leg_fails *t = data;
  struct ndm_md *md = h_md_new (t->handle_errors
                                ? MIRROR_CORE (" 1 handle_errors")
                                : MIRROR_CORE (""), NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc (4 * KIB);
  g_autofree char *st = NULL;
  unsigned sent;
  struct h_io *io;

  h_fill (buf, 4 * KIB, 3);
  io = h_io_start (md, NDM_OP_WRITE, buf, 4 * KIB, 8 * KIB, 0);
  fake_wait_pending (a, 1);
  fake_wait_pending (b, 1);
  if (t->a_first) {
    fake_complete (a, 0, ECONNRESET);
    g_assert_false (h_io_done (io));    /* R1: b's bio is in flight */
    fake_complete (b, 0, 0);
  }
  else {
    fake_complete (b, 0, 0);
    g_assert_false (h_io_done (io));
    fake_complete (a, 0, ECONNRESET);
  }
  if (t->handle_errors) {
    /* The requeued tail: b again, never a; a out of service, so no
     * resync runs (core/region-hash.h: nothing is copied while a leg is
     * out).
     */
    fake_wait_pending (b, 1);
    g_assert_cmpuint (fake_pending (a), ==, 0);
    fake_complete (b, 1, 0);
    g_assert_cmpint (h_io_wait (io), ==, 0);
    st = sync_and_letters (md);
    g_assert_cmpstr (st, ==, "15/16 1 DA");
    g_assert_cmpuint (fake_submitted (a), ==, 1);
  }
  else {
    /* a stays in service: the resync may copy the region (from b to
     * a) before or after the tail is mapped again, and the tail waits
     * for that copy.  Whatever the order, the tail goes to b only (a
     * gets no 4 KiB write at 8 KiB again) and a ends with the data.
     */
    while (!h_io_done (io)) {
      fake_complete_all (b);
      fake_complete_all (a);
      g_usleep (1000);
    }
    g_assert_cmpint (h_io_wait (io), ==, 0);
    g_assert_cmpuint (client_writes (a, 8 * KIB, 4 * KIB), ==, 1);
    g_assert_cmpuint (client_writes (b, 8 * KIB, 4 * KIB), ==, 2);
    wait_sync (md, "16/16 1 DA", a, b);
    g_assert_cmpmem (fake_data (a) + 8 * KIB, 4 * KIB, buf, 4 * KIB);
  }
  g_assert_cmpmem (fake_data (b) + 8 * KIB, 4 * KIB, buf, 4 * KIB);
  g_assert_cmpuint (fake_fences (a), ==, t->handle_errors ? 1 : 0);

  /* The next write: to b alone with handle_errors, else to both. */
  sent = fake_submitted (a);
  io = h_io_start (md, NDM_OP_WRITE, buf, 4 * KIB, 512 * KIB, 0);
  fake_wait_pending (b, 1);
  if (!t->handle_errors) {
    fake_wait_pending (a, 1);
    fake_complete_all (a);
  }
  fake_complete_all (b);
  g_assert_cmpint (h_io_wait (io), ==, 0);
  g_assert_cmpuint (fake_submitted (a), ==, sent + !t->handle_errors);
  h_md_free (md);
}

/* ---- writes: every leg fails --------------------------------------------------- */

struct every_leg {
  const char *name;
  int err_a, err_b;             /* a's completes first */
  int want;                     /* the client's */
};

/* The last two are R3's tie: both legs' bios are at clone offset 0, so
 * the first to arrive settles the clone's error.
 */
static const struct every_leg every_leg[] = {
  { "eio", EIO, EIO, EIO },
  { "path-error-is-eio", ENOTCONN, ENOTCONN, EIO },
  { "target-error-unchanged", ENOSPC, ENOSPC, ENOSPC },
  { "r3-tie/target-error-first", ENOSPC, EIO, ENOSPC },
  { "r3-tie/eio-first", EIO, ENOSPC, EIO },
};

static void
test_every_leg_fails (gconstpointer data)
{
  const struct every_leg *t = data;
  struct ndm_md *md = h_md_new (MIRROR_CORE (" 1 handle_errors"), NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc0 (4 * KIB);
  g_autofree char *st = NULL;
  struct h_io *io;

  io = h_io_start (md, NDM_OP_WRITE, buf, 4 * KIB, 0, 0);
  fake_wait_pending (a, 1);
  fake_wait_pending (b, 1);
  fake_complete (a, 0, t->err_a);
  fake_complete (b, 0, t->err_b);
  g_assert_cmpint (h_io_wait (io), ==, t->want);
  /* a left service; b, the last leg in sync, did not. */
  st = sync_and_letters (md);
  g_assert_cmpstr (st, ==, "15/16 1 DD");
  g_assert_cmpuint (fake_fences (a), ==, 1);
  g_assert_cmpuint (fake_fences (b), ==, 0);
  h_md_free (md);
}

/* The last leg in sync is never taken out of service (md raid1): once a
 * is failed by message, b's write error reaches the client, and b stays.
 */
static void
test_last_leg_never_failed (void)
{
  struct ndm_md *md = h_md_new (MIRROR_CORE (" 1 handle_errors"), NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc0 (4 * KIB);
  g_autofree char *out = NULL, *st = NULL;
  g_autofree char *json = NULL;
  GError *err = NULL;
  struct h_io *io;

  out = h_command_ok (md, "message 0 fail_leg fake://a?mode=held");
  g_assert_cmpuint (fake_fences (a), ==, 1);
  g_assert_null (h_command (md, "message 0 fail_leg fake://b?mode=held",
                            &err));
  g_assert_nonnull (strstr (err->message, "is the last leg in sync"));
  g_clear_error (&err);

  io = h_io_start (md, NDM_OP_WRITE, buf, 4 * KIB, 0, 0);
  fake_wait_pending (b, 1);
  g_assert_cmpuint (fake_submitted (a), ==, 0);
  fake_complete (b, 0, ENOTCONN);
  g_assert_cmpint (h_io_wait (io), ==, EIO);
  st = sync_and_letters (md);
  g_assert_cmpstr (st, ==, "15/16 1 UD");
  json = h_command_ok (md, "status --json");
  h_json_expect (json, LEG (1), "{\"leg\":\"fake://b?mode=held\","
                 "\"state\":\"in_sync\",\"health\":\"D\","
                 "\"reason\":null,\"fail_count\":0}");
  g_assert_cmpuint (fake_fences (b), ==, 0);
  h_md_free (md);
}

/* R6: a's bio cannot even start; b's bio after it is cancelled.  The
 * request goes on: the whole clone is written to b.
 */
static void
test_leg_start_fails (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror core 2 128 nosync "
                                "2 fake://a 0 fake://b 0 1 handle_errors",
                                NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc (8 * KIB);
  g_autofree char *st = NULL;

  h_fill (buf, 8 * KIB, 5);
  fake_fail_submit_at (a, 0, ENOTCONN);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 8 * KIB, 0, 0), ==, 0);
  g_assert_cmpmem (fake_data (b), 8 * KIB, buf, 8 * KIB);
  st = sync_and_letters (md);
  g_assert_cmpstr (st, ==, "15/16 1 DA");
  h_md_free (md);
}

/* R9: FUA goes with each leg's bio, trim and zero go to every leg. */
static void
test_fua_per_leg (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror core 2 128 nosync "
                                "2 fake://a 0 fake://b 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc (4 * KIB);
  struct fake_dev *legs[] = { a, b };
  unsigned i;

  h_fill (buf, 4 * KIB, 1);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4 * KIB, 4 * KIB,
                         NDM_REQ_FUA), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_TRIM, NULL, 4 * KIB, 64 * KIB, 0), ==,
                   0);
  g_assert_cmpint (h_io (md, NDM_OP_ZERO, NULL, 4 * KIB, 128 * KIB, 0), ==,
                   0);
  for (i = 0; i < G_N_ELEMENTS (legs); i++) {
    g_autoptr (GArray) log = fake_log (legs[i]);
    const struct fake_cmd *c;

    g_assert_cmpuint (log->len, ==, 3);
    c = &g_array_index (log, struct fake_cmd, 0);
    g_assert_cmpint (c->op, ==, NDM_OP_WRITE);
    g_assert_true (c->flags & NDM_REQ_FUA);
    g_assert_cmpuint (c->offset, ==, 4 * KIB);
    g_assert_cmpint (g_array_index (log, struct fake_cmd, 1).op, ==,
                     NDM_OP_TRIM);
    g_assert_cmpint (g_array_index (log, struct fake_cmd, 2).op, ==,
                     NDM_OP_ZERO);
    g_assert_cmpmem (fake_data (legs[i]) + 4 * KIB, 4 * KIB, buf, 4 * KIB);
  }
  h_md_free (md);
}

/* Legs at other offsets: each gets the write at its own. */
static void
test_leg_offsets (void)
{
  struct ndm_md *md = h_md_new ("0 1024 mirror core 2 128 nosync "
                                "2 fake://a 16 fake://b 1024", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc (4 * KIB);
  g_autofree char *back = g_malloc (4 * KIB);

  h_fill (buf, 4 * KIB, 9);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4 * KIB, 4 * KIB, 0), ==, 0);
  g_assert_cmpmem (fake_data (a) + 8 * KIB + 4 * KIB, 4 * KIB, buf, 4 * KIB);
  g_assert_cmpmem (fake_data (b) + 512 * KIB + 4 * KIB, 4 * KIB, buf,
                   4 * KIB);
  g_assert_cmpint (h_io (md, NDM_OP_READ, back, 4 * KIB, 4 * KIB, 0), ==, 0);
  g_assert_cmpmem (back, 4 * KIB, buf, 4 * KIB);
  h_md_free (md);
}

/* ---- flush ---------------------------------------------------------------------- */

/* Every leg and the log device flush; one leg failing it is 'F' and the
 * flush still succeeds.
 */
static void
test_flush (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror disk 3 fake://l 128 nosync "
                                "2 fake://a 0 fake://b 0 1 handle_errors",
                                NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  struct fake_dev *l = fake_lookup ("l");
  unsigned lf = fake_count_op (l, NDM_OP_FLUSH);
  g_autofree char *st = NULL;

  g_assert_cmpint (h_io (md, NDM_OP_FLUSH, NULL, 0, 0, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_FLUSH), ==, 1);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_FLUSH), ==, 1);
  g_assert_cmpuint (fake_count_op (l, NDM_OP_FLUSH), ==, lf + 1);

  fake_fail_at (a, 1, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_FLUSH, NULL, 0, 0, 0), ==, 0);
  st = sync_and_letters (md);
  g_assert_cmpstr (st, ==, "16/16 1 FA");
  g_assert_cmpuint (fake_fences (a), ==, 1);
  h_md_free (md);
}

/* ---- the log ------------------------------------------------------------------- */

static gpointer
free_thread (gpointer data)
{
  struct ndm_md *md = data;

  ndm_md_free (md);
  return md;
}

/* h_md_free for a mirror over held legs a and b: its postsuspend's last
 * clear commit flushes them first, so what they are sent is completed
 * until the free returns.
 */
static void
free_completing (struct ndm_md *md, struct fake_dev *a, struct fake_dev *b)
{
  GThread *t = g_thread_new ("free", free_thread, md);

  while (fake_is_open (a) || fake_is_open (b)) {
    fake_complete_all (a);
    fake_complete_all (b);
    g_usleep (1000);
  }
  g_thread_join (t);
  fake_reset ();
}

/* A disk log on fake://l: the bit of the first write's region is on the
 * log device (bitmap byte 4096 on, written with FUA) before the leg sees
 * the write; a second write to the same region needs no log write.
 */
static void
test_mark_before_first_write (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror disk 3 fake://l 128 nosync "
                                "2 fake://a?mode=held 0 fake://b?mode=held 0",
                                NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  struct fake_dev *l = fake_lookup ("l");
  g_autofree char *buf = g_malloc0 (4 * KIB);
  unsigned lw = fake_count_op (l, NDM_OP_WRITE);
  struct h_io *io, *io2;

  g_assert_cmpint (fake_data (l)[NDM_DIRTY_LOG_HEADER_SIZE + 0], ==, 0);
  io = h_io_start (md, NDM_OP_WRITE, buf, 4 * KIB, 3 * 64 * KIB, 0);
  fake_wait_pending (a, 1);
  /* Region 3 is bit 3 of the bitmap's first byte. */
  g_assert_cmpint (fake_data (l)[NDM_DIRTY_LOG_HEADER_SIZE], ==, 1 << 3);
  g_assert_cmpuint (fake_count_op (l, NDM_OP_WRITE), ==, lw + 1);
  {
    g_autoptr (GArray) log = fake_log (l);
    const struct fake_cmd *c = &g_array_index (log, struct fake_cmd,
                                               log->len - 1);

    g_assert_cmpint (c->op, ==, NDM_OP_WRITE);
    g_assert_true (c->flags & NDM_REQ_FUA);
  }
  fake_wait_pending (b, 1);

  /* Started while the first is in flight, so the region cannot have
   * gone clean meanwhile: its mark is on the device, no log write.
   */
  io2 = h_io_start (md, NDM_OP_WRITE, buf, 4 * KIB,
                    3 * 64 * KIB + 8 * KIB, 0);
  fake_wait_pending (a, 2);
  fake_wait_pending (b, 2);
  fake_complete_all (a);
  fake_complete_all (b);
  g_assert_cmpint (h_io_wait (io), ==, 0);
  g_assert_cmpint (h_io_wait (io2), ==, 0);
  g_assert_cmpuint (fake_count_op (l, NDM_OP_WRITE), ==, lw + 1);
  free_completing (md, a, b);
}

/* The log device fails the mark's write.
 */
static void
test_log_failure_goes_on (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror disk 3 fake://l 128 nosync "
                                "2 fake://a 0 fake://b 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *l = fake_lookup ("l");
  g_autofree char *buf = g_malloc0 (4 * KIB);
  struct h_io *io;

  /* The next log command fails: the mark is not on the device, the log
   * is 'D', and without keep_log the write goes on with the mark in
   * memory.
   */
  fake_fail_at (l, fake_submitted (l), EIO);
  io = h_io_start (md, NDM_OP_WRITE, buf, 4 * KIB, 0, 0);
  g_assert_cmpint (h_io_wait_bounded (io, 10), ==, 0);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_WRITE), ==, 1);
  {
    g_autofree char *s = h_command_ok (md, "status");

    g_assert_true (g_str_has_suffix (s, " 3 disk fake://l D"));
  }
  h_md_free (md);
}

/* keep_log: a write whose mark cannot be written fails with EIO, and
 * reaches no leg.
 */
static void
test_keep_log_eio (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror disk 3 fake://l 128 nosync "
                                "2 fake://a 0 fake://b 0 "
                                "2 handle_errors keep_log", NULL);
  struct fake_dev *a = fake_lookup ("a"), *l = fake_lookup ("l");
  g_autofree char *buf = g_malloc0 (4 * KIB);

  fake_fail_at (l, fake_submitted (l), EIO);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4 * KIB, 0, 0), ==, EIO);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_WRITE), ==, 0);
  h_md_free (md);
}

/* A leg that failed a write is in the log's header (failed legs) before
 * the write is acknowledged: a restart never copies from it.
 */
static void
test_failed_leg_logged_before_ack (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror disk 3 fake://l 128 nosync "
                                "2 fake://a 0 fake://b 0 1 handle_errors",
                                NULL);
  struct fake_dev *a = fake_lookup ("a"), *l = fake_lookup ("l");
  g_autofree char *buf = g_malloc0 (4 * KIB);
  struct ndm_dirty_log_header h;
  uint64_t gen;

  memcpy (&h, fake_data (l), sizeof h);
  gen = GUINT64_FROM_LE (h.generation);
  g_assert_cmpuint (GUINT64_FROM_LE (h.failed_legs), ==, 0);
  fake_fail_at (a, 0, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4 * KIB, 0, 0), ==, 0);
  memcpy (&h, fake_data (l), sizeof h);
  g_assert_cmpuint (GUINT64_FROM_LE (h.failed_legs), ==, 1);
  g_assert_cmpuint (GUINT64_FROM_LE (h.generation), >, gen);
  h_md_free (md);
}

/* Under a steady stream of first writes (each to a region never
 * written, so each needs a mark commit), clears still come: region 0's
 * mark, cleared in memory once its write ended, leaves the log device
 * while the writes go on.  Starved, every region ever written would stay
 * marked until the stream paused for NDM_LOG_CLEAR_MS, and a crash
 * would copy them all.
 */
static void
test_clears_not_starved (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror disk 3 fake://l 8 nosync "
                                "2 fake://a 0 fake://b 0", NULL);
  struct fake_dev *l = fake_lookup ("l");
  g_autofree char *buf = g_malloc0 (4 * KIB);
  unsigned r;

  for (r = 0; r < 256; r++) {
    g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4 * KIB, r * 4 * KIB, 0),
                     ==, 0);
    if (r > 0 && !(fake_data (l)[NDM_DIRTY_LOG_HEADER_SIZE] & 1))
      break;
  }
  if (r == 256)
    g_error ("region 0 still marked on the log device after 255 more "
             "first writes");
  h_md_free (md);
}

/* ---- the log across restarts ------------------------------------------------- */

/* 1 MiB legs a and b, a disk log on l, 64 KiB regions: without a sync
 * word, so that a restart copies what the log marks.  RESTARTED is the
 * same table over the same data, as a new nbd-dm sees it (other fakes,
 * data=: the first ones stay open until freed).
 */
#define LOG_TABLE(l, a, b) \
  "0 2048 mirror disk 2 fake://" l " 128 2 fake://" a " 0 fake://" b " 0"
#define STARTED LOG_TABLE ("l", "a", "b")
#define RESTARTED LOG_TABLE ("l2?data=l", "a2?data=a", "b2?data=b")
#define R64K (64 * KIB)

/* Bits of the log device's bitmap set (region r: bit r % 8 of byte
 * 4096 + r / 8), of 16 regions.
 */
static unsigned
log_marks (struct fake_dev *l)
{
  const uint8_t *bits = fake_data (l) + NDM_DIRTY_LOG_HEADER_SIZE;

  return bits[0] | bits[1] << 8;
}

/* Whether the JSON detail's log object has want (h_json_has). */
static bool
log_has (struct ndm_md *md, const char *want)
{
  g_autofree char *json = h_command_ok (md, "status --json");

  return h_json_has (json, DETAIL ".log", want);
}

/* A first start (a new log: every region marked, all copied), writes
 * to regions 1, 3 and 5, then a clean stop: the free of the mapped
 * device (nbdkit's unload on SIGTERM), or a suspend first.  The log
 * device keeps no mark, and a restart loads none, is in sync at once
 * and copies nothing.
 */
static void
test_clean_stop_clears (gconstpointer data)
{
  bool suspend = GPOINTER_TO_INT (data);
  struct ndm_md *md = h_md_new (STARTED, NULL);
  g_autofree char *buf = g_malloc (4 * KIB);
  GError *err = NULL;
  unsigned r;

  wait_sync (md, "16/16 1 AA", NULL, NULL);
  h_fill (buf, 4 * KIB, 7);
  for (r = 1; r <= 5; r += 2)
    g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4 * KIB, r * R64K, 0), ==,
                     0);
  if (suspend) {
    g_assert_cmpint (ndm_md_suspend (md, false, &err), ==, 0);
    g_assert_no_error (err);
    g_assert_cmpuint (log_marks (fake_lookup ("l")), ==, 0);
  }
  ndm_md_free (md);
  g_assert_cmpuint (log_marks (fake_lookup ("l")), ==, 0);

  md = h_md_new (RESTARTED, NULL);
  g_assert_true (log_has (md, "{\"dirty_at_load\":0}"));
  wait_sync (md, "16/16 1 AA", NULL, NULL);
  g_assert_cmpuint (fake_count_op (fake_lookup ("a2"), NDM_OP_WRITE), ==, 0);
  g_assert_cmpuint (fake_count_op (fake_lookup ("b2"), NDM_OP_WRITE), ==, 0);
  h_md_free (md);
}

/* The state a kill -9 leaves: regions 2 and 5 marked (writes in flight,
 * or ended but not cleared yet), the legs different there; region 9
 * different too but not marked (it cannot be: the test makes it so, to
 * see what is copied).  The restart loads 2 marks and copies exactly
 * those two regions, from the default leg a, or from b when the
 * header records a as having missed writes.
 */
static void
test_kill_resyncs_marked (gconstpointer data)
{
  bool a_failed = GPOINTER_TO_INT (data);
  struct ndm_md *md = h_md_new (STARTED, NULL);
  struct fake_dev *l = fake_lookup ("l");
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  struct fake_dev *a2, *b2, *dst;
  uint8_t *from, *to;
  unsigned r;

  wait_sync (md, "16/16 1 AA", NULL, NULL);
  ndm_md_free (md);
  g_assert_cmpuint (log_marks (l), ==, 0);
  for (r = 2; r <= 9; r++) {
    if (r != 2 && r != 5 && r != 9)
      continue;
    h_fill (fake_data (a) + r * R64K, R64K, 100 + r);
    h_fill (fake_data (b) + r * R64K, R64K, 200 + r);
  }
  fake_data (l)[NDM_DIRTY_LOG_HEADER_SIZE] = 1 << 2 | 1 << 5;
  if (a_failed) {
    /* failed legs = leg 0, and the CRC made again. */
    uint8_t *h = fake_data (l);
    uint32_t crc;

    h[offsetof (struct ndm_dirty_log_header, failed_legs)] = 1;
    crc = GUINT32_TO_LE (ndm_crc32c (h, NDM_DIRTY_LOG_HEADER_SIZE - 4));
    memcpy (h + NDM_DIRTY_LOG_HEADER_SIZE - 4, &crc, 4);
  }

  md = h_md_new (RESTARTED, NULL);
  a2 = fake_lookup ("a2");
  b2 = fake_lookup ("b2");
  g_assert_true (log_has (md, "{\"dirty_at_load\":2}"));
  /* A leg the log named failed is A again once the copy is done. */
  wait_sync (md, "16/16 1 AA", NULL, NULL);
  from = fake_data (a_failed ? b : a);
  to = fake_data (a_failed ? a : b);
  dst = a_failed ? a2 : b2;
  g_assert_cmpmem (to + 2 * R64K, R64K, from + 2 * R64K, R64K);
  g_assert_cmpmem (to + 5 * R64K, R64K, from + 5 * R64K, R64K);
  g_assert_cmpint (memcmp (to + 9 * R64K, from + 9 * R64K, R64K), !=, 0);
  g_assert_cmpuint (fake_count_op (dst, NDM_OP_WRITE), ==, 2);
  g_assert_cmpuint (fake_count_op (a_failed ? b2 : a2, NDM_OP_WRITE), ==, 0);
  h_md_free (md);
}

/* The bitmap cannot be read at the first resume (the log device fails
 * it after the header was checked at ctr): nothing is known of which
 * regions differ, so every one is out of sync and copied, and the log's
 * letter is D.
 */
static void
test_load_fails_copies_all (void)
{
  struct ndm_md *md = h_md_new (STARTED, NULL);
  struct fake_dev *b = fake_lookup ("b");
  GError *err = NULL;
  unsigned bw;

  wait_sync (md, "16/16 1 AA", NULL, NULL);
  bw = fake_count_op (b, NDM_OP_WRITE);
  g_assert_cmpint (ndm_md_reload (md, STARTED, false, &err), ==, 0);
  g_assert_no_error (err);
  fake_fail_range (fake_lookup ("l"), NDM_DIRTY_LOG_HEADER_SIZE, 4 * KIB,
                   EIO);
  g_assert_cmpint (ndm_md_resume (md, &err), ==, 0);
  g_assert_no_error (err);
  g_assert_true (log_has (md, "{\"dirty_at_load\":16}"));
  {
    g_autofree char *s = h_command_ok (md, "status");

    g_assert_true (g_str_has_suffix (s, " 3 disk fake://l D"));
  }
  wait_sync (md, "16/16 1 AA", NULL, NULL);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_WRITE), ==, bw + 16);
  h_md_free (md);
}

/* A reload names the same log device.  After the new table's ctr read
 * the header, the old one fails leg b and writes region 7 to a alone
 * (NOSYNC, marked; b in the header's failed legs).  The new table reads
 * the log at its first resume, after the old one's last commit: b is no
 * source, region 7 is copied to it.  Read at ctr, the log would have
 * said b is in sync and region 7 clean: b would never get the write.
 */
static void
test_reload_reads_log_at_resume (void)
{
  const char *table = LOG_TABLE ("l", "a", "b") " 1 handle_errors";
  struct ndm_md *md = h_md_new (table, NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc (4 * KIB);
  g_autofree char *out = NULL;
  g_autofree char *st = NULL;
  GError *err = NULL;
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;

  wait_sync (md, "16/16 1 AA", NULL, NULL);
  g_assert_cmpint (ndm_md_reload (md, table, false, &err), ==, 0);
  g_assert_no_error (err);
  out = h_command_ok (md, "message 0 fail_leg fake://b");
  h_fill (buf, 4 * KIB, 77);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4 * KIB, 7 * R64K, 0), ==,
                   0);
  g_assert_cmpint (memcmp (fake_data (b) + 7 * R64K, buf, 4 * KIB), !=, 0);

  g_assert_cmpint (ndm_md_resume (md, &err), ==, 0);
  g_assert_no_error (err);
  /* b is reinstated by the checker or stays out; either way region 7
   * reaches it before every region is in sync on every leg in service.
   */
  for (;;) {
    g_free (st);
    st = sync_and_letters (md);
    if (g_str_has_prefix (st, "16/16 ") &&
        memcmp (fake_data (b) + 7 * R64K, buf, 4 * KIB) == 0)
      break;
    if (g_get_monotonic_time () > end)
      g_error ("status '%s', region 7 of b %s", st,
               memcmp (fake_data (b) + 7 * R64K, buf, 4 * KIB) == 0 ?
               "written" : "not written");
    g_usleep (2000);
  }
  g_assert_cmpmem (fake_data (a) + 7 * R64K, R64K, fake_data (b) + 7 * R64K,
                   R64K);
  h_md_free (md);
}

/* ---- reads --------------------------------------------------------------------- */

struct policy {
  const char *name;
  const char *feature;
  unsigned want_a, want_b;      /* of 8 sequential reads */
};

static const struct policy policies[] = {
  { "queue-length", "", 4, 4 },
  { "round-robin", " 2 read_balance round-robin", 4, 4 },
  { "default-leg", " 2 read_balance default_leg", 8, 0 },
};

static void
test_read_policy (gconstpointer data)
{
  const struct policy *t = data;
  g_autofree char *table = g_strdup_printf ("0 2048 mirror core 2 128 "
                                            "nosync 2 fake://a 0 fake://b 0"
                                            "%s", t->feature);
  struct ndm_md *md = h_md_new (table, NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  char buf[4096];
  unsigned i;

  for (i = 0; i < 8; i++)
    g_assert_cmpint (h_io (md, NDM_OP_READ, buf, sizeof buf,
                           i * 64 * KIB, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_READ), ==, t->want_a);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_READ), ==, t->want_b);
  h_md_free (md);
}

/* queue-length: with a read in flight on a, the next goes to b, and the
 * next to a or b again once both are idle.
 */
static void
test_read_queue_length_busy (void)
{
  struct ndm_md *md = h_md_new (MIRROR_CORE (""), NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  char buf1[4096], buf2[4096], buf3[4096];
  struct h_io *io1, *io2, *io3;

  io1 = h_io_start (md, NDM_OP_READ, buf1, sizeof buf1, 0, 0);
  fake_wait_pending (a, 1);
  io2 = h_io_start (md, NDM_OP_READ, buf2, sizeof buf2, 0, 0);
  fake_wait_pending (b, 1);
  io3 = h_io_start (md, NDM_OP_READ, buf3, sizeof buf3, 0, 0);
  /* Both have one: ties go in turn, to a. */
  fake_wait_pending (a, 2);
  fake_complete_all (a);
  fake_complete_all (b);
  g_assert_cmpint (h_io_wait (io1), ==, 0);
  g_assert_cmpint (h_io_wait (io2), ==, 0);
  g_assert_cmpint (h_io_wait (io3), ==, 0);
  h_md_free (md);
}

/* Without nosync the core log knows nothing: every region is out of
 * sync, so reads go to the default leg only, whatever the policy (b is
 * held, so the resync's first copy to it, and the rest, wait for the
 * test); once the resync is done they go round.
 */
static void
test_nosync_region_default_leg_only (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror core 1 128 "
                                "2 fake://a 0 fake://b?mode=held 0 "
                                "2 read_balance round-robin", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *st = sync_and_letters (md);
  char buf[4096];
  unsigned i, ra;

  g_assert_cmpstr (st, ==, "0/16 1 AA");
  for (i = 0; i < 4; i++)
    g_assert_cmpint (h_io (md, NDM_OP_READ, buf, sizeof buf,
                           i * 64 * KIB, 0), ==, 0);
  ra = fake_count_op (a, NDM_OP_READ);
  g_assert_cmpuint (ra, >=, 4);         /* and the copies' reads */
  g_assert_cmpuint (fake_count_op (b, NDM_OP_READ), ==, 0);
  wait_sync (md, "16/16 1 AA", NULL, b);
  ra = fake_count_op (a, NDM_OP_READ);
  for (i = 0; i < 4; i++) {
    struct h_io *io = h_io_start (md, NDM_OP_READ, buf, sizeof buf, 0, 0);

    if (i % 2 == 1) {
      fake_wait_pending (b, 1);
      fake_complete_all (b);
    }
    g_assert_cmpint (h_io_wait (io), ==, 0);
  }
  g_assert_cmpuint (fake_count_op (a, NDM_OP_READ), ==, ra + 2);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_READ), ==, 2);
  h_md_free (md);
}

/* EIO from a: the read is served from b, a counts a read error ('R')
 * and stays in service.
 */
static void
test_read_eio_retried (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror core 2 128 nosync "
                                "2 fake://a 0 fake://b 0 "
                                "2 read_balance default_leg", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  char buf[4096];
  g_autofree char *st = NULL;

  h_fill (fake_data (b), 1 << 20, 4);
  fake_fail_at (a, 0, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, sizeof buf, 4096, 0), ==, 0);
  g_assert_cmpmem (buf, sizeof buf, fake_data (b) + 4096, sizeof buf);
  st = sync_and_letters (md);
  g_assert_cmpstr (st, ==, "16/16 1 RA");
  /* Still in the balance: the next read goes to a again. */
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, sizeof buf, 4096, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_READ), ==, 2);
  h_md_free (md);
}

/* Both legs fail the read: EIO. */
static void
test_read_every_leg_fails (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror core 2 128 nosync "
                                "2 fake://a 0 fake://b 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  char buf[4096];

  fake_fail_range (a, 0, 4096, EIO);
  fake_fail_range (b, 0, 4096, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, sizeof buf, 0, 0), ==, EIO);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_READ) +
                    fake_count_op (b, NDM_OP_READ), ==, 2);
  h_md_free (md);
}

/* EINVAL describes the request, not the leg: unchanged, not retried. */
static void
test_read_request_error_not_retried (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror core 2 128 nosync "
                                "2 fake://a 0 fake://b 0 "
                                "2 read_balance default_leg", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  char buf[4096];

  fake_fail_at (a, 0, EINVAL);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, sizeof buf, 0, 0), ==,
                   EINVAL);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_READ), ==, 0);
  h_md_free (md);
}

/* A region written while a leg was out is out of sync: read from the
 * default leg, the one that took the write.
 */
static void
test_degraded_write_then_read (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror core 2 128 nosync "
                                "2 fake://a 0 fake://b 0 1 handle_errors",
                                NULL);
  struct fake_dev *a = fake_lookup ("a");
  g_autofree char *buf = g_malloc (4 * KIB);
  g_autofree char *back = g_malloc (4 * KIB);
  g_autofree char *st = NULL;
  unsigned i;

  g_free (h_command_ok (md, "message 0 fail_leg fake://a"));
  h_fill (buf, 4 * KIB, 8);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4 * KIB, 0, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_WRITE), ==, 0);
  st = sync_and_letters (md);
  g_assert_cmpstr (st, ==, "15/16 1 UA");
  for (i = 0; i < 3; i++) {
    g_assert_cmpint (h_io (md, NDM_OP_READ, back, 4 * KIB, 0, 0), ==, 0);
    g_assert_cmpmem (back, 4 * KIB, buf, 4 * KIB);
  }
  g_assert_cmpuint (fake_count_op (a, NDM_OP_READ), ==, 0);
  h_md_free (md);
}

/* ---- read repair ----------------------------------------------------------------- */

#define A_REPAIRS(n) "{\"leg\":\"fake://a\",\"state\":\"in_sync\"," \
  "\"health\":\"R\",\"fail_count\":0,\"write_errors\":0," \
  "\"read_errors\":1,\"read_repairs\":" #n "}"

/* a's read fails with EIO: the client gets b's data, and the region
 * (only it) is copied from b to a, counted on a; a stays in the balance
 * with R (a read failed).  A lost connection is no bad block: nothing is
 * copied for it.
 */
static void
test_read_repair (void)
{
  struct ndm_md *md = h_md_new (CORE_AB (" 2 read_balance default_leg"),
                                NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *zero = g_malloc0 (64 * KIB);
  g_autofree char *st = NULL, *stats = NULL, *json = NULL;
  char buf[4096];

  h_fill (fake_data (b), 1 << 20, 7);
  fake_fail_at (a, 0, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, sizeof buf, 68 * KIB, 0), ==,
                   0);
  g_assert_cmpmem (buf, sizeof buf, fake_data (b) + 68 * KIB, sizeof buf);
  wait_json (md, LEG (0), A_REPAIRS (1), NULL, NULL);
  g_assert_cmpmem (fake_data (a) + 64 * KIB, 64 * KIB,
                   fake_data (b) + 64 * KIB, 64 * KIB);
  g_assert_cmpmem (fake_data (a), 64 * KIB, zero, 64 * KIB);
  g_assert_cmpmem (fake_data (a) + 128 * KIB, 64 * KIB, zero, 64 * KIB);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_WRITE), ==, 1);
  st = sync_and_letters (md);
  g_assert_cmpstr (st, ==, "16/16 1 RA");
  stats = h_command_ok (md, "stats");
  g_assert_nonnull (strstr (stats, "\n  mirror: read repairs 1, resynced "
                            "65536 bytes, verify mismatches 0\n"));
  json = h_command_ok (md, "stats --json");
  h_json_expect (json, "$.targets[0].mirror", "{\"read_repairs\":1,"
                 "\"resynced\":65536,\"verify_mismatches\":0}");

  /* The next read goes to a again, and a path error there is retried on
   * b but not repaired.
   */
  fake_fail_at (a, fake_submitted (a) + 1, ECONNRESET);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, sizeof buf, 0, 0), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, sizeof buf, 0, 0), ==, 0);
  g_assert_cmpmem (buf, sizeof buf, fake_data (b), sizeof buf);
  g_usleep (300000);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_WRITE), ==, 1);
  wait_json (md, LEG (0), "{\"read_errors\":2,\"read_repairs\":1}", NULL,
             NULL);
  h_md_free (md);
}

/* A client write to the region under repair, in both orders: every leg
 * ends with the client's data.  write-first: the write is in flight
 * when the repair is queued: the copy waits until it is on both legs
 * (so it copies it).  repair-first: the copy runs when the write comes:
 * the write is held until the copy ended, then goes to both.
 */
static void
test_read_repair_client_write (gconstpointer data)
{
  bool write_first = GPOINTER_TO_INT (data);
  struct ndm_md *md = h_md_new (MIRROR_CORE (" 2 read_balance default_leg"),
                                NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *w = g_malloc (4 * KIB);
  char buf[4096];
  struct h_io *rd, *wr = NULL;
  unsigned sa, sb;

  h_fill (fake_data (b), 1 << 20, 8);
  h_fill (w, 4 * KIB, 9);
  rd = h_io_start (md, NDM_OP_READ, buf, sizeof buf, 0, 0);
  fake_wait_pending (a, 1);                     /* a: 0 read */
  if (write_first) {
    wr = h_io_start (md, NDM_OP_WRITE, w, 4 * KIB, 8 * KIB, 0);
    fake_wait_pending (a, 2);                   /* a: 1 write */
    fake_wait_pending (b, 1);                   /* b: 0 write */
  }
  fake_complete (a, 0, EIO);
  fake_wait_pending (b, write_first ? 2 : 1);   /* the read again */
  fake_complete (b, write_first ? 1 : 0, 0);
  g_assert_cmpint (h_io_wait (rd), ==, 0);
  if (write_first) {
    /* The copy waits for the write to drain: it reads nothing yet. */
    g_usleep (100000);
    g_assert_cmpuint (fake_submitted (b), ==, 2);
    fake_complete (a, 1, 0);
    fake_complete (b, 0, 0);
    g_assert_cmpint (h_io_wait (wr), ==, 0);
  }
  else {
    fake_wait_pending (b, 1);                   /* the copy's read */
    sa = fake_submitted (a);
    sb = fake_submitted (b);
    wr = h_io_start (md, NDM_OP_WRITE, w, 4 * KIB, 8 * KIB, 0);
    /* Held while the copy runs: no bio of it anywhere. */
    g_usleep (100000);
    g_assert_cmpuint (fake_submitted (a), ==, sa);
    g_assert_cmpuint (fake_submitted (b), ==, sb);
    g_assert_false (h_io_done (wr));
    while (!h_io_done (wr)) {
      fake_complete_all (b);
      fake_complete_all (a);
      g_usleep (1000);
    }
    g_assert_cmpint (h_io_wait (wr), ==, 0);
  }
  wait_json (md, LEG (0), "{\"read_repairs\":1}", a, b);
  g_assert_cmpmem (fake_data (a) + 8 * KIB, 4 * KIB, w, 4 * KIB);
  g_assert_cmpmem (fake_data (b) + 8 * KIB, 4 * KIB, w, 4 * KIB);
  g_assert_cmpmem (fake_data (a), 64 * KIB, fake_data (b), 64 * KIB);
  h_md_free (md);
}

/* Until fd was fenced n times (bounded). */
static void
wait_fences (struct fake_dev *fd, unsigned n)
{
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;

  while (fake_fences (fd) < n && g_get_monotonic_time () < end)
    g_usleep (1000);
  g_assert_cmpuint (fake_fences (fd), ==, n);
}

/* The repair's write to a fails: a write failure of a ('S'), out of
 * service with handle_errors (fenced), the region out of sync; nothing
 * counted as repaired.
 */
static void
test_read_repair_write_fails (void)
{
  struct ndm_md *md = h_md_new (CORE_AB (" 3 handle_errors "
                                         "read_balance default_leg"), NULL);
  struct fake_dev *a = fake_lookup ("a");
  char buf[4096];

  fake_fail_at (a, 0, EIO);                     /* the client's read */
  fake_fail_at (a, 1, EIO);                     /* the repair's write */
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, sizeof buf, 0, 0), ==, 0);
  wait_sync (md, "15/16 1 SA", NULL, NULL);
  /* The fence follows the state, outside the mirror's lock. */
  wait_fences (a, 1);
  wait_json (md, LEG (0), "{\"state\":\"failed\",\"write_errors\":1,"
             "\"read_errors\":1,\"read_repairs\":0}", NULL, NULL);
  h_md_free (md);
}

/* ---- verify and repair ------------------------------------------------------------- */

static GString *copies (struct fake_dev *fd);

#define VERIFY DETAIL ".verify"
#define VERIFY_IDLE(checked, mismatches, regions) VERIFY, \
  "{\"state\":\"idle\",\"checked\":" #checked \
  ",\"mismatches\":" #mismatches ",\"regions\":[" regions "]}"

/* A byte changed behind the mirror on b in region 5: verify finds that
 * region, changes nothing, says so in status and JSON, and an event says
 * it ended.
 */
static void
test_verify_mismatch_recorded (void)
{
  struct ndm_md *md = h_md_new (CORE_AB (""), NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *s0 = h_command_ok (md, "status");
  g_autofree char *s1 = NULL;
  unsigned ev = event_nr (md);

  g_assert_null (strstr (s0, "verify"));
  fake_data (b)[5 * 64 * KIB + 100] = 1;
  g_free (h_command_ok (md, "message 0 verify"));
  wait_json (md, VERIFY_IDLE (16, 1, "5"), NULL, NULL);
  g_assert_cmpuint (event_nr (md), >, ev);
  s1 = h_command_ok (md, "status");
  g_assert_true (g_str_has_suffix (s1, " 16/16 1 AA 1 core verify 16/16 1"));
  g_assert_cmpint (fake_data (a)[5 * 64 * KIB + 100], ==, 0);
  g_assert_cmpint (fake_data (b)[5 * 64 * KIB + 100], ==, 1);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_WRITE), ==, 0);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_WRITE), ==, 0);
  h_md_free (md);
}

/* A write in flight on region 0 when the verify starts: landed on a, not
 * yet on b.  The verify reads nothing until it has landed on both, so
 * it finds no mismatch.
 */
static void
test_verify_writes_during (void)
{
  struct ndm_md *md = h_md_new (MIRROR_CORE (""), NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *w = g_malloc (4 * KIB);
  struct h_io *wr;

  h_fill (w, 4 * KIB, 10);
  wr = h_io_start (md, NDM_OP_WRITE, w, 4 * KIB, 4 * KIB, 0);
  fake_wait_pending (a, 1);
  fake_wait_pending (b, 1);
  g_free (h_command_ok (md, "message 0 verify"));
  fake_complete (a, 0, 0);
  g_usleep (100000);
  g_assert_cmpuint (fake_submitted (a), ==, 1);
  g_assert_cmpuint (fake_submitted (b), ==, 1);
  fake_complete (b, 0, 0);
  g_assert_cmpint (h_io_wait (wr), ==, 0);
  wait_json (md, VERIFY_IDLE (16, 0, ""), a, b);
  h_md_free (md);
}

/* Regions 3 and 9 differ on b: verify lists them, repair makes exactly
 * those out of sync, the resync copies exactly those from a (the default
 * leg), and a second verify finds nothing.
 */
static void
test_verify_repair_resyncs_exactly (void)
{
  struct ndm_md *md = h_md_new (CORE_AB (""), NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autoptr (GString) copied = NULL;
  g_autofree char *st = NULL;

  h_fill (fake_data (a), 1 << 20, 11);
  memcpy (fake_data (b), fake_data (a), 1 << 20);
  fake_data (b)[3 * 64 * KIB] ^= 0xff;
  fake_data (b)[10 * 64 * KIB - 1] ^= 0xff;
  g_free (h_command_ok (md, "message 0 verify"));
  wait_json (md, VERIFY_IDLE (16, 2, "3,9"), NULL, NULL);
  g_free (h_command_ok (md, "message 0 repair"));
  wait_sync (md, "16/16 1 AA", NULL, NULL);
  copied = copies (b);
  g_assert_cmpstr (copied->str, ==, "192K 576K ");
  g_assert_cmpuint (fake_count_op (a, NDM_OP_WRITE), ==, 0);
  g_assert_cmpmem (fake_data (b), 1 << 20, fake_data (a), 1 << 20);
  g_free (h_command_ok (md, "message 0 verify"));
  wait_json (md, VERIFY_IDLE (16, 0, ""), NULL, NULL);
  st = h_command_ok (md, "status");
  g_assert_true (g_str_has_suffix (st, " verify 16/16 0"));
  h_md_free (md);
}

/* A second verify while one runs starts again from region 0 with no
 * mismatch counted; the comparison under way when it came is dropped,
 * so region 0 is compared again and its mismatch found again.
 */
static void
test_verify_restart (void)
{
  struct ndm_md *md = h_md_new (MIRROR_CORE (""), NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");

  fake_data (b)[100] = 1;
  g_free (h_command_ok (md, "message 0 verify"));
  fake_wait_pending (a, 1);                     /* region 0 */
  fake_complete_all (a);
  fake_wait_pending (b, 1);
  fake_complete_all (b);
  fake_wait_pending (a, 1);                     /* region 1 */
  wait_json (md, VERIFY, "{\"state\":\"running\",\"checked\":1,"
             "\"mismatches\":1,\"regions\":[0]}", NULL, NULL);
  g_free (h_command_ok (md, "message 0 verify"));
  wait_json (md, VERIFY, "{\"state\":\"running\",\"checked\":0,"
             "\"mismatches\":0,\"regions\":[]}", NULL, NULL);
  wait_json (md, VERIFY_IDLE (16, 1, "0"), a, b);
  h_md_free (md);
}

/* A trimmed region may read differently on each leg (NBD leaves its
 * bytes unspecified): verify passes over it, until a copy makes it
 * equal again.
 */
static void
test_verify_trimmed_skipped (void)
{
  struct ndm_md *md = h_md_new (CORE_AB (""), NULL);
  struct fake_dev *b = fake_lookup ("b");

  g_assert_cmpint (h_io (md, NDM_OP_TRIM, NULL, 64 * KIB, 2 * 64 * KIB, 0),
                   ==, 0);
  fake_data (b)[2 * 64 * KIB + 7] = 1;
  fake_data (b)[3 * 64 * KIB + 7] = 1;
  g_free (h_command_ok (md, "message 0 verify"));
  wait_json (md, VERIFY_IDLE (16, 1, "3"), NULL, NULL);
  h_md_free (md);
}

/* b's read of region 4 fails with EIO during the verify: a read error
 * of b, the region not compared (no mismatch) but repaired from a, as a
 * client read's would be; a second verify finds the legs equal.
 */
static void
test_verify_read_error_repaired (void)
{
  struct ndm_md *md = h_md_new (CORE_AB (""), NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autoptr (GString) copied = NULL;

  h_fill (fake_data (a), 1 << 20, 12);
  memcpy (fake_data (b), fake_data (a), 1 << 20);
  fake_data (b)[4 * 64 * KIB + 9] ^= 1;
  fake_fail_at (b, 4, EIO);
  g_free (h_command_ok (md, "message 0 verify"));
  wait_json (md, VERIFY_IDLE (16, 0, ""), NULL, NULL);
  wait_json (md, LEG (1), "{\"leg\":\"fake://b\",\"state\":\"in_sync\","
             "\"health\":\"R\",\"fail_count\":0,\"write_errors\":0,"
             "\"read_errors\":1,\"read_repairs\":1}", NULL, NULL);
  copied = copies (b);
  g_assert_cmpstr (copied->str, ==, "256K ");
  g_assert_cmpmem (fake_data (b), 1 << 20, fake_data (a), 1 << 20);
  h_md_free (md);
}

/* A suspend stops the verify with the resync thread; the resume goes on
 * from the region it had reached, not from 0: every region is read once
 * from a (a stop ends a comparison before its first read, or after its
 * last: a region is one piece).
 */
static gpointer suspend_thread (gpointer data);
static int suspended;

static void
test_verify_suspend_continues (void)
{
  struct ndm_md *md = h_md_new (MIRROR_CORE (""), NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  GError *err = NULL;
  GThread *suspender;
  g_autofree char *st = NULL;
  unsigned i, done;

  g_free (h_command_ok (md, "message 0 verify"));
  for (i = 0; i < 3; i++) {
    fake_wait_pending (a, 1);
    fake_complete_all (a);
    fake_wait_pending (b, 1);
    fake_complete_all (b);
  }
  fake_wait_pending (a, 1);                     /* region 3 */
  g_atomic_int_set (&suspended, 0);
  suspender = g_thread_new ("suspend", suspend_thread, md);
  while (!g_atomic_int_get (&suspended)) {
    fake_complete_all (a);
    fake_complete_all (b);
    g_usleep (1000);
  }
  g_thread_join (suspender);
  /* At least regions 0 to 3 were compared (the reads that came before
   * the stop were answered: maybe more).
   */
  st = h_command_ok (md, "status");
  g_assert_nonnull (strstr (st, " verify "));
  g_assert_cmpint (sscanf (strstr (st, " verify "), " verify %u/16", &done),
                   ==, 1);
  g_assert_cmpuint (done, >=, 4);
  g_assert_cmpuint (done, <, 16);
  g_usleep (100000);
  g_assert_cmpuint (fake_pending (a), ==, 0);
  g_assert_cmpint (ndm_md_resume (md, &err), ==, 0);
  g_assert_no_error (err);
  wait_json (md, VERIFY_IDLE (16, 0, ""), a, b);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_READ), ==, 16);
  h_md_free (md);
  g_atomic_int_set (&suspended, 0);     /* for the next user */
}

/* repair before any verify, or while one runs, is refused. */
static void
test_verify_refusals (void)
{
  struct ndm_md *md = h_md_new (MIRROR_CORE (""), NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autoptr (GError) err = NULL;

  g_assert_null (h_command (md, "message 0 repair", &err));
  g_assert_nonnull (strstr (err->message, "repair: no verify has run"));
  g_clear_error (&err);
  g_free (h_command_ok (md, "message 0 verify"));
  fake_wait_pending (a, 1);
  g_assert_null (h_command (md, "message 0 repair", &err));
  g_assert_nonnull (strstr (err->message, "repair: a verify is running "
                            "(0/16 regions checked): repair once it has "
                            "ended"));
  wait_json (md, VERIFY_IDLE (16, 0, ""), a, b);
  g_free (h_command_ok (md, "message 0 repair"));
  h_md_free (md);
}

/* ---- resync -------------------------------------------------------------------- */

/* The core log without nosync knows nothing: every region is copied
 * from the default leg (a), and an event says when all are in sync.
 */
static void
test_resync_copies_all (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror core 1 128 "
                                "2 fake://a?mode=held 0 fake://b 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  unsigned ev = event_nr (md);

  h_fill (fake_data (a), 1 << 20, 6);
  /* Nothing is copied before a answers the first read. */
  fake_wait_pending (a, 1);
  g_assert_cmpint (fake_data (b)[0], ==, 0);
  wait_sync (md, "16/16 1 AA", a, NULL);
  g_assert_cmpmem (fake_data (b), 1 << 20, fake_data (a), 1 << 20);
  g_assert_cmpuint (event_nr (md), >, ev);
  h_md_free (md);
}

/* The copies to b fail.  With handle_errors, b is failed ('S', fenced)
 * and, a leg being out, nothing more is copied; without, as dm, the
 * error is ignored for the region (in sync) but b is no read source.
 */
static void
test_resync_destination_fails (gconstpointer data)
{
  bool handle_errors = GPOINTER_TO_INT (data);
  g_autofree char *table = g_strdup_printf ("0 2048 mirror core 1 128 "
                                            "2 fake://a?mode=held 0 "
                                            "fake://b 0%s",
                                            handle_errors
                                            ? " 1 handle_errors" : "");
  struct ndm_md *md = h_md_new (table, NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  char buf[4096];
  unsigned i, rb;

  /* The first copy waits for a's read: b fails from before it. */
  fake_fail_range (b, 0, 1 << 20, EIO);
  wait_sync (md, handle_errors ? "0/16 1 AS" : "16/16 1 AS", a, NULL);
  wait_fences (b, handle_errors ? 1 : 0);
  if (handle_errors) {
    /* Still nothing copied a while later. */
    g_usleep (300000);
    g_assert_cmpuint (fake_count_op (b, NDM_OP_WRITE), ==, 1);
  }
  rb = fake_count_op (b, NDM_OP_READ);
  for (i = 0; i < 4; i++) {
    struct h_io *io = h_io_start (md, NDM_OP_READ, buf, sizeof buf,
                                  i * 64 * KIB, 0);

    fake_wait_pending (a, 1);
    fake_complete_all (a);
    g_assert_cmpint (h_io_wait (io), ==, 0);
  }
  g_assert_cmpuint (fake_count_op (b, NDM_OP_READ), ==, rb);
  h_md_free (md);
}

/* A client write to the region being copied waits for the copy, then
 * goes to every leg: the copy never overwrites it, it is not lost, and
 * every leg ends with the client's data.
 */
static void
test_write_to_recovering_region (void)
{
  struct ndm_md *md = h_md_new ("0 128 mirror core 1 128 "
                                "2 fake://a?mode=held 0 fake://b?mode=held 0",
                                NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc (4 * KIB);
  struct h_io *io;

  h_fill (fake_data (a), 64 * KIB, 2);
  h_fill (buf, 4 * KIB, 3);
  fake_wait_pending (a, 1);               /* the copy's read */
  io = h_io_start (md, NDM_OP_WRITE, buf, 4 * KIB, 8 * KIB, 0);
  g_usleep (50000);
  /* Held: no bio of it anywhere while the copy runs. */
  g_assert_cmpuint (fake_submitted (a), ==, 1);
  g_assert_cmpuint (fake_submitted (b), ==, 0);
  g_assert_false (h_io_done (io));
  /* By index: the next command may come while a completion runs. */
  fake_complete (a, 0, 0);
  fake_wait_pending (b, 1);               /* the copy's write */
  g_assert_false (h_io_done (io));
  fake_complete (b, 0, 0);
  fake_wait_pending (b, 1);               /* its flush */
  fake_complete (b, 1, 0);
  /* Released: the write goes to both. */
  fake_wait_pending (a, 1);
  fake_wait_pending (b, 1);
  fake_complete_all (a);
  fake_complete_all (b);
  g_assert_cmpint (h_io_wait (io), ==, 0);
  g_assert_cmpmem (fake_data (a) + 8 * KIB, 4 * KIB, buf, 4 * KIB);
  g_assert_cmpmem (fake_data (b) + 8 * KIB, 4 * KIB, buf, 4 * KIB);
  g_assert_cmpmem (fake_data (b), 64 * KIB, fake_data (a), 64 * KIB);
  wait_sync (md, "1/1 1 AA", NULL, NULL);
  h_md_free (md);
}

/* ---- the resync's copies: bounce, rate (core/kcopyd.c) ------------------------ */

/* A mapped device of table over fakes (cfg's keys), a's first bytes
 * random before the resync starts (at ndm_md_start), and taken bytes of
 * its bounce budget taken by the test.
 */
static struct ndm_md *
mirror_filled (const char *table, struct ndm_config *cfg, uint64_t bytes,
               uint64_t taken)
{
  struct ndm_md *md;
  GError *err = NULL;

  cfg->device_class = &fake_device_class;
  md = ndm_md_new (cfg);
  if (taken > 0)
    g_assert_true (ndm_budget_try_get (&md->bounce, taken,
                                       ndm_waiter_self ()));
  g_assert_cmpint (ndm_md_load (md, table, &err), ==, 0);
  g_assert_no_error (err);
  h_fill (fake_data (fake_lookup ("a")), bytes, 9);
  ndm_md_start (md);
  return md;
}

/* a with random data and b with zeroes, every region to copy,
 * max-bounce 16 KiB (pieces of 8 KiB), whose budget is all taken before
 * the resync starts.
 */
static struct ndm_md *
mirror_with_bounce_taken (uint64_t taken)
{
  struct ndm_config cfg;

  h_config_init (&cfg);
  cfg.max_bounce = 16 * KIB;
  return mirror_filled ("0 256 mirror core 1 128 "
                        "2 fake://a?mode=held 0 fake://b 0", &cfg,
                        128 * KIB, taken);
}

/* R8: the resync never holds more than max-bounce; at the cap it waits
 * (copies nothing, fails nothing) and goes on when the budget is back,
 * one piece charged at a time.
 */
static void
test_recovery_bounce_charged (void)
{
  struct ndm_md *md = mirror_with_bounce_taken (16 * KIB);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *status = NULL;
  unsigned i = 0;

  g_usleep (200000);
  g_assert_cmpuint (fake_submitted (a), ==, 0);
  status = sync_and_letters (md);
  g_assert_cmpstr (status, ==, "0/2 1 AA");
  ndm_budget_put (&md->bounce, 16 * KIB);
  /* 2 regions of 64 KiB: 16 reads of 8 KiB, each with one piece charged. */
  for (i = 0; i < 16; i++) {
    fake_wait_pending (a, 1);
    g_assert_cmpuint (h_bounce_used (md), ==, 8 * KIB);
    fake_complete (a, i, 0);
  }
  wait_sync (md, "2/2 1 AA", a, NULL);
  g_assert_cmpmem (fake_data (b), 128 * KIB, fake_data (a), 128 * KIB);
  g_assert_cmpuint (h_bounce_used (md), ==, 0);
  h_md_free (md);
}

/* A rate cap bounds the bytes copied: at 4 KiB/s the resync may copy one
 * piece at once (a region: the bucket's debt) and then 4 KiB per second
 * of the time it ran, whatever that time is; a run on a loaded machine
 * only lowers the count.  resync_rate 0 lifts the cap at once, waiting
 * copy included.
 */
static void
test_recovery_rate (void)
{
  struct ndm_config cfg;
  struct ndm_md *md;
  struct fake_dev *a;
  gint64 t0 = g_get_monotonic_time ();
  g_autofree char *status = NULL;
  double seconds;
  uint64_t bound;

  h_config_init (&cfg);
  g_assert_cmpint (ndm_config_set (&cfg, "resync-rate", "4K/s", NULL), ==, 1);
  md = h_md_new ("0 2048 mirror core 1 128 2 fake://a 0 fake://b 0", &cfg);
  a = fake_lookup ("a");
  while (fake_count_op (a, NDM_OP_READ) == 0)
    g_usleep (1000);
  g_usleep (300000);
  seconds = (g_get_monotonic_time () - t0) / 1e6;
  bound = 2 * 64 * KIB + (uint64_t) (seconds * 4 * KIB);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_READ) * 64 * KIB, <=, bound);
  status = sync_and_letters (md);
  g_assert_cmpstr (status, !=, "16/16 1 AA");
  g_free (h_command_ok (md, "message 0 resync_rate 0"));
  wait_sync (md, "16/16 1 AA", NULL, NULL);
  h_md_free (md);
}

/* A suspend while the resync waits for its throttle (4 KiB/s: the
 * second region waits a quarter of a minute) ends the wait at once; the
 * region it was to copy stays out of sync (nothing was copied to it),
 * and after the resume, uncapped, every leg ends equal.
 */
static void
test_recovery_stop_in_throttle (void)
{
  struct ndm_config cfg;
  struct ndm_md *md;
  struct fake_dev *a, *b;
  g_autofree char *status = NULL;
  GError *err = NULL;
  gint64 t0;

  h_config_init (&cfg);
  g_assert_cmpint (ndm_config_set (&cfg, "resync-rate", "4K", NULL), ==, 1);
  md = mirror_filled ("0 2048 mirror core 1 128 2 fake://a 0 fake://b 0",
                      &cfg, 1 << 20, 0);
  a = fake_lookup ("a");
  b = fake_lookup ("b");
  wait_sync (md, "1/16 1 AA", NULL, NULL);
  g_usleep (50000);                     /* into the throttle's wait */
  t0 = g_get_monotonic_time ();
  g_assert_cmpint (ndm_md_suspend (md, false, &err), ==, 0);
  g_assert_cmpint (g_get_monotonic_time () - t0, <, 10 * G_TIME_SPAN_SECOND);
  status = sync_and_letters (md);
  g_assert_cmpstr (status, ==, "1/16 1 AA");
  g_assert_cmpuint (fake_count_op (b, NDM_OP_WRITE), ==, 1);
  g_assert_cmpint (ndm_md_resume (md, &err), ==, 0);
  g_assert_no_error (err);
  g_free (h_command_ok (md, "message 0 resync_rate 0"));
  wait_sync (md, "16/16 1 AA", NULL, NULL);
  g_assert_cmpmem (fake_data (b), 1 << 20, fake_data (a), 1 << 20);
  h_md_free (md);
}

/* The JSON's resync object: the cap (key, then message), the rate and
 * time left while it runs, the bytes copied.
 */
static void
test_recovery_json (void)
{
  struct ndm_config cfg;
  struct ndm_md *md;
  g_autofree char *json = NULL, *json2 = NULL;
  gint64 t0 = g_get_monotonic_time ();

  h_config_init (&cfg);
  g_assert_cmpint (ndm_config_set (&cfg, "resync-rate", "4K", NULL), ==, 1);
  md = h_md_new ("0 2048 mirror core 1 128 2 fake://a 0 fake://b 0", &cfg);
  /* The first region is copied at once, the second waits 16 s. */
  for (;;) {
    g_free (json);
    json = h_command_ok (md, "status --json");
    if (h_json_has (json, DETAIL ".resync.copied", "65536"))
      break;
    g_assert_cmpuint (g_get_monotonic_time () - t0, <,
                      10 * G_TIME_SPAN_SECOND);
    g_usleep (2000);
  }
  h_json_expect (json, DETAIL ".resync", "{\"state\":\"running\","
                 "\"rate_limit\":4096}");
  g_assert_cmpint (h_json_int (json, DETAIL ".resync.rate"), >, 0);
  g_assert_cmpint (h_json_int (json, DETAIL ".resync.eta_ms"), >, 0);
  g_free (h_command_ok (md, "message 0 resync_rate 0"));
  wait_sync (md, "16/16 1 AA", NULL, NULL);
  json2 = h_command_ok (md, "status --json");
  h_json_expect (json2, DETAIL ".resync", "{\"state\":\"idle\","
                 "\"rate_limit\":0,\"eta_ms\":0,\"copied\":1048576}");
  h_md_free (md);
}

/* ---- messages: resync, resync_rate --------------------------------------------- */

/* b's export was replaced behind the mirror's back (nosync said equal):
 * resync copies every region from the default leg again, with an event,
 * and b is a's again.
 */
static void
test_message_resync (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror core 2 128 nosync "
                                "2 fake://a 0 fake://b 0", NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *status = NULL;
  unsigned ev = event_nr (md);

  h_fill (fake_data (a), 1 << 20, 4);
  status = sync_and_letters (md);
  g_assert_cmpstr (status, ==, "16/16 1 AA");
  g_free (h_command_ok (md, "message 0 resync"));
  g_assert_cmpuint (event_nr (md), >, ev);
  wait_sync (md, "16/16 1 AA", NULL, NULL);
  g_assert_cmpmem (fake_data (b), 1 << 20, fake_data (a), 1 << 20);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_READ), ==, 16);
  h_md_free (md);
}

/* resync_rate sets this mirror's cap over the key's, in each way a rate
 * is written.
 */
static void
test_message_resync_rate (void)
{
  static const struct {
    const char *word;
    gint64 want;
  } rates[] = {
    { "64M/s", 67108864 },
    { "512K", 524288 },
    { "4096", 4096 },
    { "1g/s", 1073741824 },
    { "0", 0 },
  };
  struct ndm_config cfg;
  struct ndm_md *md;
  unsigned i;

  h_config_init (&cfg);
  g_assert_cmpint (ndm_config_set (&cfg, "resync-rate", "1M/s", NULL), ==, 1);
  md = h_md_new ("0 2048 mirror core 2 128 nosync 2 fake://a 0 fake://b 0",
                 &cfg);
  for (i = 0; i <= G_N_ELEMENTS (rates); i++) {
    g_autofree char *json = NULL;

    if (i > 0) {
      g_autofree char *cmd = g_strdup_printf ("message 0 resync_rate %s",
                                              rates[i - 1].word);

      g_free (h_command_ok (md, cmd));
    }
    json = h_command_ok (md, "status --json");
    g_assert_cmpint (h_json_int (json, DETAIL ".resync.rate_limit"), ==,
                     i == 0 ? 1048576 : rates[i - 1].want);
  }
  h_md_free (md);
}

/* With a disk log, resync marks every region in the log (the bitmap
 * after the 4 KiB header, on the log device), so a restart before the
 * end copies what is left; the copies then clear the marks.
 */
static void
test_message_resync_disk_log (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror disk 3 fake://l 128 nosync "
                                "2 fake://a 0 fake://b?mode=held 0", NULL);
  struct fake_dev *b = fake_lookup ("b");
  struct ndm_io_where bitmap = { h_device_of (md, "l"),
                                 NDM_DIRTY_LOG_HEADER_SIZE };
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;
  unsigned char bits[4096];
  int err;

  g_free (h_command_ok (md, "message 0 resync"));
  fake_wait_pending (b, 1);               /* the first copy's write */
  /* Read as the log's own I/O is: under the fake's lock, not racing the
   * log thread's commit.
   */
  for (;;) {
    g_assert_cmpint (ndm_target_io (h_first_target (md), NDM_OP_READ, 0,
                                    &bitmap, 1, bits, sizeof bits, NULL,
                                    &err), ==, 0);
    if (bits[0] == 0xff && bits[1] == 0xff)
      break;
    if (g_get_monotonic_time () > end)
      g_error ("the log's bitmap has %02x%02x, expected ffff", bits[0],
               bits[1]);
    g_usleep (2000);
  }
  wait_sync (md, "16/16 1 AA", NULL, b);
  free_completing (md, fake_lookup ("a"), b);
}

/* Table holds a mirror of one 128-sector region over held legs a and b
 * whose core log copies it at load; the request (op, count bytes at
 * offset, flags) meets that region while the copy runs and fails with
 * want without being mapped again.  The mirror's clone, held for the
 * copy, must be released with it: the copy's end then releases no
 * freed clone (ASan sees the clones on the heap: more than a request
 * holds inline), the region ends in sync, and the legs equal.
 */
static void
held_clone_released (const char *table, enum ndm_op op, uint64_t count,
                     uint64_t offset, uint32_t flags, int want)
{
  struct ndm_md *md = h_md_new (table, NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = op == NDM_OP_WRITE ? g_malloc0 (count) : NULL;
  struct h_io *io;

  h_fill (fake_data (a), 64 * KIB, 2);
  fake_wait_pending (a, 1);               /* the copy's read: held from now */
  io = h_io_start (md, op, buf, count, offset, flags);
  g_assert_cmpint (h_io_wait_bounded (io, 10), ==, want);
  fake_complete_all (a);
  /* The copy's write, then its flush: completing the one may bring the
   * other within the same fake_complete_all, so b is completed as its
   * commands come until the region is in sync.
   */
  wait_sync (md, "1/1 1 AA", NULL, b);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_WRITE), ==, 1);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_FLUSH), ==, 1);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_ZERO), ==, 0);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_ZERO), ==, 0);
  g_assert_cmpmem (fake_data (b), 64 * KIB, fake_data (a), 64 * KIB);
  h_md_free (md);
}

#define HELD_MIRROR "mirror core 1 128 2 fake://a?mode=held 0 " \
  "fake://b?mode=held 0\n"

/* A fast zero over the region being copied and a device that cannot zero
 * fast is refused whole before any bio starts (nothing is zeroed).
 * Found by the soak (a use after free in the resync thread).
 */
static void
test_refused_fast_zero_releases_held (void)
{
  held_clone_released ("0 128 " HELD_MIRROR
                       "128 2 zero\n130 2 zero\n132 2 zero\n"
                       "134 2 linear fake://c?fastzero=0 0",
                       NDM_OP_ZERO, 60 * KIB, 8 * KIB, NDM_REQ_FAST_ZERO,
                       ENOTSUP);
}

/* A write over the error target, then the region being copied: it fails
 * at once.  Found by the soak (a trim; a use after free in the resync
 * thread).
 */
static void
test_failed_request_releases_held (void)
{
  held_clone_released ("0 8 error\n8 128 " HELD_MIRROR
                       "136 2 zero\n138 2 zero\n140 2 zero",
                       NDM_OP_WRITE, 142 * 512, 0, 0, EIO);
}

/* A write over the error target, then a mirror whose leg a fails it
 * (no handle_errors): the mirror's end_io requeues the tail for b, but
 * the request fails anyway and does not map it again.  The mirror gives
 * back the region's pending count, so the resync can quiesce and copy
 * the region a missed (else it waits for ever, and holds every write to
 * it).  Found by the soak (a client write unanswered for 90 s).
 */
static void
test_failed_request_releases_requeued (void)
{
  struct ndm_md *md = h_md_new ("0 8 error\n"
                                "8 128 mirror core 2 128 nosync "
                                "2 fake://a?mode=held 0 fake://b?mode=held 0",
                                NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc0 (136 * 512);
  struct h_io *io;

  fake_fail_range (a, 0, 64 * KIB, EIO);
  io = h_io_start (md, NDM_OP_WRITE, buf, 136 * 512, 0, 0);
  fake_wait_pending (a, 1);
  fake_wait_pending (b, 1);
  fake_complete_all (a);
  fake_complete_all (b);
  g_assert_cmpint (h_io_wait_bounded (io, 10), ==, EIO);
  wait_sync (md, "1/1 1 DA", a, b);
  h_md_free (md);
}

/* A fast zero a leg advertised but could not do fast (ENOTSUP from its
 * server) is the client's answer, ENOTSUP, and no fault of the leg: it
 * stays in service with no error counted, and the region, zeroed on a
 * alone, is copied to it by the resync.  Found by the soak (b was
 * failed and fenced, as for a write error).
 */
static void
test_fast_zero_refused_keeps_leg (void)
{
  struct ndm_md *md = h_md_new (CORE_AB (" 1 handle_errors"), NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *json = NULL;

  h_fill (fake_data (a), 64 * KIB, 3);
  memcpy (fake_data (b), fake_data (a), 64 * KIB);
  fake_fail_range (b, 0, 64 * KIB, ENOTSUP);
  g_assert_cmpint (h_io (md, NDM_OP_ZERO, NULL, 4 * KIB, 0,
                         NDM_REQ_FAST_ZERO), ==, ENOTSUP);
  fake_fail_range (b, 0, 0, 0);
  wait_sync (md, "16/16 1 AA", NULL, NULL);
  json = status_json (md);
  h_json_expect (json, LEG (1), "{\"leg\":\"fake://b\",\"state\":"
                 "\"in_sync\",\"health\":\"A\",\"reason\":null,"
                 "\"fail_count\":0,\"write_errors\":0}");
  g_assert_cmpmem (fake_data (b), 64 * KIB, fake_data (a), 64 * KIB);
  h_md_free (md);
}

/* R9 with R6: a flush whose start fails on the first leg (its server
 * gone: ENOTCONN at submit) cancels the flushes after it, which never
 * ran; the legs still in service are flushed in another round, and the
 * client's flush succeeds.  Found by the kernel test (ext4's flush got
 * EIO when leg a's server was killed).
 */
static void
test_flush_start_failure_flushes_others (void)
{
  struct ndm_md *md = h_md_new (CORE_AB (" 1 handle_errors"), NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  unsigned bf = fake_count_op (b, NDM_OP_FLUSH);
  g_autofree char *st = NULL;

  fake_set_down (a, true);
  g_assert_cmpint (h_io (md, NDM_OP_FLUSH, NULL, 0, 0, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_FLUSH), ==, bf + 1);
  st = sync_and_letters (md);
  g_assert_cmpstr (st, ==, "16/16 1 FA");
  fake_set_down (a, false);
  h_md_free (md);
}

/* ---- failfast: a leg whose server goes away -------------------------------------- */

/* Bounded: a request that waits for the leg's server would be the fault. */
static int
write_bounded (struct ndm_md *md, const void *buf, uint64_t len)
{
  return h_io_wait_bounded (h_io_start (md, NDM_OP_WRITE, (void *) buf, len,
                                        0, 0), 10);
}

/* Leg a's server went away and the device waits for a new one (it says
 * EAGAIN at submit): with leg b to take the write, a's bio fails at once
 * and a leaves service, instead of holding the client's write for the
 * device's reconnect window (found by the walk-through: a leg server
 * stopped with SIGTERM held writes 8-16 s).
 */
static void
test_failfast_write_leg_going_away (void)
{
  struct ndm_md *md = h_md_new (CORE_AB (" 1 handle_errors"), NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  unsigned aw = fake_count_op (a, NDM_OP_WRITE);
  char buf[4 * KIB];
  g_autofree char *st = NULL;

  h_fill (buf, sizeof buf, 7);
  fake_set_coming_back (a, true);
  g_assert_cmpint (write_bounded (md, buf, sizeof buf), ==, 0);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_WRITE), ==, aw + 1);
  g_assert_cmpmem (fake_data (b), sizeof buf, buf, sizeof buf);
  st = sync_and_letters (md);
  g_assert_true (g_str_has_suffix (st, " DA"));
  fake_set_coming_back (a, false);
  h_md_free (md);
}

/* An ESHUTDOWN reply (the server is going away and did not run the
 * write) is not sent again to the same leg while another leg can take
 * the write: the leg fails, the write is on b.
 */
static void
test_failfast_eshutdown_not_reissued (void)
{
  struct ndm_md *md = h_md_new (CORE_AB (" 1 handle_errors"), NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  unsigned aw = fake_count_op (a, NDM_OP_WRITE);
  char buf[4 * KIB];
  g_autofree char *st = NULL;

  h_fill (buf, sizeof buf, 8);
  fake_fail_at (a, fake_submitted (a), ESHUTDOWN);
  g_assert_cmpint (write_bounded (md, buf, sizeof buf), ==, 0);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_WRITE), ==, aw + 1);
  g_assert_cmpmem (fake_data (b), sizeof buf, buf, sizeof buf);
  st = sync_and_letters (md);
  g_assert_true (g_str_has_suffix (st, " DA"));
  h_md_free (md);
}

/* A read on a leg whose server went away moves to the other leg at once
 * (default_leg: every read goes to a first).
 */
static void
test_failfast_read_leg_going_away (void)
{
  struct ndm_md *md = h_md_new (
    CORE_AB (" 3 handle_errors read_balance default_leg"), NULL);
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  char buf[4 * KIB];

  h_fill (fake_data (b), 64 * KIB, 9);
  memcpy (fake_data (a), fake_data (b), 64 * KIB);
  fake_set_coming_back (a, true);
  g_assert_cmpint (h_io_wait_bounded (h_io_start (md, NDM_OP_READ, buf,
                                                  sizeof buf, 0, 0), 10),
                   ==, 0);
  g_assert_cmpmem (buf, sizeof buf, fake_data (b), sizeof buf);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_READ), ==, 1);
  fake_set_coming_back (a, false);
  h_md_free (md);
}

/* The last leg in service is not failfast: its server coming back (a
 * restart) is waited for, as a linear device waits, and the write lands
 * on it then.
 */
static void
test_failfast_last_leg_waits (void)
{
  struct ndm_md *md = h_md_new (CORE_AB (" 1 handle_errors"), NULL);
  struct fake_dev *a = fake_lookup ("a");
  unsigned aw = fake_count_op (a, NDM_OP_WRITE);
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;
  char buf[4 * KIB];
  g_autofree char *stats = NULL;
  struct h_io *io;

  g_free (h_command_ok (md, "message 0 fail_leg fake://b"));
  h_fill (buf, sizeof buf, 10);
  fake_set_coming_back (a, true);
  io = h_io_start (md, NDM_OP_WRITE, buf, sizeof buf, 0, 0);
  /* Tried again and again: waiting, not failed. */
  while (fake_count_op (a, NDM_OP_WRITE) < aw + 3 && !h_io_done (io) &&
         g_get_monotonic_time () < end)
    g_usleep (1000);
  g_assert_false (h_io_done (io));
  g_assert_cmpuint (fake_count_op (a, NDM_OP_WRITE), >=, aw + 3);
  fake_set_coming_back (a, false);
  g_assert_cmpint (h_io_wait_bounded (io, 10), ==, 0);
  g_assert_cmpmem (fake_data (a), sizeof buf, buf, sizeof buf);
  /* The tries the device refused (EAGAIN) sent no command: neither
   * errors nor writes of a (one write went out, after its server came
   * back; 8,445 "failed writes" were counted before).
   */
  stats = h_command_ok (md, "stats --json");
  h_json_expect (stats, "$.devices[0].uri", "\"fake://a\"");
  g_assert_cmpint (h_json_int (stats, "$.devices[0].io.errors"), ==, 0);
  g_assert_cmpint (h_json_int (stats, "$.devices[0].io.writes"), ==, 1);
  h_md_free (md);
}

/* ---- suspend, reload, resume --------------------------------------------------- */

/* A suspend stops the log's and the resync's threads (postsuspend,
 * presuspend) and a resume starts them again: first writes to clean
 * regions still get their marks committed, by this table after a
 * resume, by the next one after a reload, and the resync goes on.
 */
static int suspended;

static gpointer
suspend_thread (gpointer data)
{
  g_assert_cmpint (ndm_md_suspend (data, false, NULL), ==, 0);
  g_atomic_int_set (&suspended, 1);
  return NULL;
}

static void
test_suspend_resume_threads (void)
{
  const char *table = "0 2048 mirror disk 3 fake://l 128 nosync "
    "2 fake://a 0 fake://b 0";
  struct ndm_md *md = h_md_new (table, NULL);
  g_autofree char *buf = g_malloc0 (4 * KIB);
  struct fake_dev *a;
  GThread *suspender;
  GError *err = NULL;
  unsigned r;

  for (r = 0; r < 3; r++) {
    struct h_io *io;

    if (r == 1) {
      g_assert_cmpint (ndm_md_suspend (md, false, &err), ==, 0);
      g_assert_cmpint (ndm_md_resume (md, &err), ==, 0);
    }
    if (r == 2) {
      g_assert_cmpint (ndm_md_reload (md, table, false, &err), ==, 0);
      g_assert_cmpint (ndm_md_suspend (md, false, &err), ==, 0);
      g_assert_cmpint (ndm_md_resume (md, &err), ==, 0);
    }
    g_assert_no_error (err);
    io = h_io_start (md, NDM_OP_WRITE, buf, 4 * KIB, r * 64 * KIB, 0);
    g_assert_cmpint (h_io_wait_bounded (io, 10), ==, 0);
  }
  h_md_free (md);

  /* The resync, stopped by a suspend mid-way (the copy under way ends
   * first: a's reads are completed until the suspend returns), ends
   * after the resume.
   */
  md = h_md_new ("0 2048 mirror core 1 128 2 fake://a?mode=held 0 "
                 "fake://b 0", NULL);
  a = fake_lookup ("a");
  fake_wait_pending (a, 1);
  fake_complete_all (a);
  suspender = g_thread_new ("suspend", suspend_thread, md);
  while (!g_atomic_int_get (&suspended)) {
    fake_complete_all (a);
    g_usleep (1000);
  }
  g_thread_join (suspender);
  g_assert_cmpuint (fake_pending (a), ==, 0);
  g_assert_cmpint (ndm_md_resume (md, &err), ==, 0);
  g_assert_no_error (err);
  wait_sync (md, "16/16 1 AA", a, NULL);
  h_md_free (md);
}

/* ---- table, status, messages ----------------------------------------------------- */

static void
test_table_format (void)
{
  struct ndm_md *md = h_md_new ("0 1024 mirror disk 3 fake://l 128 nosync "
                                "2 fake://a 0 fake://b 8 1 handle_errors",
                                NULL);
  g_autofree char *t = h_command_ok (md, "table");
  g_autofree char *s = h_command_ok (md, "status");
  g_autofree char *json = h_command_ok (md, "status --json");
  struct ndm_md *md2;
  g_autofree char *t2 = NULL, *s2 = NULL;

  g_assert_cmpstr (t, ==, "0 1024 mirror disk 3 fake://l 128 nosync "
                   "2 fake://a 0 "
                   "fake://b 8 1 handle_errors");
  g_assert_cmpstr (s, ==, "0 1024 mirror 2 fake://a fake://b 8/8 1 AA "
                   "3 disk fake://l A");
  h_json_expect (json, DETAIL, "{\"regions\":8,"
                 "\"in_sync\":8,\"region_size\":65536,"
                 "\"handle_errors\":true,\"keep_log\":false,"
                 "\"read_balance\":\"queue-length\","
                 "\"default_leg\":\"fake://a\",\"log\":{\"type\":\"disk\","
                 "\"device\":\"fake://l\",\"health\":\"A\"}}");
  h_json_expect (json, LEG (0), "{\"leg\":\"fake://a\","
                 "\"state\":\"in_sync\",\"health\":\"A\",\"reason\":null,"
                 "\"fail_count\":0,\"damped_ms\":0,\"write_errors\":0,"
                 "\"read_errors\":0,\"read_repairs\":0,\"reads\":0}");
  h_md_free (md);

  md2 = h_md_new ("0 2048 mirror core 2 128 nosync 2 fake://a 0 fake://b 0 "
                  "4 handle_errors keep_log read_balance round-robin", NULL);
  t2 = h_command_ok (md2, "table");
  s2 = h_command_ok (md2, "status");
  g_assert_cmpstr (t2, ==, "0 2048 mirror core 2 128 nosync 2 fake://a 0 "
                   "fake://b 0 4 handle_errors keep_log read_balance "
                   "round-robin");
  g_assert_cmpstr (s2, ==, "0 2048 mirror 2 fake://a fake://b 16/16 1 AA "
                   "1 core");
  h_md_free (md2);
}

/* A leg that cannot be reached at load is kept, failed ('U'), and the
 * mirror serves from the other.
 */
static void
test_absent_leg_at_load (void)
{
  struct ndm_md *md = h_md_new ("0 2048 mirror core 2 128 nosync "
                                "2 fake://missing-a 0 fake://b 0", NULL);
  g_autofree char *st = sync_and_letters (md);
  g_autofree char *buf = g_malloc0 (4 * KIB);

  g_assert_cmpstr (st, ==, "16/16 1 UA");
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4 * KIB, 0, 0), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 4 * KIB, 0, 0), ==, 0);
  h_md_free (md);
}

/* ---- reinstatement ----------------------------------------------------------- */

/* The checker every 20 ms, or (slow) never within a test. */
static struct ndm_config *
checker_config (struct ndm_config *cfg, bool fast)
{
  h_config_init (cfg);
  cfg->checker_interval_ms = fast ? 20 : 3600 * 1000;
  return cfg;
}

/* op on md, completing what the held leg fd is sent meanwhile. */
static int
io_completing (struct ndm_md *md, enum ndm_op op, void *buf, uint64_t len,
               uint64_t offset, struct fake_dev *fd)
{
  struct h_io *io = h_io_start (md, op, buf, len, offset, 0);

  while (!h_io_done (io)) {
    fake_complete_all (fd);
    g_usleep (500);
  }
  return h_io_wait (io);
}

/* A write of buf to offset, during which the held leg fd is fenced
 * (its server killed, or stopped with fence=ghost): the write succeeds
 * on the other leg and fd leaves service.
 */
static void
write_fencing (struct ndm_md *md, void *buf, uint64_t offset,
               struct fake_dev *fd)
{
  struct h_io *io = h_io_start (md, NDM_OP_WRITE, buf, 4 * KIB, offset, 0);

  fake_wait_pending (fd, 1);
  fake_fence_now (fd);
  g_assert_cmpint (h_io_wait (io), ==, 0);
}

/* Region-long writes (the resync's copies) in fd's log, by offset. */
static GString *
copies (struct fake_dev *fd)
{
  g_autoptr (GArray) log = fake_log (fd);
  GString *out = g_string_new ("");
  unsigned i;

  for (i = 0; i < log->len; i++) {
    const struct fake_cmd *c = &g_array_index (log, struct fake_cmd, i);

    if (c->op == NDM_OP_WRITE && c->len == 64 * KIB)
      g_string_append_printf (out, "%" PRIu64 "K ", c->offset / KIB);
  }
  return out;
}

/* b is fenced under a write (killed: no ghost), more writes go to a
 * alone, b is reinstated by message: the resync copies exactly the two
 * regions written meanwhile, b's letter is A once they are in sync (an
 * event says so), both legs are equal, and reads go to both again.
 */
static void
test_reinstate_resyncs_written (void)
{
  struct ndm_config cfg;
  struct ndm_md *md = h_md_new ("0 2048 mirror core 2 128 nosync 2 fake://a "
                                "0 fake://b?mode=held 0 3 handle_errors "
                                "read_balance round-robin",
                                checker_config (&cfg, false));
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc (4 * KIB);
  g_autofree char *st = NULL;
  g_autoptr (GString) copied = NULL;
  g_autoptr (GPtrArray) log = NULL;
  unsigned ev, reads_a, reads_b, i;

  /* The leg's failure is an error; its return and the copies are not. */
  ndm_log_set_debug (NDM_LOG_MIRROR, 1);
  h_log_start ();
  h_fill (buf, 4 * KIB, 21);
  write_fencing (md, buf, 128 * KIB, b);
  h_fill (buf, 4 * KIB, 22);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4 * KIB, 512 * KIB, 0), ==,
                   0);
  st = sync_and_letters (md);
  g_assert_cmpstr (st, ==, "14/16 1 AD");
  g_assert_cmpuint (fake_pending (b), ==, 0);

  g_free (h_command_ok (md, "message 0 reinstate_leg fake://b?mode=held"));
  /* b is held: nothing is copied yet, so the event comes later. */
  ev = event_nr (md);
  wait_sync (md, "16/16 1 AA", NULL, b);
  copied = copies (b);
  g_assert_cmpstr (copied->str, ==, "128K 512K ");
  g_assert_cmpmem (fake_data (b), 1 << 20, fake_data (a), 1 << 20);
  g_assert_cmpuint (event_nr (md), >, ev);
  log = h_log_stop ();
  ndm_log_set_debug (NDM_LOG_MIRROR, 0);
  g_assert_true (h_log_error_or_none (log, "mirror: failing leg fake://b"));
  g_assert_cmpint (h_log_level_of (log, "mirror: leg fake://b?mode=held "
                                   "reinstated"), ==, 'I');
  g_assert_cmpint (h_log_level_of (log, "mirror: region 2 copied from leg "
                                   "fake://a to 1 leg: in sync"), ==, 'D');

  reads_a = fake_count_op (a, NDM_OP_READ);
  reads_b = fake_count_op (b, NDM_OP_READ);
  for (i = 0; i < 4; i++)
    g_assert_cmpint (io_completing (md, NDM_OP_READ, buf, 4 * KIB,
                                    512 * KIB, b), ==, 0);
  g_assert_cmpmem (buf, 4 * KIB, fake_data (a) + 512 * KIB, 4 * KIB);
  g_assert_cmpuint (fake_count_op (a, NDM_OP_READ) - reads_a, ==, 2);
  g_assert_cmpuint (fake_count_op (b, NDM_OP_READ) - reads_b, ==, 2);
  h_md_free (md);
}

#define GHOST_B "fake://b?mode=held&fence=ghost"

/* R10: b's server is stopped (fence=ghost) with an old write in hand;
 * the newer write to the same bytes goes to a alone.  b answers, but
 * neither the checker nor reinstate_leg puts it back while that old
 * write can still land; it lands (the server resumes and closes), then
 * the checker reinstates b and the resync writes the newest data over
 * the stale bytes: both legs end with the newest.
 */
static void
test_reinstate_waits_for_ghosts (void)
{
  struct ndm_config cfg;
  struct ndm_md *md = h_md_new ("0 2048 mirror core 2 128 nosync 2 fake://a "
                                "0 " GHOST_B " 0 "
                                "1 handle_errors",
                                checker_config (&cfg, true));
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autofree char *old = g_malloc (4 * KIB);
  g_autofree char *new = g_malloc (4 * KIB);
  g_autofree char *st = NULL;
  g_autoptr (GError) err = NULL;
  unsigned probes;

  h_fill (old, 4 * KIB, 31);
  h_fill (new, 4 * KIB, 32);
  write_fencing (md, old, 128 * KIB, b);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, new, 4 * KIB, 128 * KIB, 0), ==,
                   0);

  /* Several checker rounds find b answering: it stays out. */
  probes = fake_probes (b);
  while (fake_probes (b) < probes + 3)
    g_usleep (5000);
  st = sync_and_letters (md);
  g_assert_cmpstr (st, ==, "15/16 1 AD");
  g_assert_null (h_command (md, "message 0 reinstate_leg " GHOST_B, &err));
  g_assert_nonnull (err);
  g_assert_nonnull (strstr (err->message, "reinstate_leg: leg " GHOST_B " not "
                            "reinstated: 1 cut connection may still land "
                            "writes (R10)"));

  fake_land_ghosts (b);
  g_assert_cmpmem (fake_data (b) + 128 * KIB, 4 * KIB, old, 4 * KIB);
  wait_sync (md, "16/16 1 AA", NULL, b);
  g_assert_cmpmem (fake_data (a) + 128 * KIB, 4 * KIB, new, 4 * KIB);
  g_assert_cmpmem (fake_data (b), 1 << 20, fake_data (a), 1 << 20);
  h_md_free (md);
}

/* The operator's device_dead resolves the ghost: reinstate_leg then
 * puts b back, and what the stopped server held never lands.
 */
static void
test_reinstate_after_device_dead (void)
{
  struct ndm_config cfg;
  struct ndm_md *md = h_md_new ("0 2048 mirror core 2 128 nosync 2 fake://a "
                                "0 " GHOST_B " 0 "
                                "1 handle_errors",
                                checker_config (&cfg, false));
  struct fake_dev *a = fake_lookup ("a"), *b = fake_lookup ("b");
  g_autoptr (GError) err = NULL;
  g_autofree char *buf = g_malloc (4 * KIB);

  h_fill (buf, 4 * KIB, 41);
  write_fencing (md, buf, 0, b);
  g_assert_null (h_command (md, "message 0 reinstate_leg " GHOST_B, &err));
  g_assert_nonnull (strstr (err->message, "may still land writes"));
  g_free (h_command_ok (md, "message 0 device_dead " GHOST_B));
  g_free (h_command_ok (md, "message 0 reinstate_leg " GHOST_B));
  wait_sync (md, "16/16 1 AA", NULL, b);
  g_assert_cmpmem (fake_data (b), 1 << 20, fake_data (a), 1 << 20);
  fake_land_ghosts (b);         /* nothing left to land */
  g_assert_cmpmem (fake_data (b), 1 << 20, fake_data (a), 1 << 20);
  h_md_free (md);
}

/* A leg out since load comes up: the checker reinstates it and every
 * region is copied to it, not only those written since.
 */
#undef GHOST_B

static void
test_reinstate_absent_at_load (void)
{
  struct ndm_config cfg;
  struct ndm_md *md = h_md_new ("0 2048 mirror core 2 128 nosync "
                                "2 fake://missing-a 0 fake://b 0",
                                checker_config (&cfg, true));
  struct fake_dev *a = fake_lookup ("missing-a"), *b = fake_lookup ("b");
  g_autofree char *buf = g_malloc (4 * KIB);
  g_autoptr (GString) copied = NULL;

  h_fill (fake_data (b), 1 << 20, 51);
  h_fill (buf, 4 * KIB, 52);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4 * KIB, 0, 0), ==, 0);
  fake_set_down (a, false);
  wait_sync (md, "16/16 1 AA", NULL, NULL);
  copied = copies (a);
  g_assert_cmpuint (strlen (copied->str), >, 0);
  g_assert_cmpmem (fake_data (a), 1 << 20, fake_data (b), 1 << 20);
  h_md_free (md);
}

#define BIG_BLOCK_A "fake://missing-a?min=131072"

/* A leg out since load that comes up with a minimum block above the
 * region size (64 KiB) is not put back, by the checker or by message:
 * at load such a leg refuses the table.
 */
static void
test_reinstate_min_block (void)
{
  struct ndm_config cfg;
  struct ndm_md *md = h_md_new ("0 2048 mirror core 2 128 nosync "
                                "2 " BIG_BLOCK_A " 0 fake://b 0",
                                checker_config (&cfg, true));
  struct fake_dev *a = fake_lookup ("missing-a");
  g_autoptr (GError) err = NULL;
  g_autofree char *st = NULL;
  unsigned probes;

  fake_set_down (a, false);
  probes = fake_probes (a);
  while (fake_probes (a) < probes + 3)
    g_usleep (5000);
  st = sync_and_letters (md);
  g_assert_cmpstr (st, ==, "16/16 1 UA");
  g_assert_null (h_command (md, "message 0 reinstate_leg " BIG_BLOCK_A,
                            &err));
  g_assert_nonnull (err);
  g_assert_nonnull (strstr (err->message, "reinstate_leg: leg " BIG_BLOCK_A
                            " not reinstated: region size '128' is below "
                            "leg " BIG_BLOCK_A "'s minimum block of 131072 "
                            "bytes"));
  h_md_free (md);
}
#undef BIG_BLOCK_A

#define TWO_LEGS "0 2048 mirror core 2 128 nosync 2 fake://a 0 fake://b 0"
static const struct h_command_error message_errors[] = {
  { "fail-leg-unknown", TWO_LEGS, "message 0 fail_leg nbd://nowhere",
    "fail_leg: no leg 'nbd://nowhere' in this target" },
  { "fail-leg-no-argument", TWO_LEGS, "message 0 fail_leg",
    "expected one argument" },
  { "fail-leg-last", TWO_LEGS, "message 0 fail_leg fake://a\n"
    "message 0 fail_leg fake://b", "fail_leg: leg fake://b is the last leg "
    "in sync: it stays in service" },
  { "reinstate-leg-unknown", TWO_LEGS,
    "message 0 reinstate_leg fake://zz", "reinstate_leg: no leg "
    "'fake://zz' in this target" },
  { "reinstate-leg-in-service", TWO_LEGS,
    "message 0 reinstate_leg fake://a", "reinstate_leg: leg fake://a not "
    "reinstated: it is in service" },
  { "repair-before-verify", TWO_LEGS, "message 0 repair",
    "repair: no verify has run" },
  { "verify-argument", TWO_LEGS, "message 0 verify now",
    "verify: expected no argument, got 1 argument" },
  { "unknown", TWO_LEGS, "message 0 frobnicate",
    "unknown message 'frobnicate'" },
  { "resync-argument", TWO_LEGS, "message 0 resync now",
    "resync: expected no argument, got 1 argument" },
};

/* Each bad word of resync_rate, refused with its message. */
static const struct h_command_error resync_rate_errors[] = {
  { "no-argument", TWO_LEGS, "message 0 resync_rate",
    "resync_rate requires an additional argument: expected one argument, "
    "the SIZE/s" },
  { "two-arguments", TWO_LEGS, "message 0 resync_rate 1M /s",
    "resync_rate: expected one argument" },
  { "words", TWO_LEGS, "message 0 resync_rate parsecs",
    "resync_rate 'parsecs': expected a size per second (64M, 64M/s) or 0" },
  { "per-hour", TWO_LEGS, "message 0 resync_rate 64M/h",
    "resync_rate '64M/h': expected a size per second (64M, 64M/s) or 0" },
  { "unit", TWO_LEGS, "message 0 resync_rate 1T",
    "resync_rate '1T': expected a size per second (64M, 64M/s) or 0" },
  { "negative", TWO_LEGS, "message 0 resync_rate -1M",
    "resync_rate '-1M': expected a size per second (64M, 64M/s) or 0" },
  { "overflow", TWO_LEGS,
    "message 0 resync_rate 17179869184G/s", "resync_rate '17179869184G/s': "
    "expected a size per second (64M, 64M/s) or 0" },
};
#undef TWO_LEGS

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  H_ADD_CASES ("/mirror/write", one_leg_fails, test_one_leg_fails);
  H_ADD_CASES ("/mirror/write/every-leg-fails", every_leg,
               test_every_leg_fails);
  g_test_add_func ("/mirror/write/last-leg-never-failed",
                   test_last_leg_never_failed);
  g_test_add_func ("/mirror/write/r6/leg-start-fails", test_leg_start_fails);
  g_test_add_func ("/mirror/write/fua-per-leg", test_fua_per_leg);
  g_test_add_func ("/mirror/write/leg-offsets", test_leg_offsets);
  g_test_add_func ("/mirror/write/failed-leg-logged-before-ack",
                   test_failed_leg_logged_before_ack);
  g_test_add_func ("/mirror/flush/every-leg-and-log", test_flush);
  g_test_add_func ("/mirror/log/mark-before-first-write",
                   test_mark_before_first_write);
  g_test_add_func ("/mirror/log/failure/goes-on", test_log_failure_goes_on);
  g_test_add_func ("/mirror/log/failure/keep-log-eio", test_keep_log_eio);
  g_test_add_func ("/mirror/log/clear-not-starved", test_clears_not_starved);
  g_test_add_data_func ("/mirror/log/restart/clean-stop-clears/free",
                        GINT_TO_POINTER (0), test_clean_stop_clears);
  g_test_add_data_func ("/mirror/log/restart/clean-stop-clears/suspend",
                        GINT_TO_POINTER (1), test_clean_stop_clears);
  g_test_add_data_func ("/mirror/log/restart/resyncs-marked-only",
                        GINT_TO_POINTER (0), test_kill_resyncs_marked);
  g_test_add_data_func ("/mirror/log/restart/skips-failed-leg-source",
                        GINT_TO_POINTER (1), test_kill_resyncs_marked);
  g_test_add_func ("/mirror/log/restart/load-fails-copies-all",
                   test_load_fails_copies_all);
  g_test_add_func ("/mirror/log/reload/reads-log-at-resume",
                   test_reload_reads_log_at_resume);
  H_ADD_CASES ("/mirror/read/policy", policies, test_read_policy);
  g_test_add_func ("/mirror/read/policy/queue-length-busy",
                   test_read_queue_length_busy);
  g_test_add_func ("/mirror/read/nosync-region-default-leg-only",
                   test_nosync_region_default_leg_only);
  g_test_add_func ("/mirror/read/eio-retried-on-other-leg",
                   test_read_eio_retried);
  g_test_add_func ("/mirror/read/every-leg-fails", test_read_every_leg_fails);
  g_test_add_func ("/mirror/read/request-error-not-retried",
                   test_read_request_error_not_retried);
  g_test_add_func ("/mirror/read/degraded-write-then-read",
                   test_degraded_write_then_read);
  g_test_add_func ("/mirror/read/repair", test_read_repair);
  g_test_add_data_func ("/mirror/read/repair/client-write/write-first",
                        GINT_TO_POINTER (1), test_read_repair_client_write);
  g_test_add_data_func ("/mirror/read/repair/client-write/repair-first",
                        GINT_TO_POINTER (0), test_read_repair_client_write);
  g_test_add_func ("/mirror/read/repair/write-fails",
                   test_read_repair_write_fails);
  g_test_add_func ("/mirror/verify/mismatch-recorded",
                   test_verify_mismatch_recorded);
  g_test_add_func ("/mirror/verify/writes-during-verify",
                   test_verify_writes_during);
  g_test_add_func ("/mirror/verify/repair-resyncs-exactly-those",
                   test_verify_repair_resyncs_exactly);
  g_test_add_func ("/mirror/verify/restart", test_verify_restart);
  g_test_add_func ("/mirror/verify/read-error-repaired",
                   test_verify_read_error_repaired);
  g_test_add_func ("/mirror/verify/suspend-continues",
                   test_verify_suspend_continues);
  g_test_add_func ("/mirror/verify/trimmed-skipped",
                   test_verify_trimmed_skipped);
  g_test_add_func ("/mirror/verify/refusals", test_verify_refusals);
  g_test_add_func ("/mirror/recovery/copies-all", test_resync_copies_all);
  g_test_add_data_func ("/mirror/recovery/destination-fails/handle-errors",
                        GINT_TO_POINTER (1), test_resync_destination_fails);
  g_test_add_data_func ("/mirror/recovery/destination-fails/ignored",
                        GINT_TO_POINTER (0), test_resync_destination_fails);
  g_test_add_func ("/mirror/recovery/bounce-charged",
                   test_recovery_bounce_charged);
  g_test_add_func ("/mirror/recovery/rate", test_recovery_rate);
  g_test_add_func ("/mirror/recovery/json", test_recovery_json);
  g_test_add_func ("/mirror/recovery/stop-in-throttle",
                   test_recovery_stop_in_throttle);
  g_test_add_func ("/mirror/messages/resync", test_message_resync);
  g_test_add_func ("/mirror/messages/resync-rate", test_message_resync_rate);
  g_test_add_func ("/mirror/messages/resync/disk-log-marks",
                   test_message_resync_disk_log);
  g_test_add_func ("/mirror/recovery/write-to-recovering-region",
                   test_write_to_recovering_region);
  g_test_add_func ("/mirror/recovery/refused-fast-zero-releases-held",
                   test_refused_fast_zero_releases_held);
  g_test_add_func ("/mirror/recovery/failed-request-releases-held",
                   test_failed_request_releases_held);
  g_test_add_func ("/mirror/flush/start-failure-flushes-others",
                   test_flush_start_failure_flushes_others);
  g_test_add_func ("/mirror/write/fast-zero-refused-keeps-leg",
                   test_fast_zero_refused_keeps_leg);
  g_test_add_func ("/mirror/failfast/write-leg-going-away",
                   test_failfast_write_leg_going_away);
  g_test_add_func ("/mirror/failfast/eshutdown-not-reissued",
                   test_failfast_eshutdown_not_reissued);
  g_test_add_func ("/mirror/failfast/read-leg-going-away",
                   test_failfast_read_leg_going_away);
  g_test_add_func ("/mirror/failfast/last-leg-waits",
                   test_failfast_last_leg_waits);
  g_test_add_func ("/mirror/recovery/failed-request-releases-requeued",
                   test_failed_request_releases_requeued);
  g_test_add_func ("/mirror/suspend/resume-restarts-threads",
                   test_suspend_resume_threads);
  g_test_add_func ("/mirror/table/format", test_table_format);
  g_test_add_func ("/mirror/leg/absent-at-load", test_absent_leg_at_load);
  g_test_add_func ("/mirror/reinstate/resyncs-written-regions",
                   test_reinstate_resyncs_written);
  g_test_add_func ("/mirror/reinstate/r10/waits-for-ghosts",
                   test_reinstate_waits_for_ghosts);
  g_test_add_func ("/mirror/reinstate/r10/after-device-dead",
                   test_reinstate_after_device_dead);
  g_test_add_func ("/mirror/reinstate/checker/absent-at-load",
                   test_reinstate_absent_at_load);
  h_add_command_errors ("/mirror/messages/resync-rate/bad",
                        resync_rate_errors, G_N_ELEMENTS (resync_rate_errors));
  g_test_add_func ("/mirror/reinstate/min-block-above-region",
                   test_reinstate_min_block);
  h_add_command_errors ("/mirror/message/error", message_errors,
                        G_N_ELEMENTS (message_errors));
  return g_test_run ();
}
