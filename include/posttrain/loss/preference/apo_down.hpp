#pragma once
// pref::apo_down — APO-down (D'Oosterlinck et al. 2024): push both likelihoods down while keeping
// the margin, for chosen outputs worse than the model's.
//
//   z = Δc − Δr
//   loss = σ(βΔc) + (1 − σ(βz))
//   ∂loss/∂Δc = β·σ'(βΔc) − β·σ'(βz),  ∂loss/∂Δr = β·σ'(βz),   σ'(x) = σ(x)·σ(−x)
//
// Options: beta (β > 0). Peers: TRL HEAD/v0.26 `apo_down`.
#include "posttrain/loss/preference/link.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

struct apo_down : link_defaults {
  static constexpr const char* name = "apo_down";

  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      const loss::preference_options& o) {
    const T beta = T(o.beta);
    const T c = beta * delta_chosen;
    const T u = beta * (delta_chosen - delta_rejected);
    const T su = beta * detail::sigmoid_slope(u);
    return {math::sigmoid(c) + math::sigmoid(-u), beta * detail::sigmoid_slope(c) - su, su};
  }
};

static_assert(diagnose_preference_link<apo_down>());

}  // namespace pref

POSTTRAIN_NAMESPACE_END
