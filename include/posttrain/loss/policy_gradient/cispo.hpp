#pragma once
// surrogate::cispo — CISPO (MiniMax-M1, 2025): REINFORCE with a detached, capped IS ratio.
//
//   r = e^{clamp(ℓ − ℓold)},  ĉ = cap(r),  L = −sg(ĉ)·A·ℓ,  ∂L/∂ℓ = −ĉ·A
//   cap by the surrogate's own option cap (options.surrogate.cap of the composition; the peers
//   disagree, algorithms.md §6 / §10.12):
//     cispo_cap::two_sided       clip(r, 1 − ε_low, 1 + ε_high)   verl (clamp ±20)
//     cispo_cap::relative_upper  min(r, 1 + ε_high)               open-instruct (no clamp)
//     cispo_cap::absolute_upper  min(r, ε_high)                   TRL (no clamp; ε_high ≈ 5;
//                                TRL's footgun: ε_high unset falls back to ε = 0.2)
// Statistic clipped = ĉ ≠ r (verl pg_clipfrac).
#include "posttrain/loss/policy_gradient/clip.hpp"
#include "posttrain/loss/policy_gradient/parts.hpp"

POSTTRAIN_NAMESPACE_BEGIN

// How surrogate::cispo caps the detached ratio (algorithms.md §6 and §10 point 12).
enum class cispo_cap {
  two_sided,       // ĉ = clip(r, 1 − ε_low, 1 + ε_high)          verl
  relative_upper,  // ĉ = min(r, 1 + ε_high)                      open-instruct
  absolute_upper,  // ĉ = min(r, ε_high): clip_high IS the cap    TRL (e.g. 5.0)
};

namespace surrogate {

struct cispo : defaults {
  static constexpr const char* name = "cispo";
  static constexpr bool uses_old_logprobs = true;
  static constexpr bool sequence_level = false;

  // CISPO's own option (formerly policy_gradient_options::cispo_mode).
  struct options {
    cispo_cap cap = cispo_cap::two_sided;
  };

  static void validate(const policy_gradient_options& o, const options& s,
                       std::string_view where) {
    expect(s.cap == cispo_cap::two_sided || s.cap == cispo_cap::relative_upper ||
               s.cap == cispo_cap::absolute_upper,
           where, "options.surrogate.cap = ", static_cast<int>(s.cap),
           ", expected two_sided, relative_upper or absolute_upper");
    expect_non_negative(o.clip_low, where, "options.clip_low");
    if (s.cap == cispo_cap::absolute_upper)
      expect_positive(o.clip_high, where, "options.clip_high (the absolute CISPO cap)");
    else
      expect_non_negative(o.clip_high, where, "options.clip_high");
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate(T logp, T logr, T a,
                                                    const policy_gradient_options& o,
                                                    const options& s) {
    return evaluate_ratio(logp, logr, detail::ratio_exp(logr, o), a, o, s);
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate_ratio(T logp, T, T r, T a,
                                                          const policy_gradient_options& o,
                                                          const options& s) {
    T c = r;
    switch (s.cap) {
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
