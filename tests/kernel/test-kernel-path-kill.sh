#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The kernel's NBD client (two connections) with ext4 on a multipath dm
# server (round-robin over two file servers on one backing file), and
# one path's server killed (SIGKILL) while the guest writes and fsyncs
# files.  The guest's writer runs throughout; it starts, the host kills
# path a once the writer has fsynced its first round, the guest watches
# the target's status (through a relay to the control socket) until
# path a is failed, and the writer goes on for four more rounds on path
# b alone.  Asserted:
#  - every write and fsync of the guest succeeds and its kernel logs no
#    I/O error, ext4 error or nbd timeout: failover is invisible to it;
#  - e2fsck -fn in the guest is clean and every file reads back (cold
#    caches) as written;
#  - the target shows path a failed, with a fail count;
#  - on the host, the backing file itself (not the dm server) holds a
#    clean ext4 with every file's bytes as the guest wrote them.
source ../integration/functions.sh
source ./vm.sh
source ./verify.sh
vm_requires
requires nbdkit file --version
requires $PY -c 'import nbd'

mib=64
img=$NDM_TMP/multipath.img
truncate -s ${mib}M "$img"
pa=$(tmp_sock); pb=$(tmp_sock)
start_nbdkit -U "$pa" file "$img"
a_pid=$NBDKIT_PID
start_nbdkit -U "$pb" file "$img"
A=$(nbd_uri "$pa")
top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_dm "$top" "0 $((mib << 11)) multipath 0 0 1 1 round-robin 0 2 1 \
$A 1 $(nbd_uri "$pb") 1" control="$ctlsock"

vm_export 10809 "$top"
vm_relay 10812 "$ctlsock"
cat >"$NDM_TMP/scenario.sh" <<EOF2
A='$A'
EOF2
cat >>"$NDM_TMP/scenario.sh" <<'EOF2'
attach /dev/nbd0 10809 2
ext4_make /dev/nbd0 mp
[ "$(path_state 10812 "$A")" = "A 0" ] || fail "path a is not active"

# writer: rounds of files, each fsynced, until /tmp/stop.
writer ()
{
  local n=0

  while [ ! -e /tmp/stop ]; do
    n=$((n + 1))
    ext4_fill mp round$n 4096 262144 1048577
    echo $n >/tmp/rounds
  done
}
rounds ()
{
  cat /tmp/rounds 2>/dev/null || echo 0
}
writer &
writer_pid=$!
while [ "$(rounds)" -lt 1 ]; do sleep 0.1; done
report "kill-path"
i=0
until path_state 10812 "$A" | grep -q '^F [1-9]'; do
  i=$((i + 1))
  [ $i -le 600 ] || fail "path a is not failed 60 s after the kill"
  sleep 0.1
done
failed_at=$(rounds)
report "path a failed during round $((failed_at + 1))"
while [ "$(rounds)" -lt $((failed_at + 4)) ]; do
  kill -0 $writer_pid 2>/dev/null || break
  sleep 0.1
done
touch /tmp/stop
wait $writer_pid || fail "the writer failed"
report "writer: $(rounds) rounds, $(wc -l </tmp/mp.md5) files"
ext4_check /dev/nbd0 mp
dmesg_clean
detach /dev/nbd0
EOF2
vm_start "$NDM_TMP/scenario.sh"
vm_wait_line '^kill-path$' 120
kill_pid "$a_pid"
echo "killed path a's server (pid $a_pid)"
vm_wait 200

state=$(ctl "$ctlsock" status)
echo "status: $state"
case $state in
  *"$A F "[1-9]*) ;;
  *) echo "$0: path a is not failed in the status" >&2; exit 1 ;;
esac
verify_files mp "$img"
echo ok
