/* SPDX-License-Identifier: BSD-3-Clause */
/* Request lines of the fuzzers' inputs, run through the engine as nbdkit
 * would hand them over (fuzz-support.h gives the syntax), and what every
 * reply must be.
 *
 * Thread model: the fuzzing thread owns each request; the fake devices
 * complete on it too (immediate or channel mode).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-support.h"

#define FUZZ_MAX_COUNT (256u << 10)

static const struct {
  const char *name;
  enum ndm_op op;
} ops[] = {
  { "read", NDM_OP_READ }, { "write", NDM_OP_WRITE },
  { "flush", NDM_OP_FLUSH }, { "trim", NDM_OP_TRIM },
  { "zero", NDM_OP_ZERO }, { "cache", NDM_OP_CACHE },
  { "extents", NDM_OP_BLOCK_STATUS },
};

static const struct {
  const char *name;
  uint32_t flag;
} flags[] = {
  { "fua", NDM_REQ_FUA }, { "may_trim", NDM_REQ_MAY_TRIM },
  { "fast", NDM_REQ_FAST_ZERO }, { "one", NDM_REQ_ONE },
};

static bool
parse_number (const char *word, uint64_t *v)
{
  char *end;

  if (word == NULL || !g_ascii_isdigit (word[0]))
    return false;
  *v = g_ascii_strtoull (word, &end, 10);
  return *end == '\0';
}

/* What nbdkit 1.32 lets through to the plugin, given what it advertises
 * (plugin/plugin.c): a command or flag the export does not have never
 * arrives.
 */
static bool
advertised (const struct ndm_caps *caps, enum ndm_op op, uint32_t *fl)
{
  bool modifies = op == NDM_OP_WRITE || op == NDM_OP_TRIM ||
    op == NDM_OP_ZERO;

  if ((modifies && !caps->write) || (op == NDM_OP_TRIM && !caps->trim) ||
      (op == NDM_OP_FLUSH && !caps->flush) ||
      (op == NDM_OP_CACHE && !caps->cache))
    return false;
  if (!modifies || !caps->fua)
    *fl &= ~NDM_REQ_FUA;
  if (op != NDM_OP_ZERO)
    *fl &= ~(NDM_REQ_MAY_TRIM | NDM_REQ_FAST_ZERO);
  if (!caps->fast_zero)
    *fl &= ~NDM_REQ_FAST_ZERO;
  if (op != NDM_OP_BLOCK_STATUS)
    *fl &= ~NDM_REQ_ONE;
  return true;
}

/* The errnos a reply may carry here: nbdkit's NBD errors, the device's
 * own target errors passed on (R5), nothing a path error or a broken
 * command of the core's (EINVAL from a strict fake: R7) would give.
 */
static void
check_reply (enum ndm_op op, uint32_t fl, uint64_t offset, uint64_t count,
             int r, int err)
{
  if (r == 0)
    return;
  switch (err) {
  case EIO:
  case ENOMEM:
  case ENOSPC:
  case EPERM:
    return;
  case ENOTSUP:
    if (op != NDM_OP_WRITE)
      return;
    break;
  default:
    break;
  }
  fprintf (stderr, "fuzz: %s %" PRIu64 " %" PRIu64 " (flags %#x) failed "
           "with %s, which no client should see here\n", ops[op].name,
           offset, count, fl, g_strerror (err));
  abort ();
}

static void
check_extents (GArray *ext, uint64_t offset, uint64_t size)
{
  uint64_t at = offset;
  unsigned i;

  if (ext->len == 0) {
    fprintf (stderr, "fuzz: extents at %" PRIu64 ": none\n", offset);
    abort ();
  }
  for (i = 0; i < ext->len; i++) {
    const struct ndm_extent *e = &g_array_index (ext, struct ndm_extent, i);

    if (e->offset != at || e->length == 0 || e->length > size - at ||
        (e->type & ~(NDM_EXTENT_HOLE | NDM_EXTENT_ZERO)) != 0) {
      fprintf (stderr, "fuzz: extent %u of a request at %" PRIu64 ": %"
               PRIu64 "+%" PRIu64 " type %u, expected it at %" PRIu64
               " inside %" PRIu64 " bytes\n", i, offset, e->offset,
               e->length, e->type, at, size);
      abort ();
    }
    at += e->length;
  }
}

bool
fuzz_is_request (const char *word)
{
  size_t op;

  for (op = 0; op < G_N_ELEMENTS (ops); op++)
    if (strcmp (word, ops[op].name) == 0)
      return true;
  return false;
}

bool
fuzz_run_request (struct ndm_md *md, char **words, unsigned nwords)
{
  uint64_t size = ndm_md_get_size (md), offset = 0, count = 0;
  struct ndm_caps caps;
  uint32_t fl = 0;
  size_t i, op;
  unsigned w;
  int r, err = 0;

  for (op = 0; op < G_N_ELEMENTS (ops); op++)
    if (strcmp (words[0], ops[op].name) == 0)
      break;
  if (op == G_N_ELEMENTS (ops))
    return false;
  if (ops[op].op != NDM_OP_FLUSH) {
    if (nwords < 3 || !parse_number (words[1], &offset) ||
        !parse_number (words[2], &count))
      return false;
    offset %= size;
    count = 1 + (count == 0 ? 0 : count - 1) %
      MIN (size - offset, FUZZ_MAX_COUNT);
  }
  for (w = 3; w < nwords; w++)
    for (i = 0; i < G_N_ELEMENTS (flags); i++)
      if (strcmp (words[w], flags[i].name) == 0)
        fl |= flags[i].flag;
  ndm_md_get_caps (md, &caps);
  if (!advertised (&caps, ops[op].op, &fl))
    return true;

  switch (ops[op].op) {
  case NDM_OP_READ:
  case NDM_OP_WRITE: {
    g_autofree uint8_t *buf = g_malloc (count);

    memset (buf, (int) (offset & 0xff) | 1, count);
    r = ndm_md_io (md, ops[op].op, buf, count, offset, fl, &err);
    break;
  }
  case NDM_OP_BLOCK_STATUS: {
    g_autoptr (GArray) ext =
      g_array_new (FALSE, FALSE, sizeof (struct ndm_extent));

    r = ndm_md_extents (md, count, offset, fl, ext, &err);
    if (r == 0)
      check_extents (ext, offset, size);
    break;
  }
  default:
    r = ndm_md_io (md, ops[op].op, NULL, count, offset, fl, &err);
    break;
  }
  check_reply (ops[op].op, fl, offset, count, r, err);
  return true;
}

/* A delay target makes its I/O wait up to an hour (its table says how
 * long): only inputs whose delays end within the fuzzer's timeout run.
 */
#define FUZZ_MAX_DELAY_MS 20

static bool
delays_short (struct ndm_md *md)
{
  g_autoptr (GString) table = g_string_new (NULL);
  g_auto (GStrv) lines = NULL;
  unsigned i, w;

  ndm_md_table (md, table);
  lines = g_strsplit (table->str, "\n", -1);
  for (i = 0; lines[i] != NULL; i++) {
    g_auto (GStrv) words = g_strsplit (lines[i], " ", -1);
    uint64_t ms;

    if (g_strv_length (words) < 3 || strcmp (words[2], "delay") != 0)
      continue;
    /* <start> <length> delay (<device> <offset> <ms>)... */
    for (w = 5; w < g_strv_length (words); w += 3)
      if (!parse_number (words[w], &ms) || ms > FUZZ_MAX_DELAY_MS)
        return false;
  }
  return true;
}

void
fuzz_run_requests (struct ndm_md *md, const char *lines,
                   unsigned max_requests)
{
  g_auto (GStrv) split = g_strsplit (lines, "\n", -1);
  unsigned i, run = 0;

  if (!delays_short (md))
    return;
  for (i = 0; split[i] != NULL && run < max_requests; i++) {
    g_auto (GStrv) words = g_strsplit_set (split[i], " \t", -1);
    unsigned n = 0, j;

    /* Drop empty words (repeated blanks). */
    for (j = 0; words[j] != NULL; j++) {
      if (words[j][0] == '\0')
        g_free (words[j]);
      else
        words[n++] = words[j];
    }
    words[n] = NULL;
    if (n > 0 && fuzz_run_request (md, words, n))
      run++;
  }
}
