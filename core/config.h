/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the tuning keys' table (core/config.c), for the core and the
 * unit tests.  Front ends use ndm_config_init, ndm_config_set and
 * ndm_config_help (nbd-dm/ndm.h).
 */
#ifndef NBD_DM_CONFIG_H
#define NBD_DM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

struct ndm_config;

/* What a key's value is: it decides the syntax the user writes, the type
 * of the field in struct ndm_config and how the default is shown.
 */
enum ndm_config_kind {
  NDM_CONFIG_STRING,            /* char[]: min to max characters, no blanks */
  NDM_CONFIG_COUNT,             /* unsigned: a number from min to max */
  NDM_CONFIG_SIZE,              /* uint64_t: bytes, in the front end's size
                                   syntax (cfg->parse_size) */
  NDM_CONFIG_RATE,              /* uint64_t: bytes/s, a size, optional /s
                                   ("RATE"); 0 allowed */
  NDM_CONFIG_SECONDS,           /* unsigned: milliseconds, written in s */
  NDM_CONFIG_MILLISECONDS,      /* unsigned: milliseconds */
  NDM_CONFIG_BOOL,              /* bool: the front end's syntax
                                   (cfg->parse_bool) */
};

struct ndm_config_key {
  const char *name;             /* as the user writes it: "max-inflight" */
  enum ndm_config_kind kind;
  size_t offset;                /* the field of struct ndm_config */
  size_t size;                  /* sizeof that field */
  uint64_t min, max;            /* in the unit the user writes (a string:
                                   its length) */
  uint64_t def;                 /* the default, in that unit */
  const char *def_string;       /* NDM_CONFIG_STRING's default */
  const char *help;             /* --help's text, without the default */
  const char *value_name;       /* NULL: the kind's ("NAME", "SIZE") */
};

extern const struct ndm_config_key ndm_config_keys[];
extern const size_t ndm_config_nr_keys;

/* The key called name, or NULL. */
const struct ndm_config_key *ndm_config_key_find (const char *name);

/* The key's default as the user would write it ("256M", "30", "false";
 * "none" for an empty string), as --help and the man page show it.
 */
void ndm_config_key_format_default (const struct ndm_config_key *key,
                                    GString *out);

/* The user's name for the kind's values ("SIZE", "SECS"), and the size of
 * the field it stores into.
 */
const char *ndm_config_kind_value_name (enum ndm_config_kind kind);
size_t ndm_config_kind_field_size (enum ndm_config_kind kind);
/* The key's own name for its value ("ADDR"), or its kind's. */
const char *ndm_config_key_value_name (const struct ndm_config_key *key);

/* A rate as the user writes it, in a key or a message ("64M/s", "64M",
 * "0": a size in the syntax of cfg->parse_size, optionally "/s"): bytes
 * per second in *out, or false.
 */
bool ndm_config_parse_rate (const struct ndm_config *cfg, const char *value,
                            uint64_t *out);

#endif /* NBD_DM_CONFIG_H */
