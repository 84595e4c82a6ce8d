# Install rules: headers, exported targets (namespace posttrain::), the package config and its
# version file, and FindNCCL.cmake for consumers of the nccl component.
#
# Each component has its own export set (posttrainTargets.cmake for the core,
# posttrain<Component>Targets.cmake for cuda / nccl / mpi), so the package config loads only the
# components whose dependencies the consumer's machine has: a CPU-only consumer of an installation
# built with CUDA never needs a CUDA toolkit.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/posttrain
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# Header-only: the package files are architecture independent, so they live under share/.
set(POSTTRAIN_CMAKE_DIR ${CMAKE_INSTALL_DATADIR}/cmake/posttrain)

# posttrain::reward is part of the core export set: it needs nothing the core does not.
install(TARGETS posttrain posttrain_reward EXPORT posttrainTargets)
install(EXPORT posttrainTargets NAMESPACE posttrain:: DESTINATION ${POSTTRAIN_CMAKE_DIR})
export(EXPORT posttrainTargets NAMESPACE posttrain::
       FILE ${PROJECT_BINARY_DIR}/posttrainTargets.cmake)
foreach(_component IN LISTS POSTTRAIN_COMPONENTS)
  string(SUBSTRING ${_component} 0 1 _first)
  string(SUBSTRING ${_component} 1 -1 _rest)
  string(TOUPPER ${_first} _first)
  set(_export posttrain${_first}${_rest}Targets)
  install(TARGETS posttrain_${_component} EXPORT ${_export})
  install(EXPORT ${_export} NAMESPACE posttrain:: DESTINATION ${POSTTRAIN_CMAKE_DIR})
  export(EXPORT ${_export} NAMESPACE posttrain:: FILE ${PROJECT_BINARY_DIR}/${_export}.cmake)
endforeach()

# The same config serves the install tree and the build tree (posttrain_DIR=<build dir>): it uses
# no installed paths, only files next to itself.
configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/posttrainConfig.cmake.in
  ${PROJECT_BINARY_DIR}/posttrainConfig.cmake
  INSTALL_DESTINATION ${POSTTRAIN_CMAKE_DIR})
# 0.x: a consumer asking for 0.1 accepts 0.1.*, not 0.2. ARCH_INDEPENDENT: header-only, so the
# version file must not pin the consumer's pointer size.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/posttrainConfigVersion.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
configure_file(${PROJECT_SOURCE_DIR}/cmake/FindNCCL.cmake ${PROJECT_BINARY_DIR}/FindNCCL.cmake
               COPYONLY)
install(FILES
  ${PROJECT_BINARY_DIR}/posttrainConfig.cmake
  ${PROJECT_BINARY_DIR}/posttrainConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/FindNCCL.cmake
  DESTINATION ${POSTTRAIN_CMAKE_DIR})
