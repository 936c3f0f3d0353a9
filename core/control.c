/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the control socket server (protocol in nbd-dm/control.h).
 *
 * One accept thread and one thread per client, so a client blocked in
 * `wait` or `suspend` does not hold up the others.  A request is only
 * acted on once its whole line has arrived: a client that hangs up mid
 * line leaves nothing behind.  Anything a client sends gets an answer or
 * closes its connection; nothing it sends stops the server.
 *
 * Thread model: new and free on the front end's control thread; start
 * after fork.  ctl->lock protects clients and stopping; it is a leaf lock
 * and is never held while a command runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "nbd-dm/control.h"
#include "core.h"
#include "log.h"

/* How long the accept thread waits after accept(2) ran out of
 * descriptors or memory before it tries again.
 */
#define NDM_CONTROL_BACKOFF_MS 100

struct client {
  struct ndm_control *ctl;
  int fd;
  GThread *thread;
};

struct ndm_control {
  struct ndm_md *md;
  char *path;
  int listen_fd;
  int wake_pipe[2];             /* stops the accept thread's poll */
  GThread *accept_thread;
  struct ndm_mutex lock;        /* protects clients, stopping */
  GList *clients;               /* struct client * */
  gint stopping;                /* atomic too: read by cancel checks */
};

/* ---- replies ------------------------------------------------------------------ */

static bool
send_all (int fd, const char *buf, size_t len)
{
  while (len > 0) {
    ssize_t r = send (fd, buf, len, MSG_NOSIGNAL);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      return false;
    }
    buf += r;
    len -= r;
  }
  return true;
}

static bool
reply_error (int fd, const char *msg)
{
  g_autofree char *line = g_strdup_printf ("error %s\n", msg);
  char *p;

  /* One line, whatever the message holds. */
  for (p = line + 6; p[1] != '\0'; p++)
    if (*p == '\n' || *p == '\r')
      *p = ' ';
  return send_all (fd, line, strlen (line));
}

static bool
reply_ok (int fd, GString *payload)
{
  g_autoptr (GString) r = g_string_new (NULL);
  unsigned lines = 0;
  gsize i;

  if (payload->len > 0 && payload->str[payload->len - 1] != '\n')
    g_string_append_c (payload, '\n');
  for (i = 0; i < payload->len; i++)
    lines += payload->str[i] == '\n';
  g_string_printf (r, "ok %u\n", lines);
  g_string_append_len (r, payload->str, payload->len);
  return send_all (fd, r->str, r->len);
}

/* ---- one client ----------------------------------------------------------------- */

struct cancel_ctx {
  struct client *cl;
};

/* For commands that wait: give up if the client left or we stop.  A
 * client that only shut down its sending side still reads the reply.
 */
static bool
client_gone (void *data)
{
  struct client *cl = data;
  struct pollfd pfd = { .fd = cl->fd, .events = 0 };

  if (g_atomic_int_get (&cl->ctl->stopping))
    return true;
  return poll (&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLERR));
}

static bool
handle_line (struct client *cl, const char *line)
{
  g_auto (GStrv) argv = NULL;
  g_autoptr (GString) out = g_string_new (NULL);
  GError *err = NULL;
  int argc;
  bool ok;

  if (ndm_log_debug_on (NDM_LOG_CONTROL)) {
    g_autofree char *shown = g_strescape (line, NULL);

    ndm_log_debug_emit ("control: request '%s'", shown);
  }
  if (!g_shell_parse_argv (line, &argc, &argv, &err)) {
    g_autofree char *msg = NULL;

    if (g_error_matches (err, G_SHELL_ERROR, G_SHELL_ERROR_EMPTY_STRING))
      msg = g_strdup ("empty request: expected a verb ('help' lists them)");
    else
      msg = g_strdup_printf ("cannot parse the request: %s", err->message);
    g_error_free (err);
    return reply_error (cl->fd, msg);
  }
  if (ndm_md_command_full (cl->ctl->md, argc, argv, out, client_gone, cl,
                           &err) == -1) {
    ndm_log_debug (NDM_LOG_CONTROL, "control: %s: %s", argv[0],
                   err->message);
    ok = reply_error (cl->fd, err->message);
    g_error_free (err);
    return ok;
  }
  return reply_ok (cl->fd, out);
}

static gpointer
client_thread (gpointer data)
{
  struct client *cl = data;
  struct ndm_control *ctl = cl->ctl;
  g_autoptr (GString) buf = g_string_new (NULL);
  char chunk[4096];

  for (;;) {
    ssize_t r = recv (cl->fd, chunk, sizeof chunk, 0);
    char *nl;

    if (r == 0 || (r == -1 && errno != EINTR))
      break;
    if (r == -1)
      continue;
    g_string_append_len (buf, chunk, r);
    /* Requests are acted on only when complete, and only within the
     * limit: the newline may arrive in the same read as the excess.
     */
    while ((nl = memchr (buf->str, '\n', buf->len)) != NULL) {
      gsize n = nl - buf->str, len = n;

      if (n > NDM_CONTROL_MAX_LINE)
        break;
      *nl = '\0';
      if (len > 0 && buf->str[len - 1] == '\r')
        buf->str[--len] = '\0';
      /* A NUL would end the request early: a table cut short, quietly. */
      if (strlen (buf->str) != len) {
        if (!reply_error (cl->fd, "the request holds a NUL byte: refused"))
          goto out;
      }
      else if (!handle_line (cl, buf->str))
        goto out;
      g_string_erase (buf, 0, n + 1);
    }
    if (buf->len > NDM_CONTROL_MAX_LINE) {
      g_autofree char *msg =
        g_strdup_printf ("request line longer than %d bytes: closing",
                         NDM_CONTROL_MAX_LINE);

      reply_error (cl->fd, msg);
      break;
    }
  }
 out:
  ndm_mutex_lock (&ctl->lock);
  ctl->clients = g_list_remove (ctl->clients, cl);
  ndm_mutex_unlock (&ctl->lock);
  close (cl->fd);
  /* The thread is joined by nobody: it frees itself. */
  g_thread_unref (cl->thread);
  g_free (cl);
  return NULL;
}

/* ---- accepting ----------------------------------------------------------------- */

static gpointer
accept_thread (gpointer data)
{
  struct ndm_control *ctl = data;

  while (!g_atomic_int_get (&ctl->stopping)) {
    struct pollfd pfd[2] = {
      { .fd = ctl->listen_fd, .events = POLLIN },
      { .fd = ctl->wake_pipe[0], .events = POLLIN },
    };
    struct client *cl;
    int fd;

    if (poll (pfd, 2, -1) == -1 || (pfd[1].revents & POLLIN))
      continue;
    fd = accept4 (ctl->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd == -1) {
      /* Out of descriptors or memory: the client stays in the backlog
       * and the socket stays readable.  Do not spin on it (R13): look
       * again in a while, or when woken to stop.
       */
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        ndm_log_error ("control: accept: %s: trying again in %d ms",
                       g_strerror (errno), NDM_CONTROL_BACKOFF_MS);
        poll (&pfd[1], 1, NDM_CONTROL_BACKOFF_MS);
      }
      continue;
    }

    ndm_mutex_lock (&ctl->lock);
    if (g_atomic_int_get (&ctl->stopping) ||
        g_list_length (ctl->clients) >= NDM_CONTROL_MAX_CLIENTS) {
      ndm_mutex_unlock (&ctl->lock);
      reply_error (fd, "too many control clients connected");
      close (fd);
      continue;
    }
    cl = g_new0 (struct client, 1);
    cl->ctl = ctl;
    cl->fd = fd;
    /* The reference the thread starts with is its own to drop. */
    cl->thread = ndm_thread_try_new ("ndm-control", client_thread, cl);
    if (cl->thread == NULL) {
      ndm_mutex_unlock (&ctl->lock);
      reply_error (fd, "the server cannot start a thread for this client "
                   "now; try again later");
      close (fd);
      g_free (cl);
      continue;
    }
    ctl->clients = g_list_prepend (ctl->clients, cl);
    ndm_mutex_unlock (&ctl->lock);
  }
  return NULL;
}

/* ---- life cycle --------------------------------------------------------------- */

/* A socket file at path: stale (nobody answers) is removed, live is an
 * error, anything else is an error.
 */
static int
clear_path (const char *what, const char *path, GError **err)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  struct stat st;
  int fd, r;

  if (lstat (path, &st) == -1)
    return errno == ENOENT ? 0 : (g_set_error (err, NDM_ERROR,
                                               NDM_ERROR_CONFIG,
                                               "%s: %s: %s", what, path,
                                               g_strerror (errno)), -1);
  if (!S_ISSOCK (st.st_mode)) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG,
                 "%s: %s exists and is not a socket", what, path);
    return -1;
  }
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memcpy (sa.sun_path, path, strlen (path));
  r = connect (fd, (struct sockaddr *) &sa, sizeof sa);
  close (fd);
  if (r == 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG,
                 "%s: %s is in use by another server", what, path);
    return -1;
  }
  unlink (path);
  return 0;
}

int
ndm_unix_listen (const char *what, const char *path, int backlog,
                 GError **err)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  mode_t old_mask;
  int fd, r;

  if (strlen (path) >= sizeof sa.sun_path) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG,
                 "%s: socket path '%s' is too long (at most %zu bytes)",
                 what, path, sizeof sa.sun_path - 1);
    return -1;
  }
  if (clear_path (what, path, err) == -1)
    return -1;
  memcpy (sa.sun_path, path, strlen (path));
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG, "%s: socket: %s", what,
                 g_strerror (errno));
    return -1;
  }
  /* Owner-only from the start: no window with wider permissions.  No
   * other thread runs yet (before fork), so the process umask is ours.
   */
  old_mask = umask (0177);
  r = bind (fd, (struct sockaddr *) &sa, sizeof sa);
  umask (old_mask);
  if (r == -1 || listen (fd, backlog) == -1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG, "%s: %s: %s", what, path,
                 g_strerror (errno));
    close (fd);
    return -1;
  }
  return fd;
}

struct ndm_control *
ndm_control_new (struct ndm_md *md, const char *path, GError **err)
{
  struct ndm_control *ctl;
  int fd;

  fd = ndm_unix_listen ("control", path, NDM_CONTROL_MAX_CLIENTS, err);
  if (fd == -1)
    return NULL;

  ctl = g_new0 (struct ndm_control, 1);
  ctl->md = md;
  ctl->path = g_strdup (path);
  ctl->listen_fd = fd;
  if (pipe2 (ctl->wake_pipe, O_CLOEXEC) == -1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG, "control: pipe2: %s",
                 g_strerror (errno));
    close (fd);
    unlink (ctl->path);
    g_free (ctl->path);
    g_free (ctl);
    return NULL;
  }
  ndm_mutex_init (&ctl->lock, NDM_LOCK_LEAF);
  return ctl;
}

int
ndm_control_start (struct ndm_control *ctl, GError **err)
{
  if (ctl->accept_thread == NULL)
    ctl->accept_thread = ndm_thread_try_new ("ndm-control-accept",
                                             accept_thread, ctl);
  if (ctl->accept_thread == NULL) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_CONFIG,
                 "control: %s: cannot start the thread that serves it",
                 ctl->path);
    return -1;
  }
  return 0;
}

void
ndm_control_free (struct ndm_control *ctl)
{
  GList *l;

  if (ctl == NULL)
    return;
  g_atomic_int_set (&ctl->stopping, 1);
  if (write (ctl->wake_pipe[1], "x", 1) != 1)
    ndm_log_error ("control: cannot wake the accept thread");
  if (ctl->accept_thread != NULL)
    g_thread_join (ctl->accept_thread);

  /* Wake every client thread (recv returns 0) and wait for them to go. */
  ndm_mutex_lock (&ctl->lock);
  for (l = ctl->clients; l != NULL; l = l->next)
    shutdown (((struct client *) l->data)->fd, SHUT_RDWR);
  ndm_mutex_unlock (&ctl->lock);
  for (;;) {
    bool empty;

    ndm_mutex_lock (&ctl->lock);
    empty = ctl->clients == NULL;
    ndm_mutex_unlock (&ctl->lock);
    if (empty)
      break;
    g_usleep (10 * 1000);
  }

  close (ctl->listen_fd);
  unlink (ctl->path);
  close (ctl->wake_pipe[0]);
  close (ctl->wake_pipe[1]);
  ndm_mutex_clear (&ctl->lock);
  g_free (ctl->path);
  g_free (ctl);
}
