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
#include "posttrain/config.hpp"
#include "posttrain/loss/policy_gradient.hpp"

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
// TRL GRPO loss: ε 0.2, no clamp, β·k3 (kl_conventions::trl); delta = dual clip for A < 0.
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

}  // namespace pg_presets

POSTTRAIN_NAMESPACE_END
