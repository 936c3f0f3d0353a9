#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The walk-through of docs/examples/multipath-mirror.md, runnable: one
# nbd-dm device whose first 32 MiB reach one disk over two paths
# (multipath) and whose next 32 MiB are mirrored on two legs (mirror).
# A path is failed and reinstated, a leg's server is killed under a
# write and started again, and the leg comes back and is resynced, while
# the data stays readable and correct.
#
#   docs/examples/multipath-mirror.sh [DIR]     (default: a new temp dir)
#
# Needs nbd-dm installed ("nbdkit dm", nbd-dmsetup on PATH: cmake
# --install or the package), nbdkit and nbdcopy.  Every server is
# started here, on Unix sockets in DIR, and stopped at the end.
set -euo pipefail

own=false
if [ $# -gt 0 ]; then
  d=$1
  mkdir -p "$d"
else
  d=$(mktemp -d /tmp/nbd-dm-walk.XXXXXX)
  own=true
fi
# Stop every server; remove a directory of our own (it holds 128 MiB).
cleanup () {
  local f
  for f in "$d"/*.pid; do
    [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  if $own; then rm -rf "$d"; fi
}
trap cleanup EXIT
# step TEXT: say what comes next.
step () { printf '\n== %s\n' "$*"; }
# until_status PATTERN: wait up to 30 s for the status to match.
until_status () {
  local i
  for i in $(seq 30); do
    nbd-dmsetup -c "$d/vol.ctl" status | grep -q -- "$1" && return 0
    sleep 1
  done
  echo "status never matched '$1':" >&2
  nbd-dmsetup -c "$d/vol.ctl" status >&2
  return 1
}

step "The servers: two paths to one disk, and two mirror legs"
truncate -s 32M "$d/disk.img" "$d/a.img" "$d/b.img"
nbdkit -U "$d/p1.sock" -P "$d/p1.pid" file "$d/disk.img"
nbdkit -U "$d/p2.sock" -P "$d/p2.pid" file "$d/disk.img"
nbdkit -U "$d/a.sock" -P "$d/a.pid" file "$d/a.img"
nbdkit -U "$d/b.sock" -P "$d/b.pid" file "$d/b.img"

step "The table and the nbd-dm device"
cat > "$d/vol.table" <<EOF
# 32 MiB over two paths, round robin, I/O held while no path is left
0     65536 multipath 1 queue_if_no_path 0 1 1 round-robin 0 2 1 nbd+unix:///?socket=$d/p1.sock 1 nbd+unix:///?socket=$d/p2.sock 1
# 32 MiB mirrored on two legs, 512 KiB regions, legs out on error
65536 65536 mirror core 2 1024 nosync 2 nbd+unix:///?socket=$d/a.sock 0 nbd+unix:///?socket=$d/b.sock 0 1 handle_errors
EOF
nbdkit -U "$d/vol.sock" -P "$d/vol.pid" dm table="$d/vol.table" control="$d/vol.ctl" checker-interval=1
nbd-dmsetup -c "$d/vol.ctl" table
nbd-dmsetup -c "$d/vol.ctl" status

step "Write 64 MiB through it"
head -c 64M /dev/urandom > "$d/data1.raw"
nbdcopy "$d/data1.raw" "nbd+unix:///?socket=$d/vol.sock"

step "Fail path 1: I/O goes on over path 2"
nbd-dmsetup -c "$d/vol.ctl" message 0 fail_path "nbd+unix:///?socket=$d/p1.sock"
nbd-dmsetup -c "$d/vol.ctl" status
nbdcopy "nbd+unix:///?socket=$d/vol.sock" - | cmp - "$d/data1.raw"

step "Reinstate path 1"
nbd-dmsetup -c "$d/vol.ctl" message 0 reinstate_path "nbd+unix:///?socket=$d/p1.sock"
nbd-dmsetup -c "$d/vol.ctl" status

step "Kill leg a's server, then write: the mirror goes on with leg b"
kill -KILL "$(cat "$d/a.pid")"
head -c 64M /dev/urandom > "$d/data2.raw"
nbdcopy "$d/data2.raw" "nbd+unix:///?socket=$d/vol.sock"
nbd-dmsetup -c "$d/vol.ctl" status
nbdcopy "nbd+unix:///?socket=$d/vol.sock" - | cmp - "$d/data2.raw"

step "Start leg a's server again: the checker reinstates it and the resync copies what it missed"
rm -f "$d/a.sock"
nbdkit -U "$d/a.sock" -P "$d/a.pid" file "$d/a.img"
until_status " 64/64 1 AA "
nbd-dmsetup -c "$d/vol.ctl" status
cmp "$d/a.img" "$d/b.img"

step "Verify the legs against each other, and the I/O statistics"
nbd-dmsetup -c "$d/vol.ctl" message 65536 verify
until_status "verify 64/64 0"
nbd-dmsetup -c "$d/vol.ctl" stats
