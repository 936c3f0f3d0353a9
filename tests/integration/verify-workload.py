# SPDX-License-Identifier: BSD-3-Clause
"""A verifying workload for the integration tests (not a test itself).

    verify-workload.py URI STOP PROGRESS MODEL [SEED]

NTHREADS threads, each owning a quarter of the 16 MiB device, write
random data at random offsets and read each write back, until the file
STOP exists; PROGRESS holds the count of verified write+read pairs,
rewritten every 50 ms.  MODEL is the device's expected content: read at
start if it exists (else zeroes), written at the end, after the whole
device was read back through URI and compared with it.  SEED (default
0) is added to each thread's number to seed its random data.  Exits 1
if any I/O failed or any read differed, listing the first 20.
"""
import os, random, sys, threading, time
import nbd

uri, stop, progress, model_file = sys.argv[1:5]
seed = int(sys.argv[5]) if len(sys.argv) > 5 else 0
SIZE = 16 << 20
NTHREADS = 4
REGION = SIZE // NTHREADS
if os.path.exists(model_file):
    with open(model_file, "rb") as f:
        model = bytearray(f.read())
else:
    model = bytearray(SIZE)            # the device starts as zeroes
lock = threading.Lock()
ops = 0
failures = []

def worker(n):
    global ops
    h = nbd.NBD()
    h.connect_uri(uri)
    rnd = random.Random(seed + n)
    base = n * REGION               # each thread owns its region
    while not os.path.exists(stop):
        length = rnd.choice((512, 4096, 65536, 262144,
                             rnd.randrange(512, 131072, 512)))
        off = base + rnd.randrange(0, REGION - length + 1, 512)
        data = rnd.randbytes(length)
        try:
            h.pwrite(data, off)
            got = h.pread(length, off)
        except nbd.Error as e:
            failures.append(f"thread {n}: {length} bytes at {off}: {e}")
            continue
        model[off:off + length] = data
        if got != data:
            failures.append(f"thread {n}: read back at {off} differs")
        with lock:
            ops += 1
    h.flush()
    h.shutdown()

threads = [threading.Thread(target=worker, args=(n,))
           for n in range(NTHREADS)]
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    with open(progress + ".new", "w") as f:
        f.write(f"{ops}\n")
    os.replace(progress + ".new", progress)
    time.sleep(0.05)

# The whole device, through the target, once the dust has settled.
h = nbd.NBD()
h.connect_uri(uri)
for off in range(0, SIZE, 1 << 20):
    if h.pread(1 << 20, off) != model[off:off + (1 << 20)]:
        failures.append(f"device differs from the model in MiB {off >> 20}")
with open(model_file, "wb") as f:
    f.write(model)
print(f"workload: {ops} verified write+read pairs, {len(failures)} failures")
for m in failures[:20]:
    print("  " + m)
sys.exit(1 if failures else 0)
