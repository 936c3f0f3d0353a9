/* SPDX-License-Identifier: BSD-3-Clause */
/* ndm_target_io, a target's own I/O (dm-io's part: a disk log's blocks,
 * a resync's copies, a read repair), against the fake device.
 */
#include "core.h"
#include "harness.h"
#include "nbd-dm/control.h"

#define K4 4096

/* A mapped device whose first target names fakes a, b and c. */
static struct ndm_md *
three_devices (const char *query)
{
  g_autofree char *table = g_strdup_printf (
    "0 8 linear fake://a?size=1M%s 0\n"
    "8 8 linear fake://b?size=1M%s 0\n"
    "16 8 linear fake://c?size=1M%s 0", query, query, query);

  return h_md_new (table, NULL);
}

/* Fakes a, b and c at offset. */
static void
fill_where (struct ndm_md *md, struct ndm_io_where *w, uint64_t offset)
{
  static const char *const names[] = { "a", "b", "c" };
  unsigned i;

  for (i = 0; i < 3; i++)
    w[i] = (struct ndm_io_where) { h_device_of (md, names[i]), offset };
}

/* One write to fakes a, b and c, the same len bytes at offset. */
struct io_case {
  struct ndm_md *md;
  struct ndm_io_where w[3];
  char *buf;
  uint64_t len;
  uint64_t failed;
  int err;
};

static void
io_case_init (struct io_case *c, const char *query, uint64_t offset,
              uint64_t len)
{
  c->md = three_devices (query);
  fill_where (c->md, c->w, offset);
  c->len = len;
  c->buf = g_malloc (len);
  h_fill (c->buf, len, offset + len);
  c->failed = ~UINT64_C (0);
  c->err = 0;
}

static int
io_case_write (struct io_case *c)
{
  return ndm_target_io (h_first_target (c->md), NDM_OP_WRITE, 0, c->w, 3,
                        c->buf, c->len, &c->failed, &c->err);
}

/* The fake named name has the case's bytes at its offset. */
static void
io_case_assert_on (struct io_case *c, const char *name)
{
  g_assert_cmpmem (fake_data (fake_lookup (name)) + c->w[0].offset, c->len,
                   c->buf, c->len);
}

static void
io_case_fini (struct io_case *c)
{
  h_md_free (c->md);
  g_free (c->buf);
}

/* A write reaches every device at its offset; a read reads the first. */
static void
test_write_every_device_read_first (void)
{
  struct io_case c;
  g_autofree char *back = g_malloc0 (K4);
  int err = 0;

  io_case_init (&c, "", 8192, 3 * K4);
  g_assert_cmpint (io_case_write (&c), ==, 0);
  g_assert_cmpuint (c.failed, ==, 0);
  io_case_assert_on (&c, "a");
  io_case_assert_on (&c, "b");
  io_case_assert_on (&c, "c");

  memset (fake_data (fake_lookup ("a")) + 8192, 'a', K4);
  g_assert_cmpint (ndm_target_io (h_first_target (c.md), NDM_OP_READ, 0, c.w,
                                  3, back, K4, NULL, &err), ==, 0);
  g_assert_cmpuint (fake_count_op (fake_lookup ("b"), NDM_OP_READ), ==, 0);
  g_assert_cmpuint (fake_count_op (fake_lookup ("c"), NDM_OP_READ), ==, 0);
  g_assert_cmpint (back[0], ==, 'a');
  io_case_fini (&c);
}

/* A device that fails is named in the mask; the others are written. */
static void
test_failed_mask (void)
{
  struct io_case c;

  io_case_init (&c, "", 0, K4);
  fake_fail_at (fake_lookup ("b"), 0, EIO);
  g_assert_cmpint (io_case_write (&c), ==, -1);
  g_assert_cmpuint (c.failed, ==, 2);
  g_assert_cmpint (c.err, ==, EIO);
  io_case_assert_on (&c, "a");
  io_case_assert_on (&c, "c");
  io_case_fini (&c);
}

/* A device that fails to start (R6) cancels the bios after it; those of
 * the other devices run all the same: background I/O's devices do not
 * depend on each other.
 */
static void
test_start_failure_runs_the_others (void)
{
  struct io_case c;

  io_case_init (&c, "", 0, K4);
  fake_fail_submit_at (fake_lookup ("a"), 0, ENOSPC);
  g_assert_cmpint (io_case_write (&c), ==, -1);
  g_assert_cmpuint (c.failed, ==, 1);
  g_assert_cmpint (c.err, ==, ENOSPC);
  io_case_assert_on (&c, "b");
  io_case_assert_on (&c, "c");
  io_case_fini (&c);
}

struct io_thread {
  struct ndm_target *ti;
  struct ndm_io_where *w;
  char *buf;
  uint64_t failed;
  int r, err;
};

static gpointer
io_thread (gpointer data)
{
  struct io_thread *t = data;

  t->r = ndm_target_io (t->ti, NDM_OP_WRITE, 0, t->w, 3, t->buf, K4,
                        &t->failed, &t->err);
  return NULL;
}

/* The error is the first failed device's by index, whatever the order
 * the failures arrived in.
 */
static void
test_first_error_by_index (void)
{
  struct ndm_md *md = three_devices ("&mode=held");
  struct ndm_io_where w[3];
  g_autofree char *buf = g_malloc0 (K4);
  struct io_thread t = { .w = w, .buf = buf };
  GThread *th;

  fill_where (md, w, 0);
  t.ti = h_first_target (md);
  th = g_thread_new ("io", io_thread, &t);
  fake_wait_pending (fake_lookup ("c"), 1);
  fake_complete (fake_lookup ("c"), 0, EIO);
  fake_wait_pending (fake_lookup ("b"), 1);
  fake_complete (fake_lookup ("b"), 0, ENOSPC);
  fake_wait_pending (fake_lookup ("a"), 1);
  fake_complete (fake_lookup ("a"), 0, 0);
  g_thread_join (th);
  g_assert_cmpint (t.r, ==, -1);
  g_assert_cmpuint (t.failed, ==, 6);
  g_assert_cmpint (t.err, ==, ENOSPC);
  h_md_free (md);
}

/* Split to the device's maximum and bounced where unaligned (R7). */
static void
test_split_and_rmw (void)
{
  struct io_case c;

  io_case_init (&c, "&min=512&max=4096", 100, 10000);
  g_assert_cmpint (io_case_write (&c), ==, 0);
  io_case_assert_on (&c, "a");
  io_case_assert_on (&c, "c");
  g_assert_cmpuint (fake_submitted (fake_lookup ("b")), >=, 4);
  io_case_fini (&c);
}

/* A flush reaches every device that can flush, once each. */
static void
test_flush_every_device (void)
{
  struct ndm_md *md = h_md_new (
    "0 8 linear fake://a?size=1M 0\n"
    "8 8 linear fake://b?size=1M&flush=0 0\n"
    "16 8 linear fake://c?size=1M 0", NULL);
  struct ndm_io_where w[3];
  int err = 0;

  fill_where (md, w, 0);
  g_assert_cmpint (ndm_target_io (h_first_target (md), NDM_OP_FLUSH, 0, w, 3,
                                  NULL, 0, NULL, &err), ==, 0);
  g_assert_cmpuint (fake_count_op (fake_lookup ("a"), NDM_OP_FLUSH), ==, 1);
  g_assert_cmpuint (fake_count_op (fake_lookup ("b"), NDM_OP_FLUSH), ==, 0);
  g_assert_cmpuint (fake_count_op (fake_lookup ("c"), NDM_OP_FLUSH), ==, 1);
  h_md_free (md);
}

/* No suspend gate: a target's own I/O runs while the device is
 * suspended (the target stops it in presuspend if it must).
 */
static void
test_runs_while_suspended (void)
{
  struct io_case c;
  g_autoptr (GString) out = g_string_new (NULL);
  char *suspend[] = { "suspend" };
  GError *gerr = NULL;

  io_case_init (&c, "", 0, K4);
  g_assert_cmpint (ndm_md_command (c.md, 1, suspend, out, &gerr), ==, 0);
  g_assert_cmpint (io_case_write (&c), ==, 0);
  io_case_assert_on (&c, "b");
  io_case_fini (&c);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/io/write-every-device-read-first",
                   test_write_every_device_read_first);
  g_test_add_func ("/io/failed-mask", test_failed_mask);
  g_test_add_func ("/io/r6/start-failure-runs-the-others",
                   test_start_failure_runs_the_others);
  g_test_add_func ("/io/r3/first-error-by-index",
                   test_first_error_by_index);
  g_test_add_func ("/io/r7/split-and-rmw", test_split_and_rmw);
  g_test_add_func ("/io/r9/flush-every-device", test_flush_every_device);
  g_test_add_func ("/io/runs-while-suspended", test_runs_while_suspended);
  return g_test_run ();
}
