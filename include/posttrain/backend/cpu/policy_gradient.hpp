#pragma once
// CPU loop of loss::policy_gradient (front end: loss/policy_gradient.hpp, which validates every
// argument first). One fused pass per row, no full-length scratch:
//   0. aggregation weights from the mask alone (fused_aggregate): dLoss/dL_t = m_t·scale_i;
//   1. sequence-level surrogates and the sequence KL correction: a pre-pass over the row for its
//      statistic (log-ratio sum via the surrogate's token_log_ratio / length_divisor, the row's IS
//      weight, the KL sequence ratio); per-token slopes and clip flags go to row-sized buffers;
//   2. per token: surrogate, detached IS weight, KL (optionally IS-corrected) and entropy terms
//      (entropy_aggregation::token_mean: the bonus is summed aside, its weights from a mask pass);
//      m·L_t into the aggregate, the statistics, and dLoss/dℓ_t = dLoss/dL_t·∂L_t/∂ℓ_t written
//      directly — or, when a row-level term follows (sequence gradients, sequence KL), kept in a
//      row buffer and written by
//   3. a pass over the row that adds the row term (dLoss/dlog s_i through each token's slope).
// The ratio e^{clamp(ℓ − ℓold)} of the token-level surrogates (clip, cispo, sapo, reinforce) is
// exped 512 tokens at a time with Eigen's vectorised exp before the branchy per-token pass
// (ratio_block: within 2 ulp of std::exp; subnormal, overflowing and non-finite arguments take
// std::exp), a sequence-level one's e^{log s_i} once per row. An in-loss k3 (and
// straight_through<k3>) is likewise evaluated 512 tokens at a time by kl_divergence's block kernel
// (backend/cpu/kl.hpp k3_block: vector exp, series/closed form as a select instead of an
// unpredictable branch; float tokens in float, as the scalar k3<float>). Each sum keeps the order of the
// unfused composition (per-token arrays, then aggregate_loss), so results equal it up to those
// last bits and FMA contraction (tests/loss/policy_gradient_fused.cpp). Sequential, sums in
// double: deterministic. Only the block exp and block k3 read ℓ, ℓold, ℓref at tokens with m = 0
// (never used).
// The pieces of steps 1 and 3 and the statistics are small functions of `detail` (the per-row
// loops sequence_row_statistic, kl_sequence_ratio, write_row_terms; pg_statistics): the row pass
// of step 2 stays one loop, where the mode flags are compile-time traits of the composition
// (sequence level, sequence gradient, weight use, given ratio, block k3) or per-call inputs.
#include <algorithm>
#include <cmath>
#include <span>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "posttrain/backend/cpu/fused_aggregate.hpp"
#include "posttrain/backend/cpu/kl.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/loss/policy_gradient/clip.hpp"
#include "posttrain/loss/policy_gradient_types.hpp"
#include "posttrain/ops/aggregate_types.hpp"
#include "posttrain/ops/kl_types.hpp"

// GCC 12.1/12.2 warn "__Y may be used uninitialized" inside their own AVX-512 intrinsics when
// Eigen's packet exp is inlined here (GCC bug 105593, fixed in 12.3), as in reward_model.hpp.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define POSTTRAIN_POLICY_GRADIENT_POP_DIAGNOSTIC
#endif

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

namespace detail {
template <class S>
constexpr bool pg_sequence_gradient() {
  if constexpr (S::sequence_level) return !S::token_gradient;
  return false;
}

// Surrogates whose evaluate is evaluate_ratio(logp, logr, e^{clamp(logr)}, A, options): the
// ratio's exp can be taken outside the token's evaluation.
template <class S>
concept pg_ratio_given = requires(float f, double d, const policy_gradient_options& o,
                                  const typename S::options& s) {
  { pg_surrogate_call::evaluate_ratio<S>(f, f, f, f, o, s) } -> std::same_as<pg_token<float>>;
  { pg_surrogate_call::evaluate_ratio<S>(d, d, d, d, o, s) } -> std::same_as<pg_token<double>>;
};

// Block exp of the token ratios r_t = e^{clamp(ℓ_t − ℓold_t)}: Eigen's packet exp (measured
// within 1.4 ulp for float, 1.65 ulp for double against a long-double exp, SSE2 and AVX-512).
// Outside [lo, hi] — subnormal results, the AVX-512 float path's early overflow above ≈ 88.4,
// ±inf, NaN — tokens fall back to surrogate::detail::ratio_exp (std::exp), exactly as before.
template <class T>
struct ratio_block {
  static constexpr std::size_t size = 512;
  static constexpr T lo = sizeof(T) == 4 ? T(-87) : T(-708);
  static constexpr T hi = sizeof(T) == 4 ? T(88) : T(709);
  Eigen::Array<T, Eigen::Dynamic, 1> log_ratio, ratio;

  void compute(const T* logp, const T* old, std::size_t k, T clamp_lo, T clamp_hi,
               const policy_gradient_options& o) {
    const auto n = static_cast<Eigen::Index>(k);
    if (ratio.size() < n) {
      log_ratio.resize(static_cast<Eigen::Index>(size));
      ratio.resize(static_cast<Eigen::Index>(size));
    }
    using map_t = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
    auto lr = log_ratio.head(n);
    auto r = ratio.head(n);
    lr = (map_t(logp, n) - map_t(old, n)).max(clamp_lo).min(clamp_hi);
    r = lr.exp();
    unsigned in_range = 1;  // branch-free, vectorised; NaN fails both compares
    for (Eigen::Index j = 0; j < n; ++j)
      in_range &= static_cast<unsigned>(::posttrain::detail::all_of_branchless(lr[j] >= lo, lr[j] <= hi));
    if (in_range != 0) return;
    for (Eigen::Index j = 0; j < n; ++j)
      if (!(lr[j] >= lo && lr[j] <= hi))
        r[j] = surrogate::detail::ratio_exp(static_cast<T>(logp[j] - old[j]), o);
  }
};

// Block k3 of d_t = ℓ_t − ℓref_t (kl_element::value_is_k3): value and gradient of up to `size`
// tokens through kl_divergence's k3 blocks (kl_detail::k3_block), read per token by the row pass.
template <class T>
struct k3_block_values {
  static constexpr std::size_t size = 512;
  std::vector<T> value, grad;

  template <class Element>
  void compute(const T* logp, const T* ref, std::size_t k, bool with_grad, const Element& el) {
    if (value.size() < size) {
      value.resize(size);
      grad.resize(size);
    }
    // float tokens in float: the arithmetic of the scalar k3<float> this replaces (the double
    // evaluation of kl_divergence's blocks would cost 3x here, where no memory traffic hides it)
    kl_detail::k3_blocks<T, Element, T>(logp, ref, k, value.data(),
                                        with_grad ? grad.data() : nullptr, el);
  }
};

// Part of the surrogate concept (surrogate::defaults supplies multiply).
template <class S>
constexpr pg_weight_use pg_weight_use_of() {
  return S::importance_weight_use;
}

// m_t (1 when the mask is empty) and the capped IS weight min(w_t, C).
inline double mask_weight(std::span<const float> mask, std::size_t t) {
  return mask.empty() ? 1.0 : static_cast<double>(mask[t]);
}
template <class T>
double capped_weight(std::span<const T> weights, std::size_t t, double cap) {
  const double w = static_cast<double>(weights[t]);
  return w > cap ? cap : w;
}

// The row statistic of a sequence-level surrogate: log s_i = Σ m·term / D_i (every token then
// sees log s_i), 1/D_i, and the geometric-mean IS weight of the row (sequence_geo_mean). Fills
// the per-token slopes (when the gradient is written) and clip flags of the row.
struct pg_row_statistic {
  double log_ratio = 0.0, inv_len = 0.0, weight = 1.0;
};

template <class Surrogate, class T>
pg_row_statistic sequence_row_statistic(const policy_gradient_inputs<T>& in,
                                        const policy_gradient_options& o,
                                        const typename Surrogate::options& so,
                                        const agg_options& agg_opts, std::size_t b, std::size_t e,
                                        bool write_grad, std::span<double> tok_slope,
                                        std::span<unsigned char> tok_flags) {
  constexpr pg_weight_use weight_use = pg_weight_use_of<Surrogate>();
  const bool has_w = !in.importance_weights.empty();
  double s = 0.0, len = 0.0, log_w = 0.0;
  for (std::size_t t = b; t < e; ++t) {
    const double m = mask_weight(in.mask, t);
    if (m == 0.0) continue;
    // the row statistic in double, as every reduction over tokens
    const pg_seq_token<double> q = pg_surrogate_call::token_log_ratio<Surrogate>(
        static_cast<double>(in.logprobs[t]) - static_cast<double>(in.old_logprobs[t]),
        static_cast<double>(in.advantages[t]), o, so);
    s += m * q.log_ratio;
    len += m;
    if constexpr (pg_sequence_gradient<Surrogate>())
      if (write_grad) tok_slope[t - b] = q.slope;
    tok_flags[t - b] = static_cast<unsigned char>((q.clipped ? 1 : 0) | (q.clipped_lower ? 2 : 0));
    if constexpr (weight_use == pg_weight_use::log_ratio_sum)
      if (has_w)
        s += Surrogate::importance_log_term(
            capped_weight(in.importance_weights, t, o.importance_weight_cap));
    if constexpr (weight_use == pg_weight_use::sequence_geo_mean)
      if (has_w)
        log_w += m * std::log(capped_weight(in.importance_weights, t, o.importance_weight_cap) +
                              1e-10);
  }
  pg_row_statistic r;
  const double d = Surrogate::length_divisor(len, agg_opts);
  r.inv_len = d > 0.0 ? 1.0 / d : 0.0;
  r.log_ratio = s * r.inv_len;
  if constexpr (weight_use == pg_weight_use::sequence_geo_mean)
    if (has_w) r.weight = std::exp(log_w * r.inv_len);
  return r;
}

// The IS-corrected KL's sequence ratio ρ_i = e^{clamp(Σ m·logr / max(Σ m, 1))} and its slope
// dρ_i/dℓ_u / m_u (0 where the clamp is active).
struct kl_row_ratio {
  double ratio = 1.0, slope = 0.0;
};

template <class T>
kl_row_ratio kl_sequence_ratio(const policy_gradient_inputs<T>& in,
                               const policy_gradient_options& o, std::size_t b, std::size_t e) {
  double s = 0.0, len = 0.0;
  for (std::size_t t = b; t < e; ++t) {
    const double m = mask_weight(in.mask, t);
    if (m == 0.0) continue;
    s += m * (static_cast<double>(in.logprobs[t]) - static_cast<double>(in.old_logprobs[t]));
    len += m;
  }
  const double inv = 1.0 / (len > 1.0 ? len : 1.0);
  const double lr = s * inv;
  const bool clamped = lr < o.log_ratio_min || o.log_ratio_max < lr;
  kl_row_ratio r;
  r.ratio = std::exp(clamped ? (lr < o.log_ratio_min ? o.log_ratio_min : o.log_ratio_max) : lr);
  r.slope = clamped ? 0.0 : r.ratio * inv;
  return r;
}

// The statistics of the result: masked token means over the call, each sum in token order.
struct pg_statistics {
  double sum_m = 0, sum_clip = 0, sum_clip_lower = 0, sum_kl = 0, sum_ratio = 0;
  double sum_kl_unclamped = 0;

  void add(double m, bool clipped, bool clipped_lower, double clamped_log_ratio,
           double log_ratio, double ratio) {
    sum_m += m;
    sum_clip += clipped ? m : 0.0;
    sum_clip_lower += clipped_lower ? m : 0.0;
    sum_kl -= m * clamped_log_ratio;
    sum_kl_unclamped -= m * log_ratio;
    sum_ratio += m * ratio;
  }
  void finish(policy_gradient_result& r) const {
    if (sum_m > 0) {
      r.clip_fraction = sum_clip / sum_m;
      r.clip_fraction_lower = sum_clip_lower / sum_m;
      r.approx_kl = sum_kl / sum_m;
      r.approx_kl_unclamped = sum_kl_unclamped / sum_m;
      r.mean_ratio = sum_ratio / sum_m;
    }
  }
};

// The row-level gradient terms, once the row's sums are known: a sequence-level surrogate's
// m_t·g_seq·slope_t (plus the token KL part kept in tok_part), or tok_part alone, plus the
// sequence-ratio KL's m_t·g_kl.
template <bool SeqGrad, bool HasKl, class T>
void write_row_terms(std::span<T> grad, std::span<const float> mask, std::size_t b, std::size_t e,
                     double g_seq, std::span<const double> tok_slope,
                     std::span<const double> tok_part, bool kl_seq_is, double g_kl) {
  for (std::size_t t = b; t < e; ++t) {
    const double m = mask_weight(mask, t);
    double g = 0.0;
    if constexpr (SeqGrad) {
      if (m != 0.0) g = m * g_seq * tok_slope[t - b];
      if constexpr (HasKl) g += tok_part[t - b];
    } else {
      g = tok_part[t - b];
    }
    if (kl_seq_is && m != 0.0) g += m * g_kl;
    grad[t] = static_cast<T>(g);
  }
}
}  // namespace detail

template <class Surrogate, class Kl, class Agg, class T>
policy_gradient_result policy_gradient(const policy_gradient_inputs<T>& in,
                                       const policy_gradient_options& o,
                                       const policy_gradient_outputs<T>& out,
                                       const agg_normalizer& norm, const agg_options& agg_opts,
                                       const typename Surrogate::options& so) {
  constexpr bool has_kl = !std::is_same_v<Kl, kl::none>;
  constexpr bool seq_level = Surrogate::sequence_level;
  constexpr bool seq_grad = detail::pg_sequence_gradient<Surrogate>();
  constexpr pg_weight_use weight_use = detail::pg_weight_use_of<Surrogate>();
  constexpr bool ratio_given = detail::pg_ratio_given<Surrogate>;
  const std::size_t n = in.logprobs.size();
  const std::size_t rows = in.seq_offsets.empty() ? 0 : in.seq_offsets.size() - 1;
  const bool has_old = !in.old_logprobs.empty();
  const bool has_entropy = !in.entropy.empty();
  const bool has_w = !in.importance_weights.empty();
  const bool has_entropy_mask = !in.entropy_mask.empty();
  // TRL's bonus: a token mean over m·e beside the aggregated loss, not part of L_t.
  const bool entropy_token_mean = o.entropy_agg == entropy_aggregation::token_mean;
  const bool kl_token_is = has_kl && o.kl_correction == kl_is_correction::token;
  const bool kl_seq_is = has_kl && o.kl_correction == kl_is_correction::sequence;
  const bool write_grad = !out.grad.empty();
  const bool write_entropy_grad = !out.entropy_grad.empty();
  const auto mask_at = [&](std::size_t t) { return detail::mask_weight(in.mask, t); };
  const auto weight_at = [&](std::size_t t) {
    return detail::capped_weight(in.importance_weights, t, o.importance_weight_cap);
  };
  const auto entropy_mask_at = [&](std::size_t t) {
    return has_entropy_mask ? static_cast<double>(in.entropy_mask[t]) : 1.0;
  };
  const auto row_begin = [&](std::size_t i) { return static_cast<std::size_t>(in.seq_offsets[i]); };
  const T lr_lo = ::posttrain::detail::kl_bound<T>(o.log_ratio_min);
  const T lr_hi = ::posttrain::detail::kl_bound<T>(o.log_ratio_max);
  const ::posttrain::detail::kl_element<Kl, T> kl_el{
      ::posttrain::detail::kl_bound<T>(o.kl.input_min),
      ::posttrain::detail::kl_bound<T>(o.kl.input_max),
      ::posttrain::detail::kl_bound<T>(o.kl.output_min),
      ::posttrain::detail::kl_bound<T>(o.kl.output_max)};

  fused_aggregate<Agg> agg(in.mask, in.seq_offsets, n, norm, agg_opts);

  // entropy_aggregation::token_mean: dLoss/dH_t = −c_H·m_t·e_t·entropy_scale.
  double entropy_scale = 0.0;
  if (entropy_token_mean) {
    double count = 0.0;
    for (std::size_t t = 0; t < n; ++t) count += mask_at(t) * entropy_mask_at(t);
    entropy_scale = 1.0 / ((count > 1.0 ? count : 1.0) * o.entropy_divisor);
  }

  // Row-sized buffers, reused by every row: clip flags and slopes of the sequence statistic, and
  // the per-token part of the gradient when a row-level term is added after the row's pass.
  const bool by_row = Agg::per_sequence || seq_level || kl_seq_is;
  const bool row_term = write_grad && (seq_grad || kl_seq_is);
  std::size_t max_len = 0;
  if (by_row)
    for (std::size_t i = 0; i < rows; ++i) max_len = std::max(max_len, row_begin(i + 1) - row_begin(i));
  std::vector<unsigned char> tok_flags(seq_level ? max_len : 0);
  std::vector<double> tok_slope(seq_grad && write_grad ? max_len : 0);
  std::vector<double> tok_part(row_term && (!seq_grad || has_kl) ? max_len : 0);
  // Token ratios exped a block at a time ahead of the branchy per-token pass (token-level
  // surrogates with ℓold); a sequence-level one exps its row's log s once, and without ℓold the
  // ratio is the constant e^{clamp(0)}.
  [[maybe_unused]] detail::ratio_block<T> ratios;
  const bool block_ratio = ratio_given && !seq_level && has_old;
  [[maybe_unused]] const T constant_ratio = surrogate::detail::ratio_exp(T(0), o);
  // k3 in the loss: value and gradient of a block of tokens ahead of the per-token pass.
  constexpr bool block_k3 = has_kl && ::posttrain::detail::kl_element<Kl, T>::value_is_k3;
  [[maybe_unused]] detail::k3_block_values<T> k3s;

  // Sums in double, each in token order (the unfused composition's order), kept in locals.
  detail::pg_statistics stats;
  double pg_loss = 0, kl_loss = 0, entropy = 0;
  double entropy_sum = 0;  // token_mean: Σ m·e·H
  const T* const logprobs = in.logprobs.data();
  const T* const old_logprobs = in.old_logprobs.data();
  const T* const advantages = in.advantages.data();
  const T* const ref_logprobs = in.ref_logprobs.data();
  const T* const entropies = in.entropy.data();
  T* const grad = out.grad.data();
  T* const entropy_grad = out.entropy_grad.data();

  // Segment i = row i, or the whole batch (i = 0) for token-level compositions.
  const std::size_t segments = by_row ? rows : 1;
  for (std::size_t i = 0; i < segments; ++i) {
    const std::size_t b = by_row ? row_begin(i) : 0, e = by_row ? row_begin(i + 1) : n;

    // Sequence-level surrogates: log s_i = Σ m·term / D_i; every token then sees log s_i.
    double seq_log_ratio = 0.0, seq_inv_len = 0.0, seq_weight = 1.0;
    if constexpr (seq_level) {
      const detail::pg_row_statistic st = detail::sequence_row_statistic<Surrogate>(
          in, o, so, agg_opts, b, e, write_grad, std::span<double>(tok_slope),
          std::span<unsigned char>(tok_flags));
      seq_log_ratio = st.log_ratio;
      seq_inv_len = st.inv_len;
      seq_weight = st.weight;
    }

    // IS-corrected KL with the sequence ratio: ρ_i = e^{clamp(Σ m·logr / max(Σ m, 1))}.
    detail::kl_row_ratio kl_row;
    if (kl_seq_is) kl_row = detail::kl_sequence_ratio(in, o, b, e);
    const double kl_seq_ratio = kl_row.ratio, kl_seq_slope = kl_row.slope;

    [[maybe_unused]] T row_ratio = T(1);
    if constexpr (ratio_given && seq_level)
      row_ratio = surrogate::detail::ratio_exp(static_cast<T>(seq_log_ratio), o);

    const double scale = agg.scale(i);
    agg.begin_row(b, e);
    double seq_sum = 0.0, kl_seq_sum = 0.0;  // Σ dLoss/dL_t·∂L_t/∂(row statistic) over the row
    std::size_t block_begin = b, block_end = b;  // ratios.ratio[t − block_begin] for t < block_end
    [[maybe_unused]] std::size_t k3_begin = b, k3_end = b;  // k3s.value[t − k3_begin], t < k3_end
    for (std::size_t t = b; t < e; ++t) {
      if constexpr (ratio_given && !seq_level) {
        if (block_ratio && t == block_end) {
          block_begin = t;
          block_end = std::min(t + detail::ratio_block<T>::size, e);
          ratios.compute(logprobs + t, old_logprobs + t, block_end - t, lr_lo, lr_hi, o);
        }
      }
      if constexpr (block_k3) {
        if (t == k3_end) {
          k3_begin = t;
          k3_end = std::min(t + detail::k3_block_values<T>::size, e);
          k3s.compute(logprobs + t, ref_logprobs + t, k3_end - t, write_grad, kl_el);
        }
      }
      const double m = mask_at(t);
      const double a = m * scale;  // dLoss/dL_t
      if (write_entropy_grad) {
        double dh = entropy_token_mean ? m * entropy_scale : a;
        if (has_entropy_mask) dh *= entropy_mask_at(t);
        entropy_grad[t] = static_cast<T>(-o.entropy_coef * dh);
      }
      if (m == 0.0) {
        if (write_grad) {
          // dLoss/dL_t·0 for each term, exactly as the unfused composition writes it
          double g = seq_grad ? 0.0 : a * 0.0;
          if constexpr (has_kl) g += a * 0.0;
          if (!row_term)
            grad[t] = static_cast<T>(g);
          else if (!tok_part.empty())
            tok_part[t - b] = g;
        }
        continue;
      }
      const T logp = logprobs[t];
      T logr = T(0);
      if constexpr (seq_level) {
        logr = static_cast<T>(seq_log_ratio);
      } else {
        if (has_old) logr = logp - old_logprobs[t];
      }
      pg_token<T> q;
      if constexpr (ratio_given) {
        T r = row_ratio;
        if constexpr (!seq_level)
          r = has_old ? ratios.ratio[static_cast<Eigen::Index>(t - block_begin)] : constant_ratio;
        q = pg_surrogate_call::evaluate_ratio<Surrogate>(logp, logr, r, advantages[t], o, so);
      } else {
        q = pg_surrogate_call::evaluate<Surrogate>(logp, logr, advantages[t], o, so);
      }
      double w = 1.0;
      if (has_w) {
        if constexpr (weight_use == pg_weight_use::multiply) w = weight_at(t);
        if constexpr (weight_use == pg_weight_use::sequence_geo_mean) w = seq_weight;
      }
      const double pg_value = w * static_cast<double>(q.loss);
      const double pg_grad = w * static_cast<double>(q.grad);
      double l = pg_value;
      [[maybe_unused]] double kl_value = 0.0, kl_grad = 0.0;
      if constexpr (has_kl) {
        T kv, kg = T(0);  // kg is read only where write_grad
        if constexpr (block_k3) {
          kv = k3s.value[t - k3_begin];
          if (write_grad) kg = k3s.grad[t - k3_begin];
        } else {
          kl_el.value_and_grad(logp - ref_logprobs[t], kv, kg);
        }
        double v = static_cast<double>(kv), g = static_cast<double>(kg);
        if (kl_token_is) {
          // ρ_t·K: ∂/∂ℓ = ρ·K' + K·∂ρ/∂ℓ (∂ρ/∂ℓ = ρ, 0 where the log-ratio clamp is active)
          const T lr = logp - old_logprobs[t];
          const bool clamped = lr < lr_lo || lr_hi < lr;
          const double rho = std::exp(static_cast<double>(math::clamp(lr, lr_lo, lr_hi)));
          g = rho * g + (clamped ? 0.0 : rho * v);
          v *= rho;
        } else if (kl_seq_is) {
          // ρ_i·K: the token term ρ_i·K' here; K·∂ρ_i/∂ℓ_u goes to every token u of the row
          kl_seq_sum += a * (o.kl_coef * v);
          g *= kl_seq_ratio;
          v *= kl_seq_ratio;
        }
        kl_value = v;
        kl_grad = o.kl_coef * g;
        l += o.kl_coef * v;
      }
      double h = 0.0;
      if (has_entropy) {
        h = static_cast<double>(entropies[t]);
        if (has_entropy_mask) h *= entropy_mask_at(t);
        if (entropy_token_mean)
          entropy_sum += m * h;
        else
          l -= o.entropy_coef * h;
      }
      agg.add(t, m * l);

      bool clipped = q.clipped, clipped_lower = q.clipped_lower;
      if constexpr (seq_level) {
        clipped = clipped || (tok_flags[t - b] & 1) != 0;
        clipped_lower = clipped_lower || (tok_flags[t - b] & 2) != 0;
      }
      stats.add(m, clipped, clipped_lower, static_cast<double>(math::clamp(logr, lr_lo, lr_hi)),
                static_cast<double>(logr), static_cast<double>(q.ratio));
      if (a != 0.0) {
        pg_loss += a * pg_value;
        if constexpr (has_kl) kl_loss += a * kl_value;
        if (has_entropy && !entropy_token_mean) entropy += a * h;
      }

      if (write_grad) {
        if constexpr (seq_grad) {
          seq_sum += a * pg_grad;
          if constexpr (has_kl) tok_part[t - b] = a * kl_grad;
        } else {
          double g = a * pg_grad;
          if constexpr (has_kl) g += a * kl_grad;
          if (row_term)
            tok_part[t - b] = g;
          else
            grad[t] = static_cast<T>(g);
        }
      }
    }
    agg.end_row(i);

    // The row-level terms, now that the row's sums are known.
    if (row_term)
      detail::write_row_terms<seq_grad, has_kl>(
          out.grad, in.mask, b, e, seq_sum * seq_inv_len, std::span<const double>(tok_slope),
          std::span<const double>(tok_part), kl_seq_is, kl_seq_sum * kl_seq_slope);
  }

  policy_gradient_result r;
  r.pg_loss = pg_loss;
  r.kl_loss = kl_loss;
  r.entropy = entropy;
  r.loss = agg.loss();
  if (entropy_token_mean && has_entropy) {
    r.entropy = entropy_sum * entropy_scale;
    r.loss -= o.entropy_coef * r.entropy;
  }
  r.divisor = agg.divisor();
  stats.finish(r);
  return r;
}

}  // namespace backend::cpu

// The host backend of the policy-gradient family (loss/policy_gradient_types.hpp).
template <>
struct loss::policy_gradient_backend<exec::host> {
  static constexpr bool available = true;
  template <class Surrogate, class Kl, class Agg, class T>
  static policy_gradient_result run(exec::host, const policy_gradient_inputs<T>& in,
                                    const policy_gradient_options& o,
                                    const policy_gradient_outputs<T>& out,
                                    const agg_normalizer& norm, const agg_options& agg_opts,
                                    const typename Surrogate::options& so) {
    return backend::cpu::policy_gradient<Surrogate, Kl, Agg>(in, o, out, norm, agg_opts, so);
  }
};


POSTTRAIN_NAMESPACE_END

#ifdef POSTTRAIN_POLICY_GRADIENT_POP_DIAGNOSTIC
#pragma GCC diagnostic pop
#undef POSTTRAIN_POLICY_GRADIENT_POP_DIAGNOSTIC
#endif
