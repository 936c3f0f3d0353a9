# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the integration tests, in the style of nbdkit's
# tests/functions.sh.  Source it first thing:
#
#   source ./functions.sh
#   requires nbdsh --version
#   a=$(tmp_sock); top=$(tmp_sock)
#   start_nbdkit -U "$a" memory 8M
#   start_dm "$top" "0 16384 linear $(nbd_uri "$a") 0"
#
# Every server listens on a Unix socket in a private temp dir, runs in the
# foreground (-f) as a child of the test, and is killed by its recorded PID
# when the test exits, pass or fail.  A dm server's stderr goes to a log
# that is checked for sanitizer reports at exit: a report fails the test.
#
# Environment (set by ctest, tests/integration/CMakeLists.txt):
#   NDM_PLUGIN     path to nbdkit-dm-plugin.so
#   NDM_SANITIZER  asan (ASan+UBSan), tsan (ThreadSanitizer) or none: what
#                  the plugin was built with (NDM_SANITIZED=1, the older
#                  name, still means asan)
#   NDM_BUILD_DIR  the build directory

set -euo pipefail

# nbdsh and nbdinfo's python must be the system one, with the libnbd module.
export PATH=/usr/bin:$PATH
PY=/usr/bin/python3

: "${NDM_PLUGIN:?NDM_PLUGIN must point at nbdkit-dm-plugin.so (run via ctest)}"
: "${NDM_SANITIZED:=0}"
if [ -z "${NDM_SANITIZER-}" ]; then
  if [ "$NDM_SANITIZED" = 1 ]; then NDM_SANITIZER=asan; else NDM_SANITIZER=none; fi
fi
case $NDM_PLUGIN in /*) ;; *) NDM_PLUGIN=$PWD/$NDM_PLUGIN ;; esac
if [ ! -f "$NDM_PLUGIN" ]; then
  echo "$0: NDM_PLUGIN=$NDM_PLUGIN: no such file (build first)" >&2
  exit 1
fi

# requires CMD [ARGS...]: skip the test (exit 77) unless CMD runs.
requires ()
{
  if ! "$@" >/dev/null 2>&1; then
    echo "$0: skipped: '$*' failed" >&2
    exit 77
  fi
}

# Every test starts servers (nbdkit) and waits for them (nbdinfo); the
# dm server's sanitizer runtime is found and a shim built with gcc.
requires nbdkit --version
requires nbdinfo --version
if [ "$NDM_SANITIZER" != none ]; then requires gcc --version; fi

# Everything a test creates lives here; removed at exit.
NDM_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ndm-it.XXXXXX")

_ndm_cleanups=()        # commands from cleanup_fn, run in reverse order
_ndm_pids=()            # every server we started, in start order
_ndm_dm_pids=()         # the subset that are dm servers (sanitized)
declare -A _ndm_dm_log  # dm server PID -> its stderr log

# cleanup_fn CMD [ARGS...]: run CMD when the test exits, even on failure.
cleanup_fn ()
{
  _ndm_cleanups+=("$(printf '%q ' "$@")")
}

# tmp_sock: print a fresh Unix socket path (short: sun_path is 108 bytes).
# It runs in a $(...) subshell, so a counter would not survive: mktemp
# reserves a unique name and the socket takes that name plus ".sock".
tmp_sock ()
{
  echo "$(mktemp "$NDM_TMP/sXXXXXX").sock"
}

# nbd_uri SOCK: the NBD URI of a server listening on SOCK.
nbd_uri ()
{
  echo "nbd+unix:///?socket=$1"
}

# What the dm server (and only it: nbdkit itself is not instrumented) needs
# so that a sanitizer report stops it and shows in its log.
#
# detect_leaks=0: nbdkit dlcloses the plugin before LeakSanitizer runs, so
# leak stacks in the plugin print as "<unknown module>" and cannot be told
# apart from nbdkit's own (a 280-byte block from one of its threads) and
# glib's never-freed GPrivate keys, reported on every run.  Leaks are the
# unit tests' job (tests/unit links the core and runs under ASan).
#
# The swift_demangle shim works around a start-up bug of a preloaded ASan
# runtime, nothing of ours: ASan initialises on the first malloc, which is
# p11-kit's constructor (nbdkit -> gnutls -> p11-kit) calling newlocale()
# with glibc's locale lock held for writing; ASan's init then looks up the
# optional symbol swift_demangle, and dlerror() translating "undefined
# symbol" through gettext takes and releases that same lock, corrupting
# it.  From then on the first strerror() (libnbd, on a lost device) leaves
# exit() deadlocked in p11-kit's destructor.  With the symbol defined the
# lookup succeeds and dlerror() has nothing to translate.
_ndm_sanitizer_env ()
{
  local shim=$NDM_TMP/swift-demangle-shim.so
  local here

  [ "$NDM_SANITIZER" != none ] || return 0
  if [ ! -e "$shim" ]; then
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
      'char *swift_demangle (const char *m, size_t n, char *o, size_t *on,' \
      '                      uint32_t f) { return NULL; }' |
      gcc -shared -fPIC -o "$shim" -x c -
  fi
  case $NDM_SANITIZER in
    asan)
      echo "LD_PRELOAD=$(gcc -print-file-name=libasan.so)" \
           "$(gcc -print-file-name=libubsan.so) $shim"
      echo "ASAN_OPTIONS=halt_on_error=1:abort_on_error=0:detect_leaks=0"
      echo "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1"
      ;;
    tsan)
      # What TSan sees in nbdkit and what it cannot: tests/tsan/README.md.
      # The shim: TSan's runtime shares ASan's lazy start-up and lookup.
      # G_SLICE: see tsan_slice_off in tests/tsan/glib-tsan.c (the plugin
      # cannot restart nbdkit the way a unit test restarts itself: by the
      # time it is loaded GLib has read G_SLICE).  The plugin's own
      # __tsan_default_options is read before nbdkit loads it, too late,
      # hence the same options here.  halt_on_error: the first report
      # ends the server (exit 66), which fails the test at once; the report
      # is in the log either way, and check_sanitizer_log fails on it.
      # TSAN_OPTIONS from the caller's environment go last, to override
      # (e.g. halt_on_error=0 to collect every report of a run).
      here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tsan" && pwd)
      echo "LD_PRELOAD=$(gcc -print-file-name=libtsan.so) $shim"
      echo "G_SLICE=always-malloc"
      echo "TSAN_OPTIONS=halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=$here/suppressions.txt${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
      ;;
  esac
}

# run_dm ARGS...: run nbdkit in the foreground with the dm plugin's
# sanitizer environment (for tests of start-up and --help).  Its exit
# status is returned (124: still running after 20 s, killed); stderr is
# left to the caller.
run_dm ()
{
  local -a env=()
  local line

  while IFS= read -r line; do env+=("$line"); done < <(_ndm_sanitizer_env)
  timeout 20 env "${env[@]}" nbdkit "$@"
}

# check_sanitizer_log FILE: fail if FILE holds an ASan, UBSan or TSan
# report (TSan's start with "WARNING", its failures to start "FATAL").
check_sanitizer_log ()
{
  local re='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:'

  re+='|WARNING: ThreadSanitizer|FATAL: ThreadSanitizer'

  if grep -E -q "$re" "$1"; then
    echo "$0: sanitizer report in $1:" >&2
    cat "$1" >&2
    return 1
  fi
}

# alive PID: true while PID runs.  kill -0 alone would also be true for a
# child that exited but is not reaped yet (a zombie).
alive ()
{
  local state

  kill -0 "$1" 2>/dev/null || return 1
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$state" != Z ]
}

# start_nbdkit [-dm] [-probe URI] ARGS...: run 'nbdkit -f ARGS...' in the
# background and wait until the socket given with -U answers (URI answers,
# with -probe: a server that requires TLS answers only a TLS URI with its
# key).  -dm marks the dm server: it gets the sanitizer environment and
# its stderr goes to a log that is checked at exit.  The PID is left in
# NBDKIT_PID (to kill a device on purpose) and killed at exit if still
# running.
start_nbdkit ()
{
  local dm=0 sock="" probe="" i log pid
  local -a env=() args
  local line

  if [ "${1-}" = -dm ]; then dm=1; shift; fi
  if [ "${1-}" = -probe ]; then probe=$2; shift 2; fi
  args=("$@")
  for ((i = 0; i < ${#args[@]}; i++)); do
    if [ "${args[i]}" = -U ]; then sock=${args[i + 1]}; fi
  done
  if [ -z "$sock" ]; then
    echo "$0: start_nbdkit: -U SOCKET is required" >&2
    return 1
  fi

  log=$NDM_TMP/nbdkit-$(basename "$sock").$RANDOM.log
  if [ $dm = 1 ]; then
    while IFS= read -r line; do env+=("$line"); done < <(_ndm_sanitizer_env)
  fi
  env "${env[@]}" nbdkit -f "$@" 2>"$log" &
  pid=$!
  _ndm_pids+=("$pid")
  if [ $dm = 1 ]; then
    _ndm_dm_pids+=("$pid")
    _ndm_dm_log[$pid]=$log
  fi
  NBDKIT_PID=$pid
  NBDKIT_LOG=$log

  # Generous: a sanitized plugin opening several devices is slow.
  for ((i = 0; i < 300; i++)); do
    if ! alive "$pid"; then
      echo "$0: nbdkit $* died at start-up:" >&2
      cat "$log" >&2
      return 1
    fi
    if [ -S "$sock" ] &&
         nbdinfo --size "${probe:-$(nbd_uri "$sock")}" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  echo "$0: nbdkit $* did not answer on $sock within 30 s:" >&2
  cat "$log" >&2
  return 1
}

# start_dm SOCK TABLE_TEXT [KEY=VALUE...]: a dm server on SOCK.
start_dm ()
{
  local sock=$1 table=$2

  shift 2
  start_nbdkit -dm -U "$sock" "$NDM_PLUGIN" "table-text=$table" "$@"
}

# stop_pid PID: SIGTERM, wait up to 10 s, then SIGKILL.  Returns the exit
# status (non-zero also if it had to be killed).
stop_pid ()
{
  local pid=$1 i rc=0

  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    echo "$0: PID $pid ignored SIGTERM for 10 s, killing it" >&2
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 1
  fi
  wait "$pid" 2>/dev/null || rc=$?
  return $rc
}

# kill_pid PID: SIGKILL a server we started (a device dying on purpose)
# and reap it, without bash's "Killed" job notice.
kill_pid ()
{
  kill -9 "$1"
  wait "$1" 2>/dev/null || true
}

_ndm_on_exit ()
{
  local rc=$? i pid status

  set +e
  for ((i = ${#_ndm_cleanups[@]} - 1; i >= 0; i--)); do
    eval "${_ndm_cleanups[i]}"
  done
  # dm servers first: nbdkit waits for its clients to disconnect before
  # it exits on SIGTERM, and the dm servers are the devices' clients.
  for ((i = ${#_ndm_dm_pids[@]} - 1; i >= 0; i--)); do
    pid=${_ndm_dm_pids[i]}
    stop_pid "$pid"
    status=$?
    # A dm server must shut down cleanly on SIGTERM: a crash, a hang or
    # a sanitizer abort at exit is a failure.
    if [ $status -ne 0 ]; then
      echo "$0: dm server $pid exited with status $status:" >&2
      cat "${_ndm_dm_log[$pid]}" >&2
      [ $rc -ne 0 ] || rc=1
    elif ! check_sanitizer_log "${_ndm_dm_log[$pid]}"; then
      [ $rc -ne 0 ] || rc=1
    fi
  done
  for ((i = ${#_ndm_pids[@]} - 1; i >= 0; i--)); do
    pid=${_ndm_pids[i]}
    [ -z "${_ndm_dm_log[$pid]-}" ] || continue
    stop_pid "$pid" || true
  done
  rm -rf "$NDM_TMP"
  exit $rc
}
trap _ndm_on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# expect_fail CMD [ARGS...]: succeed only if CMD fails.
expect_fail ()
{
  if "$@"; then
    echo "$0: expected failure, but succeeded: $*" >&2
    return 1
  fi
}

# cmp_files A B: fail, saying where, if two files differ.
cmp_files ()
{
  if ! cmp "$1" "$2"; then
    echo "$0: $1 and $2 differ" >&2
    return 1
  fi
}

# ---- the control socket (include/nbd-dm/control.h) ------------------------
#
# Tests of the protocol speak it straight over the socket, so they do not
# depend on nbd-dmsetup.  Python scripts 'import ndmctl' (PYTHONPATH):
#
#   c = ndmctl.Conn(sock)       one connection
#   c.request("status")         -> payload lines; ndmctl.Error on "error"
#   c.send(b"raw bytes\n"); c.reply() -> ("ok", [lines]) | ("error", msg)
#   ndmctl.request(sock, line)  one request on a fresh connection
#
# DMSETUP is the CLI (tests that need it: requires test -x "$DMSETUP").
DMSETUP=${NDM_BUILD_DIR:-/nonexistent}/tools/nbd-dmsetup
mkdir "$NDM_TMP/py"
export PYTHONPATH=$NDM_TMP/py${PYTHONPATH:+:$PYTHONPATH}
cat >"$NDM_TMP/py/ndmctl.py" <<'PYEOF'
import socket

class Error(Exception):
    pass

class Conn:
    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.f = self.sock.makefile("rb")

    def send(self, data):
        if isinstance(data, str):
            data = (data + "\n").encode()
        self.sock.sendall(data)

    def line(self):
        """One reply line without its newline; EOFError if closed."""
        ln = self.f.readline()
        if not ln.endswith(b"\n"):
            raise EOFError("control connection closed (got %r)" % ln)
        return ln[:-1].decode(errors="replace")

    def reply(self):
        head = self.line()
        if head.startswith("error "):
            return ("error", head[6:])
        word, _, n = head.partition(" ")
        if word != "ok" or not n.isdigit() or n != str(int(n)):
            raise Error("malformed reply header %r" % head)
        return ("ok", [self.line() for _ in range(int(n))])

    def request(self, line):
        self.send(line)
        status, payload = self.reply()
        if status == "error":
            raise Error("%s: error %s" % (line[:200], payload))
        return payload

    def close(self):
        self.f.close()
        self.sock.close()

def request(path, line):
    c = Conn(path)
    try:
        return c.request(line)
    finally:
        c.close()
PYEOF

# ctl SOCKET REQUEST: send one request line; print the payload of "ok N",
# or print "REQUEST: error MSG" to stderr and fail.
ctl ()
{
  $PY -c '
import sys, ndmctl
try:
    for ln in ndmctl.request(sys.argv[1], sys.argv[2]):
        print(ln)
except ndmctl.Error as e:
    sys.exit(str(e))
' "$1" "$2"
}

# stop_dm PID: stop a dm server now (SIGTERM) and check it as the exit
# handler would: a non-zero exit or a sanitizer report fails.  The exit
# handler then leaves it alone.
stop_dm ()
{
  local pid=$1 status=0 i
  local -a keep=()

  stop_pid "$pid" || status=$?
  for i in "${_ndm_dm_pids[@]}"; do
    [ "$i" = "$pid" ] || keep+=("$i")
  done
  _ndm_dm_pids=("${keep[@]}")
  if [ $status -ne 0 ]; then
    echo "$0: dm server $pid exited with status $status:" >&2
    cat "${_ndm_dm_log[$pid]}" >&2
    return 1
  fi
  check_sanitizer_log "${_ndm_dm_log[$pid]}"
}

# unit_cmd UNIT KEY [PLUGIN]: the command line of KEY= in the systemd
# unit file UNIT (docs/examples), continuation lines joined, with this
# test's paths for the unit's (/run/nbd-dm and /etc/nbd-dm under
# NDM_TMP, the instance %i "vol") and PLUGIN (default: NDM_PLUGIN) for
# the installed plugin's name "dm".
unit_cmd ()
{
  local line

  line=$(awk -v key="$2=" '
    index($0, key) == 1 {
      line = substr($0, length(key) + 1)
      while (line ~ /\\$/ && (getline more) > 0) {
        sub(/\\$/, "", line)
        line = line more
      }
      print line
      exit
    }' "$1")
  line=${line//\/run\/nbd-dm/$NDM_TMP/run}
  line=${line//\/etc\/nbd-dm/$NDM_TMP/etc}
  line=${line//%i/vol}
  echo "${line/ dm / ${3:-$NDM_PLUGIN} }"
}

# verify_units FILE...: fail unless systemd-analyze verify finds the unit
# files valid and says nothing (it exits 0 on settings it ignores, but
# says so); without systemd-analyze, say that they were not verified.
verify_units ()
{
  local out

  if ! command -v systemd-analyze >/dev/null; then
    echo "$0: no systemd-analyze: $* not verified by systemd" >&2
    return 0
  fi
  if ! out=$(systemd-analyze verify --man=no "$@" 2>&1) || [ -n "$out" ]
  then
    echo "$0: systemd-analyze verify $*:" >&2
    echo "$out" >&2
    return 1
  fi
}
