/* SPDX-License-Identifier: BSD-3-Clause */
/* The fault targets: flakey (each feature while down, nothing while up),
 * dust (bad blocks by message), delay (I/O waits, status counts it, a
 * flush reaches every device it names).
 * Intervals of 0 make flakey deterministic: up 0 is always down, down 0
 * is never down.
 */
#include "nbd-dm/control.h"
#include "harness.h"

static int
msg (struct ndm_md *md, GString *out, GError **err, const char *line)
{
  g_auto (GStrv) argv = g_strsplit (line, " ", -1);

  g_string_truncate (out, 0);
  return ndm_md_command (md, g_strv_length (argv), argv, out, err);
}

static void
msg_ok (struct ndm_md *md, GString *out, const char *line)
{
  GError *err = NULL;

  if (msg (md, out, &err, line) == -1)
    g_error ("'%s': %s", line, err->message);
}

/* ---- flakey ------------------------------------------------------------------ */

/* Writes 4 KiB of 'w' at 0 and reads it back; returns (write errno << 8)
 * | read errno, and leaves the read data in rbuf.
 */
static int
flakey_probe (struct ndm_md *md, char *rbuf)
{
  char wbuf[4096];
  int w, r;

  memset (wbuf, 'w', sizeof wbuf);
  w = h_io (md, NDM_OP_WRITE, wbuf, 4096, 0, 0);
  r = h_io (md, NDM_OP_READ, rbuf, 4096, 0, 0);
  return (w << 8) | r;
}

static const struct flakey_case {
  const char *name;
  const char *args;
  int write_err, read_err;
  bool write_lands;
} flakey_cases[] = {
  { "never-down", "3600 0", 0, 0, true },
  { "down", "0 3600", EIO, EIO, false },                    /* all fail */
  { "error-reads", "0 3600 1 error_reads", 0, EIO, true },
  { "error-writes", "0 3600 1 error_writes", EIO, 0, false },
  { "drop-writes", "0 3600 1 drop_writes", 0, 0, false },
  { "error-reads-drop-writes", "0 3600 2 error_reads drop_writes", 0, EIO,
    false },
};

static void
test_flakey_features (gconstpointer data)
{
  const struct flakey_case *c = data;
  g_autofree char *table =
    g_strdup_printf ("0 2048 flakey fake://a 0 %s", c->args);
  struct ndm_md *md = h_md_new (table, NULL);
  char rbuf[4096];
  int r = flakey_probe (md, rbuf);

  if ((r >> 8) != c->write_err || (r & 0xff) != c->read_err)
    g_error ("flakey %s: write %d read %d, want %d %d", c->args,
             r >> 8, r & 0xff, c->write_err, c->read_err);
  g_assert_cmpint (fake_data (fake_lookup ("a"))[0] == 'w', ==,
                   c->write_lands);
  h_md_free (md);
}

static void
test_flakey_corrupt (void)
{
  struct ndm_md *md;
  struct fake_dev *a;
  char wbuf[4096], rbuf[4096];

  /* Byte 10 of reads while down; the device keeps the truth. */
  md = h_md_new ("0 2048 flakey fake://a 0 0 3600 5 corrupt_bio_byte 10 r "
                 "65 0", NULL);
  a = fake_lookup ("a");
  memset (fake_data (a), 'x', 4096);
  g_assert_cmpint (h_io (md, NDM_OP_READ, rbuf, 4096, 0, 0), ==, 0);
  g_assert_cmpint (rbuf[9], ==, 'A');
  g_assert_cmpint (rbuf[8], ==, 'x');
  g_assert_cmpint (fake_data (a)[9], ==, 'x');
  h_md_free (md);

  /* Byte 1 of writes: what lands is corrupted, the client's buffer not. */
  md = h_md_new ("0 2048 flakey fake://a 0 0 3600 5 corrupt_bio_byte 1 w "
                 "66 0", NULL);
  a = fake_lookup ("a");
  memset (wbuf, 'w', sizeof wbuf);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, wbuf, 4096, 0, 0), ==, 0);
  g_assert_cmpint (wbuf[0], ==, 'w');
  g_assert_cmpint (fake_data (a)[0], ==, 'B');
  g_assert_cmpint (fake_data (a)[1], ==, 'w');
  h_md_free (md);

  /* Certain random write corruption, seeded: exactly one byte differs. */
  md = h_md_new ("0 2048 flakey fake://a 0 0 3600 4 random_write_corrupt "
                 "1000000000 random_seed 7", NULL);
  a = fake_lookup ("a");
  {
    unsigned i, diffs = 0;

    memset (wbuf, 0x55, sizeof wbuf);
    g_assert_cmpint (h_io (md, NDM_OP_WRITE, wbuf, 4096, 0, 0), ==, 0);
    for (i = 0; i < 4096; i++)
      diffs += fake_data (a)[i] != 0x55;
    g_assert_cmpuint (diffs, <=, 1);     /* the random value may be 0x55 */
    g_assert_cmpint (wbuf[100], ==, 0x55);
  }
  h_md_free (md);
}

static void
test_flakey_table_and_status (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 flakey fake://a?size=4M 8 5 7\n"
    "2048 2048 flakey fake://a?size=4M 0 5 7 6 drop_writes corrupt_bio_byte "
    "32 r 1 0",
    NULL);
  g_autoptr (GString) out = g_string_new (NULL);

  ndm_md_table (md, out);
  g_assert_cmpstr (out->str, ==,
                   "0 2048 flakey fake://a?size=4M 8 5 7 2 error_reads "
                   "error_writes\n"
                   "2048 2048 flakey fake://a?size=4M 0 5 7 6 drop_writes "
                   "corrupt_bio_byte 32 r 1 0\n");
  g_string_truncate (out, 0);
  ndm_md_status (md, out);
  g_assert_cmpstr (out->str, ==, "0 2048 flakey\n2048 2048 flakey\n");
  h_md_free (md);
}

static const struct h_table_error flakey_table_errors[] = {
  { "one-interval", "0 8 flakey fake://a 0 1",
    "line 1: flakey: expected '<device> <offset> <up interval> <down "
    "interval>" },
  { "both-intervals-zero", "0 8 flakey fake://a 0 0 0", "not both 0" },
  { "feature-count-too-high", "0 8 flakey fake://a 0 1 1 2 drop_writes",
    "#feature args '2' does not match the 1 word" },
  { "drop-and-error-writes",
    "0 8 flakey fake://a 0 1 1 2 drop_writes error_writes",
    "drop_writes conflicts with feature error_writes" },
  { "unknown-feature", "0 8 flakey fake://a 0 1 1 1 shaky",
    "unknown feature 'shaky'" },
  { "corrupt-direction", "0 8 flakey fake://a 0 1 1 3 corrupt_bio_byte 1 x",
    "corrupt_bio_byte <direction> 'x': expected r or w" },
  { "corrupt-value", "0 8 flakey fake://a 0 1 1 5 corrupt_bio_byte 1 w "
    "300 0", "corrupt_bio_byte <value> '300': expected 0 to 255" },
  { "random-read-corrupt-missing",
    "0 8 flakey fake://a 0 1 1 2 error_reads random_read_corrupt",
    "random_read_corrupt is missing" },
};

/* ---- dust ----------------------------------------------------------------------- */

static void
test_dust_bad_blocks (void)
{
  struct ndm_md *md = h_md_new ("0 2048 dust fake://a 0 4096", NULL);
  g_autoptr (GString) out = g_string_new (NULL);
  char buf[4096];

  g_string_truncate (out, 0);
  ndm_md_status (md, out);
  g_assert_cmpstr (out->str, ==, "0 2048 dust fake://a bypass verbose\n");

  msg_ok (md, out, "message 0 addbadblock 3");
  msg_ok (md, out, "message 0 queryblock 3");
  g_assert_cmpstr (out->str, ==,
                   "dust_query_block: block 3 found in badblocklist\n");
  /* Bypassed until enabled. */
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 4096, 3 * 4096, 0), ==, 0);
  msg_ok (md, out, "message 0 enable");
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 4096, 3 * 4096, 0), ==, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, 3 * 4096 + 2048, 0), ==,
                   EIO);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 4096, 2 * 4096, 0), ==, 0);
  msg_ok (md, out, "message 0 countbadblocks");
  g_assert_cmpstr (out->str, ==, "countbadblocks: 1 badblock(s) found\n");
  /* A write "remaps" the block. */
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4096, 3 * 4096, 0), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 4096, 3 * 4096, 0), ==, 0);
  msg_ok (md, out, "message 0 queryblock 3");
  g_assert_cmpstr (out->str, ==,
                   "dust_query_block: block 3 not found in badblocklist\n");

  /* A write fail count: that many writes fail first. */
  msg_ok (md, out, "message 0 addbadblock 5 2");
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4096, 5 * 4096, 0), ==, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4096, 5 * 4096, 0), ==, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4096, 5 * 4096, 0), ==, 0);

  msg_ok (md, out, "message 0 addbadblock 7");
  msg_ok (md, out, "message 0 addbadblock 9");
  msg_ok (md, out, "message 0 listbadblocks");
  g_assert_cmpstr (out->str, ==, "7\n9\n");
  msg_ok (md, out, "message 0 removebadblock 9");
  msg_ok (md, out, "message 0 quiet");
  msg_ok (md, out, "message 0 clearbadblocks");
  g_assert_cmpstr (out->str, ==, "dust_clear_badblocks: badblocks cleared\n");
  msg_ok (md, out, "message 0 clearbadblocks");
  g_assert_cmpstr (out->str, ==, "dust_clear_badblocks: no badblocks found\n");
  msg_ok (md, out, "message 0 listbadblocks");
  g_assert_cmpstr (out->str, ==, "No blocks in badblocklist\n");
  g_string_truncate (out, 0);
  ndm_md_status (md, out);
  g_assert_cmpstr (out->str, ==,
                   "0 2048 dust fake://a fail_read_on_bad_block quiet\n");
  g_string_truncate (out, 0);
  ndm_md_table (md, out);
  g_assert_cmpstr (out->str, ==, "0 2048 dust fake://a 0 4096\n");
  h_md_free (md);
}

#define DUST "0 2048 dust fake://a 0 4096"
static const struct h_command_error dust_message_errors[] = {
  { "addbadblock-twice", DUST, "message 0 addbadblock 7\n"
    "message 0 addbadblock 7", "block 7 already in badblocklist" },
  { "removebadblock-not-found", DUST, "message 0 removebadblock 8",
    "block 8 not found" },
  { "addbadblock-out-of-range", DUST, "message 0 addbadblock 999999",
    "out of range" },
  { "queryblock-no-block", DUST, "message 0 queryblock",
    "requires an additional argument" },
  { "unknown", DUST, "message 0 sparkle", "unrecognized message 'sparkle'" },
};
#undef DUST

static const struct h_table_error dust_table_errors[] = {
  { "block-size-not-power-of-2", "0 8 dust fake://a 0 1000",
    "block size '1000': expected a power of 2 from 512" },
  { "two-arguments", "0 8 dust fake://a 0", "expected 3 arguments" },
};

/* ---- delay ------------------------------------------------------------------------ */

static void
test_delay_waits_and_counts (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 delay fake://a 0 0 fake://a 0 1500", NULL);
  g_autoptr (GString) out = g_string_new (NULL);
  char buf[4096];
  gint64 t0 = g_get_monotonic_time ();
  struct h_io *io = h_io_start (md, NDM_OP_WRITE, buf, 4096, 0, 0);

  /* The write waits out its delay, counted in status meanwhile; the
   * undelayed read goes through.
   */
  g_usleep (200 * 1000);
  ndm_md_status (md, out);
  g_assert_cmpstr (out->str, ==, "0 2048 delay 0 1 0\n");
  g_assert_false (h_io_done (io));
  g_assert_cmpuint (fake_submitted (fake_lookup ("a")), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 4096, 8192, 0), ==, 0);
  g_assert_cmpint (h_io_wait (io), ==, 0);
  /* A generous lower bound only: it cannot be faster than its delay. */
  g_assert_cmpint (g_get_monotonic_time () - t0, >=, 1500 * 1000);
  g_string_truncate (out, 0);
  ndm_md_status (md, out);
  g_assert_cmpstr (out->str, ==, "0 2048 delay 0 0 0\n");
  g_string_truncate (out, 0);
  ndm_md_table (md, out);
  g_assert_cmpstr (out->str, ==, "0 2048 delay fake://a 0 0 fake://a 0 1500\n");
  h_md_free (md);
}

static const struct h_table_error delay_table_errors[] = {
  { "two-arguments", "0 8 delay fake://a 0",
    "expected 3, 6 or 9 arguments" },
  { "delay-not-a-number", "0 8 delay fake://a 0 soon",
    "delay 'soon' is not a number" },
};

/* A fast zero refused whole (one piece cannot be fast) ends before any
 * bio starts: the delay target forgets the clone it queued, which the
 * request frees.  Five clones, so they live on the heap and ASan sees a
 * status that reads a freed one; and the next suspend would kick the
 * freed clone from delay's presuspend.  Found by tests/fuzz
 * (fuzz-control) and tests/soak.
 */
static void
test_delay_refused_fast_zero (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 delay fake://a 0 1000\n8 8 zero\n16 8 zero\n24 8 zero\n"
    "32 8 linear fake://b?fastzero=0 0", NULL);
  g_autoptr (GString) out = g_string_new (NULL);

  g_assert_cmpint (h_io (md, NDM_OP_ZERO, NULL, 40 * 512, 0,
                         NDM_REQ_FAST_ZERO), ==, ENOTSUP);
  ndm_md_status (md, out);
  g_assert_true (g_str_has_prefix (out->str, "0 8 delay 0 0 0\n"));
  g_assert_cmpuint (fake_submitted (fake_lookup ("a")), ==, 0);
  msg_ok (md, out, "suspend");
  msg_ok (md, out, "resume");
  h_md_free (md);
}

/* Poll the status line until it is want (the request runs on its own
 * thread); the test fails after 10 s.
 */
static void
wait_status (struct ndm_md *md, const char *want)
{
  g_autoptr (GString) out = g_string_new (NULL);
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;

  for (;;) {
    g_string_truncate (out, 0);
    ndm_md_status (md, out);
    if (strcmp (out->str, want) == 0)
      return;
    if (g_get_monotonic_time () > end)
      g_error ("status '%s', expected '%s'", out->str, want);
    g_usleep (2000);
  }
}

/* A suspend does not wait out delays (dm-delay flushes its list): an
 * hour's delay ends at the suspend, and delays again after resume.
 */
static void
test_delay_suspend_releases (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 delay fake://a 0 0 fake://a 0 3600000", NULL);
  g_autoptr (GString) out = g_string_new (NULL);
  char buf[4096];
  struct h_io *io;

  memset (buf, 'd', sizeof buf);
  io = h_io_start (md, NDM_OP_WRITE, buf, 4096, 0, 0);
  wait_status (md, "0 2048 delay 0 1 0\n");
  msg_ok (md, out, "suspend");
  g_assert_cmpint (h_io_wait (io), ==, 0);
  g_assert_cmpint (fake_data (fake_lookup ("a"))[4095], ==, 'd');
  wait_status (md, "0 2048 delay 0 0 0\n");
  msg_ok (md, out, "resume");

  io = h_io_start (md, NDM_OP_WRITE, buf, 4096, 4096, 0);
  wait_status (md, "0 2048 delay 0 1 0\n");
  g_assert_false (h_io_done (io));
  msg_ok (md, out, "suspend --noflush");
  g_assert_cmpint (h_io_wait (io), ==, 0);
  msg_ok (md, out, "resume");
  h_md_free (md);
}

/* R9: a flush reaches every device the line names, not only the flush
 * class's: with a separate write device (6 or 9 arguments) the writes
 * cached there would otherwise never be flushed (dm-delay sends it to
 * the flush device only).  Each device gets one flush.
 */
static void
test_delay_flush_every_device (void)
{
  struct ndm_md *md = h_md_new (
    "0 2048 delay fake://r 0 0 fake://w 0 0 fake://f 0 0", NULL);
  char buf[4096];

  memset (buf, 'w', sizeof buf);
  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 4096, 0, 0), ==, 0);
  g_assert_cmpint (h_io (md, NDM_OP_FLUSH, NULL, 0, 0, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (fake_lookup ("w"), NDM_OP_WRITE), ==, 1);
  g_assert_cmpuint (fake_count_op (fake_lookup ("w"), NDM_OP_FLUSH), ==, 1);
  g_assert_cmpuint (fake_count_op (fake_lookup ("f"), NDM_OP_FLUSH), ==, 1);
  g_assert_cmpuint (fake_count_op (fake_lookup ("r"), NDM_OP_FLUSH), ==, 1);
  h_md_free (md);

  /* Six arguments: reads from r, writes and flushes to w. */
  md = h_md_new ("0 2048 delay fake://r 0 0 fake://w 0 0", NULL);
  g_assert_cmpint (h_io (md, NDM_OP_FLUSH, NULL, 0, 0, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (fake_lookup ("w"), NDM_OP_FLUSH), ==, 1);
  g_assert_cmpuint (fake_count_op (fake_lookup ("r"), NDM_OP_FLUSH), ==, 1);
  h_md_free (md);

  /* One device named three times gets one flush; one without flush
   * (no cache) none.
   */
  md = h_md_new ("0 2048 delay fake://a 0 0 fake://b?flush=0&fua=0 0 0 "
                 "fake://a 0 0", NULL);
  g_assert_cmpint (h_io (md, NDM_OP_FLUSH, NULL, 0, 0, 0), ==, 0);
  g_assert_cmpuint (fake_count_op (fake_lookup ("a"), NDM_OP_FLUSH), ==, 1);
  g_assert_cmpuint (fake_count_op (fake_lookup ("b"), NDM_OP_FLUSH), ==, 0);
  h_md_free (md);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  H_ADD_CASES ("/fault/flakey/features-while-down", flakey_cases,
               test_flakey_features);
  g_test_add_func ("/fault/flakey/corrupt", test_flakey_corrupt);
  g_test_add_func ("/fault/flakey/table-and-status",
                   test_flakey_table_and_status);
  h_add_table_errors ("/fault/flakey/table/error", flakey_table_errors,
                      G_N_ELEMENTS (flakey_table_errors));
  g_test_add_func ("/fault/dust/bad-blocks", test_dust_bad_blocks);
  h_add_command_errors ("/fault/dust/message/error", dust_message_errors,
                        G_N_ELEMENTS (dust_message_errors));
  h_add_table_errors ("/fault/dust/table/error", dust_table_errors,
                      G_N_ELEMENTS (dust_table_errors));
  h_add_table_errors ("/fault/delay/table/error", delay_table_errors,
                      G_N_ELEMENTS (delay_table_errors));
  g_test_add_func ("/fault/delay/waits-and-counts",
                   test_delay_waits_and_counts);
  g_test_add_func ("/fault/delay/suspend-releases",
                   test_delay_suspend_releases);
  g_test_add_func ("/fault/delay/flush-every-device",
                   test_delay_flush_every_device);
  g_test_add_func ("/fault/delay/refused-fast-zero-forgotten",
                   test_delay_refused_fast_zero);
  return g_test_run ();
}
