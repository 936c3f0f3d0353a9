#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# striped + linear with qemu-img: 'qemu-img convert -n' of a random raw
# image into nbd-dm, then 'qemu-img compare' of the image against nbd-dm
# and against a copy read back with 'qemu-img convert' from it: all agree.
source ./functions.sh
requires qemu-img --version
requires nbdkit memory --version

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock)
start_nbdkit -U "$a" memory 16M
start_nbdkit -U "$b" memory 16M
# 16 MiB striped in 4 KiB chunks (qemu-img's requests span many of them),
# then 8 MiB linear on B.
start_dm "$top" "0 32768 striped 2 8 $(nbd_uri "$a") 0 $(nbd_uri "$b") 0
32768 16384 linear $(nbd_uri "$b") 16384"
uri=$(nbd_uri "$top")

src=$NDM_TMP/src.img
back=$NDM_TMP/back.img
head -c 24M /dev/urandom >"$src"
# Some zero runs in it, so qemu-img sends zero requests too.
dd if=/dev/zero of="$src" bs=64K seek=37 count=20 conv=notrunc status=none
dd if=/dev/zero of="$src" bs=1M seek=18 count=2 conv=notrunc status=none

qemu-img convert -n -f raw -O raw "$src" "$uri"
qemu-img compare -f raw -F raw "$src" "$uri"
qemu-img convert -f raw -O raw "$uri" "$back"
cmp_files "$src" "$back"
