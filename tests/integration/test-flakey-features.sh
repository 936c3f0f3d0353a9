#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# flakey, deterministic: 'up 0 down 3600' is down for the whole test,
# 'up 3600 down 0' never.  While down, each feature set fails exactly
# what it names with EIO and passes the rest: error_reads (reads fail,
# writes land), error_writes (writes, zeroes, trims, flushes fail, reads
# pass), drop_writes (writes acknowledged, the device unchanged: checked
# on the device itself), no features (everything fails, as in dm).
# While up, everything passes and lands.
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import nbd'

a=$(tmp_sock); down=$(tmp_sock); up=$(tmp_sock)
start_nbdkit -U "$a" memory 16M
A=$(nbd_uri "$a")
# Each segment of 1 MiB maps the same 1 MiB of A (offset = start).
start_dm "$down" "0 2048 flakey $A 0 0 3600 1 error_reads
2048 2048 flakey $A 2048 0 3600 1 error_writes
4096 2048 flakey $A 4096 0 3600 1 drop_writes
6144 2048 flakey $A 6144 0 3600"
start_dm "$up" "0 2048 flakey $A 8192 3600 0
2048 2048 flakey $A 10240 3600 0 2 error_reads error_writes
4096 2048 flakey $A 12288 3600 0 1 drop_writes"

# Known bytes on every region, straight on the device.
nbdsh -u "$A" \
  -c 'for i in range(7): h.pwrite(bytes([0x10 + i]) * (1 << 20), i << 20)'

$PY - "$A" "$(nbd_uri "$down")" "$(nbd_uri "$up")" <<'EOF'
import errno, sys
import nbd

A, down_uri, up_uri = sys.argv[1:]
MiB = 1 << 20
dev = nbd.NBD(); dev.connect_uri(A)

def eio(what, fn, *args):
    try:
        fn(*args)
    except nbd.Error as e:
        if e.errnum != errno.EIO:
            sys.exit(f"{what}: expected EIO, got {e.errno} ({e})")
        return
    sys.exit(f"{what}: succeeded, expected EIO")

def on_dev(off, n):
    return dev.pread(n, off)

# Segment i of the down server maps region i of A (1 MiB each).
def segment(h, name, i, reads_fail, writes_fail, writes_land):
    base = dev_base = i * MiB
    orig = bytes([0x10 + i])
    # Read.
    if reads_fail:
        eio(f"{name}: read", h.pread, 4096, base + 8192)
        eio(f"{name}: unaligned read", h.pread, 100, base + 3)
    else:
        assert h.pread(MiB, base) == orig * MiB, f"{name}: read data"
    # Write, zero, trim: writes as dm counts them.
    w = bytes([0xe0 + i]) * 4096
    if writes_fail:
        eio(f"{name}: write", h.pwrite, w, base + 4096)
        eio(f"{name}: zero", h.zero, 4096, base + 65536)
        eio(f"{name}: trim", h.trim, 4096, base + 131072)
        assert on_dev(dev_base + 4096, 4096) == orig * 4096, \
            f"{name}: a failed write changed the device"
        return
    h.pwrite(w, base + 4096)
    h.zero(4096, base + 65536)
    if writes_land:
        assert on_dev(dev_base + 4096, 4096) == w, f"{name}: write missing"
        assert on_dev(dev_base + 65536, 4096) == b"\0" * 4096, \
            f"{name}: zero missing"
        if not reads_fail:
            assert h.pread(4096, base + 4096) == w
    else:
        assert on_dev(dev_base + 4096, 4096) == orig * 4096, \
            f"{name}: drop_writes wrote to the device"
        assert on_dev(dev_base + 65536, 4096) == orig * 4096, \
            f"{name}: drop_writes zeroed the device"
        assert h.pread(4096, base + 4096) == orig * 4096

# Down for the whole test.
hd = nbd.NBD(); hd.connect_uri(down_uri)
segment(hd, "down error_reads", 0, True, False, True)
segment(hd, "down error_writes", 1, False, True, False)
segment(hd, "down drop_writes", 2, False, False, False)
segment(hd, "down no features", 3, True, True, False)
# A flush reaches every segment and is a write to flakey: the
# error_writes and no-feature segments fail it.
eio("down: flush", hd.flush)
# A read across error_writes and drop_writes (both readable) passes.
assert hd.pread(2 * MiB, MiB) == b"\x11" * MiB + b"\x12" * MiB
# A read straddling into error_reads fails as a whole.
eio("down: straddling read", hd.pread, 8192, MiB - 4096)

# Never down: every feature set passes, writes land.  Segment i of the
# up server maps region 4 + i of A.
hu = nbd.NBD(); hu.connect_uri(up_uri)
for i, name in enumerate(["up no features", "up error_reads error_writes",
                          "up drop_writes"]):
    base = i * MiB
    dev_base = (4 + i) * MiB
    orig = bytes([0x14 + i])
    assert hu.pread(MiB, base) == orig * MiB, f"{name}: read"
    w = bytes([0xf0 + i]) * 8192
    hu.pwrite(w, base + 8192)
    assert hu.pread(8192, base + 8192) == w, f"{name}: read back"
    assert on_dev(dev_base + 8192, 8192) == w, f"{name}: write missing"
    hu.zero(4096, base)
    assert on_dev(dev_base, 4096) == b"\0" * 4096, f"{name}: zero missing"
hu.flush()
print("ok")
EOF
