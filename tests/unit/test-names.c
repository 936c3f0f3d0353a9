/* SPDX-License-Identifier: BSD-3-Clause */
/* The core's one-definition lists: what each op is called and whether it
 * writes, the registry of target types (the URI schemes: test-uri.c).
 * The expected values are written out here, not read from the lists, so
 * that a list that loses or changes an entry fails.
 */
#include <string.h>

#include "nbd-dm/ndm.h"
#include "nbd-dm/target.h"

static const struct {
  enum ndm_op op;
  const char *name;
  bool writes;
} ops[] = {
  { NDM_OP_READ, "read", false },
  { NDM_OP_WRITE, "write", true },
  { NDM_OP_FLUSH, "flush", false },
  { NDM_OP_TRIM, "trim", true },
  { NDM_OP_ZERO, "zero", true },
  { NDM_OP_CACHE, "cache", false },
  { NDM_OP_BLOCK_STATUS, "block status", false },
};

static void
test_op_name (void)
{
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (ops); i++)
    g_assert_cmpstr (ndm_op_name (ops[i].op), ==, ops[i].name);
  /* Every op is in the list above: the enum has no other value. */
  g_assert_cmpint (G_N_ELEMENTS (ops), ==, NDM_OP_BLOCK_STATUS + 1);
  g_assert_cmpstr (ndm_op_name ((enum ndm_op) (NDM_OP_BLOCK_STATUS + 1)), ==,
                   "unknown op");
}

static void
test_op_writes (void)
{
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (ops); i++) {
    if (ndm_op_writes (ops[i].op) != ops[i].writes)
      g_error ("ndm_op_writes (%s) is %d", ops[i].name, !ops[i].writes);
  }
}

/* The built-in targets, in registry order, each found by its name. */
static void
test_registry (void)
{
  static const char *const names[] = {
    "linear", "striped", "zero", "error", "flakey", "delay", "dust",
    "multipath", "mirror",
  };
  const struct ndm_target_type *tt;
  size_t i;

  for (i = 0; (tt = ndm_target_type_nth (i)) != NULL; i++) {
    g_assert_cmpuint (i, <, G_N_ELEMENTS (names));
    g_assert_cmpstr (tt->name, ==, names[i]);
    g_assert_true (ndm_target_type_lookup (names[i]) == tt);
    g_assert_nonnull (tt->ctr);
    g_assert_nonnull (tt->map);
  }
  g_assert_cmpuint (i, ==, G_N_ELEMENTS (names));
  g_assert_null (ndm_target_type_nth (G_MAXSIZE));
  g_assert_null (ndm_target_type_lookup ("raid"));
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/names/op/name-every-op", test_op_name);
  g_test_add_func ("/names/op/writes-every-op", test_op_writes);
  g_test_add_func ("/names/target/registry", test_registry);
  return g_test_run ();
}
