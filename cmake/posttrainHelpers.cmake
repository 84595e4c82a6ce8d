# Build settings shared by posttrain's own tests, examples and benchmarks (never by consumers).

# posttrain_internal_settings(<target>): warnings, and -march=native when POSTTRAIN_NATIVE_ARCH.
function(posttrain_internal_settings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANG_AND_ID:CXX,GNU,Clang>:-Wall -Wextra -Wpedantic>
    # -Wno-unknown-pragmas: the host compiler sees Eigen's nvcc-only `#pragma diag_suppress`.
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wno-unknown-pragmas>)
  if(POSTTRAIN_NATIVE_ARCH)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
  endif()
endfunction()

# posttrain_test_cuda_architectures(<target>): a test-only CUDA target embeds machine code (SASS)
# for each architecture of CMAKE_CUDA_ARCHITECTURES but no PTX ("90" -> "90-real"): the tests run
# on those GPUs only (the CI's is sm_90), and skipping the PTX saves part of every nvcc compile.
# What ships (the headers, compiled by the user) and the benchmarks keep the configured setting.
function(posttrain_test_cuda_architectures target)
  set(_archs "")
  foreach(_arch ${CMAKE_CUDA_ARCHITECTURES})
    if(_arch MATCHES "^[0-9]+[af]?$")
      list(APPEND _archs ${_arch}-real)
    else()
      list(APPEND _archs ${_arch})
    endif()
  endforeach()
  set_target_properties(${target} PROPERTIES CUDA_ARCHITECTURES "${_archs}")
endfunction()
