#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# control: 'stats --format=openmetrics' and the metrics= HTTP endpoint
# give the same OpenMetrics text, which prometheus_client's OpenMetrics
# parser (strict: families, types, units, cumulative buckets ending at
# +Inf with _count equal to it, # EOF) and its Prometheus text parser
# both read, with the counts 'stats --json' gives: ios and bytes per op,
# errors, in-flight, and a latency histogram per op with samples.  The
# endpoint serves GET and HEAD /metrics on a Unix socket and on
# 127.0.0.1:PORT, 404 elsewhere, 405 for other methods; a bad ADDR, or
# one in use, stops start-up with a message naming it.
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import json, nbd, ndmctl, prometheus_client.openmetrics.parser'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
msock=$NDM_TMP/metrics.sock
port=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_nbdkit -U "$a" memory 8M
start_nbdkit -U "$b" memory 8M
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
table="0 2048 linear $A 0
2048 2048 linear $B 0
4096 2048 error"
start_dm "$top" "$table" control="$ctlsock" metrics="$msock"
tcp=$(tmp_sock)
start_dm "$tcp" "0 2048 zero" metrics="127.0.0.1:$port"

$PY - "$(nbd_uri "$top")" "$ctlsock" "$msock" "$port" "$A" "$B" <<'PYEOF'
import errno, http.client, json, socket, sys
import nbd, ndmctl
from prometheus_client.openmetrics.parser import \
    text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as prom

uri, sock, msock, port, A, B = sys.argv[1:]
ctl = ndmctl.Conn(sock)

class UnixHTTP(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(msock)

def get(conn, method="GET", path="/metrics"):
    conn.request(method, path)
    r = conn.getresponse()
    return r.status, r.getheader("Content-Type"), r.read().decode()

h = nbd.NBD()
h.connect_uri(uri)
for i in range(3):
    h.pwrite(b"w" * 4096, i * 65536)
for i in range(2):
    h.pread(4096, i * 65536)
h.pread(8192, (1 << 20) + 4096)
try:
    h.pread(4096, 2 << 20)
    sys.exit("read of the error target succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e

stats = json.loads(ctl.request("stats --json")[0])
verb = "\n".join(ctl.request("stats --format=openmetrics")) + "\n"
status, ctype, scraped = get(UnixHTTP("localhost"))
assert status == 200, status
assert ctype.startswith("application/openmetrics-text; version=1.0.0"), ctype
# No I/O between the two: the same text.
assert scraped == verb, "the verb and the scrape differ"
assert verb.endswith("\n# EOF\n"), verb[-100:]

fams = {f.name: f for f in openmetrics(verb)}
want = {f"ndm_{k}_{n}": t for k in ("target", "device")
        for n, t in (("ios", "counter"), ("bytes", "counter"),
                     ("errors", "counter"), ("requeues", "counter"),
                     ("in_flight", "gauge"),
                     ("latency_seconds", "histogram"))}
assert {n: f.type for n, f in fams.items()} == want, fams.keys()
assert fams["ndm_target_latency_seconds"].unit == "seconds"
assert fams["ndm_device_bytes"].unit == "bytes"

def subjects(kind):
    """label key -> its stats --json object."""
    if kind == "target":
        return {(str(t["start"]), str(t["length"]), t["type"]): t
                for t in stats["targets"]}
    return {(d["uri"],): d for d in stats["devices"]}

def key(kind, labels):
    if kind == "target":
        return (labels["start"], labels["length"], labels["type"])
    return (labels["uri"],)

plural = {"read": "reads", "write": "writes", "flush": "flushes",
          "trim": "trims", "zero": "zeroes", "other": "others"}
for kind in ("target", "device"):
    subj = subjects(kind)
    seen = set()
    for s in fams[f"ndm_{kind}_ios"].samples:
        io = subj[key(kind, s.labels)]["io"]
        assert s.name == f"ndm_{kind}_ios_total", s
        assert s.value == io[plural[s.labels["op"]]], (s, io)
        seen.add(key(kind, s.labels))
    assert seen == set(subj), (seen, subj.keys())
    for s in fams[f"ndm_{kind}_bytes"].samples:
        io = subj[key(kind, s.labels)]["io"]
        assert s.labels["op"] != "flush", s
        assert s.value == io[s.labels["op"] + "_bytes"], (s, io)
    for s in fams[f"ndm_{kind}_errors"].samples:
        assert s.value == subj[key(kind, s.labels)]["io"]["errors"], s
    for s in fams[f"ndm_{kind}_in_flight"].samples:
        assert s.value == 0, s
    hists = {}
    for s in fams[f"ndm_{kind}_latency_seconds"].samples:
        k = key(kind, s.labels) + (s.labels["op"],)
        hists.setdefault(k, []).append(s)
    with_samples = {k + (op,) for k, o in subj.items()
                    for op, hh in o["io"]["latency_us"].items()
                    if hh["count"] > 0}
    assert set(hists) == with_samples, (hists.keys(), with_samples)
    for k, samples in hists.items():
        hh = subj[k[:-1]]["io"]["latency_us"][k[-1]]
        buckets = [s for s in samples if s.name.endswith("_bucket")]
        count = [s.value for s in samples if s.name.endswith("_count")]
        total = [s.value for s in samples if s.name.endswith("_sum")]
        assert len(buckets) == 128 and buckets[-1].labels["le"] == "+Inf"
        assert count == [hh["count"]] == [buckets[-1].value], (k, count, hh)
        assert abs(total[0] - hh["sum"] / 1e6) < 1e-9, (k, total, hh)
        # Each JSON bucket's count is the step of the cumulative ones at
        # its upper bound.
        cum = {float(s.labels["le"]): s.value for s in buckets}
        for jb in hh["buckets"]:
            if "lt" in jb:
                below = max([v for le, v in cum.items()
                             if le <= jb["ge"] / 1e6] or [0])
                assert cum[jb["lt"] / 1e6] - below == jb["count"], (k, jb)

# The error target's failed read, and the devices by their URIs.
err = [s for s in fams["ndm_target_errors"].samples
       if s.labels["type"] == "error"]
assert [s.value for s in err] == [1], err
assert {s.labels["uri"] for s in fams["ndm_device_ios"].samples} == {A, B}

# The Prometheus text parser reads it too: the gauge and histograms
# typed, the counters' samples with the same values.
pfams = list(prom(verb))
ptypes = {f.name: f.type for f in pfams}
assert ptypes["ndm_target_in_flight"] == "gauge", ptypes
assert ptypes["ndm_device_latency_seconds"] == "histogram", ptypes
psamples = {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in pfams for s in f.samples}
for f in fams.values():
    for s in f.samples:
        assert psamples[(s.name, tuple(sorted(s.labels.items())))] == \
            s.value, s

# HEAD, other paths, other methods.
status, _, body = get(UnixHTTP("localhost"), "HEAD")
assert (status, body) == (200, ""), (status, body)
status, _, body = get(UnixHTTP("localhost"), path="/")
assert status == 404 and "/metrics" in body, (status, body)
status, _, body = get(UnixHTTP("localhost"), "POST")
assert status == 405, status

# Over TCP, the other server's (a zero target, no device).
status, ctype, body = get(http.client.HTTPConnection("127.0.0.1",
                                                     int(port)))
assert status == 200, status
tf = {f.name: f for f in openmetrics(body)}
assert [s.labels["type"] for s in tf["ndm_target_ios"].samples][:1] == \
    ["zero"], tf["ndm_target_ios"].samples
assert tf["ndm_device_ios"].samples == [], tf["ndm_device_ios"].samples

# The counters grow: a scrape after more I/O shows it.
h.pwrite(b"x" * 4096, 0)
status, _, again = get(UnixHTTP("localhost"))
w = [s.value for f in openmetrics(again) if f.name == "ndm_target_ios"
     for s in f.samples if s.labels["op"] == "write"
     and s.labels["start"] == "0"]
assert w == [4], w
h.shutdown()
print("ok")
PYEOF

# A bad ADDR, or one in use, stops start-up and says which.
for addr in "localhost:9100" "127.0.0.1:0" "127.0.0.1:http" "::1:9100" \
            "127.0.0.1:$port" "$NDM_TMP/no/such/dir/m.sock"; do
  rc=0
  run_dm -f -U "$(tmp_sock)" "$NDM_PLUGIN" table-text="0 8 zero" \
    metrics="$addr" 2>"$NDM_TMP/err" || rc=$?
  if [ $rc -eq 0 ] || [ $rc -eq 124 ] ||
     ! grep -qF "metrics: " "$NDM_TMP/err" ||
     ! grep -qF "$addr" "$NDM_TMP/err"; then
    echo "FAIL metrics=$addr: exit $rc, stderr:" >&2
    cat "$NDM_TMP/err" >&2
    exit 1
  fi
done
grep -q "Address already in use" <(run_dm -f -U "$(tmp_sock)" \
  "$NDM_PLUGIN" table-text="0 8 zero" metrics="127.0.0.1:$port" 2>&1 || true)
echo ok
