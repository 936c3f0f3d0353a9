# SPDX-License-Identifier: BSD-3-Clause
# ndm_script_tests(LABEL TIMEOUT): every test-*.sh in
# the calling directory is one ctest test LABEL/<name>, labelled LABEL,
# run by bash in its directory with the plugin's path and sanitizer
# (asan, tsan or none) in the environment (tests/integration/functions.sh
# reads them).  Exit
# 77 means skipped.
function(ndm_script_tests label timeout)
  file(GLOB tests RELATIVE ${CMAKE_CURRENT_SOURCE_DIR}
       CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/test-*.sh)
  foreach(t ${tests})
    string(REGEX REPLACE "\\.sh$" "" name ${t})
    add_test(NAME ${label}/${name}
             COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/${t}
             WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
    set_tests_properties(${label}/${name} PROPERTIES
      LABELS ${label}
      TIMEOUT ${timeout}
      SKIP_RETURN_CODE 77
      ENVIRONMENT "NDM_PLUGIN=$<TARGET_FILE:nbdkit-dm-plugin>;NDM_SANITIZER=${NDM_SANITIZER};NDM_BUILD_DIR=${PROJECT_BINARY_DIR}")
  endforeach()
endfunction()
