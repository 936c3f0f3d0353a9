#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""failover_probe.py - a small libnbd workload that logs every I/O, for
bench-multipath.sh's failover and reinstate measurements.

    failover_probe.py URI OUT.json [--qd N] [--bs BYTES] [--blocks N]

Keeps N (default 4) requests in flight on one connection: 4 KiB writes and
reads, half each, at random blocks of the first --blocks blocks.  Every
write carries (block, sequence number); a read of a block whose last write
completed must return exactly that, so a requeued tail that landed twice,
late or at the wrong place shows as a mismatch.  No two requests in flight
touch the same block.

Runs until SIGTERM or SIGINT, lets what is in flight finish (10 s at most),
then writes OUT.json:
    {"ios": [[op, submit, done, error], ...],   # op "r"/"w", times from
                                                # time.time(), error or null
     "mismatches": [[block, expected_seq, got], ...], "qd": N, "bs": B}
The times are the wall clock (CLOCK_REALTIME), like bash's $EPOCHREALTIME,
so the script's kill and restart timestamps compare with them directly.
Exit status 0 even when I/Os failed: counting them is the point.
"""
import argparse
import json
import random
import signal
import struct
import sys
import time

import nbd

stop = False


def on_signal(signum, frame):
    global stop
    stop = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("uri")
    ap.add_argument("out")
    ap.add_argument("--qd", type=int, default=4)
    ap.add_argument("--bs", type=int, default=4096)
    ap.add_argument("--blocks", type=int, default=16384)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    h = nbd.NBD()
    h.connect_uri(a.uri)
    nblocks = min(a.blocks, h.get_size() // a.bs)
    rng = random.Random()
    inflight = {}       # cookie -> (op, block, submit, buf, seq)
    busy = set()        # blocks with a request in flight
    last = {}           # block -> seq of its last completed write
    written = []        # blocks written at least once, for reads to verify
    ios, mism = [], []
    seq = 0

    def submit():
        nonlocal seq
        for _ in range(16):
            if written and rng.random() < 0.5:
                op, blk = "r", rng.choice(written)
            else:
                op, blk = "w", rng.randrange(nblocks)
            if blk not in busy:
                break
        else:
            return
        if op == "w":
            seq += 1
            buf = nbd.Buffer.from_bytearray(
                bytearray(struct.pack("<QQ", blk, seq) * (a.bs // 16)))
            t = time.time()
            c = h.aio_pwrite(buf, blk * a.bs)
        else:
            buf = nbd.Buffer(a.bs)
            t = time.time()
            c = h.aio_pread(buf, blk * a.bs)
        busy.add(blk)
        inflight[c] = (op, blk, t, buf, seq if op == "w" else last.get(blk))

    def reap(now):
        while inflight:
            c = h.aio_peek_command_completed()
            if c <= 0:
                return
            op, blk, t, buf, s = inflight.pop(c)
            busy.discard(blk)
            err = None
            try:
                h.aio_command_completed(c)
            except nbd.Error as e:
                err = str(e)
            ios.append((op, t, now, err))
            if err is not None:
                continue
            if op == "w":
                if blk not in last:
                    written.append(blk)
                last[blk] = s
            elif s is not None:
                data = buf.to_bytearray()
                want = struct.pack("<QQ", blk, s) * (a.bs // 16)
                if data != want:
                    got = struct.unpack_from("<QQ", data)
                    mism.append((blk, s, list(got)))

    deadline = None
    fatal = None
    while True:
        if stop and deadline is None:
            deadline = time.time() + 10
        if deadline is not None and (not inflight or time.time() > deadline):
            break
        try:
            while not stop and len(inflight) < a.qd:
                submit()
            h.poll(100)
        except nbd.Error as e:
            if "Interrupted" in str(e):
                continue
            fatal = str(e)      # the connection itself failed
            break
        reap(time.time())

    json.dump({"ios": ios, "mismatches": mism, "qd": a.qd, "bs": a.bs,
               "unfinished": len(inflight), "fatal": fatal},
              open(a.out, "w"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
