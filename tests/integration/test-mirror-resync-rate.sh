#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# mirror's resync cap, end to end (docs/targets/mirror.md, "The
# resync-rate key"): the resync-rate key, the resync_rate and resync
# messages.  Two nbdkit file legs, a of random data and b of zeroes, a
# core log without nosync (16 MiB: 256 regions to copy).  Asserted:
#  - a bad resync-rate stops start-up with the key's message;
#  - with resync-rate=256K/s the resync is still running at the first
#    look (16 MiB takes a minute at that rate: no machine is that
#    loaded), JSON says so with the cap; a bad resync_rate word is
#    refused with the documented message and changes nothing;
#  - resync_rate 0 lifts the cap: the resync reaches 256/256 by itself,
#    JSON says idle, no cap, the whole device copied, and the legs' files
#    are equal;
#  - resync after b's file was changed behind nbd-dm copies every region
#    from a again: the files are equal again.
# No timing is asserted beyond "not finished at the first look".
source ./functions.sh
requires nbdkit file --version
requires $PY -c 'import json'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
aimg=$NDM_TMP/a.img; bimg=$NDM_TMP/b.img
head -c 16M /dev/urandom >"$aimg"
truncate -s 16M "$bimg"
start_nbdkit -U "$a" file "$aimg"
start_nbdkit -U "$b" file "$bimg"
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
table="0 32768 mirror core 1 128 2 $A 0 $B 0"

# The key's bad word stops start-up, named.
rc=0
run_dm -f -U "$top" "$NDM_PLUGIN" "table-text=$table" \
  resync-rate=fast 2>"$NDM_TMP/err" || rc=$?
check_sanitizer_log "$NDM_TMP/err"
if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
  echo "$0: resync-rate=fast: nbdkit exited with $rc" >&2
  exit 1
fi
grep -q "resync-rate: 'fast' is not a rate: expected a size per second (64M, 64M/s) or 0" \
  "$NDM_TMP/err"

start_dm "$top" "$table" control="$ctlsock" resync-rate=256K/s

# resync FIELD: the JSON resync object's field.
resync ()
{
  ctl "$ctlsock" "status --json" | $PY -c '
import json, sys
print(json.load(sys.stdin)["targets"][0]["detail"]["resync"][sys.argv[1]])
' "$1"
}

in_sync ()
{
  ctl "$ctlsock" status | awk '{ print $(NF - 4) }'
}

first=$(in_sync)
echo "in sync at the first look, at 256K/s: $first"
test "${first%/*}" -lt 256
test "$(resync rate_limit)" -eq $((256 << 10))
test "$(resync state)" = running

if ctl "$ctlsock" "message 0 resync_rate 10parsecs" 2>"$NDM_TMP/err"; then
  echo "$0: resync_rate 10parsecs was taken" >&2
  exit 1
fi
cat "$NDM_TMP/err"
grep -q "resync_rate '10parsecs': expected a size per second (64M, 64M/s) or 0" \
  "$NDM_TMP/err"
test "$(resync rate_limit)" -eq $((256 << 10))

# wait_in_sync: until 256/256 AA, or fail after a minute.
wait_in_sync ()
{
  local i

  for ((i = 0; i < 600; i++)); do
    if ctl "$ctlsock" status | grep -q ' 256/256 1 AA 1 core$'; then
      return 0
    fi
    sleep 0.1
  done
  ctl "$ctlsock" status
  echo "$0: the resync did not end" >&2
  return 1
}

ctl "$ctlsock" "message 0 resync_rate 0"
wait_in_sync
test "$(resync state)" = idle
test "$(resync rate_limit)" -eq 0
copied=$(resync copied)
echo "resync copied $copied bytes"
test "$copied" -ge $((16 << 20))
cmp_files "$aimg" "$bimg"

# b's export changed behind nbd-dm: resync copies it all again.
dd if=/dev/urandom of="$bimg" bs=64K count=4 seek=100 conv=notrunc status=none
expect_fail cmp -s "$aimg" "$bimg"
ctl "$ctlsock" "message 0 resync"
wait_in_sync
test "$(resync copied)" -ge $((32 << 20))
cmp_files "$aimg" "$bimg"
echo ok
