#pragma once
// The Loss concept shared by every loss family (loss::preference, loss::policy_gradient,
// loss::kto, loss::reward_model, loss::sft, loss::value_clipped, ...).
//
//   loss_for<L, Inputs...>   L names itself (static std::string name()) and computes on host
//                            memory: L::compute(exec::host{}, const Inputs&...) returns a result
//                            whose `.loss` is the scalar loss (gradients go to caller views that
//                            are optional trailing arguments of compute).
//
// Inputs differ per family (preference_inputs<T>, policy_gradient_inputs<T>, a span plus a
// token_batch for SFT, ...), so the concept takes them as parameters: a generic step written
// against `loss_for<L, policy_gradient_inputs<float>>` accepts every policy-gradient composition
// and rejects a preference loss with the sentences of check_loss_for below.
#include <concepts>
#include <string>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"

POSTTRAIN_NAMESPACE_BEGIN

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
