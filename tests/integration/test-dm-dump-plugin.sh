#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# --dump-plugin lists what the build knows, from the core's own lists:
# every target type that has a file in core/targets/ (its name in
# dm_targets, its ops table's version in dm_target_<name>), nothing more,
# and in dm_uri_schemes the URI schemes that a bad device URI's error
# names (core/devices/uri.c; tests/unit/test-uri.c holds the man page to
# the same table).
source ./functions.sh

out=$NDM_TMP/dump
run_dm "$NDM_PLUGIN" --dump-plugin >"$out" 2>"$NDM_TMP/stderr"
check_sanitizer_log "$NDM_TMP/stderr"

failures=0
fail ()
{
  echo "FAIL $*"
  failures=$((failures + 1))
}

targets=$(sed -n 's/^dm_targets=//p' "$out")
n=0
for f in ../../core/targets/*.c; do
  # Each target file ends in its ops table:
  #   .name = "linear", .version = { 1, 4, 0 },
  re='^ *\.name = "([a-z_-]+)", \.version = \{ ([0-9]+), ([0-9]+), ([0-9]+) \}'
  if ! line=$(grep -E "$re" "$f"); then
    fail "$f: no '.name = ..., .version = ...' line"
    continue
  fi
  name=$(sed -E "s/$re.*/\\1/" <<<"$line")
  version=$(sed -E "s/$re.*/\\2.\\3.\\4/" <<<"$line")
  n=$((n + 1))
  case ",$targets," in
    *",$name,"*) ;;
    *) fail "dm_targets=$targets lacks $name ($f)" ;;
  esac
  grep -q -x "dm_target_$name=$version" "$out" ||
    fail "no line dm_target_$name=$version"
done
[ "$n" -ge 8 ] || fail "only $n target files in core/targets"
listed=$(tr ',' '\n' <<<"$targets" | grep -c .)
[ "$listed" -eq "$n" ] ||
  fail "dm_targets lists $listed types, core/targets has $n"
[ "$(grep -c '^dm_target_' "$out")" -eq "$n" ] ||
  fail "$(grep -c '^dm_target_' "$out") dm_target_ lines for $n targets"

# The schemes: DESIGN.md's four at least, and the same list as the error
# for a device that is not an NBD URI.
schemes=$(sed -n 's/^dm_uri_schemes=//p' "$out")
for s in nbd nbd+unix nbds nbds+unix; do
  case ",$schemes," in
    *",$s,"*) ;;
    *) fail "dm_uri_schemes=$schemes lacks $s" ;;
  esac
done
rc=0
run_dm -f -U "$(tmp_sock)" "$NDM_PLUGIN" table-text="0 8 linear /dev/sda 0" \
  2>"$NDM_TMP/stderr" || rc=$?
check_sanitizer_log "$NDM_TMP/stderr"
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "a bad device URI: nbdkit exited $rc"
expected=$(sed -E 's|,|://, |g; s|$|://|' <<<"$schemes")
grep -q -F "device '/dev/sda': expected an NBD URI ($expected)" \
  "$NDM_TMP/stderr" ||
  { fail "the bad URI error does not list '$expected'"; cat "$NDM_TMP/stderr"; }

if [ $failures -ne 0 ]; then
  cat "$out"
  exit 1
fi
