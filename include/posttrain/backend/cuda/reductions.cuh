#pragma once
// CUDA backend of ops/reductions.hpp: segmented masked moments on the device.
//
//   backend::cuda::segment_moments(values, mask, offsets, num_segments, num_tokens, out, stream)
//   backend::cuda::segment_stats(values, mask, offsets, num_segments, num_tokens,
//                                segment_stats_out{device spans}, stream)
//
// All pointers are DEVICE memory: values [num_tokens] (float or double), mask [num_tokens] float
// weights or nullptr (= all ones), offsets [num_segments + 1] (int64, non-decreasing, offsets[0] =
// 0, offsets[S] = num_tokens: NOT checked on the device), out [num_segments] masked_stats. The
// statistics are those of ops/reductions.hpp (count = Σw, sum = Σw·x, mean, m2 = Σw·(x − mean)²,
// accumulated in double; count == 0 gives all zeros; values whose weight is 0 are never used).
// Mask weights are NOT validated on the device (a negative or NaN weight gives meaningless or NaN
// statistics instead of an error); the host front end validates them for exec::host only.
//
// Kernel design (one read of values and mask):
//   1. partial moments: grid (S, K). Segment s is cut into K equal parts (K = split_count(N, S),
//      a function of the sizes only, so the same call always reduces in the same order); CTA
//      (s, k) of 256 threads walks its part with a block-stride loop. Each thread keeps shifted
//      sums about its first kept value c: Σw, Σw·x, Σw·(x − c), Σw·(x − c)² (three FMAs per
//      token, stable because c is a sample of the same data), turns them into masked_stats
//      (m2 = Σw(x−c)² − (Σw(x−c))²/Σw), and the CTA combines the 256 of them with
//      cub::BlockReduce and merge() (Chan): a fixed tree, deterministic.
//   2. if K > 1, one CTA per segment folds its K partials (each thread a fixed strided subset in
//      order, then cub::BlockReduce with merge): deterministic.
// No atomics, no host synchronisation; launch errors through cuda_check(cudaGetLastError()).
// The results differ from the CPU backend only by rounding (~1e-15 relative in double).
//
// Temporary storage (the partials, [S·K] masked_stats when K > 1; segment_stats' S moments when
// out.moments is not given), CUB's two-phase contract:
//
//   std::size_t bytes = 0;
//   backend::cuda::segment_moments(nullptr, bytes, values, mask, offsets, S, N, out, stream);
//   // bytes is set (>= 1, a function of S and N only); nothing else happens, no CUDA call
//   backend::cuda::segment_moments(d_temp, bytes, values, mask, offsets, S, N, out, stream);
//
// d_temp is device memory of `bytes` bytes (any alignment); a smaller size throws posttrain::error
// before anything is launched. The forms without (d_temp, bytes) allocate the same scratch
// stream-ordered (device_buffer, cudaMallocAsync; nothing when none is needed) and run the same
// code. segment_stats_scratch_bound(S) bounds the scratch for every N (what
// segment_stats_workspace_bytes(exec::cuda, S) returns for the front end's workspace). The
// reductions_backend<exec::cuda> specialisation at the end is what ops/reductions.hpp's front ends
// dispatch to for exec::cuda{stream}: with a caller workspace (device memory) it allocates
// nothing; with an empty one it allocates as the convenience forms do.
#if !defined(__CUDACC__)
#error "<posttrain/backend/cuda/reductions.cuh> is compiled by nvcc only"
#endif

#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>
#include <cstddef>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "posttrain/backend/cuda/error.cuh"
#include "posttrain/backend/cuda/memory.cuh"
#include "posttrain/config.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/ops/reductions_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cuda {

inline constexpr int reduction_block = 256;

// cudaStream_t from the execution tag.
inline cudaStream_t stream_of(exec::cuda e) { return static_cast<cudaStream_t>(e.stream); }

namespace reduce_detail {

// Weight of token i: the mask, ones, or "not NaN" (unscorable rewards excluded,
// nan_policy::ignore).
struct mask_weight {
  const float* m;
  __device__ __forceinline__ double operator()(index_t i, double) const {
    return static_cast<double>(m[i]);
  }
};
struct unit_weight {
  __device__ __forceinline__ double operator()(index_t, double) const { return 1.0; }
};
struct finite_weight {  // 1 where x is not NaN
  __device__ __forceinline__ double operator()(index_t, double x) const {
    return x == x ? 1.0 : 0.0;
  }
};

struct merge_op {
  __device__ __forceinline__ masked_stats operator()(const masked_stats& a,
                                                     const masked_stats& b) const {
    return merge(a, b);
  }
};

// How many indices a CTA flagged and the smallest of them, for the one-CTA checks that report
// "n bad scopes, the first is i" (whiten.cuh's degenerate scopes, group_advantage.cuh's
// singleton groups). count_first_op is associative and commutative: any tree gives the same.
struct count_first {
  index_t count;
  index_t first;  // -1: none
};
struct count_first_op {
  __device__ __forceinline__ count_first operator()(const count_first& a,
                                                    const count_first& b) const {
    const index_t f = a.first < 0   ? b.first
                      : b.first < 0 ? a.first
                                    : (a.first < b.first ? a.first : b.first);
    return {a.count + b.count, f};
  }
};

// The part [begin, end) of segment s handled by split k of `splits`.
__device__ __forceinline__ void part_range(const index_t* offsets, index_t s, index_t k,
                                           index_t splits, index_t& begin, index_t& end) {
  const index_t b = offsets[s], e = offsets[s + 1];
  const index_t len = e - b;
  const index_t per = (len + splits - 1) / splits;
  begin = b + k * per < e ? b + k * per : e;
  end = begin + per < e ? begin + per : e;
}

// Moments of [begin, end) by one CTA; the result is valid in thread 0.
template <class T, class Weight>
__device__ __forceinline__ masked_stats block_moments(const T* __restrict__ x, Weight weight,
                                                      index_t begin, index_t end) {
  using reduce_t = cub::BlockReduce<masked_stats, reduction_block>;
  __shared__ typename reduce_t::TempStorage temp;
  double cnt = 0.0, sum = 0.0, s1 = 0.0, s2 = 0.0, shift = 0.0;
  bool have_shift = false;
#pragma unroll 4
  for (index_t i = begin + threadIdx.x; i < end; i += reduction_block) {
    const double xv = static_cast<double>(x[i]);
    const double w = weight(i, xv);
    const double kept = w != 0.0 ? xv : 0.0;  // a NaN under weight 0 never reaches a sum
    if (!have_shift && w != 0.0) {
      shift = kept;
      have_shift = true;
    }
    const double d = w != 0.0 ? kept - shift : 0.0;
    cnt += w;
    sum += w * kept;
    s1 += w * d;
    s2 += w * d * d;
  }
  masked_stats mine{};
  if (cnt > 0.0) {
    mine.count = cnt;
    mine.sum = sum;
    mine.mean = sum / cnt;
    const double m2 = s2 - s1 * s1 / cnt;
    mine.m2 = m2 > 0.0 ? m2 : 0.0;
  }
  return reduce_t(temp).Reduce(mine, merge_op{});
}

template <class T, class Weight>
__global__ void __launch_bounds__(reduction_block)
    partial_moments_kernel(const T* __restrict__ x, Weight weight,
                           const index_t* __restrict__ offsets, index_t splits,
                           masked_stats* __restrict__ out) {
  const index_t s = blockIdx.x, k = blockIdx.y;
  index_t begin, end;
  part_range(offsets, s, k, splits, begin, end);
  const masked_stats r = block_moments(x, weight, begin, end);
  if (threadIdx.x == 0) out[s * splits + k] = r;
}

// out[s] = fold of partials[s·K, (s+1)·K) (fixed order).
template <class = void>  // a template: the header may be in several translation units
__global__ void __launch_bounds__(reduction_block)
    fold_partials_kernel(const masked_stats* __restrict__ partials, index_t splits,
                         masked_stats* __restrict__ out) {
  using reduce_t = cub::BlockReduce<masked_stats, reduction_block>;
  __shared__ typename reduce_t::TempStorage temp;
  const index_t s = blockIdx.x;
  masked_stats mine{};
  for (index_t k = threadIdx.x; k < splits; k += reduction_block)
    mine = merge(mine, partials[s * splits + k]);
  const masked_stats r = reduce_t(temp).Reduce(mine, merge_op{});
  if (threadIdx.x == 0) out[s] = r;
}

template <class = void>
__global__ void stats_outputs_kernel(const masked_stats* __restrict__ stats, index_t segments,
                                     double* sum, double* count, double* mean, double* var_b,
                                     double* var_u) {
  const index_t s = blockIdx.x * index_t(blockDim.x) + threadIdx.x;
  if (s >= segments) return;
  const masked_stats st = stats[s];
  if (sum) sum[s] = st.sum;
  if (count) count[s] = st.count;
  if (mean) mean[s] = st.mean;
  if (var_b) var_b[s] = st.var_biased();
  if (var_u) var_u[s] = st.var_unbiased();
}

template <class = void>
__global__ void whole_offsets_kernel(index_t* offsets, index_t n) {
  offsets[0] = 0;
  offsets[1] = n;
}

}  // namespace reduce_detail

// Device offsets {0, n} into o[2] (device memory): one segment over every token (batch scope),
// without a host copy.
inline void whole_offsets_into(index_t* o, index_t n, cudaStream_t stream) {
  reduce_detail::whole_offsets_kernel<><<<1, 1, 0, stream>>>(o, n);
  cuda_check(cudaGetLastError(), "backend::cuda::whole_offsets (kernel launch)");
}

// The same into a new stream-ordered buffer.
inline device_buffer<index_t> whole_offsets(index_t n, cudaStream_t stream) {
  device_buffer<index_t> o(2, stream);
  whole_offsets_into(o.data(), n, stream);
  return o;
}

// Number of parts per segment: about 1024 CTAs in all, parts of at least ~2048 tokens. A function
// of (N, S) only: the reduction order never depends on the device.
inline index_t split_count(index_t num_tokens, index_t num_segments) {
  if (num_segments <= 0) return 1;
  const index_t by_ctas = (1024 + num_segments - 1) / num_segments;
  const index_t per_segment = num_tokens / num_segments;
  const index_t by_size = (per_segment + 2047) / 2048;
  index_t k = by_ctas < by_size ? by_ctas : by_size;
  return k < 1 ? 1 : (k > 1024 ? 1024 : k);
}

// Scratch of segment_moments for S segments over N tokens: the partials when a segment is split.
inline workspace_size segment_moments_scratch(index_t num_segments, index_t num_tokens) {
  workspace_size size;
  if (num_segments <= 0) return size;
  const index_t splits = split_count(num_tokens, num_segments);
  if (splits > 1) size.add<masked_stats>(static_cast<std::size_t>(num_segments * splits));
  return size;
}

// An upper bound of segment_moments_scratch(S, N) over every N: K <= ceil(1024 / S), so
// S·K < S + 1024.
inline workspace_size segment_moments_scratch_bound(index_t num_segments) {
  workspace_size size;
  if (num_segments > 0) size.add<masked_stats>(static_cast<std::size_t>(num_segments) + 1023);
  return size;
}

// Scratch of segment_stats: S moments when out.moments is not given, then segment_moments'.
inline workspace_size segment_stats_scratch(index_t num_segments, index_t num_tokens,
                                            bool with_moments_out) {
  workspace_size size;
  if (num_segments <= 0) return size;
  if (!with_moments_out) size.add<masked_stats>(static_cast<std::size_t>(num_segments));
  const index_t splits = split_count(num_tokens, num_segments);
  if (splits > 1) size.add<masked_stats>(static_cast<std::size_t>(num_segments * splits));
  return size;
}

// Its bound over every N and either out.moments (segment_stats_workspace_bytes(exec::cuda, S)).
inline workspace_size segment_stats_scratch_bound(index_t num_segments) {
  workspace_size size;
  if (num_segments <= 0) return size;
  size.add<masked_stats>(static_cast<std::size_t>(num_segments));
  size.add<masked_stats>(static_cast<std::size_t>(num_segments) + 1023);
  return size;
}

// Moments with an explicit weight policy (the device-side building block of every statistic),
// the partials taken from ws (segment_moments_scratch(S, N) bytes; device memory).
template <class T, class Weight>
void segment_moments_weighted(const T* values, Weight weight, const index_t* offsets,
                              index_t num_segments, index_t num_tokens, masked_stats* out,
                              cudaStream_t stream, workspace& ws) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "backend::cuda::segment_moments: values must be float or double");
  if (num_segments < 0) throw error("posttrain::backend::cuda::segment_moments: negative count");
  if (num_segments == 0) return;
  const index_t splits = split_count(num_tokens, num_segments);
  if (splits == 1) {
    reduce_detail::partial_moments_kernel<<<dim3(static_cast<unsigned>(num_segments), 1),
                                            reduction_block, 0, stream>>>(values, weight, offsets,
                                                                          1, out);
  } else {
    const std::span<masked_stats> partials = ws.take<masked_stats>(
        static_cast<std::size_t>(num_segments * splits), "backend::cuda::segment_moments");
    reduce_detail::partial_moments_kernel<<<dim3(static_cast<unsigned>(num_segments),
                                                 static_cast<unsigned>(splits)),
                                            reduction_block, 0, stream>>>(values, weight, offsets,
                                                                          splits, partials.data());
    reduce_detail::fold_partials_kernel<>
        <<<static_cast<unsigned>(num_segments), reduction_block, 0, stream>>>(partials.data(),
                                                                              splits, out);
  }
  cuda_check(cudaGetLastError(), "backend::cuda::segment_moments (kernel launch)");
}

// The same with the partials allocated stream-ordered for the call (none when K = 1).
template <class T, class Weight>
void segment_moments_weighted(const T* values, Weight weight, const index_t* offsets,
                              index_t num_segments, index_t num_tokens, masked_stats* out,
                              cudaStream_t stream) {
  with_stream_scratch(segment_moments_scratch(num_segments, num_tokens), stream,
                      [&](workspace& ws) {
                        segment_moments_weighted(values, weight, offsets, num_segments,
                                                 num_tokens, out, stream, ws);
                      });
}

namespace reduce_detail {

template <class T>
void moments_dispatch(const T* values, const float* mask, const index_t* offsets,
                      index_t num_segments, index_t num_tokens, masked_stats* out,
                      cudaStream_t stream, workspace& ws) {
  if (mask != nullptr)
    segment_moments_weighted(values, mask_weight{mask}, offsets, num_segments, num_tokens, out,
                             stream, ws);
  else
    segment_moments_weighted(values, unit_weight{}, offsets, num_segments, num_tokens, out, stream,
                             ws);
}

template <class T>
void stats_into(const T* values, const float* mask, const index_t* offsets, index_t num_segments,
                index_t num_tokens, const segment_stats_out& out, cudaStream_t stream,
                workspace& ws) {
  if (num_segments <= 0) return;
  masked_stats* stats = out.moments.data();
  if (out.moments.empty())
    stats = ws.take<masked_stats>(static_cast<std::size_t>(num_segments),
                                  "backend::cuda::segment_stats")
                .data();
  moments_dispatch(values, mask, offsets, num_segments, num_tokens, stats, stream, ws);
  if (out.sum.empty() && out.count.empty() && out.mean.empty() && out.var_biased.empty() &&
      out.var_unbiased.empty())
    return;
  const unsigned grid = static_cast<unsigned>((num_segments + 255) / 256);
  stats_outputs_kernel<><<<grid, 256, 0, stream>>>(stats, num_segments, out.sum.data(),
                                                   out.count.data(), out.mean.data(),
                                                   out.var_biased.data(), out.var_unbiased.data());
  cuda_check(cudaGetLastError(), "backend::cuda::segment_stats (kernel launch)");
}

}  // namespace reduce_detail

// out[s] = moments of segment s (device memory everywhere; mask may be nullptr). Two-phase:
// d_temp == nullptr sets temp_bytes (segment_moments_scratch(S, N), at least 1) and returns.
template <class T>
void segment_moments(void* d_temp, std::size_t& temp_bytes, const T* values, const float* mask,
                     const index_t* offsets, index_t num_segments, index_t num_tokens,
                     masked_stats* out, cudaStream_t stream) {
  two_phase(d_temp, temp_bytes, segment_moments_scratch(num_segments, num_tokens),
            "segment_moments", [&](workspace& ws) {
              reduce_detail::moments_dispatch(values, mask, offsets, num_segments, num_tokens, out,
                                              stream, ws);
            });
}

// The same with its scratch allocated stream-ordered for the call.
template <class T>
void segment_moments(const T* values, const float* mask, const index_t* offsets,
                     index_t num_segments, index_t num_tokens, masked_stats* out,
                     cudaStream_t stream) {
  with_stream_scratch(segment_moments_scratch(num_segments, num_tokens), stream,
                      [&](workspace& ws) {
                        reduce_detail::moments_dispatch(values, mask, offsets, num_segments,
                                                        num_tokens, out, stream, ws);
                      });
}

// The requested outputs of ops/reductions.hpp's segment_stats (device spans, empty = not wanted).
// Two-phase: d_temp == nullptr sets temp_bytes (segment_stats_scratch(S, N, !out.moments.empty()),
// at least 1) and returns.
template <class T>
void segment_stats(void* d_temp, std::size_t& temp_bytes, const T* values, const float* mask,
                   const index_t* offsets, index_t num_segments, index_t num_tokens,
                   const segment_stats_out& out, cudaStream_t stream) {
  two_phase(d_temp, temp_bytes,
            segment_stats_scratch(num_segments, num_tokens, !out.moments.empty()),
            "segment_stats", [&](workspace& ws) {
              reduce_detail::stats_into(values, mask, offsets, num_segments, num_tokens, out,
                                        stream, ws);
            });
}

// The same with its scratch allocated stream-ordered for the call.
template <class T>
void segment_stats(const T* values, const float* mask, const index_t* offsets, index_t num_segments,
                   index_t num_tokens, const segment_stats_out& out, cudaStream_t stream) {
  with_stream_scratch(segment_stats_scratch(num_segments, num_tokens, !out.moments.empty()),
                      stream, [&](workspace& ws) {
                        reduce_detail::stats_into(values, mask, offsets, num_segments, num_tokens,
                                                  out, stream, ws);
                      });
}

}  // namespace backend::cuda

namespace backend {

template <>
struct reductions_backend<exec::cuda> {
  // Same contract as the host backend; out is device memory. Mask weights are not checked on the
  // device: always returns true.
  template <class T>
  static bool segment_moments(exec::cuda e, std::span<const T> values, std::span<const float> mask,
                              std::span<const index_t> offsets, std::span<masked_stats> out) {
    backend::cuda::segment_moments(values.data(), mask.empty() ? nullptr : mask.data(),
                                   offsets.data(), ssize(offsets) - 1, ssize(values), out.data(),
                                   backend::cuda::stream_of(e));
    return true;
  }
  // The caller workspace is device memory: segment_stats_scratch_bound(S) bytes cover every N
  // (the partials and S moments). An empty workspace (the allocating front end) makes the call
  // allocate its scratch stream-ordered; a non-empty one that is too small throws before anything
  // is launched.
  static std::size_t segment_stats_workspace_bytes(exec::cuda, index_t segments) {
    return backend::cuda::segment_stats_scratch_bound(segments);
  }
  template <class T>
  static bool segment_stats(exec::cuda e, std::span<const T> values, std::span<const float> mask,
                            std::span<const index_t> offsets, const segment_stats_out& out,
                            workspace ws) {
    const float* m = mask.empty() ? nullptr : mask.data();
    const index_t segments = ssize(offsets) - 1;
    if (ws.data() == nullptr) {
      backend::cuda::segment_stats(values.data(), m, offsets.data(), segments, ssize(values), out,
                                   backend::cuda::stream_of(e));
    } else {
      std::size_t bytes = ws.size() - ws.used();
      backend::cuda::segment_stats(ws.data() + ws.used(), bytes, values.data(), m, offsets.data(),
                                   segments, ssize(values), out, backend::cuda::stream_of(e));
    }
    return true;
  }
  // Host copies of the moments for the convenience front ends that return values
  // (segment_moments, masked_moments, masked_sum, ...): they synchronise the stream. offsets is
  // device memory, or empty for one segment over every token.
  template <class T>
  static std::vector<masked_stats> moments_to_host(exec::cuda e, std::span<const T> values,
                                                   std::span<const float> mask,
                                                   std::span<const index_t> offsets) {
    const cudaStream_t stream = backend::cuda::stream_of(e);
    backend::cuda::device_buffer<index_t> whole;
    if (offsets.empty()) {
      whole = backend::cuda::whole_offsets(ssize(values), stream);
      offsets = whole.span();
    }
    std::vector<masked_stats> host(offsets.size() - 1);
    if (host.empty()) return host;
    backend::cuda::device_buffer<masked_stats> d(host.size(), stream);
    segment_moments(e, values, mask, offsets, d.span());
    d.copy_to_host(std::span<masked_stats>(host));
    backend::cuda::cuda_check(cudaStreamSynchronize(stream), "segment_moments (synchronise)");
    return host;
  }
};

}  // namespace backend

POSTTRAIN_NAMESPACE_END
