# Shared build rules: one place for warnings and for test registration.

# messenger_set_warnings(<target>): the project's warning set; -Werror when MESSENGER_WERROR is on.
function(messenger_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                                           -Wno-sign-conversion)
  if(MESSENGER_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# messenger_add_test(<name> LABEL <label> SOURCES <files...> [LIBS <targets...>]
#                    [TIMEOUT <seconds>] [ENVIRONMENT <VAR=value...>])
# Builds one GoogleTest executable, registers each of its tests with CTest under <label>.
function(messenger_add_test name)
  cmake_parse_arguments(ARG "" "LABEL;TIMEOUT" "SOURCES;LIBS;ENVIRONMENT" ${ARGN})
  if(NOT ARG_LABEL)
    message(FATAL_ERROR "messenger_add_test(${name}): every test needs a LABEL")
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  messenger_set_warnings(${name})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gmock GTest::gtest_main)
  include(GoogleTest)
  gtest_discover_tests(${name}
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    PROPERTIES LABELS ${ARG_LABEL} TIMEOUT ${ARG_TIMEOUT} ENVIRONMENT "${ARG_ENVIRONMENT}"
    DISCOVERY_TIMEOUT 60)
endfunction()
