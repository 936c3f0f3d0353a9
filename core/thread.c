/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: starting background threads without aborting (R13).
 *
 * g_thread_new aborts the process when no thread can be made (RLIMIT_NPROC,
 * memory); a server must not.  Every background thread of the core (the
 * reconnect thread of a device, the multipath checker, the control
 * socket's threads, the fence watcher) starts through here, and its caller
 * goes on without it.
 *
 * Thread model: any thread.
 */
#include "core.h"
#include "log.h"

bool (*ndm_thread_test_refuse) (const char *name);

GThread *
ndm_thread_try_new (const char *name, GThreadFunc fn, gpointer data)
{
  GError *e = NULL;
  GThread *t = NULL;
  bool (*refuse) (const char *) = g_atomic_pointer_get (&ndm_thread_test_refuse);

  if (G_UNLIKELY (refuse != NULL) && refuse (name))
    g_set_error (&e, G_THREAD_ERROR, G_THREAD_ERROR_AGAIN,
                 "Resource temporarily unavailable (refused by a test)");
  else
    t = g_thread_try_new (name, fn, data, &e);
  if (t == NULL) {
    ndm_log_error ("cannot start %s: %s", name, e->message);
    g_error_free (e);
  }
  return t;
}
