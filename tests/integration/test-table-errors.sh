#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# table and key errors: every bad table or key stops nbdkit at start-up
# with a non-zero exit, nothing served, and a message that names the line
# and quotes the bad word.  Messages are matched on key substrings only.
# Also: --dump-plugin and --help work and mention the targets and keys.
source ./functions.sh
requires nbdkit memory --version

d=$(tmp_sock)
start_nbdkit -U "$d" memory 4M        # 8192 sectors
dev=$(nbd_uri "$d")
gone=$(nbd_uri "$NDM_TMP/nobody-listens-here.sock")
tablefile=$NDM_TMP/bad.table
printf '%s\n' "# a comment, then a blank line" "" "0 8 zero" "8 8 lineer" \
  >"$tablefile"

failures=0

# bad 'WHAT' ARGS... -- REGEX...: nbdkit ARGS fails at start-up, serves
# nothing, and stderr matches every (extended) REGEX.
bad ()
{
  local what=$1 sock rc=0 re err
  local -a args=()

  shift
  while [ "$1" != -- ]; do args+=("$1"); shift; done
  shift
  sock=$(tmp_sock)
  err=$NDM_TMP/stderr
  run_dm -f -U "$sock" "$NDM_PLUGIN" "${args[@]}" 2>"$err" || rc=$?
  if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
    echo "FAIL $what: nbdkit exited with $rc (expected a start-up error)"
    cat "$err"
    failures=$((failures + 1))
    return
  fi
  if [ -e "$sock" ]; then
    echo "FAIL $what: the socket was created although start-up failed"
    failures=$((failures + 1))
  fi
  check_sanitizer_log "$err" || failures=$((failures + 1))
  for re in "$@"; do
    if ! grep -E -q -- "$re" "$err"; then
      echo "FAIL $what: stderr does not match /$re/:"
      cat "$err"
      failures=$((failures + 1))
    fi
  done
}

bad "gap" table-text="0 96 zero;100 8 zero" -- \
  "line 2" "\b100\b" "gap"
bad "overlap" table-text="0 96 zero;90 8 zero" -- \
  "line 2" "\b90\b" "overlap"
bad "not from 0" table-text="8 8 zero" -- \
  "line 1" "\b8\b" "gap"
bad "unknown target" table-text="0 96 zero;96 4 zero;100 8 lineer" -- \
  "line 3" "'lineer'" "linear" "striped"
bad "start not a number" table-text="x0 8 zero" -- \
  "line 1" "'x0'" "number"
bad "length not a number" table-text="0 abc zero" -- \
  "line 1" "'abc'" "number"
bad "negative length" table-text="0 -8 zero" -- \
  "line 1" "'-8'"
bad "offset not a number" table-text="0 8 linear $dev 12x" -- \
  "line 1" "'12x'"
bad "chunk not a number" table-text="0 256 striped 2 abc $dev 0 $dev 4096" -- \
  "line 1" "striped" "'abc'"
bad "stripes not a number" \
  table-text="0 256 striped two 128 $dev 0 $dev 4096" -- \
  "line 1" "striped" "'two'"
bad "zero length" table-text="0 0 zero" -- \
  "line 1" "length '?0'?"
bad "striped length" table-text="0 1000 striped 2 128 $dev 0 $dev 4096" -- \
  "line 1" "striped" "\b1000\b" "multiple"
bad "linear arguments" table-text="0 8 linear $dev" -- \
  "line 1" "linear" "argument"
bad "linear extra argument" table-text="0 8 linear $dev 0 junk" -- \
  "line 1" "linear" "argument"
bad "striped arguments" table-text="0 256 striped 2 128 $dev 0" -- \
  "line 1" "striped" "\b2\b"
bad "zero argument" table-text="0 8 zero junk" -- \
  "line 1" "zero" "'junk'"
bad "short line" table-text="0 8" -- \
  "line 1"
bad "error argument" table-text="0 8 error junk" -- \
  "line 1" "error" "'junk'"
bad "multipath #features past the end" table-text="0 8 multipath 1" -- \
  "line 1" "multipath" "#features '1'"
bad "multipath no_path_retry last" \
  table-text="0 8 multipath 2 no_path_retry" -- \
  "line 1" "multipath" "#features '2'"
bad "offset wraps" table-text="0 8 linear $dev 36028797018963968" -- \
  "line 1" "linear" "'36028797018963968'" "too large"
bad "offset 2^64-1" table-text="0 8 linear $dev 18446744073709551615" -- \
  "line 1" "linear" "'18446744073709551615'" "too large"
bad "number beyond 64 bits" \
  table-text="0 8 striped 100000000000000000000000 8 $dev 0" -- \
  "line 1" "striped" "'100000000000000000000000'" "too large"
bad "device of 2^63 bytes" table-text="0 18014398509481984 zero" -- \
  "line 1" "'18014398509481984'" "too large"
bad "device past 2^63 bytes" \
  table-text="0 8 zero;8 18014398509481976 zero" -- \
  "line 2" "'18014398509481976'" "too large"
bad "unreachable device" table-text="0 8 zero;8 8 linear $gone 0" -- \
  "line 2" "linear" "nobody-listens-here" "No such file"
bad "not an NBD URI" table-text="0 8 linear /dev/sda 0" -- \
  "line 1" "/dev/sda" "NBD"
bad "device too small" table-text="0 16384 linear $dev 0" -- \
  "line 1" "small"
bad "offset past end" table-text="0 8 linear $dev 8190" -- \
  "line 1" "small"
bad "empty table" table-text="# nothing; ;" -- \
  "empty"
bad "table file" table="$tablefile" -- \
  "$tablefile" "line 4" "'lineer'"
bad "missing file" table="$NDM_TMP/no-such.table" -- \
  "no-such.table"
bad "no table key" connections=2 -- \
  "table" "required"
bad "two tables" table-text="0 8 zero" table="$tablefile" -- \
  "table=" "table-text="
bad "unknown key" table-text="0 8 zero" colour=blue -- \
  "colour"
bad "bad connections" table-text="0 8 zero" connections=lots -- \
  "connections" "'lots'"
bad "bad max-inflight" table-text="0 8 zero" max-inflight=huge -- \
  "max-inflight" "'huge'"
bad "bad max-bounce" table-text="0 8 zero" max-bounce=-1 -- \
  "max-bounce" "'-1'"
bad "bad connect-timeout" table-text="0 8 zero" connect-timeout=soon -- \
  "connect-timeout" "'soon'"
bad "bad reconnect-delay" table-text="0 8 zero" reconnect-delay=1.5 -- \
  "reconnect-delay" "'1.5'"
bad "bad structured-replies" table-text="0 8 zero" structured-replies=maybe -- \
  "structured-replies" "'maybe'"

# The good twin of the cases above starts fine (so the failures above are
# about the bad word, not the rest of the command line).
good=$(tmp_sock)
start_dm "$good" \
  "0 8 zero;8 8 linear $dev 0;16 256 striped 2 128 $dev 8 $dev 4096" \
  connections=2 max-inflight=64M max-bounce=16M connect-timeout=5 \
  reconnect-delay=500 structured-replies=false
[ "$(nbdinfo --size "$(nbd_uri "$good")")" = $((272 * 512)) ]
# The largest device NBD can size, one sector short of 2^63 bytes.
big=$(tmp_sock)
start_dm "$big" "0 9007199254740992 zero;9007199254740992 9007199254740991 zero"
[ "$(nbdinfo --size "$(nbd_uri "$big")")" = 9223372036854775296 ]

# --dump-plugin and --help.
out=$NDM_TMP/out
run_dm "$NDM_PLUGIN" --dump-plugin >"$out" 2>"$NDM_TMP/stderr"
check_sanitizer_log "$NDM_TMP/stderr"
for re in "^name=dm$" "^thread_model=parallel$" "^dm_targets=.*linear" \
          "^dm_targets=.*striped" "^dm_targets=.*zero" "^dm_targets=.*error"; do
  if ! grep -E -q -- "$re" "$out"; then
    echo "FAIL --dump-plugin: no /$re/"
    cat "$out"
    failures=$((failures + 1))
  fi
done
run_dm "$NDM_PLUGIN" --help >"$out" 2>"$NDM_TMP/stderr"
check_sanitizer_log "$NDM_TMP/stderr"
for key in table table-text connections max-inflight max-bounce \
           connect-timeout reconnect-delay structured-replies; do
  if ! grep -q -- "$key=" "$out"; then
    echo "FAIL --help does not mention $key="
    failures=$((failures + 1))
  fi
done
# Every tuning key of the man page (which /config/man/* holds to the
# core's key table) has its own entry.
pod=../../docs/nbdkit-dm-plugin.pod
keys=$(sed -n '/^=head2 Tuning parameters/,/^=head/s/^=item B<\([a-z-]*\)=>.*/\1/p' \
         "$pod")
[ -n "$keys" ]
for key in $keys; do
  if ! grep -q -- "^$key=[A-Z]* " "$out"; then
    echo "FAIL --help has no entry for $key="
    failures=$((failures + 1))
  fi
done

if [ $failures -ne 0 ]; then
  echo "$failures failed checks"
  exit 1
fi
