#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# zero target: reads return zeroes, writes, zeroes and trims succeed and are
# dropped (like dm-zero), also when a request straddles into the zero
# segment from a linear one, whose part lands; the devices never see the
# dropped bytes.
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import nbd'

a=$(tmp_sock); top=$(tmp_sock)
start_nbdkit -U "$a" memory 4M
start_dm "$top" "0 2048 linear $(nbd_uri "$a") 0
2048 2048 zero
4096 2048 linear $(nbd_uri "$a") 2048"

$PY - "$(nbd_uri "$top")" "$(nbd_uri "$a")" <<'EOF'
import sys
import nbd

MiB = 1 << 20
h = nbd.NBD()
h.connect_uri(sys.argv[1])
d = nbd.NBD()
d.connect_uri(sys.argv[2])
d.pwrite(b"\x77" * (4 * MiB), 0)            # the device, not through dm

want = bytearray(b"\x77" * MiB + bytes(MiB) + b"\x77" * MiB)
assert h.pread(3 * MiB, 0) == want, "zero segment does not read as zeroes"

h.pwrite(b"w" * 8192, MiB + 4096)           # inside: dropped
h.pwrite(b"s" * 8192, MiB - 4096)           # straddling in: half lands
h.pwrite(b"t" * 8193, 2 * MiB - 4096)       # straddling out: half lands
h.zero(65536, MiB + 65536)
h.trim(65536, MiB + 131072)
h.flush()
want[MiB - 4096:MiB] = b"s" * 4096
want[2 * MiB:2 * MiB + 4097] = b"t" * 4097
assert h.pread(3 * MiB, 0) == want, "writes to the zero segment were kept"

dev = bytearray(b"\x77" * (4 * MiB))
dev[MiB - 4096:MiB] = b"s" * 4096
dev[MiB:MiB + 4097] = b"t" * 4097
assert d.pread(4 * MiB, 0) == dev, "the device saw bytes meant for zero"
print("ok")
EOF
