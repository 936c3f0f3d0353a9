#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# cmake --install and the Debian package, from the Release build of the
# fixture install/build (NDM_RELEASE_DIR), with the default prefix:
#
# - DESTDIR=... cmake --install puts exactly the expected files where
#   nbdkit and man look: the plugin in nbdkit's plugin directory (as
#   `nbdkit --dump-config` says, whatever the prefix, also with --prefix
#   at install time), nbd-dmsetup in sbin, the man pages in the man path;
#   NDM_NBDKIT_PLUGINDIR moves the plugin;
# - nbdkit loads the installed plugin (--dump-plugin) and serves a table
#   file from it given as the magic parameter; the installed nbd-dmsetup
#   reads its table; as root, `nbdkit dm` finds it by name in nbdkit's
#   plugin directory (in a mount namespace of its own) and serves;
# - every installed man page renders with no warning from man or groff,
#   and `man` finds it by name in the installed man path;
# - cpack -G DEB makes a package of the same files under /usr whose
#   Depends names nbdkit and the libraries' packages.
source ../integration/functions.sh
requires cmake --version
requires nbdsh --version
rel=${NDM_RELEASE_DIR:?run by ctest, after install/build}
src=$(cd ../.. && pwd)

plugindir=$(nbdkit --dump-config | sed -n 's/^plugindir=//p')
[ -n "$plugindir" ] || { echo "$0: nbdkit --dump-config: no plugindir" >&2; exit 1; }
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$rel/CMakeCache.txt")
[ "$prefix" = /usr/local ] ||
  { echo "$0: $rel is configured with prefix '$prefix', not the default" >&2; exit 1; }

# expected PREFIX: the files an install under PREFIX holds, sorted.
expected ()
{
  local f

  {
    echo "$plugindir/nbdkit-dm-plugin.so"
    echo "$1/sbin/nbd-dmsetup"
    echo "$1/share/man/man1/nbdkit-dm-plugin.1.gz"
    echo "$1/share/man/man8/nbd-dmsetup.8.gz"
    echo "$1/share/bash-completion/completions/nbd-dmsetup"
    echo "$1/share/doc/nbd-dm/copyright"
    echo "$1/share/doc/nbd-dm/README.md"
    for f in "$src"/docs/examples/*; do
      echo "$1/share/doc/nbd-dm/examples/${f##*/}"
    done
  } | sort
}

# check_list WHAT EXPECTED GOT: fail, with the difference, unless equal.
check_list ()
{
  if [ "$2" != "$3" ]; then
    echo "$0: $1: expected (<) and installed (>) files differ:" >&2
    diff <(echo "$2") <(echo "$3") >&2 || true
    exit 1
  fi
}

# cmake --install with the configured (default) prefix.
dest=$NDM_TMP/dest
DESTDIR=$dest cmake --install "$rel" >"$NDM_TMP/install.log"
check_list "cmake --install" "$(expected "$prefix")" \
  "$(cd "$dest" && find . ! -type d | sed 's/^\.//' | sort)"

# Another prefix at install time: the plugin still goes where nbdkit
# looks, the rest under the prefix.
DESTDIR=$NDM_TMP/dest2 cmake --install "$rel" --prefix /opt/nbd-dm \
  >"$NDM_TMP/install2.log"
check_list "cmake --install --prefix /opt/nbd-dm" \
  "$(expected /opt/nbd-dm)" \
  "$(cd "$NDM_TMP/dest2" && find . ! -type d | sed 's/^\.//' | sort)"

# NDM_NBDKIT_PLUGINDIR moves it (configured only: the install rules are
# what it changes).
cmake -S "$src" -B "$NDM_TMP/other" -DBUILD_TESTING=OFF \
  -DNDM_INTEGRATION=OFF -DNDM_NBDKIT_PLUGINDIR=/opt/nbdkit/plugins \
  >"$NDM_TMP/other.log"
grep -q '"/opt/nbdkit/plugins" TYPE MODULE' "$NDM_TMP/other/plugin/cmake_install.cmake" ||
  { echo "$0: -DNDM_NBDKIT_PLUGINDIR=/opt/nbdkit/plugins: the plugin is not installed there:" >&2
    grep -n 'nbdkit-dm-plugin' "$NDM_TMP/other/plugin/cmake_install.cmake" >&2; exit 1; }

# nbdkit loads the installed plugin under its installed name.
plugin=$dest$plugindir/nbdkit-dm-plugin.so
nbdkit --dump-plugin "$plugin" >"$NDM_TMP/dump.txt"
for want in name=dm magic_config_key=table dm_targets=linear,; do
  grep -q "^$want" "$NDM_TMP/dump.txt" ||
    { echo "$0: --dump-plugin $plugin: no line '$want':" >&2
      cat "$NDM_TMP/dump.txt" >&2; exit 1; }
done

# Serve a table file (the magic parameter) and use it.
a=$(tmp_sock); top=$(tmp_sock)
start_nbdkit -U "$a" memory 4M
line="0 8192 linear $(nbd_uri "$a") 0"
echo "$line" >"$NDM_TMP/vol.table"
start_nbdkit -U "$top" "$plugin" "$NDM_TMP/vol.table" \
  control="$NDM_TMP/vol.ctl"
nbdsh -u "$(nbd_uri "$top")" -c 'h.pwrite(b"i" * 65536, 4096)' -c 'h.flush()'
nbdsh -u "$(nbd_uri "$a")" -c 'assert h.pread(65536, 4096) == b"i" * 65536'
got=$("$dest$prefix/sbin/nbd-dmsetup" -c "$NDM_TMP/vol.ctl" table)
[ "$got" = "$line" ] ||
  { echo "$0: installed nbd-dmsetup table: '$got', expected '$line'" >&2; exit 1; }

# "nbdkit dm" by name, as after a real install: in a private mount
# namespace (root only) nbdkit's plugin directory is covered by one that
# holds a copy of the installed plugin alone, so nbdkit finds it there
# and nowhere else, and the machine's directory is left as it is.
# Captive (--run): the server lives as long as the check.
if unshare -m true 2>/dev/null; then
  mkdir "$NDM_TMP/plugindir"
  cp "$plugin" "$NDM_TMP/plugindir/"
  unshare -m bash -c '
    set -e
    mount --bind "$1" "$2"
    nbdkit --dump-plugin dm | grep -qx "path=$2/nbdkit-dm-plugin.so"
    nbdkit -U - dm "$3" --run "/usr/bin/nbdsh -u \"\$uri\" -c \"assert h.pread(65536, 4096) == b\\\"i\\\" * 65536\""
  ' unshare "$NDM_TMP/plugindir" "$plugindir" "$NDM_TMP/vol.table" \
    >"$NDM_TMP/byname.log" 2>&1 ||
    { echo "$0: nbdkit dm by name from $plugindir failed:" >&2
      cat "$NDM_TMP/byname.log" >&2; exit 1; }
else
  echo "$0: no mount namespace (not root): 'nbdkit dm' by name not run"
fi

# Man pages: each renders without a warning, and man finds it by name.
for page in "$dest$prefix"/share/man/man*/*; do
  if ! MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings=w -l "$page" \
         >"$NDM_TMP/page.txt" 2>"$NDM_TMP/page.err" ||
     [ -s "$NDM_TMP/page.err" ] || ! grep -q '^NAME' "$NDM_TMP/page.txt"
  then
    echo "$0: man -l $page:" >&2
    cat "$NDM_TMP/page.err" >&2
    exit 1
  fi
done
for name in nbdkit-dm-plugin nbd-dmsetup; do
  found=$(MANPATH=$dest$prefix/share/man man -w "$name")
  case $found in
    "$dest$prefix"/share/man/*) ;;
    *) echo "$0: man -w $name found '$found', not the installed page" >&2
       exit 1 ;;
  esac
done

# The package: the same files under /usr, and its dependencies.
requires cpack --version
requires dpkg-deb --version
requires dpkg-shlibdeps --version
(cd "$NDM_TMP" && cpack -G DEB -B "$NDM_TMP/pkg" --config "$rel/CPackConfig.cmake") \
  >"$NDM_TMP/cpack.log" 2>&1 ||
  { echo "$0: cpack -G DEB failed:" >&2; cat "$NDM_TMP/cpack.log" >&2; exit 1; }
deb=$(echo "$NDM_TMP"/pkg/nbd-dm_*.deb)
[ -f "$deb" ] || { echo "$0: cpack made no nbd-dm_*.deb:" >&2; ls -R "$NDM_TMP/pkg" >&2; exit 1; }
check_list "dpkg-deb -c $deb" "$(expected /usr)" \
  "$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { print $6 }' | sed 's/^\.//' | sort)"
[ "$(dpkg-deb -f "$deb" Package)" = nbd-dm ] ||
  { echo "$0: $deb: Package is not nbd-dm" >&2; exit 1; }
depends=$(dpkg-deb -f "$deb" Depends)
for pkg in nbdkit libnbd0 libglib2.0-0; do
  case ", $depends," in
    *", $pkg "* | *", $pkg,"*) ;;
    *) echo "$0: $deb: Depends '$depends' does not name $pkg" >&2; exit 1 ;;
  esac
done
echo "$0: $deb: Depends: $depends"
