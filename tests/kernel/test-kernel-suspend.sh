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

# writer: rounds of files, each fsynced, until /tmp/stop.
writer ()
{
  local n=0

  while [ ! -e /tmp/stop ]; do
    n=$((n + 1))
    ext4_fill fs round$n 4096 262144 1048577
  done
}
writer &
pids=$!
for chunk in 768 769 770 771; do
  rewrite /dev/nbd0 $chunk &
  pids="$pids $!"
done
i=0
until [ "$(nc 10.0.2.100 10813 || true)" = done ]; do
  i=$((i + 1))
  [ $i -le 2400 ] || fail "the host did not finish in 240 s"
  sleep 0.1
done
touch /tmp/hold /tmp/stop
for pid in $pids; do
  wait $pid || fail "a writer failed"
done
report "writer: $(wc -l </tmp/fs.md5) files"
ext4_check /dev/nbd0 fs
rewrite_check /dev/nbd0
dmesg_clean
detach /dev/nbd0
EOF2

# wait_round: until the guest's writer has fsynced one more round.
rounds=0
wait_round ()
{
  local i n

  for ((i = 0; i < 1200; i++)); do
    n=$(vm_value file | grep -c '^fs /round[0-9]*/f3 ' || true)
    if [ "$n" -gt $rounds ]; then
      rounds=$n
      return 0
    fi
    if ! alive "$VM_PID"; then
      break
    fi
    sleep 0.1
  done
  echo "$0: the guest's writer is stuck at $rounds rounds:" >&2
  ctl "$ctlsock" info >&2
  _vm_show
  exit 1
}

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
wait_round
for pass in 1 2; do
  ctl "$ctlsock" suspend
  sleep 1
  ctl "$ctlsock" resume
  echo "pass $pass: suspended and resumed"
  wait_round
  migrate "$img" "$img2" "$one"
  echo "pass $pass: migrated to d2"
  wait_round
  migrate "$img2" "$img" "$two"
  echo "pass $pass: migrated back to d"
  wait_round
done
echo done >"$phase"
vm_wait 300

verify_files fs "$img"
verify_rewrites "$img"
echo ok
