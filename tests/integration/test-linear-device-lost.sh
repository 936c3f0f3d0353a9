#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# linear, device lost and back: kill one device server; I/O to its segment
# (and flush, which needs every device) fails with EIO, never EINVAL; the
# other segment keeps serving and the dm server stays up.  Restart the
# device on the same socket: the background reconnect brings the segment
# back with its data.
source ./functions.sh
requires nbdkit memory --version
requires nbdkit file --version
requires $PY -c 'import nbd'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock)
img=$NDM_TMP/b.img
truncate -s 4M "$img"
start_nbdkit -U "$a" memory 4M
start_nbdkit -U "$b" file "$img"
b_pid=$NBDKIT_PID
start_dm "$top" "0 2048 linear $(nbd_uri "$a") 0
2048 2048 linear $(nbd_uri "$b") 0" reconnect-delay=200
uri=$(nbd_uri "$top")

nbdsh -u "$uri" -c '
h.pwrite(b"\xaa" * 1048576, 0)
h.pwrite(b"\xbb" * 1048576, 1048576)
h.flush()
'

# Gone without a goodbye; the stale socket refuses connections until the
# device comes back.
kill_pid "$b_pid"

$PY - "$uri" <<'EOF'
import errno, sys
import nbd

MiB = 1 << 20
h = nbd.NBD()
h.connect_uri(sys.argv[1])

def expect_eio(what, fn, *args):
    try:
        fn(*args)
    except nbd.Error as e:
        if e.errnum != errno.EIO:
            sys.exit(f"{what}: expected EIO, got {e.errno} ({e})")
        return
    sys.exit(f"{what}: succeeded with the device dead")

# Twice each: the first may be the one that finds the connection dead,
# the second meets a device with no connection at all.
for i in range(2):
    expect_eio(f"read {i}", h.pread, 4096, MiB + 4096)
    expect_eio(f"write {i}", h.pwrite, b"x" * 4096, MiB + 4096)
    expect_eio(f"unaligned write {i}", h.pwrite, b"x" * 7, MiB + 3)
    expect_eio(f"zero {i}", h.zero, 4096, MiB)
    expect_eio(f"straddling read {i}", h.pread, 8192, MiB - 4096)
    expect_eio(f"flush {i}", h.flush)

# The live segment is untouched by all this.
assert h.pread(MiB - 4096, 0) == b"\xaa" * (MiB - 4096), "segment 0 changed"
h.pwrite(b"\xcc" * 4096, 0)
assert h.pread(4096, 0) == b"\xcc" * 4096
h.shutdown()
EOF

# The dm server is still up for new clients.
nbdinfo --size "$uri" >/dev/null

# Same socket, same file: the reconnect thread should find it.
rm -f "$b"
start_nbdkit -U "$b" file "$img"

$PY - "$uri" "$(nbd_uri "$b")" <<'EOF'
import errno, sys, time
import nbd

MiB = 1 << 20
h = nbd.NBD()
h.connect_uri(sys.argv[1])

deadline = time.monotonic() + 20
while True:
    try:
        data = h.pread(MiB, MiB)
        break
    except nbd.Error as e:
        if e.errnum != errno.EIO:
            sys.exit(f"read while reconnecting: expected EIO, got {e.errno}")
        if time.monotonic() > deadline:
            sys.exit(f"device not back 20 s after its server restarted: {e}")
        time.sleep(0.2)

# The bytes the device held before it died, minus nothing: every failed
# write above failed before reaching it.
assert data == b"\xbb" * MiB, "segment 1 lost its data across the restart"
h.pwrite(b"\xdd" * 8192, MiB + 4096)
h.flush()
d = nbd.NBD()
d.connect_uri(sys.argv[2])
assert d.pread(8192, 4096) == b"\xdd" * 8192, "write after reconnect missing"
print("ok")
EOF
