#pragma once
// surrogate::sapo — SAPO (soft adaptive policy optimisation, Qwen 2025): a smooth sigmoid gate
// instead of the hard clip.
//
//   r = e^{clamp(ℓ − ℓold)},  τ = τ_pos if A > 0 else τ_neg   (its own options tau_pos, tau_neg)
//   L = −σ(τ·(r − 1))·(4/τ)·A,   ∂L/∂ℓ = −4·σ(1 − σ)·A·r   (0 where the clamp is active)
// On policy (r = 1) L = −2A/τ and the gate slope is 1, so the gradient equals −A (REINFORCE).
// Peers: verl `sapo` (clamp ±20, seq-mean-token-mean forced; τ 1.0 / 1.05), TRL `sapo`
// (no clamp, same temperatures). No statistic flags.
#include "posttrain/loss/policy_gradient/clip.hpp"
#include "posttrain/loss/policy_gradient/parts.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace surrogate {

struct sapo : defaults {
  static constexpr const char* name = "sapo";
  static constexpr bool uses_old_logprobs = true;
  static constexpr bool sequence_level = false;

  // SAPO's own options (formerly policy_gradient_options::sapo_tau_pos / sapo_tau_neg).
  struct options {
    double tau_pos = 1.0;   // temperature for A > 0
    double tau_neg = 1.05;  // temperature for A <= 0
  };

  static void validate(const policy_gradient_options&, const options& s, std::string_view where) {
    expect_positive(s.tau_pos, where, "options.surrogate.tau_pos");
    expect_positive(s.tau_neg, where, "options.surrogate.tau_neg");
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate(T logp, T logr, T a,
                                                    const policy_gradient_options& o,
                                                    const options& s) {
    return evaluate_ratio(logp, logr, detail::ratio_exp(logr, o), a, o, s);
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate_ratio(T, T logr, T r, T a,
                                                          const policy_gradient_options& o,
                                                          const options& so) {
    const auto q = detail::ratio_given(logr, r, o);
    const T tau = a > T(0) ? T(so.tau_pos) : T(so.tau_neg);
    const T s = math::sigmoid(tau * (q.ratio - T(1)));
    pg_token<T> out;
    out.ratio = q.ratio;
    out.loss = -s * (T(4) / tau) * a;
    out.grad = -T(4) * s * (T(1) - s) * a * q.slope;
    return out;
  }
};

}  // namespace surrogate

POSTTRAIN_NAMESPACE_END
