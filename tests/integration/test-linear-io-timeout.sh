#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# linear, io-timeout: a device that stops answering (reads delayed 30 s by
# the delay filter) is fenced after io-timeout: the client gets EIO, not a
# reply 30 s later, and nothing is replied while the command could still
# land (R1: the connection is shut down first).  The dm server keeps
# serving, and after the reconnect the device's undelayed writes work.
source ./functions.sh
requires nbdkit memory --filter=delay --version
requires $PY -c 'import nbd'

dev=$(tmp_sock); top=$(tmp_sock)
start_nbdkit -U "$dev" --filter=delay memory 4M delay-read=30
dev_pid=$NBDKIT_PID
# The delayed read holds one of the device's threads for 30 s: kill it at
# the end rather than wait for a clean stop.
cleanup_fn kill_pid "$dev_pid"
start_dm "$top" "0 8192 linear $(nbd_uri "$dev") 0" io-timeout=1 \
  reconnect-delay=200 connections=1

$PY - "$(nbd_uri "$top")" <<'EOF2'
import errno, sys, time
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
try:
    h.pread(4096, 0)
    sys.exit("read succeeded: the device was never fenced")
except nbd.Error as e:
    if e.errnum != errno.EIO:
        sys.exit(f"expected EIO, got {e.errno}")

# Writes are not delayed: once reconnected they go through.
deadline = time.monotonic() + 20
while True:
    try:
        h.pwrite(b"w" * 4096, 8192)
        break
    except nbd.Error as e:
        if e.errnum != errno.EIO or time.monotonic() > deadline:
            sys.exit(f"device not back after the fence: {e}")
        time.sleep(0.2)
EOF2
