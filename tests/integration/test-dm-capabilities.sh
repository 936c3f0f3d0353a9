#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# capabilities (R12): what nbd-dm advertises is derived from its devices.
# Over plain memory devices: multi-conn, block size minimum 1 (unaligned
# I/O bounces), maximum 32 MiB, writable, flush, FUA, trim, zero, fast
# zero.  One device without multi-conn turns multi-conn off; one without
# zero keeps zero (emulated, and it works) but loses fast zero; the largest
# preferred block size of the devices wins; a read-only device makes the
# device read-only; one without flush (no cache) keeps flush and FUA (R9).
source ./functions.sh
requires nbdinfo --version
requires nbdkit memory --version
requires nbdkit --filter=multi-conn --filter=nozero \
  --filter=blocksize-policy null --version
requires nbdkit --filter=log --filter=fua eval get_size='echo 0' --version
requires $PY -c 'import nbd'

# caps URI EXPR...: assert on nbdinfo --json.  --no-content: the handshake
# is all we ask about, and content probing runs file(1), whose output
# (or "file: not found") would land in the JSON.
caps ()
{
  local uri=$1

  shift
  nbdinfo --no-content --json "$uri" >"$NDM_TMP/info.json"
  $PY - "$NDM_TMP/info.json" "$@" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
for expr in sys.argv[2:]:
    if not eval(expr, {}, dict(e=e)):
        sys.exit(f"capability check failed: {expr}\n{json.dumps(e, indent=1)}")
EOF
}

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock)
start_nbdkit -U "$a" memory 8M
start_nbdkit -U "$b" memory 8M
start_dm "$top" "0 8192 striped 2 128 $(nbd_uri "$a") 0 $(nbd_uri "$b") 0
8192 4096 linear $(nbd_uri "$b") 8192"
caps "$(nbd_uri "$top")" \
  'e["can_multi_conn"] is True' \
  'e["block_size_minimum"] == 1' \
  'e["block_size_maximum"] == 32 * 1024 * 1024' \
  '4096 <= e["block_size_preferred"] <= e["block_size_maximum"]' \
  'e["is_read_only"] is False' \
  'e["can_flush"] and e["can_fua"] and e["can_trim"]' \
  'e["can_zero"] and e["can_fast_zero"]' \
  '"base:allocation" in e["contexts"]' \
  'e["export-size"] == 12288 * 512'

# One device without multi-conn, used by one segment only.
m=$(tmp_sock); top2=$(tmp_sock)
start_nbdkit -U "$m" --filter=multi-conn memory 4M multi-conn-mode=disable
caps "$(nbd_uri "$m")" 'e["can_multi_conn"] is False'
start_dm "$top2" "0 4096 linear $(nbd_uri "$a") 0
4096 4096 linear $(nbd_uri "$m") 0"
caps "$(nbd_uri "$top2")" 'e["can_multi_conn"] is False'

# Devices with alignment and preferred/maximum sizes of their own: the
# minimum stays 1, the preferred is the largest preferred/minimum of the
# devices, the maximum stays 32 MiB (nbd-dm splits).
p=$(tmp_sock); q=$(tmp_sock); top3=$(tmp_sock)
start_nbdkit -U "$p" --filter=blocksize-policy memory 4M \
  blocksize-minimum=4096 blocksize-preferred=65536 blocksize-maximum=131072
start_nbdkit -U "$q" --filter=blocksize-policy memory 4M \
  blocksize-minimum=8192 blocksize-preferred=8192
start_dm "$top3" "0 8192 linear $(nbd_uri "$p") 0
8192 8192 linear $(nbd_uri "$q") 0"
caps "$(nbd_uri "$top3")" \
  'e["block_size_minimum"] == 1' \
  'e["block_size_preferred"] == 65536' \
  'e["block_size_maximum"] == 32 * 1024 * 1024'

# A device without zero: nbd-dm still offers zero and it works (emulated
# by writing zeroes).  It advertises fast zero all the same (NBD allows
# answering every fast zero with ENOTSUP): a fast zero that touches the
# device without zero fails at once with ENOTSUP and writes nothing, one
# that does not is done; and the server survives a fast zero a client
# sends without looking (nbdkit 1.32 aborts on one it did not advertise).
z=$(tmp_sock); top4=$(tmp_sock)
start_nbdkit -U "$z" --filter=nozero memory 4M
caps "$(nbd_uri "$z")" 'e["can_zero"] is False'
start_dm "$top4" "0 8192 striped 2 16 $(nbd_uri "$a") 0 $(nbd_uri "$z") 0"
caps "$(nbd_uri "$top4")" 'e["can_zero"] is True' 'e["can_fast_zero"] is True'
$PY - "$(nbd_uri "$top4")" "$(nbd_uri "$z")" <<'EOF'
import sys
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
MiB = 1 << 20
h.pwrite(b"\x5a" * (4 * MiB), 0)
# Across 8 KiB chunks 256-320 of both stripes, unaligned at both ends.
off, n = 2 * MiB + 1000, 512 * 1024 + 3
h.zero(n, off)
want = b"\x5a" * off + bytes(n) + b"\x5a" * (4 * MiB - off - n)
assert h.pread(4 * MiB, 0) == want, "zero through a device without zero"
# The nozero device (stripe 1) holds zeroes for odd chunks 257-319, rows
# 128-159, and its row 127 (chunk 255) is untouched.
d = nbd.NBD()
d.connect_uri(sys.argv[2])
K8 = 8192
assert d.pread(32 * K8, 128 * K8) == bytes(32 * K8), \
    "the nozero device does not hold zeroes"
assert d.pread(K8, 127 * K8) == b"\x5a" * K8, "zero spilled over"
# Fast zero: chunk 0 is stripe 0's (the memory device), chunks 0-1 touch
# the nozero device too.
h.pwrite(b"\x77" * (2 * K8), 0)
h.zero(K8, 0, nbd.CMD_FLAG_FAST_ZERO)
assert h.pread(K8, 0) == bytes(K8)
h.pwrite(b"\x77" * (2 * K8), 0)
try:
    h.zero(2 * K8, 0, nbd.CMD_FLAG_FAST_ZERO)
    sys.exit("a fast zero over the nozero device succeeded")
except nbd.Error as e:
    assert e.errnum == 95, e                   # ENOTSUP
assert h.pread(2 * K8, 0) == b"\x77" * (2 * K8), "a refused fast zero wrote"
print("ok")
EOF

# A client that sends a fast zero without looking at the flags (libnbd
# out of strict mode) gets an answer, and the server lives on (nbdkit 1.32
# aborts on a fast zero the export did not advertise: nbd-dm always does).
$PY - "$(nbd_uri "$top4")" <<'EOF'
import sys
import nbd
h = nbd.NBD()
h.set_strict_mode(0)
h.connect_uri(sys.argv[1])
try:
    h.zero(2 * 8192, 0, nbd.CMD_FLAG_FAST_ZERO)
    sys.exit("a fast zero over the nozero device succeeded")
except nbd.Error as e:
    assert e.errnum == 95, e
h2 = nbd.NBD()
h2.connect_uri(sys.argv[1])
assert len(h2.pread(4096, 0)) == 4096
print("the server lives")
EOF

# A read-only device makes nbd-dm read-only.
r=$(tmp_sock); top5=$(tmp_sock)
start_nbdkit -r -U "$r" memory 4M
start_dm "$top5" "0 4096 linear $(nbd_uri "$a") 0
4096 4096 linear $(nbd_uri "$r") 0"
caps "$(nbd_uri "$top5")" 'e["is_read_only"] is True'

# A device without flush has no volatile cache: it takes flush and FUA
# away from nobody (R9).  f has native FUA, u flush without FUA (fua
# filter), n neither (eval plugin with no flush method, a file behind it).
# A flush reaches f and u once each, never n; a FUA write over the three
# reaches f with FUA, u as Write then Flush, n as a plain write.
f=$(tmp_sock); u=$(tmp_sock); n=$(tmp_sock); top6=$(tmp_sock)
start_nbdkit -U "$f" --filter=log memory 1M logfile="$NDM_TMP/f.log"
start_nbdkit -U "$u" --filter=log --filter=fua memory 1M \
  logfile="$NDM_TMP/u.log"
truncate -s 1M "$NDM_TMP/n.img"
: >"$NDM_TMP/n.log"
start_nbdkit -U "$n" eval get_size='echo 1048576' \
  pread="dd if=$NDM_TMP/n.img iflag=skip_bytes,count_bytes skip=\$4 \
         count=\$3 status=none" \
  pwrite="echo \"pwrite \$3 \$4 flags=\$5\" >>$NDM_TMP/n.log
          dd of=$NDM_TMP/n.img oflag=seek_bytes seek=\$4 conv=notrunc \
             status=none"
caps "$(nbd_uri "$n")" 'not e["can_flush"] and not e["can_fua"]' \
  'not e["is_read_only"]'
start_dm "$top6" "0 2048 linear $(nbd_uri "$f") 0
2048 2048 linear $(nbd_uri "$u") 0
4096 2048 linear $(nbd_uri "$n") 0"
caps "$(nbd_uri "$top6")" 'e["can_flush"] is True' 'e["can_fua"] is True'
$PY - "$(nbd_uri "$top6")" "$NDM_TMP" <<'EOF'
import os, re, sys
import nbd

uri, tmp = sys.argv[1:]
MiB = 1 << 20

def lines(name):
    with open(os.path.join(tmp, name + ".log")) as f:
        return [l.rstrip() for l in f if l.strip()]

def calls(name, action):
    # log filter: "... connection=N Write id=M offset=... count=... fua=F"
    return [l for l in lines(name) if re.search(r" %s id=\d+ " % action, l)]

h = nbd.NBD()
h.connect_uri(uri)
h.flush()
assert len(calls("f", "Flush")) == 1, lines("f")
assert len(calls("u", "Flush")) == 1, lines("u")

# 4 KiB of f, all of u, 4 KiB of n.
data = os.urandom(MiB + 8192)
h.pwrite(data, MiB - 4096, nbd.CMD_FLAG_FUA)
w = calls("f", "Write")
assert len(w) == 1 and "count=0x1000 fua=1" in w[0], lines("f")
assert len(calls("f", "Flush")) == 1, "f has FUA: no Flush: %s" % lines("f")
w = calls("u", "Write")
assert len(w) == 1 and "count=0x100000 fua=0" in w[0], lines("u")
assert len(calls("u", "Flush")) == 2, "u: Write then Flush: %s" % lines("u")
assert lines("n") == ["pwrite 4096 0 flags="], lines("n")
assert h.pread(MiB + 8192, MiB - 4096) == data, "FUA write did not land"
print("ok")
EOF
