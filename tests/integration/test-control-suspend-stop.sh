#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# control: a suspended dm server holding requests still stops on SIGTERM.
# Suspend, then two clients each write (held by the suspend): one client
# hangs up, the other stays connected.  SIGTERM: the server exits cleanly
# within stop_dm's 10 s (no resume needed); the connected client's write
# fails or its connection closes -- it is never acknowledged without its
# data on the device.  (A suspended server with nothing held stops at
# once; that is checked first.)
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import nbd, ndmctl'

a=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_nbdkit -U "$a" memory 8M
A=$(nbd_uri "$a")

# Nothing held.
start_dm "$top" "0 4096 linear $A 0" control="$ctlsock"
ctl "$ctlsock" suspend
stop_dm "$NBDKIT_PID"

# Requests held.
top=$(tmp_sock)
start_dm "$top" "0 4096 linear $A 0" control="$ctlsock"
dm_pid=$NBDKIT_PID
ctl "$ctlsock" suspend

$PY - "$(nbd_uri "$top")" <<'EOF'
import sys, time
import nbd

h = nbd.NBD()
h.connect_uri(sys.argv[1])
buf = nbd.Buffer.from_bytearray(bytearray(b"\x01") * 4096)
c = h.aio_pwrite(buf, 0)
time.sleep(0.3)
h.poll(0)
assert not h.aio_command_completed(c), "write done while suspended"
print("client 1 leaves with its write held")
EOF

$PY - "$(nbd_uri "$top")" "$A" >"$NDM_TMP/client2.out" 2>&1 <<'EOF' &
import sys, time
import nbd

h = nbd.NBD()
h.connect_uri(sys.argv[1])
buf = nbd.Buffer.from_bytearray(bytearray(b"\x02") * 4096)
c = h.aio_pwrite(buf, 65536)
print("held", flush=True)
try:
    while not h.aio_command_completed(c):
        h.poll(-1)
except nbd.Error as e:
    print(f"write failed: {e}")
    sys.exit(0)
d = nbd.NBD()
d.connect_uri(sys.argv[2])
if d.pread(4096, 65536) != b"\x02" * 4096:
    sys.exit("write acknowledged, but its data is not on the device")
print("write done, data on the device")
EOF
client2=$!
for ((i = 0; i < 50; i++)); do
  ! grep -q held "$NDM_TMP/client2.out" || break
  sleep 0.1
done
sleep 0.3
alive "$client2"

stopped=0; stop_dm "$dm_pid" || stopped=$?
rc=0; wait "$client2" || rc=$?
cat "$NDM_TMP/client2.out"
if [ $stopped -ne 0 ]; then
  echo "a suspended server holding requests did not stop cleanly on SIGTERM"
  exit 1
fi
test $rc -eq 0
echo ok
