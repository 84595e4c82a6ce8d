#pragma once
// surrogate::vespo — VESPO (TRL loss_type="vespo", GRPOTrainer.get_gamma_weights): REINFORCE
// scaled by a detached gamma-shaped function of the sequence importance ratio.
//
//   log w_i = clamp(Σ_{t∈i} m_t·clamp(ℓ_t − ℓold_t, −20, 20) + Σ_{t∈i, m_t>0} log ρ_t,
//                   log 1e-8, 20)             (sequence SUM, not GSPO's mean)
//   log ρ_t = clamp(log min(w_t, C), log 1e-8, 20), w = inputs.importance_weights (TRL: the
//             vLLM token IS ratios; empty = no term); the weights are not multiplied into L
//   (k, λ) = (k_pos, λ_pos) if A ≥ 0 else (k_neg, λ_neg),  λ ← max(λ, 1e-4)
//   φ_i = exp(λ + k·log w_i − λ·w_i)   (φ(1) = 1; non-finite φ → 0, torch.nan_to_num)
//   L_t = −sg(φ_i)·A_t·ℓ_t,   ∂L/∂ℓ_t = −φ_i·A_t   (no gradient through w_i)
// Its own options k_pos = 2, lambda_pos = 3, k_neg = 3, lambda_neg = 2 (TRL vespo_k_pos, ...
// defaults); log_ratio_min/max are not used (the ±20 token clamp is part of the formula).
// Aggregation: TRL divides Σ m·L by the global active-token count (num_items_in_batch / P):
// agg::token_mean with normalizer.tokens (algo::vespo). ratio = w_i; no clip flags.
// Peer: TRL GRPOTrainer loss_type="vespo" (importance_sampling_level="token"; the vLLM IS ratio
// enters w_i instead of multiplying the loss).
#include <cmath>

#include "posttrain/loss/policy_gradient/parts.hpp"
#include "posttrain/math/stable.hpp"
#include "posttrain/ops/aggregate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace surrogate {

struct vespo : defaults {
  static constexpr const char* name = "vespo";
  static constexpr bool uses_old_logprobs = true;
  static constexpr bool sequence_level = true;
  static constexpr bool token_gradient = true;
  static constexpr pg_weight_use importance_weight_use = pg_weight_use::log_ratio_sum;
  static constexpr double log_w_min = -18.420680743952367;  // log(1e-8)
  static constexpr double log_w_max = 20.0;

  // VESPO's own options (formerly policy_gradient_options::vespo_k_pos, ...).
  struct options {
    double k_pos = 2.0;       // shape k for A >= 0 (TRL vespo_k_pos)
    double lambda_pos = 3.0;  // rate λ for A >= 0 (floored at 1e-4)
    double k_neg = 3.0;       // shape k for A < 0
    double lambda_neg = 2.0;  // rate λ for A < 0 (floored at 1e-4)
  };

  static void validate(const policy_gradient_options&, const options& s, std::string_view where) {
    expect_finite(s.k_pos, where, "options.surrogate.k_pos");
    expect_finite(s.k_neg, where, "options.surrogate.k_neg");
    expect_finite(s.lambda_pos, where, "options.surrogate.lambda_pos");
    expect_finite(s.lambda_neg, where, "options.surrogate.lambda_neg");
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_seq_token<T> token_log_ratio(T logr, T,
                                                               const policy_gradient_options&) {
    return {math::clamp(logr, T(-20), T(20)), T(0), false, false};
  }

  // log ρ_t of one importance weight (already capped at C).
  template <class T>
  POSTTRAIN_HOST_DEVICE static T importance_log_term(T w) {
    using std::log;
    return math::clamp(log(w), T(log_w_min), T(log_w_max));
  }

  static double length_divisor(double, const agg_options&) { return 1.0; }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate(T logp, T log_w_sum, T a,
                                                    const policy_gradient_options&,
                                                    const options& s) {
    using std::exp;
    using std::isfinite;
    const T lw = math::clamp(log_w_sum, T(log_w_min), T(log_w_max));
    const T w = exp(lw);
    const bool pos = a >= T(0);
    const T k = T(pos ? s.k_pos : s.k_neg);
    T lam = T(pos ? s.lambda_pos : s.lambda_neg);
    if (lam < T(1e-4)) lam = T(1e-4);
    T phi = exp(lam + k * lw - lam * w);
    if (!isfinite(phi)) phi = T(0);
    pg_token<T> out;
    out.ratio = w;
    out.loss = -phi * a * logp;
    out.grad = -phi * a;
    return out;
  }
};

}  // namespace surrogate

POSTTRAIN_NAMESPACE_END
