#pragma once
// pref::ipo — IPO (Azar et al. 2023): squared loss towards the target margin 1/(2β).
//
//   z = Δc − Δr
//   loss = (z − 1/(2β))²
//   ∂loss/∂Δc = 2·(z − 1/(2β)) = −∂loss/∂Δr
//
// Minimum 0 at z = 1/(2β). Options: beta (β > 0).
// Length normalisation is the sequence reduction, not the link: TRL (HEAD and v0.26; agreed with
// the IPO authors) and TRL CPO `ipo` use token means (algo::ipo = seq::mean), OpenRLHF
// `--model.ipo_enable` uses sums (algo::ipo_sum = seq::sum).
#include "posttrain/loss/preference/link.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

struct ipo : link_defaults {
  static constexpr const char* name = "ipo";

  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      const loss::preference_options& o) {
    const T gap = (delta_chosen - delta_rejected) - T(1) / (T(2) * T(o.beta));
    return {gap * gap, T(2) * gap, -T(2) * gap};
  }
};

static_assert(diagnose_preference_link<ipo>());

}  // namespace pref

POSTTRAIN_NAMESPACE_END
