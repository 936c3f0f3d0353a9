#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# linear, FUA (R9): a FUA write over two segments reaches the device
# without FUA (fua filter, default mode: FUA not advertised) as a plain
# Write followed by a Flush once the write is done, and the device with
# native FUA as a Write with fua=1 and no Flush.  A plain write carries no
# FUA.
source ./functions.sh
requires nbdkit memory --version
requires nbdkit --filter=log --filter=fua null --version
requires $PY -c 'import nbd'

x=$(tmp_sock); y=$(tmp_sock); top=$(tmp_sock)
# Log outermost: it records what nbd-dm sends.
start_nbdkit -U "$x" --filter=log --filter=fua memory 4M \
  logfile="$NDM_TMP/x.log"
start_nbdkit -U "$y" --filter=log memory 4M logfile="$NDM_TMP/y.log"
start_dm "$top" "0 2048 linear $(nbd_uri "$x") 0
2048 2048 linear $(nbd_uri "$y") 0"

$PY - "$(nbd_uri "$top")" "$NDM_TMP" <<'EOF'
import os, re, sys
import nbd

top_uri, tmp = sys.argv[1:]
MiB = 1 << 20

class Log:
    """The lines a device's log filter wrote since the last mark."""
    def __init__(self, name):
        self.path = os.path.join(tmp, name + ".log")
        self.mark()
    def mark(self):
        self.pos = os.path.getsize(self.path)
    def new(self):
        with open(self.path) as f:
            f.seek(self.pos)
            return [l.split(" ", 2)[2].rstrip() for l in f if l.strip()]

def calls(lines, action):
    # "connection=N Write id=M offset=... count=... fua=F ..."
    return [l for l in lines if re.search(r" %s id=\d+ " % action, l)]

def returned(lines, call):
    conn, cid = re.search(r"(connection=\d+) \w+ id=(\d+)", call).groups()
    return next(i for i, l in enumerate(lines)
                if l.startswith(conn + " ...") and f" id={cid} return=0" in l)

x, y = Log("x"), Log("y")
h = nbd.NBD()
h.connect_uri(top_uri)
assert h.can_fua(), "nbd-dm must offer FUA: every device has FUA or flush"

# 4 KiB on each side of the boundary between the segments.
h.pwrite(b"f" * 8192, MiB - 4096, nbd.CMD_FLAG_FUA)
xl, yl = x.new(), y.new()

w = calls(xl, "Write")
assert len(w) == 1 and "offset=0xff000 count=0x1000 fua=0" in w[0], xl
f = calls(xl, "Flush")
assert len(f) == 1, f"device without FUA: expected 1 Flush, got {xl}"
assert xl.index(f[0]) > returned(xl, w[0]), \
    f"device without FUA: the Flush must follow the completed Write: {xl}"

w = calls(yl, "Write")
assert len(w) == 1 and "offset=0x0 count=0x1000 fua=1" in w[0], yl
assert not calls(yl, "Flush"), f"device with FUA got a Flush: {yl}"

# Without the flag, no FUA on the wire.
x.mark(); y.mark()
h.pwrite(b"p" * 8192, MiB - 4096)
w = calls(y.new(), "Write")
assert len(w) == 1 and "fua=0" in w[0], w
print("ok")
EOF
