# Every public header has a test: a test source named after it, a test source that names its path
# (includes it, or says it covers it), or a line of covered_by.txt naming the test sources that
# exercise it (issue 9, item 7). Run as
#   cmake -DROOT=<repository root> -P tests/headers/tests_named.cmake
# Fails, listing each problem on its own line, when a header has neither, when a covered_by.txt
# line names a test source that does not exist, or names a header that does not exist.
cmake_minimum_required(VERSION 3.20)
if(NOT ROOT)
  message(FATAL_ERROR "tests_named.cmake: pass -DROOT=<repository root>")
endif()
set(_include ${ROOT}/include/posttrain)
set(_manifest ${ROOT}/tests/headers/covered_by.txt)

# The stems of every test source (tests/**, and the examples' tests folders), and their text: a
# test that includes a header, or says in its comment that it covers it ("Also covers
# ops/aggregate_types.hpp"), names the header's path.
file(GLOB_RECURSE _tests LIST_DIRECTORIES false RELATIVE ${ROOT}
     ${ROOT}/tests/*.cpp ${ROOT}/tests/*.cu ${ROOT}/tests/*.hpp ${ROOT}/tests/*.cuh
     ${ROOT}/examples/*/tests/*.cpp)
set(_stems "")
set(_text "")
foreach(_t ${_tests})
  get_filename_component(_stem ${_t} NAME_WE)
  list(APPEND _stems ${_stem})
  file(READ ${ROOT}/${_t} _content)
  string(APPEND _text "${_content}")
endforeach()

# covered_by.txt: "<header> <test> [<test> ...]  # comment"; '#' lines are comments.
set(_problems "")
set(_listed "")
file(STRINGS ${_manifest} _lines)
foreach(_line ${_lines})
  string(REGEX REPLACE "#.*$" "" _line "${_line}")
  string(STRIP "${_line}" _line)
  if(_line STREQUAL "")
    continue()
  endif()
  string(REGEX REPLACE "[ \t]+" ";" _fields "${_line}")
  list(POP_FRONT _fields _header)
  if(NOT EXISTS ${_include}/${_header})
    list(APPEND _problems "covered_by.txt names ${_header}, which is not a header under include/posttrain (renamed? update the line)")
  endif()
  if(NOT _fields)
    list(APPEND _problems "covered_by.txt: ${_header} names no test source")
  endif()
  foreach(_test ${_fields})
    if(NOT EXISTS ${ROOT}/${_test})
      list(APPEND _problems "covered_by.txt: ${_header} is said to be covered by ${_test}, which does not exist")
    endif()
  endforeach()
  list(APPEND _listed ${_header})
endforeach()

file(GLOB_RECURSE _headers LIST_DIRECTORIES false RELATIVE ${_include}
     ${_include}/*.hpp ${_include}/*.cuh)
set(_count 0)
foreach(_header ${_headers})
  math(EXPR _count "${_count} + 1")
  get_filename_component(_stem ${_header} NAME_WE)
  if(_stem IN_LIST _stems OR _header IN_LIST _listed)
    continue()
  endif()
  string(FIND "${_text}" "${_header}" _at)
  if(NOT _at EQUAL -1)
    continue()
  endif()
  list(APPEND _problems "posttrain/${_header} has no test named after it and no line in tests/headers/covered_by.txt")
endforeach()

if(_problems)
  list(LENGTH _problems _n)
  list(JOIN _problems "\n  " _text)
  message(FATAL_ERROR "headers.tests_named: ${_n} problem(s):\n  ${_text}")
endif()
message(STATUS "headers.tests_named: ${_count} public headers, each with a test")
