#pragma once
// The offline preference recipes (namespace posttrain::algo): the DPO family and the
// reference-free ORPO / CPO / AlphaPO compositions. Each name is an algo::recipe over its
// loss::preference (or loss::alphapo / loss::weighted / loss::bco_pair_running_mean) composition,
// with its peers' presets as static functions (R::trl(), R::openrlhf(), ..., R::defaults()); the
// preset values live in loss/preference/presets.hpp (pref::presets). Hyperparameters:
// loss::preference_options (defaults: TRL's, see loss/preference/link.hpp), plus the link's own
// (`.link`: simpo's γ, discopop's τ, f_dpo_alpha's .link.divergence.alpha) where it has them.
//
//   algo::dpo                    sigmoid, sum             DPO; TRL/OpenRLHF/open-instruct `dpo`
//   algo::cdpo                   sigmoid, sum, ε          cDPO; TRL v0.26/OpenRLHF/open-instruct
//   algo::robust_dpo             robust, sum              TRL `robust`
//   algo::ipo                    ipo, mean                TRL `ipo` (length-normalised)
//   algo::ipo_sum                ipo, sum                 OpenRLHF `--model.ipo_enable`
//   algo::dpo_length_normalized  sigmoid, mean            Tülu 3 `dpo_norm`, TRL `sigmoid_norm`
//   algo::simpo                  simpo, mean, no ref.     SimPO; TRL CPO `simpo`, open-instruct
//   algo::dpo_nll                sigmoid, sum, NLL (tok)  Llama 3; TRL v0.26 rpo_alpha
//   algo::dpo_nll_sequence_mean  sigmoid, sum, NLL (seq)  OpenRLHF `--model.nll_loss_coef`
//   algo::hinge                  hinge, sum               SLiC-HF; TRL `hinge`
//   algo::exo_pair / nca_pair / bco_pair / sppo_hard / apo_zero / apo_down / discopop:
//                                <link>, sum              TRL `<link>` (bco_pair: HEAD form)
//   algo::aot / aot_unpaired     aot / aot_unpaired, sum  TRL `aot`, `aot_unpaired` (v0.26
//                                                         `aot_pair`); batch-sorted
//   algo::f_dpo_forward_kl / f_dpo_js / f_dpo_alpha
//                                f_divergence<sigmoid, divergence::...>, sum   TRL
//                                f_divergence_type
//   algo::ipo_f_divergence<Div> / dpo_length_normalized_f_divergence<Div>
//                                f_divergence_length_normalized<ipo | sigmoid, Div>, sum
//                                TRL 1.16 `ipo` / `sigmoid_norm` with f_divergence_type: the
//                                scores of the summed log-ratios divided by the lengths
//   algo::ld_dpo                 sigmoid, seq::ld<>       TRL HEAD ld_alpha (policy and reference)
//   algo::ld_dpo_policy_only     sigmoid, seq::ld<policy_only>   TRL v0.26 ld_alpha
//   algo::wpo                    dpo's loss + inputs.pair_weights from loss::wpo_pair_weights
//   algo::tr_dpo                 dpo's loss + posttrain::tr_dpo_sync of the reference
//                                (ops/model_averaging.hpp)
//   algo::mpo                    weighted<dpo, bco_pair, sft>   MPO; TRL loss_type
//                                ["sigmoid","bco_pair","sft"], weights pref::presets::mpo_weights
//   algo::rpo                    weighted<dpo, sft>   RPO; TRL ["sigmoid","sft"] with [1, α]
//                                (pref::presets::rpo_weights(α)); = dpo_nll with nll_coef α
//   algo::bco_pair_running_mean  bco_pair with both arguments shifted by a running reward mean
//                                δ̄ (TRL v0.26 `bco_pair`; pref::running_moments state)
//
// Length normalisation in TRL's `sigmoid_norm` divides the log-ratio Δ = π_sum − ρ_sum by the
// completion length; that equals mean(π) − mean(ρ) whenever policy and reference share the mask
// (always the case for one pair's completion) and mask weights are 0/1, so dpo_length_normalized
// with reference means reproduces it (tested).
//
//   reference-free, with the chosen NLL (TRL ORPOTrainer / CPOTrainer):
//   algo::orpo            preference<orpo, mean, reference_free, nll, trl_orpo>    TRL ORPO
//   algo::cpo             preference<sigmoid, sum, reference_free, nll, trl_cpo>   TRL CPO sigmoid
//   algo::cpo_hinge       preference<hinge, sum, reference_free, nll, trl_cpo>     TRL CPO hinge
//   algo::cpo_ipo         preference<ipo, mean, reference_free, nll, trl_cpo>      TRL CPO ipo
//   algo::cpo_simpo       preference<simpo, mean, reference_free, nll, trl_cpo>    TRL CPO simpo
//   algo::alphapo         alphapo<sigmoid, sum>  (options.alpha)                  TRL CPO alpha
//   algo::alphapo_simpo   alphapo<simpo, mean>                                     TRL CPO simpo+α
//   (nll = pref::nll_token_mean; trl_orpo / trl_cpo = pref::defaults::*, the NLL weight 1)
//
// The NLL weight of every composition with an NLL term is options.nll_coef. Left unset (the
// default, NaN) it is the composition's Defaults::nll_coef: the orpo and cpo* aliases carry
// pref::defaults::trl_orpo / trl_cpo (1, TRL's), so algo::orpo::compute(in, {.beta = 0.2}) weighs
// the NLL 1, not Llama 3's 0.2 (the generic default of user compositions and algo::dpo_nll).
// An explicit nll_coef always wins. Presets pref::presets::trl_orpo / trl_cpo set it explicitly.
#include <array>

#include "posttrain/algo/recipe.hpp"
#include "posttrain/config.hpp"
#include "posttrain/loss/alphapo.hpp"
#include "posttrain/loss/preference.hpp"
#include "posttrain/loss/preference/bco_pair_running.hpp"
#include "posttrain/loss/preference/orpo.hpp"
#include "posttrain/loss/preference/presets.hpp"
#include "posttrain/loss/preference/weighted.hpp"
#include "posttrain/loss/preference/wpo.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace algo {

// DPO, Rafailov et al. 2023 (TRL `sigmoid`, OpenRLHF DPOLoss, open-instruct `dpo`).
struct dpo : recipe<loss::preference<pref::sigmoid, seq::sum>> {
  // TRL DPOConfig (β 0.1)
  static constexpr preset_type trl() { return {{}, pref::presets::trl}; }
  // OpenRLHF (β 0.1)
  static constexpr preset_type openrlhf() { return {{}, pref::presets::openrlhf}; }
  // open-instruct DPOConfig (β 5)
  static constexpr preset_type open_instruct() { return {{}, pref::presets::open_instruct}; }
  static constexpr preset_type defaults() { return trl(); }
};
// cDPO (Mitchell 2023) is DPO with options.label_smoothing = ε: its own recipe over DPO's loss
// type.
struct cdpo : recipe<dpo::loss> {
  // TRL v0.26 label_smoothing
  static constexpr preset_type trl(double label_smoothing, double beta = 0.1) {
    return {{}, pref::presets::cdpo(label_smoothing, beta)};
  }
  // OpenRLHF --model.label_smoothing
  static constexpr preset_type openrlhf(double label_smoothing, double beta = 0.1) {
    return {{}, pref::presets::cdpo(label_smoothing, beta)};
  }
  static constexpr preset_type defaults() { return {}; }
};
// Robust DPO, Chowdhury et al. 2024 (TRL `robust`).
struct robust_dpo : recipe<loss::preference<pref::robust, seq::sum>> {
  static constexpr preset_type defaults() { return {}; }
};
// IPO, Azar et al. 2023, length-normalised as TRL (HEAD, v0.26, CPO) computes it.
struct ipo : recipe<loss::preference<pref::ipo, seq::mean>> {
  // TRL loss_type="ipo"
  static constexpr preset_type trl() { return {{}, pref::presets::trl}; }
  static constexpr preset_type defaults() { return trl(); }
};
// IPO as TRL 1.16 computes it, called with what TRL has: reference SUMS (no caller-made token
// means) and the length normalisation inside the link; the reported rewards are β·Δ on sums, as TRL
// logs them. The loss is algo::ipo's with reference means (0/1 masks; tests/golden/trl_dpo.cpp).
struct ipo_reference_sums
    : recipe<loss::preference<
          pref::f_divergence_length_normalized<pref::ipo, divergence::reverse_kl>, seq::sum>> {
  // TRL loss_type="ipo"
  static constexpr preset_type trl() { return {{}, pref::presets::trl}; }
  static constexpr preset_type defaults() { return trl(); }
};
// IPO on summed log-probs as OpenRLHF (`--model.ipo_enable`) computes it.
struct ipo_sum : recipe<loss::preference<pref::ipo, seq::sum>> {
  // OpenRLHF --model.ipo_enable
  static constexpr preset_type openrlhf() { return {{}, pref::presets::openrlhf}; }
  static constexpr preset_type defaults() { return openrlhf(); }
};
// Length-normalised DPO, Tülu 3 (open-instruct `dpo_norm`, TRL `sigmoid_norm`).
struct dpo_length_normalized : recipe<loss::preference<pref::sigmoid, seq::mean>> {
  // open-instruct dpo_norm (β 5, Tülu 3)
  static constexpr preset_type open_instruct() { return {{}, pref::presets::open_instruct}; }
  // TRL loss_type="sigmoid_norm"
  static constexpr preset_type trl() { return {{}, pref::presets::trl}; }
  static constexpr preset_type defaults() { return open_instruct(); }
};
// SimPO, Meng et al. 2024: no reference, token-mean scores, margin γ (TRL CPO, open-instruct).
struct simpo : recipe<loss::preference<pref::simpo, seq::mean, pref::reference_free>> {
  // TRL CPOTrainer loss_type="simpo", cpo_alpha 0 (β 0.1, γ 0.5)
  static constexpr preset_type trl() { return {{}, pref::presets::trl_cpo_simpo}; }
  // open-instruct simpo (γ = β·ratio)
  static constexpr preset_type open_instruct(double beta = 5.0, double gamma_beta_ratio = 0.3) {
    return {{}, pref::presets::open_instruct_simpo(beta, gamma_beta_ratio)};
  }
  static constexpr preset_type defaults() { return trl(); }
};
// DPO + nll_coef·NLL on chosen tokens (token mean), Llama 3 (coef 0.2); TRL RPO (rpo_alpha).
struct dpo_nll
    : recipe<
          loss::preference<pref::sigmoid, seq::sum, pref::with_reference, pref::nll_token_mean>> {
  // Llama 3: β 0.1, NLL weight 0.2
  static constexpr preset_type paper() { return {{}, pref::presets::llama3_dpo_nll}; }
  static constexpr preset_type defaults() { return paper(); }
};
// DPO + nll_coef·NLL as OpenRLHF (mean over chosen rows of per-row token means).
struct dpo_nll_sequence_mean
    : recipe<loss::preference<pref::sigmoid, seq::sum, pref::with_reference,
                              pref::nll_sequence_mean>> {
  static constexpr preset_type defaults() { return {}; }
};
// SLiC-HF hinge, Zhao et al. 2023 (TRL `hinge`).
struct hinge : recipe<loss::preference<pref::hinge, seq::sum>> {
  static constexpr preset_type defaults() { return {}; }
};
// EXO pairwise, Ji et al. 2024 (TRL `exo_pair`; set label_smoothing, e.g. 1e-3).
struct exo_pair : recipe<loss::preference<pref::exo_pair, seq::sum>> {
  // TRL exo_pair (ε 1e-3)
  static constexpr preset_type trl() { return {{}, pref::presets::exo}; }
  static constexpr preset_type defaults() { return trl(); }
};
// NCA pairwise, Chen et al. 2024 (TRL `nca_pair`).
struct nca_pair : recipe<loss::preference<pref::nca_pair, seq::sum>> {
  static constexpr preset_type defaults() { return {}; }
};
// BCO pairwise, Jung et al. 2024, TRL HEAD form without the running reward mean.
struct bco_pair : recipe<loss::preference<pref::bco_pair, seq::sum>> {
  static constexpr preset_type defaults() { return {}; }
};
// SPPO with hard labels, Wu et al. 2024 (TRL `sppo_hard`).
struct sppo_hard : recipe<loss::preference<pref::sppo_hard, seq::sum>> {
  static constexpr preset_type defaults() { return {}; }
};
// APO-zero, D'Oosterlinck et al. 2024 (TRL `apo_zero`).
struct apo_zero : recipe<loss::preference<pref::apo_zero, seq::sum>> {
  static constexpr preset_type defaults() { return {}; }
};
// APO-down, D'Oosterlinck et al. 2024 (TRL `apo_down`).
struct apo_down : recipe<loss::preference<pref::apo_down, seq::sum>> {
  static constexpr preset_type defaults() { return {}; }
};
// DiscoPOP / LRML, Chan et al. 2024 (TRL `discopop`, τ = 0.05).
struct discopop : recipe<loss::preference<pref::discopop, seq::sum>> {
  static constexpr preset_type defaults() { return {}; }
};
// AOT, Melnyk et al. 2024: sorted policy vs reference margins over the batch (TRL `aot`).
struct aot : recipe<loss::preference<pref::aot, seq::sum>> {
  static constexpr preset_type defaults() { return {}; }
};
// AOT unpaired, Melnyk et al. 2024: sorted Δc vs sorted Δr (TRL HEAD `aot_unpaired`, v0.26
// `aot_pair`).
struct aot_unpaired : recipe<loss::preference<pref::aot_unpaired, seq::sum>> {
  static constexpr preset_type defaults() { return {}; }
};
// f-DPO, Wang et al. 2023, forward KL scores −e^{−Δ} (TRL f_divergence_type="forward_kl").
struct f_dpo_forward_kl
    : recipe<
          loss::preference<pref::f_divergence<pref::sigmoid, divergence::forward_kl>, seq::sum>> {
  static constexpr preset_type defaults() { return {}; }
};
// f-DPO, Wang et al. 2023, Jensen-Shannon scores logσ(Δ) (TRL "js_divergence", = v0.26's form).
struct f_dpo_js
    : recipe<loss::preference<pref::f_divergence<pref::sigmoid, divergence::js_divergence>,
                              seq::sum>> {
  static constexpr preset_type defaults() { return {}; }
};
// f-DPO, Wang et al. 2023, α-divergence scores e^{(α−1)Δ}/(α−1), α = .link.divergence.alpha (TRL
// "alpha_divergence"; v0.26 via pref::presets::trl_v026_alpha_divergence).
struct f_dpo_alpha
    : recipe<loss::preference<pref::f_divergence<pref::sigmoid, divergence::alpha_divergence>,
                              seq::sum>> {
  // TRL f_alpha_divergence_coef
  static constexpr preset_type trl(double alpha = 0.5, double beta = 0.1) {
    return {{}, pref::presets::trl_alpha_divergence(alpha, beta)};
  }
  // TRL v0.26 α-divergence form
  static constexpr preset_type trl_v0_26(double alpha_v026 = 1.0, double beta = 0.1) {
    return {{}, pref::presets::trl_v026_alpha_divergence(alpha_v026, beta)};
  }
  static constexpr preset_type defaults() { return {}; }
};
// TRL 1.16 `ipo` with f_divergence_type = Div: ((s̃(Δc)/|c| − s̃(Δr)/|r|) − 1/(2β))² on summed
// log-ratios (reference sums). For Div = reverse_kl this is algo::ipo (0/1 masks).
template <class Div>
struct ipo_f_divergence
    : recipe<loss::preference<pref::f_divergence_length_normalized<pref::ipo, Div>, seq::sum>> {
  static constexpr typename ipo_f_divergence::preset_type defaults() { return {}; }
};
// TRL 1.16 `sigmoid_norm` with f_divergence_type = Div: −logσ(β(s̃(Δc)/|c| − s̃(Δr)/|r|)).
template <class Div>
struct dpo_length_normalized_f_divergence
    : recipe<loss::preference<pref::f_divergence_length_normalized<pref::sigmoid, Div>, seq::sum>> {
  static constexpr typename dpo_length_normalized_f_divergence::preset_type defaults() {
    return {};
  }
};
// LD-DPO, Liu et al. 2024: π = shared + α·tail on policy and reference (TRL HEAD ld_alpha).
struct ld_dpo : recipe<loss::preference<pref::sigmoid, seq::ld<>>> {
  // TRL ld_alpha (no default)
  static constexpr preset_type trl(double ld_alpha, double beta = 0.1) {
    return {{}, pref::presets::ld_dpo(ld_alpha, beta)};
  }
  static constexpr preset_type defaults() { return {}; }
};
// LD-DPO as TRL v0.26 computed it: only the policy scores are desensitised.
struct ld_dpo_policy_only
    : recipe<loss::preference<pref::sigmoid, seq::ld<seq::ld_side::policy_only>>> {
  // TRL v0.26 ld_alpha
  static constexpr preset_type trl_v0_26(double ld_alpha, double beta = 0.1) {
    return {{}, pref::presets::ld_dpo(ld_alpha, beta)};
  }
  static constexpr preset_type defaults() { return {}; }
};
// WPO, Zhou et al. 2024: DPO with detached pair weights w_c·w_r in inputs.pair_weights
// (loss::wpo_pair_weights; TRL use_weighting, open-instruct `wpo`). Its own recipe over DPO's loss
// type.
struct wpo : recipe<dpo::loss> {
  static constexpr preset_type defaults() { return {}; }
};
// TR-DPO, Gorbatovski et al. 2024: DPO whose reference is synced every τ steps
// (posttrain::tr_dpo_sync in ops/model_averaging.hpp; TRL sync_ref_model). The loss is DPO's;
// the sync is a parameter update.
struct tr_dpo : recipe<dpo::loss> {
  static constexpr preset_type defaults() { return {}; }
};
// BCO pairwise as TRL v0.26 computed it: −logσ(βΔc − δ̄) − logσ(−(βΔr − δ̄)), δ̄ the running mean
// (pref::running_moments) of the batch reward means (loss/preference/bco_pair_running.hpp).
struct bco_pair_running_mean : recipe<loss::bco_pair_running_mean<pref::with_reference>> {
  static constexpr preset_type defaults() { return {}; }
};
// MPO, Wang et al. 2024 (InternVL mixed preference optimisation): 0.8·DPO + 0.2·BCO-pair + 1·SFT
// on chosen tokens (TRL loss_type ["sigmoid","bco_pair","sft"], loss_weights [0.8, 0.2, 1.0]).
struct mpo : recipe<loss::weighted<dpo::loss, bco_pair::loss, pref::sft>> {
  // TRL loss_type ["sigmoid","bco_pair","sft"], weights [0.8, 0.2, 1]
  static constexpr preset_type trl() {
    return {{}, {pref::presets::mpo_weights, pref::presets::trl}};
  }
  static constexpr preset_type defaults() { return trl(); }
};
// RPO, Pang et al. 2024 (iterative reasoning preference optimisation): DPO + α·NLL on chosen
// tokens (TRL HEAD ["sigmoid","sft"] with [1, α]; TRL v0.26 rpo_alpha). Same loss as dpo_nll.
struct rpo : recipe<loss::weighted<dpo::loss, pref::sft>> {
  // TRL ["sigmoid","sft"] weights [1, α]
  static constexpr preset_type trl(double alpha = 1.0) {
    return {{}, {pref::presets::rpo_weights(alpha), pref::presets::trl}};
  }
  static constexpr preset_type defaults() { return trl(); }
};

// ORPO, Hong et al. 2024 (TRL ORPOTrainer): NLL_chosen − β·mean logσ(log-odds ratio of ā).
struct orpo : recipe<loss::preference<pref::orpo, seq::mean, pref::reference_free,
                                      pref::nll_token_mean, pref::defaults::trl_orpo>> {
  // TRL ORPOConfig (λ 0.1, NLL 1)
  static constexpr preset_type trl() { return {{}, pref::presets::trl_orpo}; }
  static constexpr preset_type defaults() { return trl(); }
};
// CPO, Xu et al. 2024 (TRL CPOTrainer loss_type="sigmoid"): −logσ(β(π_c − π_r)) + α·NLL.
struct cpo : recipe<loss::preference<pref::sigmoid, seq::sum, pref::reference_free,
                                     pref::nll_token_mean, pref::defaults::trl_cpo>> {
  // TRL CPOConfig
  static constexpr preset_type trl() { return {{}, pref::presets::trl_cpo}; }
  static constexpr preset_type defaults() { return trl(); }
};
// TRL CPOTrainer loss_type="hinge": relu(1 − β(π_c − π_r)) + α·NLL (summed log-probs).
struct cpo_hinge : recipe<loss::preference<pref::hinge, seq::sum, pref::reference_free,
                                           pref::nll_token_mean, pref::defaults::trl_cpo>> {
  // TRL CPOConfig
  static constexpr preset_type trl() { return {{}, pref::presets::trl_cpo}; }
  static constexpr preset_type defaults() { return trl(); }
};
// TRL CPOTrainer loss_type="ipo": (ā_c − ā_r − 1/(2β))² + α·NLL (averaged log-probs).
struct cpo_ipo : recipe<loss::preference<pref::ipo, seq::mean, pref::reference_free,
                                         pref::nll_token_mean, pref::defaults::trl_cpo>> {
  // TRL CPOConfig
  static constexpr preset_type trl() { return {{}, pref::presets::trl_cpo}; }
  static constexpr preset_type defaults() { return trl(); }
};
// TRL CPOTrainer loss_type="simpo" (SimPO, Meng et al. 2024, + α·NLL; α = 0 is algo::simpo).
struct cpo_simpo : recipe<loss::preference<pref::simpo, seq::mean, pref::reference_free,
                                           pref::nll_token_mean, pref::defaults::trl_cpo>> {
  // TRL CPOConfig (γ 0.5)
  static constexpr preset_type trl() {
    return {{}, {pref::presets::trl_cpo, pref::presets::trl_cpo_simpo.link}};
  }
  static constexpr preset_type defaults() { return trl(); }
};
// AlphaPO, Gupta et al. 2025 (TRL CPOTrainer alpha ≠ 0, loss_type="sigmoid"): rewards
// u = (1 − p^{−α})/α replace π in CPO.
struct alphapo : recipe<loss::alphapo<pref::sigmoid, seq::sum>> {
  // TRL CPOConfig alpha (β 0.1, NLL 1)
  static constexpr preset_type trl(double alpha) { return {{}, options_type{.alpha = alpha}}; }
  static constexpr preset_type defaults() { return {}; }
};
// AlphaPO on SimPO (TRL CPOTrainer alpha ≠ 0, loss_type="simpo", token-mean log-probs).
struct alphapo_simpo : recipe<loss::alphapo<pref::simpo, seq::mean>> {
  // TRL CPOConfig alpha, loss_type="simpo"
  static constexpr preset_type trl(double alpha) { return {{}, options_type{.alpha = alpha}}; }
  static constexpr preset_type defaults() { return {}; }
};

}  // namespace algo

POSTTRAIN_NAMESPACE_END
