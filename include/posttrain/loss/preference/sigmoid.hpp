#pragma once
// pref::sigmoid — DPO (Rafailov et al. 2023) with cDPO label smoothing (Mitchell 2023).
//
//   z = Δc − Δr,  u = β·z
//   loss = −(1−ε)·logσ(u) − ε·logσ(−u)
//   ∂loss/∂Δc = β·(−(1−ε)·σ(−u) + ε·σ(u)) = −∂loss/∂Δr
//
// Options: beta (β > 0), label_smoothing (ε ∈ [0, 0.5]).
// Peers: ε = 0 is TRL HEAD `sigmoid` (which has no smoothing) and every peer's plain DPO; ε > 0 is
// TRL v0.26 `sigmoid`, OpenRLHF DPOLoss and open-instruct dpo/dpo_norm with label_smoothing.
#include "posttrain/loss/preference/link.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

struct sigmoid : link_defaults {
  static constexpr const char* name = "sigmoid";

  static void validate(const loss::preference_options& o, std::string_view where) {
    detail::expect_beta(o, where);
    detail::expect_label_smoothing(o, where, false, false, 0.5, "cDPO label smoothing");
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      const loss::preference_options& o) {
    const T beta = T(o.beta);
    const auto l =
        detail::smoothed_logistic(beta * (delta_chosen - delta_rejected), T(o.label_smoothing));
    return {l.loss, beta * l.slope, -beta * l.slope};
  }
};

static_assert(diagnose_preference_link<sigmoid>());

}  // namespace pref

POSTTRAIN_NAMESPACE_END
