#pragma once
// The online RL recipes (namespace posttrain::algo): each name is an algo::recipe over its
// loss::policy_gradient composition (or loss::kl_cov) and the advantage estimator the algorithm is
// trained with, with one preset per peer that has it: R::verl(), R::trl(), R::openrlhf(),
// R::open_instruct(), R::paper() return an algo::preset{advantage options, loss options} whose
// loss part is policy_gradient_loss_options_for<S>{policy, aggregation, surrogate} (surrogate: the
// surrogate's own options, empty but for cispo, sapo, vespo); R::defaults() is the first peer
// listed. The option values are the family presets (pg_presets::, loss/policy_gradient/presets.hpp;
// group_conventions::, rloo_conventions::, gae_conventions::, reinforce_pp_conventions::).
// Global normalisers are per batch: conventions::trl::loss_type::*, conventions::verl::*.
//
//   recipe               surrogate, KL, aggregation                    estimator        peers
//   ppo                  clip, none, token_mean                        gae              verl trl
//   openrlhf ppo_sample_mean      clip, none, seq_mean_token_mean               gae openrlhf
//   ppo_gae              = ppo + loss::value_clipped<token_mean>       gae              verl trl
//   openrlhf grpo                 clip, k3, seq_mean_token_mean                 grpo trl verl
//   dr_grpo              clip, none, seq_mean_token_sum_norm           dr_grpo          verl
//   dapo                 clip, none, token_mean (ε 0.2 / 0.28)         grpo             trl verl
//   gspo                 gspo, none, seq_mean_token_mean               grpo             trl
//   openrlhf gspo_token           gspo_token, none, seq_mean_token_mean         grpo verl cispo
//   cispo, none, token_mean                       grpo             verl trl open_instruct gpg
//   reinforce, none, token_mean                   gpg              verl sapo                 sapo,
//   none, seq_mean_token_mean               grpo             verl trl gmpo                 gmpo,
//   none, seq_mean_token_mean               grpo             verl trl vespo                vespo,
//   none, token_mean                       grpo             trl rloo_sequence_ppo    rloo_sequence,
//   none, seq_mean_token_mean      rloo             trl luspo                gspo, none,
//   seq_mean_token_sum                grpo             trl clip_cov             clip, none,
//   token_mean (+ clip_cov weights)   grpo             verl kl_cov               loss::kl_cov<none,
//   token_mean>                grpo             verl rloo                 clip, none, token_mean
//   rloo             verl openrlhf (+ rloo::trl) reinforce_pp         clip, none, token_mean
//   reinforce_pp     verl openrlhf reinforce_pp_baseline clip, none, token_mean
//   reinforce_pp_baseline  verl openrlhf
// The KL of RLOO and REINFORCE++ lives in the reward (advantage/shaping.hpp kl_in_reward /
// sequence_kl_penalty), not in the loss. The older per-recipe statics (advantage_options,
// loss_options(), <peer>_advantage, <peer>_loss()) of rloo / reinforce_pp* / ppo_gae are kept.
#include "posttrain/advantage/estimator.hpp"
#include "posttrain/algo/recipe.hpp"
#include "posttrain/config.hpp"
#include "posttrain/loss/policy_gradient.hpp"
#include "posttrain/loss/policy_gradient/presets.hpp"
#include "posttrain/correction/token_selection.hpp"
#include "posttrain/loss/kl_cov.hpp"
#include "posttrain/loss/value.hpp"
#include "posttrain/ops/aggregate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace algo {

namespace detail {
template <class S, class K, class A>
using pg = posttrain::loss::policy_gradient<S, K, A>;
using clip_ppo = pg<surrogate::clip, kl::none, agg::token_mean>;

inline policy_gradient_loss_options pg_options(policy_gradient_options o, agg_options a = {}) {
  return {o, a};
}
// With the surrogate's own options (surrogate::cispo::options, ...).
template <class SurrogateOptions>
basic_policy_gradient_loss_options<SurrogateOptions> pg_options(policy_gradient_options o,
                                                                agg_options a,
                                                                SurrogateOptions s) {
  return {o, a, s};
}
}  // namespace detail

// PPO, Schulman et al. 2017 (verl `vanilla`, OpenRLHF `ppo`, TRL PPOTrainer) with GAE.
struct ppo : recipe<detail::clip_ppo, estimator::gae> {
  // verl actor vanilla + critic GAE: dual clip 3, log-ratio clamp ±20, token-mean.
  static preset_type verl() {
    return {posttrain::advantage::gae_conventions::verl,
            detail::pg_options(pg_presets::verl_ppo())};
  }
  // TRL PPOTrainer: λ 0.95, ε 0.2, masked token mean.
  static preset_type trl() { return {posttrain::advantage::gae_conventions::trl_ppo, {}}; }
  // OpenRLHF token-level PolicyLoss: clamp ±20, dual clip off (pass c for --actor.dual_clip).
  static preset_type openrlhf(double dual_clip = pg_presets::inf) {
    return {posttrain::advantage::gae_conventions::openrlhf,
            detail::pg_options(pg_presets::openrlhf_ppo(dual_clip))};
  }
  static preset_type defaults() { return verl(); }
};

// OpenRLHF's per-sample PPO loss (PolicyLoss token_level_loss=False): each row's masked token
// mean, then the mean over rows (|o_i| + 1e-8, empty rows excluded: agg_conventions::openrlhf()).
struct ppo_sample_mean
    : recipe<detail::pg<surrogate::clip, kl::none, agg::seq_mean_token_mean>, estimator::gae> {
  static preset_type openrlhf(double dual_clip = pg_presets::inf) {
    return {posttrain::advantage::gae_conventions::openrlhf,
            detail::pg_options(pg_presets::openrlhf_ppo(dual_clip), agg_conventions::openrlhf())};
  }
  static preset_type defaults() { return openrlhf(); }
};

// GRPO, Shao et al. 2024 (DeepSeekMath): group advantages, β·k3 in the loss, per-row token mean.
struct grpo
    : recipe<detail::pg<surrogate::clip, kl::k3, agg::seq_mean_token_mean>, estimator::grpo> {
  // TRL loss_type="grpo" (scale_rewards="group", ε 1e-4; β default 0; use
  // pg_presets::trl_grpo_bias_corrected_kl for TRL 1.16's use_bias_correction_kl with β > 0).
  // Normaliser: conventions::trl::loss_type::grpo::normalizer(rows, GA).
  static preset_type trl(double beta = 0.0) {
    return {posttrain::advantage::group_conventions::trl,
            detail::pg_options(pg_presets::trl_grpo(beta), agg_conventions::trl())};
  }
  // verl adv_estimator=grpo with use_kl_loss (k3, β 0.001) and loss_agg_mode=seq-mean-token-mean
  // (the paper's; verl's own default mode is token-mean).
  static preset_type verl(double beta = 0.001) {
    return {posttrain::advantage::group_conventions::verl,
            detail::pg_options(pg_presets::verl_grpo(beta), agg_conventions::verl())};
  }
  static preset_type defaults() { return trl(); }
};

// Dr. GRPO, Liu et al. 2025: no std scaling, Σ m·L / constant (verl seq-mean-token-sum-norm;
// normaliser conventions::verl::seq_mean_token_sum_norm). TRL's dr_grpo divides by
// B·max_completion_length with agg::constant_divisor (conventions::trl::loss_type::dr_grpo).
struct dr_grpo : recipe<detail::pg<surrogate::clip, kl::none, agg::seq_mean_token_sum_norm>,
                        estimator::dr_grpo> {
  static preset_type verl() {
    return {posttrain::advantage::group_conventions::dr_grpo,
            detail::pg_options(pg_presets::verl_ppo(), agg_conventions::verl())};
  }
  static preset_type defaults() { return verl(); }
};

// DAPO, Yu et al. 2025: group advantages, clip-higher 0.2 / 0.28, token-mean (TRL's default
// loss_type="dapo"; verl recipe/dapo). Same loss type as ppo, its own presets.
struct dapo : recipe<detail::clip_ppo, estimator::grpo> {
  // TRL loss_type="dapo" with epsilon_high 0.28; normaliser conventions::trl::loss_type::dapo.
  static preset_type trl() {
    return {posttrain::advantage::group_conventions::trl, detail::pg_options(pg_presets::dapo())};
  }
  // verl recipe/dapo: the vanilla actor (dual clip 3, clamp ±20) with clip_ratio_high 0.28.
  static preset_type verl() {
    policy_gradient_options o = pg_presets::verl_ppo();
    o.clip_high = 0.28;
    return {posttrain::advantage::group_conventions::verl, detail::pg_options(o)};
  }
  static preset_type paper() { return trl(); }
  static preset_type defaults() { return trl(); }
};

// GSPO, Zheng et al. 2025: sequence ratio (TRL importance_sampling_level="sequence", OpenRLHF).
struct gspo
    : recipe<detail::pg<surrogate::gspo, kl::none, agg::seq_mean_token_mean>, estimator::grpo> {
  static preset_type trl() {
    return {posttrain::advantage::group_conventions::trl,
            detail::pg_options(pg_presets::gspo(), agg_conventions::trl())};
  }
  static preset_type openrlhf() {
    return {posttrain::advantage::group_conventions::openrlhf,
            detail::pg_options(pg_presets::gspo(), agg_conventions::openrlhf())};
  }
  static preset_type defaults() { return trl(); }
};

// GSPO-token (verl `gspo`, TRL experimental gspo_token).
struct gspo_token : recipe<detail::pg<surrogate::gspo_token, kl::none, agg::seq_mean_token_mean>,
                           estimator::grpo> {
  static preset_type verl() {
    return {posttrain::advantage::group_conventions::verl,
            detail::pg_options(pg_presets::verl_gspo(), agg_conventions::verl())};
  }
  static preset_type defaults() { return verl(); }
};

// CISPO, MiniMax-M1 2025 (verl/TRL/open-instruct `cispo`; the cap form is
// options.surrogate.cap, surrogate::cispo::options).
struct cispo : recipe<detail::pg<surrogate::cispo, kl::none, agg::token_mean>, estimator::grpo> {
  static preset_type verl() {
    return {posttrain::advantage::group_conventions::verl,
            detail::pg_options(pg_presets::verl_cispo(), {}, pg_presets::verl_cispo_surrogate())};
  }
  static preset_type trl(double cap = 5.0) {
    return {posttrain::advantage::group_conventions::trl,
            detail::pg_options(pg_presets::trl_cispo(cap), {}, pg_presets::trl_cispo_surrogate())};
  }
  static preset_type open_instruct(double clip_high = 0.272) {
    return {posttrain::advantage::group_conventions::open_instruct_standard,
            detail::pg_options(pg_presets::open_instruct_cispo(clip_high), {},
                               pg_presets::open_instruct_cispo_surrogate())};
  }
  static preset_type defaults() { return verl(); }
};

// GPG, Chu et al. 2025 (verl `gpg`): −A·ℓ with GPG's group advantages.
struct gpg : recipe<detail::pg<surrogate::reinforce, kl::none, agg::token_mean>, estimator::gpg> {
  static preset_type verl() { return {}; }
  static preset_type defaults() { return verl(); }
};

// SAPO, Qwen 2025 (verl/TRL `sapo`, seq-mean-token-mean).
struct sapo
    : recipe<detail::pg<surrogate::sapo, kl::none, agg::seq_mean_token_mean>, estimator::grpo> {
  static preset_type verl() {
    return {posttrain::advantage::group_conventions::verl,
            detail::pg_options(pg_presets::verl_sapo(), agg_conventions::verl(),
                               pg_presets::sapo_surrogate())};
  }
  static preset_type trl() {
    return {posttrain::advantage::group_conventions::trl,
            detail::pg_options(pg_presets::trl_sapo(), agg_conventions::trl(),
                               pg_presets::sapo_surrogate())};
  }
  static preset_type defaults() { return verl(); }
};

// GMPO, Zhao et al. 2025 (verl `geo_mean`, TRL experimental gmpo): −Ā_i·exp(mean clipped logr).
struct gmpo
    : recipe<detail::pg<surrogate::gmpo, kl::none, agg::seq_mean_token_mean>, estimator::grpo> {
  static preset_type verl(double clip = 0.4) {
    return {posttrain::advantage::group_conventions::verl,
            detail::pg_options(pg_presets::verl_gmpo(clip), pg_presets::verl_gmpo_agg())};
  }
  // TRL β = 0 (with β ≠ 0 TRL adds k3: compose kl::k3 with the same options).
  static preset_type trl() {
    return {posttrain::advantage::group_conventions::trl,
            detail::pg_options(pg_presets::trl_gmpo(), agg_conventions::trl())};
  }
  static preset_type defaults() { return verl(); }
};

// VESPO (TRL loss_type="vespo"): −sg(φ(w_i))·A·ℓ, w_i the summed sequence ratio, token-mean
// (normaliser conventions::trl::loss_type::dapo).
struct vespo : recipe<detail::pg<surrogate::vespo, kl::none, agg::token_mean>, estimator::grpo> {
  static preset_type trl() {
    return {posttrain::advantage::group_conventions::trl,
            detail::pg_options(pg_presets::trl_vespo(), {}, pg_presets::trl_vespo_surrogate())};
  }
  static preset_type defaults() { return trl(); }
};

// TRL RLOOTrainer loss: PPO clip on the full sequence ratio e^{Σ m·logr}, mean over sequences.
struct rloo_sequence_ppo
    : recipe<detail::pg<surrogate::rloo_sequence, kl::none, agg::seq_mean_token_mean>,
             estimator::rloo> {
  static preset_type trl() {
    return {posttrain::advantage::rloo_conventions::trl,
            detail::pg_options(pg_presets::trl_rloo(), agg_conventions::trl())};
  }
  static preset_type defaults() { return trl(); }
};

// LUSPO (TRL loss_type="luspo"): GSPO sequence loss × |o_i|, mean over sequences.
struct luspo
    : recipe<detail::pg<surrogate::gspo, kl::none, agg::seq_mean_token_sum>, estimator::grpo> {
  static preset_type trl() {
    return {posttrain::advantage::group_conventions::trl,
            detail::pg_options(pg_presets::trl_luspo(), agg_conventions::trl())};
  }
  static preset_type defaults() { return trl(); }
};

// Clip-Cov, Cui et al. 2025 (verl loss_mode="clip_cov"): PPO clip with the detached 0/1 weights
// of clip_cov_weights (correction/token_selection.hpp) as importance_weights. Same loss
// type as ppo, its own presets.
struct clip_cov : recipe<detail::clip_ppo, estimator::grpo> {
  static preset_type verl() {
    return {posttrain::advantage::group_conventions::verl,
            detail::pg_options(selection_presets::verl_clip_cov())};
  }
  static preset_type defaults() { return verl(); }
};

// KL-Cov, Cui et al. 2025 (verl loss_mode="kl_cov"): −A·r plus ppo_kl_coef·|logr| on the
// top-covariance tokens of kl_cov_selection.
struct kl_cov : recipe<posttrain::loss::kl_cov<kl::none, agg::token_mean>, estimator::grpo> {
  static preset_type verl() {
    return {posttrain::advantage::group_conventions::verl,
            posttrain::loss::kl_cov_loss_options{{}, selection_presets::verl_kl_cov(), {}}};
  }
  static preset_type defaults() { return verl(); }
};

// RLOO, Ahmadian et al. 2024 ("Back to Basics"): leave-one-out advantages with verl's vanilla PPO
// actor (adv_estimator=rloo, dual clip 3, log-ratio clamp ±20) or OpenRLHF's `rloo` (n > 1).
struct rloo : recipe<detail::clip_ppo, estimator::rloo> {
  static constexpr advantage::options_type advantage_options =
      posttrain::advantage::rloo_conventions::verl;
  static policy_gradient_options loss_options() { return pg_presets::verl_ppo(); }
  static constexpr advantage::options_type openrlhf_advantage =
      posttrain::advantage::rloo_conventions::openrlhf;
  static policy_gradient_options openrlhf_loss() { return pg_presets::openrlhf_ppo(); }
  static preset_type verl() { return {advantage_options, detail::pg_options(loss_options())}; }
  static preset_type openrlhf() {
    return {openrlhf_advantage, detail::pg_options(openrlhf_loss())};
  }
  static preset_type defaults() { return verl(); }

  // TRL RLOOTrainer: leave-one-out over scorable siblings (singleton 0), and a sequence-level PPO
  // clip on the summed log-probs (surrogate::rloo_sequence), mean over rows (reference 4.2).
  struct trl : recipe<algo::rloo_sequence_ppo::loss, posttrain::estimator::rloo> {
    static constexpr advantage::options_type advantage_options =
        posttrain::advantage::rloo_conventions::trl;
    static policy_gradient_options loss_options() { return pg_presets::trl_rloo(); }
    static agg_options aggregation_options() { return agg_conventions::trl(); }
    static preset_type defaults() { return algo::rloo_sequence_ppo::trl(); }
  };
};

// REINFORCE++, Hu 2025: discounted returns (KL in the reward) whitened over the batch, PPO clip
// loss (verl adv_estimator=reinforce_plus_plus; OpenRLHF --algo.advantage.estimator reinforce).
// verl() is verl 0.9.1 (masked gaps carried through, reinforce_pp_conventions::verl_0_9);
// verl_b178a3c() the reference's older verl commit (reset at masked tokens).
struct reinforce_pp : recipe<detail::clip_ppo, estimator::reinforce_pp> {
  static constexpr advantage::options_type advantage_options =
      posttrain::advantage::reinforce_pp_conventions::verl;
  static policy_gradient_options loss_options() { return pg_presets::verl_ppo(); }
  static constexpr advantage::options_type openrlhf_advantage =
      posttrain::advantage::reinforce_pp_conventions::openrlhf;
  static policy_gradient_options openrlhf_loss() { return pg_presets::openrlhf_ppo(); }
  static preset_type verl() {
    return {posttrain::advantage::reinforce_pp_conventions::verl_0_9,
            detail::pg_options(loss_options())};
  }
  static preset_type verl_b178a3c() {
    return {posttrain::advantage::reinforce_pp_conventions::verl_b178a3c,
            detail::pg_options(loss_options())};
  }
  static preset_type openrlhf() {
    return {openrlhf_advantage, detail::pg_options(openrlhf_loss())};
  }
  static preset_type defaults() { return verl(); }
};

// REINFORCE++-baseline, Hu 2025: group-mean baseline, token-weighted batch whitening, PPO clip
// (verl reinforce_plus_plus_baseline; OpenRLHF reinforce_baseline).
struct reinforce_pp_baseline : recipe<detail::clip_ppo, estimator::reinforce_pp_baseline> {
  static constexpr advantage::options_type advantage_options =
      posttrain::advantage::reinforce_pp_conventions::verl_baseline;
  static policy_gradient_options loss_options() { return pg_presets::verl_ppo(); }
  static constexpr advantage::options_type openrlhf_advantage =
      posttrain::advantage::reinforce_pp_conventions::openrlhf_baseline;
  static policy_gradient_options openrlhf_loss() { return pg_presets::openrlhf_ppo(); }
  static preset_type verl() { return {advantage_options, detail::pg_options(loss_options())}; }
  static preset_type openrlhf() {
    return {openrlhf_advantage, detail::pg_options(openrlhf_loss())};
  }
  static preset_type defaults() { return verl(); }
};

// PPO with GAE and a clipped value loss, Schulman et al. 2017 (verl adv_estimator=gae with the
// vanilla actor and critic cliprange_value 0.5; TRL PPOTrainer λ 0.95, clip 0.2, vf clip 0.2,
// vf_coef 0.1; OpenRLHF gae): algo::ppo plus the value loss and its presets.
struct ppo_gae : ppo {
  using value_loss = posttrain::loss::value_clipped<agg::token_mean>;
  static constexpr advantage::options_type advantage_options =
      posttrain::advantage::gae_conventions::verl;
  static policy_gradient_options loss_options() { return pg_presets::verl_ppo(); }
  static constexpr value_options value_loss_options = value_conventions::verl;
  static constexpr advantage::options_type trl_advantage =
      posttrain::advantage::gae_conventions::trl_ppo;
  static policy_gradient_options trl_loss() { return policy_gradient_options{}; }
  static constexpr value_options trl_value_loss = value_conventions::trl;
  static constexpr advantage::options_type openrlhf_advantage =
      posttrain::advantage::gae_conventions::openrlhf;
  static policy_gradient_options openrlhf_loss() { return pg_presets::openrlhf_ppo(); }
  static constexpr value_options openrlhf_value_loss = value_conventions::openrlhf;
};

static_assert(check_advantage_estimator<rloo::advantage>());
static_assert(check_advantage_estimator<reinforce_pp::advantage>());
static_assert(check_advantage_estimator<reinforce_pp_baseline::advantage>());
static_assert(check_advantage_estimator<ppo_gae::advantage>());

}  // namespace algo

POSTTRAIN_NAMESPACE_END
