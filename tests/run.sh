#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Install, build with AddressSanitizer and UndefinedBehaviorSanitizer in
# build-check/ and run the whole test suite (unit and integration) with
# ctest; then build with ThreadSanitizer in build-tsan/ and run the unit
# tests there (TSan cannot share a build with ASan, and the integration
# tests run in nbdkit, which it does not see into).
#
#   tests/run.sh [CTEST_ARGS...]      e.g. tests/run.sh -L unit
#
# The arguments go to both ctest runs; the TSan one adds -L unit.  Both
# stages run even if the first fails; the status is a failure if either
# did.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
status=0

"$top/tools/setup.sh" build-check -DNDM_SANITIZE=ASAN -DCMAKE_BUILD_TYPE=Debug
(cd "$top/build-check" && ctest --output-on-failure -j "$(nproc)" "$@") ||
  status=1

echo "run.sh: ThreadSanitizer: unit tests in build-tsan/" >&2
"$top/tools/setup.sh" build-tsan -DNDM_SANITIZE=TSAN -DCMAKE_BUILD_TYPE=Debug
(cd "$top/build-tsan" &&
   ctest --output-on-failure -j "$(nproc)" -L unit "$@") || status=1

exit $status
