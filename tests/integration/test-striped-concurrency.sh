#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# striped + linear, concurrency: 256 non-overlapping writes of random sizes
# (many unaligned, many sharing a 4 KiB device block with a neighbour) all
# in flight at once over 4 connections, to a table over a plain device and
# two that need 4 KiB alignment (read-modify-write under contention); then
# 256 concurrent reads of the same ranges.  Everything reads back as
# written and the bytes between the writes keep their old contents.
source ./functions.sh
requires nbdkit memory --version
requires nbdkit --filter=blocksize-policy null --version
requires $PY -c 'import nbd'

a=$(tmp_sock); b=$(tmp_sock); c=$(tmp_sock); top=$(tmp_sock)
start_nbdkit -U "$a" memory 16M
start_nbdkit -U "$b" --filter=blocksize-policy memory 16M \
  blocksize-minimum=4096 blocksize-error-policy=error
start_nbdkit -U "$c" --filter=blocksize-policy memory 16M \
  blocksize-minimum=4096 blocksize-error-policy=error
# 24 MiB striped in 8 KiB chunks, then 8 MiB linear from an unaligned
# device offset (sector 3).
start_dm "$top" "0 49152 striped 2 16 $(nbd_uri "$a") 0 $(nbd_uri "$b") 0
49152 16384 linear $(nbd_uri "$c") 3"

$PY - "$(nbd_uri "$top")" <<'EOF'
import os, random, sys, threading
import nbd

MiB = 1 << 20
seed = int.from_bytes(os.urandom(4), "little")
print("seed", seed)
rnd = random.Random(seed)
uri = sys.argv[1]
NCONN, NCMD = 4, 256

hs = []
for i in range(NCONN):
    h = nbd.NBD()
    h.connect_uri(uri)
    hs.append(h)
size = hs[0].get_size()
assert size == 32 * MiB

model = bytearray(rnd.randbytes(size))
for o in range(0, size, 4 * MiB):
    hs[0].pwrite(bytes(model[o:o + 4 * MiB]), o)

# Non-overlapping ranges, in random order over the whole device: sizes
# from 1 byte to 256 KiB, a quarter of them 4 KiB multiples; gaps of 0 to
# 1000 bytes so neighbours often share a device block.
ranges, pos = [], 0
per = size // NCMD
for i in range(NCMD):
    n = rnd.choice([rnd.randint(1, 4096), rnd.randint(1, 256 * 1024),
                    rnd.randint(1, 64) * 4096])
    n = min(n, per - 1000)
    off = pos + rnd.randint(0, 1000)
    ranges.append((off, n))
    pos += per
# Pack some tightly: every other range starts right where the last ended.
for i in range(1, NCMD, 2):
    po, pn = ranges[i - 1]
    ranges[i] = (po + pn, ranges[i][1])
rnd.shuffle(ranges)
for off, n in ranges:
    model[off:off + n] = rnd.randbytes(n)

def run(h, mine, submit):
    try:
        cmds = [submit(h, off, n) for off, n in mine]
        while h.aio_in_flight() > 0:
            h.poll(-1)
        for c in cmds:
            h.aio_command_completed(c)      # raises if it failed
    except Exception as e:
        errors.append(e)

def go(submit):
    ts = [threading.Thread(target=run, args=(h, ranges[i::NCONN], submit))
          for i, h in enumerate(hs)]
    for t in ts: t.start()
    for t in ts: t.join()
    if errors:
        sys.exit(f"concurrent I/O failed: {errors[0]}")

errors = []
go(lambda h, off, n: h.aio_pwrite(bytes(model[off:off + n]), off))

# Concurrent reads, each checked against its own range.
bufs = {}
def read(h, off, n):
    bufs[off] = nbd.Buffer(n)
    return h.aio_pread(bufs[off], off)
go(read)
for off, n in ranges:
    if bufs[off].to_bytearray() != model[off:off + n]:
        sys.exit(f"concurrent read of {n} bytes at {off} differs")

got = b"".join(hs[0].pread(4 * MiB, o) for o in range(0, size, 4 * MiB))
if got != model:
    bad = next(i for i in range(size) if got[i] != model[i])
    sys.exit(f"byte {bad} differs after the concurrent writes")
print("ok")
EOF
