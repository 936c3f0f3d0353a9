#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# delay: with reads at 0 ms and writes at 300 ms ('delay A 0 0 A 0 300',
# flushes take the write class), a write and a flush through nbd-dm take
# at least 300 ms -- a generous lower bound, the only timing asserted.
# The read times, and 8 parallel writes, are measured and printed, not
# bounded.  While a write waits, status counts it ('0 1 0'), and after
# it nothing ('0 0 0').  The data lands.  suspend returns only once the
# write waiting out its delay is on the device.
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import nbd, ndmctl'

a=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_nbdkit -U "$a" memory 8M
A=$(nbd_uri "$a")
start_dm "$top" "0 8192 delay $A 0 0 $A 0 300" control="$ctlsock"

$PY - "$(nbd_uri "$top")" "$ctlsock" "$A" <<'EOF'
import sys, time
import nbd, ndmctl

uri, sock, A = sys.argv[1:]
ctl = ndmctl.Conn(sock)
h = nbd.NBD()
h.connect_uri(uri)

def timed(fn, *args):
    t = time.monotonic()
    fn(*args)
    return time.monotonic() - t

h.pread(4096, 0)                # warm up the device connections
reads = [timed(h.pread, 4096, i * 4096) for i in range(5)]
w = timed(h.pwrite, b"\x33" * 4096, 65536)
f = timed(h.flush)
print("read 4 KiB: " + ", ".join(f"{r * 1000:.1f}" for r in reads) + " ms")
print(f"write 4 KiB: {w * 1000:.1f} ms, flush: {f * 1000:.1f} ms "
      "(write delay 300 ms)")
assert w >= 0.300, f"write took {w * 1000:.1f} ms, under its 300 ms delay"
assert f >= 0.300, f"flush took {f * 1000:.1f} ms, under its 300 ms delay"

# Eight writes at once: printed only (they wait side by side in nbd-dm).
bufs = [nbd.Buffer.from_bytearray(bytearray([0x40 + i]) * 4096)
        for i in range(8)]
t = time.monotonic()
pending = {h.aio_pwrite(bufs[i], i * 4096) for i in range(8)}
while pending:                  # a cookie reads "completed" only once
    pending = {c for c in pending if not h.aio_command_completed(c)}
    if pending:
        h.poll(-1)
par = time.monotonic() - t
print(f"8 parallel 4 KiB writes: {par * 1000:.1f} ms")
assert par >= 0.300, f"8 writes in {par * 1000:.1f} ms, under 300 ms"

# status counts the write while it waits.  Poll until it shows (the
# write may not be mapped yet) or the write is done (then it never did).
buf = nbd.Buffer.from_bytearray(bytearray(b"\x55") * 4096)
c = h.aio_pwrite(buf, 131072)
seen = []
while True:
    s = ctl.request("status")[0]
    seen.append(s)
    if s == "0 8192 delay 0 1 0":
        break
    h.poll(0)
    assert not h.aio_command_completed(c), \
        f"write done and status never counted it: {sorted(set(seen))}"
    time.sleep(0.005)
while not h.aio_command_completed(c):
    h.poll(-1)
assert ctl.request("status") == ["0 8192 delay 0 0 0"]

d = nbd.NBD(); d.connect_uri(A)
assert d.pread(4096, 65536) == b"\x33" * 4096
assert d.pread(4096, 131072) == b"\x55" * 4096

# suspend drains: a write waiting out its delay is on the device when
# suspend returns (it is let go early or finishes its wait first).
buf = nbd.Buffer.from_bytearray(bytearray(b"\x66") * 4096)
c = h.aio_pwrite(buf, 196608)
while ctl.request("status")[0] != "0 8192 delay 0 1 0":
    h.poll(0)
    assert not h.aio_command_completed(c), "write done before it was seen"
ctl.request("suspend")
assert d.pread(4096, 196608) == b"\x66" * 4096, \
    "suspend returned with a write still in flight"
ctl.request("resume")
while not h.aio_command_completed(c):
    h.poll(-1)
for i in range(8):
    assert d.pread(4096, i * 4096) == bytes([0x40 + i]) * 4096
print("ok")
EOF
