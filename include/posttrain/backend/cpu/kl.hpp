#pragma once
// CPU backend of posttrain::kl_divergence (ops/kl.hpp; contract in ops/kl_types.hpp): one
// sequential pass over the N tokens,
//   d = logprob[i] - ref_logprob[i];  value[i] = element.value(d)  or
//                                     element.value_and_grad(d, value[i], grad[i])
// `element` is the front end's per-token formula (estimator + clamps). The loop is specialised on
// whether the gradient is requested so the value-only call computes no gradient. Each
// element is read before it is written, so an output may alias an input at the same index.
// Arguments are validated by the front end; this layer trusts them.
//
// k3 (and straight_through<k3>) go through blocks of kBlock tokens instead: a per-token libm exp
// and the unpredictable branch between series and closed form (|d| <= 1/2 for ~1 token in 6 of
// typical log-ratios) cost ~6x the memory traffic. A block takes e^{−d} from Eigen's vector exp,
// evaluates both the series and the closed form of ops/kl.hpp (the kl::k3 hooks) and selects
// per token, with the clamps as selects too; every select is over plain arrays with its conditions
// computed unconditionally, so GCC vectorises it under the default -ftrapping-math. Float tokens
// are evaluated in double (as wide a vector exp as float's costs less than the traffic it waits
// on, and rounding once at the end keeps the series accuracy beyond the switch): results can
// differ from the scalar k3::value in the last bit. The tail block is padded with d = 0, so every
// token of any N takes the same vector code (no position-dependent last bits).
// Eigen's double exp: exact libm semantics at the ends (inf above ln(DBL_MAX), 0 below its
// negative, NaN and ±inf propagate); float tokens beyond e^{88.7} overflow when rounded to float,
// as expf does.
#include <algorithm>
#include <cstddef>
#include <span>
#include <type_traits>

#include <Eigen/Core>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/ops/kl_types.hpp"

// GCC 12.1/12.2 warn "__Y may be used uninitialized" inside their own AVX-512 intrinsics when
// Eigen's packet exp is inlined here (GCC bug 105593, fixed in 12.3; as in backend/cpu/reward_model.hpp).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define POSTTRAIN_KL_POP_DIAGNOSTIC
#endif

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

namespace kl_detail {

inline constexpr Eigen::Index kBlock = 128;

// lo/hi of a clamp as in math::clamp (NaN passes through): both comparisons made for every token.
template <class A, class T>
POSTTRAIN_FORCEINLINE void clamp_block(const A& x, T lo, T hi, A& out) {
  for (Eigen::Index k = 0; k < kBlock; ++k) {
    const bool below = x[k] < lo, above = hi < x[k];
    out[k] = below ? lo : (above ? hi : x[k]);
  }
}

// One block of k3 (or straight_through<k3>) tokens: value[k] (and grad[k] when `grad` is given) of
// d[k] for all kBlock lanes, in arithmetic type C. Shared by kl_divergence (C = double, see the
// header comment) and the fused policy-gradient pass (backend/cpu/policy_gradient.hpp).
template <class T, class Element, class C = double>
POSTTRAIN_FORCEINLINE void k3_block(const Element& element, const Eigen::Array<T, kBlock, 1>& d,
                                    Eigen::Array<T, kBlock, 1>& value,
                                    Eigen::Array<T, kBlock, 1>* grad) {
  using ArrT = Eigen::Array<T, kBlock, 1>;
  using ArrC = Eigen::Array<C, kBlock, 1>;
  const T in_lo = element.in_lo, in_hi = element.in_hi;
  const T out_lo = element.out_lo, out_hi = element.out_hi;
  using K3 = typename Element::k3_form;
  const C radius = K3::template series_radius<C>;
  ArrT dc, raw;
  ArrC x, e, series, closed, rawc;
  clamp_block(d, in_lo, in_hi, dc);
  x = dc.template cast<C>();
  e = (-x).exp();
  series = K3::template series_value<T, C>(x);
  closed = K3::template exp_value<C>(x, e);
  for (Eigen::Index k = 0; k < kBlock; ++k) {
    const bool in_series = (x[k] < C(0) ? -x[k] : x[k]) <= radius;
    rawc[k] = in_series ? series[k] : closed[k];
  }
  raw = rawc.template cast<T>();
  clamp_block(raw, out_lo, out_hi, value);
  if (grad == nullptr) return;
  ArrT& g = *grad;
  if constexpr (Element::value_is_detached) {
    g = d;  // straight_through: the gradient of k2 at the unclamped d
  } else {
    series = K3::template series_grad<T, C>(x);
    closed = K3::template exp_grad<C>(e);
    for (Eigen::Index k = 0; k < kBlock; ++k) {
      const bool in_series = (x[k] < C(0) ? -x[k] : x[k]) <= radius;
      rawc[k] = in_series ? series[k] : closed[k];
    }
    g = rawc.template cast<T>();
    // 0 where a clamp is active (kl_element::value_and_grad); one select per type width.
    for (Eigen::Index k = 0; k < kBlock; ++k) {
      const bool clamped =
          ::posttrain::detail::any_of_branchless(d[k] < in_lo, in_hi < d[k], raw[k] < out_lo, out_hi < raw[k]);
      g[k] = clamped ? T(0) : g[k];
    }
  }
}

// value[i], grad[i] (grad may be null) of d = logprob[i] − ref_logprob[i] for any N, a kBlock at
// a time; the tail block is padded with d = 0. C = float (float tokens only) evaluates in float,
// as the scalar k3<float> does — a third of double's cost, where the block is compute-bound — except
// for a block holding a d < −87: Eigen's AVX-512 float exp overflows early (e^{−d} above ≈ e^{88.4},
// where expf is still finite), so that block is evaluated in double.
template <class T, class Element, class C = double>
void k3_blocks(const T* logprob, const T* ref_logprob, std::size_t n, T* value, T* grad,
               const Element& element) {
  using ArrT = Eigen::Array<T, kBlock, 1>;
  using Tail = Eigen::Array<T, Eigen::Dynamic, 1>;
  ArrT d, v, g;
  for (std::size_t i0 = 0; i0 < n; i0 += kBlock) {
    const auto m = static_cast<Eigen::Index>(std::min<std::size_t>(kBlock, n - i0));
    if (m == kBlock) {
      d = Eigen::Map<const ArrT>(logprob + i0) - Eigen::Map<const ArrT>(ref_logprob + i0);
    } else {
      d.setZero();
      d.head(m) = Eigen::Map<const Tail>(logprob + i0, m) - Eigen::Map<const Tail>(ref_logprob + i0, m);
    }
    if constexpr (std::is_same_v<C, double>) {
      k3_block<T, Element, double>(element, d, v, grad != nullptr ? &g : nullptr);
    } else {
      static_assert(std::is_same_v<T, float> && std::is_same_v<C, float>);
      unsigned low = 0;  // branch-free, vectorised
      for (Eigen::Index k = 0; k < kBlock; ++k) low |= static_cast<unsigned>(d[k] < T(-87));
      if (low == 0)
        k3_block<T, Element, float>(element, d, v, grad != nullptr ? &g : nullptr);
      else
        k3_block<T, Element, double>(element, d, v, grad != nullptr ? &g : nullptr);
    }
    Eigen::Map<Tail>(value + i0, m) = v.head(m);
    if (grad != nullptr) Eigen::Map<Tail>(grad + i0, m) = g.head(m);
  }
}

}  // namespace kl_detail

template <class T, class Element>
void kl_divergence(std::span<const T> logprob, std::span<const T> ref_logprob, std::span<T> value,
                   std::span<T> grad, const Element& element) {
  if constexpr (Element::value_is_k3) {
    kl_detail::k3_blocks(logprob.data(), ref_logprob.data(), logprob.size(), value.data(),
                         grad.empty() ? nullptr : grad.data(), element);
    return;
  } else {
    const std::size_t n = logprob.size();
    const T* lp = logprob.data();
    const T* rp = ref_logprob.data();
    T* v = value.data();
    if (grad.empty()) {
      for (std::size_t i = 0; i < n; ++i) v[i] = element.value(lp[i] - rp[i]);
    } else {
      T* g = grad.data();
      for (std::size_t i = 0; i < n; ++i) {
        T vi, gi;
        element.value_and_grad(lp[i] - rp[i], vi, gi);
        v[i] = vi;
        g[i] = gi;
      }
    }
  }
}

}  // namespace backend::cpu

namespace backend {

template <>
struct kl_divergence_backend<exec::host> {
  template <class E, class T>
  static void run(exec::host, std::span<const T> logprob, std::span<const T> ref_logprob,
                  const ::posttrain::detail::kl_element<E, T>& element, std::span<T> value,
                  std::span<T> grad) {
    cpu::kl_divergence(logprob, ref_logprob, value, grad, element);
  }
};

}  // namespace backend

POSTTRAIN_NAMESPACE_END

#ifdef POSTTRAIN_KL_POP_DIAGNOSTIC
#pragma GCC diagnostic pop
#undef POSTTRAIN_KL_POP_DIAGNOSTIC
#endif
