#pragma once
// CUDA discounted returns and reverse cumulative sums (advantage/reinforce.hpp on the device).
//
//   backend::cuda::discounted_returns(rewards, mask, seq_offsets, num_sequences, out, options,
//                                     stream)
//   backend::cuda::reverse_cumsum(values, mask, seq_offsets, num_sequences, out, stream)
//
// All pointers are DEVICE memory: rewards/values and out [seq_offsets[B]] of T (float or double;
// out may be the input, in place: each token is read before it is written, by the same thread),
// mask [same] float weights or nullptr (= all ones), seq_offsets [B + 1]. The carry maps are
// advantage/reinforce.hpp's returns_reset_at_masked (verl) and returns_mask_rewards (OpenRLHF;
// reverse_cumsum is it with γ = 1), run by the affine-map scan of backend/cuda/scan.cuh (one CTA
// per sequence, deterministic). Outputs are 0 where the mask is 0; masked tokens are never read.
// γ is checked on the host (finite, in [0, 1]); offsets and mask weights are not checked.
#if !defined(__CUDACC__)
#error "<posttrain/backend/cuda/reinforce.cuh> is compiled by nvcc only"
#endif

#include <cmath>
#include <type_traits>

#include "posttrain/advantage/reinforce.hpp"
#include "posttrain/backend/cuda/error.cuh"
#include "posttrain/backend/cuda/scan.cuh"
#include "posttrain/config.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/core/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cuda {

namespace reinforce_detail {

template <class T, class Convention, bool HasMask>
struct returns_op {
  struct item {
    double r = 0.0;
    double w = 0.0;
  };
  Convention conv;
  const T* r;
  const float* m;
  T* out;
  __device__ __forceinline__ item load(index_t t) const {
    const double w = HasMask ? static_cast<double>(m[t]) : 1.0;
    return {w != 0.0 ? static_cast<double>(r[t]) : 0.0, w};  // masked tokens are never read
  }
  __device__ __forceinline__ advantage::affine_map<double> map(const item& it) const {
    return conv.map(it.r, it.w);
  }
  __device__ __forceinline__ void emit(index_t t, const item& it, double next,
                                       double current) const {
    out[t] = it.w != 0.0 ? static_cast<T>(conv.output(it.r, next, current)) : T(0);
  }
};

template <class T, class Convention>
void launch(const Convention& conv, const T* r, const float* m, const index_t* offsets,
            index_t sequences, T* out, cudaStream_t stream) {
  if (m != nullptr)
    reverse_affine_scan(returns_op<T, Convention, true>{conv, r, m, out}, offsets, sequences,
                        stream);
  else
    reverse_affine_scan(returns_op<T, Convention, false>{conv, r, m, out}, offsets, sequences,
                        stream);
}

}  // namespace reinforce_detail

template <class T>
void discounted_returns(const T* rewards, const float* mask, const index_t* seq_offsets,
                        index_t num_sequences, T* out,
                        const advantage::discounted_return_options& options, cudaStream_t stream) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "backend::cuda::discounted_returns: rewards must be float or double");
  if (!(std::isfinite(options.gamma) && options.gamma >= 0.0 && options.gamma <= 1.0))
    throw error("posttrain::backend::cuda::discounted_returns: options.gamma must be in [0, 1]");
  if (options.convention == advantage::return_convention::reset_at_masked)
    reinforce_detail::launch(advantage::returns_reset_at_masked{options.gamma}, rewards, mask,
                             seq_offsets, num_sequences, out, stream);
  else if (options.convention == advantage::return_convention::carry_through_masked)
    reinforce_detail::launch(advantage::returns_carry_through_masked{options.gamma}, rewards,
                             mask, seq_offsets, num_sequences, out, stream);
  else
    reinforce_detail::launch(advantage::returns_mask_rewards{options.gamma}, rewards, mask,
                             seq_offsets, num_sequences, out, stream);
}

template <class T>
void reverse_cumsum(const T* values, const float* mask, const index_t* seq_offsets,
                    index_t num_sequences, T* out, cudaStream_t stream) {
  discounted_returns(values, mask, seq_offsets, num_sequences, out,
                     {.gamma = 1.0, .convention = advantage::return_convention::mask_rewards},
                     stream);
}

}  // namespace backend::cuda

POSTTRAIN_NAMESPACE_END
