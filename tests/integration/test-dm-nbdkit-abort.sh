#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit before 1.34 aborts when a client hangs up with replies pending
# (nbdkit-dm-plugin(1), "BUGS"): the plugin can neither avoid it nor ask
# the nbdkit running it for its version.  So:
#
# - the server's log holds the start-up warning once if the plugin was
#   built against nbdkit headers older than 1.34 (dm_nbdkit_headers in
#   --dump-plugin), and not at all otherwise;
# - docs/examples/nbd-dm.service, which the man page names, restarts on
#   failure, is valid (systemd-analyze verify, where systemd is
#   installed), and its commands, run with this test's paths, serve this
#   plugin, also where an aborted server left its socket behind; a bad
#   table exits with the status the unit does not restart on;
# - --threads 1, the slow way round the abort, serves.
#
# The abort itself is a race inside nbdkit, not tested here.
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import nbd, ndmctl'

unit=$PWD/../../docs/examples/nbd-dm.service
pod=$PWD/../../docs/nbdkit-dm-plugin.pod

a=$(tmp_sock); top=$(tmp_sock)
start_nbdkit -U "$a" memory 1M

# The warning: once, at start-up, iff the headers are older than 1.34.
headers=$(run_dm "$NDM_PLUGIN" --dump-plugin |
            sed -n 's/^dm_nbdkit_headers=//p')
case $headers in
  1.[0-9].* | 1.[12][0-9].* | 1.3[0-3].*) want=1 ;;
  [0-9]*.[0-9]*.*) want=0 ;;
  *) echo "$0: dm_nbdkit_headers='$headers' is not a version" >&2; exit 1 ;;
esac
start_dm "$top" "0 2048 linear $(nbd_uri "$a") 0"
dmlog=$NBDKIT_LOG
nbdsh -u "$(nbd_uri "$top")" -c 'h.pwrite(b"w" * 4096, 0)' -c 'h.flush()'
got=$(grep -c "warning: built against nbdkit $headers: nbdkit before 1.34 aborts" \
        "$dmlog" || true)
if [ "$got" != "$want" ]; then
  echo "$0: headers $headers: the warning is in the log $got times," \
       "expected $want:" >&2
  cat "$dmlog" >&2
  exit 1
fi

# The unit file.
grep -q 'docs/examples/nbd-dm.service' "$pod" ||
  { echo "$0: the man page does not name $unit" >&2; exit 1; }
grep -qx 'Restart=on-failure' "$unit" ||
  { echo "$0: $unit does not say Restart=on-failure" >&2; exit 1; }
verify_units "$unit"

read -r -a pre <<<"$(unit_cmd "$unit" ExecStartPre)"
read -r -a start <<<"$(unit_cmd "$unit" ExecStart)"
[ "${start[0]}" = /usr/bin/nbdkit ] && [ -x "${start[0]}" ] ||
  { echo "$0: ExecStart runs '${start[0]}', not nbdkit" >&2; exit 1; }

mkdir "$NDM_TMP/run" "$NDM_TMP/etc"
echo "0 2048 linear $(nbd_uri "$a") 0" >"$NDM_TMP/etc/vol.table"
# What an aborted server leaves: a socket file nobody listens on.
$PY -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' \
  "$NDM_TMP/run/dm.sock"
"${pre[@]}"
start_nbdkit -dm "${start[@]:1}"
nbdsh -u "$(nbd_uri "$NDM_TMP/run/dm.sock")" \
  -c 'assert h.pread(4096, 0) == b"w" * 4096'
ctl "$NDM_TMP/run/dm.ctl" table >/dev/null
stop_dm "$NBDKIT_PID"

# A bad table: nbdkit exits 1, which RestartPreventExitStatus keeps from
# restarting in a loop.
grep -qx 'RestartPreventExitStatus=1' "$unit" ||
  { echo "$0: $unit restarts a server with a bad table" >&2; exit 1; }
echo "0 2048 linear" >"$NDM_TMP/etc/vol.table"
rc=0
run_dm "${start[@]:1}" 2>"$NDM_TMP/bad.log" || rc=$?
if [ $rc -ne 1 ]; then
  echo "$0: a bad table: exit status $rc, expected 1:" >&2
  cat "$NDM_TMP/bad.log" >&2
  exit 1
fi

# --threads 1: one request at a time per connection, no abort.
t1=$(tmp_sock)
start_nbdkit -dm -U "$t1" --threads 1 "$NDM_PLUGIN" \
  "table-text=0 2048 linear $(nbd_uri "$a") 0"
$PY - "$(nbd_uri "$t1")" <<'EOF'
import sys
import nbd

h = nbd.NBD()
h.connect_uri(sys.argv[1])
for i in range(16):
    h.aio_pwrite(bytes([i]) * 65536, i * 65536)
while h.aio_in_flight() > 0:
    h.poll(-1)
h.flush()
for i in range(16):
    assert h.pread(65536, i * 65536) == bytes([i]) * 65536, i
print("ok")
EOF
