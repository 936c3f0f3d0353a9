/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: channels and leader/follower completion.
 *
 * A channel is one connection whose replies must be read by someone.  No
 * thread is dedicated to that: a request owner that waits for bios on a
 * channel becomes its leader if it has none, polls its socket and reads
 * every reply that arrived (for all owners, many per recv), completing
 * their bios.  The others wait on their own waiter (standby).  When the
 * leader's request is settled it gives leadership up and kicks one standby
 * waiter if commands are still out.  At queue depth 1 the owner reads its
 * own reply: no thread wakes another.  proxy-performance.md measured this
 * design as the one that wakes fewest threads on this machine.
 *
 * Invariant: every command in flight on a channel belongs to a request
 * whose owner is either the leader, on the standby queue, or about to call
 * ndm_channel_lead (it just started the command).  So when the leader
 * leaves with commands still out, someone on the standby queue will take
 * over; the leader kicks the first one, and a kicked waiter that no longer
 * needs the channel passes it on through its own ndm_channel_unlead.
 *
 * Thread model: lead and unlead run on the owner's thread; started/ended
 * and kick_leader on any thread, ended also from completions.  ch->lock
 * is a leaf lock (order 4e in core/request.c): nothing else is taken under
 * it except a waiter kick.
 */
#include <poll.h>

#include "core.h"

void
ndm_channel_init (struct ndm_channel *ch, const struct ndm_channel_ops *ops)
{
  ch->ops = ops;
  ndm_mutex_init (&ch->lock, NDM_LOCK_LEAF);
  ch->leader = NULL;
  g_queue_init (&ch->standby);
  ch->inflight = 0;
  ch->refs = 1;
}

void
ndm_channel_ref (struct ndm_channel *ch)
{
  g_atomic_int_inc (&ch->refs);
}

void
ndm_channel_unref (struct ndm_channel *ch)
{
  if (g_atomic_int_dec_and_test (&ch->refs)) {
    g_assert (ch->leader == NULL);
    g_assert (g_queue_is_empty (&ch->standby));
    ndm_mutex_clear (&ch->lock);
    ch->ops->release (ch);
  }
}

void
ndm_channel_started (struct ndm_channel *ch)
{
  g_atomic_int_inc (&ch->inflight);
}

void
ndm_channel_ended (struct ndm_channel *ch)
{
  g_atomic_int_add (&ch->inflight, -1);
}

void
ndm_channel_kick_leader (struct ndm_channel *ch)
{
  ndm_mutex_lock (&ch->lock);
  if (ch->leader != NULL)
    ndm_waiter_kick (ch->leader);
  ndm_mutex_unlock (&ch->lock);
}

int
ndm_channel_lead (struct ndm_channel *ch, struct ndm_waiter *w,
                  struct pollfd *pfd, int *timeout_ms)
{
  ndm_mutex_lock (&ch->lock);
  if (ch->leader != w) {
    if (ch->leader != NULL) {
      if (g_queue_find (&ch->standby, w) == NULL)
        g_queue_push_tail (&ch->standby, w);
      ndm_mutex_unlock (&ch->lock);
      return 0;
    }
    ch->leader = w;
    g_queue_remove (&ch->standby, w);
  }
  ndm_mutex_unlock (&ch->lock);

  /* Only the leader prepares and services, so this needs no lock. */
  return ch->ops->prepare (ch, pfd, timeout_ms) == 0 ? 1 : 0;
}

void
ndm_channel_unlead (struct ndm_channel *ch, struct ndm_waiter *w)
{
  ndm_mutex_lock (&ch->lock);
  if (ch->leader == w)
    ch->leader = NULL;
  else
    g_queue_remove (&ch->standby, w);
  if (ch->leader == NULL && g_atomic_int_get (&ch->inflight) > 0) {
    struct ndm_waiter *next = g_queue_pop_head (&ch->standby);

    if (next != NULL)
      ndm_waiter_kick (next);
  }
  ndm_mutex_unlock (&ch->lock);
}
