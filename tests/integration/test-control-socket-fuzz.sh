#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# control socket hygiene.  The socket is created mode 0600 and removed
# when the dm server exits; a stale socket file is replaced, a regular
# file or a socket another server answers on is refused at start-up.
# 1000 garbage lines (random bytes, blanks only, quotes, NULs, unknown
# verbs, known verbs with wrong arguments), sent over several
# connections in odd-sized pieces, each get exactly one well-formed reply;
# connections that hang up mid-line (one of them mid-'suspend') change
# nothing; a line of 1 MiB (the limit, '\n' not counted) is answered, one
# byte more gets an error and the connection is closed; 'help' refuses
# words as the other verbs without arguments do; at most 16 clients at
# once, the 17th is told so and slots free up again.  Afterwards the
# server still serves I/O and answers 'info' with the same state.
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import nbd, ndmctl'

a=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_nbdkit -U "$a" memory 8M
A=$(nbd_uri "$a")
table="0 8192 linear $A 0"
start_dm "$top" "$table" control="$ctlsock"
dm_pid=$NBDKIT_PID

test -S "$ctlsock"
test "$(stat -c %a "$ctlsock")" = 600

# Its failure is reported at the end: the checks below do not need it.
fuzz=0
seed=${NDM_FUZZ_SEED:-20240611}
$PY - "$(nbd_uri "$top")" "$ctlsock" "$seed" <<'EOF' || fuzz=$?
import errno, random, socket, sys, threading, time
import nbd, ndmctl

uri, sock, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
MiB = 1 << 20
print(f"seed {seed} (NDM_FUZZ_SEED to repeat)")
rnd = random.Random(seed)

before = ndmctl.request(sock, "info")
table = ndmctl.request(sock, "table")

# ---- the garbage: (bytes without newline, expected reply or None) ----------
wrong_args = [
    "suspend now", "suspend --noflush --noflush x", "suspend --allow-resize",
    "reload", "reload a b", "reload --noflush x", "reload '0 8 lineer'",
    "reload '0 8 zero;8 8'", "resume please", "clear all", "info x",
    "info --clear", "table --noflush", "status 0", "stats --clear x",
    "stats --bogus", "message", "message 0", "message x hello",
    "message 99999999 hello", "message -1 hello", "message 0 hello",
    "wait 1 2", "wait x", "wait -5", "version 2",
    "--json", "-- info", "Info", "INFO", "stat", "tables", "dmsetup info",
]
ok_verbs = ["info", "info --json", "table", "status --json", "version",
            "help", "clear", "resume", "stats", "  info  ", "\tversion",
            "'info'", "\"table\"", "info\r"]
words = ["info", "reload", "message", "'", "\"", "\\", "--", "--json",
         "\0", "$(reboot)", "`x`", "*", ";", "#"]

def garbage():
    k = rnd.randrange(8)
    if k == 0:      # random bytes, any length up to 300, no newline
        n = rnd.randrange(0, 300)
        return bytes(rnd.choice([b for b in range(256) if b != 10])
                     for _ in range(n)), None
    if k == 1:      # blanks only: an empty request
        return b" " * rnd.randrange(0, 50) + b"\t" * rnd.randrange(0, 3), \
            "error"
    if k == 2:      # unbalanced or odd quoting
        return rnd.choice([b"'", b'"', b"'abc", b'"a\\"b', b"info '",
                           b'table "', b"\\", b"'''", b'"\'"\'',
                           b"message 0 'a b", b'reload "0 8 zero']), "error"
    if k == 3:      # NULs
        return rnd.choice([b"\0", b"\0info", b"\0\0\0", b"bad\0info",
                           b"info\0x", b"version\0",
                           b"\0" * rnd.randrange(1, 100)]), "error"
    if k == 4:      # unknown verbs
        return ("x" + "".join(rnd.choice("abcdefghij-_.")
                              for _ in range(rnd.randrange(1, 20)))
                ).encode(), "error"
    if k == 5:
        return rnd.choice(wrong_args).encode(), "error"
    if k == 6:
        return rnd.choice(ok_verbs).encode(), "ok"
    return " ".join(rnd.choice(words) for _ in range(rnd.randrange(1, 12))
                    ).encode(), None

lines = [garbage() for _ in range(1000)]

def sender(s, data):
    """Send data in random pieces; a closed peer is not our business."""
    pieces = random.Random(seed + len(data))    # not rnd: another thread
    try:
        i = 0
        while i < len(data):
            n = pieces.choice([1, 2, 7, 100, 4095, 4096, 4097, 65536])
            s.sendall(data[i:i + n])
            i += n
    except (BrokenPipeError, ConnectionResetError):
        pass

def reply_version(c):
    st, p = c.reply()
    assert st == "ok" and len(p) == 1 and "control protocol 1" in p[0], \
        (st, p)

def one_connection(batch, hang_up_with):
    c = ndmctl.Conn(sock)
    data = b"".join(l + b"\n" for l, _ in batch) + b"version\n"
    t = threading.Thread(target=sender, args=(c.sock, data))
    t.start()
    for l, want in batch:
        st, p = c.reply()
        if want is not None and st != want:
            sys.exit(f"{l[:80]!r}: expected {want}, got {st} {p}")
    reply_version(c)        # nothing more, nothing less, then the sentinel
    t.join()
    if hang_up_with is not None:
        c.send(hang_up_with)    # no newline, then gone
    c.close()

# Ten connections of 100 lines; every third hangs up mid-line.
mid = [b"suspend", b"reload '0 8 zero'", b"\x01\x02 garbage", b"suspe"]
for i in range(10):
    one_connection(lines[i * 100:(i + 1) * 100],
                   mid[i // 3 % len(mid)] if i % 3 == 0 else None)

# Hang up mid-line with replies unread and a request half sent.
for n in (1, 10, 50):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(b"help\n" * n + b"status --js")
    s.close()

# At the limit (NDM_CONTROL_MAX_LINE bytes, '\n' not counted): served,
# and the connection stays.
c = ndmctl.Conn(sock)
long_ok = b"message 0 " + b"y" * (MiB - 10) + b"\n"
t = threading.Thread(target=sender, args=(c.sock, long_ok)); t.start()
st, p = c.reply()
t.join()
assert st == "error" and "does not support messages" in p, (st, p[:100])
c.send("info nbd-dm " + "x " * 300000)
st, p = c.reply()
assert st == "error" and "unexpected word 'x'" in p, (st, p[:100])
c.send("version")
reply_version(c)
c.close()

# Over the limit: one error, then the server closes the connection.
c = ndmctl.Conn(sock)
t = threading.Thread(target=sender,
                     args=(c.sock, b"info " + b"z" * (MiB + MiB // 2) + b"\n"))
t.start()
st, p = c.reply()
assert st == "error" and "longer than" in p, (st, p[:100])
try:
    rest = c.f.read()
    assert rest == b"", f"after the over-long line: {rest[:100]!r}"
except ConnectionResetError:
    pass                        # closed with our bytes unread: also closed
t.join()
c.close()

# One byte over: refused and closed, whatever pieces it came in.  Checked
# here, reported at the end (the rest does not depend on it).
violations = []
for over in (1, 100):
    c = ndmctl.Conn(sock)
    t = threading.Thread(target=sender, args=(
        c.sock, b"message 0 " + b"y" * (MiB - 10 + over) + b"\n"))
    t.start()
    st, p = c.reply()
    t.join()
    if st != "error" or "longer than" not in p:
        violations.append(f"a line {over} byte(s) over the limit was "
                          f"served: {st} {p[:60]}")
    c.close()

# At most 16 clients: the 17th is told and closed; slots come back.
def sixteen():
    conns = []
    for i in range(16):
        c = ndmctl.Conn(sock)
        conns.append(c)
        c.send("version")
        st, p = c.reply()
        if st != "ok":
            return conns, False
    return conns, True

for attempt in range(50):       # earlier clients may still be leaving
    conns, full = sixteen()
    if full:
        break
    for c in conns:
        c.close()
    time.sleep(0.2)
assert full, "16 control clients could not connect at once"
extra = ndmctl.Conn(sock)
assert extra.line() == "error too many control clients connected"
assert extra.f.read() == b""
extra.close()
for c in conns:
    c.close()
for attempt in range(50):
    try:
        c = ndmctl.Conn(sock)
        c.send("version")
        st, p = c.reply()
        c.close()
        if st == "ok":
            break
    except (EOFError, ConnectionResetError):
        pass
    time.sleep(0.2)
else:
    sys.exit("control slots did not come back after 16 clients left")

# The server is as it was, and serves.
after = ndmctl.request(sock, "info")
assert after == before, f"info changed:\n{before}\n{after}"
assert ndmctl.request(sock, "table") == table
h = nbd.NBD(); h.connect_uri(uri)
h.pwrite(b"\xfe" * 65536, 4096)
assert h.pread(65536, 4096) == b"\xfe" * 65536
h.shutdown()

# help takes no words either, like every verb without arguments.
c = ndmctl.Conn(sock)
c.send("help me")
st, p = c.reply()
if st != "error" or "unexpected word 'me'" not in p:
    violations.append(f"'help me': expected an error like 'version 2', "
                      f"got {st} {p[:2]}")
assert not violations, "\n".join(violations)
print("ok")
EOF

# Removed at exit.
stop_dm "$dm_pid"
if [ -e "$ctlsock" ]; then
  echo "control socket left behind after the server exited"; exit 1
fi

# A stale socket file (nobody listening) is replaced.
$PY -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' \
  "$ctlsock"
test -S "$ctlsock"
top2=$(tmp_sock)
start_dm "$top2" "$table" control="$ctlsock"
test "$(stat -c %a "$ctlsock")" = 600
ctl "$ctlsock" version | grep "control protocol 1" >/dev/null

# A socket another server answers on is not taken over.
top3=$(tmp_sock)
rc=0; run_dm -f -U "$top3" "$NDM_PLUGIN" "table-text=$table" \
  control="$ctlsock" 2>"$NDM_TMP/inuse.err" || rc=$?
test $rc -ne 0 -a $rc -ne 124
grep -q "in use" "$NDM_TMP/inuse.err"
ctl "$ctlsock" version | grep "control protocol 1" >/dev/null

# A regular file is not replaced.
echo precious >"$NDM_TMP/file"
rc=0; run_dm -f -U "$top3" "$NDM_PLUGIN" "table-text=$table" \
  control="$NDM_TMP/file" 2>"$NDM_TMP/file.err" || rc=$?
test $rc -ne 0 -a $rc -ne 124
grep -q "not a socket" "$NDM_TMP/file.err"
test "$(cat "$NDM_TMP/file")" = precious
test $fuzz -eq 0
echo ok
