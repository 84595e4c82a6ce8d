#pragma once
// The peers' option presets of the policy-gradient losses (namespace posttrain::pg_presets): what
// each peer sets in policy_gradient_options for a named algorithm. The algo/ recipes
// (algo/policy_gradient.hpp) bundle them with the aggregation conventions and the advantage
// estimator's options into one preset per peer; conventions.hpp lists them by peer. A surrogate's
// own options (surrogate::cispo::options, ...) have presets of their own here
// (<peer>_<surrogate>_surrogate()), beside the shared ones.
#include "posttrain/config.hpp"
#include "posttrain/loss/policy_gradient/cispo.hpp"
#include "posttrain/loss/policy_gradient/parts.hpp"
#include "posttrain/loss/policy_gradient/sapo.hpp"
#include "posttrain/loss/policy_gradient/vespo.hpp"
#include "posttrain/ops/aggregate.hpp"
#include "posttrain/ops/kl.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pg_presets {

using opts = policy_gradient_options;
inline constexpr double inf = policy_gradient_options::inf;

// verl actor vanilla: ε 0.2/0.2, dual clip c = 3 always on, log-ratio clamp ±20.
inline opts verl_ppo() { return opts{.dual_clip = 3.0, .log_ratio_min = -20, .log_ratio_max = 20}; }
// OpenRLHF PolicyLoss ppo: clamp ±20, dual clip off unless --actor.dual_clip.
inline opts openrlhf_ppo(double dual_clip = inf) {
  return opts{.dual_clip = dual_clip, .log_ratio_min = -20, .log_ratio_max = 20};
}
// TRL GRPO loss: ε 0.2, no clamp, β·k3 (kl_conventions::trl); delta = dual clip for A < 0
// (identical to TRL's coef_1 ← min(coef_1, δ) for δ ≥ 1 + ε_high, TRL's intended use).
inline opts trl_grpo(double beta = 0.0, double delta = inf) {
  return opts{.dual_clip = delta, .kl_coef = beta, .kl = kl_conventions::trl()};
}
// verl with use_kl_loss: k3 with verl clamps, β = 0.001.
inline opts verl_grpo(double beta = 0.001) {
  opts o = verl_ppo();
  o.kl_coef = beta;
  o.kl = kl_conventions::verl(kl_kind::k3);
  return o;
}
// DAPO clip-higher (paper, TRL recommendation); open-instruct default uses 0.2 / 0.272.
inline opts dapo() { return opts{.clip_low = 0.2, .clip_high = 0.28}; }
inline opts open_instruct_dapo(double beta = 0.05) {
  return opts{.clip_low = 0.2, .clip_high = 0.272, .kl_coef = beta,
              .kl = kl_conventions::open_instruct()};
}
// GSPO paper ranges; verl clamps log s ≤ 10.
inline opts gspo() { return opts{.clip_low = 3e-4, .clip_high = 4e-4}; }
inline opts verl_gspo() { return opts{.clip_low = 3e-4, .clip_high = 4e-4, .log_ratio_max = 10}; }
// CISPO: the shared part (clamps, clip_high) and the cap form (surrogate::cispo::options).
inline opts verl_cispo() { return opts{.log_ratio_min = -20, .log_ratio_max = 20}; }
inline opts trl_cispo(double cap = 5.0) { return opts{.clip_high = cap}; }
inline opts open_instruct_cispo(double clip_high = 0.272) { return opts{.clip_high = clip_high}; }
inline surrogate::cispo::options verl_cispo_surrogate() { return {cispo_cap::two_sided}; }
inline surrogate::cispo::options trl_cispo_surrogate() { return {cispo_cap::absolute_upper}; }
inline surrogate::cispo::options open_instruct_cispo_surrogate() {
  return {cispo_cap::relative_upper};
}
// SAPO τ 1.0 / 1.05 (both peers: surrogate::sapo::options' defaults); verl clamps ±20.
inline opts verl_sapo() { return opts{.log_ratio_min = -20, .log_ratio_max = 20}; }
inline opts trl_sapo() { return opts{}; }
inline surrogate::sapo::options sapo_surrogate(double tau_pos = 1.0, double tau_neg = 1.05) {
  return {tau_pos, tau_neg};
}
// GMPO log-space clip ε: 0.4 / 0.4 (paper; verl examples/gmpo_trainer sets clip_ratio 0.4 —
// verl's actor default 0.2 applies if unset; TRL GMPOConfig epsilon = 0.4, epsilon_high = ε).
inline opts verl_gmpo(double clip = 0.4) { return opts{.clip_low = clip, .clip_high = clip}; }
inline opts trl_gmpo(double epsilon = 0.4, double beta = 0.0, double epsilon_high = -1.0) {
  return opts{.clip_low = epsilon,
              .clip_high = epsilon_high < 0 ? epsilon : epsilon_high,
              .kl_coef = beta,
              .kl = kl_conventions::trl()};
}
// verl geo_mean: |o_i| + 1e-8 in the geometric mean and in Ā_i, torch.mean over every row.
inline agg_options verl_gmpo_agg() { return agg_options{true, 1e-8, 0.0}; }
// VESPO: no shared option of its own (the ±20 token clamp is part of the formula); its shape
// (surrogate::vespo::options) at TRL's defaults k_pos 2, λ_pos 3, k_neg 3, λ_neg 2.
inline opts trl_vespo() { return opts{}; }
inline surrogate::vespo::options trl_vespo_surrogate(double k_pos = 2.0, double lambda_pos = 3.0,
                                                     double k_neg = 3.0,
                                                     double lambda_neg = 2.0) {
  return {k_pos, lambda_pos, k_neg, lambda_neg};
}
// TRL RLOOTrainer: ε 0.2 / ε_high (None → ε), no clamp, no dual clip.
inline opts trl_rloo(double epsilon = 0.2, double epsilon_high = -1.0) {
  return opts{.clip_low = epsilon, .clip_high = epsilon_high < 0 ? epsilon : epsilon_high};
}
// TRL luspo: GRPO clip on the GSPO sequence ratio (ε 0.2, δ = dual clip for A < 0).
inline opts trl_luspo(double epsilon = 0.2, double epsilon_high = -1.0, double delta = inf) {
  return opts{.clip_low = epsilon,
              .clip_high = epsilon_high < 0 ? epsilon : epsilon_high,
              .dual_clip = delta};
}
// TRL use_bias_correction_kl=True: β·k3·coef_1 (coef_1 = e^{logr} with gradient; token level;
// with importance_sampling_level="sequence" set kl_correction = kl_is_correction::sequence).
inline opts trl_grpo_bias_corrected_kl(double beta, double delta = inf) {
  opts o = trl_grpo(beta, delta);
  o.kl_correction = kl_is_correction::token;
  return o;
}
// TRL 1.16 GRPOTrainer entropy bonus on top of any TRL preset o: loss −= c·Σ m·e·H / max(Σ m·e, 1)
// / GA for every loss_type (a token mean, never the loss type's normaliser), e = the
// top_entropy_quantile mask passed as inputs.entropy_mask. GA = current_gradient_accumulation_steps
// in train mode, 1 in eval; use_adaptive_entropy: c = adaptive_entropy_controller::applied().
inline opts trl_entropy_bonus(opts o, double coef, double gradient_accumulation_steps = 1.0) {
  o.entropy_coef = coef;
  o.entropy_agg = entropy_aggregation::token_mean;
  o.entropy_divisor = gradient_accumulation_steps;
  return o;
}
// open-instruct kl_estimator=3: β·r·d, d = clamp(ℓ − ℓref, ±40), r = e^{ℓ − ℓold} with gradient:
// compose with kl::k1.
inline opts open_instruct_is_kl(double beta = 0.05) {
  opts o = open_instruct_dapo(beta);
  o.kl_correction = kl_is_correction::token;
  return o;
}

}  // namespace pg_presets

POSTTRAIN_NAMESPACE_END
