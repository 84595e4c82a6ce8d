#pragma once
// pref::apo_zero — APO-zero (D'Oosterlinck et al. 2024, anchored preference optimisation): push
// the chosen likelihood up and the rejected one down, for chosen outputs better than the model's.
//
//   loss = (1 − σ(βΔc)) + σ(βΔr)
//   ∂loss/∂Δc = −β·σ'(βΔc),  ∂loss/∂Δr = β·σ'(βΔr),   σ'(x) = σ(x)·σ(−x)
//
// Options: beta (β > 0). Uses the raw log-ratios. Peers: TRL HEAD/v0.26 `apo_zero`.
#include "posttrain/loss/preference/link.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

struct apo_zero {
  static constexpr const char* name = "apo_zero";

  static void validate(const loss::preference_options& o, std::string_view where) {
    detail::expect_beta(o, where);
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      const loss::preference_options& o) {
    const T beta = T(o.beta);
    const T c = beta * delta_chosen;
    const T r = beta * delta_rejected;
    // 1 − σ(c) = σ(−c), exact for large c.
    return {math::sigmoid(-c) + math::sigmoid(r), -beta * detail::sigmoid_slope(c),
            beta * detail::sigmoid_slope(r)};
  }
};

static_assert(diagnose_preference_link<apo_zero>());

}  // namespace pref

POSTTRAIN_NAMESPACE_END
