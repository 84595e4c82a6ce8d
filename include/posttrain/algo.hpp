#pragma once
// posttrain::algo — every named algorithm as a type alias of its composition. This header is a
// table of contents: the aliases live next to the families they compose, each with a one-line
// comment citing the paper or library it reproduces.
//
//   offline preference (loss/preference/algorithms.hpp)
//     algo::dpo, cdpo (preset), robust_dpo, ipo (TRL, length-normalised), ipo_sum (OpenRLHF),
//     dpo_length_normalized (Tülu 3), simpo, dpo_nll (Llama 3), dpo_nll_sequence_mean (OpenRLHF),
//     hinge, exo_pair, nca_pair, bco_pair, sppo_hard, apo_zero, apo_down, discopop
//
//   online policy gradient (loss/policy_gradient/algorithms.hpp; options in pg_presets::)
//     algo::ppo, grpo (TRL loss_type "grpo"), dr_grpo, dapo, gspo, gspo_token, cispo, gpg, sapo
//
// Still to come: rloo (sequence-level PPO), reinforce_pp, ORPO/KTO/CPO and the reward models.
#include "posttrain/loss/policy_gradient/algorithms.hpp"
#include "posttrain/loss/preference/algorithms.hpp"
