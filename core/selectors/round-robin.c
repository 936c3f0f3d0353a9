/* SPDX-License-Identifier: BSD-3-Clause */
/* round-robin: each valid path in turn, repeat_count I/Os at a time
 * (dm-round-robin).
 *
 *     round-robin 0 <#paths> 1 {<path> <repeat_count>}...
 *
 * repeat_count (per path, default 1) is how many I/Os go to a path before
 * the next one's turn.
 */
#include "selector.h"

static struct ndm_path *
rr_select_path (struct ndm_path_selector *ps, uint64_t nr_bytes)
{
  struct ndm_ps_paths *pc = ps->context;
  unsigned i, n = pc->paths->len;

  /* n + 1 looks: the current path again, after the others, with a new
   * turn.
   */
  for (i = 0; i <= n; i++) {
    struct ndm_ps_path *p = pc->paths->pdata[pc->next % n];

    if (p->valid && pc->used < p->repeat_count) {
      pc->used++;
      return p->path;
    }
    /* This one's turn is over (or it is failed): the next one. */
    pc->next = (pc->next + 1) % n;
    pc->used = 0;
  }
  return NULL;
}

static void
rr_status (struct ndm_path_selector *ps, struct ndm_path *path,
           enum ndm_status_type type, GString *out)
{
  if (path == NULL)
    g_string_append (out, "0 ");
  else if (type == NDM_STATUS_TABLE)
    g_string_append_printf (out, "%u ", ((struct ndm_ps_path *)
                                         path->ps_context)->repeat_count);
}

const struct ndm_ps_type ndm_ps_round_robin = {
  .name = "round-robin", .table_args = 1, .info_args = 0,
  .path_args_usage = "repeat_count",
  .path_size = sizeof (struct ndm_ps_path),
  .create = ndm_ps_create, .destroy = ndm_ps_destroy,
  .add_path = ndm_ps_add_path,
  .fail_path = ndm_ps_fail_path, .reinstate_path = ndm_ps_reinstate_path,
  .select_path = rr_select_path, .status = rr_status,
};
