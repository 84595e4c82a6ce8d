#pragma once
// The contract of the fused linear + log-prob family (ops/fused_linear_logprobs.hpp): options,
// the pass a workspace is sized for, the operand types, and the backend template both backends
// implement. The per-token outputs and backward inputs are the token log-prob family's
// (ops/token_logprobs_types.hpp). Included by the front end and the backends; includes neither.
//
// backend::fused_linear_logprobs_backend<Exec> members (exec::host in
// backend/cpu/fused_linear_logprobs.hpp, exec::cuda in backend/cuda/fused_linear_logprobs.cuh;
// views and the workspace in Exec's memory, validated by the front end; chunk in [1, N]):
//   std::size_t workspace_bytes<T>(index_t chunk, index_t h, index_t v, fused_linear_pass)
//   void forward<T, A>(Exec, span<std::byte> ws, hidden, weight, targets,
//                      const token_logprobs_outputs<A>&, index_t chunk, options)
//   void backward<T, G, A>(Exec, ws, hidden, weight, targets, const token_logprobs_grads<A>&,
//                          matrix_view<G> d_hidden, matrix_view<A> d_weight, chunk, options)
//   void forward_backward<T, G, A>(Exec, ws, hidden, weight, targets, d_logprob, d_entropy,
//                                  outputs, d_hidden, d_weight, chunk, options)
#include <type_traits>

#include <Eigen/Core>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/ops/token_logprobs_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

// Which pass a workspace is sized for.
enum class fused_linear_pass { forward, backward, forward_backward };

struct fused_linear_logprobs_options {
  double temperature = 1.0;     // logits are divided by this; finite and > 0
  index_t ignore_index = -100;  // rows with this target: outputs 0, no gradient
  index_t chunk_size = 0;       // tokens per chunk (>= 0); 0 = automatic (Liger's rule)
  bool accumulate_d_weight = false;  // add the weight gradient to d_weight instead of overwriting
  int num_threads = 1;          // host only: threads of the token log-prob kernels; 0 = all
  void* blas_handle = nullptr;  // exec::cuda only: the caller's cublasHandle_t (required there)
};

template <class T>
inline constexpr bool is_fused_linear_type_v =
    is_logit_type_v<T> || std::is_same_v<T, Eigen::half>;

namespace backend {

// The primary template: a tag without a specialisation stops compilation with this sentence.
template <class Exec>
struct fused_linear_logprobs_backend {
  static_assert(sizeof(Exec) == 0,
                "posttrain::fused_linear_logprobs on this execution tag needs its backend: for "
                "exec::cuda include <posttrain/cuda.cuh> and link posttrain::cuda");
};

}  // namespace backend

// The name before the family contract (kept for one release; member access only: specialise
// backend::fused_linear_logprobs_backend).
template <class Exec>
using fused_linear_logprobs_dispatch
    [[deprecated("use posttrain::backend::fused_linear_logprobs_backend")]] =
        backend::fused_linear_logprobs_backend<Exec>;

POSTTRAIN_NAMESPACE_END
