#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The kernel's NBD client (four connections) with ext4 on a dm server
# whose table is suspended, reloaded and resumed under it, as an
# operator does with dmsetup, while a writer in the guest writes and
# fsyncs files and four rewriters rewrite one 64 KiB chunk each past the
# file system (guest-lib.sh).  The table starts as two linear targets
# over file server d.  Twice, each step followed by a round of fsynced
# files: suspend (flush) and resume; a live migration to server d2 (one
# linear target): suspend --noflush, copy d's file to d2's, reload,
# resume; and the same back to d (two targets).  What the guest sent
# during a migration is held and lands on the new server only (R4: the
# held remainder is cut against the new table).  Asserted:
#  - no write, fsync or read of the guest fails, its kernel logs no I/O
#    error, ext4 error or nbd timeout;
#  - e2fsck -fn in the guest is clean, every file and chunk reads back
#    (cold caches) as last written;
#  - on the host, d's backing file holds a clean ext4 with every file's
#    bytes and every chunk's last write.
source ../integration/functions.sh
source ./vm.sh
source ./verify.sh
vm_requires

mib=64
half=$((mib << 10))
img=$NDM_TMP/disk.img
img2=$NDM_TMP/disk2.img
truncate -s ${mib}M "$img" "$img2"
dev=$(tmp_sock); dev2=$(tmp_sock)
start_nbdkit -U "$dev" file "$img"
start_nbdkit -U "$dev2" file "$img2"
D=$(nbd_uri "$dev")
two="0 $half linear $D 0;$half $half linear $D $half"
one="0 $((half * 2)) linear $(nbd_uri "$dev2") 0"
top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_dm "$top" "$two" control="$ctlsock"
phase=$NDM_TMP/phase

vm_export 10809 "$top"
vm_flag 10813 "$phase"
cat >"$NDM_TMP/scenario.sh" <<'EOF2'
attach /dev/nbd0 10809 4
ext4_make /dev/nbd0 fs 48M

workload /dev/nbd0 fs 10813
ext4_check /dev/nbd0 fs
rewrite_check /dev/nbd0
dmesg_clean
detach /dev/nbd0
EOF2

# migrate FROM TO TABLE: what the server of file FROM holds is copied to
# file TO while the dm server holds the guest's I/O, then TABLE (over
# TO's server) replaces the live table.
migrate ()
{
  # No pause: the suspend must have drained what was in flight to FROM.
  ctl "$ctlsock" "suspend --noflush"
  cp "$1" "$2"
  ctl "$ctlsock" "reload '$3'"
  ctl "$ctlsock" resume
}

vm_start "$NDM_TMP/scenario.sh"
vm_wait_rounds fs 1
for pass in 1 2; do
  ctl "$ctlsock" suspend
  sleep 1
  ctl "$ctlsock" resume
  echo "pass $pass: suspended and resumed"
  vm_wait_rounds fs 1
  migrate "$img" "$img2" "$one"
  echo "pass $pass: migrated to d2"
  vm_wait_rounds fs 1
  migrate "$img2" "$img" "$two"
  echo "pass $pass: migrated back to d"
  vm_wait_rounds fs 1
done
echo done >"$phase"
vm_wait 300

verify_files fs "$img"
verify_rewrites "$img"
echo ok
