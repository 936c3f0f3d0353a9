/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: metrics=ADDR, the statistics served over HTTP (include/nbd-dm/
 * metrics.h) by libmicrohttpd: GET /metrics answers the OpenMetrics text
 * of core/metrics.c.  The socket is bound here, before nbdkit forks, so a
 * bad address stops start-up with a message; the library's thread starts
 * after the fork and is given that socket.
 *
 * What a scraper can do to the server: at most METRICS_MAX_CLIENTS
 * connections, each dropped after METRICS_IDLE_S idle seconds; a request
 * only reads counters (relaxed atomics) of a table it holds a reference
 * to, so it waits for no I/O and no lock of the data path (R13).
 *
 * Thread model: new and free on the front end's control thread; the
 * answer callback on libmicrohttpd's polling thread.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "nbd-dm/metrics.h"
#include "core.h"
#include "log.h"
#include "stats.h"

#define METRICS_MAX_CLIENTS 16
#define METRICS_IDLE_S      10
#define METRICS_PATH        "/metrics"
#define METRICS_TYPE        "application/openmetrics-text; version=1.0.0; " \
                            "charset=utf-8"

struct ndm_metrics {
  struct ndm_md *md;
  char *addr;                   /* as the user wrote it, for messages */
  char *path;                   /* the Unix socket file; NULL for IP */
  int listen_fd;                /* until the daemon owns it */
  struct MHD_Daemon *daemon;
};

/* "127.0.0.1:9100", "[::1]:9100": a listening TCP socket, or -1. */
static int
listen_ip (const char *addr, GError **err)
{
  g_autofree char *host = NULL;
  const char *port, *colon;
  struct addrinfo hints = {
    .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
    .ai_socktype = SOCK_STREAM,
  };
  struct addrinfo *ai = NULL;
  guint64 pnum;
  int fd, r, on = 1;

  if (addr[0] == '[') {
    const char *bracket = strchr (addr, ']');

    colon = bracket != NULL && bracket[1] == ':' ? bracket + 1 : NULL;
    if (colon != NULL)
      host = g_strndup (addr + 1, bracket - addr - 1);
  }
  else {
    colon = strrchr (addr, ':');
    if (colon != NULL && memchr (addr, ':', colon - addr) == NULL)
      host = g_strndup (addr, colon - addr);
  }
  port = colon != NULL ? colon + 1 : "";
  if (host == NULL || host[0] == '\0' ||
      !g_ascii_string_to_unsigned (port, 10, 1, 65535, &pnum, NULL)) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG,
                 "metrics: '%s' is neither a Unix socket path (with a '/') "
                 "nor IP:PORT with a numeric address and a port from 1 to "
                 "65535 (127.0.0.1:9100, [::1]:9100)", addr);
    return -1;
  }
  r = getaddrinfo (host, port, &hints, &ai);
  if (r != 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG,
                 "metrics: '%s': '%s' is not a numeric IP address: %s", addr,
                 host, gai_strerror (r));
    return -1;
  }
  fd = socket (ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG, "metrics: %s: socket: %s",
                 addr, g_strerror (errno));
    freeaddrinfo (ai);
    return -1;
  }
  /* A restarted server rebinds at once; [::1] means IPv6 only. */
  setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (ai->ai_family == AF_INET6)
    setsockopt (fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
  if (bind (fd, ai->ai_addr, ai->ai_addrlen) == -1 ||
      listen (fd, METRICS_MAX_CLIENTS) == -1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG, "metrics: %s: %s", addr,
                 g_strerror (errno));
    close (fd);
    fd = -1;
  }
  freeaddrinfo (ai);
  return fd;
}

struct ndm_metrics *
ndm_metrics_new (struct ndm_md *md, const char *addr, GError **err)
{
  struct ndm_metrics *m = g_new0 (struct ndm_metrics, 1);

  m->md = md;
  m->addr = g_strdup (addr);
  if (strchr (addr, '/') != NULL) {
    /* Absolute: nbdkit changes directory when it becomes a daemon, and
     * free removes the file.
     */
    m->path = g_canonicalize_filename (addr, NULL);
    m->listen_fd = ndm_unix_listen ("metrics", m->path, METRICS_MAX_CLIENTS,
                                    err);
    if (m->listen_fd == -1)
      g_clear_pointer (&m->path, g_free);
  }
  else
    m->listen_fd = listen_ip (addr, err);
  if (m->listen_fd == -1) {
    ndm_metrics_free (m);
    return NULL;
  }
  return m;
}

static enum MHD_Result
queue_text (struct MHD_Connection *conn, unsigned status, const char *type,
            GString *body)
{
  struct MHD_Response *resp;
  enum MHD_Result r;

  resp = MHD_create_response_from_buffer (body->len, body->str,
                                          MHD_RESPMEM_MUST_COPY);
  if (resp == NULL)
    return MHD_NO;              /* no memory: the connection is closed */
  MHD_add_response_header (resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
    MHD_add_response_header (resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  r = MHD_queue_response (conn, status, resp);
  MHD_destroy_response (resp);
  return r;
}

/* libmicrohttpd's answer callback: GET (or HEAD) /metrics, nothing else. */
static enum MHD_Result
answer (void *cls, struct MHD_Connection *conn, const char *url,
        const char *method, const char *version, const char *upload_data,
        size_t *upload_size, void **req_cls)
{
  struct ndm_metrics *m = cls;
  g_autoptr (GString) body = g_string_new (NULL);
  struct ndm_table *t;

  if (strcmp (method, MHD_HTTP_METHOD_GET) != 0 &&
      strcmp (method, MHD_HTTP_METHOD_HEAD) != 0) {
    g_string_printf (body, "%s: only GET and HEAD\n", method);
    return queue_text (conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
                       body);
  }
  if (strcmp (url, METRICS_PATH) != 0) {
    g_string_printf (body, "%s: not found; the metrics are at "
                     METRICS_PATH "\n", url);
    return queue_text (conn, MHD_HTTP_NOT_FOUND, "text/plain", body);
  }
  t = ndm_md_get_table (m->md);
  ndm_table_openmetrics (t, body);
  ndm_table_unref (t);
  return queue_text (conn, MHD_HTTP_OK, METRICS_TYPE, body);
}

/* The library's complaints (a client that misbehaved, mostly) are for
 * debugging, not for the operator.
 */
static void mhd_log (void *cls, const char *fmt, va_list ap)
  G_GNUC_PRINTF (2, 0);

static void
mhd_log (void *cls, const char *fmt, va_list ap)
{
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);

  g_strchomp (msg);
  ndm_log_debug (NDM_LOG_CONTROL, "metrics: %s", msg);
}

int
ndm_metrics_start (struct ndm_metrics *m, GError **err)
{
  if (m->daemon != NULL)
    return 0;
  m->daemon = MHD_start_daemon (MHD_USE_INTERNAL_POLLING_THREAD |
                                MHD_USE_AUTO | MHD_USE_ERROR_LOG, 0,
                                NULL, NULL, answer, m,
                                MHD_OPTION_LISTEN_SOCKET, m->listen_fd,
                                MHD_OPTION_CONNECTION_LIMIT,
                                (unsigned) METRICS_MAX_CLIENTS,
                                MHD_OPTION_CONNECTION_TIMEOUT,
                                (unsigned) METRICS_IDLE_S,
                                MHD_OPTION_EXTERNAL_LOGGER, mhd_log, m,
                                MHD_OPTION_END);
  if (m->daemon == NULL) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG,
                 "metrics: %s: cannot start the HTTP server", m->addr);
    return -1;
  }
  m->listen_fd = -1;            /* the daemon's now: it closes it */
  return 0;
}

void
ndm_metrics_free (struct ndm_metrics *m)
{
  if (m == NULL)
    return;
  if (m->daemon != NULL)
    MHD_stop_daemon (m->daemon);
  if (m->listen_fd != -1)
    close (m->listen_fd);
  if (m->path != NULL)
    unlink (m->path);
  g_free (m->path);
  g_free (m->addr);
  g_free (m);
}
