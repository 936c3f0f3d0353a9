#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Log levels and nbdkit's debug flags.  A path that fails is an error
# (nbdkit shows it without -v); the same path coming back is recovery,
# an info line (nbdkit's debug, -v), never "error:".  Debug lines of a
# category (each probe of the path checker, each control request) show
# only with its flag, -D dm.multipath=1, -D dm.control=1: two servers
# over the same paths, one with the flags and one without, both -v.
source ./functions.sh
source ./multipath-lib.sh
requires nbdkit file --version

a=$(tmp_sock); b=$(tmp_sock)
img=$NDM_TMP/disk.img
truncate -s 8M "$img"
start_nbdkit -U "$a" file "$img"
start_nbdkit -U "$b" file "$img"
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
table="0 16384 multipath 0 0 1 1 round-robin 0 2 1 $A 1 $B 1"

top1=$(tmp_sock); ctl1=$NDM_TMP/ctl1
start_nbdkit -dm -v -D dm.multipath=1 -D dm.control=1 -U "$top1" \
  "$NDM_PLUGIN" table-text="$table" control="$ctl1" checker-interval=1
log1=$NBDKIT_LOG
top2=$(tmp_sock); ctl2=$NDM_TMP/ctl2
start_nbdkit -dm -v -U "$top2" "$NDM_PLUGIN" table-text="$table" \
  control="$ctl2" checker-interval=1
log2=$NBDKIT_LOG

# The operator fails path a; it answers, so each checker puts it back.
for ctl in "$ctl1" "$ctl2"; do
  ctl "$ctl" "message 0 fail_path $A" >/dev/null
done
for ctl in "$ctl1" "$ctl2"; do
  mp_wait_path "$ctl" "$A" A
done
# One more round of probes after the reinstatement, for the debug lines.
n=$(grep -c -F "multipath: path $A (active) probed" "$log1" || true)
for ((i = 0; i < 100; i++)); do
  [ "$(grep -c -F "multipath: path $A (active) probed" "$log1" || true)" \
    -gt "$n" ] && break
  sleep 0.1
done

failures=0
fail ()
{
  echo "FAIL $*"
  failures=$((failures + 1))
}

# has LOG LEVEL TEXT: LOG has a line "LEVEL: TEXT..." (after nbdkit's
# "nbdkit: ...: " prefix).
has ()
{
  grep -q -F -- "$2: $3" "$1"
}

for log in "$log1" "$log2"; do
  has "$log" error "multipath: failing path $A" ||
    fail "$log: the failure is not an error line"
  has "$log" debug "multipath: reinstating path $A" ||
    fail "$log: no info (debug:) line for the reinstatement"
  if grep -F "reinstating path" "$log" | grep -q -F "error:"; then
    fail "$log: the reinstatement is logged as an error"
  fi
done

has "$log1" debug "multipath: path $A (active) probed: it answers" ||
  fail "-D dm.multipath=1: no probe line"
has "$log1" debug "control: request 'message 0 fail_path $A'" ||
  fail "-D dm.control=1: no line for the request"
if grep -q -F "probed" "$log2"; then
  fail "without -D dm.multipath=1: probe lines"
fi
if grep -q -F "control: request" "$log2"; then
  fail "without -D dm.control=1: request lines"
fi

if [ $failures -ne 0 ]; then
  echo "--- with the flags:"; cat "$log1"
  echo "--- without:"; cat "$log2"
  exit 1
fi
