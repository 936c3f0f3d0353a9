#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# control: a bad reload changes nothing.  Each bad table (bad word, an
# unknown target, a gap, an unreachable device, an empty table, a count
# word larger than the words after it, a number too large) gets an error
# reply naming the line and quoting the bad word; the server survives it
# (a multipath #features count one too high used to kill it), info still
# shows only a LIVE table, 'table' is unchanged, and the open connection
# keeps reading and writing through the old table.  A bad reload after a
# good one leaves the good one loaded (as dm's table_load), and resume
# then makes it live.
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import nbd, ndmctl'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_nbdkit -U "$a" memory 8M
start_nbdkit -U "$b" memory 8M
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
start_dm "$top" "0 2048 linear $A 0
2048 2048 linear $A 4096" control="$ctlsock"

$PY - "$(nbd_uri "$top")" "$ctlsock" "$A" "$B" \
    "$(nbd_uri "$NDM_TMP/nobody-listens-here.sock")" <<'EOF'
import sys
import nbd, ndmctl

uri, sock, A, B, GONE = sys.argv[1:]
MiB = 1 << 20
ctl = ndmctl.Conn(sock)
live = [f"0 2048 linear {A} 0", f"2048 2048 linear {A} 4096"]

h = nbd.NBD()
h.connect_uri(uri)
h.pwrite(b"\x5a" * (2 * MiB), 0)

def tables_present():
    return [l.split(":", 1)[1].strip() for l in ctl.request("info")
            if l.startswith("Tables present:")]

# (table, words the error must contain)
bad = [
    (f"0 2048 linear {B} 0;2048 2048 striped 2 abc {B} 0 {B} 4096",
     ["line 2", "striped", "'abc'"]),
    (f"0 2048 zero;2048 1024 zero;3072 1024 lineer {B} 0",
     ["line 3", "'lineer'"]),
    (f"0 2048 linear {B} 0;2100 1996 zero", ["line 2", "2100", "gap"]),
    (f"0 4096 linear {B} 12x", ["line 1", "'12x'"]),
    (f"0 2048 zero;2048 2048 linear {GONE} 0", ["line 2", GONE]),
    (f"0 4096 dust {B} 0 1000", ["line 1", "dust", "'1000'"]),
    ("# nothing but a comment", ["empty"]),
    # Count words checked against the words after them (these two
    # crashed the server: a read past the words, a NULL error).
    ("0 4096 multipath 1", ["line 1", "multipath", "#features '1'"]),
    ("0 4096 multipath 2 no_path_retry",
     ["line 1", "multipath", "#features '2'"]),
    (f"0 4096 multipath 1 no_path_retry 0 1 1 round-robin 0 1 0 {B}",
     ["line 1", "multipath", "no_path_retry has no value"]),
    # Numbers that overflow: 2^55 sectors wrapped to byte 0, and a table
    # of 2^63 bytes has no NBD size (--allow-resize: not the size rule).
    (f"0 4096 linear {B} 36028797018963968",
     ["line 1", "linear", "'36028797018963968'", "too large"]),
    (f"0 4096 linear {B} 18446744073709551615",
     ["line 1", "linear", "'18446744073709551615'", "too large"]),
    (f"0 4096 linear {B} 100000000000000000000000",
     ["line 1", "linear", "'100000000000000000000000'", "too large"]),
    ("0 18014398509481984 zero",
     ["line 1", "'18014398509481984'", "too large"], "--allow-resize "),
    ("0 4096 zero;4096 18014398509481980 error",
     ["line 2", "'18014398509481980'", "too large"], "--allow-resize "),
    ("0 4096 error extra", ["line 1", "error", "'extra'"]),
]

def check_unchanged(what, inactive):
    want = ["LIVE & INACTIVE" if inactive else "LIVE"]
    assert tables_present() == want, f"{what}: tables {tables_present()}"
    assert ctl.request("table") == live, f"{what}: live table changed"
    assert h.pread(2 * MiB, 0) == b"\x5a" * (2 * MiB), f"{what}: data"
    h.pwrite(b"\x5a" * 4096, MiB)
    ca = nbd.NBD(); ca.connect_uri(A)
    assert ca.pread(4096, 2 * MiB) == b"\x5a" * 4096, \
        f"{what}: I/O not served by the old table"
    ca.shutdown()

for table, words, *flags in bad:
    try:
        ctl.request(f"reload {''.join(flags)}'{table}'")
        sys.exit(f"bad table accepted: {table}")
    except ndmctl.Error as e:
        msg = str(e).split(": error ", 1)[1]
        assert msg.startswith("reload: "), msg
        for w in words:
            assert w in msg, f"'{w}' not in the error for {table}: {msg}"
    check_unchanged(table, False)

# resume with nothing loaded: still the old table.
ctl.request("suspend")
ctl.request("resume")
check_unchanged("resume after bad reloads", False)

# A good table loaded, then a bad one: the good one stays loaded.
good = f"0 4096 linear {B} 0"
ctl.request(f"reload '{good}'")
try:
    ctl.request(f"reload '0 4096 linear {B} 12x'")
    sys.exit("bad table accepted")
except ndmctl.Error as e:
    assert "'12x'" in str(e), e
check_unchanged("bad reload after a good one", True)
ctl.request("resume")
assert ctl.request("table") == [good], ctl.request("table")
assert tables_present() == ["LIVE"]
assert h.pread(4096, 0) == b"\0" * 4096, "resume did not swap to B"
print("ok")
EOF

# Through nbd-dmsetup, when built: a table file with comments and blank
# lines; the error names the file's line.
if [ -x "$DMSETUP" ]; then
  printf '%s\n' "# a comment" "" "0 2048 linear $B 0   # B's first MiB" \
    "# another" "2048 2048 linear $B 12x" >"$NDM_TMP/bad.table"
  rc=0; "$DMSETUP" -c "$ctlsock" reload "$NDM_TMP/bad.table" \
    2>"$NDM_TMP/cli.err" || rc=$?
  cat "$NDM_TMP/cli.err"
  test $rc -eq 1
  grep -q "line 5" "$NDM_TMP/cli.err"
  grep -q "'12x'" "$NDM_TMP/cli.err"
  ctl "$ctlsock" info | grep "^Tables present: *LIVE$" >/dev/null
  sed -i 's/ 12x$/ 2048/' "$NDM_TMP/bad.table"
  "$DMSETUP" -c "$ctlsock" reload "$NDM_TMP/bad.table"
  "$DMSETUP" -c "$ctlsock" resume
  test "$(ctl "$ctlsock" table)" = "0 2048 linear $B 0
2048 2048 linear $B 2048"
fi
echo ok
