#pragma once
// pref::hinge — SLiC-HF hinge loss (Zhao et al. 2023), margin 1/β in z.
//
//   z = Δc − Δr,  u = β·z
//   loss = max(0, 1 − u)
//   ∂loss/∂Δc = −β if u < 1, else 0 (0 at the kink, like torch.relu) = −∂loss/∂Δr
//
// Options: beta (β > 0). Peers: TRL HEAD/v0.26 `hinge`, TRL CPO `hinge` (no reference).
#include "posttrain/loss/preference/link.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

struct hinge : link_defaults {
  static constexpr const char* name = "hinge";

  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      const loss::preference_options& o) {
    const T beta = T(o.beta);
    const T gap = T(1) - beta * (delta_chosen - delta_rejected);
    if (gap > T(0)) return {gap, -beta, beta};
    return {T(0), T(0), T(0)};
  }
};

static_assert(diagnose_preference_link<hinge>());

}  // namespace pref

POSTTRAIN_NAMESPACE_END
