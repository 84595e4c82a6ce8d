#pragma once
// CPU loops of the KTO family (front end: loss/kto.hpp, which validates every argument and
// resolves the divisors before calling here). One pass over the examples (pairs), sums in double
// in index order: deterministic.
#include <algorithm>
#include <cstddef>

#include "posttrain/backend/cpu/preference.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/loss/kto_links.hpp"
#include "posttrain/loss/kto_types.hpp"
#include "posttrain/loss/preference_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

// loss::kto<Link, SeqReduce>: divisor = normalizer.examples, or the local B.
template <class Link, class SeqReduce, class T>
loss::kto_result kto(const loss::kto_inputs<T>& in, const loss::kto_options& o,
                     const loss::kto_outputs<T>& out, double divisor) {
  const index_t b = in.batch.num_sequences();
  const double inv = divisor > 0 ? 1.0 / divisor : 0.0;
  loss::kto_result r;
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

// loss::kto_vanilla_paired: pairs_divisor = normalizer.pairs, or the local P; the loss is
// Σ (L_c + L_r) / (2·pairs_divisor).
template <class T>
loss::kto_vanilla_result kto_vanilla_paired(const loss::preference_inputs<T>& in,
                                            const loss::kto_vanilla_options& o,
                                            const loss::preference_outputs<T>& out,
                                            double pairs_divisor) {
  const token_batch& c = in.batch.chosen;
  const token_batch& rj = in.batch.rejected;
  const index_t pairs = in.batch.num_pairs();
  const auto delta = [&](index_t p, bool chosen_side) {
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
  loss::kto_vanilla_result r;
  r.kl_chosen = std::max(o.mean_delta_chosen.value_or(pairs ? sum_c / n : 0.0), 0.0);
  r.kl_rejected = std::max(o.mean_delta_rejected.value_or(pairs ? sum_r / n : 0.0), 0.0);
  const double divisor = 2.0 * pairs_divisor;
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

}  // namespace backend::cpu

// The host backend of the KTO family (loss/kto_types.hpp).
template <>
struct loss::kto_backend<exec::host> {
  static constexpr bool available = true;
  template <class Link, class SeqReduce, class T>
  static loss::kto_result run(exec::host, const loss::kto_inputs<T>& in,
                              const loss::kto_options& options, const loss::kto_outputs<T>& out,
                              double examples_divisor) {
    return backend::cpu::kto<Link, SeqReduce>(in, options, out, examples_divisor);
  }
  template <class T>
  static loss::kto_vanilla_result run_vanilla_paired(exec::host,
                                                     const loss::preference_inputs<T>& in,
                                                     const loss::kto_vanilla_options& options,
                                                     const loss::preference_outputs<T>& out,
                                                     double pairs_divisor) {
    return backend::cpu::kto_vanilla_paired(in, options, out, pairs_divisor);
  }
};

POSTTRAIN_NAMESPACE_END
