#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Sizes and booleans of the tuning keys are written as for every nbdkit
# key (nbdkit_parse_size, nbdkit_parse_bool): 1T, 64k, 1E/s, yes, off are
# taken, and the number each became is in the -v log ("config: KEY=VALUE:
# NUMBER"); a value nbdkit cannot read stops start-up with a message
# naming the key and quoting the value.  The rest of the syntax (ranges,
# "/s", what reaches the core) is in tests/unit/test-config.c.
source ./functions.sh

failures=0
fail ()
{
  echo "FAIL $*"
  failures=$((failures + 1))
}

# good ARGS... -- LINE...: nbdkit -v ARGS serves (nbdinfo reads the size)
# and its log has every LINE.  A server of its own, not --run: the
# command --run starts would inherit the sanitizer's LD_PRELOAD, which
# /bin/sh does not survive under TSan.
good ()
{
  local line pid size sock
  local -a args=()

  while [ "$1" != -- ]; do args+=("$1"); shift; done
  shift
  sock=$(tmp_sock)
  if ! start_dm "$sock" "0 8 zero" -v "${args[@]}"; then
    fail "${args[*]}: nbdkit did not serve"
    return
  fi
  pid=$NBDKIT_PID
  size=$(nbdinfo --size "$(nbd_uri "$sock")") || size=
  [ "$size" = 4096 ] || fail "${args[*]}: size '$size'"
  for line in "$@"; do
    grep -q -F "config: $line" "$NBDKIT_LOG" ||
      { fail "${args[*]}: no 'config: $line' in the log"; cat "$NBDKIT_LOG"; }
  done
  stop_dm "$pid" || fail "${args[*]}: nbdkit did not stop cleanly"
}

good max-inflight=1T max-bounce=64k resync-rate=1E/s structured-replies=yes \
  -- "max-inflight=1T: 1099511627776 bytes" "max-bounce=64k: 65536 bytes" \
     "resync-rate=1E/s: 1152921504606846976 bytes/s" \
     "structured-replies=yes: true"
good max-bounce=8s resync-rate=2m structured-replies=off -- \
  "max-bounce=8s: 4096 bytes" "resync-rate=2m: 2097152 bytes/s" \
  "structured-replies=off: false"
good structured-replies=Y structured-replies=n -- \
  "structured-replies=Y: true" "structured-replies=n: false"

# bad ARGS... -- WORD...: start-up fails, nothing served, and one error
# line has every WORD.
bad ()
{
  local rc=0 sock=$(tmp_sock) word log=$NDM_TMP/bad.log line
  local -a args=()

  while [ "$1" != -- ]; do args+=("$1"); shift; done
  shift
  run_dm -f -U "$sock" "$NDM_PLUGIN" table-text="0 8 zero" "${args[@]}" \
    2>"$log" || rc=$?
  check_sanitizer_log "$log"
  if [ $rc -eq 0 ] || [ $rc -eq 124 ] || [ -e "$sock" ]; then
    fail "${args[*]}: nbdkit exited $rc (expected a start-up error)"
    cat "$log"
    return
  fi
  line=$(grep 'error: ' "$log" | grep -F -- "$1:" || true)
  for word in "$@"; do
    grep -q -F -- "$word" <<<"$line" ||
      { fail "${args[*]}: no error line with '$word'"; cat "$log"; }
  done
}

bad max-inflight=1X -- max-inflight "'1X' is not a size"
bad max-inflight=0 -- max-inflight "'0' is not a size"
bad max-bounce=8E -- max-bounce "'8E' is not a size"
bad max-bounce=1.5M -- max-bounce "'1.5M' is not a size"
bad resync-rate=64M/h -- resync-rate "'64M/h' is not a rate"
bad resync-rate=-1 -- resync-rate "'-1' is not a rate"
bad structured-replies=maybe -- structured-replies \
  "'maybe' is not a boolean"
bad structured-replies= -- structured-replies "'' is not a boolean"

[ $failures -eq 0 ]
