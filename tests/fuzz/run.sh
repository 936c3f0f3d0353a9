#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Run one libFuzzer target on its seed corpus for a while.
#
#   tests/fuzz/run.sh TARGET SECONDS [LIBFUZZER_ARGS...]
#
# TARGET is table or control.  New inputs go to a temporary directory
# (the first corpus directory: libFuzzer writes there), never into
# tests/fuzz/corpus; a crash, leak or timeout (an input running over 10 s:
# a spin or a hang) fails the run and leaves its input in the directory
# the failure message names.  The last lines (executions, coverage) are
# what docs/reliability.md quotes.
#
# A long run on both cores: run.sh TARGET SECONDS -fork=2.
#
# The fuzz build: CC=clang tools/setup.sh build-fuzz -DNDM_FUZZ=ON
#   -DNDM_INTEGRATION=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
# NDM_FUZZ_BUILD_DIR says where its tests/fuzz is (default
# build-fuzz/tests/fuzz); NDM_FUZZ_ARTIFACTS where crashes go (default
# the temporary directory, kept on failure).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
target=${1:?usage: run.sh TARGET SECONDS [LIBFUZZER_ARGS...]}
seconds=${2:?usage: run.sh TARGET SECONDS [LIBFUZZER_ARGS...]}
shift 2
bin=${NDM_FUZZ_BUILD_DIR:-$top/build-fuzz/tests/fuzz}/fuzz-$target
[ -x "$bin" ] || { echo "run.sh: no $bin (build with -DNDM_FUZZ=ON)" >&2; exit 1; }
[ -d "$here/corpus/$target" ] || { echo "run.sh: no corpus for $target" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/ndm-fuzz-$target.XXXXXX")
artifacts=${NDM_FUZZ_ARTIFACTS:-$work}
mkdir -p "$work/new" "$artifacts"
echo "run.sh: fuzz-$target for $seconds s; log in $work/log" >&2
# -rss_limit_mb: ASan's shadow plus a few 8 MiB fakes stay far below it.
status=0
"$bin" "$work/new" "$here/corpus/$target" \
  -dict="$here/$target.dict" -max_total_time="$seconds" -timeout=10 \
  -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "$@" >"$work/log" 2>&1 || status=$?
# The summary: the first and last status lines (with -fork=N, the last
# "#N:" line counts the executions of every job) and the final stats.
grep -E '^#[0-9]+[[:space:]]+INITED' "$work/log" | head -n 1 || true
grep -E '^#[0-9]+(:|[[:space:]]+(DONE|pulse|NEW|REDUCE))' "$work/log" | tail -n 1 || true
grep -E '^(stat::|INFO: exiting)' "$work/log" || true
if [ "$status" -ne 0 ]; then
  echo "run.sh: fuzz-$target failed (exit $status); log and inputs in $work" >&2
  tail -n 60 "$work/log" >&2
  exit 1
fi
rm -rf "$work"
