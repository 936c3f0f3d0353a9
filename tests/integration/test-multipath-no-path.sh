#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# multipath with every path dead.  Three dm servers over the same two path
# servers, which are then both killed:
#  - no features: a request that exhausts its paths fails with EIO at once
#    (R5; "at once" is checked as under 5 s, generous), never EINVAL or
#    a connection error, and the server stays up;
#  - queue_if_no_path with no-path-timeout=2 and no path coming back: the
#    request is held, then fails with EIO (not before 1.5 s: it was held;
#    the upper bound is only a hang guard);
#  - queue_if_no_path with no-path-timeout=0 (no limit): a write is held
#    (status shows queue_io 1) until one path server is restarted, then
#    succeeds; its data is in the backing file.
source ./functions.sh
source ./multipath-lib.sh
requires nbdkit file --version
requires $PY -c 'import nbd'

a=$(tmp_sock); b=$(tmp_sock)
img=$NDM_TMP/disk.img
truncate -s 8M "$img"
start_nbdkit -U "$a" file "$img"
a_pid=$NBDKIT_PID
start_nbdkit -U "$b" file "$img"
b_pid=$NBDKIT_PID
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
paths="0 1 1 round-robin 0 2 1 $A 1 $B 1"

failfast=$(tmp_sock); deadline=$(tmp_sock); queue=$(tmp_sock)
ctl_queue=$NDM_TMP/ctl-queue
start_dm "$failfast" "0 16384 multipath 0 $paths" checker-interval=1
start_dm "$deadline" "0 16384 multipath 1 queue_if_no_path $paths" \
  checker-interval=1 no-path-timeout=2
start_dm "$queue" "0 16384 multipath 1 queue_if_no_path $paths" \
  checker-interval=1 no-path-timeout=0 control="$ctl_queue"

kill_pid "$a_pid"
kill_pid "$b_pid"

# Without queue_if_no_path: EIO, quickly, for every kind of request.
mp_py - "$(nbd_uri "$failfast")" <<'EOF'
import errno, sys, time
import nbd

h = nbd.NBD()
h.connect_uri(sys.argv[1])
for what, fn, args in (("write", h.pwrite, (b"w" * 65536, 0)),
                       ("read", h.pread, (65536, 1 << 20)),
                       ("write again", h.pwrite, (b"w" * 4096, 4096)),
                       ("read again", h.pread, (4096, 0))):
    t0 = time.monotonic()
    try:
        fn(*args)
        sys.exit(f"{what} succeeded with every path dead")
    except nbd.Error as e:
        took = time.monotonic() - t0
        if e.errnum != errno.EIO:
            sys.exit(f"{what}: expected EIO, got {e.errno} ({e})")
    print(f"no queueing: {what}: EIO after {took:.2f} s")
    if took >= 5:
        sys.exit(f"{what}: EIO took {took:.1f} s, expected it at once")
EOF
nbdinfo --size "$(nbd_uri "$failfast")" >/dev/null

# queue_if_no_path, no-path-timeout=2, no path back: held, then EIO.
mp_py - "$(nbd_uri "$deadline")" <<'EOF'
import errno, sys, time
import nbd

h = nbd.NBD()
h.connect_uri(sys.argv[1])
t0 = time.monotonic()
try:
    h.pwrite(b"d" * 65536, 0)
    sys.exit("write succeeded with every path dead")
except nbd.Error as e:
    took = time.monotonic() - t0
    if e.errnum != errno.EIO:
        sys.exit(f"held write: expected EIO, got {e.errno} ({e})")
print(f"no-path-timeout=2: EIO after {took:.2f} s")
if not 1.5 <= took < 30:
    sys.exit(f"EIO after {took:.1f} s: expected it once the 2 s had passed")
EOF

# queue_if_no_path, no limit: a write waits for a path.  The client runs
# in the background and says when its write is done.
done=$NDM_TMP/write-done
$PY - "$(nbd_uri "$queue")" "$done" <<'EOF' &
import sys
import nbd

h = nbd.NBD()
h.connect_uri(sys.argv[1])
# The first I/O finds both paths dead (it fails them) and is held.
h.pwrite(b"Q" * 1048576, 3 << 20)
h.flush()
open(sys.argv[2], "w").write("done\n")
h.shutdown()
EOF
writer=$!

# Held, not failed: both paths F, queue_io 1, the write still out.
mp_wait_path "$ctl_queue" "$A" F
mp_wait_path "$ctl_queue" "$B" F
for ((i = 0; i < 100; i++)); do
  [ "$(mp_queue_io "$ctl_queue")" = 1 ] && break
  sleep 0.1
done
mp_status "$ctl_queue"
test "$(mp_queue_io "$ctl_queue")" = 1
sleep 1
if [ -e "$done" ] || ! alive "$writer"; then
  echo "$0: the write ended with no path to go to" >&2
  exit 1
fi

# One path back: the checker reinstates it and the held write goes out.
mp_restart "$b" file "$img"
mp_wait_client "$writer" "the held write, once a path came back"
test -e "$done"
mp_wait_path "$ctl_queue" "$B" A
test "$(mp_queue_io "$ctl_queue")" = 0
$PY - "$img" <<'EOF'
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(3 << 20)
    assert f.read(1048576) == b"Q" * 1048576, "held write not on disk"
    f.seek(0)
    assert f.read(3 << 20) == bytes(3 << 20), "a failed write landed"
EOF
echo ok
