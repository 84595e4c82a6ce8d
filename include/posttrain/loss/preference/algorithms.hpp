#pragma once
// Named DPO-family algorithms (namespace posttrain::algo) and the peers' hyperparameter presets
// (namespace posttrain::pref::presets). Each alias is a loss::preference composition; its
// hyperparameters come from a loss::preference_options (defaults: TRL's, see link.hpp).
//
//   algo::dpo                    sigmoid, sum             DPO; TRL/OpenRLHF/open-instruct `dpo`
//   algo::cdpo (= dpo + preset)  sigmoid, sum, ε          cDPO; TRL v0.26/OpenRLHF/open-instruct
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
//   algo::wpo                    = dpo + inputs.pair_weights from loss::wpo_pair_weights
//   algo::tr_dpo                 = dpo + posttrain::tr_dpo_sync of the reference
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
#include <array>

#include "posttrain/config.hpp"
#include "posttrain/loss/preference.hpp"
#include "posttrain/loss/preference/bco_pair_running.hpp"
#include "posttrain/loss/preference/weighted.hpp"
#include "posttrain/loss/preference/wpo.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace algo {

// DPO, Rafailov et al. 2023 (TRL `sigmoid`, OpenRLHF DPOLoss, open-instruct `dpo`).
using dpo = loss::preference<pref::sigmoid, seq::sum>;
// cDPO (Mitchell 2023) is dpo with options.label_smoothing = ε: a preset, not a type.
using cdpo = dpo;
// Robust DPO, Chowdhury et al. 2024 (TRL `robust`).
using robust_dpo = loss::preference<pref::robust, seq::sum>;
// IPO, Azar et al. 2023, length-normalised as TRL (HEAD, v0.26, CPO) computes it.
using ipo = loss::preference<pref::ipo, seq::mean>;
// IPO on summed log-probs as OpenRLHF (`--model.ipo_enable`) computes it.
using ipo_sum = loss::preference<pref::ipo, seq::sum>;
// Length-normalised DPO, Tülu 3 (open-instruct `dpo_norm`, TRL `sigmoid_norm`).
using dpo_length_normalized = loss::preference<pref::sigmoid, seq::mean>;
// SimPO, Meng et al. 2024: no reference, token-mean scores, margin γ (TRL CPO, open-instruct).
using simpo = loss::preference<pref::simpo, seq::mean, pref::reference_free>;
// DPO + nll_coef·NLL on chosen tokens (token mean), Llama 3 (coef 0.2); TRL RPO (rpo_alpha).
using dpo_nll =
    loss::preference<pref::sigmoid, seq::sum, pref::with_reference, pref::nll_token_mean>;
// DPO + nll_coef·NLL as OpenRLHF (mean over chosen rows of per-row token means).
using dpo_nll_sequence_mean =
    loss::preference<pref::sigmoid, seq::sum, pref::with_reference, pref::nll_sequence_mean>;
// SLiC-HF hinge, Zhao et al. 2023 (TRL `hinge`).
using hinge = loss::preference<pref::hinge, seq::sum>;
// EXO pairwise, Ji et al. 2024 (TRL `exo_pair`; set label_smoothing, e.g. 1e-3).
using exo_pair = loss::preference<pref::exo_pair, seq::sum>;
// NCA pairwise, Chen et al. 2024 (TRL `nca_pair`).
using nca_pair = loss::preference<pref::nca_pair, seq::sum>;
// BCO pairwise, Jung et al. 2024, TRL HEAD form without the running reward mean.
using bco_pair = loss::preference<pref::bco_pair, seq::sum>;
// SPPO with hard labels, Wu et al. 2024 (TRL `sppo_hard`).
using sppo_hard = loss::preference<pref::sppo_hard, seq::sum>;
// APO-zero, D'Oosterlinck et al. 2024 (TRL `apo_zero`).
using apo_zero = loss::preference<pref::apo_zero, seq::sum>;
// APO-down, D'Oosterlinck et al. 2024 (TRL `apo_down`).
using apo_down = loss::preference<pref::apo_down, seq::sum>;
// DiscoPOP / LRML, Chan et al. 2024 (TRL `discopop`, τ = 0.05).
using discopop = loss::preference<pref::discopop, seq::sum>;
// AOT, Melnyk et al. 2024: sorted policy vs reference margins over the batch (TRL `aot`).
using aot = loss::preference<pref::aot, seq::sum>;
// AOT unpaired, Melnyk et al. 2024: sorted Δc vs sorted Δr (TRL HEAD `aot_unpaired`, v0.26
// `aot_pair`).
using aot_unpaired = loss::preference<pref::aot_unpaired, seq::sum>;
// f-DPO, Wang et al. 2023, forward KL scores −e^{−Δ} (TRL f_divergence_type="forward_kl").
using f_dpo_forward_kl =
    loss::preference<pref::f_divergence<pref::sigmoid, divergence::forward_kl>, seq::sum>;
// f-DPO, Wang et al. 2023, Jensen-Shannon scores logσ(Δ) (TRL "js_divergence", = v0.26's form).
using f_dpo_js =
    loss::preference<pref::f_divergence<pref::sigmoid, divergence::js_divergence>, seq::sum>;
// f-DPO, Wang et al. 2023, α-divergence scores e^{(α−1)Δ}/(α−1), α = options.f_alpha (TRL
// "alpha_divergence"; v0.26 via pref::presets::trl_v026_alpha_divergence).
using f_dpo_alpha =
    loss::preference<pref::f_divergence<pref::sigmoid, divergence::alpha_divergence>, seq::sum>;
// TRL 1.16 `ipo` with f_divergence_type = Div: ((s̃(Δc)/|c| − s̃(Δr)/|r|) − 1/(2β))² on summed
// log-ratios (reference sums). For Div = reverse_kl this is algo::ipo (0/1 masks).
template <class Div>
using ipo_f_divergence =
    loss::preference<pref::f_divergence_length_normalized<pref::ipo, Div>, seq::sum>;
// TRL 1.16 `sigmoid_norm` with f_divergence_type = Div: −logσ(β(s̃(Δc)/|c| − s̃(Δr)/|r|)).
template <class Div>
using dpo_length_normalized_f_divergence =
    loss::preference<pref::f_divergence_length_normalized<pref::sigmoid, Div>, seq::sum>;
// LD-DPO, Liu et al. 2024: π = shared + α·tail on policy and reference (TRL HEAD ld_alpha).
using ld_dpo = loss::preference<pref::sigmoid, seq::ld<>>;
// LD-DPO as TRL v0.26 computed it: only the policy scores are desensitised.
using ld_dpo_policy_only = loss::preference<pref::sigmoid, seq::ld<seq::ld_side::policy_only>>;
// WPO, Zhou et al. 2024: DPO with detached pair weights w_c·w_r in inputs.pair_weights
// (loss::wpo_pair_weights; TRL use_weighting, open-instruct `wpo`). A weighting, not a type.
using wpo = dpo;
// TR-DPO, Gorbatovski et al. 2024: DPO whose reference is synced every τ steps
// (posttrain::tr_dpo_sync in ops/model_averaging.hpp; TRL sync_ref_model). The loss is DPO's;
// the sync is a parameter update.
using tr_dpo = dpo;
// BCO pairwise as TRL v0.26 computed it: −logσ(βΔc − δ̄) − logσ(−(βΔr − δ̄)), δ̄ the running mean
// (pref::running_moments) of the batch reward means (loss/preference/bco_pair_running.hpp).
using bco_pair_running_mean = loss::bco_pair_running_mean<pref::with_reference>;
// MPO, Wang et al. 2024 (InternVL mixed preference optimisation): 0.8·DPO + 0.2·BCO-pair + 1·SFT
// on chosen tokens (TRL loss_type ["sigmoid","bco_pair","sft"], loss_weights [0.8, 0.2, 1.0]).
using mpo = loss::weighted<dpo, bco_pair, pref::sft>;
// RPO, Pang et al. 2024 (iterative reasoning preference optimisation): DPO + α·NLL on chosen
// tokens (TRL HEAD ["sigmoid","sft"] with [1, α]; TRL v0.26 rpo_alpha). Same loss as dpo_nll.
using rpo = loss::weighted<dpo, pref::sft>;

}  // namespace algo

namespace pref::presets {

// TRL DPOTrainer HEAD and OpenRLHF defaults: β = 0.1, no smoothing.
inline constexpr loss::preference_options trl{};
inline constexpr loss::preference_options openrlhf{};
// TRL CPOTrainer loss_type="simpo" (with cpo_alpha = 0 for pure SimPO): β = 0.1, γ = 0.5.
inline constexpr loss::preference_options trl_cpo_simpo{.beta = 0.1, .gamma = 0.5};
// cDPO with smoothing ε (TRL v0.26 / OpenRLHF / open-instruct label_smoothing) for algo::cdpo.
constexpr loss::preference_options cdpo(double label_smoothing, double beta = 0.1) {
  return {.beta = beta, .label_smoothing = label_smoothing};
}
// open-instruct DPOConfig: β = 5 for `dpo` and `dpo_norm` (algo::dpo_length_normalized, Tülu 3).
inline constexpr loss::preference_options open_instruct{.beta = 5.0};
// open-instruct `simpo`: γ = β·gamma_beta_ratio (defaults β = 5, ratio 0.3 → γ = 1.5).
constexpr loss::preference_options open_instruct_simpo(double beta = 5.0,
                                                       double gamma_beta_ratio = 0.3) {
  return {.beta = beta, .gamma = beta * gamma_beta_ratio};
}
// Llama 3 DPO + NLL (algo::dpo_nll): β = 0.1, NLL weight 0.2.
inline constexpr loss::preference_options llama3_dpo_nll{.beta = 0.1, .nll_coef = 0.2};
// EXO as in the paper and TRL v0.26's silent fallback: ε = 1e-3.
inline constexpr loss::preference_options exo{.label_smoothing = 1e-3};
// TRL DPOConfig α-divergence (algo::f_dpo_alpha): f_alpha_divergence_coef, default 0.5.
constexpr loss::preference_options trl_alpha_divergence(double alpha = 0.5, double beta = 0.1) {
  return {.beta = beta, .f_alpha = alpha};
}
// TRL v0.26 α-divergence: z = (e^{−α'Δr} − e^{−α'Δc})/α' (default α' = 1) is HEAD's form with
// α = 1 − α' (α' = 1: forward KL). v0.26 had no exponent clamp.
constexpr loss::preference_options trl_v026_alpha_divergence(double alpha_v026 = 1.0,
                                                             double beta = 0.1) {
  return {.beta = beta, .f_alpha = 1.0 - alpha_v026};
}
// LD-DPO (algo::ld_dpo / ld_dpo_policy_only): TRL ld_alpha (no default; the paper tunes α in
// [0, 1]).
constexpr loss::preference_options ld_dpo(double ld_alpha, double beta = 0.1) {
  return {.beta = beta, .ld_alpha = ld_alpha};
}

// MPO's loss_weights for algo::mpo: [sigmoid, bco_pair, sft] = [0.8, 0.2, 1.0] (TRL docs, the
// MPO paper).
inline constexpr std::array<double, 3> mpo_weights{0.8, 0.2, 1.0};
// RPO's loss_weights for algo::rpo: [sigmoid, sft] = [1, α] (the paper uses α = 1).
constexpr std::array<double, 2> rpo_weights(double alpha = 1.0) { return {1.0, alpha}; }

}  // namespace pref::presets

POSTTRAIN_NAMESPACE_END
