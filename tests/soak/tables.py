# SPDX-License-Identifier: BSD-3-Clause
"""Random dm tables for the soak, and their data-preserving reloads.

A layout is a list of segments, one per table line, over backing files
each served by one or more nbdkit servers (several: multipath paths to
the same file).  Every segment that maps data gets its own ranges of
its files, at odd offsets, so no two segments alias: the model then
needs no mapping, only which ranges are the zero and error targets.

A mirror segment has legs of its own: each leg a backing file with its
own server (independent copies, not paths to one file), and for a disk
log a log device of its own.  The model needs nothing more: a mirror
maps its range to the data as linear does, whichever leg a read meets;
the driver compares every leg with the model at the end.

Reloads re-cut the same layout (same data at the same device offsets):
the same table; a "calm" one with flakey, dust and delay turned into
linear lines on the same ranges (for the verify pass); or one with
linear lines split in two.  A mirror line is the same in each, but for
what only its first table may say: `nosync` (its legs are new, so
equal) is never in a reload, where they may differ.  A core log knows
nothing across a reload, so its reload copies every region from its
first leg: the driver names the default leg first (Segment.order).  A
disk log knows which legs missed writes: its legs keep their order
(the log's failed-leg bits are by index).
"""

import model

SECTOR = 512
TARGETS = ["linear", "striped", "zero", "error", "flakey", "delay", "dust",
           "multipath", "mirror"]


class Backing:
    """One backing file and the servers that export it."""

    def __init__(self, name, profile, paths):
        self.name = name
        self.profile = profile      # set of: limits, nofua, slow, errors
        self.paths = paths          # number of servers (multipath: > 1)
        self.end = 0                # sectors allocated so far
        self.uris = []              # filled in by the driver
        self.path = None            # its file, and the bytes before
        self.head = 0               # the export in it (driver)
        self.role = None            # "leg" or "log" of a mirror, else None

    def alloc(self, rng, sectors):
        self.end += rng.randrange(0, 40)        # odd gaps, odd offsets
        off = self.end
        self.end += sectors
        return off


class Segment:
    def __init__(self, start, length, target, **kw):
        self.start, self.length, self.target = start, length, target
        self.__dict__.update(kw)


def _profile(rng):
    p = set()
    for f, prob in (("limits", 0.4), ("nofua", 0.3), ("slow", 0.3),
                    ("errors", 0.5)):
        if rng.random() < prob:
            p.add(f)
    return p


def _mirror(rng, start, length, n, backings):
    """A mirror segment over new backings of its own (added to BACKINGS)."""
    # Every leg trims alike (one of them behind blocksize-policy would
    # trim less than the others, and an NBD trim leaves the bytes
    # unspecified: the legs would differ where the model allows both).
    limits = rng.random() < 0.4
    # A leg's minimum block (4 KiB behind "limits") divides its offset and
    # the length, as the mirror requires (dm: the logical block).
    block = 8 if limits else 1
    length = max(length // block, 1) * block
    legs = []
    for j in range(rng.randrange(2, 4)):
        b = Backing("m%d%s" % (n, "abc"[j]),
                    (_profile(rng) - {"limits"}) | ({"limits"} if limits
                                                    else set()), 1)
        b.role = "leg"
        backings.append(b)
        off = b.alloc(rng, 0)
        off = -(-off // block) * block
        b.end = off + length
        legs.append((b, off))
    # Legs of one size (the mirror checks it: the same data).
    for b, _ in legs:
        b.end = max(d.end for d, _ in legs)
    seg = Segment(start, length, "mirror", legs=legs,
                  order=list(range(len(legs))),
                  region=rng.choice([8, 16, 32, 64, 128, 256]),
                  handle_errors=rng.random() < 0.7,
                  balance=rng.choice([None, "queue-length", "round-robin",
                                      "default_leg"]),
                  log=None, nosync=False, garbage=False)
    if rng.random() < 0.35:
        # Never faulted: without keep_log a log that cannot be written
        # is gone on without, and may then name a stale leg a source.
        log = Backing("m%dlog" % n, set(), 1)
        log.role = "log"
        log.end = 64            # a 4 KiB header, a 4 KiB bitmap block
        backings.append(log)
        seg.log = log
    # The legs are new and equal (zeroes): nosync may say so.  Or not,
    # and the first resync runs under the workload, maybe over legs
    # that start with junk (only the first leg is the data).
    seg.nosync = rng.random() < 0.4
    seg.garbage = not seg.nosync and rng.random() < 0.5
    return seg


def generate(rng):
    """A random layout: (backings, segments)."""
    files = [Backing("f%d" % i, _profile(rng), 1)
             for i in range(rng.randrange(3, 6))]
    # No delay filter under the paths: it drops a delayed write when its
    # connection closes, so a stopped path's writes would never land
    # later, and the ghosts R10 guards against would not exist.
    mp = Backing("mp", _profile(rng) - {"errors", "slow"},
                 rng.randrange(2, 4))
    backings = files + [mp]
    # One multipath only: its lines name no offset (dm's map a segment
    # to the same offset of its paths), so two would share the data of
    # the one backing "mp" (the soak's seed 6 read one's writes in the
    # other).
    extra = [t for t in TARGETS if t != "multipath"]
    kinds = TARGETS + [rng.choice(extra) for _ in range(rng.randrange(0, 4))]
    if rng.random() < 0.5:
        kinds.append("mirror")  # often two: one of each log type, say
    rng.shuffle(kinds)
    segs = []
    start = 0
    for kind in kinds:
        length = rng.randrange(64, 3000)
        dev = rng.choice(files)
        if kind == "striped":
            n = rng.randrange(2, min(4, len(files)) + 1)
            chunk = rng.choice([1, 3, 7, 8, 16, 24, 64, 128])
            length = max(length // (chunk * n), 1) * chunk * n
            devs = rng.sample(files, n)
            legs = [(d, d.alloc(rng, length // n)) for d in devs]
            seg = Segment(start, length, kind, chunk=chunk, legs=legs)
        elif kind in ("zero", "error"):
            seg = Segment(start, length, kind)
        elif kind == "mirror":
            seg = _mirror(rng, start, length,
                          sum(s.target == "mirror" for s in segs), backings)
        elif kind == "multipath":
            seg = Segment(start, length, kind, dev=mp,
                          off=mp.alloc(rng, length),
                          queue=rng.random() < 0.5,
                          selector=rng.choice(["round-robin", "queue-length",
                                               "service-time"]),
                          groups=rng.choice([1, 1, 2]))
        else:
            seg = Segment(start, length, kind, dev=dev,
                          off=dev.alloc(rng, length))
            if kind == "flakey":
                seg.up = rng.randrange(2, 7)
                seg.down = rng.randrange(1, 3)
                seg.features = rng.choice(
                    ["", "1 error_reads", "1 error_writes",
                     "2 error_reads error_writes"])
            elif kind == "delay":
                seg.ms = rng.randrange(0, 15)
                seg.wms = rng.choice([None, rng.randrange(0, 15)])
            elif kind == "dust":
                seg.blksz = rng.choice([512, 1024, 4096])
        segs.append(seg)
        start += seg.length
    return backings, segs


def _mp_args(seg):
    paths = seg.dev.uris
    nargs = {"round-robin": 1, "queue-length": 1, "service-time": 2}
    pargs = {"round-robin": "1", "queue-length": "1", "service-time": "1 1"}
    groups = [paths] if seg.groups == 1 or len(paths) < 2 else \
        [paths[:1], paths[1:]]
    out = ["1 queue_if_no_path" if seg.queue else "0", "0",
           str(len(groups)), "1"]
    for g in groups:
        out += [seg.selector, "0", str(len(g)), str(nargs[seg.selector])]
        for p in g:
            out += [p, pargs[seg.selector]]
    return " ".join(out)


def _mirror_args(seg, first):
    legs = [seg.legs[i] for i in seg.order]
    nosync = " nosync" if first and seg.nosync else ""
    if seg.log is None:
        log = "core %d %d%s" % (1 + bool(nosync), seg.region, nosync)
    else:
        log = "disk %d %s %d%s" % (2 + bool(nosync), seg.log.uris[0],
                                   seg.region, nosync)
    feats = (["handle_errors"] if seg.handle_errors else []) + \
        (["read_balance", seg.balance] if seg.balance else [])
    return "%s %d %s %d%s" % (log, len(legs),
                              " ".join("%s %d" % (d.uris[0], off)
                                       for d, off in legs),
                              len(feats), "".join(" " + f for f in feats))


def line(seg, calm=False, first=False):
    """SEG's table line; CALM: the same data with no failing or delay;
    FIRST: the first table of the run."""
    head = "%d %d " % (seg.start, seg.length)
    t = seg.target
    if t in ("zero", "error"):
        return head + t
    if t == "mirror":
        return head + "mirror " + _mirror_args(seg, first)
    if t == "striped":
        legs = " ".join("%s %d" % (d.uris[0], off) for d, off in seg.legs)
        return head + "striped %d %d %s" % (len(seg.legs), seg.chunk, legs)
    if t == "multipath":
        return head + "multipath " + _mp_args(seg)
    base = "%s %d" % (seg.dev.uris[0], seg.off)
    if calm or t == "linear":
        return head + "linear " + base
    if t == "flakey":
        extra = (" " + seg.features) if seg.features else ""
        return head + "flakey %s %d %d%s" % (base, seg.up, seg.down, extra)
    if t == "delay":
        w = "" if seg.wms is None else " %s %d" % (base, seg.wms)
        return head + "delay %s %d%s" % (base, seg.ms, w)
    if t == "dust":
        return head + "dust %s %d" % (base, seg.blksz)
    raise ValueError(t)


def table(segs, calm=False, first=False):
    return "\n".join(line(s, calm, first) for s in segs) + "\n"


def split_table(rng, segs):
    """The same mapping with each linear line split in two."""
    out = []
    for s in segs:
        if s.target == "linear" and s.length > 1:
            cut = rng.randrange(1, s.length)
            out.append("%d %d linear %s %d" % (s.start, cut, s.dev.uris[0],
                                                s.off))
            out.append("%d %d linear %s %d" % (s.start + cut, s.length - cut,
                                                s.dev.uris[0], s.off + cut))
        else:
            out.append(line(s))
    return "\n".join(out) + "\n"


def fixed_ranges(segs):
    """The model's fixed ranges, in bytes."""
    out = []
    for s in segs:
        if s.target == "zero":
            out.append((s.start * SECTOR, (s.start + s.length) * SECTOR,
                        model.FIXED_ZERO))
        elif s.target == "error":
            out.append((s.start * SECTOR, (s.start + s.length) * SECTOR,
                        model.FIXED_ERROR))
    return out


def ranges_on(segs, backing_name):
    """Byte ranges of the device whose data lives on the named backing."""
    out = []
    for s in segs:
        names = [d.name for d, _ in s.legs] if hasattr(s, "legs") else \
            [s.dev.name] if hasattr(s, "dev") else []
        if backing_name in names:
            out.append((s.start * SECTOR, (s.start + s.length) * SECTOR))
    return out


def size(segs):
    return sum(s.length for s in segs) * SECTOR
