#pragma once
// CUDA group-relative advantages (advantage/group.hpp, advantage/rloo.hpp on the device), the
// token helpers of advantage/common.hpp, and the exec::cuda dispatch of every advantage front end
// (advantage_backend<exec::cuda>: GAE, discounted returns, GRPO, RLOO, broadcast, lengths, sums).
//
//   backend::cuda::group_advantages(rewards, group_offsets, num_groups, num_rewards, out,
//                                   options, stream)
//   backend::cuda::rloo_advantages(rewards, group_offsets, num_groups, num_rewards, out, options,
//                                  stream)
//   backend::cuda::broadcast_to_tokens(advantages, seq_offsets, num_sequences, num_tokens, mask,
//                                      out, stream)
//
// All pointers are DEVICE memory: rewards/out [B] (float or double; out may be rewards, in
// place), group_offsets [G + 1] (not checked on the device), mask [N] or nullptr. The formulas
// are the host ones: make_group_coefficients / group_advantage (every group_conventions preset:
// std biased/unbiased, ε added to σ or inside the sqrt, variance floor, group/batch/no scaling,
// singleton policies, NaN ignored as unscorable) and rloo_advantage (+ TRL's batch normalisation).
//
// Kernels:
//   1. group moments: backend/cuda/reductions.cuh over group_offsets with weight 1, or
//      "not NaN" under nan_policy::ignore (one CTA per group, or parts + fold for huge groups)
//   2. scale = batch: the G group moments folded by one CTA (cub::BlockReduce of merge()), and
//      RLOO's normalisation: the moments of every defined advantage (one segment)
//   3. members: one CTA per group; each thread forms the group's coefficients from its moments
//      (a few flops, no extra pass) and writes its members.
// Deterministic (fixed trees, no atomics); no host synchronisation, except singleton_policy::raise,
// which reads the count of singleton groups with ONE synchronisation before anything is written.
//
// Scratch, CUB's two-phase contract: group_advantages / rloo_advantages / sequence_rewards(
// d_temp, temp_bytes, ...) with d_temp == nullptr set temp_bytes (*_scratch(...), at least 1)
// and return without a CUDA call; with a d_temp of fewer bytes they throw posttrain::error before
// anything is launched. The forms without d_temp allocate that scratch stream-ordered
// (cudaMallocAsync / cudaFreeAsync on the stream) and delegate. The front ends
// advantage::group_advantages / rloo_advantages / sequence_rewards(exec::cuda, ..., workspace)
// (at the end of this header) take it from a caller workspace of device memory sized by
// *_workspace_bytes(exec::cuda, ...).
// NOT checked on the device: reward finiteness (±inf propagates; NaN under nan_policy::raise is
// treated as a reward and gives NaN), offsets' contents.
#if !defined(__CUDACC__)
#error "<posttrain/backend/cuda/group_advantage.cuh> is compiled by nvcc only"
#endif

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cub/block/block_reduce.cuh>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "posttrain/advantage/common.hpp"
#include "posttrain/advantage/gae.hpp"
#include "posttrain/advantage/group.hpp"
#include "posttrain/advantage/reinforce.hpp"
#include "posttrain/advantage/rloo.hpp"
#include "posttrain/backend/cuda/error.cuh"
#include "posttrain/backend/cuda/gae.cuh"
#include "posttrain/backend/cuda/memory.cuh"
#include "posttrain/backend/cuda/reductions.cuh"
#include "posttrain/backend/cuda/reinforce.cuh"
#include "posttrain/config.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/workspace.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cuda {

namespace group_detail {

inline constexpr int member_block = 128;

using reduce_detail::count_first;
using reduce_detail::count_first_op;

// out = {number of non-empty groups with fewer than two scorable members, the first, its count}.
template <class = void>  // a template: the header may be in several translation units
__global__ void __launch_bounds__(reduction_block)
    singletons_kernel(const masked_stats* __restrict__ stats, const index_t* __restrict__ offsets,
                      index_t groups, double* __restrict__ out) {
  using reduce_t = cub::BlockReduce<count_first, reduction_block>;
  __shared__ typename reduce_t::TempStorage temp;
  count_first mine{0, -1};
  for (index_t g = threadIdx.x; g < groups; g += reduction_block)
    if (offsets[g + 1] > offsets[g] && !(stats[g].count > 1.0)) {
      ++mine.count;
      if (mine.first < 0) mine.first = g;
    }
  const count_first r = reduce_t(temp).Reduce(mine, count_first_op{});
  if (threadIdx.x == 0) {
    out[0] = static_cast<double>(r.count);
    out[1] = static_cast<double>(r.first);
    out[2] = r.first >= 0 ? stats[r.first].count : 0.0;
  }
}

// Throws (after one synchronisation) when some non-empty group has < 2 scorable members. Its
// 3 doubles of device scratch come from ws (add_checked_moments_scratch counts them).
inline void reject_singletons(const masked_stats* stats, const index_t* offsets, index_t groups,
                              const char* where, cudaStream_t stream, workspace& ws) {
  double* d = ws.take<double>(3, "backend::cuda (singleton check)").data();
  singletons_kernel<><<<1, reduction_block, 0, stream>>>(stats, offsets, groups, d);
  cuda_check(cudaGetLastError(), "backend::cuda (singleton check launch)");
  double host[3] = {0.0, -1.0, 0.0};
  cuda_check(cudaMemcpyAsync(host, d, sizeof(host), cudaMemcpyDeviceToHost, stream),
             "backend::cuda (singleton check copy)");
  cuda_check(cudaStreamSynchronize(stream), "backend::cuda (singleton check synchronise)");
  if (host[0] > 0.0)
    throw error(std::string("posttrain::") + where + ": group " +
                std::to_string(static_cast<index_t>(host[1])) + " has " + std::to_string(host[2]) +
                " scorable member(s), expected at least 2 (options.singleton = raise)");
}

template <class T>
__global__ void __launch_bounds__(member_block)
    group_members_kernel(const T* rewards, const index_t* __restrict__ offsets,
                         const masked_stats* __restrict__ stats,
                         const masked_stats* __restrict__ batch, advantage::group_options o,
                         T* out) {
  const index_t g = blockIdx.x;
  const double batch_denominator =
      batch != nullptr ? advantage::group_std_denominator(batch->variance(o.std_kind), o) : 1.0;
  const advantage::group_coefficients c =
      advantage::make_group_coefficients(stats[g], o, batch_denominator);
  for (index_t i = offsets[g] + threadIdx.x; i < offsets[g + 1]; i += member_block)
    out[i] = static_cast<T>(advantage::group_advantage(static_cast<double>(rewards[i]), c));
}

// a[i] = rloo_advantage (NaN: undefined); out[i] written directly unless normalising.
template <class T>
__global__ void __launch_bounds__(member_block)
    rloo_members_kernel(const T* rewards, const index_t* __restrict__ offsets,
                        const masked_stats* __restrict__ stats, advantage::singleton_policy sp,
                        double* __restrict__ a, T* out) {
  const index_t g = blockIdx.x;
  const masked_stats s = stats[g];
  for (index_t i = offsets[g] + threadIdx.x; i < offsets[g + 1]; i += member_block) {
    const double v = advantage::rloo_advantage(static_cast<double>(rewards[i]), s.sum, s.count, sp);
    if (a != nullptr)
      a[i] = v;
    else
      out[i] = v != v ? T(0) : static_cast<T>(v);
  }
}

template <class T>
__global__ void rloo_normalize_kernel(const double* __restrict__ a, index_t n,
                                      const masked_stats* __restrict__ all, double eps, T* out) {
  const index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const masked_stats s = *all;
  const double d = sqrt(s.var_unbiased()) + eps;
  const double x = a[i];
  const double y = d != 0.0 ? (x - s.mean) / d : 0.0;
  out[i] = y != y ? T(0) : static_cast<T>(y);
}

template <class T, bool HasMask>
__global__ void __launch_bounds__(reduction_block)
    broadcast_kernel(const T* __restrict__ advantages, const index_t* __restrict__ offsets,
                     index_t splits, const float* __restrict__ m, T* __restrict__ out) {
  const index_t b = blockIdx.x, k = blockIdx.y;
  index_t begin, end;
  reduce_detail::part_range(offsets, b, k, splits, begin, end);
  const double a = static_cast<double>(advantages[b]);
  for (index_t t = begin + threadIdx.x; t < end; t += reduction_block) {
    if constexpr (HasMask)
      out[t] = m[t] != 0.0f ? static_cast<T>(a * static_cast<double>(m[t])) : T(0);
    else
      out[t] = static_cast<T>(a);
  }
}

template <class T>
__global__ void sums_kernel(const masked_stats* __restrict__ stats, index_t n,
                            T* __restrict__ out) {
  const index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = static_cast<T>(stats[i].sum);
}

template <class = void>
__global__ void lengths_kernel(const index_t* __restrict__ offsets, index_t n,
                               double* __restrict__ out) {
  const index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = static_cast<double>(offsets[i + 1] - offsets[i]);
}

inline unsigned blocks_for(index_t n, int block) {
  return static_cast<unsigned>((n + block - 1) / block);
}

// Moments of R per group, NaN excluded when the policy ignores them (partials from ws).
template <class T>
void group_moments(const T* rewards, const index_t* group_offsets, index_t groups, index_t n,
                   advantage::nan_policy nan, masked_stats* out, cudaStream_t stream,
                   workspace& ws) {
  if (nan == advantage::nan_policy::ignore)
    segment_moments_weighted(rewards, reduce_detail::finite_weight{}, group_offsets, groups, n, out,
                             stream, ws);
  else
    segment_moments_weighted(rewards, reduce_detail::unit_weight{}, group_offsets, groups, n, out,
                             stream, ws);
}

}  // namespace group_detail

namespace group_detail {

// Scratch of checked_group_moments: the G moments, their partials when a group is split, and
// the singleton check's 3 doubles under singleton_policy::raise.
inline void add_checked_moments_scratch(workspace_size& size, index_t num_groups,
                                        index_t num_rewards,
                                        advantage::singleton_policy singleton) {
  size.add<masked_stats>(static_cast<std::size_t>(num_groups));
  const index_t splits = split_count(num_rewards, num_groups);
  if (splits > 1) size.add<masked_stats>(static_cast<std::size_t>(num_groups * splits));
  if (singleton == advantage::singleton_policy::raise) size.add<double>(3);
}

// Per-group moments of the rewards (taken from ws), with the singleton "raise" policy checked
// (one sync) before any output is written; shared by the GRPO and RLOO entry points.
template <class T>
const masked_stats* checked_group_moments(const T* rewards, const index_t* group_offsets,
                                          index_t num_groups, index_t num_rewards,
                                          advantage::nan_policy nan,
                                          advantage::singleton_policy singleton, const char* where,
                                          cudaStream_t stream, workspace& ws) {
  masked_stats* stats = ws.take<masked_stats>(static_cast<std::size_t>(num_groups), where).data();
  group_moments(rewards, group_offsets, num_groups, num_rewards, nan, stats, stream, ws);
  if (singleton == advantage::singleton_policy::raise)
    reject_singletons(stats, group_offsets, num_groups, where, stream, ws);
  return stats;
}

template <class T>
void group_advantages_into(const T* rewards, const index_t* group_offsets, index_t num_groups,
                           index_t num_rewards, T* out, const advantage::group_options& options,
                           cudaStream_t stream, workspace& ws) {
  const masked_stats* stats =
      checked_group_moments(rewards, group_offsets, num_groups, num_rewards, options.nan,
                            options.singleton, "advantage::group_advantages", stream, ws);
  masked_stats* batch = nullptr;
  if (options.scale == advantage::group_scale::batch) {
    // Same as the host: merge() of the per-group moments, here in a fixed tree.
    batch = ws.take<masked_stats>(1, "advantage::group_advantages").data();
    reduce_detail::fold_partials_kernel<>
        <<<1, reduction_block, 0, stream>>>(stats, num_groups, batch);
  }
  group_members_kernel<T><<<static_cast<unsigned>(num_groups), member_block, 0, stream>>>(
      rewards, group_offsets, stats, batch, options, out);
  cuda_check(cudaGetLastError(), "backend::cuda::group_advantages (kernel launch)");
}

template <class T>
void rloo_advantages_into(const T* rewards, const index_t* group_offsets, index_t num_groups,
                          index_t num_rewards, T* out, const advantage::rloo_options& options,
                          cudaStream_t stream, workspace& ws) {
  const masked_stats* stats =
      checked_group_moments(rewards, group_offsets, num_groups, num_rewards, options.nan,
                            options.singleton, "advantage::rloo_advantages", stream, ws);
  const bool normalize = options.normalize && num_rewards > 0;
  double* a = nullptr;
  if (normalize)
    a = ws.take<double>(static_cast<std::size_t>(num_rewards), "advantage::rloo_advantages").data();
  rloo_members_kernel<T><<<static_cast<unsigned>(num_groups), member_block, 0, stream>>>(
      rewards, group_offsets, stats, options.singleton, a, out);
  cuda_check(cudaGetLastError(), "backend::cuda::rloo_advantages (kernel launch)");
  if (!normalize) return;
  index_t* whole = ws.take<index_t>(2, "advantage::rloo_advantages").data();
  whole_offsets_into(whole, num_rewards, stream);
  masked_stats* all = ws.take<masked_stats>(1, "advantage::rloo_advantages").data();
  segment_moments_weighted(static_cast<const double*>(a), reduce_detail::finite_weight{}, whole, 1,
                           num_rewards, all, stream, ws);
  rloo_normalize_kernel<T><<<blocks_for(num_rewards, 256), 256, 0, stream>>>(
      a, num_rewards, all, options.normalize_epsilon, out);
  cuda_check(cudaGetLastError(), "backend::cuda::rloo_advantages (normalise launch)");
}

}  // namespace group_detail

// Scratch of group_advantages for G groups over B rewards (0 bytes when G <= 0).
inline workspace_size group_advantages_scratch(index_t num_groups, index_t num_rewards,
                                               const advantage::group_options& options) {
  workspace_size size;
  if (num_groups <= 0) return size;
  group_detail::add_checked_moments_scratch(size, num_groups, num_rewards, options.singleton);
  if (options.scale == advantage::group_scale::batch) size.add<masked_stats>(1);
  return size;
}

// Scratch of rloo_advantages for G groups over B rewards: the group moments', and with normalize
// A[B] in double, the whole-batch offsets, its moments and their partials.
inline workspace_size rloo_advantages_scratch(index_t num_groups, index_t num_rewards,
                                              const advantage::rloo_options& options) {
  workspace_size size;
  if (num_groups <= 0) return size;
  group_detail::add_checked_moments_scratch(size, num_groups, num_rewards, options.singleton);
  if (options.normalize && num_rewards > 0) {
    size.add<double>(static_cast<std::size_t>(num_rewards));
    size.add<index_t>(2);
    size.add<masked_stats>(1);
    const index_t splits = split_count(num_rewards, 1);
    if (splits > 1) size.add<masked_stats>(static_cast<std::size_t>(splits));
  }
  return size;
}

namespace group_detail {

// The outcome estimator over ws for its options type (group_options: GRPO family; rloo_options:
// RLOO) and the scratch it needs.
template <class T>
void outcome_advantages_into(const T* rewards, const index_t* group_offsets, index_t num_groups,
                             index_t num_rewards, T* out, const advantage::group_options& options,
                             cudaStream_t stream, workspace& ws) {
  group_advantages_into(rewards, group_offsets, num_groups, num_rewards, out, options, stream, ws);
}

template <class T>
void outcome_advantages_into(const T* rewards, const index_t* group_offsets, index_t num_groups,
                             index_t num_rewards, T* out, const advantage::rloo_options& options,
                             cudaStream_t stream, workspace& ws) {
  rloo_advantages_into(rewards, group_offsets, num_groups, num_rewards, out, options, stream, ws);
}

inline workspace_size outcome_advantages_scratch(index_t num_groups, index_t num_rewards,
                                                 const advantage::group_options& options) {
  return group_advantages_scratch(num_groups, num_rewards, options);
}

inline workspace_size outcome_advantages_scratch(index_t num_groups, index_t num_rewards,
                                                 const advantage::rloo_options& options) {
  return rloo_advantages_scratch(num_groups, num_rewards, options);
}

// The two-phase form of group_advantages / rloo_advantages (`where` names it).
template <class T, class Options>
void outcome_advantages(void* d_temp, std::size_t& temp_bytes, const char* where, const T* rewards,
                        const index_t* group_offsets, index_t num_groups, index_t num_rewards,
                        T* out, const Options& options, cudaStream_t stream) {
  two_phase(d_temp, temp_bytes, outcome_advantages_scratch(num_groups, num_rewards, options), where,
            [&](workspace& ws) {
              if (num_groups > 0)
                outcome_advantages_into(rewards, group_offsets, num_groups, num_rewards, out,
                                        options, stream, ws);
            });
}

// Its form with the scratch allocated stream-ordered for the call.
template <class T, class Options>
void outcome_advantages(const T* rewards, const index_t* group_offsets, index_t num_groups,
                        index_t num_rewards, T* out, const Options& options, cudaStream_t stream) {
  if (num_groups <= 0) return;
  with_stream_scratch(outcome_advantages_scratch(num_groups, num_rewards, options), stream,
                      [&](workspace& ws) {
                        outcome_advantages_into(rewards, group_offsets, num_groups, num_rewards,
                                                out, options, stream, ws);
                      });
}

}  // namespace group_detail

// GRPO-family advantages; see advantage/group.hpp for the formulas and presets. Two-phase:
// d_temp == nullptr sets temp_bytes (group_advantages_scratch, at least 1) and returns.
template <class T>
void group_advantages(void* d_temp, std::size_t& temp_bytes, const T* rewards,
                      const index_t* group_offsets, index_t num_groups, index_t num_rewards, T* out,
                      const advantage::group_options& options, cudaStream_t stream) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "backend::cuda::group_advantages: rewards must be float or double");
  group_detail::outcome_advantages(d_temp, temp_bytes, "group_advantages", rewards, group_offsets,
                                   num_groups, num_rewards, out, options, stream);
}

// The same with its scratch allocated stream-ordered for the call.
template <class T>
void group_advantages(const T* rewards, const index_t* group_offsets, index_t num_groups,
                      index_t num_rewards, T* out, const advantage::group_options& options,
                      cudaStream_t stream) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "backend::cuda::group_advantages: rewards must be float or double");
  group_detail::outcome_advantages(rewards, group_offsets, num_groups, num_rewards, out, options,
                                   stream);
}

// RLOO advantages; see advantage/rloo.hpp. Two-phase: d_temp == nullptr sets temp_bytes
// (rloo_advantages_scratch, at least 1) and returns.
template <class T>
void rloo_advantages(void* d_temp, std::size_t& temp_bytes, const T* rewards,
                     const index_t* group_offsets, index_t num_groups, index_t num_rewards, T* out,
                     const advantage::rloo_options& options, cudaStream_t stream) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "backend::cuda::rloo_advantages: rewards must be float or double");
  group_detail::outcome_advantages(d_temp, temp_bytes, "rloo_advantages", rewards, group_offsets,
                                   num_groups, num_rewards, out, options, stream);
}

// The same with its scratch allocated stream-ordered for the call.
template <class T>
void rloo_advantages(const T* rewards, const index_t* group_offsets, index_t num_groups,
                     index_t num_rewards, T* out, const advantage::rloo_options& options,
                     cudaStream_t stream) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "backend::cuda::rloo_advantages: rewards must be float or double");
  group_detail::outcome_advantages(rewards, group_offsets, num_groups, num_rewards, out, options,
                                   stream);
}

// Scratch of sequence_rewards for B sequences over N tokens: the B moments and their partials.
inline workspace_size sequence_rewards_scratch(index_t num_sequences, index_t num_tokens) {
  workspace_size size;
  if (num_sequences <= 0) return size;
  size.add<masked_stats>(static_cast<std::size_t>(num_sequences));
  const index_t splits = split_count(num_tokens, num_sequences);
  if (splits > 1) size.add<masked_stats>(static_cast<std::size_t>(num_sequences * splits));
  return size;
}

// Its bound over every N (advantage::sequence_rewards_workspace_bytes(exec::cuda, B)).
inline workspace_size sequence_rewards_scratch_bound(index_t num_sequences) {
  workspace_size size;
  if (num_sequences <= 0) return size;
  size.add<masked_stats>(static_cast<std::size_t>(num_sequences));
  size.add<masked_stats>(static_cast<std::size_t>(num_sequences) + 1023);
  return size;
}

namespace group_detail {

template <class T>
void sequence_rewards_into(const T* rewards, const float* mask, const index_t* seq_offsets,
                           index_t num_sequences, index_t num_tokens, T* out, cudaStream_t stream,
                           workspace& ws) {
  masked_stats* stats =
      ws.take<masked_stats>(static_cast<std::size_t>(num_sequences), "advantage::sequence_rewards")
          .data();
  reduce_detail::moments_dispatch(rewards, mask, seq_offsets, num_sequences, num_tokens, stats,
                                  stream, ws);
  sums_kernel<T><<<blocks_for(num_sequences, 256), 256, 0, stream>>>(stats, num_sequences, out);
  cuda_check(cudaGetLastError(), "advantage::sequence_rewards (kernel launch)");
}

}  // namespace group_detail

// R_b = Σ_t m_t·r_t into out[B] (the moments' sums, cast to T; mask may be nullptr). Two-phase:
// d_temp == nullptr sets temp_bytes (sequence_rewards_scratch, at least 1) and returns.
template <class T>
void sequence_rewards(void* d_temp, std::size_t& temp_bytes, const T* rewards, const float* mask,
                      const index_t* seq_offsets, index_t num_sequences, index_t num_tokens, T* out,
                      cudaStream_t stream) {
  two_phase(d_temp, temp_bytes, sequence_rewards_scratch(num_sequences, num_tokens),
            "sequence_rewards", [&](workspace& ws) {
              if (num_sequences > 0)
                group_detail::sequence_rewards_into(rewards, mask, seq_offsets, num_sequences,
                                                    num_tokens, out, stream, ws);
            });
}

// The same with its scratch allocated stream-ordered for the call.
template <class T>
void sequence_rewards(const T* rewards, const float* mask, const index_t* seq_offsets,
                      index_t num_sequences, index_t num_tokens, T* out, cudaStream_t stream) {
  if (num_sequences <= 0) return;
  with_stream_scratch(sequence_rewards_scratch(num_sequences, num_tokens), stream,
                      [&](workspace& ws) {
                        group_detail::sequence_rewards_into(
                            rewards, mask, seq_offsets, num_sequences, num_tokens, out, stream, ws);
                      });
}

// out_t = A_b·m_t (A_b without a mask, 0 where m_t = 0).
template <class T>
void broadcast_to_tokens(const T* advantages, const index_t* seq_offsets, index_t num_sequences,
                         index_t num_tokens, const float* mask, T* out, cudaStream_t stream) {
  if (num_sequences <= 0) return;
  const index_t splits = split_count(num_tokens, num_sequences);
  const dim3 grid(static_cast<unsigned>(num_sequences), static_cast<unsigned>(splits));
  if (mask != nullptr)
    group_detail::broadcast_kernel<T, true>
        <<<grid, reduction_block, 0, stream>>>(advantages, seq_offsets, splits, mask, out);
  else
    group_detail::broadcast_kernel<T, false>
        <<<grid, reduction_block, 0, stream>>>(advantages, seq_offsets, splits, mask, out);
  cuda_check(cudaGetLastError(), "backend::cuda::broadcast_to_tokens (kernel launch)");
}

}  // namespace backend::cuda

namespace advantage::detail {

template <>
struct advantage_backend<exec::cuda> {
  template <class T>
  static void gae(exec::cuda e, std::span<const T> rewards, std::span<const T> values,
                  std::span<const float> mask, std::span<const index_t> seq_offsets,
                  std::span<T> advantages, std::span<T> returns, gae_options options) {
    options.whiten = false;  // the front end whitens afterwards through ops/whiten.hpp
    backend::cuda::gae(rewards.data(), values.data(), mask.empty() ? nullptr : mask.data(),
                       seq_offsets.data(), ssize(seq_offsets) - 1, advantages.data(),
                       returns.empty() ? nullptr : returns.data(), options,
                       backend::cuda::stream_of(e));
  }
  template <class T>
  static void returns(exec::cuda e, std::span<const T> rewards, std::span<const float> mask,
                      std::span<const index_t> seq_offsets, std::span<T> out,
                      const discounted_return_options& options) {
    backend::cuda::discounted_returns(rewards.data(), mask.empty() ? nullptr : mask.data(),
                                      seq_offsets.data(), ssize(seq_offsets) - 1, out.data(),
                                      options, backend::cuda::stream_of(e));
  }
  template <class T>
  static void group_advantages(exec::cuda e, std::span<const T> rewards,
                               std::span<const index_t> group_offsets, std::span<T> out,
                               const group_options& options) {
    backend::cuda::group_advantages(rewards.data(), group_offsets.data(), ssize(group_offsets) - 1,
                                    ssize(rewards), out.data(), options,
                                    backend::cuda::stream_of(e));
  }
  template <class T>
  static void rloo_advantages(exec::cuda e, std::span<const T> rewards,
                              std::span<const index_t> group_offsets, std::span<T> out,
                              const rloo_options& options) {
    backend::cuda::rloo_advantages(rewards.data(), group_offsets.data(), ssize(group_offsets) - 1,
                                   ssize(rewards), out.data(), options,
                                   backend::cuda::stream_of(e));
  }
  template <class T>
  static void broadcast(exec::cuda e, std::span<const T> advantages,
                        std::span<const index_t> seq_offsets, std::span<const float> mask,
                        std::span<T> out) {
    backend::cuda::broadcast_to_tokens(
        advantages.data(), seq_offsets.data(), ssize(seq_offsets) - 1, ssize(out),
        mask.empty() ? nullptr : mask.data(), out.data(), backend::cuda::stream_of(e));
  }
  // R_b = Σ_t m_t·r_t into out[B] (the moments' sums, cast to T).
  template <class T>
  static void sequence_rewards(exec::cuda e, std::span<const T> rewards,
                               std::span<const float> mask, std::span<const index_t> seq_offsets,
                               std::span<T> out) {
    backend::cuda::sequence_rewards(rewards.data(), mask.empty() ? nullptr : mask.data(),
                                    seq_offsets.data(), ssize(seq_offsets) - 1, ssize(rewards),
                                    out.data(), backend::cuda::stream_of(e));
  }
  static void sequence_lengths(exec::cuda e, std::span<const float> mask,
                               std::span<const index_t> seq_offsets, std::span<double> out) {
    const cudaStream_t stream = backend::cuda::stream_of(e);
    const index_t b = ssize(seq_offsets) - 1;
    if (b <= 0) return;
    if (mask.empty()) {
      backend::cuda::group_detail::lengths_kernel<>
          <<<backend::cuda::group_detail::blocks_for(b, 256), 256, 0, stream>>>(seq_offsets.data(),
                                                                                b, out.data());
      backend::cuda::cuda_check(cudaGetLastError(), "advantage::sequence_lengths (launch)");
    } else {
      // Σ m over each sequence: the count of the moments of the mask weighted by itself.
      backend::cuda::segment_stats(mask.data(), mask.data(), seq_offsets.data(), b, ssize(mask),
                                   segment_stats_out{.count = out}, stream);
    }
  }
};

}  // namespace advantage::detail

// The caller-workspace forms of the advantage front ends on exec::cuda (the exec::host ones are
// in advantage/group.hpp, rloo.hpp, common.hpp): the same validation as the allocating forms,
// then the two-phase backend call over ws (device memory, *_workspace_bytes(exec::cuda, ...)
// bytes). No allocation; a too-small or empty ws throws posttrain::error before any launch.
namespace advantage {

namespace detail {

// The exec::cuda workspace forms of group_advantages (group_options) and rloo_advantages
// (rloo_options), `where` naming the call: the options' and outcome sizes' checks, then the
// two-phase backend call over the rest of ws.
template <class T, class Options>
void outcome_advantages_on_device(exec::cuda exec, std::span<const T> rewards,
                                  std::span<const index_t> group_offsets, std::span<T> out,
                                  const Options& options, workspace ws, const char* where) {
  constexpr bool grpo = std::is_same_v<Options, group_options>;
  static_assert(grpo || std::is_same_v<Options, rloo_options>);
  if constexpr (grpo)
    validate_group_options(options, where);
  else
    validate_rloo_options(options, where);
  validate_outcome_sizes(rewards, group_offsets, out, where);
  std::size_t bytes = 0;
  void* temp = backend::cuda::workspace_rest(ws, bytes, where);
  backend::cuda::group_detail::outcome_advantages(
      temp, bytes, grpo ? "group_advantages" : "rloo_advantages", rewards.data(),
      group_offsets.data(), ssize(group_offsets) - 1, ssize(rewards), out.data(), options,
      backend::cuda::stream_of(exec));
}

}  // namespace detail

// Bytes of the workspace group_advantages(exec::cuda, ..., ws) needs for B = `members` rewards in
// G = `groups` groups (the group moments, their partials, the singleton check's and the batch
// scale's pieces).
inline std::size_t group_advantages_workspace_bytes(exec::cuda, index_t members, index_t groups,
                                                    const group_options& options = {}) {
  detail::checked_outcome_counts(members, groups, "advantage::group_advantages_workspace_bytes");
  return backend::cuda::group_advantages_scratch(groups, members, options);
}

template <detail::values V>
void group_advantages(exec::cuda exec, const V& rewards, std::span<const index_t> group_offsets,
                      std::span<detail::value_t<V>> out, const group_options& options,
                      workspace ws) {
  detail::outcome_advantages_on_device(exec, std::span<const detail::value_t<V>>(rewards),
                                       group_offsets, out, options, ws,
                                       "advantage::group_advantages");
}

// Bytes of the workspace rloo_advantages(exec::cuda, ..., ws) needs (B = `members`, G = `groups`).
inline std::size_t rloo_advantages_workspace_bytes(exec::cuda, index_t members, index_t groups,
                                                   const rloo_options& options = {}) {
  detail::checked_outcome_counts(members, groups, "advantage::rloo_advantages_workspace_bytes");
  return backend::cuda::rloo_advantages_scratch(groups, members, options);
}

template <detail::values V>
void rloo_advantages(exec::cuda exec, const V& rewards, std::span<const index_t> group_offsets,
                     std::span<detail::value_t<V>> out, const rloo_options& options, workspace ws) {
  detail::outcome_advantages_on_device(exec, std::span<const detail::value_t<V>>(rewards),
                                       group_offsets, out, options, ws,
                                       "advantage::rloo_advantages");
}

// Bytes of the workspace sequence_rewards(exec::cuda, ..., ws) needs for B sequences: a bound
// over every token count (the moments and the partials of split sequences).
inline std::size_t sequence_rewards_workspace_bytes(exec::cuda, index_t sequences) {
  expect(sequences >= 0, "advantage::sequence_rewards_workspace_bytes", "sequences is ", sequences,
         ", expected >= 0");
  return backend::cuda::sequence_rewards_scratch_bound(sequences);
}

template <detail::values V>
void sequence_rewards(exec::cuda exec, const V& token_rewards_in, std::span<const float> mask,
                      std::span<const index_t> seq_offsets, std::span<detail::value_t<V>> out,
                      workspace ws) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::sequence_rewards";
  const std::span<const T> token_rewards(token_rewards_in);
  detail::validate_sequence_rewards(token_rewards, mask, seq_offsets, out, where,
                                    detail::offsets_in::device);
  std::size_t bytes = 0;
  void* temp = backend::cuda::workspace_rest(ws, bytes, "advantage::sequence_rewards");
  backend::cuda::sequence_rewards(
      temp, bytes, token_rewards.data(), mask.empty() ? nullptr : mask.data(), seq_offsets.data(),
      ssize(seq_offsets) - 1, ssize(token_rewards), out.data(), backend::cuda::stream_of(exec));
}

}  // namespace advantage

POSTTRAIN_NAMESPACE_END
