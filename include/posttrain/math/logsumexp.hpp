#pragma once
// Online log-sum-exp (Milakov & Gimelshein 2018) and the softmax statistics that ride along with it
// in the same single pass over a row.
//
//   online_lse<A>     running max m and s = Σ_v exp(x_v − m) of the values pushed so far:
//                       lse = m + log s.
//   softmax_stats<A>  the same plus
//                       t  = Σ_v exp(x_v − m)·(x_v − m)       (entropy)
//                       s2 = Σ_v exp(2(x_v − m))               (Σ p², verl calculate_sum_pi_squared)
//                     with p_v = exp(x_v − lse):
//                       lse              = m + log s
//                       entropy          = −Σ p_v log p_v = log s − t / s
//                       sum_p_squared    = Σ p_v² = s2 / s²
//                     t is kept relative to the running max so the entropy never subtracts two
//                     numbers of the size of the logits (no cancellation at logits of ±1e4).
//
// Both are associative monoids: combine(a, b) merges the states of two disjoint parts of a row in
// any grouping (this is how a row is split across threads, SIMD lanes or CUDA blocks). The empty
// state is m = −inf, s = 0 (lse = −inf); pushing −inf leaves a state unchanged, and combining with
// an empty state is the identity. A NaN value makes every statistic NaN.
#include <cmath>
#include <limits>

#include "posttrain/config.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace math {

template <class A>
struct online_lse {
  A m = -std::numeric_limits<A>::infinity();
  A s = A(0);

  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE bool empty() const { return s == A(0); }

  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE void push(A x) {
    using std::exp;
    if (x == -std::numeric_limits<A>::infinity()) return;
    if (x > m) {
      s = s * exp(m - x) + A(1);  // exp(-inf) = 0 for the first value
      m = x;
    } else if (x <= m) {
      s += exp(x - m);
    } else {  // NaN
      m = x;
      s = x;
    }
  }

  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE static online_lse combine(const online_lse& a,
                                                                       const online_lse& b) {
    using std::exp;
    if (a.empty()) return b;
    if (b.empty()) return a;
    const bool a_hi = a.m >= b.m;
    const online_lse& hi = a_hi ? a : b;
    const online_lse& lo = a_hi ? b : a;
    online_lse r;
    r.m = hi.m;
    r.s = hi.s + exp(lo.m - hi.m) * lo.s;
    return r;
  }

  // log Σ exp(x); −inf when empty.
  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE A value() const {
    using std::log;
    return empty() ? -std::numeric_limits<A>::infinity() : m + log(s);
  }
};

template <class A>
struct softmax_stats {
  A m = -std::numeric_limits<A>::infinity();
  A s = A(0);
  A t = A(0);
  A s2 = A(0);

  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE bool empty() const { return s == A(0); }

  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE void push(A x) {
    using std::exp;
    if (x == -std::numeric_limits<A>::infinity()) return;
    if (empty()) {
      m = x;
      s = s2 = A(1);
      t = A(0);
    } else if (x > m) {
      // Re-base the sums from m to x: exp(v − x) = f·exp(v − m) and (v − x) = (v − m) + δ, δ = m − x.
      const A delta = m - x;
      const A f = exp(delta);
      t = f * (t + delta * s);
      s = f * s + A(1);
      s2 = f * f * s2 + A(1);
      m = x;
    } else if (x <= m) {
      const A d = x - m;
      const A e = exp(d);
      s += e;
      t += e * d;
      s2 += e * e;
    } else {  // NaN
      m = s = t = s2 = x;
    }
  }

  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE static softmax_stats combine(const softmax_stats& a,
                                                                          const softmax_stats& b) {
    using std::exp;
    if (a.empty()) return b;
    if (b.empty()) return a;
    const bool a_hi = a.m >= b.m;
    const softmax_stats& hi = a_hi ? a : b;
    const softmax_stats& lo = a_hi ? b : a;
    const A delta = lo.m - hi.m;  // <= 0
    const A f = exp(delta);
    softmax_stats r;
    r.m = hi.m;
    r.s = hi.s + f * lo.s;
    r.t = hi.t + f * (lo.t + delta * lo.s);
    r.s2 = hi.s2 + f * f * lo.s2;
    return r;
  }

  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE A lse() const {
    using std::log;
    return empty() ? -std::numeric_limits<A>::infinity() : m + log(s);
  }
  // −Σ p log p; 0 for the empty state (no distribution).
  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE A entropy() const {
    using std::log;
    return empty() ? A(0) : log(s) - t / s;
  }
  // Σ p²; 0 for the empty state.
  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE A sum_p_squared() const {
    return empty() ? A(0) : s2 / (s * s);
  }
};

}  // namespace math

POSTTRAIN_NAMESPACE_END
