#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# ab.sh OLD_PLUGIN NEW_PLUGIN: two builds of nbd-dm in one run, as ratios.
#
# linear over one nbdkit memory device; fio (nbd engine) runs each
# workload against OLD then NEW, REPS times, interleaved, so that the
# machine's drift hits both alike.  Prints IOPS per run and NEW/OLD.
# Build the two plugins with -DCMAKE_BUILD_TYPE=Release, e.g. the older
# one in a git worktree.  About 2 minutes with the defaults.
#
#   RUNTIME [5] RAMP [1] REPS [3] SIZE [2G] DM_EXTRA [] (plugin params)
#   WORKLOADS ['randwrite 4k 32,randread 4k 32,write 1m 8']
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
[ $# -eq 2 ] || die "usage: $ME OLD_PLUGIN NEW_PLUGIN"
RUNTIME=${RUNTIME:-5} RAMP=${RAMP:-1} REPS=${REPS:-3} SIZE=${SIZE:-2G}
DM_EXTRA=${DM_EXTRA:-}
WORKLOADS=${WORKLOADS:-randwrite 4k 32,randread 4k 32,write 1m 8}
need_tools nbdkit nbdinfo fio
find_plugin "$1"; OLD=$PLUGIN
find_plugin "$2"; NEW=$PLUGIN

setup_tmp ndm-ab
OUTDIR=$T
start_nbdkit dev memory "$SIZE"
sectors=$(( $(nbdinfo --size "$(uri dev)") / 512 ))

iops() { # PLUGIN RW BS QD -> IOPS of one fio run
  PLUGIN=$1
  start_dm dm 16 "0 $sectors linear $(uri dev) 0"
  fio_run ab "$(uri dm)" "$2" "$3" "$4"
  stop_servers dm
  $PY -c 'import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
print(int(j["read"]["iops"] + j["write"]["iops"]))' "$T/ab.json"
}

IFS=, read -ra wls <<<"$WORKLOADS"
for w in "${wls[@]}"; do
  read -r rw bs qd <<<"$w"
  for ((r = 1; r <= REPS; r++)); do
    o=$(iops "$OLD" "$rw" "$bs" "$qd")
    n=$(iops "$NEW" "$rw" "$bs" "$qd")
    printf '%-10s %-4s QD%-3s rep %d: old %7d  new %7d  new/old %.3f\n' \
      "$rw" "$bs" "$qd" "$r" "$o" "$n" "$($PY -c "print($n / $o)")"
  done
done
