/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the device registry of a mapped device (dm_get_device).
 *
 * The same URI used by several targets, or by the live and a new table,
 * is one device with one connection pool.  Devices are opened on first
 * use and closed when the last target using them is destroyed.
 *
 * Thread model: control path only (table construction and destruction),
 * under md->devices_lock.  Opening a device connects to it, so a slow
 * server delays only the control path, within connect-timeout.
 */
#include <errno.h>
#include <string.h>

#include "core.h"
#include "log.h"
#include "stats.h"

void
ndm_device_limits_fixup (struct ndm_device_limits *l)
{
  if (l->min_block == 0 || (l->min_block & (l->min_block - 1)) != 0)
    l->min_block = 1;
  if (l->max_data == 0)
    l->max_data = NDM_DEFAULT_MAX_DATA;
  l->max_data = MIN (l->max_data, NDM_HARD_MAX_DATA);
  l->max_data &= ~(l->min_block - 1);
  if (l->max_data < l->min_block)
    l->max_data = l->min_block;
  if (l->pref_block == 0)
    l->pref_block = MAX (4096u, l->min_block);
  if (l->max_len == 0)
    l->max_len = NDM_DEFAULT_MAX_LEN;
  l->max_len &= ~(l->min_block - 1);
}

struct ndm_device *
ndm_md_get_device (struct ndm_md *md, const char *uri, bool tolerant,
                   GError **err)
{
  const struct ndm_device_class *class = md->cfg.device_class;
  struct ndm_device *dev;

  ndm_mutex_lock (&md->devices_lock);
  dev = g_hash_table_lookup (md->devices, uri);
  if (dev != NULL) {
    dev->refs++;
    ndm_mutex_unlock (&md->devices_lock);
    return dev;
  }

  dev = class->open (uri, &md->cfg, tolerant, err);
  if (dev == NULL) {
    ndm_mutex_unlock (&md->devices_lock);
    return NULL;
  }
  ndm_device_limits_fixup (&dev->limits);
  dev->md = md;
  dev->stats = ndm_stats_new ();
  dev->refs = 1;
  dev->prison = ndm_prison_new ();
  g_hash_table_insert (md->devices, dev->uri, dev);
  if (md->started && dev->ops->start != NULL)
    dev->ops->start (dev);
  ndm_mutex_unlock (&md->devices_lock);

  ndm_log_info ("device %s: %" PRIu64 " bytes, block %u/%u/%u%s%s%s%s",
                 uri, dev->size, dev->limits.min_block,
                 dev->limits.pref_block, dev->limits.max_data,
                 dev->caps.read_only ? ", read-only" : "",
                 dev->caps.fua ? ", fua" : "",
                 dev->caps.multi_conn ? ", multi-conn" : "",
                 dev->caps.extents ? ", extents" : "");
  return dev;
}

void
ndm_md_put_device (struct ndm_md *md, struct ndm_device *dev)
{
  ndm_mutex_lock (&md->devices_lock);
  g_assert (dev->refs > 0);
  if (--dev->refs > 0) {
    ndm_mutex_unlock (&md->devices_lock);
    return;
  }
  g_hash_table_remove (md->devices, dev->uri);
  ndm_mutex_unlock (&md->devices_lock);

  ndm_stats_free (dev->stats);
  /* Quarantines (ghosts) may outlive the device: they hold the prison. */
  ndm_prison_unref (g_steal_pointer (&dev->prison));
  dev->ops->close (dev);
}
