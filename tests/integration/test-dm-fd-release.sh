#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Waiters' eventfds do not pile up: clients come and go, 4 at a time,
# each with 16 reads in flight (so up to 64 nbdkit worker threads run
# requests at once, each with a waiter).  Once they have gone, the dm
# server holds at most NDM_WAITER_SPARE (8) more fds than before the first
# request.  "Gone" is when the server has no connection threads left:
# nbdkit ends them after the client left.  reconnect-delay is an hour:
# the device's reconnect thread gets a waiter of its own (one fd, for the
# thread's life) once it sends a keepalive on a connection idle that long,
# which a slow run (TSan) reached.
source ./functions.sh
source ./fd-lib.sh
requires nbdkit memory --version
requires $PY -c 'import nbd'

a=$(tmp_sock); top=$(tmp_sock)
start_nbdkit -U "$a" memory 8M
start_dm "$top" "0 16384 delay $(nbd_uri "$a") 0 10" reconnect-delay=3600000
dm=$NBDKIT_PID

$PY - "$(nbd_uri "$top")" "$dm" <<'EOF'
import sys
import nbd
from fdlib import nfds, read_all, settle

uri, pid = sys.argv[1], int(sys.argv[2])
SPARE = 8

settle(pid)                     # start_nbdkit's probe
before = nfds(pid)
peak = 0
for round in range(10):
    hs = []
    for i in range(4):
        h = nbd.NBD(); h.connect_uri(uri); hs.append(h)
    errs = read_all(hs, 16)
    assert errs == [0] * (4 * 16), "reads failed: %s" % sorted(set(errs))
    peak = max(peak, nfds(pid))
    for h in hs:
        h.shutdown()
    del h, hs
    settle(pid)
after = nfds(pid)
print("fds: %d before, %d at most with clients, %d after 40 clients"
      % (before, peak, after))
assert after <= before + SPARE, "%d fds left behind" % (after - before)
EOF
