#pragma once
// kto_paired_step: one update of paired ("vanilla") KTO, loss::kto_vanilla_paired (algo::
// kto_vanilla_paired; OpenRLHF VanillaKTOLoss): the pipeline has no step for it (preference_step
// takes the DPO family's results, kto_step the unpaired rows), so the trainer runs this one, built
// from the pipeline's step pieces like preference_step:
//
//   ρ_c, ρ_r = Σ mask·(reference ℓ) per chosen / rejected sequence       (whole batch, before any write)
//   Δc, Δr   = Σ mask·(policy ℓ) − ρ with the step's parameters        (forward only, no gradient)
//   KL_c = max(Σ_ranks Σ_p Δc / Σ_ranks P, 0), KL_r likewise            (one all-reduce of (P, ΣΔc, ΣΔr))
//   for each micro-batch: one forward over [chosen; rejected], loss::kto_vanilla_paired::compute with
//     those KL_c, KL_r (options.mean_delta_*) and normaliser P = the global pair count, backward
//   all-reduce gradients; clip; optimizer.step
//
// The reference points are batch statistics (detached, as in OpenRLHF), computed once per step from
// every pair of every rank before the micro-batch loop: so micro-batches and ranks give the
// full-batch update exactly (the loss computed per micro-batch alone would use the micro-batch's
// local means). The cost is one extra policy forward per step.
//   L_c = 1 − σ(β(Δc − KL_r)),  L_r = 1 − σ(β(KL_c − Δr)),  loss = Σ_p (L_c + L_r) / (2P)
#include <array>
#include <span>
#include <vector>

#include <posttrain/algo.hpp>
#include <posttrain/backend/cpu/preference.hpp>
#include <posttrain/pipeline.hpp>

#include "common.hpp"

namespace reference_trainer::stages {

struct kto_paired_metrics {
  double loss = 0;
  double kl_chosen = 0, kl_rejected = 0;             // KL_c, KL_r used (global)
  double chosen_reward = 0, rejected_reward = 0;     // global means of β·Δc, β·Δr
  double reward_margin = 0, reward_accuracy = 0;     // mean β(Δc − Δr), fraction Δc > Δr
  double pairs = 0, grad_norm = 0;
};

template <class P, class R, class O, class C>
kto_paired_metrics kto_paired_step(
    P& policy, R& reference, O& optimizer, const posttrain::pipeline::preference_data& data,
    const posttrain::pipeline::preference_step_options<posttrain::algo::kto_vanilla_paired>& options,
    C& comm) {
  namespace pp = posttrain::pipeline;
  using T = typename P::scalar_type;
  using loss_t = posttrain::algo::kto_vanilla_paired;
  constexpr const char* where = "kto_paired_step";
  const auto v = policy.vocab_size();
  data.chosen.validate(where, "data.chosen", v);
  data.rejected.validate(where, "data.rejected", v);
  const auto pairs = data.chosen.num_sequences();
  posttrain::expect(pairs > 0, where, "data.chosen is empty, expected at least one pair");
  posttrain::expect(data.rejected.num_sequences() == pairs, where, "data.rejected has ",
                    data.rejected.num_sequences(), " sequences, expected ", pairs);
  pp::detail::expect_token_aligned_mask(data.chosen_mask, data.chosen, where, "data.chosen_mask");
  pp::detail::expect_token_aligned_mask(data.rejected_mask, data.rejected, where, "data.rejected_mask");
  pp::validate_step_options(options, where);

  // Summed masked log-probs of every sequence of `s` (the loss's own reduction).
  const auto sums = [](const pp::token_sequences& s, std::span<const T> lp, std::span<const float> mask) {
    std::vector<double> out;
    for (index_t b = 0; b < s.num_sequences(); ++b)
      out.push_back(posttrain::backend::cpu::masked_sum(lp, mask, s.seq_offsets[b], s.seq_offsets[b + 1]).sum);
    return out;
  };
  std::vector<T> ref_c(data.chosen.tokens.size(), T(0)), ref_r(data.rejected.tokens.size(), T(0));
  reference.logprobs(data.chosen, std::span<T>(ref_c));
  reference.logprobs(data.rejected, std::span<T>(ref_r));
  std::vector<T> rho_c, rho_r;
  for (double x : sums(data.chosen, ref_c, data.chosen_mask)) rho_c.push_back(static_cast<T>(x));
  for (double x : sums(data.rejected, ref_r, data.rejected_mask)) rho_r.push_back(static_cast<T>(x));

  // The reference points: Δ means over the global batch, with the step's parameters.
  pp::forward_state<T> st;
  std::array<double, 3> global{static_cast<double>(pairs), 0, 0};  // P, ΣΔc, ΣΔr
  {
    std::vector<T> lp_c(data.chosen.tokens.size(), T(0)), lp_r(data.rejected.tokens.size(), T(0));
    pp::policy_logprobs(policy, data.chosen, std::span<T>(lp_c), st, options.temperature);
    pp::policy_logprobs(policy, data.rejected, std::span<T>(lp_r), st, options.temperature);
    const auto pc = sums(data.chosen, lp_c, data.chosen_mask), pr = sums(data.rejected, lp_r, data.rejected_mask);
    for (std::size_t p = 0; p < pc.size(); ++p) {
      global[1] += pc[p] - static_cast<double>(rho_c[p]);
      global[2] += pr[p] - static_cast<double>(rho_r[p]);
    }
  }
  pp::all_reduce(comm, std::span<double>(global));
  auto lo = options.loss;
  lo.mean_delta_chosen = global[1] / global[0];
  lo.mean_delta_rejected = global[2] / global[0];
  const posttrain::loss::preference_normalizer norm{global[0], 0.0};

  // sums: loss, Σ β·Δc, Σ β·Δr, Σ [Δc > Δr]
  std::vector<T> lp, grad;
  const auto t = pp::run_micro_batches<4>(policy, optimizer, comm, options, pairs,
                                          [&](index_t p0, index_t p1, std::array<double, 4>& s) {
    const pp::sequence_slice cs = pp::make_slice(data.chosen, p0, p1), rs = pp::make_slice(data.rejected, p0, p1);
    const index_t nc = cs.token_end - cs.token_begin, nr = rs.token_end - rs.token_begin;
    pp::owned_sequences both;  // [chosen pairs; rejected pairs], one forward
    both.tokens.assign(data.chosen.tokens.begin() + cs.token_begin, data.chosen.tokens.begin() + cs.token_end);
    both.tokens.insert(both.tokens.end(), data.rejected.tokens.begin() + rs.token_begin,
                       data.rejected.tokens.begin() + rs.token_end);
    both.seq_offsets = cs.offsets;
    for (std::size_t i = 1; i < rs.offsets.size(); ++i) both.seq_offsets.push_back(nc + rs.offsets[i]);
    const pp::token_sequences view = both.view();
    lp.assign(both.tokens.size(), T(0));
    grad.assign(both.tokens.size(), T(0));
    pp::policy_logprobs(policy, view, std::span<T>(lp), st, options.temperature);
    posttrain::loss::preference_inputs<T> in;
    in.batch = {posttrain::token_batch{cs.offsets, data.chosen_mask.subspan(cs.token_begin, nc)},
                posttrain::token_batch{rs.offsets, data.rejected_mask.subspan(rs.token_begin, nr)}};
    in.chosen_logprobs = std::span<const T>(lp).first(nc);
    in.rejected_logprobs = std::span<const T>(lp).subspan(nc, nr);
    in.reference_chosen = std::span<const T>(rho_c).subspan(p0, p1 - p0);
    in.reference_rejected = std::span<const T>(rho_r).subspan(p0, p1 - p0);
    std::vector<double> cr(static_cast<std::size_t>(p1 - p0)), rr(cr.size());
    posttrain::loss::preference_outputs<T> out;
    out.chosen_grad = std::span<T>(grad).first(nc);
    out.rejected_grad = std::span<T>(grad).subspan(nc, nr);
    out.chosen_rewards = cr;
    out.rejected_rewards = rr;
    const auto r = loss_t::compute(posttrain::exec::host{}, in, lo, out, norm);
    s[0] += r.loss;
    for (std::size_t i = 0; i < cr.size(); ++i) {
      s[1] += cr[i];
      s[2] += rr[i];
      s[3] += cr[i] > rr[i] ? 1.0 : 0.0;
    }
    pp::policy_backward(policy, view, st, std::span<const T>(grad), options.temperature);
  });
  kto_paired_metrics m;
  m.pairs = global[0];
  m.loss = t.sums[0];
  m.kl_chosen = std::max(*lo.mean_delta_chosen, 0.0);
  m.kl_rejected = std::max(*lo.mean_delta_rejected, 0.0);
  m.chosen_reward = t.sums[1] / m.pairs;
  m.rejected_reward = t.sums[2] / m.pairs;
  m.reward_margin = m.chosen_reward - m.rejected_reward;
  m.reward_accuracy = t.sums[3] / m.pairs;
  m.grad_norm = t.grad_norm;
  return m;
}

}  // namespace reference_trainer::stages
