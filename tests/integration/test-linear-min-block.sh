#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# linear, device minimum block size (R7): a device that refuses anything
# not 4 KiB aligned (blocksize-policy with the error policy) serves small
# writes and reads at unaligned offsets through nbd-dm, which
# read-modify-writes whole blocks through bounce buffers; the bytes around
# each write keep their old contents, also when many small writes to the
# same block are in flight at once (RMW of one block must not lose
# another's update).
source ./functions.sh
requires nbdkit memory --version
requires nbdkit --filter=blocksize-policy null --version
requires $PY -c 'import nbd'

d=$(tmp_sock); top=$(tmp_sock)
start_nbdkit -U "$d" --filter=blocksize-policy memory 8M \
  blocksize-minimum=4096 blocksize-error-policy=error
# 4 MiB of the device from sector 8 (4 KiB in: block aligned) and then
# 1 MiB from sector 9000 (not block aligned on the device).
start_dm "$top" "0 8192 linear $(nbd_uri "$d") 8
8192 2048 linear $(nbd_uri "$d") 9001"

$PY - "$(nbd_uri "$top")" "$(nbd_uri "$d")" <<'EOF'
import errno, os, random, sys
import nbd

MiB = 1 << 20
seed = int.from_bytes(os.urandom(4), "little")
print("seed", seed)
rnd = random.Random(seed)

top = nbd.NBD()
top.connect_uri(sys.argv[1])
dev = nbd.NBD()
dev.connect_uri(sys.argv[2])
size = top.get_size()
assert size == 5 * MiB

# The device must really refuse unaligned I/O for this test to mean much.
try:
    dev.pwrite(b"x" * 512, 512)
    sys.exit("device accepted an unaligned write: the filter is not working")
except nbd.Error as e:
    assert e.errnum == errno.EINVAL, e

def dev_off(o):                     # dm offset -> device offset
    return 8 * 512 + o if o < 4 * MiB else 9001 * 512 + (o - 4 * MiB)

def check(model):
    got = top.pread(size, 0)
    if got != bytes(model):
        bad = next(i for i in range(size) if got[i] != model[i])
        sys.exit(f"dm byte {bad} differs from the model")
    whole = dev.pread(8 * MiB, 0)
    for o in range(0, size, 512):   # each sector where the table puts it
        d = dev_off(o)
        if whole[d:d + 512] != model[o:o + 512]:
            sys.exit(f"device sector at {d} (dm offset {o}) is wrong")

# Old contents everywhere, written aligned so the device takes them.
model = bytearray(rnd.randbytes(size))
top.pwrite(bytes(model), 0)
check(model)

# Small writes at awkward places: inside a block, across one and two block
# boundaries, the last bytes of each segment, and across the boundary
# between the segments.
for off, n in ((512, 512), (4096 * 3 + 1536, 512), (10000, 513),
               (4095, 1), (8191, 4097), (4 * MiB - 3, 3), (4 * MiB - 700, 1400),
               (size - 3, 3), (4 * MiB + 1, 511)):
    data = rnd.randbytes(n)
    top.pwrite(data, off)
    model[off:off + n] = data
check(model)

# Unaligned reads come back right too.
for off, n in ((1, 1), (4095, 2), (4 * MiB - 100, 300), (777, 70000)):
    assert top.pread(n, off) == model[off:off + n], f"read at {off}"

# Eight 512-byte writes to the eight sectors of one 4 KiB device block,
# plus odd-sized neighbours, all in flight at once, a few times over.
for rnd_i in range(8):
    block = rnd.randrange(1, 4 * MiB // 4096 - 1) * 4096
    cmds = []
    for s in range(8):
        data = rnd.randbytes(512)
        off = block + s * 512
        model[off:off + 512] = data
        cmds.append(top.aio_pwrite(data, off))
    for off, n in ((block - 100, 100), (block + 4096, 77)):
        data = rnd.randbytes(n)
        model[off:off + n] = data
        cmds.append(top.aio_pwrite(data, off))
    while top.aio_in_flight() > 0:
        top.poll(-1)
    for c in cmds:
        top.aio_command_completed(c)
check(model)
print("ok")
EOF
