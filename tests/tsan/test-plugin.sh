#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The TSan build's plugin as the integration tests run it (README.md):
# the integration tests passing clean means something only if all of
# this holds, and none of it would show as a failure there.
#   - every call the plugin makes to a wrapped GLib function goes through
#     its wrapper in glib-tsan.c (--wrap took in the shared object);
#   - the plugin is instrumented;
#   - a race in the plugin, in nbdkit with the runtime preloaded, is
#     reported, ends the server and fails check_sanitizer_log (the
#     NDM_TSAN_CANARY race of glib-tsan.c); without it, nothing is.
# Environment (tests/tsan/CMakeLists.txt): functions.sh's, and
# NDM_TSAN_WRAPPED, the wrapped functions.
source ./functions.sh
if [ "$NDM_SANITIZER" != tsan ]; then
  echo "$0: skipped: the plugin is not built with TSan" >&2
  exit 77
fi
: "${NDM_TSAN_WRAPPED:?the wrapped GLib functions (run via ctest)}"
requires objdump --version

# "CALLER CALLEE" for each call in the plugin to a function of GLib's or to
# a wrapper.
objdump -d --no-show-raw-insn "$NDM_PLUGIN" |
  awk '/^[0-9a-f]+ <[^>]*>:$/ { fn = substr($2, 2, length($2) - 3) }
       /call.*<(__wrap_)?g_[a-z_]*(@plt)?>$/ {
         callee = $NF; gsub(/[<>]|@plt/, "", callee); print fn, callee }' |
  sort -u >"$NDM_TMP/calls"

fail=0
for f in $NDM_TSAN_WRAPPED; do
  bad=$(awk -v f="$f" '$2 == f && $1 != "__wrap_" f { print $1 }' \
          "$NDM_TMP/calls")
  if [ -n "$bad" ]; then
    echo "$0: $f called unwrapped from:" $bad >&2
    fail=1
  fi
done
# What the core must use through the wrappers (if one of these has no
# caller, the list above checks nothing for it).
for f in g_mutex_lock g_mutex_unlock g_cond_wait g_once_impl; do
  if ! awk -v f="__wrap_$f" '$2 == f { found = 1 } END { exit !found }' \
         "$NDM_TMP/calls"; then
    echo "$0: nothing in the plugin calls __wrap_$f" >&2
    fail=1
  fi
done
nm -D --undefined-only "$NDM_PLUGIN" >"$NDM_TMP/undefined"
if ! grep -q ' __tsan_func_entry$' "$NDM_TMP/undefined"; then
  echo "$0: $NDM_PLUGIN is not instrumented (no __tsan_func_entry)" >&2
  fail=1
fi

# The canary: reported, the server ends with TSan's status, the log check
# fails on it.
rc=0
NDM_TSAN_CANARY=1 run_dm "$NDM_PLUGIN" --dump-plugin \
  >/dev/null 2>"$NDM_TMP/canary.log" || rc=$?
if [ $rc -ne 66 ]; then
  echo "$0: the canary race: nbdkit exited with $rc, expected 66:" >&2
  cat "$NDM_TMP/canary.log" >&2
  fail=1
fi
if check_sanitizer_log "$NDM_TMP/canary.log" 2>/dev/null; then
  echo "$0: check_sanitizer_log passed the canary's report:" >&2
  cat "$NDM_TMP/canary.log" >&2
  fail=1
fi
grep -q "tsan_canary .*glib-tsan.c" "$NDM_TMP/canary.log" || {
  echo "$0: the report does not name the canary in the plugin" >&2
  fail=1
}

# And without it, a plugin loaded and run in nbdkit reports nothing.
run_dm "$NDM_PLUGIN" --dump-plugin >/dev/null 2>"$NDM_TMP/clean.log" || {
  echo "$0: nbdkit --dump-plugin failed:" >&2
  cat "$NDM_TMP/clean.log" >&2
  fail=1
}
check_sanitizer_log "$NDM_TMP/clean.log" || fail=1
exit $fail
