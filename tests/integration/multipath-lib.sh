# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the multipath integration tests (test-multipath-*.sh).
# Source it after functions.sh:
#
#   source ./functions.sh
#   source ./multipath-lib.sh
#
# The paths of a multipath target are several nbdkit servers on one
# backing file: they are the paths to the same data.  The tests read the
# target's state from its status line (dm-mpath's layout, see
# core/targets/multipath.c):
#
#   2 <queue_io> 0 0 <#groups> <group> {A|E|D 0 <#paths> 0
#     {<uri> A|F <fail count>}...}...
#
# through the control socket (ctl from functions.sh), so only the test of
# messages needs nbd-dmsetup.

# mp_status CTLSOCK: the multipath target's status, without "start length
# multipath" (the table has one target).
mp_status ()
{
  ctl "$1" status | cut -d' ' -f4-
}

# mp_path_state CTLSOCK URI: print "A|F <fail count>" for path URI, or
# fail if the status line does not name it.
mp_path_state ()
{
  ctl "$1" status |
    awk -v uri="$2" '
      { for (i = 1; i + 2 <= NF; i++)
          if ($i == uri) { print $(i + 1), $(i + 2); found = 1; exit } }
      END { exit !found }'
}

# mp_queue_io CTLSOCK: the <queue_io> field (1 while I/O is held for want
# of a path).
mp_queue_io ()
{
  ctl "$1" status | awk '{ print $5 }'
}

# mp_wait_path CTLSOCK URI STATE [SECS]: wait until path URI is in STATE
# (A or F), for at most SECS (default 20: generous, the checker runs every
# checker-interval); fail saying what the status was.
mp_wait_path ()
{
  local sock=$1 uri=$2 want=$3 secs=${4:-20} i state=""

  for ((i = 0; i < secs * 10; i++)); do
    state=$(mp_path_state "$sock" "$uri")
    if [ "${state%% *}" = "$want" ]; then
      return 0
    fi
    sleep 0.1
  done
  echo "$0: path $uri is '$state' after $secs s, expected $want:" >&2
  ctl "$sock" status >&2
  return 1
}

# mp_restart SOCK ARGS...: start a path server again on SOCK, where an
# earlier one was killed: its stale socket file is removed first, else
# nbdkit refuses to bind.
mp_restart ()
{
  local sock=$1

  shift
  rm -f "$sock"
  start_nbdkit -U "$sock" "$@"
}

# mp_wait_client PID WHAT [SECS]: wait for a background client of the
# test (started with &) to end, for at most SECS (default 30), and fail
# saying WHAT did not work if it failed or is still running.
mp_wait_client ()
{
  local pid=$1 what=$2 secs=${3:-30} i

  for ((i = 0; i < secs * 10; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    echo "$0: $what: still waiting after $secs s" >&2
    return 1
  fi
  if ! wait "$pid"; then
    echo "$0: $what: failed" >&2
    return 1
  fi
}

# mp_py ARGS...: $PY with a 60 s limit, so that a request the target never
# answers fails the test, saying so, instead of hanging it.
mp_py ()
{
  local rc=0

  timeout 60 $PY "$@" || rc=$?
  if [ $rc -eq 124 ]; then
    echo "$0: a client got no answer within 60 s" >&2
  fi
  return $rc
}
