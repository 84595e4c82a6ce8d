#pragma once
// Named policy-gradient algorithms (namespace posttrain::algo) and the peers' option presets
// (namespace posttrain::pg_presets). Structure is the type; hyperparameters come from a
// policy_gradient_options preset and the aggregation conventions from agg_conventions::*.
//
//   algo          composition                                   options preset / agg options
//   ppo           clip, kl::none, token_mean                    verl_ppo() (+ advantage::gae,
//                                                               loss::value_clipped)
//   grpo          clip, kl::k3, seq_mean_token_mean             trl_grpo(β) + agg_conventions::trl()
//   dr_grpo       clip, kl::none, seq_mean_token_sum_norm       normalizer.constant = T (verl) or
//                                                               B·max_completion_length (TRL)
//   dapo          clip, kl::none, token_mean                    dapo() (0.2 / 0.28)
//   gspo          gspo, kl::none, seq_mean_token_mean           gspo() (3e-4 / 4e-4)
//   gspo_token    gspo_token, kl::none, seq_mean_token_mean     verl_gspo() (log s ≤ 10)
//   cispo         cispo, kl::none, token_mean                   verl_cispo / trl_cispo /
//                                                               open_instruct_cispo
//   gpg           reinforce, kl::none, token_mean               {}
//   sapo          sapo, kl::none, seq_mean_token_mean           verl_sapo() / trl_sapo()
//   gmpo          gmpo, kl::none, seq_mean_token_mean           verl_gmpo() + verl_gmpo_agg() /
//                                                               trl_gmpo() + agg_conventions::trl()
//                 (TRL β ≠ 0: kl::k3 instead of kl::none, same options/aggregation)
//   vespo         vespo, kl::none, token_mean                   trl_vespo(); normalizer.tokens =
//                                                               num_items_in_batch / P
//   rloo_sequence_ppo  rloo_sequence, kl::none, seq_mean_token_mean   trl_rloo() +
//                                                               agg_conventions::trl()
//   luspo         gspo, kl::none, seq_mean_token_sum            trl_luspo() + agg_conventions::trl()
// IS-corrected KL (any composition with a KL estimator): options.kl_correction;
// trl_grpo_bias_corrected_kl(β), open_instruct_is_kl(β) (kl::k1).
// Entropy bonus: options.entropy_coef aggregated like the loss (verl, OpenRLHF), or
// trl_entropy_bonus(o, c, GA) for TRL's token mean (options.entropy_agg = token_mean).
#include "posttrain/config.hpp"
#include "posttrain/loss/policy_gradient.hpp"
#include "posttrain/loss/policy_gradient/token_selection.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace algo {

// PPO, Schulman et al. 2017 (verl `vanilla`, OpenRLHF `ppo`, TRL PPOTrainer).
using ppo = loss::policy_gradient<surrogate::clip, kl::none, agg::token_mean>;
// GRPO, Shao et al. 2024 (DeepSeekMath) as TRL loss_type="grpo": β·k3 in the loss, per-row mean.
using grpo = loss::policy_gradient<surrogate::clip, kl::k3, agg::seq_mean_token_mean>;
// Dr. GRPO, Liu et al. 2025: Σ m·L / constant (verl seq-mean-token-sum-norm, TRL dr_grpo).
using dr_grpo = loss::policy_gradient<surrogate::clip, kl::none, agg::seq_mean_token_sum_norm>;
// DAPO, Yu et al. 2025: clip-higher 0.2/0.28, token-mean (TRL default loss_type="dapo").
using dapo = loss::policy_gradient<surrogate::clip, kl::none, agg::token_mean>;
// GSPO, Zheng et al. 2025: sequence ratio (TRL importance_sampling_level="sequence", OpenRLHF).
using gspo = loss::policy_gradient<surrogate::gspo, kl::none, agg::seq_mean_token_mean>;
// GSPO-token (verl `gspo`, TRL experimental gspo_token).
using gspo_token = loss::policy_gradient<surrogate::gspo_token, kl::none, agg::seq_mean_token_mean>;
// CISPO, MiniMax-M1 2025 (verl/TRL/open-instruct `cispo`; cap form is options.cispo_mode).
using cispo = loss::policy_gradient<surrogate::cispo, kl::none, agg::token_mean>;
// GPG, Chu et al. 2025 (verl `gpg`): −A·ℓ.
using gpg = loss::policy_gradient<surrogate::reinforce, kl::none, agg::token_mean>;
// SAPO, Qwen 2025 (verl/TRL `sapo`, seq-mean-token-mean).
using sapo = loss::policy_gradient<surrogate::sapo, kl::none, agg::seq_mean_token_mean>;
// GMPO, Zhao et al. 2025 (verl `geo_mean`, TRL experimental gmpo): −Ā_i·exp(mean clipped logr).
using gmpo = loss::policy_gradient<surrogate::gmpo, kl::none, agg::seq_mean_token_mean>;
// VESPO (TRL loss_type="vespo"): −sg(φ(w_i))·A·ℓ, w_i the summed sequence ratio, token-mean.
using vespo = loss::policy_gradient<surrogate::vespo, kl::none, agg::token_mean>;
// TRL RLOOTrainer loss: PPO clip on the full sequence ratio e^{Σ m·logr}, mean over sequences.
using rloo_sequence_ppo =
    loss::policy_gradient<surrogate::rloo_sequence, kl::none, agg::seq_mean_token_mean>;
// LUSPO (TRL loss_type="luspo"): GSPO sequence loss × |o_i|, mean over sequences.
using luspo = loss::policy_gradient<surrogate::gspo, kl::none, agg::seq_mean_token_sum>;

// Clip-Cov, Cui et al. 2025 (verl loss_mode="clip_cov"): PPO clip with the detached 0/1 weights of
// clip_cov_weights (token_selection.hpp) as importance_weights; options selection_presets::verl_clip_cov().
using clip_cov = loss::policy_gradient<surrogate::clip, kl::none, agg::token_mean>;
// KL-Cov, Cui et al. 2025 (verl loss_mode="kl_cov"): −A·r plus ppo_kl_coef·|logr| on the top-covariance
// tokens of kl_cov_selection.
using kl_cov = loss::kl_cov<kl::none, agg::token_mean>;

}  // namespace algo

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
// CISPO cap forms.
inline opts verl_cispo() {
  return opts{.log_ratio_min = -20, .log_ratio_max = 20, .cispo_mode = cispo_cap::two_sided};
}
inline opts trl_cispo(double cap = 5.0) {
  return opts{.clip_high = cap, .cispo_mode = cispo_cap::absolute_upper};
}
inline opts open_instruct_cispo(double clip_high = 0.272) {
  return opts{.clip_high = clip_high, .cispo_mode = cispo_cap::relative_upper};
}
// SAPO τ 1.0 / 1.05 (both peers); verl clamps ±20.
inline opts verl_sapo() { return opts{.log_ratio_min = -20, .log_ratio_max = 20}; }
inline opts trl_sapo() { return opts{}; }
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
// VESPO: TRL defaults k_pos 2, λ_pos 3, k_neg 3, λ_neg 2.
inline opts trl_vespo(double k_pos = 2.0, double lambda_pos = 3.0, double k_neg = 3.0,
                      double lambda_neg = 2.0) {
  return opts{.vespo_k_pos = k_pos,
              .vespo_lambda_pos = lambda_pos,
              .vespo_k_neg = k_neg,
              .vespo_lambda_neg = lambda_neg};
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
