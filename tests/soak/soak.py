#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""nbd-dm fault soak: random tables, a concurrent random workload checked
against a reference model, and faults on a seeded schedule.

  soak.py --short                 the ctest 'soak' test: seeds 1 and 2,
                                  45 s of I/O each (under 3 minutes)
  soak.py --long [--seed N]       until >= 100000 requests and >= 200
                                  faults, then print the figures
  soak.py --seed N --secs S       one seed for S seconds (replay)

NDM_PLUGIN is the plugin under test, NDM_SANITIZED=1 if it was built
with ASan (as for tests/integration).  On failure the seed, the failing
request and the last events are printed, and the run's temp dir, with
every server's log and events.log, is kept.  Exit 0 pass, 1 fail, 77
skip.

Files: tables.py (layouts), model.py (what the device may hold),
workload.py (the client), faults.py (the schedule), servers.py (nbdkit
processes and the control socket), mirrors.py (mirror segments: their
state, whether a leg may be faulted, the legs compared at the end).
"""

import argparse
import collections
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mirrors     # noqa: E402
import model       # noqa: E402
import servers     # noqa: E402
import tables      # noqa: E402
from faults import Faults               # noqa: E402
from workload import Violation, Workload  # noqa: E402

MiB = 1 << 20

# Small so that faults resolve within the run: a stopped server is fenced
# after 2 s, a quarantine gives up after 3 s, the checker probes every
# second.
DM_PARAMS = {"io-timeout": 2, "fence-timeout": 3, "checker-interval": 1,
             "no-path-timeout": 4, "reconnect-delay": 200,
             "connect-timeout": 5, "flap-window": 2, "flap-damping": 1}

REPLY_BOUND = 90        # s; well past every timeout above, added up
TERM_BOUND = 20         # s for the dm server to exit on SIGTERM
IDLE_CPU = 0.75         # s of CPU the idle dm server may use in 3 s


class Run:
    """One seed: its servers, model, workload and faults."""

    def __init__(self, seed, plugin, args):
        self.seed, self.plugin, self.args = seed, plugin, args
        self.tmp = tempfile.mkdtemp(prefix="soak-%d-" % seed,
                                    dir=os.environ.get("TMPDIR", "/tmp"))
        self.events = collections.deque(maxlen=args.last)
        self.lock = threading.Lock()
        self.logf = open(os.path.join(self.tmp, "events.log"), "w")
        self.t0 = time.monotonic()
        self.log("seed %d, t0 %.3f (ops.log times are absolute)"
                 % (seed, self.t0))
        self.servers = []
        self.params = dict(DM_PARAMS)
        self.dm = None
        self.faults = None
        self.res = {}
        self.closing = False    # cleanup started: restart nothing
        self.focus = []         # set by the faults thread: [(lo, hi)]
        self.sweep_until = 0    # likewise (monotonic time)
        self.overwrite_until = 0

    def log(self, msg):
        line = "%8.3f %s" % (time.monotonic() - self.t0, msg)
        with self.lock:
            if self.logf.closed:        # the fault thread, after cleanup
                return
            self.events.append(line)
            self.logf.write(line + "\n")
            self.logf.flush()
        if self.args.verbose:
            print(line, flush=True)

    # ---- set-up ------------------------------------------------------------

    def error_file(self, b):
        return os.path.join(self.tmp, "err-" + b.name)

    def backing_servers(self):
        return [s for s in self.servers if s is not self.dm]

    def mp_servers(self):
        return [s for s in self.servers if s.name.startswith("mp.")]

    def mp_sector(self):
        return next(s.start for s in self.segs if s.target == "multipath")

    def _backing_args(self, rng, b, path, head):
        """nbdkit arguments for backing B on PATH; HEAD: bytes of the
        file before the export (nbdkit's offset filter), so that a
        table's device offsets land at offsets within offsets."""
        filters, params = [], []
        if "errors" in b.profile:
            filters.append("--filter=error")
            params += ["error=EIO", "error-rate=0.5",
                       "error-file=" + self.error_file(b)]
        if "limits" in b.profile:
            filters.append("--filter=blocksize-policy")
            params += ["blocksize-minimum=4096", "blocksize-preferred=4096",
                       "blocksize-maximum=65536",
                       "blocksize-error-policy=error"]
        if "nofua" in b.profile:
            filters.append("--filter=fua")
        if "slow" in b.profile:
            filters.append("--filter=delay")
            ms = rng.randrange(1, 10)
            params += ["delay-read=%dms" % ms, "delay-write=%dms" % ms]
        if head:
            filters.append("--filter=offset")
            params += ["offset=%d" % head]
        return filters + ["file", path] + params

    def setup(self):
        rng = random.Random(self.seed)
        nest = random.Random(self.seed * 3 + 3)
        self.backings, self.segs = tables.generate(rng)
        for b in self.backings:
            path = os.path.join(self.tmp, b.name + ".img")
            size = ((b.end + 64) * 512 + 65535) & ~65535
            # A whole number of 4 KiB blocks (blocksize-policy), odd ones.
            head = nest.choice([0, 0, 4096 * nest.randrange(1, 64, 2)])
            with open(path, "wb") as f:
                f.truncate(head + size)
            b.path, b.head = path, head
            args = self._backing_args(rng, b, path, head)
            for p in range(b.paths):
                name = b.name if b.paths == 1 else "%s.p%d" % (b.name, p)
                s = servers.Server(name, os.path.join(self.tmp, name + ".sock"),
                                   args, os.path.join(self.tmp, name + ".log"))
                self.servers.append(s)
                b.uris.append(s.uri)
            self.log("backing %s: %d sectors at byte %d of its file, %s, "
                     "%d path(s)" % (b.name, b.end, head,
                                     sorted(b.profile) or "plain", b.paths))
        mirrors.junk_legs(nest, self.segs)
        for s in self.servers:
            s.start()
        text = tables.table(self.segs, first=True)
        with open(os.path.join(self.tmp, "table"), "w") as f:
            f.write(text)
        for ln in text.splitlines():
            self.log("table: " + ln)
        self.params["connections"] = rng.randrange(1, 4)
        self.params["max-inflight"] = rng.choice(["256M", "1M"])
        self.params["max-bounce"] = rng.choice(["64M", "256K"])
        self.ctl_sock = os.path.join(self.tmp, "ctl")
        self.dm = servers.Server(
            "dm", os.path.join(self.tmp, "dm.sock"),
            [self.plugin, "table=" + os.path.join(self.tmp, "table"),
             "control=" + self.ctl_sock] +
            ["%s=%s" % kv for kv in sorted(self.params.items())],
            os.path.join(self.tmp, "dm.log"),
            servers.sanitizer_env(self.tmp))
        self.log("dm: %s" % " ".join(self.dm.args[3:]))
        self.dm.start(timeout=120)
        self.servers.append(self.dm)
        self.model = model.Model(tables.size(self.segs),
                                 tables.fixed_ranges(self.segs))
        self.mirrors = mirrors.Mirrors(self)

    # ---- the run -----------------------------------------------------------

    def sample(self):
        if not self.dm.alive():
            raise Violation("the dm server died (status %s)"
                            % self.dm.proc.returncode)
        r = self.dm.resources()
        for k, v in r.items():
            self.res.setdefault("max_" + k, v)
            self.res["max_" + k] = max(self.res["max_" + k], v)
        return r

    def run(self):
        a = self.args
        self.setup()
        self.tracef = open(os.path.join(self.tmp, "ops.log"), "w")
        wl = Workload(random.Random(self.seed * 3 + 1), self.model,
                      self.dm.uri, a.conns, a.qd, self.log, REPLY_BOUND,
                      self.tracef, lambda: self.focus,
                      lambda name: getattr(self, name),
                      mirrors.byte_ranges(self.segs))
        self.wl = wl
        self.faults = Faults(random.Random(self.seed * 3 + 2), self, self.log,
                             a.only.split(",") if a.only else None)
        self.faults.start()
        t_end = time.monotonic() + a.secs
        next_sample = time.monotonic() + 3
        while True:
            now = time.monotonic()
            if a.long:
                if wl.stats["requests"] >= a.requests and \
                   self.faults.count >= a.faults:
                    break
            elif now >= t_end:
                break
            if self.faults.error:
                raise Violation("fault thread: %s" % self.faults.error)
            wl.fill()
            wl.poll()
            if now >= next_sample:
                r = self.sample()
                if "base" not in self.res:
                    self.res["base"] = r
                # A quarter in, allocator caches (and ASan's quarantine)
                # have filled: RSS is compared with this, not the base.
                if "warm" not in self.res and (
                        wl.stats["requests"] >= a.requests / 4 if a.long
                        else now >= t_end - a.secs * 3 / 4):
                    self.res["warm"] = r
                next_sample = now + 2
        self.log("stopping faults after %d" % self.faults.count)
        self.faults.stop_ev.set()
        while not (self.faults.whole.is_set() or
                   self.faults.restored.is_set()):
            wl.poll()
        wl.drain()
        if self.faults.error:
            raise Violation("fault thread: %s" % self.faults.error)
        # The mirrors as the faults left them, then after the calm reload.
        self.mirrors.wait_in_sync(last=False)
        self.mirrors.compare_legs(last=False)
        self.faults.settled.set()
        while not self.faults.restored.is_set():
            wl.poll()
        wl.drain()
        if self.faults.error:
            raise Violation("fault thread: %s" % self.faults.error)
        self.mirrors.wait_in_sync(last=True)
        self.verify(wl)
        self.mirrors.compare_legs(last=True)
        self.finish(wl)

    def verify(self, wl):
        """The quiet pass: every byte against the model, no fault left."""
        h = wl.handles[0]
        self.log("verify: the whole device")
        verified = 0
        for seg in self.segs:
            lo, hi = seg.start * 512, (seg.start + seg.length) * 512
            if seg.target == "error":
                try:
                    h.pread(min(4096, hi - lo), lo)
                except Exception:
                    continue
                raise Violation("verify: a read of the error target at %d "
                                "succeeded" % lo)
            for a in range(lo, hi, MiB):
                b = min(a + MiB, hi)
                snap = self.model.read_start(a, b)
                deadline = time.monotonic() + 30
                while True:
                    try:
                        data = h.pread(b - a, a)
                        break
                    except Exception as e:
                        if time.monotonic() > deadline:
                            raise Violation("verify: read [%d, %d) of %s "
                                            "still fails after 30 s "
                                            "without faults: %s"
                                            % (a, b, seg.target, e))
                        time.sleep(0.2)
                try:
                    self.model.check(a, data, snap)
                except model.Mismatch as e:
                    raise Violation("verify (%s): " % seg.target +
                                    wl._mismatch(_VerifyOp(a, b), e))
                verified += b - a
        wl.stats["bytes_verified"] += verified
        self.log("verify: %d bytes match the model" % verified)

    def finish(self, wl):
        """Idle CPU, resources, then SIGTERM."""
        r0 = self.sample()
        time.sleep(3)
        r1 = self.sample()
        idle = r1["cpu_s"] - r0["cpu_s"]
        self.res["idle_cpu_s"] = idle
        self.res["end"] = r1
        base = self.res.get("base", r0)
        self.log("resources: base %s end %s max fds %d threads %d rss %d kB"
                 % (base, r1, self.res["max_fds"], self.res["max_threads"],
                    self.res["max_rss_kb"]))
        if idle > IDLE_CPU:
            raise Violation("the idle dm server used %.2f s of CPU in 3 s "
                            "(spinning?)" % idle)
        if r1["fds"] > base["fds"] + 32:
            raise Violation("fds grew from %d to %d" % (base["fds"],
                                                        r1["fds"]))
        if r1["threads"] > base["threads"] + 32:
            raise Violation("threads grew from %d to %d"
                            % (base["threads"], r1["threads"]))
        warm = self.res.get("warm", base)
        if r1["rss_kb"] > warm["rss_kb"] * 1.5 + 384 * 1024:
            raise Violation("RSS grew from %d kB (a quarter in) to %d kB"
                            % (warm["rss_kb"], r1["rss_kb"]))
        wl.close()
        t = time.monotonic()
        rc = self.dm.terminate(TERM_BOUND)
        self.res["term_s"] = time.monotonic() - t
        if rc is None:
            raise Violation("the dm server ignored SIGTERM for %d s"
                            % TERM_BOUND)
        if rc != 0:
            raise Violation("the dm server exited with status %d on SIGTERM"
                            % rc)
        if self.dm.sanitizer_report():
            raise Violation("sanitizer report in %s" % self.dm.log)

    def cleanup(self):
        self.closing = True
        if self.faults:
            self.faults.stop_ev.set()
        for s in reversed(self.servers):
            if s.proc is not None:
                s.kill()
        if self.faults:
            self.faults.stop_ev.set()
            self.faults.settled.set()
            self.faults.release.set()
        self.logf.close()
        if getattr(self, "tracef", None):
            self.tracef.close()


class _VerifyOp:
    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def __str__(self):
        return "verify read [%d, %d)" % (self.lo, self.hi)


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def run_seed(seed, plugin, args):
    r = Run(seed, plugin, args)
    t = time.monotonic()
    try:
        r.run()
    except (Violation, Exception) as e:
        replay = "--long" if args.long else "--secs %d" % args.secs
        print("SOAK FAILED: seed %d (replay: soak.py --seed %d %s)"
              % (seed, seed, replay), file=sys.stderr)
        if not isinstance(e, Violation):
            traceback.print_exc()
        print(str(e), file=sys.stderr)
        print("last events:", file=sys.stderr)
        for ln in r.events:
            print("  " + ln, file=sys.stderr)
        print("dm server log (tail):\n" + tail(r.dm.log if r.dm else ""),
              file=sys.stderr)
        if getattr(r, "mirrors", None) and r.dm.alive():
            try:
                for start, d in sorted(r.mirrors.state().items()):
                    print("mirror at sector %d: %s" % (start, json.dumps(d)),
                          file=sys.stderr)
            except (RuntimeError, OSError, ValueError) as e2:
                print("mirror status: %s" % e2, file=sys.stderr)
        print("kept: %s" % r.tmp, file=sys.stderr)
        r.cleanup()
        return None
    r.cleanup()
    wl, f = r.wl, r.faults
    out = {"seed": seed, "secs": time.monotonic() - t,
           "requests": wl.stats["requests"], "errors": wl.stats["errors"],
           "bytes_verified": wl.stats["bytes_verified"],
           "faults": f.count, "by_fault": dict(f.by_kind),
           "unplanned_restarts": f.unplanned, "by_op": wl.by_op,
           "res": r.res, "targets": sorted({s.target for s in r.segs}),
           "mirrors": r.mirrors.summary()}
    if not args.keep:
        shutil.rmtree(r.tmp, ignore_errors=True)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, action="append")
    p.add_argument("--short", action="store_true")
    p.add_argument("--long", action="store_true")
    p.add_argument("--secs", type=int, default=45)
    p.add_argument("--requests", type=int, default=100000)
    p.add_argument("--faults", type=int, default=200)
    p.add_argument("--conns", type=int, default=3)
    p.add_argument("--qd", type=int, default=8)
    p.add_argument("--last", type=int, default=40)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--only", help="fault kinds, comma-separated: " +
                   ",".join(k for k, _ in Faults.FAULTS))
    p.add_argument("--verbose", "-v", action="store_true")
    args = p.parse_args()
    plugin = os.environ.get("NDM_PLUGIN")
    if not plugin or not os.path.exists(plugin):
        sys.exit("NDM_PLUGIN must name nbdkit-dm-plugin.so")
    plugin = os.path.abspath(plugin)
    if shutil.which("nbdkit") is None:
        print("soak: skipped: no nbdkit", file=sys.stderr)
        sys.exit(77)
    seeds = args.seed or ([1, 2] if args.short else
                          [random.randrange(1, 1 << 31)])
    total = collections.Counter()
    for seed in seeds:
        print("soak: seed %d" % seed, flush=True)
        out = run_seed(seed, plugin, args)
        if out is None:
            sys.exit(1)
        print("soak: seed %d passed in %.0f s: %d requests (%d failed, as "
              "allowed), %d faults %s, %d unplanned backing restarts, "
              "%d bytes verified, 0 mismatches; targets %s"
              % (seed, out["secs"], out["requests"], out["errors"],
                 out["faults"], out["by_fault"], out["unplanned_restarts"],
                 out["bytes_verified"], out["targets"]), flush=True)
        print("soak:   ops (done, failed): %s" % out["by_op"])
        for ln in out["mirrors"]:
            print("soak:   " + ln)
        print("soak:   dm server: %s" % out["res"], flush=True)
        print("soak:   soak client max RSS: %d kB"
              % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              flush=True)
        for k in ("requests", "errors", "faults", "bytes_verified"):
            total[k] += out[k]
    print("soak: PASS: %d seed(s), %d requests, %d faults, %d bytes verified,"
          " 0 mismatches" % (len(seeds), total["requests"], total["faults"],
                             total["bytes_verified"]))


if __name__ == "__main__":
    main()
