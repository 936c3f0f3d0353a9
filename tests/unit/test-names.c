/* SPDX-License-Identifier: BSD-3-Clause */
/* The core's one-definition lists: what each op is called and whether it
 * writes, the URI schemes of NBD devices, the registry of target types.
 * The expected values are written out here, not read from the lists, so
 * that a list that loses or changes an entry fails.
 */
#include <string.h>

#include "nbd-dm/ndm.h"
#include "nbd-dm/device.h"
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

/* Every scheme the device class takes, as DESIGN.md section 2 and the
 * man page list them.
 */
static const char *const schemes[] = {
  "nbd://", "nbd+unix://", "nbds://", "nbds+unix://",
  "nbd+vsock://", "nbds+vsock://",
};

static void
test_schemes_listed (void)
{
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (schemes); i++)
    g_assert_cmpstr (ndm_nbd_uri_schemes[i], ==, schemes[i]);
  g_assert_null (ndm_nbd_uri_schemes[i]);
}

/* One good and one bad URI per scheme: the scheme with a host or socket
 * is taken; the scheme missing a '/' is not.
 */
static void
test_scheme_check (void)
{
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (schemes); i++) {
    g_autofree char *good = g_strdup_printf ("%s%s", schemes[i],
                                             strstr (schemes[i], "unix") ?
                                             "/?socket=/tmp/s" : "host");
    g_autofree char *bad = g_strndup (schemes[i], strlen (schemes[i]) - 1);
    g_autofree char *bad_uri = g_strconcat (bad, "host", NULL);

    if (!ndm_nbd_uri_ok (good))
      g_error ("'%s' refused", good);
    if (ndm_nbd_uri_ok (bad_uri))
      g_error ("'%s' taken", bad_uri);
  }
  g_assert_false (ndm_nbd_uri_ok ("/dev/sda"));
  g_assert_false (ndm_nbd_uri_ok ("nbd+tcp://host"));
  g_assert_false (ndm_nbd_uri_ok (""));
}

/* A bad URI is refused before any connection, with a message that names
 * every scheme (the man page quotes it).
 */
static void
test_scheme_error (void)
{
  struct ndm_config cfg;
  GError *err = NULL;
  size_t i;

  ndm_config_init (&cfg);
  for (i = 0; i < G_N_ELEMENTS (schemes); i++) {
    g_autofree char *bad = g_strdup_printf ("%.*shost",
                                            (int) strlen (schemes[i]) - 1,
                                            schemes[i]);

    g_assert_null (ndm_nbd_device_class.open (bad, &cfg, false, &err));
    g_assert_error (err, NDM_ERROR, NDM_ERROR_DEVICE);
    g_assert_true (g_str_has_prefix (err->message, "device '"));
    g_assert_nonnull (strstr (err->message, bad));
    g_clear_error (&err);
  }
  g_assert_null (ndm_nbd_device_class.open ("/dev/sda", &cfg, true, &err));
  g_assert_cmpstr (err->message, ==,
                   "device '/dev/sda' is not an NBD URI: expected nbd://, "
                   "nbd+unix://, nbds://, nbds+unix://, nbd+vsock:// or "
                   "nbds+vsock://");
  g_clear_error (&err);
}

static void
test_schemes_list_separators (void)
{
  g_autofree char *dump = ndm_nbd_uri_schemes_list (",", ",");

  g_assert_cmpstr (dump, ==, "nbd://,nbd+unix://,nbds://,nbds+unix://,"
                   "nbd+vsock://,nbds+vsock://");
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
  g_test_add_func ("/names/uri-scheme/listed", test_schemes_listed);
  g_test_add_func ("/names/uri-scheme/good-and-bad", test_scheme_check);
  g_test_add_func ("/names/uri-scheme/error-names-schemes",
                   test_scheme_error);
  g_test_add_func ("/names/uri-scheme/dump-list", test_schemes_list_separators);
  g_test_add_func ("/names/target/registry", test_registry);
  return g_test_run ();
}
