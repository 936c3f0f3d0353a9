#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# control: live table swap under one open NBD connection.  The client
# writes and reads through table A (linear to device A); with that
# connection still open, suspend, reload to table B (linear to device B,
# pre-filled with its own pattern) and resume; the same connection then
# reads B's data and writes land on B, not A.  info shows each state on
# the way, and the event number moves by one.  A reload of another size
# is refused while the client is connected (the error says
# --allow-resize), leaves no inactive table and the device keeps serving.
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import nbd, ndmctl'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_nbdkit -U "$a" memory 8M
start_nbdkit -U "$b" memory 8M
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
start_dm "$top" "0 4096 linear $A 1024" control="$ctlsock"

# B's data, written to the device directly.
nbdsh -u "$B" -c 'h.pwrite(b"\xbb" * (2 << 20), 0)'

$PY - "$(nbd_uri "$top")" "$ctlsock" "$A" "$B" <<'EOF'
import sys, time
import nbd, ndmctl

uri, sock, A, B = sys.argv[1:]
MiB = 1 << 20
ctl = ndmctl.Conn(sock)

def info():
    return {k.strip(): v.strip() for k, v in
            (l.split(":", 1) for l in ctl.request("info"))}

h = nbd.NBD()
h.connect_uri(uri)
assert h.get_size() == 2 * MiB

# Table A: through dm, onto A at its offset 1024 sectors.
h.pwrite(b"\xaa" * MiB, 0)
assert h.pread(MiB, 0) == b"\xaa" * MiB
i = info()
assert i["State"] == "ACTIVE" and i["Tables present"] == "LIVE", i
assert i["Open count"] == "1", f"one client connected, info says {i}"
event0 = int(i["Event number"])

ctl.request("suspend")
assert info()["State"] == "SUSPENDED"
ctl.request(f"reload '0 4096 linear {B} 0'")
i = info()
assert i["Tables present"] == "LIVE & INACTIVE", i
# Still the old table until resume.
assert ctl.request("table") == [f"0 4096 linear {A} 1024"]
ctl.request("resume")
i = info()
assert i["State"] == "ACTIVE" and i["Tables present"] == "LIVE", i
assert int(i["Event number"]) == event0 + 1, f"event number: {i}"
assert ctl.request("table") == [f"0 4096 linear {B} 0"]

# The same connection, no reconnect: B's data now.
got = h.pread(2 * MiB, 0)
assert got == b"\xbb" * (2 * MiB), \
    "after resume the open connection does not read table B's device"
h.pwrite(b"\xcc" * 4096, 8192)
h.flush()

# Another size: refused while a client is connected, nothing loaded.
try:
    ctl.request(f"reload '0 8192 linear {B} 0'")
    sys.exit("a reload of another size was accepted with a client connected")
except ndmctl.Error as e:
    assert "--allow-resize" in str(e), f"refusal does not say how: {e}"
i = info()
assert i["State"] == "ACTIVE" and i["Tables present"] == "LIVE", i
assert ctl.request("table") == [f"0 4096 linear {B} 0"]
assert h.get_size() == 2 * MiB
assert h.pread(4096, 8192) == b"\xcc" * 4096
assert h.pread(4096, 0) == b"\xbb" * 4096
# --allow-resize loads it (resume would make it live); clear drops it.
ctl.request(f"reload --allow-resize '0 8192 linear {B} 0'")
assert info()["Tables present"] == "LIVE & INACTIVE"
ctl.request("clear")
assert info()["Tables present"] == "LIVE"
assert h.pread(4096, 8192) == b"\xcc" * 4096
h.shutdown()
del h                           # closes the socket
for _ in range(100):            # nbdkit closes the connection after us
    if info()["Open count"] == "0":
        break
    time.sleep(0.1)
assert info()["Open count"] == "0", f"client gone, {info()}"

# Where the bytes are: the write after the swap is on B, not on A.
d = nbd.NBD(); d.connect_uri(B)
assert d.pread(4096, 8192) == b"\xcc" * 4096, "write after resume not on B"
assert d.pread(4096, 0) == b"\xbb" * 4096
e = nbd.NBD(); e.connect_uri(A)
assert e.pread(MiB, 512 * 1024) == b"\xaa" * MiB, "table A's data lost on A"
assert e.pread(4096, 512 * 1024 + 8192) == b"\xaa" * 4096, \
    "a write after resume reached device A"
print("ok")
EOF
