#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# control: table swaps under load.  While one client keeps 16 writes and
# reads in flight on one connection, the table is swapped 40 times
# between mappings that put every byte in the same place (one linear
# segment; two linear segments; a striped pair on the same device with
# each chunk where linear puts it), alternating plain and noflush
# suspends.  No request fails, every read returns what the client last
# wrote there, and in the end the device holds exactly the client's model.
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import nbd, ndmctl'

a=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_nbdkit -U "$a" memory 8M
A=$(nbd_uri "$a")
start_dm "$top" "0 4096 linear $A 0" control="$ctlsock"

$PY - "$(nbd_uri "$top")" "$ctlsock" "$A" <<'EOF'
import random, sys, threading, time
import nbd, ndmctl

uri, sock, A = sys.argv[1:]
BS, NBLK = 4096, 512            # 2 MiB in 4 KiB blocks
tables = [
    f"0 4096 linear {A} 0",
    f"0 1024 linear {A} 0;1024 3072 linear {A} 1024",
    # Chunk 0 (sectors 0-2047) on stripe 0 at A 0, chunk 1 on stripe 1
    # at A 2048: the same bytes in the same places, through striped.
    f"0 4096 striped 2 2048 {A} 0 {A} 2048",
]

done = threading.Event()
errors = []

def swapper():
    try:
        ctl = ndmctl.Conn(sock)
        for i in range(40):
            ctl.request("suspend --noflush" if i % 2 else "suspend")
            ctl.request(f"reload '{tables[(i + 1) % len(tables)]}'")
            ctl.request("resume")
            time.sleep(0.01)
    except Exception as e:
        errors.append(f"swapper: {e}")
    finally:
        done.set()

rnd = random.Random(7)
model = [0] * NBLK              # the byte each block holds
h = nbd.NBD()
h.connect_uri(uri)
t = threading.Thread(target=swapper)
t.start()

inflight = {}                   # cookie -> (kind, block, value, buffer)
busy = set()                    # blocks with a command in flight
ops = 0
while not done.is_set() or inflight:
    while not done.is_set() and len(inflight) < 16:
        b = rnd.randrange(NBLK)
        if b in busy:
            continue
        busy.add(b)
        if rnd.random() < 0.5:
            v = rnd.randrange(1, 256)
            buf = nbd.Buffer.from_bytearray(bytearray([v]) * BS)
            inflight[h.aio_pwrite(buf, b * BS)] = ("w", b, v, buf)
        else:
            buf = nbd.Buffer(BS)
            inflight[h.aio_pread(buf, b * BS)] = ("r", b, model[b], buf)
    h.poll(100)
    for c in list(inflight):
        try:
            if not h.aio_command_completed(c):
                continue
        except nbd.Error as e:
            sys.exit(f"{inflight[c][0]} of block {inflight[c][1]} failed "
                     f"during the swaps: {e}")
        kind, b, v, buf = inflight.pop(c)
        busy.discard(b)
        ops += 1
        if kind == "w":
            model[b] = v
        elif buf.to_bytearray() != bytes([v]) * BS:
            sys.exit(f"read of block {b}: not the {v:#x} last written")
t.join()
assert not errors, errors
print(f"{ops} requests across 40 swaps")

d = nbd.NBD()
d.connect_uri(A)
data = d.pread(NBLK * BS, 0)
for b in range(NBLK):
    assert data[b * BS:(b + 1) * BS] == bytes([model[b]]) * BS, \
        f"block {b} on the device is not the client's last write"
print("ok")
EOF
