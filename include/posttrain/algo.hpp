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

// Every named loss models the Loss concept (loss/concept.hpp): the one interface pipeline/ uses.
static_assert(check_loss_model<algo::dpo>());
static_assert(check_loss_model<algo::cdpo>());
static_assert(check_loss_model<algo::robust_dpo>());
static_assert(check_loss_model<algo::ipo>());
static_assert(check_loss_model<algo::ipo_sum>());
static_assert(check_loss_model<algo::dpo_length_normalized>());
static_assert(check_loss_model<algo::simpo>());
static_assert(check_loss_model<algo::dpo_nll>());
static_assert(check_loss_model<algo::dpo_nll_sequence_mean>());
static_assert(check_loss_model<algo::hinge>());
static_assert(check_loss_model<algo::exo_pair>());
static_assert(check_loss_model<algo::nca_pair>());
static_assert(check_loss_model<algo::bco_pair>());
static_assert(check_loss_model<algo::sppo_hard>());
static_assert(check_loss_model<algo::apo_zero>());
static_assert(check_loss_model<algo::apo_down>());
static_assert(check_loss_model<algo::discopop>());
static_assert(check_loss_model<algo::aot>());
static_assert(check_loss_model<algo::aot_unpaired>());
static_assert(check_loss_model<algo::f_dpo_forward_kl>());
static_assert(check_loss_model<algo::f_dpo_js>());
static_assert(check_loss_model<algo::f_dpo_alpha>());
static_assert(check_loss_model<algo::ld_dpo>());
static_assert(check_loss_model<algo::ld_dpo_policy_only>());
static_assert(check_loss_model<algo::wpo>());
static_assert(check_loss_model<algo::tr_dpo>());
static_assert(check_loss_model<algo::mpo>());
static_assert(check_loss_model<algo::rpo>());
static_assert(check_loss_model<algo::bco_pair_running_mean>());
static_assert(check_loss_model<algo::orpo>());
static_assert(check_loss_model<algo::cpo>());
static_assert(check_loss_model<algo::cpo_hinge>());
static_assert(check_loss_model<algo::cpo_ipo>());
static_assert(check_loss_model<algo::cpo_simpo>());
static_assert(check_loss_model<algo::alphapo>());
static_assert(check_loss_model<algo::alphapo_simpo>());
static_assert(check_loss_model<algo::kto>());
static_assert(check_loss_model<algo::kto_apo_zero_unpaired>());
static_assert(check_loss_model<algo::kto_vanilla_paired>());
static_assert(check_loss_model<algo::bradley_terry>());
static_assert(check_loss_model<algo::reward_log_exp>());
static_assert(check_loss_model<algo::sft>());
static_assert(check_loss_model<algo::sft_sum>());
static_assert(check_loss_model<algo::sft_sample_mean>());
static_assert(check_loss_model<algo::ppo>());
static_assert(check_loss_model<algo::grpo>());
static_assert(check_loss_model<algo::dr_grpo>());
static_assert(check_loss_model<algo::dapo>());
static_assert(check_loss_model<algo::gspo>());
static_assert(check_loss_model<algo::gspo_token>());
static_assert(check_loss_model<algo::cispo>());
static_assert(check_loss_model<algo::gpg>());
static_assert(check_loss_model<algo::sapo>());
static_assert(check_loss_model<algo::gmpo>());
static_assert(check_loss_model<algo::vespo>());
static_assert(check_loss_model<algo::rloo_sequence_ppo>());
static_assert(check_loss_model<algo::luspo>());
static_assert(check_loss_model<algo::clip_cov>());
static_assert(check_loss_model<algo::kl_cov>());
static_assert(check_loss_model<algo::ipo_f_divergence<divergence::js_divergence>>());
static_assert(check_loss_model<algo::dpo_length_normalized_f_divergence<divergence::forward_kl>>());
static_assert(check_loss_model<loss::value_clipped<agg::token_mean>>());
static_assert(check_loss_model<algo::rloo::loss>() && check_loss_model<algo::ppo_gae::value_loss>());

POSTTRAIN_NAMESPACE_END
