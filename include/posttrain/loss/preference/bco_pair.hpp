#pragma once
// pref::bco_pair — BCO, pairwise form (Jung et al. 2024), TRL HEAD variant without the running
// reward shift.
//
//   loss = −logσ(βΔc) − logσ(−βΔr)
//   ∂loss/∂Δc = −β·σ(−βΔc),  ∂loss/∂Δr = β·σ(βΔr)
//
// Options: beta (β > 0). Peers: TRL HEAD `bco_pair`. TRL v0.26 subtracts a running mean δ̄ of the
// batch rewards from both arguments (stateful); that variant is not this link.
#include "posttrain/loss/preference/link.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

struct bco_pair {
  static constexpr const char* name = "bco_pair";

  static void validate(const loss::preference_options& o, std::string_view where) {
    detail::expect_beta(o, where);
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      const loss::preference_options& o) {
    const T beta = T(o.beta);
    const T c = beta * delta_chosen;
    const T r = beta * delta_rejected;
    return {-math::logsigmoid(c) - math::logsigmoid(-r), -beta * math::sigmoid(-c),
            beta * math::sigmoid(r)};
  }
};

static_assert(diagnose_preference_link<bco_pair>());

}  // namespace pref

POSTTRAIN_NAMESPACE_END
