#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# docs/examples, with nbd-dm installed from the Release build of the
# fixture (cmake --install into a DESTDIR):
#
# - nbd-dm@.socket and nbd-dm@.service are valid (systemd-analyze verify
#   of an instance) and work together: the service's ExecStart, run under
#   socket activation on the socket's ListenStream (systemd-socket-activate
#   passes the listening socket as systemd does), serves the table and
#   its control socket;
# - multipath-mirror.sh, the walk-through, runs to the end with status 0
#   and leaves no server running, and every command of
#   multipath-mirror.md (its ```sh blocks) is a line of the script.
#
# "nbdkit dm" finds the plugin in nbdkit's plugin directory only, which
# a DESTDIR install does not reach: the walk-through runs with a PATH
# whose nbdkit turns the word "dm" into the installed plugin's path and
# whose nbd-dmsetup is the installed one.
source ../integration/functions.sh
requires nbdsh --version
requires nbdcopy --version
requires cmake --version
rel=${NDM_RELEASE_DIR:?run by ctest, after install/build}
examples=$(cd ../../docs/examples && pwd)

dest=$NDM_TMP/dest
DESTDIR=$dest cmake --install "$rel" >"$NDM_TMP/install.log"
plugindir=$(nbdkit --dump-config | sed -n 's/^plugindir=//p')
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$rel/CMakeCache.txt")
plugin=$dest$plugindir/nbdkit-dm-plugin.so
dmsetup=$dest$prefix/sbin/nbd-dmsetup
[ -f "$plugin" ] && [ -x "$dmsetup" ] ||
  { echo "$0: $plugin or $dmsetup not installed" >&2; exit 1; }

# ---- the socket-activated units ----
mkdir "$NDM_TMP/units" "$NDM_TMP/run" "$NDM_TMP/etc"
cp "$examples/nbd-dm@.socket" "$NDM_TMP/units/nbd-dm@vol.socket"
cp "$examples/nbd-dm@.service" "$NDM_TMP/units/nbd-dm@vol.service"
verify_units "$NDM_TMP/units/nbd-dm@vol.socket" \
  "$NDM_TMP/units/nbd-dm@vol.service"
grep -qx 'Accept=no' "$examples/nbd-dm@.socket" ||
  { echo "$0: nbd-dm@.socket does not say Accept=no (one nbdkit)" >&2; exit 1; }
grep -qx 'Restart=on-failure' "$examples/nbd-dm@.service" ||
  { echo "$0: nbd-dm@.service does not say Restart=on-failure" >&2; exit 1; }

requires systemd-socket-activate --version
sock=$(unit_cmd "$examples/nbd-dm@.socket" ListenStream "$plugin")
read -r -a start <<<"$(unit_cmd "$examples/nbd-dm@.service" ExecStart "$plugin")"
[ "$sock" = "$NDM_TMP/run/vol.sock" ] ||
  { echo "$0: ListenStream is '$sock', expected /run/nbd-dm/%i.sock" >&2; exit 1; }
[ "${start[0]}" = /usr/bin/nbdkit ] && [ -x "${start[0]}" ] ||
  { echo "$0: ExecStart runs '${start[0]}', not nbdkit" >&2; exit 1; }
a=$(tmp_sock)
start_nbdkit -U "$a" memory 4M
echo "0 8192 linear $(nbd_uri "$a") 0" >"$NDM_TMP/etc/vol.table"
systemd-socket-activate -l "$sock" "${start[@]}" 2>"$NDM_TMP/activated.log" &
activated=$!
cleanup_fn stop_pid "$activated"
# The first client starts nbdkit (systemd-socket-activate execs it).
for ((i = 0; i < 300; i++)); do
  nbdinfo --size "$(nbd_uri "$sock")" >/dev/null 2>&1 && break
  alive "$activated" ||
    { echo "$0: socket-activated nbdkit exited:" >&2; cat "$NDM_TMP/activated.log" >&2; exit 1; }
  sleep 0.1
done
nbdsh -u "$(nbd_uri "$sock")" -c 'h.pwrite(b"s" * 4096, 0)' -c 'h.flush()'
nbdsh -u "$(nbd_uri "$a")" -c 'assert h.pread(4096, 0) == b"s" * 4096'
"$dmsetup" -c "$NDM_TMP/run/vol.ctl" table | grep -q "^0 8192 linear " ||
  { echo "$0: no table on the unit's control socket" >&2; exit 1; }
[ "$(cat "/proc/$activated/comm")" = nbdkit ] ||
  { echo "$0: PID $activated is not nbdkit" >&2; exit 1; }
stop_pid "$activated"

# ---- the walk-through ----
mkdir "$NDM_TMP/bin"
cat >"$NDM_TMP/bin/nbdkit" <<EOF
#!/bin/bash
args=()
for a; do [ "\$a" = dm ] && a=$plugin; args+=("\$a"); done
exec /usr/bin/nbdkit "\${args[@]}"
EOF
chmod +x "$NDM_TMP/bin/nbdkit"
ln -s "$dmsetup" "$NDM_TMP/bin/nbd-dmsetup"
walk=$NDM_TMP/walk
cleanup_fn eval 'for f in "$walk"/*.pid; do [ -e "$f" ] && kill "$(cat "$f")"; done'
rc=0
PATH=$NDM_TMP/bin:$PATH timeout 300 bash "$examples/multipath-mirror.sh" \
  "$walk" >"$NDM_TMP/walk.out" 2>&1 || rc=$?
if [ $rc -ne 0 ]; then
  echo "$0: multipath-mirror.sh exited with $rc:" >&2
  cat "$NDM_TMP/walk.out" >&2
  exit 1
fi
grep -q 'mirror: read repairs 0, resynced [1-9][0-9]* bytes, verify mismatches 0' \
  "$NDM_TMP/walk.out" ||
  { echo "$0: the walk-through resynced nothing, or verify found mismatches:" >&2
    cat "$NDM_TMP/walk.out" >&2; exit 1; }
# Its servers were sent TERM at its exit; nbdkit takes a moment to go.
for f in "$walk"/*.pid; do
  for ((i = 0; i < 100; i++)); do
    alive "$(cat "$f")" || continue 2
    sleep 0.1
  done
  echo "$0: the walk-through left ${f##*/} running" >&2
  exit 1
done

# Every command of the page is a line of the script.
missing=$(awk '
  FNR == NR { sub(/^[ \t]+/, ""); script[$0] = 1; next }
  /^```sh$/ { on = 1; next }
  /^```/ { on = 0; next }
  on && NF && !($0 in script) { print FNR ": " $0 }' \
  "$examples/multipath-mirror.sh" "$examples/multipath-mirror.md")
if [ -n "$missing" ]; then
  echo "$0: multipath-mirror.md has commands the script does not run:" >&2
  echo "$missing" >&2
  exit 1
fi
n=$(grep -c '^```sh$' "$examples/multipath-mirror.md")
[ "$n" -ge 5 ] || { echo "$0: multipath-mirror.md has $n command blocks" >&2; exit 1; }
echo "$0: ok"
