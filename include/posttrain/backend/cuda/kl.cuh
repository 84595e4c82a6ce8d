#pragma once
// CUDA backend of ops/kl.hpp (contract in ops/kl_types.hpp): kl_divergence on the device.
//
//   backend::cuda::kl_divergence(logprob, ref_logprob, n, element, value, grad or nullptr, stream)
//
// All pointers are DEVICE memory (float or double, n elements); `element` is the front end's
// per-token formula (estimator + clamps, detail::kl_element), the same POSTTRAIN_HOST_DEVICE code
// the host backend runs for every estimator but k3, which the host evaluates in vector blocks: a
// k3 value may differ from the host's in the last bit. One grid-stride elementwise kernel: each
// element is read before it is written at the same index, so an output may alias an input, as on
// the host. No scratch, no synchronisation; launch errors through cuda_check.
#if !defined(__CUDACC__)
#error "<posttrain/backend/cuda/kl.cuh> is compiled by nvcc only"
#endif

#include <cuda_runtime.h>

#include <span>

#include "posttrain/backend/cuda/error.cuh"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/views.hpp"
#include "posttrain/ops/kl_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cuda {

namespace kl_detail {

template <bool WithGrad, class Element, class T>
__global__ void kl_kernel(const T* logprob, const T* ref_logprob, index_t n, Element element,
                          T* value, T* grad) {
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const T d = logprob[i] - ref_logprob[i];
    if constexpr (WithGrad) {
      T v, g;
      element.value_and_grad(d, v, g);
      value[i] = v;
      grad[i] = g;
    } else {
      value[i] = element.value(d);
    }
  }
}

}  // namespace kl_detail

template <class Element, class T>
void kl_divergence(const T* logprob, const T* ref_logprob, index_t n, const Element& element,
                   T* value, T* grad, cudaStream_t stream) {
  if (n <= 0) return;
  constexpr int threads = 256;
  const index_t wanted = (n + threads - 1) / threads;
  const unsigned blocks = static_cast<unsigned>(wanted < 65535 ? wanted : 65535);
  if (grad != nullptr)
    kl_detail::kl_kernel<true><<<blocks, threads, 0, stream>>>(logprob, ref_logprob, n, element,
                                                                value, grad);
  else
    kl_detail::kl_kernel<false><<<blocks, threads, 0, stream>>>(logprob, ref_logprob, n, element,
                                                                 value, grad);
  cuda_check(cudaGetLastError(), "backend::cuda::kl_divergence (kernel launch)");
}

}  // namespace backend::cuda

template <>
struct backend::kl_divergence_backend<exec::cuda> {
  template <class E, class T>
  static void run(exec::cuda e, std::span<const T> logprob, std::span<const T> ref_logprob,
                  const ::posttrain::detail::kl_element<E, T>& element, std::span<T> value,
                  std::span<T> grad) {
    cuda::kl_divergence(logprob.data(), ref_logprob.data(), ssize(logprob), element, value.data(),
                        grad.empty() ? nullptr : grad.data(), e.stream);
  }
};

POSTTRAIN_NAMESPACE_END
