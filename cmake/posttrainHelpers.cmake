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
