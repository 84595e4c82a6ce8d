#pragma once
// pref::simpo — SimPO (Meng et al. 2024): the smoothed logistic loss with a target reward margin γ.
//
//   z = Δc − Δr,  u = β·z − γ
//   loss = −(1−ε)·logσ(u) − ε·logσ(−u)          (ε = 0: −logσ(β·z − γ))
//   ∂loss/∂Δc = β·(−(1−ε)·σ(−u) + ε·σ(u)) = −∂loss/∂Δr
//
// SimPO proper is this link without a reference and with token-mean scores (algo::simpo), so z is
// ā_c − ā_r. Options: beta (β > 0), label_smoothing (ε ∈ [0, 0.5]) shared; its own
// simpo::options{gamma} (γ, finite, default 0.5), the loss options' `.link.gamma`.
// Peers: TRL CPO `simpo` writes z' = z − γ/β (same value; γ = simpo_gamma, default 0.5, β = 0.1,
// with label smoothing exactly this form); open-instruct `simpo` writes z − gamma_beta_ratio, i.e.
// γ = β·gamma_beta_ratio (β = 5, ratio 0.3 → γ = 1.5).
#include "posttrain/loss/preference/link.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

struct simpo : link_defaults {
  static constexpr const char* name = "simpo";

  struct options {
    double gamma = 0.5;  // γ, the target reward margin (TRL CPOConfig simpo_gamma)
  };

  static void validate(const loss::preference_options& o, const options& s,
                       std::string_view where) {
    detail::expect_beta(o, where);
    expect_finite(s.gamma, where, "options.link.gamma");
    detail::expect_label_smoothing(o, where, false, false, 0.5, "label smoothing");
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      const loss::preference_options& o,
                                                      const options& s) {
    const T beta = T(o.beta);
    const auto l = detail::smoothed_logistic(beta * (delta_chosen - delta_rejected) - T(s.gamma),
                                             T(o.label_smoothing));
    return {l.loss, beta * l.slope, -beta * l.slope};
  }
};

static_assert(diagnose_preference_link<simpo>());

}  // namespace pref

POSTTRAIN_NAMESPACE_END
