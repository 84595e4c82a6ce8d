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
#include <concepts>
#include <optional>
#include <span>
#include <vector>

#include "posttrain/backend/cpu/aggregate.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

// Conventions of the per-sequence modes (see the header comment).
struct agg_options {
  bool include_empty_sequences = false;  // count rows with Σ m = 0 in the local sequence divisor
  double length_epsilon = 0.0;           // added to |o_i| in seq_mean_token_mean
  double length_floor = 0.0;             // lower bound of that row divisor
};

// Global divisors; unset = the local value (constant: required by the modes that divide by it).
struct agg_normalizer {
  std::optional<double> tokens;     // Σ m over all micro-batches / ranks
  std::optional<double> sequences;  // contributing sequences over all micro-batches / ranks
  std::optional<double> constant;   // C of constant_divisor / seq_mean_token_sum_norm
};

struct agg_result {
  double loss = 0.0;
  double divisor = 0.0;  // the D that was used
};

// Local counts of one call, to be summed (all-reduced) into an agg_normalizer.
struct agg_counts {
  double tokens = 0.0;     // Σ m
  double sequences = 0.0;  // rows with Σ m > 0, or every row with include_empty_sequences
};

namespace agg {

enum class divisor_kind { one, tokens, sequences, constant };

struct token_mean {
  static constexpr divisor_kind divisor = divisor_kind::tokens;
  static constexpr bool per_sequence = false;
  POSTTRAIN_HOST_DEVICE static constexpr double row_weight(double, const agg_options&) {
    return 1.0;
  }
};

struct token_sum {
  static constexpr divisor_kind divisor = divisor_kind::one;
  static constexpr bool per_sequence = false;
  POSTTRAIN_HOST_DEVICE static constexpr double row_weight(double, const agg_options&) {
    return 1.0;
  }
};

struct constant_divisor {
  static constexpr divisor_kind divisor = divisor_kind::constant;
  static constexpr bool per_sequence = false;
  POSTTRAIN_HOST_DEVICE static constexpr double row_weight(double, const agg_options&) {
    return 1.0;
  }
};

struct seq_mean_token_sum {
  static constexpr divisor_kind divisor = divisor_kind::sequences;
  static constexpr bool per_sequence = true;
  POSTTRAIN_HOST_DEVICE static constexpr double row_weight(double, const agg_options&) {
    return 1.0;
  }
};

struct seq_mean_token_mean {
  static constexpr divisor_kind divisor = divisor_kind::sequences;
  static constexpr bool per_sequence = true;
  // Called for rows with |o_i| > 0 only.
  POSTTRAIN_HOST_DEVICE static constexpr double row_weight(double length, const agg_options& o) {
    const double l = length + o.length_epsilon;
    return 1.0 / (l < o.length_floor ? o.length_floor : l);
  }
};

// verl's Dr.GRPO mode: Σ m·L / C with no division by the number of sequences.
struct seq_mean_token_sum_norm {
  static constexpr divisor_kind divisor = divisor_kind::constant;
  static constexpr bool per_sequence = false;
  POSTTRAIN_HOST_DEVICE static constexpr double row_weight(double, const agg_options&) {
    return 1.0;
  }
};

}  // namespace agg

// An aggregation mode: which divisor (divisor), whether rows matter (per_sequence), and the row
// weight w(|o_i|, options).
template <class A>
concept aggregation = requires(double length, const agg_options& options) {
  { A::divisor } -> std::convertible_to<agg::divisor_kind>;
  { A::per_sequence } -> std::convertible_to<bool>;
  { A::row_weight(length, options) } -> std::convertible_to<double>;
};

template <class A>
constexpr bool check_aggregation() {
  static_assert(aggregation<A>,
                "an aggregation needs static members `divisor` (an agg::divisor_kind), "
                "`per_sequence` (bool) and row_weight(double length, const agg_options&) "
                "returning the weight of every token of a row");
  return aggregation<A>;
}

static_assert(check_aggregation<agg::token_mean>());
static_assert(check_aggregation<agg::token_sum>());
static_assert(check_aggregation<agg::constant_divisor>());
static_assert(check_aggregation<agg::seq_mean_token_sum>());
static_assert(check_aggregation<agg::seq_mean_token_mean>());
static_assert(check_aggregation<agg::seq_mean_token_sum_norm>());

namespace agg_conventions {

// Empty rows excluded from the row count, |o_i| + 1e-8 (verl agg_loss, OpenRLHF aggregate_loss).
inline agg_options verl() { return agg_options{false, 1e-8, 0.0}; }
inline agg_options openrlhf() { return agg_options{false, 1e-8, 0.0}; }
// TRL grpo: mean over all rows, max(|o_i|, 1).
inline agg_options trl() { return agg_options{true, 0.0, 1.0}; }
// open-instruct uses token / constant divisors only.
inline agg_options open_instruct() { return agg_options{}; }

}  // namespace agg_conventions

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

template <class Mode>
double agg_divisor(const agg_normalizer& n, double local_tokens, double local_sequences) {
  switch (Mode::divisor) {
    case agg::divisor_kind::one: return 1.0;
    case agg::divisor_kind::tokens: return n.tokens.value_or(local_tokens);
    case agg::divisor_kind::sequences: return n.sequences.value_or(local_sequences);
    case agg::divisor_kind::constant: return *n.constant;
  }
  return 1.0;
}

}  // namespace detail

namespace backend {

// Backend of aggregate_loss for an execution tag; the CUDA backend specialises it in backend/cuda.
template <class Exec>
struct aggregate_backend {
  static_assert(sizeof(Exec) == 0,
                "posttrain::aggregate_loss has no backend for this execution tag: for exec::cuda "
                "include <posttrain/cuda.cuh> (the posttrain::cuda component)");
};

template <>
struct aggregate_backend<exec::host> {
  template <class Mode, class T>
  static agg_result run(exec::host, std::span<const T> loss, std::span<const float> mask,
                        std::span<const index_t> seq_offsets, const agg_normalizer& normalizer,
                        std::span<T> grad, const agg_options& options) {
    agg_result result;
    if constexpr (Mode::per_sequence) {
      const std::size_t rows = seq_offsets.size() - 1;
      std::vector<double> row_scale(grad.empty() ? 0 : rows);
      const auto weight = [&options](double length) { return Mode::row_weight(length, options); };
      const auto s = cpu::row_sums(loss, mask, seq_offsets, weight, std::span<double>(row_scale));
      const double local_sequences = options.include_empty_sequences
                                         ? static_cast<double>(rows)
                                         : static_cast<double>(s.nonempty_rows);
      result.divisor = detail::agg_divisor<Mode>(normalizer, s.tokens, local_sequences);
      if (result.divisor == 0.0) {
        cpu::fill_zero(grad);
        return result;
      }
      result.loss = s.weighted_sum / result.divisor;
      if (!grad.empty())
        cpu::row_grad(grad, mask, seq_offsets, std::span<const double>(row_scale),
                      1.0 / result.divisor);
    } else {
      const auto s = cpu::token_sums(loss, mask);
      result.divisor = detail::agg_divisor<Mode>(normalizer, s.tokens, 0.0);
      if (result.divisor == 0.0) {
        cpu::fill_zero(grad);
        return result;
      }
      result.loss = s.weighted_sum / result.divisor;
      if (!grad.empty()) cpu::token_grad(grad, mask, 1.0 / result.divisor);
    }
    return result;
  }

  static agg_counts counts(exec::host, std::span<const float> mask,
                           std::span<const index_t> seq_offsets, const agg_options& options) {
    const std::size_t rows = seq_offsets.size() - 1;
    agg_counts c;
    for (std::size_t i = 0; i < rows; ++i) {
      double w = 0.0;
      if (mask.empty()) {
        w = static_cast<double>(seq_offsets[i + 1] - seq_offsets[i]);
      } else {
        for (auto t = seq_offsets[i]; t < seq_offsets[i + 1]; ++t)
          w += static_cast<double>(mask[static_cast<std::size_t>(t)]);
      }
      c.tokens += w;
      if (w > 0.0 || options.include_empty_sequences) c.sequences += 1.0;
    }
    return c;
  }
};

}  // namespace backend

namespace detail {

template <class Mode, class Exec, class T>
agg_result aggregate_loss_impl(Exec exec, std::span<const T> loss, std::span<const float> mask,
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
  return backend::aggregate_backend<Exec>::template run<Mode, T>(exec, loss, mask, seq_offsets,
                                                                  normalizer, grad, options);
}

}  // namespace detail

// loss = Σ_i w_i Σ_t m·L / D, grad[t] = dloss/dL[t] (grad may be empty). See the header comment.
template <aggregation Mode, execution_tag Exec>
agg_result aggregate_loss(Exec exec, std::span<const float> loss, std::span<const float> mask,
                          std::span<const index_t> seq_offsets,
                          const agg_normalizer& normalizer = {}, std::span<float> grad = {},
                          const agg_options& options = {}) {
  return detail::aggregate_loss_impl<Mode>(exec, loss, mask, seq_offsets, normalizer, grad,
                                           options);
}

template <aggregation Mode, execution_tag Exec>
agg_result aggregate_loss(Exec exec, std::span<const double> loss, std::span<const float> mask,
                          std::span<const index_t> seq_offsets,
                          const agg_normalizer& normalizer = {}, std::span<double> grad = {},
                          const agg_options& options = {}) {
  return detail::aggregate_loss_impl<Mode>(exec, loss, mask, seq_offsets, normalizer, grad,
                                           options);
}

// The local counts of one micro-batch: Σ m, and its contributing rows (non-empty rows, or all
// rows with options.include_empty_sequences). Sum them over micro-batches and ranks into an
// agg_normalizer for micro-batch invariant aggregation.
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
