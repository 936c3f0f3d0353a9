#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# mirror over two nbdkit file legs (docs/targets/mirror.md).  Asserted:
#  - writes go through to both legs: after a random workload and a flush
#    both backing files are byte-identical and equal to a model of every
#    acknowledged write;
#  - reads are spread over both legs (queue-length, the default): each
#    leg's server logs reads;
#  - with handle_errors, leg a's server killed while a verifying workload
#    (4 threads writing random data and reading it back) runs: zero client
#    errors and mismatches, status shows a failed ('D' or 'R'), writes
#    go on to b, and b's backing file equals the model at the end.
source ./functions.sh
source ./multipath-lib.sh
source ./workload-lib.sh
source ./mirror-lib.sh
requires nbdkit file --version
requires nbdkit --filter=log null --version
requires $PY -c 'import nbd'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
aimg=$NDM_TMP/a.img; bimg=$NDM_TMP/b.img
alog=$NDM_TMP/a.log; blog=$NDM_TMP/b.log
truncate -s 16M "$aimg" "$bimg"
start_nbdkit -U "$a" --filter=log file "$aimg" logfile="$alog"
a_pid=$NBDKIT_PID
start_nbdkit -U "$b" --filter=log file "$bimg" logfile="$blog"
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
# The legs are new and zero: equal, so nosync.
start_dm "$top" "0 32768 mirror core 2 1024 nosync 2 $A 0 $B 0 1 handle_errors" \
  control="$ctlsock"

status_line ()
{
  ctl "$ctlsock" status
}

# <in sync>/<regions> 1 <letters> of the status line.
letters ()
{
  status_line | awk '{ print $(NF - 2) }'
}

test "$(letters)" = AA
status_line | grep -q " 32/32 1 AA 1 core$"

# ---- write through ----------------------------------------------------------
model=$NDM_TMP/model
$PY - "$(nbd_uri "$top")" "$model" <<'EOF'
import random, sys
import nbd

uri, model_file = sys.argv[1:]
SIZE = 16 << 20
model = bytearray(SIZE)
h = nbd.NBD()
h.connect_uri(uri)
rnd = random.Random(1)
for i in range(400):
    length = rnd.choice((512, 4096, 65536, rnd.randrange(512, 262144, 512)))
    off = rnd.randrange(0, SIZE - length + 1, 512)
    data = rnd.randbytes(length)
    h.pwrite(data, off)
    model[off:off + length] = data
# Reads, spread over the legs.
for i in range(200):
    off = rnd.randrange(0, SIZE - 65536 + 1, 512)
    assert h.pread(65536, off) == model[off:off + 65536], off
h.flush()
h.shutdown()
with open(model_file, "wb") as f:
    f.write(model)
EOF
cmp_files "$model" "$aimg"
cmp_files "$model" "$bimg"
ra=$(grep -c ' Read id=' "$alog" || true)
rb=$(grep -c ' Read id=' "$blog" || true)
echo "reads: leg a $ra, leg b $rb"
if [ "$ra" -lt 20 ] || [ "$rb" -lt 20 ]; then
  echo "$0: reads not spread over the legs: a $ra, b $rb" >&2
  exit 1
fi

# ---- one leg killed ---------------------------------------------------------
start_workload "$(nbd_uri "$top")" "$model" 100

wait_ops 100
# Leg a dies without a goodbye, with I/O in flight on it.
kill_pid "$a_pid"
n=$(cat "$progress")
wait_ops $((n + 200))
st=$(status_line)
echo "status after the kill: $st"
# D if a write met the dead leg first, R if a read did.
case $(letters) in
  DA|RA) ;;
  *) echo "$0: leg a is not failed: $(letters)" >&2; exit 1 ;;
esac
b_writes=$(grep -c ' Write id=' "$blog")
n=$(cat "$progress")
wait_ops $((n + 100))
if [ "$(grep -c ' Write id=' "$blog")" -le "$b_writes" ]; then
  echo "$0: no write reached leg b after the kill" >&2
  exit 1
fi

touch "$stop"
mp_wait_client "$wl_pid" "the workload (its errors are above)"
cmp_files "$model" "$bimg"
case "$(leg_field 0 state) $(leg_field 0 health)" in
  "failed D" | "failed R") ;;
  *) echo "$0: JSON: leg a is not failed: $(leg_field 0 state)" >&2; exit 1 ;;
esac
echo ok
