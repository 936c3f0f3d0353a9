#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# linear, device maximum request size (R7): a device that refuses anything
# over 64 KiB (blocksize-policy with the error policy) still serves 4 MiB
# reads and writes through nbd-dm, which splits them to the device's
# maximum; the data lands where it should, at aligned and unaligned
# offsets, and reads back identical.
source ./functions.sh
requires nbdkit memory --version
requires nbdkit --filter=blocksize-policy null --version
requires $PY -c 'import nbd'

d=$(tmp_sock); top=$(tmp_sock)
start_nbdkit -U "$d" --filter=blocksize-policy memory 16M \
  blocksize-maximum=65536 blocksize-error-policy=error
# 12 MiB of the device, from 1 MiB in.
start_dm "$top" "0 24576 linear $(nbd_uri "$d") 2048"

$PY - "$(nbd_uri "$top")" "$(nbd_uri "$d")" <<'EOF'
import errno, os, sys
import nbd

MiB = 1 << 20
top = nbd.NBD()
top.connect_uri(sys.argv[1])
dev = nbd.NBD()
dev.connect_uri(sys.argv[2])

# The test means something only if the device really refuses 4 MiB.
for what, fn, args in (("read", dev.pread, (4 * MiB, 0)),
                       ("write", dev.pwrite, (bytes(4 * MiB), 0))):
    try:
        fn(*args)
        sys.exit(f"device accepted a 4 MiB {what}: the filter is not working")
    except nbd.Error as e:
        assert e.errnum == errno.EINVAL, e

def dev_read(off, n):
    # The device directly, in pieces it accepts.
    return b"".join(dev.pread(min(65536, off + n - o), o)
                    for o in range(off, off + n, 65536))

for off, n in ((0, 4 * MiB), (5 * MiB + 12345, 4 * MiB + 1000),
               (12 * MiB - 4 * MiB, 4 * MiB)):
    data = os.urandom(n)
    top.pwrite(data, off)
    assert top.pread(n, off) == data, f"read back at {off} differs"
    assert dev_read(MiB + off, n) == data, \
        f"device does not hold the {n} bytes written at {off}"
print("ok")
EOF
