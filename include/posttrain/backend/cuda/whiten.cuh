#pragma once
// CUDA backend of ops/whiten.hpp: whitening on the device with every whiten_options convention.
//
//   backend::cuda::whiten(values, mask, offsets, num_segments, num_tokens, out, options, stream,
//                         degenerate = nullptr)
//   backend::cuda::whiten_with_moments(values, mask, offsets, num_segments, num_tokens, moments,
//                                      out, options, stream, degenerate = nullptr)
//
// All pointers are DEVICE memory: values/out [num_tokens] (float or double; out may be values,
// in place), mask [num_tokens] or nullptr (= all ones), offsets [num_segments + 1] for
// scope::per_segment (ignored, may be nullptr, with scope::batch), moments [1 or num_segments]
// masked_stats, degenerate (nullable) receives {number of degenerate scopes, first degenerate
// scope or -1} as two int64. The formulas are ops/whiten.hpp's make_whiten_coefficients /
// whiten_value, the same functions the CPU runs.
//
// Kernels (no host round trip of any statistic):
//   1. segment moments (backend/cuda/reductions.cuh) into a device array [scopes]
//   2. coefficients: one thread per scope, make_whiten_coefficients, degenerate scopes replaced by
//      the policy's coefficients (raise is treated as zero here: see below)
//   3. apply: grid (scopes, parts) as the reduction, out = whiten_value(x, w, c[scope]); reads the
//      coefficients from device memory (global whitening: the scalar never leaves the device).
//   Traffic: values and mask read twice (statistics, apply), out written once.
// degenerate_policy::raise cannot be decided on the device: backend::cuda::whiten never throws
// for it (it writes zeros, as `zero`, and reports the count in *degenerate); the front end
// (ops/whiten.hpp with exec::cuda) reads that count with ONE stream synchronisation between the
// coefficient and apply kernels and throws before anything is written.
#if !defined(__CUDACC__)
#error "<posttrain/backend/cuda/whiten.cuh> is compiled by nvcc only"
#endif

#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>
#include <span>
#include <string>
#include <type_traits>

#include "posttrain/backend/cuda/error.cuh"
#include "posttrain/backend/cuda/memory.cuh"
#include "posttrain/backend/cuda/reductions.cuh"
#include "posttrain/config.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/ops/whiten_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cuda {

namespace whiten_detail {

template <class = void>  // a template: the header may be in several translation units
__global__ void coefficients_kernel(const masked_stats* __restrict__ stats, index_t scopes,
                                    whiten_options o, whiten_coefficients* __restrict__ out) {
  const index_t s = blockIdx.x * index_t(blockDim.x) + threadIdx.x;
  if (s >= scopes) return;
  whiten_coefficients c = make_whiten_coefficients(stats[s], o);
  if (c.state == whiten_state::degenerate)
    c = degenerate_whiten_coefficients(
        o.on_degenerate == degenerate_policy::raise ? degenerate_policy::zero : o.on_degenerate);
  out[s] = c;
}

using reduce_detail::count_first;
using reduce_detail::count_first_op;

// out[0] = number of degenerate scopes, out[1] = the first one (or -1). One CTA, fixed order.
template <class = void>
__global__ void __launch_bounds__(reduction_block)
    count_degenerate_kernel(const whiten_coefficients* __restrict__ c, index_t scopes,
                            index_t* __restrict__ out) {
  using reduce_t = cub::BlockReduce<count_first, reduction_block>;
  __shared__ typename reduce_t::TempStorage temp;
  count_first mine{0, -1};
  for (index_t s = threadIdx.x; s < scopes; s += reduction_block)
    if (c[s].state == whiten_state::degenerate) {
      ++mine.count;
      if (mine.first < 0) mine.first = s;
    }
  const count_first r = reduce_t(temp).Reduce(mine, count_first_op{});
  if (threadIdx.x == 0) {
    out[0] = r.count;
    out[1] = r.first;
  }
}

template <class T, bool HasMask>
__global__ void __launch_bounds__(reduction_block)
    apply_kernel(const T* x, const float* __restrict__ m, const index_t* __restrict__ offsets,
                 index_t splits, const whiten_coefficients* __restrict__ coefficients,
                 bool multiply_by_mask, T* y) {
  const index_t s = blockIdx.x, k = blockIdx.y;
  index_t begin, end;
  reduce_detail::part_range(offsets, s, k, splits, begin, end);
  const whiten_coefficients c = coefficients[s];
  // x and y may be the same array (in place): each element is read then written by one thread.
#pragma unroll 4
  for (index_t i = begin + threadIdx.x; i < end; i += reduction_block)
    y[i] = whiten_value(x[i], HasMask ? m[i] : 1.0f, c, multiply_by_mask);
}

}  // namespace whiten_detail

// Whitening with statistics already on the device (moments [scopes]).
template <class T>
void whiten_with_moments(const T* values, const float* mask, const index_t* offsets,
                         index_t num_segments, index_t num_tokens, const masked_stats* moments,
                         T* out, const whiten_options& options, cudaStream_t stream,
                         index_t* degenerate = nullptr, bool raise_on_degenerate = false) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "backend::cuda::whiten: values must be float or double");
  device_buffer<index_t> whole;
  index_t scopes = num_segments;
  if (options.scope == whiten_scope::batch) {
    whole = whole_offsets(num_tokens, stream);
    offsets = whole.data();
    scopes = 1;
  }
  if (scopes <= 0) return;
  device_buffer<whiten_coefficients> coefficients(static_cast<std::size_t>(scopes), stream);
  whiten_detail::coefficients_kernel<>
      <<<static_cast<unsigned>((scopes + 255) / 256), 256, 0, stream>>>(moments, scopes, options,
                                                                        coefficients.data());
  cuda_check(cudaGetLastError(), "backend::cuda::whiten (coefficients launch)");
  device_buffer<index_t> counted;
  if (raise_on_degenerate && degenerate == nullptr) {
    counted = device_buffer<index_t>(2, stream);
    degenerate = counted.data();
  }
  if (degenerate != nullptr) {
    whiten_detail::count_degenerate_kernel<>
        <<<1, reduction_block, 0, stream>>>(coefficients.data(), scopes, degenerate);
    cuda_check(cudaGetLastError(), "backend::cuda::whiten (degenerate count launch)");
  }
  if (raise_on_degenerate) {
    index_t host[2] = {0, -1};
    cuda_check(cudaMemcpyAsync(host, degenerate, sizeof(host), cudaMemcpyDeviceToHost, stream),
               "backend::cuda::whiten (degenerate count copy)");
    cuda_check(cudaStreamSynchronize(stream), "backend::cuda::whiten (synchronise)");
    if (host[0] > 0)
      throw error(
          "posttrain::whiten: " +
          (options.scope == whiten_scope::batch ? std::string("the batch")
                                                : "segment " + std::to_string(host[1]) + " (and " +
                                                      std::to_string(host[0] - 1) + " more)") +
          " is degenerate: mask weight sum too small" +
          (options.variance == variance_kind::unbiased ? " (the unbiased variance needs > 1)"
                                                       : " (needs > 0)") +
          " or variance + eps == 0; options.on_degenerate = zero or pass_through "
          "accepts it");
  }
  const index_t splits = split_count(num_tokens, scopes);
  const dim3 grid(static_cast<unsigned>(scopes), static_cast<unsigned>(splits));
  if (mask != nullptr)
    whiten_detail::apply_kernel<T, true><<<grid, reduction_block, 0, stream>>>(
        values, mask, offsets, splits, coefficients.data(), options.multiply_by_mask, out);
  else
    whiten_detail::apply_kernel<T, false><<<grid, reduction_block, 0, stream>>>(
        values, mask, offsets, splits, coefficients.data(), options.multiply_by_mask, out);
  cuda_check(cudaGetLastError(), "backend::cuda::whiten (apply launch)");
}

// Statistics and whitening on the device; see the header comment.
template <class T>
void whiten(const T* values, const float* mask, const index_t* offsets, index_t num_segments,
            index_t num_tokens, T* out, const whiten_options& options, cudaStream_t stream,
            index_t* degenerate = nullptr, bool raise_on_degenerate = false) {
  device_buffer<index_t> whole;
  const index_t* scope_offsets = offsets;
  index_t scopes = num_segments;
  if (options.scope == whiten_scope::batch) {
    whole = whole_offsets(num_tokens, stream);
    scope_offsets = whole.data();
    scopes = 1;
  }
  if (scopes <= 0) return;
  device_buffer<masked_stats> stats(static_cast<std::size_t>(scopes), stream);
  segment_moments(values, mask, scope_offsets, scopes, num_tokens, stats.data(), stream);
  whiten_with_moments(values, mask, offsets, num_segments, num_tokens, stats.data(), out, options,
                      stream, degenerate, raise_on_degenerate);
}

}  // namespace backend::cuda

namespace backend {

template <>
struct whiten_backend<exec::cuda> {
  // Device scratch (statistics, coefficients) is still allocated stream-ordered inside the call
  // (cudaMallocAsync): no caller workspace is taken.
  static std::size_t workspace_bytes(exec::cuda, index_t, bool) { return 0; }
  // moments: device statistics (nullptr: computed here). Returns -1 (the degenerate count is not
  // brought to the host); raise is honoured with one synchronisation before the write pass.
  template <class T>
  static index_t whiten(exec::cuda e, std::span<const T> values, std::span<const float> mask,
                        std::span<const index_t> offsets, const masked_stats* moments,
                        std::span<T> out, const whiten_options& options, workspace /*ws*/) {
    const bool raise = options.on_degenerate == degenerate_policy::raise;
    const float* m = mask.empty() ? nullptr : mask.data();
    const index_t segments = offsets.empty() ? 0 : ssize(offsets) - 1;
    if (moments == nullptr)
      backend::cuda::whiten(values.data(), m, offsets.data(), segments, ssize(values), out.data(),
                            options, backend::cuda::stream_of(e), nullptr, raise);
    else
      backend::cuda::whiten_with_moments(values.data(), m, offsets.data(), segments, ssize(values),
                                         moments, out.data(), options, backend::cuda::stream_of(e),
                                         nullptr, raise);
    return raise ? 0 : -1;
  }
  // Batch whitening with statistics held on the host (copied into the stream first).
  template <class T>
  static index_t whiten_host_moments(exec::cuda e, std::span<const T> values,
                                     std::span<const float> mask, const masked_stats& moments,
                                     std::span<T> out, const whiten_options& options,
                                     workspace ws) {
    const cudaStream_t stream = backend::cuda::stream_of(e);
    backend::cuda::device_buffer<masked_stats> d(1, stream);
    d.copy_from_host(std::span<const masked_stats>(&moments, 1));
    return whiten(e, values, mask, {}, d.data(), out, options, ws);
  }
};

}  // namespace backend

POSTTRAIN_NAMESPACE_END
