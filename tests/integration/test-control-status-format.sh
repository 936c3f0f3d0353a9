#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# control: 'table' and 'status' print dmsetup's lines, exactly, for every
# target type in one table (linear, striped, zero, error, flakey with and
# without features, delay in its 3- and 6-argument forms, dust), over the
# socket and through nbd-dmsetup when it is built; '--json' carries the
# same facts.  Also info's fields, dust's status after 'enable' and
# 'quiet', and the error for a message to a target without messages.
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import json, ndmctl'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_nbdkit -U "$a" memory 8M
start_nbdkit -U "$b" memory 8M
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")

# Feature words out of dm's order: the table line prints them in it.
start_dm "$top" "0 1024 linear $A 0
1024 1024 striped 2 128 $A 1024 $B 0
2048 512 zero
2560 512 error
3072 1024 flakey $A 4096 5 7
4096 1024 flakey $B 4096 3600 0 8 random_seed 9 corrupt_bio_byte 32 w 1 0 error_reads
5120 1024 delay $B 2048 0 $A 6144 300
6144 1024 delay $A 8192 20
7168 1024 dust $B 8192 4096" control="$ctlsock"

cat >"$NDM_TMP/table.expected" <<EOF
0 1024 linear $A 0
1024 1024 striped 2 128 $A 1024 $B 0
2048 512 zero
2560 512 error
3072 1024 flakey $A 4096 5 7 2 error_reads error_writes
4096 1024 flakey $B 4096 3600 0 8 error_reads corrupt_bio_byte 32 w 1 0 random_seed 9
5120 1024 delay $B 2048 0 $A 6144 300
6144 1024 delay $A 8192 20
7168 1024 dust $B 8192 4096
EOF
# dm's INFO: linear, zero, error and flakey say nothing (no trailing
# blank); striped '<#stripes> <devs> 1 <A|D per stripe>'; delay the
# reads, writes and flushes being delayed; dust its device and modes.
cat >"$NDM_TMP/status.expected" <<EOF
0 1024 linear
1024 1024 striped 2 $A $B 1 AA
2048 512 zero
2560 512 error
3072 1024 flakey
4096 1024 flakey
5120 1024 delay 0 0 0
6144 1024 delay 0 0 0
7168 1024 dust $B bypass verbose
EOF

ctl "$ctlsock" table >"$NDM_TMP/table.out"
ctl "$ctlsock" status >"$NDM_TMP/status.out"
diff -u "$NDM_TMP/table.expected" "$NDM_TMP/table.out"
diff -u "$NDM_TMP/status.expected" "$NDM_TMP/status.out"

# The CLI prints the payload as it is.
if [ -x "$DMSETUP" ]; then
  "$DMSETUP" -c "$ctlsock" table >"$NDM_TMP/table.cli"
  "$DMSETUP" -c "$ctlsock" status >"$NDM_TMP/status.cli"
  diff -u "$NDM_TMP/table.expected" "$NDM_TMP/table.cli"
  diff -u "$NDM_TMP/status.expected" "$NDM_TMP/status.cli"
else
  echo "nbd-dmsetup not built: CLI output not checked"
fi

# JSON: the same facts, per target, the line's words as an array.
$PY - "$ctlsock" "$NDM_TMP/table.expected" "$NDM_TMP/status.expected" \
    "$A" "$B" <<'EOF'
import json, sys
import ndmctl

sock, table_file, status_file, A, B = sys.argv[1:]

def split(line):
    start, length, ttype, *words = line.split(" ")
    return int(start), int(length), ttype, words

def one_json(verb):
    payload = ndmctl.request(sock, verb + " --json")
    assert len(payload) == 1, f"{verb} --json: {len(payload)} lines"
    return json.loads(payload[0])

for verb, field, path in (("table", "args", table_file),
                          ("status", "status", status_file)):
    want = [split(l) for l in open(path).read().splitlines()]
    got = one_json(verb)["targets"]
    got = [(t["start"], t["length"], t["type"], t[field]) for t in got]
    assert got == want, f"{verb} --json:\n{got}\nwant\n{want}"

# status --json also names each target's devices and their state.
devs = [[d["uri"] for d in t["devices"]] for t in one_json("status")["targets"]]
want = [[A], [A, B], [], [], [A], [B], [B, A], [A], [B]]
assert devs == want, f"status --json devices: {devs}"
for t in one_json("status")["targets"]:
    for d in t["devices"]:
        assert d["state"] == "up" and d["reason"] is None, f"device {d}"

info = one_json("info")
assert info["state"] == "active" and info["live_table"] is True and \
    info["inactive_table"] is False and info["targets"] == 9 and \
    info["size_sectors"] == 8192, f"info --json: {info}"
print("json ok")
EOF

# info: dmsetup's labels.
ctl "$ctlsock" info >"$NDM_TMP/info.out"
for re in '^Name: +nbd-dm$' '^State: +ACTIVE$' '^Tables present: +LIVE$' \
          '^Open count: +0$' '^Event number: +0$' '^Number of targets: +9$'; do
  if ! grep -E -q "$re" "$NDM_TMP/info.out"; then
    echo "info does not match /$re/:"; cat "$NDM_TMP/info.out"; exit 1
  fi
done

# dust's status follows its messages.
ctl "$ctlsock" "message 7168 enable" >/dev/null
ctl "$ctlsock" "message 8191 quiet" >/dev/null
test "$(ctl "$ctlsock" status | tail -n 1)" = \
  "7168 1024 dust $B fail_read_on_bad_block quiet"

# linear and striped take no messages: dm's refusal, as an error reply.
expect_fail ctl "$ctlsock" "message 0 hello" 2>"$NDM_TMP/msg.err"
nomsg="does not support messages"
grep -F -q "error message: the linear target at sector 0 $nomsg" \
  "$NDM_TMP/msg.err"
expect_fail ctl "$ctlsock" "message 1500 hello" 2>"$NDM_TMP/msg.err"
grep -F -q "error message: the striped target at sector 1024 $nomsg" \
  "$NDM_TMP/msg.err"
echo ok
