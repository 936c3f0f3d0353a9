#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# striped, extents (R11): after writing only some chunks of a 3-way
# striped segment, block status of nbd-dm reports data exactly for those
# chunks and holes elsewhere, merged across stripes; a zero segment is a
# hole, and a device without block status (noextents filter) is all data.
# Checked with nbdinfo --map over the whole device and with block_status
# windows that start and end inside chunks, with and without REQ_ONE.
source ./functions.sh
requires nbdinfo --version
requires nbdkit memory --version
requires nbdkit --filter=noextents null --version
requires $PY -c 'import nbd'

a=$(tmp_sock); b=$(tmp_sock); c=$(tmp_sock); n=$(tmp_sock); top=$(tmp_sock)
for s in "$a" "$b" "$c"; do start_nbdkit -U "$s" memory 4M; done
start_nbdkit -U "$n" --filter=noextents memory 1M
# Chunks of 64 sectors = 32 KiB, the memory plugin's allocation unit, so
# a written chunk is exactly one allocated page on its device.
stripes="$(nbd_uri "$a") 0 $(nbd_uri "$b") 0 $(nbd_uri "$c") 0"
start_dm "$top" "0 12288 striped 3 64 $stripes
12288 2048 zero
14336 2048 linear $(nbd_uri "$n") 0"

$PY - "$(nbd_uri "$top")" <<'EOF'
import json, subprocess, sys
import nbd

KiB = 1024
CHUNK = 32 * KiB
STRIPED = 6 * 1024 * KiB
ZERO_END = STRIPED + 1024 * KiB
SIZE = ZERO_END + 1024 * KiB
DATA, HOLE = 0, nbd.STATE_HOLE | nbd.STATE_ZERO

h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(sys.argv[1])
assert h.get_size() == SIZE

# Runs of adjacent chunks (on different stripes), lone chunks, the first
# and the last, and a half-written chunk (its page is still allocated).
written = [0, 2, 3, 4, 7, 11, 12, 13, 14, 15, 16, 40, 41, 100, 191]
for ch in written:
    h.pwrite(bytes([ch + 1]) * CHUNK, ch * CHUNK)
h.pwrite(b"\xff" * (CHUNK // 2), 60 * CHUNK + 1000)
data_chunks = set(written) | {60}

def expected(off):
    """Block status type at byte off."""
    if off < STRIPED:
        return DATA if off // CHUNK in data_chunks else HOLE
    if off < ZERO_END:
        return HOLE
    return DATA                         # no extents: all data

def check_extents(exts, start, what):
    """exts: [(offset, length, type)] covering from start; every byte of
    each must have the expected type."""
    assert exts and exts[0][0] == start, f"{what}: starts at {exts[:1]}"
    pos = start
    for off, length, t in exts:
        assert off == pos and length > 0, f"{what}: gap or overlap at {off}"
        t &= DATA | HOLE
        # Check at chunk granularity (and at the ends of the extent).
        probe = list(range(off, off + length, CHUNK // 2)) + [off + length - 1]
        for p in probe:
            if expected(p) != t:
                sys.exit(f"{what}: extent ({off}, {length}, type {t}) "
                         f"but byte {p} should be type {expected(p)}")
        pos += length
    return pos

# The whole device, as nbdinfo sees it.
out = subprocess.run(["nbdinfo", "--map", "--json", sys.argv[1]],
                     check=True, capture_output=True, text=True).stdout
exts = [(e["offset"], e["length"], e["type"]) for e in json.loads(out)]
end = check_extents(exts, 0, "nbdinfo --map")
assert end == SIZE, f"nbdinfo --map covers {end} of {SIZE} bytes"
# Nothing reported as data is a hole and vice versa; the data extents are
# exactly the written chunks, merged where adjacent.
data = [(o, l) for o, l, t in exts if t & HOLE == 0 and o < STRIPED]
runs = []
for ch in sorted(data_chunks):
    if runs and runs[-1][0] + runs[-1][1] == ch * CHUNK:
        runs[-1] = (runs[-1][0], runs[-1][1] + CHUNK)
    else:
        runs.append((ch * CHUNK, CHUNK))
merged = []
for o, l in data:
    if merged and merged[-1][0] + merged[-1][1] == o:
        merged[-1] = (merged[-1][0], merged[-1][1] + l)
    else:
        merged.append((o, l))
assert merged == runs, f"data extents {merged}, expected {runs}"

# Windows starting and ending inside chunks, and across segment ends.
def block_status(count, off, flags=0):
    got = []
    def cb(metacontext, offset, entries, err):
        if metacontext == nbd.CONTEXT_BASE_ALLOCATION:
            for i in range(0, len(entries), 2):
                got.append((entries[i], entries[i + 1]))
        return 0
    h.block_status(count, off, cb, flags)
    exts, pos = [], off
    for length, t in got:
        exts.append((pos, length, t))
        pos += length
    return exts

for off, count in ((CHUNK // 2, 5 * CHUNK), (3 * CHUNK + 100, 40 * CHUNK),
                   (10 * CHUNK - 512, 1024),
                   (STRIPED - CHUNK - 4096, 3 * CHUNK),
                   (ZERO_END - 8192, 65536), (0, SIZE)):
    exts = block_status(count, off)
    check_extents(exts, off, f"block_status({count}, {off})")
    one = block_status(count, off, nbd.CMD_FLAG_REQ_ONE)
    assert len(one) == 1, f"REQ_ONE at {off} gave {len(one)} extents"
    check_extents(one, off, f"block_status REQ_ONE ({count}, {off})")
print("ok")
EOF
