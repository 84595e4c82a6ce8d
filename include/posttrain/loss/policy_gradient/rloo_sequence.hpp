#pragma once
// surrogate::rloo_sequence — sequence-level PPO on the full sequence likelihood ratio (TRL
// RLOOTrainer._compute_loss, algorithms.md §4.2).
//
//   log s_i = Σ_{t∈i} m_t·(ℓ_t − ℓold_t)     (the SUM: log π(o_i)/π_old(o_i), not GSPO's mean)
//   s_i = e^{clamp(log s_i, log_ratio_min, log_ratio_max)}            (TRL: no clamp)
//   L_i = −min(s_i·A_i, clip(s_i, 1 − ε_low, 1 + ε_high)·A_i)         (surrogate::clip on log s_i)
//   ∂loss/∂ℓ_u = m_u·Σ_{t∈i} (∂loss/∂L_t)·(∂L_t/∂log s_i)  (0 where the clip or clamp is active)
// With agg::seq_mean_token_mean (agg_conventions::trl()) the row term is L_i and the loss is
// mean_i L_i over all B rows (algo::rloo_sequence_ppo); pass normalizer.sequences = B·GA for HF
// Trainer's gradient-accumulation division. KL is in the reward (advantage/), not here.
// Differences from TRL: a row with no unmasked token contributes 0 here (TRL: −A_i, a constant
// with zero gradient); the sum of log-ratios of a long row overflows e^{·} sooner than the
// per-token ratio: set log_ratio_max (e.g. 20) for a finite loss (TRL gives inf). Dual clip
// (options.dual_clip) is available but off, as in TRL.
#include "posttrain/loss/policy_gradient/gspo.hpp"
#include "posttrain/ops/aggregate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace surrogate {

// GSPO's sequence-level clip with D_i = 1 (the sum of log-ratios instead of their mean).
struct rloo_sequence : gspo {
  static constexpr const char* name = "rloo_sequence";

  static double length_divisor(double, const agg_options&) { return 1.0; }
};

}  // namespace surrogate

POSTTRAIN_NAMESPACE_END
