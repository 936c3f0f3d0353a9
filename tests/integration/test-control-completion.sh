#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbd-dmsetup's bash completion (tools/nbd-dmsetup.bash-completion),
# sourced in bash with bash-completion as a user's shell has it, and
# asked as TAB asks: the verbs for a prefix, a verb's options, the global
# options, no verb taken from an option's value, the target types of
# --target from a running server, files for reload.
source ./functions.sh
requires test -x "$DMSETUP"
requires test -r /usr/share/bash-completion/bash_completion

top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_dm "$top" "0 4096 zero" control="$ctlsock"
touch "$NDM_TMP/vol.table"
# The tests run in tests/integration.
completion=$(cd ../.. && pwd)/tools/nbd-dmsetup.bash-completion

# complete LINE: the completions bash would offer at the end of LINE
# (the program's name being $DMSETUP), sorted, one a line.
complete_line ()
{
  # shellcheck disable=SC2016 # expanded by the inner bash
  bash -c '
source /usr/share/bash-completion/bash_completion
source "$1"
COMP_LINE=$2
COMP_POINT=${#COMP_LINE}
read -r -a COMP_WORDS <<<"$COMP_LINE"
[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_nbd_dmsetup nbd-dmsetup "${COMP_WORDS[COMP_CWORD]}" \
  "${COMP_WORDS[COMP_CWORD - 1]}"
printf "%s\n" "${COMPREPLY[@]}" | LC_ALL=C sort
' bash "$completion" "$1"
}

failures=0
# want LINE EXPECTED: the completions of LINE are EXPECTED (words
# separated by blanks).
want ()
{
  local got

  got=$(complete_line "$1" | tr '\n' ' ' | sed 's/ $//')
  [ "$got" = "$2" ] || {
    echo "FAIL '$1': got '$got', expected '$2'"
    failures=$((failures + 1))
  }
}

want "$DMSETUP st" "stats status"
want "$DMSETUP -c $ctlsock ta" "table targets"
want "$DMSETUP table --" "--control= --help --inactive --json --target= --timeout= --verbose --version"
want "$DMSETUP info --col" "--columns"
want "$DMSETUP --json re" "reload resume"
# A value is not the verb: after "--timeout 5" the verb is still to come.
want "$DMSETUP --timeout 5 sh" "show"
want "$DMSETUP -c $ctlsock status --target mu" "multipath"
want "$DMSETUP -c $ctlsock status --target li" "linear"
want "$DMSETUP reload $NDM_TMP/vol.t" "$NDM_TMP/vol.table"
[ $failures -eq 0 ]
