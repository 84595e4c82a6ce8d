#pragma once
// Numerically stable scalar functions, usable on host and device (POSTTRAIN_HOST_DEVICE).
//
//   log1pexp(x)  = log(1 + e^x)            (= softplus(x)); exact to rounding for |x| up to 1e300
//   logsigmoid(x)= log σ(x) = −log1pexp(−x)
//   sigmoid(x)   = 1 / (1 + e^−x), evaluated without overflow for either sign of x
//   log1mexp(x)  = log(1 − e^x) for x <= 0  (Mächler 2012: expm1 branch above −ln 2); x > 0 gives NaN,
//                  x == 0 gives −inf
//   softplus(x, beta, threshold) = log1pexp(beta·x)/beta, linear above `threshold` like torch
//   clamp(x, lo, hi)
//
// Each is a template over float/double; the thresholds are where the cheap branch is exact to the
// type's rounding, so the functions are accurate at ±1e4 and beyond.
#include <cmath>
#include <limits>

#include "posttrain/config.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace math {

template <class T>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE constexpr T clamp(T x, T lo, T hi) {
  return x < lo ? lo : (hi < x ? hi : x);
}

// log(1 + e^x). Branches (for double; the same shape for float):
//   x <= -37: e^x is below half an ulp of 1, so log1p(e^x) == e^x to rounding
//   x <= 18 : log1p(e^x)
//   x <= 33.3: x + e^-x
//   else    : x
template <class T>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE T log1pexp(T x) {
  using std::exp;
  using std::log1p;
  if (x <= T(-37)) return exp(x);
  if (x <= T(18)) return log1p(exp(x));
  if (x <= T(33.3)) return x + exp(-x);
  return x;
}

template <class T>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE T softplus(T x) {
  return log1pexp(x);
}

// torch.nn.functional.softplus semantics: linear where beta·x > threshold.
template <class T>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE T softplus(T x, T beta, T threshold = T(20)) {
  const T bx = beta * x;
  return bx > threshold ? x : log1pexp(bx) / beta;
}

template <class T>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE T logsigmoid(T x) {
  return -log1pexp(-x);
}

template <class T>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE T sigmoid(T x) {
  using std::exp;
  if (x >= T(0)) return T(1) / (T(1) + exp(-x));
  const T e = exp(x);
  return e / (T(1) + e);
}

// log(1 − e^x) for x <= 0.
template <class T>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE T log1mexp(T x) {
  using std::exp;
  using std::expm1;
  using std::log;
  using std::log1p;
  constexpr T minus_ln2 = T(-0.693147180559945309417232121458176568);
  if (x > T(0)) return std::numeric_limits<T>::quiet_NaN();
  return x > minus_ln2 ? log(-expm1(x)) : log1p(-exp(x));
}

// log(e^a + e^b), stable for any magnitudes; -inf if both are -inf.
template <class T>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE T logaddexp(T a, T b) {
  using std::exp;
  using std::log1p;
  const T hi = a > b ? a : b;
  const T lo = a > b ? b : a;
  if (hi == -std::numeric_limits<T>::infinity()) return hi;
  return hi + log1p(exp(lo - hi));
}

}  // namespace math

POSTTRAIN_NAMESPACE_END
