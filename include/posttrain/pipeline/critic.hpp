#pragma once
// The Critic concept (PPO value model): token-aligned values of a batch and their gradient.
//
//   C::enabled                      false only for critic::none (rl_step then trains no critic)
//   C::scalar_type                  float or double
//   c.values(const token_sequences&, std::span<scalar_type> v)   v[t]: the value of the state
//                                   whose next action is tokens[t + 1] ... written token-aligned
//                                   with the log-probs: v[t] scores the prefix that produced
//                                   tokens[t] (0 on first tokens, never read there)
//   c.backward(std::span<const scalar_type> d_values)   adds the gradient of the last values()
//   c.parameters(), c.gradients(), c.zero_grad()        flat views, as a policy's
//
// A critic initialised from a reward model (Tülu 3) is the user's model loaded from the RM's
// weights; nothing in the concept depends on it. static_assert(check_critic<C>())
// (tests/compile_fail/pipeline_critic.cpp).
#include <concepts>
#include <span>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/pipeline/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

template <class C>
concept critic_model = model_detail::switchable<C> && model_detail::flat_views<C> &&
    requires(C& c, const token_sequences& s, std::span<typename C::scalar_type> v,
             std::span<const typename C::scalar_type> d) {
  c.values(s, v);
  c.backward(d);
};

template <class C>
constexpr bool check_critic() {
  static_assert(requires { { C::enabled } -> std::convertible_to<bool>; },
                "a critic needs `static constexpr bool enabled` (false only for critic::none)");
  constexpr bool has_scalar = requires { typename C::scalar_type; };
  static_assert(has_scalar, "a critic needs `using scalar_type = float;` or `double`");
  if constexpr (has_scalar) {
    static_assert(requires(C& c, const token_sequences& s, std::span<typename C::scalar_type> v) {
      c.values(s, v);
    }, "a critic needs `values(const pipeline::token_sequences&, std::span<scalar_type>)` writing "
       "one token-aligned value per token");
    static_assert(requires(C& c, std::span<const typename C::scalar_type> d) { c.backward(d); },
                  "a critic needs `backward(std::span<const scalar_type> d_values)` adding the "
                  "parameter gradients of the last values() call");
    static_assert(model_detail::flat_views<C>, "a critic needs `std::span<scalar_type> parameters()`, `gradients()` and `zero_grad()`");
  }
  return critic_model<C>;
}

namespace critic {

// No critic (GRPO, RLOO, REINFORCE++): rl_step trains none and the estimator reads no values.
template <class S>
struct none : model_detail::disabled<S> {
  void values(const token_sequences&, std::span<S>) {
    model_detail::disabled<S>::refuse("critic::none::values", "critic::none");
  }
  void backward(std::span<const S>) {}
  std::span<S> parameters() { return {}; }
  std::span<S> gradients() { return {}; }
  void zero_grad() {}
};

}  // namespace critic

static_assert(check_critic<critic::none<double>>());

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
