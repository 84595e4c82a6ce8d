#pragma once
// pref::f_divergence<Link, Div> — f-DPO (Wang et al. 2023, "Beyond reverse KL"): the link of the
// pair evaluated on f-divergence scores s = s(Δ) instead of the raw log-ratios, as TRL HEAD's
// DPOTrainer (f_divergence_type) computes them.
//
//   s_c = Div::score(Δc),  s_r = Div::score(Δr)
//   loss = Link(s_c, s_r),   ∂loss/∂Δ = ∂Link/∂s · s'(Δ)
//
//   Div                     s(Δ)                      s'(Δ)              TRL f_divergence_type
//   divergence::reverse_kl        Δ                         1                  "reverse_kl" (DPO)
//   divergence::forward_kl        −e^{min(−Δ, 80)}          e^{−Δ} (0 beyond)  "forward_kl"
//   divergence::js_divergence     logσ(Δ)                   σ(−Δ)              "js_divergence"
//   divergence::alpha_divergence  e^{min((α−1)Δ, 80)}/(α−1) e^{(α−1)Δ} (0 b.)  "alpha_divergence"
//                           |α−1| < 1e-6 → Δ (reverse_kl), as TRL       (α = its options.alpha)
//
// The exponent clamp at 80 is TRL's for float32/bfloat16 (its derivative is 0 beyond, like
// torch.clamp); TRL has no clamp for forward_kl (it overflows to inf) — here it shares the clamp,
// so every finite Δ gives a finite loss. α = divergence::alpha_divergence::options{alpha} (finite;
// TRL default 0.5; α = 0 is forward_kl, α → 1 reverse_kl).
//
// Options: a divergence derives from divergence::defaults (no options of its own, no checks) and
// may declare `struct options` and `validate(const options&, where)` (alpha_divergence). The
// composed link's own options are then f_divergence_options{link, divergence}: the wrapped link's
// options (empty for most) and the divergence's, so f_dpo_alpha's α is spelled
// `options.link.divergence.alpha`; when neither has options the composition has none either (and
// its options_type is plain loss::preference_options).
//
// Which links: TRL HEAD feeds (s_c, s_r) to sigmoid, hinge, ipo, exo_pair, nca_pair, robust,
// bco_pair, sppo_hard, discopop and sigmoid_norm; apo_zero ignores the scores (raw Δ) and apo_down
// mixes raw βΔc with β(s_c − s_r); aot/aot_unpaired sort raw log-probs. So f_divergence<apo_down>
// is specialised to TRL's mixed form, and f_divergence<apo_zero> / f_divergence<aot*> do not
// compile (use the plain link: TRL ignores f_divergence_type there).
// Length normalisation: composed with seq::mean this link computes s(Δ̄) of the mean log-ratio.
// TRL 1.16's ipo and sigmoid_norm instead take the f-score of the SUMMED log-ratio, as TRL writes
// it (f'(e^Δ), zero at Δ = 0: s̃ = s − s(0), i.e. 1 − e^{−Δ}, log 2 + logσ(Δ),
// (e^{(α−1)Δ} − 1)/(α−1)), and divide it by the completion length:
//   pref::f_divergence_length_normalized<Link, Div> with seq::sum (reference sums):
//     x_c = s̃(Δc)/max(W_c, 1),  x_r = s̃(Δr)/max(W_r, 1),  loss = Link(x_c, x_r)
//     ∂loss/∂Δc = ∂Link/∂x_c · s'(Δc)/max(W_c, 1)   (W = Σ m of the sequence)
// (algo::ipo_f_divergence<Div>, algo::dpo_length_normalized_f_divergence<Div>). The constant
// s(0) cancels in s_c − s_r but not once each side has its own divisor. Both forms agree for
// reverse_kl (s = Δ, and Δ_sum/W = Δ̄ when policy and reference share the 0/1 mask).
//
// Which links take scores in TRL 1.16 (DPOTrainer._compute_loss): sigmoid, hinge, ipo,
// exo_pair, robust, discopop and sigmoid_norm use s_c − s_r; nca_pair, bco_pair, sppo_hard,
// apo_zero, apo_down use the raw log-ratios Δ whatever f_divergence_type is, and aot/aot_unpaired
// sort raw log-probs. f_divergence<Link, Div> over those links computes the f-score form below
// (the reference's TRL HEAD, algorithms.md §7.1); to match TRL 1.16 there, use the plain link
// (tests/golden/trl_dpo.cpp).
//
// TRL v0.26 (§7.2): JS there is z −= softplus(Δc) − softplus(Δr), i.e. z = logσ(Δc) − logσ(Δr),
// and α-divergence is z = (e^{−α'Δr} − e^{−α'Δc})/α' with α' = v0.26's coefficient (default 1):
// both equal HEAD's δ = s_c − s_r with α = 1 − α' (pref::presets::trl_v026_alpha_divergence);
// v0.26's default α' = 1 is forward_kl. v0.26 applied the scores only to the links of z (sigmoid,
// hinge, ipo, robust, exo_pair, discopop, ...), not to nca_pair/bco_pair/sppo_hard, which there
// see raw Δ (use the plain link for those to match v0.26). v0.26 has no exponent clamp.
#include <array>
#include <cmath>
#include <string_view>
#include <type_traits>

#include "posttrain/loss/preference/apo_down.hpp"
#include "posttrain/loss/preference/apo_zero.hpp"
#include "posttrain/loss/preference/link.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace divergence {

// A score and its derivative.
template <class T>
struct score_value {
  T s;
  T ds;
};

inline constexpr double max_exponent = 80.0;  // TRL: clamp_max for float32 / bfloat16

// The defaults base of a divergence: no options of its own, nothing to check.
struct defaults {
  struct options {};
  static void validate(const options&, std::string_view) {}
};

struct reverse_kl : defaults {
  static constexpr const char* name = "reverse_kl";
  template <class T>
  POSTTRAIN_HOST_DEVICE static score_value<T> score(T delta, const options&) {
    return {delta, T(1)};
  }
};

struct forward_kl : defaults {
  static constexpr const char* name = "forward_kl";
  template <class T>
  POSTTRAIN_HOST_DEVICE static score_value<T> score(T delta, const options&) {
    using std::exp;
    const T x = -delta;
    if (x > T(max_exponent)) return {-exp(T(max_exponent)), T(0)};
    const T e = exp(x);
    return {-e, e};
  }
};

struct js_divergence : defaults {
  static constexpr const char* name = "js_divergence";
  template <class T>
  POSTTRAIN_HOST_DEVICE static score_value<T> score(T delta, const options&) {
    return {math::logsigmoid(delta), math::sigmoid(-delta)};
  }
};

struct alpha_divergence {
  static constexpr const char* name = "alpha_divergence";
  static constexpr double reverse_kl_tolerance = 1e-6;  // TRL: |α − 1| < 1e-6 → reverse KL
  struct options {
    double alpha = 0.5;  // α (TRL f_alpha_divergence_coef); 0 = forward KL, 1 = reverse KL
  };
  static void validate(const options& d, std::string_view where) {
    expect_finite(d.alpha, where, "options.link.divergence.alpha");
  }
  template <class T>
  POSTTRAIN_HOST_DEVICE static score_value<T> score(T delta, const options& d) {
    using std::exp;
    using std::fabs;
    const double a1 = d.alpha - 1.0;
    if (fabs(a1) < reverse_kl_tolerance) return {delta, T(1)};
    const T t = T(a1) * delta;
    if (t > T(max_exponent)) return {exp(T(max_exponent)) / T(a1), T(0)};
    const T e = exp(t);
    return {e / T(a1), e};
  }
};

}  // namespace divergence

namespace pref {

namespace detail {
template <class L>
inline constexpr bool is_raw_log_ratio_link_v = std::is_same_v<L, apo_zero>;

// "f_divergence<" + Link::name + ", " + Div::name + ">" as a constexpr, NUL-terminated array.
template <class Link, class Div>
constexpr auto composed_name() {
  constexpr std::string_view head = "f_divergence<", sep = ", ", tail = ">";
  constexpr std::string_view a = Link::name, b = Div::name;
  std::array<char, head.size() + a.size() + sep.size() + b.size() + tail.size() + 1> out{};
  std::size_t i = 0;
  for (std::string_view part : {head, a, sep, b, tail})
    for (char ch : part) out[i++] = ch;
  out[i] = '\0';
  return out;
}
}  // namespace detail

// The own options of a link evaluated on f-scores: the wrapped link's and the divergence's.
template <class LinkOptions, class DivergenceOptions>
struct f_divergence_options {
  LinkOptions link{};
  DivergenceOptions divergence{};
};

namespace detail {
// f_divergence_options when the link or the divergence has options, else the empty defaults (so
// the composition's options_type stays plain loss::preference_options).
template <class Link, class Div>
using scored_options_t =
    std::conditional_t<has_link_options_v<Link> || !std::is_empty_v<typename Div::options>,
                       f_divergence_options<link_options_t<Link>, typename Div::options>,
                       link_defaults::options>;

// The parts of a scored link's options s (empty ones when s is the empty defaults).
template <class Link, class Div>
struct scored_parts {
  using options = scored_options_t<Link, Div>;
  static constexpr bool composed = !std::is_same_v<options, link_defaults::options>;
  POSTTRAIN_HOST_DEVICE static link_options_t<Link> link(const options& s) {
    if constexpr (composed)
      return s.link;
    else
      return {};
  }
  POSTTRAIN_HOST_DEVICE static typename Div::options divergence(const options& s) {
    if constexpr (composed)
      return s.divergence;
    else
      return {};
  }
  static void validate(const loss::preference_options& o, const options& s,
                       std::string_view where) {
    link_call::validate<Link>(o, link(s), where);
    Div::validate(divergence(s), where);
  }
};
}  // namespace detail

template <class Link, class Div>
struct f_divergence {
  static_assert(diagnose_preference_link<Link>(),
                "pref::f_divergence<Link, Div>: Link is not a preference link (see above)");
  static_assert(!detail::is_raw_log_ratio_link_v<Link>,
                "pref::f_divergence<apo_zero, ...>: TRL's apo_zero uses the raw log-ratios and "
                "ignores f_divergence_type; use pref::apo_zero itself");
  static_assert(
      !requires { Link::batch_sort; },
      "pref::f_divergence<aot..., ...>: TRL's aot/aot_unpaired sort raw log-probs and "
      "ignore f_divergence_type; use the aot link itself");

  static constexpr auto name_chars = detail::composed_name<Link, Div>();
  static constexpr const char* name = name_chars.data();  // "f_divergence<sigmoid, forward_kl>"

  using parts = detail::scored_parts<Link, Div>;
  using options = typename parts::options;

  static void validate(const loss::preference_options& o, const options& s,
                       std::string_view where) {
    parts::validate(o, s, where);
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      const loss::preference_options& o,
                                                      const options& s) {
    const typename Div::options d = parts::divergence(s);
    const divergence::score_value<T> c = Div::score(delta_chosen, d);
    const divergence::score_value<T> r = Div::score(delta_rejected, d);
    const pair_value<T> v = link_call::evaluate<Link>(c.s, r.s, o, parts::link(s));
    // A zero score slope (clamped exponent) must not turn an infinite link slope into NaN.
    return {v.loss, c.ds == T(0) ? T(0) : v.d_chosen * c.ds,
            r.ds == T(0) ? T(0) : v.d_rejected * r.ds};
  }
};

// TRL HEAD apo_down with f-scores: σ(βΔc) on the raw chosen log-ratio, 1 − σ(β(s_c − s_r)).
template <class Div>
struct f_divergence<apo_down, Div> {
  static constexpr auto name_chars = detail::composed_name<apo_down, Div>();
  static constexpr const char* name = name_chars.data();
  using parts = detail::scored_parts<apo_down, Div>;
  using options = typename parts::options;
  static void validate(const loss::preference_options& o, const options& s,
                       std::string_view where) {
    parts::validate(o, s, where);
  }
  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      const loss::preference_options& o,
                                                      const options& s) {
    const T beta = T(o.beta);
    const typename Div::options d = parts::divergence(s);
    const divergence::score_value<T> c = Div::score(delta_chosen, d);
    const divergence::score_value<T> r = Div::score(delta_rejected, d);
    const T x = beta * delta_chosen;
    const T u = beta * (c.s - r.s);
    const T su = beta * detail::sigmoid_slope(u);
    return {math::sigmoid(x) + math::sigmoid(-u), beta * detail::sigmoid_slope(x) - su * c.ds,
            su * r.ds};
  }
};

// TRL 1.16's length-normalised f-scores (see the top of this file): Link(s̃(Δc)/max(W_c, 1),
// s̃(Δr)/max(W_r, 1)) on summed log-ratios. Use with seq::sum and reference sums.
template <class Link, class Div>
struct f_divergence_length_normalized {
  static_assert(diagnose_preference_link<Link>(),
                "pref::f_divergence_length_normalized<Link, Div>: Link is not a preference link");
  static_assert(
      !detail::is_raw_log_ratio_link_v<Link> && !requires { Link::batch_sort; },
      "pref::f_divergence_length_normalized<Link, Div>: TRL feeds f-scores only to "
      "score links (ipo, sigmoid_norm); apo_zero and aot* use raw log-ratios");
  static constexpr bool uses_lengths = true;

  static constexpr auto name_chars = [] {
    constexpr std::string_view head = "f_divergence_length_normalized<", sep = ", ", tail = ">";
    constexpr std::string_view a = Link::name, b = Div::name;
    std::array<char, head.size() + a.size() + sep.size() + b.size() + tail.size() + 1> out{};
    std::size_t i = 0;
    for (std::string_view part : {head, a, sep, b, tail})
      for (char ch : part) out[i++] = ch;
    out[i] = '\0';
    return out;
  }();
  // "f_divergence_length_normalized<ipo, forward_kl>"
  static constexpr const char* name = name_chars.data();

  using parts = detail::scored_parts<Link, Div>;
  using options = typename parts::options;

  static void validate(const loss::preference_options& o, const options& s,
                       std::string_view where) {
    parts::validate(o, s, where);
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      T weight_chosen, T weight_rejected,
                                                      const loss::preference_options& o,
                                                      const options& s) {
    const T lc = weight_chosen > T(1) ? weight_chosen : T(1);  // TRL: mask.sum().clamp(min=1)
    const T lr = weight_rejected > T(1) ? weight_rejected : T(1);
    const typename Div::options d = parts::divergence(s);
    const T zero = Div::score(T(0), d).s;  // s(0): TRL's scores vanish at Δ = 0
    const divergence::score_value<T> c = Div::score(delta_chosen, d);
    const divergence::score_value<T> r = Div::score(delta_rejected, d);
    const pair_value<T> v =
        link_call::evaluate<Link>((c.s - zero) / lc, (r.s - zero) / lr, o, parts::link(s));
    return {v.loss, c.ds == T(0) ? T(0) : v.d_chosen * c.ds / lc,
            r.ds == T(0) ? T(0) : v.d_rejected * r.ds / lr};
  }

  // Unit lengths (what the length-normalised form reduces to for one-token sequences).
  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                      const loss::preference_options& o,
                                                      const options& s) {
    return evaluate(delta_chosen, delta_rejected, T(1), T(1), o, s);
  }
};

}  // namespace pref

POSTTRAIN_NAMESPACE_END
