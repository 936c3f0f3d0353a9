#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# linear, device shutting down: an nbdkit device told to stop (SIGTERM)
# answers ESHUTDOWN and waits for its clients to leave.  nbd-dm must turn
# that into EIO for the client (a path error) and close every connection
# to the device, so the device can exit; once it is back, I/O works again.
source ./functions.sh
requires nbdkit file --version
requires $PY -c 'import nbd'

dev=$(tmp_sock); top=$(tmp_sock)
img=$NDM_TMP/dev.img
truncate -s 4M "$img"
start_nbdkit -U "$dev" file "$img"
dev_pid=$NBDKIT_PID
# Two connections to the device: both must be closed.
start_dm "$top" "0 8192 linear $(nbd_uri "$dev") 0" connections=2 \
  reconnect-delay=200
uri=$(nbd_uri "$top")
nbdsh -u "$uri" -c 'h.pwrite(b"\x5a" * 65536, 0); h.flush()'

# SIGTERM is acted on when the device gets to it: a read may still get
# through before then (a loaded machine, TSan), not 20 s later.
kill "$dev_pid"
$PY - "$uri" <<'EOF2'
import errno, sys, time
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
deadline = time.monotonic() + 20
while True:
    try:
        h.pread(4096, 0)
    except nbd.Error as e:
        if e.errnum != errno.EIO:
            sys.exit(f"expected EIO, got {e.errno}")
        break
    if time.monotonic() > deadline:
        sys.exit("reads succeed from a device that is shutting down")
    time.sleep(0.1)
EOF2

# The device exits only when nbd-dm has let go of it.  Generous deadline:
# this checks that it happens, not how fast.
for ((i = 0; i < 100; i++)); do
  alive "$dev_pid" || break
  sleep 0.1
done
if alive "$dev_pid"; then
  echo "$0: the device did not exit: nbd-dm kept its connections" >&2
  exit 1
fi
wait "$dev_pid" 2>/dev/null || true

rm -f "$dev"
start_nbdkit -U "$dev" file "$img"
$PY - "$uri" <<'EOF2'
import errno, sys, time
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
deadline = time.monotonic() + 20
while True:
    try:
        data = h.pread(65536, 0)
        break
    except nbd.Error as e:
        if e.errnum != errno.EIO or time.monotonic() > deadline:
            sys.exit(f"device not back: {e}")
        time.sleep(0.2)
assert data == b"\x5a" * 65536, "data changed across the restart"
EOF2
