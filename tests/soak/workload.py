# SPDX-License-Identifier: BSD-3-Clause
"""The soak's client: a concurrent random workload checked by the model.

Several NBD connections to the dm server, each with up to QD commands in
flight (libnbd aio, one thread polls them all), so that overlapping
requests are in flight together on one connection and across them.
Every reply is checked as it comes: a read (and a block status extent
saying "reads as zeroes") against the model, an error against the
errnos the request may fail with, a request against the reply bound.

Thread model: one thread (the driver's) calls everything here.
"""

import ctypes
import errno
import select
import sys
import time

import nbd

import model

KiB, MiB = 1 << 10, 1 << 20

# Weights of the ops; an op the device does not advertise is skipped.
MIX = [("read", 34), ("write", 24), ("fua", 6), ("zero", 6), ("fastzero", 4),
       ("trim", 6), ("flush", 4), ("status", 8)]


def _buffer_refs(buf):
    return sys.getrefcount(buf._o)


def _release_buffer(buf, refs):
    """libnbd 1.14's Python aio_pread/aio_pwrite keep one reference to
    the buffer's memory that is never dropped: every request's buffer
    would leak (gigabytes in a long run).  Once the command is retired
    libnbd is done with it: drop that reference (not if a fixed libnbd
    took none)."""
    if _buffer_refs(buf) > refs:
        ctypes.pythonapi.Py_DecRef(ctypes.py_object(buf._o))


class Violation(Exception):
    """A broken promise; the message says which and where."""


class Op:
    __slots__ = ("n", "kind", "lo", "hi", "wid", "buf", "snap", "t", "conn",
                 "extents", "flags", "refs")

    def __init__(self, n, kind, lo, hi, conn):
        self.n, self.kind, self.lo, self.hi, self.conn = n, kind, lo, hi, conn
        self.wid = self.buf = self.snap = None
        self.refs = 0
        self.extents = []
        self.flags = 0
        self.t = time.monotonic()

    def __str__(self):
        s = "op %d %s [%d, %d) len %d conn %d" % (
            self.n, self.kind, self.lo, self.hi, self.hi - self.lo, self.conn)
        if self.wid is not None:
            s += " write #%d" % self.wid
        return s


class Workload:
    def __init__(self, rng, mdl, uri, conns, qd, log, reply_bound, trace,
                 focus, phase, mirrors=()):
        self.rng, self.model, self.log = rng, mdl, log
        self.mirrors = mirrors  # byte ranges where no request may fail
        self.focus = focus      # () -> byte ranges the faults point at
        self._focus, self._window = None, 0
        self.phase = phase      # (name) -> until when the phase lasts
        self.slow = []          # write ranges that took long (faults.py)
        self._sweep_pos = None
        self.trace = trace      # file: every request and reply, for replay
        self.qd, self.reply_bound = qd, reply_bound
        self.handles = []
        for _ in range(conns):
            h = nbd.NBD()
            h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
            h.connect_uri(uri)
            self.handles.append(h)
        h = self.handles[0]
        self.size = h.get_size()
        can = {"read": True, "write": True, "fua": h.can_fua(),
               "zero": h.can_zero(), "fastzero": h.can_fast_zero(),
               "trim": h.can_trim(), "flush": h.can_flush(),
               "status": h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)}
        self.mix = [(k, w) for k, w in MIX if can[k]]
        self.total = sum(w for _, w in self.mix)
        self.inflight = [dict() for _ in self.handles]
        self.n = 0
        self.hot = 0
        self.stats = {"requests": 0, "errors": 0, "bytes_verified": 0}
        self.by_op = {k: [0, 0] for k, _ in MIX}     # done, failed
        self.log("workload: %d conns, QD %d, size %d, ops %s"
                 % (conns, qd, self.size, [k for k, _ in self.mix]))

    # ---- choosing requests -------------------------------------------------

    def _range(self):
        r = self.rng
        p = r.random()
        if p < 0.4:
            n = r.randrange(1, 4 * KiB + 1)
        elif p < 0.7:
            n = r.randrange(1, 17) * 4 * KiB
        elif p < 0.9:
            n = r.randrange(64 * KiB, 512 * KiB)
        else:
            n = r.randrange(512 * KiB, 2 * MiB)
        n = min(n, self.size)
        if r.random() < 0.01:
            self.hot = r.randrange(0, self.size)
        focus = self.focus()
        if focus is not self._focus:
            # A new fault (faults.py): a window of the data behind it.
            self._focus = focus
            if focus:
                a, b = r.choice(focus)
                self._window = r.randrange(a, b)
        if focus and r.random() < 0.5:
            lo = self._window + r.randrange(0, 128 * KiB)
        elif r.random() < 0.5:
            # A hot window makes requests in flight together overlap.
            lo = self.hot + r.randrange(0, 256 * KiB)
        else:
            lo = r.randrange(0, self.size)
        if r.random() < 0.3:
            lo &= ~4095
        lo = min(lo, self.size - n)
        return lo, lo + n

    def _sweep_range(self):
        """The next piece of the focus ranges, front to back."""
        focus = self.focus()
        if self._sweep_pos is None or self._sweep_pos[0] is not focus:
            self._sweep_pos = [focus, 0, 0]
        _, i, off = self._sweep_pos
        i %= len(focus)
        a, b = focus[i]
        lo = max(a, off)
        hi = min(b, lo + 256 * KiB)
        if hi >= b:
            self._sweep_pos[1:] = [i + 1, 0]
        else:
            self._sweep_pos[1:] = [i, hi]
        return lo, hi

    def _kind(self):
        x = self.rng.randrange(self.total)
        for k, w in self.mix:
            if x < w:
                return k
            x -= w
        raise AssertionError

    # ---- issuing -----------------------------------------------------------

    def issue(self, ci):
        h = self.handles[ci]
        kind = self._kind()
        lo, hi = self._range()
        now = time.monotonic()
        if now < self.phase("overwrite_until") and self.focus():
            kind = "write"
            if self.slow and self.rng.random() < 0.5:
                lo, hi = self.rng.choice(self.slow)
            else:
                n = min(self.rng.randrange(1, 16 * KiB), self.size)
                lo = min(self._window + self.rng.randrange(0, 128 * KiB),
                         self.size - n)
                hi = lo + n
        elif now < self.phase("sweep_until") and self.focus():
            kind = "read"
            if self.slow and self.rng.random() < 0.7:
                lo, hi = self.rng.choice(self.slow)
            else:
                lo, hi = self._sweep_range()
        self.n += 1
        op = Op(self.n, kind, lo, hi, ci)
        m = self.model
        n = hi - lo
        if kind == "read":
            op.buf = nbd.Buffer(n)
            op.snap = m.read_start(lo, hi)
            op.refs = _buffer_refs(op.buf)
            cookie = h.aio_pread(op.buf, lo)
        elif kind in ("write", "fua"):
            op.wid = m.issue(kind, lo, hi, False)
            op.buf = nbd.Buffer.from_bytearray(
                bytearray(model.pattern(op.wid, lo, hi)))
            op.flags = nbd.CMD_FLAG_FUA if kind == "fua" else 0
            op.refs = _buffer_refs(op.buf)
            cookie = h.aio_pwrite(op.buf, lo, flags=op.flags)
        elif kind in ("zero", "fastzero"):
            op.wid = m.issue(kind, lo, hi, True)
            if kind == "fastzero":
                op.flags = nbd.CMD_FLAG_FAST_ZERO
            elif self.rng.random() < 0.5:
                op.flags = nbd.CMD_FLAG_NO_HOLE
            cookie = h.aio_zero(n, lo, flags=op.flags)
        elif kind == "trim":
            op.wid = m.issue("trim", lo, hi, True)
            cookie = h.aio_trim(n, lo)
        elif kind == "flush":
            op.lo = op.hi = 0
            cookie = h.aio_flush()
        else:
            op.snap = m.read_start(lo, hi)

            def extent(ctx, offset, entries, err, op=op):
                if ctx == nbd.CONTEXT_BASE_ALLOCATION:
                    op.extents.append((offset, list(entries)))
                return 0
            cookie = h.aio_block_status(n, lo, extent)
        self.inflight[ci][cookie] = op
        self.stats["requests"] += 1
        self.trace.write("%.3f > %s\n" % (op.t, op))

    def fill(self):
        for ci in range(len(self.handles)):
            while len(self.inflight[ci]) < self.qd:
                self.issue(ci)

    # ---- completing --------------------------------------------------------

    def poll(self, timeout=0.05):
        """Move bytes and check every reply that came."""
        rl, wl = [], []
        for h in self.handles:
            if h.aio_is_dead() or h.aio_is_closed():
                raise Violation("the dm server dropped an NBD connection "
                                "(crashed or hung up)")
            fd, d = h.aio_get_fd(), h.aio_get_direction()
            if d & nbd.AIO_DIRECTION_READ:
                rl.append(fd)
            if d & nbd.AIO_DIRECTION_WRITE:
                wl.append(fd)
        r, w, _ = select.select(rl, wl, [], timeout)
        for h in self.handles:
            fd = h.aio_get_fd()
            if fd in r:
                h.aio_notify_read()
            if fd in w:
                h.aio_notify_write()
        for ci, h in enumerate(self.handles):
            self._retire(ci, h)
        self._check_bound()

    def _retire(self, ci, h):
        inflight = self.inflight[ci]
        while inflight:
            try:
                cookie = h.aio_peek_command_completed()
            except nbd.Error:
                return
            if cookie <= 0:
                return
            op = inflight.pop(cookie)
            err = 0
            try:
                h.aio_command_completed(cookie)
            except nbd.Error as e:
                err = e.errnum or errno.EIO
            if op.kind in ("read", "write", "fua"):
                _release_buffer(op.buf, op.refs)
            if err and h.aio_is_dead():
                raise Violation("%s failed: the dm server dropped its "
                                "connection (crashed or hung up)" % op)
            self._check(op, err)

    def _check(self, op, err):
        m = self.model
        if op.wid is not None and time.monotonic() - op.t > 1.0:
            self.slow.append((op.lo, min(op.hi, op.lo + MiB)))
            del self.slow[:-32]
        self.trace.write("%.3f < %s: %s\n" % (time.monotonic(), op,
                                               errno.errorcode.get(err, err)
                                               if err else "ok"))
        self.by_op[op.kind][0] += 1
        if err:
            self.stats["errors"] += 1
            self.by_op[op.kind][1] += 1
            allowed = {errno.EIO}
            if op.kind == "fastzero":
                allowed.add(errno.ENOTSUP)
            if err not in allowed:
                raise Violation("%s failed with %s, expected EIO%s"
                                % (op, errno.errorcode.get(err, err),
                                   " or ENOTSUP" if op.kind == "fastzero"
                                   else ""))
            if err == errno.EIO and self._in_mirror(op):
                # The faults leave every mirror a leg in sync (mirrors.py).
                raise Violation("%s failed with EIO within a mirror"
                                % op)
            if op.wid is not None:
                m.complete(op.wid, False,
                           refused=(err == errno.ENOTSUP))
            return
        if op.kind in ("read", "status", "write", "fua", "zero", "fastzero",
                       "trim") and self._touches_error(op.lo, op.hi):
            raise Violation("%s succeeded over the error target" % op)
        if op.wid is not None:
            m.complete(op.wid, True)
        if op.kind == "read":
            data = bytes(op.buf.to_bytearray())
            self._verify(op, op.lo, data, op.snap)
        elif op.kind == "status":
            self._check_extents(op)

    def _in_mirror(self, op):
        return op.lo < op.hi and any(a <= op.lo and op.hi <= b
                                     for a, b in self.mirrors)

    def _touches_error(self, lo, hi):
        return any(v == model.FIXED_ERROR for _, _, v in
                   self.model.slices(lo, hi))

    def _verify(self, op, lo, data, snap):
        try:
            self.model.check(lo, data, snap)
        except model.Mismatch as e:
            raise Violation(self._mismatch(op, e))
        self.stats["bytes_verified"] += len(data)

    def _mismatch(self, op, e):
        m = self.model
        lines = ["%s returned data no write explains: %s" % (op, e),
                 "  at byte %d: got %s" % (e.offset, bytes(e.got).hex())]
        if isinstance(e.candidates, str):
            lines.append("  expected: %s" % e.candidates)
        else:
            for c in e.candidates:
                w = m.writes[c]
                exp = m.expected(c, e.offset, e.offset + len(e.got)) \
                    if w.lo <= e.offset < w.hi else b""
                lines.append("  candidate %s: %s" % (m.describe(c),
                                                     exp.hex()))
        owner = [m.describe(w) for w in m.writes
                 if m.writes[w].lo <= e.offset < m.writes[w].hi and
                 m.writes[w].op != "init"
                 and not m.writes[w].zero
                 and m.expected(w, e.offset, e.offset + len(e.got))
                 == bytes(e.got)]
        if owner:
            lines.append("  the bytes read are those of %s" % owner[-1])
        return "\n".join(lines)

    def _check_extents(self, op):
        pos = op.lo
        for offset, entries in op.extents:
            if offset != op.lo:
                raise Violation("%s: extents start at %d" % (op, offset))
            for i in range(0, len(entries), 2):
                length, flags = entries[i], entries[i + 1]
                a, b = pos, min(pos + length, op.hi)
                if a < b and flags & nbd.STATE_ZERO:
                    # "Reads as zeroes" is a read of zeroes, checked as one.
                    sub = ([(max(x, a), min(y, b), v)
                            for x, y, v in op.snap[0] if x < b and y > a],
                           op.snap[1])
                    self._verify(op, a, bytes(b - a), sub)
                pos += length

    def _check_bound(self):
        now = time.monotonic()
        for ci, inflight in enumerate(self.inflight):
            for op in inflight.values():
                if now - op.t > self.reply_bound:
                    raise Violation("%s: no reply after %.0f s"
                                    % (op, now - op.t))

    def pending(self):
        return sum(len(i) for i in self.inflight)

    def drain(self):
        """Wait for every reply (never hang up with replies pending:
        nbdkit 1.32 aborts)."""
        while self.pending():
            self.poll()

    def close(self):
        self.drain()
        for h in self.handles:
            h.shutdown()
        self.handles = []
