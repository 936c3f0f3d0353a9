# SPDX-License-Identifier: BSD-3-Clause
# Host side of the kernel-client tests: a throwaway qemu VM (TCG, no KVM)
# running Debian's stock kernel with a busybox initramfs, whose nbd.ko
# attaches /dev/nbdN to dm servers of the test.  Source it after
# ../integration/functions.sh:
#
#   source ../integration/functions.sh
#   source ./vm.sh
#   vm_requires
#   vm_export 10809 "$top"            # guest 10.0.2.100:10809 -> $top
#   vm_start scenario.sh              # the guest's test, run by /init
#   vm_wait 180                       # fails unless it reports PASS
#   vm_value file                     # "NBDT: file ..." lines it printed
#
# The guest reaches nothing but the ports given with vm_export and
# vm_relay: qemu's user network with restrict=on, one guestfwd rule each,
# so every connection is a socat (or relay) process of qemu's to a Unix
# socket of the test.  The guest reports on its serial console in lines
# starting "NBDT: " (guest-init.sh); the host reads them from a file.
#
# Downloads (README.md): Debian's kernel package and busybox-static with
# `apt-get download`, unpacked once into NDM_KERNEL_CACHE.

VM_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NDM_KERNEL_CACHE=${NDM_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nbd-dm/kernel}
export PATH=$PATH:/usr/sbin:/sbin
VM_GUEST_HOST=10.0.2.100
VM_RUN=$NDM_TMP/vm
VM_PID=
_vm_fwd=()

# vm_requires: skip the test (77) if qemu cannot run at all; every other
# missing piece is a failure (tools/setup.sh installs them).
vm_requires ()
{
  requires qemu-system-x86_64 --version
  local cmd

  for cmd in cpio socat xz zstd strings nbd-client mke2fs e2fsck debugfs \
             blkdiscard nbdcopy; do
    if ! command -v "$cmd" >/dev/null; then
      echo "$0: $cmd is missing: run tools/setup.sh" >&2
      exit 1
    fi
  done
  # The tests' devices and the host's checks (verify.sh).
  if ! nbdkit file --version >/dev/null 2>&1 ||
       ! $PY -c 'import nbd' 2>/dev/null; then
    echo "$0: nbdkit's file plugin or $PY's nbd module is missing:" \
         "run tools/setup.sh" >&2
    exit 1
  fi
}

# _vm_fetch PKG TAR-PATTERN...: unpack the parts of package PKG matching
# the patterns into the cache (once), print the directory.
_vm_fetch ()
{
  local pkg=$1 dir=$NDM_KERNEL_CACHE/$1 debs=$NDM_KERNEL_CACHE/debs

  shift
  if [ -e "$dir/.done" ]; then
    echo "$dir"
    return 0
  fi
  mkdir -p "$debs"
  rm -f "$debs/${pkg}"_*.deb
  if ! (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root "$pkg") >&2; then
    apt-get update -qq >&2
    (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root "$pkg") >&2
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  dpkg-deb --fsys-tarfile "$debs/${pkg}"_*.deb |
    tar -x -C "$dir" --wildcards "$@"
  rm -f "$debs/${pkg}"_*.deb
  touch "$dir/.done"
  echo "$dir"
}

# _vm_kernel_pkg: the kernel package linux-image-amd64 stands for.
_vm_kernel_pkg ()
{
  local pkg

  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
          awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
  if [ -z "$pkg" ]; then
    apt-get update -qq >&2
    pkg=$(apt-cache depends linux-image-amd64 |
            awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
  fi
  if [ -z "$pkg" ]; then
    echo "$0: apt-cache cannot resolve linux-image-amd64" >&2
    return 1
  fi
  echo "$pkg"
}

# _vm_unpack_vmlinux VMLINUZ OUT: the uncompressed ELF kernel.  Under TCG
# decompressing the bzImage costs seconds of every boot, and Debian's
# kernels (CONFIG_PVH) boot from the ELF directly.
_vm_unpack_vmlinux ()
{
  local z=$1 out=$2 magic off

  # The xz magic is cut before its NUL: bash strings cannot hold one.
  for magic in $'\xfd7zXZ:xz' $'\x28\xb5\x2f\xfd:zstd'; do
    off=$(LC_ALL=C grep -abo "${magic%:*}" "$z" | head -1 | cut -d: -f1) ||
      true
    [ -n "$off" ] || continue
    tail -c +$((off + 1)) "$z" | "${magic##*:}" -qdc >"$out.tmp" 2>/dev/null ||
      true
    if [ "$(head -c 4 "$out.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
      mv "$out.tmp" "$out"
      return 0
    fi
  done
  rm -f "$out.tmp"
}

# _vm_prepare_locked: fill the cache; sets VM_KVER, VM_BOOT, VM_KMODS,
# VM_BUSYBOX.  The caller holds the cache lock.
_vm_prepare_locked ()
{
  local pkg kdir km='./lib/modules/*/kernel' bbdir

  pkg=$(_vm_kernel_pkg)
  # Only the module trees a test loads: a fifth of the package.
  kdir=$(_vm_fetch "$pkg" './boot/vmlinuz-*' './boot/config-*' \
           "$km/fs/*" "$km/crypto/*" "$km/lib/*" "$km/drivers/block/*" \
           "$km/drivers/virtio/*" "$km/drivers/net/virtio_net.ko*" \
           "$km/drivers/net/net_failover.ko*" "$km/net/core/*")
  bbdir=$(_vm_fetch busybox-static './bin/busybox')
  VM_KVER=${pkg#linux-image-}
  VM_KMODS=$kdir/lib/modules/$VM_KVER/kernel
  VM_BUSYBOX=$bbdir/bin/busybox
  VM_BOOT=$kdir/boot/vmlinux-$VM_KVER
  if [ ! -s "$VM_BOOT" ] &&
       grep -q '^CONFIG_PVH=y' "$kdir/boot/config-$VM_KVER"; then
    _vm_unpack_vmlinux "$kdir/boot/vmlinuz-$VM_KVER" "$VM_BOOT"
  fi
  [ -s "$VM_BOOT" ] || VM_BOOT=$kdir/boot/vmlinuz-$VM_KVER
  if [ ! -f "$VM_BOOT" ] || ! compgen -G "$VM_KMODS/drivers/block/nbd.ko*" \
                                 >/dev/null; then
    echo "$0: $pkg in $NDM_KERNEL_CACHE lacks a kernel or nbd.ko" >&2
    return 1
  fi
}

# vm_prepare: download and unpack what the VM needs, once.  Tests run in
# parallel, so the cache is filled under a lock.
vm_prepare ()
{
  mkdir -p "$NDM_KERNEL_CACHE"
  exec {_vm_lock}>"$NDM_KERNEL_CACHE/.lock"
  flock "$_vm_lock"
  _vm_prepare_locked
  flock -u "$_vm_lock"
  exec {_vm_lock}>&-
}

# vm_export PORT SOCK: the guest's 10.0.2.100:PORT is the NBD server on
# Unix socket SOCK.  qemu hands the path to its option parser, glib's
# argv splitting and socat's address syntax: keep it plain.
vm_export ()
{
  case $2 in
    *[\ ,:\'\"\!]*)
      echo "$0: vm_export: socket path unusable by qemu: $2" >&2
      return 1 ;;
  esac
  _vm_fwd+=("guestfwd=tcp:$VM_GUEST_HOST:$1-cmd:socat STDIO UNIX-CONNECT:$2")
}

# vm_relay PORT CTLSOCK: the guest's 10.0.2.100:PORT answers one control
# request (a line, e.g. "status") of the dm server's control socket per
# connection: `echo status | nc 10.0.2.100 PORT` in the guest.
vm_relay ()
{
  _vm_fwd+=("guestfwd=tcp:$VM_GUEST_HOST:$1-cmd:$PY $VM_HERE/ctl-relay.py $2")
}

# vm_flag PORT FILE: the guest's 10.0.2.100:PORT prints FILE as it is at
# each connection, nothing while it does not exist: how the host tells
# the guest that it may go on (`nc 10.0.2.100 PORT` in the guest).
vm_flag ()
{
  _vm_fwd+=("guestfwd=tcp:$VM_GUEST_HOST:$1-cmd:cat $2")
}

# _vm_add_bin ROOT BIN: copy host binary BIN and its libraries into the
# initramfs ROOT.
_vm_add_bin ()
{
  local root=$1 bin=$2 lib

  cp -L "$bin" "$root/usr/local/bin/"
  if ldd "$bin" | grep -q 'not found'; then
    echo "$0: $bin: unresolved libraries" >&2
    return 1
  fi
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    if [ ! -e "$root$lib" ]; then
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    fi
  done
}

# _vm_add_module ROOT NAME: copy kernel module NAME, decompressed, after
# the modules it depends on, and list it in ROOT/lib/modules/load in
# load order.  The .deb has no modules.dep (depmod runs at install), so
# the depends= of each module's .modinfo is read here.  A module that is
# not found is built in, or the cache lacks its directory: -o (optional)
# accepts the former.
declare -A _vm_modpath=() _vm_modseen=()
_vm_add_module ()
{
  local root=$1 name=${2//-/_} optional=${3-} rel dst dep f

  [ -z "${_vm_modseen[$name]-}" ] || return 0
  _vm_modseen[$name]=1
  if [ ${#_vm_modpath[@]} -eq 0 ]; then
    while IFS= read -r f; do
      rel=${f##*/}
      rel=${rel%%.ko*}
      _vm_modpath[${rel//-/_}]=$f
    done < <(cd "$VM_KMODS" && find . -name '*.ko*' | sed 's|^\./||')
  fi
  rel=${_vm_modpath[$name]-}
  if [ -z "$rel" ]; then
    [ "$optional" = -o ] && return 0
    echo "$0: kernel module $name is not in $VM_KMODS" >&2
    return 1
  fi
  dst=$root/lib/modules/$name.ko
  case $rel in
    *.ko.xz) xz -qdc "$VM_KMODS/$rel" >"$dst" ;;
    *.ko.zst) zstd -qdc "$VM_KMODS/$rel" >"$dst" ;;
    *) cp "$VM_KMODS/$rel" "$dst" ;;
  esac
  for dep in $(strings -a "$dst" | sed -n 's/^depends=//p' | tr ',' ' '); do
    _vm_add_module "$root" "$dep"
  done
  echo "$name.ko" >>"$root/lib/modules/load"
}

# _vm_initramfs SCENARIO OUT: the guest's root: busybox, /init, the guest
# library, the scenario, the host's nbd-client and e2fsprogs, and the
# modules for the network, nbd and ext4.
_vm_initramfs ()
{
  local scenario=$1 out=$2 root=$VM_RUN/root m

  rm -rf "$root"
  mkdir -p "$root/bin" "$root/usr/local/bin" "$root/lib/modules" "$root/etc"
  cp "$VM_BUSYBOX" "$root/bin/busybox"
  cp "$VM_HERE/guest-init.sh" "$root/init"
  cp "$VM_HERE/guest-lib.sh" "$root/guest-lib.sh"
  cp "$scenario" "$root/scenario.sh"
  chmod 755 "$root/init"
  for m in nbd-client mke2fs e2fsck blkdiscard; do
    _vm_add_bin "$root" "$(command -v $m)"
  done
  # mke2fs takes ext4's features from it.
  cp /etc/mke2fs.conf "$root/etc/"
  # virtio_pci and its helpers are built into some kernels.
  for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev \
           virtio_pci; do
    _vm_add_module "$root" $m -o
  done
  # ext4 finds its checksum through the crypto API, not by depends=.
  for m in virtio_net nbd crc32c_generic ext4; do
    _vm_add_module "$root" $m
  done
  (cd "$root" && find . | cpio -o -H newc --quiet) >"$out"
}

# vm_start SCENARIO: boot the VM in the background; its /init runs the
# guest shell script SCENARIO (see guest-lib.sh) and powers off.  The VM
# is killed at exit if it still runs.
vm_start ()
{
  local netdev

  vm_prepare
  mkdir -p "$VM_RUN"
  _vm_initramfs "$1" "$VM_RUN/initrd.cpio"
  netdev=$(IFS=,; echo "user,id=n0,restrict=on,${_vm_fwd[*]}")
  VM_CONSOLE=$VM_RUN/console.log
  : >"$VM_CONSOLE"
  qemu-system-x86_64 -accel tcg -machine pc -cpu max -smp 1 -m 512 \
    -display none -monitor none -no-reboot \
    -serial "file:$VM_CONSOLE" \
    -kernel "$VM_BOOT" -initrd "$VM_RUN/initrd.cpio" \
    -append "console=ttyS0 panic=-1 quiet loglevel=4" \
    -netdev "$netdev" -device virtio-net-pci,romfile=,netdev=n0 \
    >"$VM_RUN/qemu.log" 2>&1 &
  VM_PID=$!
  VM_T0=$(date +%s)
  cleanup_fn _vm_kill
  echo "vm: booting $VM_KVER ($(basename "$VM_BOOT")), pid $VM_PID" >&2
}

_vm_kill ()
{
  if [ -n "$VM_PID" ] && alive "$VM_PID"; then
    kill "$VM_PID"
    wait "$VM_PID" 2>/dev/null || true
  fi
}

# vm_lines: the guest's report lines so far, without "NBDT: ".
vm_lines ()
{
  tr -d '\r' <"$VM_CONSOLE" | sed -n 's/^NBDT: //p'
}

# _vm_ended: the guest will report nothing more worth waiting for: it
# powered off, or its scenario failed (guest-lib.sh: fail), which it
# reports at once though it may run on until the host says done.
_vm_ended ()
{
  ! alive "$VM_PID" || vm_lines | grep -q '^FAIL: '
}

# vm_wait_line REGEX SECS: wait until the guest reports a line matching
# REGEX; fail if it ends or fails, or SECS pass first.
vm_wait_line ()
{
  local re=$1 secs=$2 i

  for ((i = 0; i < secs * 10; i++)); do
    if vm_lines | grep -E -q "$re"; then
      return 0
    fi
    if _vm_ended; then
      break
    fi
    sleep 0.1
  done
  echo "$0: the guest did not report '$re' within $secs s:" >&2
  _vm_show
  return 1
}

# vm_wait_rounds TAG N: until the guest's workload (guest-lib.sh) on
# TAG has fsynced N more rounds of files than at the last call; fail if
# the guest ends or fails first.
declare -A _vm_rounds=()
vm_wait_rounds ()
{
  local tag=$1 want i n=0

  want=$((${_vm_rounds[$tag]:-0} + $2))
  for ((i = 0; i < 1200; i++)); do
    n=$(vm_value file | grep -c "^$tag /round[0-9]*/f3 " || true)
    if [ "$n" -ge "$want" ]; then
      _vm_rounds[$tag]=$n
      return 0
    fi
    if _vm_ended; then
      break
    fi
    sleep 0.1
  done
  echo "$0: the guest's workload failed or is stuck at $n rounds," \
       "waiting for $want:" >&2
  _vm_show
  return 1
}

_vm_show ()
{
  tr -d '\r' <"$VM_CONSOLE" | grep -av '^NBDT: ' | tail -20 >&2
  cat "$VM_RUN/qemu.log" >&2
  vm_lines | sed 's/^/  guest: /' >&2
}

# vm_wait SECS: wait for the VM to power off (at most SECS from its
# start: a bound for a hang, not a timing), print its report, and fail
# unless it ends with PASS.
vm_wait ()
{
  local secs=$1

  while alive "$VM_PID"; do
    if [ $(($(date +%s) - VM_T0)) -ge "$secs" ]; then
      echo "$0: the VM still runs after $secs s, killing it" >&2
      _vm_kill
      _vm_show
      return 1
    fi
    sleep 0.2
  done
  wait "$VM_PID" 2>/dev/null || true
  VM_PID=
  if ! vm_lines | grep -q '^RESULT PASS'; then
    echo "$0: the guest did not report PASS:" >&2
    _vm_show
    return 1
  fi
  vm_lines | sed 's/^/  guest: /' >&2
  echo "vm: passed in $(($(date +%s) - VM_T0)) s" >&2
}

# vm_value WORD: the guest's report lines "WORD ...", without WORD.
vm_value ()
{
  vm_lines | sed -n "s/^$1 //p"
}
