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

#include "posttrain/backend/cpu/kto.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/batch.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/kto_links.hpp"
#include "posttrain/loss/kto_types.hpp"
#include "posttrain/loss/preference.hpp"
#include "posttrain/loss/sequence_reduce.hpp"
#include "posttrain/math/stable.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss {

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
    const double divisor =
        norm.examples > 0 ? norm.examples : static_cast<double>(in.batch.num_sequences());
    return kto_backend<exec::host>::run<Link, SeqReduce>(exec::host{}, in, o, out, divisor);
  }

  template <class T>
  static kto_result compute(const kto_inputs<T>& in, const kto_options& o = {},
                            const kto_outputs<T>& out = {}, const kto_normalizer& norm = {}) {
    return compute(exec::host{}, in, o, out, norm);
  }

  // Device memory (backend/cuda/kto.cuh, include <posttrain/cuda.cuh>): the sizes, options and
  // normaliser are checked on the host before any work; the offsets, labels, reference scores and
  // z0's finiteness in device memory are not read by the check. Synchronises the stream once (the
  // result is a host value).
  template <class T>
  static kto_result compute(exec::cuda e, const kto_inputs<T>& in, const kto_options& o = {},
                            const kto_outputs<T>& out = {}, const kto_normalizer& norm = {}) {
    using device_backend = kto_backend<std::enable_if_t<sizeof(T) != 0, exec::cuda>>;
    static_assert(device_backend::available,
                  "loss::kto has no CUDA backend here (no loss::kto_backend<exec::cuda> "
                  "specialisation, loss/kto_types.hpp): include <posttrain/cuda.cuh>, or call "
                  "compute(exec::host{}, ...) with host memory");
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::kto::compute accepts float or double log-probs");
    validate_sizes(in, o, out, norm);
    const double divisor = norm.examples > 0 ? norm.examples
                                             : static_cast<double>(ssize(in.batch.seq_offsets) - 1);
    return device_backend::template run<Link, SeqReduce>(e, in, o, out, divisor);
  }

  // What compute(exec::cuda, ...) can check without reading device memory.
  template <class T>
  static void validate_sizes(const kto_inputs<T>& in, const kto_options& o,
                             const kto_outputs<T>& out, const kto_normalizer& norm) {
    const std::string where = name();
    expect(!in.batch.seq_offsets.empty(), where,
           "batch.seq_offsets is empty, expected B + 1 >= 1 offsets");
    const index_t b = ssize(in.batch.seq_offsets) - 1, n = ssize(in.logprobs);
    expect_size_or_empty(in.batch.mask, n, where, "batch.mask", "one weight per log-prob");
    expect_size(in.reference, b, where, "reference", "one reference score per completion");
    expect_size(in.desirable, b, where, "desirable", "one label per completion");
    expect_finite(in.kl_reference, where, "kl_reference");
    detail::validate_kto_options(o, where);
    expect_non_negative(norm.examples, where, "normalizer.examples");
    expect_size_or_empty(out.grad, n, where, "grad", "one per token");
    expect_size_or_empty(out.example_losses, b, where, "example_losses", "one per completion");
    expect_size_or_empty(out.rewards, b, where, "rewards", "one per completion");
  }
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
    const double pairs_divisor =
        norm.pairs > 0 ? norm.pairs : static_cast<double>(in.batch.num_pairs());
    return kto_backend<exec::host>::run_vanilla_paired(exec::host{}, in, o, out, pairs_divisor);
  }

  template <class T>
  static kto_vanilla_result compute(exec::cuda, const preference_inputs<T>&,
                                    const kto_vanilla_options& = {},
                                    const preference_outputs<T>& = {},
                                    const preference_normalizer& = {}) {
    // (backend/cuda/kto.cuh ports loss::kto only: its kto_backend<exec::cuda> has no
    // run_vanilla_paired.)
    static_assert(sizeof(T) == 0,
                  "loss::kto_vanilla_paired has no CUDA backend yet (kto_backend<exec::cuda> has "
                  "no run_vanilla_paired, loss/kto_types.hpp): call compute(exec::host{}, ...) "
                  "with host memory");
    return {};
  }
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
