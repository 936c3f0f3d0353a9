#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# multipath, failover and automatic reinstatement: two paths (two nbdkit
# file servers on one backing file) under round-robin.  A verifying
# workload (4 threads writing random data at random offsets and reading
# each write back) runs throughout while path a's server is killed and
# later restarted on the same socket.  Asserted:
#  - the workload sees zero errors and zero mismatches: failover is
#    invisible to the client (R4, R5);
#  - I/O keeps flowing while a is dead, and a shows F with a fail count
#    >= 1 in status;
#  - the path checker (checker-interval=1) reinstates a to A by itself,
#    with no control command, and I/O then reaches the new server again;
#  - at the end the backing file holds exactly what the workload wrote
#    (no lost write, no ghost write from the killed path, R10), and the
#    whole device reads back the same.
source ./functions.sh
source ./multipath-lib.sh
source ./workload-lib.sh
requires nbdkit file --version
requires nbdkit --filter=log null --version
requires $PY -c 'import nbd'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
img=$NDM_TMP/disk.img
truncate -s 16M "$img"
start_nbdkit -U "$a" file "$img"
a_pid=$NBDKIT_PID
start_nbdkit -U "$b" file "$img"
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
start_dm "$top" "0 32768 multipath 0 0 1 1 round-robin 0 2 1 $A 1 $B 1" \
  control="$ctlsock" checker-interval=1

model=$NDM_TMP/model
start_workload "$(nbd_uri "$top")" "$model"

wait_ops 100
test "$(mp_path_state "$ctlsock" "$A")" = "A 0"

# Path a dies without a goodbye, with I/O in flight on it.
kill_pid "$a_pid"
n=$(cat "$progress")
wait_ops $((n + 100))
mp_wait_path "$ctlsock" "$A" F
state=$(mp_path_state "$ctlsock" "$A")
echo "path a after the kill: $state"
if [ "${state#F }" -lt 1 ]; then
  echo "$0: path a failed with fail count ${state#F }" >&2
  exit 1
fi
test "$(mp_path_state "$ctlsock" "$B")" = "A 0"

# The same path comes back: a new server on the same socket and file, with
# a log to show that the workload's writes reach it again (the checker
# only reads).  Only status is read from now on: the checker alone must
# reinstate the path.
alog=$NDM_TMP/a2.log
mp_restart "$a" --filter=log file "$img" logfile="$alog"
mp_wait_path "$ctlsock" "$A" A
state=$(mp_path_state "$ctlsock" "$A")
echo "path a after the restart: $state"
test "${state#A }" -ge 1
for ((i = 0; i < 200; i++)); do
  if grep -q ' Write id=' "$alog"; then break; fi
  sleep 0.1
done
if ! grep -q ' Write id=' "$alog"; then
  echo "$0: path a is A again but no write reached its new server" >&2
  exit 1
fi
n=$(cat "$progress")
wait_ops $((n + 100))

touch "$stop"
mp_wait_client "$wl_pid" "the workload (its errors are above)"
cmp_files "$model" "$img"
mp_status "$ctlsock"
echo ok
