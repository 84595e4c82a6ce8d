#pragma once
// loss::weighted<Term...> — a weighted sum of preference losses over one batch (TRL DPOTrainer
// `loss_type` list with `loss_weights`): MPO, RPO, or any mix of DPO-family links, each term with
// its own sequence reduction (e.g. TRL ["sigmoid", "ipo"]: summed log-probs for sigmoid,
// length-normalised ones for ipo).
//
//   loss = Σ_k w_k · L_k
//     L_k = Term_k::compute(inputs_k, options).loss     for a loss::preference<...> composition
//                                                      (Σ_p w_p·loss_p / pairs [+ its own NLL]);
//                                                      inputs_k = the batch with term k's
//                                                      reference scores (its own SeqReduce)
//     L_k = ω̄ · NLL_chosen                             for pref::sft: the token mean of −ℓ over
//                                                      every chosen completion token of the batch,
//                                                      Σ m·(−ℓ) / chosen_tokens (TRL HEAD "sft"),
//                                                      ω̄ = Σ_p w_p / pairs with pair_weights
//                                                      (WPO scales TRL's broadcast sft term too),
//                                                      else 1
//   ∂loss/∂ℓ_t = Σ_k w_k·∂L_k/∂ℓ_t (each term differentiates through its own reduction), written
//   (not accumulated) into the caller's outputs.
//
//   Terms: loss::preference compositions (at least one) and pref::sft. One preference_options
//   serves every term (TRL shares β and the other fields across loss types); each term reads the
//   fields its link names. A list with a link that has options of its own (simpo's γ, discopop's
//   τ, ...) takes weighted_preference_options<LinkOptions...> instead: the same shared fields plus
//   one link options set per term, `.links` (std::get<k>: term k's; empty for the others and
//   for sft). Lists without such links take plain preference_options (options_type unchanged).
//   weights (std::array<double, K>, one per Term in order): finite and
//   >= 0 (TRL loss_weights; no default here: the presets in loss/preference/algorithms.hpp give
//   MPO's and RPO's).
//
//   Reference scores, two ways:
//   * compute(in, weights, ...): in.reference_chosen/rejected serve every term. Only for lists
//     whose preference terms share SeqReduce and the reference tag (`shared_reference`), e.g.
//     algo::mpo; anything else fails to compile with a pointer to the second form.
//   * compute(in, reference, weights, ...): reference = weighted_reference<T, K>, term k's scores
//     reference.chosen[k] / rejected[k] ([P], reduced with term k's SeqReduce; empty for pref::sft
//     and reference_free terms; terms with the same reduction may view the same scores), and
//     in.reference_chosen/rejected empty. Any list. reference_scores(batch, reference token
//     log-probs, options) computes them all (weighted_reference_scores<T, K>, view()).
//
//   Inputs / outputs / normaliser: as loss::preference (loss/preference.hpp). pair_losses[P] =
//   Σ_{preference terms} w_k·pair_loss_k (batch-sorted links contribute by rank); chosen/rejected
//   rewards (β·Δ) and the reward statistics are the first preference term's (with its
//   reduction). Pass global normalizer.pairs / chosen_tokens to every micro-batch and the losses
//   and gradients add up to the full batch's (the pair-weighted sft factor ω̄ excepted: it is a
//   batch mean).
//   Result: weighted_result<K>: loss; terms[k] = L_k (unweighted); preference_loss =
//   Σ_{preference terms} w_k·L_k; nll = NLL_chosen (0 without an sft term).
//
//   Every term, the weights and the reference scores are validated before anything is written.
//   Cost: one pass per preference term; a second and later preference term evaluates into a
//   temporary gradient of Nc + Nr values (allocated only when gradients are requested); the sft
//   term adds into the chosen gradient in place.
#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/preference.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

// The chosen-completion SFT term of a loss::weighted list (TRL loss_type "sft").
struct sft {
  static constexpr const char* name = "sft";
};

}  // namespace pref

namespace loss {

namespace detail {

// A loss::preference composition, or a type derived from one (every algo:: recipe derives from
// its loss, so loss::weighted<algo::dpo, algo::ipo> works).
template <class L, class S, class R, class N, class D>
std::true_type preference_base_of(const preference<L, S, R, N, D>*);
std::false_type preference_base_of(...);

template <class T>
struct is_preference_composition : decltype(preference_base_of(static_cast<T*>(nullptr))) {};

template <class Term>
inline constexpr bool is_sft_term_v = std::is_same_v<Term, pref::sft>;

template <class Term>
inline constexpr bool is_weighted_term_v =
    is_preference_composition<Term>::value || is_sft_term_v<Term>;

// The first preference composition of a pack.
template <class... Term>
struct first_preference;
template <class Head, class... Tail>
struct first_preference<Head, Tail...> {
  using type = std::conditional_t<is_preference_composition<Head>::value, Head,
                                  typename first_preference<Tail...>::type>;
};
template <>
struct first_preference<> {
  using type = void;
};

template <class First, class Term>
constexpr bool shares_inputs() {
  if constexpr (is_sft_term_v<Term>) {
    return true;
  } else {
    return std::is_same_v<typename First::sequence_reduction, typename Term::sequence_reduction> &&
           std::is_same_v<typename First::reference, typename Term::reference>;
  }
}

template <class Term>
constexpr bool term_uses_reference() {
  if constexpr (is_sft_term_v<Term>)
    return false;
  else
    return Term::uses_reference;
}

template <class>
inline constexpr bool weighted_dependent_false = false;

// Term k's own link options (empty for pref::sft and for links without options).
template <class Term>
struct term_link_options {
  using type = pref::link_defaults::options;
};
template <class Term>
requires is_preference_composition<Term>::value struct term_link_options<Term> {
  using type = pref::link_options_t<typename Term::link>;
};

template <class Term>
inline constexpr bool term_has_link_options_v =
    !std::is_empty_v<typename term_link_options<Term>::type>;

}  // namespace detail

// The preference options of a weighted list whose links have options of their own: the shared
// fields (this is a preference_options) and one link options set per term, links = std::tuple of
// term k's (pref::link_defaults::options for pref::sft and links without options).
template <class... LinkOptions>
struct weighted_preference_options : preference_options {
  std::tuple<LinkOptions...> links{};
};

// What loss::weighted<Term...> takes as its preference options: preference_options when no term's
// link has options, else weighted_preference_options<term k's link options...>.
template <class... Term>
using weighted_preference_options_for = std::conditional_t<
    (detail::term_has_link_options_v<Term> || ...),
    weighted_preference_options<typename detail::term_link_options<Term>::type...>,
    preference_options>;

template <std::size_t K>
struct weighted_result : preference_result {
  std::array<double, K> terms{};  // L_k before its weight
};

// Term k's reference scores ρ_c[P], ρ_r[P], reduced with term k's SeqReduce (views; empty for
// pref::sft and reference_free terms).
template <class T, std::size_t K>
struct weighted_reference {
  std::array<std::span<const T>, K> chosen{};
  std::array<std::span<const T>, K> rejected{};
};

// The options of loss::weighted<Term...> under the Loss concept: the term weights w_k beside the
// preference hyperparameters every term reads (shared reference scores); PreferenceOptions =
// weighted_preference_options_for<Term...> (plain preference_options unless a link has options).
template <std::size_t K, class PreferenceOptions = preference_options>
struct weighted_options {
  std::array<double, K> weights{};
  PreferenceOptions preference{};
};

// Owning storage for weighted<...>::reference_scores: one pair of vectors per term.
template <class T, std::size_t K>
struct weighted_reference_scores {
  std::array<std::vector<T>, K> chosen{};
  std::array<std::vector<T>, K> rejected{};
  weighted_reference<T, K> view() const {
    weighted_reference<T, K> v;
    for (std::size_t k = 0; k < K; ++k) {
      v.chosen[k] = chosen[k];
      v.rejected[k] = rejected[k];
    }
    return v;
  }
};

template <class... Term>
struct weighted
    : loss_interface<weighted_options<sizeof...(Term), weighted_preference_options_for<Term...>>,
                     preference_inputs, preference_outputs, preference_normalizer,
                     weighted_result<sizeof...(Term)>> {
  static constexpr std::size_t size = sizeof...(Term);
  static_assert(size > 0, "loss::weighted<Term...>: give at least one term");
  static_assert((detail::is_weighted_term_v<Term> && ...),
                "loss::weighted<Term...>: every Term must be a loss::preference<...> composition "
                "(e.g. algo::dpo) or pref::sft");
  using first = typename detail::first_preference<Term...>::type;
  static_assert(!std::is_void_v<first>,
                "loss::weighted<Term...>: needs at least one loss::preference<...> composition "
                "(for the SFT loss alone use loss::sft)");

  using weights_type = std::array<double, size>;
  using result_type = weighted_result<size>;
  // The shared hyperparameters and, when a term's link has options of its own, every term's
  // (`.links`): see weighted_preference_options_for.
  using preference_options_type = weighted_preference_options_for<Term...>;
  // The Loss concept (loss/concept.hpp, the loss_interface base): compute(exec, in,
  // weighted_options{w, o}, out, norm).
  template <class T>
  using reference_type = weighted_reference<T, size>;
  // Every preference term reduces sequences and uses the reference like the first: one set of
  // reference scores (inputs.reference_chosen/rejected) serves them all.
  static constexpr bool shared_reference = (detail::shares_inputs<first, Term>() && ...);
  static constexpr bool uses_reference = (detail::term_uses_reference<Term>() || ...);

  // "loss::weighted<loss::preference<sigmoid, sum>, ..., sft>"
  static std::string name() {
    std::string n = "loss::weighted<";
    bool comma = false;
    ((n += (comma ? ", " : ""), n += term_name<Term>(), comma = true), ...);
    return n + ">";
  }

  // Shared reference scores (in.reference_chosen/rejected serve every term).
  template <class T>
  static void validate(const preference_inputs<T>& in, const weights_type& weights,
                       const preference_options_type& options, const preference_outputs<T>& out,
                       const preference_normalizer& norm) {
    static_assert(shared_reference,
                  "loss::weighted<Term...>: the preference terms reduce "
                  "sequences (or use the reference) differently, so one set of "
                  "reference scores cannot serve them all: pass each term's "
                  "scores (weighted_reference, from reference_scores)");
    validate_weights(weights);
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (validate_term<Term, I>(in, options, out, norm), ...);
    }
    (std::index_sequence_for<Term...>{});
  }

  // Per-term reference scores; in.reference_chosen/rejected must be empty.
  template <class T>
  static void validate(const preference_inputs<T>& in, const reference_type<T>& reference,
                       const weights_type& weights, const preference_options_type& options,
                       const preference_outputs<T>& out, const preference_normalizer& norm) {
    const std::string where = name();
    validate_weights(weights);
    expect(in.reference_chosen.empty() && in.reference_rejected.empty(), where,
           "inputs.reference_chosen/reference_rejected must be empty when per-term reference "
           "scores are given (reference.chosen[k] / reference.rejected[k])");
    std::size_t k = 0;
    ((validate_reference<Term>(reference, k, where), ++k), ...);
    const std::array<preference_inputs<T>, size> ins = term_inputs(in, reference);
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (validate_term<Term, I>(ins[I], options, out, norm), ...);
    }
    (std::index_sequence_for<Term...>{});
  }

  // The reference scores every preference term expects when they are shared (the first term's
  // reduction).
  template <class T>
  static void reference_scores(const preference_batch& batch,
                               std::span<const T> reference_chosen_logprobs,
                               std::span<const T> reference_rejected_logprobs,
                               const preference_options_type& options,
                               std::span<T> reference_chosen, std::span<T> reference_rejected) {
    static_assert(shared_reference,
                  "loss::weighted<Term...>::reference_scores into one pair of "
                  "spans needs terms that share SeqReduce and the reference "
                  "tag; use the overload returning weighted_reference_scores");
    first::reference_scores(batch, reference_chosen_logprobs, reference_rejected_logprobs, options,
                            reference_chosen, reference_rejected);
  }

  // Every term's reference scores from the reference model's token log-probs over the batch
  // (Term::reference_scores per preference term with a reference; nothing for the others).
  template <class T>
  static weighted_reference_scores<T, size> reference_scores(
      const preference_batch& batch, std::span<const T> reference_chosen_logprobs,
      std::span<const T> reference_rejected_logprobs, const preference_options_type& options = {}) {
    batch.validate(name() + "::reference_scores");
    weighted_reference_scores<T, size> r;
    std::size_t k = 0;
    ((term_reference_scores<Term>(batch, reference_chosen_logprobs, reference_rejected_logprobs,
                                  options, r, k),
      ++k),
     ...);
    return r;
  }

  template <class T>
  static result_type compute(exec::host, const preference_inputs<T>& in,
                             const weights_type& weights,
                             const preference_options_type& options = {},
                             const preference_outputs<T>& out = {},
                             const preference_normalizer& norm = {}) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::weighted::compute accepts float or double log-probs");
    validate(in, weights, options, out, norm);
    std::array<preference_inputs<T>, size> ins;
    ins.fill(in);
    return run(ins, weights, options, out, norm);
  }

  // The Loss-concept form: the weights inside the options (shared reference scores).
  template <class T, std::same_as<weighted_options<size, preference_options_type>> O>
  static result_type compute(exec::host, const preference_inputs<T>& in, const O& options,
                             const preference_outputs<T>& out, const preference_normalizer& norm) {
    return compute(exec::host{}, in, options.weights, options.preference, out, norm);
  }

  template <class T>
  static result_type compute(exec::host, const preference_inputs<T>& in,
                             const reference_type<T>& reference, const weights_type& weights,
                             const preference_options_type& options = {},
                             const preference_outputs<T>& out = {},
                             const preference_normalizer& norm = {}) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::weighted::compute accepts float or double log-probs");
    validate(in, reference, weights, options, out, norm);
    return run(term_inputs(in, reference), weights, options, out, norm);
  }

  template <class T>
  static result_type compute(const preference_inputs<T>& in, const reference_type<T>& reference,
                             const weights_type& weights,
                             const preference_options_type& options = {},
                             const preference_outputs<T>& out = {},
                             const preference_normalizer& norm = {}) {
    return compute(exec::host{}, in, reference, weights, options, out, norm);
  }

  template <class T>
  static result_type compute(const preference_inputs<T>& in, const weights_type& weights,
                             const preference_options_type& options = {},
                             const preference_outputs<T>& out = {},
                             const preference_normalizer& norm = {}) {
    return compute(exec::host{}, in, weights, options, out, norm);
  }

  template <class T>
  static result_type compute(exec::cuda, const preference_inputs<T>&, const weights_type&,
                             const preference_options_type& = {}, const preference_outputs<T>& = {},
                             const preference_normalizer& = {}) {
    static_assert(detail::weighted_dependent_false<T>,
                  "loss::weighted has no CUDA backend yet: call compute(exec::host{}, ...) with "
                  "host memory");
    return {};
  }

  template <class T>
  static result_type compute(exec::cuda, const preference_inputs<T>&, const reference_type<T>&,
                             const weights_type&, const preference_options_type& = {},
                             const preference_outputs<T>& = {}, const preference_normalizer& = {}) {
    static_assert(detail::weighted_dependent_false<T>,
                  "loss::weighted has no CUDA backend yet: call compute(exec::host{}, ...) with "
                  "host memory");
    return {};
  }

 private:
  template <class T>
  using term_inputs_type = std::array<preference_inputs<T>, size>;

  template <class T>
  struct state {
    const term_inputs_type<T>& ins;  // [k]: the batch with term k's reference scores
    const preference_options_type& options;
    const preference_outputs<T>& out;
    const preference_normalizer& norm;
    std::vector<T> tmp_chosen, tmp_rejected;
    std::vector<double> tmp_pairs;
    bool written;  // the first preference term has written the outputs
  };

  template <class U>
  static constexpr bool is_preference() {
    return detail::is_preference_composition<U>::value;
  }

  template <class U>
  static std::string term_name() {
    if constexpr (detail::is_sft_term_v<U>)
      return "sft";
    else
      return U::name();
  }

  template <class U, std::size_t I, class T>
  static void validate_term(const preference_inputs<T>& in, const preference_options_type& options,
                            const preference_outputs<T>& out, const preference_normalizer& norm) {
    if constexpr (is_preference<U>()) U::validate(in, term_options<U, I>(options), out, norm);
  }

  // Term I's options_type: the shared fields, plus std::get<I>(options.links) for a link with
  // options of its own.
  template <class U, std::size_t I>
  static typename U::options_type term_options(const preference_options_type& options) {
    if constexpr (!detail::term_has_link_options_v<U>) {
      return static_cast<const preference_options&>(options);
    } else {
      typename U::options_type t{};
      static_cast<preference_options&>(t) = options;
      t.link = std::get<I>(options.links);
      return t;
    }
  }

  static void validate_weights(const weights_type& weights) {
    const std::string where = name();
    for (std::size_t k = 0; k < size; ++k)
      expect(std::isfinite(weights[k]) && weights[k] >= 0.0, where, "weights[", k,
             "] = ", weights[k], ", expected a finite weight >= 0");
  }

  // A term without a reference must get none (a likely mix-up of indices); the sizes and values
  // of the others are checked by the term's own validate on its inputs.
  template <class U, class T>
  static void validate_reference(const reference_type<T>& reference, std::size_t k,
                                 const std::string& where) {
    if constexpr (!detail::term_uses_reference<U>()) {
      expect(reference.chosen[k].empty() && reference.rejected[k].empty(), where,
             "reference.chosen[", k, "]/reference.rejected[", k, "] must be empty: term ", k, " (",
             term_name<U>(), ") uses no reference scores");
    }
  }

  // Term k's inputs: the caller's batch and log-probs with term k's reference scores.
  template <class T>
  static term_inputs_type<T> term_inputs(const preference_inputs<T>& in,
                                         const reference_type<T>& reference) {
    term_inputs_type<T> ins;
    for (std::size_t k = 0; k < size; ++k) {
      ins[k] = in;
      ins[k].reference_chosen = reference.chosen[k];
      ins[k].reference_rejected = reference.rejected[k];
    }
    return ins;
  }

  template <class U, class T>
  static void term_reference_scores(const preference_batch& batch, std::span<const T> ref_chosen,
                                    std::span<const T> ref_rejected,
                                    const preference_options_type& options,
                                    weighted_reference_scores<T, size>& r, std::size_t k) {
    if constexpr (detail::term_uses_reference<U>()) {
      const index_t pairs = batch.num_pairs();  // the batch was validated by the caller
      r.chosen[k].resize(static_cast<std::size_t>(pairs));
      r.rejected[k].resize(static_cast<std::size_t>(pairs));
      U::reference_scores(batch, ref_chosen, ref_rejected, options, std::span<T>(r.chosen[k]),
                          std::span<T>(r.rejected[k]));
    }
  }

  template <class T>
  static result_type run(const term_inputs_type<T>& ins, const weights_type& weights,
                         const preference_options_type& options, const preference_outputs<T>& out,
                         const preference_normalizer& norm) {
    state<T> s{ins, options, out, norm, {}, {}, {}, false};
    result_type r;
    // Preference terms first (the first one writes the outputs), then the sft terms add in.
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (run_if_preference<Term, I>(s, weights[I], r), ...);
      (run_if_sft<Term>(s, weights[I], r, I), ...);
    }
    (std::index_sequence_for<Term...>{});
    r.loss = 0;
    r.preference_loss = 0;
    std::size_t k = 0;
    ((r.loss += weights[k] * r.terms[k],
      r.preference_loss += is_preference<Term>() ? weights[k] * r.terms[k] : 0.0, ++k),
     ...);
    return r;
  }

  // w·x with +0 (never −0) for a zero product, so masked gradients stay exactly +0.
  template <class T>
  static T scaled(double w, T x) {
    return static_cast<T>(w * static_cast<double>(x) + 0.0);
  }

  template <class U, std::size_t k, class T>
  static void run_preference(state<T>& s, double w, result_type& r) {
    const preference_outputs<T>& out = s.out;
    const typename U::options_type options = term_options<U, k>(s.options);
    if (!s.written) {
      const preference_result v = U::compute(exec::host{}, s.ins[k], options, out, s.norm);
      r.terms[k] = v.loss;
      r.chosen_reward = v.chosen_reward;
      r.rejected_reward = v.rejected_reward;
      r.reward_margin = v.reward_margin;
      r.reward_accuracy = v.reward_accuracy;
      for (T& g : out.chosen_grad) g = scaled(w, g);
      for (T& g : out.rejected_grad) g = scaled(w, g);
      for (double& l : out.pair_losses) l = w * l;
      s.written = true;
      return;
    }
    preference_outputs<T> tmp;
    if (!out.chosen_grad.empty()) {
      s.tmp_chosen.resize(out.chosen_grad.size());
      tmp.chosen_grad = s.tmp_chosen;
    }
    if (!out.rejected_grad.empty()) {
      s.tmp_rejected.resize(out.rejected_grad.size());
      tmp.rejected_grad = s.tmp_rejected;
    }
    if (!out.pair_losses.empty()) {
      s.tmp_pairs.resize(out.pair_losses.size());
      tmp.pair_losses = s.tmp_pairs;
    }
    r.terms[k] = U::compute(exec::host{}, s.ins[k], options, tmp, s.norm).loss;
    for (std::size_t t = 0; t < out.chosen_grad.size(); ++t)
      out.chosen_grad[t] = static_cast<T>(static_cast<double>(out.chosen_grad[t]) +
                                          w * static_cast<double>(tmp.chosen_grad[t]) + 0.0);
    for (std::size_t t = 0; t < out.rejected_grad.size(); ++t)
      out.rejected_grad[t] = static_cast<T>(static_cast<double>(out.rejected_grad[t]) +
                                            w * static_cast<double>(tmp.rejected_grad[t]) + 0.0);
    for (std::size_t p = 0; p < out.pair_losses.size(); ++p)
      out.pair_losses[p] += w * tmp.pair_losses[p];
  }

  template <class U, std::size_t I, class T>
  static void run_if_preference(state<T>& s, double w, result_type& r) {
    if constexpr (is_preference<U>()) run_preference<U, I>(s, w, r);
  }

  template <class U, class T>
  static void run_if_sft(state<T>& s, double w, result_type& r, std::size_t k) {
    if constexpr (detail::is_sft_term_v<U>) run_sft(s, w, r, k);
  }

  // NLL_chosen = Σ m·(−ℓ) / chosen_tokens; ∂/∂ℓ_t = −m_t / chosen_tokens (masked tokens unread).
  template <class T>
  static void run_sft(state<T>& s, double w, result_type& r, std::size_t k) {
    const preference_inputs<T>& in = s.ins[0];  // every term sees the same batch and log-probs
    const token_batch& c = in.batch.chosen;
    const std::span<const T> lp = in.chosen_logprobs;
    double sum = 0, count = 0;
    for (std::size_t t = 0; t < lp.size(); ++t) {
      const double m = c.mask.empty() ? 1.0 : static_cast<double>(c.mask[t]);
      if (m == 0.0) continue;
      sum += m * static_cast<double>(lp[t]);
      count += m;
    }
    const double tokens = s.norm.chosen_tokens > 0 ? s.norm.chosen_tokens : count;
    const double inv_tokens = tokens > 0 ? 1.0 / tokens : 0.0;
    double factor = 1.0;  // ω̄: TRL multiplies the broadcast sft term by the WPO pair weights
    if (!in.pair_weights.empty()) {
      const double pairs =
          s.norm.pairs > 0 ? s.norm.pairs : static_cast<double>(in.batch.num_pairs());
      double ws = 0;
      for (double x : in.pair_weights) ws += x;
      factor = pairs > 0 ? ws / pairs : 0.0;
    }
    const double nll = 0.0 - sum * inv_tokens;
    r.nll = nll;
    r.terms[k] = factor * nll;
    const double scale = -w * factor * inv_tokens;
    const std::span<T> g = s.out.chosen_grad;
    if (g.empty() || scale == 0.0) return;
    for (std::size_t t = 0; t < g.size(); ++t) {
      const double m = c.mask.empty() ? 1.0 : static_cast<double>(c.mask[t]);
      if (m != 0.0) g[t] = static_cast<T>(static_cast<double>(g[t]) + m * scale);
    }
  }
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
