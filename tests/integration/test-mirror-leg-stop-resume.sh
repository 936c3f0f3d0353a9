#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# mirror, R10 for legs (docs/targets/mirror.md, "Legs that fail and come
# back"): a leg whose server stops (SIGSTOP) with writes in hand runs
# them when it resumes; those stale writes must land before the resync
# copies the current data over them, never after.
#
# Two legs, handle_errors, checker-interval=1, io-timeout=2.  Leg a is
# nbdkit file; leg b is a small nbdkit cc plugin over b.img that logs
# every write once it landed and, while the file $hold exists, holds the
# write to byte $HOLD (a server hung on one request, answering the
# others), one worker thread per connection (nbdkit 1.32 may abort when
# a client cuts a connection with several replies pending).  A verifying workload writes the first
# 16 MiB throughout.  Made certain, not lucky:
#  1. write S1 (8 KiB at $HOLD) is held inside b's server; b is stopped
#     (SIGSTOP) and, microseconds later, write S2 (64 KiB at $R1) is
#     sent: it waits unread in b's socket.  Both are acknowledged once
#     nbd-dm times b out: b is failed and fenced (its letter is not A),
#     and the workload sees no error;
#  2. newer data N1, N2 is written over the same ranges (on a only), and
#     the workload goes on; b.img has none of these yet;
#  3. b resumes (SIGCONT): it answers the checker again, but a cut
#     connection of it still holds S1, so b is not reinstated: the JSON
#     reason and a refused 'reinstate_leg' name R10;
#  4. S1 is let go: the stale writes land (b's own write log shows
#     them), b's server closes the cut connections, the checker
#     reinstates b and the resync reaches 40/40 with letters AA;
#  5. at the end b.img holds N1 and N2 (a stale write that landed after
#     the copy would have left S1 or S2 there), both backing files are
#     byte-identical, and their first 16 MiB equal the workload's model.
source ./functions.sh
source ./multipath-lib.sh
source ./workload-lib.sh
source ./mirror-lib.sh
requires nbdkit file --version
requires nbdkit cc --version
requires gcc --version
requires $PY -c 'import nbd'

MiB=$((1 << 20))
R1=$((17 * MiB + 65536))        # past the workload's 16 MiB
HOLD=$((18 * MiB + 12800))      # inside a region, aligned to no copy piece
a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
aimg=$NDM_TMP/a.img; bimg=$NDM_TMP/b.img; model=$NDM_TMP/model
hold=$NDM_TMP/hold; held=$NDM_TMP/held; wlog=$NDM_TMP/b-writes
truncate -s 20M "$aimg" "$bimg"
: >"$wlog"

# Leg b's server: b.img, each write logged as "<offset> <count>" once
# it landed, the one to byte $HOLD held while $hold exists.  It waits
# with usleep, not nbdkit_nanosleep: a sleep nbdkit cuts short when the
# client hangs up would not be a write that lands late.
leg=$NDM_TMP/held-leg.c
cat >"$leg" <<EOF
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
static int fd = -1;

static int
leg_get_ready (void)
{
  fd = open ("$bimg", O_RDWR);
  if (fd == -1)
    nbdkit_error ("$bimg: %m");
  return fd == -1 ? -1 : 0;
}

static void *
leg_open (int readonly)
{
  return NBDKIT_HANDLE_NOT_NEEDED;
}

static int64_t
leg_get_size (void *h)
{
  struct stat st;

  if (fstat (fd, &st) == -1) {
    nbdkit_error ("fstat: %m");
    return -1;
  }
  return st.st_size;
}

static int
leg_pread (void *h, void *buf, uint32_t count, uint64_t offset,
           uint32_t flags)
{
  if (pread (fd, buf, count, offset) != (ssize_t) count) {
    nbdkit_error ("pread: %m");
    return -1;
  }
  return 0;
}

static int
leg_pwrite (void *h, const void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  char line[64];
  int n, lfd;

  if (offset == $HOLD && access ("$hold", F_OK) == 0) {
    close (open ("$held", O_WRONLY | O_CREAT, 0644));
    while (access ("$hold", F_OK) == 0)
      usleep (50000);
  }
  if (pwrite (fd, buf, count, offset) != (ssize_t) count) {
    nbdkit_error ("pwrite: %m");
    return -1;
  }
  n = snprintf (line, sizeof line, "%" PRIu64 " %" PRIu32 "\n", offset,
                count);
  lfd = open ("$wlog", O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (lfd == -1 || write (lfd, line, n) != n) {
    nbdkit_error ("$wlog: %m");
    return -1;
  }
  close (lfd);
  return 0;
}

static struct nbdkit_plugin plugin = {
  .name = "heldleg", .get_ready = leg_get_ready, .open = leg_open,
  .get_size = leg_get_size, .pread = leg_pread, .pwrite = leg_pwrite,
};
NBDKIT_REGISTER_PLUGIN (plugin)
EOF

start_nbdkit -U "$a" file "$aimg"
start_nbdkit -U "$b" --threads 1 cc "$leg"
b_pid=$NBDKIT_PID
# A stopped server must get SIGCONT before the exit handler's SIGTERM.
cleanup_fn kill -CONT "$b_pid"
cleanup_fn rm -f "$hold"
A=$(nbd_uri "$a"); B=$(nbd_uri "$b")
# The legs are new and zero: equal, so nosync.
start_dm "$top" "0 40960 mirror core 2 1024 nosync 2 $A 0 $B 0 1 handle_errors" \
  control="$ctlsock" checker-interval=1 io-timeout=2
dm_log=$NBDKIT_LOG

# fail WHAT: say so, with the mirror's state and its server's log.
fail ()
{
  echo "$0: $*" >&2
  ctl "$ctlsock" "status --json" >&2 || true
  grep -v "warning: built against" "$dm_log" >&2 || true
  exit 1
}

# range_is FILE OFFSET COUNT BYTE: FILE holds COUNT bytes BYTE (a
# character, or "\0") from OFFSET.
range_is ()
{
  cmp -s <(dd if="$1" iflag=skip_bytes,count_bytes skip="$2" count="$3" \
             bs=1M status=none) \
         <(head -c "$3" /dev/zero | tr '\0' "$4")
}

wait_sync "40/40 1 AA"
start_workload "$(nbd_uri "$top")" "$model" 500
wait_ops 100
# b in service: a probe that timed out on the loaded machine failed it,
# and it is back (the data checks below do not care; step 1 needs it).
wait_sync "40/40 1 AA"

# ---- 1, 2: S1 held in b, b stopped, S2 in its socket; newer N1, N2 -------
touch "$hold"
mp_py - "$(nbd_uri "$top")" "$b_pid" "$held" "$bimg" "$R1" "$HOLD" <<'EOF' ||
import os, signal, sys, threading, time
import nbd

uri, b_pid, held, bimg = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
R1, HOLD = int(sys.argv[5]), int(sys.argv[6])
S1, S2 = b"\x51" * 8192, b"\x52" * 65536
N1, N2 = b"\x61" * 8192, b"\x62" * 65536
res = {}

def write(name, data, off):
    try:
        h = nbd.NBD(); h.connect_uri(uri)
        h.pwrite(data, off)
        res[name] = "ok"
    except nbd.Error as e:
        res[name] = str(e)

t1 = threading.Thread(target=write, args=("S1", S1, HOLD)); t1.start()
end = time.time() + 20
while not os.path.exists(held):
    if time.time() > end:
        sys.exit("S1 never reached b's server")
    time.sleep(0.01)
os.kill(b_pid, signal.SIGSTOP)
t2 = threading.Thread(target=write, args=("S2", S2, R1)); t2.start()
t1.join(30); t2.join(30)
assert res == {"S1": "ok", "S2": "ok"}, res   # on a, once b was cut

h = nbd.NBD(); h.connect_uri(uri)
h.pwrite(N1, HOLD); h.pwrite(N2, R1); h.flush()
assert h.pread(8192, HOLD) == N1 and h.pread(65536, R1) == N2
with open(bimg, "rb") as f:      # b is stopped: nothing landed there
    f.seek(HOLD); assert f.read(8192) == bytes(8192)
    f.seek(R1); assert f.read(65536) == bytes(65536)
print("S1, S2 acknowledged on a with b cut; N1, N2 written over them")
EOF
  fail "stopping b under S1 and S2 (above)"
st=$(sync_letters)
echo "b stopped and cut: $st"
case ${st##* } in
  A[DU]) ;;
  *) fail "leg b is not failed: $st" ;;
esac
n=$(cat "$progress")
wait_ops $((n + 100))

# ---- 3: b resumes, but S1 may still land: not reinstated (R10) -------------
kill -CONT "$b_pid"
for ((i = 0; i < 200; i++)); do
  reason=$(leg_field 1 reason)
  case $reason in *"may still land writes (R10)"*) break ;; esac
  sleep 0.1
done
echo "b resumed; its reason: $reason"
case $reason in
  *"cut connection"*"may still land writes (R10)"*) ;;
  *) fail "b's reason does not name R10: '$reason'" ;;
esac
err=$NDM_TMP/reinstate.err
if ctl "$ctlsock" "message 0 reinstate_leg $B" 2>"$err"; then
  fail "reinstate_leg put b back while S1 may still land"
fi
if ! grep -E -q "reinstate_leg: leg .* not reinstated: [0-9]+ cut connections? may still land writes \(R10\)" "$err"; then
  fail "reinstate_leg refused b without the R10 reason: $(cat "$err")"
fi
st=$(sync_letters)
case ${st##* } in
  A[DU]) ;;
  *) fail "leg b is back while S1 may still land: $st" ;;
esac
range_is "$bimg" "$HOLD" 8192 '\0' || fail "S1 landed while held"

# ---- 4: S1 let go: the stale writes land, then b comes back ----------------
rm -f "$hold"
wait_sync "40/40 1 AA"
echo "b reinstated and resynced: $(sync_letters)"
# The stale writes did run on b (so the data checks below mean something).
grep -q "^$HOLD 8192$" "$wlog" || fail "S1 never landed on b"
grep -q "^$R1 65536$" "$wlog" || fail "S2 never landed on b"
n=$(cat "$progress")
wait_ops $((n + 100))

# ---- 5: nothing stale on b --------------------------------------------------
touch "$stop"
mp_wait_client "$wl_pid" "the workload (its errors are above)"
wait_sync "40/40 1 AA"
range_is "$bimg" "$HOLD" 8192 a || fail "b.img does not hold N1 at $HOLD"
range_is "$bimg" "$R1" 65536 b || fail "b.img does not hold N2 at $R1"
cmp_files "$aimg" "$bimg"
cmp -n $((16 * MiB)) "$model" "$aimg"
echo ok
