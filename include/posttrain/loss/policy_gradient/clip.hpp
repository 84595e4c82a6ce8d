#pragma once
// surrogate::clip — PPO clipped objective (Schulman et al. 2017) with clip-higher (DAPO) and
// dual-clip (Ye et al. 2020).
//
//   logr = clamp(ℓ − ℓold, log_ratio_min, log_ratio_max),  r = e^{logr}
//   L1 = −A·r,  L2 = −A·clip(r, 1 − ε_low, 1 + ε_high),  Lc = max(L1, L2)
//   L  = Lc                      if A ≥ 0 or dual_clip = ∞
//        min(−c·A, Lc)           if A < 0 (dual clip, c > 1)
//   ∂L/∂ℓ = −A·r where L1 is the active branch and logr is inside its clamp, 0 elsewhere
//   (exactly what autograd of the peers' expressions gives).
// Statistics: clipped = L2 > L1 (pg_clipfrac), clipped_lower = A < 0 and Lc > −c·A.
// Peers: verl `vanilla` (dual clip always on, c = 3, clamp ±20), OpenRLHF `ppo` (clamp ±20,
// dual clip optional), TRL grpo/bnpo/dr_grpo/dapo (no clamp; `delta` = dual clip for A < 0),
// open-instruct `dapo` (no clamp, 0.2/0.272).
#include "posttrain/loss/policy_gradient/parts.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace surrogate {

namespace detail {

// r = e^{clamp(logr)} and dr/dlogr (0 where the clamp is active, as torch.clamp's backward).
template <class T>
struct clamped_ratio {
  T ratio;
  T slope;
  T log_ratio;
};

// The same with r = e^{clamp(logr)} already computed (ratio_exp; the CPU backend exps a block
// of tokens at once with a vectorised exp).
template <class T>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE clamped_ratio<T> ratio_given(
    T logr, T r, const policy_gradient_options& o) {
  const T lo = T(o.log_ratio_min), hi = T(o.log_ratio_max);
  const bool clamped = logr < lo || hi < logr;
  return {r, clamped ? T(0) : r, math::clamp(logr, lo, hi)};
}

template <class T>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE T ratio_exp(T logr, const policy_gradient_options& o) {
  using std::exp;
  return exp(math::clamp(logr, T(o.log_ratio_min), T(o.log_ratio_max)));
}

template <class T>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE clamped_ratio<T> ratio_of(
    T logr, const policy_gradient_options& o) {
  return ratio_given(logr, ratio_exp(logr, o), o);
}

}  // namespace detail

struct clip : defaults {
  static constexpr const char* name = "clip";
  static constexpr bool uses_old_logprobs = true;
  static constexpr bool sequence_level = false;

  static void validate(const policy_gradient_options& o, std::string_view where) {
    expect_non_negative(o.clip_low, where, "options.clip_low");
    expect_non_negative(o.clip_high, where, "options.clip_high");
    expect(!std::isnan(o.dual_clip) && o.dual_clip > 1.0, where, "options.dual_clip = ",
           o.dual_clip, ", expected c > 1 (infinity = off)");
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate(T logp, T logr, T a,
                                                    const policy_gradient_options& o) {
    return evaluate_ratio(logp, logr, detail::ratio_exp(logr, o), a, o);
  }

  // evaluate with r = e^{clamp(logr)} given (the ratio-given surrogates: clip, cispo, sapo,
  // reinforce, gspo; see ratio_given).
  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate_ratio(T, T logr, T r, T a,
                                                          const policy_gradient_options& o) {
    const auto q = detail::ratio_given(logr, r, o);
    const T lo = T(1) - T(o.clip_low), hi = T(1) + T(o.clip_high);
    // Selects, not branches: the clipped and dual-clip cases follow the sign of A and the ratio,
    // which a branch predictor cannot guess (the CPU pass runs this for every token).
    pg_token<T> out;
    out.ratio = q.ratio;
    const T l1 = -a * q.ratio;
    const T l2 = -a * math::clamp(q.ratio, lo, hi);
    // l2 > l1 only with r outside [lo, hi]: the clipped branch is constant
    out.clipped = l2 > l1;
    out.loss = out.clipped ? l2 : l1;
    out.grad = out.clipped ? T(0) : -a * q.slope;
    const T l3 = -T(o.dual_clip) * a;  // +∞·(−a) stays +∞ when off: never active
    out.clipped_lower = (a < T(0)) & (out.loss > l3);
    out.loss = out.clipped_lower ? l3 : out.loss;
    out.grad = out.clipped_lower ? T(0) : out.grad;
    return out;
  }
};

}  // namespace surrogate

POSTTRAIN_NAMESPACE_END
