/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: the path checker (see checker.h).
 *
 * Thread model: ndm_checker_init, _add and _clear run in the owner's ctr
 * and dtr; the _locked calls wherever the owner holds its lock (request
 * owners, the control thread, the checker's thread); the thread itself
 * takes the owner's lock for its bookkeeping and drops it to probe.
 */
#include <string.h>

#include "checker.h"
#include "json.h"
#include "log.h"
#include "thread.h"

void
ndm_checker_init (struct ndm_checker *c, struct ndm_target *ti,
                  const struct ndm_checker_ops *ops, struct ndm_mutex *lock,
                  void *owner)
{
  c->ti = ti;
  c->ops = ops;
  c->owner = owner;
  c->lock = lock;
  c->items = g_ptr_array_new ();
  g_cond_init (&c->cond);
}

void
ndm_checker_clear (struct ndm_checker *c)
{
  ndm_mutex_lock (c->lock);
  c->stopping = true;
  g_cond_broadcast (&c->cond);
  ndm_mutex_unlock (c->lock);
  if (c->thread != NULL)
    g_thread_join (c->thread);
  g_ptr_array_unref (c->items);
  g_cond_clear (&c->cond);
}

/* "size 2097152 bytes, the other paths have 1048576: not the same data" */
static char *
size_mismatch (struct ndm_checker *c, uint64_t size)
{
  return g_strdup_printf ("size %" PRIu64 " bytes, the other %ss have %"
                          PRIu64 ": not the same data", size, c->ops->noun,
                          c->size);
}

/* With the size known, a reachable item of another size is refused: it
 * is not the same data (NBD has no WWID; size is what identifies).
 */
static void
check_identity (struct ndm_checker *c, struct ndm_checked *item)
{
  struct ndm_device *dev = item->dev;

  if (dev->absent || dev->size == c->size)
    return;
  item->active = false;
  g_free (item->reason);
  item->reason = size_mismatch (c, dev->size);
  ndm_log_error ("%s: %s %s refused: %s", c->ops->target, c->ops->noun,
                 dev->uri, item->reason);
}

bool
ndm_checker_add (struct ndm_checker *c, struct ndm_checked *item,
                 struct ndm_device *dev)
{
  item->dev = dev;
  item->checker = c;
  item->active = !dev->absent;
  if (!item->active) {
    /* The device's own words say why (a refused TLS key, no server):
     * what an operator needs to mend it, and what the thread's probes
     * will say too.
     */
    item->reason = dev->ops->down_reason != NULL
      ? dev->ops->down_reason (dev) : NULL;
    if (item->reason == NULL)
      item->reason = g_strdup ("not reachable");
  }
  else if (c->size == 0)
    c->size = dev->size;
  /* Absent items have no size yet: refused later if it is not this one. */
  check_identity (c, item);
  g_ptr_array_add (c->items, item);
  return item->active;
}

static gpointer checker_thread (gpointer data);

/* With the owner's lock held: the thread, if the table is live and it is
 * missing (it could not be made before: R13).
 */
static void
start_locked (struct ndm_checker *c)
{
  ndm_assert_held (c->lock);
  if (c->resumed && c->thread == NULL && !c->stopping) {
    c->next_round = g_get_monotonic_time () +
      ndm_target_config (c->ti)->checker_interval_ms *
      G_TIME_SPAN_MILLISECOND;
    c->thread = ndm_thread_try_new (c->ops->thread_name, checker_thread, c);
    if (c->thread == NULL)
      c->next_round = 0;
  }
}

void
ndm_checker_resume_locked (struct ndm_checker *c)
{
  ndm_assert_held (c->lock);
  c->resumed = true;
  start_locked (c);
}

bool
ndm_checker_fail_locked (struct ndm_checker *c, struct ndm_checked *item,
                         const char *why)
{
  const struct ndm_config *cfg = ndm_target_config (c->ti);
  gint64 now = g_get_monotonic_time ();

  ndm_assert_held (c->lock);
  if (!item->active)
    return false;
  start_locked (c);
  item->active = false;
  item->fail_count++;
  g_free (item->reason);
  item->reason = g_strdup (why);
  if (item->reinstated_at != 0 &&
      now - item->reinstated_at < cfg->flap_window_ms * INT64_C (1000)) {
    item->damp_until = now + cfg->flap_damping_ms * INT64_C (1000);
    ndm_log_error ("%s: %s %s failed %.1f s after it came back: not "
                   "reinstated for %u s", c->ops->target, c->ops->noun,
                   item->dev->uri, (now - item->reinstated_at) / 1e6,
                   cfg->flap_damping_ms / 1000);
  }
  return true;
}

void
ndm_checked_json_locked (const struct ndm_checked *item, JsonBuilder *b)
{
  gint64 now = g_get_monotonic_time ();

  ndm_json_member_string (b, "reason", item->reason);
  ndm_json_member_uint (b, "fail_count", item->fail_count);
  ndm_json_member_int (b, "damped_ms",
                       !item->active && item->damp_until > now
                       ? (item->damp_until - now) / 1000 : 0);
  /* A damped item is skipped by the rounds before its damping ends. */
  json_builder_set_member_name (b, "next_check_ms");
  if (item->checker == NULL || item->checker->next_round == 0)
    json_builder_add_null_value (b);
  else
    json_builder_add_int_value (b, MAX (0, MAX (item->checker->next_round,
                                                !item->active ?
                                                item->damp_until : 0)
                                        - now) / 1000);
}

bool
ndm_checker_reinstate_locked (struct ndm_checker *c,
                              struct ndm_checked *item)
{
  ndm_assert_held (c->lock);
  if (item->active)
    return false;
  item->active = true;
  /* Flapping is failing again soon after a failure, not after the first
   * contact with an item that was absent at load.
   */
  item->reinstated_at = item->fail_count > 0 ? g_get_monotonic_time () : 0;
  item->damp_until = 0;
  g_free (item->reason);
  item->reason = NULL;
  return true;
}

/* Probe one item without the lock.  Returns NULL if it answers as an
 * item of this checker should, else why not.
 */
static char *
probe (struct ndm_checker *c, struct ndm_checked *item)
{
  const struct ndm_config *cfg = ndm_target_config (c->ti);
  struct ndm_device *dev = item->dev;
  GError *e = NULL;
  uint64_t size = 0;
  char *why;

  if (dev->ops->probe == NULL)
    return NULL;
  if (dev->ops->probe (dev, cfg->checker_interval_ms, &size, &e) == -1) {
    why = g_strdup (e->message);
    g_error_free (e);
    return why;
  }
  if (size != c->size)
    return size_mismatch (c, size);
  return NULL;
}

/* With the owner's lock held: what the probe of item (why: NULL if it
 * answered) means.  Returns true if the item must now be fenced.
 */
static bool
judge_locked (struct ndm_checker *c, struct ndm_checked *item, char *why)
{
  g_autofree char *reason = NULL;
  struct ndm_device *dev = item->dev;

  ndm_assert_held (c->lock);
  ndm_log_debug (c->ops->log_category, "%s: %s %s (%s) probed: %s",
                 c->ops->target, c->ops->noun, dev->uri,
                 item->active ? "active" : "failed",
                 why != NULL ? why : "it answers");
  if (item->active) {
    if (why == NULL)
      return false;
    reason = g_strdup_printf ("checker: %s", why);
    return c->ops->fail_locked (c->owner, item, reason);
  }
  if (why == NULL && (__atomic_load_n (&dev->absent, __ATOMIC_ACQUIRE) ||
                      (dev->ops->connected != NULL &&
                       !dev->ops->connected (dev))))
    why = reason = g_strdup ("it answers; its connections are coming back");
  if (why == NULL)
    c->ops->reinstate_locked (c->owner, item);
  else if (item->reason == NULL || strcmp (item->reason, why) != 0) {
    ndm_log_info ("%s: %s %s not reinstated: %s", c->ops->target,
                  c->ops->noun, dev->uri, why);
    g_free (item->reason);
    item->reason = g_strdup (why);
  }
  return false;
}

/* One round, as multipathd's checker: every item that is not damped is
 * probed.  A failed one that answers, and whose own connections are back,
 * is put back; one in service that does not answer is failed (before
 * I/O finds out, and so that a server waiting for its clients to leave
 * before it exits is let go).
 */
static void
checker_round (struct ndm_checker *c)
{
  g_autoptr (GPtrArray) todo = g_ptr_array_new ();
  gint64 now = g_get_monotonic_time ();
  unsigned i;

  ndm_mutex_lock (c->lock);
  for (i = 0; i < c->items->len; i++) {
    struct ndm_checked *item = c->items->pdata[i];

    if (item->active || now >= item->damp_until)
      g_ptr_array_add (todo, item);
  }
  if (c->ops->round_locked != NULL)
    c->ops->round_locked (c->owner, now);
  ndm_mutex_unlock (c->lock);

  for (i = 0; i < todo->len; i++) {
    struct ndm_checked *item = todo->pdata[i];
    g_autofree char *why = probe (c, item);
    bool fence;

    ndm_mutex_lock (c->lock);
    fence = judge_locked (c, item, why);
    ndm_mutex_unlock (c->lock);
    if (fence && c->ops->fence != NULL)
      c->ops->fence (c->owner, item);
  }
}

static gpointer
checker_thread (gpointer data)
{
  struct ndm_checker *c = data;
  const struct ndm_config *cfg = ndm_target_config (c->ti);

  ndm_mutex_lock (c->lock);
  /* next_round is set before the thread starts, so that status shows
   * the first round's time as soon as there is one.
   */
  while (!c->stopping) {
    ndm_cond_wait_until (&c->cond, c->lock, c->next_round);
    if (c->stopping)
      break;
    ndm_mutex_unlock (c->lock);
    checker_round (c);
    ndm_mutex_lock (c->lock);
    c->next_round = g_get_monotonic_time () +
      cfg->checker_interval_ms * G_TIME_SPAN_MILLISECOND;
  }
  c->next_round = 0;
  ndm_mutex_unlock (c->lock);
  return NULL;
}
