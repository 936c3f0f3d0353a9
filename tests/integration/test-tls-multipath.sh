#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# multipath over two TLS paths (two nbdkit file servers on one backing
# file, both requiring TLS with alice's pre-shared key), path b's key file
# holding a wrong key at load.  Asserted:
#  - the table loads and serves on path a: data written through nbd-dm
#    reads back and is in the backing file;
#  - path b is failed (F) from the start, and status --json gives its
#    reason: the device, its TLS handshake failure, no key.  With the
#    checker idle (checker-interval=3600) the reason can only be the one
#    recorded at load;
#  - the checker reinstates a TLS path: with checker-interval=1, once b's
#    key file holds the right key (rewritten in place), b goes back to A
#    by itself; then a's server is killed and the data still reads back,
#    and new writes land, through b alone.
source ./functions.sh
source ./tls-lib.sh
source ./multipath-lib.sh
requires nbdkit file --version
requires $PY -c 'import nbd, json'

psk=$NDM_TMP/alice.psk; bkey=$NDM_TMP/b.psk
make_psk "$psk" alice
make_psk "$bkey" alice                  # not the servers' key
img=$NDM_TMP/disk.img
truncate -s 16M "$img"
a=$(tmp_sock); b=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_tls_nbdkit "$a" "$psk" alice file "$img"
a_pid=$NBDKIT_PID
start_tls_nbdkit "$b" "$psk" alice file "$img"
A=$(tls_uri "$a" alice "$psk"); B=$(tls_uri "$b" alice "$bkey")
table="0 32768 multipath 0 0 1 1 round-robin 0 2 1 $A 1 $B 1"

# path_json URI FIELD: path URI's FIELD in status --json ("" if none).
path_json ()
{
  ctl "$ctlsock" "status --json" | $PY -c '
import json, sys
doc = json.load(sys.stdin)
for g in doc["targets"][0]["detail"]["groups"]:
    for p in g["paths"]:
        if p["path"] == sys.argv[1]:
            v = p.get(sys.argv[2])
            print("" if v is None else v)
            sys.exit(0)
sys.exit("no path %s in status --json" % sys.argv[1])' "$1" "$2"
}

# io URI OFFSET BYTE: write 1 MiB of BYTE at OFFSET (MiB) and read it back.
# check URI OFFSET BYTE: read it back only.
io ()
{
  $PY - "$@" <<'PYEOF'
import sys
import nbd

uri, off, byte = sys.argv[1], int(sys.argv[2]) << 20, int(sys.argv[3], 0)
want = bytes([byte]) * (1 << 20)
h = nbd.NBD()
h.connect_uri(uri)
if sys.argv[4] == "write":
    h.pwrite(want, off)
    h.flush()
assert h.pread(len(want), off) == want, "offset %d: not what was written" % off
h.shutdown()
PYEOF
}

# ---- at load: b failed with its reason, a serves ----------------------
top=$(tmp_sock)
start_dm "$top" "$table" control="$ctlsock" checker-interval=3600
dm_pid=$NBDKIT_PID
test "$(mp_path_state "$ctlsock" "$A")" = "A 0"
test "$(mp_path_state "$ctlsock" "$B")" = "F 0"
handshake_reason "path b at load" "$B" "$(path_json "$B" reason)"
no_key_in "$(ctl "$ctlsock" "status --json")" "$psk" "$bkey"
io "$(nbd_uri "$top")" 1 0xa1 write
cmp <(dd if="$img" bs=1M skip=1 count=1 status=none) \
    <(head -c 1M /dev/zero | tr '\0' '\241')
stop_dm "$dm_pid"

# ---- the checker puts a TLS path back ----------------------------------
top=$(tmp_sock); rm -f "$ctlsock"
start_dm "$top" "$table" control="$ctlsock" checker-interval=1
mp_wait_path "$ctlsock" "$B" F
cp "$psk" "$bkey"                       # the right key, in place
mp_wait_path "$ctlsock" "$B" A 30
echo "path b reinstated: $(mp_path_state "$ctlsock" "$B")"
[ -z "$(path_json "$B" reason)" ]

kill_pid "$a_pid"
io "$(nbd_uri "$top")" 1 0xa1 check
io "$(nbd_uri "$top")" 2 0xb2 write
mp_wait_path "$ctlsock" "$A" F
test "$(mp_path_state "$ctlsock" "$B")" = "A 0"
cmp <(dd if="$img" bs=1M skip=2 count=1 status=none) \
    <(head -c 1M /dev/zero | tr '\0' '\262')
