#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# control: 'wait' blocks until the event number passes the current one
# (or the one given) and then prints the new number.  A waiter (over the
# socket, and nbd-dmsetup in the background when built) is still blocked
# after a short look, also across a suspend/resume without a new table
# and a reload not yet resumed; a resume with a new table wakes it with
# the next number.  'wait N' below the current number answers at once;
# --json says the same.  A waiter does not block the other clients, and
# a server stopping with a waiter connected exits cleanly.
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import ndmctl'

a=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_nbdkit -U "$a" memory 8M
A=$(nbd_uri "$a")
start_dm "$top" "0 4096 linear $A 0" control="$ctlsock"
dm_pid=$NBDKIT_PID

# nbd-dmsetup's waiter, if built: killed at exit if still waiting.
kill_quietly () { kill "$1" 2>/dev/null || true; }
cli_pid=
if [ -x "$DMSETUP" ]; then
  "$DMSETUP" -c "$ctlsock" wait >"$NDM_TMP/cli.out" 2>&1 &
  cli_pid=$!
  cleanup_fn kill_quietly "$cli_pid"
fi

$PY - "$ctlsock" "$A" "$cli_pid" <<'EOF'
import json, os, select, sys, time
import ndmctl

sock, A, cli_pid = sys.argv[1:]

def event_nr():
    return int([l for l in ndmctl.request(sock, "info")
                if l.startswith("Event number:")][0].split(":")[1])

def blocked(c, what, secs=0.5):
    r, _, _ = select.select([c.sock], [], [], secs)
    assert not r, f"wait answered {what}: {c.f.readline()!r}"
    if cli_pid:                 # the shell's child: running, not a zombie
        with open(f"/proc/{cli_pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        assert state != "Z", f"nbd-dmsetup wait exited {what}"

assert event_nr() == 0
w = ndmctl.Conn(sock)
w.send("wait")
wj = ndmctl.Conn(sock)
wj.send("wait --json 0")
blocked(w, "with nothing happening")
# The waiters do not hold up anyone else.
assert ndmctl.request(sock, "version")[0].startswith("nbd-dm ")

# No new table: no event.
ndmctl.request(sock, "suspend")
ndmctl.request(sock, "resume")
blocked(w, "after a suspend/resume without a new table", 0.3)
# Loaded, not live: no event yet.
ndmctl.request(sock, f"reload '0 4096 linear {A} 2048'")
blocked(w, "after a reload that is not resumed", 0.3)
assert event_nr() == 0

t = time.monotonic()
ndmctl.request(sock, "resume")          # suspends, swaps, resumes
assert w.reply() == ("ok", ["1"]), "wait after the resume"
st, p = wj.reply()
assert st == "ok" and json.loads(p[0]) == {"version": 1, "event_nr": 1}, \
    (st, p)
print(f"woken {(time.monotonic() - t) * 1000:.0f} ms after the resume")
assert event_nr() == 1
assert ndmctl.request(sock, "table") == [f"0 4096 linear {A} 2048"]

# Already past: at once.
assert ndmctl.request(sock, "wait 0") == ["1"]

print("ok")
EOF

if [ -n "$cli_pid" ]; then
  wait "$cli_pid"               # its exit status: 0
  test "$(cat "$NDM_TMP/cli.out")" = 1
fi

# A server stopping with a waiter connected: the waiter is answered or
# closed, and the server exits cleanly (stop_dm: within 10 s, status 0).
$PY -c '
import sys, ndmctl
c = ndmctl.Conn(sys.argv[1])
c.send("wait")
try:
    print(c.reply())
except (EOFError, ConnectionResetError):
    print("closed")
' "$ctlsock" >"$NDM_TMP/late.out" &
late=$!
sleep 0.3
alive "$late"
stop_dm "$dm_pid"
wait "$late"
cat "$NDM_TMP/late.out"
echo ok
