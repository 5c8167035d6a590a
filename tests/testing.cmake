# The one helper that registers loratrf's tests.
#
#   loratrf_add_test(<name> SOURCES a.cc b.cc [LIBS lib...] LABELS unit|integration|slow...
#                    [DEPENDS target...] [TIMEOUT seconds] [TORCH])
#
# Builds a GoogleTest binary into build/tests/ and registers each of its tests with CTest under
# the given labels: `ctest -L unit` runs the fast in-process tests, `ctest -L integration` the
# ones that start real binaries, `ctest -LE slow` skips the long ones. DEPENDS names binaries an
# integration test runs, so that they are built first. Tests see LORATRF_BIN_DIR (the built
# binaries) and LORATRF_SOURCE_DIR (the checkout, for tests/data) as compile definitions.
# TORCH reuses the engine's precompiled torch header, which saves most of a torch test's
# compile time.
include(GoogleTest)

function(loratrf_add_test name)
  cmake_parse_arguments(T "TORCH" "TIMEOUT" "SOURCES;LIBS;LABELS;DEPENDS" ${ARGN})
  if(NOT T_SOURCES OR NOT T_LABELS)
    message(FATAL_ERROR "loratrf_add_test(${name}): SOURCES and LABELS are required")
  endif()
  foreach(label ${T_LABELS})
    if(NOT label MATCHES "^(unit|integration|slow|gpu)$")
      message(FATAL_ERROR "loratrf_add_test(${name}): unknown label '${label}'")
    endif()
  endforeach()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gmock GTest::gtest GTest::gtest_main)
  target_compile_definitions(${name} PRIVATE
    LORATRF_BIN_DIR="${PROJECT_BINARY_DIR}/bin"
    LORATRF_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
  loratrf_target_warnings(${name})
  if(T_TORCH)
    target_precompile_headers(${name} REUSE_FROM loratrf_engine)
  endif()
  if(T_DEPENDS)
    add_dependencies(${name} ${T_DEPENDS})
  endif()
  gtest_discover_tests(${name}
    DISCOVERY_MODE PRE_TEST
    DISCOVERY_TIMEOUT 120
    PROPERTIES TIMEOUT ${T_TIMEOUT})
  # The labels are set by a script of our own that CTest includes after the discovered tests
  # exist, not through PROPERTIES above: gtest_discover_tests flattens a list value there, so
  # LABELS "integration;slow" became LABELS integration plus a stray property "slow" (and the
  # pairs after it, TIMEOUT included, were shifted), and no escaping survives every stage of
  # its PRE_TEST discovery. ${name}_TESTS is the list of test names that discovery defines.
  set(labels_script "${CMAKE_CURRENT_BINARY_DIR}/${name}_labels.cmake")
  file(WRITE "${labels_script}"
    "if(NOT \"\${${name}_TESTS}\" STREQUAL \"\")\n"
    "  set_tests_properties(\${${name}_TESTS} PROPERTIES LABELS [==[${T_LABELS}]==])\n"
    "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${labels_script}")
endfunction()
