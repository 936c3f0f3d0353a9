# SPDX-License-Identifier: BSD-3-Clause
# Host side checks of what the guest reported (guest-lib.sh), made
# through NBD and not through the guest's kernel.  Source after vm.sh.

# verify_copy URI IMG: the whole device as a file, read through NBD.
verify_copy ()
{
  nbdcopy "$1" "$2"
}

# verify_files TAG IMG: IMG (a copy of the device) holds a clean ext4
# whose files are, byte for byte, those the guest reported writing under
# TAG: e2fsck -fn and debugfs read it on the host.
verify_files ()
{
  local tag=$1 img=$2 path sum got n=0 out

  if ! out=$(e2fsck -fn "$img" 2>&1); then
    echo "$0: $tag: e2fsck -fn on the host finds damage:" >&2
    echo "$out" >&2
    return 1
  fi
  while read -r path sum; do
    got=$(debugfs -R "cat $path" "$img" 2>/dev/null | md5sum | cut -d' ' -f1)
    if [ "$got" != "$sum" ]; then
      echo "$0: $tag: $path reads $got on the host, guest wrote $sum" >&2
      return 1
    fi
    n=$((n + 1))
  done < <(vm_value file | sed -n "s/^$tag //p")
  if [ $n -eq 0 ]; then
    echo "$0: $tag: the guest reported no files" >&2
    return 1
  fi
  echo "$tag: host read back $n files, md5 match, e2fsck clean"
}

# verify_discard TAG URI: through NBD, the range the guest discarded
# under TAG reads as zeroes and block status calls it zero (R11: the
# devices' holes pass through), and the range it kept holds its data.
verify_discard ()
{
  local tag=$1 uri=$2 off len koff klen sum

  read -r off len < <(vm_value discarded | sed -n "s/^$tag //p")
  read -r koff klen sum < <(vm_value kept | sed -n "s/^$tag //p")
  if [ -z "$off" ] || [ -z "$sum" ]; then
    echo "$0: $tag: the guest reported no discard" >&2
    return 1
  fi
  $PY - "$uri" "$off" "$len" "$koff" "$klen" "$sum" <<'EOF'
import hashlib, sys
import nbd

uri = sys.argv[1]
off, length, koff, klen = map(int, sys.argv[2:6])
want = sys.argv[6]
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(uri)
if h.pread(length, off) != bytes(length):
    sys.exit(f"{uri}: discarded range {off}+{length} is not zeroes")
got = hashlib.md5(h.pread(klen, koff)).hexdigest()
if got != want:
    sys.exit(f"{uri}: kept range {koff}+{klen} reads {got}, guest wrote {want}")
# A reply may cover less than was asked: ask again from where it ends.
pos, end = off, off + length
while pos < end:
    got = []
    h.block_status(end - pos, pos,
                   lambda meta, start, entries, err: got.append(entries) or 0)
    for n, flags in zip(got[0][0::2], got[0][1::2]):
        if not flags & nbd.STATE_ZERO:
            sys.exit(f"{uri}: block status calls {pos}+{n} of the discarded"
                     f" range data (flags {flags})")
        pos += n
        if pos >= end:
            break
h.shutdown()
EOF
  echo "$tag: host sees the discarded $len bytes as zeroes (data and block" \
       "status), the $klen after them intact"
}

# verify_rewrites IMG: each 64 KiB chunk the guest's rewrite reported
# holds its last write in IMG (a backing file), not an older one.
verify_rewrites ()
{
  local img=$1 chunk n sum got count=0

  while read -r chunk n sum; do
    got=$(dd if="$img" bs=64k skip="$chunk" count=1 2>/dev/null | md5sum |
            cut -d' ' -f1)
    if [ "$got" != "$sum" ]; then
      echo "$0: chunk $chunk holds $got, its last write ($n) was $sum:" \
           "an older write landed after it (R10)" >&2
      return 1
    fi
    count=$((count + 1))
  done < <(vm_value rewrote)
  if [ $count -eq 0 ]; then
    echo "$0: the guest reported no rewritten chunk" >&2
    return 1
  fi
  echo "rewrites: $count chunks hold their last write"
}
