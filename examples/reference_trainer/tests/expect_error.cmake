# Runs the trainer with ARGS (a ;-list) and checks that it fails the way a user needs:
# exit code 2, exactly one line on stderr matching EXPECT, and OUT (when given) not created.
#   cmake -DTRAINER=... -DARGS=... -DEXPECT=regex [-DOUT=dir] -P expect_error.cmake
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
if(DEFINED OUT)
  file(REMOVE_RECURSE "${OUT}")
endif()
run_expect(2 "${TRAINER}" "${TRAINER}" ${ARGS})
count_matches(lines "\n" "${err}")
if(NOT lines EQUAL 1)
  message(FATAL_ERROR "stderr has ${lines} lines, expected one: ${err}")
endif()
if(NOT err MATCHES "${EXPECT}")
  message(FATAL_ERROR "stderr does not match '${EXPECT}': ${err}")
endif()
if(DEFINED OUT AND EXISTS "${OUT}")
  message(FATAL_ERROR "${OUT} was created although the input was bad")
endif()
