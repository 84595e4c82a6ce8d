#pragma once
// CPU loop of loss::policy_gradient (front end: loss/policy_gradient.hpp, which validates every
// argument first). Per token: surrogate, detached IS weight, KL and entropy terms; then one
// aggregate_loss over the summed per-token loss, whose dLoss/dL_t turns the per-token derivatives
// into dLoss/dℓ. Sequential, sums in double: deterministic. Tokens with m = 0 are never read.
#include <span>
#include <type_traits>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/loss/policy_gradient/parts.hpp"
#include "posttrain/ops/aggregate.hpp"
#include "posttrain/ops/kl.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

namespace detail {
template <class S>
constexpr bool pg_sequence_gradient() {
  if constexpr (S::sequence_level) return !S::token_gradient;
  return false;
}
}  // namespace detail

template <class Surrogate, class Kl, class Agg, class T>
policy_gradient_result policy_gradient(const policy_gradient_inputs<T>& in,
                                       const policy_gradient_options& o,
                                       const policy_gradient_outputs<T>& out,
                                       const agg_normalizer& norm, const agg_options& agg_opts) {
  constexpr bool has_kl = !std::is_same_v<Kl, kl::none>;
  const std::size_t n = in.logprobs.size();
  const bool has_old = !in.old_logprobs.empty();
  const bool has_entropy = !in.entropy.empty();
  const bool has_w = !in.importance_weights.empty();
  const auto mask_at = [&](std::size_t t) {
    return in.mask.empty() ? 1.0 : static_cast<double>(in.mask[t]);
  };

  // Sequence-level surrogates: log s_i per row, then every token sees logr = log s_i.
  std::vector<double> seq_log_ratio, seq_inv_len;
  if constexpr (Surrogate::sequence_level) {
    const std::size_t rows = in.seq_offsets.size() - 1;
    seq_log_ratio.assign(rows, 0.0);
    seq_inv_len.assign(rows, 0.0);
    for (std::size_t i = 0; i < rows; ++i) {
      double s = 0.0, w = 0.0;
      for (auto t = static_cast<std::size_t>(in.seq_offsets[i]);
           t < static_cast<std::size_t>(in.seq_offsets[i + 1]); ++t) {
        const double m = mask_at(t);
        if (m == 0.0) continue;
        s += m * (static_cast<double>(in.logprobs[t]) - static_cast<double>(in.old_logprobs[t]));
        w += m;
      }
      seq_inv_len[i] = 1.0 / (w > 1.0 ? w : 1.0);
      seq_log_ratio[i] = s * seq_inv_len[i];
    }
  }

  std::vector<double> loss(n, 0.0), agg_grad(n, 0.0), pg_value(n, 0.0), pg_grad(n, 0.0);
  std::vector<double> kl_value(has_kl ? n : 0, 0.0), kl_grad(has_kl ? n : 0, 0.0);
  const ::posttrain::detail::kl_element<Kl, T> kl_el{
      ::posttrain::detail::kl_bound<T>(o.kl.input_min),
      ::posttrain::detail::kl_bound<T>(o.kl.input_max),
      ::posttrain::detail::kl_bound<T>(o.kl.output_min),
      ::posttrain::detail::kl_bound<T>(o.kl.output_max)};
  const T lr_lo = ::posttrain::detail::kl_bound<T>(o.log_ratio_min);
  const T lr_hi = ::posttrain::detail::kl_bound<T>(o.log_ratio_max);
  double sum_m = 0, sum_clip = 0, sum_clip_lower = 0, sum_kl = 0, sum_ratio = 0;

  std::size_t row = 0;
  for (std::size_t t = 0; t < n; ++t) {
    const double m = mask_at(t);
    if constexpr (Surrogate::sequence_level) {
      while (static_cast<std::size_t>(in.seq_offsets[row + 1]) <= t) ++row;
    }
    if (m == 0.0) continue;
    const T logp = in.logprobs[t];
    T logr = T(0);
    if constexpr (Surrogate::sequence_level) {
      logr = static_cast<T>(seq_log_ratio[row]);
    } else {
      if (has_old) logr = logp - in.old_logprobs[t];
    }
    const pg_token<T> q = Surrogate::evaluate(logp, logr, in.advantages[t], o);
    double w = 1.0;
    if (has_w) {
      w = static_cast<double>(in.importance_weights[t]);
      if (w > o.importance_weight_cap) w = o.importance_weight_cap;
    }
    pg_value[t] = w * static_cast<double>(q.loss);
    pg_grad[t] = w * static_cast<double>(q.grad);
    double l = pg_value[t];
    if constexpr (has_kl) {
      T kv, kg;
      kl_el.value_and_grad(logp - in.ref_logprobs[t], kv, kg);
      kl_value[t] = static_cast<double>(kv);
      kl_grad[t] = o.kl_coef * static_cast<double>(kg);
      l += o.kl_coef * kl_value[t];
    }
    if (has_entropy) l -= o.entropy_coef * static_cast<double>(in.entropy[t]);
    loss[t] = l;
    sum_m += m;
    sum_clip += q.clipped ? m : 0.0;
    sum_clip_lower += q.clipped_lower ? m : 0.0;
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
    if constexpr (detail::pg_sequence_gradient<Surrogate>()) {
      const std::size_t rows = in.seq_offsets.size() - 1;
      for (std::size_t i = 0; i < rows; ++i) {
        const auto b = static_cast<std::size_t>(in.seq_offsets[i]);
        const auto e = static_cast<std::size_t>(in.seq_offsets[i + 1]);
        double g = 0.0;
        for (std::size_t t = b; t < e; ++t) g += agg_grad[t] * pg_grad[t];
        g *= seq_inv_len[i];
        for (std::size_t t = b; t < e; ++t) {
          const double m = mask_at(t);
          double v = m == 0.0 ? 0.0 : m * g;
          if constexpr (has_kl) v += agg_grad[t] * kl_grad[t];
          out.grad[t] = static_cast<T>(v);
        }
      }
    } else {
      for (std::size_t t = 0; t < n; ++t) {
        double v = agg_grad[t] * pg_grad[t];
        if constexpr (has_kl) v += agg_grad[t] * kl_grad[t];
        out.grad[t] = static_cast<T>(v);
      }
    }
  }
  if (!out.entropy_grad.empty())
    for (std::size_t t = 0; t < n; ++t)
      out.entropy_grad[t] = static_cast<T>(-o.entropy_coef * agg_grad[t]);
  return r;
}

}  // namespace backend::cpu

POSTTRAIN_NAMESPACE_END
