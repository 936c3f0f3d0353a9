/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: the table parser with every target's ctr, the table
 * and status printers, and the engine on what the table builds.
 *
 * Input: a table in dmsetup syntax (lines split on '\n' or ';', as
 * table-text= takes it), optionally a line "%%" and request lines
 * (fuzz-support.h).  Devices are any URI words (fuzz-device.c).
 *
 * Checked:
 *   - a refused table says why, naming its line (DESIGN.md section 2);
 *   - an accepted one prints with every printer, and its `table` output
 *     loads again into the same table of the same size (the round trip
 *     nbd-dmsetup's `table` then `reload` makes);
 *   - requests reply with an errno an NBD client may see, block status
 *     describes the range asked, and nothing spins, crashes or leaks
 *     (ASan, UBSan, libFuzzer's -timeout).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-support.h"

#define FUZZ_MAX_REQUESTS 64

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* "line N: ..." or the empty table's message: an operator can find what
 * to fix.
 */
static void
check_refusal (const char *text, GError *err)
{
  if (err == NULL || err->message == NULL ||
      (!g_str_has_prefix (err->message, "line ") &&
       !g_str_has_prefix (err->message, "the table is empty"))) {
    fprintf (stderr, "fuzz: table refused without a line: %s\n%s\n",
             err != NULL ? err->message : "(no error)", text);
    abort ();
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  /* As table-text= and the control socket see it: a C string. */
  g_autofree char *text = g_strndup ((const char *) data, size);
  char *requests = fuzz_split_requests (text);
  struct ndm_md *md;
  g_autofree char *table = NULL;
  GError *err = NULL;
  uint64_t dev_size;

  fuzz_init ();
  md = fuzz_md_new ();
  if (ndm_md_load (md, text, &err) == -1) {
    check_refusal (text, err);
    g_error_free (err);
    ndm_md_free (md);
    fuzz_device_reset ();
    return 0;
  }
  ndm_md_start (md);
  if (requests != NULL)
    fuzz_run_requests (md, requests, FUZZ_MAX_REQUESTS);
  /* Every printer once, after the requests: what they changed (a failed
   * path, a delayed write) shows, and requests never change the table.
   */
  table = fuzz_check_printers (md, true);
  dev_size = ndm_md_get_size (md);
  ndm_md_free (md);
  fuzz_device_reset ();

  fuzz_check_round_trip (table, dev_size);
  fuzz_device_reset ();
  return 0;
}
