# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the mirror integration tests (test-mirror-*.sh), sourced
# after functions.sh.  They read the target's state through the control
# socket $ctlsock (ctl from functions.sh); the table has one mirror.
#
#   sync_letters          "<in sync>/<regions> 1 <letters>" of the status
#                         line (docs/targets/mirror.md), e.g. "32/32 1 AA"
#   wait_sync WANT [SECS] until sync_letters is WANT (default 60 s); fail
#                         showing the JSON status
#   leg_field I FIELD     leg I's (from 0, table order) FIELD of the JSON
#                         status's detail, empty if it has none or null

sync_letters ()
{
  ctl "$ctlsock" status | awk '{ print $(NF - 4), $(NF - 3), $(NF - 2) }'
}

wait_sync ()
{
  local want=$1 secs=${2:-60} i got=""

  for ((i = 0; i < secs * 10; i++)); do
    got=$(sync_letters)
    if [ "$got" = "$want" ]; then
      return 0
    fi
    sleep 0.1
  done
  echo "$0: status '$got' after $secs s, expected '$want':" >&2
  ctl "$ctlsock" "status --json" >&2
  return 1
}

leg_field ()
{
  ctl "$ctlsock" "status --json" | $PY -c '
import json, sys
leg = json.load(sys.stdin)["targets"][0]["detail"]["legs"][int(sys.argv[1])]
v = leg.get(sys.argv[2])
print("" if v is None else v)' "$1" "$2"
}
