#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# control: nbd-dmsetup and the server read one spec of the verbs
# (include/nbd-dm/control.h).  The tool's --help lists every verb the
# server's 'help' lists, in the same order, with the same options.  A
# word count the server refuses, the tool refuses before connecting
# (exit 2) with the server's own message; an option a verb does not take
# is refused by both.  A first word more than a verb takes is the
# device's name, as dmsetup puts it, and goes to the server to check.
source ./functions.sh
requires test -x "$DMSETUP"
requires $PY -c 'import ndmctl'

top=$(tmp_sock); ctlsock=$NDM_TMP/ctl
start_dm "$top" "0 4096 zero" control="$ctlsock"

failures=0
fail ()
{
  echo "FAIL $*"
  failures=$((failures + 1))
}

# A usage line as "verb [--option]...": what both must agree on (the
# words' synopsis is the tool's own for a table: FILE or --text).
verb_and_options ()
{
  awk '{ s = $1
         for (i = 2; i <= NF; i++)
           if ($i ~ /^\[--/ || ($i ~ /^[A-Z]+\]$/ && $(i - 1) ~ /^\[--/))
             s = s " " $i
         print s }'
}
ctl "$ctlsock" help | verb_and_options >"$NDM_TMP/server.verbs"
"$DMSETUP" --help >"$NDM_TMP/tool.help"
# show is the tool's own: it renders 'status --json'.
sed -n '/^Commands:/,/^[^ ]/s/^  //p' "$NDM_TMP/tool.help" |
  verb_and_options | grep -v '^show$' >"$NDM_TMP/tool.verbs"
[ "$(wc -l <"$NDM_TMP/server.verbs")" -ge 12 ] ||
  fail "the server's help lists $(wc -l <"$NDM_TMP/server.verbs") verbs"
diff -u "$NDM_TMP/server.verbs" "$NDM_TMP/tool.verbs" ||
  fail "nbd-dmsetup --help and the server's help list other verbs"

# server_error LINE: the server's "error" message for LINE.
server_error ()
{
  $PY -c '
import sys, ndmctl
c = ndmctl.Conn(sys.argv[1])
c.send(sys.argv[2])
st, msg = c.reply()
c.close()
if st != "error":
    sys.exit(1)
print(msg)
' "$ctlsock" "$1"
}

# Word counts: the same refusal from both.
for line in "info nbd-dm x" "table nbd-dm x" "status nbd-dm x" \
            "stats --clear nbd-dm x" "message 0" "message nbd-dm 0" \
            "suspend --noflush nbd-dm x" "reload nbd-dm a b" \
            "resume nbd-dm x" "clear nbd-dm x" "deps nbd-dm x" \
            "wait nbd-dm 1 2" "targets x" "version x" "help me"; do
  if ! want=$(server_error "$line"); then
    fail "'$line': the server took it"
    continue
  fi
  rc=0
  # shellcheck disable=SC2086 # the words of $line are the arguments
  "$DMSETUP" -c "$ctlsock" $line 2>"$NDM_TMP/tool.err" || rc=$?
  [ $rc -eq 2 ] || fail "'$line': nbd-dmsetup exited $rc, not 2 (usage)"
  got=$(head -n 1 "$NDM_TMP/tool.err")
  [ "$got" = "nbd-dmsetup: $want" ] ||
    fail "'$line': nbd-dmsetup said '$got', the server '$want'"
done

# Options: every verb refuses, on both sides, each option it does not take
# (one that takes a value is given one, one of its values if it has a
# list).
options=$(grep -o -- '\[--[a-z-]*' "$NDM_TMP/server.verbs" | tr -d '[' |
            sort -u)
[ -n "$options" ] || fail "no options in the server's help"
while read -r verb taken; do
  for o in $options; do
    case " $taken " in *" [$o] "* | *" [$o "[A-Z]* | *" [$o="*) continue ;; esac
    ow=$o
    grep -q -- "\[$o [A-Z]" "$NDM_TMP/server.verbs" && ow=$o=x
    # One of its values ("[--format=text|openmetrics]"): the first.
    v=$(grep -o -- "\[$o=[a-z]*" "$NDM_TMP/server.verbs" | head -n 1 || true)
    [ -n "$v" ] && ow=${v#[}
    want=$(server_error "$verb $ow") || { fail "'$verb $ow' taken"; continue; }
    case $want in
      "$verb: unknown option '$o' (usage: "*) ;;
      *) fail "'$verb $o': the server said '$want'" ;;
    esac
    rc=0
    "$DMSETUP" -c "$ctlsock" "$verb" "$ow" 2>"$NDM_TMP/tool.err" || rc=$?
    [ $rc -eq 2 ] && grep -q -F "option '$o' does not apply to '$verb'" \
                          "$NDM_TMP/tool.err" ||
      fail "'$verb $o': nbd-dmsetup exited $rc:" \
           "$(head -n 1 "$NDM_TMP/tool.err")"
  done
done <"$NDM_TMP/server.verbs"

[ $failures -eq 0 ]
