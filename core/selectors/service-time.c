/* SPDX-License-Identifier: BSD-3-Clause */
/* service-time: the valid path that would finish this I/O soonest,
 * estimated as (bytes in flight + this I/O) / relative throughput
 * (dm-service-time).
 *
 *     service-time 0 <#paths> 2 {<path> <repeat_count> <relative_throughput>}...
 *
 * relative_throughput is 0 to 100 (default 1); a path with 0 is used only
 * when no other is valid.  Ties go round: the search starts one path
 * further each time, as dm's rotates its list.  Status info
 * per path: bytes in flight and relative throughput.
 */
#include "selector.h"

#define ST_MAX_RELATIVE_THROUGHPUT 100

struct st_path {
  struct ndm_ps_path base;
  unsigned relative_throughput;
  uint64_t inflight_size;
};

static int
st_add_path (struct ndm_path_selector *ps, struct ndm_path *path,
             unsigned argc, char **argv, GError **err)
{
  uint64_t tput = 1;
  struct st_path *p;

  if (argc == 2) {
    if (ndm_parse_u64 (argv[1], "relative_throughput", &tput, err) == -1)
      return -1;
    if (tput > ST_MAX_RELATIVE_THROUGHPUT) {
      g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                   "relative_throughput '%s': expected 0 to %d", argv[1],
                   ST_MAX_RELATIVE_THROUGHPUT);
      return -1;
    }
  }
  if (ndm_ps_add_path (ps, path, argc, argv, err) == -1)
    return -1;
  p = path->ps_context;
  p->relative_throughput = tput;
  return 0;
}

/* Does a finish sooner than b?  (sa / ta < sb / tb, without dividing.) */
static bool
st_better (const struct st_path *a, const struct st_path *b, uint64_t nr)
{
  unsigned __int128 sa = a->inflight_size + nr, sb = b->inflight_size + nr;

  if (a->relative_throughput == 0 || b->relative_throughput == 0)
    return a->relative_throughput > b->relative_throughput;
  return sa * b->relative_throughput < sb * a->relative_throughput;
}

static struct ndm_path *
st_select_path (struct ndm_path_selector *ps, uint64_t nr_bytes)
{
  struct ndm_ps_paths *pc = ps->context;
  struct st_path *best = NULL;
  unsigned i, n = pc->paths->len;

  for (i = 0; i < n; i++) {
    struct st_path *p = pc->paths->pdata[(pc->next + i) % n];

    if (p->base.valid && (best == NULL || st_better (p, best, nr_bytes)))
      best = p;
  }
  pc->next = (pc->next + 1) % n;
  return best != NULL ? best->base.path : NULL;
}

static void
st_start_io (struct ndm_path_selector *ps, struct ndm_path *path,
             uint64_t nr_bytes)
{
  ((struct st_path *) path->ps_context)->inflight_size += nr_bytes;
}

static void
st_end_io (struct ndm_path_selector *ps, struct ndm_path *path,
           uint64_t nr_bytes)
{
  ((struct st_path *) path->ps_context)->inflight_size -= nr_bytes;
}

static void
st_status (struct ndm_path_selector *ps, struct ndm_path *path,
           enum ndm_status_type type, GString *out)
{
  struct st_path *p;

  if (path == NULL) {
    g_string_append (out, "0 ");
    return;
  }
  p = path->ps_context;
  if (type == NDM_STATUS_INFO)
    g_string_append_printf (out, "%" PRIu64 " %u ", p->inflight_size,
                            p->relative_throughput);
  else
    g_string_append_printf (out, "%u %u ", p->base.repeat_count,
                            p->relative_throughput);
}

const struct ndm_ps_type ndm_ps_service_time = {
  .name = "service-time", .table_args = 2, .info_args = 2,
  .path_args_usage = "repeat_count relative_throughput",
  .path_size = sizeof (struct st_path),
  .create = ndm_ps_create, .destroy = ndm_ps_destroy, .add_path = st_add_path,
  .fail_path = ndm_ps_fail_path, .reinstate_path = ndm_ps_reinstate_path,
  .select_path = st_select_path, .start_io = st_start_io,
  .end_io = st_end_io, .status = st_status,
};
