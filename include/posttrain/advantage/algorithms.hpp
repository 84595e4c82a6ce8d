#pragma once
// Online RL recipes (namespace posttrain::algo): an advantage estimator (a model of
// advantage_estimator, advantage/estimator.hpp) paired with the policy loss the peers train it
// with (loss/policy_gradient/algorithms.hpp), plus the preset options of each peer.
//
//   struct recipe {
//     using advantage = estimator::...;           // E::compute(exec, inputs, outputs, options)
//     using loss = posttrain::loss::policy_gradient<...>;    // loss::compute(exec, inputs,
//     options, ...) static constexpr advantage::options_type advantage_options;   // default peer's
//     preset static policy_gradient_options loss_options();                  // default peer's
//     preset
//     ... the other peers' presets as <peer>_advantage / <peer>_loss()
//   };
//
//   recipe            advantage                 loss (surrogate, KL, aggregation)      default peer
//   rloo              estimator::rloo           clip, kl::none, token_mean             verl
//   reinforce_pp      estimator::reinforce_pp   clip, kl::none, token_mean             verl
//   reinforce_pp_baseline  estimator::reinforce_pp_baseline  clip, none, token_mean    verl
//   ppo_gae           estimator::gae            clip, kl::none, token_mean + value     verl
//                                               loss::value_clipped<token_mean>
//   rloo::trl         estimator::rloo           algo::rloo_sequence_ppo (TRL RLOOTrainer) TRL
// The KL of RLOO and REINFORCE++ lives in the reward (advantage/shaping.hpp kl_in_reward /
// sequence_kl_penalty; TRL RLOO: β = 0.05, sequence sum), not in the loss.
#include "posttrain/advantage/estimator.hpp"
#include "posttrain/config.hpp"
#include "posttrain/loss/policy_gradient.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"
#include "posttrain/loss/value.hpp"
#include "posttrain/ops/aggregate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace algo {

// RLOO, Ahmadian et al. 2024 ("Back to Basics"): leave-one-out advantages with verl's vanilla PPO
// actor (adv_estimator=rloo, dual clip 3, log-ratio clamp ±20) or OpenRLHF's `rloo` (n > 1).
struct rloo {
  using advantage = estimator::rloo;
  using loss = posttrain::loss::policy_gradient<surrogate::clip, kl::none, agg::token_mean>;
  static constexpr advantage::options_type advantage_options =
      posttrain::advantage::rloo_conventions::verl;
  static policy_gradient_options loss_options() { return pg_presets::verl_ppo(); }
  static constexpr advantage::options_type openrlhf_advantage =
      posttrain::advantage::rloo_conventions::openrlhf;
  static policy_gradient_options openrlhf_loss() { return pg_presets::openrlhf_ppo(); }

  // TRL RLOOTrainer: leave-one-out over scorable siblings (singleton 0), and a sequence-level PPO
  // clip on the summed log-probs (surrogate::rloo_sequence), mean over rows (reference 4.2).
  struct trl {
    using advantage = estimator::rloo;
    using loss = algo::rloo_sequence_ppo;
    static constexpr advantage::options_type advantage_options =
        posttrain::advantage::rloo_conventions::trl;
    static policy_gradient_options loss_options() { return pg_presets::trl_rloo(); }
    static agg_options aggregation_options() { return agg_conventions::trl(); }
  };
};

// REINFORCE++, Hu 2025: discounted returns (KL in the reward) whitened over the batch, PPO clip
// loss (verl adv_estimator=reinforce_plus_plus; OpenRLHF --algo.advantage.estimator reinforce).
struct reinforce_pp {
  using advantage = estimator::reinforce_pp;
  using loss = posttrain::loss::policy_gradient<surrogate::clip, kl::none, agg::token_mean>;
  static constexpr advantage::options_type advantage_options =
      posttrain::advantage::reinforce_pp_conventions::verl;
  static policy_gradient_options loss_options() { return pg_presets::verl_ppo(); }
  static constexpr advantage::options_type openrlhf_advantage =
      posttrain::advantage::reinforce_pp_conventions::openrlhf;
  static policy_gradient_options openrlhf_loss() { return pg_presets::openrlhf_ppo(); }
};

// REINFORCE++-baseline, Hu 2025: group-mean baseline, token-weighted batch whitening, PPO clip
// (verl reinforce_plus_plus_baseline; OpenRLHF reinforce_baseline).
struct reinforce_pp_baseline {
  using advantage = estimator::reinforce_pp_baseline;
  using loss = posttrain::loss::policy_gradient<surrogate::clip, kl::none, agg::token_mean>;
  static constexpr advantage::options_type advantage_options =
      posttrain::advantage::reinforce_pp_conventions::verl_baseline;
  static policy_gradient_options loss_options() { return pg_presets::verl_ppo(); }
  static constexpr advantage::options_type openrlhf_advantage =
      posttrain::advantage::reinforce_pp_conventions::openrlhf_baseline;
  static policy_gradient_options openrlhf_loss() { return pg_presets::openrlhf_ppo(); }
};

// PPO with GAE and a clipped value loss, Schulman et al. 2017 (verl adv_estimator=gae with the
// vanilla actor and critic cliprange_value 0.5; TRL PPOTrainer λ 0.95, clip 0.2, vf clip 0.2,
// vf_coef 0.1; OpenRLHF gae).
struct ppo_gae {
  using advantage = estimator::gae;
  using loss = posttrain::loss::policy_gradient<surrogate::clip, kl::none, agg::token_mean>;
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
