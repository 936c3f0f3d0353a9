#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# mirror: reads are spread over the legs by the read policy
# (docs/targets/mirror.md, "Features": read_balance).  Two legs, each
# behind nbdkit's log filter; a pattern is written through the mirror,
# then READS 4 KiB reads at random offsets, 16 in flight on each of two
# connections, each compared with the pattern.  The reads each leg's
# server logged (4 KiB reads only: the checker's probes and the
# devices' keep-alive reads are 512 and 1 bytes) give:
#  - round-robin: each leg in turn, so the two counts differ by at most 1;
#  - queue-length (the default, no feature word): the leg with the
#    fewest reads in flight, ties in turn: each leg has at least 20%;
#  - default_leg: every read on the first leg, none on the second.
# In each case the two counts add up to READS, and the JSON status's
# per-leg "reads" equals each leg's logged count.
source ./functions.sh
requires nbdkit --filter=log memory --version
requires $PY -c 'import nbd'

READS=2000

# run POLICY FEATURES: fresh legs and a mirror with FEATURES, the reads,
# then "<reads on a> <reads on b>" in $counts.
run ()
{
  local policy=$1 features=$2 a b top ctlsock alog blog A B dm_pid js

  a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock)
  ctlsock=$(mktemp -u "$NDM_TMP/ctlXXXXXX")
  alog=$NDM_TMP/$policy-a.log; blog=$NDM_TMP/$policy-b.log
  start_nbdkit -U "$a" --filter=log memory 16M logfile="$alog"
  start_nbdkit -U "$b" --filter=log memory 16M logfile="$blog"
  A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
  # The legs are new and zero: equal, so nosync.
  start_dm "$top" "0 32768 mirror core 2 1024 nosync 2 $A 0 $B 0$features" \
    control="$ctlsock" checker-interval=1
  dm_pid=$NBDKIT_PID
  grep -q " 32/32 1 AA 1 core$" <<<"$(ctl "$ctlsock" status)"

  $PY - "$(nbd_uri "$top")" "$READS" <<'EOF'
import random, sys, threading
import nbd

uri, nreads = sys.argv[1], int(sys.argv[2])
SIZE, B, DEPTH = 16 << 20, 4096, 16
pattern = random.Random(7).randbytes(SIZE)
h = nbd.NBD(); h.connect_uri(uri)
for off in range(0, SIZE, 1 << 20):
    h.pwrite(pattern[off:off + (1 << 20)], off)
h.flush()

bad = []

def reader(n, count):
    try:
        read_loop(n, count)
    except nbd.Error as e:
        bad.append("reader %d: %s" % (n, e))

def read_loop(n, count):
    """count reads on a connection of its own, DEPTH in flight."""
    hh = nbd.NBD(); hh.connect_uri(uri)
    rnd = random.Random(8 + n)
    inflight = {}              # cookie -> (buffer, offset)
    while count or inflight:
        while count and len(inflight) < DEPTH:
            off = rnd.randrange(1, SIZE // B) * B
            buf = nbd.Buffer(B)
            inflight[hh.aio_pread(buf, off)] = (buf, off)
            count -= 1
        hh.poll(-1)
        for cookie in [c for c in inflight if hh.aio_command_completed(c)]:
            buf, off = inflight.pop(cookie)
            if buf.to_bytearray() != pattern[off:off + B]:
                bad.append("the read at %d differs from the pattern" % off)
    hh.shutdown()

threads = [threading.Thread(target=reader, args=(n, nreads // 2))
           for n in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if bad:
    sys.exit("%d failed reads, the first: %s" % (len(bad), bad[0]))
EOF

  js=$(ctl "$ctlsock" "status --json")
  stop_dm "$dm_pid"
  counts="$(grep -c ' Read id=.* count=0x1000 ' "$alog" || true) $(grep -c ' Read id=.* count=0x1000 ' "$blog" || true)"
  echo "$policy: reads on a and b: $counts"
  # The mirror's own count per leg is what the legs' servers saw.
  $PY - "$js" "$A" "$B" $counts <<'EOF'
import json, sys
js, A, B, ra, rb = sys.argv[1:]
t = json.loads(js)["targets"][0]["detail"]
reads = {l["leg"]: l["reads"] for l in t["legs"]}
assert reads == {A: int(ra), B: int(rb)}, \
    "JSON reads %r, the legs' logs %s %s" % (reads, ra, rb)
EOF
}

check ()
{
  if ! eval "$2"; then
    echo "$0: $1: reads on a and b: $counts" >&2
    exit 1
  fi
}

run round-robin " 2 read_balance round-robin"
read -r ra rb <<<"$counts"
check "round-robin: not every leg in turn" \
  '[ $((ra + rb)) -eq $READS ] && [ $((ra - rb)) -le 1 ] && [ $((rb - ra)) -le 1 ]'

run queue-length ""
read -r ra rb <<<"$counts"
check "queue-length: a leg has less than 20% of the reads" \
  '[ $((ra + rb)) -eq $READS ] && [ $((ra * 5)) -ge $READS ] && [ $((rb * 5)) -ge $READS ]'

run default_leg " 2 read_balance default_leg"
read -r ra rb <<<"$counts"
check "default_leg: reads not all on the first leg" \
  '[ $ra -eq $READS ] && [ $rb -eq 0 ]'
echo ok
