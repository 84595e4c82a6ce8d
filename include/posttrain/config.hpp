#pragma once
// posttrain configuration: version, the versioned inline namespace, and the host/device
// annotation macros. The annotation macros expand to nothing outside nvcc, so every header that
// uses them stays plain C++20 for the CPU library.

#define POSTTRAIN_VERSION_MAJOR 0
#define POSTTRAIN_VERSION_MINOR 1
#define POSTTRAIN_VERSION_PATCH 0
#define POSTTRAIN_VERSION_STRING "0.1.0"

// The ABI version lives in an inline namespace so two installed versions never mix silently.
#define POSTTRAIN_ABI_NAMESPACE v0
#define POSTTRAIN_NAMESPACE_BEGIN                                                                  \
  namespace posttrain {                                                                            \
  inline namespace POSTTRAIN_ABI_NAMESPACE {
#define POSTTRAIN_NAMESPACE_END                                                                    \
  }                                                                                                \
  }

#if defined(__CUDACC__)
#define POSTTRAIN_HOST_DEVICE __host__ __device__
#define POSTTRAIN_DEVICE __device__
#define POSTTRAIN_FORCEINLINE __forceinline__
#else
#define POSTTRAIN_HOST_DEVICE
#define POSTTRAIN_DEVICE
// Outside nvcc the compiler's own inlining is trusted; `inline` only keeps the ODR happy.
#define POSTTRAIN_FORCEINLINE inline
#endif

// True while nvcc compiles device code (the second pass of a .cu translation unit).
#if defined(__CUDA_ARCH__)
#define POSTTRAIN_DEVICE_PASS 1
#else
#define POSTTRAIN_DEVICE_PASS 0
#endif
