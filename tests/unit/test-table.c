/* SPDX-License-Identifier: BSD-3-Clause */
/* Tables: every parse error names the line, quotes the word and says what
 * was expected; table/status lines are dmsetup's; capabilities are the
 * intersection over devices (R12); tuning keys are checked.
 */
#include "nbd-dm/target.h"
#include "harness.h"

static const struct h_table_error parse_errors[] = {
  { "empty", "", "the table is empty" },
  { "only-a-comment", "# only a comment\n\n", "the table is empty" },
  { "two-words", "0 8", "line 1: expected '<start> <length> <target> "
    "[args...]', got '0'" },
  { "start-not-a-number", "x 8 zero",
    "line 1: start 'x' is not a number of sectors" },
  { "length-negative", "0 -8 zero",
    "line 1: length '-8' is not a number of sectors" },
  { "length-hex", "0 0x10 zero",
    "line 1: length '0x10' is not a number of sectors" },
  { "length-zero", "0 0 zero",
    "line 1: length '0': expected at least 1 sector" },
  { "gap-before-first", "8 8 zero",
    "line 1: start 8 leaves a gap: expected 0" },
  { "gap-between", "0 8 zero\n16 8 zero",
    "line 2: start 16 leaves a gap: expected 8" },
  { "overlap", "0 8 zero\n4 8 zero",
    "line 2: start 4 overlaps: expected 8" },
  { "unknown-target", "0 8 zero; 8 8 lineer", "line 2: unknown target "
    "type 'lineer': expected one of linear, striped, zero, error" },
  { "zero-extra-word", "0 8 zero extra",
    "line 1: zero: takes no arguments, got 'extra'" },
  { "linear-one-argument", "0 8 linear fake://a", "line 1: linear: "
    "expected 2 arguments '<device> <offset>', got 1" },
  { "linear-offset-not-a-number", "0 8 linear fake://a abc",
    "line 1: linear: offset 'abc' is not a number of sectors" },
  { "linear-device-missing", "0 8 linear fake://missing 0",
    "line 1: linear: device fake://missing: connect: No such file or "
    "directory" },
  { "linear-device-too-small", "0 8 linear fake://a?size=2048 0",
    "line 1: linear: device fake://a?size=2048 is too small: 4 sectors, "
    "the target uses sectors 0 to 8" },
  { "linear-offset-past-device", "0 8 linear fake://a 2047",
    "is too small" },
  { "striped-one-argument", "0 256 striped 2", "line 1: striped: "
    "expected '<#stripes> <chunk size> [<device> <offset>]...', got 1 "
    "argument" },
  { "striped-count-not-a-number", "0 256 striped two 8 fake://a 0 fake://b 0",
    "line 1: striped: stripe count 'two' is not a number" },
  { "striped-count-zero", "0 256 striped 0 8",
    "stripe count '0': expected 1 to 1024" },
  { "striped-chunk-not-a-number",
    "0 256 striped 2 abc fake://a 0 fake://b 0",
    "line 1: striped: chunk size 'abc' is not a number of sectors" },
  { "striped-chunk-zero", "0 256 striped 2 0 fake://a 0 fake://b 0",
    "chunk size '0': expected 1 to" },
  { "striped-devices-missing", "0 256 striped 2 8 fake://a 0",
    "line 1: striped: 2 stripes need 4 '<device> <offset>' words after "
    "the chunk size, got 2" },
  { "striped-length-not-multiple",
    "0 1000 striped 2 128 fake://a 0 fake://b 0",
    "line 1: striped: length 1000 is not a multiple of chunk size x "
    "stripes (128 x 2 = 256 sectors)" },
  { "striped-offset-not-a-number", "0 256 striped 2 8 fake://a 0 fake://b x",
    "line 1: striped: offset 'x' is not a number of sectors" },
  { "striped-device-too-small",
    "0 4096 striped 2 8 fake://a 0 fake://b?size=512K 0",
    "line 1: striped: device fake://b?size=512K is too small: 1024 "
    "sectors, the target uses sectors 0 to 2048" },
  { "striped-offset-past-device",
    "0 4096 striped 2 8 fake://a 0 fake://b 1000000",
    "the target uses sectors 1000000 to 1002048" },
  { "overlap-after-comment", "0 8 zero\n# comment\n8 8 zero\n8 8 zero",
    "line 4: start 8 overlaps" },
  /* error takes no arguments, as zero (docs/targets/error.md). */
  { "error-extra-word", "0 8 error extra",
    "line 1: error: takes no arguments, got 'extra'" },
  { "error-zoned-form", "0 8 error fake://a 0", "line 1: error: takes no "
    "arguments, got 'fake://a' (dm's '<device> <offset>' form is for "
    "zoned devices" },
#define MIRROR_LEGS "2 fake://a 0 fake://b 0"
  /* docs/targets/mirror.md, "Table line": one row per rule. */
  { "mirror-log-type", "0 16 mirror mem 1 8 " MIRROR_LEGS,
    "line 1: mirror: unknown log type 'mem': expected core or disk" },
  { "mirror-log-args", "0 16 mirror core 3 8 sync x " MIRROR_LEGS,
    "line 1: mirror: #log args '3' for core: expected 1 or 2" },
  { "mirror-region-not-power-of-two", "0 16 mirror core 1 1000 " MIRROR_LEGS,
    "line 1: mirror: region size '1000' is not a power of two" },
  { "mirror-region-too-small", "0 16 mirror core 1 4 " MIRROR_LEGS,
    "line 1: mirror: region size '4': expected at least 8 sectors" },
  { "mirror-sync-word", "0 16 mirror core 2 8 fast " MIRROR_LEGS,
    "line 1: mirror: log argument 'fast': expected sync or nosync" },
  { "mirror-one-leg", "0 16 mirror core 1 8 1 fake://a 0",
    "line 1: mirror: #legs '1': expected 2 to 32" },
  { "mirror-33-legs", "0 16 mirror core 1 8 33 fake://a 0",
    "line 1: mirror: #legs '33': expected 2 to 32" },
  { "mirror-no-legs", "0 16 mirror core 1 8",
    "line 1: mirror: the table ends where #legs was expected" },
  { "mirror-leg-words", "0 16 mirror core 1 8 2 fake://a 0 fake://b",
    "line 1: mirror: 2 legs need 4 '<leg> <offset>' words, got 3" },
  { "mirror-leg-twice", "0 16 mirror core 1 8 2 fake://a 0 fake://a 8",
    "line 1: mirror: leg fake://a is listed twice: expected each leg once" },
  { "mirror-log-is-leg", "0 16 mirror disk 2 fake://l 8 2 fake://l 0 "
    "fake://b 0", "line 1: mirror: log device fake://l is also a leg" },
  { "mirror-leg-offset", "0 16 mirror core 1 8 2 fake://a x fake://b 0",
    "line 1: mirror: leg offset 'x' is not a number of sectors" },
  { "mirror-features-count", "0 16 mirror core 1 8 " MIRROR_LEGS
    " 2 handle_errors", "line 1: mirror: #features '2' is more than the 1 "
    "word after it" },
  { "mirror-features-left-over", "0 16 mirror core 1 8 " MIRROR_LEGS
    " 1 handle_errors keep_log", "line 1: mirror: unexpected 'keep_log' "
    "after 1 feature words" },
  { "mirror-unknown-feature", "0 16 mirror core 1 8 " MIRROR_LEGS
    " 1 block_on_error", "line 1: mirror: unknown feature 'block_on_error': "
    "expected handle_errors, keep_log or read_balance <policy>" },
  { "mirror-keep-log-alone", "0 16 mirror core 1 8 " MIRROR_LEGS
    " 1 keep_log", "line 1: mirror: keep_log needs handle_errors" },
  { "mirror-read-balance-policy", "0 16 mirror core 1 8 " MIRROR_LEGS
    " 2 read_balance fastest", "line 1: mirror: read_balance 'fastest': "
    "expected default_leg, round-robin or queue-length" },
  { "mirror-read-balance-no-value", "0 16 mirror core 1 8 " MIRROR_LEGS
    " 2 handle_errors read_balance", "line 1: mirror: feature read_balance "
    "has no value within #features" },
  { "mirror-log-shared", "0 16 mirror disk 2 fake://l 8 " MIRROR_LEGS "\n"
    "16 16 mirror disk 2 fake://l 8 2 fake://c 0 fake://d 0",
    "line 2: mirror: device fake://l holds another target's "
    "metadata already: each log needs a device of its own" },
  /* A leg of another size would be refused by the checker for good. */
  { "mirror-legs-of-two-sizes", "0 16 mirror core 1 8 2 fake://a 0 "
    "fake://b?size=2M 0", "line 1: mirror: leg fake://b?size=2M has 2097152 "
    "bytes, leg fake://a 1048576: expected legs of one size" },
  { "mirror-leg-offset-unaligned", "0 16 mirror core 1 16 2 fake://a 0 "
    "fake://b?min=8192 1", "line 1: mirror: leg fake://b?min=8192 offset '1' "
    "is not a multiple of its minimum block of 8192 bytes" },
  { "mirror-length-unaligned", "0 24 mirror core 1 16 2 fake://a 0 "
    "fake://b?min=8192 0", "line 1: mirror: length 24 is not a multiple of "
    "leg fake://b?min=8192's minimum block of 8192 bytes" },
  { "mirror-region-below-min-block", "0 16 mirror core 1 8 2 fake://a 0 "
    "fake://b?min=8192 0", "line 1: mirror: region size '8' is below leg "
    "fake://b?min=8192's minimum block of 8192 bytes" },
  { "mirror-no-leg-answers", "0 16 mirror core 1 8 2 fake://missing-a 0 "
    "fake://missing-b 0", "line 1: mirror: no leg can be used: at least one "
    "must answer at load" },
#undef MIRROR_LEGS
};

/* Numbers that do not fit are refused at load as "too large", in the
 * shared helpers, for every target: NBD sizes are int64_t, so a sector
 * count ends below 2^63 bytes (NDM_MAX_SECTORS = 2^54 - 1).  Before, an
 * offset of 2^55 sectors wrapped to byte 0 when shifted, passed the
 * device range check and sent I/O to the start of the device.
 */
#define TOO_BIG_SECTORS "is too large: expected at most 18014398509481983 " \
  "sectors (NBD sizes are below 2^63 bytes)"
static const struct h_table_error too_large_errors[] = {
  /* 2^55 sectors: 2^64 bytes, 0 once wrapped. */
  { "linear-offset-2^55", "0 8 linear fake://a 36028797018963968",
    "line 1: linear: offset '36028797018963968' " TOO_BIG_SECTORS },
  { "linear-offset-2^54", "0 8 linear fake://a 18014398509481984",
    "line 1: linear: offset '18014398509481984' " TOO_BIG_SECTORS },
  { "linear-offset-2^64-1", "0 8 linear fake://a 18446744073709551615",
    "line 1: linear: offset '18446744073709551615' " TOO_BIG_SECTORS },
  { "linear-offset-10^23", "0 8 linear fake://a 100000000000000000000000",
    "line 1: linear: offset '100000000000000000000000' is too large" },
  { "striped-offset-2^55",
    "0 16 striped 2 8 fake://a 0 fake://b 36028797018963968",
    "line 1: striped: offset '36028797018963968' " TOO_BIG_SECTORS },
  { "striped-count-10^23",
    "0 16 striped 100000000000000000000000 8 fake://a 0",
    "line 1: striped: stripe count '100000000000000000000000' is too "
    "large: expected at most 18446744073709551615" },
  { "flakey-offset-2^55", "0 8 flakey fake://a 36028797018963968 1 1",
    "line 1: flakey: offset '36028797018963968' " TOO_BIG_SECTORS },
  { "flakey-up-interval-10^23",
    "0 8 flakey fake://a 0 100000000000000000000000 1",
    "line 1: flakey: up interval '100000000000000000000000' is too "
    "large" },
  { "delay-offset-2^55", "0 8 delay fake://a 36028797018963968 0",
    "line 1: delay: offset '36028797018963968' " TOO_BIG_SECTORS },
  { "delay-write-offset-2^55",
    "0 8 delay fake://a 0 0 fake://b 36028797018963968 0",
    "line 1: delay: offset '36028797018963968' " TOO_BIG_SECTORS },
  { "dust-offset-2^55", "0 8 dust fake://a 36028797018963968 512",
    "line 1: dust: offset '36028797018963968' " TOO_BIG_SECTORS },
  /* The table: a device of 2^63 bytes or more has no NBD size. */
  { "length-2^54", "0 18014398509481984 zero",
    "line 1: length '18014398509481984' " TOO_BIG_SECTORS },
  { "start-2^64-1", "18446744073709551615 8 zero",
    "line 1: start '18446744073709551615' " TOO_BIG_SECTORS },
  { "device-end-2^54", "0 8 zero\n8 18014398509481976 zero",
    "line 2: length '18014398509481976' is too large: the device would "
    "end at sector 18014398509481984, past 18014398509481983 (NBD sizes "
    "are below 2^63 bytes)" },
  { "device-end-2^54-two-lines",
    "0 9007199254740992 zero; 9007199254740992 9007199254740992 error",
    "line 2: length '9007199254740992' is too large" },
  /* Not digits stays "not a number", whatever its length. */
  { "long-not-a-number", "0 8 linear fake://a 1000000000000000000000x",
    "line 1: linear: offset '1000000000000000000000x' is not a number "
    "of sectors" },
  /* An offset at the limit is a number, checked against the device. */
  { "linear-offset-at-limit", "0 8 linear fake://a 18014398509481983",
    "line 1: linear: device fake://a is too small: 2048 sectors, the "
    "target uses sectors 18014398509481983 to 18014398509481991" },
};
#undef TOO_BIG_SECTORS

/* The largest device NBD can size, 2^63 - 512 bytes, loads. */
static void
test_largest_device_loads (void)
{
  struct ndm_md *md;

  md = h_md_new ("0 9007199254740992 zero\n"
                 "9007199254740992 9007199254740991 error", NULL);
  g_assert_cmpuint (ndm_md_get_size (md), ==, (uint64_t) INT64_MAX - 511);
  h_md_free (md);
}

/* A target whose ctr fails without saying why. */
static int
mute_ctr (struct ndm_target *ti, unsigned argc, char **argv, GError **err)
{
  return -1;
}

static const struct ndm_target_type mute_target = {
  .name = "mute", .version = { 1, 0, 0 }, .ctr = mute_ctr,
};

/* A ctr returning -1 with no error gets a message naming the line and the
 * target, never a NULL dereference (a bad reload reaching a live server
 * killed it so), and a critical, so tests catch the target that forgot.
 */
static void
test_ctr_without_error (void)
{
  static const struct ndm_target_type *const targets[] = {
    &mute_target, NULL,
  };
  struct ndm_md *md = h_md_new_empty (targets);
  GError *err = NULL;

  g_test_expect_message (NULL, G_LOG_LEVEL_CRITICAL,
                         "target mute failed without setting its error "
                         "(line 2)");
  g_assert_cmpint (ndm_md_load (md, "0 8 zero\n8 8 mute a b", &err), ==,
                   -1);
  g_test_assert_expected_messages ();
  g_assert_nonnull (err);
  g_assert_cmpstr (err->message, ==, "line 2: mute: the target refused its "
                   "arguments without saying why");
  g_error_free (err);
  h_md_free (md);
}

/* Load "0 16 <words>": true if it loads; if not, the message must be the
 * target's own (the ctr's), never the table's generic one.
 */
static bool
load_or_refuse (char **words)
{
  g_autofree char *args = g_strjoinv (" ", words);
  g_autofree char *table = g_strdup_printf ("0 16 %s", args);
  g_autofree char *prefix = g_strdup_printf ("line 1: %s: ", words[0]);
  struct ndm_md *md = h_md_new_empty (NULL);
  GError *err = NULL;
  bool loaded = ndm_md_load (md, table, &err) == 0;

  if (!loaded) {
    if (!g_str_has_prefix (err->message, prefix) ||
        strstr (err->message, "without saying why") != NULL)
      g_error ("table '%s': error '%s' is not the target's", table,
               err->message);
    g_error_free (err);
  }
  h_md_free (md);
  return loaded;
}

/* Every built-in target, given any leading part of a good line, or a good
 * line with one number changed (one more, one less, 0, 1, 2^64 - 1,
 * 10^23), loads or fails with its own message: each count word is
 * checked against the words left after it, and a failing ctr says why
 * (else the critical of test_ctr_without_error aborts this test).  Under
 * ASan this also checks that no ctr reads past its words.  The leading
 * parts include the tables the fuzzer found ('multipath 1',
 * 'multipath 2 no_path_retry').
 */
static const struct good_line { const char *name, *line; } good_lines[] = {
  { "linear", "linear fake://a 8" },
  { "striped", "striped 2 8 fake://a 0 fake://b 16" },
  { "zero", "zero" },
  { "error", "error" },
  { "flakey", "flakey fake://a 0 1 1" },
  { "flakey-features", "flakey fake://a 8 0 5 8 drop_writes "
    "corrupt_bio_byte 32 r 1 0 random_seed 3" },
  { "flakey-random-read-corrupt",
    "flakey fake://a 0 1 1 2 random_read_corrupt 1000" },
  { "delay", "delay fake://a 0 10" },
  { "delay-write-device", "delay fake://a 0 10 fake://b 0 20" },
  { "delay-flush-device",
    "delay fake://a 0 10 fake://b 0 20 fake://a 16 30" },
  { "dust", "dust fake://a 0 4096" },
  { "multipath", "multipath 0 0 1 1 round-robin 0 1 0 fake://a" },
  { "multipath-queue-if-no-path", "multipath 1 queue_if_no_path 0 1 1 "
    "round-robin 0 2 1 fake://a 1 fake://b 2" },
  { "multipath-no-path-retry", "multipath 2 no_path_retry 3 0 2 2 "
    "queue-length 0 1 1 fake://a 1 service-time 0 1 2 fake://b 1 10" },
  { "multipath-three-features", "multipath 3 no_path_retry queue "
    "queue_if_no_path 0 1 1 service-time 0 2 2 fake://a 1 10 fake://b 2 0" },
  { "mirror", "mirror core 1 8 2 fake://a 0 fake://b 0" },
  { "mirror-features", "mirror core 2 8 nosync 3 fake://a 0 fake://b 8 "
    "fake://c 16 4 handle_errors keep_log read_balance round-robin" },
};

/* A built-in target, given any leading part of a good line, or a good
 * line with one number changed (one more, one less, 0, 1, 2^64 - 1,
 * 10^23), loads or fails with its own message: each count word is
 * checked against the words left after it, and a failing ctr says why
 * (else the critical of test_ctr_without_error aborts this test).  Under
 * ASan this also checks that no ctr reads past its words.  The leading
 * parts include the tables the fuzzer found ('multipath 1',
 * 'multipath 2 no_path_retry').  One case per line of good_lines.
 */
static void
test_target_argument_counts (gconstpointer data)
{
  const char *good = ((const struct good_line *) data)->line;
  g_auto (GStrv) w = g_strsplit (good, " ", -1);
  guint n = g_strv_length (w), len, j;

  if (!load_or_refuse (w))
    g_error ("good line '%s' does not load", good);
  for (len = 1; len < n; len++) {
    g_autofree char **v = g_new0 (char *, len + 1);  /* w's words */

    memcpy (v, w, len * sizeof *v);
    load_or_refuse (v);
  }
  for (j = 1; j < n; j++) {
    guint64 x;
    char *other[6];
    unsigned k;

    if (!g_ascii_string_to_unsigned (w[j], 10, 0, G_MAXUINT64, &x, NULL))
      continue;
    other[0] = g_strdup_printf ("%" G_GUINT64_FORMAT, x + 1);
    other[1] = g_strdup_printf ("%" G_GUINT64_FORMAT, x - (x > 0));
    other[2] = g_strdup ("0");
    other[3] = g_strdup ("1");
    other[4] = g_strdup ("18446744073709551615");
    other[5] = g_strdup ("100000000000000000000000");
    for (k = 0; k < G_N_ELEMENTS (other); k++) {
      g_auto (GStrv) v = g_strdupv (w);

      g_free (v[j]);
      v[j] = other[k];        /* v owns it now */
      load_or_refuse (v);
    }
  }
}

/* A bad table changes nothing, and frees what it opened. */
static void
test_bad_table_leaves_live_one (void)
{
  struct ndm_md *md = h_md_new ("0 8 linear fake://a 0", NULL);
  GError *err = NULL;

  g_assert_cmpint (ndm_md_load (md, "0 8 linear fake://b 0\n8 8 bogus",
                                &err), ==, -1);
  g_assert_nonnull (strstr (err->message, "line 2: unknown target"));
  g_error_free (err);
  g_assert_cmpuint (ndm_md_get_size (md), ==, 4096);
  h_md_free (md);
}

static void
test_table_and_status_lines (void)
{
  struct ndm_md *md = h_md_new (
    "# a comment\n"
    "0   256 striped 2 8 fake://a 0 fake://b 16  # trailing comment\n"
    "256 8   linear fake://a 512;264 8 zero;272 8 error\n", NULL);
  g_autoptr (GString) t = g_string_new (NULL);
  g_autoptr (GString) s = g_string_new (NULL);
  char buf[512];

  ndm_md_table (md, t);
  g_assert_cmpstr (t->str, ==,
                   "0 256 striped 2 8 fake://a 0 fake://b 16\n"
                   "256 8 linear fake://a 512\n"
                   "264 8 zero\n"
                   "272 8 error\n");
  ndm_md_status (md, s);
  g_assert_cmpstr (s->str, ==,
                   "0 256 striped 2 fake://a fake://b 1 AA\n"
                   "256 8 linear\n"
                   "264 8 zero\n"
                   "272 8 error\n");
  g_assert_cmpuint (ndm_md_get_size (md), ==, 280 * 512);

  /* A failed bio on stripe 1 marks it 'D' (dm-stripe's error count). */
  fake_fail_range (fake_lookup ("b"), 0, 1 << 20, EIO);
  g_assert_cmpint (h_io (md, NDM_OP_READ, buf, 512, 4096, 0), ==, EIO);
  g_string_truncate (s, 0);
  ndm_md_status (md, s);
  g_assert_nonnull (strstr (s->str, "0 256 striped 2 fake://a fake://b 1 AD"));
  h_md_free (md);
}

/* One URI used twice is one device (dm_get_device). */
static void
test_same_uri_one_device (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 linear fake://a 0\n8 8 linear fake://a 8", NULL);
  char buf[8192];

  g_assert_cmpint (h_io (md, NDM_OP_WRITE, buf, 8192, 0, 0), ==, 0);
  g_assert_cmpuint (fake_submitted (fake_lookup ("a")), ==, 2);
  h_md_free (md);
}

/* R12: advertise only what every device can do, but flush (R9). */
static void
test_caps_intersection (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 linear fake://a?pref=8192&min=512 0\n"
    "8 8 linear fake://b?trim=0&fua=0&multiconn=0&fastzero=0&cache=0 0\n"
    "16 8 zero\n24 8 error", NULL);
  struct ndm_caps c;

  ndm_md_get_caps (md, &c);
  g_assert_true (c.write);
  g_assert_true (c.flush);
  g_assert_true (c.fua);            /* b emulates with flush */
  g_assert_false (c.trim);
  g_assert_true (c.fast_zero);      /* always: ENOTSUP where not fast */
  g_assert_false (c.cache);
  g_assert_false (c.multi_conn);
  g_assert_cmpuint (c.block_min, ==, 1);
  g_assert_cmpuint (c.block_pref, ==, 8192);
  g_assert_cmpuint (c.block_max, ==, 32 << 20);
  h_md_free (md);

  md = h_md_new ("0 8 linear fake://a?fua=0&flush=0&ro=1 0", NULL);
  ndm_md_get_caps (md, &c);
  g_assert_false (c.write);
  g_assert_false (c.flush);
  g_assert_false (c.fua);
  g_assert_false (c.fast_zero);
  g_assert_true (c.multi_conn);
  h_md_free (md);

  /* No devices at all: everything is trivially possible, and there is
   * nothing to flush.
   */
  md = h_md_new ("0 8 zero", NULL);
  ndm_md_get_caps (md, &c);
  g_assert_true (c.trim && c.fast_zero && c.multi_conn && c.cache);
  g_assert_false (c.flush || c.fua);
  h_md_free (md);
}

/* R12: a device only a target's metadata lives on (a mirror's disk log)
 * does not limit what the mapped device advertises; the same device
 * used for data by another target does.
 */
static void
test_caps_metadata_device (void)
{
  static const char log_only[] =
    "0 2048 mirror disk 2 fake://l?trim=0&cache=0&multiconn=0&pref=65536 "
    "128 2 fake://a 0 fake://b 0";
  g_autofree char *log_and_data = g_strdup_printf (
    "%s\n2048 8 linear fake://l?trim=0&cache=0&multiconn=0&pref=65536 "
    "1024", log_only);
  struct ndm_md *md = h_md_new (log_only, NULL);
  struct ndm_caps c;

  ndm_md_get_caps (md, &c);
  g_assert_true (c.trim && c.cache && c.multi_conn);
  g_assert_cmpuint (c.block_pref, ==, 4096);
  h_md_free (md);

  md = h_md_new (log_and_data, NULL);
  ndm_md_get_caps (md, &c);
  g_assert_false (c.trim || c.cache || c.multi_conn);
  g_assert_cmpuint (c.block_pref, ==, 65536);
  h_md_free (md);
}

/* R9, R12: a device without flush has no volatile cache and takes
 * nothing from the others: one device that can flush is enough to
 * advertise flush, and FUA with it (native, emulated by write+flush, or
 * a plain write to the device without a cache).
 */
static void
test_caps_flush_any_device (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 linear fake://a 0\n"
    "8 8 linear fake://b?flush=0&fua=0 0\n"
    "16 8 linear fake://c?fua=0 0", NULL);
  struct ndm_caps c;

  ndm_md_get_caps (md, &c);
  g_assert_true (c.flush);
  g_assert_true (c.fua);
  h_md_free (md);

  /* b first: the order of the devices does not matter. */
  md = h_md_new ("0 8 linear fake://b?flush=0&fua=0 0\n"
                 "8 8 linear fake://a?fua=0 0", NULL);
  ndm_md_get_caps (md, &c);
  g_assert_true (c.flush && c.fua);
  h_md_free (md);

  md = h_md_new ("0 8 linear fake://a?flush=0&fua=0 0\n"
                 "8 8 linear fake://b?flush=0&fua=0 0", NULL);
  ndm_md_get_caps (md, &c);
  g_assert_false (c.flush || c.fua);
  h_md_free (md);
}

static void
test_config_keys (void)
{
  struct ndm_config cfg;
  GError *err = NULL;

  h_config_init (&cfg);
  g_assert_cmpint (ndm_config_set (&cfg, "max-inflight", "64M", &err), ==, 1);
  g_assert_cmpuint (cfg.max_inflight, ==, 64 << 20);
  g_assert_cmpint (ndm_config_set (&cfg, "max-bounce", "4096", &err), ==, 1);
  g_assert_cmpuint (cfg.max_bounce, ==, 4096);
  g_assert_cmpint (ndm_config_set (&cfg, "connections", "4", &err), ==, 1);
  g_assert_cmpuint (cfg.connections, ==, 4);
  g_assert_cmpint (ndm_config_set (&cfg, "connect-timeout", "3", &err), ==,
                   1);
  g_assert_cmpuint (cfg.connect_timeout_ms, ==, 3000);
  g_assert_cmpint (ndm_config_set (&cfg, "structured-replies", "off", &err),
                   ==, 1);
  g_assert_false (cfg.structured_replies);
  g_assert_cmpint (ndm_config_set (&cfg, "table", "x", &err), ==, 0);

  g_assert_cmpint (ndm_config_set (&cfg, "max-inflight", "lots", &err), ==,
                   -1);
  g_assert_cmpstr (err->message, ==, "max-inflight: 'lots' is not a size: "
                   "expected a positive number of bytes with an optional "
                   "suffix (64k, 256M, 1T)");
  g_clear_error (&err);
  g_assert_cmpint (ndm_config_set (&cfg, "max-bounce", "-1", &err), ==, -1);
  g_clear_error (&err);
  g_assert_cmpint (ndm_config_set (&cfg, "connections", "0", &err), ==, -1);
  g_assert_cmpstr (err->message, ==,
                   "connections: '0' is not a number from 1 to 64");
  g_clear_error (&err);
  g_assert_cmpint (ndm_config_set (&cfg, "structured-replies", "maybe",
                                   &err), ==, -1);
  g_clear_error (&err);
}

static int quark_taken;         /* relaxed: orders nothing on purpose */

static gpointer
quark_first_use (gpointer unused)
{
  GQuark q = NDM_ERROR;

  __atomic_store_n (&quark_taken, 1, __ATOMIC_RELAXED);
  return GUINT_TO_POINTER (q);
}

/* Two devices' threads can make the first errors of a process at once,
 * with nothing ordering them.  The second use must not race with the
 * first's caching of the quark: under TSan the subprocess would end with
 * a report.  The subprocess is the process's first use of the quark.
 */
static void
test_error_quark_first_use (void)
{
  if (g_test_subprocess ()) {
    GThread *t = g_thread_new ("quark", quark_first_use, NULL);
    GQuark q;

    while (__atomic_load_n (&quark_taken, __ATOMIC_RELAXED) == 0)
      g_thread_yield ();
    q = NDM_ERROR;
    g_assert_cmpuint (q, ==, GPOINTER_TO_UINT (g_thread_join (t)));
    g_assert_cmpstr (g_quark_to_string (q), ==, "ndm-error-quark");
    return;
  }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  h_add_table_errors ("/table/parse/error", parse_errors,
                      G_N_ELEMENTS (parse_errors));
  h_add_table_errors ("/table/parse/too-large", too_large_errors,
                      G_N_ELEMENTS (too_large_errors));
  g_test_add_func ("/table/parse/largest-device-loads",
                   test_largest_device_loads);
  g_test_add_func ("/table/parse/ctr-without-error",
                   test_ctr_without_error);
  H_ADD_CASES ("/table/parse/argument-counts", good_lines,
               test_target_argument_counts);
  g_test_add_func ("/table/parse/bad-table-changes-nothing",
                   test_bad_table_leaves_live_one);
  g_test_add_func ("/table/format/table-and-status-lines",
                   test_table_and_status_lines);
  g_test_add_func ("/table/devices/same-uri-one-device",
                   test_same_uri_one_device);
  g_test_add_func ("/table/r12/caps-intersection", test_caps_intersection);
  g_test_add_func ("/table/r12/caps-metadata-device",
                   test_caps_metadata_device);
  g_test_add_func ("/table/r12/flush-if-any-device-can",
                   test_caps_flush_any_device);
  g_test_add_func ("/table/config/keys", test_config_keys);
  g_test_add_func ("/table/error-quark/first-use-from-two-threads",
                   test_error_quark_first_use);
  return g_test_run ();
}
