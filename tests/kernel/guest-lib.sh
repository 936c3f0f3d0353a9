# SPDX-License-Identifier: BSD-3-Clause
# Guest side of the kernel-client tests: what a /scenario.sh calls.
# guest-init.sh sources this and then the scenario in a subshell with
# set -e, so any command that fails fails the test; report (from
# guest-init.sh) prints a line the host reads.  Scenario and library
# run under busybox ash, with the host's nbd-client, mke2fs, e2fsck and
# blkdiscard.
#
# Lines the host reads (vm.sh: vm_value WORD):
#   file <tag> <path> <md5>          a file ext4_fill wrote and fsynced
#   kept <tag> <offset> <len> <md5>  raw bytes discard_check did not discard
#   discarded <tag> <offset> <len>   the range it discarded
#   rewrote <chunk> <times> <md5>    a 64 KiB chunk rewrite wrote last

NBD_SERVER=10.0.2.100
# busybox's sh runs its own applets before PATH: the host's tools (vm.sh
# copies them) by their path.
BIN=/usr/local/bin

# fail WHY: end the scenario, saying why.
fail ()
{
  report "FAIL: $*"
  exit 1
}

# attach DEV PORT CONNECTIONS: connect nbd.ko's DEV to the host's port
# with that many connections (nbd-client's netlink interface).
attach ()
{
  local dev=$1 i=0

  $BIN/nbd-client -N "" -C "$3" "$NBD_SERVER" "$2" "$dev" ||
    fail "nbd-client $dev to port $2 with $3 connections"
  while [ "$(cat "/sys/block/${dev#/dev/}/size")" = 0 ]; do
    i=$((i + 1))
    [ $i -le 100 ] || fail "$dev: size stays 0 after nbd-client"
    sleep 0.1
  done
  report "attached $dev: port $2, $3 connections," \
    "$(blockdev --getsize64 "$dev") bytes"
}

detach ()
{
  $BIN/nbd-client -d "$1" || fail "nbd-client -d $1"
}

# drop_caches DEV: the next read of DEV or of a file on it goes to the
# server.
drop_caches ()
{
  sync
  blockdev --flushbufs "$1"
  echo 3 >/proc/sys/vm/drop_caches
}

# write_file PATH BYTES: random data, fsynced, its md5 printed.
write_file ()
{
  head -c "$2" /dev/urandom >"$1" || fail "writing $1"
  sync "$1" || fail "fsync $1"
  md5sum "$1" | cut -d' ' -f1
}

# ext4_make DEV TAG [SIZE]: a new ext4 (of SIZE, e.g. 48M, else all of
# DEV) mounted on /mnt/TAG.
ext4_make ()
{
  $BIN/mke2fs -q -F -t ext4 "$1" ${3-} || fail "mke2fs $1"
  mkdir -p "/mnt/$2"
  mount -t ext4 "$1" "/mnt/$2" || fail "mount $1"
}

# ext4_fill TAG NAME BYTES...: a file of random data per size under
# /mnt/TAG/NAME/, each fsynced; its md5 noted in /tmp/TAG.md5 and
# reported.  Odd sizes end in a partial block.
ext4_fill ()
{
  local tag=$1 dir=/mnt/$1/$2 n=0 size sum

  shift 2
  mkdir -p "$dir"
  for size in "$@"; do
    n=$((n + 1))
    sum=$(write_file "$dir/f$n" "$size")
    echo "$sum  $dir/f$n" >>"/tmp/$tag.md5"
    report "file $tag ${dir#/mnt/$tag}/f$n $sum"
  done
}

# ext4_check DEV TAG: unmount, e2fsck -fn must find nothing, then mount
# read-only with cold caches and read every file back.
ext4_check ()
{
  local dev=$1 tag=$2

  umount "/mnt/$tag" || fail "umount $dev"
  $BIN/e2fsck -fn "$dev" || fail "e2fsck -fn $dev: the file system is damaged"
  drop_caches "$dev"
  mount -t ext4 -o ro "$dev" "/mnt/$tag" || fail "mount -o ro $dev"
  md5sum -c -s "/tmp/$tag.md5" || fail "$dev: files read back differ"
  umount "/mnt/$tag"
  report "ext4 $tag on $dev: clean, $(wc -l <"/tmp/$tag.md5") files verified"
}

# ext4_test DEV TAG [SIZE]: ext4 made, filled, checked.
ext4_test ()
{
  ext4_make "$1" "$2" ${3-}
  ext4_fill "$2" data 4096 65536 1048577 2500001
  ext4_check "$1" "$2"
}

# discard_check DEV TAG OFF_MIB LEN_MIB: write random data to LEN_MIB
# at OFF_MIB (O_DIRECT), blkdiscard the first half, and read back: the
# first half is zeroes (the tests' devices punch holes), the second
# half is untouched.
discard_check ()
{
  local dev=$1 tag=$2 off=$(($3 << 20)) half=$(($4 << 19)) want got

  head -c $((half * 2)) /dev/urandom >/tmp/raw
  dd if=/tmp/raw of="$dev" bs=1M seek="$3" oflag=direct conv=fsync \
    2>/dev/null || fail "writing $dev at $3 MiB"
  $BIN/blkdiscard -f -o "$off" -l "$half" "$dev" || fail "blkdiscard $dev"
  drop_caches "$dev"
  want=$(head -c "$half" /dev/zero | md5sum | cut -d' ' -f1)
  got=$(dd if="$dev" bs=1M skip="$3" count=$(($4 / 2)) iflag=direct \
          2>/dev/null | md5sum | cut -d' ' -f1)
  [ "$got" = "$want" ] || fail "$dev: discarded range does not read as zeroes"
  want=$(tail -c "$half" /tmp/raw | md5sum | cut -d' ' -f1)
  got=$(dd if="$dev" bs=1M skip=$(($3 + $4 / 2)) count=$(($4 / 2)) \
          iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
  [ "$got" = "$want" ] || fail "$dev: blkdiscard changed the range after it"
  report "discarded $tag $off $half"
  report "kept $tag $((off + half)) $half $want"
}

# dmesg_clean: the kernel logged no I/O error, no ext4 error and no nbd
# timeout or dead connection: the stack below was invisible to it.
dmesg_clean ()
{
  local re='I/O error|blk_update_request|Buffer I/O error|EXT4-fs error'

  re="$re|EXT4-fs warning|JBD2:|nbd[0-9]+: (Connection timed out|Dead conn"
  re="$re|Receive control failed|Send control failed|Possible stuck)"
  if dmesg | grep -E "$re"; then
    fail "the kernel logged errors (above)"
  fi
}

# ctl PORT REQUEST: one control request to the dm server, through the
# host's relay (vm.sh: vm_relay); the reply's payload lines.
ctl ()
{
  echo "$2" | nc "$NBD_SERVER" "$1" >/tmp/ctl.out ||
    fail "control request '$2' on port $1"
  head -1 /tmp/ctl.out | grep -q '^ok ' ||
    fail "control request '$2': $(head -1 /tmp/ctl.out)"
  tail -n +2 /tmp/ctl.out
}

# path_state PORT URI: "A <fail count>" or "F <fail count>" for a path
# of the multipath target (its status line, docs/targets/multipath.md).
path_state ()
{
  ctl "$1" status |
    awk -v uri="$2" '{ for (i = 1; i + 2 <= NF; i++)
                         if ($i == uri) { print $(i + 1), $(i + 2); exit } }'
}

# rewrite DEV CHUNK: rewrite 64 KiB chunk number CHUNK of DEV in place
# (O_DIRECT, fsynced) with fresh random data, again and again, until
# /tmp/hold exists; then report "rewrote <chunk> <times> <md5>", the md5
# of the last write acknowledged.  An older write of the chunk that
# lands later (a ghost, R10) shows as another md5 at the end.
rewrite ()
{
  local dev=$1 chunk=$2 n=0 sum=none

  while [ ! -e /tmp/hold ]; do
    head -c 65536 /dev/urandom >"/tmp/chunk$chunk"
    dd if="/tmp/chunk$chunk" of="$dev" bs=64k seek="$chunk" oflag=direct \
      conv=fsync 2>/dev/null || fail "rewriting chunk $chunk of $dev"
    sum=$(md5sum <"/tmp/chunk$chunk" | cut -d' ' -f1)
    n=$((n + 1))
  done
  echo "$chunk $n $sum" >>/tmp/rewrote
  report "rewrote $chunk $n $sum"
}

# rewrite_check DEV: each chunk that rewrite reported reads back (cold
# caches) as its last write.
rewrite_check ()
{
  local dev=$1 chunk n sum got

  drop_caches "$dev"
  while read -r chunk n sum; do
    got=$(dd if="$dev" bs=64k skip="$chunk" count=1 iflag=direct \
            2>/dev/null | md5sum | cut -d' ' -f1)
    [ "$got" = "$sum" ] ||
      fail "$dev: chunk $chunk reads $got, its last write ($n) was $sum"
  done </tmp/rewrote
}

# workload DEV TAG PORT: while the host acts, a writer writes rounds of
# files under /mnt/TAG (ext4_fill: the last file of round N is
# /roundN/f3, what vm_wait_rounds counts), each fsynced, and four
# rewriters rewrite chunks 768-771 of DEV (past a 48 MiB file system).
# The host's flag file (vm_flag PORT) says "hold" to stop the rewriters
# and "done" to stop all; then every one of them must have succeeded.
workload ()
{
  local dev=$1 tag=$2 port=$3 pids chunk pid i=0

  (
    n=0
    while [ ! -e /tmp/stop ]; do
      n=$((n + 1))
      ext4_fill "$tag" round$n 4096 262144 1048577
    done
  ) &
  pids=$!
  for chunk in 768 769 770 771; do
    rewrite "$dev" $chunk &
    pids="$pids $!"
  done
  while :; do
    case $(nc "$NBD_SERVER" "$port" || true) in
      hold) touch /tmp/hold ;;
      done) break ;;
    esac
    i=$((i + 1))
    [ $i -le 2400 ] || fail "the host did not say done within 240 s"
    sleep 0.1
  done
  touch /tmp/hold /tmp/stop
  for pid in $pids; do
    wait $pid || fail "a writer or rewriter failed"
  done
  report "workload: $(wc -l <"/tmp/$tag.md5") files," \
    "$(wc -l </tmp/rewrote) chunks"
}
