/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: starting background threads without aborting (core/thread.c),
 * for the core and its targets.
 */
#ifndef NBD_DM_THREAD_H
#define NBD_DM_THREAD_H

#include <stdbool.h>

#include <glib.h>

/* g_thread_try_new, which fails instead of aborting when no thread can
 * be made (R13): every background thread of the core starts here.  On
 * failure it logs "cannot start <name>: <why>" and returns NULL; callers
 * go on without the thread and say what that costs.
 */
GThread *ndm_thread_try_new (const char *name, GThreadFunc fn,
                             gpointer data);
/* Tests only: when set (g_atomic_pointer_set), a thread named so is
 * refused as if none could be made.
 */
extern bool (*ndm_thread_test_refuse) (const char *name);

#endif /* NBD_DM_THREAD_H */
