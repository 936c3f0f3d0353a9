/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: core-private declarations (not for targets or front ends).
 *
 * Lock order is documented once, at the top of core/request.c.
 */
#ifndef NBD_DM_CORE_H
#define NBD_DM_CORE_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "nbd-dm/ndm.h"
#include "nbd-dm/bio.h"
#include "nbd-dm/device.h"
#include "nbd-dm/target.h"
#include "thread.h"

#define NDM_KIB (UINT64_C (1) << 10)
#define NDM_MIB (UINT64_C (1) << 20)
#define NDM_GIB (UINT64_C (1) << 30)

/* libnbd refuses buffers over 64 MiB; R7's default when a device says
 * nothing is 32 MiB.
 */
#define NDM_DEFAULT_MAX_DATA   (32 * NDM_MIB)
#define NDM_HARD_MAX_DATA      (64 * NDM_MIB)
#define NDM_DEFAULT_MAX_LEN    (UINT32_C (1) << 31)

/* fence-timeout's default: long enough for a paused VM or a stalled
 * server to come back, short enough that a client is answered.
 */
#define NDM_DEFAULT_FENCE_TIMEOUT_MS 30000

/* dm's DM_MAPIO_DELAY_REQUEUE / DM_ENDIO_DELAY_REQUEUE wait.  The fuzz
 * build shortens it (tests/fuzz): held I/O then costs an input
 * milliseconds, not tenths of a second, and the same rounds run.
 */
#ifndef NDM_DELAY_REQUEUE_MS
#define NDM_DELAY_REQUEUE_MS   100
#endif

/* A device that answers ESHUTDOWN did not run the command: it is sent
 * again, on a fresh connection to the same device, up to this many times
 * per bio; then the error stands (a path error).  A device without a
 * connection yet, one coming, says EAGAIN at submit: looked at again
 * every NDM_DEVICE_RETRY_US.
 */
#define NDM_MAX_REISSUES       3
#define NDM_DEVICE_RETRY_US    (20 * 1000)

/* R13: consecutive rounds that start no device command and ask for no
 * delay before a request gives up with the start error.  A target that
 * makes progress without I/O (multipath failing one path per round) needs
 * one round per path; nothing legitimate needs this many.
 */
#define NDM_MAX_EMPTY_ROUNDS   1000

/* ---- waiter (core/waiter.c) -------------------------------------------- */

struct ndm_waiter {
  int efd;                      /* eventfd, nonblocking; -1 while retired
                                   without one (see core/waiter.c) */
  gint sleeping;                /* atomic: in poll(2), needs a write */
  gint kicked;                  /* atomic: something changed, recheck */
  gint kickers;                 /* atomic: kicks that may still write efd */
  struct ndm_waiter *next;      /* on a free list; by its lock */
};

/* Retired waiters that keep their eventfd for the next thread; the rest
 * give it back (an eventfd per exited thread would pile up).
 */
#define NDM_WAITER_SPARE 8

/* Tests only (NULL otherwise): called where the proof in core/waiter.c
 * needs an interleaving that tests cannot otherwise force.
 */
enum ndm_waiter_hook_point {
  NDM_WAITER_HOOK_KICK_WRITE,   /* a kicker is about to write efd */
  NDM_WAITER_HOOK_RETIRE_KEPT,  /* a retirement kept efd (a spare) */
  NDM_WAITER_HOOK_RETIRE_WAIT,  /* a retirement waits for kickers */
  NDM_WAITER_HOOK_RETIRE_CLOSED, /* a retirement closed efd */
};
extern void (*ndm_waiter_test_hook) (struct ndm_waiter *w,
                                     enum ndm_waiter_hook_point point);

/* Tests only (NULL otherwise): called by request_delay each time it has
 * counted a held clone, so that a test can release it right then.
 */
extern void (*ndm_request_held_test_hook) (struct ndm_clone *clone);

/* Before checking the conditions a wait depends on. */
void ndm_waiter_prepare (struct ndm_waiter *w);

/* Around a channel's service: kicks made in between (from completions)
 * are issued at the end, outside the device's locks.
 */
void ndm_waiter_batch_begin (void);
void ndm_waiter_batch_end (void);

/* Sleep in poll(2) on fds (the last slot is filled with w's eventfd) until
 * w is kicked, an fd is ready or timeout_ms passes (-1: no timeout).
 * Returns poll's result; fds[nfds].revents tells whether w was kicked.
 */
int ndm_waiter_poll (struct ndm_waiter *w, struct pollfd *fds, unsigned nfds,
                     int timeout_ms);

/* ---- channels (core/channel.c) ------------------------------------------ */

/* Become ch's leader, or stay it.  Returns 1 with pfd filled (and
 * *timeout_ms possibly lowered) if w leads and there is something to
 * poll; 0 if another waiter leads (w is then on the standby queue and is
 * kicked when leadership is free) or if ch is dead.
 */
int ndm_channel_lead (struct ndm_channel *ch, struct ndm_waiter *w,
                      struct pollfd *pfd, int *timeout_ms);

/* w no longer waits on ch: give up leadership (waking a standby waiter if
 * commands are still in flight) or leave the standby queue.
 */
void ndm_channel_unlead (struct ndm_channel *ch, struct ndm_waiter *w);

/* ---- budgets (core/budget.c): caps that make requests wait (R8) -------- */

struct ndm_budget {
  const char *name;
  uint64_t cap;                 /* bytes; set once */
  uint64_t used;                /* atomic (__atomic builtins) */
  gint nr_waiting;              /* atomic: nonzero if waiters may exist */
  struct ndm_mutex lock;        /* protects waiters */
  GQueue waiters;               /* struct ndm_waiter * */
};

void ndm_budget_init (struct ndm_budget *b, const char *name, uint64_t cap);
void ndm_budget_clear (struct ndm_budget *b);

/* Charge n bytes.  Always succeeds when nothing is charged (so one request
 * bigger than the cap still runs).  On failure w is queued and will be
 * kicked by a later ndm_budget_put.
 */
bool ndm_budget_try_get (struct ndm_budget *b, uint64_t n,
                         struct ndm_waiter *w);
void ndm_budget_put (struct ndm_budget *b, uint64_t n);
/* w stops waiting (it got the budget or gave up). */
void ndm_budget_forget (struct ndm_budget *b, struct ndm_waiter *w);

/* ---- prisons (core/prison.c) ---------------------------------------------- */

struct ndm_prison;

struct ndm_prison *ndm_prison_new (void);
struct ndm_prison *ndm_prison_ref (struct ndm_prison *p);
void ndm_prison_unref (struct ndm_prison *p);
/* Quarantine cells in it now. */
unsigned ndm_prison_quarantined (struct ndm_prison *p);

/* Owner: may [offset, offset + len) be written (writes) or read now?
 * With hold, also take it as a cell: a read-modify-write, or a direct
 * write an RMW may meet (hold->shared).  Returns 0 (go;
 * hold is in the prison), 1 (wait: w is queued and kicked when a cell
 * goes, *wait_until lowered to a quarantine's deadline), or -1 with *err
 * EIO (a write into a quarantine past its deadline).
 */
int ndm_prison_detain (struct ndm_prison *p, struct ndm_cell *hold,
                       uint64_t offset, uint64_t len, bool writes,
                       struct ndm_waiter *w, gint64 *wait_until, int *err);
void ndm_prison_release (struct ndm_prison *p, struct ndm_cell *cell);
/* From a completion: the write [offset, offset + len) failed under g and
 * may still land: quarantine it in p until g is resolved.
 */
void ndm_ghost_quarantine (struct ndm_ghost *g, struct ndm_prison *p,
                           uint64_t offset, uint64_t len);

/* ---- table (core/table.c) ------------------------------------------------ */

struct ndm_table {
  struct ndm_md *md;
  gint refs;                    /* atomic: md's live pointer + requests */
  unsigned nr_targets;
  struct ndm_target *targets;   /* sorted by begin, contiguous from 0 */
  uint64_t size;                /* bytes */
  GPtrArray *devices;           /* unique struct ndm_device *, one ref */
  GPtrArray *data_devices;      /* those client data goes to (R12's
                                   caps); no ref of their own */
  GPtrArray *metadata_devices;  /* those a target's metadata lives on
                                   (one target each); no ref */
  struct ndm_caps caps;
};

struct ndm_table *ndm_table_create (struct ndm_md *md, const char *text,
                                    GError **err);
void ndm_table_ref (struct ndm_table *t);
void ndm_table_unref (struct ndm_table *t);
/* The target holding byte offset (< t->size). */
struct ndm_target *ndm_table_find_target (struct ndm_table *t,
                                          uint64_t offset);
void ndm_table_format (struct ndm_table *t, enum ndm_status_type type,
                       GString *out);
/* One line of it: "<start> <length> <target> <status or args>\n". */
void ndm_target_format (struct ndm_target *ti, enum ndm_status_type type,
                        GString *out);

/* ---- devices (core/device.c) --------------------------------------------- */

struct ndm_device *ndm_md_get_device (struct ndm_md *md, const char *uri,
                                      bool tolerant, GError **err);
void ndm_md_put_device (struct ndm_md *md, struct ndm_device *dev);

/* A read-only region of zeros at least len bytes long, for zero requests
 * to devices that cannot write zeros (R12: emulated, not refused).
 */
const void *ndm_zero_buffer (uint64_t len);

/* ---- mapped device (core/md.c) ------------------------------------------ */

struct ndm_md {
  struct ndm_config cfg;
  GRWLock table_lock;           /* protects live (swap lock, order 1) */
  struct ndm_table *live;

  /* Suspend, reload, resume (core/md.c).  command_lock serialises the
   * commands that change state; state_lock (order 0, control path and
   * the slow paths of the request gate) protects the rest.
   */
  struct ndm_mutex command_lock;
  struct ndm_mutex state_lock;  /* protects noflush, inactive, state_cond */
  GCond state_cond;             /* suspended, active or parked changed */
  gint suspended;               /* atomic: new requests wait at the gate */
  bool noflush;                 /* requeues are held, not run, meanwhile */
  gint active;                  /* atomic: requests past the gate */
  gint parked;                  /* atomic: of those, held between rounds */
  struct ndm_table *inactive;   /* loaded by reload, live at resume */
  bool inactive_resize_ok;      /* reloaded with --allow-resize */
  gint open_count;              /* atomic: client connections */
  struct ndm_mutex event_lock;  /* leaf: only for event_cond */
  GCond event_cond;
  guint event_nr;               /* atomic */
  struct ndm_mutex devices_lock; /* protects devices, each device's refs */
  GHashTable *devices;          /* uri -> struct ndm_device * */
  struct ndm_budget inflight;   /* bytes of data bios in flight */
  struct ndm_budget bounce;     /* bytes of bounce buffers */
  bool started;
  gint shutting_down;           /* atomic */
};

struct ndm_table *ndm_md_get_table (struct ndm_md *md);

/* The request gate: every request enters (waiting while the device is
 * suspended) and exits.  A request that must run another round while a
 * noflush suspend is on parks: it returns 1 once resumed (the live table
 * may then be another), 0 if it need not park.  Both return -1 if the
 * front end quits while they wait (the request ends with ESHUTDOWN; a
 * request that failed to enter does not exit).
 */
int ndm_md_enter (struct ndm_md *md);
void ndm_md_exit (struct ndm_md *md);
int ndm_md_park (struct ndm_md *md);

/* The front end shuts down (cfg.quitting said so, or it told us): held
 * requests give up.
 */
bool ndm_md_quitting (struct ndm_md *md);

/* ndm_md_command, with a way for long commands (wait) to give up. */
int ndm_md_command_full (struct ndm_md *md, int argc, char **argv,
                         GString *out, bool (*cancelled) (void *),
                         void *cancel_data, GError **err);

/* A Unix stream socket listening at path (core/control.c), mode 0600; a
 * stale socket file there is replaced, a live one or any other file is
 * an error, whose message starts with what ("control", "metrics").
 * Returns the descriptor, or -1 with *err.  Before fork: it sets umask.
 */
int ndm_unix_listen (const char *what, const char *path, int backlog,
                     GError **err);

/* Bump the event number and wake `wait`. */
void ndm_md_event (struct ndm_md *md);
/* Wait until the event number exceeds after, or until deadline
 * (monotonic us).  Returns the event number.
 */
unsigned ndm_md_wait_event (struct ndm_md *md, unsigned after,
                            gint64 deadline);

/* ---- requests (core/request.c) ------------------------------------------ */

#define NDM_RQ_INLINE_CLONES   4
#define NDM_RQ_INLINE_CHANNELS 4

/* A channel the request started commands on, with one reference. */
struct ndm_rq_channel {
  struct ndm_channel *ch;
  struct ndm_device *dev;
};

/* Every field is written by core/request.c alone; bios reach their
 * request only through ndm_request_bio_ready and ndm_request_bio_done.
 */
struct ndm_request {
  struct ndm_md *md;
  struct ndm_table *table;      /* one ref, for the request's life */
  struct ndm_waiter *owner;
  enum ndm_op op;
  uint32_t flags;
  uint64_t offset;
  uint64_t len;
  char *buf;

  gint pending;                 /* atomic: bios started and not DONE */
  gint fail_seq;                /* atomic: R3 arrival order of failures */
  struct ndm_mutex lock;        /* protects ready */
  struct ndm_bio *ready;        /* bios whose step ended; owner goes on */
  struct ndm_bio *deferred;     /* owner-only: READY bios whose device
                                   said EAGAIN, tried again later */

  /* Owner-only from here. */
  bool stop;                    /* R6: a start failed, cancel the rest */
  int start_error;              /* that start's errno (this round) */
  unsigned nr_started;          /* device commands started this round */
  unsigned cursor_clone;        /* next bio to start: clone index ... */
  struct ndm_bio *cursor_bio;   /* ... and bio in it */
  unsigned nr_clones;
  struct ndm_clone *clones;
  unsigned first_err;           /* R3 across clones: the first clone that
                                   finished with an error (nr_clones:
                                   none yet) */
  unsigned empty_rounds;        /* R13: rounds in a row that started
                                   nothing and asked for no delay */
  unsigned nr_channels;
  unsigned max_channels;
  struct ndm_rq_channel *channels;
  GPtrArray *flushed;           /* devices whose flush succeeded (R9) */
  GPtrArray *flush_mapped;      /* devices with a flush bio this round */
  GPtrArray *old_tables;        /* tables it ran on before a resume; its
                                   finished clones still point into them */
  bool waits_inflight;          /* on md->inflight's queue */
  bool waits_bounce;            /* on md->bounce's queue */
  int64_t wait_until;           /* a bio is delayed until then (0: none) */

  /* Last, so request_init need not clear them: small requests use these
   * instead of the heap.
   */
  struct ndm_rq_channel inline_channels[NDM_RQ_INLINE_CHANNELS];
  struct ndm_clone inline_clones[NDM_RQ_INLINE_CLONES];
};

/* How ndm_request_run ended. */
enum ndm_request_result {
  NDM_RQ_OK,                    /* done; block status answers in out */
  NDM_RQ_ERROR,                 /* failed with the raw (not yet
                                   client-mapped) errno in *err */
  NDM_RQ_QUIT,                  /* abandoned because the front end quits
                                   (server shutting down or the client
                                   gone): the client gets ESHUTDOWN
                                   whatever the server's state */
};

/* Run one request on the calling thread.  For block status, extents are
 * appended to out.
 */
enum ndm_request_result ndm_request_run (struct ndm_md *md, enum ndm_op op,
                                         void *buf, uint64_t count,
                                         uint64_t offset, uint32_t flags,
                                         GArray *out, int *err);

/* The merge rule (R2, R3), the only place it is written: credited bytes
 * and frontier error of a clone whose bios are all DONE.
 */
void ndm_clone_settle (struct ndm_clone *clone);

/* From a completion: bio's step ended, the owner must go on. */
void ndm_request_bio_ready (struct ndm_request *rq, struct ndm_bio *bio);
/* From a completion: bio is DONE.  After this the completer must not
 * touch bio or rq.
 */
void ndm_request_bio_done (struct ndm_request *rq, struct ndm_bio *bio);

/* ---- bios (core/bio.c) ----------------------------------------------------- */

/* Owner: a settled bio goes back to the thread's cache (bios are made by
 * ndm_clone_map_bio and ndm_bio_add_flush, on the owner's thread).
 */
void ndm_bio_free (struct ndm_bio *bio);

/* Map a flush bio for dev into clone (the request has checked that dev
 * is not flushed yet, R9).
 */
void ndm_bio_add_flush (struct ndm_clone *clone, struct ndm_device *dev);

/* What ndm_bio_start did. */
enum ndm_bio_start_result {
  NDM_BIO_ISSUED,               /* a device command is out; its completion
                                   follows (possibly already ran) */
  NDM_BIO_WAITS,                /* it cannot start now: see wait */
  NDM_BIO_FAILED,               /* it failed to start (R6): DONE with err */
};

/* Why a bio cannot start now. */
enum ndm_bio_wait {
  NDM_BIO_WAIT_DELAY,           /* its target delays it until until */
  NDM_BIO_WAIT_DEVICE,          /* the device has no connection yet and
                                   one is coming: look again at until */
  NDM_BIO_WAIT_PRISON,          /* an RMW of its block, or a quarantine
                                   (R7, R10): the owner is kicked when a
                                   cell goes, or until a deadline */
  NDM_BIO_WAIT_INFLIGHT,        /* the in-flight cap (R8): the owner is
                                   queued on md->inflight */
  NDM_BIO_WAIT_BOUNCE,          /* the bounce cap (R8): queued on
                                   md->bounce */
};

/* ndm_bio_start's exchange with the request that starts the bio: the
 * request fills the inputs and keeps the books from the outputs.
 */
struct ndm_bio_start {
  struct ndm_waiter *owner;     /* in: queued where the bio must wait */
  struct ndm_channel *channel;  /* in: the request's channel to the bio's
                                   device (a hint), or NULL */
  struct ndm_channel *new_channel; /* out, ISSUED: the channel the command
                                   went to, one reference, or NULL */
  enum ndm_bio_wait wait;       /* out, WAITS */
  int64_t until;                /* out, WAITS: look again by then
                                   (monotonic us; 0: when kicked) */
  int err;                      /* out, FAILED */
};

/* Owner: start bio (state NEW) or its next step (READY).  A bio that
 * waits keeps what it already holds and is started again later; a READY
 * one stays READY.
 */
enum ndm_bio_start_result ndm_bio_start (struct ndm_bio *bio,
                                         struct ndm_bio_start *s);
/* Owner: finish a NEW bio without starting it: an earlier start of its
 * request failed (R6).  It has not failed (ndm_bio_failed is false); the
 * clone's credit stops at it.
 */
void ndm_bio_cancel (struct ndm_bio *bio);

/* A bio that needs no device command (block status of a device without
 * base:allocation): answered and DONE at map time.
 */
void ndm_bio_complete_locally (struct ndm_bio *bio);

#endif /* NBD_DM_CORE_H */
