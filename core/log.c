/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: logging, and the errno classes of R5.
 *
 * Data-path errors are logged with their context (target, device, sector)
 * but rate-limited: a client hammering an error segment must not fill the
 * log faster than it can be read.  Levels are in nbd-dm/ndm.h (an error
 * is what needs a human; recovery is info); debug messages are off until
 * the front end turns their category on.
 *
 * Thread model: any thread.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nbd-dm/lock.h"
#include "log.h"

static ndm_log_fn log_fn;

/* Atomic: set once at start-up by a front end, but a test may swap it
 * while threads log.
 */
void
ndm_set_log_fn (ndm_log_fn fn)
{
  g_atomic_pointer_set (&log_fn, fn);
}

static void G_GNUC_PRINTF (2, 0)
log_emit (enum ndm_log_level level, const char *fmt, va_list ap)
{
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  ndm_log_fn fn = g_atomic_pointer_get (&log_fn);

  if (fn != NULL)
    fn (level, msg);
  else if (level == NDM_LOG_ERROR)
    fprintf (stderr, "nbd-dm: %s\n", msg);
}

/* At most ERRORS_PER_SECOND error lines a second; then one line says how
 * many were dropped.
 */
#define ERRORS_PER_SECOND 10

void
ndm_log_error (const char *fmt, ...)
{
  static struct ndm_mutex lock =
    NDM_MUTEX_INIT (NDM_LOCK_LOG, "the error log's limiter");
  static gint64 window;
  static unsigned in_window, dropped;
  gint64 now = g_get_monotonic_time () / G_USEC_PER_SEC;
  unsigned was_dropped = 0;
  bool emit;
  va_list ap;

  ndm_mutex_lock (&lock);
  if (now != window) {
    was_dropped = dropped;
    window = now;
    in_window = 0;
    dropped = 0;
  }
  emit = in_window++ < ERRORS_PER_SECOND;
  if (!emit)
    dropped++;
  ndm_mutex_unlock (&lock);

  if (was_dropped != 0) {
    g_autofree char *m =
      g_strdup_printf ("%u similar error messages suppressed", was_dropped);
    ndm_log_fn fn = g_atomic_pointer_get (&log_fn);

    if (fn != NULL)
      fn (NDM_LOG_ERROR, m);
    else
      fprintf (stderr, "nbd-dm: %s\n", m);
  }
  if (emit) {
    va_start (ap, fmt);
    log_emit (NDM_LOG_ERROR, fmt, ap);
    va_end (ap);
  }
}

void
ndm_log_info (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  log_emit (NDM_LOG_INFO, fmt, ap);
  va_end (ap);
}

/* The categories' names: the plugin's debug flags (nbdkit -D dm.NAME=1) and
 * the man page's DEBUG FLAGS are checked against this list.
 */
static const char *const category_names[NDM_LOG_NR_CATEGORIES] = {
  [NDM_LOG_DEVICE]    = "device",
  [NDM_LOG_REQUEST]   = "request",
  [NDM_LOG_MULTIPATH] = "multipath",
  [NDM_LOG_MIRROR]    = "mirror",
  [NDM_LOG_CONTROL]   = "control",
};

/* Atomic: the front end may turn a category on while threads log. */
static int debug_levels[NDM_LOG_NR_CATEGORIES];

const char *
ndm_log_category_name (unsigned category)
{
  return category < NDM_LOG_NR_CATEGORIES ? category_names[category] : NULL;
}

void
ndm_log_set_debug (enum ndm_log_category category, int level)
{
  g_return_if_fail (category < NDM_LOG_NR_CATEGORIES);
  g_atomic_int_set (&debug_levels[category], level);
}

bool
ndm_log_debug_on (enum ndm_log_category category)
{
  return g_atomic_int_get (&debug_levels[category]) > 0 &&
    g_atomic_pointer_get (&log_fn) != NULL;
}

void
ndm_log_debug_emit (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  log_emit (NDM_LOG_DEBUG, fmt, ap);
  va_end (ap);
}

const char *
ndm_errno_name (int err)
{
  const char *name = strerrorname_np (err);

  return name != NULL ? name : "unknown errno";
}

bool
ndm_errno_is_path_error (int err)
{
  switch (err) {
  case ENOTCONN:
  case ESHUTDOWN:
  case ECONNRESET:
  case ECONNREFUSED:
  case ECONNABORTED:
  case ETIMEDOUT:
  case EPIPE:
  case ENETDOWN:
  case ENETUNREACH:
  case EHOSTDOWN:
  case EHOSTUNREACH:
    return true;
  default:
    return false;
  }
}

int
ndm_errno_for_client (int err, bool shutting_down)
{
  if (err == 0)
    return 0;
  if (ndm_errno_is_path_error (err))
    return shutting_down ? ESHUTDOWN : EIO;
  switch (err) {
  /* The errnos nbdkit turns into NBD errors (server/protocol.c). */
  case EPERM:
  case EROFS:
  case EIO:
  case ENOMEM:
  case ENOSPC:
  case EFBIG:
  case EDQUOT:
  case EINVAL:
  case ENOTSUP:
  case EOVERFLOW:
    return err;
  default:
    return EIO;
  }
}

