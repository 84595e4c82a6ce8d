#pragma once
// pref::exo_pair — EXO, pairwise form (Ji et al. 2024): reverse KL from the model's pair
// distribution (σ(u), σ(−u)) to the smoothed target (1−ε, ε).
//
//   z = Δc − Δr,  u = β·z
//   loss = σ(u)·(logσ(u) − log(1−ε)) + σ(−u)·(logσ(−u) − log ε)
//   ∂loss/∂Δc = β·σ(u)·σ(−u)·(u − log((1−ε)/ε)) = −∂loss/∂Δr      (uses logσ(u) − logσ(−u) = u)
//
// Minimum 0 at u = log((1−ε)/ε). Options: beta (β > 0), label_smoothing (ε ∈ (0, 0.5]; TRL HEAD
// raises for ε = 0, TRL v0.26 silently substitutes 1e-3, the paper's value — pass 1e-3 here).
// Peers: TRL HEAD/v0.26 `exo_pair`.
#include <cmath>

#include "posttrain/loss/preference/link.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

struct exo_pair : link_defaults {
  static constexpr const char* name = "exo_pair";

  static void validate(const loss::preference_options& o, std::string_view where) {
    detail::expect_beta(o, where);
    detail::expect_label_smoothing(o, where, true, false, 0.5,
                                   "EXO needs a smoothed target; the paper uses 1e-3");
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      const loss::preference_options& o) {
    using std::log;
    using std::log1p;
    const T beta = T(o.beta);
    const T eps = T(o.label_smoothing);
    const T u = beta * (delta_chosen - delta_rejected);
    const T p = math::sigmoid(u);
    const T q = math::sigmoid(-u);
    const T log_keep = log1p(-eps);
    const T log_eps = log(eps);
    // A zero probability multiplies a finite log here (logσ(−1e4) = −1e4), so no 0·∞ arises.
    const T loss = p * (math::logsigmoid(u) - log_keep) + q * (math::logsigmoid(-u) - log_eps);
    const T slope = p * q * (u - (log_keep - log_eps));
    return {loss, beta * slope, -beta * slope};
  }
};

static_assert(diagnose_preference_link<exo_pair>());

}  // namespace pref

POSTTRAIN_NAMESPACE_END
