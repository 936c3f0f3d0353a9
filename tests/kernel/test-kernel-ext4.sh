#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The kernel's NBD client (nbd.ko, nbd-client) with ext4 on three dm
# servers at once, in one VM (vm.sh):
#  - linear over a file server, one connection;
#  - striped over two memory servers (64 KiB chunks), four connections
#    (nbd-client -C 4: the kernel spreads requests over them; the dm
#    server's info, read by the guest, must count four clients);
#  - multipath (round-robin) over two file servers on one backing file,
#    two connections.
# On each the guest makes an ext4, writes files of random data (odd
# sizes too), fsyncs each, unmounts, runs e2fsck -fn (clean), and reads
# every file back with cold caches.  On linear and striped it writes
# 8 MiB past the file system, blkdiscards the first half and reads
# zeroes there and its data after.  The kernel must log no I/O error.
# Then the host, through NBD and not through the guest: e2fsck -fn on a
# copy of each device, every file's bytes (debugfs) equal to what the
# guest wrote, the discarded ranges zeroes in data and in block status,
# and the backing files equal to what the dm servers serve.
source ../integration/functions.sh
source ./vm.sh
source ./verify.sh
vm_requires

mib=64
sectors=$((mib << 11))

lin_img=$NDM_TMP/linear.img
truncate -s ${mib}M "$lin_img"
lin=$(tmp_sock)
start_nbdkit -U "$lin" file "$lin_img"
lin_top=$(tmp_sock)
start_dm "$lin_top" "0 $sectors linear $(nbd_uri "$lin") 0"

s0=$(tmp_sock); s1=$(tmp_sock)
start_nbdkit -U "$s0" memory $((mib / 2))M
start_nbdkit -U "$s1" memory $((mib / 2))M
str_top=$(tmp_sock); str_ctl=$NDM_TMP/striped.ctl
start_dm "$str_top" \
  "0 $sectors striped 2 128 $(nbd_uri "$s0") 0 $(nbd_uri "$s1") 0" \
  control="$str_ctl"

mp_img=$NDM_TMP/multipath.img
truncate -s ${mib}M "$mp_img"
pa=$(tmp_sock); pb=$(tmp_sock)
start_nbdkit -U "$pa" file "$mp_img"
start_nbdkit -U "$pb" file "$mp_img"
mp_top=$(tmp_sock)
start_dm "$mp_top" "0 $sectors multipath 0 0 1 1 round-robin 0 2 1 \
$(nbd_uri "$pa") 1 $(nbd_uri "$pb") 1"

vm_export 10809 "$lin_top"
vm_export 10810 "$str_top"
vm_export 10811 "$mp_top"
vm_relay 10812 "$str_ctl"
cat >"$NDM_TMP/scenario.sh" <<'EOF2'
attach /dev/nbd0 10809 1
attach /dev/nbd1 10810 4
attach /dev/nbd2 10811 2
# nbd-client -C 4 is four connections, not one used four times.
ctl 10812 info | grep -q '^Open count: *4$' ||
  fail "striped: the dm server counts $(ctl 10812 info | grep Open)"
ext4_test /dev/nbd0 linear 56M
ext4_test /dev/nbd1 striped 56M
ext4_test /dev/nbd2 multipath
discard_check /dev/nbd0 linear 56 8
discard_check /dev/nbd1 striped 56 8
dmesg_clean
detach /dev/nbd0
detach /dev/nbd1
detach /dev/nbd2
EOF2
vm_start "$NDM_TMP/scenario.sh"
vm_wait 200

for tag in linear striped multipath; do
  case $tag in
    linear) top=$lin_top ;;
    striped) top=$str_top ;;
    multipath) top=$mp_top ;;
  esac
  verify_copy "$(nbd_uri "$top")" "$NDM_TMP/$tag.copy"
  verify_files $tag "$NDM_TMP/$tag.copy"
done
verify_discard linear "$(nbd_uri "$lin_top")"
verify_discard striped "$(nbd_uri "$str_top")"
cmp_files "$lin_img" "$NDM_TMP/linear.copy"
cmp_files "$mp_img" "$NDM_TMP/multipath.copy"
echo ok
