#pragma once
// pref::sppo_hard — SPPO with hard labels (Wu et al. 2024): regress each log-ratio to ±1/(2β).
//
//   h = 1/(2β)
//   loss = (Δc − h)² + (Δr + h)²
//   ∂loss/∂Δc = 2·(Δc − h),  ∂loss/∂Δr = 2·(Δr + h)
//
// Options: beta (β > 0). Peers: TRL HEAD/v0.26 `sppo_hard`.
#include "posttrain/loss/preference/link.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

struct sppo_hard : link_defaults {
  static constexpr const char* name = "sppo_hard";

  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      const loss::preference_options& o) {
    const T h = T(1) / (T(2) * T(o.beta));
    const T a = delta_chosen - h;
    const T b = delta_rejected + h;
    return {a * a + b * b, T(2) * a, T(2) * b};
  }
};

static_assert(diagnose_preference_link<sppo_hard>());

}  // namespace pref

POSTTRAIN_NAMESPACE_END
