/* SPDX-License-Identifier: BSD-3-Clause */
/* queue-length: the valid path with the fewest I/Os in flight
 * (dm-queue-length).
 *
 *     queue-length 0 <#paths> 1 {<path> <repeat_count>}...
 *
 * Ties go round: the search starts one path further each time, as dm's
 * rotates its list, so an idle group is used evenly.  repeat_count
 * (default 1) is accepted for dm compatibility; as in dm, a path is
 * chosen afresh for every I/O.  Status info per path: its I/Os in
 * flight.
 */
#include "selector.h"

struct ql_path {
  struct ndm_ps_path base;
  unsigned inflight;
};

static struct ndm_path *
ql_select_path (struct ndm_path_selector *ps, uint64_t nr_bytes)
{
  struct ndm_ps_paths *pc = ps->context;
  struct ql_path *best = NULL;
  unsigned i, n = pc->paths->len;

  for (i = 0; i < n; i++) {
    struct ql_path *p = pc->paths->pdata[(pc->next + i) % n];

    if (p->base.valid && (best == NULL || p->inflight < best->inflight))
      best = p;
  }
  pc->next = (pc->next + 1) % n;
  return best != NULL ? best->base.path : NULL;
}

static void
ql_start_io (struct ndm_path_selector *ps, struct ndm_path *path,
             uint64_t nr_bytes)
{
  ((struct ql_path *) path->ps_context)->inflight++;
}

static void
ql_end_io (struct ndm_path_selector *ps, struct ndm_path *path,
           uint64_t nr_bytes)
{
  ((struct ql_path *) path->ps_context)->inflight--;
}

static void
ql_status (struct ndm_path_selector *ps, struct ndm_path *path,
           enum ndm_status_type type, GString *out)
{
  struct ql_path *p;

  if (path == NULL) {
    g_string_append (out, "0 ");
    return;
  }
  p = path->ps_context;
  g_string_append_printf (out, "%u ", type == NDM_STATUS_INFO
                          ? p->inflight : p->base.repeat_count);
}

const struct ndm_ps_type ndm_ps_queue_length = {
  .name = "queue-length", .table_args = 1, .info_args = 1,
  .path_args_usage = "repeat_count",
  .path_size = sizeof (struct ql_path),
  .create = ndm_ps_create, .destroy = ndm_ps_destroy,
  .add_path = ndm_ps_add_path,
  .fail_path = ndm_ps_fail_path, .reinstate_path = ndm_ps_reinstate_path,
  .select_path = ql_select_path, .start_io = ql_start_io,
  .end_io = ql_end_io, .status = ql_status,
};
