/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-dm-plugin: the nbdkit front end of nbd-dm.  Thin glue: keys go to
 * the core, callbacks go to the core, errnos come back already mapped for
 * NBD clients (nbdkit turns errnos it does not know into EINVAL).  The only
 * file that includes <nbdkit-plugin.h>.
 *
 *     nbdkit dm table=vol.table
 *     nbdkit dm table-text='0 2048 linear nbd+unix:///?socket=/tmp/a 0'
 *
 * Thread model: PARALLEL.  Data callbacks run on nbdkit's worker threads,
 * each owning its request from start to reply (docs/design.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "nbd-dm/ndm.h"
#include "nbd-dm/control.h"
#include "nbd-dm/metrics.h"
#include "nbd-dm/target.h"

static struct ndm_config cfg;
static char *table_text;        /* the table, from either key */
static char *table_source;      /* "FILE: " or "table-text: ", for errors */
static char *control_path;      /* control=SOCKET */
static struct ndm_md *md;
static struct ndm_control *control;
static struct ndm_metrics *metrics;   /* metrics=ADDR */

/* nbdkit's debug flags (nbdkit-plugin(3), "Debug Flags"): nbdkit -D
 * dm.multipath=1 sets dm_debug_multipath, and so on, one per category of
 * the core's log (ndm_log_category_name), which decides what each shows.
 * Only errors reach the log without -v; info lines are nbdkit's debug
 * lines (-v); a category's debug lines need its flag too.
 */
NBDKIT_DLL_PUBLIC int dm_debug_device;
NBDKIT_DLL_PUBLIC int dm_debug_request;
NBDKIT_DLL_PUBLIC int dm_debug_multipath;
NBDKIT_DLL_PUBLIC int dm_debug_mirror;
NBDKIT_DLL_PUBLIC int dm_debug_control;

static int *const debug_flags[] = {
  [NDM_LOG_DEVICE]    = &dm_debug_device,
  [NDM_LOG_REQUEST]   = &dm_debug_request,
  [NDM_LOG_MULTIPATH] = &dm_debug_multipath,
  [NDM_LOG_MIRROR]    = &dm_debug_mirror,
  [NDM_LOG_CONTROL]   = &dm_debug_control,
};
G_STATIC_ASSERT (G_N_ELEMENTS (debug_flags) == NDM_LOG_NR_CATEGORIES);

static void
dm_log (enum ndm_log_level level, const char *msg)
{
  if (level == NDM_LOG_ERROR)
    nbdkit_error ("%s", msg);
  else
    nbdkit_debug ("%s", msg);
}

/* nbdkit sets the flags between plugin_init and .load, which passes
 * them on.
 */
static void
pass_debug_flags (void)
{
  unsigned i;

  for (i = 0; i < NDM_LOG_NR_CATEGORIES; i++)
    ndm_log_set_debug (i, *debug_flags[i]);
}

/* nbdkit has no shutdown callback for plugins (1.32), but its sleep
 * ends early, with ESHUTDOWN, when the server quits or this request's
 * client is gone: a zero sleep asks.
 */
static bool
dm_quitting (void)
{
  return nbdkit_nanosleep (0, 0) == -1;
}

static void
dm_load (void)
{
  ndm_config_init (&cfg);
  cfg.quitting = dm_quitting;
  /* Sizes and booleans as every nbdkit key writes them ("1T", "yes"). */
  cfg.parse_size = nbdkit_parse_size;
  cfg.parse_bool = nbdkit_parse_bool;
  ndm_set_log_fn (dm_log);
  pass_debug_flags ();
}

static void
dm_unload (void)
{
  ndm_metrics_free (metrics);
  metrics = NULL;
  ndm_control_free (control);
  control = NULL;
  ndm_md_free (md);
  md = NULL;
  free (table_text);
  free (table_source);
  free (control_path);
}

static int
set_table (const char *key, char *text, const char *source)
{
  if (table_text != NULL) {
    nbdkit_error ("%s: a table was given already: use one table= or "
                  "table-text=", key);
    free (text);
    return -1;
  }
  table_text = text;
  table_source = strdup (source);
  return 0;
}

static int
set_table_file (const char *key, const char *value)
{
  GError *err = NULL;
  char *text;
  int r;

  if (!g_file_get_contents (value, &text, NULL, &err)) {
    nbdkit_error ("table: %s", err->message);
    g_error_free (err);
    return -1;
  }
  r = set_table (key, strdup (text), value);
  g_free (text);
  return r;
}

static int
set_table_text (const char *key, const char *value)
{
  return set_table (key, strdup (value), "table-text");
}

static int
set_control (const char *key, const char *value)
{
  if (control_path != NULL) {
    nbdkit_error ("control: given twice");
    return -1;
  }
  control_path = nbdkit_absolute_path (value);
  return control_path != NULL ? 0 : -1;
}

/* The plugin's own keys; the tuning keys are the core's (core/config.c).
 * --help lists both, these first.
 */
static const struct dm_key {
  const char *key, *value_name, *help;
  int (*set) (const char *key, const char *value);
} dm_keys[] = {
  { "table", "FILE", "(required) dmsetup table of the device.",
    set_table_file },
  { "table-text", "TEXT", "The table inline; lines split on newline or ';'.",
    set_table_text },
  { "control", "SOCKET", "Serve nbd-dmsetup's control protocol there.",
    set_control },
};

static int
dm_config (const char *key, const char *value)
{
  GError *err = NULL;
  size_t i;
  int r;

  for (i = 0; i < sizeof dm_keys / sizeof dm_keys[0]; i++)
    if (strcmp (key, dm_keys[i].key) == 0)
      return dm_keys[i].set (key, value);

  r = ndm_config_set (&cfg, key, value, &err);
  if (r == 1)
    return 0;
  if (r == -1) {
    nbdkit_error ("%s", err->message);
    g_error_free (err);
    return -1;
  }
  nbdkit_error ("unknown parameter '%s' (see nbdkit dm --help)", key);
  return -1;
}

static int
dm_config_complete (void)
{
  if (table_text == NULL) {
    nbdkit_error ("a table is required: table=FILE or table-text=TEXT");
    return -1;
  }
  return 0;
}

/* --help: the plugin's keys, then the core's tuning keys. */
static char *
dm_config_help (void)
{
  GString *out = g_string_new (NULL);
  size_t i;

  for (i = 0; i < sizeof dm_keys / sizeof dm_keys[0]; i++)
    ndm_config_help_entry (out, dm_keys[i].key, dm_keys[i].value_name,
                           dm_keys[i].help);
  ndm_config_help (out);
  return g_string_free (out, FALSE);
}

/* The target registry, the URI schemes and the log's categories come
 * from the core, so this lists what the build knows.  nbdkit prints the
 * build's version before (version=, from .version).
 */
static void
dm_dump_plugin (void)
{
  g_autofree char *schemes = ndm_uri_schemes_list ("", ",", false);
  g_autofree char *libnbd = ndm_nbd_library_version ();
  const struct ndm_target_type *tt;
  const char *flag;
  size_t i;

  printf ("dm_targets=");
  for (i = 0; (tt = ndm_target_type_nth (i)) != NULL; i++)
    printf ("%s%s", i ? "," : "", tt->name);
  printf ("\n");
  for (i = 0; (tt = ndm_target_type_nth (i)) != NULL; i++)
    printf ("dm_target_%s=%u.%u.%u\n", tt->name, tt->version[0],
            tt->version[1], tt->version[2]);
  printf ("dm_uri_schemes=%s\n", schemes);
  printf ("dm_debug_flags=");
  for (i = 0; (flag = ndm_log_category_name (i)) != NULL; i++)
    printf ("%sdm.%s", i ? "," : "", flag);
  printf ("\n");
  printf ("dm_nbdkit_headers=%s\n", NBDKIT_VERSION_STRING);
  if (libnbd != NULL)
    printf ("libnbd_version=%s\n", libnbd);
}

/* nbdkit before 1.34 aborts ("raw_send_socket: Assertion 'sock >= 0'
 * failed") when a client hangs up with several replies pending: one
 * client dying mid-I/O takes every client and device of the server down
 * (fixed in nbdkit 1.34.0).  The plugin cannot avoid it short of one
 * request at a time per connection (nbdkit --threads 1), far too slow to
 * impose.  Nor can it ask the nbdkit that loaded it for its version
 * (nbdkit-plugin(3), "Run-time version of nbdkit": there is no way), so
 * it goes by the headers it was built with (dm_nbdkit_headers in
 * --dump-plugin): nbdkit promises to load plugins built against its own
 * or older headers only, so one built against 1.32 most likely runs on
 * 1.32, and one built against 1.34 on 1.34 or later.  Once, at start-up,
 * where the operator sees it (an error is the only message nbdkit shows
 * without -v); BUGS in nbdkit-dm-plugin(1) says what to do.
 */
static void
warn_old_nbdkit (void)
{
#if NBDKIT_VERSION_MAJOR == 1 && NBDKIT_VERSION_MINOR < 34
  nbdkit_error ("warning: built against nbdkit %s: nbdkit before 1.34 "
                "aborts when a client hangs up with replies pending, "
                "dropping every client; restart it on failure, or run it "
                "with --threads 1 (slower): see BUGS in nbdkit-dm-plugin(1)",
                NBDKIT_VERSION_STRING);
#endif
}

/* Open the devices now, while errors still reach the user's terminal. */
static int
dm_get_ready (void)
{
  GError *err = NULL;

  warn_old_nbdkit ();
  md = ndm_md_new (&cfg);
  if (ndm_md_load (md, table_text, &err) == -1) {
    nbdkit_error ("%s: %s", table_source, err->message);
    g_error_free (err);
    return -1;
  }
  /* The socket now, so a bad path stops start-up; its threads later. */
  if (control_path != NULL) {
    control = ndm_control_new (md, control_path, &err);
    if (control == NULL) {
      nbdkit_error ("%s", err->message);
      g_error_free (err);
      return -1;
    }
  }
  if (cfg.metrics[0] != '\0') {
    metrics = ndm_metrics_new (md, cfg.metrics, &err);
    if (metrics == NULL) {
      nbdkit_error ("%s", err->message);
      g_error_free (err);
      return -1;
    }
  }
  return 0;
}

/* Background threads (reconnects, control, metrics) only after nbdkit
 * forked.
 */
static int
dm_after_fork (void)
{
  GError *err = NULL;

  ndm_md_start (md);
  if ((control != NULL && ndm_control_start (control, &err) == -1) ||
      (metrics != NULL && ndm_metrics_start (metrics, &err) == -1)) {
    nbdkit_error ("%s", err->message);
    g_error_free (err);
    return -1;
  }
  return 0;
}

static void
dm_cleanup (void)
{
  if (md != NULL)
    ndm_md_set_shutting_down (md);
}

static void *
dm_open (int readonly)
{
  ndm_md_client_open (md);
  return NBDKIT_HANDLE_NOT_NEEDED;
}

static void
dm_close (void *handle)
{
  ndm_md_client_close (md);
}

static int64_t
dm_get_size (void *handle)
{
  return ndm_md_get_size (md);
}

static int
dm_block_size (void *handle, uint32_t *minimum, uint32_t *preferred,
               uint32_t *maximum)
{
  struct ndm_caps caps;

  ndm_md_get_caps (md, &caps);
  *minimum = caps.block_min;
  *preferred = caps.block_pref;
  *maximum = caps.block_max;
  return 0;
}

#define CAP(name, field)                        \
  static int                                    \
  dm_can_##name (void *handle)                  \
  {                                             \
    struct ndm_caps caps;                       \
                                                \
    ndm_md_get_caps (md, &caps);                \
    return caps.field;                          \
  }
CAP (write, write)
CAP (flush, flush)
CAP (trim, trim)
CAP (fast_zero, fast_zero)
CAP (multi_conn, multi_conn)

static int
dm_can_zero (void *handle)
{
  return 1;                     /* emulated per device where needed */
}

static int
dm_can_extents (void *handle)
{
  return 1;
}

static int
dm_can_fua (void *handle)
{
  struct ndm_caps caps;

  ndm_md_get_caps (md, &caps);
  return caps.fua ? NBDKIT_FUA_NATIVE : NBDKIT_FUA_NONE;
}

static int
dm_can_cache (void *handle)
{
  struct ndm_caps caps;

  ndm_md_get_caps (md, &caps);
  return caps.cache ? NBDKIT_CACHE_NATIVE : NBDKIT_CACHE_NONE;
}

static int
dm_io (enum ndm_op op, void *buf, uint32_t count, uint64_t offset,
       uint32_t flags)
{
  int err;

  if (ndm_md_io (md, op, buf, count, offset, flags, &err) == -1) {
    nbdkit_set_error (err);
    return -1;
  }
  return 0;
}

static uint32_t
req_flags (uint32_t nbdkit_flags)
{
  uint32_t f = 0;

  if (nbdkit_flags & NBDKIT_FLAG_FUA)
    f |= NDM_REQ_FUA;
  if (nbdkit_flags & NBDKIT_FLAG_MAY_TRIM)
    f |= NDM_REQ_MAY_TRIM;
  if (nbdkit_flags & NBDKIT_FLAG_FAST_ZERO)
    f |= NDM_REQ_FAST_ZERO;
  if (nbdkit_flags & NBDKIT_FLAG_REQ_ONE)
    f |= NDM_REQ_ONE;
  return f;
}

static int
dm_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
          uint32_t flags)
{
  return dm_io (NDM_OP_READ, buf, count, offset, 0);
}

static int
dm_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
           uint32_t flags)
{
  /* The core never writes into a write request's buffer. */
  return dm_io (NDM_OP_WRITE, (void *) buf, count, offset,
                req_flags (flags));
}

static int
dm_flush (void *handle, uint32_t flags)
{
  return dm_io (NDM_OP_FLUSH, NULL, 0, 0, 0);
}

static int
dm_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return dm_io (NDM_OP_TRIM, NULL, count, offset, req_flags (flags));
}

static int
dm_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return dm_io (NDM_OP_ZERO, NULL, count, offset, req_flags (flags));
}

static int
dm_cache (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return dm_io (NDM_OP_CACHE, NULL, count, offset, 0);
}

static int
dm_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
            struct nbdkit_extents *extents)
{
  g_autoptr (GArray) out =
    g_array_new (FALSE, FALSE, sizeof (struct ndm_extent));
  unsigned i;
  int err;

  if (ndm_md_extents (md, count, offset, req_flags (flags), out, &err)
      == -1) {
    nbdkit_set_error (err);
    return -1;
  }
  for (i = 0; i < out->len; i++) {
    const struct ndm_extent *e = &g_array_index (out, struct ndm_extent, i);
    uint32_t type = 0;

    if (e->type & NDM_EXTENT_HOLE)
      type |= NBDKIT_EXTENT_HOLE;
    if (e->type & NDM_EXTENT_ZERO)
      type |= NBDKIT_EXTENT_ZERO;
    if (nbdkit_add_extent (extents, e->offset, e->length, type) == -1)
      return -1;
  }
  return 0;
}

static struct nbdkit_plugin plugin = {
  .name              = "dm",
  .longname          = "nbd-dm: device-mapper over NBD",
  .version           = NDM_VERSION,
  .description       = "Serves one block device assembled from a dmsetup "
                       "table whose devices are other NBD exports.",
  .load              = dm_load,
  .unload            = dm_unload,
  .config            = dm_config,
  .config_complete   = dm_config_complete,
  /* .config_help is set by plugin_init, below. */
  .magic_config_key  = "table",
  .dump_plugin       = dm_dump_plugin,
  .get_ready         = dm_get_ready,
  .after_fork        = dm_after_fork,
  .cleanup           = dm_cleanup,
  .open              = dm_open,
  .close             = dm_close,
  .get_size          = dm_get_size,
  .block_size        = dm_block_size,
  .can_write         = dm_can_write,
  .can_flush         = dm_can_flush,
  .can_trim          = dm_can_trim,
  .can_zero          = dm_can_zero,
  .can_fast_zero     = dm_can_fast_zero,
  .can_extents       = dm_can_extents,
  .can_fua           = dm_can_fua,
  .can_multi_conn    = dm_can_multi_conn,
  .can_cache         = dm_can_cache,
  .pread             = dm_pread,
  .pwrite            = dm_pwrite,
  .flush             = dm_flush,
  .trim              = dm_trim,
  .zero              = dm_zero,
  .cache             = dm_cache,
  .extents           = dm_extents,
  .errno_is_preserved = 0,
};

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
/* nbdkit copies the struct that plugin_init returns before it calls
 * .load, and prints .config_help from its copy: the help, made from the
 * core's key table at run time, must be in the struct by then.  So the
 * macro's plugin_init is renamed, and the real one sets the help first.
 * The macros define them without prototypes; clang's
 * -Wmissing-prototypes says so.
 */
struct nbdkit_plugin *plugin_init (void);
struct nbdkit_plugin *dm_register_plugin (void);
#define plugin_init dm_register_plugin
NBDKIT_REGISTER_PLUGIN (plugin)
#undef plugin_init

NBDKIT_DLL_PUBLIC struct nbdkit_plugin *
plugin_init (void)
{
  static char *help;            /* lives as long as the process */

  if (help == NULL)
    help = dm_config_help ();
  plugin.config_help = help;
  return dm_register_plugin ();
}
