#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# --dump-plugin lists what the build knows, from the core's own lists:
# every target type that has a file in core/targets/ (its name in
# dm_targets, its ops table's version in dm_target_<name>), nothing more,
# and in dm_uri_schemes the URI schemes that a bad device URI's error
# names (core/devices/uri.c; tests/unit/test-uri.c holds the man page to
# the same table).  version= is the project's, libnbd_version= the libnbd
# it runs with, and dm_debug_flags the flags nbdkit -D sets: each one
# nbdkit finds in the plugin, and in the man page's DEBUG FLAGS.
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

# The build's version, and the libnbd's.
project=$(sed -n -E 's/^project\(nbd-dm VERSION ([0-9.]+) .*/\1/p' \
            ../../CMakeLists.txt)
grep -q -x "version=$project" "$out" ||
  fail "no line version=$project (CMakeLists.txt's project version)"
libnbd=$(sed -n 's/^libnbd_version=//p' "$out")
[[ $libnbd =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
  fail "libnbd_version='$libnbd' is not a version"
if want=$(pkg-config --modversion libnbd 2>/dev/null); then
  [ "$libnbd" = "$want" ] ||
    fail "libnbd_version=$libnbd, pkg-config says $want"
fi

# Each debug flag is one nbdkit -D finds (it warns about one it does not,
# as it does here for a made-up one) and one the man page documents.
flags=$(sed -n 's/^dm_debug_flags=//p' "$out")
[ "$(tr ',' '\n' <<<"$flags" | grep -c '^dm\.')" -ge 4 ] ||
  fail "dm_debug_flags=$flags: expected at least 4 dm.* flags"
for flag in $(tr ',' ' ' <<<"$flags") dm.no-such-flag; do
  run_dm -D "$flag=1" "$NDM_PLUGIN" --dump-plugin >/dev/null \
    2>"$NDM_TMP/stderr" || fail "nbdkit -D $flag=1 --dump-plugin failed"
  check_sanitizer_log "$NDM_TMP/stderr"
  if grep -q "does not contain a global variable" "$NDM_TMP/stderr"; then
    [ "$flag" = dm.no-such-flag ] || fail "-D $flag: $(cat "$NDM_TMP/stderr")"
  else
    [ "$flag" != dm.no-such-flag ] ||
      fail "nbdkit did not warn about -D $flag (the check checks nothing)"
  fi
  [ "$flag" = dm.no-such-flag ] ||
    grep -q -x "=item B<-D $flag=1>" ../../docs/nbdkit-dm-plugin.pod ||
    fail "no '=item B<-D $flag=1>' in docs/nbdkit-dm-plugin.pod"
done
for flag in $(sed -n -E 's/^=item B<-D (dm\.[a-z_.-]+)=1>$/\1/p' \
                ../../docs/nbdkit-dm-plugin.pod); do
  case ",$flags," in
    *",$flag,"*) ;;
    *) fail "the man page documents -D $flag, dm_debug_flags=$flags lacks it" ;;
  esac
done

if [ $failures -ne 0 ]; then
  cat "$out"
  exit 1
fi
