#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# control: 'suspend --noflush' holds I/O instead of failing it.  Writes
# (and a read) a client issues while the device is suspended do not
# complete; reload to table B and resume: they complete without error,
# the written data is on device B, and device A never saw it.
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import nbd, ndmctl'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_nbdkit -U "$a" memory 8M
start_nbdkit -U "$b" memory 8M
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
start_dm "$top" "0 8192 linear $A 0" control="$ctlsock"
nbdsh -u "$B" -c 'h.pwrite(b"\xb3" * 4096, 3 << 20)'

$PY - "$(nbd_uri "$top")" "$ctlsock" "$A" "$B" <<'EOF'
import sys, time
import nbd, ndmctl

uri, sock, A, B = sys.argv[1:]
KiB = 1024
ctl = ndmctl.Conn(sock)

h = nbd.NBD()
h.connect_uri(uri)
h.pwrite(b"\x11" * (256 * KiB), 0)       # through table A, before

ctl.request("suspend --noflush")
state = [l for l in ctl.request("info") if l.startswith("State:")]
assert state == ["State:             SUSPENDED"], state

# Four writes at distinct offsets, distinct bytes, and a read of what
# table B holds at 1 MiB: all queued while suspended.
writes, bufs = [], []           # libnbd needs the buffers until done
for i in range(4):
    bufs.append(nbd.Buffer.from_bytearray(bytearray([0x41 + i]) * 65536))
    writes.append(h.aio_pwrite(bufs[i], 1024 * KiB + i * 64 * KiB))
rbuf = nbd.Buffer(4096)
read = h.aio_pread(rbuf, 3 * 1024 * KiB)
cookies = writes + [read]

# Must not complete while suspended (a generous look, not a timing bound).
deadline = time.monotonic() + 0.8
while time.monotonic() < deadline:
    h.poll(100)
done = [c for c in cookies if h.aio_command_completed(c)]
assert not done, f"{len(done)} requests completed while suspended (noflush)"
assert h.aio_in_flight() == 5

ctl.request(f"reload '0 8192 linear {B} 0'")
ctl.request("resume")

deadline = time.monotonic() + 30
pending = set(cookies)
while pending:
    assert time.monotonic() < deadline, "held requests never completed"
    h.poll(100)
    for c in list(pending):
        # Raises nbd.Error if the command failed.
        if h.aio_command_completed(c):
            pending.discard(c)
assert rbuf.to_bytearray() == b"\xb3" * 4096, \
    "the held read did not read through table B"
h.shutdown()

d = nbd.NBD(); d.connect_uri(B)
e = nbd.NBD(); e.connect_uri(A)
for i in range(4):
    off = 1024 * KiB + i * 64 * KiB
    assert d.pread(64 * KiB, off) == bytes([0x41 + i]) * (64 * KiB), \
        f"held write {i} is not on device B"
    assert e.pread(64 * KiB, off) == b"\0" * (64 * KiB), \
        f"held write {i} reached device A (the old table)"
assert e.pread(256 * KiB, 0) == b"\x11" * (256 * KiB)
print("ok")
EOF
