#pragma once
// Fused linear + token log-probs: per-token log-probability, log-sum-exp and entropy of the
// lm_head logits, and their gradient back to the hidden states and the lm_head weight, without
// ever holding the [N, V] logits.
//
//   Z = X · Wᵀ / τ          X = hidden [N, H], W = weight (lm_head) [V, H], τ = options.temperature
//   lse_i, logprob_i = Z_{i, y_i} − lse_i, entropy_i, sum_p_squared_i   as in ops/token_logprobs.hpp
//
// Backward, given dL/dlogprob [N] and optionally dL/dentropy [N]:
//   dZ = token_logprobs_backward(Z, ...)   (per row, ops/token_logprobs.hpp; includes the 1/τ)
//   d_hidden = dZ · W   [N, H]             d_weight = dZᵀ · X   [V, H], accumulated in accum_t<T>
//
// Memory: the tokens are processed in chunks of c = options.chunk_size rows; each chunk's logits
// (c × V, in the accumulation type on the host, in T on the device) live in a caller-provided
// workspace, so the memory is O(c·V + c·H), never O(N·V). The workspace follows CUB's two-phase
// contract: call with workspace == nullptr and the required size is written to workspace_bytes
// (after the arguments are validated) and nothing else happens; call again with at least that many
// bytes. fused_linear_logprobs_workspace_bytes<T>(exec, N, H, V, pass, options) answers the same
// question without the views. chunk_size 0 (default) picks Liger-Kernel's rule,
// c = next_pow2(ceil(N / ceil(V / H))) (the chunk's logits about the size of the hidden states),
// raised to at least 256 rows: smaller chunks starve the GEMMs (host, N = H = 1024, V = 32000:
// c = 32 is ~1.4x slower forward and ~1.6x slower forward + backward than c = 256; on the device
// c >= 256 keeps the GEMMs at full tiles and the token kernels on one CTA per row), then clamped
// to N.
//
// Passes:
//   fused_linear_logprobs                    forward (2·N·H·V FLOP)
//   fused_linear_logprobs_backward           recomputes each chunk's logits from the forward's
//                                            lse (and entropy): 6·N·H·V FLOP
//   fused_linear_logprobs_forward_backward   forward outputs and gradients in one sweep, for
//                                            per-token gradients known before the forward (SFT,
//                                            PPO/GRPO token losses): 6·N·H·V FLOP in all
//
// Types: hidden and weight share T (float, double, Eigen::bfloat16; Eigen::half on exec::cuda
// only); per-token spans and d_weight are accum_t<T> (float, or double for double); d_hidden is T
// or accum_t<T>. d_hidden and d_weight may be empty views (= not computed: a frozen lm_head, or no
// gradient to the trunk). d_weight is overwritten unless options.accumulate_d_weight (then the
// gradient is added to it: accumulation over micro-batches). Ignored rows (target ==
// ignore_index) get zero outputs and contribute nothing to either gradient.
//
// Execution: exec::host runs backend/cpu/fused_linear_logprobs.hpp (Eigen GEMM per chunk + the
// CPU token log-prob kernels; bfloat16 is widened to float per chunk and per weight tile).
// exec::cuda needs the CUDA backend, <posttrain/cuda.cuh> (backend/cuda/fused_linear_logprobs.cuh:
// cuBLAS GEMMs with fp32 accumulation + the CUDA token log-prob kernels, enqueued on exec.stream;
// every view and span is device memory; options.blas_handle is the caller's cublasHandle_t).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "posttrain/backend/cpu/fused_linear_logprobs.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/views.hpp"
#include "posttrain/ops/fused_linear_logprobs_types.hpp"
#include "posttrain/ops/token_logprobs.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace detail {

inline constexpr index_t fused_linear_min_auto_chunk = 256;

// Tokens per chunk: options.chunk_size clamped to [1, N], or for 0 Liger's rule with a floor of
// fused_linear_min_auto_chunk rows; 0 when N = 0.
inline index_t fused_linear_chunk(index_t n, index_t h, index_t v, index_t chunk_size) {
  if (n <= 0) return 0;
  index_t c = chunk_size;
  if (c <= 0) {
    const index_t inc = h > 0 ? (v + h - 1) / h : v;  // ceil(V / H)
    const index_t want = (n + std::max<index_t>(inc, 1) - 1) / std::max<index_t>(inc, 1);
    c = 1;
    while (c < want) c *= 2;
    c = std::max(c, fused_linear_min_auto_chunk);
  }
  return c < n ? c : n;
}

template <class Exec, class T>
void validate_fused_linear(const char* where, matrix_view<const T> hidden,
                           matrix_view<const T> weight, std::span<const index_t> targets,
                           const fused_linear_logprobs_options& o) {
  static_assert(is_fused_linear_type_v<T>, "fused_linear_logprobs: hidden and weight must be "
                "float, double, Eigen::bfloat16 (or Eigen::half on exec::cuda)");
  static_assert(std::is_same_v<Exec, exec::cuda> || !std::is_same_v<T, Eigen::half>,
                "fused_linear_logprobs: Eigen::half operands run on exec::cuda only (the host "
                "backend takes float, double and Eigen::bfloat16)");
  expect_matrix(hidden, where, "hidden");
  expect_matrix(weight, where, "weight");
  expect(hidden.rows == 0 || weight.rows >= 1, where, "weight is [0, ", weight.cols,
         "], expected a vocabulary of at least one entry");
  expect(weight.cols == hidden.cols, where, "weight is [", weight.rows, ", ", weight.cols,
         "], expected [V, ", hidden.cols, "] (its columns are the hidden size of hidden [",
         hidden.rows, ", ", hidden.cols, "])");
  expect(ssize(targets) == hidden.rows, where, "targets has ", targets.size(),
         " elements, expected ", hidden.rows, " (one per row of hidden)");
  expect_positive(o.temperature, where, "options.temperature");
  expect(o.chunk_size >= 0, where, "options.chunk_size is ", o.chunk_size,
         ", expected >= 0 (0 = automatic)");
  expect(o.num_threads >= 0, where, "options.num_threads is ", o.num_threads,
         ", expected >= 0 (0 = hardware concurrency)");
  if constexpr (std::is_same_v<Exec, exec::host>)
    validate_targets(where, targets, weight.rows, o.ignore_index);
  else
    expect(o.blas_handle != nullptr || hidden.rows == 0, where,
           "options.blas_handle is null, expected the caller's cublasHandle_t (exec::cuda)");
}

template <class A>
void validate_fused_linear_outputs(const char* where, index_t n,
                                   const token_logprobs_outputs<A>& out) {
  validate_token_logprobs_outputs(where, n, out, "one per row of hidden",
                                  "one per row of hidden, or empty");
}

inline bool ranges_overlap(const void* a, std::size_t a_bytes, const void* b, std::size_t b_bytes) {
  if (a_bytes == 0 || b_bytes == 0) return false;
  const auto a0 = reinterpret_cast<std::uintptr_t>(a), b0 = reinterpret_cast<std::uintptr_t>(b);
  return a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

template <class T>
std::size_t view_bytes(const matrix_view<T>& m) {
  if (m.empty()) return 0;
  return static_cast<std::size_t>((m.rows - 1) * m.ld + m.cols) * sizeof(T);
}

template <class T, class G, class A>
void validate_fused_linear_grads(const char* where, matrix_view<const T> hidden,
                                 matrix_view<const T> weight, matrix_view<G> d_hidden,
                                 matrix_view<A> d_weight) {
  static_assert(!std::is_const_v<G> && (std::is_same_v<G, T> || std::is_same_v<G, accum_t<T>>),
                "fused_linear_logprobs: d_hidden must be a mutable view of the operand type or "
                "of accum_t of it");
  expect_matrix(d_hidden, where, "d_hidden");
  expect_matrix(d_weight, where, "d_weight");
  if (!d_hidden.empty() || d_hidden.data != nullptr)
    expect_same_shape(hidden, d_hidden, where, "hidden", "d_hidden");
  if (!d_weight.empty() || d_weight.data != nullptr)
    expect_same_shape(weight, d_weight, where, "weight", "d_weight");
  const std::size_t bh = view_bytes(hidden), bw = view_bytes(weight);
  const std::size_t bdh = view_bytes(d_hidden), bdw = view_bytes(d_weight);
  expect(!ranges_overlap(d_hidden.data, bdh, hidden.data, bh) &&
             !ranges_overlap(d_hidden.data, bdh, weight.data, bw),
         where, "d_hidden overlaps hidden or weight");
  expect(!ranges_overlap(d_weight.data, bdw, hidden.data, bh) &&
             !ranges_overlap(d_weight.data, bdw, weight.data, bw),
         where, "d_weight overlaps hidden or weight");
  expect(!ranges_overlap(d_hidden.data, bdh, d_weight.data, bdw), where,
         "d_hidden overlaps d_weight");
}

// The CUB contract: a null workspace asks for the size; otherwise it must be large enough.
// Returns true when the call must stop here (size query).
inline bool workspace_query(const char* where, void* workspace, std::size_t& workspace_bytes,
                            std::size_t required) {
  if (workspace == nullptr) {
    workspace_bytes = required;
    return true;
  }
  expect(workspace_bytes >= required, where, "workspace_bytes is ", workspace_bytes,
         ", expected at least ", required, " (ask with workspace == nullptr)");
  return false;
}

// The chunk of this call and the CUB size query: true when the call must stop here (a size
// query, or nothing to do).
template <class Exec, class T>
bool fused_linear_plan(const char* where, void* workspace, std::size_t& workspace_bytes,
                       matrix_view<const T> hidden, matrix_view<const T> weight,
                       fused_linear_pass pass, const fused_linear_logprobs_options& o,
                       index_t& chunk) {
  chunk = fused_linear_chunk(hidden.rows, hidden.cols, weight.rows, o.chunk_size);
  const std::size_t need =
      backend::fused_linear_logprobs_backend<Exec>::template workspace_bytes<T>(
          chunk, hidden.cols, weight.rows, pass);
  return workspace_query(where, workspace, workspace_bytes, need);
}

}  // namespace detail

// Bytes of workspace a pass needs for N tokens, hidden size H and vocabulary V, T the operand type.
template <class T, class Exec>
  requires execution_tag<Exec>
std::size_t fused_linear_logprobs_workspace_bytes(Exec, index_t n, index_t h, index_t v,
                                                  fused_linear_pass pass,
                                                  const fused_linear_logprobs_options& o = {}) {
  constexpr const char* where = "fused_linear_logprobs_workspace_bytes";
  expect(n >= 0 && h >= 0 && v >= 0, where, "negative extents N = ", n, ", H = ", h, ", V = ", v);
  expect(o.chunk_size >= 0, where, "options.chunk_size is ", o.chunk_size, ", expected >= 0");
  const index_t c = detail::fused_linear_chunk(n, h, v, o.chunk_size);
  return backend::fused_linear_logprobs_backend<Exec>::template workspace_bytes<std::remove_cv_t<T>>(
      c, h, v, pass);
}

// Forward: logprob (required), lse / entropy / sum_p_squared (empty = skipped).
template <class Exec, class TH, class TW>
  requires execution_tag<Exec>
void fused_linear_logprobs(Exec exec, void* workspace, std::size_t& workspace_bytes,
                           matrix_view<TH> hidden_in, matrix_view<TW> weight_in,
                           std::span<const index_t> targets,
                           const token_logprobs_outputs<accum_t<TH>>& out,
                           const fused_linear_logprobs_options& options = {}) {
  using T = std::remove_cv_t<TH>;
  static_assert(std::is_same_v<T, std::remove_cv_t<TW>>,
                "fused_linear_logprobs: hidden and weight must have the same element type");
  constexpr const char* where = "fused_linear_logprobs";
  const matrix_view<const T> hidden = hidden_in, weight = weight_in;
  detail::validate_fused_linear<Exec>(where, hidden, weight, targets, options);
  const index_t n = hidden.rows;
  detail::validate_fused_linear_outputs(where, n, out);
  index_t c = 0;
  if (detail::fused_linear_plan<Exec, T>(where, workspace, workspace_bytes, hidden, weight,
                                        fused_linear_pass::forward, options, c) || n == 0)
    return;
  backend::fused_linear_logprobs_backend<Exec>::forward(
      exec, std::span<std::byte>(static_cast<std::byte*>(workspace), workspace_bytes), hidden,
      weight, targets, out, c, options);
}

// Backward from the forward's lse (and entropy, with d_entropy): d_hidden [N, H] and d_weight
// [V, H] (either may be empty = not computed).
template <class Exec, class TH, class TW, class G>
  requires execution_tag<Exec>
void fused_linear_logprobs_backward(Exec exec, void* workspace, std::size_t& workspace_bytes,
                                    matrix_view<TH> hidden_in, matrix_view<TW> weight_in,
                                    std::span<const index_t> targets,
                                    const token_logprobs_grads<accum_t<TH>>& in,
                                    matrix_view<G> d_hidden, matrix_view<accum_t<TH>> d_weight,
                                    const fused_linear_logprobs_options& options = {}) {
  using T = std::remove_cv_t<TH>;
  static_assert(std::is_same_v<T, std::remove_cv_t<TW>>,
                "fused_linear_logprobs_backward: hidden and weight must have the same element type");
  constexpr const char* where = "fused_linear_logprobs_backward";
  const matrix_view<const T> hidden = hidden_in, weight = weight_in;
  detail::validate_fused_linear<Exec>(where, hidden, weight, targets, options);
  const index_t n = hidden.rows;
  detail::validate_token_logprobs_grads(where, n, in, "one per row of hidden");
  detail::validate_fused_linear_grads(where, hidden, weight, d_hidden, d_weight);
  index_t c = 0;
  if (detail::fused_linear_plan<Exec, T>(where, workspace, workspace_bytes, hidden, weight,
                                        fused_linear_pass::backward, options, c))
    return;
  backend::fused_linear_logprobs_backend<Exec>::backward(
      exec, std::span<std::byte>(static_cast<std::byte*>(workspace), workspace_bytes), hidden,
      weight, targets, in, d_hidden, d_weight, c, options);
}

// Forward outputs and gradients in one sweep for per-token gradients known up front (d_entropy
// may be empty = 0). Equals fused_linear_logprobs followed by fused_linear_logprobs_backward.
template <class Exec, class TH, class TW, class G>
  requires execution_tag<Exec>
void fused_linear_logprobs_forward_backward(
    Exec exec, void* workspace, std::size_t& workspace_bytes, matrix_view<TH> hidden_in,
    matrix_view<TW> weight_in, std::span<const index_t> targets,
    std::span<const accum_t<TH>> d_logprob, std::span<const accum_t<TH>> d_entropy,
    const token_logprobs_outputs<accum_t<TH>>& out, matrix_view<G> d_hidden,
    matrix_view<accum_t<TH>> d_weight, const fused_linear_logprobs_options& options = {}) {
  using T = std::remove_cv_t<TH>;
  static_assert(std::is_same_v<T, std::remove_cv_t<TW>>, "fused_linear_logprobs_forward_backward: "
                "hidden and weight must have the same element type");
  constexpr const char* where = "fused_linear_logprobs_forward_backward";
  const matrix_view<const T> hidden = hidden_in, weight = weight_in;
  detail::validate_fused_linear<Exec>(where, hidden, weight, targets, options);
  const index_t n = hidden.rows;
  detail::validate_fused_linear_outputs(where, n, out);
  expect_size(d_logprob, n, where, "d_logprob", "one per row of hidden");
  expect_size_or_empty(d_entropy, n, where, "d_entropy", "one per row, or empty = 0");
  detail::validate_fused_linear_grads(where, hidden, weight, d_hidden, d_weight);
  index_t c = 0;
  if (detail::fused_linear_plan<Exec, T>(where, workspace, workspace_bytes, hidden, weight,
                                        fused_linear_pass::forward_backward, options, c))
    return;
  backend::fused_linear_logprobs_backend<Exec>::forward_backward(
      exec, std::span<std::byte>(static_cast<std::byte*>(workspace), workspace_bytes), hidden,
      weight, targets, d_logprob, d_entropy, out, d_hidden, d_weight, c, options);
}

// Host conveniences: the workspace is allocated (and freed) inside the call.
template <class TH, class TW>
void fused_linear_logprobs(exec::host exec, matrix_view<TH> hidden, matrix_view<TW> weight,
                           std::span<const index_t> targets,
                           const token_logprobs_outputs<accum_t<TH>>& out,
                           const fused_linear_logprobs_options& options = {}) {
  std::size_t bytes = 0;
  fused_linear_logprobs(exec, nullptr, bytes, hidden, weight, targets, out, options);
  std::vector<std::byte> ws(bytes);
  fused_linear_logprobs(exec, ws.data(), bytes, hidden, weight, targets, out, options);
}

template <class TH, class TW, class G>
void fused_linear_logprobs_backward(exec::host exec, matrix_view<TH> hidden,
                                    matrix_view<TW> weight, std::span<const index_t> targets,
                                    const token_logprobs_grads<accum_t<TH>>& in,
                                    matrix_view<G> d_hidden, matrix_view<accum_t<TH>> d_weight,
                                    const fused_linear_logprobs_options& options = {}) {
  std::size_t bytes = 0;
  fused_linear_logprobs_backward(exec, nullptr, bytes, hidden, weight, targets, in, d_hidden,
                                 d_weight, options);
  std::vector<std::byte> ws(bytes);
  fused_linear_logprobs_backward(exec, ws.data(), bytes, hidden, weight, targets, in, d_hidden,
                                 d_weight, options);
}

template <class TH, class TW, class G>
void fused_linear_logprobs_forward_backward(
    exec::host exec, matrix_view<TH> hidden, matrix_view<TW> weight,
    std::span<const index_t> targets, std::span<const accum_t<TH>> d_logprob,
    std::span<const accum_t<TH>> d_entropy, const token_logprobs_outputs<accum_t<TH>>& out,
    matrix_view<G> d_hidden, matrix_view<accum_t<TH>> d_weight,
    const fused_linear_logprobs_options& options = {}) {
  std::size_t bytes = 0;
  fused_linear_logprobs_forward_backward(exec, nullptr, bytes, hidden, weight, targets, d_logprob,
                                         d_entropy, out, d_hidden, d_weight, options);
  std::vector<std::byte> ws(bytes);
  fused_linear_logprobs_forward_backward(exec, ws.data(), bytes, hidden, weight, targets,
                                         d_logprob, d_entropy, out, d_hidden, d_weight, options);
}

POSTTRAIN_NAMESPACE_END
