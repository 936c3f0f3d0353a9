#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Rule mutants: each tests/mutants/*.patch breaks one clause of DESIGN.md's
# R1-R12, or puts back one fault fixed earlier.  Each is applied to a copy
# of the tree, built, and the suite must fail on it ("killed").
#
#   tests/mutants/run.sh [-k] [-n] [-w DIR] [PATTERN...]
#
#   PATTERN   run only mutants whose name contains it (all by default)
#   -w DIR    work directory (default: a new temporary one, removed at the
#             end); reusing one keeps its configured build between runs
#   -k        keep the work directory (logs: DIR/log/<mutant>.txt)
#   -n        skip the run of the whole suite on the unmutated tree
#
# On demand, not in CI: 15-20 minutes for all of them on 2 cores (see
# tests/mutants/README.md for the last figures).  Prints one line per
# mutant (killed / SURVIVED / did not apply / did not build) and
# "killed K of N"; exits 0 only if every mutant was killed.
#
# How: the tracked files of the caller's tree (as they are on disk) are
# copied once into DIR/pristine and DIR/src; DIR/build is configured once
# (ASan+UBSan Debug, as the suite runs in CI: some mutants only show as
# an ASan report).  For each mutant the patch is applied to DIR/src, the
# build rebuilds what changed, and ctest runs first the tests the patch's
# "Killed by:" line names, then the unit tests, then the integration tests,
# stopping at the first failure.  Then the files the patch touched are
# copied back from DIR/pristine (with a new mtime, so they rebuild).  The
# caller's tree is never written.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
work=
keep=false
baseline=true
while getopts "knw:" o; do
  case $o in
    k) keep=true ;;
    n) baseline=false ;;
    w) work=$OPTARG ;;
    *) sed -n '7,14p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

if [ -z "$work" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/ndm-mutants.XXXXXX")
  $keep || trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
log=$work/log
mkdir -p "$log"

mutants=()
for p in "$here"/*.patch; do
  name=$(basename "$p" .patch)
  if [ $# -eq 0 ]; then
    mutants+=("$p")
    continue
  fi
  for pat in "$@"; do
    case $name in *"$pat"*) mutants+=("$p"); break ;; esac
  done
done
if [ ${#mutants[@]} -eq 0 ]; then
  echo "run.sh: no mutant matches: $*" >&2
  exit 2
fi

# A fresh copy of the caller's tracked files, as they are on disk.
rm -rf "$work/pristine" "$work/src"
mkdir -p "$work/pristine" "$work/src"
(cd "$top" && git ls-files -z | tar --null -T - -cf -) |
  tar -xf - -C "$work/pristine"
cp -a "$work/pristine/." "$work/src/"

jobs=${NDM_MUTANTS_JOBS:-2}
# Seconds the named tests, then the unit tests, may take under a mutant
# (the unmutated unit tests take about 5 s).
limit=${NDM_MUTANTS_TIMEOUT:-60}
build=$work/build
echo "mutants: ${#mutants[@]} in $work (build: ASan Debug, -j$jobs)"
cmake -S "$work/src" -B "$build" -DNDM_SANITIZE=ASAN \
  -DCMAKE_BUILD_TYPE=Debug >"$log/configure.txt" 2>&1 ||
  { echo "run.sh: configure failed (see $log/configure.txt)" >&2; exit 2; }
if ! cmake --build "$build" -j "$jobs" >"$log/build.txt" 2>&1; then
  echo "run.sh: the unmutated tree does not build (see $log/build.txt)" >&2
  exit 2
fi
# The unmutated tree must pass, or a "killed" means nothing.
if $baseline &&
   ! (cd "$build" &&
        ctest -j "$jobs" -L '^(unit|integration)$' --output-on-failure) \
       >"$log/baseline.txt" 2>&1; then
  echo "run.sh: the unmutated tree fails its tests (see $log/baseline.txt)" >&2
  exit 2
fi

# Files a patch touches (its +++ lines).
patch_files () {
  sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$1"
}

# The ctest names on the patch's "Killed by:" lines, as one -R regex.
expected_tests () {
  sed -n '/^# Killed by:/,/^[^#]/p' "$1" |
    grep -o '\(unit\|integration\|install\)/[A-Za-z0-9_-]*' | sort -u |
    sed 's/.*/^&$/' | paste -sd'|' || true
}

# What failed in a ctest log: the test, why, and the g_test case (its
# path from TAP, or the C function of a failed assertion) if it says.
first_failure () {
  local t c
  # The last list of failed tests (a flaky one may have failed before).
  t=$(awk '/^The following tests FAILED:/ { t = ""; getline;
             sub(/^[[:space:]]*[0-9]+ - /, ""); t = $0 } END { print t }' "$1")
  c=$(sed -n -e 's/^not ok [0-9]* \(\/[^ ]*\).*/\1/p' \
             -e 's/^ERROR:[^:]*:[0-9]*:\([A-Za-z0-9_]*\):.*/\1/p' "$1" | tail -1)
  [ -n "$t" ] || t=$(sed -n 's/^run.sh: //p' "$1" | head -1)
  echo "${t:-ctest failed}${c:+ $c}"
}

restore () {
  local f
  for f in $(patch_files "$1"); do
    if [ -e "$work/pristine/$f" ]; then
      cp "$work/pristine/$f" "$work/src/$f"
    else
      rm -f "$work/src/$f"
    fi
  done
}

# run_ctest LOG LIMIT ARGS...: 0 if the tests pass.  A mutant that hangs
# a test is killed as soon as LIMIT seconds are up rather than at the
# test's own TIMEOUT (timeout(1) signals ctest's whole process group,
# servers of integration tests included).
run_ctest () {
  local out=$1 limit=$2 r=0
  shift 2
  (cd "$build" &&
     timeout -k 10 "$limit" \
       ctest -j "$jobs" --stop-on-failure --output-on-failure "$@") \
    >>"$out" 2>&1 || r=$?
  [ "$r" -ne 124 ] || echo "run.sh: ctest $* timed out after $limit s" >>"$out"
  return "$r"
}

# run_stage LOG LIMIT ARGS...: 1 if a test failed, and failed again when
# run alone (a test that fails once under load and then passes is a
# flaky test, not a kill: the stage runs again, at most twice).
run_stage () {
  local out=$1 limit=$2 try
  shift 2
  for try in 1 2; do
    run_ctest "$out" "$limit" "$@" && return 0
    grep -q "^run.sh: ctest .* timed out" "$out" && return 1
    run_ctest "$out" "$limit" --rerun-failed || return 1
    echo "run.sh: flaky: $(first_failure "$out") passed when run again" >>"$out"
    flaky=$((flaky + 1))
  done
  return 0
}

killed=0
total=0
flaky=0
start=$(date +%s)
for p in "${mutants[@]}"; do
  name=$(basename "$p" .patch)
  out=$log/$name.txt
  : >"$out"
  total=$((total + 1))
  t0=$(date +%s)
  if ! patch -d "$work/src" -p1 --no-backup-if-mismatch -s <"$p" >>"$out" 2>&1
  then
    restore "$p"
    printf '%-48s did not apply\n' "$name"
    continue
  fi
  if ! cmake --build "$build" -j "$jobs" >>"$out" 2>&1; then
    restore "$p"
    printf '%-48s did not build\n' "$name"
    continue
  fi
  by=
  re=$(expected_tests "$p")
  if [ -n "$re" ] && ! run_stage "$out" "$limit" -R "$re"; then
    by=$(first_failure "$out")
  elif ! run_stage "$out" "$limit" -L unit; then
    by=$(first_failure "$out")
  elif ! run_stage "$out" 900 -L integration; then
    by=$(first_failure "$out")
  fi
  restore "$p"
  t=$(($(date +%s) - t0))
  if [ -n "$by" ]; then
    killed=$((killed + 1))
    printf '%-48s killed by %s (%ss)\n' "$name" "$by" "$t"
  else
    printf '%-48s SURVIVED (%ss, log %s)\n' "$name" "$t" "$out"
  fi
done
# Leave the build as the unmutated tree, for the next run with -w.
cmake --build "$build" -j "$jobs" >/dev/null 2>&1 || true

[ "$flaky" -eq 0 ] ||
  echo "note: $flaky test run(s) failed once and passed when run again" \
       "(grep -l flaky $log/*.txt)"
echo "killed $killed of $total ($(($(date +%s) - start)) s)"
[ "$killed" -eq "$total" ]
