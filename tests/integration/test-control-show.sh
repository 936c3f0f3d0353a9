#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbd-dmsetup show (docs/nbd-dmsetup.pod): the human view of multipath
# and mirror targets, drawn from status --json.  One table: a multipath
# target of two path groups (p1, p2) on one backing file, a linear
# target, a mirror of two legs resyncing at 256 KiB/s (16 MiB: a minute,
# so it is still running at the first look; nothing else is timed).
# p1's server is killed, and the checker fails it.  Asserted:
#  - a block per multipath and mirror target, none for the linear one;
#  - the multipath block: size, features, valid paths 1/2, both groups
#    with their selector, p1 failed with its reason and fail count, p2
#    active, in multipath -ll's tree;
#  - the mirror block: the resync running, regions in sync of all with a
#    percentage, the cap, each leg with its state and health;
#  - show of another device's name is refused; a table without either
#    target shows nothing.
source ./functions.sh
source ./multipath-lib.sh
requires test -x "$DMSETUP"
requires nbdkit file --version

p1=$(tmp_sock); p2=$(tmp_sock); a=$(tmp_sock); b=$(tmp_sock)
z=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
truncate -s 16M "$NDM_TMP/mp.img" "$NDM_TMP/b.img" "$NDM_TMP/z.img"
head -c 16M /dev/urandom >"$NDM_TMP/a.img"
start_nbdkit -U "$p1" file "$NDM_TMP/mp.img"
p1_pid=$NBDKIT_PID
start_nbdkit -U "$p2" file "$NDM_TMP/mp.img"
start_nbdkit -U "$a" file "$NDM_TMP/a.img"
start_nbdkit -U "$b" file "$NDM_TMP/b.img"
start_nbdkit -U "$z" file "$NDM_TMP/z.img"
P1=$(nbd_uri "$p1"); P2=$(nbd_uri "$p2"); A=$(nbd_uri "$a")
B=$(nbd_uri "$b"); Z=$(nbd_uri "$z")
start_dm "$top" "0 32768 multipath 1 queue_if_no_path 0 2 1 round-robin 0 1 1 $P1 1 service-time 0 1 2 $P2 1 1;32768 2048 linear $Z 0;34816 32768 mirror core 1 128 2 $A 0 $B 0" \
  control="$ctlsock" checker-interval=1 resync-rate=256K/s

kill_pid "$p1_pid"
mp_wait_path "$ctlsock" "$P1" F

"$DMSETUP" -c "$ctlsock" show >"$NDM_TMP/show"
cat "$NDM_TMP/show"

failures=0
fail ()
{
  echo "FAIL $*"
  failures=$((failures + 1))
}

# has LINE-REGEX: a line of the view matches (grep -E, whole line).
has ()
{
  grep -Exq -- "$1" "$NDM_TMP/show" || fail "no line like '$1'"
}

re_quote ()
{
  sed 's/[][\.*^$?+(){}|/]/\\&/g' <<<"$1"
}
p1_re=$(re_quote "$P1"); p2_re=$(re_quote "$P2")
a_re=$(re_quote "$A"); b_re=$(re_quote "$B")

# The multipath block.
has "multipath 0 32768"
has "size=16M features='queue_if_no_path' valid_paths=1/2 queueing=no"
has "\|-\+- group=1 policy=round-robin status=[a-z]+"
has "\| \`- $p1_re failed reason='[^']+' fail_count=[1-9][0-9]*( damped=[0-9.]+s)? next_check=[0-9.]+s"
has "\`-\+- group=2 policy=service-time status=[a-z]+"
has "  \`- $p2_re active fail_count=0 next_check=(0\.[0-9]|1\.0)s"
# The mirror block, and nothing of the linear target.
has "mirror 34816 32768"
has "size=16M log=core region_size=64K read_balance=[a-z-]+"
has "in_sync=[0-9]+/256 \([0-9.]+%\) resync=running( rate=[0-9.]+[KMG]?/s)? rate_limit=256K/s( .*)?"
has "\|- $a_re [a-z_]+ health=A fail_count=0 next_check=[0-9.]+s read_errors=0 write_errors=0 read_repairs=0"
has "\`- $b_re [a-z_]+ health=A fail_count=0 next_check=[0-9.]+s read_errors=0 write_errors=0 read_repairs=0"
grep -q "linear" "$NDM_TMP/show" && fail "the linear target is shown"
[ "$(grep -c '^$' "$NDM_TMP/show")" -eq 1 ] ||
  fail "not one blank line between the two blocks"

# Another device's name is refused; the server's name is taken.
rc=0
"$DMSETUP" -c "$ctlsock" show vol9 2>"$NDM_TMP/err" || rc=$?
[ $rc -eq 1 ] && grep -q "device 'vol9' is not served here" "$NDM_TMP/err" ||
  fail "show vol9: exit $rc, '$(cat "$NDM_TMP/err")'"
[ "$("$DMSETUP" -c "$ctlsock" show nbd-dm | head -n 1)" = "multipath 0 32768" ] ||
  fail "show nbd-dm"

# Without a multipath or mirror target: nothing.
"$DMSETUP" -c "$ctlsock" reload --text "0 32768 linear $Z 0;32768 2048 zero;34816 32768 zero"
"$DMSETUP" -c "$ctlsock" resume
[ -z "$("$DMSETUP" -c "$ctlsock" show)" ] || fail "show of a linear table"

[ $failures -eq 0 ]
