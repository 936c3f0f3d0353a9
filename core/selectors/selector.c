/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the built-in path selectors, and what they share. */
#include "selector.h"

const struct ndm_ps_type *
ndm_ps_type_lookup (const char *name)
{
  static const struct ndm_ps_type *const types[] = {
    &ndm_ps_round_robin, &ndm_ps_queue_length, &ndm_ps_service_time,
  };
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (types); i++)
    if (g_str_equal (types[i]->name, name))
      return types[i];
  return NULL;
}

static int
parse_repeat (const char *arg, unsigned *out, GError **err)
{
  uint64_t v;

  if (ndm_parse_u64 (arg, "repeat_count", &v, err) == -1)
    return -1;
  if (v == 0 || v > G_MAXUINT32) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "repeat_count '%s': expected 1 or more", arg);
    return -1;
  }
  *out = v;
  return 0;
}

int
ndm_ps_create (struct ndm_path_selector *ps, unsigned argc, char **argv,
               GError **err)
{
  struct ndm_ps_paths *pc;

  if (argc != 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "%s takes no selector arguments, got %u", ps->type->name,
                 argc);
    return -1;
  }
  pc = g_new0 (struct ndm_ps_paths, 1);
  pc->paths = g_ptr_array_new_with_free_func (g_free);
  ps->context = pc;
  return 0;
}

void
ndm_ps_destroy (struct ndm_path_selector *ps)
{
  struct ndm_ps_paths *pc = ps->context;

  g_ptr_array_unref (pc->paths);
  g_free (pc);
}

int
ndm_ps_add_path (struct ndm_path_selector *ps, struct ndm_path *path,
                 unsigned argc, char **argv, GError **err)
{
  struct ndm_ps_paths *pc = ps->context;
  struct ndm_ps_path *p;
  unsigned repeat = 1;

  if (argc > ps->type->table_args) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_TABLE,
                 "%s takes at most %u path argument%s (%s), got %u",
                 ps->type->name, ps->type->table_args,
                 ps->type->table_args == 1 ? "" : "s",
                 ps->type->path_args_usage, argc);
    return -1;
  }
  if (argc >= 1 && parse_repeat (argv[0], &repeat, err) == -1)
    return -1;
  p = g_malloc0 (ps->type->path_size);
  p->path = path;
  p->repeat_count = repeat;
  p->valid = true;
  path->ps_context = p;
  g_ptr_array_add (pc->paths, p);
  return 0;
}

void
ndm_ps_fail_path (struct ndm_path_selector *ps, struct ndm_path *path)
{
  ((struct ndm_ps_path *) path->ps_context)->valid = false;
}

void
ndm_ps_reinstate_path (struct ndm_path_selector *ps, struct ndm_path *path)
{
  ((struct ndm_ps_path *) path->ps_context)->valid = true;
}
