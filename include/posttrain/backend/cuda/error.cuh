#pragma once
// CUDA error reporting for the CUDA backend.
//
//   cuda_check(status, where)      throws posttrain::error "posttrain::<where>: CUDA error
//                                  <name>: <cudaGetErrorString>" unless status == cudaSuccess
//   cuda_device_available(reason)  true when at least one CUDA device can be used; otherwise
//                                  false, with the runtime's explanation in *reason (if given).
//                                  Tests use it to GTEST_SKIP on machines without a GPU.
#include <cuda_runtime.h>

#include <string>
#include <string_view>

#include "posttrain/config.hpp"
#include "posttrain/core/error.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cuda {

inline void cuda_check(cudaError_t status, std::string_view where) {
  if (status == cudaSuccess) return;
  throw error("posttrain::" + std::string(where) + ": CUDA error " + cudaGetErrorName(status) +
              ": " + cudaGetErrorString(status));
}

inline bool cuda_device_available(std::string* reason = nullptr) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // reset the runtime's last error so later calls do not report it
    if (reason) *reason = cudaGetErrorString(status);
    return false;
  }
  if (count == 0) {
    if (reason) *reason = "the CUDA runtime reports 0 devices";
    return false;
  }
  return true;
}

}  // namespace backend::cuda

POSTTRAIN_NAMESPACE_END
