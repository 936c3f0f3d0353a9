/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: the control protocol's commands, every verb and every
 * target's messages, with suspend/reload/resume, against a live table of
 * every target type over fake devices, driven through the command
 * dispatcher as the control socket drives it (core/control.c: a line
 * split as the shell would, then ndm_md_command_full).
 *
 * Input: one line per command; a line whose first word is a request
 * (read, write, flush, trim, zero, cache, extents; fuzz-support.h) runs
 * it through the engine instead, unless the device is suspended (a
 * request then waits for a resume, as it should, and the fuzzer has one
 * thread).  `wait` runs only when its event has already come.
 *
 * Checked after every command: it answered (ok with a payload, or an
 * error with a message), and `status` and `table` work.  At the end: a
 * suspended device resumes, every printer works, and if a message or a
 * resume worked, the live table's `table` output (fail_if_no_path
 * changes it) loads back to the same table.  And nothing crashes, spins
 * or leaks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd-dm/control.h"
#include "core.h"
#include "fuzz-support.h"

#define FUZZ_MAX_LINES 64

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Every target type, its devices sharing fakes as tables do; small, so
 * that an input costs little more than its commands.
 */
static const char initial_table[] =
  "0 64 linear nbd://a?size=64K 0\n"
  "64 64 striped 2 8 nbd://a?size=64K 64 nbd://b?min=4096&size=64K 0\n"
  "128 64 zero\n"
  "192 64 error\n"
  "256 64 flakey nbd://b?min=4096&size=64K 32 0 3600 1 drop_writes\n"
  "320 64 delay nbd://c?size=64K 0 0 nbd://b?min=4096&size=64K 0 1\n"
  "384 64 dust nbd://c?size=64K 64 512\n"
  "448 64 multipath 1 queue_if_no_path 0 2 1 round-robin 0 2 1 "
  "nbd://p1?size=32K 1 nbd://p2?data=p1 1 service-time 0 1 2 "
  "nbd://p3dead?size=32K 1 1\n";

/* For wait: the client never goes away, so never wait at all. */
static bool
always_cancelled (void *data)
{
  return true;
}

static bool
is_verb (char **argv, const char *verb)
{
  return strcmp (argv[0], verb) == 0;
}

/* wait blocks until an event newer than its argument (default: the
 * current one); only one already past returns at once.
 */
static bool
wait_would_block (struct ndm_md *md, int argc, char **argv)
{
  guint64 v;

  if (!is_verb (argv, "wait") || argc > 2)
    return false;
  if (argc == 1 || !g_ascii_string_to_unsigned (argv[1], 10, 0, G_MAXUINT,
                                                &v, NULL))
    return argc == 1;
  return v >= (guint) g_atomic_int_get (&md->event_nr);
}

/* Returns true if the line changed the live table (a message or a
 * resume that worked).
 */
static bool
run_line (struct ndm_md *md, const char *line)
{
  g_auto (GStrv) argv = NULL;
  g_autoptr (GString) out = g_string_new (NULL);
  GError *err = NULL;
  int argc, r;

  if (!g_shell_parse_argv (line, &argc, &argv, NULL))
    return false;
  if (fuzz_is_request (argv[0])) {
    if (!g_atomic_int_get (&md->suspended))
      fuzz_run_request (md, argv, argc);
    return false;
  }
  if (wait_would_block (md, argc, argv))
    return false;
  r = ndm_md_command_full (md, argc, argv, out, always_cancelled, NULL,
                           &err);
  if ((r == -1) != (err != NULL) || (r == -1 && err->message[0] == '\0')) {
    fprintf (stderr, "fuzz: '%s' returned %d with %s error\n", line, r,
             err != NULL ? "an" : "no");
    abort ();
  }
  g_clear_error (&err);
  g_free (fuzz_check_printers (md, false));
  return r == 0 && (is_verb (argv, "message") || is_verb (argv, "resume"));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autofree char *text = g_strndup ((const char *) data, size);
  g_auto (GStrv) lines = g_strsplit (text, "\n", FUZZ_MAX_LINES + 1);
  g_autofree char *table = NULL;
  struct ndm_md *md;
  GError *err = NULL;
  bool changed = false;
  unsigned i;

  fuzz_init ();
  md = fuzz_md_new ();
  if (ndm_md_load (md, initial_table, &err) == -1)
    g_error ("fuzz: the initial table: %s", err->message);
  ndm_md_start (md);
  /* A client is connected: a reload to another size needs
   * --allow-resize (DESIGN.md section 6).
   */
  ndm_md_client_open (md);
  for (i = 0; lines[i] != NULL && i < FUZZ_MAX_LINES; i++)
    changed |= run_line (md, lines[i]);
  if (g_atomic_int_get (&md->suspended) && ndm_md_resume (md, &err) == -1)
    g_error ("fuzz: cannot resume at the end: %s", err->message);
  ndm_md_client_close (md);
  table = fuzz_check_printers (md, true);
  /* The initial table's round trip is fuzz-table's: only a table the
   * commands changed is worth a second mapped device.
   */
  if (changed)
    fuzz_check_round_trip (table, ndm_md_get_size (md));
  ndm_md_free (md);
  fuzz_device_reset ();
  return 0;
}
