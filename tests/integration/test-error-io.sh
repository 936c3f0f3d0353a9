#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# error target: reads, writes, zeroes, trims and block status that touch an
# error segment fail with EIO (also when they only straddle into it); the
# linear segments around it keep serving on the same connection, a flush of
# the whole device succeeds, and the server stays up.
source ./functions.sh
requires nbdkit memory --version
requires $PY -c 'import nbd'

a=$(tmp_sock); top=$(tmp_sock)
start_nbdkit -U "$a" memory 4M
start_dm "$top" "0 2048 linear $(nbd_uri "$a") 0
2048 2048 error
4096 2048 linear $(nbd_uri "$a") 2048"

$PY - "$(nbd_uri "$top")" <<'EOF'
import errno, sys
import nbd

h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(sys.argv[1])
MiB = 1 << 20
before = b"\x11" * MiB
after = b"\x22" * MiB
h.pwrite(before, 0)
h.pwrite(after, 2 * MiB)

def expect_eio(what, fn, *args):
    try:
        fn(*args)
    except nbd.Error as e:
        if e.errnum != errno.EIO:
            sys.exit(f"{what}: expected EIO, got {e.errno} ({e})")
        return
    sys.exit(f"{what}: succeeded on the error target")

expect_eio("read inside", h.pread, 4096, MiB + 8192)
expect_eio("write inside", h.pwrite, b"x" * 4096, MiB + 8192)
expect_eio("unaligned write inside", h.pwrite, b"x" * 100, MiB + 7)
expect_eio("zero inside", h.zero, 65536, MiB)
expect_eio("trim inside", h.trim, 65536, MiB)
expect_eio("read straddling in", h.pread, 8192, MiB - 4096)
expect_eio("write straddling out", h.pwrite, b"y" * 8192, 2 * MiB - 4096)
expect_eio("block status inside", h.block_status, 65536, MiB + 65536,
           lambda *a: 0)

# Neighbours still serve, on the very connection that saw the errors.  The
# straddling write may have landed on its good part; look away from it.
assert h.pread(MiB - 4096, 0) == before[:MiB - 4096], "segment 0 changed"
assert h.pread(MiB - 4096, 2 * MiB + 4096) == after[4096:], "segment 2 changed"
h.pwrite(b"z" * 4096, 0)
assert h.pread(4096, 0) == b"z" * 4096
h.flush()                       # the error target gets no flush: succeeds
h.shutdown()
print("ok")
EOF

# The server survived: a new client still gets served.
nbdsh -u "$(nbd_uri "$top")" \
  -c 'assert h.pread(4096, 2 * 1024 * 1024 + 4096) == b"\x22" * 4096'
