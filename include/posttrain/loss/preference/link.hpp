#pragma once
// Preference links: the per-pair formula of a DPO-family loss, and what they share.
//
//   A link maps the log-ratios of one pair, Δc = π_c − ρ_c and Δr = π_r − ρ_r (π: policy sequence
//   scores, ρ: reference scores, ρ = 0 for a reference-free composition), and the hyperparameters
//   to the pair loss and its partial derivatives:
//
//     Link::evaluate(Δc, Δr, options) -> pair_value<T>{ loss, ∂loss/∂Δc, ∂loss/∂Δr }
//
//   Because ∂Δ/∂π = 1 these are also the derivatives with respect to the policy scores; the
//   reference receives no gradient. Links are POSTTRAIN_HOST_DEVICE templates over float/double.
//   Link::validate(options, where) throws posttrain::error for hyperparameters outside the link's
//   domain; a link reads only the option fields its header names.
//
// loss::preference_options holds every hyperparameter of the family with TRL's defaults (the
// algorithm presets in loss/preference/algorithms.hpp give each peer's values):
//   beta             0.1   β, the KL-regularisation strength (every link)
//   label_smoothing  0.0   ε: cDPO smoothing (sigmoid, simpo), robust-DPO noise rate (robust),
//                          EXO target smoothing (exo_pair, must be > 0; the paper uses 1e-3)
//   gamma            0.5   γ, SimPO reward margin in units of βz (simpo; TRL CPO simpo_gamma)
//   tau              0.05  τ, DiscoPOP temperature (discopop; TRL discopop_tau)
//   nll_coef         unset weight of the chosen NLL term (only compositions with an NLL term).
//                          Unset (NaN, the default) means the composition's own default, its
//                          Defaults::nll_coef: 0.2 (Llama 3) for algo::dpo_nll and user
//                          compositions, 1 for algo::orpo and the algo::cpo* aliases (TRL
//                          ORPOConfig/CPOConfig). An explicit value (finite, >= 0) always wins.
//   f_alpha          0.5   α of the α-divergence score (pref::f_divergence<Link,
//                          divergence::alpha_divergence>; TRL HEAD f_alpha_divergence_coef)
//   ld_alpha         unset α of LD-DPO's tail weight (seq::ld only; TRL ld_alpha has no default
//                          either: must be set, finite and in [0, 1])
#include <cmath>
#include <concepts>
#include <limits>
#include <string_view>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/math/stable.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss {

struct preference_options {
  double beta = 0.1;
  double label_smoothing = 0.0;
  double gamma = 0.5;
  double tau = 0.05;
  double nll_coef = std::numeric_limits<double>::quiet_NaN();
  double f_alpha = 0.5;
  double ld_alpha = std::numeric_limits<double>::quiet_NaN();
};

}  // namespace loss

namespace pref {

// The value of a link for one pair and its partial derivatives w.r.t. Δc and Δr.
template <class T>
struct pair_value {
  T loss;
  T d_chosen;
  T d_rejected;
};

// A preference link: named, validates its options, evaluates in float and double.
template <class L>
concept preference_link = requires(double d, float f, const loss::preference_options& o,
                                   std::string_view where) {
  { L::name } -> std::convertible_to<const char*>;
  { L::validate(o, where) } -> std::same_as<void>;
  { L::evaluate(d, d, o) } -> std::same_as<pair_value<double>>;
  { L::evaluate(f, f, o) } -> std::same_as<pair_value<float>>;
};

// Names what is missing, one sentence per requirement.
template <class L>
constexpr bool diagnose_preference_link() {
  static_assert(
      requires {
        { L::name } -> std::convertible_to<const char*>;
      },
      "a preference link needs `static constexpr const char* name` (e.g. \"sigmoid\")");
  static_assert(
      requires(const loss::preference_options& o, std::string_view w) {
        { L::validate(o, w) } -> std::same_as<void>;
      },
      "a preference link needs `static void validate(const loss::preference_options&, "
      "std::string_view where)` that throws posttrain::error for hyperparameters it cannot use");
  static_assert(
      requires(double d, const loss::preference_options& o) {
        { L::evaluate(d, d, o) } -> std::same_as<pair_value<double>>;
      },
      "a preference link needs `template <class T> static pair_value<T> evaluate(T delta_chosen, "
      "T delta_rejected, const loss::preference_options&)` returning the pair loss and its "
      "derivatives w.r.t. the two log-ratios");
  static_assert(
      requires(float f, const loss::preference_options& o) {
        { L::evaluate(f, f, o) } -> std::same_as<pair_value<float>>;
      },
      "a preference link's evaluate must be a template usable with float as well as double");
  return preference_link<L>;
}

namespace detail {

// The smoothed logistic loss ℓ(u) = −(1−ε)·logσ(u) − ε·logσ(−u) and dℓ/du = −(1−ε)·σ(−u) + ε·σ(u),
// shared by sigmoid (cDPO) and simpo. Finite for every finite u.
template <class T>
struct loss_and_slope {
  T loss;
  T slope;
};

template <class T>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE loss_and_slope<T> smoothed_logistic(T u, T eps) {
  const T keep = T(1) - eps;
  T loss = -keep * math::logsigmoid(u);
  T slope = -keep * math::sigmoid(-u);
  if (eps != T(0)) {  // skip the second term exactly when ε = 0 (no 0·(−∞) risk, no extra work)
    loss -= eps * math::logsigmoid(-u);
    slope += eps * math::sigmoid(u);
  }
  return {loss, slope};
}

// σ'(x) = σ(x)·σ(−x), without overflow for either sign.
template <class T>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE T sigmoid_slope(T x) {
  return math::sigmoid(x) * math::sigmoid(-x);
}

inline void expect_beta(const loss::preference_options& o, std::string_view where) {
  expect_positive(o.beta, where, "options.beta");
}

// ε ∈ [lo, hi] with open/closed ends as requested; the message states the interval.
inline void expect_label_smoothing(const loss::preference_options& o, std::string_view where,
                                   bool lo_open, bool hi_open, double hi, std::string_view why) {
  const double e = o.label_smoothing;
  const bool ok =
      std::isfinite(e) && (lo_open ? e > 0.0 : e >= 0.0) && (hi_open ? e < hi : e <= hi);
  expect(ok, where, "options.label_smoothing must be in ", lo_open ? "(0, " : "[0, ", hi,
         hi_open ? ")" : "]", " (", why, "), got ", e);
}

}  // namespace detail

// Traits every link may set, read by the one pair loop (backend/cpu/preference.hpp):
//   L::batch_sort (a batch_sort_keys): the loop gathers every pair's keys, sorts them over the
//     batch and evaluates rank by rank (pref::aot, aot_unpaired; loss/preference/aot.hpp).
//   L::uses_lengths: the loop evaluates evaluate(Δc, Δr, W_c, W_r, options) with the pairs' mask
//     weights W (pref::f_divergence_length_normalized; evaluate(Δc, Δr, options) = unit lengths).
enum class batch_sort_keys {
  margins,     // a = π_c − π_r, b = ρ_c − ρ_r        (aot)
  log_ratios,  // a = Δc, b = Δr                      (aot_unpaired)
};

template <class L>
inline constexpr bool is_batch_sorted_v = requires { L::batch_sort; };

template <class L>
inline constexpr bool uses_lengths_v = requires { L::uses_lengths; };

// The validate of every link whose only hyperparameter is β (> 0).
struct beta_only {
  static void validate(const loss::preference_options& o, std::string_view where) {
    detail::expect_beta(o, where);
  }
};

// A link that is a function of the β-scaled log-ratios c = βΔc and r = βΔr alone (APO-zero,
// BCO-pair, NCA-pair): F gives `name` and `template <class T> static pair_value<T> scaled(T c,
// T r)` with the loss and its derivatives w.r.t. c and r; the chain rule's β is applied here.
// (Links of βz = β(Δc − Δr) — sigmoid, hinge, apo_down — are not of this form: βΔc − βΔr rounds
// differently from β(Δc − Δr).)
template <class F>
struct beta_link : beta_only {
  static constexpr const char* name = F::name;

  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      const loss::preference_options& o) {
    const T beta = T(o.beta);
    const pair_value<T> v = F::template scaled<T>(beta * delta_chosen, beta * delta_rejected);
    return {v.loss, beta * v.d_chosen, beta * v.d_rejected};
  }
};

}  // namespace pref

POSTTRAIN_NAMESPACE_END
