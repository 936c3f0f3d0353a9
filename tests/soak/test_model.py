#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""The soak's model, checked on its own: what it must accept, and what
it must refuse (a soak whose model accepts anything finds nothing)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import model                    # noqa: E402
from model import Model, pattern  # noqa: E402


def refuses(m, lo, data, snap, why):
    try:
        m.check(lo, data, snap)
    except model.Mismatch:
        return
    sys.exit("model accepted " + why)


def main():
    m = Model(1 << 20, [(4096, 8192, model.FIXED_ZERO),
                        (8192, 12288, model.FIXED_ERROR)])
    # An acknowledged write reads back; the zero target reads zeroes and
    # ignores it; the error target never reads.
    w1 = m.issue("write", 0, 8192, False)
    m.complete(w1, True)
    m.check(0, pattern(w1, 0, 4096) + bytes(4096), m.read_start(0, 8192))
    refuses(m, 0, pattern(w1, 0, 8192), m.read_start(0, 8192),
            "a write on the zero target")
    refuses(m, 8192, bytes(16), m.read_start(8192, 8208),
            "a read of the error target")

    # Two overlapping writes in flight together: either order, per byte.
    a = m.issue("write", 100, 300, False)
    b = m.issue("write", 200, 400, False)
    m.complete(b, True)
    m.complete(a, True)
    for split in (200, 250, 300):
        m.check(0, pattern(w1, 0, 100) + pattern(a, 100, split) +
                pattern(b, split, 400), m.read_start(0, 400))
    refuses(m, 0, pattern(w1, 0, 400), m.read_start(0, 400),
            "data overwritten by two acknowledged writes")

    # A write acknowledged after another completed replaces it wholly.
    c = m.issue("write", 0, 400, False)
    m.complete(c, True)
    refuses(m, 0, pattern(w1, 0, 100) + pattern(a, 100, 300) +
            pattern(b, 300, 400), m.read_start(0, 400), "a lost write")

    # A failed write is "either" until a later acknowledged write.
    f = m.issue("write", 0, 50, False)
    m.complete(f, False)
    m.check(0, pattern(f, 0, 50) + pattern(c, 50, 400), m.read_start(0, 400))
    m.check(0, pattern(c, 0, 400), m.read_start(0, 400))
    g = m.issue("write", 0, 50, False)
    m.complete(g, True)
    refuses(m, 0, pattern(f, 0, 50), m.read_start(0, 50),
            "a ghost of a failed write after a later acknowledged one")

    # A read sees what was written while it ran.
    snap = m.read_start(0, 50)
    h = m.issue("write", 0, 50, False)
    m.complete(h, True)
    m.check(0, pattern(g, 0, 24) + pattern(h, 24, 50), snap)

    # Trim: zeroes or what was there.  A refused fast zero wrote nothing.
    t = m.issue("trim", 0, 50, True)
    m.complete(t, True)
    m.check(0, bytes(50), m.read_start(0, 50))
    m.check(0, pattern(h, 0, 50), m.read_start(0, 50))
    z = m.issue("fastzero", 500, 600, True)
    m.complete(z, False, refused=True)
    refuses(m, 500, bytes(100), m.read_start(500, 600),
            "zeroes from a refused fast zero")
    print("model: ok")


if __name__ == "__main__":
    main()
