#pragma once
// CUDA GAE over the packed ragged layout (advantage/gae.hpp on the device), without whitening.
//
//   backend::cuda::gae(rewards, values, mask, seq_offsets, num_sequences, advantages, returns,
//                      options, stream)
//
// All pointers are DEVICE memory: rewards, values, advantages, returns (nullable = not requested)
// [seq_offsets[B]] of T (float or double); mask [same] of float weights (nullable = all ones);
// seq_offsets [B + 1] (int64, non-decreasing, seq_offsets[0] = 0, as core/ragged.hpp). The
// recurrences are the ones of advantage/gae.hpp (gae_masked_carry = verl, gae_plain =
// OpenRLHF / TRL PPO / open-instruct), with the same affine maps x ↦ a·x + b in double:
//   next value:  nv_t = value_map_t(nv_{t+1})                         (nv past the end = 0)
//   advantage:   A_t  = advantage_map_t(nv_{t+1})(A_{t+1})             (A past the end = 0)
//   returns_t = A_t + return_value(v_t, m_t); masked tokens (m_t = 0) get A = returns = 0.
// options.whiten must be false here (checked on the host before anything is launched): the
// front end advantage::gae(exec::cuda{stream}, ...) runs this scan and then whitens on the device
// through ops/whiten.hpp (backend/cuda/whiten.cuh), with every whiten_conventions preset.
// backend/cuda/scan.cuh is the single-map generalisation of this kernel (discounted returns).
//
// Kernel: one CTA of 256 threads per sequence, walking the sequence from its end in chunks of
// 256 × 4 tokens. Per chunk two cub::BlockScan passes over the maps in reverse time order with the
// operator (prefix, next) ↦ next ∘ prefix (advantage::compose): an exclusive scan of the value maps
// gives nv_{t+1} (applied to the carry from the later chunks), then an inclusive scan of the
// advantage maps gives A_t. The chunk's aggregates update the carries. Fixed order:
// deterministic. Results differ from the CPU's sequential loop only by the rounding of the
// composed products (double: ~1e-15 relative).
// No host synchronisation; errors of the launch through cuda_check(cudaGetLastError()).
#if !defined(__CUDACC__)
#error "<posttrain/backend/cuda/gae.cuh> is compiled by nvcc only"
#endif

#include <cuda_runtime.h>

#include <cub/block/block_scan.cuh>

#include <type_traits>

#include "posttrain/advantage/gae.hpp"
#include "posttrain/backend/cuda/error.cuh"
#include "posttrain/backend/cuda/scan.cuh"
#include "posttrain/config.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/core/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cuda {

namespace gae_detail {

// The chunk geometry, map type and reverse-time composition of the single-map scan.
using scan_detail::block_threads;
using scan_detail::chunk;
using scan_detail::items_per_thread;
using scan_detail::map_t;
using scan_detail::reverse_compose;

template <class T, class Recurrence, bool HasMask, bool HasReturns>
__global__ void __launch_bounds__(block_threads)
    gae_kernel(Recurrence rec, const T* __restrict__ rewards, const T* __restrict__ values,
               const float* __restrict__ mask, const index_t* __restrict__ seq_offsets,
               T* __restrict__ advantages, T* __restrict__ returns) {
  using scan_t = cub::BlockScan<map_t, block_threads>;
  __shared__ typename scan_t::TempStorage temp;
  const index_t begin = seq_offsets[blockIdx.x], end = seq_offsets[blockIdx.x + 1];
  double carry_nv = 0.0, carry_a = 0.0;
  for (index_t c1 = end; c1 > begin; c1 -= chunk) {
    // Reverse index k = threadIdx.x * items + j  <->  time t = c1 − 1 − k (blocked arrangement).
    double r[items_per_thread], v[items_per_thread], m[items_per_thread];
    bool valid[items_per_thread];
    map_t vm[items_per_thread];
#pragma unroll
    for (int j = 0; j < items_per_thread; ++j) {
      const index_t t = c1 - 1 - (index_t(threadIdx.x) * items_per_thread + j);
      valid[j] = t >= begin;
      r[j] = valid[j] ? static_cast<double>(rewards[t]) : 0.0;
      v[j] = valid[j] ? static_cast<double>(values[t]) : 0.0;
      m[j] = valid[j] ? (HasMask ? static_cast<double>(mask[t]) : 1.0) : 0.0;
      vm[j] = valid[j] ? rec.value_map(v[j], m[j]) : map_t{};
    }
    map_t vx[items_per_thread], v_total;
    scan_t(temp).ExclusiveScan(vm, vx, map_t{}, reverse_compose{}, v_total);
    __syncthreads();
    map_t am[items_per_thread];
#pragma unroll
    for (int j = 0; j < items_per_thread; ++j) {
      const double next_value = advantage::apply(vx[j], carry_nv);  // nv_{t+1}
      am[j] = valid[j] ? rec.advantage_map(r[j], v[j], m[j], next_value) : map_t{};
    }
    map_t ax[items_per_thread], a_total;
    scan_t(temp).InclusiveScan(am, ax, reverse_compose{}, a_total);
    __syncthreads();
#pragma unroll
    for (int j = 0; j < items_per_thread; ++j) {
      if (!valid[j]) continue;
      const index_t t = c1 - 1 - (index_t(threadIdx.x) * items_per_thread + j);
      const double a = advantage::apply(ax[j], carry_a);
      const bool keep = m[j] != 0.0;
      advantages[t] = keep ? static_cast<T>(a) : T(0);
      if constexpr (HasReturns)
        returns[t] = keep ? static_cast<T>(a + rec.return_value(v[j], m[j])) : T(0);
    }
    carry_nv = advantage::apply(v_total, carry_nv);
    carry_a = advantage::apply(a_total, carry_a);
  }
}

template <class T, class Recurrence>
void launch(const Recurrence& rec, const T* rewards, const T* values, const float* mask,
            const index_t* seq_offsets, index_t num_sequences, T* advantages, T* returns,
            cudaStream_t stream) {
  const unsigned grid = static_cast<unsigned>(num_sequences);
  if (mask != nullptr && returns != nullptr)
    gae_kernel<T, Recurrence, true, true><<<grid, block_threads, 0, stream>>>(
        rec, rewards, values, mask, seq_offsets, advantages, returns);
  else if (mask != nullptr)
    gae_kernel<T, Recurrence, true, false><<<grid, block_threads, 0, stream>>>(
        rec, rewards, values, mask, seq_offsets, advantages, returns);
  else if (returns != nullptr)
    gae_kernel<T, Recurrence, false, true><<<grid, block_threads, 0, stream>>>(
        rec, rewards, values, mask, seq_offsets, advantages, returns);
  else
    gae_kernel<T, Recurrence, false, false><<<grid, block_threads, 0, stream>>>(
        rec, rewards, values, mask, seq_offsets, advantages, returns);
}

}  // namespace gae_detail

template <class T>
void gae(const T* rewards, const T* values, const float* mask, const index_t* seq_offsets,
         index_t num_sequences, T* advantages, T* returns, const advantage::gae_options& options,
         cudaStream_t stream) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "backend::cuda::gae: rewards and values must be float or double");
  if (options.whiten)
    throw error("posttrain::backend::cuda::gae: options.whiten is true, but whitening is not done "
                "on the device here; pass whiten = false and whiten the advantages afterwards");
  if (!(options.gamma >= 0.0 && options.gamma <= 1.0) ||
      !(options.lambda >= 0.0 && options.lambda <= 1.0))
    throw error("posttrain::backend::cuda::gae: options.gamma and options.lambda must be in "
                "[0, 1]");
  if (num_sequences < 0)
    throw error("posttrain::backend::cuda::gae: num_sequences is negative");
  if (num_sequences == 0) return;
  const double gl = options.gamma * options.lambda;
  if (options.recurrence == advantage::gae_recurrence::masked_carry)
    gae_detail::launch(advantage::gae_masked_carry{options.gamma, gl}, rewards, values, mask,
                       seq_offsets, num_sequences, advantages, returns, stream);
  else
    gae_detail::launch(advantage::gae_plain{options.gamma, gl}, rewards, values, mask,
                       seq_offsets, num_sequences, advantages, returns, stream);
  cuda_check(cudaGetLastError(), "backend::cuda::gae (kernel launch)");
}

}  // namespace backend::cuda

POSTTRAIN_NAMESPACE_END
