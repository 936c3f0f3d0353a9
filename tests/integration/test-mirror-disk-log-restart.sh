#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# mirror with a disk log across restarts of nbd-dm (docs/targets/mirror.md,
# "Restarts").  Two nbdkit file legs of 64 MiB and a log device (nbdkit
# file), 64 KiB regions: 1024 in all.  The workload (crash-workload.py:
# 4 threads writing random data and reading it back, a model of every
# acknowledged write) writes only the first 8 MiB, 128 regions: whatever
# the timing, no more than 128 can be marked.  Asserted:
#  - a new log marks every region: the first start copies all 1024;
#  - a clean stop (SIGTERM) after a workload leaves no mark on the log
#    device, and the restart with the same table finds 0 marked
#    (dirty_at_load), reports 1024/1024 at once and copies nothing;
#  - kill -9 of nbd-dm while every workload thread has a write in flight
#    (leg b's server paused, so none can end): every region where the
#    legs' files differ is marked in the log, every marked region was
#    written by the workload, and the count is printed
#    ("dirty regions at load: D of 1024") and is at most 128;
#  - the restart with the same table loads D marked regions, copies D
#    regions' bytes and no more, reaches 1024/1024; both files are
#    byte-identical, every acknowledged write is on them, and each write
#    that was in flight at the kill is there whole or not at all, on both;
#  - a log of another geometry (another region size) stops nbdkit at
#    start-up with the documented message.
source ./functions.sh
source ./multipath-lib.sh
requires nbdkit file --version
requires nbdkit --filter=pause file --version
requires $PY -c 'import nbd'

a=$(tmp_sock); b=$(tmp_sock); l=$(tmp_sock); top=$(tmp_sock)
ctlsock=$NDM_TMP/ctl; pause=$NDM_TMP/pause.sock
aimg=$NDM_TMP/a.img; bimg=$NDM_TMP/b.img; limg=$NDM_TMP/log.img
model=$NDM_TMP/model; state=$NDM_TMP/state.json
stop=$NDM_TMP/stop; progress=$NDM_TMP/progress
truncate -s 64M "$aimg" "$bimg" "$model"
truncate -s 1M "$limg"
start_nbdkit -U "$a" file "$aimg"
a_pid=$NBDKIT_PID
start_nbdkit -U "$b" --filter=pause file "$bimg" pause-control="$pause"
b_pid=$NBDKIT_PID
start_nbdkit -U "$l" file "$limg"
l_pid=$NBDKIT_PID
A=$(nbd_uri "$a"); B=$(nbd_uri "$b"); L=$(nbd_uri "$l")
REGIONS=1024; REGION=65536; HOT=$((8 << 20))
# Reads from a only, so that with b paused only writes wait; no checker
# round during the test (it would fail the paused leg).
table="0 131072 mirror disk 2 $L 128 2 $A 0 $B 0 2 read_balance default_leg"
cleanup_fn touch "$stop"

dm_start ()
{
  rm -f "$top"
  start_dm "$top" "$table" control="$ctlsock" checker-interval=3600
  dm_pid=$NBDKIT_PID
}

# log FIELD / resync FIELD / detail FIELD: from status --json.
detail ()
{
  ctl "$ctlsock" "status --json" |
    $PY -c 'import json, sys
d = json.load(sys.stdin)["targets"][0]["detail"]
for k in sys.argv[1].split("."):
    d = d[k]
print(d)' "$1"
}

wait_in_sync ()
{
  local i got=""

  for ((i = 0; i < 1200; i++)); do
    got=$(detail in_sync)
    [ "$got" != $REGIONS ] || return 0
    sleep 0.1
  done
  echo "$0: $got/$REGIONS regions in sync after 120 s:" >&2
  ctl "$ctlsock" "status --json" >&2
  return 1
}

# workload SEED: start the workload in the background (wl_pid).
workload ()
{
  rm -f "$stop"
  echo "0 0" >"$progress"
  $PY ./crash-workload.py "$(nbd_uri "$top")" $HOT "$stop" "$progress" \
    "$model" "$state" "$1" &
  wl_pid=$!
}

# until PROGRESS's field $1 (1: pairs, 2: writes in flight) is >= $2
wait_progress ()
{
  local i

  for ((i = 0; i < 300; i++)); do
    [ "$(awk -v f="$1" '{ print $f }' "$progress")" -lt "$2" ] || return 0
    if ! alive "$wl_pid"; then
      echo "$0: the workload ended early" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$0: workload progress '$(cat "$progress")', waiting for $2 in" \
    "field $1" >&2
  exit 1
}

# ---- first start: a new log, every region copied -------------------------------
dm_start
test "$(detail log.dirty_at_load)" = $REGIONS
wait_in_sync

# ---- a clean stop costs nothing ------------------------------------------------
workload 1
wait_progress 1 200
touch "$stop"
mp_wait_client "$wl_pid" "the workload before the clean stop"
$PY -c 'import json, sys
s = json.load(open(sys.argv[1]))
assert not s["errors"], s["errors"]' "$state"
stop_dm "$dm_pid"
marked=$($PY -c 'import sys
d = open(sys.argv[1], "rb").read()
assert d[:8] == b"NBDDMLOG", d[:8]
print(sum(bin(x).count("1") for x in d[4096:4096 + 1024 // 8]))' "$limg")
echo "marks on the log device after a clean stop: $marked"
test "$marked" = 0
dm_start
status=$(ctl "$ctlsock" status)
echo "clean restart: $status"
case $status in
  *" $REGIONS/$REGIONS 1 AA 3 disk $L A") ;;
  *) echo "$0: not in sync at once after a clean stop" >&2; exit 1 ;;
esac
test "$(detail log.dirty_at_load)" = 0
cmp_files "$aimg" "$bimg"

# ---- kill -9 with a write in flight in every thread ----------------------------
workload 2
wait_progress 1 200
# b takes no command from now: every write waits for it, reads go to a.
$PY -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"p")
assert s.recv(1) == b"P"' "$pause"
wait_progress 2 4
kill_pid "$dm_pid"
keep=()
for pid in "${_ndm_dm_pids[@]}"; do
  [ "$pid" = "$dm_pid" ] || keep+=("$pid")
done
_ndm_dm_pids=("${keep[@]}")
check_sanitizer_log "${_ndm_dm_log[$dm_pid]}"
mp_wait_client "$wl_pid" "the workload across the kill"
# What the paused server holds never lands: it dies with it.
kill_pid "$b_pid"
mp_restart "$b" file "$bimg"
b_pid=$NBDKIT_PID
# A server whose client went away with replies pending may abort (nbdkit
# 1.32): its file keeps what it wrote; a new server serves it.
if ! alive "$a_pid" || ! nbdinfo --size "$A" >/dev/null 2>&1; then
  kill_pid "$a_pid" 2>/dev/null || true
  mp_restart "$a" file "$aimg"
fi
if ! alive "$l_pid" || ! nbdinfo --size "$L" >/dev/null 2>&1; then
  kill_pid "$l_pid" 2>/dev/null || true
  mp_restart "$l" file "$limg"
fi

dirty=$($PY - "$aimg" "$bimg" "$limg" "$state" $REGION $REGIONS <<'EOF'
import json, sys
aimg, bimg, limg, state_file = sys.argv[1:5]
region, regions = int(sys.argv[5]), int(sys.argv[6])
log = open(limg, "rb").read()
marked = {r for r in range(regions) if log[4096 + r // 8] >> (r % 8) & 1}
a, b = open(aimg, "rb").read(), open(bimg, "rb").read()
differ = {r for r in range(regions)
          if a[r * region:(r + 1) * region] != b[r * region:(r + 1) * region]}
s = json.load(open(state_file))
touched = set()
for off, length in s["touched"]:
    touched.update(range(off // region, (off + length - 1) // region + 1))
print(f"legs differ in {len(differ)} regions, {len(s['uncertain'])} writes "
      f"in flight, {len(touched)} regions written", file=sys.stderr)
assert differ <= marked, f"legs differ in unmarked regions {differ - marked}"
assert marked <= touched, f"marked but never written: {marked - touched}"
print(len(marked))
EOF
)
echo "dirty regions at load: $dirty of $REGIONS"
if [ $((dirty * 4)) -ge $REGIONS ]; then
  echo "$0: $dirty of $REGIONS regions marked: expected far fewer" >&2
  exit 1
fi

# ---- the restart copies the marked regions only ---------------------------------
dm_start
test "$(detail log.dirty_at_load)" = "$dirty"
wait_in_sync
copied=$(detail resync.copied)
echo "the restart copied $copied bytes ($((copied / REGION)) regions)"
test "$copied" = $((dirty * REGION))
cmp_files "$aimg" "$bimg"
$PY - "$aimg" "$model" "$state" <<'EOF'
import base64, json, sys
img, model_file, state_file = sys.argv[1:4]
leg = open(img, "rb").read()
model = bytearray(open(model_file, "rb").read())
for off, data in json.load(open(state_file))["uncertain"]:
    new = base64.b64decode(data)
    old = bytes(model[off:off + len(new)])
    got = leg[off:off + len(new)]
    assert got in (old, new), f"the write in flight at {off} is torn"
    model[off:off + len(new)] = got
assert leg == bytes(model), "an acknowledged write is not on the legs"
EOF

# ---- a log of another geometry is refused ---------------------------------------
stop_dm "$dm_pid"
err=$NDM_TMP/refused.err
rc=0
run_dm -f -U "$(tmp_sock)" "$NDM_PLUGIN" \
  table-text="0 131072 mirror disk 2 $L 256 2 $A 0 $B 0" 2>"$err" || rc=$?
cat "$err"
if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
  echo "$0: nbdkit exited with $rc over a log of another region size" >&2
  exit 1
fi
grep -q "disk log $L was made for 2 legs, 1024 regions of 128 sectors; this table has 2 legs, 512 regions of 256 sectors: not reused" "$err"
echo ok
