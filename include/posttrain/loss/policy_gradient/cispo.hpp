#pragma once
// surrogate::cispo — CISPO (MiniMax-M1, 2025): REINFORCE with a detached, capped IS ratio.
//
//   r = e^{clamp(ℓ − ℓold)},  ĉ = cap(r),  L = −sg(ĉ)·A·ℓ,  ∂L/∂ℓ = −ĉ·A
//   cap by options.cispo_mode (the peers disagree, algorithms.md §6 / §10.12):
//     cispo_cap::two_sided       clip(r, 1 − ε_low, 1 + ε_high)   verl (clamp ±20)
//     cispo_cap::relative_upper  min(r, 1 + ε_high)               open-instruct (no clamp)
//     cispo_cap::absolute_upper  min(r, ε_high)                   TRL (no clamp; ε_high ≈ 5;
//                                TRL's footgun: ε_high unset falls back to ε = 0.2)
// Statistic clipped = ĉ ≠ r (verl pg_clipfrac).
#include "posttrain/loss/policy_gradient/clip.hpp"
#include "posttrain/loss/policy_gradient/parts.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace surrogate {

struct cispo : defaults {
  static constexpr const char* name = "cispo";
  static constexpr bool uses_old_logprobs = true;
  static constexpr bool sequence_level = false;

  static void validate(const policy_gradient_options& o, std::string_view where) {
    expect_non_negative(o.clip_low, where, "options.clip_low");
    if (o.cispo_mode == cispo_cap::absolute_upper)
      expect_positive(o.clip_high, where, "options.clip_high (the absolute CISPO cap)");
    else
      expect_non_negative(o.clip_high, where, "options.clip_high");
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate(T logp, T logr, T a,
                                                    const policy_gradient_options& o) {
    return evaluate_ratio(logp, logr, detail::ratio_exp(logr, o), a, o);
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate_ratio(T logp, T, T r, T a,
                                                          const policy_gradient_options& o) {
    T c = r;
    switch (o.cispo_mode) {
      case cispo_cap::two_sided:
        c = math::clamp(r, T(1) - T(o.clip_low), T(1) + T(o.clip_high));
        break;
      case cispo_cap::relative_upper:
        c = r > T(1) + T(o.clip_high) ? T(1) + T(o.clip_high) : r;
        break;
      case cispo_cap::absolute_upper:
        c = r > T(o.clip_high) ? T(o.clip_high) : r;
        break;
    }
    pg_token<T> out;
    out.ratio = r;
    out.clipped = c != r;
    out.loss = -c * a * logp;
    out.grad = -c * a;
    return out;
  }
};

}  // namespace surrogate

POSTTRAIN_NAMESPACE_END
