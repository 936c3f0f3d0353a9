#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# mirror's verify and repair (docs/targets/mirror.md, "Verify and
# repair"): two nbdkit file legs with the same random data; one byte of
# b's backing file is changed behind nbd-dm.  Asserted:
#  - repair before any verify is refused;
#  - verify finds exactly that region (status word and JSON), changes
#    nothing, and its end is an event;
#  - repair, then the resync copies it: 256/256, and a second verify
#    finds no mismatch; the backing files are equal.
source ./functions.sh
requires nbdkit file --version

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
aimg=$NDM_TMP/a.img; bimg=$NDM_TMP/b.img
head -c 16M /dev/urandom >"$aimg"
cp "$aimg" "$bimg"
start_nbdkit -U "$a" file "$aimg"
start_nbdkit -U "$b" file "$bimg"
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
start_dm "$top" "0 32768 mirror core 2 128 nosync 2 $A 0 $B 0" \
  control="$ctlsock"

# Byte 5 MiB + 123 is in region 80 (64 KiB regions).
printf '\x5a' | cmp -s - <(dd if="$bimg" bs=1 skip=$((5 * 1048576 + 123)) \
                             count=1 status=none) &&
  pat='\xa5' || pat='\x5a'
printf "$pat" | dd of="$bimg" bs=1 seek=$((5 * 1048576 + 123)) conv=notrunc \
                   status=none
expect_fail cmp -s "$aimg" "$bimg"

err=$(ctl "$ctlsock" "message 0 repair" 2>&1) && exit 1
echo "$err"
echo "$err" | grep -q 'repair: no verify has run'

# verify_idle: wait until the verify has ended; print its JSON object.
verify_idle ()
{
  local i v

  for ((i = 0; i < 300; i++)); do
    v=$(ctl "$ctlsock" "status --json" |
          $PY -c 'import json, sys
print(json.dumps(json.load(sys.stdin)["targets"][0]["detail"]["verify"],
                 separators=(",", ":")))')
    case $v in *'"state":"idle"'*) echo "$v"; return 0 ;; esac
    sleep 0.1
  done
  echo "$0: verify still running: $v" >&2
  return 1
}

events=$(ctl "$ctlsock" info | awk '/^Event number:/ { print $3 }')
ctl "$ctlsock" "message 0 verify"
v=$(verify_idle)
echo "$v"
test "$v" = '{"state":"idle","checked":256,"mismatches":1,"regions":[80]}'
ctl "$ctlsock" status
ctl "$ctlsock" status | grep -q ' 256/256 1 AA 1 core verify 256/256 1$'
test "$(ctl "$ctlsock" info | awk '/^Event number:/ { print $3 }')" -gt \
  "$events"
expect_fail cmp -s "$aimg" "$bimg"

ctl "$ctlsock" "message 0 repair"
for ((i = 0; i < 300; i++)); do
  if ctl "$ctlsock" status | grep -q ' 256/256 1 AA 1 core verify'; then
    break
  fi
  sleep 0.1
done
ctl "$ctlsock" "message 0 verify"
v=$(verify_idle)
echo "$v"
test "$v" = '{"state":"idle","checked":256,"mismatches":0,"regions":[]}'
ctl "$ctlsock" status | grep -q ' 256/256 1 AA 1 core verify 256/256 0$'
cmp_files "$aimg" "$bimg"
echo ok
