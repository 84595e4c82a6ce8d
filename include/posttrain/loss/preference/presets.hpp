#pragma once
// The peers' hyperparameter presets of the offline preference losses (namespace
// posttrain::pref::presets): loss::preference_options values per peer and algorithm (with the
// link's own options, `.link`, for the links that have them: loss::preference_options_for<Link>),
// and the loss_weights of the weighted lists (MPO, RPO). The algo/ recipes (algo/preference.hpp)
// name them per peer; conventions.hpp lists them by peer.
#include <array>

#include "posttrain/config.hpp"
#include "posttrain/loss/preference/f_divergence.hpp"
#include "posttrain/loss/preference/link.hpp"
#include "posttrain/loss/preference/sigmoid.hpp"
#include "posttrain/loss/preference/simpo.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref::presets {

// TRL DPOTrainer HEAD and OpenRLHF defaults: β = 0.1, no smoothing.
inline constexpr loss::preference_options trl{};
inline constexpr loss::preference_options openrlhf{};
// TRL CPOTrainer loss_type="simpo" (with cpo_alpha = 0 for pure SimPO): β = 0.1, γ = 0.5.
inline constexpr loss::preference_options_for<simpo> trl_cpo_simpo{{.beta = 0.1}, {.gamma = 0.5}};
// cDPO with smoothing ε (TRL v0.26 / OpenRLHF / open-instruct label_smoothing) for algo::cdpo.
constexpr loss::preference_options cdpo(double label_smoothing, double beta = 0.1) {
  return {.beta = beta, .label_smoothing = label_smoothing};
}
// open-instruct DPOConfig: β = 5 for `dpo` and `dpo_norm` (algo::dpo_length_normalized, Tülu 3).
inline constexpr loss::preference_options open_instruct{.beta = 5.0};
// open-instruct `simpo`: γ = β·gamma_beta_ratio (defaults β = 5, ratio 0.3 → γ = 1.5).
constexpr loss::preference_options_for<simpo> open_instruct_simpo(double beta = 5.0,
                                                                  double gamma_beta_ratio = 0.3) {
  return {{.beta = beta}, {.gamma = beta * gamma_beta_ratio}};
}
// Llama 3 DPO + NLL (algo::dpo_nll): β = 0.1, NLL weight 0.2.
inline constexpr loss::preference_options llama3_dpo_nll{.beta = 0.1, .nll_coef = 0.2};
// EXO as in the paper and TRL v0.26's silent fallback: ε = 1e-3.
inline constexpr loss::preference_options exo{.label_smoothing = 1e-3};
// The options of f-DPO with α-divergence scores (algo::f_dpo_alpha): β etc. and
// .link.divergence.alpha.
using f_dpo_alpha_options =
    loss::preference_options_for<f_divergence<sigmoid, divergence::alpha_divergence>>;
// TRL DPOConfig α-divergence (algo::f_dpo_alpha): f_alpha_divergence_coef, default 0.5.
constexpr f_dpo_alpha_options trl_alpha_divergence(double alpha = 0.5, double beta = 0.1) {
  return {{.beta = beta}, {.divergence = {.alpha = alpha}}};
}
// TRL v0.26 α-divergence: z = (e^{−α'Δr} − e^{−α'Δc})/α' (default α' = 1) is HEAD's form with
// α = 1 − α' (α' = 1: forward KL). v0.26 had no exponent clamp.
constexpr f_dpo_alpha_options trl_v026_alpha_divergence(double alpha_v026 = 1.0,
                                                        double beta = 0.1) {
  return {{.beta = beta}, {.divergence = {.alpha = 1.0 - alpha_v026}}};
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

namespace pref::presets {

// TRL ORPOConfig: β (λ) = 0.1, NLL weight 1.
inline constexpr loss::preference_options trl_orpo{.beta = 0.1, .nll_coef = 1.0};
// TRL CPOConfig: β = 0.1, cpo_alpha = 1 (loss_type sigmoid/hinge/ipo/simpo); simpo_gamma = 0.5
// is simpo's own option (trl_cpo_simpo.link, algo::cpo_simpo::trl()).
inline constexpr loss::preference_options trl_cpo{.beta = 0.1, .nll_coef = 1.0};

}  // namespace pref::presets

POSTTRAIN_NAMESPACE_END
