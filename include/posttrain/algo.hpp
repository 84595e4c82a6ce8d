#pragma once
// posttrain::algo — every named algorithm as a type alias of its composition. This header is a
// table of contents: the aliases live next to the families they compose, each with a one-line
// comment citing the paper or library it reproduces.
//
//   offline preference (loss/preference/algorithms.hpp)
//     algo::dpo, cdpo (preset), robust_dpo, ipo (TRL, length-normalised), ipo_sum (OpenRLHF),
//     dpo_length_normalized (Tülu 3), simpo, dpo_nll (Llama 3), dpo_nll_sequence_mean (OpenRLHF),
//     hinge, exo_pair, nca_pair, bco_pair, sppo_hard, apo_zero, apo_down, discopop, aot,
//     aot_unpaired, f_dpo_forward_kl, f_dpo_js, f_dpo_alpha, ld_dpo, ld_dpo_policy_only,
//     wpo (= dpo + pair_weights), tr_dpo (= dpo + ops/model_averaging.hpp tr_dpo_sync),
//     mpo, rpo (loss::weighted lists), bco_pair_running_mean (TRL v0.26)
//
//   offline, other families (loss/algorithms_offline.hpp)
//     algo::orpo, cpo, cpo_hinge, cpo_ipo, cpo_simpo, alphapo, alphapo_simpo, kto,
//     kto_apo_zero_unpaired, kto_vanilla_paired, bradley_terry, reward_log_exp, sft, sft_sum,
//     sft_sample_mean
//
//   online policy gradient (loss/policy_gradient/algorithms.hpp; options in pg_presets::)
//     algo::ppo, grpo (TRL loss_type "grpo"), dr_grpo, dapo, gspo, gspo_token, cispo, gpg, sapo,
//     gmpo, vespo, rloo_sequence_ppo (TRL RLOOTrainer loss), luspo, clip_cov, kl_cov
//     (selections and rollout corrections: token_selection.hpp, rollout_correction.hpp)
//
//   online RL recipes: advantage estimator + loss + presets (advantage/algorithms.hpp)
//     algo::rloo (+ rloo::trl), reinforce_pp, reinforce_pp_baseline, ppo_gae
//
//   presets by peer: conventions::verl, trl (+ trl::loss_type normalisers), openrlhf,
//   open_instruct (conventions.hpp). Concepts: check_loss_for (loss/concept.hpp),
//   check_advantage_estimator (advantage/estimator.hpp), and one per policy kind.
#include <array>
#include <span>

#include "posttrain/advantage/algorithms.hpp"
#include "posttrain/conventions.hpp"
#include "posttrain/core/batch.hpp"
#include "posttrain/loss/algorithms_offline.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"
#include "posttrain/loss/preference/algorithms.hpp"

POSTTRAIN_NAMESPACE_BEGIN

// Every named loss is a model of the Loss concept for its family's inputs.
static_assert(check_loss_for<algo::dpo, loss::preference_inputs<float>>());
static_assert(check_loss_for<algo::simpo, loss::preference_inputs<double>>());
static_assert(check_loss_for<algo::aot, loss::preference_inputs<float>>());
static_assert(check_loss_for<algo::ld_dpo, loss::preference_inputs<float>>());
static_assert(check_loss_for<algo::f_dpo_alpha, loss::preference_inputs<double>>());
static_assert(check_loss_for<algo::mpo, loss::preference_inputs<float>, std::array<double, 3>>());
static_assert(check_loss_for<algo::rpo, loss::preference_inputs<double>, std::array<double, 2>>());
static_assert(
    check_loss_for<algo::bco_pair_running_mean, loss::preference_inputs<float>, double>());
static_assert(check_loss_for<algo::orpo, loss::preference_inputs<float>>());
static_assert(check_loss_for<algo::alphapo, loss::preference_inputs<float>>());
static_assert(check_loss_for<algo::kto, loss::kto_inputs<float>>());
static_assert(check_loss_for<algo::bradley_terry, loss::reward_model_inputs<float>>());
static_assert(check_loss_for<algo::sft, std::span<const float>, token_batch>());
static_assert(check_loss_for<algo::ppo, policy_gradient_inputs<float>>());
static_assert(check_loss_for<algo::grpo, policy_gradient_inputs<double>>());
static_assert(check_loss_for<algo::gspo, policy_gradient_inputs<float>>());
static_assert(check_loss_for<algo::gmpo, policy_gradient_inputs<float>>());
static_assert(check_loss_for<algo::vespo, policy_gradient_inputs<double>>());
static_assert(check_loss_for<algo::rloo_sequence_ppo, policy_gradient_inputs<float>>());
static_assert(check_loss_for<algo::kl_cov, policy_gradient_inputs<float>>());
static_assert(check_loss_for<loss::value_clipped<agg::token_mean>, value_inputs<float>>());

POSTTRAIN_NAMESPACE_END
