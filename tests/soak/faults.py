# SPDX-License-Identifier: BSD-3-Clause
"""The soak's faults, one after another on a seeded schedule.

Each fault is undone before the next starts (a killed server is started
again on its socket and file, a stopped one resumed, an error file
removed), so that every fault meets a device that was whole a moment
ago, and a reload always finds its devices.  What the device may do
meanwhile (fail requests, hold them) the workload checks.

Mirror legs are faulted only as mirrors.py allows (never the last leg
in sync, never a disk log's device): by the generic kill, stop and error
faults, and by the mirror fault, which also fails a leg by message.

A backing server that dies without being killed (nbdkit 1.32 aborts
when a client, here the dm server cutting a connection, hangs up with
replies pending) is started again and counted, not failed: the bug is
nbdkit's and the device must cope with a lost device anyway.

Thread model: its own thread; it stays alive until the driver releases
it, because the servers it starts die with it (PR_SET_PDEATHSIG).
"""

import os
import threading
import time

import servers
import tables


class Faults(threading.Thread):
    def __init__(self, rng, run, log, only=None):
        super().__init__(name="faults", daemon=True)
        self.only = only        # fault kinds to draw from (all if None)
        self.rng, self.run_, self.log = rng, run, log
        self.stop_ev = threading.Event()
        self.whole = threading.Event()      # every server back, no error
        self.settled = threading.Event()    # the driver compared the legs
        self.restored = threading.Event()
        self.release = threading.Event()
        self.error = None
        self.count = 0
        self.by_kind = {}
        self.unplanned = 0
        self.calm = False       # the live table is the calm one

    # ---- helpers -----------------------------------------------------------

    def sleep(self, secs):
        """Sleep, but wake early when the run ends; meanwhile watch the
        mirrors' legs fail and come back (mirrors.py)."""
        end = time.monotonic() + secs
        while not self.stop_ev.is_set():
            left = end - time.monotonic()
            if left <= 0:
                break
            self.stop_ev.wait(min(left, 0.25))
            self.run_.mirrors.poll()

    def pick(self, servers):
        """One of SERVERS a fault may hit now, or None."""
        ok = self.run_.mirrors.servers_to_fault(servers)
        return self.rng.choice(ok) if ok else None

    def ctl(self, line):
        self.log("ctl: " + line[:120])
        return servers.ctl(self.run_.ctl_sock, line)

    def watchdog(self):
        if self.run_.closing:
            return
        for s in self.run_.backing_servers():
            if not s.alive():
                self.unplanned += 1
                self.log("backing %s died unasked (status %s), restarting"
                         % (s.name, s.proc.returncode))
                s.start()

    def reload(self, text, noflush, calm=False):
        """TEXT: () -> the table, called once a core log's mirror knows
        its default leg (mirrors.py); called again after the suspend if
        that leg changed before it."""
        def quoted():
            return "'" + text().strip().replace("\n", "; ") + "'"
        mirrors = self.run_.mirrors
        suspend = "suspend" + (" --noflush" if noflush else "")
        if self.rng.random() < 0.3:
            mirrors.order_for_reload()
            self.ctl("reload " + quoted())
            self.ctl(suspend)
            if mirrors.order_for_reload():
                self.ctl("reload " + quoted())
        else:
            self.ctl(suspend)
            mirrors.order_for_reload()
            self.ctl("reload " + quoted())
        mirrors.table_replaced()
        self.sleep(self.rng.uniform(0, 0.5))
        self.ctl("resume")
        self.calm = calm

    def focus(self, server):
        """Point the workload at the data behind SERVER, so that requests
        meet the fault (and what it leaves behind: a ghost write lands
        when a stopped server resumes)."""
        self.run_.focus = tables.ranges_on(self.run_.segs,
                                           server.name.split(".")[0])

    def overwrite(self, secs=0.7):
        """For SECS, the workload writes over what was slow to complete
        (writes held by the stopped server, maybe re-sent elsewhere), so
        that a ghost of them landing later has something to overwrite."""
        self.run_.overwrite_until = time.monotonic() + secs
        self.sleep(secs)

    def sweep(self, secs=1.5):
        """Soon after a server resumes, for SECS, the workload only reads
        what was slow to write and the focus ranges: what the resumed
        server still held has landed (a ghost write, if R10 did not hold
        it back), and must be seen before new writes cover it."""
        self.sleep(0.3)
        self.run_.sweep_until = time.monotonic() + secs

    # ---- the faults --------------------------------------------------------

    def f_kill(self, s=None):
        s = s or self.pick(self.run_.backing_servers())
        if s is None:
            return self.f_reload()
        self.focus(s)
        self.run_.mirrors.note(s, "kill")
        self.log("fault: kill -9 %s" % s.name)
        s.kill()
        self.sleep(self.rng.uniform(0.1, 1.5))
        s.start()
        self.log("fault: %s restarted" % s.name)

    def f_stop(self, long_, s=None):
        s = s or self.pick(self.run_.backing_servers())
        if s is None:
            return self.f_reload()
        self.focus(s)
        self.run_.mirrors.note(s, "stop_long" if long_ else "stop")
        p = self.run_.params
        secs = (p["io-timeout"] + self.rng.uniform(0.5, 2.5) if long_
                else self.rng.uniform(0.1, 1.0))
        self.log("fault: SIGSTOP %s for %.1f s" % (s.name, secs))
        s.stop()
        if long_:
            self.overwrite()    # writes the stopped server will hold
        self.sleep(secs)
        if long_:
            self.overwrite()
        s.cont()
        self.log("fault: SIGCONT %s" % s.name)
        self.sweep()

    def f_error(self, b=None):
        if b is None:
            mirrors = self.run_.mirrors
            b = [b for b in self.run_.backings if "errors" in b.profile and
                 mirrors.may_fault(self.server_of(b))]
            if not b:
                return self.f_kill()
            b = self.rng.choice(b)
        path = self.run_.error_file(b)
        self.run_.mirrors.note(self.server_of(b), "error")
        self.log("fault: error filter on for %s" % b.name)
        open(path, "w").close()
        self.sleep(self.rng.uniform(0.2, 2.0))
        os.unlink(path)
        self.log("fault: error filter off for %s" % b.name)

    def server_of(self, b):
        return next(s for s in self.run_.servers if s.uri == b.uris[0])

    def f_mirror(self):
        """One leg of a mirror: killed, stopped (past io-timeout or not),
        behind its error filter, or failed by message; each undone."""
        mirrors = self.run_.mirrors
        legs = [self.server_of(b) for seg in mirrors.segs
                for b, _ in seg.legs]
        s = self.pick(legs)
        if s is None:
            return self.f_reload()
        seg = mirrors.seg_of(s)
        b = next(b for b, _ in seg.legs if b.uris[0] == s.uri)
        how = self.rng.choice(["kill", "stop", "stop_long", "fail_leg"] +
                              (["error"] if "errors" in b.profile else []))
        self.log("fault: mirror at %d, leg %s: %s" % (seg.start, s.name, how))
        if how == "kill":
            return self.f_kill(s)
        if how in ("stop", "stop_long"):
            return self.f_stop(how == "stop_long", s)
        if how == "error":
            return self.f_error(b)
        self.focus(s)
        mirrors.note(s, "fail_leg")
        try:
            self.ctl("message %d fail_leg %s" % (seg.start, s.uri))
        except RuntimeError as e:
            # Another leg left service since the status (the checker).
            self.log("fail_leg: %s" % e)
            return
        self.sleep(self.rng.uniform(0.5, 3))
        if self.rng.random() < 0.5:
            try:
                self.ctl("message %d reinstate_leg %s" % (seg.start, s.uri))
            except RuntimeError as e:
                # The checker may have put it back already.
                self.log("reinstate_leg: %s" % e)

    def f_reload(self):
        segs = self.run_.segs
        v = self.rng.choice(["same", "split", "calm"])
        noflush = self.rng.random() < 0.5
        text = {"same": lambda: tables.table(segs),
                "split": lambda: tables.split_table(self.rng, segs),
                "calm": lambda: tables.table(segs, calm=True)}[v]
        self.log("fault: suspend%s, reload (%s), resume"
                 % (" --noflush" if noflush else "", v))
        self.reload(text, noflush, calm=(v == "calm"))

    def f_path(self):
        mp = self.run_.mp_servers()
        s = self.rng.choice(mp)
        self.focus(s)
        how = self.rng.choice(["kill", "fail_path", "stop"])
        self.log("fault: path %s lost (%s)" % (s.name, how))
        sector = self.run_.mp_sector()
        if how == "kill":
            s.kill()
            self.sleep(self.rng.uniform(0.5, 3))
            s.start()
        elif how == "fail_path":
            self.ctl("message %d fail_path %s" % (sector, s.uri))
            self.sleep(self.rng.uniform(0.5, 3))
            try:
                self.ctl("message %d reinstate_path %s" % (sector, s.uri))
            except RuntimeError as e:
                # The checker may have reinstated it already.
                self.log("reinstate_path: %s" % e)
        else:
            s.stop()
            self.overwrite()    # writes the stopped path will hold
            self.sleep(self.run_.params["io-timeout"] +
                       self.rng.uniform(0.5, 2))
            self.overwrite()
            s.cont()
            self.sweep()
        self.log("fault: path %s back" % s.name)

    def f_all_paths(self):
        mp = self.run_.mp_servers()
        secs = self.rng.uniform(0.5, self.run_.params["no-path-timeout"])
        self.log("fault: every path lost for %.1f s" % secs)
        for s in mp:
            s.kill()
        self.sleep(secs)
        for s in mp:
            s.start()
        self.log("fault: every path back")

    def f_dust(self):
        segs = [s for s in self.run_.segs if s.target == "dust"]
        if not segs or self.calm:       # the live table has no dust now
            return self.f_reload()
        seg = self.rng.choice(segs)
        if self.rng.random() < 0.4:
            self.ctl("message %d clearbadblocks" % seg.start)
            self.ctl("message %d disable" % seg.start)
            return
        first = seg.off * 512 // seg.blksz
        last = (seg.off + seg.length) * 512 // seg.blksz
        for _ in range(self.rng.randrange(1, 6)):
            blk = self.rng.randrange(first, max(last, first + 1))
            cnt = self.rng.choice(["", " 1", " 3"])
            try:
                self.ctl("message %d addbadblock %d%s" % (seg.start, blk, cnt))
            except RuntimeError as e:
                self.log("addbadblock: %s" % e)     # already in the list
        self.ctl("message %d enable" % seg.start)

    FAULTS = [("kill", 14), ("stop", 12), ("stop_long", 6), ("error", 12),
              ("reload", 16), ("path", 14), ("all_paths", 3), ("dust", 8),
              ("mirror", 14)]

    def one(self):
        mix = [(k, w) for k, w in self.FAULTS
               if not self.only or k in self.only]
        total = sum(w for _, w in mix)
        x = self.rng.randrange(total)
        for kind, w in mix:
            if x < w:
                break
            x -= w
        {"kill": self.f_kill, "stop": lambda: self.f_stop(False),
         "stop_long": lambda: self.f_stop(True), "error": self.f_error,
         "reload": self.f_reload, "path": self.f_path,
         "all_paths": self.f_all_paths, "dust": self.f_dust,
         "mirror": self.f_mirror}[kind]()
        self.count += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1

    def restore(self):
        """Everything whole again; then, once the driver has compared the
        mirrors' legs as the faults left them (a core log's reload copies
        every region again, and would hide a stale leg), the calm table
        live."""
        for s in self.run_.backing_servers():
            if s.stopped:
                s.cont()
        for b in self.run_.backings:
            p = self.run_.error_file(b)
            if os.path.exists(p):
                os.unlink(p)
        self.watchdog()
        self.whole.set()
        self.settled.wait()
        if self.run_.closing:
            return
        # The calm table has no dust (nor flakey): no bad block survives.
        self.reload(lambda: tables.table(self.run_.segs, calm=True), False,
                    True)

    def run(self):
        try:
            while not self.stop_ev.is_set():
                self.one()
                self.watchdog()
                self.sleep(self.rng.uniform(0.1, 1.0))
            self.restore()
        except Exception as e:          # reported by the driver
            self.error = e
            self.log("faults: %r" % e)
        finally:
            self.restored.set()
        self.release.wait()
