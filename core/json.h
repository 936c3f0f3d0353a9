/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: JSON for the control plane, through json-glib (core-private).
 *
 * Every --json payload is one object built with a JsonBuilder: it opens
 * with "version" (NDM_JSON_VERSION, the format's version, documented in
 * nbd-dmsetup(8)), and every function that contributes to it takes the
 * builder and adds exactly one value.  Strings from outside (names, URIs,
 * a server's error text) go through ndm_json_add_string, which makes them
 * valid UTF-8: a payload is always valid JSON, whatever bytes came in.
 *
 * Thread model: any thread; a builder belongs to the caller.
 */
#ifndef NBD_DM_JSON_H
#define NBD_DM_JSON_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>

/* Bumped when a field changes meaning or goes away; new fields do not. */
#define NDM_JSON_VERSION 1

/* A new payload: an object begun, with its "version" member. */
JsonBuilder *ndm_json_payload_new (void);
/* End the payload's object and append it to out as one line, '\n'
 * included.  The builder stays the caller's.
 */
void ndm_json_payload_end (JsonBuilder *b, GString *out);

/* str as a string value, each byte that is not part of valid UTF-8
 * replaced with U+FFFD; NULL as null.
 */
void ndm_json_add_string (JsonBuilder *b, const char *str);
/* An array of the blank-separated words of line (a table's args). */
void ndm_json_add_words (JsonBuilder *b, const char *line);

/* Object members: name (a literal of ours, ASCII) and a value. */
void ndm_json_member_string (JsonBuilder *b, const char *name,
                             const char *str);
void ndm_json_member_uint (JsonBuilder *b, const char *name, uint64_t v);
void ndm_json_member_int (JsonBuilder *b, const char *name, int64_t v);
void ndm_json_member_bool (JsonBuilder *b, const char *name, bool v);
void ndm_json_member_double (JsonBuilder *b, const char *name, double v);

#endif /* NBD_DM_JSON_H */
