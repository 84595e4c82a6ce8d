#pragma once
// The contract of the aggregation family (ops/aggregate.hpp): options, normalisers, results, the
// aggregation policy (agg::policy and its presets), the divisor rule, and the backend template
// both backends implement. Included by the front end and the backends; includes neither.
//
// backend::aggregate_backend<Exec> members (exec::host in backend/cpu/aggregate.hpp; spans in
// Exec's memory, validated by the front end):
//   std::size_t workspace_bytes<Mode>(Exec, index_t rows, bool with_grad)
//   agg_result run<Mode, T>(Exec, span<const T> loss, span<const float> mask,
//                           span<const index_t> seq_offsets, const agg_normalizer&,
//                           span<T> grad, const agg_options&, workspace ws)
//   agg_counts counts(Exec, span<const float> mask, span<const index_t> seq_offsets,
//                     const agg_options&)
// No exec::cuda specialisation exists yet: the device path of the losses aggregates in their own
// kernels, and aggregate_loss on exec::cuda stops compilation with the sentence below.
#include <concepts>
#include <optional>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"

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

// The weight w_i of every token of row i (rows with |o_i| > 0 only).
enum class row_weighting {
  one,             // 1
  inverse_length,  // 1 / max(|o_i| + length_epsilon, length_floor)
};

// The one aggregation policy: which divisor, whether rows matter, and the row weight. Every mode
// of the table in the header comment is a preset of it.
template <divisor_kind Divisor, bool PerSequence, row_weighting Weight = row_weighting::one>
struct policy {
  static constexpr divisor_kind divisor = Divisor;
  static constexpr bool per_sequence = PerSequence;
  static constexpr row_weighting weighting = Weight;
  POSTTRAIN_HOST_DEVICE static constexpr double row_weight(double length, const agg_options& o) {
    if constexpr (Weight == row_weighting::one) {
      return 1.0;
    } else {
      const double l = length + o.length_epsilon;
      return 1.0 / (l < o.length_floor ? o.length_floor : l);
    }
  }
};

using token_mean = policy<divisor_kind::tokens, false>;
using token_sum = policy<divisor_kind::one, false>;
using constant_divisor = policy<divisor_kind::constant, false>;
using seq_mean_token_sum = policy<divisor_kind::sequences, true>;
using seq_mean_token_mean = policy<divisor_kind::sequences, true, row_weighting::inverse_length>;
// verl's Dr.GRPO mode "seq-mean-token-sum-norm": Σ m·L / C with no division by the number of
// sequences, i.e. constant_divisor under verl's name (the same type).
using seq_mean_token_sum_norm = constant_divisor;

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

// The divisor D of a mode: the normaliser's global value, else the local one.
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

// The primary template: a tag without a specialisation stops compilation with this sentence.
template <class Exec>
struct aggregate_backend {
  static_assert(sizeof(Exec) == 0,
                "posttrain::aggregate_loss has no backend for this execution tag: for exec::cuda "
                "include <posttrain/cuda.cuh> (the posttrain::cuda component)");
};

}  // namespace backend

POSTTRAIN_NAMESPACE_END
