#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# bench.sh - nbd-dm against the device itself and the reference proxies, in
# one run, as ratios (DESIGN.md section 8).  Adapted from the shared anchor
# tooling (tools/bench-anchors/anchors.sh), so that the numbers stay
# comparable to the reference measurements in proxy-performance.md.
#
#   tests/bench/bench.sh [PLUGIN.so]
#
# PLUGIN.so defaults to $NBD_DM_PLUGIN, then build-bench/, then build/.
# Build a release copy first:
#   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build build-bench -j2
#
# Configurations (each device an `nbdkit memory` prefilled with a pattern so
# reads hit data; the striped devices are SIZE/2 and SIZE/4 each so every
# configuration exports SIZE bytes):
#   direct       fio straight to the device
#   nbdkit-nbd   nbdkit nbd plugin proxying the device
#   qemu-nbd     qemu-nbd proxying the device
#   dm-linear    nbd-dm: 0 LEN linear DEV 0
#   dm-striped2  nbd-dm: striped over 2 devices
#   dm-striped4  nbd-dm: striped over 4 devices
# Workloads (fio nbd engine, one job, one connection):
#   REF  memcpy and unix socket bandwidth (machine ceilings; ~20 s)
#   W1   1 MiB seq read QD8          W2  1 MiB seq write QD8
#   W3   4 KiB rand read QD32        W4  4 KiB rand write QD32
#   W5   4 KiB rand read QD1 (p50)   W1n nbdcopy whole export -> null:
#   W6   4 KiB rand read QD64 over slow devices (nbdkit delay filter):
#        direct (one slow device), dm-linear over it, dm-striped4 over 4 slow
#        devices, nbdkit-nbd proxying one slow device.
#
# Everything listens on unix sockets in a private temp dir; only PIDs started
# here are killed; all of them on exit or failure.  Env knobs [defaults]:
#   RUNTIME [5] RAMP [1]   seconds per fio run (+ ramp, not measured)
#   REPS [3]               repetitions, interleaved (reps outer, configs inner)
#   WORKLOADS ["REF W1 W1n W2 W3 W4 W5 W6"]
#   CONFIGS [all]          subset of config names to run, e.g. "direct dm-linear"
#   SIZE [4G]              size of every main configuration
#   CHUNK [128]            striped chunk in 512-byte sectors
#   DM_THREADS [16]        nbdkit -t for nbd-dm and nbdkit-nbd in W1-W5
#                          (16 = nbdkit's default; both get the same)
#   DM_EXTRA [""]          extra nbd-dm parameters, e.g. "connections=4"
#   DSIZE [1G] DELAY [5ms] slow devices (W6): size of the single one, delay
#                          per read/write; the 4 striped ones are DSIZE/4 each
#   DTHREADS [16]          nbdkit -t of each slow device, i.e. how many
#                          requests it serves at once per connection.  It
#                          must be well below W6_QD for W6 to measure
#                          scaling: with -t 64 one slow device already serves
#                          all 64 requests of QD64 at once and no config can
#                          beat it (Little's law: IOPS <= QD / delay).
#   WTHREADS [64]          nbdkit -t of nbd-dm and nbdkit-nbd in W6, enough
#                          to pass all of QD64 through to the devices
#   W6_QD [64]             fio queue depth in W6
#   QEMU_EXTRA [""]        extra qemu-nbd args (e.g. "--cache=none")
#   QUIET_WAIT [0]         max s to wait before each run for the box to be
#                          idle (<25% of one core busy); 0 = don't wait
#   OUTDIR [bench-results/<timestamp>]  (bench-results/ is gitignored)
#   DOC [docs/performance.md]  report written here; DOC= to skip
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

RUNTIME=${RUNTIME:-5}
RAMP=${RAMP:-1}
REPS=${REPS:-3}
WORKLOADS=${WORKLOADS:-"REF W1 W1n W2 W3 W4 W5 W6"}
CONFIGS=${CONFIGS:-}
SIZE=${SIZE:-4G}
CHUNK=${CHUNK:-128}
DM_THREADS=${DM_THREADS:-16}
DM_EXTRA=${DM_EXTRA:-}
DSIZE=${DSIZE:-1G}
DELAY=${DELAY:-5ms}
DTHREADS=${DTHREADS:-16}
WTHREADS=${WTHREADS:-64}
W6_QD=${W6_QD:-64}
QEMU_EXTRA=${QEMU_EXTRA:-}
QUIET_WAIT=${QUIET_WAIT:-0}
OUTDIR=${OUTDIR:-$TOP/bench-results/$(date +%Y%m%d-%H%M%S)}
DOC=${DOC-$TOP/docs/performance.md}

find_plugin "${1:-}"
need_tools nbdkit nbdinfo nbdcopy fio qemu-nbd numfmt

# Sizes in bytes; the striped table needs LEN (sectors) to be a multiple of
# CHUNK * 4, so that both striped-2 and striped-4 tile the device exactly.
bytes() { numfmt --from=iec "$1"; }
SIZE_B=$(bytes "$SIZE")
DSIZE_B=$(bytes "$DSIZE")
for b in "$SIZE_B" "$DSIZE_B"; do
  if (( b % (512 * CHUNK * 4) )); then
    die "SIZE and DSIZE must be multiples of $((512 * CHUNK * 4)) bytes (CHUNK*4 sectors)"
  fi
done

mkdir -p "$OUTDIR"
setup_tmp nbd-dm-bench

# start_qemu NAME DEVICE_NAME
start_qemu() {
  # -t: persistent, -e 0: unlimited clients (also makes it advertise multi-conn)
  # shellcheck disable=SC2086
  qemu-nbd -f raw -t -e 0 $QEMU_EXTRA -k "$T/$1.sock" "$(uri "$2")" >"$T/$1.log" 2>&1 &
  started "$1" $!
}

# prefill NAME BYTES: write a pattern so reads hit data (a sparse memory
# device answers holes without copying, and qemu-nbd would skip them via
# block status).
prefill() { nbdcopy -- [ nbdkit pattern "$2" ] "$(uri "$1")"; }

# striped_table LEN_SECTORS DEV... : one striped target over the devices
striped_table() {
  local len=$1 t d; shift
  t="0 $len striped $# $CHUNK"
  for d in "$@"; do t+=" $(uri "$d") 0"; done
  echo "$t"
}

# nbdcopy_run TAG URI : copy the whole export to null: (nbdcopy uses up to 4
# connections when the server advertises multi-conn).  Its CPU (user+sys, %
# of one core) is recorded as the client's, as fio's is for fio runs.
nbdcopy_run() {
  local s0 s1 n cpu TIMEFORMAT='%3U %3S'
  n=$(nbdinfo --size "$2")
  s0=$(date +%s.%N)
  { time nbdcopy "$2" null: 2>"$OUTDIR/$1.nbdcopy.log"; } 2>"$T/time" || return
  s1=$(date +%s.%N)
  cpu=$(awk '{ print $1 + $2 }' "$T/time")
  awk -v a="$s0" -v b="$s1" -v n="$n" -v c="$cpu" \
    'BEGIN { printf "{\"nbdcopy_s\": %.4f, \"bytes\": %d, \"cpu\": %.1f}\n", b - a, n, 100 * c / (b - a) }' \
    >"$OUTDIR/$1.nbdcopy.json"
}

want() { [ -z "$CONFIGS" ] || [[ " $CONFIGS " == *" $1 "* ]]; }

# run_one W REP CFG   (CFG = name:devices:server, server = what fio talks
# to and whose CPU is "proxy"; empty = the first device itself)
run_one() {
  local w=$1 r=$2 name devs px u tag
  IFS=: read -r name devs px <<<"$3"
  u=$(uri "${px:-${devs%%,*}}"); tag="$w.$name.r$r"
  echo "  $tag" >&2
  quiet
  case $w in
    W1)  set -- fio_run "$tag" "$u" read 1M 8 ;;
    W2)  set -- fio_run "$tag" "$u" write 1M 8 ;;
    W3)  set -- fio_run "$tag" "$u" randread 4k 32 ;;
    W4)  set -- fio_run "$tag" "$u" randwrite 4k 32 ;;
    W5)  set -- fio_run "$tag" "$u" randread 4k 1 ;;
    W1n) set -- nbdcopy_run "$tag" "$u" ;;
    W6)  set -- fio_run "$tag" "$u" randread 4k "$W6_QD" ;;
  esac
  # a failing config (e.g. the plugin crashed) is marked, the others go on
  measure "$tag" "$devs" "$px" -- "$@" || mark_failed "$tag"
  # say it once; the following runs of this config fail fast
  if [ -n "$px" ] && [ ! -e "$OUTDIR/$px.died.log" ] && ! kill -0 "$(cat "$T/$px.pid")" 2>/dev/null; then
    echo "  server $px died; its log:" >&2; cp "$T/$px.log" "$OUTDIR/$px.died.log"; cat "$T/$px.log" >&2
  fi
}

# run_workload W CFG... : reps outer, configs inner, so that load from others
# on the box (and drift) spreads over all configs instead of hitting one.
run_workload() {
  local w=$1 r c; shift
  for ((r = 1; r <= REPS; r++)); do
    for c in "$@"; do
      if want "${c%%:*}"; then run_one "$w" "$r" "$c"; fi
    done
  done
}

# ---------------------------------------------------------------- facts
echo "# output: $OUTDIR" >&2
echo "# plugin: $PLUGIN" >&2
# interference check: a 2-core box shared with others skews results
IDLE_BUSY=$(busy_pct 2)
echo "# machine busy before start: ${IDLE_BUSY}% of one core (should be ~0)" >&2

CMD=$(command_line RUNTIME RAMP REPS WORKLOADS CONFIGS SIZE CHUNK DM_THREADS DM_EXTRA \
                   DSIZE DELAY DTHREADS WTHREADS W6_QD QEMU_EXTRA QUIET_WAIT)
{
  meta_facts "$CMD" "$IDLE_BUSY"
  echo "memory=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "virt=$(systemd-detect-virt 2>/dev/null || echo unknown)"
  echo "qemu_nbd=$(qemu-nbd --version | sed -n 1p)"
  knobs RUNTIME RAMP REPS SIZE CHUNK DM_THREADS DM_EXTRA DSIZE DELAY DTHREADS WTHREADS W6_QD QEMU_EXTRA
} >"$OUTDIR/meta.txt"

# ---------------------------------------------------------------- REF limits
if [[ " $WORKLOADS " == *" REF "* ]]; then
  echo "REF: memcpy / unix socket bandwidth" >&2
  gcc -O2 -o "$T/memcpy_bw" "$HERE/memcpy_bw.c"
  gcc -O2 -o "$T/unixsock_bw" "$HERE/unixsock_bw.c"
  { "$T/memcpy_bw" $((1 << 30)) 5 | tail -1
    "$T/unixsock_bw" $((4 << 30)) $((1 << 20))
    "$T/unixsock_bw" $((1 << 30)) 4096
  } | tee "$OUTDIR/REF.txt" >&2
fi

# ---------------------------------------------------------------- W1-W5
MAIN_W=()
for w in $WORKLOADS; do case $w in W1|W1n|W2|W3|W4|W5) MAIN_W+=("$w") ;; esac; done
if [ ${#MAIN_W[@]} -gt 0 ]; then
  echo "main devices: 1x$SIZE + 2x$((SIZE_B / 2)) + 4x$((SIZE_B / 4)) bytes, prefilled" >&2
  len=$((SIZE_B / 512))
  # devices: nbdkit defaults (-t 16, parallel), as in the reference numbers
  start_nbdkit b0 memory "$SIZE_B"
  prefill b0 "$SIZE_B"
  servers=(b0)
  CFGS=("direct:b0:")
  if want nbdkit-nbd; then
    start_nbdkit pn -t "$DM_THREADS" nbd socket="$T/b0.sock"; servers+=(pn)
    CFGS+=("nbdkit-nbd:b0:pn")
  fi
  if want qemu-nbd; then
    start_qemu pq b0; servers+=(pq); CFGS+=("qemu-nbd:b0:pq")
  fi
  if want dm-linear; then
    start_dm dl "$DM_THREADS" "0 $len linear $(uri b0) 0"; servers+=(dl)
    CFGS+=("dm-linear:b0:dl")
  fi
  if want dm-striped2; then
    for d in s2a s2b; do start_nbdkit "$d" memory $((SIZE_B / 2)); prefill "$d" $((SIZE_B / 2)); done
    start_dm ds2 "$DM_THREADS" "$(striped_table "$len" s2a s2b)"; servers+=(s2a s2b ds2)
    CFGS+=("dm-striped2:s2a,s2b:ds2")
  fi
  if want dm-striped4; then
    for d in s4a s4b s4c s4d; do start_nbdkit "$d" memory $((SIZE_B / 4)); prefill "$d" $((SIZE_B / 4)); done
    start_dm ds4 "$DM_THREADS" "$(striped_table "$len" s4a s4b s4c s4d)"; servers+=(s4a s4b s4c s4d ds4)
    CFGS+=("dm-striped4:s4a,s4b,s4c,s4d:ds4")
  fi
  for w in "${MAIN_W[@]}"; do run_workload "$w" "${CFGS[@]}"; done
  # free the memory (up to 3*SIZE) before the slow devices come up
  stop_servers "${servers[@]}"
fi

# ---------------------------------------------------------------- W6
if [[ " $WORKLOADS " == *" W6 "* ]]; then
  echo "slow devices: delay $DELAY, -t $DTHREADS; 1x$DSIZE + 4x$((DSIZE_B / 4)) bytes" >&2
  len=$((DSIZE_B / 512))
  slow() { # NAME BYTES: a prefilled memory device behind the delay filter
    start_nbdkit "$1" -t "$DTHREADS" --filter=delay memory "$2" delay-read="$DELAY" delay-write="$DELAY"
    prefill "$1" "$2"
  }
  slow d1 "$DSIZE_B"
  CFGS=("direct:d1:")
  if want dm-linear; then
    start_dm dl6 "$WTHREADS" "0 $len linear $(uri d1) 0"
    CFGS+=("dm-linear:d1:dl6")
  fi
  if want dm-striped4; then
    for d in e4a e4b e4c e4d; do slow "$d" $((DSIZE_B / 4)); done
    start_dm ds6 "$WTHREADS" "$(striped_table "$len" e4a e4b e4c e4d)"
    CFGS+=("dm-striped4:e4a,e4b,e4c,e4d:ds6")
  fi
  if want nbdkit-nbd; then
    start_nbdkit pn6 -t "$WTHREADS" nbd socket="$T/d1.sock"
    CFGS+=("nbdkit-nbd:d1:pn6")
  fi
  run_workload W6 "${CFGS[@]}"
fi

# ---------------------------------------------------------------- report
if [ -n "$DOC" ]; then
  "$PY" "$HERE/report.py" "$OUTDIR" --out "$DOC"
  echo "# wrote $DOC" >&2
else
  "$PY" "$HERE/report.py" "$OUTDIR"
fi
