#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The demo: install and build if needed, then serve an nbd-dm device
# striped over two in-memory nbdkit devices, plus a linear tail, on a Unix
# socket until Ctrl-C.
#
#   tools/demo.sh
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
"$top/tools/setup.sh" build
plugin=$top/build/plugin/nbdkit-dm-plugin.so

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
# then 64 MiB linear on dev0 after its stripe area.
cat > "$dir/demo.table" <<TABLE
# <start> <length> <target> <args...>      (sectors of 512 bytes)
0      524288 striped 2 128 nbd+unix:///?socket=$dir/dev0.sock 0 nbd+unix:///?socket=$dir/dev1.sock 0
524288 131072 linear nbd+unix:///?socket=$dir/dev0.sock 262144
TABLE

nbdkit -f -U "$dir/dm.sock" "$plugin" table="$dir/demo.table" &
pids+=($!)
wait_for "$dir/dm.sock" $!

uri="nbd+unix:///?socket=$dir/dm.sock"
cat <<MSG

nbd-dm demo device: 320 MiB, striped over two nbdkit memory devices plus a
linear tail.  Table ($dir/demo.table):

$(sed 's/^/    /' "$dir/demo.table")

URI: $uri

Try, in another terminal:

    nbdinfo '$uri'
    nbdinfo --map '$uri'
    nbdcopy -- [ nbdkit pattern 320M ] '$uri'
    nbdcopy '$uri' - | md5sum
    qemu-img info '$uri'
    qemu-img convert -n -O raw -f raw some-disk.img '$uri'
    qemu-img map --output=json -f raw '$uri'

Ctrl-C stops the demo and its servers.
MSG
wait "${pids[-1]}"
