#pragma once
// The contract of the token log-prob family (ops/token_logprobs.hpp): options, per-token outputs
// and backward inputs, the logit element types per execution tag, and the backend template both
// backends implement. Included by the front ends (token_logprobs, fused_linear_logprobs) and the
// backends; includes neither.
//
// backend::token_logprobs_backend<Exec> members (exec::host in backend/cpu/token_logprobs.hpp,
// exec::cuda in backend/cuda/token_logprobs.cuh; views in Exec's memory, validated by the front
// end; A = accum_t<T>):
//   void forward<T, A>(Exec, matrix_view<const T> logits, span<const index_t> targets,
//                      const token_logprobs_outputs<A>&, const token_logprobs_options&)
//   void backward<T, G, A>(Exec, matrix_view<const T> logits, span<const index_t> targets,
//                          const token_logprobs_grads<A>&, matrix_view<G> d_logits,
//                          const token_logprobs_options&)
//   std::size_t fused_workspace_bytes<T, A>(Exec, index_t rows, index_t cols, bool lse_given,
//                                          const token_logprobs_options&)
//   void fused<T, A>(Exec, matrix_view<T> logits, span<const index_t> targets,
//                    span<const A> d_logprob, const token_logprobs_outputs<A>&,
//                    const token_logprobs_options&, workspace ws)
#include <span>
#include <type_traits>

#include <Eigen/Core>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

struct token_logprobs_options {
  double temperature = 1.0;   // logits are divided by this; finite and > 0
  index_t ignore_index = -100;  // rows with this target are skipped (outputs 0, gradient 0)
  int num_threads = 1;          // host only: threads over rows; 0 = hardware concurrency
};

// Per-token outputs of the forward. logprob is required; the others may be empty (= skipped).
template <class A>
struct token_logprobs_outputs {
  std::span<A> logprob = {};
  std::span<A> lse = {};
  std::span<A> entropy = {};
  std::span<A> sum_p_squared = {};
};

// Per-token inputs of the backward: what the forward saved and the upstream gradients.
// lse and d_logprob are required; d_entropy may be empty (= 0); entropy is required only when
// d_entropy is given.
template <class A>
struct token_logprobs_grads {
  std::span<const A> lse = {};
  std::span<const A> entropy = {};
  std::span<const A> d_logprob = {};
  std::span<const A> d_entropy = {};
};

template <class T>
inline constexpr bool is_logit_type_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, Eigen::bfloat16>;

// Logit types per execution tag: Eigen::half only where the device backend handles it.
template <class Exec, class T>
inline constexpr bool is_logit_type_for_v =
    is_logit_type_v<T> || (std::is_same_v<Exec, exec::cuda> && std::is_same_v<T, Eigen::half>);

namespace backend {

// The primary template: a tag without a specialisation stops compilation with this sentence.
template <class Exec>
struct token_logprobs_backend {
  static_assert(sizeof(Exec) == 0,
                "posttrain::token_logprobs on this execution tag needs its backend: for "
                "exec::cuda include <posttrain/cuda.cuh> and link posttrain::cuda");
};

}  // namespace backend

// The name before the family contract (kept for one release; member access only: specialise
// backend::token_logprobs_backend).
template <class Exec>
using token_logprobs_dispatch [[deprecated("use posttrain::backend::token_logprobs_backend")]] =
    backend::token_logprobs_backend<Exec>;

POSTTRAIN_NAMESPACE_END
