#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# multipath, only the tail is re-sent (R2, R4), seen from the servers'
# logs.  Two groups of one path each: p1 (group 1, the one in use) is an
# nbdkit sh plugin on the shared file with a 64 KiB maximum request, so
# nbd-dm splits a 1 MiB request at 1 MiB into 16 bios; p1 serves the first
# 5 of them and holds the other 11 (its script waits on a gate file and
# never writes).  Once p1's log shows the 5 completed and a held one
# arrived, p1's server is killed.  Asserted, for a write and then a read:
#  - the client's request succeeds, with the right data (in the backing
#    file for the write, in the client's buffer for the read: an offset
#    and buffer pointer out of step would show here);
#  - p2's log (the log filter) holds commands inside the request only
#    (the path checker's one-block probe reads at offset 0 aside),
#    covering [X, end) exactly once, contiguously: only the tail;
#  - X is the first byte p1 did not complete: every 64 KiB chunk before
#    X has a completed ("return=0") command in p1's log, none before X
#    was re-sent, and since p1's completions had time to reach nbd-dm
#    before the kill, X is exactly the end of the 5th chunk.
# Between the two, the checker reinstates p1 (restarted on its socket)
# and switch_group 1 sends I/O back to it.
source ./functions.sh
source ./multipath-lib.sh
requires nbdkit sh --version
requires nbdkit file --version
requires nbdkit --filter=log null --version
requires $PY -c 'import nbd'

MiB=$((1 << 20)); CH=65536
OFF=$MiB; LEN=$MiB; HOLD=$((OFF + 5 * CH)); END=$((OFF + LEN))

p1=$(tmp_sock); p2=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
img=$NDM_TMP/disk.img
truncate -s 8M "$img"

# path_script FILE OP GATE: an sh plugin serving $img with a 64 KiB
# maximum request, whose OP (pread or pwrite) commands at offsets in
# [HOLD, END) wait for GATE to exist and then fail without touching the
# file (by then their server is dead, nobody hears the answer).  They give
# up after 30 s, in case the test died first.
path_script ()
{
  cat >"$1" <<EOF
#!/usr/bin/env bash
img='$img'
held ()
{
  [ "\$1" = $2 ] && [ "\$2" -ge $HOLD ] && [ "\$2" -lt $END ] || return 1
  [ \$1 = pread ] || cat >/dev/null
  for ((i = 0; i < 600; i++)); do
    [ -e '$3' ] && break
    sleep 0.05
  done
  echo 'EIO held until the gate opened' >&2
  exit 1
}
case "\$1" in
  thread_model) echo parallel ;;
  get_size) stat -c %s "\$img" ;;
  block_size) echo 1 4096 $CH ;;
  can_write | can_flush) ;;
  flush) ;;
  pread)
    held pread "\$4"
    dd if="\$img" iflag=skip_bytes,count_bytes skip="\$4" count="\$3" \\
       bs=$CH status=none ;;
  pwrite)
    held pwrite "\$4"
    dd of="\$img" oflag=seek_bytes conv=notrunc seek="\$4" bs=$CH \\
       iflag=fullblock status=none ;;
  *) exit 2 ;;
esac
EOF
  chmod +x "$1"
}

# The log filter's two lines per command, as one record each.
cat >"$NDM_TMP/nbdlog.py" <<'EOF'
"""Commands in an nbdkit log filter file, and the checks of this test."""
import re, sys, time

ENTER = re.compile(r"connection=(\d+) (\w+) id=(\d+) offset=(0x[0-9a-f]+) "
                   r"count=(0x[0-9a-f]+)")
LEAVE = re.compile(r"connection=(\d+) \.\.\.(\w+) id=(\d+) return=(-?\d+)")

def commands(path, op, skip=0):
    """[{offset, count, ret}] of op, in log order, after skip lines."""
    cmds, byid = [], {}
    with open(path) as f:
        lines = f.read().splitlines()[skip:]
    for ln in lines:
        m = ENTER.search(ln)
        if m and m[2] == op:
            c = {"offset": int(m[4], 16), "count": int(m[5], 16), "ret": None}
            byid[(m[1], m[3])] = c
            cmds.append(c)
            continue
        m = LEAVE.search(ln)
        if m and m[2] == op and (m[1], m[3]) in byid:
            byid[(m[1], m[3])]["ret"] = int(m[4])
    return cmds

def completed(cmds, start, end):
    """Whether every byte of [start, end) was in a command that returned 0."""
    done = sorted((c["offset"], c["offset"] + c["count"])
                  for c in cmds if c["ret"] == 0)
    pos = start
    for a, b in done:
        if a <= pos < b:
            pos = b
    return pos >= end

def wait_held(log, op, off, hold, end, skip=0):
    """Until [off, hold) completed on the path and a command at or past
    hold arrived (held there); 20 s at most."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        cmds = commands(log, op, skip)
        if completed(cmds, off, hold) and \
           any(hold <= c["offset"] < end for c in cmds):
            return
        time.sleep(0.05)
    sys.exit(f"{log}: never saw [{off}, {hold}) done and a held {op}:\n" +
             "\n".join(map(str, commands(log, op, skip))))

def check_tail(log1, log2, op, off, hold, end, skip1, skip2):
    """p2 got exactly [X, end) once, X == hold, p1 completed [off, X).
    The path checker's probes (one-block reads at offset 0, before the
    request) are not part of it: reads outside the request are left out,
    writes outside it are an error."""
    tail = sorted((c["offset"], c["count"])
                  for c in commands(log2, op, skip2))
    if op == "Read":
        tail = [(o, n) for o, n in tail if o + n > off and o < end]
    if not tail:
        sys.exit(f"p2 received no {op} in the request at all")
    for o, n in tail:
        if o < off or o + n > end:
            sys.exit(f"p2 received {op} {o}+{n} outside the request "
                     f"[{off}, {end}): {tail}")
    x = tail[0][0]
    pos = x
    for o, n in tail:
        if o != pos:
            sys.exit(f"p2's {op}s are not one contiguous tail "
                     f"(gap or overlap at {pos}): {tail}")
        pos = o + n
    if pos != end:
        sys.exit(f"p2's {op}s stop at {pos}, the request ends at {end}")
    if not completed(commands(log1, op, skip1), off, x):
        sys.exit(f"p2 got the tail from {x}, but p1 did not complete "
                 f"[{off}, {x}): a credited byte was never written")
    if x != hold:
        sys.exit(f"the tail starts at {x}: expected {hold}, the first "
                 f"byte p1 did not complete")
    print(f"{op}: p1 completed [{off}, {x}), p2 got the tail [{x}, {end}) "
          f"in {len(tail)} command(s)")

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "wait-held":
        log, op = args[:2]
        wait_held(log, op, *map(int, args[2:]))
    elif cmd == "check-tail":
        log1, log2, op = args[:3]
        check_tail(log1, log2, op, *map(int, args[3:]))
EOF
nbdlog ()
{
  $PY "$NDM_TMP/nbdlog.py" "$@"
}

p1log=$NDM_TMP/p1.log; p2log=$NDM_TMP/p2.log
path_script "$NDM_TMP/p1-write.sh" pwrite "$NDM_TMP/gate-write"
start_nbdkit -U "$p1" --filter=log sh "$NDM_TMP/p1-write.sh" logfile="$p1log"
p1_pid=$NBDKIT_PID
start_nbdkit -U "$p2" --filter=log file "$img" logfile="$p2log"
P1=$(nbd_uri "$p1"); P2=$(nbd_uri "$p2")
# Two groups of one path: I/O goes to p1 while it is valid.
g1="round-robin 0 1 1 $P1 1"; g2="round-robin 0 1 1 $P2 1"
start_dm "$top" "0 16384 multipath 0 0 2 1 $g1 $g2" \
  control="$ctlsock" checker-interval=1
# The gates open at exit at the latest, so no held script outlives us.
cleanup_fn touch "$NDM_TMP/gate-write" "$NDM_TMP/gate-read"

# ---- the write --------------------------------------------------------------
head -c "$LEN" /dev/urandom >"$NDM_TMP/data"
$PY - "$(nbd_uri "$top")" "$NDM_TMP/data" "$OFF" <<'EOF' &
import sys
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(open(sys.argv[2], "rb").read(), int(sys.argv[3]))
EOF
client=$!

nbdlog wait-held "$p1log" Write $OFF $HOLD $END
# Let p1's last replies reach nbd-dm (they were sent when the log line
# was written; a killed server's sent bytes are still read by its peer).
sleep 0.5
kill_pid "$p1_pid"
touch "$NDM_TMP/gate-write"
mp_wait_client "$client" "the write, with path 2 there"
test "$(mp_path_state "$ctlsock" "$P1")" = "F 1"
nbdlog check-tail "$p1log" "$p2log" Write $OFF $HOLD $END 0 0
$PY - "$img" "$NDM_TMP/data" "$OFF" <<'EOF'
import sys
img = open(sys.argv[1], "rb").read()
data = open(sys.argv[2], "rb").read()
off = int(sys.argv[3])
assert img[off:off + len(data)] == data, "the written data is not on disk"
assert img[:off] == bytes(off) and \
    img[off + len(data):] == bytes(len(img) - off - len(data)), \
    "bytes outside the request changed"
EOF

# ---- the read ---------------------------------------------------------------
# p1 again, now holding reads; the checker brings it back, switch_group
# sends I/O to group 1 again.
path_script "$NDM_TMP/p1-read.sh" pread "$NDM_TMP/gate-read"
p1log2=$NDM_TMP/p1-read.log
mp_restart "$p1" --filter=log sh "$NDM_TMP/p1-read.sh" logfile="$p1log2"
p1_pid=$NBDKIT_PID
mp_wait_path "$ctlsock" "$P1" A
ctl "$ctlsock" "message 0 switch_group 1" >/dev/null
skip2=$(wc -l <"$p2log")

$PY - "$(nbd_uri "$top")" "$NDM_TMP/read" "$OFF" "$LEN" <<'EOF' &
import sys
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
open(sys.argv[2], "wb").write(h.pread(int(sys.argv[4]), int(sys.argv[3])))
EOF
client=$!

nbdlog wait-held "$p1log2" Read $OFF $HOLD $END
sleep 0.5
kill_pid "$p1_pid"
touch "$NDM_TMP/gate-read"
mp_wait_client "$client" "the read, with path 2 there"
test "$(mp_path_state "$ctlsock" "$P1")" = "F 2"
nbdlog check-tail "$p1log2" "$p2log" Read $OFF $HOLD $END 0 "$skip2"
cmp_files "$NDM_TMP/data" "$NDM_TMP/read"
echo ok
