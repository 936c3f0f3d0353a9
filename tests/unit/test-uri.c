/* SPDX-License-Identifier: BSD-3-Clause */
/* The URI schemes of devices (core/devices/uri.c): the table, the check
 * of a device URI before libnbd reads it (TLS rules), the error for a URI
 * that is none, and the man page's list of schemes against the table.
 * The expected values are written out here, not read from the table, so
 * that a table that loses or changes an entry fails.
 */
#include <string.h>

#include "nbd-dm/ndm.h"
#include "nbd-dm/device.h"

static const struct {
  const char *name;
  bool tls;
  enum ndm_uri_transport transport;
} schemes[] = {
  { "nbd", false, NDM_URI_TCP },
  { "nbd+unix", false, NDM_URI_UNIX },
  { "nbds", true, NDM_URI_TCP },
  { "nbds+unix", true, NDM_URI_UNIX },
  { "nbd+vsock", false, NDM_URI_VSOCK },
  { "nbds+vsock", true, NDM_URI_VSOCK },
};

/* A URI of scheme i: a socket for the Unix ones, a host for the others. */
static char *
uri_of (size_t i, const char *user, const char *params)
{
  bool unix_sock = schemes[i].transport == NDM_URI_UNIX;

  return g_strdup_printf ("%s://%s%s/%s%s%s", schemes[i].name,
                          user ? user : "", user ? "@" : "",
                          unix_sock ? "?socket=/tmp/s" : "",
                          params == NULL ? "" : unix_sock ? "&" : "?",
                          params ? params : "");
}

static void
test_table (void)
{
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (schemes); i++) {
    g_assert_cmpstr (ndm_uri_schemes[i].name, ==, schemes[i].name);
    if (ndm_uri_schemes[i].tls != schemes[i].tls)
      g_error ("%s: tls is %d", schemes[i].name, ndm_uri_schemes[i].tls);
    g_assert_cmpint (ndm_uri_schemes[i].transport, ==, schemes[i].transport);
  }
  g_assert_null (ndm_uri_schemes[i].name);
}

/* Each scheme is found by its URIs; a scheme missing a '/', another
 * scheme or a path is not one.
 */
static void
test_scheme_of (void)
{
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (schemes); i++) {
    g_autofree char *good = uri_of (i, NULL, NULL);
    g_autofree char *bad = g_strdup_printf ("%s:/host", schemes[i].name);
    g_autofree char *prefix = g_strdup_printf ("%sx://host",
                                               schemes[i].name);

    g_assert_true (ndm_uri_scheme_of (good) == &ndm_uri_schemes[i]);
    g_assert_null (ndm_uri_scheme_of (bad));
    g_assert_null (ndm_uri_scheme_of (prefix));
  }
  g_assert_null (ndm_uri_scheme_of ("/dev/sda"));
  g_assert_null (ndm_uri_scheme_of ("nbd+tcp://host"));
  g_assert_null (ndm_uri_scheme_of (""));
}

static void
test_list (void)
{
  g_autofree char *dump = ndm_uri_schemes_list ("", ",", false);
  g_autofree char *all = ndm_uri_schemes_list ("://", ", ", false);
  g_autofree char *tls = ndm_uri_schemes_list ("://", ", ", true);

  g_assert_cmpstr (dump, ==, "nbd,nbd+unix,nbds,nbds+unix,nbd+vsock,"
                   "nbds+vsock");
  g_assert_cmpstr (all, ==, "nbd://, nbd+unix://, nbds://, nbds+unix://, "
                   "nbd+vsock://, nbds+vsock://");
  g_assert_cmpstr (tls, ==, "nbds://, nbds+unix://, nbds+vsock://");
}

/* parse uri, expecting an error that contains every one of words (NULL
 * ends them).
 */
static void
parse_refused (const char *uri, ...)
{
  struct ndm_uri u;
  GError *err = NULL;
  const char *w;
  va_list ap;

  if (ndm_uri_parse (uri, &u, &err) == 0)
    g_error ("'%s' taken", uri);
  g_assert_error (err, NDM_ERROR, NDM_ERROR_DEVICE);
  g_assert_null (u.scheme);
  va_start (ap, uri);
  while ((w = va_arg (ap, const char *)) != NULL)
    if (strstr (err->message, w) == NULL)
      g_error ("'%s': the error '%s' lacks '%s'", uri, err->message, w);
  va_end (ap);
  g_error_free (err);
}

/* parse uri, expecting success; returns its tls-username (owned). */
static char *
parse_taken (const char *uri, size_t scheme)
{
  struct ndm_uri u;
  GError *err = NULL;
  char *user;

  if (ndm_uri_parse (uri, &u, &err) == -1)
    g_error ("'%s' refused: %s", uri, err->message);
  g_assert_true (u.scheme == &ndm_uri_schemes[scheme]);
  user = g_strdup (u.tls_username);
  ndm_uri_clear (&u);
  return user;
}

static void
test_parse_not_nbd (void)
{
  struct ndm_uri u;
  GError *err = NULL;

  g_assert_cmpint (ndm_uri_parse ("/dev/sda", &u, &err), ==, -1);
  g_assert_cmpstr (err->message, ==,
                   "device '/dev/sda': expected an NBD URI (nbd://, "
                   "nbd+unix://, nbds://, nbds+unix://, nbd+vsock://, "
                   "nbds+vsock://)");
  g_clear_error (&err);
}

/* Each plaintext scheme with any TLS parameter: libnbd would connect in
 * plaintext and ignore the key.
 */
static void
test_parse_plain_with_tls_param (void)
{
  static const char *const params[] = {
    "tls-psk-file=/k.psk", "tls-certificates=/certs", "tls-username=alice",
    "tls-hostname=h", "tls-verify-peer=false",
  };
  size_t i, j;

  for (i = 0; i < G_N_ELEMENTS (schemes); i++) {
    g_autofree char *plain = uri_of (i, NULL, "export=x");
    g_autofree char *user = NULL;

    if (schemes[i].tls)
      continue;
    user = parse_taken (plain, i);
    g_assert_null (user);
    for (j = 0; j < G_N_ELEMENTS (params); j++) {
      g_autofree char *uri = uri_of (i, NULL, params[j]);
      g_autofree char *name = g_strndup (params[j],
                                         strchr (params[j], '=') - params[j]
                                         + 1);
      g_autofree char *scheme = g_strdup_printf ("%s://", schemes[i].name);

      parse_refused (uri, uri, name, scheme, "nbds://, nbds+unix://", NULL);
    }
  }
}

/* A PSK needs a username, from user@ or tls-username=; two that differ
 * are refused, and tls-username= is passed on (libnbd 1.14 ignores it).
 */
static void
test_parse_tls_username (void)
{
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (schemes); i++) {
    g_autofree char *none = uri_of (i, NULL, "tls-psk-file=/k.psk");
    g_autofree char *at = uri_of (i, "alice", "tls-psk-file=/k.psk");
    g_autofree char *param = uri_of (i, NULL, "tls-psk-file=/k.psk&"
                                     "tls-username=bob%40x");
    g_autofree char *both = uri_of (i, "alice", "tls-psk-file=/k.psk&"
                                    "tls-username=alice");
    g_autofree char *differ = uri_of (i, "alice", "tls-psk-file=/k.psk&"
                                      "tls-username=bob");
    g_autofree char *certs = uri_of (i, NULL, "tls-certificates=/c");
    g_autofree char *u = NULL;

    if (!schemes[i].tls)
      continue;
    parse_refused (none, none, "tls-psk-file=", "username", NULL);
    parse_refused (differ, differ, "'alice@'", "tls-username=bob", NULL);
    u = parse_taken (at, i);
    g_assert_null (u);
    g_free (u);
    u = parse_taken (param, i);
    g_assert_cmpstr (u, ==, "bob@x");
    g_free (u);
    u = parse_taken (both, i);
    g_assert_cmpstr (u, ==, "alice");
    g_free (u);
    /* Certificates identify by themselves: no username needed. */
    u = parse_taken (certs, i);
    g_assert_null (u);
  }
}

/* Queries as libnbd reads them: "a" alone is a parameter, "&&" nothing;
 * a bad %-escape is refused, quoting it.
 */
static void
test_parse_query (void)
{
  g_autofree char *u = NULL;

  u = parse_taken ("nbd://h/?a&&b=&=c", 0);
  g_assert_null (u);
  parse_refused ("nbds://alice@h/?tls-psk-file=%zz", "'tls-psk-file=%zz'",
                 "%-escape", NULL);
  /* "tls-psk-file" alone is still the parameter: no username, refused. */
  parse_refused ("nbds://h/?tls-psk-file", "without a username", NULL);
  parse_refused ("nbd://h/?tls%2Dpsk%2Dfile=/k", "tls-psk-file=", NULL);
}

/* The device class refuses a bad URI before any connection, even for a
 * tolerant target (waiting cannot make it good).
 */
static void
test_open_refuses (void)
{
  struct ndm_config cfg;
  GError *err = NULL;

  ndm_config_init (&cfg);
  g_assert_null (ndm_nbd_device_class.open ("/dev/sda", &cfg, true, &err));
  g_assert_error (err, NDM_ERROR, NDM_ERROR_DEVICE);
  g_assert_true (g_str_has_prefix (err->message,
                                   "device '/dev/sda': expected an NBD URI"));
  g_clear_error (&err);
  g_assert_null (ndm_nbd_device_class.open ("nbd+unix:///?socket=/s&"
                                            "tls-psk-file=/k", &cfg, true,
                                            &err));
  g_assert_error (err, NDM_ERROR, NDM_ERROR_DEVICE);
  g_clear_error (&err);
}

/* The man page's "Devices" section has one =item per scheme, in table
 * order, saying its transport and whether TLS is required: the operator
 * reads there what the table holds.
 */
static void
test_man_page (void)
{
  static const char *const transport_words[] = {
    [NDM_URI_TCP] = "TCP", [NDM_URI_UNIX] = "Unix",
    [NDM_URI_VSOCK] = "AF_VSOCK",
  };
  g_autofree char *pod = NULL;
  g_auto (GStrv) lines = NULL;
  g_autoptr (GString) text = g_string_new (NULL);
  GError *err = NULL;
  bool in_section = false;
  size_t i, n = 0;
  int cur = -1;

  g_assert_true (g_file_get_contents (NDM_MAN_PAGE, &pod, NULL, &err));
  lines = g_strsplit (pod, "\n", -1);
  for (i = 0; lines[i] != NULL; i++) {
    const char *l = lines[i];

    if (in_section && cur >= 0 &&
        (g_str_has_prefix (l, "=item ") || g_str_has_prefix (l, "=back"))) {
      /* The item before this one, whole. */
      bool tls = strstr (text->str, "TLS required") != NULL;

      if (strstr (text->str, transport_words[ndm_uri_schemes[cur].transport])
          == NULL || tls != ndm_uri_schemes[cur].tls) {
        g_test_message ("%s: the man page says '%s'", ndm_uri_schemes[cur].name,
                        text->str);
        g_test_fail ();
      }
      cur = -1;
    }
    if (g_str_has_prefix (l, "=head"))
      in_section = strcmp (l, "=head2 Devices") == 0;
    else if (in_section && g_str_has_prefix (l, "=item C<")) {
      const char *name = l + strlen ("=item C<");
      const char *end = strstr (name, "://");

      g_assert_nonnull (end);
      if (ndm_uri_schemes[n].name == NULL ||
          strncmp (name, ndm_uri_schemes[n].name, end - name) != 0 ||
          ndm_uri_schemes[n].name[end - name] != '\0') {
        g_test_message ("the man page's item %zu is '%s', the table's %s",
                        n, l, ndm_uri_schemes[n].name
                        ? ndm_uri_schemes[n].name : "(end)");
        g_test_fail ();
        return;
      }
      cur = n++;
      g_string_truncate (text, 0);
    }
    else if (cur >= 0)
      g_string_append_printf (text, " %s", l);
  }
  if (ndm_uri_schemes[n].name != NULL) {
    g_test_message ("the man page's Devices section lacks %s://",
                    ndm_uri_schemes[n].name);
    g_test_fail ();
  }
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/uri/scheme/table", test_table);
  g_test_add_func ("/uri/scheme/of", test_scheme_of);
  g_test_add_func ("/uri/scheme/list", test_list);
  g_test_add_func ("/uri/parse/not-nbd", test_parse_not_nbd);
  g_test_add_func ("/uri/parse/plain-with-tls-param",
                   test_parse_plain_with_tls_param);
  g_test_add_func ("/uri/parse/tls-username", test_parse_tls_username);
  g_test_add_func ("/uri/parse/query", test_parse_query);
  g_test_add_func ("/uri/open/refuses-before-connecting", test_open_refuses);
  g_test_add_func ("/uri/docs/man-page-lists-every-scheme", test_man_page);
  return g_test_run ();
}
