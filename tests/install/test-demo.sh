#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The demo (tools/demo.sh, the README's first command), on the Release
# build of the fixture: it comes up, every command it prints to try runs
# as printed, in order, from another directory, and exits 0; among them
# nbd-dmsetup's status, stats and message; Ctrl-C (here SIGTERM) stops it
# with status 0, its servers gone and its directory removed.
source ../integration/functions.sh
requires nbdsh --version
requires qemu-img --version
rel=${NDM_RELEASE_DIR:?run by ctest, after install/build}
top=$(cd ../.. && pwd)

out=$NDM_TMP/demo.out
"$top/tools/demo.sh" "$rel" >"$out" 2>"$NDM_TMP/demo.err" &
demo=$!
cleanup_fn stop_pid "$demo"
for ((i = 0; i < 600; i++)); do
  grep -q '^Ctrl-C stops' "$out" && break
  alive "$demo" ||
    { echo "$0: the demo exited:" >&2; cat "$out" "$NDM_TMP/demo.err" >&2; exit 1; }
  sleep 0.1
done
grep -q '^Ctrl-C stops' "$out" ||
  { echo "$0: the demo did not come up in 60 s:" >&2; cat "$out" >&2; exit 1; }
dir=$(sed -n 's/^Control socket: \(.*\)\/dm.ctl$/\1/p' "$out")
[ -d "$dir" ] || { echo "$0: no demo directory in its output:" >&2; cat "$out" >&2; exit 1; }
servers=$(pgrep -P "$demo" | paste -sd' ')

# The commands: the indented lines after "Try, in another terminal:", up
# to the next line that is not indented.
mapfile -t cmds < <(awk '
  /^Try, in another terminal:/ { on = 1; next }
  on && /^    / { sub(/^    /, ""); print; next }
  on && /[^ ]/ { exit }' "$out")
for want in ' status$' ' stats$' ' message '; do
  printf '%s\n' "${cmds[@]}" | grep -q "nbd-dmsetup .*$want" ||
    { echo "$0: the demo prints no nbd-dmsetup command matching '$want':" >&2
      cat "$out" >&2; exit 1; }
done
mkdir "$NDM_TMP/elsewhere"
for cmd in "${cmds[@]}"; do
  if ! (cd "$NDM_TMP/elsewhere" && bash -c "set -o pipefail; $cmd") \
         >"$NDM_TMP/cmd.out" 2>&1; then
    echo "$0: the demo's command failed: $cmd" >&2
    cat "$NDM_TMP/cmd.out" >&2
    exit 1
  fi
  echo "ran: $cmd"
done

# What Ctrl-C does, by TERM: bash starts a background job with INT
# ignored, and a script cannot trap a signal ignored at its start; the
# demo handles both alike.
kill -TERM "$demo"
rc=0
wait "$demo" || rc=$?
[ $rc -eq 0 ] ||
  { echo "$0: the demo exited with $rc on SIGTERM:" >&2; cat "$NDM_TMP/demo.err" >&2; exit 1; }
for pid in $servers; do
  ! alive "$pid" || { echo "$0: the demo left server $pid running" >&2; exit 1; }
done
[ ! -e "$dir" ] || { echo "$0: the demo left $dir behind" >&2; exit 1; }
echo "$0: ${#cmds[@]} commands ran"
