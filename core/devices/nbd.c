/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd: devices that are NBD exports, reached with libnbd.  The only file of
 * the core that includes <libnbd.h>.
 *
 * A device is a pool of connections (struct nbd_conn) to one URI: several
 * when the server allows multi-conn (flush on one then covers writes on
 * all), else one.  Each connection is a channel (core/channel.c): no
 * thread reads its replies on its own; the request owners waiting for
 * them take turns, the leader polling a dup of libnbd's socket and calling
 * nbd_aio_notify_read/write.  Completion callbacks run under libnbd's
 * handle lock on the leader's thread and only record (ndm_bio_endio).
 *
 * Why a dup of the socket: libnbd closes its socket when the connection
 * dies, and the number may then be reused.  The dup keeps the socket open
 * for as long as the connection object lives, so polling it, and
 * shutdown(2) on it to fence the connection, can never hit another file.
 *
 * A lost connection (server gone, socket error) is a path error: libnbd
 * completes everything it had in flight with ENOTCONN, the connection
 * leaves the pool, and the device's reconnect thread (started after fork)
 * replaces it every reconnect-delay ms until the server answers again.
 *
 * Losing a connection cuts it (conn_sever), and cutting must not lie
 * about what the server may still do (R10): a server that is alive but
 * stopped (SIGSTOP, a paused VM) still holds the commands it received and
 * runs them when it resumes.  So libnbd is cut off, not the server:
 * libnbd's socket descriptor is replaced (dup2) by a dead socket, so it
 * reads EOF at once and fails every command it had (R1: then nothing of
 * it touches a client buffer any more), while our own dup of the real
 * socket stays open.  The cut connection's commands fail under a ghost
 * (ndm_ghost_new): the writes among them are quarantined in their data's
 * prison.  We half-close the real socket (the server sees EOF, finishes
 * what it has, and closes) and the fence watcher (one thread for the
 * process, started at the first cut) reads and discards what the server
 * still sends until it closes: then nothing of the connection can land
 * any more and the ghost is resolved.  A nbd_conn.io_lock (reader: every
 * nbd_aio_* call on the handle; writer: the cut) makes sure libnbd is not
 * inside a call that could close its descriptor while we replace it.
 * Three things lose a connection besides socket errors:
 *   - an ESHUTDOWN reply: the server is going away (nbdkit answers so
 *     while it drains, and waits for its clients to leave), so every
 *     connection of the device is closed;
 *   - io-timeout: commands in flight and no reply for that long;
 *   - the reconnect thread finding an idle socket hung up by the server.
 *
 * Thread model: open on the control path; submit on request owners'
 * threads; prepare/service on the channel's leader; callbacks on whoever
 * runs libnbd's state machine; the reconnect thread in the background.
 * nbd_dev.lock protects the pool (conns[]), the state words and
 * last_error (order 4a in core/request.c: only the log and a thread start
 * under it); it is never held across nbd_* calls that can run callbacks.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libnbd.h>

#include "../core.h"
#include "../log.h"

#define NDM_SOCKET_SNDBUF (1 << 20)

struct nbd_dev;

struct nbd_conn {
  struct ndm_channel ch;        /* first: a channel is a connection */
  struct nbd_dev *nd;
  struct nbd_handle *h;
  int fd;                       /* dup of the handle's socket */
  bool sr;                      /* structured replies: block status ok */
  GRWLock io_lock;              /* reader: an nbd_aio_* call on h; writer:
                                   the cut (conn_sever) */
  gint dead;                    /* atomic: lost, fenced, out of the pool */
  gint cut;                     /* atomic: conn_sever ran or runs */
  gint severed;                 /* atomic: libnbd reads a dead socket */
  gint blind;                   /* atomic: cut without a way to watch the
                                   server (its ghost waits for the
                                   operator or fence-timeout) */
  struct ndm_ghost *ghost;      /* atomic pointer, set once: what the
                                   commands it fails may still do */
  char *uri;                    /* its device's: a cut connection is
                                   watched after its device closed */
  gint suspect;                 /* atomic: a command failed on the path */
  gint64 progress;              /* atomic (__atomic): last reply read, or
                                   first command out after idle (us) */
  unsigned slot;
};

struct nbd_dev {
  struct ndm_device dev;        /* first */
  unsigned connect_timeout_ms;
  unsigned reconnect_ms;
  unsigned io_timeout_ms;       /* 0: none */
  bool structured_replies;
  gint draining;                /* atomic: a reply said ESHUTDOWN */
  gint drain_gen;               /* atomic: drains so far */
  gint settled_gen;             /* atomic: drains the reconnect thread has
                                   since tried to come back from */
  gint64 drained_at;            /* atomic (__atomic): the last drain, us */
  gint severing;                /* atomic: connections in conn_sever, cut
                                   but not yet watched */

  struct ndm_mutex lock;        /* protects everything below */
  GCond cond;                   /* reconnect thread: a slot was lost */
  unsigned nr_conns;
  struct nbd_conn **conns;      /* NULL: lost, being reconnected */
  GThread *thread;              /* the reconnect thread, once started */
  bool started;                 /* nbd_start ran (after fork) */
  gint stopping;                /* atomic too: read while connecting */
  char *last_error;
  uint64_t reconnects;
};

static const struct ndm_channel_ops nbd_channel_ops;

/* ---- the fence watcher: when can a cut connection land nothing? ------------ */

/* One end of a socket pair whose other end is closed: reads EOF, writes
 * EPIPE, always readable.  libnbd's descriptor of a cut connection is
 * made a copy of it (conn_sever), and its leader polls it.
 */
static gpointer
dead_socket_make (gpointer unused)
{
  int sv[2];

  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
    ndm_log_error ("nbd: socketpair: %s: cut connections cannot be "
                   "watched", g_strerror (errno));
    return GINT_TO_POINTER (-1);
  }
  close (sv[1]);
  return GINT_TO_POINTER (sv[0]);
}

static int
dead_socket (void)
{
  static GOnce once = G_ONCE_INIT;

  return GPOINTER_TO_INT (g_once (&once, dead_socket_make, NULL));
}

/* Cut connections whose server may still run what they sent, one channel
 * reference each.  The watcher thread polls their real sockets, reads and
 * drops whatever the server still sends (so it is never blocked on a full
 * socket) and, when the server closes its end, resolves the ghost: its
 * quarantines go.  A connection whose ghost quarantines nothing and that
 * has nothing in flight is let go at once.
 *
 * Thread model: add from conn_sever (any thread but a completion), the
 * rest on the watcher.  watch.lock is order 4b in core/request.c: a
 * ghost's resolve (its lock, then its prisons') and a connection's last
 * unref run under it.
 */
#define WATCH_POLL_MS 1000

static struct {
  struct ndm_mutex lock;        /* protects everything below */
  GPtrArray *conns;             /* struct nbd_conn * */
  GThread *thread;
  int wake_fd;                  /* eventfd, or -1: poll every 100 ms */
  unsigned devices;             /* open NBD devices: the watcher's users */
  bool stopping;
} watch = {
  .lock = NDM_MUTEX_INIT (NDM_LOCK_WATCH, "the fence watcher's lock"),
  .wake_fd = -1,
};

static void
watch_wake (void)
{
  static const uint64_t one = 1;

  if (watch.wake_fd >= 0 && write (watch.wake_fd, &one, sizeof one) < 0) {
    /* EAGAIN: a wake-up is pending anyway. */
  }
}

/* Whether the server has closed its end (or the socket failed).  Reads
 * and drops what is there first: a reply the server sent before closing
 * must not hide the close.
 */
static bool
watch_server_closed (int fd)
{
  char buf[65536];

  for (;;) {
    ssize_t r = recv (fd, buf, sizeof buf, MSG_DONTWAIT);

    if (r > 0)
      continue;
    if (r == 0)
      return true;
    if (errno == EINTR)
      continue;
    return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

/* With watch.lock held: stop watching conns->pdata[i]. */
static void
watch_drop_locked (unsigned i, const char *how)
{
  ndm_assert_held (&watch.lock);
  struct nbd_conn *c = g_ptr_array_steal_index_fast (watch.conns, i);

  /* The device may be closed by now: only c's own fields are used. */
  ndm_ghost_resolve (c->ghost, how);
  ndm_channel_unref (&c->ch);
}

static gpointer
watch_thread (gpointer unused)
{
  ndm_mutex_lock (&watch.lock);
  while (!watch.stopping) {
    unsigned i, n = watch.conns->len;
    g_autofree struct pollfd *pfd = g_new (struct pollfd, n + 1);
    g_autofree struct nbd_conn **conns = g_new (struct nbd_conn *, n + 1);

    for (i = 0; i < n; i++) {
      conns[i] = watch.conns->pdata[i];
      pfd[i].fd = g_atomic_int_get (&conns[i]->blind) ? -1 : conns[i]->fd;
      pfd[i].events = POLLIN | POLLRDHUP;
      pfd[i].revents = 0;
    }
    pfd[n].fd = watch.wake_fd;
    pfd[n].events = POLLIN;
    pfd[n].revents = 0;
    ndm_mutex_unlock (&watch.lock);

    /* Only this thread drops entries, so conns[] stays valid. */
    if (poll (pfd, n + 1, watch.wake_fd >= 0 ? WATCH_POLL_MS : 100) > 0 &&
        (pfd[n].revents & POLLIN)) {
      uint64_t v;

      if (read (watch.wake_fd, &v, sizeof v) < 0) {
        /* EAGAIN: someone else drained it. */
      }
    }

    ndm_mutex_lock (&watch.lock);
    for (i = watch.conns->len; i-- > 0; ) {
      struct nbd_conn *c = watch.conns->pdata[i];
      unsigned k;

      for (k = 0; k < n && conns[k] != c; k++)
        ;
      if (k < n && pfd[k].revents != 0 && watch_server_closed (c->fd))
        watch_drop_locked (i, "the server closed the connection");
      else if (ndm_ghost_resolved (c->ghost))
        watch_drop_locked (i, "");
      else if (g_atomic_int_get (&c->ch.inflight) == 0 &&
               ndm_ghost_cells (c->ghost) == 0)
        watch_drop_locked (i, "nothing it failed had written");
    }
  }
  while (watch.conns->len > 0)
    watch_drop_locked (watch.conns->len - 1, "the devices are closed");
  ndm_mutex_unlock (&watch.lock);
  return NULL;
}

/* Watch c (a reference is taken) until its server closes it. */
static void
watch_add (struct nbd_conn *c)
{
  ndm_channel_ref (&c->ch);
  ndm_mutex_lock (&watch.lock);
  if (watch.conns == NULL)
    watch.conns = g_ptr_array_new ();
  g_ptr_array_add (watch.conns, c);
  if (watch.thread == NULL && !watch.stopping) {
    if (watch.wake_fd < 0)
      watch.wake_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    /* If it cannot start, it is tried again at the next cut; until then
     * quarantines stay (fence-timeout, or the operator's device_dead).
     */
    watch.thread = ndm_thread_try_new ("ndm-fence-watch", watch_thread,
                                       NULL);
  }
  ndm_mutex_unlock (&watch.lock);
  watch_wake ();
}

/* A device opens or closes: the watcher runs while any is open. */
static void
watch_device_opened (void)
{
  ndm_mutex_lock (&watch.lock);
  watch.devices++;
  ndm_mutex_unlock (&watch.lock);
}

static void
watch_device_closed (void)
{
  GThread *t = NULL;

  ndm_mutex_lock (&watch.lock);
  if (--watch.devices == 0 && watch.thread != NULL) {
    t = g_steal_pointer (&watch.thread);
    watch.stopping = true;
  }
  ndm_mutex_unlock (&watch.lock);
  if (t == NULL)
    return;
  watch_wake ();
  g_thread_join (t);
  ndm_mutex_lock (&watch.lock);
  watch.stopping = false;
  ndm_mutex_unlock (&watch.lock);
}

/* The operator says uri's server is gone: its ghosts land nothing. */
static void
watch_declare_dead (const char *uri)
{
  unsigned i;

  ndm_mutex_lock (&watch.lock);
  for (i = 0; watch.conns != NULL && i < watch.conns->len; i++) {
    struct nbd_conn *c = watch.conns->pdata[i];

    if (strcmp (c->uri, uri) == 0)
      ndm_ghost_resolve (c->ghost, "the operator declared the device dead");
  }
  ndm_mutex_unlock (&watch.lock);
  watch_wake ();
}

/* Over uri's cut connections still watched: the writes their ghosts
 * quarantine now (for status), or with ghosts, how many ghosts are
 * unresolved: what those connections were sent may still land (the
 * watcher drops a connection once it cannot).
 */
static unsigned
watch_count (const char *uri, bool ghosts)
{
  unsigned i, n = 0;

  ndm_mutex_lock (&watch.lock);
  for (i = 0; watch.conns != NULL && i < watch.conns->len; i++) {
    struct nbd_conn *c = watch.conns->pdata[i];

    if (strcmp (c->uri, uri) == 0)
      n += ghosts ? !ndm_ghost_resolved (c->ghost)
        : ndm_ghost_cells (c->ghost);
  }
  ndm_mutex_unlock (&watch.lock);
  return n;
}

/* The ghost of c, made when first needed (set once). */
static struct ndm_ghost *
conn_ghost (struct nbd_conn *c, const char *why)
{
  struct ndm_ghost *g = g_atomic_pointer_get (&c->ghost);

  if (g != NULL)
    return g;
  g = ndm_ghost_new (&c->nd->dev, why);
  if (!g_atomic_pointer_compare_and_exchange (&c->ghost, NULL, g)) {
    ndm_ghost_unref (g);
    g = g_atomic_pointer_get (&c->ghost);
  }
  return g;
}

/* Cut libnbd off c's server without telling the server to forget
 * anything: see the top of the file.  Any thread outside an nbd_aio_*
 * call on c->h (it takes io_lock as writer) and outside completions.
 */
static void
conn_sever (struct nbd_conn *c, const char *why)
{
  int dead = dead_socket ();
  bool blind = false;

  if (!g_atomic_int_compare_and_exchange (&c->cut, 0, 1))
    return;
  /* Counted from before its commands fail until the watcher has it: a
   * leg whose failure they report is not put back in between.
   */
  g_atomic_int_inc (&c->nd->severing);
  conn_ghost (c, why);
  g_rw_lock_writer_lock (&c->io_lock);
  if (!nbd_aio_is_dead (c->h) && !nbd_aio_is_closed (c->h)) {
    int fd = nbd_aio_get_fd (c->h);

    if (fd < 0 || dead < 0 || dup2 (dead, fd) == -1) {
      /* Cut the socket itself: libnbd sees the end, and so do we, so
       * the server's close cannot be told from ours.
       */
      blind = true;
      shutdown (c->fd, SHUT_RDWR);
    }
  }
  g_atomic_int_set (&c->severed, 1);
  g_rw_lock_writer_unlock (&c->io_lock);

  if (blind) {
    g_atomic_int_set (&c->blind, 1);
    ndm_log_error ("device %s: connection %u cut without a way to watch "
                   "its server: writes it may still land stay quarantined "
                   "until fence-timeout, or device_dead", c->nd->dev.uri,
                   c->slot);
  }
  else
    shutdown (c->fd, SHUT_WR);  /* the server: finish, then close */
  watch_add (c);
  g_atomic_int_add (&c->nd->severing, -1);
}

/* ---- connecting ------------------------------------------------------------ */

/* The order is the one people read: plain before TLS, TCP first. */
const char *const ndm_nbd_uri_schemes[] = {
  "nbd://", "nbd+unix://", "nbds://", "nbds+unix://",
  "nbd+vsock://", "nbds+vsock://", NULL,
};

bool
ndm_nbd_uri_ok (const char *uri)
{
  size_t i;

  for (i = 0; ndm_nbd_uri_schemes[i] != NULL; i++)
    if (g_str_has_prefix (uri, ndm_nbd_uri_schemes[i]))
      return true;
  return false;
}

char *
ndm_nbd_uri_schemes_list (const char *sep, const char *last_sep)
{
  GString *s = g_string_new (NULL);
  size_t i;

  for (i = 0; ndm_nbd_uri_schemes[i] != NULL; i++) {
    if (i > 0)
      g_string_append (s, ndm_nbd_uri_schemes[i + 1] != NULL ? sep
                       : last_sep);
    g_string_append (s, ndm_nbd_uri_schemes[i]);
  }
  return g_string_free (s, FALSE);
}

/* Connect one handle to uri, within timeout_ms, giving up early if *stop
 * becomes true (the device is being closed).
 */
static struct nbd_handle *
nbd_connect_handle (const char *uri, unsigned timeout_ms, bool sr,
                    const gint *stop, GError **err)
{
  struct nbd_handle *h = nbd_create ();
  gint64 deadline = g_get_monotonic_time () + timeout_ms * INT64_C (1000);

  if (h == NULL) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE, "device %s: %s", uri,
                 nbd_get_error ());
    return NULL;
  }
  /* Extents need structured replies; they are only worth their cost in
   * recv(2) calls where a client asks for block status.
   */
  /* The table is the operator's: let its URIs name TLS key files. */
  if (nbd_set_uri_allow_local_file (h, true) == -1 ||
      nbd_set_request_structured_replies (h, sr) == -1 ||
      (sr && nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1)
      || nbd_set_pread_initialize (h, false) == -1 ||
      nbd_aio_connect_uri (h, uri) == -1)
    goto err;
  while (nbd_aio_is_connecting (h)) {
    gint64 left = deadline - g_get_monotonic_time ();

    if (stop != NULL && g_atomic_int_get (stop)) {
      g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE,
                   "device %s: closed while connecting", uri);
      nbd_close (h);
      return NULL;
    }
    if (left <= 0) {
      g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE,
                   "device %s: no NBD handshake within %u s", uri,
                   timeout_ms / 1000);
      nbd_close (h);
      return NULL;
    }
    if (nbd_poll (h, (int) MIN (left / 1000 + 1, 100)) == -1)
      goto err;
  }
  if (!nbd_aio_is_ready (h)) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE,
                 "device %s: the NBD handshake did not complete", uri);
    nbd_close (h);
    return NULL;
  }
  return h;

 err:
  g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE, "device %s: %s", uri,
               nbd_get_error ());
  nbd_close (h);
  return NULL;
}

static struct nbd_conn *
conn_new (struct nbd_dev *nd, struct nbd_handle *h, unsigned slot,
          GError **err)
{
  struct nbd_conn *c;
  int fd = dup (nbd_aio_get_fd (h));

  if (fd == -1) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE, "device %s: dup: %s",
                 nd->dev.uri, g_strerror (errno));
    nbd_close (h);
    return NULL;
  }
  /* The default (~200 KiB) sends a 1 MiB write in many pieces, each a
   * POLLOUT wake-up for the leader; 4 MiB cut the wake-ups but queued so
   * much in front of the device that 1 MiB writes got slower.  1 MiB
   * measured best (1 MiB writes QD8: 1.02x nbdkit nbd, 20% less CPU).
   * Best effort: the kernel caps it.
   */
  {
    int sndbuf = NDM_SOCKET_SNDBUF;

    setsockopt (fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  }
  c = g_new0 (struct nbd_conn, 1);
  ndm_channel_init (&c->ch, &nbd_channel_ops);   /* the pool's reference */
  g_rw_lock_init (&c->io_lock);
  c->nd = nd;
  c->uri = g_strdup (nd->dev.uri);
  c->h = h;
  c->fd = fd;
  c->sr = nbd_get_structured_replies_negotiated (h) == 1;
  c->slot = slot;
  return c;
}

/* The last reference is gone: nothing is in flight, nobody leads it. */
static void
conn_release (struct ndm_channel *ch)
{
  struct nbd_conn *c = (struct nbd_conn *) ch;

  nbd_close (c->h);
  close (c->fd);
  ndm_ghost_unref (c->ghost);
  g_rw_lock_clear (&c->io_lock);
  g_free (c->uri);
  g_free (c);
}

/* Take the connection out of the pool (dropping the pool's reference):
 * no new command goes to it, and the reconnect thread replaces it.  What
 * it has in flight goes on (a server that answers ESHUTDOWN still answers
 * what it ran); it closes when the last request lets go of it.
 */
static gpointer reconnect_thread (gpointer data);

/* With nd->lock held: the reconnect thread, if it is due and missing (it
 * could not be made before: R13).  Without it lost connections are not
 * replaced, so every loss tries again.
 */
static void
device_start_thread_locked (struct nbd_dev *nd)
{
  ndm_assert_held (&nd->lock);
  if (nd->started && nd->thread == NULL && !nd->stopping)
    nd->thread = ndm_thread_try_new ("ndm-reconnect", reconnect_thread, nd);
}

static void
conn_retire (struct nbd_conn *c, const char *why)
{
  struct nbd_dev *nd = c->nd;
  bool owned = false;

  if (!g_atomic_int_compare_and_exchange (&c->dead, 0, 1))
    return;
  ndm_mutex_lock (&nd->lock);
  if (nd->conns[c->slot] == c) {
    nd->conns[c->slot] = NULL;
    owned = true;
  }
  g_free (nd->last_error);
  nd->last_error = g_strdup (why);
  device_start_thread_locked (nd);
  g_cond_signal (&nd->cond);
  ndm_mutex_unlock (&nd->lock);

  ndm_log_error ("device %s: connection %u lost: %s", nd->dev.uri, c->slot,
                 why);
  ndm_channel_kick_leader (&c->ch);
  if (owned)
    ndm_channel_unref (&c->ch);
}

/* The connection is lost: cut it (R10: the server's fate is watched from
 * now on, and libnbd fails what it had at once) and retire it.  The
 * caller holds a reference.
 */
static void
conn_lost (struct nbd_conn *c, const char *why)
{
  conn_sever (c, why);
  conn_retire (c, why);
}

/* The server said ESHUTDOWN: it is draining and will not exit while we
 * stay connected.  Retire every connection of the device (each closes
 * once what it has in flight is answered); the reconnect thread finds the
 * server again when (if) it comes back.  Not from a completion callback:
 * conn_retire may drop the last reference.
 */
static void device_each_conn (struct nbd_dev *nd,
                              void (*fn) (struct nbd_conn *, const char *),
                              const char *why);

/* A reference to each connection in the pool now, into conns (room for
 * nr_conns), so they can be worked on without nd->lock.  Returns how
 * many; the caller unrefs each.
 */
static unsigned
device_ref_conns (struct nbd_dev *nd, struct nbd_conn **conns)
{
  unsigned i, n = 0;

  ndm_mutex_lock (&nd->lock);
  for (i = 0; i < nd->nr_conns; i++)
    if (nd->conns[i] != NULL) {
      ndm_channel_ref (&nd->conns[i]->ch);
      conns[n++] = nd->conns[i];
    }
  ndm_mutex_unlock (&nd->lock);
  return n;
}

static void
device_drain (struct nbd_dev *nd)
{
  if (g_atomic_int_compare_and_exchange (&nd->draining, 1, 0)) {
    __atomic_store_n (&nd->drained_at, g_get_monotonic_time (),
                      __ATOMIC_RELAXED);
    g_atomic_int_inc (&nd->drain_gen);
    device_each_conn (nd, conn_retire,
                      "the server is shutting down (ESHUTDOWN)");
  }
}

/* After a drain, until the reconnect thread has tried once to reach the
 * server again (a server restarted behind the same address answers at
 * once), commands wait for a fresh connection instead of failing: the
 * server said ESHUTDOWN, so it did not run them.  Bounded by the time an
 * attempt may take.
 */
static bool
device_coming_back (struct nbd_dev *nd)
{
  gint64 since = g_get_monotonic_time () -
    __atomic_load_n (&nd->drained_at, __ATOMIC_RELAXED);

  return g_atomic_int_get (&nd->drain_gen) !=
    g_atomic_int_get (&nd->settled_gen) &&
    since < (nd->connect_timeout_ms + nd->reconnect_ms) * INT64_C (1000);
}

static inline gint64
conn_progress (struct nbd_conn *c)
{
  return __atomic_load_n (&c->progress, __ATOMIC_RELAXED);
}

static inline void
conn_set_progress (struct nbd_conn *c)
{
  __atomic_store_n (&c->progress, g_get_monotonic_time (), __ATOMIC_RELAXED);
}

/* ---- the channel: leader side -------------------------------------------- */

static int
conn_prepare (struct ndm_channel *ch, struct pollfd *pfd, int *timeout_ms)
{
  struct nbd_conn *c = (struct nbd_conn *) ch;
  struct nbd_dev *nd = c->nd;
  unsigned dir;

  if (g_atomic_int_get (&nd->draining))
    device_drain (nd);
  if (nd->io_timeout_ms != 0 && !g_atomic_int_get (&c->cut) &&
      g_atomic_int_get (&ch->inflight) > 0) {
    gint64 idle_ms = (g_get_monotonic_time () - conn_progress (c)) / 1000;

    if (idle_ms >= nd->io_timeout_ms) {
      g_autofree char *why =
        g_strdup_printf ("no reply for %u ms (io-timeout): fenced",
                         nd->io_timeout_ms);

      conn_lost (c, why);
    }
    else if (*timeout_ms < 0 || *timeout_ms > nd->io_timeout_ms - idle_ms)
      *timeout_ms = nd->io_timeout_ms - idle_ms;
  }

  /* A fenced connection is polled on until libnbd has seen the end and
   * failed its commands: only then is there nothing left to wait for.
   */
  dir = nbd_aio_get_direction (c->h);
  if (dir == 0) {
    if (!g_atomic_int_get (&c->cut))
      conn_lost (c, "the connection was closed");
    return -1;
  }
  /* Cut: libnbd reads the dead socket (at once); the real one is the
   * fence watcher's.
   */
  pfd->fd = g_atomic_int_get (&c->severed) && dead_socket () >= 0
    ? dead_socket () : c->fd;
  pfd->events = 0;
  if (dir & LIBNBD_AIO_DIRECTION_READ)
    pfd->events |= POLLIN;
  if (dir & LIBNBD_AIO_DIRECTION_WRITE)
    pfd->events |= POLLOUT;
  pfd->revents = 0;
  return 0;
}

static void
conn_service (struct ndm_channel *ch, short revents)
{
  struct nbd_conn *c = (struct nbd_conn *) ch;
  unsigned dir;
  int r = 0;

  g_rw_lock_reader_lock (&c->io_lock);
  dir = nbd_aio_get_direction (c->h);
  if (g_atomic_int_get (&c->severed) && dir != 0)
    r = nbd_aio_notify_read (c->h);     /* EOF from the dead socket */
  else if ((dir & LIBNBD_AIO_DIRECTION_READ) &&
           (revents & (POLLIN | POLLHUP | POLLERR))) {
    r = nbd_aio_notify_read (c->h);
    conn_set_progress (c);
  }
  else if ((dir & LIBNBD_AIO_DIRECTION_WRITE) &&
           (revents & (POLLOUT | POLLHUP | POLLERR)))
    r = nbd_aio_notify_write (c->h);
  g_rw_lock_reader_unlock (&c->io_lock);
  if (r == -1 || nbd_aio_is_dead (c->h) || nbd_aio_is_closed (c->h))
    conn_lost (c, r == -1 ? nbd_get_error () : "the connection was closed");
  if (g_atomic_int_get (&c->nd->draining))
    device_drain (c->nd);
}

static const struct ndm_channel_ops nbd_channel_ops = {
  .prepare = conn_prepare,
  .service = conn_service,
  .release = conn_release,
};

/* ---- submitting -------------------------------------------------------------- */

/* Completion callback: under libnbd's handle lock.  Record and go; what
 * the error means for the connection is decided outside the callback.
 */
/* Whether c's server has closed its end: then what it had can no longer
 * land.  Looks, does not read (the data is libnbd's while it lives).
 */
static bool
conn_server_closed (struct nbd_conn *c)
{
  struct pollfd pfd = { .fd = c->fd, .events = POLLRDHUP };

  return poll (&pfd, 1, 0) == 1 &&
    (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static int
cmd_complete (void *user_data, int *error)
{
  struct ndm_bio *bio = user_data;
  struct nbd_conn *c = (struct nbd_conn *) bio->ch;
  int err = *error;

  if (err == ESHUTDOWN)
    g_atomic_int_set (&c->nd->draining, 1);     /* the server did not run it */
  else if (ndm_errno_is_path_error (err)) {
    g_atomic_int_set (&c->suspect, 1);
    /* Failed without an answer: unless the server is known to have
     * closed, it may run it yet (R10).  The cut follows (conn_lost,
     * outside this callback), and with it the watch.
     */
    if (g_atomic_pointer_get (&c->ghost) != NULL || !conn_server_closed (c))
      ndm_bio_quarantine (bio, err,
                          conn_ghost (c, "the connection failed"));
  }
  ndm_channel_ended (&c->ch);
  ndm_bio_endio (bio, err);
  return 1;                     /* retire the command */
}

static int
extent_cb (void *user_data, const char *metacontext, uint64_t offset,
           uint32_t *entries, size_t nr_entries, int *error)
{
  struct ndm_bio *bio = user_data;
  size_t i;

  if (strcmp (metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
    return 0;
  for (i = 0; i + 1 < nr_entries; i += 2) {
    ndm_bio_add_extent (bio, offset, entries[i],
                        entries[i + 1] & (NDM_EXTENT_HOLE | NDM_EXTENT_ZERO));
    offset += entries[i];
  }
  return 0;
}

static bool
conn_usable (struct nbd_conn *c, bool need_sr)
{
  return c != NULL && !g_atomic_int_get (&c->dead) && (c->sr || !need_sr);
}

/* A live connection with a reference: the request's own if it has one
 * (fewer leaders), else the one with fewest commands in flight.  Ties go
 * to a connection without structured replies if the command does not need
 * them (a read costs two recv(2) calls instead of four), then to the
 * first: at low queue depth one connection (and the server threads behind
 * it) stays busy instead of alternating; under load they spread.
 */
static struct nbd_conn *
conn_pick (struct nbd_dev *nd, struct ndm_channel *hint, bool need_sr)
{
  struct nbd_conn *c = NULL;
  int best = G_MAXINT;
  unsigned i;

  ndm_mutex_lock (&nd->lock);
  if (conn_usable ((struct nbd_conn *) hint, need_sr))
    c = (struct nbd_conn *) hint;
  else
    for (i = 0; i < nd->nr_conns; i++) {
      struct nbd_conn *cand = nd->conns[i];
      int n;

      if (!conn_usable (cand, need_sr))
        continue;
      /* Weight: twice the commands in flight, +1 for structured replies
       * the command does not need.
       */
      n = 2 * g_atomic_int_get (&cand->ch.inflight) +
        (cand->sr && !need_sr);
      if (n < best) {
        best = n;
        c = cand;
      }
    }
  if (c != NULL)
    ndm_channel_ref (&c->ch);
  ndm_mutex_unlock (&nd->lock);
  return c;
}

/* Owner, outside callbacks: a path error was seen on c. */
static void
conn_check_after_error (struct nbd_conn *c)
{
  g_atomic_int_set (&c->suspect, 0);
  if (nbd_aio_is_dead (c->h) || nbd_aio_is_closed (c->h))
    conn_lost (c, "the connection was closed");
  device_drain (c->nd);
}

static int
nbd_submit (struct ndm_device *dev, struct ndm_bio *bio,
            const struct ndm_cmd *cmd, struct ndm_channel *hint,
            struct ndm_channel **chp, int *err)
{
  struct nbd_dev *nd = (struct nbd_dev *) dev;
  struct nbd_conn *c;
  nbd_completion_callback cb = { .callback = cmd_complete, .user_data = bio };
  uint32_t fl = 0;
  int64_t cookie = -1;

  /* A reply said ESHUTDOWN: let the old server's connections go before
   * picking one (the command would get ESHUTDOWN again).
   */
  if (g_atomic_int_get (&nd->draining))
    device_drain (nd);
  c = conn_pick (nd, hint, cmd->op == NDM_OP_BLOCK_STATUS);
  if (c == NULL) {
    *err = device_coming_back (nd) ? EAGAIN : ENOTCONN;
    return -1;
  }
  if (cmd->flags & NDM_REQ_FUA)
    fl |= LIBNBD_CMD_FLAG_FUA;
  bio->ch = &c->ch;
  if (g_atomic_int_get (&c->ch.inflight) == 0)
    conn_set_progress (c);      /* the io-timeout clock starts now */
  ndm_channel_started (&c->ch);

  g_rw_lock_reader_lock (&c->io_lock);
  switch (cmd->op) {
  case NDM_OP_READ:
    cookie = nbd_aio_pread (c->h, cmd->buf, cmd->len, cmd->offset, cb, 0);
    break;
  case NDM_OP_WRITE:
    cookie = nbd_aio_pwrite (c->h, cmd->buf, cmd->len, cmd->offset, cb, fl);
    break;
  case NDM_OP_FLUSH:
    cookie = nbd_aio_flush (c->h, cb, 0);
    break;
  case NDM_OP_TRIM:
    cookie = nbd_aio_trim (c->h, cmd->len, cmd->offset, cb, fl);
    break;
  case NDM_OP_ZERO:
    if (!(cmd->flags & NDM_REQ_MAY_TRIM))
      fl |= LIBNBD_CMD_FLAG_NO_HOLE;
    if (cmd->flags & NDM_REQ_FAST_ZERO)
      fl |= LIBNBD_CMD_FLAG_FAST_ZERO;
    cookie = nbd_aio_zero (c->h, cmd->len, cmd->offset, cb, fl);
    break;
  case NDM_OP_CACHE:
    cookie = nbd_aio_cache (c->h, cmd->len, cmd->offset, cb, 0);
    break;
  case NDM_OP_BLOCK_STATUS:
    cookie = nbd_aio_block_status (c->h, cmd->len, cmd->offset,
                                   (nbd_extent_callback) {
                                     .callback = extent_cb,
                                     .user_data = bio },
                                   cb, (cmd->flags & NDM_REQ_ONE)
                                   ? LIBNBD_CMD_FLAG_REQ_ONE : 0);
    break;
  }
  g_rw_lock_reader_unlock (&c->io_lock);

  if (cookie == -1) {
    /* Not queued: libnbd will not call back (R6). */
    int e = nbd_get_errno ();

    ndm_channel_ended (&c->ch);
    if (nbd_aio_is_dead (c->h) || nbd_aio_is_closed (c->h)) {
      conn_lost (c, nbd_get_error ());
      e = ENOTCONN;
    }
    else if (e == 0)
      e = EIO;
    ndm_channel_unref (&c->ch);
    *err = e;
    return -1;
  }
  /* libnbd sends at once when it can; if the socket was full the rest
   * waits for POLLOUT, which the leader must now poll for.
   */
  if (nbd_aio_get_direction (c->h) & LIBNBD_AIO_DIRECTION_WRITE)
    ndm_channel_kick_leader (&c->ch);
  /* Sending may have found the connection dead and failed the command
   * already (this one or another): take it out of the pool now, or the
   * next request would fail on it too.
   */
  if (g_atomic_int_get (&c->suspect) || g_atomic_int_get (&nd->draining))
    conn_check_after_error (c);
  *chp = &c->ch;
  return 0;
}

/* ---- background: health check and reconnect ---------------------------------- */

/* A server that is shutting down (nbdkit 1.32 on SIGTERM) keeps idle
 * connections open and answers the next command with ESHUTDOWN: nothing
 * shows on a socket nobody writes to.  So an idle connection gets a
 * one-block read now and then, as a client request would, and the
 * reconnect thread reads the answer as the channel's leader: ESHUTDOWN
 * drains the device (its connections are let go, fresh ones are made),
 * a path error loses the connection.  A server restarted behind the same
 * address is then found before a client request meets the old one, and
 * the old one may exit.
 */
struct keepalive {
  gint refs;                    /* atomic: the health check's, libnbd's */
  gint done;                    /* atomic */
  int err;
  struct nbd_conn *c;
  struct ndm_waiter *w;
  char buf[];
};

static void
keepalive_unref (void *user_data)
{
  struct keepalive *ka = user_data;

  if (g_atomic_int_dec_and_test (&ka->refs))
    g_free (ka);
}

/* Completion callback, under libnbd's handle lock: record and wake. */
static int
keepalive_done (void *user_data, int *error)
{
  struct keepalive *ka = user_data;

  ka->err = *error;
  if (*error == ESHUTDOWN)
    g_atomic_int_set (&ka->c->nd->draining, 1);
  ndm_channel_ended (&ka->c->ch);
  g_atomic_int_set (&ka->done, 1);
  ndm_waiter_kick (ka->w);
  return 1;
}

static struct keepalive *
keepalive_send (struct nbd_conn *c, struct ndm_waiter *w, uint32_t len)
{
  struct keepalive *ka = g_malloc0 (sizeof *ka + len);
  int64_t cookie;

  ka->refs = 2;
  ka->c = c;
  ka->w = w;
  conn_set_progress (c);
  ndm_channel_started (&c->ch);
  g_rw_lock_reader_lock (&c->io_lock);
  cookie = nbd_aio_pread (c->h, ka->buf, len, 0,
                          (nbd_completion_callback) {
                            .callback = keepalive_done, .user_data = ka,
                            .free = keepalive_unref }, 0);
  g_rw_lock_reader_unlock (&c->io_lock);
  if (cookie == -1) {
    /* Not queued: libnbd has called the free function already. */
    ndm_channel_ended (&c->ch);
    keepalive_unref (ka);
    return NULL;
  }
  if (nbd_aio_get_direction (c->h) & LIBNBD_AIO_DIRECTION_WRITE)
    ndm_channel_kick_leader (&c->ch);
  return ka;
}

/* Reconnect thread: a keepalive on each of conns that is in the pool and
 * has been idle for reconnect-delay, then lead their channels until the
 * answers are in, for at most as long.
 */
static void
health_keepalive (struct nbd_dev *nd, struct nbd_conn **conns, unsigned n)
{
  struct ndm_waiter *w = ndm_waiter_self ();
  struct keepalive **ka = g_newa (struct keepalive *, n);
  struct pollfd *pfd = g_newa (struct pollfd, n + 1);
  struct ndm_channel **led = g_newa (struct ndm_channel *, n);
  gint64 now = g_get_monotonic_time ();
  gint64 end = now + nd->reconnect_ms * INT64_C (1000);
  uint32_t len = MAX (nd->dev.limits.min_block, 1);
  unsigned i, nka = 0;

  if (w == NULL || nd->dev.size < len)
    return;                     /* no waiter (out of fds): next time */
  for (i = 0; i < n; i++) {
    struct nbd_conn *c = conns[i];

    ka[i] = NULL;
    if (g_atomic_int_get (&c->dead) ||
        g_atomic_int_get (&c->ch.inflight) > 0 ||
        now - conn_progress (c) < nd->reconnect_ms * INT64_C (1000))
      continue;
    ka[i] = keepalive_send (c, w, len);
    nka += ka[i] != NULL;
  }

  while (nka > 0 && (now = g_get_monotonic_time ()) < end) {
    int timeout = (int) ((end - now + 999) / 1000);
    unsigned nled = 0, pending = 0;

    ndm_waiter_prepare (w);
    for (i = 0; i < n; i++) {
      if (ka[i] == NULL || g_atomic_int_get (&ka[i]->done))
        continue;
      pending++;
      if (ndm_channel_lead (&conns[i]->ch, w, &pfd[nled], &timeout))
        led[nled++] = &conns[i]->ch;
    }
    if (pending == 0)
      break;
    if (ndm_waiter_poll (w, pfd, nled, timeout) > 0)
      for (i = 0; i < nled; i++)
        if (pfd[i].revents != 0)
          led[i]->ops->service (led[i], pfd[i].revents);
  }

  for (i = 0; i < n; i++) {
    if (ka[i] == NULL)
      continue;
    ndm_channel_unlead (&conns[i]->ch, w);
    if (g_atomic_int_get (&ka[i]->done) && ka[i]->err != 0 &&
        ka[i]->err != ESHUTDOWN && ndm_errno_is_path_error (ka[i]->err))
      conn_lost (conns[i], "the keepalive read failed");
    keepalive_unref (ka[i]);
  }
}

/* A server that went away while we had nothing in flight hangs up a
 * socket nobody polls.  Look (without reading: the leader owns the data)
 * and take such connections out now, before a request is spent finding
 * out.
 */
static void
health_check (struct nbd_dev *nd)
{
  struct nbd_conn **conns = g_newa (struct nbd_conn *, nd->nr_conns);
  unsigned i, n;

  device_drain (nd);
  n = device_ref_conns (nd, conns);
  for (i = 0; i < n; i++) {
    struct pollfd pfd = { .fd = conns[i]->fd, .events = POLLRDHUP };

    if (poll (&pfd, 1, 0) == 1 &&
        (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
      conn_lost (conns[i], "the server hung up");
  }
  health_keepalive (nd, conns, n);
  for (i = 0; i < n; i++)
    ndm_channel_unref (&conns[i]->ch);
  device_drain (nd);
}

static void read_caps (struct nbd_dev *nd, struct nbd_handle *h);

/* An absent device (opened tolerant, never reached) is reached: learn its
 * size, limits and capabilities, then publish it as present.  Only the
 * reconnect thread writes them; the core reads them once dev->absent is
 * false (release/acquire).
 */
static void
device_first_contact (struct nbd_dev *nd, struct nbd_handle *h)
{
  read_caps (nd, h);
  ndm_device_limits_fixup (&nd->dev.limits);
  ndm_mutex_lock (&nd->lock);
  if (!nd->dev.caps.multi_conn)
    nd->nr_conns = 1;
  ndm_mutex_unlock (&nd->lock);
  __atomic_store_n (&nd->dev.absent, false, __ATOMIC_RELEASE);
  ndm_log_info ("device %s: reached: %" PRIu64 " bytes", nd->dev.uri,
                nd->dev.size);
}

/* Replace lost connections; size must not have changed. */
static void
reconnect_lost (struct nbd_dev *nd)
{
  gint gen = g_atomic_int_get (&nd->drain_gen);
  unsigned i;

  for (i = 0; i < nd->nr_conns; i++) {
    GError *e = NULL;
    struct nbd_handle *h;
    struct nbd_conn *c;
    bool lost;

    ndm_mutex_lock (&nd->lock);
    lost = nd->conns[i] == NULL && !nd->stopping;
    ndm_mutex_unlock (&nd->lock);
    if (!lost)
      continue;

    h = nbd_connect_handle (nd->dev.uri, nd->connect_timeout_ms,
                            i == 0 || nd->structured_replies,
                            &nd->stopping, &e);
    if (h != NULL && __atomic_load_n (&nd->dev.absent, __ATOMIC_ACQUIRE))
      device_first_contact (nd, h);
    c = h != NULL ? conn_new (nd, h, i, &e) : NULL;
    if (c != NULL && nbd_get_size (h) != (int64_t) nd->dev.size) {
      g_set_error (&e, NDM_ERROR, NDM_ERROR_DEVICE,
                   "device %s: came back with %" PRId64 " bytes instead "
                   "of %" PRIu64 ": not reinstated", nd->dev.uri,
                   nbd_get_size (h), nd->dev.size);
      ndm_channel_unref (&c->ch);
      c = NULL;
    }

    ndm_mutex_lock (&nd->lock);
    if (c != NULL) {
      nd->conns[i] = c;
      nd->reconnects++;
    }
    else {
      /* Log a new reason once, not every attempt. */
      if (nd->last_error == NULL || strcmp (nd->last_error, e->message))
        ndm_log_error ("%s", e->message);
      g_free (nd->last_error);
      nd->last_error = g_strdup (e->message);
      g_error_free (e);
    }
    ndm_mutex_unlock (&nd->lock);
    if (c != NULL)
      ndm_log_info ("device %s: connection %u reconnected", nd->dev.uri, i);
  }
  g_atomic_int_set (&nd->settled_gen, gen);
}

/* Every reconnect-delay ms (sooner when a connection is lost): check idle
 * connections, replace lost ones.
 */
static gpointer
reconnect_thread (gpointer data)
{
  struct nbd_dev *nd = data;

  ndm_mutex_lock (&nd->lock);
  while (!nd->stopping) {
    ndm_cond_wait_until (&nd->cond, &nd->lock, g_get_monotonic_time () +
                       nd->reconnect_ms * G_TIME_SPAN_MILLISECOND);
    if (nd->stopping)
      break;
    ndm_mutex_unlock (&nd->lock);
    health_check (nd);
    reconnect_lost (nd);
    ndm_mutex_lock (&nd->lock);
  }
  ndm_mutex_unlock (&nd->lock);
  return NULL;
}

/* Every connection of the device goes at once, each as fn says: lost
 * (cut: its commands fail at once, and its server is watched) or retired
 * (what it has in flight goes on).  They come back through the reconnect
 * thread.
 */
static void
device_each_conn (struct nbd_dev *nd,
                  void (*fn) (struct nbd_conn *, const char *),
                  const char *why)
{
  struct nbd_conn **conns = g_newa (struct nbd_conn *, nd->nr_conns);
  unsigned i, n = device_ref_conns (nd, conns);

  for (i = 0; i < n; i++) {
    fn (conns[i], why);
    ndm_channel_unref (&conns[i]->ch);
  }
}

/* Fence: a multipath path failed, or the like. */
static void
nbd_fence (struct ndm_device *dev, const char *why)
{
  device_each_conn ((struct nbd_dev *) dev, conn_lost, why);
}

static bool
nbd_connected (struct ndm_device *dev)
{
  struct nbd_dev *nd = (struct nbd_dev *) dev;
  bool up = false;
  unsigned i;

  ndm_mutex_lock (&nd->lock);
  for (i = 0; i < nd->nr_conns && !up; i++)
    up = nd->conns[i] != NULL && !g_atomic_int_get (&nd->conns[i]->dead);
  ndm_mutex_unlock (&nd->lock);
  return up;
}

/* A connection of its own: handshake, one block read, size. */
static int
nbd_probe (struct ndm_device *dev, unsigned timeout_ms, uint64_t *size,
           GError **err)
{
  struct nbd_dev *nd = (struct nbd_dev *) dev;
  gint64 deadline = g_get_monotonic_time () + timeout_ms * INT64_C (1000);
  struct nbd_handle *h;
  int64_t min, cookie;
  g_autofree char *buf = NULL;
  int r = -1;

  h = nbd_connect_handle (dev->uri, timeout_ms, false, &nd->stopping, err);
  if (h == NULL)
    return -1;
  *size = nbd_get_size (h);
  min = nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM);
  if (min < 512)
    min = 512;
  buf = g_malloc (min);
  cookie = *size >= (uint64_t) min
    ? nbd_aio_pread (h, buf, min, 0, NBD_NULL_COMPLETION, 0) : 0;
  if (cookie == -1)
    goto err;
  while (cookie > 0) {
    int done = nbd_aio_command_completed (h, cookie);
    gint64 left = deadline - g_get_monotonic_time ();

    if (done == 1)
      break;
    /* An error reply is the data's answer (R5): the server is there. */
    if (done == -1 && !ndm_errno_is_path_error (nbd_get_errno ()))
      break;
    if (done == -1)
      goto err;
    if (left <= 0) {
      g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE,
                   "device %s: the probe read got no answer within %u ms",
                   dev->uri, timeout_ms);
      nbd_close (h);
      return -1;
    }
    if (nbd_poll (h, (int) MIN (left / 1000 + 1, 100)) == -1)
      goto err;
  }
  r = 0;
  nbd_close (h);
  return r;

 err:
  g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE, "device %s: probe: %s",
               dev->uri, nbd_get_error ());
  nbd_close (h);
  return -1;
}

static void
nbd_start (struct ndm_device *dev)
{
  struct nbd_dev *nd = (struct nbd_dev *) dev;

  ndm_mutex_lock (&nd->lock);
  nd->started = true;
  device_start_thread_locked (nd);
  ndm_mutex_unlock (&nd->lock);
}

static void
nbd_declare_dead (struct ndm_device *dev)
{
  watch_declare_dead (dev->uri);
}

static unsigned
nbd_unresolved_ghosts (struct ndm_device *dev)
{
  struct nbd_dev *nd = (struct nbd_dev *) dev;

  return g_atomic_int_get (&nd->severing) + watch_count (dev->uri, true);
}

/* How the pool stands, and the writes cut connections may still land. */
static void
nbd_status (struct ndm_device *dev, struct ndm_device_status *st)
{
  struct nbd_dev *nd = (struct nbd_dev *) dev;
  unsigned i;

  st->quarantined = watch_count (dev->uri, false);
  ndm_mutex_lock (&nd->lock);
  for (i = 0; i < nd->nr_conns; i++)
    st->conns_up += nd->conns[i] != NULL;
  st->conns = nd->nr_conns;
  st->state = st->conns_up == st->conns ? NDM_DEVICE_UP
    : st->conns_up > 0 ? NDM_DEVICE_DEGRADED : NDM_DEVICE_DOWN;
  if (st->state == NDM_DEVICE_DOWN)
    st->reason = g_strdup (nd->last_error);
  ndm_mutex_unlock (&nd->lock);
}

static void
nbd_close_device (struct ndm_device *dev)
{
  struct nbd_dev *nd = (struct nbd_dev *) dev;
  unsigned i;

  ndm_mutex_lock (&nd->lock);
  g_atomic_int_set (&nd->stopping, 1);
  g_cond_broadcast (&nd->cond);
  ndm_mutex_unlock (&nd->lock);
  if (nd->thread != NULL)
    g_thread_join (nd->thread);

  for (i = 0; i < nd->nr_conns; i++)
    if (nd->conns[i] != NULL)
      ndm_channel_unref (&nd->conns[i]->ch);
  g_free (nd->conns);
  g_free (nd->last_error);
  g_cond_clear (&nd->cond);
  ndm_mutex_clear (&nd->lock);
  g_free (nd->dev.uri);
  g_free (nd);
  watch_device_closed ();
}

static const struct ndm_device_ops nbd_device_ops = {
  .name = "nbd",
  .submit = nbd_submit,
  .start = nbd_start,
  .status = nbd_status,
  .fence = nbd_fence,
  .probe = nbd_probe,
  .connected = nbd_connected,
  .declare_dead = nbd_declare_dead,
  .unresolved_ghosts = nbd_unresolved_ghosts,
  .close = nbd_close_device,
};

/* ---- open ----------------------------------------------------------------------- */

static void
read_caps (struct nbd_dev *nd, struct nbd_handle *h)
{
  struct ndm_device *dev = &nd->dev;
  int64_t min = nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM);
  int64_t pref = nbd_get_block_size (h, LIBNBD_SIZE_PREFERRED);
  int64_t max = nbd_get_block_size (h, LIBNBD_SIZE_MAXIMUM);

  dev->size = nbd_get_size (h);
  dev->caps.read_only = nbd_is_read_only (h) == 1;
  dev->caps.flush = nbd_can_flush (h) == 1;
  dev->caps.fua = nbd_can_fua (h) == 1;
  dev->caps.trim = nbd_can_trim (h) == 1;
  dev->caps.zero = nbd_can_zero (h) == 1;
  dev->caps.fast_zero = nbd_can_fast_zero (h) == 1;
  dev->caps.cache = nbd_can_cache (h) == 1;
  dev->caps.multi_conn = nbd_can_multi_conn (h) == 1;
  dev->caps.extents =
    nbd_can_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  dev->limits.min_block = min > 0 ? min : 0;
  dev->limits.pref_block = pref > 0 ? pref : 0;
  dev->limits.max_data = max > 0 && max < UINT32_MAX ? max : 0;
}

static struct ndm_device *
nbd_open (const char *uri, const struct ndm_config *cfg, bool tolerant,
          GError **err)
{
  struct nbd_dev *nd;
  struct nbd_handle *h;
  GError *e = NULL;
  unsigned i;

  if (!ndm_nbd_uri_ok (uri)) {
    g_autofree char *schemes = ndm_nbd_uri_schemes_list (", ", " or ");

    g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE,
                 "device '%s' is not an NBD URI: expected %s", uri, schemes);
    return NULL;
  }
  /* The first connection always negotiates structured replies, so block
   * status has somewhere to go.
   */
  h = nbd_connect_handle (uri, cfg->connect_timeout_ms, true, NULL, &e);
  if (h == NULL && !tolerant) {
    g_propagate_error (err, e);
    return NULL;
  }

  nd = g_new0 (struct nbd_dev, 1);
  watch_device_opened ();
  nd->dev.ops = &nbd_device_ops;
  nd->dev.uri = g_strdup (uri);
  nd->connect_timeout_ms = cfg->connect_timeout_ms;
  nd->reconnect_ms = cfg->reconnect_ms;
  nd->io_timeout_ms = cfg->io_timeout_ms;
  nd->structured_replies = cfg->structured_replies;
  ndm_mutex_init (&nd->lock, NDM_LOCK_POOL);
  g_cond_init (&nd->cond);
  if (h == NULL) {
    /* Tolerated: absent until the reconnect thread reaches it. */
    ndm_log_error ("%s: absent for now, will keep trying", e->message);
    nd->last_error = g_strdup (e->message);
    g_error_free (e);
    nd->dev.absent = true;
    nd->nr_conns = cfg->connections;
    nd->conns = g_new0 (struct nbd_conn *, nd->nr_conns);
    return &nd->dev;
  }
  if (nbd_get_size (h) < 0) {
    g_set_error (err, NDM_ERROR, NDM_ERROR_DEVICE,
                 "device %s: the server sent no export size", uri);
    nbd_close (h);
    nbd_close_device (&nd->dev);
    return NULL;
  }
  read_caps (nd, h);
  nd->nr_conns = nd->dev.caps.multi_conn ? cfg->connections : 1;
  nd->conns = g_new0 (struct nbd_conn *, nd->nr_conns);
  nd->conns[0] = conn_new (nd, h, 0, err);
  if (nd->conns[0] == NULL)
    goto err;
  for (i = 1; i < nd->nr_conns; i++) {
    h = nbd_connect_handle (uri, cfg->connect_timeout_ms,
                            cfg->structured_replies, NULL, err);
    if (h == NULL)
      goto err;
    nd->conns[i] = conn_new (nd, h, i, err);
    if (nd->conns[i] == NULL)
      goto err;
  }
  return &nd->dev;

 err:
  nbd_close_device (&nd->dev);
  return NULL;
}

const struct ndm_device_class ndm_nbd_device_class = {
  .name = "nbd",
  .open = nbd_open,
};
