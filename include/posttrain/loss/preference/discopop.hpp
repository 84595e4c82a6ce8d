#pragma once
// pref::discopop — DiscoPOP / log-ratio modulated loss (Chan et al. 2024, LRML): a σ(x/τ)-weighted
// blend of the logistic and exponential losses.
//
//   x = β·(Δc − Δr),  w = σ(x/τ)
//   loss = (1 − w)·(−logσ(x)) + w·e^{−x}
//   ∂loss/∂x = w'·(e^{−x} + logσ(x)) − (1 − w)·σ(−x) − w·e^{−x},   w' = σ(x/τ)·σ(−x/τ)/τ
//   ∂loss/∂Δc = β·∂loss/∂x = −∂loss/∂Δr
//
// The products w·e^{−x} and w'·e^{−x} are formed in log space (exp(logσ(x/τ) − x)), so for τ < 1
// the loss and gradient are finite for every finite x (the exponential tail is damped faster than
// it grows). For τ >= 1 the true loss grows like e^{|x|(1−1/τ)} as x → −∞ and may overflow.
// Options: beta (β > 0) shared; its own discopop::options{tau} (τ > 0, default 0.05), the loss
// options' `.link.tau`. Peers: TRL HEAD/v0.26 `discopop` (discopop_tau).
#include <cmath>

#include "posttrain/loss/preference/link.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

struct discopop : link_defaults {
  static constexpr const char* name = "discopop";

  struct options {
    double tau = 0.05;  // τ, the temperature of the blend weight (TRL discopop_tau)
  };

  static void validate(const loss::preference_options& o, const options& s,
                       std::string_view where) {
    detail::expect_beta(o, where);
    expect_positive(s.tau, where, "options.link.tau");
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      const loss::preference_options& o,
                                                      const options& s) {
    using std::exp;
    const T beta = T(o.beta);
    const T tau = T(s.tau);
    const T x = beta * (delta_chosen - delta_rejected);
    const T y = x / tau;
    const T log_w = math::logsigmoid(y);
    const T one_minus_w = math::sigmoid(-y);
    const T logistic = -math::logsigmoid(x);
    const T w_exp = exp(log_w - x);                                // w·e^{−x}
    const T dw_exp = exp(log_w + math::logsigmoid(-y) - x) / tau;  // w'·e^{−x}
    const T dw = detail::sigmoid_slope(y) / tau;                   // w'
    const T loss = one_minus_w * logistic + w_exp;
    const T slope = dw_exp - dw * logistic - one_minus_w * math::sigmoid(-x) - w_exp;
    return {loss, beta * slope, -beta * slope};
  }
};

static_assert(diagnose_preference_link<discopop>());

}  // namespace pref

POSTTRAIN_NAMESPACE_END
