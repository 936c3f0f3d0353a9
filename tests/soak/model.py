# SPDX-License-Identifier: BSD-3-Clause
"""The reference model of the soak: what each byte of the device may hold.

Every write-like request (write, FUA write, zero, fast zero, trim) gets
an id when it is issued.  Its data is a pattern of (id, absolute byte
offset), so the bytes any write put anywhere can be recomputed from its
id alone, and no two writes ever put the same 8 bytes at one place.

Per byte the model keeps the set of writes the byte may hold now (its
candidates), as an interval map of frozensets.  The rules, from
docs/design.md (R1, R2, R10):

- issue of W: W joins the candidates of its range (it may land any time);
- acknowledgement of W: the candidates of its range become W plus those
  whose write had not completed before W was issued: a write that
  completed (either way) before W was issued can never land over W (R10
  for failed ones), one in flight beside W may;
- failure of W: nothing changes, W stays a candidate ("either") until an
  acknowledged later write covers it;
- a trim is a write of zeroes whose acknowledgement removes nothing
  (trim is advisory: each byte reads zero or what it held);
- a fast zero refused with ENOTSUP wrote nothing: it leaves the set.

A read must return, per byte, the pattern of one candidate that the byte
had at some moment between the read's issue and its reply: the
candidates when it was issued plus any write issued while it ran.

The device's zero and error targets are fixed ranges: zero reads zeroes
and ignores writes, error fails every read.

Thread model: used by the soak's I/O thread only.
"""

import bisect
from array import array

# Fixed ranges.  They are never split into candidate sets.
FIXED_ZERO = "zero-target"
FIXED_ERROR = "error-target"

# The device's initial content: the backing files are created sparse.
INIT = 0


class Write:
    """One write-like request, as the model knows it."""

    __slots__ = ("wid", "op", "lo", "hi", "zero", "issued", "done", "ok")

    def __init__(self, wid, op, lo, hi, zero, issued):
        self.wid, self.op, self.lo, self.hi = wid, op, lo, hi
        self.zero = zero        # its bytes are zeroes, not a pattern
        self.issued = issued    # event sequence number at issue
        self.done = None        # sequence number at completion
        self.ok = None


def pattern(wid, lo, hi):
    """The bytes write WID puts at [lo, hi) of the device."""
    first, last = lo >> 3, (hi + 7) >> 3
    base = wid << 40
    words = array("Q", range(base + first, base + last)).tobytes()
    return words[lo - (first << 3):hi - (first << 3)]


class Mismatch(Exception):
    """A read returned bytes no candidate allows."""

    def __init__(self, offset, got, candidates, detail):
        self.offset, self.got, self.candidates = offset, got, candidates
        super().__init__(detail)


class Model:
    def __init__(self, size, fixed):
        """SIZE bytes; FIXED: [(lo, hi, FIXED_ZERO|FIXED_ERROR)]."""
        self.size = size
        self.starts = [0]
        self.vals = [frozenset((INIT,))]
        self.writes = {INIT: Write(INIT, "init", 0, size, True, 0)}
        self.writes[INIT].done, self.writes[INIT].ok = 0, True
        self.seq = 0
        self.next_id = 1
        self.issue_log = []     # write ids in issue order (for reads)
        for lo, hi, kind in fixed:
            self._apply(lo, hi, lambda v, kind=kind: kind, fixed_too=True)

    # ---- the interval map ------------------------------------------------

    def _split(self, off):
        """Make OFF a boundary; return its index."""
        i = bisect.bisect_right(self.starts, off) - 1
        if self.starts[i] == off:
            return i
        self.starts.insert(i + 1, off)
        self.vals.insert(i + 1, self.vals[i])
        return i + 1

    def _apply(self, lo, hi, fn, fixed_too=False):
        if lo >= hi:
            return
        i = self._split(lo)
        j = self._split(hi) if hi < self.size else len(self.starts)
        for k in range(i, j):
            v = self.vals[k]
            if fixed_too or not isinstance(v, str):
                self.vals[k] = fn(v)
        self._merge(max(i - 1, 0), min(j + 1, len(self.starts)))

    def _merge(self, i, j):
        """Join equal neighbours in [i, j) so the map stays small."""
        k = i + 1
        while k < min(j, len(self.starts)):
            if self.vals[k] == self.vals[k - 1]:
                del self.starts[k]
                del self.vals[k]
                j -= 1
            else:
                k += 1

    def slices(self, lo, hi):
        """[(lo, hi, value)] covering [lo, hi): a snapshot."""
        out = []
        i = bisect.bisect_right(self.starts, lo) - 1
        while i < len(self.starts) and self.starts[i] < hi:
            end = self.starts[i + 1] if i + 1 < len(self.starts) else self.size
            out.append((max(lo, self.starts[i]), min(hi, end), self.vals[i]))
            i += 1
        return out

    # ---- events ----------------------------------------------------------

    def issue(self, op, lo, hi, zero):
        """A write-like request is sent; returns its id."""
        self.seq += 1
        wid = self.next_id
        self.next_id += 1
        self.writes[wid] = Write(wid, op, lo, hi, zero, self.seq)
        self.issue_log.append(wid)
        self._apply(lo, hi, lambda v: v | {wid})
        return wid

    def complete(self, wid, ok, refused=False):
        """Its reply came: OK, or failed; REFUSED: failed having written
        nothing (a fast zero's ENOTSUP)."""
        self.seq += 1
        w = self.writes[wid]
        w.done, w.ok = self.seq, ok
        if refused:
            self._apply(w.lo, w.hi, lambda v: v - {wid})
        elif ok and w.op != "trim":
            writes = self.writes

            def keep(v):
                return frozenset(c for c in v if c == wid or
                                 writes[c].done is None or
                                 writes[c].done > w.issued)
            self._apply(w.lo, w.hi, keep)

    def read_start(self, lo, hi):
        """Snapshot for a read (or block status) issued now."""
        return (self.slices(lo, hi), len(self.issue_log))

    def expected(self, wid, lo, hi):
        w = self.writes[wid]
        if w.zero:
            return bytes(hi - lo)
        return pattern(wid, lo, hi)

    def check(self, lo, data, snap):
        """Check DATA read at LO against the snapshot taken at issue.
        Returns None, or raises Mismatch.  A range of the error target
        that read successfully is a mismatch too."""
        slices, since = snap
        extra = [self.writes[w] for w in self.issue_log[since:]]
        for a, b, v in slices:
            got = data[a - lo:b - lo]
            if v == FIXED_ERROR:
                raise Mismatch(a, got[:16], "error target",
                               "read of the error target succeeded")
            if v == FIXED_ZERO:
                cands = frozenset((INIT,))
            else:
                cands = v
            over = [w.wid for w in extra
                    if w.lo < b and w.hi > a and w.wid not in cands]
            self._check_piece(a, b, got, sorted(cands), over)

    def _check_piece(self, a, b, got, cands, over):
        # Fast path: one candidate explains the whole piece.
        for c in cands:
            if got == self.expected(c, a, b):
                return
        for c in over:
            w = self.writes[c]
            if w.lo <= a and w.hi >= b and got == self.expected(c, a, b):
                return
        if b - a > 8:
            mid = (a + b) // 2
            self._check_piece(a, mid, got[:mid - a], cands, over)
            self._check_piece(mid, b, got[mid - a:], cands, over)
            return
        for i in range(a, b):
            ok = False
            for c in cands + over:
                w = self.writes[c]
                if w.lo <= i < w.hi and \
                   got[i - a:i - a + 1] == self.expected(c, i, i + 1):
                    ok = True
                    break
            if not ok:
                raise Mismatch(i, got[i - a:i - a + 1], cands + over,
                               "byte %d: got %r, no candidate write has it"
                               % (i, got[i - a:i - a + 1]))

    def describe(self, wid):
        w = self.writes[wid]
        state = "in flight" if w.done is None else ("ok" if w.ok else "failed")
        return "#%d %s [%d, %d) %s" % (wid, w.op, w.lo, w.hi, state)
