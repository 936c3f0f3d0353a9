#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Install what is missing, then build and run every test stage (the
# README's test command; CI runs it unchanged).  Each stage builds what it
# needs and runs one ctest selection:
#
#   asan    build-check/ (AddressSanitizer + UndefinedBehaviorSanitizer):
#           unit, integration, install and docs tests
#   soak    build-check/: the short seeded fault soak (tests/soak)
#   kernel  build-check/: the kernel's NBD client in a qemu VM
#           (tests/kernel)
#   tsan    build-tsan/ (ThreadSanitizer cannot share a build with ASan):
#           unit and integration tests, nbdkit loading the TSan-built
#           plugin (tests/tsan/README.md)
#   fuzz    build-fuzz/ (clang, libFuzzer): each fuzzer for 60 s
#           (tests/fuzz)
#
#   tests/run.sh [CTEST_ARGS...]      e.g. tests/run.sh -R striped
#   NDM_STAGES="asan tsan" tests/run.sh    only those stages
#
# The arguments go to every stage's ctest.  Every stage runs even if an
# earlier one failed; the status is a failure if any did.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
stages=${NDM_STAGES:-asan soak kernel tsan fuzz}
status=0
summary=()

# stage NAME BUILD_DIR "CMAKE_ARGS" CTEST_LABEL_ARGS... -- CTEST_ARGS...
stage() {
  local name=$1 build=$2 cmake_args=$3 t0 rc=0
  shift 3
  case " $stages " in *" $name "*) ;; *) return 0 ;; esac
  echo "run.sh: stage $name: ctest $* in $build/" >&2
  t0=$(date +%s)
  # shellcheck disable=SC2086  # the cmake arguments are words
  "$top/tools/setup.sh" "$build" $cmake_args || rc=$?
  if [ $rc -eq 0 ]; then
    (cd "$top/$build" && ctest --output-on-failure -j "$(nproc)" "$@") ||
      rc=$?
  fi
  [ $rc -eq 0 ] || status=1
  summary+=("$name: $([ $rc -eq 0 ] && echo passed || echo FAILED) in $(($(date +%s) - t0)) s")
}

asan="-DNDM_SANITIZE=ASAN -DCMAKE_BUILD_TYPE=Debug"
stage asan build-check "$asan" -LE 'soak|kernel|fuzz' "$@"
stage soak build-check "$asan" -L soak "$@"
stage kernel build-check "$asan" -L kernel "$@"
stage tsan build-tsan "-DNDM_SANITIZE=TSAN -DCMAKE_BUILD_TYPE=Debug" \
  -L 'unit|integration' "$@"
stage fuzz build-fuzz "-DCMAKE_C_COMPILER=clang -DNDM_FUZZ=ON \
  -DNDM_INTEGRATION=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo" -L fuzz "$@"

printf 'run.sh: %s\n' "${summary[@]}" >&2
exit $status
