#pragma once
// The Optimizer concept: what a pipeline step calls once per (mini-)batch after the gradients are
// accumulated, all-reduced and clipped. A user's engine brings its own; optim::adamw ships.
//
//   o.step(std::span<S> parameters, std::span<const S> gradients)   S = float or double
//       updates the parameters in place from the gradients (same sizes). An optimizer validates
//       before it writes: on a posttrain::error the parameters (and its state) are unchanged.
//
// static_assert(check_optimizer<O, S>()) prints the missing member as a sentence
// (tests/compile_fail/pipeline_optimizer.cpp).
#include <span>

#include "posttrain/config.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace optim {

template <class O, class S>
concept optimizer = requires(O& o, std::span<S> p, std::span<const S> g) { o.step(p, g); };

template <class O, class S>
constexpr bool check_optimizer() {
  static_assert(optimizer<O, S>,
                "an optimizer needs `step(std::span<S> parameters, std::span<const S> gradients)` "
                "that updates the parameters in place (S = the policy's scalar_type)");
  return optimizer<O, S>;
}

}  // namespace optim

POSTTRAIN_NAMESPACE_END
