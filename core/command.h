/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: one control command as its verb's function sees it
 * (core-private): core/command.c parses the request into it and runs
 * the verb, core/command-report.c holds the verbs that report on the
 * device for scripts (info --columns, deps, targets).
 *
 * Thread model: a command lives on the control thread that runs it.
 */
#ifndef NBD_DM_COMMAND_H
#define NBD_DM_COMMAND_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "nbd-dm/control.h"
#include "nbd-dm/device.h"
#include "stats.h"

struct cmd {
  struct ndm_md *md;
  const struct ndm_control_verb *v;
  int argc;                     /* positional words, verb excluded */
  char **argv;
  uint64_t number;              /* argv[0], if v->number names it */
  bool json;
  bool noflush;
  bool clear;
  bool allow_resize;
  const char *format;           /* stats --format=, NULL: text */
  bool inactive;                /* table --inactive */
  const char *target_type;      /* --target TYPE, or NULL */
  bool columns;                 /* info --columns, and its: */
  const char *fields;           /*   --options, or NULL */
  bool noheadings;
  const char *separator;        /*   --separator, or NULL */
  bool (*cancelled) (void *data);
  void *cancel_data;
};

/* The name the device goes by (name=, or "nbd-dm"). */
const char *ndm_cmd_device_name (struct ndm_md *md);

/* How dev stands (st->reason is the caller's to free); that as status
 * and stats print it ("up", "down (why)"); dev's JSON object, with the
 * counters io if not NULL.
 */
void ndm_cmd_device_status (struct ndm_device *dev,
                            struct ndm_device_status *st);
void ndm_cmd_device_status_format (const struct ndm_device_status *st,
                                   GString *out);
void ndm_cmd_device_json (struct ndm_device *dev,
                          const struct ndm_io_stats *io, JsonBuilder *b);

/* The verbs of core/command-report.c. */
int ndm_cmd_info_columns (struct cmd *c, GString *out, GError **err);
int ndm_cmd_deps (struct cmd *c, GString *out, GError **err);
int ndm_cmd_targets (struct cmd *c, GString *out, GError **err);

#endif /* NBD_DM_COMMAND_H */
