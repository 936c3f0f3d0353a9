/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit-test harness: a mapped device over fake devices, requests run on a
 * helper thread (so the test thread can script completions), and "probe",
 * a linear-like target that records what its end_io saw and can requeue.
 */
#ifndef NDM_TEST_HARNESS_H
#define NDM_TEST_HARNESS_H

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "nbd-dm/ndm.h"
#include "fake-device.h"

/* A mapped device over fakes, with the probe target.  cfg may be NULL. */
struct ndm_md *h_md_new (const char *table, struct ndm_config *cfg);
/* A mapped device over fakes with no table loaded yet, knowing the
 * extra target types given (NULL-terminated), or the probe if NULL.
 */
struct ndm_md *h_md_new_empty (const struct ndm_target_type *const *extra);
/* Free md and forget the fakes. */
void h_md_free (struct ndm_md *md);
/* Expect loading table to fail with a message containing want. */
void h_expect_table_error (const char *table, const char *want);

/* Register each of the n rows (size bytes each, starting with their name,
 * a const char *) as its own g_test case prefix/name, the row its data:
 * one case per row, so the first failing row does not hide the others.
 */
void h_add_cases (const char *prefix, const void *rows, size_t n,
                  size_t size, GTestDataFunc fn);
#define H_ADD_CASES(prefix, rows, fn) \
  h_add_cases ((prefix), (rows), G_N_ELEMENTS (rows), sizeof (rows)[0], (fn))

/* Run line as a control command (split on blanks): its output without
 * the trailing newline (the caller frees it), or NULL with err set.
 * h_command_ok fails the test if the command fails.
 */
char *h_command (struct ndm_md *md, const char *line, GError **err);
char *h_command_ok (struct ndm_md *md, const char *line);

/* JSON, parsed with json-glib: json must be one valid JSON value (else
 * the test fails), and path a JSONPath ("$.targets[0].detail.legs[1]")
 * with exactly one match.  h_json_at returns that value (the caller
 * frees it); h_json_text the value as compact JSON text ("[3,9]",
 * "\"in_sync\"", "null"); _str, _int, _bool fail the test if it is not
 * of that type.
 */
JsonNode *h_json_at (const char *json, const char *path);
char *h_json_text (const char *json, const char *path);
char *h_json_str (const char *json, const char *path);
gint64 h_json_int (const char *json, const char *path);
bool h_json_bool (const char *json, const char *path);
/* Whether the value at path has want (JSON text): an object has each of
 * want's members with a value that has want's (recursively), anything
 * else is equal to want.  h_json_expect fails the test if not.
 */
bool h_json_has (const char *json, const char *path, const char *want);
void h_json_expect (const char *json, const char *path, const char *want);

/* Rows of bad inputs, for h_add_table_errors / h_add_command_errors. */
struct h_table_error {
  const char *name;
  const char *table;            /* loading it fails */
  const char *want;             /* with a message containing this */
};
void h_add_table_errors (const char *prefix,
                         const struct h_table_error *rows, size_t n);

struct h_command_error {
  const char *name;
  const char *table;            /* the device the commands run on */
  /* Control commands, one a line: all but the last succeed (the state
   * the error needs), the last fails.  "" is the empty request.
   */
  const char *commands;
  const char *want;             /* in the last one's error message */
};
void h_add_command_errors (const char *prefix,
                           const struct h_command_error *rows, size_t n);

/* One request on its own thread. */
struct h_io;
struct h_io *h_io_start (struct ndm_md *md, enum ndm_op op, void *buf,
                         uint64_t count, uint64_t offset, uint32_t flags);
bool h_io_done (struct h_io *io);
/* Wait for it; returns 0 or the client errno. */
int h_io_wait (struct h_io *io);
/* The same, but the test fails (instead of hanging) if the request has
 * not ended within seconds: for faults that never reply.
 */
int h_io_wait_bounded (struct h_io *io, unsigned seconds);
/* Synchronous: 0 or the client errno. */
int h_io (struct ndm_md *md, enum ndm_op op, void *buf, uint64_t count,
          uint64_t offset, uint32_t flags);

/* What the probe target's end_io saw, in order. */
struct h_endio {
  uint64_t offset;              /* clone offset in the mapped device */
  uint64_t len;
  uint64_t credited;
  int error;
};
/* Calls so far (the array is the harness's; do not free). */
GArray *h_probe_endios (void);
/* The next n end_io calls that see an error return REQUEUE. */
void h_probe_requeue (unsigned n);

/* The first target of md's live table (md's reference keeps it): whose
 * own I/O (ndm_target_io, a kcopyd) a test runs.
 */
struct ndm_target;
struct ndm_target *h_first_target (struct ndm_md *md);
/* The device of md's live table opened as fake://name or fake://name?... */
struct ndm_device *h_device_of (struct ndm_md *md, const char *name);

/* Bytes charged to md's bounce budget now (a copy may run meanwhile). */
uint64_t h_bounce_used (struct ndm_md *md);

/* Fill buf with a pattern that differs per offset and seed. */
void h_fill (void *buf, size_t len, uint64_t seed);

#endif /* NDM_TEST_HARNESS_H */
