/* SPDX-License-Identifier: BSD-3-Clause */
/* striped: spread chunks round-robin over N devices (RAID 0).
 *
 *     <start> <length> striped <#stripes> <chunk size> [<device> <offset>]{#stripes}
 *
 * Chunk size and offsets are in sectors.  <length> must be a multiple of
 * <chunk size> x <#stripes> (docs/targets/striped.md).  The math is dm's:
 *
 *     chunk  = offset / chunk_size      in = offset % chunk_size
 *     stripe = chunk % #stripes         row = chunk / #stripes
 *     device offset = stripe's offset + row * chunk_size + in
 *
 * Reads and writes are cut at chunk boundaries, one bio per chunk piece.
 * Trim, zero, cache and block status send each stripe one bio covering
 * its contiguous device range, as dm-stripe does for discards.
 */
#include <errno.h>
#include <string.h>

#include "nbd-dm/bio.h"
#include "nbd-dm/target.h"

struct stripe {
  struct ndm_device *dev;
  uint64_t physical_start;      /* sectors */
  gint error_count;             /* atomic: failed bios, for status */
};

struct stripe_c {
  uint32_t stripes;
  uint64_t chunk_size;          /* sectors */
  uint64_t stripe_width;        /* sectors per device */
  struct stripe stripe[];
};

static int
stripe_ctr (struct ndm_target *ti, unsigned argc, char **argv,
            GError **err)
{
  g_autofree struct stripe_c *sc = NULL;
  uint64_t stripes, chunk;
  unsigned i;

  if (argc < 2) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "expected '<#stripes> <chunk size> [<device> <offset>]...'"
                 ", got %u argument%s", argc, argc == 1 ? "" : "s");
    return -1;
  }
  if (ndm_parse_u64 (argv[0], "stripe count", &stripes, err) == -1)
    return -1;
  if (stripes == 0 || stripes > 1024) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "stripe count '%s': expected 1 to 1024", argv[0]);
    return -1;
  }
  if (ndm_parse_sectors (argv[1], "chunk size", &chunk, err) == -1)
    return -1;
  if (chunk == 0 || chunk > (UINT32_MAX >> NDM_SECTOR_SHIFT)) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "chunk size '%s': expected 1 to %u sectors", argv[1],
                 UINT32_MAX >> NDM_SECTOR_SHIFT);
    return -1;
  }
  if (argc != 2 + 2 * stripes) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "%" PRIu64 " stripes need %" PRIu64 " '<device> <offset>' "
                 "words after the chunk size, got %u",
                 stripes, 2 * stripes, argc - 2);
    return -1;
  }
  if (ti->len % (chunk * stripes) != 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "length %" PRIu64 " is not a multiple of chunk size x "
                 "stripes (%" PRIu64 " x %" PRIu64 " = %" PRIu64 " sectors)",
                 ti->len, chunk, stripes, chunk * stripes);
    return -1;
  }

  sc = g_malloc0 (sizeof *sc + stripes * sizeof sc->stripe[0]);
  sc->stripes = stripes;
  sc->chunk_size = chunk;
  sc->stripe_width = ti->len / stripes;
  for (i = 0; i < stripes; i++) {
    const char *uri = argv[2 + 2 * i];
    struct stripe *s = &sc->stripe[i];

    if (ndm_parse_sectors (argv[3 + 2 * i], "offset", &s->physical_start,
                           err) == -1)
      return -1;
    s->dev = ndm_table_get_device (ti, uri, err);
    if (s->dev == NULL)
      return -1;
  }
  ti->private = g_steal_pointer (&sc);
  return 0;
}

static void
stripe_dtr (struct ndm_target *ti)
{
  g_free (ti->private);
}

/* Target byte offset -> stripe and byte offset within the stripe's area. */
static void
stripe_map_offset (const struct stripe_c *sc, uint64_t off,
                   uint32_t *stripe, uint64_t *result)
{
  uint64_t cs = sc->chunk_size << NDM_SECTOR_SHIFT;
  uint64_t chunk = off / cs;

  *stripe = chunk % sc->stripes;
  *result = (chunk / sc->stripes) * cs + off % cs;
}

/* Where the bytes of target_stripe at or after off begin in its area
 * (dm's stripe_map_range_sector).
 */
static uint64_t
stripe_map_range_offset (const struct stripe_c *sc, uint64_t off,
                         uint32_t target_stripe)
{
  uint64_t cs = sc->chunk_size << NDM_SECTOR_SHIFT;
  uint64_t result;
  uint32_t stripe;

  stripe_map_offset (sc, off, &stripe, &result);
  if (stripe == target_stripe)
    return result;
  result -= result % cs;        /* start of this row's chunk */
  return stripe < target_stripe ? result : result + cs;
}

/* Target byte offset of byte pos in stripe's area. */
static uint64_t
stripe_unmap_offset (const struct stripe_c *sc, uint32_t stripe,
                     uint64_t pos)
{
  uint64_t cs = sc->chunk_size << NDM_SECTOR_SHIFT;

  return ((pos / cs) * sc->stripes + stripe) * cs + pos % cs;
}

static inline uint64_t
stripe_start_bytes (const struct stripe *s)
{
  return s->physical_start << NDM_SECTOR_SHIFT;
}

/* Each stripe's share of [off, off + len) is one contiguous device range,
 * but not contiguous in the clone.  Where the device needs it in several
 * bios, each piece is mapped on its own, with the clone offset of its own
 * first byte (R2 credits from there), cut at device block boundaries.
 */
static void
stripe_map_range (struct stripe_c *sc, struct ndm_clone *clone, uint64_t off)
{
  uint32_t i;

  for (i = 0; i < sc->stripes; i++) {
    struct ndm_device *dev = sc->stripe[i].dev;
    uint64_t start = stripe_start_bytes (&sc->stripe[i]);
    uint64_t begin = stripe_map_range_offset (sc, off, i);
    uint64_t end = stripe_map_range_offset (sc, off + clone->len, i);
    uint64_t max = ndm_clone_max_bio_len (clone, dev);
    uint64_t pos, n;

    for (pos = begin; pos < end; pos += n) {
      n = MIN (end - pos, max - (start + pos) % dev->limits.min_block);
      ndm_clone_map_bio (clone, dev, start + pos,
                         stripe_unmap_offset (sc, i, pos) - off, n);
    }
  }
}

static int
stripe_map (struct ndm_target *ti, struct ndm_clone *clone)
{
  struct stripe_c *sc = ti->private;
  uint64_t cs = sc->chunk_size << NDM_SECTOR_SHIFT;
  uint64_t off = ndm_clone_target_offset (clone);
  uint64_t pos;
  uint32_t i;

  switch (clone->op) {
  case NDM_OP_FLUSH:
    for (i = 0; i < sc->stripes; i++)
      ndm_clone_map_flush (clone, sc->stripe[i].dev);
    break;
  case NDM_OP_READ:
  case NDM_OP_WRITE:
    for (pos = 0; pos < clone->len; ) {
      uint64_t n = MIN (cs - (off + pos) % cs, clone->len - pos);
      uint64_t result;
      uint32_t stripe;

      stripe_map_offset (sc, off + pos, &stripe, &result);
      ndm_clone_map_bio (clone, sc->stripe[stripe].dev,
                         stripe_start_bytes (&sc->stripe[stripe]) + result,
                         pos, n);
      pos += n;
    }
    break;
  default:
    stripe_map_range (sc, clone, off);
    break;
  }
  return NDM_MAPIO_REMAPPED;
}

static int
stripe_of_bio (const struct stripe_c *sc, const struct ndm_bio *bio)
{
  uint32_t i;

  for (i = 0; i < sc->stripes; i++) {
    const struct stripe *s = &sc->stripe[i];
    uint64_t start = stripe_start_bytes (s);

    if (bio->dev == s->dev && bio->dev_offset >= start &&
        bio->dev_offset < start + (sc->stripe_width << NDM_SECTOR_SHIFT))
      return i;
  }
  return -1;
}

/* Count failures per stripe for status ('D'), like dm-stripe.  A device
 * that cannot do an operation (ENOTSUP) is not a dead stripe.
 */
static int
stripe_end_io (struct ndm_target *ti, struct ndm_clone *clone, int *error)
{
  struct stripe_c *sc = ti->private;
  struct ndm_bio *bio;

  if (*error == 0)
    return NDM_ENDIO_DONE;
  ndm_clone_for_each_bio (bio, clone) {
    int i;

    if (!ndm_bio_failed (bio) || bio->status == ENOTSUP)
      continue;
    i = stripe_of_bio (sc, bio);
    /* The first error of a stripe changes its status to 'D': an event,
     * as dm-stripe raises one.
     */
    if (i >= 0 && g_atomic_int_add (&sc->stripe[i].error_count, 1) == 0)
      ndm_target_event (ti);
  }
  return NDM_ENDIO_DONE;
}

/* Walks one stripe's block status answers in increasing device order. */
struct extent_cursor {
  struct ndm_bio *bio;          /* current bio of this stripe */
  unsigned idx;                 /* extent within it */
};

/* The extent holding device offset d in stripe i: its type, and how many
 * bytes from d it covers.  False if the devices did not answer for d.
 */
static bool
stripe_extent_at (const struct stripe_c *sc, struct ndm_clone *clone,
                  struct extent_cursor *cur, uint32_t i, uint64_t d,
                  uint32_t *type, uint64_t *run)
{
  for (; cur->bio != NULL; cur->bio = cur->bio->next, cur->idx = 0) {
    struct ndm_bio *bio = cur->bio;

    if (stripe_of_bio (sc, bio) != (int) i ||
        d >= bio->dev_offset + bio->len)
      continue;
    if (d < bio->dev_offset || bio->extents == NULL)
      return false;
    for (; cur->idx < bio->extents->len; cur->idx++) {
      const struct ndm_extent *e =
        &g_array_index (bio->extents, struct ndm_extent, cur->idx);
      uint64_t end = MIN (e->offset + e->length, bio->dev_offset + bio->len);

      if (d >= end)
        continue;
      if (d < e->offset)
        return false;
      *type = e->type;
      *run = end - d;
      return true;
    }
    return false;
  }
  return false;
}

/* Block status: walk the clone chunk piece by chunk piece and take each
 * piece's answer from its stripe's bio; stop where a device said less.
 */
static void
stripe_extents (struct ndm_target *ti, struct ndm_clone *clone)
{
  struct stripe_c *sc = ti->private;
  g_autofree struct extent_cursor *cur =
    g_new (struct extent_cursor, sc->stripes);
  uint64_t cs = sc->chunk_size << NDM_SECTOR_SHIFT;
  uint64_t off = ndm_clone_target_offset (clone);
  uint64_t pos = 0;
  uint32_t i;

  for (i = 0; i < sc->stripes; i++) {
    cur[i].bio = clone->bios;
    cur[i].idx = 0;
  }
  while (pos < clone->len) {
    uint64_t n = MIN (cs - (off + pos) % cs, clone->len - pos);
    uint64_t result, d;
    uint32_t stripe;

    stripe_map_offset (sc, off + pos, &stripe, &result);
    d = stripe_start_bytes (&sc->stripe[stripe]) + result;
    while (n > 0) {
      uint64_t run, take;
      uint32_t type;

      if (!stripe_extent_at (sc, clone, &cur[stripe], stripe, d, &type,
                             &run))
        return;
      take = MIN (n, run);
      ndm_clone_add_extent (clone, pos, take, type);
      pos += take;
      d += take;
      n -= take;
    }
  }
}

/* status: <#stripes> <device>... 1 <A|D per stripe>
 * table:  <#stripes> <chunk size> [<device> <offset>]...
 */
static void
stripe_status (struct ndm_target *ti, enum ndm_status_type type,
               GString *result)
{
  struct stripe_c *sc = ti->private;
  uint32_t i;

  g_string_append_printf (result, "%u", sc->stripes);
  switch (type) {
  case NDM_STATUS_INFO:
    for (i = 0; i < sc->stripes; i++)
      g_string_append_printf (result, " %s", sc->stripe[i].dev->uri);
    g_string_append (result, " 1 ");
    for (i = 0; i < sc->stripes; i++)
      g_string_append_c (result,
                         g_atomic_int_get (&sc->stripe[i].error_count)
                         ? 'D' : 'A');
    break;
  case NDM_STATUS_TABLE:
    g_string_append_printf (result, " %" PRIu64, sc->chunk_size);
    for (i = 0; i < sc->stripes; i++)
      g_string_append_printf (result, " %s %" PRIu64,
                              sc->stripe[i].dev->uri,
                              sc->stripe[i].physical_start);
    break;
  }
}

static int
stripe_iterate_devices (struct ndm_target *ti, ndm_iterate_devices_fn fn,
                        void *data)
{
  struct stripe_c *sc = ti->private;
  uint32_t i;
  int r = 0;

  for (i = 0; i < sc->stripes && r == 0; i++)
    r = fn (ti, sc->stripe[i].dev, stripe_start_bytes (&sc->stripe[i]),
            sc->stripe_width << NDM_SECTOR_SHIFT, data);
  return r;
}

const struct ndm_target_type ndm_striped_target = {
  .name = "striped", .version = { 1, 6, 0 },
  .ctr = stripe_ctr, .dtr = stripe_dtr, .map = stripe_map,   /* required */
  .end_io = stripe_end_io, .extents = stripe_extents,        /* optional */
  .status = stripe_status, .iterate_devices = stripe_iterate_devices,
};
