#pragma once
// KTO (Ethayarajh et al. 2024), unpaired as TRL computes it, its APO-zero unpaired variant, and
// OpenRLHF's paired "vanilla" KTO.
//
// loss::kto<Link, SeqReduce = seq::sum> — unpaired examples b = 1..B with labels y_b (desirable or
// undesirable):
//   Δ_b = SeqReduce(ℓ, m over completion b) − ρ_b          (ρ: reference scores, same reduction)
//   unpaired::kto           desirable 1 − σ(β(Δ − z0))      undesirable 1 − σ(β(z0 − Δ))
//   unpaired::apo_zero      desirable 1 − σ(βΔ)             undesirable σ(βΔ)        (no z0)
//   loss = Σ_b λ_{y_b}·L_b / normalizer.examples   (default: local B = n_D + n_U; TRL's mean of
//          the concatenation [λ_D·L_D, λ_U·L_U])
//   ∂loss/∂ℓ_t = λ·∂L/∂Δ · ∂π/∂ℓ_t / examples.
// z0 (inputs.kl_reference) is the KL reference point, DETACHED: it receives no gradient (TRL and
// OpenRLHF compute it under no_grad / .detach()). The caller computes it from mismatched
// (prompt, completion) pairs — TRL rotates completions by one within the batch — with
// kto_kl_reference(π_KL, ρ_KL) = max(mean(π_KL − ρ_KL), 0), or over ranks with
// kto_kl_partial(π_KL, ρ_KL) summed (all-reduced) and kto_reference_point(sum, count). TRL
// averages per-process means (equal to the global mean when batches are equal); OpenRLHF's
// KTOLoss does the same (all_reduce_sum(mean)/world_size).
// Options kto_options: beta (β > 0, default 0.1), desirable_weight λ_D and undesirable_weight λ_U
// (≥ 0, default 1; TRL warns unless λ_D·n_D/(λ_U·n_U) ∈ [1, 4/3]).
// Inputs kto_inputs<T>: batch (seq_offsets[B+1], mask), logprobs[N], reference[B],
// desirable[B] (1 = desirable, 0 = undesirable), kl_reference (z0, finite).
// Outputs kto_outputs<T>: grad[N], example_losses[B] (λ·L_b), rewards[B] (β·Δ_b); any may be empty.
//
// loss::kto_vanilla_paired — OpenRLHF VanillaKTOLoss (balanced pairs, summed log-probs):
//   Δc, Δr per pair as in loss::preference<·, seq::sum, with_reference>;
//   KL_c = max(mean Δc, 0), KL_r = max(mean Δr, 0) (detached; local means unless given);
//   L_c = 1 − σ(β(Δc − KL_r)), L_r = 1 − σ(β(KL_c − Δr)); loss = Σ (L_c + L_r) / (2P).
//
// Every argument is validated before anything is written (posttrain::error naming it).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <type_traits>

#include "posttrain/backend/cpu/preference.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/batch.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/preference.hpp"
#include "posttrain/loss/sequence_reduce.hpp"
#include "posttrain/math/stable.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss {

struct kto_options {
  double beta = 0.1;
  double desirable_weight = 1.0;
  double undesirable_weight = 1.0;
};

}  // namespace loss

namespace unpaired {

// L(Δ) and dL/dΔ for one example (before the λ weight).
template <class T>
struct example_value {
  T loss;
  T slope;
};

struct kto {
  static constexpr const char* name = "kto";
  template <class T>
  POSTTRAIN_HOST_DEVICE static example_value<T> evaluate(T delta, T z0, bool desirable, T beta) {
    const T x = desirable ? beta * (delta - z0) : beta * (z0 - delta);
    const T s = math::sigmoid(x) * math::sigmoid(-x);
    return {math::sigmoid(-x), desirable ? -beta * s : beta * s};  // 1 − σ(x) = σ(−x)
  }
};

struct apo_zero {
  static constexpr const char* name = "apo_zero_unpaired";
  template <class T>
  POSTTRAIN_HOST_DEVICE static example_value<T> evaluate(T delta, T /*z0*/, bool desirable,
                                                         T beta) {
    const T x = beta * delta;
    const T s = math::sigmoid(x) * math::sigmoid(-x);
    return desirable ? example_value<T>{math::sigmoid(-x), -beta * s}
                     : example_value<T>{math::sigmoid(x), beta * s};
  }
};

}  // namespace unpaired

namespace loss {

template <class T>
struct kto_inputs {
  token_batch batch{};                        // B completions
  std::span<const T> logprobs{};              // [N] policy token log-probs
  std::span<const T> reference{};             // [B] reference scores ρ (same reduction as π)
  std::span<const std::uint8_t> desirable{};  // [B] 1 desirable, 0 undesirable
  double kl_reference = 0.0;                  // z0 (detached); ignored by apo_zero_unpaired
};

template <class T>
struct kto_outputs {
  std::span<T> grad{};                 // [N] ∂loss/∂ℓ (0 where m = 0)
  std::span<double> example_losses{};  // [B] λ·L_b
  std::span<double> rewards{};         // [B] β·Δ_b
};

struct kto_normalizer {
  double examples = 0;  // divisor of Σ_b λ·L_b; 0 = local B
};

struct kto_result {
  double loss = 0;
  double desirable_reward = 0;    // local mean β·Δ over desirable examples (0 if none)
  double undesirable_reward = 0;  // local mean β·Δ over undesirable examples (0 if none)
  double desirable_count = 0;
  double undesirable_count = 0;
  double kl_reference = 0;  // the z0 used
};

namespace detail {
inline void validate_kto_options(const kto_options& o, std::string_view where) {
  expect_positive(o.beta, where, "options.beta");
  expect_non_negative(o.desirable_weight, where, "options.desirable_weight");
  expect_non_negative(o.undesirable_weight, where, "options.undesirable_weight");
}
template <class T>
void expect_finite_all(std::span<const T> v, std::string_view where, std::string_view arg) {
  for (std::size_t i = 0; i < v.size(); ++i)
    expect(std::isfinite(static_cast<double>(v[i])), where, arg, "[", i,
           "] = ", static_cast<double>(v[i]), ", expected a finite value");
}
}  // namespace detail

// Σ_k (π_KL,k − ρ_KL,k) and K over this rank's mismatched pairs (per-sequence scores).
struct kto_kl_sum {
  double sum = 0;
  double count = 0;
};

template <class T>
kto_kl_sum kto_kl_partial(std::span<const T> policy_kl, std::span<const T> reference_kl) {
  constexpr const char* where = "loss::kto_kl_partial";
  expect_size(reference_kl, ssize(policy_kl), where, "reference_kl", "one per policy_kl score");
  detail::expect_finite_all(policy_kl, where, "policy_kl");
  detail::expect_finite_all(reference_kl, where, "reference_kl");
  kto_kl_sum s;
  for (std::size_t k = 0; k < policy_kl.size(); ++k)
    s.sum += static_cast<double>(policy_kl[k]) - static_cast<double>(reference_kl[k]);
  s.count = static_cast<double>(policy_kl.size());
  return s;
}

// z0 = max(sum / count, 0); count = 0 gives 0.
inline double kto_reference_point(double global_sum, double global_count) {
  constexpr const char* where = "loss::kto_reference_point";
  expect_finite(global_sum, where, "global_sum");
  expect_non_negative(global_count, where, "global_count");
  return global_count > 0 ? std::max(global_sum / global_count, 0.0) : 0.0;
}

// Single-rank z0 = max(mean(π_KL − ρ_KL), 0).
template <class T>
double kto_kl_reference(std::span<const T> policy_kl, std::span<const T> reference_kl) {
  const kto_kl_sum s = kto_kl_partial(policy_kl, reference_kl);
  return kto_reference_point(s.sum, s.count);
}

template <class Link, class SeqReduce = seq::sum>
struct kto : loss_interface<kto_options, kto_inputs, kto_outputs, kto_normalizer, kto_result> {
  static_assert(seq::diagnose_sequence_reduction<SeqReduce>(),
                "loss::kto<Link, SeqReduce>: SeqReduce must be seq::sum or seq::mean");
  static std::string name() {
    return std::string("loss::kto<") + Link::name + ", " + SeqReduce::name + ">";
  }

  template <class T>
  static void validate(const kto_inputs<T>& in, const kto_options& o, const kto_outputs<T>& out,
                       const kto_normalizer& norm) {
    const std::string where = name();
    in.batch.validate(where);
    const index_t b = in.batch.num_sequences();
    expect_size(in.logprobs, in.batch.num_tokens(), where, "logprobs", "one per token");
    expect_size(in.reference, b, where, "reference", "one reference score per completion");
    detail::expect_finite_all(in.reference, where, "reference");
    expect_size(in.desirable, b, where, "desirable", "one label per completion");
    for (std::size_t i = 0; i < in.desirable.size(); ++i)
      expect(in.desirable[i] <= 1, where, "desirable[", i, "] = ", int(in.desirable[i]),
             ", expected 0 (undesirable) or 1 (desirable)");
    expect_finite(in.kl_reference, where, "kl_reference");
    detail::validate_kto_options(o, where);
    expect_non_negative(norm.examples, where, "normalizer.examples");
    expect_size_or_empty(out.grad, in.batch.num_tokens(), where, "grad", "one per token");
    expect_size_or_empty(out.example_losses, b, where, "example_losses", "one per completion");
    expect_size_or_empty(out.rewards, b, where, "rewards", "one per completion");
  }

  template <class T>
  static kto_result compute(exec::host, const kto_inputs<T>& in, const kto_options& o = {},
                            const kto_outputs<T>& out = {}, const kto_normalizer& norm = {}) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::kto::compute accepts float or double log-probs");
    validate(in, o, out, norm);
    using backend::cpu::masked_sum;
    using backend::cpu::write_masked;
    const index_t b = in.batch.num_sequences();
    const double divisor = norm.examples > 0 ? norm.examples : static_cast<double>(b);
    const double inv = divisor > 0 ? 1.0 / divisor : 0.0;
    kto_result r;
    r.kl_reference = in.kl_reference;
    double total = 0, rd = 0, ru = 0;
    for (index_t i = 0; i < b; ++i) {
      const index_t t0 = in.batch.seq_offsets[i], t1 = in.batch.seq_offsets[i + 1];
      const auto s = masked_sum(in.logprobs, in.batch.mask, t0, t1);
      const double delta = SeqReduce::score(s.sum, s.weight) - static_cast<double>(in.reference[i]);
      const bool want = in.desirable[i] != 0;
      const auto v = Link::evaluate(delta, in.kl_reference, want, o.beta);
      const double w = want ? o.desirable_weight : o.undesirable_weight;
      total += w * v.loss;
      (want ? rd : ru) += o.beta * delta;
      (want ? r.desirable_count : r.undesirable_count) += 1.0;
      if (!out.example_losses.empty()) out.example_losses[i] = w * v.loss;
      if (!out.rewards.empty()) out.rewards[i] = o.beta * delta;
      if (!out.grad.empty())
        write_masked(out.grad, in.batch.mask, t0, t1,
                     w * v.slope * inv * SeqReduce::token_scale(s.weight));
    }
    r.loss = total * inv;
    if (r.desirable_count > 0) r.desirable_reward = rd / r.desirable_count;
    if (r.undesirable_count > 0) r.undesirable_reward = ru / r.undesirable_count;
    return r;
  }

  template <class T>
  static kto_result compute(const kto_inputs<T>& in, const kto_options& o = {},
                            const kto_outputs<T>& out = {}, const kto_normalizer& norm = {}) {
    return compute(exec::host{}, in, o, out, norm);
  }

  template <class T>
  static kto_result compute(exec::cuda, const kto_inputs<T>&, const kto_options& = {},
                            const kto_outputs<T>& = {}, const kto_normalizer& = {}) {
    static_assert(sizeof(T) == 0,
                  "loss::kto has no CUDA backend yet: call compute(exec::host{}, ...) with host "
                  "memory");
    return {};
  }
};

// OpenRLHF VanillaKTOLoss options: β, and optional global means of Δc / Δr (all-reduced by the
// caller for multi-rank use; unset = this call's means). Both are clamped at 0 and detached.
struct kto_vanilla_options {
  double beta = 0.1;
  std::optional<double> mean_delta_chosen = std::nullopt;
  std::optional<double> mean_delta_rejected = std::nullopt;
};

struct kto_vanilla_result {
  double loss = 0;
  double kl_chosen = 0;        // KL_c used
  double kl_rejected = 0;      // KL_r used
  double chosen_reward = 0;    // local mean β·Δc
  double rejected_reward = 0;  // local mean β·Δr
};

struct kto_vanilla_paired
    : loss_interface<kto_vanilla_options, preference_inputs, preference_outputs,
                     preference_normalizer, kto_vanilla_result> {
  static constexpr const char* where = "loss::kto_vanilla_paired";
  static std::string name() { return where; }

  // Host memory, the calling thread: same as compute(exec::host{}, ...).
  template <class T>
  static kto_vanilla_result compute(const preference_inputs<T>& in,
                                    const kto_vanilla_options& o = {},
                                    const preference_outputs<T>& out = {},
                                    const preference_normalizer& norm = {}) {
    return compute(exec::host{}, in, o, out, norm);
  }

  // normalizer.pairs: divisor P of Σ (L_c + L_r) / (2P) (default local P).
  template <class T>
  static kto_vanilla_result compute(exec::host, const preference_inputs<T>& in,
                                    const kto_vanilla_options& o = {},
                                    const preference_outputs<T>& out = {},
                                    const preference_normalizer& norm = {}) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::kto_vanilla_paired::compute accepts float or double log-probs");
    // The shape checks of the paired preference loss (with reference scores, summed).
    loss::preference<pref::sigmoid, seq::sum>::validate(in, preference_options{.beta = 1.0}, out,
                                                        norm);
    expect_positive(o.beta, where, "options.beta");
    if (o.mean_delta_chosen) expect_finite(*o.mean_delta_chosen, where, "mean_delta_chosen");
    if (o.mean_delta_rejected) expect_finite(*o.mean_delta_rejected, where, "mean_delta_rejected");
    using backend::cpu::masked_sum;
    using backend::cpu::write_masked;
    const token_batch& c = in.batch.chosen;
    const token_batch& rj = in.batch.rejected;
    const index_t pairs = in.batch.num_pairs();
    auto delta = [&](index_t p, bool chosen_side) {
      const token_batch& s = chosen_side ? c : rj;
      const auto m = masked_sum(chosen_side ? in.chosen_logprobs : in.rejected_logprobs, s.mask,
                                s.seq_offsets[p], s.seq_offsets[p + 1]);
      return m.sum -
             static_cast<double>(chosen_side ? in.reference_chosen[p] : in.reference_rejected[p]);
    };
    double sum_c = 0, sum_r = 0;
    for (index_t p = 0; p < pairs; ++p) {
      sum_c += delta(p, true);
      sum_r += delta(p, false);
    }
    const double n = static_cast<double>(pairs);
    kto_vanilla_result r;
    r.kl_chosen = std::max(o.mean_delta_chosen.value_or(pairs ? sum_c / n : 0.0), 0.0);
    r.kl_rejected = std::max(o.mean_delta_rejected.value_or(pairs ? sum_r / n : 0.0), 0.0);
    const double divisor = 2.0 * (norm.pairs > 0 ? norm.pairs : n);
    const double inv = divisor > 0 ? 1.0 / divisor : 0.0;
    double total = 0;
    for (index_t p = 0; p < pairs; ++p) {
      const double dc = delta(p, true), dr = delta(p, false);
      // L_c = 1 − σ(β(Δc − KL_r)) (desirable with z0 = KL_r); L_r = 1 − σ(β(KL_c − Δr)).
      const auto vc = ::posttrain::unpaired::kto::evaluate(dc, r.kl_rejected, true, o.beta);
      const auto vr = ::posttrain::unpaired::kto::evaluate(dr, r.kl_chosen, false, o.beta);
      total += vc.loss + vr.loss;
      if (!out.pair_losses.empty()) out.pair_losses[p] = vc.loss + vr.loss;
      if (!out.chosen_rewards.empty()) out.chosen_rewards[p] = o.beta * dc;
      if (!out.rejected_rewards.empty()) out.rejected_rewards[p] = o.beta * dr;
      if (!out.chosen_grad.empty())
        write_masked(out.chosen_grad, c.mask, c.seq_offsets[p], c.seq_offsets[p + 1],
                     vc.slope * inv);
      if (!out.rejected_grad.empty())
        write_masked(out.rejected_grad, rj.mask, rj.seq_offsets[p], rj.seq_offsets[p + 1],
                     vr.slope * inv);
    }
    r.loss = total * inv;
    if (pairs > 0) {
      r.chosen_reward = o.beta * sum_c / n;
      r.rejected_reward = o.beta * sum_r / n;
    }
    return r;
  }
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
