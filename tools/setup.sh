#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Install what nbd-dm needs on Debian 12 (only what is missing), then
# configure and build.
#
#   tools/setup.sh [BUILD_DIR [CMAKE_ARGS...]]     (default BUILD_DIR: build)
#
# Run as root, or as a user who may sudo apt-get.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
shift || true
case $build in /*) ;; *) build=$top/$build ;; esac

# Every command the tests, the demo and the commands it prints use, beyond
# Debian's essential set (coreutils, diffutils, grep, sed, mawk, bash):
# a missing one fails or skips a test, or breaks the demo, on a fresh machine.
packages=(
  build-essential cmake pkg-config          # the build; its gcc-12 brings
                                            # libasan8, libubsan1, libtsan2
  libglib2.0-dev libnbd-dev nbdkit-plugin-dev
  libjson-glib-dev libmicrohttpd-dev        # the control plane's JSON,
                                            # nbd-dmsetup show; metrics=
  python3-prometheus-client                 # tests parse stats' OpenMetrics
  bash-completion                           # nbd-dmsetup's: its install dir,
                                            # test-control-completion
  nbdkit libnbd-bin python3 python3-libnbd  # nbdkit, nbdinfo/nbdcopy, nbdsh
  file                                      # nbdinfo URI probes content with it
  qemu-utils fio socat                      # tests, demo, benchmarks
  perl                                      # pod2man, podchecker
  libpod-markdown-perl                      # pod2markdown: docs/*.md check
  systemd                                   # systemd-analyze: the example unit
                                            # systemd-socket-activate: the
                                            # socket-activated example
  dpkg-dev                                  # cpack -G DEB: dpkg-shlibdeps
  man-db groff-base                         # tests/install: man -l renders
  qemu-system-x86 cpio xz-utils zstd        # tests/kernel: the VM, its
  binutils nbd-client e2fsprogs             # initramfs, its guest tools
  clang libclang-rt-14-dev                  # tests/fuzz: libFuzzer (clang's
                                            # runtime is only recommended)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cmake -S "$top" -B "$build" "$@" >/dev/null
cmake --build "$build" -j "$(nproc)"
