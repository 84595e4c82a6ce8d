#pragma once
// pipeline::kto_paired_step<Loss> — one update of paired ("vanilla") KTO, loss::kto_vanilla_paired
// (algo::kto_vanilla_paired; OpenRLHF VanillaKTOLoss) on preference pairs. preference_step takes
// the DPO family's losses and kto_step the unpaired rows; this step is their paired-KTO sibling,
// built from the same step pieces (pipeline/step_common.hpp) as preference_step:
//
//   ρ_c, ρ_r = Σ mask·(reference ℓ) per chosen / rejected sequence      (whole batch, before any write)
//   Δc, Δr   = Σ mask·(policy ℓ) − ρ with the step's parameters        (forward only, no gradient)
//   KL_c = max(Σ_ranks Σ_p Δc / Σ_ranks P, 0), KL_r likewise           (one all-reduce of (P, ΣΔc, ΣΔr))
//   for each micro-batch of options.micro_batch pairs: one forward over [chosen; rejected],
//     Loss::compute with those KL_c, KL_r (options.loss.mean_delta_*) and normaliser P = the
//     GLOBAL pair count, policy.backward of its gradient
//   all-reduce gradients; clip; optimizer.step
//
//   L_c = 1 − σ(β(Δc − KL_r)),  L_r = 1 − σ(β(KL_c − Δr)),  loss = Σ_p (L_c + L_r) / (2P)
//
// The reference points are batch statistics (detached, as in OpenRLHF), computed once per step from
// every pair of every rank before the micro-batch loop: so micro-batches and ranks give the
// full-batch update exactly (the loss computed per micro-batch alone would use the micro-batch's
// local means). The cost is one extra policy forward per step. Any options.loss.mean_delta_* set by
// the caller is replaced by the step's own batch means.
//
// Data: pipeline::preference_data (pair p = chosen sequence p, rejected sequence p; token-aligned
// masks, pipeline/types.hpp). Reference: enabled (frozen or precomputed).
// Validated before anything is written (posttrain::error, parameters untouched): empty batch,
// mismatched pair counts, masks, token ids, step options, β > 0.
#include <algorithm>
#include <array>
#include <span>
#include <type_traits>
#include <vector>

#include "posttrain/backend/cpu/preference.hpp"
#include "posttrain/config.hpp"
#include "posttrain/dist/communicator.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/kto.hpp"
#include "posttrain/pipeline/policy.hpp"
#include "posttrain/pipeline/preference_step.hpp"
#include "posttrain/pipeline/reference.hpp"
#include "posttrain/pipeline/step_common.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

struct kto_paired_metrics {
  double loss = 0;                                 // full-batch loss
  double kl_chosen = 0, kl_rejected = 0;           // KL_c, KL_r used (global)
  double chosen_reward = 0, rejected_reward = 0;   // global means of β·Δc, β·Δr
  double reward_margin = 0, reward_accuracy = 0;   // mean β(Δc − Δr), fraction Δc > Δr
  double pairs = 0, grad_norm = 0;
  index_t micro_batches = 0;
};

namespace kto_paired_detail {
// Σ mask·ℓ of every sequence of `s` (the loss's own reduction: backend/cpu/preference.hpp's
// masked_sum, so the reference points are the sums the loss computes).
template <class S>
std::vector<double> sequence_sums(const token_sequences& s, std::span<const S> lp,
                                  std::span<const float> mask) {
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(s.num_sequences()));
  for (index_t b = 0; b < s.num_sequences(); ++b)
    out.push_back(backend::cpu::masked_sum(lp, mask, s.seq_offsets[b], s.seq_offsets[b + 1]).sum);
  return out;
}
}  // namespace kto_paired_detail

template <class Loss, policy P, reference_model R, class O, dist::communicator C>
kto_paired_metrics kto_paired_step(P& policy, R& reference, O& optimizer, const preference_data& data,
                                   const preference_step_options<Loss>& options, C& comm) {
  using S = typename P::scalar_type;
  static_assert(std::is_base_of_v<loss::kto_vanilla_paired, Loss>,
                "pipeline::kto_paired_step<Loss>: Loss must be loss::kto_vanilla_paired (or a "
                "recipe of it: algo::kto_vanilla_paired); the DPO family runs in preference_step, "
                "unpaired KTO in kto_step");
  static_assert(R::enabled, "pipeline::kto_paired_step: paired KTO subtracts reference scores, so "
                            "the reference model cannot be reference::none");
  static_assert(std::is_same_v<typename R::scalar_type, S>,
                "pipeline::kto_paired_step: the reference model's scalar_type must be the policy's");
  constexpr const char* where = "pipeline::kto_paired_step";
  const index_t pairs = preference_detail::validate_pairs(data, policy.vocab_size(), where);
  validate_step_options(options, where);
  expect(options.loss.beta > 0, where, "options.loss.beta = ", options.loss.beta, ", expected > 0");

  // Reference scores ρ of the whole batch (no gradient), before any update; stored in S, as the
  // loss reads them.
  using kto_paired_detail::sequence_sums;
  std::vector<S> ref_c(data.chosen.tokens.size(), S(0)), ref_r(data.rejected.tokens.size(), S(0));
  reference.logprobs(data.chosen, std::span<S>(ref_c));
  reference.logprobs(data.rejected, std::span<S>(ref_r));
  std::vector<S> rho_c, rho_r;
  for (double x : sequence_sums(data.chosen, std::span<const S>(ref_c), data.chosen_mask))
    rho_c.push_back(static_cast<S>(x));
  for (double x : sequence_sums(data.rejected, std::span<const S>(ref_r), data.rejected_mask))
    rho_r.push_back(static_cast<S>(x));

  // The reference points: Δ means over the global batch, with the step's parameters (detached).
  forward_state<S> st;
  std::array<double, 3> global{static_cast<double>(pairs), 0, 0};  // P, ΣΔc, ΣΔr
  {
    std::vector<S> lp_c(data.chosen.tokens.size(), S(0)), lp_r(data.rejected.tokens.size(), S(0));
    policy_logprobs(policy, data.chosen, std::span<S>(lp_c), st, options.temperature);
    policy_logprobs(policy, data.rejected, std::span<S>(lp_r), st, options.temperature);
    const auto pc = sequence_sums(data.chosen, std::span<const S>(lp_c), data.chosen_mask);
    const auto pr = sequence_sums(data.rejected, std::span<const S>(lp_r), data.rejected_mask);
    for (std::size_t p = 0; p < pc.size(); ++p) {
      global[1] += pc[p] - static_cast<double>(rho_c[p]);
      global[2] += pr[p] - static_cast<double>(rho_r[p]);
    }
  }
  all_reduce(comm, std::span<double>(global));
  auto loss_options = options.loss;
  loss_options.mean_delta_chosen = global[1] / global[0];
  loss_options.mean_delta_rejected = global[2] / global[0];
  const loss::preference_normalizer norm{global[0], 0.0};

  std::vector<S> lp, grad;
  std::vector<double> chosen_rewards, rejected_rewards;
  // sums: loss, Σ β·Δc, Σ β·Δr, Σ [Δc > Δr]
  const auto t = run_micro_batches<4>(policy, optimizer, comm, options, pairs,
                                      [&](index_t p0, index_t p1, std::array<double, 4>& sums) {
    const sequence_slice cs = make_slice(data.chosen, p0, p1), rs = make_slice(data.rejected, p0, p1);
    const index_t nc = cs.token_end - cs.token_begin, nr = rs.token_end - rs.token_begin;
    owned_sequences both;  // [chosen pairs; rejected pairs], one forward
    both.tokens.assign(data.chosen.tokens.begin() + cs.token_begin, data.chosen.tokens.begin() + cs.token_end);
    both.tokens.insert(both.tokens.end(), data.rejected.tokens.begin() + rs.token_begin,
                       data.rejected.tokens.begin() + rs.token_end);
    both.seq_offsets = cs.offsets;
    for (std::size_t i = 1; i < rs.offsets.size(); ++i) both.seq_offsets.push_back(nc + rs.offsets[i]);
    const token_sequences view = both.view();
    lp.assign(both.tokens.size(), S(0));
    grad.assign(both.tokens.size(), S(0));
    policy_logprobs(policy, view, std::span<S>(lp), st, options.temperature);
    loss::preference_inputs<S> in;
    in.batch = {token_batch{cs.offsets, data.chosen_mask.subspan(cs.token_begin, nc)},
                token_batch{rs.offsets, data.rejected_mask.subspan(rs.token_begin, nr)}};
    in.chosen_logprobs = std::span<const S>(lp).first(nc);
    in.rejected_logprobs = std::span<const S>(lp).subspan(nc, nr);
    in.reference_chosen = std::span<const S>(rho_c).subspan(p0, p1 - p0);
    in.reference_rejected = std::span<const S>(rho_r).subspan(p0, p1 - p0);
    chosen_rewards.assign(static_cast<std::size_t>(p1 - p0), 0.0);
    rejected_rewards.assign(chosen_rewards.size(), 0.0);
    loss::preference_outputs<S> out;
    out.chosen_grad = std::span<S>(grad).first(nc);
    out.rejected_grad = std::span<S>(grad).subspan(nc, nr);
    out.chosen_rewards = chosen_rewards;
    out.rejected_rewards = rejected_rewards;
    const auto r = Loss::compute(exec::host{}, in, loss_options, out, norm);
    sums[0] += r.loss;
    for (std::size_t i = 0; i < chosen_rewards.size(); ++i) {
      sums[1] += chosen_rewards[i];
      sums[2] += rejected_rewards[i];
      sums[3] += chosen_rewards[i] > rejected_rewards[i] ? 1.0 : 0.0;
    }
    policy_backward(policy, view, st, std::span<const S>(grad), options.temperature);
  });
  kto_paired_metrics m;
  m.pairs = global[0];
  m.loss = t.sums[0];
  m.kl_chosen = std::max(*loss_options.mean_delta_chosen, 0.0);
  m.kl_rejected = std::max(*loss_options.mean_delta_rejected, 0.0);
  m.chosen_reward = t.sums[1] / m.pairs;
  m.rejected_reward = t.sums[2] / m.pairs;
  m.reward_margin = m.chosen_reward - m.rejected_reward;
  m.reward_accuracy = t.sums[3] / m.pairs;
  m.grad_norm = t.grad_norm;
  m.micro_batches = t.micro_batches;
  return m;
}

template <class Loss, policy P, reference_model R, class O>
kto_paired_metrics kto_paired_step(P& policy, R& reference, O& optimizer, const preference_data& data,
                                   const preference_step_options<Loss>& options = {}) {
  dist::single_process_communicator comm;
  return kto_paired_step<Loss>(policy, reference, optimizer, data, options, comm);
}

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
