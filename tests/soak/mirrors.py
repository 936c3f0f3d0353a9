# SPDX-License-Identifier: BSD-3-Clause
"""The soak's mirror segments (tables.py makes them): their state, read
from the control socket; which leg a fault may hit; their facts for the
summary; and, at the end, every leg's copy compared with the model.

A mirror serves while one leg is left (docs/targets/mirror.md), so the
soak never takes the last one: a fault hits a leg only while every
other leg of its mirror is in sync, and never the source of a region
out of sync (the default leg while a resync runs: the others may hold
junk there).  The workload then allows no client error on a request
within a mirror (workload.py).  The log device of a disk log is never
faulted: without keep_log a log that cannot be written is gone on
without, and its header may then name a stale leg a source after a
reload.

Thread model: state() and sleep-time polling run on the faults thread;
wait_in_sync() and compare_legs() on the driver's, after the faults
thread is done; junk_legs() before any server starts.
"""

import collections
import json
import time

import model
import servers
from workload import Violation

SECTOR = 512
SYNC_BOUND = 90         # s for every mirror to be N/N with every leg A


def byte_ranges(segs):
    """[(lo, hi)] in bytes of every mirror segment (workload.py)."""
    return [(s.start * SECTOR, (s.start + s.length) * SECTOR)
            for s in segs if s.target == "mirror"]


def junk_legs(rng, segs):
    """Random bytes over every leg but the first of the mirrors whose
    first table says neither nosync nor sync: the first resync must
    copy the first leg over them, and reads must not meet them."""
    for s in segs:
        if s.target != "mirror" or not s.garbage:
            continue
        for b, off in s.legs[1:]:
            with open(b.path, "r+b") as f:
                f.seek(b.head + off * SECTOR)
                f.write(rng.randbytes(s.length * SECTOR))


def _leg_read(b, off, length):
    with open(b.path, "rb") as f:
        f.seek(b.head + off * SECTOR)
        data = f.read(length * SECTOR)
    return data + bytes(length * SECTOR - len(data))    # sparse tail


def _diff_bytes(a, b):
    """(bytes that differ, the first of them) between A and B."""
    n, first = 0, None
    for i in range(0, len(a), 4096):
        if a[i:i + 4096] != b[i:i + 4096]:
            for j in range(i, min(i + 4096, len(a))):
                if a[j] != b[j]:
                    n += 1
                    first = j if first is None else first
    return n, first


class Mirrors:
    def __init__(self, run):
        self.run = run
        self.segs = [s for s in run.segs if s.target == "mirror"]
        self.facts = {s.start: collections.Counter() for s in self.segs}
        self.copied = {s.start: 0 for s in self.segs}   # replaced tables'
        self.last = {}          # leg URI -> state at the last poll
        self.seen_copied = {s.start: 0 for s in self.segs}
        self.settled = {}       # the state wait_in_sync() ended on

    def seg_of(self, server):
        for s in self.segs:
            if any(b.uris and b.uris[0] == server.uri for b, _ in s.legs):
                return s
        return None

    def is_log(self, server):
        return any(s.log is not None and s.log.uris[0] == server.uri
                   for s in self.segs)

    # ---- state -------------------------------------------------------------

    def state(self):
        """{start sector: the mirror's JSON detail} of the live table."""
        lines = servers.ctl(self.run.ctl_sock, "status --json")
        out = {}
        for t in json.loads(lines[0])["targets"]:
            if t["type"] == "mirror":
                out[t["start"]] = t["detail"]
        return out

    def may_fault(self, server):
        """Whether a fault may hit SERVER now (see the top)."""
        if self.is_log(server):
            return False
        seg = self.seg_of(server)
        if seg is None:
            return True
        d = self.state().get(seg.start)
        if d is None:
            return False
        for leg in d["legs"]:
            if leg["leg"] != server.uri and leg["state"] != "in_sync":
                return False
        return d["in_sync"] == d["regions"] or d["default_leg"] != server.uri

    def servers_to_fault(self, candidates):
        return [s for s in candidates if self.may_fault(s)]

    def note(self, server, what):
        seg = self.seg_of(server)
        if seg is not None:
            self.facts[seg.start][what] += 1

    def poll(self):
        """Count the legs that failed and were put back (a reinstatement)
        and the bytes copied, from one status."""
        if not self.segs:
            return
        try:
            st = self.state()
        except (RuntimeError, OSError, ValueError) as e:
            self.run.log("mirror poll: %s" % e)
            return
        for start, d in st.items():
            self.seen_copied[start] = max(self.seen_copied[start],
                                          d["resync"]["copied"])
            for leg in d["legs"]:
                was = self.last.get(leg["leg"])
                if was == "failed" and leg["state"] != "failed":
                    self.facts[start]["reinstated"] += 1
                    self.run.log("mirror %d: leg %s back (%s)"
                                 % (start, leg["leg"], leg["state"]))
                elif was not in (None, "failed") and \
                        leg["state"] == "failed":
                    self.facts[start]["failed"] += 1
                    self.run.log("mirror %d: leg %s failed: %s"
                                 % (start, leg["leg"], leg.get("reason")))
                self.last[leg["leg"]] = leg["state"]

    # ---- reloads -----------------------------------------------------------

    def order_for_reload(self):
        """Name each core log's default leg first in the next table (a
        core log's reload copies everything from its first leg).
        Returns whether an order changed."""
        st = self.state()
        changed = False
        for seg in self.segs:
            d = st.get(seg.start)
            if seg.log is not None or d is None or d["default_leg"] is None:
                continue
            first = [i for i in seg.order
                     if seg.legs[i][0].uris[0] == d["default_leg"]]
            order = first + [i for i in seg.order if i not in first]
            if order != seg.order:
                self.run.log("mirror %d: default leg %s first in the next "
                             "table" % (seg.start, d["default_leg"]))
                seg.order = order
                changed = True
        return changed

    def table_replaced(self):
        """The live table is suspended and about to be replaced: keep
        what it copied, and forget its legs' states."""
        st = self.state()
        for start, d in st.items():
            self.copied[start] += max(self.seen_copied[start],
                                      d["resync"]["copied"])
            self.seen_copied[start] = 0
            self.facts[start]["reloads"] += 1
        self.last = {}

    # ---- the end -----------------------------------------------------------

    def wait_in_sync(self, last):
        """Every mirror N/N with no leg out of service, within SYNC_BOUND
        seconds; LAST (after the calm reload): every leg in sync and A.
        Before it, a leg that missed writes without handle_errors stays
        in service out of sync (dm's D, until a reload): compare_legs
        skips it."""
        if not self.segs:
            return
        if last:
            self._resync_disk_logs()
        deadline = time.monotonic() + SYNC_BOUND
        while True:
            st = self.state()
            late = [(s, st[s.start]) for s in self.segs
                    if not self._settled(st[s.start], last)]
            if not late:
                break
            if time.monotonic() > deadline:
                s, d = late[0]
                raise Violation("mirror at sector %d not in sync %d s after "
                                "the faults%s: %d/%d: %s"
                                % (s.start, SYNC_BOUND,
                                   " and the last reload" if last else "",
                                   d["in_sync"], d["regions"],
                                   json.dumps(d)))
            time.sleep(0.2)
        self.settled = st
        if last:
            for s in self.segs:
                n = sum(l["health"] != "A" for l in st[s.start]["legs"])
                self.facts[s.start]["kept_s"] = n
        for s in self.segs:
            self.seen_copied[s.start] = max(self.seen_copied[s.start],
                                            st[s.start]["resync"]["copied"])
        self.run.log("mirrors: every one in sync%s"
                     % (", every leg A" if last else ""))

    def _resync_disk_logs(self):
        """A disk log's reload copies only what its log marks: ask for a
        full copy (the resync message), so that its legs end equal too.
        A build without the message leaves them as they are."""
        for seg in self.segs:
            if seg.log is None:
                continue
            try:
                servers.ctl(self.run.ctl_sock, "message %d resync"
                            % seg.start)
                seg.full_copy = True
            except RuntimeError as e:
                self.run.log("mirror %d: resync: %s" % (seg.start, e))

    @staticmethod
    def _settled(d, last):
        if d["in_sync"] != d["regions"]:
            return False
        if last:
            # A leg a disk log named failed at load is A again once copied,
            # as a reinstated leg.
            return all(l["state"] == "in_sync" and l["health"] == "A"
                       for l in d["legs"])
        return all(l["state"] != "failed" for l in d["legs"]) and \
            any(l["state"] == "in_sync" for l in d["legs"])

    def compare_legs(self, last):
        """Every leg's copy equals the others' and the model's, byte for
        byte (reads meet one leg: this sees them all); before the last
        reload, every leg in sync (wait_in_sync)."""
        m = self.run.model
        for seg in self.segs:
            lo, hi = seg.start * SECTOR, (seg.start + seg.length) * SECTOR
            state = {l["leg"]: l["state"]
                     for l in self.settled[seg.start]["legs"]}
            copies = [(b, off, _leg_read(b, off, seg.length))
                      for b, off in seg.legs
                      if last or state[b.uris[0]] == "in_sync"]
            skipped = len(seg.legs) - len(copies)
            if skipped:
                self.facts[seg.start]["skipped"] += skipped
                self.run.log("mirror %d: %d leg(s) out of sync in service, "
                             "not compared" % (seg.start, skipped))
            for b, off, data in copies:
                try:
                    m.check(lo, data, m.read_start(lo, hi))
                except model.Mismatch as e:
                    raise Violation(
                        "mirror at sector %d, %s reload: leg %s (byte %d "
                        "of %s) differs from the model at device byte %d "
                        "(%d into the leg's copy): got %s; legs equal "
                        "there: %s"
                        % (seg.start, "after the last" if last else
                           "before the last", b.name, b.head + off * SECTOR,
                           b.path, e.offset, e.offset - lo,
                           bytes(e.got).hex(),
                           [c[0].name for c in copies
                            if c[2][e.offset - lo:e.offset - lo + 8]
                            == data[e.offset - lo:e.offset - lo + 8]]))
            # Where two writes were in flight together the legs may have
            # taken them in different orders (as dm-raid1's and md's do):
            # each leg holds an allowed candidate, checked above, but not
            # the same one.  Only a full copy with no write in flight,
            # a core log's after the last reload, leaves them equal.
            b0, _, d0 = copies[0]
            for b, _, data in copies[1:]:
                n, at = _diff_bytes(d0, data)
                if not n:
                    continue
                if last and (seg.log is None or
                             getattr(seg, "full_copy", False)):
                    raise Violation("mirror at sector %d: legs %s and %s "
                                    "differ at device byte %d (%d bytes) "
                                    "after the last reload's full resync"
                                    % (seg.start, b0.name, b.name, lo + at,
                                       n))
                self.facts[seg.start]["diverged"] += n
                self.run.log("mirror %d: legs %s and %s hold different "
                             "candidates of the model in %d bytes, the "
                             "first at device byte %d"
                             % (seg.start, b0.name, b.name, n, lo + at))
            self.facts[seg.start]["bytes_compared"] += len(d0) * len(copies)
        if self.segs:
            self.run.log("mirrors: every leg compared equals the model")

    def summary(self):
        out = []
        for seg in self.segs:
            f = self.facts[seg.start]
            feats = ("handle_errors" if seg.handle_errors else
                     "no handle_errors") + \
                (", read_balance " + seg.balance if seg.balance else "")
            first = "nosync" if seg.nosync else \
                "junk on legs 2+" if seg.garbage else "full resync"
            out.append(
                "mirror at sector %d (%d sectors, %s log, %d legs, region %d "
                "sectors, %s, first table %s): " % (
                    seg.start, seg.length,
                    "core" if seg.log is None else "disk", len(seg.legs),
                    seg.region, feats, first) +
                "leg kills %(kill)d, stops %(stops)d (past io-timeout "
                "%(stop_long)d), fail_leg %(fail_leg)d, error filter "
                "%(error)d; legs failed %(failed)d, reinstated "
                "%(reinstated)d; reloads %(reloads)d; %(copied)d bytes "
                "resynced; %(bytes_compared)d leg bytes checked against the "
                "model, 0 mismatches (%(skipped)d legs out of sync not "
                "checked; %(diverged)d bytes where legs held different "
                "writes that were in flight together; %(kept_s)d legs "
                "in sync at the end with the S the disk log gave them)"
                % collections.Counter(f, stops=f["stop"] + f["stop_long"],
                                      copied=self.copied[seg.start] +
                                      self.seen_copied[seg.start]))
        return out
