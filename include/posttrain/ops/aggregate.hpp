#pragma once
// Loss aggregation: from a per-token loss L[N] to the scalar that is minimised, and its gradient
// dLoss/dL[t], which turns any per-token loss gradient into the full gradient.
//
//   loss = Σ_i w_i · Σ_{t ∈ i} m_t·L_t / D          grad[t] = m_t · w_i / D
//
//   mode                          w_i (row i, |o_i| = Σ_t m_t)        D
//   agg::token_mean               1                                   tokens     (Σ m)
//   agg::token_sum                1                                   1
//   agg::constant_divisor         1                                   constant   (required)
//   agg::seq_mean_token_sum       1                                   sequences
//   agg::seq_mean_token_mean      1 / max(|o_i| + ε, floor)           sequences
//   agg::seq_mean_token_sum_norm  1                                   constant   (required)
//
// Inputs: loss[N] (float or double), mask[N] float weights (empty = all ones; tokens with m = 0
// are never read into the result, they may be NaN), seq_offsets[B + 1] (may be empty for the
// token-level modes), an agg_normalizer and agg_options; grad[N] is an optional output.
//
// Normalisers. Each field of agg_normalizer is the GLOBAL divisor for one divisor kind: the token
// count Σ m over every micro-batch and rank, the number of contributing sequences, or a constant.
// Unset = the local value of this call (Σ m of this call; its non-empty rows, or all B rows with
// include_empty_sequences). With the global value, the losses and gradients of micro-batches
// (split at sequence boundaries) add up to those of the full batch: micro-batch invariance.
// aggregation_counts() gives the local counts to all-reduce. The constant of constant_divisor and
// seq_mean_token_sum_norm has no local default (verl's default, the padded width T, is unknown to
// a packed layout) and must be set. Each mode reads only its own field. D = 0 (e.g. every token
// masked) gives loss 0 and zero gradients (open-instruct's convention; torch would give NaN).
//
// Rows with |o_i| = 0 contribute 0 and get zero gradients; include_empty_sequences says whether
// they count in the local sequence divisor: false = verl/OpenRLHF (excluded), true = TRL "grpo"
// (mean over all rows). The row divisor of seq_mean_token_mean is |o_i| + length_epsilon
// (verl/OpenRLHF 1e-8), floored at length_floor (TRL max(|o_i|, 1)).
//
// Over ranks: aggregate_loss<Mode>(comm, exec, ...) with a dist::communicator fills the unset
// divisor fields with the sums over ranks (dist/normalizers.hpp). Scratch: per-sequence modes with
// grad keep B doubles; the overload with a trailing `workspace` (aggregate_workspace_bytes) does
// not allocate. The modes are presets of agg::policy (ops/aggregate_types.hpp, the contract).
//
// Peer mapping (GA = gradient-accumulation steps, P = processes / dp ranks):
//   verl token-mean                 token_mean, tokens = batch_num_tokens (or local); verl's
//                                   result is this times dp_size (DDP averages gradients)
//   verl seq-mean-token-sum/-mean   seq_mean_token_sum/_mean, sequences = global_batch_size,
//                                   agg_conventions::verl() (also times dp_size in verl)
//   verl seq-mean-token-sum-norm    seq_mean_token_sum_norm, constant = loss_scale_factor or T
//                                   (reference §1.7); verl 0.9.1 also divides by the non-empty
//                                   rows: constant = rows·T (tests/golden/verl_ops.cpp)
//   TRL grpo / sapo                 seq_mean_token_mean, agg_conventions::trl(),
//                                   sequences = B_local·GA
//   TRL bnpo                        token_mean, tokens = local Σ m · GA
//   TRL dr_grpo                     constant_divisor, constant = B_local·max_completion_length·GA
//   TRL dapo / cispo / vespo        token_mean, tokens = num_items_in_batch / P
//   TRL luspo                       seq_mean_token_sum with L_t = the sequence loss L_i,
//                                   agg_conventions::trl(), sequences = B_local·GA
//   OpenRLHF token / sample level   token_mean / seq_mean_token_mean, agg_conventions::openrlhf()
//   open-instruct "token" / float   token_mean with tokens = the accumulation group's token count,
//                                   or constant_divisor (its world_size factor is the caller's)
//   SFT "sum" / "mean"              token_sum / token_mean (local or global tokens)
#include <cmath>
#include <span>
#include <string>

#include "posttrain/backend/cpu/aggregate.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/dist/communicator.hpp"
#include "posttrain/dist/normalizers.hpp"
#include "posttrain/ops/aggregate_types.hpp"
#include "posttrain/ops/reductions_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace detail {

inline void validate_agg_options(const agg_options& o, const char* where) {
  expect_non_negative(o.length_epsilon, where, "options.length_epsilon");
  expect_non_negative(o.length_floor, where, "options.length_floor");
}

inline void validate_agg_normalizer(const agg_normalizer& n, const char* where) {
  if (n.tokens) expect_non_negative(*n.tokens, where, "normalizer.tokens");
  if (n.sequences) expect_non_negative(*n.sequences, where, "normalizer.sequences");
  if (n.constant) expect_positive(*n.constant, where, "normalizer.constant");
}

// Validates everything but the normaliser; returns N.
template <class T>
index_t validate_agg_inputs(std::span<const T> loss, std::span<const float> mask,
                            std::span<const index_t> seq_offsets, bool needs_offsets,
                            std::span<T> grad, const char* where) {
  const index_t n = ssize(loss);
  if (needs_offsets)
    expect(!seq_offsets.empty(), where,
           "seq_offsets is empty, expected B + 1 offsets (this mode averages over sequences)");
  if (!seq_offsets.empty()) expect_offsets(seq_offsets, n, where, "seq_offsets");
  expect_size_or_empty(mask, n, where, "mask", "one weight per token of loss, or empty");
  expect_mask(mask, where, "mask");
  expect_size_or_empty(grad, n, where, "grad", "one per token of loss, or empty");
  return n;
}

}  // namespace detail

// Bytes of workspace aggregate_loss<Mode> needs for `rows` sequences (B), with or without grad.
template <aggregation Mode, execution_tag Exec>
std::size_t aggregate_workspace_bytes(Exec exec, index_t rows, bool with_grad = true) {
  expect(rows >= 0, "aggregate_workspace_bytes", "rows is ", rows, ", expected >= 0");
  return backend::aggregate_backend<Exec>::template workspace_bytes<Mode>(exec, rows, with_grad);
}

namespace detail {

template <class Mode, class T>
void validate_aggregate_loss(std::span<const T> loss, std::span<const float> mask,
                             std::span<const index_t> seq_offsets,
                             const agg_normalizer& normalizer, std::span<T> grad,
                             const agg_options& options) {
  constexpr const char* where = "aggregate_loss";
  validate_agg_inputs(loss, mask, seq_offsets, Mode::per_sequence, grad, where);
  validate_agg_normalizer(normalizer, where);
  validate_agg_options(options, where);
  if constexpr (Mode::divisor == agg::divisor_kind::constant)
    expect(normalizer.constant.has_value(), where,
           "normalizer.constant is unset, expected the constant divisor C > 0 (this mode has no "
           "local default: pass e.g. the padded width T or max_completion_length * B)");
}

template <class Mode, class Exec, class T>
agg_result aggregate_loss_impl(Exec exec, std::span<const T> loss, std::span<const float> mask,
                               std::span<const index_t> seq_offsets,
                               const agg_normalizer& normalizer, std::span<T> grad,
                               const agg_options& options, workspace ws) {
  validate_aggregate_loss<Mode>(loss, mask, seq_offsets, normalizer, grad, options);
  return backend::aggregate_backend<Exec>::template run<Mode, T>(exec, loss, mask, seq_offsets,
                                                                  normalizer, grad, options, ws);
}

template <class Mode, class Exec, class T>
agg_result aggregate_loss_alloc(Exec exec, std::span<const T> loss, std::span<const float> mask,
                                std::span<const index_t> seq_offsets,
                                const agg_normalizer& normalizer, std::span<T> grad,
                                const agg_options& options) {
  workspace_buffer buffer;
  const index_t rows = seq_offsets.empty() ? 0 : ssize(seq_offsets) - 1;
  return aggregate_loss_impl<Mode>(
      exec, loss, mask, seq_offsets, normalizer, grad, options,
      buffer.view(aggregate_workspace_bytes<Mode>(exec, rows, !grad.empty())));
}

// The normaliser over every rank: the fields this Mode reads that the caller left unset (= local)
// become the sums over ranks. A rank whose input is invalid still joins the collective (with a
// failure flag), so that every rank throws.
template <class Mode, class C, class Exec, class T>
agg_normalizer global_agg_normalizer(C& comm, Exec exec, std::span<const T> loss,
                                     std::span<const float> mask,
                                     std::span<const index_t> seq_offsets,
                                     const agg_normalizer& normalizer, std::span<T> grad,
                                     const agg_options& options) {
  dist::detail::require_host_communicator<C>();
  std::string failure;
  agg_counts local{};
  try {
    validate_aggregate_loss<Mode>(loss, mask, seq_offsets, normalizer, grad, options);
    const index_t whole[2] = {0, ssize(loss)};
    local = backend::aggregate_backend<Exec>::counts(
        exec, mask, seq_offsets.empty() ? std::span<const index_t>(whole) : seq_offsets, options);
  } catch (const error& e) {
    failure = e.what();
  }
  double v[3] = {local.tokens, local.sequences, failure.empty() ? 0.0 : 1.0};
  comm.all_reduce_sum(std::span<double>(v));
  dist::detail::throw_if_any_failed(v[2], failure, "aggregate_loss");
  agg_normalizer global = normalizer;
  if (!global.tokens) global.tokens = v[0];
  if (!global.sequences) global.sequences = v[1];
  return global;
}

}  // namespace detail

// loss = Σ_i w_i Σ_t m·L / D, grad[t] = dloss/dL[t] (grad may be empty). See the header comment.
// loss is float or double token values (a span or a vector; grad has the same type). Allocates
// its scratch (per-sequence modes with grad); the overload with a workspace does not.
template <aggregation Mode, execution_tag Exec, detail::token_values V>
agg_result aggregate_loss(Exec exec, const V& loss, std::span<const float> mask,
                          std::span<const index_t> seq_offsets,
                          const agg_normalizer& normalizer = {},
                          std::span<detail::value_t<V>> grad = {},
                          const agg_options& options = {}) {
  using T = detail::value_t<V>;
  return detail::aggregate_loss_alloc<Mode>(exec, std::span<const T>(loss), mask, seq_offsets,
                                            normalizer, grad, options);
}

// With caller scratch (aggregate_workspace_bytes): no allocation.
template <aggregation Mode, execution_tag Exec, detail::token_values V>
agg_result aggregate_loss(Exec exec, const V& loss, std::span<const float> mask,
                          std::span<const index_t> seq_offsets, const agg_normalizer& normalizer,
                          std::span<detail::value_t<V>> grad, const agg_options& options,
                          workspace ws) {
  using T = detail::value_t<V>;
  return detail::aggregate_loss_impl<Mode>(exec, std::span<const T>(loss), mask, seq_offsets,
                                           normalizer, grad, options, ws);
}

// Over the ranks of `comm` (dist/communicator.hpp; host communicators): each rank passes its own
// tokens; the divisor fields this Mode needs and the caller left unset are the global Σ m and
// sequence counts (dist/normalizers.hpp), so the ranks' losses add up to the loss of one process
// over all the data and every gradient equals that process's gradient for the same token. One
// collective of three doubles per call; every rank must call it.
template <aggregation Mode, class C, execution_tag Exec, detail::token_values V>
  requires dist::communicator<C>
agg_result aggregate_loss(C& comm, Exec exec, const V& loss_in, std::span<const float> mask,
                          std::span<const index_t> seq_offsets,
                          const agg_normalizer& normalizer = {},
                          std::span<detail::value_t<V>> grad = {},
                          const agg_options& options = {}) {
  const std::span<const detail::value_t<V>> loss(loss_in);
  const agg_normalizer global = detail::global_agg_normalizer<Mode>(
      comm, exec, loss, mask, seq_offsets, normalizer, grad, options);
  return detail::aggregate_loss_alloc<Mode>(exec, loss, mask, seq_offsets, global, grad, options);
}

template <aggregation Mode, class C, execution_tag Exec, detail::token_values V>
  requires dist::communicator<C>
agg_result aggregate_loss(C& comm, Exec exec, const V& loss_in, std::span<const float> mask,
                          std::span<const index_t> seq_offsets, const agg_normalizer& normalizer,
                          std::span<detail::value_t<V>> grad, const agg_options& options,
                          workspace ws) {
  const std::span<const detail::value_t<V>> loss(loss_in);
  const agg_normalizer global = detail::global_agg_normalizer<Mode>(
      comm, exec, loss, mask, seq_offsets, normalizer, grad, options);
  return detail::aggregate_loss_impl<Mode>(exec, loss, mask, seq_offsets, global, grad, options,
                                           ws);
}

// The local counts of one micro-batch: Σ m, and its contributing rows (non-empty rows, or all
// rows with options.include_empty_sequences). Sum them over micro-batches and ranks into an
// agg_normalizer for micro-batch invariant aggregation (dist::global_normalizer does it over the
// ranks of a communicator).
template <execution_tag Exec>
agg_counts aggregation_counts(Exec exec, std::span<const float> mask,
                              std::span<const index_t> seq_offsets,
                              const agg_options& options = {}) {
  constexpr const char* where = "aggregation_counts";
  expect(!seq_offsets.empty(), where, "seq_offsets is empty, expected B + 1 offsets");
  expect_offsets(seq_offsets, seq_offsets.back(), where, "seq_offsets");
  expect_size_or_empty(mask, seq_offsets.back(), where, "mask",
                       "one weight per token (seq_offsets.back()), or empty");
  expect_mask(mask, where, "mask");
  return backend::aggregate_backend<Exec>::counts(exec, mask, seq_offsets, options);
}

POSTTRAIN_NAMESPACE_END
