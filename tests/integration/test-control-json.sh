#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# control: every verb's --json, through nbd-dmsetup, against its schema
# (check-json.py): one table with linear, striped, multipath (a group
# with a path that is not there), mirror and dust segments, while all is
# well and after a mirror leg's server died (a failed leg with its reason,
# a device down with its reason); and a server whose name= is not UTF-8
# (Latin-1 "café"), which comes out valid UTF-8, the bad byte as U+FFFD,
# as does the multipath path whose URI has a Latin-1 byte.
# Every verb the server lists in 'help --json' must have a case here.
source ./functions.sh
requires nbdkit memory --version
requires nbdkit file --version
requires test -x "$DMSETUP"
requires $PY -c 'import json, nbd'

check="$PY ./check-json.py"
a=$(tmp_sock); b=$(tmp_sock); p1=$(tmp_sock); p2=$(tmp_sock)
p3=$(tmp_sock); l1=$(tmp_sock); l2=$(tmp_sock); top=$(tmp_sock)
ctlsock=$NDM_TMP/ctl
img=$NDM_TMP/paths.img
truncate -s 1M "$img"
start_nbdkit -U "$a" memory 8M
start_nbdkit -U "$b" memory 8M
start_nbdkit -U "$p1" file "$img"
start_nbdkit -U "$p2" file "$img"
start_nbdkit -U "$l1" memory 1M
start_nbdkit -U "$l2" memory 1M
l2_pid=$NBDKIT_PID
A=$(nbd_uri "$a"); B=$(nbd_uri "$b"); L1=$(nbd_uri "$l1"); L2=$(nbd_uri "$l2")
P1=$(nbd_uri "$p1"); P2=$(nbd_uri "$p2")
# No server, and a Latin-1 byte in its URI: the URI and the reason come
# out valid UTF-8.
P3=$(nbd_uri "${p3%.sock}"$'-\xe9.sock')

start_dm "$top" "0 2048 linear $A 0
2048 2048 striped 2 128 $A 2048 $B 0
4096 2048 multipath 0 0 2 1 round-robin 0 2 1 $P1 1 $P2 1 round-robin 0 1 1 $P3 1
6144 2048 mirror core 2 128 nosync 2 $L1 0 $L2 0 1 handle_errors
8192 512 dust $A 8192 512
8704 512 zero" control="$ctlsock" checker-interval=3600

dms () { "$DMSETUP" -c "$ctlsock" "$@"; }

# check_verb VERB ARGS...: nbd-dmsetup --json VERB ARGS, checked.
check_verb ()
{
  local out=$NDM_TMP/$1.json

  dms --json "$@" >"$out"
  if ! $check "$1" "$out"; then
    echo "payload:" >&2; cat "$out" >&2
    exit 1
  fi
}

dms table >"$NDM_TMP/saved.table"

# every_verb: each verb of 'help --json' with arguments it accepts, in an
# order that works (reload before clear and resume, an event before wait).
every_verb ()
{
  local v

  check_verb help
  for v in $($PY -c 'import json, sys
print(" ".join(v["name"] for v in json.load(sys.stdin)["verbs"]))' \
               <"$NDM_TMP/help.json"); do
    case $v in
      info|table|status|stats|version|help|suspend|resume|clear|reload|\
message|wait|deps|targets) ;;
      *) echo "$0: verb '$v' has no case here" >&2; exit 1 ;;
    esac
  done
  check_verb info
  check_verb table
  check_verb status
  check_verb deps
  check_verb targets
  dms --json info --columns >"$NDM_TMP/info-columns.json"
  $check "info --columns" "$NDM_TMP/info-columns.json"
  check_verb stats
  check_verb message 8192 countbadblocks
  check_verb version
  check_verb suspend
  check_verb reload "$NDM_TMP/saved.table"
  dms --json table --inactive >"$NDM_TMP/table-inactive.json"
  $check table "$NDM_TMP/table-inactive.json"
  check_verb clear
  check_verb reload "$NDM_TMP/saved.table"
  check_verb resume
  check_verb wait 0
}

echo "--- all well"
every_verb
$PY - "$NDM_TMP" "$A" "$B" "$P1" "$P2" "$P3" "$L1" "$L2" <<'EOF'
import json, sys
d, A, B, P1, P2, P3, L1, L2 = sys.argv[1:]
load = lambda v: json.load(open(f"{d}/{v}.json"))
st = load("status")["targets"]
assert [t["type"] for t in st] == ["linear", "striped", "multipath",
                                   "mirror", "dust", "zero"], st
mp = st[2]["detail"]
paths = [(p["path"], p["state"]) for g in mp["groups"] for p in g["paths"]]
p3 = P3.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
assert "\ufffd" in p3, ascii(p3)
assert paths == [(P1, "active"), (P2, "active"), (p3, "failed")], paths
assert mp["groups"][1]["paths"][0]["reason"], mp
assert [(l["leg"], l["state"]) for l in st[3]["detail"]["legs"]] == \
    [(L1, "in_sync"), (L2, "in_sync")], st[3]
dev, = st[0]["devices"]
assert dev["uri"] == A and dev["state"] == "up" and dev["reason"] is None \
    and dev["connections_up"] == dev["connections"] >= 1 and \
    dev["quarantined_writes"] == 0, dev
assert load("table")["targets"][1]["args"] == ["2", "128", A, "2048", B,
                                               "0"], load("table")
assert load("message")["result"].startswith("countbadblocks: 0 "), \
    load("message")
assert load("wait")["event_nr"] >= 1, load("wait")
EOF

echo "--- a mirror leg's server dies"
kill_pid "$l2_pid"
$PY -c 'import sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(b"W" * 4096, 6144 * 512); h.flush()' "$(nbd_uri "$top")"
for ((i = 0; i < 100; i++)); do
  dms --json status >"$NDM_TMP/status.json"
  $PY -c 'import json, sys
legs = json.load(open(sys.argv[1]))["targets"][3]["detail"]["legs"]
sys.exit(legs[1]["state"] != "failed")' "$NDM_TMP/status.json" && break
  sleep 0.1
done
$check status "$NDM_TMP/status.json"
$PY - "$NDM_TMP/status.json" "$L2" <<'EOF'
import json, sys
path, L2 = sys.argv[1:]
t = json.load(open(path))["targets"][3]
leg = t["detail"]["legs"][1]
assert leg["state"] == "failed" and leg["reason"], leg
dev, = [x for x in t["devices"] if x["uri"] == L2]
assert dev["state"] in ("down", "degraded"), dev
EOF
every_verb

echo "--- a name= that is not UTF-8"
top2=$(tmp_sock); ctl2=$NDM_TMP/ctl2
start_dm "$top2" "0 2048 linear $A 0" control="$ctl2" name=$'caf\xe9'
"$DMSETUP" -c "$ctl2" --json info >"$NDM_TMP/info2.json"
$check info "$NDM_TMP/info2.json"
$PY -c 'import json, sys
name = json.load(open(sys.argv[1], encoding="utf-8"))["name"]
assert name == "caf\ufffd", ascii(name)' "$NDM_TMP/info2.json"
echo ok
