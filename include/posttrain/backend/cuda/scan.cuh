#pragma once
// Reverse segmented scan of affine maps on the device: the generic kernel behind the first-order
// recurrences of advantage/*.hpp that run backwards in time within each sequence (discounted
// returns, reverse cumulative sums; GAE's two coupled maps have their own kernel in gae.cuh).
//
//   backend::cuda::reverse_affine_scan(op, seq_offsets, num_sequences, stream)
//
// For every sequence b the carry starts at 0 after its last token and, for t from the last token
// down to the first, c_t = f_t(c_{t+1}) with f_t = op.map(item_t), x ↦ a·x + b in double; then
// op.emit(t, item_t, c_{t+1}, c_t) writes the outputs of t. Op (a trivially copyable functor):
//   using item = ...;                                           per-token data loaded once
//   __device__ item load(index_t t) const;
//   __device__ advantage::affine_map<double> map(const item&) const;
//   __device__ void emit(index_t t, const item&, double next, double current) const;
// seq_offsets is DEVICE memory [B + 1] (non-decreasing, not checked on the device).
//
// Kernel: one CTA of 256 threads per sequence walks it from its end in chunks of 256 × 4 tokens
// (blocked arrangement in reverse time); cub::BlockScan exclusive-scans the maps with the operator
// (prefix, next) ↦ next ∘ prefix, so thread-item k holds the composition of every later token of
// the chunk; applied to the carry from the later chunks it gives c_{t+1}. The chunk aggregate
// updates the carry. Fixed order: deterministic; results differ from the CPU's serial loop only by
// the rounding of the composed products. One read of the inputs, one write of the outputs.
// No host synchronisation.
#if !defined(__CUDACC__)
#error "<posttrain/backend/cuda/scan.cuh> is compiled by nvcc only"
#endif

#include <cuda_runtime.h>

#include <cub/block/block_scan.cuh>

#include "posttrain/advantage/gae.hpp"
#include "posttrain/backend/cuda/error.cuh"
#include "posttrain/config.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/core/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cuda {

namespace scan_detail {

// Chunk geometry, map type and composition operator: shared with gae.cuh's two-map kernel.
inline constexpr int block_threads = 256;
inline constexpr int items_per_thread = 4;
inline constexpr int chunk = block_threads * items_per_thread;

using map_t = advantage::affine_map<double>;

// Scan in reverse time order: the earlier-scanned (later in time) prefix is applied first.
struct reverse_compose {
  __device__ __forceinline__ map_t operator()(const map_t& prefix, const map_t& next) const {
    return advantage::compose(next, prefix);
  }
};

template <class Op>
__global__ void __launch_bounds__(block_threads)
    reverse_affine_scan_kernel(Op op, const index_t* __restrict__ seq_offsets) {
  using scan_t = cub::BlockScan<map_t, block_threads>;
  using item_t = typename Op::item;
  __shared__ typename scan_t::TempStorage temp;
  const index_t begin = seq_offsets[blockIdx.x], end = seq_offsets[blockIdx.x + 1];
  double carry = 0.0;
  for (index_t c1 = end; c1 > begin; c1 -= chunk) {
    item_t item[items_per_thread];
    map_t f[items_per_thread];
#pragma unroll
    for (int j = 0; j < items_per_thread; ++j) {
      const index_t t = c1 - 1 - (index_t(threadIdx.x) * items_per_thread + j);
      if (t >= begin) {
        item[j] = op.load(t);
        f[j] = op.map(item[j]);
      } else {
        item[j] = item_t{};
        f[j] = map_t{};
      }
    }
    map_t prefix[items_per_thread], total;
    scan_t(temp).ExclusiveScan(f, prefix, map_t{}, reverse_compose{}, total);
    __syncthreads();  // temp is reused by the next chunk
#pragma unroll
    for (int j = 0; j < items_per_thread; ++j) {
      const index_t t = c1 - 1 - (index_t(threadIdx.x) * items_per_thread + j);
      if (t < begin) continue;
      const double next = advantage::apply(prefix[j], carry);
      op.emit(t, item[j], next, advantage::apply(f[j], next));
    }
    carry = advantage::apply(total, carry);
  }
}

}  // namespace scan_detail

template <class Op>
void reverse_affine_scan(const Op& op, const index_t* seq_offsets, index_t num_sequences,
                         cudaStream_t stream) {
  if (num_sequences < 0)
    throw error("posttrain::backend::cuda::reverse_affine_scan: num_sequences is negative");
  if (num_sequences == 0) return;
  scan_detail::reverse_affine_scan_kernel<Op>
      <<<static_cast<unsigned>(num_sequences), scan_detail::block_threads, 0, stream>>>(
          op, seq_offsets);
  cuda_check(cudaGetLastError(), "backend::cuda::reverse_affine_scan (kernel launch)");
}

}  // namespace backend::cuda

POSTTRAIN_NAMESPACE_END
