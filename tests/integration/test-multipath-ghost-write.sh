#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# R10, no ghost writes, with real servers: a path whose server is alive
# but stopped (SIGSTOP: a hung process, a paused VM) still holds the write
# it received, and runs it when it resumes.  Two nbdkit file servers on
# one image are the two path groups of a multipath target (p1 first).
#
# 1. p1 stops with write X in flight.  The checker fails and fences p1.
#    X must not be acknowledged while p1 may still run it: it waits.
#    p1 resumes: X lands there, p1 closes the cut connection, and only
#    then is X written through p2 and acknowledged.  Y written after it
#    is what the device and the image hold.  (X used to be re-sent at
#    once; the resumed p1 then wrote the stale X over the acknowledged Y.)
# 2. With fence-timeout=2 and p1 stopped for good: X fails with EIO at
#    the deadline, a write over X's block fails with EIO at once (the
#    block stays quarantined), writes elsewhere and reads go on, the
#    status says a write is quarantined; the operator declares p1 dead
#    (message device_dead), kills it, and the block can be written again.
source ./functions.sh
source ./multipath-lib.sh
requires nbdkit file --version
requires $PY -c 'import nbd'

img=$NDM_TMP/disk.img
truncate -s 16M "$img"

# run_case FENCE_TIMEOUT SCRIPT: fresh paths and dm server, then the
# Python SCRIPT with the dm URI, p1's PID and URI, and the control socket.
run_case ()
{
  local p1 p2 top ctlsock p1_pid
  p1=$(tmp_sock); p2=$(tmp_sock); top=$(tmp_sock)
  ctlsock=$(mktemp -u "$NDM_TMP/ctlXXXXXX")
  start_nbdkit -U "$p1" file "$img"
  p1_pid=$NBDKIT_PID
  # A stopped server must get SIGCONT before the cleanup's SIGTERM.
  cleanup_fn kill -CONT "$p1_pid"
  start_nbdkit -U "$p2" file "$img"
  start_dm "$top" "0 32768 multipath 0 0 2 1 round-robin 0 1 1 $(nbd_uri "$p1") 1 round-robin 0 1 1 $(nbd_uri "$p2") 1" \
    control="$ctlsock" checker-interval=3 reconnect-delay=200 \
    fence-timeout="$1"
  CTL=$ctlsock $PY - "$(nbd_uri "$top")" "$p1_pid" "$(nbd_uri "$p1")" \
    "$ctlsock" <<<"$2"
}

common='
import json, os, signal, subprocess, sys, threading, time
import nbd, ndmctl
uri, p1_pid, p1_uri, ctl = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
B = 4096
h = nbd.NBD(); h.connect_uri(uri)

def status():
    return " ".join(ndmctl.request(ctl, "status"))

def wait_failed(secs=20):
    end = time.time() + secs
    while time.time() < end:
        s = status().split()
        if s[s.index(p1_uri) + 1] == "F":
            return
        time.sleep(0.1)
    sys.exit("p1 was not failed: " + status())

def image(off):
    with open(os.environ["IMG"], "rb") as f:
        f.seek(off); return f.read(B)

h.pwrite(b"A" * B, 0); h.flush()
# Connected before p1 stops: under load a connection can take longer
# than the checker needs to fail p1, and X would then go to p2 at once,
# rightly (it was never sent to p1).
h2 = nbd.NBD(); h2.connect_uri(uri)
os.kill(p1_pid, signal.SIGSTOP)
res = {}
def write_x():
    try:
        h2.pwrite(b"X" * B, 0); res["x"] = "ok"
    except nbd.Error as e:
        res["x"] = e.errnum
    res["t"] = time.time()
t = threading.Thread(target=write_x); t.start()
# X must reach p1 before the checker fails it (else it goes to p2 at
# once, rightly, and the case tests nothing): the first probe by the checker
# of the stopped p1 is up to checker-interval (3 s) away; X reaches
# nbd-dm and p1 in milliseconds, seconds under a heavy load.
def p1_in_flight():
    js, = ndmctl.request(ctl, "stats --json")
    return {d["uri"]: d["io"]["in_flight"]
            for d in json.loads(js)["devices"]}[p1_uri]
end = time.time() + 20
while p1_in_flight() == 0 and "x" not in res and time.time() < end:
    time.sleep(0.01)
assert "x" not in res and p1_in_flight() == 1, \
    "X was not held by p1: %r %s" % (res, status())
wait_failed()
'

echo "--- 1: p1 resumes: X lands there first, then through p2; Y stays"
IMG=$img run_case 30 "$common"'
time.sleep(1.5)
assert "x" not in res, "X was acknowledged while p1 could still run it"
assert h.pread(B, 0) == b"A" * B           # reads go on meanwhile
os.kill(p1_pid, signal.SIGCONT)
t.join(20)
assert res.get("x") == "ok", "X: %r" % res.get("x")
h.pwrite(b"Y" * B, 0); h.flush()
time.sleep(1)                              # anything left to land, lands
assert h.pread(B, 0) == b"Y" * B, "the device lost Y"
assert image(0) == b"Y" * B, "the image lost Y: %r" % image(0)[:1]
print("ok: X waited for p1, Y survived")
'

echo "--- 2: p1 never resumes: EIO at fence-timeout, quarantine, device_dead"
truncate -s 0 "$img"; truncate -s 16M "$img"
IMG=$img run_case 2 "$common"'
t.join(20)
assert res.get("x") == 5, "X: %r" % res.get("x")      # EIO
try:
    h.pwrite(b"Y" * 512, 1024); sys.exit("Y over the quarantine succeeded")
except nbd.Error as e:
    assert e.errnum == 5, e
h.pwrite(b"Z" * B, B)                      # elsewhere: fine
assert h.pread(B, 0) == b"A" * B
js, = ndmctl.request(ctl, "status --json")
q = {d["uri"]: d["quarantined_writes"]
     for d in json.loads(js)["targets"][0]["devices"]}
assert q[p1_uri] == 1, js
ndmctl.request(ctl, "message 0 device_dead " + p1_uri)
os.kill(p1_pid, signal.SIGKILL)            # the operator made it true
h.pwrite(b"Y" * B, 0); h.flush()
assert h.pread(B, 0) == b"Y" * B and image(0) == b"Y" * B
print("ok: EIO, quarantined, released by device_dead")
'
