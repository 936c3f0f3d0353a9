# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the TLS tests (test-tls-*.sh): devices served by nbdkit
# with --tls=require and a pre-shared key.  Source it after functions.sh:
#
#   source ./functions.sh
#   source ./tls-lib.sh
#   make_psk "$NDM_TMP/keys.psk" alice
#   s=$(tmp_sock)
#   start_tls_nbdkit "$s" "$NDM_TMP/keys.psk" alice memory 8M
#   uri=$(tls_uri "$s" alice "$NDM_TMP/keys.psk")
#
# A PSK file holds "username:hexkey" lines (nbdkit-tls(1)); the keys are
# random, from /dev/urandom, so no test depends on psktool.

# Both ends must have been built with GnuTLS.
requires sh -c 'nbdkit --dump-config | grep -qx tls=yes'
requires $PY -c 'import nbd, sys; sys.exit(not nbd.NBD().supports_tls())'

# make_psk FILE USER [HEXKEY]: write USER's key to FILE (mode 0600); a new
# random one unless HEXKEY is given.  Prints nothing.
make_psk ()
{
  local key=${3:-$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')}

  (umask 077; printf '%s:%s\n' "$2" "$key" >"$1")
}

# psk_key FILE: the hex key of FILE's first line.
psk_key ()
{
  cut -d: -f2 "$1" | head -n1
}

# tls_uri SOCK USER PSKFILE: the nbds+unix URI of a TLS server on SOCK,
# as USER with the key in PSKFILE.
tls_uri ()
{
  echo "nbds+unix://$2@/?socket=$1&tls-psk-file=$3"
}

# start_tls_nbdkit SOCK PSKFILE USER ARGS...: an nbdkit that requires TLS
# with the keys of PSKFILE on SOCK, serving ARGS (a plugin and its
# parameters); it is ready once USER's key reaches it.
start_tls_nbdkit ()
{
  local sock=$1 psk=$2 user=$3

  shift 3
  start_nbdkit -probe "$(tls_uri "$sock" "$user" "$psk")" -U "$sock" \
    --tls=require --tls-psk="$psk" "$@"
}

# no_key_in TEXT PSKFILE...: fail, saying so, if TEXT quotes the key of
# any PSKFILE: messages and status name a key file, never a key.
no_key_in ()
{
  local text=$1 f

  shift
  for f in "$@"; do
    if grep -q -i -F "$(psk_key "$f")" <<<"$text"; then
      echo "$0: the key of $f is quoted in:" >&2
      echo "$text" >&2
      return 1
    fi
  done
}

# handshake_reason WHAT URI REASON: fail, saying so, unless REASON is
# device URI's TLS handshake failing (a key the server does not have).
handshake_reason ()
{
  case $3 in
    "device $2: "*gnutls_handshake*"a key or username the server does"*)
      echo "$1: $3" ;;
    *) echo "$0: $1: not the TLS handshake's failure: '$3'" >&2
       return 1 ;;
  esac
}
