#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# control: 'nbd-dmsetup stats --interval 1 --count 2' under a workload
# prints two reports, each with a line per target and per device, whose
# rates are the counts of the interval over its seconds, not the counters
# since start: 300 writes made before the tool started are in no report
# (the reports' counts add up to at most what the server counted while
# the tool ran), and the writes made meanwhile show as non-zero rates and
# latencies.  --json gives the same as a JSON line per report.  Ctrl-C
# (SIGINT) ends an endless one with status 0 after a whole report.  No
# timing is checked: only structure, and that counts grow.
source ./functions.sh
requires nbdkit memory --version
requires test -x "$DMSETUP"
requires $PY -c 'import json, nbd, ndmctl'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_nbdkit -U "$a" memory 8M
start_nbdkit -U "$b" memory 8M
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
start_dm "$top" "0 2048 linear $A 0
2048 2048 linear $B 0" control="$ctlsock"

$PY - "$(nbd_uri "$top")" "$ctlsock" "$DMSETUP" "$A" "$B" <<'PYEOF'
import json, re, signal, subprocess, sys
import nbd, ndmctl

uri, sock, dmsetup, A, B = sys.argv[1:]
h = nbd.NBD()
h.connect_uri(uri)
ctl = ndmctl.Conn(sock)
targets = [(0, 2048, "linear"), (2048, 2048, "linear")]
names = ["target 0 2048 linear", "target 2048 2048 linear",
         f"device {A}", f"device {B}"]

def writes():
    s = json.loads(ctl.request("stats --json")[0])
    return ([t["io"]["writes"] for t in s["targets"]] +
            [d["io"]["writes"] for d in s["devices"]])

def run(args):
    """The tool with args, while writes and reads go to segment 0."""
    p = subprocess.Popen([dmsetup, "-c", sock] + args,
                         stdout=subprocess.PIPE, text=True)
    i = 0
    while p.poll() is None:
        h.pwrite(b"w" * 4096, (i % 256) * 4096)
        h.pread(4096, (i % 256) * 4096)
        i += 1
    out = p.stdout.read()
    assert p.returncode == 0, (args, p.returncode, out)
    return out

for i in range(300):                    # before the tool: in no report
    h.pwrite(b"p" * 4096, i * 4096)
before = writes()

# --json: one line per report.
out = run(["--json", "stats", "--interval", "1", "--count", "2"])
after = writes()
reports = [json.loads(l) for l in out.splitlines()]
assert len(reports) == 2, out
for r in reports:
    assert re.fullmatch(r"\d\d:\d\d:\d\d", r["time"]), r
    got = [(t["start"], t["length"], t["type"]) for t in r["targets"]]
    assert got == targets, r
    assert [d["uri"] for d in r["devices"]] == [A, B], r
    for o in r["targets"] + r["devices"]:
        assert o["seconds"] > 0, o
        for d in ("read", "write"):
            n, nbytes = o[d + "s"], o[d + "_bytes"]
            # Counts and bytes are separate counters, read one after the
            # other while a request may end between them: each of the two
            # snapshots may be one request apart (QD1 here).
            assert n >= 0 and abs(nbytes - 4096 * n) <= 2 * 4096, o
            assert abs(o[d + "_iops"] - n / o["seconds"]) < 1e-6, o
            assert abs(o[d + "_mib_s"] - nbytes / o["seconds"] / 2**20) \
                < 1e-6, o
            assert (o[d + "_p50_us"] is None) == (n == 0), o
            assert (o[d + "_p99_us"] is None) == (n == 0), o
            if n:
                assert 0 < o[d + "_p50_us"] <= o[d + "_p99_us"], o
# Rates over the interval: the reports together hold no more than the
# server counted while the tool ran (the 300 before are not in them),
# and the workload made the counts grow.
subjects = [r["targets"] + r["devices"] for r in reports]
for k in range(4):
    reported = sum(s[k]["writes"] for s in subjects)
    assert reported <= after[k] - before[k], \
        (names[k], reported, before[k], after[k], out)
assert after[0] > before[0], (before, after)
assert sum(s[0]["writes"] for s in subjects) > 0, out
assert all(s[1]["writes"] == 0 and s[3]["writes"] == 0 for s in subjects), \
    out

# The table: per report a time and interval line, the column heads, a
# line per target and device with the numbers first and the name last.
out = run(["stats", "--interval", "1", "--count", "2"])
blocks = out.split("\n\n")
assert blocks[-1] == "" and len(blocks) == 3, out
num = r"\s+(\d+\.\d)\s+(\d+\.\d)\s+(\d+\.\d\d)\s+(\d+\.\d\d)"
lat = r"\s+(-|\d+us|\d+\.\d\dms|\d+\.\d\ds)" * 4
for blk in blocks[:2]:
    lines = blk.split("\n")
    assert re.fullmatch(r"\d\d:\d\d:\d\d  interval \d+\.\d\d s", lines[0]), \
        blk
    assert lines[1].split() == ["r/s", "w/s", "rMiB/s", "wMiB/s", "r_p50",
                                "r_p99", "w_p50", "w_p99", "name"], blk
    assert len(lines) == 2 + len(names), blk
    for line, name in zip(lines[2:], names):
        m = re.fullmatch(num + lat + "  " + re.escape(name), line)
        assert m, (line, name)
assert any(float(re.match(num, b.split("\n")[2]).group(2)) > 0
           for b in blocks[:2]), out

# No --count: SIGINT ends it, after a whole report, with status 0.
p = subprocess.Popen([dmsetup, "-c", sock, "stats", "--interval", "0.2"],
                     stdout=subprocess.PIPE, text=True)
first = p.stdout.readline()
assert re.fullmatch(r"\d\d:\d\d:\d\d  interval \d+\.\d\d s\n", first), first
p.send_signal(signal.SIGINT)
rest = p.stdout.read()
assert p.wait() == 0, p.returncode
assert rest.endswith("\n\n"), rest
h.shutdown()
print("ok")
PYEOF
