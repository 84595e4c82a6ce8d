#pragma once
// Named offline algorithms beyond the DPO family (namespace posttrain::algo) and their presets
// (namespace posttrain::pref::presets). The DPO family itself is in loss/preference/algorithms.hpp.
//
//   algo::orpo            preference<orpo, mean, reference_free, nll, trl_orpo>    TRL ORPO
//   algo::cpo             preference<sigmoid, sum, reference_free, nll, trl_cpo>   TRL CPO sigmoid
//   algo::cpo_hinge       preference<hinge, sum, reference_free, nll, trl_cpo>     TRL CPO hinge
//   algo::cpo_ipo         preference<ipo, mean, reference_free, nll, trl_cpo>      TRL CPO ipo
//   algo::cpo_simpo       preference<simpo, mean, reference_free, nll, trl_cpo>    TRL CPO simpo
//   algo::alphapo         alphapo<sigmoid, sum>  (options.alpha)                  TRL CPO alpha
//   algo::alphapo_simpo   alphapo<simpo, mean>                                     TRL CPO simpo+α
//   algo::kto             kto<unpaired::kto, sum>                                  TRL KTO
//   algo::kto_apo_zero_unpaired  kto<unpaired::apo_zero, sum>         TRL apo_zero_unpaired
//   algo::kto_vanilla_paired     kto_vanilla_paired                   OpenRLHF VanillaKTOLoss
//   (nll = pref::nll_token_mean; trl_orpo / trl_cpo = pref::defaults::*, the NLL weight 1)
//   algo::bradley_terry   reward_model<rm::bradley_terry>                          TRL/OpenRLHF RM
//   algo::reward_log_exp  reward_model<rm::log_exp>                                OpenRLHF logexp
//   algo::sft             sft<agg::token_mean>  (also sft_sum, sft_sample_mean)
//
// The NLL weight of every composition with an NLL term is options.nll_coef. Left unset (the
// default, NaN) it is the composition's Defaults::nll_coef: the orpo and cpo* aliases carry
// pref::defaults::trl_orpo / trl_cpo (1, TRL's), so algo::orpo::compute(in, {.beta = 0.2}) weighs
// the NLL 1, not Llama 3's 0.2 (the generic default of user compositions and algo::dpo_nll).
// An explicit nll_coef always wins. Presets pref::presets::trl_orpo / trl_cpo set it explicitly.
#include "posttrain/config.hpp"
#include "posttrain/loss/alphapo.hpp"
#include "posttrain/loss/kto.hpp"
#include "posttrain/loss/preference.hpp"
#include "posttrain/loss/preference/orpo.hpp"
#include "posttrain/loss/reward_model.hpp"
#include "posttrain/loss/sft.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace algo {

// ORPO, Hong et al. 2024 (TRL ORPOTrainer): NLL_chosen − β·mean logσ(log-odds ratio of ā).
using orpo = loss::preference<pref::orpo, seq::mean, pref::reference_free, pref::nll_token_mean,
                              pref::defaults::trl_orpo>;
// CPO, Xu et al. 2024 (TRL CPOTrainer loss_type="sigmoid"): −logσ(β(π_c − π_r)) + α·NLL.
using cpo = loss::preference<pref::sigmoid, seq::sum, pref::reference_free, pref::nll_token_mean,
                             pref::defaults::trl_cpo>;
// TRL CPOTrainer loss_type="hinge": relu(1 − β(π_c − π_r)) + α·NLL (summed log-probs).
using cpo_hinge = loss::preference<pref::hinge, seq::sum, pref::reference_free,
                                   pref::nll_token_mean, pref::defaults::trl_cpo>;
// TRL CPOTrainer loss_type="ipo": (ā_c − ā_r − 1/(2β))² + α·NLL (averaged log-probs).
using cpo_ipo = loss::preference<pref::ipo, seq::mean, pref::reference_free, pref::nll_token_mean,
                                 pref::defaults::trl_cpo>;
// TRL CPOTrainer loss_type="simpo" (SimPO, Meng et al. 2024, + α·NLL; α = 0 is algo::simpo).
using cpo_simpo = loss::preference<pref::simpo, seq::mean, pref::reference_free,
                                   pref::nll_token_mean, pref::defaults::trl_cpo>;
// AlphaPO, Gupta et al. 2025 (TRL CPOTrainer alpha ≠ 0, loss_type="sigmoid"): rewards
// u = (1 − p^{−α})/α replace π in CPO.
using alphapo = loss::alphapo<pref::sigmoid, seq::sum>;
// AlphaPO on SimPO (TRL CPOTrainer alpha ≠ 0, loss_type="simpo", token-mean log-probs).
using alphapo_simpo = loss::alphapo<pref::simpo, seq::mean>;
// KTO, Ethayarajh et al. 2024 (TRL KTOTrainer loss_type="kto", OpenRLHF KTOLoss); summed.
using kto = loss::kto<unpaired::kto, seq::sum>;
// TRL KTOTrainer loss_type="apo_zero_unpaired" (D'Oosterlinck et al. 2024).
using kto_apo_zero_unpaired = loss::kto<unpaired::apo_zero, seq::sum>;
// OpenRLHF VanillaKTOLoss (paired, balanced data, cross-KL reference points).
using kto_vanilla_paired = loss::kto_vanilla_paired;
// Bradley-Terry reward model (Ouyang et al. 2022; TRL RewardTrainer, OpenRLHF PairWiseLoss).
using bradley_terry = loss::reward_model<rm::bradley_terry>;
// LogExp reward-model loss (OpenRLHF LogExpLoss), computed stably.
using reward_log_exp = loss::reward_model<rm::log_exp>;
// SFT NLL, token mean (HF/TRL/OpenRLHF GPTLMLoss; global token count: OpenRLHF SFTLoss).
using sft = loss::sft<agg::token_mean>;
// SFT NLL summed over tokens (open-instruct legacy reduce_loss="sum").
using sft_sum = loss::sft<agg::token_sum>;
// SFT NLL, mean of per-sequence token means (OpenRLHF SFTLoss sample level).
using sft_sample_mean = loss::sft<agg::seq_mean_token_mean>;

}  // namespace algo

namespace pref::presets {

// TRL ORPOConfig: β (λ) = 0.1, NLL weight 1.
inline constexpr loss::preference_options trl_orpo{.beta = 0.1, .nll_coef = 1.0};
// TRL CPOConfig: β = 0.1, cpo_alpha = 1, simpo_gamma = 0.5 (loss_type sigmoid/hinge/ipo/simpo).
inline constexpr loss::preference_options trl_cpo{.beta = 0.1, .gamma = 0.5, .nll_coef = 1.0};

}  // namespace pref::presets

POSTTRAIN_NAMESPACE_END
