#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# capabilities (R12): what nbd-dm advertises is derived from its devices.
# Over plain memory devices: multi-conn, block size minimum 1 (unaligned
# I/O bounces), maximum 32 MiB, writable, flush, FUA, trim, zero, fast
# zero.  One device without multi-conn turns multi-conn off; one without
# zero keeps zero (emulated, and it works) but loses fast zero; the largest
# preferred block size of the devices wins; a read-only device makes the
# device read-only.
source ./functions.sh
requires nbdinfo --version
requires nbdkit memory --version
requires nbdkit --filter=multi-conn --filter=nozero \
  --filter=blocksize-policy null --version
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
# by writing zeroes), but it cannot promise fast zero.
z=$(tmp_sock); top4=$(tmp_sock)
start_nbdkit -U "$z" --filter=nozero memory 4M
caps "$(nbd_uri "$z")" 'e["can_zero"] is False'
start_dm "$top4" "0 8192 striped 2 16 $(nbd_uri "$a") 0 $(nbd_uri "$z") 0"
caps "$(nbd_uri "$top4")" 'e["can_zero"] is True' 'e["can_fast_zero"] is False'
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
print("ok")
EOF

# A read-only device makes nbd-dm read-only.
r=$(tmp_sock); top5=$(tmp_sock)
start_nbdkit -r -U "$r" memory 4M
start_dm "$top5" "0 4096 linear $(nbd_uri "$a") 0
4096 4096 linear $(nbd_uri "$r") 0"
caps "$(nbd_uri "$top5")" 'e["is_read_only"] is True'
