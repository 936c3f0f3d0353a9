#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A device server restarted behind the same address.  nbdkit 1.32, told
# to stop, keeps idle connections open while it drains and answers the
# next command with ESHUTDOWN: nothing shows on an idle socket.
#  1. The device's nbdkit gets SIGTERM while nbd-dm's connections to it
#     are idle: nbd-dm notices (a keepalive read on idle connections gets
#     ESHUTDOWN), lets the connections go so the server can exit, and
#     status says the device is down, not up.
#  2. A new server on the same socket: the next client read is served by
#     it, and status says up.
#  3. The same with the keepalive too slow to notice first
#     (reconnect-delay=60000): the client's read meets the old server's
#     ESHUTDOWN, which means the command was not run; it is sent again on
#     a fresh connection to the new server, and the client sees no error.
source ./functions.sh
requires nbdkit file --version
requires $PY -c 'import nbd'

img=$NDM_TMP/disk.img
truncate -s 16M "$img"

device_state ()   # CTLSOCK: the device's state word(s) in status --json
{
  ctl "$1" "status --json" | $PY -c '
import json, sys
print(json.loads(sys.stdin.read())["targets"][0]["devices"][0]["state"])'
}

wait_exit ()      # PID SECS: wait for PID to exit
{
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    alive "$1" || return 0
    sleep 0.1
  done
  echo "$0: PID $1 still running after $2 s" >&2
  return 1
}

run_case ()       # RECONNECT_DELAY
{
  local dev DEV top ctlsock old
  dev=$(tmp_sock); DEV=$(nbd_uri "$dev")
  top=$(tmp_sock); ctlsock=$(mktemp -u "$NDM_TMP/ctlXXXXXX")
  start_nbdkit -U "$dev" file "$img"
  old=$NBDKIT_PID
  start_dm "$top" "0 32768 linear $DEV 0" control="$ctlsock" \
    reconnect-delay="$1"
  $PY -c 'import sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(b"R" * 4096, 0); h.flush()' "$(nbd_uri "$top")"
  [ "$(device_state "$ctlsock")" = up ]

  kill -TERM "$old"
  if [ "$1" -lt 10000 ]; then
    echo "--- 1: SIGTERM, connections idle: noticed, let go"
    wait_exit "$old" 10
    state=$(device_state "$ctlsock")
    case $state in up*) echo "$0: status says '$state'" >&2; exit 1 ;; esac
    echo "status: $state"
  else
    sleep 0.5
  fi

  echo "--- ${2:-2}: a new server on the same socket serves the next read"
  rm -f "$dev"        # nbdkit 1.32 leaves its socket file behind
  start_nbdkit -U "$dev" file "$img"
  if [ "$1" -lt 10000 ]; then
    # Down, then back: the reconnect thread finds it within reconnect-delay.
    for ((i = 0; i < 100; i++)); do
      [ "$(device_state "$ctlsock")" = up ] && break
      sleep 0.1
    done
  fi
  $PY -c 'import sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
assert h.pread(4096, 0) == b"R" * 4096' "$(nbd_uri "$top")"
  [ "$(device_state "$ctlsock")" = up ]
  wait_exit "$old" 10
}

run_case 200
run_case 60000 3
echo ok
