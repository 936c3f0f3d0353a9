#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Devices over TLS with a pre-shared key (nbds+unix://USER@/?socket=...&
# tls-psk-file=...), against nbdkit servers that require TLS.  Asserted:
#  - a striped table over two TLS devices serves: random data written
#    through nbd-dm reads back identical, and each stripe's chunk is on
#    its device (read there over TLS);
#  - a device that fails its handshake stops start-up (non-zero exit,
#    nothing served) with a message that names the device and gives
#    libnbd's reason, and never quotes a key: a wrong key, a username the
#    server does not know, a server without TLS;
#  - what would silently drop TLS or cannot work is refused before any
#    connection: a TLS parameter with a plaintext scheme, a PSK without a
#    username.
source ./functions.sh
source ./tls-lib.sh
requires nbdkit memory --version
requires nbdcopy --version
requires $PY -c 'import nbd'

psk=$NDM_TMP/alice.psk; wrong=$NDM_TMP/wrong.psk; bob=$NDM_TMP/bob.psk
make_psk "$psk" alice
make_psk "$wrong" alice                 # alice, another key
make_psk "$bob" bob "$(psk_key "$psk")" # alice's key, a user nobody knows

a=$(tmp_sock); b=$(tmp_sock); plain=$(tmp_sock); top=$(tmp_sock)
start_tls_nbdkit "$a" "$psk" alice memory 8M
start_tls_nbdkit "$b" "$psk" alice memory 8M
start_nbdkit -U "$plain" memory 8M
A=$(tls_uri "$a" alice "$psk"); B=$(tls_uri "$b" alice "$psk")

failures=0
fail ()
{
  echo "FAIL $*"
  failures=$((failures + 1))
}

# ---- (a) a striped table over two TLS devices --------------------------------
start_dm "$top" "0 32768 striped 2 128 $A 0 $B 0"
dm_pid=$NBDKIT_PID
src=$NDM_TMP/src; back=$NDM_TMP/back
head -c 16M /dev/urandom >"$src"
nbdcopy "$src" "$(nbd_uri "$top")"
nbdcopy "$(nbd_uri "$top")" "$back"
cmp_files "$src" "$back"
# 64 KiB chunks: chunk 0 is a's first, chunk 1 b's first, chunk 2 a's
# second.  Read on the devices themselves, over TLS.
$PY - "$src" "$A" "$B" <<'PYEOF'
import sys
import nbd

src, a_uri, b_uri = sys.argv[1:]
data = open(src, "rb").read()
CH = 65536
for uri, chunks in ((a_uri, (0, 2)), (b_uri, (1, 3))):
    h = nbd.NBD()
    h.set_uri_allow_local_file(True)
    h.connect_uri(uri)
    assert h.get_tls_negotiated(), uri
    for row, chunk in enumerate(chunks):
        got = h.pread(CH, row * CH)
        assert got == data[chunk * CH:(chunk + 1) * CH], (uri, chunk)
    h.shutdown()
print("stripes are on their TLS devices")
PYEOF
stop_dm "$dm_pid"

# ---- refused at start-up ----------------------------------------------
# refused WHAT TABLE -- REGEX...: nbdkit with TABLE fails at start-up,
# serves nothing, and stderr matches every (extended) REGEX and holds no
# key of this test.
refused ()
{
  local what=$1 table=$2 sock rc=0 re err=$NDM_TMP/stderr

  shift 3
  sock=$(tmp_sock)
  run_dm -f -U "$sock" "$NDM_PLUGIN" table-text="$table" 2>"$err" || rc=$?
  check_sanitizer_log "$err" || fail "$what: sanitizer report"
  if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
    fail "$what: nbdkit exited with $rc (expected a start-up error)"
    cat "$err"
    return
  fi
  [ ! -e "$sock" ] || fail "$what: the socket exists although start-up failed"
  for re in "$@"; do
    grep -E -q -- "$re" "$err" || fail "$what: stderr does not match /$re/"
  done
  no_key_in "$(cat "$err")" "$psk" "$wrong" || fail "$what: stderr quotes a key"
  echo "refused, $what: $(grep -F "line 1:" "$err")"
}

# The URI in a message, as a regex.
quote ()
{
  sed 's/[][\.*^$?+(){}|/]/\\&/g' <<<"$1"
}

W=$(tls_uri "$a" alice "$wrong")
refused "wrong key" "0 16384 linear $W 0" -- \
  "line 1: linear: device $(quote "$W"): " "gnutls_handshake" \
  "a key or username the server does not have"
U=$(tls_uri "$a" bob "$bob")
refused "unknown username" "0 16384 linear $U 0" -- \
  "device $(quote "$U"): " "gnutls_handshake"
# striped needs each of its devices: one bad one is enough.
refused "one wrong key of two" "0 32768 striped 2 128 $A 0 $W 0" -- \
  "line 1: striped: device $(quote "$W"): " "gnutls_handshake"
# (d) a server without TLS is never reached in plaintext.
P=$(tls_uri "$plain" alice "$psk")
refused "server without TLS" "0 16384 linear $P 0" -- \
  "device $(quote "$P"): " "server refused TLS"

# Refused before connecting: the message quotes the URI.
K="$(nbd_uri "$a")&tls-psk-file=$psk"
refused "key with a plaintext scheme" "0 16384 linear $K 0" -- \
  "device '$(quote "$K")': tls-psk-file= asks for TLS, but nbd\+unix:// " \
  "expected a TLS scheme \(nbds://, nbds\+unix://, nbds\+vsock://\)"
N="nbds+unix:///?socket=$a&tls-psk-file=$psk"
refused "key without a username" "0 16384 linear $N 0" -- \
  "device '$(quote "$N")': tls-psk-file= without a username"

# tls-username= names the user as well as user@ does (libnbd 1.14 does
# not read it: nbd-dm passes it on).
top=$(tmp_sock)
T="nbds+unix:///?socket=$a&tls-psk-file=$psk&tls-username=alice"
start_dm "$top" "0 16384 linear $T 0"
nbdinfo --size "$(nbd_uri "$top")" | grep -qx 8388608 ||
  fail "tls-username=: the device does not serve"

[ $failures -eq 0 ]
