# SPDX-License-Identifier: BSD-3-Clause
"""A writing workload that outlives its server (not a test itself).

    crash-workload.py URI HOT STOP PROGRESS MODEL STATE [SEED]

NTHREADS threads, each owning a quarter of the device's first HOT bytes,
write random data at random offsets and read each write back, until the
file STOP exists or the server goes away.  PROGRESS holds "<pairs>
<writes in flight>", rewritten every 20 ms: the verified write+read
pairs so far, and how many threads are inside a write now.

MODEL is the device's content as acknowledged: read at start (it must
exist, the size of the device), written at the end with every
acknowledged write applied.  STATE (JSON) gets "errors" (I/O errors:
each one ends its thread), "mismatches" (reads back that differed),
"touched" ([offset, length] of every write sent, acknowledged or not)
and "uncertain": the writes that were in flight when the server went
away, [offset, base64 data], which may have landed or not.  Exits 1 on
a mismatch, else 0: whether errors were expected is the caller's to say.
"""
import base64, json, os, random, sys, threading, time
import nbd

uri, hot, stop, progress, model_file, state_file = sys.argv[1:7]
hot = int(hot)
seed = int(sys.argv[7]) if len(sys.argv) > 7 else 0
NTHREADS = 4
PART = hot // NTHREADS
with open(model_file, "rb") as f:
    model = bytearray(f.read())
lock = threading.Lock()
pairs = 0
in_write = 0
state = {"errors": [], "mismatches": [], "touched": [], "uncertain": []}


def worker(n):
    global pairs, in_write
    h = nbd.NBD()
    h.connect_uri(uri)
    rnd = random.Random(seed * 100 + n)
    base = n * PART
    while not os.path.exists(stop):
        length = rnd.choice((512, 4096, 65536, rnd.randrange(512, 131072, 512)))
        off = base + rnd.randrange(0, PART - length + 1, 512)
        data = rnd.randbytes(length)
        with lock:
            state["touched"].append([off, length])
            in_write += 1
        try:
            h.pwrite(data, off)
        except nbd.Error as e:
            with lock:
                in_write -= 1
                state["errors"].append(f"thread {n}: write at {off}: {e}")
                state["uncertain"].append(
                    [off, base64.b64encode(data).decode()])
            return
        with lock:
            in_write -= 1
            model[off:off + length] = data
        try:
            got = h.pread(length, off)
        except nbd.Error as e:
            with lock:
                state["errors"].append(f"thread {n}: read at {off}: {e}")
            return
        with lock:
            if got != data:
                state["mismatches"].append(f"thread {n}: read back at {off}")
            pairs += 1
    h.flush()
    h.shutdown()


threads = [threading.Thread(target=worker, args=(n,)) for n in range(NTHREADS)]
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    with lock:
        line = f"{pairs} {in_write}\n"
    with open(progress + ".new", "w") as f:
        f.write(line)
    os.replace(progress + ".new", progress)
    time.sleep(0.02)
with open(progress + ".new", "w") as f:
    f.write(f"{pairs} 0\n")
os.replace(progress + ".new", progress)
with open(model_file, "wb") as f:
    f.write(model)
with open(state_file, "w") as f:
    json.dump(state, f)
print(f"workload: {pairs} verified write+read pairs, "
      f"{len(state['errors'])} I/O errors, "
      f"{len(state['uncertain'])} writes in flight at the end, "
      f"{len(state['mismatches'])} mismatches")
for m in (state["errors"] + state["mismatches"])[:10]:
    print("  " + m)
sys.exit(1 if state["mismatches"] else 0)
