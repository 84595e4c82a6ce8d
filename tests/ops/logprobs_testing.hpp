// Shared scaffolding of the host log-prob op tests (tests/ops/token_logprobs_fused.cpp,
// tests/ops/fused_linear_logprobs.cpp): the names they use, the ignore index, the host tag, and
// conversions between the element types (float, double, Eigen::bfloat16) and double.
#pragma once

#include <type_traits>

#include <Eigen/Core>

#include "posttrain/core/exec.hpp"
#include "posttrain/core/views.hpp"

namespace logprobs_testing {

namespace pt = posttrain;
using pt::index_t;
using pt::matrix_view;
using bf16 = Eigen::bfloat16;
inline constexpr index_t ignore = -100;
inline constexpr pt::exec::host host{};

// An element as double (bfloat16 through float).
template <class T>
double to_d(T v) {
  return static_cast<double>(static_cast<float>(v));
}
template <>
inline double to_d<double>(double v) {
  return v;
}

// A double as an element (bfloat16 through float).
template <class T>
T from_d(double v) {
  if constexpr (std::is_same_v<T, double>)
    return v;
  else
    return T(static_cast<float>(v));
}

}  // namespace logprobs_testing
