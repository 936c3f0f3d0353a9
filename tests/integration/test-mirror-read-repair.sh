#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# mirror's read repair (docs/targets/mirror.md, "Reads"): leg a is behind
# nbdkit's error filter, failing a fifth of its reads with EIO while a
# trigger file exists; reads go to a first (read_balance default_leg).
# A verifying workload (4 threads writing random data and reading it
# back) runs meanwhile.  Asserted:
#  - zero client errors or mismatches: each failed read is served by b;
#  - a's read errors were repaired (JSON read_repairs > 0, the stats
#    line counts them), a stays in service and in sync, with R;
#  - once the filter is off, both backing files are equal and equal the
#    model of every acknowledged write: no repair wrote older data over
#    a client's write.
source ./functions.sh
source ./multipath-lib.sh
source ./workload-lib.sh
requires nbdkit file --version
requires nbdkit --filter=error null --version
requires $PY -c 'import nbd'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
aimg=$NDM_TMP/a.img; bimg=$NDM_TMP/b.img; model=$NDM_TMP/model
trigger=$NDM_TMP/a-read-errors
truncate -s 16M "$aimg" "$bimg"
touch "$trigger"
start_nbdkit -U "$a" --filter=error file "$aimg" \
  error-pread=EIO error-pread-rate=20% error-pread-file="$trigger"
start_nbdkit -U "$b" file "$bimg"
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
start_dm "$top" "0 32768 mirror core 2 128 nosync 2 $A 0 $B 0 \
3 handle_errors read_balance default_leg" control="$ctlsock"

# leg_field FIELD: FIELD of leg a in status --json.
leg_field ()
{
  ctl "$ctlsock" "status --json" |
    $PY -c 'import json, sys
print(json.load(sys.stdin)["targets"][0]["detail"]["legs"][0][sys.argv[1]])' "$1"
}

start_workload "$(nbd_uri "$top")" "$model"
wait_ops 300
rm "$trigger"
n=$(cat "$progress")
wait_ops $((n + 50))
touch "$stop"
mp_wait_client "$wl_pid" "the workload (its errors are above)"

# Repairs are queued by reads and done in the background: the last ones
# may still run (none are queued once the filter is off).
for ((i = 0; i < 100; i++)); do
  [ "$(leg_field read_repairs)" -gt 0 ] && break
  sleep 0.1
done
ctl "$ctlsock" status
ctl "$ctlsock" stats | grep '^  mirror: '
read_errors=$(leg_field read_errors)
repairs=$(leg_field read_repairs)
echo "leg a: $read_errors read errors, $repairs regions repaired"
test "$read_errors" -gt 0
test "$repairs" -gt 0
# The stats line counts them too (a last repair may end in between).
n=$(ctl "$ctlsock" stats | sed -n 's/^  mirror: read repairs \([0-9]*\), .*/\1/p')
test "$n" -ge "$repairs"
test "$(leg_field state)" = in_sync
ctl "$ctlsock" status | grep -q ' 256/256 1 RA 1 core$'
cmp_files "$aimg" "$bimg"
cmp_files "$model" "$aimg"
echo ok
