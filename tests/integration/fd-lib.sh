# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the file-descriptor tests (test-dm-fd-*.sh): a Python
# module, fdlib, for their scripts ('from fdlib import *').  Source it
# after functions.sh:
#
#   source ./functions.sh
#   source ./fd-lib.sh
#
#   nofile(pid)           the soft and hard RLIMIT_NOFILE (strings)
#   nfds(pid)             how many fds pid has open
#   set_soft(pid, n)      set the soft RLIMIT_NOFILE (prlimit)
#   lower(pid, spare)     leave pid `spare` new fds; returns the old soft
#   read_all(hs, n)       n 4 KiB reads in flight on each handle at once;
#                         returns the errnos (0: success), handle by handle
#   settle(pid)           wait until nbdkit has ended every connection's
#                         threads (and so retired their waiters)

cat >"$NDM_TMP/py/fdlib.py" <<'EOF'
import os, subprocess, sys, time
import nbd

def nofile(pid):
    for l in open("/proc/%d/limits" % pid):
        if l.startswith("Max open files"):
            return l.split()[3:5]
    raise RuntimeError("no 'Max open files' in /proc/%d/limits" % pid)

def fds(pid):
    return [int(n) for n in os.listdir("/proc/%d/fd" % pid)]

def nfds(pid):
    return len(fds(pid))

def set_soft(pid, soft):
    subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%s:" % soft],
                   check=True)

def lower(pid, spare):
    """A new fd takes the lowest free number, and fails with EMFILE if
    that is not below the soft limit."""
    old = nofile(pid)[0]
    used = set(fds(pid))
    free = [n for n in range(max(used) + spare + 2) if n not in used]
    set_soft(pid, free[spare])
    return old

def read_all(hs, n):
    errs = [[] for h in hs]
    for h, e in zip(hs, errs):
        for j in range(n):
            h.aio_pread(nbd.Buffer(4096), j * 4096,
                        completion=lambda err, e=e: e.append(err.value) or 1)
    # Replies wait in the sockets while another handle is polled.
    for h in hs:
        while h.aio_in_flight() > 0:
            h.poll(-1)
        if h.aio_is_dead() or h.aio_is_closed():
            sys.exit("a connection was dropped: %s" % nbd.get_error())
    return [x for e in errs for x in e]

def sanitizer_thread(pid, t):
    """The TSan runtime's background thread, started with nbdkit's first
    thread and named after it like nbdkit's own: the one thread that
    blocks SIGSEGV (and every other signal it can), which no thread of
    nbdkit's does."""
    for l in open("/proc/%d/task/%s/status" % (pid, t)):
        if l.startswith("SigBlk:"):
            return int(l.split()[1], 16) & (1 << (11 - 1)) != 0
    return False

def connection_threads(pid):
    """nbdkit's threads but the main one (the plugin names its own
    threads ndm-*)."""
    n = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            comm = open("/proc/%d/task/%s/comm" % (pid, t)).read().strip()
            if comm != "nbdkit" or int(t) == pid or sanitizer_thread(pid, t):
                continue
        except OSError:
            continue            # gone meanwhile
        n += 1
    return n

def settle(pid):
    """The deadline only turns a hang into a failure that says so."""
    end = time.monotonic() + 60
    while connection_threads(pid) > 0:
        if time.monotonic() > end:
            sys.exit("the server still has %d connection threads"
                     % connection_threads(pid))
        time.sleep(0.05)
EOF
