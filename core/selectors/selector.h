/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: path selectors, the policies that pick a path of a multipath
 * priority group for each I/O (dm's dm-path-selector.h).
 *
 * A selector is an ops table; one instance per priority group.  The
 * multipath target calls every op with its lock held (see multipath.c),
 * so a selector needs no lock of its own.  Paths enter with add_path and
 * are valid until fail_path, and again after reinstate_path.
 */
#ifndef NBD_DM_SELECTOR_H
#define NBD_DM_SELECTOR_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "nbd-dm/target.h"

/* One path as the selector sees it. */
struct ndm_path {
  struct ndm_device *dev;
  void *ps_context;             /* the selector's per-path data */
};

struct ndm_path_selector;

struct ndm_ps_type {
  const char *name;
  unsigned table_args;          /* per-path args it takes, at most */
  const char *path_args_usage;  /* their names, for errors */
  size_t path_size;             /* per-path data, from struct ndm_ps_path */
  unsigned info_args;           /* per-path words in status info */

  /* Selector args (before the paths).  Required. */
  int (*create) (struct ndm_path_selector *ps, unsigned argc, char **argv,
                 GError **err);
  void (*destroy) (struct ndm_path_selector *ps);
  /* Per-path args (at most table_args).  Required. */
  int (*add_path) (struct ndm_path_selector *ps, struct ndm_path *path,
                   unsigned argc, char **argv, GError **err);
  void (*fail_path) (struct ndm_path_selector *ps, struct ndm_path *path);
  void (*reinstate_path) (struct ndm_path_selector *ps,
                          struct ndm_path *path);
  /* A valid path for an I/O of nr_bytes, or NULL if none is valid. */
  struct ndm_path *(*select_path) (struct ndm_path_selector *ps,
                                   uint64_t nr_bytes);
  /* Optional: an I/O of nr_bytes starts / ended on path. */
  void (*start_io) (struct ndm_path_selector *ps, struct ndm_path *path,
                    uint64_t nr_bytes);
  void (*end_io) (struct ndm_path_selector *ps, struct ndm_path *path,
                  uint64_t nr_bytes);
  /* Optional.  path NULL: the selector's own status/table args (append
   * "0 " without it); else the path's, each word followed by a blank,
   * as dm-mpath lays them out.
   */
  void (*status) (struct ndm_path_selector *ps, struct ndm_path *path,
                  enum ndm_status_type type, GString *out);
};

struct ndm_path_selector {
  const struct ndm_ps_type *type;
  void *context;
};

const struct ndm_ps_type *ndm_ps_type_lookup (const char *name);

/* What the built-in selectors share (selector.c).  Each keeps, as its
 * context, the paths in table order; each path's own data starts with
 * struct ndm_ps_path.
 */
struct ndm_ps_path {
  struct ndm_path *path;
  unsigned repeat_count;        /* path arg 1, default 1 */
  bool valid;
};

struct ndm_ps_paths {
  GPtrArray *paths;             /* struct ndm_ps_path * (or larger) */
  unsigned next;                /* round-robin: whose turn; the others:
                                   where the next search starts */
  unsigned used;                /* round-robin: I/Os in this turn */
};

/* create: no selector arguments (none of dm's three takes any). */
int ndm_ps_create (struct ndm_path_selector *ps, unsigned argc, char **argv,
                   GError **err);
void ndm_ps_destroy (struct ndm_path_selector *ps);
/* add_path: at most table_args path arguments, the first a
 * repeat_count; allocates path_size bytes (zeroed, starting with struct
 * ndm_ps_path) and links them to path.
 */
int ndm_ps_add_path (struct ndm_path_selector *ps, struct ndm_path *path,
                     unsigned argc, char **argv, GError **err);
void ndm_ps_fail_path (struct ndm_path_selector *ps, struct ndm_path *path);
void ndm_ps_reinstate_path (struct ndm_path_selector *ps,
                            struct ndm_path *path);

extern const struct ndm_ps_type ndm_ps_round_robin;
extern const struct ndm_ps_type ndm_ps_queue_length;
extern const struct ndm_ps_type ndm_ps_service_time;

#endif /* NBD_DM_SELECTOR_H */
