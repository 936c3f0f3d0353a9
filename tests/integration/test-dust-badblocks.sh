#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# dust, driven by messages over the control socket: a bad block added
# with addbadblock fails reads only once enabled (EIO), its neighbours
# read fine, a read straddling into it fails; a write to it succeeds and
# removes it (then reads pass and return the data); a write fail count
# makes that many writes fail first; disable bypasses the list.  Block
# numbers are the device's (the table's offset included), and the
# replies to queryblock, countbadblocks, listbadblocks and clearbadblocks
# are dm-dust's strings.
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import nbd, ndmctl'

a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_nbdkit -U "$a" memory 4M
start_nbdkit -U "$b" memory 8M
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
# dm sector 2048.. is B from its sector 1024 (512 KiB = device block 128
# of 4 KiB): device block N is at dm byte 1 MiB + (N - 128) * 4096.
start_dm "$top" "0 2048 linear $A 0
2048 4096 dust $B 1024 4096" control="$ctlsock"
nbdsh -u "$B" -c 'h.pwrite(b"\x77" * (2 << 20), 512 * 1024)'

$PY - "$(nbd_uri "$top")" "$ctlsock" "$B" <<'EOF'
import errno, sys
import nbd, ndmctl

uri, sock, B = sys.argv[1:]
MiB = 1 << 20
ctl = ndmctl.Conn(sock)

def blk(n):                     # dm byte offset of device block n
    return MiB + (n - 128) * 4096

def msg(m):
    return ctl.request(f"message 2048 {m}")

def msg_err(m, want):
    try:
        msg(m)
    except ndmctl.Error as e:
        assert want in str(e), f"message {m}: {e}"
        return
    sys.exit(f"message {m}: succeeded")

def eio(what, fn, *args):
    try:
        fn(*args)
    except nbd.Error as e:
        if e.errnum != errno.EIO:
            sys.exit(f"{what}: expected EIO, got {e.errno} ({e})")
        return
    sys.exit(f"{what}: succeeded, expected EIO")

def status():
    return ctl.request("status")[1]

h = nbd.NBD()
h.connect_uri(uri)
good = b"\x77" * 4096

assert status() == f"2048 4096 dust {B} bypass verbose", status()
assert msg("addbadblock 130") == []
assert msg("queryblock 130") == \
    ["dust_query_block: block 130 found in badblocklist"]
assert msg("queryblock 131") == \
    ["dust_query_block: block 131 not found in badblocklist"]
assert msg("countbadblocks") == ["countbadblocks: 1 badblock(s) found"]
msg_err("addbadblock 130", "block 130 already in badblocklist")

# Not enabled yet: bypass, the block reads.
assert h.pread(4096, blk(130)) == good

assert msg("enable") == []
assert status() == f"2048 4096 dust {B} fail_read_on_bad_block verbose"
eio("read of the bad block", h.pread, 4096, blk(130))
eio("512 bytes inside the bad block", h.pread, 512, blk(130) + 1024)
eio("read straddling into it", h.pread, 8192, blk(129))
assert h.pread(4096, blk(129)) == good, "block before the bad one"
assert h.pread(4096, blk(131)) == good, "block after the bad one"
assert h.pread(MiB, 0) == b"\0" * MiB, "the linear segment"
# Block numbers are the device's: dm's block 130 is not bad.
assert h.pread(4096, MiB + 130 * 4096) == good

# A write "remaps" the block: it succeeds, the block reads again.
h.pwrite(b"\x99" * 4096, blk(130))
assert h.pread(4096, blk(130)) == b"\x99" * 4096
assert msg("queryblock 130") == \
    ["dust_query_block: block 130 not found in badblocklist"]
assert msg("countbadblocks") == ["countbadblocks: 0 badblock(s) found"]
d = nbd.NBD(); d.connect_uri(B)
assert d.pread(4096, 130 * 4096) == b"\x99" * 4096, "write not on B"

# A write fail count: that many writes fail first.
assert msg("addbadblock 140 2") == []
eio("write 1 to block 140", h.pwrite, b"\x42" * 4096, blk(140))
eio("write 2 to block 140", h.pwrite, b"\x42" * 4096, blk(140))
eio("read of block 140", h.pread, 4096, blk(140))
h.pwrite(b"\x42" * 4096, blk(140))
assert h.pread(4096, blk(140)) == b"\x42" * 4096

# The list, disable, clear.
msg("addbadblock 200")
msg("addbadblock 150")
assert msg("listbadblocks") == ["150", "200"], msg("listbadblocks")
assert msg("countbadblocks") == ["countbadblocks: 2 badblock(s) found"]
assert msg("disable") == []
assert status() == f"2048 4096 dust {B} bypass verbose"
assert h.pread(4096, blk(150)) == good, "disabled, still failing"
msg("enable")
eio("read of block 150", h.pread, 4096, blk(150))
msg("removebadblock 150")
assert h.pread(4096, blk(150)) == good
msg_err("removebadblock 150", "block 150 not found in badblocklist")
assert msg("clearbadblocks") == ["dust_clear_badblocks: badblocks cleared"]
assert msg("clearbadblocks") == ["dust_clear_badblocks: no badblocks found"]
assert msg("listbadblocks") == ["No blocks in badblocklist"]
assert h.pread(4096, blk(200)) == good
msg_err("sparkle", "unrecognized message 'sparkle' received")
msg_err("queryblock", "queryblock requires an additional argument")
msg_err("addbadblock 999999", "out of range")
print("ok")
EOF

# Through the CLI, when built: the same strings.
if [ -x "$DMSETUP" ]; then
  "$DMSETUP" -c "$ctlsock" message 2048 addbadblock 300
  test "$("$DMSETUP" -c "$ctlsock" message 2048 queryblock 300)" = \
    "dust_query_block: block 300 found in badblocklist"
  test "$("$DMSETUP" -c "$ctlsock" message 4000 countbadblocks)" = \
    "countbadblocks: 1 badblock(s) found"
fi
echo ok
