#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# build-release.sh DIR: configure and build this tree in DIR as a user
# would (Release, no sanitizers, no tests), with the default install
# prefix: the build the install/ tests install, package and run.  DIR is
# kept, so a second run only rebuilds what changed.
set -euo pipefail

dir=$1
src=$(cd "$(dirname "$0")/../.." && pwd)
nice cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=Release \
  -DNDM_SANITIZE=OFF -DBUILD_TESTING=OFF -DNDM_INTEGRATION=OFF >/dev/null
nice cmake --build "$dir" -j 2
