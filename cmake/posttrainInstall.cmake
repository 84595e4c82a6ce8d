# Install rules: headers, exported targets (namespace posttrain::), the package config and its
# version file, and FindNCCL.cmake for consumers of the nccl component.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/posttrain
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS ${_posttrain_export_targets} EXPORT posttrainTargets)

set(POSTTRAIN_CMAKE_DIR ${CMAKE_INSTALL_DATADIR}/cmake/posttrain)
install(EXPORT posttrainTargets NAMESPACE posttrain:: DESTINATION ${POSTTRAIN_CMAKE_DIR})

configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/posttrainConfig.cmake.in
  ${PROJECT_BINARY_DIR}/posttrainConfig.cmake
  INSTALL_DESTINATION ${POSTTRAIN_CMAKE_DIR})
# Header-only: the version file must not pin the consumer's pointer size.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/posttrainConfigVersion.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES
  ${PROJECT_BINARY_DIR}/posttrainConfig.cmake
  ${PROJECT_BINARY_DIR}/posttrainConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/FindNCCL.cmake
  DESTINATION ${POSTTRAIN_CMAKE_DIR})
