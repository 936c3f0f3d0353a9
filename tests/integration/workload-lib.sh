# SPDX-License-Identifier: BSD-3-Clause
# The verifying workload (verify-workload.py) for integration tests,
# sourced after functions.sh.  Needs $ctlsock (the dm control socket) and
# $NDM_TMP.
#
#   start_workload URI MODEL [SEED]   start it in the background: wl_pid,
#                                     and its files $stop and $progress
#   wait_ops N                        until it has done N write+read pairs
#                                     in all (20 s at most: it does
#                                     hundreds a second)
# Stop it with: touch "$stop", then wait for $wl_pid.

start_workload ()
{
  stop=$NDM_TMP/stop; progress=$NDM_TMP/progress
  echo 0 >"$progress"
  # Whatever happens, the workload stops when the test ends.
  cleanup_fn touch "$stop"
  $PY ./verify-workload.py "$1" "$stop" "$progress" "$2" ${3-} &
  wl_pid=$!
}

wait_ops ()
{
  local i

  for ((i = 0; i < 200; i++)); do
    if [ "$(cat "$progress")" -ge "$1" ]; then
      return 0
    fi
    if ! alive "$wl_pid"; then
      echo "$0: the workload ended early" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$0: workload stuck at $(cat "$progress") pairs, waiting for $1" >&2
  ctl "$ctlsock" status >&2
  exit 1
}
