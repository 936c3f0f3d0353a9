#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# mirror: every bad table is refused (docs/targets/mirror.md, "Table
# line" and the disk log's checks at load), twice:
#  - at start-up: nbdkit exits non-zero, its socket never appears, and
#    stderr has "table-text: line 1: mirror: <the documented message>";
#  - by 'nbd-dmsetup reload --text' on a running mirror: the command
#    fails with "line 1: mirror: <the same message>", no inactive table
#    is left, the live table is unchanged, and a verifying workload that
#    runs through all the reloads sees every write and read succeed.
# One case per rule; each failing check names its case.  The messages
# are matched whole (fixed strings), so a message that loses its bad
# word or its expectation fails here.
source ./functions.sh
source ./multipath-lib.sh
source ./workload-lib.sh
requires nbdkit memory --version
requires nbdkit --filter=blocksize-policy memory --version
requires test -x "$DMSETUP"
requires $PY -c 'import nbd'

# Legs of 16 MiB (32768 sectors, the workload's size); two smaller and
# one larger export; one leg whose minimum block is 64 KiB (128 sectors).
declare -A U
for s in a:16M b:16M small1:8M small2:8M big:32M; do
  sock=$(tmp_sock)
  start_nbdkit -U "$sock" memory "${s#*:}"
  U[${s%%:*}]=$(nbd_uri "$sock")
done
sock=$(tmp_sock)
start_nbdkit -U "$sock" --filter=blocksize-policy memory 16M \
  blocksize-minimum=65536 blocksize-preferred=65536
U[minblock]=$(nbd_uri "$sock")
# Disk logs: the live one, a read-only one, one too small for 32
# regions, one holding something else, and three with a damaged header.
for s in log:1M tiny:4K foreign:1M version:1M crc:1M hsize:1M; do
  sock=$(tmp_sock)
  start_nbdkit -U "$sock" memory "${s#*:}"
  U[${s%%:*}]=$(nbd_uri "$sock")
done
sock=$(tmp_sock)
start_nbdkit -U "$sock" -r memory 1M
U[rolog]=$(nbd_uri "$sock")
A=${U[a]}; B=${U[b]}; L=${U[log]}
gone=$(nbd_uri "$NDM_TMP/nobody-listens-here.sock")
gone2=$(nbd_uri "$NDM_TMP/nobody-listens-here-either.sock")

top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
live="0 32768 mirror disk 3 $L 1024 nosync 2 $A 0 $B 0 1 handle_errors"
start_dm "$top" "$live" control="$ctlsock"
[ "$(ctl "$ctlsock" table)" = "$live" ]

# The live table made a new log on L (32 regions of 1024 sectors, 2
# legs).  Copies of its header, each damaged one way, go to the other
# log devices; the CRC-32C is recomputed where the damage is meant to
# pass it.
crcs=$($PY - "$L" "${U[foreign]}" "${U[version]}" "${U[crc]}" "${U[hsize]}" <<'EOF'
import struct, sys
import nbd

def crc32c(data):
    crc = 0xffffffff
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82f63b78 & -(crc & 1))
    return crc ^ 0xffffffff

def conn(uri):
    h = nbd.NBD(); h.connect_uri(uri); return h

log, foreign, version, crc, hsize = sys.argv[1:]
hdr = bytearray(conn(log).pread(4096, 0))
assert hdr[:8] == b"NBDDMLOG", hdr[:8]
assert struct.unpack_from("<I", hdr, 4092)[0] == crc32c(hdr[:4092])
def put(uri, h, fix_crc):
    if fix_crc:
        struct.pack_into("<I", h, 4092, crc32c(h[:4092]))
    conn(uri).pwrite(bytes(h), 0)
elf = bytearray(4096); elf[:8] = b"\x7fELF\x02\x01\x01\x00"
put(foreign, elf, False)
h = bytearray(hdr); struct.pack_into("<I", h, 8, 2); put(version, h, True)
h = bytearray(hdr); h[100] ^= 1; put(crc, h, False)
h = bytearray(hdr); struct.pack_into("<I", h, 12, 8192); put(hsize, h, True)
# The CRC the damaged copy holds, and the one of its bytes.
h = bytearray(hdr); h[100] ^= 1
print("0x%08x 0x%08x" % (struct.unpack_from("<I", h, 4092)[0],
                          crc32c(h[:4092])))
EOF
)
read -r crc_stored crc_actual <<<"$crcs"

failures=0
fail ()
{
  echo "FAIL $*"
  failures=$((failures + 1))
}

# refused NAME TABLE MESSAGE: TABLE (one mirror line) must be refused at
# start-up and by reload, each saying "line 1: mirror: MESSAGE".  The
# cases are collected, then run: the start-ups first, then the reloads
# under the workload.
names=(); tables=(); msgs=()
refused ()
{
  names+=("$1"); tables+=("$2"); msgs+=("$3")
}

# startup_refused I: case I at start-up.
startup_refused ()
{
  local name=${names[$1]} table=${tables[$1]} msg=${msgs[$1]}
  local sock err=$NDM_TMP/stderr rc=0

  sock=$(tmp_sock)
  run_dm -f -U "$sock" "$NDM_PLUGIN" "table-text=$table" 2>"$err" || rc=$?
  if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
    fail "$name: start-up: nbdkit exited with $rc (expected an error)"
    cat "$err"
  fi
  if [ -e "$sock" ]; then
    fail "$name: start-up: the socket was created although start-up failed"
  fi
  check_sanitizer_log "$err" || fail "$name: start-up: sanitizer report"
  if ! grep -F -q -- "table-text: line 1: mirror: $msg" "$err"; then
    fail "$name: start-up: stderr does not say 'line 1: mirror: $msg':"
    cat "$err"
  fi
  echo "ok: start-up: $name"
}

# reload_refused I: case I by reload on the running mirror.
reload_refused ()
{
  local name=${names[$1]} table=${tables[$1]} msg=${msgs[$1]}
  local err=$NDM_TMP/stderr info got rc=0

  "$DMSETUP" -c "$ctlsock" reload --allow-resize --text "$table" \
    >"$NDM_TMP/out" 2>"$err" || rc=$?
  if [ $rc -eq 0 ]; then
    fail "$name: reload: accepted"
    "$DMSETUP" -c "$ctlsock" clear      # the next case starts clean
  fi
  if ! grep -F -q -- "reload: line 1: mirror: $msg" "$err"; then
    fail "$name: reload: stderr does not say 'line 1: mirror: $msg':"
    cat "$err"
  fi
  info=$("$DMSETUP" -c "$ctlsock" info)
  if ! grep -q '^Tables present: *LIVE$' <<<"$info"; then
    fail "$name: reload: a table other than the live one is present:"
    echo "$info"
  fi
  got=$("$DMSETUP" -c "$ctlsock" table)
  if [ "$got" != "$live" ]; then
    fail "$name: reload: the live table changed: $got"
  fi
  echo "ok: reload: $name"
}

LEGS="2 $A 0 $B 0"
# ---- the log's words ---------------------------------------------------------
refused "no log type" "0 32768 mirror" \
  "the table ends where the log type was expected"
refused "unknown log type" "0 32768 mirror mem 1 1024 $LEGS" \
  "unknown log type 'mem': expected core or disk"
refused "#log args not a number" "0 32768 mirror core x 1024 $LEGS" \
  "#log args 'x' is not a number"
refused "#log args core 3" "0 32768 mirror core 3 1024 sync x $LEGS" \
  "#log args '3' for core: expected 1 or 2"
refused "#log args core 0" "0 32768 mirror core 0 $LEGS" \
  "#log args '0' for core: expected 1 or 2"
refused "#log args disk 1" "0 32768 mirror disk 1 $L $LEGS" \
  "#log args '1' for disk: expected 2 or 3"
refused "#log args past the end" "0 32768 mirror core 2 1024" \
  "#log args '2' is more than the 1 word after it"
refused "region size not a number" "0 32768 mirror core 1 abc $LEGS" \
  "region size 'abc' is not a number of sectors"
refused "region size not a power of two" "0 32768 mirror core 1 1000 $LEGS" \
  "region size '1000' is not a power of two"
refused "region size too small" "0 32768 mirror core 1 4 $LEGS" \
  "region size '4': expected at least 8 sectors"
refused "region size zero" "0 32768 mirror core 1 0 $LEGS" \
  "region size '0': expected at least 8 sectors"
refused "too many regions" "0 2147483656 mirror core 1 8 $LEGS" \
  "region size '8' makes 268435457 regions: expected at most 268435456 (a larger region size)"
refused "region size below a leg's minimum block" \
  "0 32768 mirror core 1 64 2 $A 0 ${U[minblock]} 0" \
  "region size '64' is below leg ${U[minblock]}'s minimum block of 65536 bytes"
refused "leg offset not a multiple of its minimum block" \
  "0 32768 mirror core 1 128 2 $A 0 ${U[minblock]} 1" \
  "leg ${U[minblock]} offset '1' is not a multiple of its minimum block of 65536 bytes"
refused "length not a multiple of a leg's minimum block" \
  "0 32760 mirror core 1 128 2 $A 0 ${U[minblock]} 0" \
  "length 32760 is not a multiple of leg ${U[minblock]}'s minimum block of 65536 bytes"
refused "bad sync word" "0 32768 mirror core 2 1024 fast $LEGS" \
  "log argument 'fast': expected sync or nosync"
refused "bad sync word, disk" "0 32768 mirror disk 3 $L 1024 always $LEGS" \
  "log argument 'always': expected sync or nosync"

# ---- the disk log's device ------------------------------------------------------
refused "log device is a leg" "0 32768 mirror disk 2 $A 1024 $LEGS" \
  "log device $A is also a leg"
refused "log device is the second leg" "0 32768 mirror disk 2 $B 1024 $LEGS" \
  "log device $B is also a leg"
refused "log device unreachable" "0 32768 mirror disk 2 $gone 1024 $LEGS" \
  "device $gone: nbd_aio_connect_uri: connect: No such file or directory"
refused "log device read-only" "0 32768 mirror disk 2 ${U[rolog]} 1024 $LEGS" \
  "disk log ${U[rolog]} is read-only: a log must be written"
refused "log device too small" "0 32768 mirror disk 2 ${U[tiny]} 1024 $LEGS" \
  "disk log ${U[tiny]} has 4096 bytes, too few for 32 regions: it needs 8192 (a 4096-byte header, then the bitmap in 4096-byte blocks)"
refused "log of something else" "0 32768 mirror disk 2 ${U[foreign]} 1024 $LEGS" \
  "disk log ${U[foreign]} is not a mirror log (magic 0x7f454c4602010100): refusing to overwrite it"
refused "log of another version" "0 32768 mirror disk 2 ${U[version]} 1024 $LEGS" \
  "disk log ${U[version]} has version 2: this nbd-dm reads version 1 only"
refused "log header CRC" "0 32768 mirror disk 2 ${U[crc]} 1024 $LEGS" \
  "disk log ${U[crc]}: header CRC $crc_stored does not match its bytes ($crc_actual): a damaged header, refusing to overwrite it (zero its first 4096 bytes to start afresh)"
refused "log header size" "0 32768 mirror disk 2 ${U[hsize]} 1024 $LEGS" \
  "disk log ${U[hsize]} has header size 8192 and flags 0x0: version 1 has 4096 and 0"
refused "log of another region size" "0 32768 mirror disk 2 $L 2048 $LEGS" \
  "disk log $L was made for 2 legs, 32 regions of 1024 sectors; this table has 2 legs, 16 regions of 2048 sectors: not reused (zero its first 4096 bytes to start afresh)"
refused "log of another leg count" \
  "0 32768 mirror disk 2 $L 1024 3 $A 0 $B 0 ${U[minblock]} 0" \
  "disk log $L was made for 2 legs, 32 regions of 1024 sectors; this table has 3 legs, 32 regions of 1024 sectors: not reused (zero its first 4096 bytes to start afresh)"

# ---- the legs ------------------------------------------------------------------
refused "no #legs" "0 32768 mirror core 1 1024" \
  "the table ends where #legs was expected"
refused "#legs 1" "0 32768 mirror core 1 1024 1 $A 0" \
  "#legs '1': expected 2 to 32"
refused "#legs 33" "0 32768 mirror core 1 1024 33 $A 0 $B 0" \
  "#legs '33': expected 2 to 32"
refused "#legs not a number" "0 32768 mirror core 1 1024 two $A 0 $B 0" \
  "#legs 'two' is not a number"
refused "#legs more than given" "0 32768 mirror core 1 1024 3 $A 0 $B 0" \
  "3 legs need 6 '<leg> <offset>' words, got 4"
refused "leg without offset" "0 32768 mirror core 1 1024 2 $A 0 $B" \
  "2 legs need 4 '<leg> <offset>' words, got 3"
refused "leg twice" "0 32768 mirror core 1 1024 2 $A 0 $A 0" \
  "leg $A is listed twice: expected each leg once"
refused "bad offset" "0 32768 mirror core 1 1024 2 $A 0 $B 12x" \
  "leg offset '12x' is not a number of sectors"
refused "offset too large" \
  "0 32768 mirror core 1 1024 2 $A 0 $B 36028797018963968" \
  "leg offset '36028797018963968' is too large"
refused "no leg answers" "0 32768 mirror core 1 1024 2 $gone 0 $gone2 0" \
  "no leg can be used: at least one must answer at load"
refused "leg too small for the length" \
  "0 32768 mirror core 1 1024 2 ${U[small1]} 0 ${U[small2]} 0" \
  "device ${U[small1]} is too small: 16384 sectors, the target uses sectors 0 to 32768"
refused "leg offset past its end" "0 32768 mirror core 1 1024 2 $A 0 $B 8192" \
  "device $B is too small: 32768 sectors, the target uses sectors 8192 to 40960"
refused "legs of different sizes" "0 32768 mirror core 1 1024 2 $A 0 ${U[big]} 0" \
  "leg ${U[big]} has 33554432 bytes, leg $A 16777216: expected legs of one size"
refused "legs of different sizes, larger first" \
  "0 32768 mirror core 1 1024 2 ${U[big]} 0 $A 0" \
  "leg $A has 16777216 bytes, leg ${U[big]} 33554432: expected legs of one size"

# ---- the features ----------------------------------------------------------------
refused "#features not a number" "0 32768 mirror core 1 1024 $LEGS x handle_errors" \
  "#features 'x' is not a number"
refused "#features more than given" "0 32768 mirror core 1 1024 $LEGS 2 handle_errors" \
  "#features '2' is more than the 1 word after it"
refused "#features fewer than given" \
  "0 32768 mirror core 1 1024 $LEGS 1 handle_errors keep_log" \
  "unexpected 'keep_log' after 1 feature words"
refused "unknown feature" "0 32768 mirror core 1 1024 $LEGS 1 block_on_error" \
  "unknown feature 'block_on_error': expected handle_errors, keep_log or read_balance <policy>"
refused "keep_log without handle_errors" \
  "0 32768 mirror disk 2 $L 1024 $LEGS 1 keep_log" \
  "keep_log needs handle_errors"
refused "read_balance bad policy" \
  "0 32768 mirror core 1 1024 $LEGS 2 read_balance fastest" \
  "read_balance 'fastest': expected default_leg, round-robin or queue-length"
refused "read_balance without a value" \
  "0 32768 mirror core 1 1024 $LEGS 2 handle_errors read_balance" \
  "feature read_balance has no value within #features: expected read_balance <policy>, 2 words"

for i in "${!names[@]}"; do
  startup_refused "$i"
done

# The workload runs through every reload: the old table serves.
model=$NDM_TMP/model
start_workload "$(nbd_uri "$top")" "$model"
wait_ops 20
for i in "${!names[@]}"; do
  reload_refused "$i"
done
n=$(cat "$progress")
wait_ops $((n + 20))

# The good twins of the cases above load and resume (so each failure
# above is about its bad word, not the rest of the line), and the live
# table is the same afterwards.
good=$(tmp_sock)
start_dm "$good" "0 32768 mirror core 2 1024 nosync 2 $A 0 $B 0 3 handle_errors read_balance round-robin"
stop_dm "$NBDKIT_PID"
good=$(tmp_sock)
start_dm "$good" "0 32768 mirror core 2 128 nosync 2 $A 0 ${U[minblock]} 0"
stop_dm "$NBDKIT_PID"

touch "$stop"
mp_wait_client "$wl_pid" "the workload through the reloads (its errors are above)"
[ "$(ctl "$ctlsock" table)" = "$live" ] || fail "the live table changed"
if [ $failures -ne 0 ]; then
  echo "$failures failed checks"
  exit 1
fi
echo ok
