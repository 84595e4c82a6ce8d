#pragma once
// pref::orpo — ORPO (Hong et al. 2024): the odds-ratio term, a reference-free link over token-mean
// log-probs ā (compose with seq::mean and pref::reference_free: Δ = ā).
//
//   log_odds = (ā_c − ā_r) − (log1mexp(ā_c) − log1mexp(ā_r)),   log1mexp(a) = log(1 − e^a)
//   loss     = −β·logσ(log_odds)
//   ∂log_odds/∂ā_c = 1/(1 − e^{ā_c}) = −1/expm1(ā_c),  ∂log_odds/∂ā_r = 1/expm1(ā_r)
//   ∂loss/∂ā = −β·σ(−log_odds)·∂log_odds/∂ā
//
// The full ORPO loss adds the chosen NLL with weight 1: algo::orpo (nll_token_mean) with
// pref::presets::trl_orpo (nll_coef = 1). Options: beta (λ of the paper, β > 0; TRL default 0.1).
// Peers: TRL ORPOTrainer odds_ratio_loss (log1mexp as log1p(−eˣ) below −ln 2, else
// log(−expm1(x)): math::log1mexp). ā is clamped to at most a_max = −1e-30 (its derivative is 0
// there): ā = 0 (an empty or fully masked completion, or certainty) makes log1mexp −inf and TRL's
// loss inf/NaN; here it stays finite. Near 0 (ā = −1e-12) the derivative is large but the product
// σ(−log_odds)/(1 − e^ā) stays bounded.
#include "posttrain/loss/preference/link.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

struct orpo : link_defaults {
  static constexpr const char* name = "orpo";
  static constexpr double max_mean_logprob = -1e-30;  // a_max

  static void validate(const loss::preference_options& o, std::string_view where) {
    detail::expect_beta(o, where);
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T mean_chosen, T mean_rejected,
                                                      const loss::preference_options& o) {
    using std::expm1;
    const T beta = T(o.beta);
    const T a_max = T(max_mean_logprob);
    const bool clamp_c = !(mean_chosen < a_max);
    const bool clamp_r = !(mean_rejected < a_max);
    const T ac = clamp_c ? a_max : mean_chosen;
    const T ar = clamp_r ? a_max : mean_rejected;
    const T log_odds = (ac - ar) - (math::log1mexp(ac) - math::log1mexp(ar));
    const T slope = -beta * math::sigmoid(-log_odds);
    const T dc = clamp_c ? T(0) : slope * (T(-1) / expm1(ac));
    const T dr = clamp_r ? T(0) : slope * (T(1) / expm1(ar));
    return {-beta * math::logsigmoid(log_odds), dc, dr};
  }
};

static_assert(diagnose_preference_link<orpo>());

}  // namespace pref

POSTTRAIN_NAMESPACE_END
