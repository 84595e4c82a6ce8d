#pragma once
// pref::nca_pair — NCA, pairwise form (Chen et al. 2024, noise contrastive alignment).
//
//   loss = −logσ(βΔc) − ½·logσ(−βΔc) − ½·logσ(−βΔr)
//   ∂loss/∂Δc = β·(−σ(−βΔc) + ½·σ(βΔc))
//   ∂loss/∂Δr = β·½·σ(βΔr)
//
// Options: beta (β > 0). Peers: TRL HEAD/v0.26 `nca_pair` (reverse-KL scores s = Δ).
#include "posttrain/loss/preference/link.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

namespace detail {
struct nca_pair_scaled {
  static constexpr const char* name = "nca_pair";
  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> scaled(T c, T r) {
    const T half = T(0.5);
    const T loss = -math::logsigmoid(c) - half * math::logsigmoid(-c) - half * math::logsigmoid(-r);
    // (β·½)·σ(r) before; β·(½·σ(r)) here: the same value (a factor ½ is exact).
    return {loss, -math::sigmoid(-c) + half * math::sigmoid(c), half * math::sigmoid(r)};
  }
};
}  // namespace detail

using nca_pair = beta_link<detail::nca_pair_scaled>;

static_assert(diagnose_preference_link<nca_pair>());

}  // namespace pref

POSTTRAIN_NAMESPACE_END
