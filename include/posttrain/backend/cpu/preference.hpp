#pragma once
// CPU loops of loss::preference, loss::alphapo and loss::sequence_scores (front ends:
// loss/preference.hpp, loss/alphapo.hpp, which validate every argument before calling here).
// Sequential over pairs, token sums in double in a fixed order, so results are deterministic.
// Masked tokens (m = 0) never reach a sum or a gradient: their log-probs may be NaN.
//
// Token sums (masked_sum) run in sum_lanes = 8 independent double accumulators: token k of a
// range [begin, end) goes to lane k mod 8 for the first 8·floor(n/8) tokens and the remaining
// n mod 8 tokens to lanes 0, 1, ...; the lanes are combined as ((0+1)+(2+3))+((4+5)+(6+7)). The
// order depends only on the range (not on its address, alignment, the ISA or the thread); the SSE2
// loop and the portable loop give the same bits. Against a left-to-right sum this is a
// reassociation only: every term m·ℓ is the same double as before (for float ℓ it is exact).
// Independent lanes and branch-free selects (backend/cpu/mask_bits.hpp) are what let the loops
// vectorize; GCC does not reassociate a single double accumulator.
//
// Per-pair links write each pair's token gradients right after its sums, while its rows are still
// in L1, so this loop reads each mask from memory once; batch-sorted links (pref::aot*) need every
// pair's key first and write the gradients in a second pass.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "posttrain/backend/cpu/mask_bits.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/batch.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/loss/preference_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

inline constexpr index_t sum_lanes = 8;

// S = Σ m·ℓ and W = Σ m over tokens [begin, end); an empty mask weighs every token 1.
struct masked_sums {
  double sum = 0;
  double weight = 0;
};

namespace detail {

// The fixed combination tree of the lanes.
POSTTRAIN_FORCEINLINE double combine_lanes(const double* v) {
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

// One masked token into lane j: s += m·(m != 0 ? x : 0), w += m.
template <class T>
POSTTRAIN_FORCEINLINE void masked_term(T x, float m, double& s, double& w) {
  const double md = static_cast<double>(m);
  s += md * static_cast<double>(mask_bits::select(x, mask_bits::keep<T>(m)));
  w += md;
}

// Lanes s[8], w[8] over the first `body` (a multiple of 8) tokens of x, m.
template <class T>
void masked_lanes(const T* x, const float* m, index_t body, double* s, double* w) {
  for (index_t i = 0; i < body; i += sum_lanes)
    for (index_t j = 0; j < sum_lanes; ++j) masked_term(x[i + j], m[i + j], s[j], w[j]);
}

#if defined(__SSE2__)
// float log-probs: lanes {0,1} {2,3} {4,5} {6,7} in four __m128d each for S and W, the mask test
// in float lanes (x is ANDed to +0 where m == 0 before it is widened). Same lanes, same operations
// and same order as the portable loop, so the same bits. GCC leaves that loop scalar (~2x slower).
template <>
inline void masked_lanes<float>(const float* x, const float* m, index_t body, double* s,
                                double* w) {
  const __m128 zero = _mm_setzero_ps();
  __m128d s0 = _mm_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
  __m128d w0 = s0, w1 = s0, w2 = s0, w3 = s0;
  for (index_t i = 0; i < body; i += 8) {
    const __m128 ma = _mm_loadu_ps(m + i);
    const __m128 mb = _mm_loadu_ps(m + i + 4);
    const __m128 xa = _mm_and_ps(_mm_loadu_ps(x + i), _mm_cmpneq_ps(ma, zero));
    const __m128 xb = _mm_and_ps(_mm_loadu_ps(x + i + 4), _mm_cmpneq_ps(mb, zero));
    const __m128d ma0 = _mm_cvtps_pd(ma), ma1 = _mm_cvtps_pd(_mm_movehl_ps(ma, ma));
    const __m128d mb0 = _mm_cvtps_pd(mb), mb1 = _mm_cvtps_pd(_mm_movehl_ps(mb, mb));
    s0 = _mm_add_pd(s0, _mm_mul_pd(ma0, _mm_cvtps_pd(xa)));
    s1 = _mm_add_pd(s1, _mm_mul_pd(ma1, _mm_cvtps_pd(_mm_movehl_ps(xa, xa))));
    s2 = _mm_add_pd(s2, _mm_mul_pd(mb0, _mm_cvtps_pd(xb)));
    s3 = _mm_add_pd(s3, _mm_mul_pd(mb1, _mm_cvtps_pd(_mm_movehl_ps(xb, xb))));
    w0 = _mm_add_pd(w0, ma0);
    w1 = _mm_add_pd(w1, ma1);
    w2 = _mm_add_pd(w2, mb0);
    w3 = _mm_add_pd(w3, mb1);
  }
  _mm_storeu_pd(s, s0);
  _mm_storeu_pd(s + 2, s1);
  _mm_storeu_pd(s + 4, s2);
  _mm_storeu_pd(s + 6, s3);
  _mm_storeu_pd(w, w0);
  _mm_storeu_pd(w + 2, w1);
  _mm_storeu_pd(w + 4, w2);
  _mm_storeu_pd(w + 6, w3);
}
#endif

}  // namespace detail

template <class T>
masked_sums masked_sum(std::span<const T> values, std::span<const float> mask, index_t begin,
                       index_t end) {
  constexpr index_t L = sum_lanes;
  const T* x = values.data() + begin;
  const index_t n = end - begin;
  const index_t body = n - n % L;
  double s[L] = {}, w[L] = {};
  if (mask.empty()) {
    for (index_t i = 0; i < body; i += L)
      for (index_t j = 0; j < L; ++j) s[j] += static_cast<double>(x[i + j]);
    for (index_t i = body; i < n; ++i) s[i - body] += static_cast<double>(x[i]);
    return {detail::combine_lanes(s), static_cast<double>(n)};
  }
  const float* m = mask.data() + begin;
  detail::masked_lanes(x, m, body, s, w);
  for (index_t i = body; i < n; ++i) detail::masked_term(x[i], m[i], s[i - body], w[i - body]);
  return {detail::combine_lanes(s), detail::combine_lanes(w)};
}

// grad[t] = m_t·scale over [begin, end); exactly +0 where m_t = 0 (whatever scale is).
template <class T>
void write_masked(std::span<T> grad, std::span<const float> mask, index_t begin, index_t end,
                  double scale) {
  T* g = grad.data();
  if (mask.empty()) {
    std::fill(g + begin, g + end, static_cast<T>(scale));
    return;
  }
  const float* m = mask.data();
  for (index_t t = begin; t < end; ++t)
    g[t] = mask_bits::select(static_cast<T>(static_cast<double>(m[t]) * scale),
                             mask_bits::keep<T>(m[t]));
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

// Number of tokens with m_t != 0 in [begin, end) (LD-DPO counts positions; validated masks are
// >= 0, so this is the count of m_t > 0).
inline index_t nonzero_count(std::span<const float> mask, index_t begin, index_t end) {
  if (mask.empty()) return end - begin;
  index_t n = 0;
  for (index_t t = begin; t < end; ++t) n += mask_bits::nonzero(mask[t]) ? 1 : 0;
  return n;
}

// The end of LD-DPO's shared part: the position after the `shared`-th token with m != 0 in
// [begin, end) (begin when shared = 0, end when the range has no more than `shared` of them).
// Masked tokens between the two parts count for neither.
inline index_t nonzero_prefix_end(std::span<const float> mask, index_t begin, index_t end,
                                  index_t shared) {
  if (shared <= 0) return begin;
  if (mask.empty()) return std::min(end, begin + shared);
  index_t seen = 0;
  for (index_t t = begin; t < end; ++t) {
    seen += mask_bits::nonzero(mask[t]) ? 1 : 0;
    if (seen == shared) return t + 1;
  }
  return end;
}

// LD-DPO split of one sequence: the shared part [begin, split) and the tail [split, end).
struct ld_split {
  index_t split = 0;
  masked_sums shared, tail;
  double score(double alpha) const { return shared.sum + alpha * tail.sum; }
  // S and W of the whole sequence (for the NLL term): the two parts' sums added.
  masked_sums whole() const { return {shared.sum + tail.sum, shared.weight + tail.weight}; }
};

template <class T>
ld_split ld_sums(std::span<const T> values, std::span<const float> mask, index_t begin, index_t end,
                 index_t shared) {
  ld_split r;
  r.split = nonzero_prefix_end(mask, begin, end, shared);
  r.shared = masked_sum(values, mask, begin, r.split);
  r.tail = masked_sum(values, mask, r.split, end);
  return r;
}

// LD-DPO scores of one side for every pair (used for reference scores): shared + α·tail.
template <class T>
void ld_sequence_scores(std::span<const T> values, const token_batch& side,
                        const token_batch& other, double alpha, std::span<T> scores) {
  const index_t n = side.num_sequences();
  for (index_t p = 0; p < n; ++p) {
    const index_t b = side.seq_offsets[p], e = side.seq_offsets[p + 1];
    const index_t shared =
        std::min(nonzero_count(side.mask, b, e),
                 nonzero_count(other.mask, other.seq_offsets[p], other.seq_offsets[p + 1]));
    scores[p] = static_cast<T>(ld_sums(values, side.mask, b, e, shared).score(alpha));
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

// ∂loss/∂u of one pair (before the pair normaliser), du/dπ, the plain mask weights and, for LD,
// where each side's shared part ends: all the token gradients of the pair need.
struct pair_gradient {
  double d_c = 0, d_r = 0, du_c = 1, du_r = 1, w_c = 0, w_r = 0;
  index_t split_c = 0, split_r = 0;
};

// The scratch of the pair loop for P pairs: nothing for per-pair links; for batch-sorted links
// (pref::is_batch_sorted_v) every pair's gradient state, the two key arrays and their two sort
// orders, taken in this order from the caller's workspace.
template <class Link>
workspace_size preference_workspace_bytes(index_t pairs) {
  workspace_size size;
  if constexpr (pref::is_batch_sorted_v<Link>) {
    const auto n = static_cast<std::size_t>(pairs);
    size.add<pair_gradient>(n).add<double>(n).add<double>(n).add<index_t>(n).add<index_t>(n);
  }
  return size;
}

// The one pair loop of every loss::preference composition (and loss::alphapo,
// loss::bco_pair_running_mean). Links that read the lengths (pref::uses_lengths_v) get the mask
// weights W_c, W_r of the pair's masked sums. pair_normalizer /
// token_normalizer are the resolved divisors (> 0, or 0 when there is nothing to divide: then that
// term is 0); nll_coef is the resolved NLL weight.
//   Per pair: sequence scores (SeqReduce, or LD's paired split), transform, log-ratios, rewards,
//     NLL; for per-pair links the link value, ∂loss/∂π (times the pair weight) and at once the
//     pair's token gradients (∂loss/∂π · du/dπ · ∂π/∂ℓ_t, plus the NLL part).
//   Batch-sorted links (pref::aot*): then sort the keys, evaluate per rank, route the derivatives
//     back to the pairs that held the keys, and write the token gradients in a second pass.
template <class Link, class SeqReduce, class Reference, class Nll, class T,
          class Transform = identity_score>
loss::preference_result preference(const loss::preference_inputs<T>& in,
                                   const loss::preference_options& options,
                                   const pref::link_options_t<Link>& link_options,
                                   const loss::preference_outputs<T>& out, double pair_normalizer,
                                   double token_normalizer, double nll_coef_resolved,
                                   workspace ws, const Transform& transform = {}) {
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

  // Token gradients of pair p: m_t times the pair's scale per side (LD: one scale for the shared
  // part, one for the tail).
  auto write_gradients = [&](index_t p, const pair_gradient& g) {
    const index_t c0 = chosen.seq_offsets[p], c1 = chosen.seq_offsets[p + 1];
    const index_t r0 = rejected.seq_offsets[p], r1 = rejected.seq_offsets[p + 1];
    const double gc = g.d_c * g.du_c * inv_pairs;
    const double gr = g.d_r * g.du_r * inv_pairs;
    double nll_scale = 0;
    if constexpr (Nll::enabled) nll_scale = nll_coef * inv_nll * Nll::token_scale(g.w_c);
    if constexpr (ld) {
      if (!out.chosen_grad.empty()) {
        write_masked(out.chosen_grad, chosen.mask, c0, g.split_c, gc + nll_scale);
        write_masked(out.chosen_grad, chosen.mask, g.split_c, c1, ld_alpha * gc + nll_scale);
      }
      if (!out.rejected_grad.empty()) {
        write_masked(out.rejected_grad, rejected.mask, r0, g.split_r, gr);
        write_masked(out.rejected_grad, rejected.mask, g.split_r, r1, ld_alpha * gr);
      }
    } else {
      if (!out.chosen_grad.empty())
        write_masked(out.chosen_grad, chosen.mask, c0, c1,
                     gc * SeqReduce::token_scale(g.w_c) + nll_scale);
      if (!out.rejected_grad.empty())
        write_masked(out.rejected_grad, rejected.mask, r0, r1, gr * SeqReduce::token_scale(g.w_r));
    }
  };

  // Batch-sorted links keep every pair's gradient state for the second pass (caller scratch,
  // preference_workspace_bytes: taken before any output is written).
  constexpr std::string_view where = "loss::preference (pair loop)";
  const std::span<pair_gradient> kept = ws.take<pair_gradient>(sorted ? P : 0, where);
  const std::span<double> key_a = ws.take<double>(sorted ? P : 0, where);
  const std::span<double> key_b = ws.take<double>(sorted ? P : 0, where);
  const std::span<index_t> pa = ws.take<index_t>(sorted ? P : 0, where);
  const std::span<index_t> pb = ws.take<index_t>(sorted ? P : 0, where);

  double loss_sum = 0, nll_sum = 0;
  double chosen_reward_sum = 0, rejected_reward_sum = 0, correct = 0;
  for (index_t p = 0; p < pairs; ++p) {
    const index_t c0 = chosen.seq_offsets[p], c1 = chosen.seq_offsets[p + 1];
    const index_t r0 = rejected.seq_offsets[p], r1 = rejected.seq_offsets[p + 1];
    pair_gradient g;
    masked_sums sc, sr;
    double pi_c, pi_r;
    if constexpr (ld) {
      const index_t shared =
          std::min(nonzero_count(chosen.mask, c0, c1), nonzero_count(rejected.mask, r0, r1));
      const ld_split lc = ld_sums(in.chosen_logprobs, chosen.mask, c0, c1, shared);
      const ld_split lr = ld_sums(in.rejected_logprobs, rejected.mask, r0, r1, shared);
      sc = lc.whole();
      sr = lr.whole();
      g.split_c = lc.split;
      g.split_r = lr.split;
      pi_c = lc.score(ld_alpha);
      pi_r = lr.score(ld_alpha);
    } else {
      sc = masked_sum(in.chosen_logprobs, chosen.mask, c0, c1);
      sr = masked_sum(in.rejected_logprobs, rejected.mask, r0, r1);
      pi_c = SeqReduce::score(sc.sum, sc.weight);
      pi_r = SeqReduce::score(sr.sum, sr.weight);
    }
    g.w_c = sc.weight;
    g.w_r = sr.weight;
    const score_derivative uc = transform(pi_c), ur = transform(pi_r);
    g.du_c = uc.du;
    g.du_r = ur.du;
    double delta_c = uc.u, delta_r = ur.u;
    double ref_c = 0, ref_r = 0;
    if constexpr (Reference::uses_reference) {
      ref_c = static_cast<double>(in.reference_chosen[p]);
      ref_r = static_cast<double>(in.reference_rejected[p]);
      delta_c -= ref_c;
      delta_r -= ref_r;
    }
    if constexpr (sorted) {
      const auto i = static_cast<std::size_t>(p);
      if constexpr (Link::batch_sort == pref::batch_sort_keys::margins) {
        key_a[i] = uc.u - ur.u;
        key_b[i] = ref_c - ref_r;
      } else {
        key_a[i] = delta_c;
        key_b[i] = delta_r;
      }
      kept[i] = g;
    } else {
      pref::pair_value<double> v;
      if constexpr (pref::uses_lengths_v<Link>)
        v = pref::link_call::evaluate<Link>(delta_c, delta_r, sc.weight, sr.weight, options,
                                            link_options);
      else
        v = pref::link_call::evaluate<Link>(delta_c, delta_r, options, link_options);
      const double w = in.pair_weights.empty() ? 1.0 : in.pair_weights[p];
      loss_sum += w * v.loss;
      g.d_c = w * v.d_chosen;
      g.d_r = w * v.d_rejected;
      if (!out.pair_losses.empty()) out.pair_losses[p] = w * v.loss;
      if (want_grad) write_gradients(p, g);
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
    // NaN keys sort last; a strict weak order for every double. Ties are broken by the pair
    // index, which gives stable_sort's order without its temporary buffer (std::sort allocates
    // nothing).
    auto less = [](double x, double y) { return !std::isnan(x) && (std::isnan(y) || x < y); };
    auto by_key_then_index = [&](std::span<const double> key) {
      return [key, less](index_t x, index_t y) {
        const double kx = key[static_cast<std::size_t>(x)], ky = key[static_cast<std::size_t>(y)];
        return less(kx, ky) || (!less(ky, kx) && x < y);
      };
    };
    std::iota(pa.begin(), pa.end(), index_t(0));
    std::iota(pb.begin(), pb.end(), index_t(0));
    std::sort(pa.begin(), pa.end(), by_key_then_index(key_a));
    std::sort(pb.begin(), pb.end(), by_key_then_index(key_b));
    for (std::size_t k = 0; k < P; ++k) {
      const auto a = static_cast<std::size_t>(pa[k]), b = static_cast<std::size_t>(pb[k]);
      const pref::pair_value<double> v =
          pref::link_call::evaluate<Link>(key_a[a], key_b[b], options, link_options);
      loss_sum += v.loss;
      if (!out.pair_losses.empty()) out.pair_losses[static_cast<index_t>(k)] = v.loss;
      if constexpr (Link::batch_sort == pref::batch_sort_keys::margins) {
        kept[a].d_c += v.d_chosen;  // a = u_c − u_r; the reference margin b has no gradient
        kept[a].d_r -= v.d_chosen;
      } else {
        kept[a].d_c += v.d_chosen;
        kept[b].d_r += v.d_rejected;
      }
    }
    if (want_grad)
      for (index_t p = 0; p < pairs; ++p) write_gradients(p, kept[static_cast<std::size_t>(p)]);
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

// The host backend of the preference family (loss/preference_types.hpp).
template <>
struct loss::preference_backend<exec::host> {
  static constexpr bool available = true;
  template <class Link, class SeqReduce, class Reference, class Nll, class T,
            class Transform = backend::cpu::identity_score>
  static loss::preference_result pair_loop(exec::host, const loss::preference_inputs<T>& in,
                                           const loss::preference_options& options,
                                           const pref::link_options_t<Link>& link_options,
                                           const loss::preference_outputs<T>& out,
                                           double pair_normalizer, double token_normalizer,
                                           double nll_coef, workspace ws,
                                           const Transform& transform = {}) {
    return backend::cpu::preference<Link, SeqReduce, Reference, Nll>(
        in, options, link_options, out, pair_normalizer, token_normalizer, nll_coef, ws,
        transform);
  }
  // Bytes of the workspace pair_loop needs for P pairs (0 unless Link is batch-sorted).
  template <class Link>
  static std::size_t workspace_bytes(exec::host, index_t pairs) {
    return backend::cpu::preference_workspace_bytes<Link>(pairs);
  }
};

POSTTRAIN_NAMESPACE_END
