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

struct nca_pair {
  static constexpr const char* name = "nca_pair";

  static void validate(const loss::preference_options& o, std::string_view where) {
    detail::expect_beta(o, where);
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      const loss::preference_options& o) {
    const T beta = T(o.beta);
    const T c = beta * delta_chosen;
    const T r = beta * delta_rejected;
    const T half = T(0.5);
    const T loss = -math::logsigmoid(c) - half * math::logsigmoid(-c) - half * math::logsigmoid(-r);
    return {loss, beta * (-math::sigmoid(-c) + half * math::sigmoid(c)),
            beta * half * math::sigmoid(r)};
  }
};

static_assert(diagnose_preference_link<nca_pair>());

}  // namespace pref

POSTTRAIN_NAMESPACE_END
