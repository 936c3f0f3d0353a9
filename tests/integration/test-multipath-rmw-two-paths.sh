#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# R7 x multipath: two paths to one export whose minimum block is 4 KiB.
# A client writes the 8 sectors of one block concurrently (8 writes in
# flight); round-robin sends them down alternate paths, and each must
# read-modify-write the block.  The paths are two devices but the block
# is one: every acknowledged sector must be there afterwards.  (The
# read-modify-write lock was per device: both paths read the old block
# and the later write-back erased the earlier write, ~40% of them.)
source ./functions.sh
requires nbdkit --filter=blocksize-policy memory --version
requires $PY -c 'import nbd'

m=$(tmp_sock); top=$(tmp_sock)
start_nbdkit -U "$m" --filter=blocksize-policy memory 16M \
  blocksize-minimum=4096 blocksize-preferred=4096
# The export name is ignored by memory: two URIs, two devices, one export.
p1="nbd+unix:///p1?socket=$m"; p2="nbd+unix:///p2?socket=$m"
start_dm "$top" "0 32768 multipath 0 0 1 1 round-robin 0 2 1 $p1 1 $p2 1"

$PY - "$(nbd_uri "$top")" <<'PY'
import sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
assert h.get_block_size(nbd.SIZE_MINIMUM) == 1     # unaligned is served
lost = 0
for r in range(100):
    blk = (r % 64) * 4096
    bufs = [nbd.Buffer.from_bytearray(bytearray([(r * 8 + s) % 251 + 1]) * 512)
            for s in range(8)]
    for s in range(8):
        h.aio_pwrite(bufs[s], blk + s * 512)
    while h.aio_in_flight() > 0:
        h.poll(-1)
    got = h.pread(4096, blk)
    lost += sum(got[s * 512:(s + 1) * 512] !=
                bytes([(r * 8 + s) % 251 + 1]) * 512 for s in range(8))
print("acknowledged 512-byte writes lost: %d of 800" % lost)
sys.exit(1 if lost else 0)
PY
