#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# bench-mirror.sh - nbd-dm mirror (GitHub issue 11) against nbd-dm linear
# over one leg, in one run, as ratios: reads over two slow legs, writes
# over two fast legs, and the resync's speed and its cost to a client.
#
#   tests/bench/bench-mirror.sh [PLUGIN.so]
#
# PLUGIN.so defaults to $NBD_DM_PLUGIN, then build-bench/, then build/;
# nbd-dmsetup is taken from the same build tree.  Build a release copy:
#   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build build-bench -j2
#
# Every fio run: nbd engine, one job, one connection.  Every part runs
# its configurations REPS times, interleaved (reps outer, configs inner),
# against servers started once per part (part resync: a fresh nbd-dm per
# run, since only a new table starts a full resync).  Mirrors use a core
# log with REGION sectors per region.
#
# Part reads: 4 KiB random reads at QD over slow legs: two
# `nbdkit -t DTHREADS --filter=delay memory DSIZE delay-read=DELAY`
# (writes not delayed), each prefilled with the same pattern.
#   A.dm-linear     nbd-dm: 0 LEN linear leg1 0
#   A.dm-mirror-ql  nbd-dm: mirror core 2 REGION nosync 2 leg1 0 leg2 0
#                   (read_balance queue-length, the default)
#   A.dm-mirror-rr  the same with 2 read_balance round-robin
#   A.dm-mirror-dl  the same with 2 read_balance default_leg (dm's reads)
# Target: dm-mirror-ql >= 1.8x dm-linear.  One connection to a leg serves
# DTHREADS requests at once and nbd-dm opens 2 per leg, so QD must exceed
# 2 x DTHREADS for a second leg to help at all (Little's law).
#
# Part writes: two `nbdkit WLEGS SIZE` legs, prefilled (WLEGS: memory, or
# null: legs that cost the box almost nothing, so that the ratio is the
# mirror's own cost, not a second leg server's on the same cores):
#   B.*  4 KiB random write at WQD        target dm-mirror >= 0.8x dm-linear
#   C.*  1 MiB sequential write at SQD    (reported)
# configs dm-linear (over leg1), dm-mirror (core log, nosync) and
# dm-mirror-disk (disk log on an `nbdkit memory` log device, nosync: a
# mark is committed before the first write to a clean region).
#
# Part resync: leg1 `nbdkit memory RSIZE` prefilled, leg2 empty; a mirror
# with a core log and no nosync copies every region from leg1 to leg2 as
# soon as it is loaded.  nbd-dmsetup --json status is polled every POLL s
# (copied bytes, in_sync/regions) until N/N:
#   R.nocap, R.cap    the resync alone: start -> N/N, and copied bytes over
#                     the polls' span -> MiB/s; cap adds resync-rate=RATE
#   L.insync          4 KiB random reads at RQD for RRUNTIME s (no ramp) on
#                     the same mirror loaded with nosync (nothing to copy)
#   L.nocap, L.cap    the same fio, started as soon as the resync runs;
#                     the polls say how much of the run it covered
# The cap configs run only if the plugin knows the resync-rate key; else
# the report says they were not measured.
#
# Everything listens on unix sockets in a private temp dir; only PIDs
# started here are killed, by PID, on exit or failure.  About 6 minutes
# with the defaults on an idle box, more on a busy one.
# Env knobs [defaults]:
#   RUNTIME [5] RAMP [1]  seconds per fio run in parts reads and writes
#   REPS [3]              repetitions of every part
#   PARTS ["reads writes resync"]  which parts to run
#   REGION [1024]         mirror region size, sectors
#   DSIZE [1G] DELAY [5ms] DTHREADS [4] WTHREADS [64] QD [32]   part reads:
#                         leg size, read delay, nbdkit -t of each leg and
#                         of nbd-dm, fio queue depth.  The ceilings, 1,600
#                         IOPS over one leg and 3,200 over two, stay below
#                         what a shared 2-core box can drive: at
#                         DTHREADS=8 the CPU, not the legs, sets the pace
#   SIZE [1G] DM_THREADS [16] WQD [32] SQD [8]   part writes: leg size,
#                         nbdkit -t of nbd-dm, queue depths of B and C
#   RSIZE [2G] RATE [128M] RQD [8] RRUNTIME [2] POLL [0.05]
#   RESYNC_MAX [120]      part resync: leg size, resync-rate of the cap
#                         configs, the client's queue depth and run time,
#                         the status poll interval (s), and how long a
#                         resync may take before the run gives up on it
#   DM_EXTRA [""]         extra nbd-dm parameters for every nbd-dm
#   QUIET_WAIT [0]        max s to wait before each fio run for the box to
#                         be idle (<25% of one core busy); 0 = don't wait
#   OUTDIR [bench-results/mirror-<timestamp>]  raw results (gitignored)
#   DOC [docs/performance.md]  its MIRROR section is written or replaced;
#                         DOC= to skip
set -euo pipefail
export PATH=/usr/bin:$PATH       # the system python has libnbd

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

RUNTIME=${RUNTIME:-5}
RAMP=${RAMP:-1}
REPS=${REPS:-3}
PARTS=${PARTS:-"reads writes resync"}
WLEGS=${WLEGS:-memory}
REGION=${REGION:-1024}
DSIZE=${DSIZE:-1G}
DELAY=${DELAY:-5ms}
DTHREADS=${DTHREADS:-4}
WTHREADS=${WTHREADS:-64}
QD=${QD:-32}
SIZE=${SIZE:-1G}
DM_THREADS=${DM_THREADS:-16}
WQD=${WQD:-32}
SQD=${SQD:-8}
RSIZE=${RSIZE:-2G}
RATE=${RATE:-128M}
RQD=${RQD:-8}
RRUNTIME=${RRUNTIME:-2}
POLL=${POLL:-0.05}
RESYNC_MAX=${RESYNC_MAX:-120}
DM_EXTRA=${DM_EXTRA:-}
QUIET_WAIT=${QUIET_WAIT:-0}
OUTDIR=${OUTDIR:-$TOP/bench-results/mirror-$(date +%Y%m%d-%H%M%S)}
DOC=${DOC-$TOP/docs/performance.md}

find_plugin "${1:-}"
DMSETUP=$(dirname "$PLUGIN")/../tools/nbd-dmsetup
if [[ " $PARTS " == *" resync "* ]] && [ ! -x "$DMSETUP" ]; then
  die "$DMSETUP not found (it is built with the plugin)"
fi
need_tools nbdkit nbdinfo nbdcopy fio numfmt
[ -n "${EPOCHREALTIME:-}" ] || die "needs bash >= 5 (\$EPOCHREALTIME)"

sectors() { # SIZE -> sectors; dies unless a multiple of 4096 bytes
  local b
  b=$(numfmt --from=iec "$1")
  (( b % 4096 == 0 )) || die "size $1 is not a multiple of 4096 bytes"
  echo $((b / 512))
}
DLEN=$(sectors "$DSIZE")
WLEN=$(sectors "$SIZE")
RLEN=$(sectors "$RSIZE")

# Whether the plugin has the resync-rate key (it came with issue 11's
# throttle): config_help lists every key.
CAP=no
if nbdkit "$PLUGIN" --help 2>/dev/null | grep -q '^resync-rate='; then CAP=yes; fi

mkdir -p "$OUTDIR"
setup_tmp nbd-dm-mirror

# prefill NAME BYTES: a pattern, so that reads and copies move data (a
# sparse memory device answers holes without copying).
prefill() { nbdcopy -- [ nbdkit pattern "$2" ] "$(uri "$1")"; }

# mirror_table LEN LOG LEG1 LEG2 [FEATURE...]: LOG is dm's log words
mirror_table() {
  local len=$1 log=$2 t
  t="0 $len mirror $log 2 $(uri "$3") 0 $(uri "$4") 0"
  shift 4
  if [ $# -gt 0 ]; then t+=" $# $*"; fi
  echo "$t"
}

# run_reps PART RW BS QD DEVICES CFG... : REPS interleaved fio runs of
# every CFG (NAME:SERVER), tags PART.NAME.rN
run_reps() {
  local part=$1 rw=$2 bs=$3 qd=$4 devs=$5 r c name srv tag; shift 5
  for ((r = 1; r <= REPS; r++)); do
    for c in "$@"; do
      IFS=: read -r name srv <<<"$c"
      tag="$part.$name.r$r"
      echo "  $tag" >&2
      quiet
      measure "$tag" "$devs" "$srv" -- fio_run "$tag" "$(uri "$srv")" "$rw" "$bs" "$qd" ||
        mark_failed "$tag"
    done
  done
}

# resync_poll NAME OUT: every POLL s, nbd-dm NAME's JSON status as
# "EPOCHREALTIME copied in_sync regions" lines in OUT (the time is taken
# when the answer is in), until in_sync = regions, $T/poll.stop appears
# or RESYNC_MAX s have passed.
resync_poll() {
  local s t end=$((EPOCHSECONDS + RESYNC_MAX)) cp is rg
  : >"$2"
  while [ "$EPOCHSECONDS" -lt "$end" ] && [ ! -e "$T/poll.stop" ]; do
    if s=$("$DMSETUP" -c "$T/$1.ctl" --json status 2>/dev/null); then
      t=$EPOCHREALTIME
      read -r cp is rg < <("$PY" -c 'import json, sys
d = json.load(sys.stdin)["targets"][0]["detail"]
print(d["resync"]["copied"], d["in_sync"], d["regions"])' <<<"$s" ||
                             echo 0 -1 -2)
      echo "$t $cp $is $rg" >>"$2"
      [ "$is" = "$rg" ] && return 0
    fi
    sleep "$POLL"
  done
}

# start_resync_dm CFG: nbd-dm "rs" over y1 and y2, control socket
# $T/rs.ctl; insync loads the mirror with nosync, cap adds resync-rate.
start_resync_dm() {
  local log="core 1 $REGION" extra=()
  [ "$1" = insync ] && log="core 2 $REGION nosync"
  [ "$1" = cap ] && extra=(resync-rate="$RATE")
  rm -f "$T/rs.ctl" "$T/poll.stop"
  start_dm rs "$DM_THREADS" "$(mirror_table "$RLEN" "$log" y1 y2)" control="$T/rs.ctl" \
    "${extra[@]}"
}

# fio_timed TAG ARGS...: fio_run, its start and end in TAG.events.json
# (fio_start, fio_end: the client's run, without measure's bookkeeping)
fio_timed() {
  local t0 rc=0
  t0=$EPOCHREALTIME
  fio_run "$@" || rc=$?
  echo "{\"fio_start\": $t0, \"fio_end\": $EPOCHREALTIME}" >"$OUTDIR/$1.events.json"
  return "$rc"
}

stop_and_keep_log() { # NAME TAG: stop nbd-dm NAME, keep its log as TAG.dm.log
  stop_servers "$1"
  cp "$T/$1.log" "$OUTDIR/$2.dm.log"; : >"$T/$1.log"
}

# ---------------------------------------------------------------- facts
CMD=$(command_line RUNTIME RAMP REPS PARTS REGION DSIZE DELAY DTHREADS WTHREADS QD SIZE \
                   DM_THREADS WQD SQD RSIZE RATE RQD RRUNTIME POLL RESYNC_MAX DM_EXTRA QUIET_WAIT)

echo "# output: $OUTDIR" >&2
echo "# plugin: $PLUGIN (resync-rate key: $CAP)" >&2
IDLE_BUSY=$(busy_pct 2)
echo "# machine busy before start: ${IDLE_BUSY}% of one core (should be ~0)" >&2
{
  meta_facts "$CMD" "$IDLE_BUSY"
  knobs RUNTIME RAMP REPS PARTS REGION DSIZE DELAY DTHREADS WTHREADS QD SIZE DM_THREADS \
        WQD SQD RSIZE RATE RQD RRUNTIME POLL RESYNC_MAX DM_EXTRA CAP
  echo "outdir=$(rel "$OUTDIR")"
} >"$OUTDIR/meta.txt"

# ---------------------------------------------------------------- reads
if [[ " $PARTS " == *" reads "* ]]; then
  echo "reads: 4 KiB random read QD$QD, legs delay-read $DELAY, -t $DTHREADS" >&2
  for d in r1 r2; do
    start_nbdkit "$d" -t "$DTHREADS" --filter=delay memory "$DSIZE" delay-read="$DELAY"
    prefill "$d" "$((DLEN * 512))"
  done
  start_dm al "$WTHREADS" "0 $DLEN linear $(uri r1) 0"
  start_dm aq "$WTHREADS" "$(mirror_table "$DLEN" "core 2 $REGION nosync" r1 r2)"
  start_dm ar "$WTHREADS" "$(mirror_table "$DLEN" "core 2 $REGION nosync" r1 r2 read_balance round-robin)"
  start_dm ad "$WTHREADS" "$(mirror_table "$DLEN" "core 2 $REGION nosync" r1 r2 read_balance default_leg)"
  run_reps A randread 4k "$QD" r1,r2 dm-linear:al dm-mirror-ql:aq dm-mirror-rr:ar dm-mirror-dl:ad
  for s in al aq ar ad; do stop_and_keep_log "$s" "A.$s"; done
  stop_servers r1 r2
fi

# ---------------------------------------------------------------- writes
if [[ " $PARTS " == *" writes "* ]]; then
  echo "writes: legs $WLEGS $SIZE; 4 KiB random write QD$WQD, 1 MiB sequential write QD$SQD" >&2
  for d in w1 w2; do start_nbdkit "$d" "$WLEGS" "$SIZE"; prefill "$d" "$((WLEN * 512))"; done
  start_nbdkit wlog memory 1M
  start_dm bl "$DM_THREADS" "0 $WLEN linear $(uri w1) 0"
  start_dm bm "$DM_THREADS" "$(mirror_table "$WLEN" "core 2 $REGION nosync" w1 w2)"
  start_dm bd "$DM_THREADS" "$(mirror_table "$WLEN" "disk 3 $(uri wlog) $REGION nosync" w1 w2)"
  run_reps B randwrite 4k "$WQD" w1,w2,wlog dm-linear:bl dm-mirror:bm dm-mirror-disk:bd
  run_reps C write 1m "$SQD" w1,w2,wlog dm-linear:bl dm-mirror:bm dm-mirror-disk:bd
  for s in bl bm bd; do stop_and_keep_log "$s" "B.$s"; done
  stop_servers w1 w2 wlog
fi

# ---------------------------------------------------------------- resync
if [[ " $PARTS " == *" resync "* ]]; then
  CFGS=(nocap); [ "$CAP" = yes ] && CFGS+=(cap)
  echo "resync: legs memory $RSIZE, ${CFGS[*]}; client 4 KiB random read QD$RQD, $RRUNTIME s" >&2
  [ "$CAP" = yes ] || echo "  (this plugin has no resync-rate key: no cap configs)" >&2
  start_nbdkit y1 memory "$RSIZE"; prefill y1 "$((RLEN * 512))"
  start_nbdkit y2 memory "$RSIZE"
  for ((r = 1; r <= REPS; r++)); do
    # the resync alone
    for c in "${CFGS[@]}"; do
      tag="R.$c.r$r"
      quiet
      t0=$EPOCHREALTIME
      start_resync_dm "$c"
      resync_poll rs "$OUTDIR/$tag.poll"
      echo "{\"launch\": $t0}" >"$OUTDIR/$tag.events.json"
      echo "  $tag: $(tail -1 "$OUTDIR/$tag.poll" | awk -v t="$t0" '{ printf "%s/%s in %.2f s", $3, $4, $1 - t }')" >&2
      stop_and_keep_log rs "$tag"
    done
    # a client before (in sync) and during the resync
    for c in insync "${CFGS[@]}"; do
      tag="L.$c.r$r"
      quiet
      start_resync_dm "$c"
      poller=""
      if [ "$c" != insync ]; then
        resync_poll rs "$OUTDIR/$tag.poll" &
        poller=$!; PIDS+=("$poller")
      fi
      RUNTIME=$RRUNTIME RAMP=0 measure "$tag" y1,y2 rs -- \
        fio_timed "$tag" "$(uri rs)" randread 4k "$RQD" || mark_failed "$tag"
      if [ -n "$poller" ]; then
        : >"$T/poll.stop"; wait "$poller" || true; forget "$poller"
      fi
      echo "  $tag" >&2
      stop_and_keep_log rs "$tag"
    done
  done
  stop_servers y1 y2
fi

# ---------------------------------------------------------------- report
echo "loadavg_after=$(cat /proc/loadavg)" >>"$OUTDIR/meta.txt"
args=("$OUTDIR")
[ -n "$DOC" ] && args+=(--doc "$DOC")
"$PY" "$HERE/report_mirror.py" "${args[@]}"
