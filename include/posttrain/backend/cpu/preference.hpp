#pragma once
// CPU loops of loss::preference, loss::alphapo and loss::sequence_scores (front ends:
// loss/preference.hpp, loss/alphapo.hpp, which validate every argument before calling here).
// Sequential over pairs and tokens, token sums in double, so results are deterministic. Masked
// tokens (m = 0) are never read.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/batch.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/loss/preference/aot.hpp"
#include "posttrain/loss/preference/link.hpp"
#include "posttrain/loss/preference/parts.hpp"
#include "posttrain/loss/sequence_reduce.hpp"

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

// Number of tokens with m_t > 0 in [begin, end) (LD-DPO counts positions).
inline index_t positive_count(std::span<const float> mask, index_t begin, index_t end) {
  if (mask.empty()) return end - begin;
  index_t n = 0;
  for (index_t t = begin; t < end; ++t) n += mask[t] > 0.0f ? 1 : 0;
  return n;
}

// LD-DPO split sums: the first `shared` tokens with m > 0 form the shared part, the rest the tail.
struct split_sums {
  double shared = 0;
  double tail = 0;
};

template <class T>
split_sums ld_sums(std::span<const T> values, std::span<const float> mask, index_t begin,
                   index_t end, index_t shared) {
  split_sums r;
  index_t seen = 0;
  for (index_t t = begin; t < end; ++t) {
    const double m = mask.empty() ? 1.0 : static_cast<double>(mask[t]);
    if (m == 0.0) continue;
    (seen < shared ? r.shared : r.tail) += m * static_cast<double>(values[t]);
    ++seen;
  }
  return r;
}

// grad[t] = m_t·(shared_scale for the first `shared` tokens with m > 0, else tail_scale).
template <class T>
void write_masked_split(std::span<T> grad, std::span<const float> mask, index_t begin, index_t end,
                        index_t shared, double shared_scale, double tail_scale) {
  index_t seen = 0;
  for (index_t t = begin; t < end; ++t) {
    const double m = mask.empty() ? 1.0 : static_cast<double>(mask[t]);
    if (m == 0.0) {
      grad[t] = T(0);
      continue;
    }
    grad[t] = static_cast<T>(m * (seen < shared ? shared_scale : tail_scale));
    ++seen;
  }
}

// LD-DPO scores of one side for every pair (used for reference scores): shared + α·tail.
template <class T>
void ld_sequence_scores(std::span<const T> values, const token_batch& side,
                        const token_batch& other, double alpha, std::span<T> scores) {
  const index_t n = side.num_sequences();
  for (index_t p = 0; p < n; ++p) {
    const index_t b = side.seq_offsets[p], e = side.seq_offsets[p + 1];
    const index_t shared =
        std::min(positive_count(side.mask, b, e),
                 positive_count(other.mask, other.seq_offsets[p], other.seq_offsets[p + 1]));
    const split_sums s = ld_sums(values, side.mask, b, e, shared);
    scores[p] = static_cast<T>(s.shared + alpha * s.tail);
  }
}

// The score transform between the sequence score and the log-ratio: u(π) and du/dπ. The identity
// for loss::preference; loss::alphapo passes its reward transform.
struct score_derivative {
  double u;
  double du;
};
struct identity_score {
  score_derivative operator()(double score) const { return {score, 1.0}; }
};

// The generic loop of every loss::preference composition (and loss::alphapo). pair_normalizer /
// token_normalizer are the resolved divisors (> 0, or 0 when there is nothing to divide: then that
// term is 0); nll_coef is the resolved NLL weight.
//   Pass 1, per pair: sequence scores (SeqReduce, or LD's paired split), transform, log-ratios,
//     rewards, NLL; for per-pair links the link value and ∂loss/∂π (times the pair weight).
//   Pass 1b, batch-sorted links (pref::aot*): sort the keys, evaluate per rank, route the
//     derivatives back to the pairs that held the keys.
//   Pass 2, per pair: the token gradients (∂loss/∂π · du/dπ · ∂π/∂ℓ_t, plus the NLL part).
template <class Link, class SeqReduce, class Reference, class Nll, class T,
          class Transform = identity_score>
loss::preference_result preference(const loss::preference_inputs<T>& in,
                                   const loss::preference_options& options,
                                   const loss::preference_outputs<T>& out, double pair_normalizer,
                                   double token_normalizer, double nll_coef_resolved,
                                   const Transform& transform = {}) {
  constexpr bool ld = seq::is_length_desensitized_v<SeqReduce>;
  constexpr bool sorted = pref::is_batch_sorted_v<Link>;
  const token_batch& chosen = in.batch.chosen;
  const token_batch& rejected = in.batch.rejected;
  const index_t pairs = in.batch.num_pairs();
  const auto P = static_cast<std::size_t>(pairs);
  const double inv_pairs = pair_normalizer > 0 ? 1.0 / pair_normalizer : 0.0;
  const double nll_divisor = Nll::divides_by_tokens ? token_normalizer : pair_normalizer;
  const double inv_nll = nll_divisor > 0 ? 1.0 / nll_divisor : 0.0;
  const double nll_coef = Nll::enabled ? nll_coef_resolved : 0.0;
  const double beta = options.beta;
  const double ld_alpha = ld ? options.ld_alpha : 1.0;
  const bool want_grad = !out.chosen_grad.empty() || !out.rejected_grad.empty();

  // Per pair: ∂loss/∂u (before the pair normaliser), du/dπ, plain mask weights, LD shared length.
  std::vector<double> d_c(P, 0.0), d_r(P, 0.0), du_c(P), du_r(P), w_c(P), w_r(P);
  std::vector<index_t> shared(ld ? P : 0);
  std::vector<double> key_a(sorted ? P : 0), key_b(sorted ? P : 0);

  double loss_sum = 0, nll_sum = 0;
  double chosen_reward_sum = 0, rejected_reward_sum = 0, correct = 0;
  for (index_t p = 0; p < pairs; ++p) {
    const auto i = static_cast<std::size_t>(p);
    const index_t c0 = chosen.seq_offsets[p], c1 = chosen.seq_offsets[p + 1];
    const index_t r0 = rejected.seq_offsets[p], r1 = rejected.seq_offsets[p + 1];
    const masked_sums sc = masked_sum(in.chosen_logprobs, chosen.mask, c0, c1);
    const masked_sums sr = masked_sum(in.rejected_logprobs, rejected.mask, r0, r1);
    w_c[i] = sc.weight;
    w_r[i] = sr.weight;
    double pi_c, pi_r;
    if constexpr (ld) {
      shared[i] =
          std::min(positive_count(chosen.mask, c0, c1), positive_count(rejected.mask, r0, r1));
      const split_sums lc = ld_sums(in.chosen_logprobs, chosen.mask, c0, c1, shared[i]);
      const split_sums lr = ld_sums(in.rejected_logprobs, rejected.mask, r0, r1, shared[i]);
      pi_c = lc.shared + ld_alpha * lc.tail;
      pi_r = lr.shared + ld_alpha * lr.tail;
    } else {
      pi_c = SeqReduce::score(sc.sum, sc.weight);
      pi_r = SeqReduce::score(sr.sum, sr.weight);
    }
    const score_derivative uc = transform(pi_c), ur = transform(pi_r);
    du_c[i] = uc.du;
    du_r[i] = ur.du;
    double delta_c = uc.u, delta_r = ur.u;
    double ref_c = 0, ref_r = 0;
    if constexpr (Reference::uses_reference) {
      ref_c = static_cast<double>(in.reference_chosen[p]);
      ref_r = static_cast<double>(in.reference_rejected[p]);
      delta_c -= ref_c;
      delta_r -= ref_r;
    }
    if constexpr (sorted) {
      if constexpr (Link::batch_sort == pref::batch_sort_keys::margins) {
        key_a[i] = uc.u - ur.u;
        key_b[i] = ref_c - ref_r;
      } else {
        key_a[i] = delta_c;
        key_b[i] = delta_r;
      }
    } else {
      const pref::pair_value<double> v = Link::evaluate(delta_c, delta_r, options);
      const double w = in.pair_weights.empty() ? 1.0 : in.pair_weights[p];
      loss_sum += w * v.loss;
      d_c[i] = w * v.d_chosen;
      d_r[i] = w * v.d_rejected;
      if (!out.pair_losses.empty()) out.pair_losses[p] = w * v.loss;
    }
    if constexpr (Nll::enabled) nll_sum += Nll::value(sc.sum, sc.weight);

    const double reward_c = beta * delta_c, reward_r = beta * delta_r;
    chosen_reward_sum += reward_c;
    rejected_reward_sum += reward_r;
    correct += reward_c > reward_r ? 1.0 : 0.0;
    if (!out.chosen_rewards.empty()) out.chosen_rewards[p] = reward_c;
    if (!out.rejected_rewards.empty()) out.rejected_rewards[p] = reward_r;
  }

  if constexpr (sorted) {
    // NaN keys sort last; a strict weak order for every double.
    auto less = [](double x, double y) { return !std::isnan(x) && (std::isnan(y) || x < y); };
    std::vector<index_t> pa(P), pb(P);
    std::iota(pa.begin(), pa.end(), index_t(0));
    std::iota(pb.begin(), pb.end(), index_t(0));
    std::stable_sort(pa.begin(), pa.end(), [&](index_t x, index_t y) {
      return less(key_a[static_cast<std::size_t>(x)], key_a[static_cast<std::size_t>(y)]);
    });
    std::stable_sort(pb.begin(), pb.end(), [&](index_t x, index_t y) {
      return less(key_b[static_cast<std::size_t>(x)], key_b[static_cast<std::size_t>(y)]);
    });
    for (std::size_t k = 0; k < P; ++k) {
      const auto a = static_cast<std::size_t>(pa[k]), b = static_cast<std::size_t>(pb[k]);
      const pref::pair_value<double> v = Link::evaluate(key_a[a], key_b[b], options);
      loss_sum += v.loss;
      if (!out.pair_losses.empty()) out.pair_losses[static_cast<index_t>(k)] = v.loss;
      if constexpr (Link::batch_sort == pref::batch_sort_keys::margins) {
        d_c[a] += v.d_chosen;  // a = u_c − u_r; the reference margin b has no gradient
        d_r[a] -= v.d_chosen;
      } else {
        d_c[a] += v.d_chosen;
        d_r[b] += v.d_rejected;
      }
    }
  }

  if (want_grad) {
    for (index_t p = 0; p < pairs; ++p) {
      const auto i = static_cast<std::size_t>(p);
      const index_t c0 = chosen.seq_offsets[p], c1 = chosen.seq_offsets[p + 1];
      const index_t r0 = rejected.seq_offsets[p], r1 = rejected.seq_offsets[p + 1];
      const double gc = d_c[i] * du_c[i] * inv_pairs;
      const double gr = d_r[i] * du_r[i] * inv_pairs;
      double nll_scale = 0;
      if constexpr (Nll::enabled) nll_scale = nll_coef * inv_nll * Nll::token_scale(w_c[i]);
      if constexpr (ld) {
        if (!out.chosen_grad.empty())
          write_masked_split(out.chosen_grad, chosen.mask, c0, c1, shared[i], gc + nll_scale,
                             ld_alpha * gc + nll_scale);
        if (!out.rejected_grad.empty())
          write_masked_split(out.rejected_grad, rejected.mask, r0, r1, shared[i], gr,
                             ld_alpha * gr);
      } else {
        if (!out.chosen_grad.empty())
          write_masked(out.chosen_grad, chosen.mask, c0, c1,
                       gc * SeqReduce::token_scale(w_c[i]) + nll_scale);
        if (!out.rejected_grad.empty())
          write_masked(out.rejected_grad, rejected.mask, r0, r1,
                       gr * SeqReduce::token_scale(w_r[i]));
      }
    }
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
