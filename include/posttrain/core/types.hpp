#pragma once
// Scalar type vocabulary shared by every layer.
//   index_t    signed 64-bit: token positions, offsets, targets (the peers use int64 labels).
//   accum_t<T> the type a reduction over values of type T accumulates in: double for double and
//              float for everything narrower (float, bfloat16, half); host reductions over tokens
//              that the design wants in double request it explicitly.
//   detail::own_options_t<P, Fallback>
//              a policy's own hyperparameters (P::options), or Fallback (its defaults base's
//              empty options) for a type that declares none: what a loss composition carries
//              beside the shared options (surrogates, preference links).
#include <cstdint>
#include <type_traits>

#include "posttrain/config.hpp"

POSTTRAIN_NAMESPACE_BEGIN

using index_t = std::int64_t;

template <class T>
using accum_t = std::conditional_t<std::is_same_v<std::remove_cv_t<T>, double>, double, float>;

namespace detail {

// Non-short-circuit `and` / `or` of conditions: every operand is evaluated, so a loop of them has no
// branch per element and vectorises (`&&` / `||` would branch). Same truth table as the logical form.
template <class... B>
POSTTRAIN_HOST_DEVICE constexpr bool all_of_branchless(B... conditions) noexcept {
  return (static_cast<unsigned>(static_cast<bool>(conditions)) & ...) != 0u;
}
template <class... B>
POSTTRAIN_HOST_DEVICE constexpr bool any_of_branchless(B... conditions) noexcept {
  return (static_cast<unsigned>(static_cast<bool>(conditions)) | ...) != 0u;
}

// P::options, or Fallback for a type that declares none (so that a type that is not a policy at all
// reaches its concept's sentences instead of a missing-type error).
template <class P, class Fallback>
struct own_options {
  using type = Fallback;
};
template <class P, class Fallback>
  requires requires { typename P::options; }
struct own_options<P, Fallback> {
  using type = typename P::options;
};
template <class P, class Fallback>
using own_options_t = typename own_options<P, Fallback>::type;

}  // namespace detail

POSTTRAIN_NAMESPACE_END
