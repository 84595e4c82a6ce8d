#pragma once
// Per-token log-probabilities, log-sum-exp, entropy and Σ p² from materialised logits, and the
// gradient with respect to the logits.
//
//   z_i = logits[i, :] / τ                       (τ = options.temperature; logits never modified)
//   lse_i         = log Σ_v exp(z_iv)
//   logprob_i     = z_{i, y_i} − lse_i            (y = targets)
//   entropy_i     = −Σ_v p_iv log p_iv,  p_i = softmax(z_i)      (= lse − Σ p·z, verl/TRL)
//   sum_p_squared = Σ_v p_iv²                     (verl calculate_sum_pi_squared_from_logits)
//
// Inputs: logits [N, V] (row-major, leading dimension >= V; float, double or Eigen::bfloat16),
// targets [N] (int64). Outputs are per-token spans of accum_t<T> (float for float/bfloat16
// logits, double for double); lse, entropy and sum_p_squared may be empty (= not computed, and
// their work is skipped). Forward reads each row once (online log-sum-exp, math/logsumexp.hpp).
//
// Ignored rows (targets[i] == options.ignore_index, -100 like torch / HF labels): logprob, lse,
// entropy and sum_p_squared are all 0 and the row of logits is never read (it may hold NaN). A
// target outside [0, V) that is not ignore_index is an error.
//
// Backward: given dL/dlogprob [N] and optionally dL/dentropy [N] (empty = 0),
//   dL/dlogits_iv = (1/τ)·( g_lp,i·(1[v = y_i] − p_iv) − g_H,i·p_iv·(log p_iv + H_i) )
// using the lse (and, with dL/dentropy, the entropy) saved by the forward. Ignored rows get a zero
// gradient. d_logits may be the logits buffer itself (same pointer and leading dimension, same
// element type): the gradient then overwrites the logits in place, as Liger and flash-attention's
// inplace_backward do. Any other overlap is rejected. Σ p² has no backward.
//
// Temperature: the peers divide logits by the sampling temperature before the log-softmax (TRL
// GRPO/RLOO, verl, OpenRLHF, open-instruct); TRL PPO divides by temperature + 1e-7: pass that sum.
//
// Fused forward + backward (token_logprobs_fused): for a per-token gradient d_logprob known
// before the forward (SFT: −1/N per token; PPO/GRPO token losses), the forward outputs and
// dL/dlogits written over the logits in place: equivalent to token_logprobs followed by
// token_logprobs_backward(d_entropy empty, d_logits = logits). exec::host walks blocks of rows
// that fit in the cache (forward, then backward while the rows are hot); exec::cuda keeps each
// row on chip (1 read + 1 write of the logits, backend/cuda/token_logprobs.cuh).
//
// Element types: float, double, Eigen::bfloat16 on both tags; Eigen::half (bit-identical to
// __half) on exec::cuda only.
//
// Execution: exec::host runs backend/cpu/token_logprobs.hpp (options.num_threads std::threads
// over rows; results do not depend on the thread count). exec::cuda needs the CUDA backend
// (<posttrain/cuda.cuh>), which specialises backend::token_logprobs_backend (the contract is in
// ops/token_logprobs_types.hpp); without it the call fails to compile with a sentence saying so.
// Scratch: only token_logprobs_fused needs any (the host keeps a block's lse when the caller does
// not ask for it): pass a workspace sized by token_logprobs_fused_workspace_bytes, or let the
// convenience overload allocate.
#include <algorithm>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "posttrain/backend/cpu/token_logprobs.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/views.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/ops/token_logprobs_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace detail {

inline void validate_token_logprobs_common(const char* where, index_t rows, index_t cols,
                                           std::size_t targets, const token_logprobs_options& o) {
  expect(rows == 0 || cols >= 1, where, "logits is [", rows, ", 0], expected a vocabulary of at "
         "least one entry");
  expect(static_cast<index_t>(targets) == rows, where, "targets has ", targets,
         " elements, expected ", rows, " (one per row of logits)");
  expect_positive(o.temperature, where, "options.temperature");
  expect(o.num_threads >= 0, where, "options.num_threads is ", o.num_threads,
         ", expected >= 0 (0 = hardware concurrency)");
}

// The forward outputs: logprob [N], the others [N] or empty (not requested). The meanings name
// the input whose rows N counts (fused_linear_logprobs: hidden); two literals rather than one
// word, so that a passing check builds no string.
template <class A>
void validate_token_logprobs_outputs(
    const char* where, index_t rows, const token_logprobs_outputs<A>& out,
    std::string_view one_per_row = "one per row of logits",
    std::string_view one_per_row_or_empty = "one per row of logits, or empty") {
  expect_size(out.logprob, rows, where, "outputs.logprob", one_per_row);
  expect_size_or_empty(out.lse, rows, where, "outputs.lse", one_per_row_or_empty);
  expect_size_or_empty(out.entropy, rows, where, "outputs.entropy", one_per_row_or_empty);
  expect_size_or_empty(out.sum_p_squared, rows, where, "outputs.sum_p_squared",
                       one_per_row_or_empty);
}

// The backward inputs: lse and d_logprob [N], d_entropy [N] or empty, entropy [N] with d_entropy.
// one_per_row names the input whose rows N counts (fused_linear_logprobs: hidden).
template <class A>
void validate_token_logprobs_grads(const char* where, index_t rows,
                                   const token_logprobs_grads<A>& in,
                                   std::string_view one_per_row = "one per row of logits") {
  expect_size(in.lse, rows, where, "grads.lse", "the forward's lse, one per row");
  expect_size(in.d_logprob, rows, where, "grads.d_logprob", one_per_row);
  expect_size_or_empty(in.d_entropy, rows, where, "grads.d_entropy", "one per row, or empty = 0");
  if (!in.d_entropy.empty())
    expect_size(in.entropy, rows, where, "grads.entropy",
                "the forward's entropy, one per row, required with d_entropy");
}

// Host only: the targets are in host memory.
inline void validate_targets(const char* where, std::span<const index_t> targets, index_t cols,
                             index_t ignore_index) {
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const index_t y = targets[i];
    if (y != ignore_index && (y < 0 || y >= cols))
      detail::fail(where, "targets[", i, "] = ", y, " (row ", i, ") is outside [0, ", cols,
                   ") and is not ignore_index (", ignore_index, ")");
  }
}

template <class T, class G>
void validate_aliasing(const char* where, matrix_view<const T> logits, matrix_view<G> d_logits) {
  if (logits.empty() || d_logits.empty()) return;
  const auto lo = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p); };
  const auto span_end = [&](const auto& m) {
    return lo(m.data + ((m.rows - 1) * m.ld + m.cols));
  };
  const std::uintptr_t a0 = lo(logits.data), a1 = span_end(logits);
  const std::uintptr_t b0 = lo(d_logits.data), b1 = span_end(d_logits);
  if (a1 <= b0 || b1 <= a0) return;  // disjoint
  const bool in_place = std::is_same_v<std::remove_cv_t<G>, T> && a0 == b0 &&
                        logits.ld == d_logits.ld;
  expect(in_place, where, "d_logits overlaps logits without being the same buffer (in-place "
         "needs the same data pointer, leading dimension and element type)");
}

}  // namespace detail

// Forward. The outputs are accum_t<T>: float for float/bfloat16 logits, double for double.
template <class Exec, class TL>
  requires execution_tag<Exec>
void token_logprobs(Exec exec, matrix_view<TL> logits_in, std::span<const index_t> targets,
                    const token_logprobs_outputs<accum_t<TL>>& out,
                    const token_logprobs_options& options = {}) {
  using T = std::remove_cv_t<TL>;
  static_assert(is_logit_type_for_v<Exec, T>, "token_logprobs: logits must be float, double or "
                "Eigen::bfloat16 (or Eigen::half on exec::cuda)");
  const matrix_view<const T> logits = logits_in;
  constexpr const char* where = "token_logprobs";
  expect_matrix(logits, where, "logits");
  const index_t n = logits.rows;
  detail::validate_token_logprobs_common(where, n, logits.cols, targets.size(), options);
  detail::validate_token_logprobs_outputs(where, n, out);
  if constexpr (std::is_same_v<Exec, exec::host>)
    detail::validate_targets(where, targets, logits.cols, options.ignore_index);
  if (n == 0) return;
  backend::token_logprobs_backend<Exec>::forward(exec, logits, targets, out, options);
}

// Backward: writes dL/dlogits into d_logits (float, double or bfloat16; may be the logits buffer).
// The per-token inputs are accum_t<T>.
template <class Exec, class TL, class G>
  requires execution_tag<Exec>
void token_logprobs_backward(Exec exec, matrix_view<TL> logits_in,
                             std::span<const index_t> targets,
                             const token_logprobs_grads<accum_t<TL>>& in, matrix_view<G> d_logits,
                             const token_logprobs_options& options = {}) {
  using T = std::remove_cv_t<TL>;
  static_assert(is_logit_type_for_v<Exec, T>, "token_logprobs_backward: logits must be float, "
                "double or Eigen::bfloat16 (or Eigen::half on exec::cuda)");
  static_assert(is_logit_type_for_v<Exec, G> && !std::is_const_v<G>, "token_logprobs_backward: "
                "d_logits must be a mutable view of float, double or Eigen::bfloat16 (or "
                "Eigen::half on exec::cuda)");
  const matrix_view<const T> logits = logits_in;
  constexpr const char* where = "token_logprobs_backward";
  expect_matrix(logits, where, "logits");
  expect_matrix(d_logits, where, "d_logits");
  expect_same_shape(logits, d_logits, where, "logits", "d_logits");
  const index_t n = logits.rows;
  detail::validate_token_logprobs_common(where, n, logits.cols, targets.size(), options);
  detail::validate_token_logprobs_grads(where, n, in);
  detail::validate_aliasing(where, logits, d_logits);
  if constexpr (std::is_same_v<Exec, exec::host>)
    detail::validate_targets(where, targets, logits.cols, options.ignore_index);
  if (d_logits.empty()) return;
  backend::token_logprobs_backend<Exec>::backward(exec, logits, targets, in, d_logits, options);
}

// Bytes of workspace token_logprobs_fused needs for logits [rows, cols] of T, with or without a
// caller lse output (without it, the host keeps one block's lse in the workspace).
template <class T, class Exec>
  requires execution_tag<Exec>
std::size_t token_logprobs_fused_workspace_bytes(Exec exec, index_t rows, index_t cols,
                                                 bool lse_given,
                                                 const token_logprobs_options& options = {}) {
  expect(rows >= 0 && cols >= 0, "token_logprobs_fused_workspace_bytes", "negative extents [",
         rows, ", ", cols, "]");
  using U = std::remove_cv_t<T>;
  return backend::token_logprobs_backend<Exec>::template fused_workspace_bytes<U, accum_t<U>>(
      exec, rows, cols, lse_given, options);
}

// Fused forward + backward: the forward outputs, and dL/dlogits for the per-token gradient
// d_logprob [N] written over the logits (in place). No entropy gradient. Scratch from ws
// (token_logprobs_fused_workspace_bytes): no allocation on the host.
template <class Exec, class T>
  requires execution_tag<Exec>
void token_logprobs_fused(Exec exec, matrix_view<T> logits, std::span<const index_t> targets,
                          std::span<const accum_t<T>> d_logprob,
                          const token_logprobs_outputs<accum_t<T>>& out,
                          const token_logprobs_options& options, workspace ws) {
  static_assert(is_logit_type_for_v<Exec, T> && !std::is_const_v<T>,
                "token_logprobs_fused: logits must be a mutable view of float, double or "
                "Eigen::bfloat16 (or Eigen::half on exec::cuda)");
  constexpr const char* where = "token_logprobs_fused";
  expect_matrix(logits, where, "logits");
  const index_t n = logits.rows;
  detail::validate_token_logprobs_common(where, n, logits.cols, targets.size(), options);
  expect_size(d_logprob, n, where, "d_logprob", "one per row of logits");
  detail::validate_token_logprobs_outputs(where, n, out);
  if constexpr (std::is_same_v<Exec, exec::host>)
    detail::validate_targets(where, targets, logits.cols, options.ignore_index);
  if (n == 0) return;
  backend::token_logprobs_backend<Exec>::fused(exec, logits, targets, d_logprob, out, options, ws);
}

// The same, with scratch allocated for this call (host memory: exec::cuda needs none).
template <class Exec, class T>
  requires execution_tag<Exec>
void token_logprobs_fused(Exec exec, matrix_view<T> logits, std::span<const index_t> targets,
                          std::span<const accum_t<T>> d_logprob,
                          const token_logprobs_outputs<accum_t<T>>& out,
                          const token_logprobs_options& options = {}) {
  workspace_buffer buffer;
  const std::size_t bytes =
      logits.rows > 0 && logits.cols >= 0 && options.num_threads >= 0
          ? token_logprobs_fused_workspace_bytes<T>(exec, logits.rows, logits.cols,
                                                    !out.lse.empty(), options)
          : 0;
  token_logprobs_fused(exec, logits, targets, d_logprob, out, options, buffer.view(bytes));
}

// Conveniences: allocate and return the outputs.
template <class T>
struct token_logprobs_result {
  std::vector<accum_t<T>> logprob, lse, entropy, sum_p_squared;
};

// Host only. Computes logprob, lse and entropy, and sum_p_squared when with_sum_p_squared.
template <class TL, class T = std::remove_cv_t<TL>>
token_logprobs_result<T> token_logprobs(exec::host exec, matrix_view<TL> logits,
                                        std::span<const index_t> targets,
                                        const token_logprobs_options& options = {},
                                        bool with_sum_p_squared = false) {
  token_logprobs_result<T> r;
  const auto n = static_cast<std::size_t>(logits.rows < 0 ? 0 : logits.rows);
  r.logprob.resize(n);
  r.lse.resize(n);
  r.entropy.resize(n);
  if (with_sum_p_squared) r.sum_p_squared.resize(n);
  token_logprobs(exec, logits, targets,
                 token_logprobs_outputs<accum_t<T>>{r.logprob, r.lse, r.entropy, r.sum_p_squared},
                 options);
  return r;
}

POSTTRAIN_NAMESPACE_END
