#pragma once
// The contract of the KL family (ops/kl.hpp): the estimator concept and estimators (kl::k1, abs,
// k2, k3, straight_through, none), kl_options and the peer presets, the per-token formula
// (detail::kl_element: estimator + clamps, host and device), and the backend template both
// backends implement. Included by the front end, the CPU backend and the losses that evaluate
// KL per token; includes neither front end nor backend.
//
// backend::kl_divergence_backend<Exec> member (exec::host in backend/cpu/kl.hpp, exec::cuda in
// backend/cuda/kl.cuh):
//   void run<E, T>(Exec, span<const T> logprob, span<const T> ref_logprob,
//                  const detail::kl_element<E, T>&, span<T> value, span<T> grad (or empty))
// Elementwise: no scratch, no synchronisation.
#include <cmath>
#include <concepts>
#include <limits>
#include <type_traits>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/math/stable.hpp"

POSTTRAIN_NAMESPACE_BEGIN

// A KL estimator: static value(d) and grad(d) = ∂value/∂ℓ, for float and double d.
template <class E>
concept kl_estimator = requires(float f, double d) {
  { E::value(f) } -> std::convertible_to<float>;
  { E::grad(f) } -> std::convertible_to<float>;
  { E::value(d) } -> std::convertible_to<double>;
  { E::grad(d) } -> std::convertible_to<double>;
};

// static_assert(check_kl_estimator<E>()) names what is missing instead of listing overloads.
template <class E>
constexpr bool check_kl_estimator() {
  static_assert(kl_estimator<E>,
                "a KL estimator needs static value(d) and grad(d) callable on float and double "
                "(d = logprob - ref_logprob, grad = d value / d logprob)");
  return kl_estimator<E>;
}

namespace kl {

namespace detail {

// 1 − d/N·(1 − d/(N+1)·(1 − ... (1 − d/Last))), the nested Horner form of the Taylor series of
// e^{−d}; the reciprocals are compile-time constants, so this is Last − N + 1 multiply-adds.
// T is the arithmetic type; d is a T or (CPU backend) an Eigen array of T, for which the result
// is an expression.
template <int N, int Last, class T, class A>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE auto nested_exp_series(const A& d) {
  if constexpr (N == Last) {
    return T(1) - d * (T(1) / T(N));
  } else {
    return T(1) - d * (T(1) / T(N)) * nested_exp_series<N + 1, Last, T>(d);
  }
}

// Where |d| <= 1/2, both k3 and its gradient are sums that cancel, so they come from their
// series, cut where the next term is below rounding (d^11/11! in float, d^17/17! in double):
//   e^{−d} − 1 + d = (d²/2)·(1 − d/3·(1 − d/4·(...)))    1 − e^{−d} = d·(1 − d/2·(1 − d/3·(...)))
// Elsewhere e = e^{−d} (one exp, ~5x cheaper than expm1): value (e − 1) + d, gradient 1 − e;
// just past the switch the value is within ~12 ulp, a few ulp beyond |d| = 1.
// The pieces below are the formula, written once: k3_eval branches between them per token (host
// and device scalar code); the CPU backend evaluates both over a block of tokens with a vector
// exp and selects (backend/cpu/kl.hpp). Out is the type whose rounding sets the series cut, T
// the arithmetic type (the backend evaluates float tokens in double), A is T or an Eigen array.
template <class T>
inline constexpr int k3_series_last = sizeof(T) >= 8 ? 17 : 11;

template <class T>
inline constexpr T k3_series_radius = T(0.5);

template <class Out, class T, class A>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE auto k3_series_value(const A& d) {
  return T(0.5) * d * d * nested_exp_series<3, k3_series_last<Out>, T>(d);
}

template <class Out, class T, class A>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE auto k3_series_grad(const A& d) {
  return d * nested_exp_series<2, k3_series_last<Out>, T>(d);
}

// e = e^{−d}
template <class T, class A>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE auto k3_exp_value(const A& d, const A& e) {
  return (e - T(1)) + d;
}

template <class T, class A>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE auto k3_exp_grad(const A& e) {
  return T(1) - e;
}

template <class T>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE void k3_eval(T d, T* value, T* grad) {
  using std::exp;
  if ((d < T(0) ? -d : d) <= k3_series_radius<T>) {
    if (value) *value = k3_series_value<T, T>(d);
    if (grad) *grad = k3_series_grad<T, T>(d);
    return;
  }
  const T e = exp(-d);
  if (value) *value = k3_exp_value<T>(d, e);
  if (grad) *grad = k3_exp_grad<T>(e);
}

}  // namespace detail

struct none {
  template <class T>
  POSTTRAIN_HOST_DEVICE static constexpr T value(T) { return T(0); }
  template <class T>
  POSTTRAIN_HOST_DEVICE static constexpr T grad(T) { return T(0); }
};

struct k1 {
  template <class T>
  POSTTRAIN_HOST_DEVICE static constexpr T value(T d) { return d; }
  template <class T>
  POSTTRAIN_HOST_DEVICE static constexpr T grad(T) { return T(1); }
};

struct abs {
  template <class T>
  POSTTRAIN_HOST_DEVICE static constexpr T value(T d) { return d < T(0) ? -d : d; }
  // Subgradient: sign(d), 0 at d = 0, NaN at NaN (d * 0).
  template <class T>
  POSTTRAIN_HOST_DEVICE static constexpr T grad(T d) {
    return d > T(0) ? T(1) : (d < T(0) ? T(-1) : d * T(0));
  }
};

struct k2 {
  template <class T>
  POSTTRAIN_HOST_DEVICE static constexpr T value(T d) { return T(0.5) * d * d; }
  template <class T>
  POSTTRAIN_HOST_DEVICE static constexpr T grad(T d) { return d; }
};

struct k3 {
  template <class T>
  POSTTRAIN_HOST_DEVICE static T value(T d) {
    T v;
    detail::k3_eval<T>(d, &v, nullptr);
    return v;
  }
  template <class T>
  POSTTRAIN_HOST_DEVICE static T grad(T d) {
    T g;
    detail::k3_eval<T>(d, nullptr, &g);
    return g;
  }
  // Both at the cost of one exp (optional member, used by kl_divergence when present).
  template <class T>
  POSTTRAIN_HOST_DEVICE static void value_and_grad(T d, T& value, T& grad) {
    detail::k3_eval<T>(d, &value, &grad);
  }
  // The formula's pieces for a backend that computes e = e^{−d} itself and selects the series
  // where |d| <= series_radius (backend/cpu/kl.hpp); see detail::k3_series_value.
  template <class T>
  static constexpr T series_radius = detail::k3_series_radius<T>;
  template <class Out, class T, class A>
  static auto series_value(const A& d) { return detail::k3_series_value<Out, T>(d); }
  template <class Out, class T, class A>
  static auto series_grad(const A& d) { return detail::k3_series_grad<Out, T>(d); }
  template <class T, class A>
  static auto exp_value(const A& d, const A& e) { return detail::k3_exp_value<T>(d, e); }
  template <class T, class A>
  static auto exp_grad(const A& e) { return detail::k3_exp_grad<T>(e); }
};

// Value of Estimator, gradient of k2 (= d): the "+" estimators of verl. The value, clamps
// included, is treated as detached, so the gradient ignores every clamp.
template <kl_estimator Estimator>
struct straight_through {
  using forward_estimator = Estimator;
  static constexpr bool value_is_detached = true;
  template <class T>
  POSTTRAIN_HOST_DEVICE static T value(T d) { return Estimator::value(d); }
  template <class T>
  POSTTRAIN_HOST_DEVICE static constexpr T grad(T d) { return d; }
};

}  // namespace kl

static_assert(check_kl_estimator<kl::none>());
static_assert(check_kl_estimator<kl::k1>());
static_assert(check_kl_estimator<kl::abs>());
static_assert(check_kl_estimator<kl::k2>());
static_assert(check_kl_estimator<kl::k3>());
static_assert(check_kl_estimator<kl::straight_through<kl::k1>>());
static_assert(check_kl_estimator<kl::straight_through<kl::k3>>());

// Clamps of the KL estimate; ±∞ = off. See the header comment for the gradient convention.
struct kl_options {
  double input_min = -std::numeric_limits<double>::infinity();   // clamp of d = ℓ − ℓref
  double input_max = std::numeric_limits<double>::infinity();
  double output_min = -std::numeric_limits<double>::infinity();  // clamp of the value
  double output_max = std::numeric_limits<double>::infinity();
};

// Names of the built-in estimators, for presets whose clamps depend on the estimator.
enum class kl_kind { k1, abs, k2, k3 };

namespace kl_conventions {

// verl kl_penalty_forward: only low_var_kl (k3) is clamped: ℓref − ℓ ∈ [−20, 20], value ∈ [−10, 10].
inline kl_options verl(kl_kind kind) {
  kl_options o;
  if (kind == kl_kind::k3) {
    o.input_min = -20.0;
    o.input_max = 20.0;
    o.output_min = -10.0;
    o.output_max = 10.0;
  }
  return o;
}

// OpenRLHF compute_approx_kl: every estimator's result clamped to [−10, 10].
inline kl_options openrlhf() {
  kl_options o;
  o.output_min = -10.0;
  o.output_max = 10.0;
  return o;
}

// TRL (GRPO loss k3, PPO/RLOO reward k1/k3): no clamps.
inline kl_options trl() { return kl_options{}; }

// open-instruct: the log-ratio is clamped to [−40, 40] before estimate_kl.
inline kl_options open_instruct() {
  kl_options o;
  o.input_min = -40.0;
  o.input_max = 40.0;
  return o;
}

}  // namespace kl_conventions

namespace detail {

template <class E>
inline constexpr bool kl_value_is_detached_v = requires { requires E::value_is_detached; };

template <class E, class T>
concept kl_has_value_and_grad = requires(T d, T& v, T& g) { E::value_and_grad(d, v, g); };

// Estimators whose value is k3 (k3 and straight_through<k3>): the CPU backend evaluates them over
// blocks of tokens with a vector exp (backend/cpu/kl.hpp) instead of calling value_and_grad.
template <class E>
inline constexpr bool kl_value_is_k3_v = std::is_same_v<E, kl::k3>;
template <class E>
inline constexpr bool kl_value_is_k3_v<kl::straight_through<E>> = kl_value_is_k3_v<E>;

// The per-token formula of kl_divergence: estimator plus clamps, in the input type T.
template <class E, class T>
struct kl_element {
  static constexpr bool value_is_k3 = kl_value_is_k3_v<E>;
  using k3_form = kl::k3;  // the hooks the CPU backend evaluates blocks with when value_is_k3
  static constexpr bool value_is_detached = kl_value_is_detached_v<E>;

  T in_lo, in_hi, out_lo, out_hi;

  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE T value(T d) const {
    return math::clamp(E::value(math::clamp(d, in_lo, in_hi)), out_lo, out_hi);
  }

  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE void value_and_grad(T d, T& value, T& grad) const {
    const T dc = math::clamp(d, in_lo, in_hi);
    T raw, g;
    if constexpr (kl_has_value_and_grad<E, T>) {
      E::value_and_grad(dc, raw, g);
    } else {
      raw = E::value(dc);
      g = E::grad(dc);
    }
    value = math::clamp(raw, out_lo, out_hi);
    if constexpr (kl_value_is_detached_v<E>) {
      grad = E::grad(d);
    } else {
      const bool clamped = d < in_lo || in_hi < d || raw < out_lo || out_hi < raw;
      grad = clamped ? T(0) : g;
    }
  }
};

// A clamp bound in T: beyond T's range means "no clamp" (±∞), not an out-of-range conversion.
template <class T>
inline T kl_bound(double x) {
  constexpr double top = static_cast<double>(std::numeric_limits<T>::max());
  if (x > top) return std::numeric_limits<T>::infinity();
  if (x < -top) return -std::numeric_limits<T>::infinity();
  return static_cast<T>(x);
}

}  // namespace detail

namespace backend {

// The primary template: a tag without a specialisation stops compilation with this sentence.
template <class Exec>
struct kl_divergence_backend {
  static_assert(sizeof(Exec) == 0,
                "posttrain::kl_divergence has no backend for this execution tag: for exec::cuda "
                "include <posttrain/cuda.cuh> (the posttrain::cuda component)");
};

}  // namespace backend

POSTTRAIN_NAMESPACE_END
