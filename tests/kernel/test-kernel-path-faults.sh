#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The kernel's NBD client (four connections) with ext4 on a multipath dm
# server (round-robin over two file servers on one backing file,
# io-timeout=2, checker-interval=1), and path faults while a writer in
# the guest writes and fsyncs files throughout:
#  1. path a's server is killed (SIGKILL) with I/O in flight;
#  2. it is started again on the same socket: the checker reinstates it;
#  3. path b's server is stopped (SIGSTOP) for 5 s: the checker or
#     io-timeout fences it, its writes wait until it runs again (R10),
#     then it comes back.  Four rewriters in the guest rewrite one 64 KiB
#     chunk each (O_DIRECT, fsync) until 4 s into the stop: a write b
#     held must not land over a later one when b runs again (a ghost
#     write).  nbdkit 1.32 may abort when it runs again and finds its
#     client gone with replies pending (its bug): then b is restarted.
# Between the faults the host waits until the guest has fsynced two more
# rounds of files, so every phase carries writes.  Asserted:
#  - every write and fsync of the guest succeeds and its kernel logs no
#    I/O error, ext4 error or nbd timeout: the faults are invisible to it;
#  - e2fsck -fn in the guest is clean and every file reads back (cold
#    caches) as written;
#  - the target's status shows each path failed once and active again;
#  - on the host, the backing file itself (not the dm server) holds a
#    clean ext4 with every file's bytes as the guest wrote them.
source ../integration/functions.sh
source ../integration/multipath-lib.sh
source ./vm.sh
source ./verify.sh
vm_requires

mib=64
img=$NDM_TMP/multipath.img
truncate -s ${mib}M "$img"
pa=$(tmp_sock); pb=$(tmp_sock)
start_nbdkit -U "$pa" file "$img"
a_pid=$NBDKIT_PID
start_nbdkit -U "$pb" file "$img"
b_pid=$NBDKIT_PID
A=$(nbd_uri "$pa"); B=$(nbd_uri "$pb")
top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
# queue_if_no_path: on a loaded machine the checker may fail a slow but
# healthy path (its probe must answer within checker-interval); should
# both be failed at once, I/O waits for one to come back instead of
# failing.  The faults below take out one path at a time.
start_dm "$top" "0 $((mib << 11)) multipath 1 queue_if_no_path 0 1 1 \
round-robin 0 2 1 $A 1 $B 1" control="$ctlsock" io-timeout=2 \
  checker-interval=1
phase=$NDM_TMP/phase

vm_export 10809 "$top"
vm_relay 10812 "$ctlsock"
vm_flag 10813 "$phase"
cat >"$NDM_TMP/scenario.sh" <<EOF2
A='$A'
EOF2
cat >>"$NDM_TMP/scenario.sh" <<'EOF2'
attach /dev/nbd0 10809 4
ext4_make /dev/nbd0 mp 48M
path_state 10812 "$A" | grep -q "^A " || fail "path a is not active"

workload /dev/nbd0 mp 10813
ext4_check /dev/nbd0 mp
rewrite_check /dev/nbd0
dmesg_clean
detach /dev/nbd0
EOF2

vm_start "$NDM_TMP/scenario.sh"
vm_wait_rounds mp 1
kill_pid "$a_pid"
echo "path a: killed"
mp_wait_path "$ctlsock" "$A" F 60
vm_wait_rounds mp 2
mp_restart "$pa" file "$img"
mp_wait_path "$ctlsock" "$A" A 60
echo "path a: restarted, reinstated"
vm_wait_rounds mp 2
kill -STOP "$b_pid"
cleanup_fn kill -CONT "$b_pid"
echo "path b: stopped"
# b is fenced within 2 s; what it holds must not land later over what
# the rewriters wrote since (through a), once they have stopped.
sleep 4
echo hold >"$phase"
sleep 1
kill -CONT "$b_pid"
echo "path b: running again"
sleep 1
if ! alive "$b_pid"; then
  echo "path b: nbdkit died when it ran again (nbdkit 1.32), restarted"
  mp_restart "$pb" file "$img"
fi
for ((i = 0; i < 600; i++)); do
  [ "$(vm_value rewrote | wc -l)" -lt 4 ] || break
  sleep 0.1
done
mp_wait_path "$ctlsock" "$B" A 90
vm_wait_rounds mp 2
echo done >"$phase"
vm_wait 300

state=$(ctl "$ctlsock" status)
echo "status: $state"
for p in "$A" "$B"; do
  case $state in
    *"$p A "[1-9]*) ;;
    *) echo "$0: path $p is not active with a fail count" >&2; exit 1 ;;
  esac
done
verify_files mp "$img"
verify_rewrites "$img"
echo ok
