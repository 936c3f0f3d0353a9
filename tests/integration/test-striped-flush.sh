#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# striped + linear, flush (R9): one client flush reaches every device of the
# table exactly once - also the device used by two segments (one device,
# one pool) and over its several connections - and nothing else sends
# flushes: the device logs show one Flush per device per client flush.
source ./functions.sh
requires nbdkit memory --version
requires nbdkit --filter=log null --version
requires $PY -c 'import nbd'

a=$(tmp_sock); b=$(tmp_sock); c=$(tmp_sock); top=$(tmp_sock)
for s in a b c; do
  sock=${!s}
  start_nbdkit -U "$sock" --filter=log memory 8M logfile="$NDM_TMP/$s.log"
done
start_dm "$top" "0 8192 striped 2 128 $(nbd_uri "$a") 0 $(nbd_uri "$b") 0
8192 2048 linear $(nbd_uri "$a") 8192
10240 2048 linear $(nbd_uri "$c") 0"

$PY - "$(nbd_uri "$top")" "$NDM_TMP" <<'EOF'
import os, sys
import nbd

top_uri, tmp = sys.argv[1:]
logs = {d: os.path.join(tmp, d + ".log") for d in "abc"}

def flushes(d):
    # Call lines look like "connection=2 Flush id=5 ..."; the return lines
    # are "...Flush id=5 return=0" and do not match.
    with open(logs[d]) as f:
        return sum(" Flush id=" in line for line in f)

h = nbd.NBD()
h.connect_uri(top_uri)
h.pwrite(b"x" * 6 * (1 << 20), 0)       # every device gets data to flush
base = {d: flushes(d) for d in "abc"}
for i in range(1, 4):
    h.flush()
    for d in "abc":
        n = flushes(d) - base[d]
        if n != i:
            sys.exit(f"after {i} client flushes device {d} got {n}")
print("ok")
EOF
