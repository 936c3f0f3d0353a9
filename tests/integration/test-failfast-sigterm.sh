#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A leg's or a path's server stopped with SIGTERM under writes (nbdkit
# then answers ESHUTDOWN and stops accepting; nbd-dm's device waits up to
# connect-timeout for a new server behind the address).  Where the target
# has another device to go to, its clones are failfast (dm's
# REQ_FAILFAST_TRANSPORT): the leg or path fails at once and the writes
# go on elsewhere, instead of each waiting for the reconnect window.
# Asserted, for a mirror (handle_errors) and a multipath table:
#  - with connect-timeout=600 (a 10-minute window), 8 MiB written after
#    the SIGTERM complete within 60 s with no client error (before the
#    fix they waited out the window: a hang here);
#  - the leg (D) or path (F) is failed by the data path, the checker
#    being too slow to act (checker-interval=600);
#  - what was written reads back, and is on the surviving device.
source ./functions.sh
source ./multipath-lib.sh
requires nbdkit file --version

data=$NDM_TMP/data; back=$NDM_TMP/back
head -c 8M /dev/urandom >"$data"
keys=(connect-timeout=600 checker-interval=600)

# sigterm_then_write WHAT PID TABLE: nbd-dm over TABLE on $top (control
# $ctlsock, as dm_pid), some data written, then PID's server stopped with
# SIGTERM and $data written within 60 s.
sigterm_then_write ()
{
  local what=$1 pid=$2 table=$3

  start_dm "$top" "$table" control="$ctlsock" "${keys[@]}"
  dm_pid=$NBDKIT_PID
  head -c 1M /dev/urandom | nbdcopy - "$(nbd_uri "$top")"
  kill -TERM "$pid"
  timeout 60 nbdcopy "$data" "$(nbd_uri "$top")" ||
    { echo "$0: $what: writes after the SIGTERM failed or hung"; exit 1; }
}

# ---- mirror -------------------------------------------------------------------
a=$(tmp_sock); b=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/mirror.ctl
truncate -s 16M "$NDM_TMP/a.img" "$NDM_TMP/b.img"
start_nbdkit -U "$a" file "$NDM_TMP/a.img"; a_pid=$NBDKIT_PID
start_nbdkit -U "$b" file "$NDM_TMP/b.img"
sigterm_then_write mirror "$a_pid" \
  "0 32768 mirror core 2 1024 nosync 2 $(nbd_uri "$a") 0 $(nbd_uri "$b") 0 1 handle_errors"
letters=$(ctl "$ctlsock" status | awk '{ print $(NF - 2) }')
test "$letters" = DA ||
  { echo "$0: mirror: letters '$letters', expected DA"; ctl "$ctlsock" status; exit 1; }
timeout 60 nbdcopy "$(nbd_uri "$top")" "$back"
cmp -n 8M "$back" "$data"
cmp -n 8M "$NDM_TMP/b.img" "$data"
stop_dm "$dm_pid"

# ---- multipath ----------------------------------------------------------------
p1=$(tmp_sock); p2=$(tmp_sock); top=$(tmp_sock); ctlsock=$NDM_TMP/mp.ctl
truncate -s 16M "$NDM_TMP/disk.img"
start_nbdkit -U "$p1" file "$NDM_TMP/disk.img"; p1_pid=$NBDKIT_PID
start_nbdkit -U "$p2" file "$NDM_TMP/disk.img"
P1=$(nbd_uri "$p1"); P2=$(nbd_uri "$p2")
sigterm_then_write multipath "$p1_pid" \
  "0 32768 multipath 0 0 1 1 round-robin 0 2 1 $P1 1 $P2 1"
state=$(mp_path_state "$ctlsock" "$P1")
test "${state%% *}" = F ||
  { echo "$0: multipath: path 1 is '$state', expected failed"; exit 1; }
timeout 60 nbdcopy "$(nbd_uri "$top")" "$back"
cmp -n 8M "$back" "$data"
cmp -n 8M "$NDM_TMP/disk.img" "$data"
stop_dm "$dm_pid"
