#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Install, build with AddressSanitizer and UndefinedBehaviorSanitizer, and
# run the whole test suite (unit and integration) with ctest.
#
#   tests/run.sh [CTEST_ARGS...]      e.g. tests/run.sh -L unit
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
"$top/tools/setup.sh" build-check -DNDM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
cd "$top/build-check"
exec ctest --output-on-failure -j "$(nproc)" "$@"
