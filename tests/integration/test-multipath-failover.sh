#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# multipath, failover and automatic reinstatement: two paths (two nbdkit
# file servers on one backing file) under round-robin.  A verifying
# workload (4 threads writing random data at random offsets and reading
# each write back) runs throughout while path a's server is killed and
# later restarted on the same socket.  Asserted:
#  - the workload sees zero errors and zero mismatches: failover is
#    invisible to the client (R4, R5);
#  - I/O keeps flowing while a is dead, and a shows F with a fail count
#    >= 1 in status;
#  - the path checker (checker-interval=1) reinstates a to A by itself,
#    with no control command, and I/O then reaches the new server again;
#  - at the end the backing file holds exactly what the workload wrote
#    (no lost write, no ghost write from the killed path, R10), and the
#    whole device reads back the same.
source ./functions.sh
source ./multipath-lib.sh
requires nbdkit file --version
requires nbdkit --filter=log null --version
requires $PY -c 'import nbd'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
img=$NDM_TMP/disk.img
truncate -s 16M "$img"
start_nbdkit -U "$a" file "$img"
a_pid=$NBDKIT_PID
start_nbdkit -U "$b" file "$img"
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
start_dm "$top" "0 32768 multipath 0 0 1 1 round-robin 0 2 1 $A 1 $B 1" \
  control="$ctlsock" checker-interval=1

stop=$NDM_TMP/stop; progress=$NDM_TMP/progress; model=$NDM_TMP/model
echo 0 >"$progress"
# Whatever happens, the workload stops when the test ends.
cleanup_fn touch "$stop"

$PY - "$(nbd_uri "$top")" "$stop" "$progress" "$model" <<'EOF' &
import os, random, sys, threading, time
import nbd

uri, stop, progress, model_file = sys.argv[1:]
SIZE = 16 << 20
NTHREADS = 4
REGION = SIZE // NTHREADS
model = bytearray(SIZE)            # the device starts as zeroes
lock = threading.Lock()
ops = 0
failures = []

def worker(n):
    global ops
    h = nbd.NBD()
    h.connect_uri(uri)
    rnd = random.Random(n)
    base = n * REGION               # each thread owns its region
    while not os.path.exists(stop):
        length = rnd.choice((512, 4096, 65536, 262144,
                             rnd.randrange(512, 131072, 512)))
        off = base + rnd.randrange(0, REGION - length + 1, 512)
        data = rnd.randbytes(length)
        try:
            h.pwrite(data, off)
            got = h.pread(length, off)
        except nbd.Error as e:
            failures.append(f"thread {n}: {length} bytes at {off}: {e}")
            continue
        model[off:off + length] = data
        if got != data:
            failures.append(f"thread {n}: read back at {off} differs")
        with lock:
            ops += 1
    h.flush()
    h.shutdown()

threads = [threading.Thread(target=worker, args=(n,))
           for n in range(NTHREADS)]
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    with open(progress + ".new", "w") as f:
        f.write(f"{ops}\n")
    os.replace(progress + ".new", progress)
    time.sleep(0.05)

# The whole device, through the target, once the dust has settled.
h = nbd.NBD()
h.connect_uri(uri)
for off in range(0, SIZE, 1 << 20):
    if h.pread(1 << 20, off) != model[off:off + (1 << 20)]:
        failures.append(f"device differs from the model in MiB {off >> 20}")
with open(model_file, "wb") as f:
    f.write(model)
print(f"workload: {ops} verified write+read pairs, {len(failures)} failures")
for m in failures[:20]:
    print("  " + m)
sys.exit(1 if failures else 0)
EOF
wl_pid=$!

# wait_ops N: until the workload has done N write+read pairs in all
# (20 s at most: it does hundreds a second).
wait_ops ()
{
  local i

  for ((i = 0; i < 200; i++)); do
    if [ "$(cat "$progress")" -ge "$1" ]; then
      return 0
    fi
    if ! alive "$wl_pid"; then
      echo "$0: the workload ended early" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$0: workload stuck at $(cat "$progress") pairs, waiting for $1" >&2
  ctl "$ctlsock" status >&2
  exit 1
}

wait_ops 100
test "$(mp_path_state "$ctlsock" "$A")" = "A 0"

# Path a dies without a goodbye, with I/O in flight on it.
kill_pid "$a_pid"
n=$(cat "$progress")
wait_ops $((n + 100))
mp_wait_path "$ctlsock" "$A" F
state=$(mp_path_state "$ctlsock" "$A")
echo "path a after the kill: $state"
if [ "${state#F }" -lt 1 ]; then
  echo "$0: path a failed with fail count ${state#F }" >&2
  exit 1
fi
test "$(mp_path_state "$ctlsock" "$B")" = "A 0"

# The same path comes back: a new server on the same socket and file, with
# a log to show that the workload's writes reach it again (the checker
# only reads).  Only status is read from now on: the checker alone must
# reinstate the path.
alog=$NDM_TMP/a2.log
mp_restart "$a" --filter=log file "$img" logfile="$alog"
mp_wait_path "$ctlsock" "$A" A
state=$(mp_path_state "$ctlsock" "$A")
echo "path a after the restart: $state"
test "${state#A }" -ge 1
for ((i = 0; i < 200; i++)); do
  if grep -q ' Write id=' "$alog"; then break; fi
  sleep 0.1
done
if ! grep -q ' Write id=' "$alog"; then
  echo "$0: path a is A again but no write reached its new server" >&2
  exit 1
fi
n=$(cat "$progress")
wait_ops $((n + 100))

touch "$stop"
mp_wait_client "$wl_pid" "the workload (its errors are above)"
cmp_files "$model" "$img"
mp_status "$ctlsock"
echo ok
