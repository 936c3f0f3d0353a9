#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# control: 'stats' counts per target and per device.  After 3 writes and
# 2 reads of 4 KiB to segment 0 and one 8 KiB read of segment 1 (on
# another device), 'stats --json' shows exactly those counts and bytes
# for each target and each device, and a failed read as an error; the
# text form says the same; 'stats --clear' answers with the counts and
# then zeroes them (latency buckets included).
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import json, nbd, ndmctl'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_nbdkit -U "$a" memory 8M
start_nbdkit -U "$b" memory 8M
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
start_dm "$top" "0 2048 linear $A 0
2048 2048 linear $B 0
4096 2048 error" control="$ctlsock"

$PY - "$(nbd_uri "$top")" "$ctlsock" "$A" "$B" <<'EOF'
import errno, json, sys
import nbd, ndmctl

uri, sock, A, B = sys.argv[1:]
MiB = 1 << 20
ctl = ndmctl.Conn(sock)

def stats(opts=""):
    return json.loads(ctl.request(f"stats --json {opts}")[0])

classes = ["reads", "writes", "flushes", "trims", "zeroes", "others"]
byte_keys = ["read_bytes", "write_bytes", "trim_bytes", "zero_bytes",
             "other_bytes"]

def counts(o):
    """The I/O counters of a target's or device's object."""
    return {k: o["io"][k] for k in classes + byte_keys + ["errors", "requeues"]}

def zero(**kw):
    z = {k: 0 for k in classes + byte_keys + ["errors", "requeues"]}
    z.update(kw)
    return z

def check(s, want_targets, want_devices, what):
    got_t = [((t["start"], t["length"], t["type"]), counts(t))
             for t in s["targets"]]
    assert got_t == want_targets, \
        f"{what}: targets\n{got_t}\nwant\n{want_targets}"
    got_d = {d["uri"]: counts(d) for d in s["devices"]}
    assert got_d == want_devices, \
        f"{what}: devices\n{got_d}\nwant\n{want_devices}"
    for o in s["targets"] + s["devices"]:
        assert o["io"]["in_flight"] == 0, f"{what}: in flight {o}"

s = stats()
check(s, [((0, 2048, "linear"), zero()), ((2048, 2048, "linear"), zero()),
          ((4096, 2048, "error"), zero())], {A: zero(), B: zero()},
      "before any I/O")

h = nbd.NBD()
h.connect_uri(uri)
for i in range(3):
    h.pwrite(bytes([i + 1]) * 4096, i * 65536)
for i in range(2):
    h.pread(4096, i * 65536)
h.pread(8192, MiB + 4096)
try:
    h.pread(4096, 2 * MiB)
    sys.exit("read of the error target succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e

seg0 = zero(writes=3, write_bytes=12288, reads=2, read_bytes=8192)
seg1 = zero(reads=1, read_bytes=8192)
err = zero(reads=1, read_bytes=4096, errors=1)
want_t = [((0, 2048, "linear"), seg0), ((2048, 2048, "linear"), seg1),
          ((4096, 2048, "error"), err)]
want_d = {A: seg0, B: seg1}
check(stats(), want_t, want_d, "after the I/O")
for o in stats()["targets"][:2]:
    lat = o["io"]["latency_us_log2"]
    assert sum(lat["read"]) == o["io"]["reads"] and \
        sum(lat["write"]) == o["io"]["writes"], f"latency samples: {o}"

# The text form, the same facts.
text = ctl.request("stats")
assert text[0] == "target 0 2048 linear", text
assert text[1].startswith("  reads 2 (8192 bytes), writes 3 (12288 bytes), "
                          "flushes 0, "), text[1]
assert "errors 0, requeues 0, in-flight 0" in text[1], text[1]
dev_a = text.index(f"device {A} (up)")
assert text[dev_a + 1].startswith("  reads 2 (8192 bytes), writes 3 "
                                  "(12288 bytes), "), text[dev_a + 1]
assert any(l.startswith("  reads 1 (4096 bytes),") and "errors 1," in l
           for l in text), text

# --clear answers with the counts, then zeroes them.
check(stats("--clear"), want_t, want_d, "stats --clear's answer")
s = stats()
check(s, [(t, zero()) for t, _ in want_t], {A: zero(), B: zero()},
      "after stats --clear")
for o in s["targets"] + s["devices"]:
    assert all(n == 0 for c in o["io"]["latency_us_log2"].values()
               for n in c), \
        f"latency buckets not cleared: {o}"

# Counting goes on from zero.
h.pwrite(b"\x09" * 4096, 0)
s = stats()
assert counts(s["targets"][0]) == zero(writes=1, write_bytes=4096), s
h.shutdown()
print("ok")
EOF
