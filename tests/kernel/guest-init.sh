#!/bin/busybox sh
# SPDX-License-Identifier: BSD-3-Clause
# PID 1 of the kernel-client test VM (vm.sh builds it into the initramfs
# as /init).  It mounts the kernel's file systems, loads the modules
# listed in /lib/modules/load, brings up the network qemu's guestfwd
# rules answer on, runs the test's /scenario.sh (with guest-lib.sh), and
# powers off: qemu exits with it.
#
# It reports on the serial console, in lines starting "NBDT: " that the
# host reads (vm.sh): "RESULT PASS" or "RESULT FAIL <why>" last.  The
# scenario runs in a subshell, so its "set -e" or exit cannot end PID 1
# (which would panic the kernel instead of reporting).
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /mnt /bin /sbin /usr/bin \
  /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu

report ()
{
  echo "NBDT: $*" >/dev/console
}

# end PASS|FAIL [WHY]: the last report; with FAIL, what the kernel said
# about block devices first.
end ()
{
  if [ "$1" != PASS ]; then
    dmesg | grep -iE 'nbd|error|blk_|ext4|jbd2' | tail -40 |
      sed 's/^/NBDT: dmesg| /' >/dev/console
  fi
  report "RESULT $*"
  report "uptime $(cut -d' ' -f1 /proc/uptime)"
  sync
  poweroff -f
  sleep 10
}

report "init, kernel $(uname -r), uptime $(cut -d' ' -f1 /proc/uptime)"
while read -r m; do
  insmod "/lib/modules/$m" || end FAIL "insmod $m"
done </lib/modules/load

ip link set lo up
ip link set eth0 up || end FAIL "no eth0"
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
# A SYN sent before the link has carrier is lost, and TCP retries it only
# a second later.
i=0
while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ]; do
  i=$((i + 1))
  [ $i -le 100 ] || end FAIL "eth0 has no carrier"
  sleep 0.05
done

# Not in an if: the shell ignores set -e in a condition, subshells too.
(set -e; . /guest-lib.sh; . /scenario.sh) >/tmp/scenario.log 2>&1
rc=$?
if [ $rc = 0 ]; then
  end PASS
fi
sed 's/^/NBDT: log| /' /tmp/scenario.log | tail -60 >/dev/console
end FAIL "scenario exited with status $rc"
