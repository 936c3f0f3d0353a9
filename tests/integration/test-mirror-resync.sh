#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# mirror's resync over two nbdkit file legs (docs/targets/mirror.md): leg
# a holds random data, leg b zeroes, and the core log without nosync
# takes every region as out of sync.  A verifying workload (4 threads
# writing random data and reading it back) runs while the resync copies
# a to b.  Asserted:
#  - the resync is under way while the workload writes (b's writes are
#    slowed by the delay filter), and reaches 256/256 by itself, with an
#    event, and JSON says it copied at least the device;
#  - zero client errors and mismatches while it runs;
#  - at the end both backing files equal the model of every
#    acknowledged write: no write during the resync was lost or
#    overwritten by the copy.
source ./functions.sh
source ./multipath-lib.sh
source ./workload-lib.sh
requires nbdkit file --version
requires $PY -c 'import nbd'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
aimg=$NDM_TMP/a.img; bimg=$NDM_TMP/b.img; model=$NDM_TMP/model
head -c 16M /dev/urandom >"$aimg"
truncate -s 16M "$bimg"
cp "$aimg" "$model"
start_nbdkit -U "$a" file "$aimg"
# b's writes are slow, so the copy takes seconds and the workload runs
# during it.
start_nbdkit -U "$b" --filter=delay file "$bimg" delay-write=10ms
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
start_dm "$top" "0 32768 mirror core 1 128 2 $A 0 $B 0" control="$ctlsock"

start_workload "$(nbd_uri "$top")" "$model" 200
wait_ops 20
# The workload's writes so far met the resync under way.
during=$(ctl "$ctlsock" status | awk '{ print $(NF - 4) }')
echo "in sync after 20 verified writes: $during"
if [ "${during%/*}" -ge 256 ]; then
  echo "$0: the resync ended before the workload wrote" >&2
  exit 1
fi

# The resync ends by itself.
for ((i = 0; i < 300; i++)); do
  if ctl "$ctlsock" status | grep -q ' 256/256 1 AA 1 core$'; then break; fi
  sleep 0.1
done
ctl "$ctlsock" status
ctl "$ctlsock" status | grep -q ' 256/256 1 AA 1 core$'
# Its end is an event: the only one here (no leg failed), so the count,
# 0 at start, is 1 (it may have come before the first look).
# (Not 'ctl | grep -q': grep leaves at the match, ctl's next line then
# hits a closed pipe, and pipefail fails the test.)
grep -q '^Event number: *1$' <<<"$(ctl "$ctlsock" info)"
copied=$(ctl "$ctlsock" "status --json" |
           $PY -c 'import json, sys
print(json.load(sys.stdin)["targets"][0]["detail"]["resync"]["copied"])')
echo "resync copied $copied bytes"
test "$copied" -ge $((16 << 20))

n=$(cat "$progress")
wait_ops $((n + 50))
touch "$stop"
mp_wait_client "$wl_pid" "the workload (its errors are above)"
cmp_files "$model" "$aimg"
cmp_files "$model" "$bimg"
echo ok
