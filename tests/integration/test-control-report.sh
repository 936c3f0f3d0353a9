#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# control: the verbs and options for scripts that dmsetup has
# (docs/nbd-dmsetup.pod): info --columns with -o, --noheadings and
# --separator; deps; targets; table --inactive; status and table
# --target TYPE; an optional device name checked against name=; help and
# version without a socket.  Each with --json, parsed.  Bad words (an
# unknown field, target type, option, a name that is not the device's)
# are refused with a message naming them, and the device goes on
# serving: a client's data is read back at the end.
source ./functions.sh
requires test -x "$DMSETUP"
requires nbdsh --version
requires $PY -c 'import json'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_nbdkit -U "$a" memory 4M
start_nbdkit -U "$b" memory 4M
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
start_dm "$top" "0 4096 linear $A 0;4096 4096 striped 1 8 $B 0" \
  control="$ctlsock" name=vol0
nbdsh -u "$(nbd_uri "$top")" -c 'h.pwrite(b"R" * 4096, 0)'
# nbdsh has hung up; nbdkit closes its end a moment later (seconds under
# TSan): the open count below is 0 only from then.
for ((i = 0; i < 100; i++)); do
  [ "$("$DMSETUP" -c "$ctlsock" info -C -o open --noheadings | tr -d ' ')" = 0 ] &&
    break
  sleep 0.1
done

failures=0
fail ()
{
  echo "FAIL $*"
  failures=$((failures + 1))
}

# dm ARGS...: nbd-dmsetup on this device; the output in $out, the exit
# status in $rc, standard error in $NDM_TMP/err.
dm ()
{
  rc=0
  out=$("$DMSETUP" -c "$ctlsock" "$@" 2>"$NDM_TMP/err") || rc=$?
}

# expect WANT ARGS...: nbd-dmsetup ARGS succeeds and prints WANT.
expect ()
{
  local want=$1

  shift
  dm "$@"
  [ $rc -eq 0 ] || { fail "'$*' exited $rc: $(cat "$NDM_TMP/err")"; return; }
  [ "$out" = "$want" ] || fail "'$*' printed '$out', expected '$want'"
}

# refused RC MESSAGE ARGS...: nbd-dmsetup ARGS exits RC, and its first
# line on standard error is MESSAGE.
refused ()
{
  local want_rc=$1 want=$2

  shift 2
  dm "$@"
  [ $rc -eq "$want_rc" ] || fail "'$*' exited $rc, not $want_rc"
  [ "$(head -n 1 "$NDM_TMP/err")" = "nbd-dmsetup: $want" ] ||
    fail "'$*' said '$(head -n 1 "$NDM_TMP/err")', expected '$want'"
}

# json FIELD-EXPRESSION ARGS...: nbd-dmsetup --json ARGS, and the Python
# expression (of j, the parsed payload) printed.
json ()
{
  local expr=$1

  shift
  "$DMSETUP" -c "$ctlsock" --json "$@" |
    $PY -c 'import json, sys; j = json.load(sys.stdin); print(eval(sys.argv[1]))' \
      "$expr"
}

# ---- info --columns ---------------------------------------------------
expect "Name Stat Open Targ Event
vol0 L--w    0    2     0" info -C
expect "vol0:L--w" info --columns -o name,attr --noheadings --separator :
expect "Name Stat Open Targ Event Open
vol0 L--w    0    2     0    0" info vol0 --columns --options=+open
[ "$(json '"%s %s" % (j["rows"][0]["segments"], j["rows"][0]["attr"])' info -C)" = \
  "2 L--w" ] || fail "info -C --json"
refused 1 "info: unknown field 'nmae' in --options 'name,nmae': expected one of name, attr, open, segments, events" \
  info -C -o name,nmae
refused 1 "info: --options, --noheadings and --separator need --columns" \
  info --noheadings

# ---- deps -------------------------------------------------------------
expect "2 dependencies	: ($A) ($B)
  $A up
  $B up" deps
[ "$(json '[d["uri"] for d in j["devices"]]' deps)" = "['$A', '$B']" ] ||
  fail "deps --json"

# ---- targets ----------------------------------------------------------
dm targets
grep -qx 'linear           v[0-9]*\.[0-9]*\.[0-9]*' <<<"$out" ||
  fail "targets: no linear line in '$out'"
[ "$(wc -l <<<"$out")" -eq 9 ] || fail "targets: $(wc -l <<<"$out") lines"
[ "$(json '[t["name"] for t in j["targets"]][-2:]' targets)" = \
  "['multipath', 'mirror']" ] || fail "targets --json"
[ "$(json 'all(len(t["version"]) == 3 for t in j["targets"])' targets)" = \
  True ] || fail "targets --json: versions"

# ---- status and table --target ----------------------------------------
expect "4096 4096 striped 1 $B 1 A" status --target striped
expect "0 4096 linear $A 0" table --target=linear
expect "" status --target mirror
[ "$(json '[t["type"] for t in j["targets"]]' status --target striped)" = \
  "['striped']" ] || fail "status --target --json"
refused 1 "status: unknown target type 'stripe': expected one of linear, striped, zero, error, flakey, delay, dust, multipath, mirror" \
  status --target stripe

# ---- table --inactive -------------------------------------------------
expect "" table --inactive
[ "$(json 'j["targets"]' table --inactive)" = "[]" ] ||
  fail "table --inactive --json without an inactive table"
expect "" reload vol0 --text "0 8192 zero"
expect "0 8192 zero" table --inactive
expect "0 4096 linear $A 0" table --target linear
[ "$(json 'j["targets"][0]["type"]' table --inactive)" = zero ] ||
  fail "table --inactive --json"
expect "vol0 LI-w" info -C -o name,attr --noheadings
expect "" clear
expect "" table --inactive

# ---- the device's name --------------------------------------------------
expect "4096 4096 striped 1 $B 1 A" status vol0 --target striped
refused 1 "status: device 'vol1' is not served here: this control socket's device is 'vol0' (name=)" \
  status vol1
refused 1 "message: device 'vol1' is not served here: this control socket's device is 'vol0' (name=)" \
  message vol1 0 hello
refused 1 "message: the linear target at sector 0 does not support messages" \
  message vol0 0 hello
refused 2 "info: unexpected word 'x' (usage: info [--columns] [--options FIELDS] [--noheadings] [--separator SEP])" \
  info vol0 x

# ---- options ------------------------------------------------------------
refused 2 "unknown option '--bogus'" status --bogus
refused 2 "option '--inactive' does not apply to 'status'" status --inactive
refused 2 "option '--target' needs a value" status --target
refused 2 "option '--json' takes no value" --json=yes info
refused 2 "option '--json' does not apply to 'show' (it renders 'status --json')" \
  show --json
# Long options shorten to a unique prefix, as getopt_long takes them.
expect "0 4096 linear $A 0" table --targ linear

# ---- help and version without a socket ---------------------------------
rc=0
NBD_DM_CONTROL= "$DMSETUP" version >"$NDM_TMP/v" 2>&1 || rc=$?
[ $rc -eq 0 ] && cmp -s "$NDM_TMP/v" <("$DMSETUP" --version) &&
  grep -q '^nbd-dmsetup .* (control protocol 1)$' "$NDM_TMP/v" ||
  fail "version without a socket: exit $rc, '$(cat "$NDM_TMP/v")'"
rc=0
NBD_DM_CONTROL= "$DMSETUP" help >"$NDM_TMP/h" 2>&1 || rc=$?
[ $rc -eq 0 ] && grep -q '^  show$' "$NDM_TMP/h" ||
  fail "help without a socket: exit $rc"
rc=0
NBD_DM_CONTROL= "$DMSETUP" --json version >"$NDM_TMP/v" 2>&1 || rc=$?
[ $rc -eq 0 ] && [ "$($PY -c 'import json, sys; print(json.load(sys.stdin)["protocol"])' <"$NDM_TMP/v")" = 1 ] ||
  fail "version --json without a socket: exit $rc"
rc=0
NBD_DM_CONTROL= "$DMSETUP" status 2>"$NDM_TMP/err" || rc=$?
[ $rc -eq 2 ] && grep -q "no control socket" "$NDM_TMP/err" ||
  fail "status without a socket: exit $rc"
# With a socket, version is the server's.
dm version
grep -qx 'nbd-dm .*, control protocol 1' <<<"$out" ||
  fail "version with a socket: '$out'"

# The device served throughout.
nbdsh -u "$(nbd_uri "$top")" -c 'assert h.pread(4096, 0) == b"R" * 4096'
[ $failures -eq 0 ]
