#pragma once
// CPU loops of loss::preference and loss::sequence_scores (front ends: loss/preference.hpp, which
// validates every argument before calling here). Sequential over pairs and tokens, token sums in
// double, so results are deterministic. Masked tokens (m = 0) are never read.
#include <span>

#include "posttrain/config.hpp"
#include "posttrain/core/batch.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/loss/preference/link.hpp"
#include "posttrain/loss/preference/parts.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

// S = Σ m·ℓ and W = Σ m over tokens [begin, end); an empty mask weighs every token 1.
struct masked_sums {
  double sum = 0;
  double weight = 0;
};

template <class T>
masked_sums masked_sum(std::span<const T> values, std::span<const float> mask, index_t begin,
                       index_t end) {
  masked_sums r;
  if (mask.empty()) {
    for (index_t t = begin; t < end; ++t) r.sum += static_cast<double>(values[t]);
    r.weight = static_cast<double>(end - begin);
    return r;
  }
  for (index_t t = begin; t < end; ++t) {
    const double m = static_cast<double>(mask[t]);
    if (m == 0.0) continue;
    r.sum += m * static_cast<double>(values[t]);
    r.weight += m;
  }
  return r;
}

// grad[t] = m_t·scale over [begin, end); exactly 0 where m_t = 0.
template <class T>
void write_masked(std::span<T> grad, std::span<const float> mask, index_t begin, index_t end,
                  double scale) {
  for (index_t t = begin; t < end; ++t) {
    const double m = mask.empty() ? 1.0 : static_cast<double>(mask[t]);
    grad[t] = m == 0.0 ? T(0) : static_cast<T>(m * scale);
  }
}

template <class SeqReduce, class T>
void sequence_scores(std::span<const T> token_logprobs, const token_batch& batch,
                     std::span<T> scores) {
  const index_t n = batch.num_sequences();
  for (index_t b = 0; b < n; ++b) {
    const masked_sums s =
        masked_sum(token_logprobs, batch.mask, batch.seq_offsets[b], batch.seq_offsets[b + 1]);
    scores[b] = static_cast<T>(SeqReduce::score(s.sum, s.weight));
  }
}

// pair_normalizer / token_normalizer are the resolved divisors (> 0, or 0 when there is nothing to
// divide: then that term is 0).
template <class Link, class SeqReduce, class Reference, class Nll, class T>
loss::preference_result preference(const loss::preference_inputs<T>& in,
                                   const loss::preference_options& options,
                                   const loss::preference_outputs<T>& out, double pair_normalizer,
                                   double token_normalizer) {
  const token_batch& chosen = in.batch.chosen;
  const token_batch& rejected = in.batch.rejected;
  const index_t pairs = in.batch.num_pairs();
  const double inv_pairs = pair_normalizer > 0 ? 1.0 / pair_normalizer : 0.0;
  const double nll_divisor = Nll::divides_by_tokens ? token_normalizer : pair_normalizer;
  const double inv_nll = nll_divisor > 0 ? 1.0 / nll_divisor : 0.0;
  const double nll_coef = Nll::enabled ? options.nll_coef : 0.0;
  const double beta = options.beta;

  double loss_sum = 0, nll_sum = 0;
  double chosen_reward_sum = 0, rejected_reward_sum = 0, correct = 0;
  for (index_t p = 0; p < pairs; ++p) {
    const index_t c0 = chosen.seq_offsets[p], c1 = chosen.seq_offsets[p + 1];
    const index_t r0 = rejected.seq_offsets[p], r1 = rejected.seq_offsets[p + 1];
    const masked_sums sc = masked_sum(in.chosen_logprobs, chosen.mask, c0, c1);
    const masked_sums sr = masked_sum(in.rejected_logprobs, rejected.mask, r0, r1);
    double delta_c = SeqReduce::score(sc.sum, sc.weight);
    double delta_r = SeqReduce::score(sr.sum, sr.weight);
    if constexpr (Reference::uses_reference) {
      delta_c -= static_cast<double>(in.reference_chosen[p]);
      delta_r -= static_cast<double>(in.reference_rejected[p]);
    }
    const pref::pair_value<double> v = Link::evaluate(delta_c, delta_r, options);
    loss_sum += v.loss;
    if constexpr (Nll::enabled) nll_sum += Nll::value(sc.sum, sc.weight);

    const double reward_c = beta * delta_c, reward_r = beta * delta_r;
    chosen_reward_sum += reward_c;
    rejected_reward_sum += reward_r;
    correct += reward_c > reward_r ? 1.0 : 0.0;
    if (!out.pair_losses.empty()) out.pair_losses[p] = v.loss;
    if (!out.chosen_rewards.empty()) out.chosen_rewards[p] = reward_c;
    if (!out.rejected_rewards.empty()) out.rejected_rewards[p] = reward_r;

    if (!out.chosen_grad.empty()) {
      double scale = v.d_chosen * inv_pairs * SeqReduce::token_scale(sc.weight);
      if constexpr (Nll::enabled) scale += nll_coef * inv_nll * Nll::token_scale(sc.weight);
      write_masked(out.chosen_grad, chosen.mask, c0, c1, scale);
    }
    if (!out.rejected_grad.empty())
      write_masked(out.rejected_grad, rejected.mask, r0, r1,
                   v.d_rejected * inv_pairs * SeqReduce::token_scale(sr.weight));
  }

  loss::preference_result r;
  r.preference_loss = loss_sum * inv_pairs;
  r.nll = nll_sum * inv_nll;
  r.loss = r.preference_loss + nll_coef * r.nll;
  if (pairs > 0) {
    const double n = static_cast<double>(pairs);
    r.chosen_reward = chosen_reward_sum / n;
    r.rejected_reward = rejected_reward_sum / n;
    r.reward_margin = (chosen_reward_sum - rejected_reward_sum) / n;
    r.reward_accuracy = correct / n;
  }
  return r;
}

}  // namespace backend::cpu

POSTTRAIN_NAMESPACE_END
