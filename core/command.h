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

/* A device's state as status and stats print it ("up", "down (why)"). */
void ndm_cmd_device_state (struct ndm_device *dev, GString *out);

/* The payload of a JSON answer: b's one value as a line. */
void ndm_cmd_json_out (JsonBuilder *b, GString *out);

/* The verbs of core/command-report.c. */
int ndm_cmd_info_columns (struct cmd *c, GString *out, GError **err);
int ndm_cmd_deps (struct cmd *c, GString *out, GError **err);
int ndm_cmd_targets (struct cmd *c, GString *out, GError **err);

#endif /* NBD_DM_COMMAND_H */
