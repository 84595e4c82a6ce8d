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

namespace detail {
struct apo_zero_scaled {
  static constexpr const char* name = "apo_zero";
  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> scaled(T c, T r) {
    // 1 − σ(c) = σ(−c), exact for large c.
    return {math::sigmoid(-c) + math::sigmoid(r), -sigmoid_slope(c), sigmoid_slope(r)};
  }
};
}  // namespace detail

using apo_zero = beta_link<detail::apo_zero_scaled>;

static_assert(diagnose_preference_link<apo_zero>());

}  // namespace pref

POSTTRAIN_NAMESPACE_END
