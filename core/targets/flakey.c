/* SPDX-License-Identifier: BSD-3-Clause */
/* flakey: a linear mapping that is unreliable at intervals (dm-flakey).
 *
 *     <start> <length> flakey <device> <offset> <up interval> <down interval>
 *             [<#feature args> <feature args>...]
 *
 * From table load the device works for <up interval> seconds, then
 * misbehaves for <down interval> seconds, and so on.  Features (dm's):
 *
 *   error_reads            reads fail while down
 *   drop_writes            writes are acknowledged and not done while down
 *   error_writes           writes fail while down
 *   corrupt_bio_byte <Nth byte> <r|w> <value> <flags>
 *                          while down, byte N (from 1) of each matching
 *                          read or write request piece is <value>; flags 0
 *                          matches all, else the NBD request flags that
 *                          must be set (1 = FUA)
 *   random_read_corrupt <p>, random_write_corrupt <p>
 *                          while down, a random byte gets a random value
 *                          with probability p / 1000000000
 *   random_seed <n>        (nbd-dm) seed for the two above, for
 *                          reproducible tests
 *
 * Without features, everything fails while down (error_reads and
 * error_writes), as in dm.  Flushes, trims and zeroes count as writes,
 * as bios do in dm.  Corrupted writes are sent from a copy: the client's
 * buffer is never changed (docs/targets/flakey.md).
 */
#include <errno.h>
#include <string.h>

#include "nbd-dm/target.h"

#define PROBABILITY_BASE 1000000000u

struct flakey_c {
  struct ndm_device *dev;
  uint64_t start;               /* sectors */
  unsigned up, down;            /* seconds */
  gint64 t0;                    /* monotonic us of the table load */
  bool error_reads, drop_writes, error_writes;
  unsigned corrupt_byte;        /* 0: off; else the byte, from 1 */
  bool corrupt_write;           /* 'w', else 'r' */
  unsigned corrupt_value;
  unsigned corrupt_flags;
  unsigned random_read, random_write;   /* out of PROBABILITY_BASE */
  bool seeded;
  uint64_t seed;
  struct ndm_mutex rand_lock;   /* protects rand */
  GRand *rand;
};

/* What drop_writes and error_writes act on: every op whose bio is a
 * write in dm, flushes included (not ndm_op_writes: a flush changes no
 * data, but an empty REQ_PREFLUSH bio is a write to dm-flakey).
 */
static bool
flakey_write_feature_applies (enum ndm_op op)
{
  return op == NDM_OP_WRITE || op == NDM_OP_ZERO || op == NDM_OP_TRIM ||
    op == NDM_OP_FLUSH;
}

static int
want_u32 (char **argv, unsigned *i, unsigned argc, const char *what,
          unsigned max, unsigned *out, GError **err)
{
  uint64_t v;

  if (*i >= argc) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "%s is missing at the end of the features", what);
    return -1;
  }
  if (ndm_parse_u64 (argv[*i], what, &v, err) == -1)
    return -1;
  if (v > max) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "%s '%s': expected 0 to %u", what, argv[*i], max);
    return -1;
  }
  *out = v;
  (*i)++;
  return 0;
}

static int
parse_features (struct flakey_c *fc, unsigned argc, char **argv,
                GError **err)
{
  unsigned i = 0;

  while (i < argc) {
    const char *f = argv[i++];

    if (!g_ascii_strcasecmp (f, "error_reads") ||
        !g_ascii_strcasecmp (f, "drop_writes") ||
        !g_ascii_strcasecmp (f, "error_writes")) {
      bool *flag = !g_ascii_strcasecmp (f, "error_reads") ? &fc->error_reads
        : !g_ascii_strcasecmp (f, "drop_writes") ? &fc->drop_writes
        : &fc->error_writes;

      if (*flag) {
        g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                     "feature %s is given twice", f);
        return -1;
      }
      *flag = true;
    }
    else if (!g_ascii_strcasecmp (f, "corrupt_bio_byte")) {
      if (fc->corrupt_byte != 0) {
        g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                     "feature corrupt_bio_byte is given twice");
        return -1;
      }
      if (want_u32 (argv, &i, argc, "corrupt_bio_byte <Nth byte>",
                    G_MAXUINT32, &fc->corrupt_byte, err) == -1)
        return -1;
      if (fc->corrupt_byte == 0) {
        g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                     "corrupt_bio_byte <Nth byte> '0': bytes count from 1");
        return -1;
      }
      if (i >= argc || (g_ascii_strcasecmp (argv[i], "r") &&
                        g_ascii_strcasecmp (argv[i], "w"))) {
        g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                     "corrupt_bio_byte <direction> '%s': expected r or w",
                     i < argc ? argv[i] : "");
        return -1;
      }
      fc->corrupt_write = !g_ascii_strcasecmp (argv[i++], "w");
      if (want_u32 (argv, &i, argc, "corrupt_bio_byte <value>", 255,
                    &fc->corrupt_value, err) == -1 ||
          want_u32 (argv, &i, argc, "corrupt_bio_byte <flags>", G_MAXUINT32,
                    &fc->corrupt_flags, err) == -1)
        return -1;
    }
    else if (!g_ascii_strcasecmp (f, "random_read_corrupt") ||
             !g_ascii_strcasecmp (f, "random_write_corrupt")) {
      unsigned *p = !g_ascii_strcasecmp (f, "random_read_corrupt")
        ? &fc->random_read : &fc->random_write;

      if (*p != 0) {
        g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                     "feature %s is given twice", f);
        return -1;
      }
      if (want_u32 (argv, &i, argc, f, PROBABILITY_BASE, p, err) == -1)
        return -1;
    }
    else if (!g_ascii_strcasecmp (f, "random_seed")) {
      unsigned s;

      if (want_u32 (argv, &i, argc, "random_seed", G_MAXUINT32, &s, err)
          == -1)
        return -1;
      fc->seeded = true;
      fc->seed = s;
    }
    else {
      g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                   "unknown feature '%s': expected error_reads, drop_writes, "
                   "error_writes, corrupt_bio_byte, random_read_corrupt, "
                   "random_write_corrupt or random_seed", f);
      return -1;
    }
  }

  /* dm's rules: a write is dropped, failed or corrupted, not two. */
  if (fc->drop_writes && fc->error_writes) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "feature drop_writes conflicts with feature error_writes");
    return -1;
  }
  if ((fc->drop_writes || fc->error_writes) &&
      ((fc->corrupt_byte && fc->corrupt_write) || fc->random_write)) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "%s is incompatible with random_write_corrupt or "
                 "corrupt_bio_byte with the w direction",
                 fc->drop_writes ? "drop_writes" : "error_writes");
    return -1;
  }
  if (fc->error_reads &&
      ((fc->corrupt_byte && !fc->corrupt_write) || fc->random_read)) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "error_reads is incompatible with random_read_corrupt or "
                 "corrupt_bio_byte with the r direction");
    return -1;
  }
  if (!fc->error_reads && !fc->drop_writes && !fc->error_writes &&
      !fc->corrupt_byte && !fc->random_read && !fc->random_write)
    fc->error_reads = fc->error_writes = true;
  return 0;
}

static int
flakey_ctr (struct ndm_target *ti, unsigned argc, char **argv, GError **err)
{
  g_autofree struct flakey_c *fc = g_new0 (struct flakey_c, 1);
  uint64_t up, down, nfeat = 0;

  if (argc < 4) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "expected '<device> <offset> <up interval> <down interval> "
                 "[<#feature args> <feature args>...]', got %u argument%s",
                 argc, argc == 1 ? "" : "s");
    return -1;
  }
  if (ndm_parse_sectors (argv[1], "offset", &fc->start, err) == -1 ||
      ndm_parse_u64 (argv[2], "up interval", &up, err) == -1 ||
      ndm_parse_u64 (argv[3], "down interval", &down, err) == -1)
    return -1;
  if (up > G_MAXUINT32 || down > G_MAXUINT32 || up + down == 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "up and down intervals '%s' '%s': expected seconds, not "
                 "both 0", argv[2], argv[3]);
    return -1;
  }
  fc->up = up;
  fc->down = down;
  if (argc > 4) {
    if (ndm_parse_u64 (argv[4], "#feature args", &nfeat, err) == -1)
      return -1;
    if (nfeat != argc - 5) {
      g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                   "#feature args '%s' does not match the %u word%s after "
                   "it", argv[4], argc - 5, argc - 5 == 1 ? "" : "s");
      return -1;
    }
  }
  if (parse_features (fc, nfeat, argv + 5, err) == -1)
    return -1;
  fc->dev = ndm_table_get_device (ti, argv[0], err);
  if (fc->dev == NULL)
    return -1;
  fc->t0 = g_get_monotonic_time ();
  ndm_mutex_init (&fc->rand_lock, NDM_LOCK_TARGET);
  fc->rand = fc->seeded ? g_rand_new_with_seed (fc->seed) : g_rand_new ();
  ti->private = g_steal_pointer (&fc);
  return 0;
}

static void
flakey_dtr (struct ndm_target *ti)
{
  struct flakey_c *fc = ti->private;

  g_rand_free (fc->rand);
  ndm_mutex_clear (&fc->rand_lock);
  g_free (fc);
}

static bool
flakey_down (struct flakey_c *fc)
{
  uint64_t elapsed = (g_get_monotonic_time () - fc->t0) / G_USEC_PER_SEC;

  return elapsed % ((uint64_t) fc->up + fc->down) >= fc->up;
}

/* Draw in [0, n) and a byte, under the lock (GRand is not thread-safe). */
static bool
flakey_chance (struct flakey_c *fc, unsigned p)
{
  bool hit;

  ndm_mutex_lock (&fc->rand_lock);
  hit = (unsigned) g_rand_int_range (fc->rand, 0, PROBABILITY_BASE) < p;
  ndm_mutex_unlock (&fc->rand_lock);
  return hit;
}

static void
corrupt_random (struct flakey_c *fc, char *buf, uint64_t len)
{
  uint64_t at;
  char v;

  ndm_mutex_lock (&fc->rand_lock);
  at = (uint64_t) g_rand_double (fc->rand) * len;
  v = (char) g_rand_int_range (fc->rand, 0, 256);
  ndm_mutex_unlock (&fc->rand_lock);
  buf[MIN (at, len - 1)] = v;
}

static bool
flags_match (struct flakey_c *fc, struct ndm_clone *clone)
{
  return (clone->flags & fc->corrupt_flags) == fc->corrupt_flags;
}

/* map_context: the down state at map time, and for a corrupted write the
 * copy its bios are sent from (clone->buf then points into it).
 */
struct flakey_io {
  bool down;
  char *client_buf;             /* restore in end_io */
  char *copy;
};

static int
flakey_map (struct ndm_target *ti, struct ndm_clone *clone)
{
  struct flakey_c *fc = ti->private;
  uint64_t dev_off = (fc->start << NDM_SECTOR_SHIFT) +
    ndm_clone_target_offset (clone);
  bool down = flakey_down (fc);

  clone->map_context = NULL;
  if (down && flakey_write_feature_applies (clone->op)) {
    if (fc->drop_writes)
      return NDM_MAPIO_SUBMITTED;
    if (fc->error_writes) {
      clone->kill_error = EIO;
      return NDM_MAPIO_KILL;
    }
    if (clone->op == NDM_OP_WRITE && clone->len > 0) {
      bool fixed = fc->corrupt_byte && fc->corrupt_write &&
        flags_match (fc, clone) && fc->corrupt_byte <= clone->len;
      bool rnd = fc->random_write && flakey_chance (fc, fc->random_write);

      if (fixed || rnd) {
        struct flakey_io *io = g_new0 (struct flakey_io, 1);

        io->down = true;
        io->client_buf = clone->buf;
        io->copy = g_memdup2 (clone->buf, clone->len);
        if (fixed)
          io->copy[fc->corrupt_byte - 1] = (char) fc->corrupt_value;
        if (rnd)
          corrupt_random (fc, io->copy, clone->len);
        clone->buf = io->copy;
        clone->map_context = io;
      }
    }
  }
  else if (down && clone->op == NDM_OP_READ) {
    if (fc->error_reads) {
      clone->kill_error = EIO;
      return NDM_MAPIO_KILL;
    }
    if (fc->corrupt_byte || fc->random_read) {
      struct flakey_io *io = g_new0 (struct flakey_io, 1);

      io->down = true;
      clone->map_context = io;
    }
  }
  ndm_clone_remap (clone, fc->dev, dev_off);
  return NDM_MAPIO_REMAPPED;
}

static int
flakey_end_io (struct ndm_target *ti, struct ndm_clone *clone, int *error)
{
  struct flakey_c *fc = ti->private;
  struct flakey_io *io = clone->map_context;

  if (io == NULL)
    return NDM_ENDIO_DONE;
  clone->map_context = NULL;
  if (io->copy != NULL) {
    clone->buf = io->client_buf;
    g_free (io->copy);
  }
  else if (*error == 0 && clone->op == NDM_OP_READ && clone->len > 0) {
    /* A read that went through while down: corrupt what it brought. */
    if (fc->corrupt_byte && !fc->corrupt_write && flags_match (fc, clone) &&
        fc->corrupt_byte <= clone->len)
      clone->buf[fc->corrupt_byte - 1] = (char) fc->corrupt_value;
    if (fc->random_read && flakey_chance (fc, fc->random_read))
      corrupt_random (fc, clone->buf, clone->len);
  }
  g_free (io);
  return NDM_ENDIO_DONE;
}

/* Cancelled before its bios ran (R6): drop the copy, give the client's
 * buffer back for the next map.
 */
static void
flakey_release_clone (struct ndm_target *ti, struct ndm_clone *clone)
{
  struct flakey_io *io = clone->map_context;

  if (io == NULL)
    return;
  clone->map_context = NULL;
  if (io->copy != NULL) {
    clone->buf = io->client_buf;
    g_free (io->copy);
  }
  g_free (io);
}

/* status: nothing (as dm).
 * table:  <device> <offset> <up> <down> <#feature args> <features...>
 */
static void
flakey_status (struct ndm_target *ti, enum ndm_status_type type,
               GString *result)
{
  struct flakey_c *fc = ti->private;

  if (type != NDM_STATUS_TABLE)
    return;
  g_string_append_printf (result, "%s %" PRIu64 " %u %u %u", fc->dev->uri,
                          fc->start, fc->up, fc->down,
                          fc->error_reads + fc->drop_writes +
                          fc->error_writes + (fc->corrupt_byte > 0) * 5 +
                          (fc->random_read > 0) * 2 +
                          (fc->random_write > 0) * 2 + fc->seeded * 2);
  if (fc->error_reads)
    g_string_append (result, " error_reads");
  if (fc->drop_writes)
    g_string_append (result, " drop_writes");
  else if (fc->error_writes)
    g_string_append (result, " error_writes");
  if (fc->corrupt_byte)
    g_string_append_printf (result, " corrupt_bio_byte %u %c %u %u",
                            fc->corrupt_byte, fc->corrupt_write ? 'w' : 'r',
                            fc->corrupt_value, fc->corrupt_flags);
  if (fc->random_read)
    g_string_append_printf (result, " random_read_corrupt %u",
                            fc->random_read);
  if (fc->random_write)
    g_string_append_printf (result, " random_write_corrupt %u",
                            fc->random_write);
  if (fc->seeded)
    g_string_append_printf (result, " random_seed %" PRIu64, fc->seed);
}

static int
flakey_iterate_devices (struct ndm_target *ti, ndm_iterate_devices_fn fn,
                        void *data)
{
  struct flakey_c *fc = ti->private;

  return fn (ti, fc->dev, fc->start << NDM_SECTOR_SHIFT,
             ti->len << NDM_SECTOR_SHIFT, data);
}

const struct ndm_target_type ndm_flakey_target = {
  .name = "flakey", .version = { 1, 5, 0 },
  .ctr = flakey_ctr, .dtr = flakey_dtr, .map = flakey_map,   /* required */
  .end_io = flakey_end_io, .status = flakey_status,          /* optional */
  .release_clone = flakey_release_clone,
  .iterate_devices = flakey_iterate_devices,
};
