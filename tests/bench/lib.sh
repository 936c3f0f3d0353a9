# SPDX-License-Identifier: BSD-3-Clause
# shellcheck shell=bash
# lib.sh - what bench.sh and bench-multipath.sh share: finding the plugin,
# starting, waiting for and stopping servers by PID, CPU accounting from
# /proc, fio runs, and the facts and command line written to meta.txt.
#
# Source it after setting HERE (this directory); it sets TOP, PY and ME (the
# script's name, for messages) and defines functions.  Before starting a
# server the script calls setup_tmp, which sets T (a private temp dir:
# sockets, logs, PID files) and PIDS (every PID started) and the traps that
# stop them.  Some functions read the script's knobs: start_dm PLUGIN and
# DM_EXTRA, quiet QUIET_WAIT, fio_run RUNTIME and RAMP, measure and fio_run
# OUTDIR.

TOP=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3              # system python: fio/json (and libnbd) only, no venv
ME=$(basename "$0")

die() { echo "$ME: $*" >&2; exit 1; }

# find_plugin [PATH]: set PLUGIN to the plugin's absolute path: PATH, else
# $NBD_DM_PLUGIN, else the first of build-bench/ and build/ that holds one.
find_plugin() {
  local p
  PLUGIN=${1:-${NBD_DM_PLUGIN:-}}
  if [ -z "$PLUGIN" ]; then
    for p in "$TOP/build-bench/plugin/nbdkit-dm-plugin.so" "$TOP/build/plugin/nbdkit-dm-plugin.so"; do
      if [ -f "$p" ]; then PLUGIN=$p; break; fi
    done
  fi
  if [ -z "$PLUGIN" ] || [ ! -f "$PLUGIN" ]; then
    die "nbdkit-dm-plugin.so not found; build it (see the header) or pass its path"
  fi
  PLUGIN=$(cd "$(dirname "$PLUGIN")" && pwd)/$(basename "$PLUGIN")
}

need_tools() { # TOOL...
  local tool
  for tool in "$@"; do command -v "$tool" >/dev/null || die "$tool is missing"; done
}

# ---------------------------------------------------------------- servers
uri() { echo "nbd+unix:///?socket=$T/$1.sock"; }

# reap PID: wait for our child to exit; SIGKILL it after 10 s.
reap() {
  local i st
  for ((i = 0; i < 100; i++)); do
    st=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null || echo gone)
    if [ "$st" = Z ] || [ "$st" = gone ]; then break; fi
    sleep 0.1
  done
  [ $i -lt 100 ] || { echo "pid $1 ignored SIGTERM; killing it" >&2; kill -KILL "$1" 2>/dev/null || true; }
  wait "$1" 2>/dev/null || true
}

# forget PID: after it was reaped, so that cleanup never signals a PID the
# kernel may have handed to someone else.
forget() {
  local q keep=()
  for q in "${PIDS[@]}"; do [ "$q" = "$1" ] || keep+=("$q"); done
  PIDS=("${keep[@]}")
}

# cleanup: the EXIT trap.  SIGTERM everything still running, then reap in
# reverse start order (proxies before the devices they hold open).
cleanup() {
  local p i
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do reap "${PIDS[i]}"; done
  rm -rf "$T"
}

# setup_tmp PREFIX: T = a new private dir /tmp/PREFIX.XXXXXX, no PIDs yet;
# on exit, failure or a signal every server still running is stopped and T
# removed.
setup_tmp() {
  T=$(mktemp -d "/tmp/$1.XXXXXX")
  PIDS=()
  trap cleanup EXIT
  trap 'exit 130' INT TERM       # exit runs the EXIT trap, hence cleanup
}

# wait_sock NAME PID: until the server answers on its socket (polled every
# 10 ms, so that a restart's "listening" time is fine-grained; 20 s at most).
wait_sock() {
  local i
  for ((i = 0; i < 2000; i++)); do
    if [ -S "$T/$1.sock" ] && nbdinfo --size "$(uri "$1")" >/dev/null 2>&1; then return 0; fi
    kill -0 "$2" 2>/dev/null || { echo "server $1 died:" >&2; cat "$T/$1.log" >&2; exit 1; }
    sleep 0.01
  done
  echo "server $1 did not come up" >&2; exit 1
}

started() { # NAME PID: remember it (for cleanup and stop_servers), wait until it serves
  PIDS+=("$2"); echo "$2" >"$T/$1.pid"; wait_sock "$1" "$2"
}

# start_nbdkit NAME [nbdkit args...]: foreground child, pid in $T/NAME.pid,
# log appended to $T/NAME.log (a restarted server keeps its history);
# returns when it serves.
start_nbdkit() {
  local name=$1; shift
  rm -f "$T/$name.sock"          # a stale one (SIGKILL, or a previous rep)
  nbdkit -f -U "$T/$name.sock" "$@" >>"$T/$name.log" 2>&1 &
  started "$name" $!
}

# start_dm NAME THREADS TABLE [PARAM...]: nbd-dm over the table, with
# nbdkit -t THREADS and DM_EXTRA appended to the parameters.
start_dm() {
  local name=$1 threads=$2 table=$3 extra=(); shift 3
  read -ra extra <<<"$DM_EXTRA"
  start_nbdkit "$name" -t "$threads" "$PLUGIN" table-text="$table" "$@" "${extra[@]}"
}

# stop_servers NAME... : SIGTERM all, then reap in reverse order and forget
# them.  An nbdkit does not exit while clients stay connected, so the
# proxies (started after their devices) must go first.
stop_servers() {
  local n p i pids=()
  for n in "$@"; do
    p=$(cat "$T/$n.pid"); pids+=("$p"); kill "$p" 2>/dev/null || true
  done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do reap "${pids[i]}"; forget "${pids[i]}"; done
}

# ---------------------------------------------------------------- CPU
cputicks() { # pid -> utime+stime ticks (0 if none)
  if [ -z "${1:-}" ] || [ ! -r "/proc/$1/stat" ]; then echo 0; return; fi
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
sysbusy() { awk '/^cpu /{ print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat; }

busy_pct() { # SECONDS -> % of one core the whole machine was busy over them
  local b0 t0 b1 t1
  read -r b0 t0 < <(sysbusy); sleep "$1"; read -r b1 t1 < <(sysbusy)
  echo $((100 * $(nproc) * (b1 - b0) / (t1 - t0 > 0 ? t1 - t0 : 1)))
}

# wait (max QUIET_WAIT s) until foreign CPU load < 25% of a core
quiet() {
  local i
  for ((i = 0; i < QUIET_WAIT; i++)); do
    [ "$(busy_pct 1)" -lt 25 ] && return 0
  done
  return 0
}

# measure TAG DEVICES PROXY -- cmd...  : runs cmd, writes $OUTDIR/TAG.cpu.json.
# DEVICES is a comma list of server names (backend_cpu: their sum), PROXY
# the server fio talks to or "" (proxy_cpu); CPU% = % of one core over the
# whole command (connect + ramp included).  Returns cmd's status.
measure() {
  local tag=$1 devs=$2 px=$3; shift 4
  local b0=0 b1=0 p0 p1 s0 s1 t0 t1 ppid="" d dpids=() dl rc=0
  IFS=, read -ra dl <<<"$devs"
  for d in "${dl[@]}"; do dpids+=("$(cat "$T/$d.pid")"); done
  [ -n "$px" ] && ppid=$(cat "$T/$px.pid")
  for d in "${dpids[@]}"; do b0=$((b0 + $(cputicks "$d"))); done
  p0=$(cputicks "$ppid"); s0=$(sysbusy); t0=$(date +%s.%N)
  "$@" || rc=$?
  t1=$(date +%s.%N); p1=$(cputicks "$ppid"); s1=$(sysbusy)
  for d in "${dpids[@]}"; do b1=$((b1 + $(cputicks "$d"))); done
  # shellcheck disable=SC2086  # s0/s1 are two numbers each
  "$PY" - "$OUTDIR/$tag.cpu.json" "$(getconf CLK_TCK)" "$t0" "$t1" "$b0" "$b1" "$p0" "$p1" $s0 $s1 "$(cat /proc/loadavg)" <<'EOF'
import json, os, sys
o, hz, t0, t1, b0, b1, p0, p1, sb0, st0, sb1, st1, la = sys.argv[1:]
hz = float(hz); wall = float(t1) - float(t0)
pct = lambda a, b: 100.0 * (int(b) - int(a)) / hz / wall
busy = 100.0 * os.cpu_count() * (int(sb1) - int(sb0)) / max(1, int(st1) - int(st0))
json.dump({"wall": wall, "backend_cpu": pct(b0, b1), "proxy_cpu": pct(p0, p1),
           "machine_busy": busy, "loadavg": la}, open(o, "w"))
EOF
  return "$rc"
}

# fio_run TAG URI RW BS QD : --output=FILE, because the nbd engine prints
# "fio: connected to NBD server" on stdout before the JSON otherwise.
fio_run() {
  local tag=$1 u=$2 rw=$3 bs=$4 qd=$5
  fio --name="$tag" --ioengine=nbd --uri="$u" --rw="$rw" --bs="$bs" --iodepth="$qd" \
      --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" --norandommap --randrepeat=0 \
      --lat_percentiles=1 --group_reporting \
      --output-format=json --output="$OUTDIR/$tag.json" >"$OUTDIR/$tag.fio.log" 2>&1
}

# mark_failed TAG: a failed run is recorded and the run goes on; the report
# shows it as failed instead of losing the other numbers.
mark_failed() {
  echo "  $1 FAILED (see $OUTDIR/$1.fio.log)" >&2; : >"$OUTDIR/$1.failed"
}

# ---------------------------------------------------------------- facts
rel() { case $1 in "$TOP"/*) echo "${1#"$TOP"/}" ;; *) echo "$1" ;; esac; }
shq() { # quote for sh, readably: bare when safe, else '...'
  if [[ $1 =~ ^[A-Za-z0-9_./:=,+-]+$ ]]; then echo "$1"; else echo "'${1//\'/\'\\\'\'}'"; fi
}

# command_line KNOB... : the exact command, every knob spelled out, to run
# from the repo top
command_line() {
  local k cmd=""
  for k in "$@"; do cmd+="$k=$(shq "${!k}") "; done
  echo "${cmd}tests/bench/$ME $(shq "$(rel "$PLUGIN")")"
}

knobs() { # KNOB... : KNOB=value lines for meta.txt
  local k
  for k in "$@"; do echo "$k=${!k}"; done
}

# meta_facts CMD BUSY: the meta.txt lines both scripts write: when, how
# (CMD), the machine, the tools, the plugin's build and BUSY (% of one core
# busy before the start).
meta_facts() {
  local build_type git_rev
  build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$(dirname "$PLUGIN")/../CMakeCache.txt" 2>/dev/null || true)
  git_rev=$(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [ -n "$(git -C "$TOP" status --porcelain -- core plugin include 2>/dev/null)" ]; then
    git_rev+=" + uncommitted changes in core/plugin/include"
  fi
  echo "date=$(date -Is)"
  echo "command=$1"
  echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "cores=$(nproc)"
  echo "kernel=$(uname -sr)"
  echo "nbdkit=$(nbdkit --version | head -1)"
  echo "libnbd=$(nbdinfo --version | sed -n 's/^libnbd //p')"
  echo "fio=$(fio --version)"
  echo "plugin=$(rel "$PLUGIN")"
  echo "plugin_build=CMAKE_BUILD_TYPE=${build_type:-unknown}, git $git_rev"
  echo "busy_before=$2"
  echo "loadavg_before=$(cat /proc/loadavg)"
}
