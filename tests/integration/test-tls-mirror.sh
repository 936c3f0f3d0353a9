#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# mirror over two TLS legs (two nbdkit file servers, each on its own
# backing file, both requiring TLS with alice's pre-shared key), leg b's
# key file holding a wrong key at load.  Asserted:
#  - the table loads and serves on leg a alone: b is failed (U), and
#    status --json gives its reason: the device and its TLS handshake
#    failure, no key;
#  - once b's key file holds the right key (rewritten in place) the
#    checker (checker-interval=1) reinstates b over TLS by itself, the
#    resync copies every region onto it (a leg not reachable at load may
#    differ anywhere) and the status reaches 32/32 with letters AA;
#  - at the end both backing files are byte-identical, with the data
#    written while b was failed.
source ./functions.sh
source ./tls-lib.sh
source ./mirror-lib.sh
requires nbdkit file --version
requires $PY -c 'import nbd, json'

psk=$NDM_TMP/alice.psk; bkey=$NDM_TMP/b.psk
make_psk "$psk" alice
make_psk "$bkey" alice                  # not the servers' key
a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
aimg=$NDM_TMP/a.img; bimg=$NDM_TMP/b.img
truncate -s 16M "$aimg"
# b starts with other data: only the resync can make it a's copy.
head -c 16M /dev/urandom >"$bimg"
start_tls_nbdkit "$a" "$psk" alice file "$aimg"
start_tls_nbdkit "$b" "$psk" alice file "$bimg"
A=$(tls_uri "$a" alice "$psk"); B=$(tls_uri "$b" alice "$bkey")
start_dm "$top" "0 32768 mirror core 1 1024 2 $A 0 $B 0 1 handle_errors" \
  control="$ctlsock" checker-interval=1

st=$(sync_letters)
echo "at load: $st"
case $st in
  *" 1 AU") ;;
  *) echo "$0: leg b is not failed at load: $st" >&2; exit 1 ;;
esac
handshake_reason "leg b at load" "$B" "$(leg_field 1 reason)"
no_key_in "$(ctl "$ctlsock" "status --json")" "$psk" "$bkey"

# Written while b is failed: on a only.
src=$NDM_TMP/src
head -c 16M /dev/urandom >"$src"
nbdcopy "$src" "$(nbd_uri "$top")"
cmp_files "$src" "$aimg"

cp "$psk" "$bkey"                       # the right key, in place
wait_sync "32/32 1 AA" 60
[ -z "$(leg_field 1 reason)" ]
cmp_files "$aimg" "$bimg"
echo "leg b reinstated over TLS and resynced"
