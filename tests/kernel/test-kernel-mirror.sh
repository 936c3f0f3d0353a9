#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The kernel's NBD client (four connections) with ext4 on a mirror dm
# server (docs/targets/mirror.md): two legs, each an nbdkit file server
# on its own backing file, handle_errors, io-timeout=2,
# checker-interval=1.  The log is core with nosync: both backing files
# start as zeroes, so they are equal and nothing needs copying at load;
# nbd-dm is not restarted here, so the in-memory log holds every region
# the returning leg missed (a disk log's restart is
# test-mirror-disk-log-restart.sh's).  While the guest's writer writes
# and fsyncs rounds of files and four rewriters rewrite one 64 KiB chunk
# each past the file system (guest-lib.sh: workload):
#  1. leg a's server is killed (SIGKILL) with I/O in flight: a is
#     failed, the writes go on to b alone, regions fall out of sync;
#  2. it is started again on the same socket: the checker reinstates it
#     with no command (its killed server closed every connection, R10),
#     the resync copies what a missed while the writes go on, and the
#     status reaches N/N with letters AA.
# Between the steps the host waits until the guest has fsynced two more
# rounds of files, so every phase carries writes.  Asserted:
#  - no write, fsync or read of the guest fails, and its kernel logs no
#    I/O error, ext4 error or nbd timeout: the leg's loss is invisible;
#  - in the guest, e2fsck -fn is clean and every file and chunk reads
#    back (cold caches) as last written;
#  - leg a failed once and is in sync again, the resync copied bytes;
#  - on the host, each leg's backing file alone holds a clean ext4
#    (e2fsck -fn) with every file the guest wrote (debugfs) and every
#    chunk as last written, and the two files are byte-identical.
source ../integration/functions.sh
source ../integration/multipath-lib.sh
source ./vm.sh
source ./verify.sh
vm_requires
if [ ! -x "$DMSETUP" ]; then
  echo "$0: $DMSETUP is missing: build the tree first" >&2
  exit 1
fi

mib=64
sectors=$((mib << 11))
region=1024
regions=$((sectors / region))
aimg=$NDM_TMP/a.img; bimg=$NDM_TMP/b.img
truncate -s ${mib}M "$aimg" "$bimg"
la=$(tmp_sock); lb=$(tmp_sock)
start_nbdkit -U "$la" file "$aimg"
a_pid=$NBDKIT_PID
start_nbdkit -U "$lb" file "$bimg"
A=$(nbd_uri "$la"); B=$(nbd_uri "$lb")
top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_dm "$top" "0 $sectors mirror core 2 $region nosync 2 $A 0 $B 0 \
1 handle_errors" control="$ctlsock" io-timeout=2 checker-interval=1
dm_pid=$NBDKIT_PID
phase=$NDM_TMP/phase

# sync_letters: "<in sync>/<regions> 1 <letters>" of the status line,
# read as an operator does, with nbd-dmsetup.
sync_letters ()
{
  "$DMSETUP" -c "$ctlsock" status |
    awk '{ print $(NF - 4), $(NF - 3), $(NF - 2) }'
}

# wait_status PATTERN SECS: until sync_letters matches the extended
# regex PATTERN, for at most SECS (a bound for a hang, not a timing);
# fail at once if the guest, while it runs, failed.
wait_status ()
{
  local re=$1 secs=$2 i got=""

  for ((i = 0; i < secs * 10; i++)); do
    got=$(sync_letters)
    if [[ $got =~ ^($re)$ ]]; then
      return 0
    fi
    if [ -n "$VM_PID" ] && _vm_ended; then
      break
    fi
    sleep 0.1
  done
  echo "$0: mirror status '$got', expected '$re':" >&2
  "$DMSETUP" -c "$ctlsock" --json status >&2
  [ -z "$VM_PID" ] || _vm_show
  return 1
}

# mirror_json EXPR: the value of EXPR, Python over d, the mirror's
# "detail" object in the status JSON.
mirror_json ()
{
  "$DMSETUP" -c "$ctlsock" --json status |
    $PY -c 'import json, sys
d = json.load(sys.stdin)["targets"][0]["detail"]
print(eval(sys.argv[1]))' "$1"
}

# leg_field URI FIELD: FIELD of leg URI's JSON object.
leg_field ()
{
  mirror_json "[l['$2'] for l in d['legs'] if l['leg'] == '$1'][0]"
}

test "$(sync_letters)" = "$regions/$regions 1 AA"

vm_export 10809 "$top"
vm_flag 10813 "$phase"
cat >"$NDM_TMP/scenario.sh" <<'EOF2'
attach /dev/nbd0 10809 4
ext4_make /dev/nbd0 m 48M
workload /dev/nbd0 m 10813
ext4_check /dev/nbd0 m
rewrite_check /dev/nbd0
dmesg_clean
detach /dev/nbd0
EOF2

vm_start "$NDM_TMP/scenario.sh"
vm_wait_rounds m 1
kill_pid "$a_pid"
echo "leg a: killed"
# D if a write failed on it, U if the checker saw it first.
wait_status "[0-9]+/$regions 1 [^A]A" 60
vm_wait_rounds m 2
st=$(sync_letters)
echo "leg a out, after two rounds of writes to b alone: $st"
if [ "${st%%/*}" -ge "$regions" ]; then
  echo "$0: no region out of sync after writes to b alone: $st" >&2
  exit 1
fi
mp_restart "$la" file "$aimg"
echo "leg a: restarted"
wait_status "$regions/$regions 1 AA" 120
echo "leg a: reinstated and resynced: $(sync_letters)"
vm_wait_rounds m 2
echo done >"$phase"
vm_wait 300

# Once more after the guest's last writes; then the dm server is stopped
# (a clean exit, its log checked), so nothing writes to the legs while
# their images are read.
wait_status "$regions/$regions 1 AA" 60
state=$(leg_field "$A" state); fails=$(leg_field "$A" fail_count)
copied=$(mirror_json 'd["resync"]["copied"]')
echo "leg a: $state, failed $fails times; resync copied $copied bytes;" \
     "reads a $(leg_field "$A" reads), b $(leg_field "$B" reads)"
if [ "$state" != in_sync ] || [ "$fails" -lt 1 ] || [ "$copied" -le 0 ]; then
  echo "$0: expected leg a in_sync after a failure and a resync" >&2
  exit 1
fi
stop_dm "$dm_pid"

for leg in a b; do
  img=$NDM_TMP/$leg.img
  echo "leg $leg's image alone:"
  verify_files m "$img"
  verify_rewrites "$img"
done
cmp_files "$aimg" "$bimg"
echo ok
