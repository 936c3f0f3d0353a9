#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# mirror: a failed leg comes back by itself (docs/targets/mirror.md,
# "Failure and recovery").  Two nbdkit file legs, handle_errors,
# checker-interval=1; a verifying workload (4 threads writing random data
# and reading it back) runs throughout.  Asserted:
#  - leg a's server killed under the workload: zero client errors and
#    mismatches, a shows D or R, the in-sync count drops as the workload
#    writes to b alone;
#  - a's server restarted on the same socket: the checker reinstates a
#    with no control command (its killed server closed every connection,
#    so nothing of it can land: R10), the resync copies what a missed and
#    the status reaches 32/32 with letters AA (the event at the end is
#    the unit test's: tests/unit/test-mirror.c);
#  - at the end both backing files are byte-identical and equal the
#    model of every acknowledged write.
source ./functions.sh
source ./multipath-lib.sh
source ./workload-lib.sh
source ./mirror-lib.sh
requires nbdkit file --version
requires $PY -c 'import nbd'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
aimg=$NDM_TMP/a.img; bimg=$NDM_TMP/b.img; model=$NDM_TMP/model
truncate -s 16M "$aimg" "$bimg"
start_nbdkit -U "$a" file "$aimg"
a_pid=$NBDKIT_PID
start_nbdkit -U "$b" file "$bimg"
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
# The legs are new and zero: equal, so nosync.
start_dm "$top" "0 32768 mirror core 2 1024 nosync 2 $A 0 $B 0 1 handle_errors" \
  control="$ctlsock" checker-interval=1

test "$(sync_letters)" = "32/32 1 AA"
start_workload "$(nbd_uri "$top")" "$model" 300
wait_ops 100

# ---- leg a killed ----------------------------------------------------------
kill_pid "$a_pid"
n=$(cat "$progress")
wait_ops $((n + 200))
st=$(sync_letters)
echo "after the kill: $st"
case ${st##* } in
  DA|RA) ;;
  *) echo "$0: leg a is not failed: $st" >&2; exit 1 ;;
esac
in_sync=${st%%/*}
if [ "$in_sync" -ge 32 ]; then
  echo "$0: no region out of sync after writes to b alone: $st" >&2
  exit 1
fi

# ---- leg a back --------------------------------------------------------------
mp_restart "$a" file "$aimg"
wait_sync "32/32 1 AA"
test "$(leg_field 0 state) $(leg_field 0 health)" = "in_sync A"
n=$(cat "$progress")
wait_ops $((n + 200))

touch "$stop"
mp_wait_client "$wl_pid" "the workload (its errors are above)"
wait_sync "32/32 1 AA"
# verify, with the device idle: every region compared on both legs.
ctl "$ctlsock" "message 0 verify"
for _ in $(seq 600); do
  ctl "$ctlsock" status | grep -q ' verify 32/32 [0-9]*$' && break
  sleep 0.1
done
st=$(ctl "$ctlsock" status)
echo "after verify: $st"
case $st in
  *" 32/32 1 AA 1 core verify 32/32 0") ;;
  *) echo "$0: verify did not end with 0 mismatches: $st" >&2; exit 1 ;;
esac
cmp_files "$model" "$bimg"
cmp_files "$model" "$aimg"
cmp_files "$aimg" "$bimg"
echo ok
