#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# striped + linear, sparse copies (R11): a sparse raw image with a few data
# islands, copied into nbd-dm with nbdcopy (one stack) and with
# 'qemu-img convert -n' (another), stays sparse: the map of nbd-dm
# (nbdinfo --map and qemu-img map) shows data exactly where the image has
# data and holes elsewhere, and the contents match the image.
source ./functions.sh
requires nbdcopy --version
requires nbdinfo --version
requires qemu-img --version
requires nbdkit memory --version
requires $PY -c 'import nbd'

src=$NDM_TMP/src.img
truncate -s 32M "$src"
# Islands (offset KiB, length KiB), 32 KiB aligned like the memory
# plugin's pages: inside one chunk, across chunks and stripes, across the
# striped/linear boundary at 16 MiB, at the very end.
islands="0:64 192:128 5152:32 9000:8 16320:128 20480:1024 32704:64"
for i in $islands; do
  dd if=/dev/urandom of="$src" bs=1K seek="${i%:*}" count="${i#*:}" \
     conv=notrunc status=none
done

stack ()                        # stack NAME: a dm device on 3 fresh devices
{
  local a b c top
  a=$(tmp_sock); b=$(tmp_sock); c=$(tmp_sock); top=$(tmp_sock)
  start_nbdkit -U "$a" memory 16M
  start_nbdkit -U "$b" memory 16M
  start_nbdkit -U "$c" memory 16M
  start_dm "$top" "0 32768 striped 2 128 $(nbd_uri "$a") 0 $(nbd_uri "$b") 0
32768 32768 linear $(nbd_uri "$c") 0"
  eval "$1=\$(nbd_uri \"\$top\")"
}

# What the copy's map must look like: merged data ranges in bytes.
check_map ()                    # check_map URI
{
  local uri=$1

  nbdinfo --map --json "$uri" >"$NDM_TMP/map.json"
  qemu-img map -f raw --output=json "$uri" >"$NDM_TMP/qmap.json"
  $PY - "$NDM_TMP/map.json" "$NDM_TMP/qmap.json" "$islands" <<'EOF'
import json, sys

def merge(ranges):
    """(offset, length) pairs -> sorted, with touching ones joined."""
    out = []
    for o, l in sorted(ranges):
        if out and out[-1][1] >= o:
            out[-1] = (out[-1][0], max(out[-1][1], o + l))
        else:
            out.append((o, o + l))
    return [(s, e - s) for s, e in out]

want = merge((int(o) * 1024, int(l) * 1024)
             for o, l in (i.split(":") for i in sys.argv[3].split()))
# 9000:8 sits in the 32 KiB page at 8992 KiB: the device allocates it whole.
PAGE = 32768
want = merge((o // PAGE * PAGE, -(-(o + l) // PAGE) * PAGE - o // PAGE * PAGE)
             for o, l in want)

nbdinfo = json.load(open(sys.argv[1]))
got = merge((e["offset"], e["length"]) for e in nbdinfo if e["type"] & 1 == 0)
if got != want:
    sys.exit(f"nbdinfo --map: data at {got}, expected {want}")
bad = [e for e in nbdinfo if e["type"] & 1 and e["type"] != 3]
assert not bad, f"holes that do not read as zero: {bad}"

qemu = json.load(open(sys.argv[2]))
got = merge((e["start"], e["length"]) for e in qemu if e["data"])
if got != want:
    sys.exit(f"qemu-img map: data at {got}, expected {want}")
print("map ok")
EOF
  qemu-img compare -f raw -F raw "$src" "$uri"
}

stack one
nbdcopy "$src" "$one"
check_map "$one"

stack two
qemu-img convert -n -f raw -O raw "$src" "$two"
check_map "$two"
