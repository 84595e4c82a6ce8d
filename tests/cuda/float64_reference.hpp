#pragma once
// Independent float64 references of the CUDA log-prob tests (tests/cuda/token_logprobs.cu,
// fused_linear_logprobs.cu), written from the formulas of ops/token_logprobs.hpp and nothing of
// the library: a two-pass log-sum-exp in double, the entropy as −Σ p log p, the gradient
//   dL/dz_v = (1/τ)(g_lp (1[v = y] − p_v) − g_H p_v (log p_v + H)),
// the library's documented conventions for rows that have no distribution (ignored target: zeros;
// target outside [0, V): NaN outputs and a NaN gradient row; all −inf row: lse = −inf, log p_y
// NaN, entropy and Σ p² 0, NaN gradient), and a comparison that accepts equal non-finite values.
// Not a test file (the glob takes *.cu only).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace f64 {

struct row_result {
  double logprob = 0, lse = 0, entropy = 0, sum_p_squared = 0;
};

inline constexpr double nan = std::numeric_limits<double>::quiet_NaN();
inline constexpr double inf = std::numeric_limits<double>::infinity();

// z[0, v) are the raw logits (already widened); y the target; ignore the ignore index.
inline row_result row(const double* x, std::int64_t v, std::int64_t y, double tau,
                      std::int64_t ignore = -100) {
  row_result r;
  if (y == ignore) return r;
  double m = -inf;
  for (std::int64_t j = 0; j < v; ++j) m = std::max(m, x[j] / tau);
  if (y < 0 || y >= v) return {nan, nan, nan, nan};
  if (m == -inf) return {nan, -inf, 0.0, 0.0};
  double s = 0, t = 0, s2 = 0;
  for (std::int64_t j = 0; j < v; ++j) {
    const double d = x[j] / tau - m;
    const double e = std::exp(d);
    s += e;
    if (e > 0) t += e * d;
    s2 += e * e;
  }
  r.lse = m + std::log(s);
  r.logprob = (x[y] / tau - m) - std::log(s);
  r.entropy = std::log(s) - t / s;
  r.sum_p_squared = s2 / (s * s);
  return r;
}

// dL/dlogits of one row into g[0, v), from the reference's own lse and entropy.
inline void row_grad(const double* x, std::int64_t v, std::int64_t y, double tau, double g_lp,
                     double g_h, double* g, std::int64_t ignore = -100) {
  if (y == ignore) {
    std::fill(g, g + v, 0.0);
    return;
  }
  const row_result r = row(x, v, y, tau, ignore);
  if (!std::isfinite(r.lse)) {
    std::fill(g, g + v, nan);
    return;
  }
  for (std::int64_t j = 0; j < v; ++j) {
    const double lp = x[j] / tau - r.lse;
    const double p = std::exp(lp);
    g[j] = ((j == y ? g_lp : 0.0) - g_lp * p - g_h * p * (lp + r.entropy)) / tau;
  }
}

// true when got is within atol + rtol·|want| of want, or both are NaN, or both the same infinity.
inline bool near(double got, double want, double rtol, double atol) {
  if (std::isnan(want) || std::isnan(got)) return std::isnan(want) && std::isnan(got);
  if (std::isinf(want) || std::isinf(got)) return got == want;
  return std::fabs(got - want) <= atol + rtol * std::fabs(want);
}

// Counts the elements outside the tolerance of near(); reports the first 5 with `what`.
inline int expect_near(const std::vector<double>& got, const std::vector<double>& want, double rtol,
                       double atol, const std::string& what) {
  EXPECT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i)
    if (!near(got[i], want[i], rtol, atol) && bad++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: device " << got[i] << " vs float64 " << want[i]
                    << " (tol " << atol + rtol * std::fabs(want[i]) << ")";
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " outside the tolerance";
  return bad;
}

// Elementwise |got − want| <= tol[i] (or both NaN / the same infinity); reports the first 5.
inline int expect_within(const std::vector<double>& got, const std::vector<double>& want,
                         const std::vector<double>& tol, const std::string& what) {
  EXPECT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i)
    if (!near(got[i], want[i], 0.0, tol[i]) && bad++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: device " << got[i] << " vs float64 " << want[i]
                    << " (tol " << tol[i] << ")";
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " outside the tolerance";
  return bad;
}

// Deterministic pseudo-random numbers for big inputs (no per-element <random> cost): splitmix64.
inline std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
// Uniform in [−a, a).
inline double uniform(std::uint64_t key, double a) {
  return (static_cast<double>(mix(key) >> 11) * 0x1.0p-53 * 2.0 - 1.0) * a;
}

}  // namespace f64
