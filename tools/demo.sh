#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The demo: install and build if needed, then serve an nbd-dm device
# striped over two in-memory nbdkit devices, plus a linear and a dust
# tail, on a Unix socket with a control socket, until Ctrl-C; print
# commands to try, each of which runs as printed (tests/install/test-demo
# runs them all, in order).
#
#   tools/demo.sh [BUILD_DIR]
#
# Without BUILD_DIR: tools/setup.sh installs what is missing and builds
# build/.  With it: that build is used as it is (nothing installed or
# built).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -gt 0 ]; then
  build=$(cd "$1" && pwd)
else
  "$top/tools/setup.sh" build
  build=$top/build
fi
plugin=$build/plugin/nbdkit-dm-plugin.so
dmsetup=$build/tools/nbd-dmsetup

dir=$(mktemp -d /tmp/nbd-dm-demo.XXXXXX)
pids=()
cleanup () {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# Wait for a server's socket to answer, or give up if it died.
wait_for () {
  local sock=$1 pid=$2 i
  for i in $(seq 100); do
    [ -S "$sock" ] && nbdinfo --size "nbd+unix:///?socket=$sock" \
      >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { echo "demo: server for $sock died" >&2; exit 1; }
    sleep 0.1
  done
  echo "demo: $sock did not come up" >&2
  exit 1
}

for d in dev0 dev1; do
  nbdkit -f -U "$dir/$d.sock" memory 256M &
  pids+=($!)
  wait_for "$dir/$d.sock" $!
done

# 256 MiB striped over both devices in 64 KiB chunks (128 MiB of each),
# then 64 MiB linear on dev0 and 64 MiB of dust (4 KiB blocks) on dev1,
# each after its stripe area.
cat > "$dir/demo.table" <<TABLE
# <start> <length> <target> <args...>      (sectors of 512 bytes)
0      524288 striped 2 128 nbd+unix:///?socket=$dir/dev0.sock 0 nbd+unix:///?socket=$dir/dev1.sock 0
524288 131072 linear nbd+unix:///?socket=$dir/dev0.sock 262144
655360 131072 dust nbd+unix:///?socket=$dir/dev1.sock 262144 4096
TABLE

nbdkit -f -U "$dir/dm.sock" "$plugin" table="$dir/demo.table" \
  control="$dir/dm.ctl" &
pids+=($!)
wait_for "$dir/dm.sock" $!

uri="nbd+unix:///?socket=$dir/dm.sock"
ctl="$dmsetup -c $dir/dm.ctl"
cat <<MSG

nbd-dm demo device: 384 MiB, striped over two nbdkit memory devices plus
a linear and a dust tail.  Table ($dir/demo.table):

$(sed 's/^/    /' "$dir/demo.table")

URI: $uri
Control socket: $dir/dm.ctl

Try, in another terminal:

    nbdinfo '$uri'
    nbdinfo --map '$uri'
    nbdcopy -- [ nbdkit pattern 384M ] '$uri'
    nbdcopy '$uri' - | md5sum
    qemu-img info '$uri'
    qemu-img create -f qcow2 $dir/disk.qcow2 384M
    qemu-img convert -n -f qcow2 -O raw $dir/disk.qcow2 '$uri'
    qemu-img map --output=json -f raw '$uri'
    $ctl info
    $ctl table
    $ctl status
    $ctl deps
    $ctl stats
    $ctl stats --interval 1 --count 3
    $ctl reload $dir/demo.table
    $ctl resume
    $ctl --json status
    $ctl message 655360 addbadblock 32769
    $ctl message 655360 listbadblocks

The dust target's block 32769 is bad but reads pass until
'$ctl message 655360 enable'
(then reading byte 335548416 fails with EIO; 'disable' ends it).

Ctrl-C stops the demo and its servers.
MSG
wait "${pids[-1]}"
