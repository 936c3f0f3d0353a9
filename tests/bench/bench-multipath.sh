#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# bench-multipath.sh - nbd-dm multipath over slow paths (GitHub issue 4):
# round-robin scaling, failover time and reinstate time, in one run.
#
#   tests/bench/bench-multipath.sh [PLUGIN.so]
#
# PLUGIN.so defaults to $NBD_DM_PLUGIN, then build-bench/, then build/;
# nbd-dmsetup is taken from the same build tree.  Build a release copy:
#   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build build-bench -j2
#
# Two paths p1 and p2 are two `nbdkit -t DTHREADS --filter=delay file` on
# ONE shared (sparse) backing file, delay-read/write DELAY: the same data
# behind two slow servers, as two controllers in front of one LUN.
#
# Part 1, scaling (fio nbd engine, one job, one connection, 4 KiB random
# reads at QD; REPS reps interleaved, reps outer, configs inner):
#   direct        fio straight to p1
#   dm-linear     nbd-dm: 0 LEN linear p1 0
#   dm-mp-rrN     nbd-dm: 0 LEN multipath 0 0 1 1 round-robin 0 2 1 p1 N p2 N
#                 for each N in RR_COUNTS (round-robin repeat_count per path)
# Target: dm-mp-rr* >= 1.8x dm-linear's IOPS (both open `connections`
# connections per path, so the paths, not the connections, are what differ).
#
# Part 2, failover and reinstate (FREPS reps, a fresh nbd-dm each):
# nbd-dm multipath (round-robin, repeat_count 1) with control=SOCKET and
# checker-interval=CHECKER; failover_probe.py keeps FQD 4 KiB writes and
# reads in flight (and verifies what it reads back).  After WARM s, p1's
# server is SIGKILLed; `nbd-dmsetup status` is polled every POLL s until p1
# shows F.  HOLD s after the kill, p1 is restarted (its stale socket
# removed first) and status is polled every POLL s until p1 shows A again;
# the probe runs 1 s more and stops.  From the probe's log:
#   detect   kill -> status shows p1 F (upper bound: the poll that saw it)
#   drain    kill -> the last of the I/Os in flight at the kill completed
#            (those on p1 had to be requeued to p2)
#   max lat  the longest I/O submitted from 1 s before to 1 s after the kill
#   gap      the longest time without any completion in the 2 s after it
#   errors   I/Os that failed (the client must never notice: 0)
#   bad      reads that did not return the last completed write (0)
#   listen   restart -> p1's socket answers
#   reinst.  restart -> status shows p1 A (expect up to reconnect-delay +
#            checker-interval)
#
# Everything listens on unix sockets in a private temp dir (the backing file
# too); only PIDs started here are killed, by PID, on exit or failure.
# Env knobs [defaults]:
#   RUNTIME [5] RAMP [1]  seconds per fio run (+ ramp, not measured)
#   REPS [3]              repetitions of part 1
#   FREPS [$REPS]         repetitions of part 2; 0 skips it
#   PARTS ["scaling failover"]  which parts to run
#   DSIZE [1G]            size of the backing file
#   DELAY [5ms]           delay-read and delay-write of each path
#   DTHREADS [16]         nbdkit -t of each path: requests it serves at once
#                         per connection (must stay below QD to measure
#                         scaling, see bench.sh's W6)
#   WTHREADS [64]         nbdkit -t of nbd-dm
#   QD [64]               fio queue depth in part 1
#   RR_COUNTS ["1 16"]    round-robin repeat_count values to measure
#   DM_EXTRA [""]         extra nbd-dm parameters for every nbd-dm
#   CHECKER [1]           checker-interval (s) in part 2
#   FAIL_EXTRA [""]       extra nbd-dm parameters in part 2 only, e.g.
#                         "reconnect-delay=200"
#   FQD [4]               requests the probe keeps in flight in part 2
#   WARM [1.5] HOLD [2]   s of I/O before the kill; s from kill to restart,
#   JITTER [1]            plus a random 0 to JITTER s (so that the restart
#                         meets the checker's cycle at a random phase)
#   POLL [0.05]           status poll interval (s) in part 2
#   QUIET_WAIT [0]        max s to wait before each fio run for the box to
#                         be idle (<25% of one core busy); 0 = don't wait
#   OUTDIR [bench-results/mpath-<timestamp>]  raw results (gitignored)
#   DOC [docs/performance.md]  its MULTIPATH section is written or replaced;
#                         DOC= to skip
set -euo pipefail
export PATH=/usr/bin:$PATH       # the system python has libnbd

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

RUNTIME=${RUNTIME:-5}
RAMP=${RAMP:-1}
REPS=${REPS:-3}
FREPS=${FREPS:-$REPS}
PARTS=${PARTS:-"scaling failover"}
DSIZE=${DSIZE:-1G}
DELAY=${DELAY:-5ms}
DTHREADS=${DTHREADS:-16}
WTHREADS=${WTHREADS:-64}
QD=${QD:-64}
RR_COUNTS=${RR_COUNTS:-"1 16"}
DM_EXTRA=${DM_EXTRA:-}
CHECKER=${CHECKER:-1}
FAIL_EXTRA=${FAIL_EXTRA:-}
FQD=${FQD:-4}
WARM=${WARM:-1.5}
HOLD=${HOLD:-2}
JITTER=${JITTER:-1}
POLL=${POLL:-0.05}
QUIET_WAIT=${QUIET_WAIT:-0}
OUTDIR=${OUTDIR:-$TOP/bench-results/mpath-$(date +%Y%m%d-%H%M%S)}
DOC=${DOC-$TOP/docs/performance.md}

find_plugin "${1:-}"
DMSETUP=$(dirname "$PLUGIN")/../tools/nbd-dmsetup
if [[ " $PARTS " == *" failover "* ]] && [ "$FREPS" -gt 0 ] && [ ! -x "$DMSETUP" ]; then
  die "$DMSETUP not found (it is built with the plugin)"
fi

need_tools nbdkit nbdinfo fio numfmt
"$PY" -c 'import nbd' 2>/dev/null || die "$PY lacks the libnbd module (python3-libnbd)"
[ -n "${EPOCHREALTIME:-}" ] || die "needs bash >= 5 (\$EPOCHREALTIME)"

DSIZE_B=$(numfmt --from=iec "$DSIZE")
if (( DSIZE_B % 4096 )); then
  die "DSIZE must be a multiple of 4096 bytes"
fi
LEN=$((DSIZE_B / 512))

mkdir -p "$OUTDIR"
setup_tmp nbd-dm-mpath

# start_path NAME: a slow path to the shared backing file
start_path() {
  start_nbdkit "$1" -t "$DTHREADS" --filter=delay file "$T/backing" \
    delay-read="$DELAY" delay-write="$DELAY"
}

mp_table() { # REPEAT_COUNT
  echo "0 $LEN multipath 0 0 1 1 round-robin 0 2 1 $(uri p1) $1 $(uri p2) $1"
}

# status_has PATH_NAME STATE: whether nbd-dmsetup status shows it so
status_has() {
  local s
  s=$("$DMSETUP" -c "$T/ctl" status 2>/dev/null) || return 1
  [[ " $s " == *" $(uri "$1") $2 "* ]]
}

# poll_until PATH_NAME STATE TIMEOUT_S: prints the $EPOCHREALTIME at the end
# of the first poll that saw it, or "" after TIMEOUT_S.
poll_until() {
  local end
  end=$(awk -v t="$EPOCHREALTIME" -v d="$3" 'BEGIN { printf "%.6f", t + d }')
  while :; do
    if status_has "$1" "$2"; then echo "$EPOCHREALTIME"; return 0; fi
    if awk -v t="$EPOCHREALTIME" -v e="$end" 'BEGIN { exit !(t > e) }'; then echo ""; return 0; fi
    sleep "$POLL"
  done
}

# failover_rep R: one kill / restart cycle; writes F.rR.events.json and
# F.rR.io.json.
failover_rep() {
  local r=$1 tag="F.r$1" extra=() probe t_kill t_f t_restart t_listen t_a i pp
  read -ra extra <<<"$FAIL_EXTRA"
  rm -f "$T/ctl"
  start_dm mf "$WTHREADS" "$(mp_table 1)" control="$T/ctl" checker-interval="$CHECKER" "${extra[@]}"
  for ((i = 0; i < 100; i++)); do [ -S "$T/ctl" ] && break; sleep 0.05; done
  if ! status_has p1 A || ! status_has p2 A; then
    echo "  $tag: paths not both A at start" >&2; return 1
  fi
  "$PY" "$HERE/failover_probe.py" --qd "$FQD" "$(uri mf)" "$OUTDIR/$tag.io.json" \
    2>"$OUTDIR/$tag.probe.log" &
  probe=$!; PIDS+=("$probe")
  sleep "$WARM"
  pp=$(cat "$T/p1.pid")
  t_kill=$EPOCHREALTIME
  # (stderr: bash would report the job "Killed"; that is the point)
  { kill -KILL "$pp"; t_f=$(poll_until p1 F 10); reap "$pp"; } 2>/dev/null
  forget "$pp"
  # HOLD plus up to JITTER s: the restart then falls anywhere in the
  # checker's and the reconnect thread's cycles, not at one fixed phase.
  sleep "$(awk -v k="$t_kill" -v n="$EPOCHREALTIME" -v h="$HOLD" -v j="$JITTER" -v r="$RANDOM" \
             'BEGIN { d = k + h + j * r / 32768 - n; printf "%.3f", (d > 0 ? d : 0) }')"
  rm -f "$T/p1.sock"
  t_restart=$EPOCHREALTIME
  start_path p1
  t_listen=$EPOCHREALTIME
  t_a=$(poll_until p1 A 30)
  sleep 1
  kill -TERM "$probe"; reap "$probe"; forget "$probe"
  "$DMSETUP" -c "$T/ctl" --json status >"$OUTDIR/$tag.status.json" 2>&1 || true
  stop_servers mf
  cp "$T/mf.log" "$OUTDIR/$tag.dm.log"; : >"$T/mf.log"
  printf '{"kill": %s, "failed_seen": %s, "restart": %s, "listening": %s, "active_seen": %s, "poll": %s}\n' \
    "$t_kill" "${t_f:-null}" "$t_restart" "$t_listen" "${t_a:-null}" "$POLL" >"$OUTDIR/$tag.events.json"
  echo "  $tag: kill->F $(awk -v a="$t_kill" -v b="${t_f:-0}" 'BEGIN { print b ? int((b - a) * 1000) " ms" : "never" }'), restart->A $(awk -v a="$t_restart" -v b="${t_a:-0}" 'BEGIN { print b ? int((b - a) * 1000) " ms" : "never" }')" >&2
}

# ---------------------------------------------------------------- facts
CMD=$(command_line RUNTIME RAMP REPS FREPS PARTS DSIZE DELAY DTHREADS WTHREADS QD RR_COUNTS \
                   DM_EXTRA CHECKER FAIL_EXTRA FQD WARM HOLD JITTER POLL QUIET_WAIT)

echo "# output: $OUTDIR" >&2
echo "# plugin: $PLUGIN" >&2
IDLE_BUSY=$(busy_pct 2)
echo "# machine busy before start: ${IDLE_BUSY}% of one core (should be ~0)" >&2
{
  meta_facts "$CMD" "$IDLE_BUSY"
  knobs RUNTIME RAMP REPS FREPS PARTS DSIZE DELAY DTHREADS WTHREADS QD RR_COUNTS \
        DM_EXTRA CHECKER FAIL_EXTRA FQD WARM HOLD JITTER POLL
  echo "outdir=$(rel "$OUTDIR")"
} >"$OUTDIR/meta.txt"

# ---------------------------------------------------------------- paths
truncate -s "$DSIZE_B" "$T/backing"
start_path p1
start_path p2

# ---------------------------------------------------------------- part 1
if [[ " $PARTS " == *" scaling "* ]]; then
  echo "scaling: 4 KiB random read QD$QD, paths delay $DELAY, -t $DTHREADS" >&2
  CFGS=("direct:p1:")
  start_dm dl "$WTHREADS" "0 $LEN linear $(uri p1) 0"; CFGS+=("dm-linear:dl:dl")
  for n in $RR_COUNTS; do
    start_dm "mp$n" "$WTHREADS" "$(mp_table "$n")"; CFGS+=("dm-mp-rr$n:mp$n:mp$n")
  done
  for ((r = 1; r <= REPS; r++)); do
    for c in "${CFGS[@]}"; do
      IFS=: read -r name srv px <<<"$c"
      tag="S.$name.r$r"
      echo "  $tag" >&2
      quiet
      # CPU: the nbd-dm process (none for direct) and the two paths
      measure "$tag" p1,p2 "$px" -- fio_run "$tag" "$(uri "$srv")" randread 4k "$QD" ||
        mark_failed "$tag"
    done
  done
  for c in "${CFGS[@]}"; do
    IFS=: read -r name srv px <<<"$c"
    if [ -n "$px" ]; then cp "$T/$px.log" "$OUTDIR/$name.dm.log"; stop_servers "$px"; fi
  done
fi

# ---------------------------------------------------------------- part 2
if [[ " $PARTS " == *" failover "* ]]; then
  echo "failover/reinstate: checker-interval=$CHECKER, probe QD$FQD, $FREPS reps" >&2
  for ((r = 1; r <= FREPS; r++)); do failover_rep "$r"; done
fi

# ---------------------------------------------------------------- report
args=("$OUTDIR")
[ -n "$DOC" ] && args+=(--doc "$DOC")
"$PY" "$HERE/report_multipath.py" "${args[@]}"
