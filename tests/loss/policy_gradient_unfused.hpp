#pragma once
// Test oracle of tests/loss/policy_gradient_fused.cpp: the unfused CPU composition of
// loss::policy_gradient as it was before the fused pass (backend/cpu/policy_gradient.hpp) — every
// per-token part in a full-length array, one aggregate_loss over the summed per-token loss, then
// the parts and the gradient from dLoss/dL_t. The fused pass must reproduce it bit for bit.
#include <cmath>
#include <span>
#include <type_traits>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/loss/policy_gradient/parts.hpp"
#include "posttrain/ops/aggregate.hpp"
#include "posttrain/ops/kl.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pg_unfused {

namespace detail {
template <class S>
constexpr bool pg_sequence_gradient() {
  if constexpr (S::sequence_level) return !S::token_gradient;
  return false;
}

template <class S>
constexpr pg_weight_use pg_weight_use_of() {
  if constexpr (requires { S::importance_weight_use; })
    return S::importance_weight_use;
  else
    return pg_weight_use::multiply;
}
}  // namespace detail

template <class Surrogate, class Kl, class Agg, class T>
policy_gradient_result policy_gradient(const policy_gradient_inputs<T>& in,
                                       const policy_gradient_options& o,
                                       const policy_gradient_outputs<T>& out,
                                       const agg_normalizer& norm, const agg_options& agg_opts,
                                       const typename Surrogate::options& so = {}) {
  constexpr bool has_kl = !std::is_same_v<Kl, kl::none>;
  constexpr bool seq_grad = detail::pg_sequence_gradient<Surrogate>();
  constexpr pg_weight_use weight_use = detail::pg_weight_use_of<Surrogate>();
  const std::size_t n = in.logprobs.size();
  const std::size_t rows = in.seq_offsets.empty() ? 0 : in.seq_offsets.size() - 1;
  const bool has_old = !in.old_logprobs.empty();
  const bool has_entropy = !in.entropy.empty();
  const bool has_w = !in.importance_weights.empty();
  const bool kl_token_is = has_kl && o.kl_correction == kl_is_correction::token;
  const bool kl_seq_is = has_kl && o.kl_correction == kl_is_correction::sequence;
  const auto mask_at = [&](std::size_t t) {
    return in.mask.empty() ? 1.0 : static_cast<double>(in.mask[t]);
  };
  const auto weight_at = [&](std::size_t t) {
    const double w = static_cast<double>(in.importance_weights[t]);
    return w > o.importance_weight_cap ? o.importance_weight_cap : w;
  };
  const auto row_begin = [&](std::size_t i) { return static_cast<std::size_t>(in.seq_offsets[i]); };
  const T lr_lo = ::posttrain::detail::kl_bound<T>(o.log_ratio_min);
  const T lr_hi = ::posttrain::detail::kl_bound<T>(o.log_ratio_max);

  // Sequence-level surrogates: log s_i = Σ m·term / D_i per row; every token then sees log s_i.
  std::vector<double> seq_log_ratio, seq_inv_len, seq_weight, tok_slope;
  std::vector<unsigned char> tok_flags;
  if constexpr (Surrogate::sequence_level) {
    seq_log_ratio.assign(rows, 0.0);
    seq_inv_len.assign(rows, 0.0);
    tok_flags.assign(n, 0);
    if constexpr (seq_grad) tok_slope.assign(n, 0.0);
    if constexpr (weight_use == pg_weight_use::sequence_geo_mean)
      if (has_w) seq_weight.assign(rows, 1.0);
    for (std::size_t i = 0; i < rows; ++i) {
      double s = 0.0, len = 0.0, log_w = 0.0;
      for (std::size_t t = row_begin(i); t < row_begin(i + 1); ++t) {
        const double m = mask_at(t);
        if (m == 0.0) continue;
        // the row statistic in double, as every reduction over tokens
        const pg_seq_token<double> q = pg_surrogate_call::token_log_ratio<Surrogate>(
            static_cast<double>(in.logprobs[t]) - static_cast<double>(in.old_logprobs[t]),
            static_cast<double>(in.advantages[t]), o, so);
        s += m * q.log_ratio;
        len += m;
        if constexpr (seq_grad) tok_slope[t] = q.slope;
        tok_flags[t] = static_cast<unsigned char>((q.clipped ? 1 : 0) | (q.clipped_lower ? 2 : 0));
        if constexpr (weight_use == pg_weight_use::log_ratio_sum)
          if (has_w)
            s += Surrogate::importance_log_term(weight_at(t));
        if constexpr (weight_use == pg_weight_use::sequence_geo_mean)
          if (has_w) log_w += m * std::log(weight_at(t) + 1e-10);
      }
      const double d = Surrogate::length_divisor(len, agg_opts);
      seq_inv_len[i] = d > 0.0 ? 1.0 / d : 0.0;
      seq_log_ratio[i] = s * seq_inv_len[i];
      if constexpr (weight_use == pg_weight_use::sequence_geo_mean)
        if (has_w) seq_weight[i] = std::exp(log_w * seq_inv_len[i]);
    }
  }

  // IS-corrected KL with the sequence ratio: ρ_i = e^{clamp(Σ m·logr / max(Σ m, 1))} per row.
  std::vector<double> kl_seq_ratio, kl_seq_slope, kl_seq_value;
  if (kl_seq_is) {
    kl_seq_ratio.assign(rows, 1.0);
    kl_seq_slope.assign(rows, 0.0);
    kl_seq_value.assign(n, 0.0);
    for (std::size_t i = 0; i < rows; ++i) {
      double s = 0.0, len = 0.0;
      for (std::size_t t = row_begin(i); t < row_begin(i + 1); ++t) {
        const double m = mask_at(t);
        if (m == 0.0) continue;
        s += m * (static_cast<double>(in.logprobs[t]) - static_cast<double>(in.old_logprobs[t]));
        len += m;
      }
      const double inv = 1.0 / (len > 1.0 ? len : 1.0);
      const double lr = s * inv;
      const bool clamped = lr < o.log_ratio_min || o.log_ratio_max < lr;
      kl_seq_ratio[i] = std::exp(clamped ? (lr < o.log_ratio_min ? o.log_ratio_min
                                                                  : o.log_ratio_max)
                                         : lr);
      kl_seq_slope[i] = clamped ? 0.0 : kl_seq_ratio[i] * inv;
    }
  }

  std::vector<double> loss(n, 0.0), agg_grad(n, 0.0), pg_value(n, 0.0), pg_grad(n, 0.0);
  std::vector<double> kl_value(has_kl ? n : 0, 0.0), kl_grad(has_kl ? n : 0, 0.0);
  const ::posttrain::detail::kl_element<Kl, T> kl_el{
      ::posttrain::detail::kl_bound<T>(o.kl.input_min),
      ::posttrain::detail::kl_bound<T>(o.kl.input_max),
      ::posttrain::detail::kl_bound<T>(o.kl.output_min),
      ::posttrain::detail::kl_bound<T>(o.kl.output_max)};
  double sum_m = 0, sum_clip = 0, sum_clip_lower = 0, sum_kl = 0, sum_ratio = 0;
  const bool track_rows = Surrogate::sequence_level || kl_seq_is;

  std::size_t row = 0;
  for (std::size_t t = 0; t < n; ++t) {
    const double m = mask_at(t);
    if (track_rows)
      while (static_cast<std::size_t>(in.seq_offsets[row + 1]) <= t) ++row;
    if (m == 0.0) continue;
    const T logp = in.logprobs[t];
    T logr = T(0);
    if constexpr (Surrogate::sequence_level) {
      logr = static_cast<T>(seq_log_ratio[row]);
    } else {
      if (has_old) logr = logp - in.old_logprobs[t];
    }
    const pg_token<T> q = pg_surrogate_call::evaluate<Surrogate>(logp, logr, in.advantages[t], o, so);
    double w = 1.0;
    if (has_w) {
      if constexpr (weight_use == pg_weight_use::multiply) w = weight_at(t);
      if constexpr (weight_use == pg_weight_use::sequence_geo_mean) w = seq_weight[row];
    }
    pg_value[t] = w * static_cast<double>(q.loss);
    pg_grad[t] = w * static_cast<double>(q.grad);
    double l = pg_value[t];
    if constexpr (has_kl) {
      T kv, kg;
      kl_el.value_and_grad(logp - in.ref_logprobs[t], kv, kg);
      double v = static_cast<double>(kv), g = static_cast<double>(kg);
      if (kl_token_is) {
        // ρ_t·K: ∂/∂ℓ = ρ·K' + K·∂ρ/∂ℓ (∂ρ/∂ℓ = ρ, 0 where the log-ratio clamp is active)
        const T lr = logp - in.old_logprobs[t];
        const bool clamped = lr < lr_lo || lr_hi < lr;
        const double r = std::exp(static_cast<double>(math::clamp(lr, lr_lo, lr_hi)));
        g = r * g + (clamped ? 0.0 : r * v);
        v *= r;
      } else if (kl_seq_is) {
        // ρ_i·K: the token term ρ_i·K' here; K·∂ρ_i/∂ℓ_u goes to every token u of the row below
        kl_seq_value[t] = o.kl_coef * v;
        g *= kl_seq_ratio[row];
        v *= kl_seq_ratio[row];
      }
      kl_value[t] = v;
      kl_grad[t] = o.kl_coef * g;
      l += o.kl_coef * v;
    }
    if (has_entropy) l -= o.entropy_coef * static_cast<double>(in.entropy[t]);
    loss[t] = l;
    bool clipped = q.clipped, clipped_lower = q.clipped_lower;
    if constexpr (Surrogate::sequence_level) {
      clipped = clipped || (tok_flags[t] & 1) != 0;
      clipped_lower = clipped_lower || (tok_flags[t] & 2) != 0;
    }
    sum_m += m;
    sum_clip += clipped ? m : 0.0;
    sum_clip_lower += clipped_lower ? m : 0.0;
    sum_kl -= m * static_cast<double>(math::clamp(logr, lr_lo, lr_hi));
    sum_ratio += m * static_cast<double>(q.ratio);
  }

  const agg_result agg = aggregate_loss<Agg>(
      exec::host{}, std::span<const double>(loss), in.mask, in.seq_offsets, norm,
      std::span<double>(agg_grad), agg_opts);

  policy_gradient_result r;
  r.loss = agg.loss;
  r.divisor = agg.divisor;
  for (std::size_t t = 0; t < n; ++t) {
    if (agg_grad[t] == 0.0) continue;
    r.pg_loss += agg_grad[t] * pg_value[t];
    if constexpr (has_kl) r.kl_loss += agg_grad[t] * kl_value[t];
    if (has_entropy) r.entropy += agg_grad[t] * static_cast<double>(in.entropy[t]);
  }
  if (sum_m > 0) {
    r.clip_fraction = sum_clip / sum_m;
    r.clip_fraction_lower = sum_clip_lower / sum_m;
    r.approx_kl = sum_kl / sum_m;
    r.mean_ratio = sum_ratio / sum_m;
  }

  if (!out.grad.empty()) {
    std::vector<double> grad(n, 0.0);
    if constexpr (seq_grad) {
      for (std::size_t i = 0; i < rows; ++i) {
        double g = 0.0;
        for (std::size_t t = row_begin(i); t < row_begin(i + 1); ++t)
          g += agg_grad[t] * pg_grad[t];
        g *= seq_inv_len[i];
        for (std::size_t t = row_begin(i); t < row_begin(i + 1); ++t) {
          const double m = mask_at(t);
          if (m != 0.0) grad[t] = m * g * tok_slope[t];
        }
      }
    } else {
      for (std::size_t t = 0; t < n; ++t) grad[t] = agg_grad[t] * pg_grad[t];
    }
    if constexpr (has_kl) {
      for (std::size_t t = 0; t < n; ++t) grad[t] += agg_grad[t] * kl_grad[t];
      if (kl_seq_is) {
        for (std::size_t i = 0; i < rows; ++i) {
          double g = 0.0;
          for (std::size_t t = row_begin(i); t < row_begin(i + 1); ++t)
            g += agg_grad[t] * kl_seq_value[t];
          g *= kl_seq_slope[i];
          for (std::size_t t = row_begin(i); t < row_begin(i + 1); ++t) {
            const double m = mask_at(t);
            if (m != 0.0) grad[t] += m * g;
          }
        }
      }
    }
    for (std::size_t t = 0; t < n; ++t) out.grad[t] = static_cast<T>(grad[t]);
  }
  if (!out.entropy_grad.empty())
    for (std::size_t t = 0; t < n; ++t)
      out.entropy_grad[t] = static_cast<T>(-o.entropy_coef * agg_grad[t]);
  return r;
}

}  // namespace pg_unfused

POSTTRAIN_NAMESPACE_END
