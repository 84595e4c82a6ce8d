#pragma once
// surrogate::gmpo — GMPO, geometric-mean policy optimisation (Zhao et al. 2025, arXiv 2507.20673):
// the PPO clip applied per token in log space, inside a geometric mean over the row.
//
//   logr_t = clamp(ℓ_t − ℓold_t, log_ratio_min, log_ratio_max)       (off by default: peers none)
//   s_t = sign(A_t),  c_t = s_t·min(s_t·logr_t, s_t·clamp(logr_t, −ε_low, ε_high))
//         A > 0: min(logr, ε_high) (clipped above), A < 0: max(logr, −ε_low) (clipped below),
//         A = 0: 0 (verl's sign(0) = 0)
//   log ρ_i = Σ_t m_t·c_t / D_i,   D_i = max(|o_i| + length_epsilon, length_floor)   (agg_options)
//   L_t = −A_t·ρ_i   (evaluate(logp, log ρ_i, A_t): loss −A·ρ, grad ∂L/∂log ρ = −A·ρ)
// With agg::seq_mean_token_mean and the same agg_options the row term is
//   Σ_t m_t·(−A_t·ρ_i) / D_i = −Ā_i·ρ_i,   Ā_i = Σ_t m_t·A_t / D_i   (verl's Ā_i exactly)
// and the outer mean over rows (include_empty_sequences = true: every row counts, as torch.mean
// over the batch) is GMPO's plain mean. Gradient per token:
//   ∂loss/∂ℓ_u = (Σ_t ∂loss/∂L_t · ∂L_t/∂log ρ_i)·m_u·c'_u / D_i,  c'_u = 0 where the clip (or
//   the optional clamp) is active.
//
// Why a sequence-level surrogate plus an aggregation, not a loss type of its own: GMPO's only
// structural difference from GSPO is the row statistic (mean of the per-token *clipped*
// log-ratios, no clip on the sequence ratio afterwards), so it is the sequence-level hook
// token_log_ratio (sign-aware clip, its 0/1 slope) and the loss −A·ρ; the "plain mean over rows
// of −Ā_i·ρ_i" is exactly seq_mean_token_mean with the row divisor D_i. D_i is read from
// agg_options so that the geometric mean and Ā_i always share the aggregation's row divisor:
//   verl geo_mean   |o_i| + 1e-8 for both (pg_presets::verl_gmpo_agg(): every row counted)
//   TRL gmpo        max(|o_i|, 1) (agg_conventions::trl()); TRL's A_i is per sequence, so
//                   Σ m·A_i / max(|o_i|, 1) = A_i for |o_i| ≥ 1 (0/1 masks).
// KL: TRL adds β·mean_i(Σ m·k3 / max(|o_i|, 1)) = the composition with kl::k3 and the same
// aggregation. verl adds β·agg_loss(k3) with its loss_agg_mode (a different aggregation from the
// pg term): use kl::none here and add the separately aggregated KL (ops/kl.hpp, ops/aggregate.hpp).
// Importance weights (pg_weight_use::sequence_geo_mean, verl rollout_is_weights): the row weight
// exp(Σ m·log(min(w, C) + 1e-10) / D_i) multiplies the row's loss.
// Statistics: clipped = the active one-sided clip (TRL clip_ratio/region_mean), clipped_lower =
// active with A < 0 (TRL low_mean); ratio = ρ_i. Clip ranges ε are in log space: 0.4 / 0.4 (paper,
// verl examples/gmpo_trainer, TRL GMPOConfig epsilon default).
#include "posttrain/loss/policy_gradient/clip.hpp"
#include "posttrain/loss/policy_gradient/parts.hpp"
#include "posttrain/ops/aggregate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace surrogate {

struct gmpo : defaults {
  static constexpr const char* name = "gmpo";
  static constexpr bool uses_old_logprobs = true;
  static constexpr bool sequence_level = true;
  static constexpr bool token_gradient = false;
  static constexpr pg_weight_use importance_weight_use = pg_weight_use::sequence_geo_mean;

  static void validate(const policy_gradient_options& o, std::string_view where) {
    expect_non_negative(o.clip_low, where, "options.clip_low (GMPO log-space clip)");
    expect_non_negative(o.clip_high, where, "options.clip_high (GMPO log-space clip)");
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_seq_token<T> token_log_ratio(T logr, T a,
                                                               const policy_gradient_options& o) {
    const T lo = T(o.log_ratio_min), hi = T(o.log_ratio_max);
    const T lr = math::clamp(logr, lo, hi);
    const T pass = logr < lo || hi < logr ? T(0) : T(1);  // torch.clamp's backward
    pg_seq_token<T> out;
    if (a > T(0)) {
      if (lr > T(o.clip_high)) {
        out.log_ratio = T(o.clip_high);
        out.slope = T(0);
        out.clipped = true;
      } else {
        out.log_ratio = lr;
        out.slope = pass;
      }
    } else if (a < T(0)) {
      if (lr < -T(o.clip_low)) {
        out.log_ratio = -T(o.clip_low);
        out.slope = T(0);
        out.clipped = true;
        out.clipped_lower = true;
      } else {
        out.log_ratio = lr;
        out.slope = pass;
      }
    } else {
      out.log_ratio = T(0);
      out.slope = T(0);
    }
    return out;
  }

  static double length_divisor(double length, const agg_options& ao) {
    const double d = length + ao.length_epsilon;
    return d < ao.length_floor ? ao.length_floor : d;
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate(T, T log_rho, T a,
                                                    const policy_gradient_options&) {
    using std::exp;
    pg_token<T> out;
    out.ratio = exp(log_rho);
    out.loss = -a * out.ratio;
    out.grad = -a * out.ratio;
    return out;
  }
};

}  // namespace surrogate

POSTTRAIN_NAMESPACE_END
