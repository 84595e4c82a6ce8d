# Steps of the packaging tests (tests/package/CMakeLists.txt), run as
#   cmake -DPOSTTRAIN_ACTION=<install|consume|fail> -D... -P posttrainPackageTest.cmake
#
#   install  cmake --install POSTTRAIN_BUILD_DIR --prefix POSTTRAIN_PREFIX (after emptying it), then
#            check that the installed package files do not point back into the source or build tree.
#   consume  configure POSTTRAIN_SOURCE in POSTTRAIN_WORK with CMAKE_PREFIX_PATH=POSTTRAIN_PREFIX
#            (and POSTTRAIN_CONSUMER_ARGS), build it, and run the executable POSTTRAIN_RUN if given.
#   fail     configure POSTTRAIN_SOURCE: it must FAIL, and its output must contain POSTTRAIN_EXPECT.
# The consumer uses the same generator, compilers and configuration as the posttrain build.
cmake_minimum_required(VERSION 3.25)

foreach(_var POSTTRAIN_ACTION POSTTRAIN_BUILD_DIR POSTTRAIN_PREFIX)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "posttrainPackageTest.cmake: -D${_var}=... is required")
  endif()
endforeach()
if(NOT POSTTRAIN_CONFIG)
  set(POSTTRAIN_CONFIG Release)
endif()

# run(<what> <command...>): runs the command, echoes its output, fails the test on non-zero exit.
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
  message("${_out}")
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "package test: ${what} failed (exit ${_rc}): ${ARGN}")
  endif()
endfunction()

if(POSTTRAIN_ACTION STREQUAL "install")
  file(REMOVE_RECURSE ${POSTTRAIN_PREFIX})
  run("install" ${CMAKE_COMMAND} --install ${POSTTRAIN_BUILD_DIR} --prefix ${POSTTRAIN_PREFIX}
      --config ${POSTTRAIN_CONFIG})
  file(GLOB _package_files ${POSTTRAIN_PREFIX}/share/cmake/posttrain/*.cmake)
  if(NOT _package_files)
    message(FATAL_ERROR "package test: no package files in ${POSTTRAIN_PREFIX}/share/cmake/posttrain")
  endif()
  file(READ ${POSTTRAIN_BUILD_DIR}/CMakeCache.txt _cache)
  string(REGEX MATCH "posttrain_SOURCE_DIR:STATIC=([^\n]*)" _ ${_cache})
  set(_source_dir ${CMAKE_MATCH_1})
  foreach(_file ${_package_files})
    file(READ ${_file} _text)
    foreach(_tree ${_source_dir} ${POSTTRAIN_BUILD_DIR})
      string(FIND "${_text}" "${_tree}/" _at)
      if(NOT _at EQUAL -1)
        message(FATAL_ERROR "package test: ${_file} refers to ${_tree}: the installed package "
                            "must not depend on the source or build tree")
      endif()
    endforeach()
  endforeach()
  if(NOT EXISTS ${POSTTRAIN_PREFIX}/include/posttrain/posttrain.hpp)
    message(FATAL_ERROR "package test: posttrain.hpp was not installed")
  endif()
  message("package test: installed into ${POSTTRAIN_PREFIX}")
  return()
endif()

# ---------------------------------------------------------------- consume / fail
foreach(_var POSTTRAIN_SOURCE POSTTRAIN_WORK POSTTRAIN_GENERATOR)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "posttrainPackageTest.cmake: -D${_var}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE ${POSTTRAIN_WORK})
set(_configure ${CMAKE_COMMAND} -S ${POSTTRAIN_SOURCE} -B ${POSTTRAIN_WORK}
    -G ${POSTTRAIN_GENERATOR} --no-warn-unused-cli
    -DCMAKE_BUILD_TYPE=${POSTTRAIN_CONFIG}
    -DCMAKE_PREFIX_PATH=${POSTTRAIN_PREFIX}
    -DPOSTTRAIN_EXPECTED_PREFIX=${POSTTRAIN_PREFIX}
    # Only the install under test may satisfy find_package(posttrain).
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
    -DCMAKE_CXX_COMPILER=${POSTTRAIN_CXX_COMPILER})
if(POSTTRAIN_GENERATOR_PLATFORM)
  list(APPEND _configure -A ${POSTTRAIN_GENERATOR_PLATFORM})
endif()
if(POSTTRAIN_GENERATOR_TOOLSET)
  list(APPEND _configure -T ${POSTTRAIN_GENERATOR_TOOLSET})
endif()
if(POSTTRAIN_CUDA_COMPILER)
  list(APPEND _configure -DCMAKE_CUDA_COMPILER=${POSTTRAIN_CUDA_COMPILER}
       -DCMAKE_CUDA_ARCHITECTURES=${POSTTRAIN_CUDA_ARCHITECTURES})
endif()
list(APPEND _configure ${POSTTRAIN_CONSUMER_ARGS})

if(POSTTRAIN_ACTION STREQUAL "fail")
  execute_process(COMMAND ${_configure} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out
                  ERROR_VARIABLE _out)
  message("${_out}")
  if(_rc EQUAL 0)
    message(FATAL_ERROR "package test: configuring ${POSTTRAIN_SOURCE} with "
                        "${POSTTRAIN_CONSUMER_ARGS} succeeded, expected find_package to fail")
  endif()
  # CMake wraps long messages: compare with all whitespace runs folded to one space.
  string(REGEX REPLACE "[ \t\r\n]+" " " _flat "${_out}")
  string(FIND "${_flat}" "${POSTTRAIN_EXPECT}" _at)
  if(_at EQUAL -1)
    message(FATAL_ERROR "package test: configure failed as expected, but its output does not "
                        "contain \"${POSTTRAIN_EXPECT}\"")
  endif()
  message("package test: find_package failed as expected: \"${POSTTRAIN_EXPECT}\"")
  return()
endif()

if(NOT POSTTRAIN_ACTION STREQUAL "consume")
  message(FATAL_ERROR "posttrainPackageTest.cmake: unknown POSTTRAIN_ACTION '${POSTTRAIN_ACTION}'")
endif()
run("configure the consumer" ${_configure})
run("build the consumer" ${CMAKE_COMMAND} --build ${POSTTRAIN_WORK} --config ${POSTTRAIN_CONFIG})
if(POSTTRAIN_RUN)
  # Single-config generators put the executable in the build dir, multi-config ones in <config>/.
  find_program(_exe NAMES ${POSTTRAIN_RUN} NO_DEFAULT_PATH
               PATHS ${POSTTRAIN_WORK}/${POSTTRAIN_CONFIG} ${POSTTRAIN_WORK})
  if(NOT _exe)
    message(FATAL_ERROR "package test: the consumer built no executable ${POSTTRAIN_RUN}")
  endif()
  run("run ${POSTTRAIN_RUN}" ${_exe})
endif()
