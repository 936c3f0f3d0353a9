#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# R13, file descriptors run out: the dm server's soft RLIMIT_NOFILE is
# lowered (prlimit) below what a thread's first request needs (an
# eventfd for its waiter).  That request fails with ENOMEM; the server
# does not abort, clients whose threads already have a waiter go on being
# served, and once fds are back the same connection's next request works.
#
# First deterministically, with one thread per connection (-t 1) and no
# fd left at all; then like the reproducer, 8 clients with 16 reads each
# in flight (16 worker threads per connection) and 8 fds to spare: every
# read succeeds or fails with ENOMEM, no connection is dropped.
# Connections are made before the limit is lowered (nbdkit itself cannot
# accept one without an fd).
source ./functions.sh
source ./fd-lib.sh
requires nbdkit memory --version
requires prlimit --version
requires $PY -c 'import nbd'

a=$(tmp_sock); one=$(tmp_sock); many=$(tmp_sock)
start_nbdkit -U "$a" memory 8M
A=$(nbd_uri "$a")
start_nbdkit -dm -t 1 -U "$one" "$NDM_PLUGIN" "table-text=0 16384 linear $A 0"
one_pid=$NBDKIT_PID one_log=$NBDKIT_LOG
start_nbdkit -dm -U "$many" "$NDM_PLUGIN" "table-text=0 16384 delay $A 0 20"
many_pid=$NBDKIT_PID

# ---- one thread per connection, no fd left ----------------------------------
$PY - "$(nbd_uri "$one")" "$one_pid" <<'EOF'
import errno, sys
import nbd
from fdlib import lower, set_soft

uri, pid = sys.argv[1], int(sys.argv[2])
b = nbd.NBD(); b.connect_uri(uri)
b.pwrite(b"B" * 4096, 0)         # b's thread has its waiter now
a = nbd.NBD(); a.connect_uri(uri) # a's has none yet

def expect_enomem(what, fn, *args):
    try:
        fn(*args)
    except nbd.Error as e:
        if e.errnum != errno.ENOMEM:
            sys.exit("%s: expected ENOMEM, got %s (%s)" % (what, e.errno, e))
        return
    sys.exit("%s: succeeded without a free fd" % what)

old = lower(pid, 0)
expect_enomem("first read out of fds", a.pread, 4096, 0)
assert b.pread(4096, 0) == b"B" * 4096, "the other client's read"
b.pwrite(b"b" * 4096, 4096)
expect_enomem("second read out of fds", a.pread, 4096, 0)
expect_enomem("write out of fds", a.pwrite, b"A" * 4096, 8192)
set_soft(pid, old)
assert a.pread(4096, 4096) == b"b" * 4096, "read once fds are back"
a.pwrite(b"A" * 4096, 8192)
assert b.pread(4096, 8192) == b"A" * 4096
a.shutdown(); b.shutdown()
print("one thread per connection: ok")
EOF
alive "$one_pid"
grep -F 'eventfd: Too many open files' "$one_log" >/dev/null

# ---- 8 clients, 16 reads in flight each, 8 fds to spare --------------------
$PY - "$(nbd_uri "$many")" "$many_pid" <<'EOF'
import errno, sys
import nbd
from fdlib import lower, read_all, set_soft

uri, pid = sys.argv[1], int(sys.argv[2])
hs = []
for i in range(8):
    h = nbd.NBD(); h.connect_uri(uri); hs.append(h)
old = lower(pid, 8)
errs = read_all(hs, 16)
ok, enomem = errs.count(0), errs.count(errno.ENOMEM)
print("reads ok %d, ENOMEM %d, of %d" % (ok, enomem, len(errs)))
assert len(errs) == 8 * 16, "lost completions"
assert ok + enomem == len(errs), "other errors: %s" % sorted(set(errs))
set_soft(pid, old)
# Every connection serves again, on threads that had no waiter before too.
errs = read_all(hs, 16)
assert errs == [0] * (8 * 16), "after fds are back: %s" % sorted(set(errs))
for h in hs:
    h.shutdown()
print("many clients: ok")
EOF
alive "$many_pid"
