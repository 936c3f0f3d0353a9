# SPDX-License-Identifier: BSD-3-Clause
# ctl-relay.py CTLSOCK: one control request for the test VM.  qemu runs
# it per guest connection (vm.sh: vm_relay) with the connection on stdin
# and stdout: it reads one request line, sends it to the dm server's
# control socket CTLSOCK, writes the whole reply ("ok N" and N lines, or
# "error ...") back and exits, which closes the guest's connection.
# The guest's busybox nc does not half-close, so the request cannot be
# relayed as a byte stream until EOF.
import socket
import sys

line = sys.stdin.buffer.readline()
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
    s.settimeout(30)
    s.connect(sys.argv[1])
    s.sendall(line if line.endswith(b"\n") else line + b"\n")
    f = s.makefile("rb")
    head = f.readline()
    out = [head]
    word, _, n = head.decode(errors="replace").strip().partition(" ")
    if word == "ok" and n.isdigit():
        out += [f.readline() for _ in range(int(n))]
sys.stdout.buffer.write(b"".join(out))
sys.stdout.flush()
