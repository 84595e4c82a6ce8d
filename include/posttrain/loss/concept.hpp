#pragma once
// The Loss concept: the one interface every loss family models (loss::preference, loss::alphapo,
// loss::weighted, loss::bco_pair_running_mean, loss::kto, loss::kto_vanilla_paired,
// loss::reward_model, loss::sft, loss::value_clipped, loss::policy_gradient, loss::kl_cov) and
// that pipeline/ steps are written against.
//
//   L::name()                    std::string naming the composition in error messages
//   L::options_type              the hyperparameters, default-constructible. Families whose
//                                policies have hyperparameters of different kinds compose them:
//                                policy_gradient_loss_options_for<S>{policy, aggregation,
//                                surrogate} (surrogate: the surrogate's own S::options),
//                                preference_options_for<Link> (the shared preference_options,
//                                plus `.link` = Link::options when the link has its own),
//                                value_loss_options{value, aggregation}, sft_options{aggregation},
//                                weighted_options<K>{weights, preference}, ...
//   L::inputs<T>                 the input views (T = float or double)
//   L::outputs<T>                the caller's output views (gradients, per-example values); every
//                                member may be empty (not requested)
//   L::normalizer_type           the global divisors: pass the values summed over every
//                                micro-batch and rank to each call and the losses and gradients
//                                add up to the full batch's (default = this call's local counts)
//   L::result                    what compute returns; `.loss` is the scalar loss
//   L::compute(exec, inputs, options, outputs, normalizer) -> result
//                                validates every argument (posttrain::error naming it) before
//                                anything is written, then runs the family's backend.
//
//   template <loss_model L> auto step(const typename L::template inputs<float>& in, ...) {
//     return L::compute(exec::host{}, in, typename L::options_type{}, {}, {});
//   }
//
// Optional hooks (not part of the concept; pipeline/ reads them when present):
//   L::uses_reference            static constexpr bool: compute reads reference log-probs / scores
//   L::reference_needed(options) bool: whether, under these run-time options, the result depends
//                                on the reference at all (loss::policy_gradient: a KL estimator
//                                and kl_coef ≠ 0). loss_reference_needed<L>(options) answers it,
//                                falling back on L::uses_reference, and on true (keep the
//                                reference) for a loss that says neither.
//
// static_assert(check_loss_model<L>()) names what is missing, one sentence per member
// (tests/compile_fail/loss_model_*.cpp). Every algo:: name is checked in one place,
// tests/algo/recipes.cpp (every_algo_models_loss).
//
// loss_for<L, Inputs...> (older): compute(exec::host, inputs...) returning a `.loss`; kept for
// callers that pass family-specific extra arguments, deprecated in favour of loss_model.
#include <concepts>
#include <string>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss_detail {

template <class L>
concept has_loss_types = requires {
  typename L::options_type;
  typename L::template inputs<float>;
  typename L::template inputs<double>;
  typename L::template outputs<float>;
  typename L::template outputs<double>;
  typename L::normalizer_type;
  typename L::result;
};

template <class L, class T>
concept computes_with = requires(const typename L::template inputs<T>& in,
                                 const typename L::options_type& o,
                                 const typename L::template outputs<T>& out,
                                 const typename L::normalizer_type& n) {
  { L::compute(exec::host{}, in, o, out, n) } -> std::same_as<typename L::result>;
};

}  // namespace loss_detail

template <class L>
concept loss_model = loss_detail::has_loss_types<L> && requires {
  { L::name() } -> std::convertible_to<std::string>;
} && std::default_initializable<typename L::options_type> &&
    std::default_initializable<typename L::normalizer_type> &&
    requires(const typename L::result& r) {
  { r.loss } -> std::convertible_to<double>;
} && loss_detail::computes_with<L, float> && loss_detail::computes_with<L, double>;

// static_assert(check_loss_model<L>()): one sentence per missing member; a later sentence is only
// printed when the members it depends on exist.
template <class L>
constexpr bool check_loss_model() {
  static_assert(
      requires {
        { L::name() } -> std::convertible_to<std::string>;
      },
      "a loss needs `static std::string name()` naming it in error messages");
  constexpr bool has_options = requires { typename L::options_type; };
  static_assert(has_options,
                "a loss needs `using options_type = ...`: its hyperparameters (compose the "
                "policies' options into one struct)");
  constexpr bool has_inputs = requires {
    typename L::template inputs<float>;
    typename L::template inputs<double>;
  };
  static_assert(has_inputs,
                "a loss needs `template <class T> using inputs = ...`: its input views for "
                "T = float and double");
  constexpr bool has_outputs = requires {
    typename L::template outputs<float>;
    typename L::template outputs<double>;
  };
  static_assert(has_outputs,
                "a loss needs `template <class T> using outputs = ...`: the caller's output views "
                "(gradients), each of which may be empty");
  constexpr bool has_normalizer = requires { typename L::normalizer_type; };
  static_assert(has_normalizer,
                "a loss needs `using normalizer_type = ...`: its global divisors (token, sequence "
                "or pair counts summed over micro-batches and ranks)");
  constexpr bool has_result = requires { typename L::result; };
  static_assert(has_result, "a loss needs `using result = ...`: what compute returns");
  if constexpr (has_options)
    static_assert(std::default_initializable<typename L::options_type>,
                  "a loss's options_type must be default-constructible (the defaults are the "
                  "paper's or the default peer's values)");
  if constexpr (has_normalizer)
    static_assert(std::default_initializable<typename L::normalizer_type>,
                  "a loss's normalizer_type must be default-constructible (default: this call's "
                  "local counts)");
  if constexpr (has_result)
    static_assert(
        requires(const typename L::result& r) {
          { r.loss } -> std::convertible_to<double>;
        },
        "a loss's result needs a `.loss` member convertible to double (the scalar loss)");
  if constexpr (loss_detail::has_loss_types<L>)
    static_assert(loss_detail::computes_with<L, float> && loss_detail::computes_with<L, double>,
                  "a loss needs `static result compute(exec::host, const inputs<T>&, const "
                  "options_type&, const outputs<T>&, const normalizer_type&)` for T = float and "
                  "double");
  return loss_model<L>;
}

// The member types of the Loss concept in one line: a loss derives from
// loss_interface<Options, Inputs, Outputs, Normalizer, Result> (Inputs and Outputs templates over
// T) instead of spelling the five aliases.
template <class Options, template <class> class Inputs, template <class> class Outputs,
          class Normalizer, class Result>
struct loss_interface {
  using options_type = Options;
  template <class T>
  using inputs = Inputs<T>;
  template <class T>
  using outputs = Outputs<T>;
  using normalizer_type = Normalizer;
  using result = Result;
};

// Whether L's result depends on the reference under options o (the hooks above).
template <class L>
constexpr bool loss_reference_needed(const typename L::options_type& o) {
  if constexpr (requires {
                  { L::reference_needed(o) } -> std::convertible_to<bool>;
                })
    return static_cast<bool>(L::reference_needed(o));
  else if constexpr (requires {
                       { L::uses_reference } -> std::convertible_to<bool>;
                     })
    return static_cast<bool>(L::uses_reference);
  else
    return true;
}

template <class L, class... Inputs>
concept loss_for = requires(const Inputs&... inputs) {
  { L::name() } -> std::convertible_to<std::string>;
  { L::compute(exec::host{}, inputs...).loss } -> std::convertible_to<double>;
};

// static_assert(check_loss_for<L, Inputs...>()) names what is missing, one sentence each.
template <class L, class... Inputs>
constexpr bool check_loss_for() {
  static_assert(
      requires {
        { L::name() } -> std::convertible_to<std::string>;
      },
      "a loss needs `static std::string name()` naming it in error messages");
  static_assert(
      requires(const Inputs&... inputs) {
        { L::compute(exec::host{}, inputs...).loss } -> std::convertible_to<double>;
      },
      "a loss needs `static compute(exec::host, inputs...)` accepting these inputs and returning "
      "a result whose `.loss` is the scalar loss");
  return loss_for<L, Inputs...>;
}

POSTTRAIN_NAMESPACE_END
