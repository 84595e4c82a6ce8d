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
// Temporary storage (the batch scope's offsets, the statistics and their partials, the
// coefficients, the degenerate count when raise asks for one), CUB's two-phase contract:
//   std::size_t bytes = 0;
//   backend::cuda::whiten(nullptr, bytes, values, mask, offsets, S, N, out, options, stream);
//   backend::cuda::whiten(d_temp, bytes, values, mask, offsets, S, N, out, options, stream);
// (the same for whiten_with_moments): the first call only sets bytes (>= 1; a function of the
// sizes and options), the second runs with d_temp (device memory, any alignment) and throws
// posttrain::error before anything is launched when bytes is too small. The forms without
// (d_temp, bytes) allocate the same scratch stream-ordered, in one buffer, and run the same code.
// whiten_scratch_bound(scopes, with_moments) bounds it for every N (whiten_workspace_bytes with
// exec::cuda): whiten_backend<exec::cuda> takes it from a caller workspace (device memory), or
// allocates it when the workspace is empty (the allocating front ends).
// degenerate_policy::raise cannot be decided on the device: backend::cuda::whiten never throws
// for it (it writes zeros, as `zero`, and reports the count in *degenerate); the front end
// (ops/whiten.hpp with exec::cuda) reads that count with ONE stream synchronisation between the
// coefficient and apply kernels and throws before anything is written.
#if !defined(__CUDACC__)
#error "<posttrain/backend/cuda/whiten.cuh> is compiled by nvcc only"
#endif

#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
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

namespace whiten_detail {

inline index_t scope_count(const whiten_options& options, index_t num_segments) {
  return options.scope == whiten_scope::batch ? 1 : num_segments;
}

// Scratch of the coefficient and apply passes over `scopes` scopes.
inline void add_apply_scratch(workspace_size& size, const whiten_options& options, index_t scopes,
                              index_t* degenerate, bool raise_on_degenerate) {
  if (scopes <= 0) return;
  if (options.scope == whiten_scope::batch) size.add<index_t>(2);  // offsets {0, N}
  size.add<whiten_coefficients>(static_cast<std::size_t>(scopes));
  if (raise_on_degenerate && degenerate == nullptr) size.add<index_t>(2);
}

// The coefficient and apply passes; scope_offsets are the scopes' (device {0, N} for batch).
template <class T>
void apply_into(const T* values, const float* mask, const index_t* scope_offsets, index_t scopes,
                index_t num_tokens, const masked_stats* moments, T* out,
                const whiten_options& options, cudaStream_t stream, index_t* degenerate,
                bool raise_on_degenerate, workspace& ws) {
  constexpr std::string_view where = "backend::cuda::whiten";
  whiten_coefficients* coefficients =
      ws.take<whiten_coefficients>(static_cast<std::size_t>(scopes), where).data();
  if (raise_on_degenerate && degenerate == nullptr) degenerate = ws.take<index_t>(2, where).data();
  coefficients_kernel<><<<static_cast<unsigned>((scopes + 255) / 256), 256, 0, stream>>>(
      moments, scopes, options, coefficients);
  cuda_check(cudaGetLastError(), "backend::cuda::whiten (coefficients launch)");
  if (degenerate != nullptr) {
    count_degenerate_kernel<><<<1, reduction_block, 0, stream>>>(coefficients, scopes, degenerate);
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
    apply_kernel<T, true><<<grid, reduction_block, 0, stream>>>(
        values, mask, scope_offsets, splits, coefficients, options.multiply_by_mask, out);
  else
    apply_kernel<T, false><<<grid, reduction_block, 0, stream>>>(
        values, mask, scope_offsets, splits, coefficients, options.multiply_by_mask, out);
  cuda_check(cudaGetLastError(), "backend::cuda::whiten (apply launch)");
}

// The scopes' offsets: the caller's, or {0, N} in ws for the batch scope.
inline const index_t* scope_offsets_into(const index_t* offsets, index_t num_tokens,
                                         const whiten_options& options, cudaStream_t stream,
                                         workspace& ws) {
  if (options.scope != whiten_scope::batch) return offsets;
  index_t* whole = ws.take<index_t>(2, "backend::cuda::whiten").data();
  whole_offsets_into(whole, num_tokens, stream);
  return whole;
}

// Statistics (when moments is nullptr: computed into ws) and the apply passes.
template <class T>
void whiten_into(const T* values, const float* mask, const index_t* offsets, index_t num_segments,
                 index_t num_tokens, const masked_stats* moments, T* out,
                 const whiten_options& options, cudaStream_t stream, index_t* degenerate,
                 bool raise_on_degenerate, workspace& ws) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "backend::cuda::whiten: values must be float or double");
  const index_t scopes = scope_count(options, num_segments);
  if (scopes <= 0) return;
  const index_t* scope_offsets = scope_offsets_into(offsets, num_tokens, options, stream, ws);
  if (moments == nullptr) {
    masked_stats* stats =
        ws.take<masked_stats>(static_cast<std::size_t>(scopes), "backend::cuda::whiten").data();
    reduce_detail::moments_dispatch(values, mask, scope_offsets, scopes, num_tokens, stats,
                                    stream, ws);
    moments = stats;
  }
  apply_into(values, mask, scope_offsets, scopes, num_tokens, moments, out, options, stream,
             degenerate, raise_on_degenerate, ws);
}

}  // namespace whiten_detail

// Scratch of whiten_with_moments (S segments, N tokens).
inline workspace_size whiten_with_moments_scratch(index_t num_segments, index_t num_tokens,
                                                  const whiten_options& options,
                                                  index_t* degenerate = nullptr,
                                                  bool raise_on_degenerate = false) {
  (void)num_tokens;
  workspace_size size;
  whiten_detail::add_apply_scratch(size, options,
                                   whiten_detail::scope_count(options, num_segments), degenerate,
                                   raise_on_degenerate);
  return size;
}

// Scratch of whiten (S segments, N tokens): the apply passes', the statistics and their partials.
inline workspace_size whiten_scratch(index_t num_segments, index_t num_tokens,
                                     const whiten_options& options, index_t* degenerate = nullptr,
                                     bool raise_on_degenerate = false) {
  const index_t scopes = whiten_detail::scope_count(options, num_segments);
  workspace_size size;
  if (scopes <= 0) return size;
  whiten_detail::add_apply_scratch(size, options, scopes, degenerate, raise_on_degenerate);
  size.add<masked_stats>(static_cast<std::size_t>(scopes));
  const index_t splits = split_count(num_tokens, scopes);
  if (splits > 1) size.add<masked_stats>(static_cast<std::size_t>(scopes * splits));
  return size;
}

// A bound of both over every N, option and degenerate pointer for `scopes` scopes, plus one
// masked_stats for statistics copied from the host (whiten_workspace_bytes(exec::cuda, ...)).
inline workspace_size whiten_scratch_bound(index_t scopes, bool with_moments) {
  workspace_size size;
  if (scopes <= 0) return size;
  size.add<masked_stats>(1);
  size.add<index_t>(2);
  size.add<whiten_coefficients>(static_cast<std::size_t>(scopes));
  size.add<index_t>(2);
  if (!with_moments) {
    size.add<masked_stats>(static_cast<std::size_t>(scopes));
    size.add<masked_stats>(static_cast<std::size_t>(scopes) + 1023);
  }
  return size;
}

// Whitening with statistics already on the device (moments [scopes]). Two-phase: d_temp ==
// nullptr sets temp_bytes (whiten_with_moments_scratch, at least 1) and returns.
template <class T>
void whiten_with_moments(void* d_temp, std::size_t& temp_bytes, const T* values,
                         const float* mask, const index_t* offsets, index_t num_segments,
                         index_t num_tokens, const masked_stats* moments, T* out,
                         const whiten_options& options, cudaStream_t stream,
                         index_t* degenerate = nullptr, bool raise_on_degenerate = false) {
  two_phase(d_temp, temp_bytes,
            whiten_with_moments_scratch(num_segments, num_tokens, options, degenerate,
                                        raise_on_degenerate),
            "whiten_with_moments", [&](workspace& ws) {
              whiten_detail::whiten_into(values, mask, offsets, num_segments, num_tokens, moments,
                                         out, options, stream, degenerate, raise_on_degenerate,
                                         ws);
            });
}

// The same with its scratch allocated stream-ordered for the call.
template <class T>
void whiten_with_moments(const T* values, const float* mask, const index_t* offsets,
                         index_t num_segments, index_t num_tokens, const masked_stats* moments,
                         T* out, const whiten_options& options, cudaStream_t stream,
                         index_t* degenerate = nullptr, bool raise_on_degenerate = false) {
  with_stream_scratch(whiten_with_moments_scratch(num_segments, num_tokens, options, degenerate,
                                                  raise_on_degenerate),
                      stream, [&](workspace& ws) {
                        whiten_detail::whiten_into(values, mask, offsets, num_segments,
                                                   num_tokens, moments, out, options, stream,
                                                   degenerate, raise_on_degenerate, ws);
                      });
}

// Statistics and whitening on the device; see the header comment. Two-phase: d_temp == nullptr
// sets temp_bytes (whiten_scratch, at least 1) and returns.
template <class T>
void whiten(void* d_temp, std::size_t& temp_bytes, const T* values, const float* mask,
            const index_t* offsets, index_t num_segments, index_t num_tokens, T* out,
            const whiten_options& options, cudaStream_t stream, index_t* degenerate = nullptr,
            bool raise_on_degenerate = false) {
  two_phase(d_temp, temp_bytes,
            whiten_scratch(num_segments, num_tokens, options, degenerate, raise_on_degenerate),
            "whiten", [&](workspace& ws) {
              whiten_detail::whiten_into(values, mask, offsets, num_segments, num_tokens,
                                         static_cast<const masked_stats*>(nullptr), out, options,
                                         stream, degenerate, raise_on_degenerate, ws);
            });
}

// The same with its scratch allocated stream-ordered for the call.
template <class T>
void whiten(const T* values, const float* mask, const index_t* offsets, index_t num_segments,
            index_t num_tokens, T* out, const whiten_options& options, cudaStream_t stream,
            index_t* degenerate = nullptr, bool raise_on_degenerate = false) {
  with_stream_scratch(
      whiten_scratch(num_segments, num_tokens, options, degenerate, raise_on_degenerate), stream,
      [&](workspace& ws) {
        whiten_detail::whiten_into(values, mask, offsets, num_segments, num_tokens,
                                   static_cast<const masked_stats*>(nullptr), out, options,
                                   stream, degenerate, raise_on_degenerate, ws);
      });
}

}  // namespace backend::cuda

namespace backend {

template <>
struct whiten_backend<exec::cuda> {
  // The caller workspace is device memory: whiten_scratch_bound(scopes, with_moments) bytes cover
  // every N. An empty workspace (the allocating front ends) makes the call allocate its scratch
  // stream-ordered; a non-empty one that is too small throws before anything is launched.
  static std::size_t workspace_bytes(exec::cuda, index_t scopes, bool with_moments) {
    return backend::cuda::whiten_scratch_bound(scopes, with_moments);
  }
  // moments: device statistics (nullptr: computed here). Returns -1 (the degenerate count is not
  // brought to the host); raise is honoured with one synchronisation before the write pass.
  template <class T>
  static index_t whiten(exec::cuda e, std::span<const T> values, std::span<const float> mask,
                        std::span<const index_t> offsets, const masked_stats* moments,
                        std::span<T> out, const whiten_options& options, workspace ws) {
    const bool raise = options.on_degenerate == degenerate_policy::raise;
    const float* m = mask.empty() ? nullptr : mask.data();
    const index_t segments = offsets.empty() ? 0 : ssize(offsets) - 1;
    const cudaStream_t stream = backend::cuda::stream_of(e);
    if (ws.data() == nullptr) {
      if (moments == nullptr)
        backend::cuda::whiten(values.data(), m, offsets.data(), segments, ssize(values),
                              out.data(), options, stream, nullptr, raise);
      else
        backend::cuda::whiten_with_moments(values.data(), m, offsets.data(), segments,
                                           ssize(values), moments, out.data(), options, stream,
                                           nullptr, raise);
    } else {
      std::size_t bytes = ws.size() - ws.used();
      std::byte* temp = ws.data() + ws.used();
      if (moments == nullptr)
        backend::cuda::whiten(temp, bytes, values.data(), m, offsets.data(), segments,
                              ssize(values), out.data(), options, stream, nullptr, raise);
      else
        backend::cuda::whiten_with_moments(temp, bytes, values.data(), m, offsets.data(),
                                           segments, ssize(values), moments, out.data(), options,
                                           stream, nullptr, raise);
    }
    return raise ? 0 : -1;
  }
  // Batch whitening with statistics held on the host (copied into the stream first: into the
  // caller workspace when one is given).
  template <class T>
  static index_t whiten_host_moments(exec::cuda e, std::span<const T> values,
                                     std::span<const float> mask, const masked_stats& moments,
                                     std::span<T> out, const whiten_options& options,
                                     workspace ws) {
    const cudaStream_t stream = backend::cuda::stream_of(e);
    if (ws.data() == nullptr) {
      backend::cuda::device_buffer<masked_stats> d(1, stream);
      d.copy_from_host(std::span<const masked_stats>(&moments, 1));
      return whiten(e, values, mask, {}, d.data(), out, options, ws);
    }
    // Sized before the copy, so that a too-small workspace throws before anything is enqueued.
    const std::size_t need =
        workspace_size().add<masked_stats>(1) +
        backend::cuda::whiten_with_moments_scratch(0, ssize(values), options, nullptr,
                                                   options.on_degenerate ==
                                                       degenerate_policy::raise);
    if (ws.size() - ws.used() < need)
      throw error("posttrain::whiten: workspace of " + std::to_string(ws.size() - ws.used()) +
                  " bytes is too small (" + std::to_string(need) +
                  " needed): size it with whiten_workspace_bytes");
    masked_stats* d = ws.take<masked_stats>(1, "whiten").data();
    backend::cuda::cuda_check(
        cudaMemcpyAsync(d, &moments, sizeof(masked_stats), cudaMemcpyHostToDevice, stream),
        "whiten (host moments copy)");
    return whiten(e, values, mask, {}, d, out, options, ws);
  }
};

}  // namespace backend

POSTTRAIN_NAMESPACE_END
