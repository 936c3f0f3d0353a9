/* SPDX-License-Identifier: BSD-3-Clause */
/* uri: the URI schemes a device may have, and what nbd-dm checks in a
 * device URI before libnbd reads it (see include/nbd-dm/device.h).
 *
 * libnbd parses the URI and connects (nbd_connect_uri(3)); this file only
 * holds the one table of schemes (the check below, its error message,
 * the man page check in tests/unit/test-uri.c and --dump-plugin all read
 * it) and refuses what libnbd would take in silence although it is not
 * what the operator meant:
 *   - TLS parameters on a plaintext scheme: libnbd connects in plaintext
 *     and ignores the key, so data the operator meant to encrypt would
 *     cross the wire in clear;
 *   - a PSK without a username: libnbd falls back to the login name,
 *     which a daemon has none of ("getlogin_r: No such device or
 *     address"), and which is not what the server's key file says
 *     either;
 *   - two usernames that differ (user@ and tls-username=).
 * tls-username= is read here because libnbd 1.14 ignores it (later
 * versions read it too, to the same effect).
 *
 * Thread model: none; the table is constant, parsing is on the control
 * path (table load).
 */
#include <string.h>

#include "../core.h"

/* The order is the one people read: plain before TLS, TCP first. */
const struct ndm_uri_scheme ndm_uri_schemes[] = {
  { "nbd", false, NDM_URI_TCP },
  { "nbd+unix", false, NDM_URI_UNIX },
  { "nbds", true, NDM_URI_TCP },
  { "nbds+unix", true, NDM_URI_UNIX },
  { "nbd+vsock", false, NDM_URI_VSOCK },
  { "nbds+vsock", true, NDM_URI_VSOCK },
  { NULL, false, NDM_URI_TCP },
};

const struct ndm_uri_scheme *
ndm_uri_scheme_of (const char *uri)
{
  const struct ndm_uri_scheme *s;

  for (s = ndm_uri_schemes; s->name != NULL; s++) {
    size_t n = strlen (s->name);

    if (strncmp (uri, s->name, n) == 0 && strncmp (uri + n, "://", 3) == 0)
      return s;
  }
  return NULL;
}

char *
ndm_uri_schemes_list (const char *suffix, const char *sep, bool tls_only)
{
  GString *out = g_string_new (NULL);
  const struct ndm_uri_scheme *s;

  for (s = ndm_uri_schemes; s->name != NULL; s++) {
    if (tls_only && !s->tls)
      continue;
    if (out->len > 0)
      g_string_append (out, sep);
    g_string_append_printf (out, "%s%s", s->name, suffix);
  }
  return g_string_free (out, FALSE);
}

/* The query parameters that only mean something with TLS (libnbd's, the
 * ones of later versions included: a plaintext URI naming any of them was
 * meant to be encrypted).
 */
static const char *const tls_params[] = {
  "tls-certificates", "tls-psk-file", "tls-username", "tls-hostname",
  "tls-verify-peer", NULL,
};

static const char *
first_tls_param (GHashTable *params)
{
  size_t i;

  for (i = 0; tls_params[i] != NULL; i++)
    if (params != NULL && g_hash_table_contains (params, tls_params[i]))
      return tls_params[i];
  return NULL;
}

/* The query's parameters, name -> value, decoded as libnbd decodes them
 * ("a" alone is a = "", "&&" and "=v" are skipped).  NULL with err set if
 * one has a bad %-escape.
 */
static GHashTable *
query_params (const char *query, GError **err)
{
  g_autoptr (GHashTable) params = g_hash_table_new_full (g_str_hash,
                                                         g_str_equal,
                                                         g_free, g_free);
  g_auto (GStrv) parts = g_strsplit (query, "&", -1);
  size_t i;

  for (i = 0; parts[i] != NULL; i++) {
    char *eq = strchr (parts[i], '=');
    char *name, *value;

    if (parts[i][0] == '\0' || eq == parts[i])
      continue;
    name = g_uri_unescape_segment (parts[i], eq, NULL);
    value = g_uri_unescape_string (eq != NULL ? eq + 1 : "", NULL);
    if (name == NULL || value == NULL) {
      g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE,
                   "query parameter '%s' has a bad %%-escape", parts[i]);
      g_free (name);
      g_free (value);
      return NULL;
    }
    g_hash_table_replace (params, name, value);
  }
  return g_steal_pointer (&params);
}

int
ndm_uri_parse (const char *uri, struct ndm_uri *out, GError **err)
{
  const struct ndm_uri_scheme *s = ndm_uri_scheme_of (uri);
  g_autofree char *user = NULL, *query = NULL;
  g_autoptr (GHashTable) params = NULL;
  g_autoptr (GError) e = NULL;
  const char *param, *tls_user;

  memset (out, 0, sizeof *out);
  if (s == NULL) {
    g_autofree char *schemes = ndm_uri_schemes_list ("://", ", ", false);

    g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE,
                 "device '%s': expected an NBD URI (%s)", uri, schemes);
    return -1;
  }
  /* Relaxed, as libnbd is: only the user and the query matter here. */
  if (!g_uri_split (uri, G_URI_FLAGS_PARSE_RELAXED | G_URI_FLAGS_NON_DNS |
                    G_URI_FLAGS_ENCODED_QUERY, NULL, &user, NULL, NULL, NULL,
                    &query, NULL, &e) ||
      (query != NULL && (params = query_params (query, &e)) == NULL)) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE, "device '%s': %s", uri,
                 e->message);
    return -1;
  }

  param = first_tls_param (params);
  if (!s->tls) {
    if (param != NULL) {
      g_autofree char *tls = ndm_uri_schemes_list ("://", ", ", true);

      g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE,
                   "device '%s': %s= asks for TLS, but %s:// never uses "
                   "it: expected a TLS scheme (%s)", uri, param, s->name,
                   tls);
      return -1;
    }
    out->scheme = s;
    return 0;
  }

  tls_user = params != NULL ? g_hash_table_lookup (params, "tls-username")
    : NULL;
  if (user != NULL && tls_user != NULL && strcmp (user, tls_user) != 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE,
                 "device '%s': two TLS usernames, '%s@' and "
                 "tls-username=%s: expected one", uri, user, tls_user);
    return -1;
  }
  if (user == NULL && tls_user == NULL && params != NULL &&
      g_hash_table_contains (params, "tls-psk-file")) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE,
                 "device '%s': tls-psk-file= without a username: expected "
                 "the PSK file's username as %s://USER@... or "
                 "tls-username=USER", uri, s->name);
    return -1;
  }
  out->scheme = s;
  out->tls_username = g_strdup (tls_user);
  return 0;
}

void
ndm_uri_clear (struct ndm_uri *u)
{
  g_free (u->tls_username);
  u->tls_username = NULL;
  u->scheme = NULL;
}
