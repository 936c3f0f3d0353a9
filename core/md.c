/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the mapped device (dm's mapped_device) and its tuning keys.
 *
 * It owns the live table and the device registry, and is the entry point
 * for front ends: ndm_md_io and ndm_md_extents run one request each on the
 * calling thread.
 *
 * Thread model: new, load, start and free on one control thread while no
 * request runs; io/extents/size/caps on any number of threads.  The live
 * table pointer is protected by table_lock (order 1 in core/request.c),
 * taken for reading only long enough to take a reference.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "log.h"

const char ndm_config_help[] = NDM_CONFIG_HELP;

void
ndm_config_init (struct ndm_config *cfg)
{
  memset (cfg, 0, sizeof *cfg);
  cfg->connections = 2;
  cfg->max_inflight = 256 * NDM_MIB;
  cfg->max_bounce = 64 * NDM_MIB;
  cfg->connect_timeout_ms = 10000;
  cfg->reconnect_ms = 1000;
  cfg->structured_replies = false;
}

/* "64M", "1G", "4096": bytes, binary suffixes as nbdkit reads them. */
static int
parse_size (const char *key, const char *value, uint64_t *out, GError **err)
{
  char *end;
  guint64 v, mult = 1;

  errno = 0;
  v = g_ascii_strtoull (value, &end, 10);
  if (end == value || errno != 0 || value[0] == '-')
    goto bad;
  switch (*end) {
  case '\0': break;
  case 'k': case 'K': mult = NDM_KIB; end++; break;
  case 'm': case 'M': mult = NDM_MIB; end++; break;
  case 'g': case 'G': mult = NDM_GIB; end++; break;
  default: goto bad;
  }
  if (*end != '\0' || v == 0 || v > G_MAXUINT64 / mult)
    goto bad;
  *out = v * mult;
  return 0;

 bad:
  g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG,
               "%s: '%s' is not a size: expected a positive number of "
               "bytes with an optional K, M or G suffix", key, value);
  return -1;
}

static int
parse_uint (const char *key, const char *value, unsigned min, unsigned max,
            unsigned *out, GError **err)
{
  guint64 v;

  if (!g_ascii_string_to_unsigned (value, 10, min, max, &v, NULL)) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG,
                 "%s: '%s' is not a number from %u to %u",
                 key, value, min, max);
    return -1;
  }
  *out = v;
  return 0;
}

int
ndm_config_set (struct ndm_config *cfg, const char *key, const char *value,
                GError **err)
{
  unsigned u;

  if (strcmp (key, "connections") == 0)
    return parse_uint (key, value, 1, 64, &cfg->connections, err) ? -1 : 1;
  if (strcmp (key, "max-inflight") == 0)
    return parse_size (key, value, &cfg->max_inflight, err) ? -1 : 1;
  if (strcmp (key, "max-bounce") == 0)
    return parse_size (key, value, &cfg->max_bounce, err) ? -1 : 1;
  if (strcmp (key, "connect-timeout") == 0) {
    if (parse_uint (key, value, 1, 3600, &u, err) == -1)
      return -1;
    cfg->connect_timeout_ms = u * 1000;
    return 1;
  }
  if (strcmp (key, "io-timeout") == 0) {
    if (parse_uint (key, value, 0, 86400, &u, err) == -1)
      return -1;
    cfg->io_timeout_ms = u * 1000;
    return 1;
  }
  if (strcmp (key, "reconnect-delay") == 0)
    return parse_uint (key, value, 1, 3600000, &cfg->reconnect_ms, err)
      ? -1 : 1;
  if (strcmp (key, "structured-replies") == 0) {
    if (g_ascii_strcasecmp (value, "true") == 0 ||
        g_ascii_strcasecmp (value, "on") == 0 || strcmp (value, "1") == 0)
      cfg->structured_replies = true;
    else if (g_ascii_strcasecmp (value, "false") == 0 ||
             g_ascii_strcasecmp (value, "off") == 0 ||
             strcmp (value, "0") == 0)
      cfg->structured_replies = false;
    else {
      g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG,
                   "%s: '%s' is not a boolean: expected true or false",
                   key, value);
      return -1;
    }
    return 1;
  }
  return 0;
}

struct ndm_md *
ndm_md_new (const struct ndm_config *cfg)
{
  struct ndm_md *md = g_new0 (struct ndm_md, 1);

  md->cfg = *cfg;
  if (md->cfg.device_class == NULL)
    md->cfg.device_class = &ndm_nbd_device_class;
  g_rw_lock_init (&md->table_lock);
  g_mutex_init (&md->devices_lock);
  md->devices = g_hash_table_new (g_str_hash, g_str_equal);
  ndm_budget_init (&md->inflight, "max-inflight", cfg->max_inflight);
  ndm_budget_init (&md->bounce, "max-bounce", cfg->max_bounce);
  return md;
}

int
ndm_md_load (struct ndm_md *md, const char *text, GError **err)
{
  struct ndm_table *t = ndm_table_create (md, text, err), *old;

  if (t == NULL)
    return -1;
  g_rw_lock_writer_lock (&md->table_lock);
  old = md->live;
  md->live = t;
  g_rw_lock_writer_unlock (&md->table_lock);
  if (old != NULL)
    ndm_table_unref (old);
  return 0;
}

static void
device_start (gpointer key, gpointer value, gpointer data)
{
  struct ndm_device *dev = value;

  if (dev->ops->start != NULL)
    dev->ops->start (dev);
}

void
ndm_md_start (struct ndm_md *md)
{
  g_mutex_lock (&md->devices_lock);
  md->started = true;
  g_hash_table_foreach (md->devices, device_start, NULL);
  g_mutex_unlock (&md->devices_lock);
}

void
ndm_md_free (struct ndm_md *md)
{
  if (md == NULL)
    return;
  if (md->live != NULL)
    ndm_table_unref (md->live);
  g_assert (g_hash_table_size (md->devices) == 0);
  g_hash_table_unref (md->devices);
  g_mutex_clear (&md->devices_lock);
  g_rw_lock_clear (&md->table_lock);
  ndm_budget_clear (&md->inflight);
  ndm_budget_clear (&md->bounce);
  g_free (md);
}

struct ndm_table *
ndm_md_get_table (struct ndm_md *md)
{
  struct ndm_table *t;

  g_rw_lock_reader_lock (&md->table_lock);
  t = md->live;
  ndm_table_ref (t);
  g_rw_lock_reader_unlock (&md->table_lock);
  return t;
}

uint64_t
ndm_md_get_size (struct ndm_md *md)
{
  struct ndm_table *t = ndm_md_get_table (md);
  uint64_t size = t->size;

  ndm_table_unref (t);
  return size;
}

void
ndm_md_get_caps (struct ndm_md *md, struct ndm_caps *caps)
{
  struct ndm_table *t = ndm_md_get_table (md);

  *caps = t->caps;
  ndm_table_unref (t);
}

void
ndm_md_set_shutting_down (struct ndm_md *md)
{
  g_atomic_int_set (&md->shutting_down, 1);
}

int
ndm_md_io (struct ndm_md *md, enum ndm_op op, void *buf, uint64_t count,
           uint64_t offset, uint32_t flags, int *err)
{
  int e;

  g_assert (op != NDM_OP_BLOCK_STATUS);
  if (ndm_request_run (md, op, buf, count, offset, flags, NULL, &e) == 0)
    return 0;
  *err = ndm_errno_for_client (e, g_atomic_int_get (&md->shutting_down));
  return -1;
}

int
ndm_md_extents (struct ndm_md *md, uint64_t count, uint64_t offset,
                uint32_t flags, GArray *out, int *err)
{
  int e;

  if (ndm_request_run (md, NDM_OP_BLOCK_STATUS, NULL, count, offset, flags,
                       out, &e) == 0)
    return 0;
  *err = ndm_errno_for_client (e, g_atomic_int_get (&md->shutting_down));
  return -1;
}

void
ndm_md_table (struct ndm_md *md, GString *out)
{
  struct ndm_table *t = ndm_md_get_table (md);

  ndm_table_format (t, NDM_STATUS_TABLE, out);
  ndm_table_unref (t);
}

void
ndm_md_status (struct ndm_md *md, GString *out)
{
  struct ndm_table *t = ndm_md_get_table (md);

  ndm_table_format (t, NDM_STATUS_INFO, out);
  ndm_table_unref (t);
}
