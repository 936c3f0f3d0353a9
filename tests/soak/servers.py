# SPDX-License-Identifier: BSD-3-Clause
"""The soak's nbdkit servers: start, kill, stop, resume, watch.

Every server is 'nbdkit -f' on a Unix socket in the run's temp dir, a
child of the soak, with its stderr in a log there.  nbdkit sets
PR_SET_PDEATHSIG, so a server dies with the thread that started it: the
driver starts servers only from threads that live to the end of the run.

The dm server (the plugin under test) gets the sanitizer environment of
tests/integration/functions.sh when the plugin was built with ASan: the
runtimes preloaded, and the swift_demangle shim explained there.
"""

import os
import signal
import socket
import subprocess
import time

import nbd

SANITIZER_RE = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                "runtime error:")


def sanitizer_env(tmp):
    """Environment for the dm server: {} unless NDM_SANITIZED=1."""
    if os.environ.get("NDM_SANITIZED") != "1":
        return {}
    shim = os.path.join(tmp, "swift-demangle-shim.so")
    if not os.path.exists(shim):
        src = ("#include <stddef.h>\n#include <stdint.h>\n"
               "char *swift_demangle (const char *m, size_t n, char *o,"
               " size_t *on, uint32_t f) { return NULL; }\n")
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", shim, "-x", "c", "-"],
                       input=src.encode(), check=True)

    def lib(name):
        return subprocess.run(["gcc", "-print-file-name=" + name],
                              capture_output=True, text=True,
                              check=True).stdout.strip()
    return {
        "LD_PRELOAD": "%s %s %s" % (lib("libasan.so"), lib("libubsan.so"),
                                    shim),
        "ASAN_OPTIONS": "halt_on_error=1:abort_on_error=0:detect_leaks=0",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    }


def uri(sock):
    return "nbd+unix:///?socket=" + sock


class Server:
    """One nbdkit process on SOCK; ARGS after 'nbdkit -f -U SOCK'."""

    def __init__(self, name, sock, args, log, env=None):
        self.name, self.sock, self.args, self.log = name, sock, args, log
        self.env = env or {}
        self.proc = None
        self.stopped = False

    @property
    def uri(self):
        return uri(self.sock)

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=60):
        """Start it and wait until it answers a handshake."""
        if os.path.exists(self.sock):
            os.unlink(self.sock)        # a killed server's stale socket
        env = dict(os.environ)
        env.update(self.env)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["nbdkit", "-f", "-U", self.sock] + self.args,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=log, env=env)
        self.stopped = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s died at start-up (status %s), log %s"
                                   % (self.name, self.proc.returncode,
                                      self.log))
            if os.path.exists(self.sock) and self._answers():
                return
            time.sleep(0.05)
        raise RuntimeError("%s did not answer on %s within %d s"
                           % (self.name, self.sock, timeout))

    def _answers(self):
        h = nbd.NBD()
        try:
            h.connect_unix(self.sock)
            h.get_size()
            h.shutdown()
            return True
        except nbd.Error:
            return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            if self.stopped:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        self.stopped = False

    def stop(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def cont(self):
        self.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def terminate(self, timeout):
        """SIGTERM; returns the exit status, or None if it did not exit
        within TIMEOUT seconds (then it is killed)."""
        if not self.alive():
            return self.proc.returncode
        if self.stopped:
            self.cont()
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def sanitizer_report(self):
        with open(self.log, errors="replace") as f:
            text = f.read()
        return any(r in text for r in SANITIZER_RE)

    # ---- resources (the dm server's) -----------------------------------

    def resources(self):
        """{fds, threads, rss_kb, cpu_s} of the running process."""
        pid = self.pid
        fds = len(os.listdir("/proc/%d/fd" % pid))
        status = {}
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                k, _, v = ln.partition(":")
                status[k] = v.split()
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return {"fds": fds, "threads": int(status["Threads"][0]),
                "rss_kb": int(status["VmRSS"][0]),
                "cpu_s": (int(fields[11]) + int(fields[12])) / tick}


def ctl(sock, line, timeout=120):
    """One control request (include/nbd-dm/control.h): the payload lines
    of 'ok N', or RuntimeError with the 'error' message."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock)
        s.sendall((line + "\n").encode())
        f = s.makefile("rb")
        head = f.readline().decode(errors="replace").rstrip("\n")
        if head.startswith("error "):
            raise RuntimeError("control %r: %s" % (line[:80], head))
        word, _, n = head.partition(" ")
        if word != "ok" or not n.isdigit():
            raise RuntimeError("control %r: bad reply %r" % (line[:80], head))
        return [f.readline().decode(errors="replace").rstrip("\n")
                for _ in range(int(n))]
    finally:
        s.close()
