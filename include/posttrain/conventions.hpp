#pragma once
// posttrain::conventions — one namespace per peer library gathering the presets that reproduce it.
//
// Every place where the peers disagree (std flavour and epsilon of group advantages, GAE carry and
// whitening, KL clamps, aggregation divisors, clip ranges, value clip, preference defaults) is an
// explicit option with a documented default in its family's header; the family also names one
// preset per peer (group_conventions::trl, kl_conventions::verl(kind), pg_presets::verl_ppo(), ...).
// This header is the table of contents by peer:
//
//   conventions::verl          verl core_algos / dp_actor / dp_critic defaults
//   conventions::trl           TRL GRPOTrainer / RLOOTrainer / PPOTrainer / DPOTrainer defaults,
//                              and conventions::trl::loss_type::* (the GRPO loss_type normalisers)
//   conventions::openrlhf      OpenRLHF experience_maker / PolicyLoss / ValueLoss / DPOLoss
//   conventions::open_instruct open-instruct grpo_fast / grpo_utils / dpo_utils
//
// Names are the same across peers where the peer has the piece (group, gae, kl(...), aggregation,
// value, ppo, ...); a peer that lacks a piece has no name for it, so asking for it does not compile.
// Values are the peers' documented defaults (../shared/reference/algorithms.md); each alias below
// points at the family preset, which carries the details in its own comment.
#include "posttrain/advantage/gae.hpp"
#include "posttrain/advantage/group.hpp"
#include "posttrain/advantage/reinforce.hpp"
#include "posttrain/advantage/rloo.hpp"
#include "posttrain/advantage/shaping.hpp"
#include "posttrain/config.hpp"
#include "posttrain/loss/algorithms_offline.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"
#include "posttrain/loss/policy_gradient/entropy_controller.hpp"
#include "posttrain/correction/rollout.hpp"
#include "posttrain/loss/preference/algorithms.hpp"
#include "posttrain/loss/preference/wpo.hpp"
#include "posttrain/loss/value.hpp"
#include "posttrain/ops/model_averaging.hpp"
#include "posttrain/ops/aggregate.hpp"
#include "posttrain/ops/kl.hpp"
#include "posttrain/ops/whiten.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace conventions {

// TRL GRPOTrainer `loss_type` normalisers (algorithms.md §1.7) as (aggregation type, options,
// global normaliser). `ga` = gradient-accumulation steps of the current step (1 in evaluation).
// Use with loss::policy_gradient<Surrogate, Kl, N::aggregation> and pass N::options() and
// N::normalizer(...) to compute(). Tested against TRL's formulas in tests/algo/conventions.cpp.
namespace trl_loss_type {

// "grpo" and "sapo": mean_i( Σ_t m·L / max(|o_i|, 1) ) / GA over ALL local rows (empty rows count).
struct grpo {
  using aggregation = agg::seq_mean_token_mean;
  static agg_options options() { return agg_conventions::trl(); }
  static agg_normalizer normalizer(double local_rows, double ga = 1.0) {
    agg_normalizer n;
    n.sequences = local_rows * ga;
    return n;
  }
};

// "bnpo": Σ m·L / max(Σ m, 1) / GA (local batch token mean).
struct bnpo {
  using aggregation = agg::token_mean;
  static agg_options options() { return {}; }
  static agg_normalizer normalizer(double local_tokens, double ga = 1.0) {
    agg_normalizer n;
    n.tokens = (local_tokens < 1.0 ? 1.0 : local_tokens) * ga;
    return n;
  }
};

// "dr_grpo": Σ m·L / (B_local · max_completion_length) / GA.
struct dr_grpo {
  using aggregation = agg::constant_divisor;
  static agg_options options() { return {}; }
  static agg_normalizer normalizer(double local_rows, double max_completion_length,
                                   double ga = 1.0) {
    agg_normalizer n;
    n.constant = local_rows * max_completion_length * ga;
    return n;
  }
};

// "dapo" (TRL's default), "cispo", "vespo": Σ m·L / (num_items_in_batch / num_processes), with
// num_items_in_batch the active tokens of the whole generation batch over all processes (no GA).
struct dapo {
  using aggregation = agg::token_mean;
  static agg_options options() { return {}; }
  static agg_normalizer normalizer(double num_items_in_batch, double num_processes = 1.0) {
    agg_normalizer n;
    n.tokens = num_items_in_batch / num_processes;
    return n;
  }
};

// "luspo": mean_i( L_i · |o_i| ) / GA with L_i the sequence-level (GSPO) loss: the token sum of a
// per-token loss that equals L_i on every token of row i.
struct luspo {
  using aggregation = agg::seq_mean_token_sum;
  static agg_options options() { return agg_conventions::trl(); }
  static agg_normalizer normalizer(double local_rows, double ga = 1.0) {
    agg_normalizer n;
    n.sequences = local_rows * ga;
    return n;
  }
};

}  // namespace trl_loss_type

namespace verl {
// verl 0.9.1 loss_agg_mode="seq-mean-token-sum-norm" (agg_loss): Σ_i Σ_t m·L / (rows · T) with
// rows = the contributing (non-empty) rows over the whole mini-batch and T the padded response
// width (loss_scale_factor when set, in place of T). Pass rows = aggregation_counts(...).sequences
// all-reduced over micro-batches and ranks (tests/golden/verl_ops.cpp), T = the padded width.
struct seq_mean_token_sum_norm {
  using aggregation = agg::seq_mean_token_sum_norm;
  static agg_options options() { return agg_conventions::verl(); }
  static agg_normalizer normalizer(double rows, double padded_width) {
    agg_normalizer n;
    n.constant = rows * padded_width;
    return n;
  }
};
inline constexpr auto gae = advantage::gae_conventions::verl;
inline constexpr auto group = advantage::group_conventions::verl;  // grpo (loop)
inline constexpr auto group_vectorized = advantage::group_conventions::verl_vectorized;
inline constexpr auto dr_grpo = advantage::group_conventions::dr_grpo;
inline constexpr auto rloo = advantage::rloo_conventions::verl;
inline constexpr auto rloo_vectorized = advantage::rloo_conventions::verl_vectorized;
// verl 0.9.1, the current release: a masked token inside a response (tool observation) is carried
// through, neither resetting nor discounting the return. The reference's older commit b178a3c
// reset the return there: reinforce_pp_b178a3c. (Versioned names keep older behaviour;
// conventions::<peer> is always the peer's current release.)
inline constexpr auto reinforce_pp = advantage::reinforce_pp_conventions::verl_0_9;
inline constexpr auto reinforce_pp_b178a3c = advantage::reinforce_pp_conventions::verl_b178a3c;
inline constexpr auto reinforce_pp_baseline =
    advantage::reinforce_pp_conventions::verl_baseline;
inline constexpr whiten_options whiten = whiten_conventions::verl;
inline constexpr value_options value = value_conventions::verl;
inline constexpr auto kl_controller_fixed = advantage::kl_controller_conventions::verl_fixed;
inline constexpr auto kl_controller_adaptive =
    advantage::kl_controller_conventions::verl_adaptive;
inline kl_options kl(kl_kind kind) { return kl_conventions::verl(kind); }
inline agg_options aggregation() { return agg_conventions::verl(); }
inline policy_gradient_options ppo() { return pg_presets::verl_ppo(); }
inline policy_gradient_options grpo(double beta = 0.001) { return pg_presets::verl_grpo(beta); }
inline policy_gradient_options gspo() { return pg_presets::verl_gspo(); }
inline policy_gradient_options cispo() { return pg_presets::verl_cispo(); }
inline surrogate::cispo::options cispo_surrogate() { return pg_presets::verl_cispo_surrogate(); }
inline policy_gradient_options sapo() { return pg_presets::verl_sapo(); }
inline surrogate::sapo::options sapo_surrogate() { return pg_presets::sapo_surrogate(); }
inline policy_gradient_options gmpo(double clip = 0.4) { return pg_presets::verl_gmpo(clip); }
// Rollout correction (rollout_corr_helper): TIS weights; rejection: rollout_presets::verl_rejection.
inline rollout_is_options rollout_is(is_level level = is_level::sequence_sum,
                                     double threshold = 2.0, bool batch_normalize = false) {
  return rollout_presets::verl(level, threshold, batch_normalize);
}
}  // namespace verl

namespace trl {
namespace loss_type = trl_loss_type;
inline constexpr auto ppo_gae = advantage::gae_conventions::trl_ppo;
inline constexpr auto group = advantage::group_conventions::trl;  // scale_rewards="group"
inline constexpr auto group_batch = advantage::group_conventions::trl_batch;
inline constexpr auto group_none = advantage::group_conventions::trl_none;
inline constexpr auto rloo = advantage::rloo_conventions::trl;
inline constexpr auto rloo_normalized = advantage::rloo_conventions::trl_normalized;
inline constexpr whiten_options ppo_whiten = whiten_conventions::trl_ppo;
inline constexpr value_options value = value_conventions::trl;
inline kl_options kl() { return kl_conventions::trl(); }
inline agg_options aggregation() { return agg_conventions::trl(); }
// GRPOTrainer with use_bias_correction_kl=False (the reference's TRL). TRL 1.16 defaults that flag
// to True: with β > 0 use grpo_bias_corrected_kl(β) to match it (tests/golden/trl_grpo.cpp).
inline policy_gradient_options grpo(double beta = 0.0, double delta = pg_presets::inf) {
  return pg_presets::trl_grpo(beta, delta);
}
inline policy_gradient_options cispo(double cap = 5.0) { return pg_presets::trl_cispo(cap); }
inline surrogate::cispo::options cispo_surrogate() { return pg_presets::trl_cispo_surrogate(); }
inline policy_gradient_options sapo() { return pg_presets::trl_sapo(); }
inline surrogate::sapo::options sapo_surrogate() { return pg_presets::sapo_surrogate(); }
inline policy_gradient_options gmpo() { return pg_presets::trl_gmpo(); }
inline loss::adaptive_entropy_controller adaptive_entropy(double coef) {
  return loss::entropy_controller_conventions::trl_adaptive(coef);
}
// GRPOTrainer's entropy bonus (entropy_coef c, or adaptive_entropy(c).applied()) on a preset o:
// c·(token mean of H over mask × entropy mask)/GA whatever the loss type; pass the
// top_entropy_quantile mask as inputs.entropy_mask (tests/golden/trl_grpo.cpp).
inline policy_gradient_options entropy_bonus(policy_gradient_options o, double coef,
                                             double gradient_accumulation_steps = 1.0) {
  return pg_presets::trl_entropy_bonus(o, coef, gradient_accumulation_steps);
}
inline policy_gradient_options vespo() { return pg_presets::trl_vespo(); }
inline surrogate::vespo::options vespo_surrogate() { return pg_presets::trl_vespo_surrogate(); }
inline policy_gradient_options luspo() { return pg_presets::trl_luspo(); }
inline policy_gradient_options rloo_sequence_ppo() { return pg_presets::trl_rloo(); }
inline policy_gradient_options grpo_bias_corrected_kl(double beta) {
  return pg_presets::trl_grpo_bias_corrected_kl(beta);
}
// vLLM importance sampling correction (vllm_importance_sampling_mode / _clip_max / _clip_min).
inline rollout_is_options vllm_is(trl_is_mode mode = trl_is_mode::sequence_mask,
                                  double clip_max = 3.0,
                                  double clip_min = -rollout_presets::inf) {
  return rollout_presets::trl(mode, clip_max, clip_min);
}
inline constexpr loss::preference_options dpo = pref::presets::trl;
inline constexpr loss::preference_options cpo = pref::presets::trl_cpo;
inline constexpr loss::preference_options_for<pref::simpo> cpo_simpo =
    pref::presets::trl_cpo_simpo;  // β 0.1, .link.gamma 0.5
inline constexpr loss::preference_options orpo = pref::presets::trl_orpo;
inline constexpr loss::wpo_options wpo = pref::presets::wpo_trl;            // HEAD: no clamp
inline constexpr loss::wpo_options wpo_v026 = pref::presets::wpo_trl_v026;  // min(w, 1)
inline constexpr tr_dpo_sync_options tr_dpo = presets::tr_dpo_soft;         // α 0.6, τ 512
}  // namespace trl

namespace openrlhf {
inline constexpr auto gae = advantage::gae_conventions::openrlhf;
inline constexpr auto group = advantage::group_conventions::openrlhf;  // group_norm
inline constexpr auto dr_grpo = advantage::group_conventions::dr_grpo;
inline constexpr auto rloo = advantage::rloo_conventions::openrlhf;
inline constexpr auto reinforce_pp = advantage::reinforce_pp_conventions::openrlhf;
inline constexpr auto reinforce_pp_baseline =
    advantage::reinforce_pp_conventions::openrlhf_baseline;
inline constexpr whiten_options whiten = whiten_conventions::openrlhf_global;
inline constexpr whiten_options whiten_masked_normalize =
    whiten_conventions::openrlhf_masked_normalize;
inline constexpr value_options value = value_conventions::openrlhf;
inline constexpr auto kl_controller_fixed =
    advantage::kl_controller_conventions::openrlhf_fixed;
inline kl_options kl() { return kl_conventions::openrlhf(); }
inline agg_options aggregation() { return agg_conventions::openrlhf(); }
inline policy_gradient_options ppo(double dual_clip = pg_presets::inf) {
  return pg_presets::openrlhf_ppo(dual_clip);
}
// enable_vllm_is_correction with vllm_is_correction_type tis / icepop / seq-mask-tis.
inline rollout_is_options vllm_is(openrlhf_is_type type = openrlhf_is_type::tis, double low = 0.5,
                                  double high = 5.0) {
  return rollout_presets::openrlhf(type, low, high);
}
inline constexpr loss::preference_options dpo = pref::presets::openrlhf;
}  // namespace openrlhf

namespace open_instruct {
inline constexpr auto gae = advantage::gae_conventions::open_instruct;
inline constexpr auto group = advantage::group_conventions::open_instruct_standard;  // standard
inline constexpr auto group_centered = advantage::group_conventions::open_instruct_centered;
inline kl_options kl() { return kl_conventions::open_instruct(); }
inline agg_options aggregation() { return agg_conventions::open_instruct(); }
inline policy_gradient_options dapo(double beta = 0.05) {
  return pg_presets::open_instruct_dapo(beta);
}
inline surrogate::cispo::options cispo_surrogate() {
  return pg_presets::open_instruct_cispo_surrogate();
}
inline policy_gradient_options cispo(double clip_high = 0.272) {
  return pg_presets::open_instruct_cispo(clip_high);
}
inline policy_gradient_options is_corrected_kl(double beta = 0.05) {
  return pg_presets::open_instruct_is_kl(beta);
}
// grpo_utils.compute_rho_correction (use_rho_correction).
inline rollout_is_options rho_correction(const open_instruct_rho& rho = {}) {
  return rollout_presets::open_instruct(rho);
}
inline constexpr loss::preference_options dpo = pref::presets::open_instruct;  // dpo_norm, β = 5
// The intended WPO weight (token means, detached). open-instruct e6c3044's wpo_loss actually
// averages the summed sequence log-probs (so w = e^{S_c + S_r} for one pair) and lets the gradient
// flow through w: tests/golden DISABLED_WpoWeightIsSummedLogProbsWithGradient.
inline constexpr loss::wpo_options wpo = pref::presets::wpo_open_instruct;
}  // namespace open_instruct

}  // namespace conventions

POSTTRAIN_NAMESPACE_END
