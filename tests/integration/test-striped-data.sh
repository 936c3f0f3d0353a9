#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# striped + linear: random data written through nbd-dm in odd-sized,
# unaligned pieces reads back identical, and every byte sits on the
# devices exactly where dm's stripe math puts it (chunk = o / cs,
# stripe = chunk % N, row = chunk / N, dev_off = phys + row * cs + o % cs);
# device areas outside the table stay untouched (zero).
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import nbd'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock)
start_nbdkit -U "$a" memory 16M
start_nbdkit -U "$b" memory 16M
# 16 MiB striped over A from sector 0 and B from sector 2048 (a non-zero
# physical offset), then 4 MiB linear on A after its stripe area.
table="0 32768 striped 2 128 $(nbd_uri "$a") 0 $(nbd_uri "$b") 2048
32768 8192 linear $(nbd_uri "$a") 16384"
start_dm "$top" "$table"

$PY - "$(nbd_uri "$top")" "$(nbd_uri "$a")" "$(nbd_uri "$b")" <<'EOF'
import os, random, sys
import nbd

top_uri, a_uri, b_uri = sys.argv[1:]
seed = int.from_bytes(os.urandom(4), "little")
print("seed", seed)
rnd = random.Random(seed)

MiB = 1 << 20
SECTOR = 512
size = 20 * MiB
data = rnd.randbytes(size)

def connect(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h

def read_all(h, n, step=4 * MiB):
    return b"".join(h.pread(min(step, n - o), o) for o in range(0, n, step))

top = connect(top_uri)
assert top.get_size() == size, top.get_size()

# Odd sizes and offsets, so pieces straddle chunks, rows and the segment
# boundary at 16 MiB.
o = 0
while o < size:
    n = min(rnd.randint(1, 2 * MiB + 1000), size - o)
    top.pwrite(data[o:o + n], o)
    o += n
top.flush()

got = read_all(top, size)
if got != data:
    bad = next(i for i in range(size) if got[i] != data[i])
    sys.exit(f"read back differs from what was written at byte {bad}")

# Where each byte must be, by dm's math.
dev = {"a": bytearray(16 * MiB), "b": bytearray(16 * MiB)}
stripes = [("a", 0), ("b", 2048 * SECTOR)]
cs = 128 * SECTOR
for off in range(0, 16 * MiB, cs):          # one chunk at a time
    chunk = off // cs
    name, phys = stripes[chunk % 2]
    dev_off = phys + (chunk // 2) * cs
    dev[name][dev_off:dev_off + cs] = data[off:off + cs]
lin = 16384 * SECTOR
dev["a"][lin:lin + 4 * MiB] = data[16 * MiB:20 * MiB]

for name, uri in (("a", a_uri), ("b", b_uri)):
    h = connect(uri)
    got = read_all(h, 16 * MiB)
    if got != bytes(dev[name]):
        bad = next(i for i in range(len(got)) if got[i] != dev[name][i])
        sys.exit(f"device {name}: byte {bad} is not where dm's stripe "
                 f"math puts it")
    h.shutdown()
print("ok")
EOF
