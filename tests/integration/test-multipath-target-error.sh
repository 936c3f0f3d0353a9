#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# multipath, target errors versus path errors (R5).  Two groups of one
# path each, so every request goes to group 1 while its path is valid:
#  - path a (nbdkit's error filter, switched on by trigger files) answers
#    writes with ENOSPC, reads with EIO, write-zeroes with EPERM and trims
#    with EINVAL.  Each reaches the client unchanged (the libnbd errno),
#    is not retried on path b (b's log shows no such command), does not
#    fail the path (a stays "A 0") and leaves the data as it was;
#  - contrast: path c answers reads with ESHUTDOWN, a path error.  The
#    read is retried on b and succeeds with the right data, c is failed
#    (F 1), and the checker reinstates it once the errors stop.
source ./functions.sh
source ./multipath-lib.sh
requires nbdkit file --version
requires nbdkit --filter=error null --version
requires nbdkit --filter=log null --version
requires $PY -c 'import nbd'

a=$(tmp_sock); b=$(tmp_sock); c=$(tmp_sock)
top=$(tmp_sock); top2=$(tmp_sock)
ctl1=$NDM_TMP/ctl1; ctl2=$NDM_TMP/ctl2
img=$NDM_TMP/disk.img; blog=$NDM_TMP/b.log
trig=$NDM_TMP/trigger
truncate -s 8M "$img"
start_nbdkit -U "$a" --filter=error file "$img" \
  error-pwrite=ENOSPC error-pwrite-rate=100% error-pwrite-file="$trig.enospc" \
  error-pread=EIO error-pread-rate=100% error-pread-file="$trig.eio" \
  error-zero=EPERM error-zero-rate=100% error-zero-file="$trig.eperm" \
  error-trim=EINVAL error-trim-rate=100% error-trim-file="$trig.einval"
start_nbdkit -U "$b" --filter=log file "$img" logfile="$blog"
start_nbdkit -U "$c" --filter=error file "$img" \
  error-pread=ESHUTDOWN error-pread-rate=100% error-pread-file="$trig.eshutdown"
A=$(nbd_uri "$a"); B=$(nbd_uri "$b"); C=$(nbd_uri "$c")
# group URI: a path group of that one path.  With two such groups, I/O
# goes to the first while its path is valid.
group ()
{
  echo "round-robin 0 1 1 $1 1"
}
# The first server's checker is off (an hour): its probe reads would meet
# the EIO injected into reads and fail a, as a path checker should; what
# is tested here is what errors of I/O do.
start_dm "$top" "0 16384 multipath 0 0 2 1 $(group "$A") $(group "$B")" \
  control="$ctl1" checker-interval=3600
dmlog=$NBDKIT_LOG
start_dm "$top2" "0 16384 multipath 0 0 2 1 $(group "$C") $(group "$B")" \
  control="$ctl2" checker-interval=1

# b_io: how many data commands path b has received.  The checker of the
# second server probes b with one-block reads at offset 0: not counted
# (no read of this test is there).
b_io ()
{
  grep -E -c ' (Write|Zero|Trim) id=| Read id=[0-9]+ offset=0x[1-9a-f]' \
    "$blog" || true
}

# Some data to find again, written while a behaves.
mp_py - "$(nbd_uri "$top")" <<'EOF'
import sys
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(b"\x5a" * 1048576, 1 << 20)
assert h.pread(1048576, 1 << 20) == b"\x5a" * 1048576
EOF
test "$(b_io)" = 0

touch "$trig.enospc" "$trig.eio" "$trig.eperm" "$trig.einval"
mp_py - "$(nbd_uri "$top")" <<'EOF'
import errno, sys
import nbd

h = nbd.NBD()
h.connect_uri(sys.argv[1])
MiB = 1 << 20

def expect(want, what, fn, *args):
    try:
        fn(*args)
    except nbd.Error as e:
        if e.errnum != want:
            sys.exit(f"{what}: expected {errno.errorcode[want]}, "
                     f"got {e.errno} ({e})")
        return
    sys.exit(f"{what}: succeeded, expected {errno.errorcode[want]}")

# Three times each: the path must still be chosen, and still answer the
# same, after its first error.
for i in range(3):
    expect(errno.ENOSPC, f"write {i}", h.pwrite, b"x" * 65536, MiB)
    expect(errno.EIO, f"read {i}", h.pread, 65536, MiB)
    expect(errno.EPERM, f"zero {i}", h.zero, 65536, MiB)
    expect(errno.EINVAL, f"trim {i}", h.trim, 65536, MiB)
print("target errors reached the client unchanged")
EOF

# Not failed, not retried elsewhere, nothing written.
test "$(mp_path_state "$ctl1" "$A")" = "A 0"
test "$(mp_path_state "$ctl1" "$B")" = "A 0"
test "$(b_io)" = 0
if grep -F "failing path" "$dmlog"; then
  echo "$0: a target error failed a path" >&2
  exit 1
fi

rm -f "$trig".*
mp_py - "$(nbd_uri "$top")" "$img" <<'EOF'
import sys
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
assert h.pread(1048576, 1 << 20) == b"\x5a" * 1048576, \
    "data changed by failed commands"
h.pwrite(b"\xa5" * 4096, 0)
h.flush()
with open(sys.argv[2], "rb") as f:
    assert f.read(4096) == b"\xa5" * 4096, "write after the errors missing"
EOF
test "$(mp_path_state "$ctl1" "$A")" = "A 0"
test "$(b_io)" = 0

# The contrast: ESHUTDOWN is a path error, retried on the other path.
# The trigger is created just before the read, so that the read (and not
# the checker, which probes c every second) is what meets the error.
before=$(b_io)
mp_py - "$(nbd_uri "$top2")" "$trig.eshutdown" <<'EOF'
import sys
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
open(sys.argv[2], "w").close()
assert h.pread(1048576, 1 << 20) == b"\x5a" * 1048576, \
    "read retried on path b returned wrong data"
EOF
test "$(mp_path_state "$ctl2" "$C")" = "F 1"
test "$(b_io)" -gt "$before"
# The checker's probe reads fail while c still says ESHUTDOWN (2 s: at
# least one probe); once it stops, c comes back with no command from us.
sleep 2
test "$(mp_path_state "$ctl2" "$C")" = "F 1"
rm -f "$trig.eshutdown"
mp_wait_path "$ctl2" "$C" A
test "$(mp_path_state "$ctl2" "$C")" = "A 1"
echo ok
