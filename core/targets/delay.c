/* SPDX-License-Identifier: BSD-3-Clause */
/* delay: a linear mapping whose I/O waits before it is sent (dm-delay).
 *
 *     <start> <length> delay <device> <offset> <ms>
 *                            [<write device> <offset> <ms>
 *                             [<flush device> <offset> <ms>]]
 *
 * The first triple is for reads (and, alone, for everything); the second
 * for writes, trims and zeroes (and flushes, unless a third is given).  A
 * flush waits the flush class's delay and then goes to every device the
 * line names (R9).
 * The wait does not hold a thread idle: the request's owner keeps reading
 * replies for other requests (leading its channels) while its own I/O
 * waits out the delay (clone->not_before in the core).  Cache and block
 * status go the read way undelayed: they are not I/O (docs/targets/
 * delay.md).
 *
 * While the device suspends (presuspend) nothing is delayed: I/O waiting
 * goes out at once and new I/O is not held, so the suspend drains
 * quickly (dm-delay flushes its list the same way).
 */
#include <errno.h>
#include <string.h>

#include "nbd-dm/target.h"

enum delay_class_id { DELAY_READ, DELAY_WRITE, DELAY_FLUSH, DELAY_CLASSES };

struct delay_class {
  struct ndm_device *dev;
  uint64_t start;               /* sectors */
  unsigned delay;               /* ms */
  GQueue waiting;               /* struct ndm_clone *, mapped with a delay
                                   and not ended; by delay_c.lock */
};

struct delay_c {
  struct delay_class class[DELAY_CLASSES];
  unsigned argc;                /* 3, 6 or 9: how the table said it */
  struct ndm_mutex lock;        /* protects waiting, may_delay */
  bool may_delay;
};

static int
class_ctr (struct ndm_target *ti, struct delay_class *c, char **argv,
           GError **err)
{
  uint64_t ms;

  if (ndm_parse_sectors (argv[1], "offset", &c->start, err) == -1 ||
      ndm_parse_u64 (argv[2], "delay", &ms, err) == -1)
    return -1;
  if (ms > 3600 * 1000) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "delay '%s': expected at most 3600000 ms", argv[2]);
    return -1;
  }
  c->delay = ms;
  c->dev = ndm_table_get_device (ti, argv[0], err);
  g_queue_init (&c->waiting);
  return c->dev == NULL ? -1 : 0;
}

static int
delay_ctr (struct ndm_target *ti, unsigned argc, char **argv, GError **err)
{
  g_autofree struct delay_c *dc = g_new0 (struct delay_c, 1);
  struct delay_class *c = dc->class;

  if (argc != 3 && argc != 6 && argc != 9) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "expected 3, 6 or 9 arguments '<device> <offset> <ms> "
                 "[<device> <offset> <ms> [<device> <offset> <ms>]]', "
                 "got %u", argc);
    return -1;
  }
  if (class_ctr (ti, &c[DELAY_READ], argv, err) == -1 ||
      class_ctr (ti, &c[DELAY_WRITE], argv + (argc >= 6 ? 3 : 0), err) == -1
      || class_ctr (ti, &c[DELAY_FLUSH], argv + (argc == 9 ? 6 :
                                                  argc == 6 ? 3 : 0),
                    err) == -1)
    return -1;
  dc->argc = argc;
  ndm_mutex_init (&dc->lock, NDM_LOCK_TARGET);
  dc->may_delay = true;
  ti->private = g_steal_pointer (&dc);
  return 0;
}

static void
delay_dtr (struct ndm_target *ti)
{
  struct delay_c *dc = ti->private;
  unsigned i;

  for (i = 0; i < DELAY_CLASSES; i++)
    g_queue_clear (&dc->class[i].waiting);
  ndm_mutex_clear (&dc->lock);
  g_free (dc);
}

static enum delay_class_id
class_of (enum ndm_op op)
{
  switch (op) {
  case NDM_OP_WRITE:
  case NDM_OP_TRIM:
  case NDM_OP_ZERO:
    return DELAY_WRITE;
  case NDM_OP_FLUSH:
    return DELAY_FLUSH;
  default:
    return DELAY_READ;
  }
}

static int
delay_map (struct ndm_target *ti, struct ndm_clone *clone)
{
  struct delay_c *dc = ti->private;
  struct delay_class *c = &dc->class[class_of (clone->op)];
  bool io = clone->op != NDM_OP_CACHE && clone->op != NDM_OP_BLOCK_STATUS;

  if (io && c->delay > 0) {
    ndm_mutex_lock (&dc->lock);
    if (dc->may_delay) {
      clone->not_before = g_get_monotonic_time () +
        c->delay * G_TIME_SPAN_MILLISECOND;
      clone->map_context = c;
      g_queue_push_tail (&c->waiting, clone);
    }
    ndm_mutex_unlock (&dc->lock);
  }
  if (clone->op == NDM_OP_FLUSH) {
    unsigned i;

    /* R9: every device of the line, not only the flush class's as in
     * dm-delay: with a write device of its own, the writes cached there
     * would never be flushed.  ndm_clone_map_flush sends one flush per
     * device, none to a device without flush.
     */
    for (i = 0; i < DELAY_CLASSES; i++)
      ndm_clone_map_flush (clone, dc->class[i].dev);
    return NDM_MAPIO_REMAPPED;
  }
  ndm_clone_remap (clone, c->dev, (c->start << NDM_SECTOR_SHIFT) +
                   ndm_clone_target_offset (clone));
  return NDM_MAPIO_REMAPPED;
}

/* The clone ended (or was cancelled before it ran): it waits no more. */
static void
delay_forget (struct ndm_target *ti, struct ndm_clone *clone)
{
  struct delay_c *dc = ti->private;
  struct delay_class *c = clone->map_context;

  if (c == NULL)
    return;
  clone->map_context = NULL;
  ndm_mutex_lock (&dc->lock);
  g_queue_remove (&c->waiting, clone);
  ndm_mutex_unlock (&dc->lock);
}

static int
delay_end_io (struct ndm_target *ti, struct ndm_clone *clone, int *error)
{
  delay_forget (ti, clone);
  return NDM_ENDIO_DONE;
}

static void
delay_release_clone (struct ndm_target *ti, struct ndm_clone *clone)
{
  delay_forget (ti, clone);
}

static void
delay_presuspend (struct ndm_target *ti, bool noflush)
{
  struct delay_c *dc = ti->private;
  unsigned i;
  GList *l;

  ndm_mutex_lock (&dc->lock);
  dc->may_delay = false;
  for (i = 0; i < DELAY_CLASSES; i++)
    for (l = dc->class[i].waiting.head; l != NULL; l = l->next)
      ndm_clone_release_delay (l->data);
  ndm_mutex_unlock (&dc->lock);
}

static void
delay_resume (struct ndm_target *ti)
{
  struct delay_c *dc = ti->private;

  ndm_mutex_lock (&dc->lock);
  dc->may_delay = true;
  ndm_mutex_unlock (&dc->lock);
}

/* status: <reads> <writes> <flushes> being delayed now
 * table:  <device> <offset> <ms> [... as given]
 */
static void
delay_status (struct ndm_target *ti, enum ndm_status_type type,
              GString *result)
{
  struct delay_c *dc = ti->private;
  unsigned i;

  if (type == NDM_STATUS_INFO) {
    gint64 now = g_get_monotonic_time ();

    ndm_mutex_lock (&dc->lock);
    for (i = 0; i < DELAY_CLASSES; i++) {
      unsigned n = 0;
      GList *l;

      for (l = dc->class[i].waiting.head; l != NULL; l = l->next)
        n += ndm_clone_not_before (l->data) > now;
      g_string_append_printf (result, "%s%u", i ? " " : "", n);
    }
    ndm_mutex_unlock (&dc->lock);
    return;
  }
  for (i = 0; i < dc->argc / 3; i++)
    g_string_append_printf (result, "%s%s %" PRIu64 " %u", i ? " " : "",
                            dc->class[i].dev->uri, dc->class[i].start,
                            dc->class[i].delay);
}

static int
delay_iterate_devices (struct ndm_target *ti, ndm_iterate_devices_fn fn,
                       void *data)
{
  struct delay_c *dc = ti->private;
  unsigned i;
  int r = 0;

  for (i = 0; i < DELAY_CLASSES && r == 0; i++)
    r = fn (ti, dc->class[i].dev, dc->class[i].start << NDM_SECTOR_SHIFT,
            ti->len << NDM_SECTOR_SHIFT, data);
  return r;
}

const struct ndm_target_type ndm_delay_target = {
  .name = "delay", .version = { 1, 5, 0 },
  .ctr = delay_ctr, .dtr = delay_dtr, .map = delay_map,      /* required */
  .end_io = delay_end_io, .release_clone = delay_release_clone,
  .status = delay_status, .presuspend = delay_presuspend,    /* optional */
  .resume = delay_resume, .iterate_devices = delay_iterate_devices,
};
