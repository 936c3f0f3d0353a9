# SPDX-License-Identifier: BSD-3-Clause
# The Debian package: `cpack -G DEB` in a build directory makes
# nbd-dm_<version>_<arch>.deb from what `cmake --install` installs, under
# /usr instead of the configured prefix (Debian packages never install
# under /usr/local).  The plugin's destination is absolute (nbdkit's
# plugin directory, CMakeLists.txt), so CPack installs through DESTDIR.
#
# Dependencies: dpkg-shlibdeps (dpkg-dev) reads the binaries' libraries
# (libnbd, GLib and whatever else they link) and writes their packages,
# so the list follows the code; nbdkit, which loads the plugin but is no
# library of it, is named here.
set(CPACK_PACKAGE_NAME nbd-dm)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "The nbd-dm authors")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "device-mapper over NBD: nbdkit plugin and nbd-dmsetup")
set(CPACK_PACKAGE_DESCRIPTION
  "nbdkit-dm-plugin serves one block device assembled from a dmsetup
table whose devices are other NBD exports (linear, striped, zero, error,
flakey, delay, dust, multipath, mirror); nbd-dmsetup reads its status and
statistics and suspends, reloads and resumes it through a control socket.")
set(CPACK_GENERATOR DEB)
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "nbdkit (>= 1.30)")
include(CPack)
