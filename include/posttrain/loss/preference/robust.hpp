#pragma once
// pref::robust — robust DPO (Chowdhury et al. 2024), unbiased under label-flip rate ε.
//
//   z = Δc − Δr,  u = β·z
//   loss = [−(1−ε)·logσ(u) + ε·logσ(−u)] / (1 − 2ε)
//   ∂loss/∂Δc = β·[−(1−ε)·σ(−u) − ε·σ(u)] / (1 − 2ε) = −∂loss/∂Δr
//
// Options: beta (β > 0), label_smoothing (ε ∈ [0, 0.5); TRL only warns, here it is an error).
// The loss is unbounded below for ε > 0 (it is an unbiased estimate, not a divergence).
// Peers: TRL HEAD and v0.26 `robust`.
#include "posttrain/loss/preference/link.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

struct robust : link_defaults {
  static constexpr const char* name = "robust";

  static void validate(const loss::preference_options& o, std::string_view where) {
    detail::expect_beta(o, where);
    detail::expect_label_smoothing(o, where, false, true, 0.5, "robust DPO divides by 1 − 2ε");
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      const loss::preference_options& o) {
    const T beta = T(o.beta);
    const T eps = T(o.label_smoothing);
    const T u = beta * (delta_chosen - delta_rejected);
    const T inv = T(1) / (T(1) - T(2) * eps);
    T loss = -(T(1) - eps) * math::logsigmoid(u);
    T slope = -(T(1) - eps) * math::sigmoid(-u);
    if (eps != T(0)) {
      loss += eps * math::logsigmoid(-u);
      slope -= eps * math::sigmoid(u);
    }
    return {loss * inv, beta * slope * inv, -beta * slope * inv};
  }
};

static_assert(diagnose_preference_link<robust>());

}  // namespace pref

POSTTRAIN_NAMESPACE_END
