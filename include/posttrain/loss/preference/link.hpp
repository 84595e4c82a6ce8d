#pragma once
// Preference links: the per-pair formula of a DPO-family loss, and what they share.
//
//   A link maps the log-ratios of one pair, Δc = π_c − ρ_c and Δr = π_r − ρ_r (π: policy sequence
//   scores, ρ: reference scores, ρ = 0 for a reference-free composition), and the hyperparameters
//   to the pair loss and its partial derivatives:
//
//     Link::evaluate(Δc, Δr, options[, own]) -> pair_value<T>{ loss, ∂loss/∂Δc, ∂loss/∂Δr }
//
//   Because ∂Δ/∂π = 1 these are also the derivatives with respect to the policy scores; the
//   reference receives no gradient. Links are POSTTRAIN_HOST_DEVICE templates over float/double.
//   A link derives from pref::link_defaults (below: every hook and its default) and states only
//   its name, its formula and what differs, in one file (tests/loss/custom_link.cpp).
//
// loss::preference_options holds the hyperparameters the family shares, with TRL's defaults (the
// algorithm presets in loss/preference/presets.hpp give each peer's values):
//   beta             0.1   β, the KL-regularisation strength (every link)
//   label_smoothing  0.0   ε: cDPO smoothing (sigmoid, simpo), robust-DPO noise rate (robust),
//                          EXO target smoothing (exo_pair, must be > 0; the paper uses 1e-3)
//   nll_coef         unset weight of the chosen NLL term (only compositions with an NLL term).
//                          Unset (NaN, the default) means the composition's own default, its
//                          Defaults::nll_coef: 0.2 (Llama 3) for algo::dpo_nll and user
//                          compositions, 1 for algo::orpo and the algo::cpo* aliases (TRL
//                          ORPOConfig/CPOConfig). An explicit value (finite, >= 0) always wins.
//   ld_alpha         unset α of LD-DPO's tail weight (seq::ld only; TRL ld_alpha has no default
//                          either: must be set, finite and in [0, 1])
// A hyperparameter only one link reads is that link's own, Link::options, carried by the loss's
// options_type as `.link` (loss::preference_options_for<Link>):
//   pref::simpo::options{gamma = 0.5}        γ, SimPO reward margin in units of βz (TRL CPO
//                                            simpo_gamma)
//   pref::discopop::options{tau = 0.05}      τ, DiscoPOP temperature (TRL discopop_tau)
//   divergence::alpha_divergence::options{alpha = 0.5}   α of the α-divergence score, reached
//                                            through pref::f_divergence<Link, Div>::options
//                                            {link, divergence} (TRL f_alpha_divergence_coef)
#include <cmath>
#include <concepts>
#include <limits>
#include <string_view>
#include <type_traits>

#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/math/stable.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss {

struct preference_options {
  double beta = 0.1;
  double label_smoothing = 0.0;
  double nll_coef = std::numeric_limits<double>::quiet_NaN();
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
inline constexpr bool is_batch_sorted_v = requires {
  L::batch_sort;
};

template <class L>
inline constexpr bool uses_lengths_v = requires {
  L::uses_lengths;
};

// pref::link_defaults — the documented defaults base of the link policy (as stdexec's default
// customisations): a link of β alone, with no hyperparameters of its own. A new link derives from
// it and states only its name and formula, plus the hooks and options it changes, in one file:
//
//   struct my_link : pref::link_defaults {
//     static constexpr const char* name = "my_link";
//     struct options { double kappa = 1.0; };                       // optional: its own options
//     static void validate(const loss::preference_options& o, const options& s,
//                          std::string_view where) {                 // optional: check them
//       link_defaults::validate(o, where);
//       expect_positive(s.kappa, where, "options.link.kappa");
//     }
//     template <class T>
//     POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
//                                                         const loss::preference_options& o,
//                                                         const options& s);
//   };
//
// Hooks and their defaults:
//   name                              required: the link's name in error messages
//   evaluate(Δc, Δr, o[, s])          required: pair_value<T> for T = float and double
//   options = {} (empty)              the link's own hyperparameters; the composition's
//                                     options_type carries one as `.link`
//                                     (loss::preference_options_for<L>), and compute passes it to
//                                     every hook below that takes `const options&` last
//   validate(o[, s], where)           β > 0 (options.beta); override to check more (throw
//                                     posttrain::error naming the option, e.g.
//                                     "options.link.gamma"): the validation of a link's options
//                                     lives with the link
//   batch_sort (unset)                a batch_sort_keys: the loop sorts the keys over the batch and
//                                     evaluates rank by rank (aot, aot_unpaired)
//   uses_lengths (unset)              true: the loop calls evaluate(Δc, Δr, W_c, W_r, o[, s]) with
//                                     the pairs' mask weights (f_divergence_length_normalized)
// The trailing `const options&` of a hook may be left out by a link whose hook does not read its
// own options (every link without options); link_call below passes it where it is declared.
struct link_defaults {
  struct options {};
  static void validate(const loss::preference_options& o, std::string_view where) {
    detail::expect_beta(o, where);
  }
};

// L::options, or the empty link_defaults::options for a type that declares none.
template <class L>
using link_options_t = ::posttrain::detail::own_options_t<L, link_defaults::options>;

// Whether L has hyperparameters of its own (then loss::preference_options_for<L> carries them).
template <class L>
inline constexpr bool has_link_options_v = !std::is_empty_v<link_options_t<L>>;

// The calls of a link's option-taking hooks with its own options `s` appended where the hook
// declares that parameter. Each call is constrained on the hook existing in one of the two forms,
// so that preference_link can ask through it.
namespace link_hook {
template <class L, class T>
concept evaluate_own = requires(T x, const loss::preference_options& o,
                                const link_options_t<L>& s) {
  L::evaluate(x, x, o, s);
};
template <class L, class T>
concept evaluate_shared = requires(T x, const loss::preference_options& o) {
  L::evaluate(x, x, o);
};
template <class L, class T>
concept evaluate_lengths_own = requires(T x, const loss::preference_options& o,
                                        const link_options_t<L>& s) {
  L::evaluate(x, x, x, x, o, s);
};
template <class L, class T>
concept evaluate_lengths_shared = requires(T x, const loss::preference_options& o) {
  L::evaluate(x, x, x, x, o);
};
template <class L>
concept validate_own = requires(const loss::preference_options& o, const link_options_t<L>& s,
                                std::string_view w) {
  L::validate(o, s, w);
};
template <class L>
concept validate_shared = requires(const loss::preference_options& o, std::string_view w) {
  L::validate(o, w);
};
}  // namespace link_hook

struct link_call {
  template <class L>
  requires link_hook::validate_own<L> || link_hook::validate_shared<L>
  static void validate(const loss::preference_options& o, const link_options_t<L>& s,
                       std::string_view where) {
    if constexpr (link_hook::validate_own<L>)
      L::validate(o, s, where);
    else
      L::validate(o, where);
  }
  template <class L, class T>
  requires link_hook::evaluate_own<L, T> || link_hook::evaluate_shared<L, T> POSTTRAIN_HOST_DEVICE
      POSTTRAIN_FORCEINLINE static auto
      evaluate(T delta_chosen, T delta_rejected, const loss::preference_options& o,
               const link_options_t<L>& s) {
    if constexpr (link_hook::evaluate_own<L, T>)
      return L::evaluate(delta_chosen, delta_rejected, o, s);
    else
      return L::evaluate(delta_chosen, delta_rejected, o);
  }
  // The lengths form (uses_lengths_v<L>): W_c, W_r = the pairs' mask weights.
  template <class L, class T>
  requires link_hook::evaluate_lengths_own<L, T> || link_hook::evaluate_lengths_shared<L, T>
      POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE static auto evaluate(
          T delta_chosen, T delta_rejected, T weight_chosen, T weight_rejected,
          const loss::preference_options& o, const link_options_t<L>& s) {
    if constexpr (link_hook::evaluate_lengths_own<L, T>)
      return L::evaluate(delta_chosen, delta_rejected, weight_chosen, weight_rejected, o, s);
    else
      return L::evaluate(delta_chosen, delta_rejected, weight_chosen, weight_rejected, o);
  }
};

// L evaluates a pair in T: link_call::evaluate<L> on two T log-ratios gives a pair_value<T>.
template <class L, class T>
concept link_evaluates_in = requires(T x, const loss::preference_options& o,
                                     const link_options_t<L>& s) {
  { link_call::evaluate<L>(x, x, o, s) } -> std::same_as<pair_value<T>>;
};

// A preference link: named, validates its options, evaluates in float and double.
template <class L>
concept preference_link = requires(const loss::preference_options& o, const link_options_t<L>& s,
                                   std::string_view where) {
  { L::name } -> std::convertible_to<const char*>;
  link_call::validate<L>(o, s, where);
  requires link_evaluates_in<L, double>;
  requires link_evaluates_in<L, float>;
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
      link_hook::validate_own<L> || link_hook::validate_shared<L>,
      "a preference link needs `static void validate(const loss::preference_options&[, const "
      "options&], std::string_view where)` that throws posttrain::error for hyperparameters it "
      "cannot use (derive from pref::link_defaults for the β > 0 check)");
  static_assert(
      link_evaluates_in<L, double>,
      "a preference link needs `template <class T> static pair_value<T> evaluate(T delta_chosen, "
      "T delta_rejected, const loss::preference_options&[, const options&])` returning the pair "
      "loss and its derivatives w.r.t. the two log-ratios");
  static_assert(
      link_evaluates_in<L, float>,
      "a preference link's evaluate must be a template usable with float as well as double");
  static_assert(std::is_default_constructible_v<link_options_t<L>>,
                "a preference link's `options` must be default-constructible (its defaults are "
                "the peers')");
  return preference_link<L>;
}

// A link that is a function of the β-scaled log-ratios c = βΔc and r = βΔr alone (APO-zero,
// BCO-pair, NCA-pair): F gives `name` and `template <class T> static pair_value<T> scaled(T c,
// T r)` with the loss and its derivatives w.r.t. c and r; the chain rule's β is applied here.
// (Links of βz = β(Δc − Δr) — sigmoid, hinge, apo_down — are not of this form: βΔc − βΔr rounds
// differently from β(Δc − Δr).)
template <class F>
struct beta_link : link_defaults {
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

namespace loss {

// The options of a loss::preference composition whose link has options of its own: the shared
// hyperparameters (this struct is a preference_options: o.beta, o.label_smoothing, ...) and the
// link's, `.link`. Derived rather than wrapped so that shared fields keep their spelling; a plain
// preference_options does not convert to it, so a call that forgets the link's part does not
// compile (it never silently takes the link's defaults).
template <class LinkOptions>
struct preference_loss_options : preference_options {
  LinkOptions link{};
};

// loss::preference<L, ...>::options_type: preference_options itself for a link without options of
// its own (every link but simpo, discopop and the α-divergence f-DPO scores), else
// preference_loss_options<L::options>.
template <class L>
using preference_options_for =
    std::conditional_t<pref::has_link_options_v<L>,
                       preference_loss_options<pref::link_options_t<L>>, preference_options>;

// The link's own part of o: o.link, or the empty link_defaults::options.
template <class L>
constexpr pref::link_options_t<L> link_part(const preference_options_for<L>& o) {
  if constexpr (pref::has_link_options_v<L>)
    return o.link;
  else
    return {};
}

}  // namespace loss

POSTTRAIN_NAMESPACE_END
