#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# multipath through nbd-dmsetup: messages, status, table and path
# identity.  Two groups: 1 = {a, b}, 2 = {c, d}; a, b and c serve the
# shared file (with a log each, to see where reads go), d serves a file of
# another size.  The checker is set to an hour, so that only messages
# change path state here.  Asserted:
#  - d is refused at load: status shows it F (fail count 0, it never
#    failed under I/O) and the dm server's log has a line naming it;
#  - fail_path / reinstate_path turn a F / A, with the fail count, and
#    reads avoid a failed path and use it again once reinstated;
#  - switch_group 2 moves I/O to group 2 (c; d is refused), and status
#    shows group 2 as the one asked for, then active;
#  - disable_group 2 shows D and sends I/O back to group 1; enable_group
#    2 clears the D, and the next I/O picks group 1 (dm's bypass_pg);
#  - queue_if_no_path / fail_if_no_path change the table line's features;
#  - a bad message (unknown word, unknown path, group out of range or
#    not a number, missing argument, reinstate_path of the path of
#    another size) exits 1 with an error saying what was wrong, and
#    changes nothing;
#  - status --json parses and carries the same facts as the text line.
source ./functions.sh
source ./multipath-lib.sh
requires test -x "$DMSETUP"
requires nbdkit file --version
requires nbdkit --filter=log null --version
requires $PY -c 'import nbd, json'

a=$(tmp_sock); b=$(tmp_sock); c=$(tmp_sock); d=$(tmp_sock)
top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
img=$NDM_TMP/disk.img; small=$NDM_TMP/small.img
truncate -s 8M "$img"
truncate -s 4M "$small"
for s in a b c; do
  start_nbdkit -U "${!s}" --filter=log file "$img" logfile="$NDM_TMP/$s.log"
done
start_nbdkit -U "$d" file "$small"
A=$(nbd_uri "$a"); B=$(nbd_uri "$b"); C=$(nbd_uri "$c"); D=$(nbd_uri "$d")
paths="0 2 1 round-robin 0 2 1 $A 1 $B 1 round-robin 0 2 1 $C 1 $D 1"
start_dm "$top" "0 16384 multipath 0 $paths" \
  control="$ctlsock" checker-interval=3600
dmlog=$NBDKIT_LOG
uri=$(nbd_uri "$top")

dms ()
{
  "$DMSETUP" -c "$ctlsock" "$@"
}

# expect_status HEAD GROUP1 GROUP2: the whole status line, exactly.
expect_status ()
{
  local got want="0 16384 multipath $1 $2 $3"

  got=$(dms status)
  if [ "$got" != "$want" ]; then
    echo "$0: status is" >&2
    echo "  $got" >&2
    echo "expected" >&2
    echo "  $want" >&2
    return 1
  fi
}

# reads N: N 4 KiB reads through the target, one after another, none at
# offset 0 (see nreads).
reads ()
{
  $PY - "$uri" "$1" <<'EOF'
import sys
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for i in range(int(sys.argv[2])):
    h.pread(4096, 4096 * (i + 1))
EOF
}

# nreads X: how many of this test's reads path X's server has received.
# The dm server's keepalives (a one-block read at offset 0 on a connection
# idle for reconnect-delay, whichever group it is in) are not counted: a
# slow run (TSan, a loaded machine) has them land between a snapshot and
# its check.
nreads ()
{
  grep -E -c ' Read id=[0-9]+ offset=0x[1-9a-f]' "$NDM_TMP/$1.log" || true
}

# snapshot: remember how many reads a, b and c have received.
# expect_reads_went_to "a b": since the snapshot, only the paths named got
# reads, and each of them at least one.
snapshot ()
{
  ra=$(nreads a); rb=$(nreads b); rc=$(nreads c)
}
expect_reads_went_to ()
{
  local s before now

  for s in a b c; do
    before=r$s; now=$(nreads $s)
    case " $1 " in
      *" $s "*)
        if [ "$now" -le "${!before}" ]; then
          echo "$0: path $s got no read, expected reads on: $1" >&2
          return 1
        fi ;;
      *)
        if [ "$now" -ne "${!before}" ]; then
          echo "$0: path $s got $((now - ${!before})) reads," \
               "expected reads on: $1 only" >&2
          return 1
        fi ;;
    esac
  done
}

# ---- load: d refused --------------------------------------------------------
expect_status "2 0 0 0 2 1" \
  "E 0 2 0 $A A 0 $B A 0" "E 0 2 0 $C A 0 $D F 0"
if ! grep -F "$D" "$dmlog" | grep -F refused; then
  echo "$0: no log line says why $D was refused:" >&2
  cat "$dmlog" >&2
  exit 1
fi
snapshot
reads 4
expect_reads_went_to "a b"
expect_status "2 0 0 0 2 1" \
  "A 0 2 0 $A A 0 $B A 0" "E 0 2 0 $C A 0 $D F 0"

# ---- fail_path, reinstate_path ----------------------------------------------
dms message 0 fail_path "$A"
expect_status "2 0 0 0 2 1" \
  "A 0 2 0 $A F 1 $B A 0" "E 0 2 0 $C A 0 $D F 0"
snapshot
reads 4
expect_reads_went_to "b"
dms message 0 reinstate_path "$A"
expect_status "2 0 0 0 2 1" \
  "A 0 2 0 $A A 1 $B A 0" "E 0 2 0 $C A 0 $D F 0"
snapshot
reads 4
expect_reads_went_to "a b"

# ---- groups -----------------------------------------------------------------
dms message 0 switch_group 2
# The group asked for is shown before any I/O has gone there.
expect_status "2 0 0 0 2 2" \
  "E 0 2 0 $A A 1 $B A 0" "E 0 2 0 $C A 0 $D F 0"
snapshot
reads 4
expect_reads_went_to "c"
expect_status "2 0 0 0 2 2" \
  "E 0 2 0 $A A 1 $B A 0" "A 0 2 0 $C A 0 $D F 0"

dms message 0 disable_group 2
snapshot
reads 4
expect_reads_went_to "a b"
expect_status "2 0 0 0 2 1" \
  "A 0 2 0 $A A 1 $B A 0" "D 0 2 0 $C A 0 $D F 0"
# As dm's bypass_pg, enabling a group chooses the group afresh at the next
# I/O: none is active until then, and it is group 1 again (the first).
dms message 0 enable_group 2
expect_status "2 0 0 0 2 1" \
  "E 0 2 0 $A A 1 $B A 0" "E 0 2 0 $C A 0 $D F 0"
snapshot
reads 4
expect_reads_went_to "a b"
expect_status "2 0 0 0 2 1" \
  "A 0 2 0 $A A 1 $B A 0" "E 0 2 0 $C A 0 $D F 0"

# ---- features ---------------------------------------------------------------
test "$(dms table)" = "0 16384 multipath 0 $paths"
dms message 0 queue_if_no_path
test "$(dms table)" = "0 16384 multipath 1 queue_if_no_path $paths"
dms message 0 fail_if_no_path
test "$(dms table)" = "0 16384 multipath 0 $paths"

# ---- bad messages -----------------------------------------------------------
# bad_message "EXPECTED TEXT" ARGS...: exit status 1 and the text on stderr.
bad_message ()
{
  local want=$1 rc=0

  shift
  dms message 0 "$@" 2>"$NDM_TMP/err" || rc=$?
  if [ $rc -ne 1 ] || ! grep -F -q -- "$want" "$NDM_TMP/err"; then
    echo "$0: 'message 0 $*': exit $rc, stderr:" >&2
    cat "$NDM_TMP/err" >&2
    echo "expected exit 1 and: $want" >&2
    return 1
  fi
  echo "message 0 $*: $(cat "$NDM_TMP/err")"
}
bad_message "unknown message 'bogus'" bogus
bad_message "fail_path: expected one argument, the path, got 2 arguments" fail_path "$A" "$B"
bad_message "reinstate_path" reinstate_path
bad_message "no path 'nbd+unix:///?socket=/nonexistent'" \
  fail_path "nbd+unix:///?socket=/nonexistent"
bad_message "group '3': expected 1 to 2" switch_group 3
bad_message "group '0': expected 1 to 2" enable_group 0
bad_message "group 'x'" disable_group x
# A path of another size is not the same data: no message makes it valid.
bad_message "not the same data" reinstate_path "$D"
expect_status "2 0 0 0 2 1" \
  "A 0 2 0 $A A 1 $B A 0" "E 0 2 0 $C A 0 $D F 0"
test "$(dms table)" = "0 16384 multipath 0 $paths"

# ---- status --json ----------------------------------------------------------
dms message 0 fail_path "$B"
dms status --json >"$NDM_TMP/status.json"
$PY - "$NDM_TMP/status.json" "$(dms status)" "$A" "$B" "$C" "$D" <<'EOF'
import json, sys

path, text, A, B, C, D = sys.argv[1:]
doc = json.load(open(path))
t, = doc["targets"]
assert (t["start"], t["length"], t["type"]) == (0, 16384, "multipath"), t
assert " ".join(["0 16384 multipath"] + t["status"]) == text, \
    f"JSON status {t['status']!r} is not the text line {text!r}"
det = t["detail"]
assert det["queue_if_no_path"] is False and det["queueing"] is False, det
assert det["valid_paths"] == 2, det        # a and c: b failed, d refused
groups = [(g["group"], g["state"], g["selector"],
           [(p["path"], p["state"], p["fail_count"]) for p in g["paths"]])
          for g in det["groups"]]
want = [(1, "active", "round-robin", [(A, "active", 1), (B, "failed", 1)]),
        (2, "enabled", "round-robin", [(C, "active", 0), (D, "failed", 0)])]
assert groups == want, f"JSON groups:\n{groups}\nexpected\n{want}"
# Why each is failed, apart from the state: b by the operator, d for its
# size; none for the active ones.
why = {p["path"]: p["reason"] for g in det["groups"] for p in g["paths"]}
assert why[A] is None and why[C] is None, why
assert "not the same data" in why[D], why
assert isinstance(why[B], str) and why[B], why
# The devices in use; d, refused for its size, is listed in "detail" only.
devs = [d["uri"] for d in t["devices"]]
assert devs[:3] == [A, B, C] and set(devs) <= {A, B, C, D}, devs
print("status --json ok")
EOF

# Refused at load, and still F after all the messages above.
test "$(mp_path_state "$ctlsock" "$D")" = "F 0"
echo ok
