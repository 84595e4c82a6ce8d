#pragma once
// Test helpers of the policy-gradient tests: random batches, naive float64 aggregation, and a
// central-difference check of dLoss/dℓ through the full composition. Independent of the library
// code under test (only its input/output structs are used).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "posttrain/loss/policy_gradient.hpp"

namespace pg_test {

using posttrain::index_t;

struct batch {
  std::vector<index_t> offsets;
  std::vector<double> logp, old_logp, adv, ref, entropy, weights;
  std::vector<float> mask;
  std::size_t n() const { return logp.size(); }
};

// Rows of the given lengths; logr uniform in [-spread, spread]; per-sequence advantages.
inline batch make_batch(const std::vector<int>& lengths, double spread, unsigned seed,
                        bool ragged_mask = true) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  batch b;
  b.offsets.push_back(0);
  for (int l : lengths) {
    const double a = u(g);
    for (int t = 0; t < l; ++t) {
      const double lp = -1.0 - 0.5 * (u(g) + 1.0);
      b.logp.push_back(lp);
      b.old_logp.push_back(lp - spread * u(g));
      b.adv.push_back(a);
      b.ref.push_back(lp + 0.3 * u(g));
      b.entropy.push_back(1.0 + u(g));
      b.weights.push_back(1.0 + 0.8 * u(g));
      b.mask.push_back(ragged_mask && (t == 0 || u(g) > 0.7) ? 0.0f : 1.0f);
    }
    b.offsets.push_back(b.offsets.back() + l);
  }
  return b;
}

inline posttrain::policy_gradient_inputs<double> inputs_of(const batch& b, bool ref = false,
                                                           bool entropy = false,
                                                           bool weights = false) {
  posttrain::policy_gradient_inputs<double> in;
  in.logprobs = b.logp;
  in.old_logprobs = b.old_logp;
  in.advantages = b.adv;
  if (ref) in.ref_logprobs = b.ref;
  in.mask = b.mask;
  in.seq_offsets = b.offsets;
  if (entropy) in.entropy = b.entropy;
  if (weights) in.importance_weights = b.weights;
  return in;
}

// Naive aggregations of a per-token loss (double), m = 0 tokens skipped.
inline double naive_token_mean(const batch& b, const std::vector<double>& L) {
  double s = 0, w = 0;
  for (std::size_t t = 0; t < b.n(); ++t)
    if (b.mask[t] != 0) s += b.mask[t] * L[t], w += b.mask[t];
  return w > 0 ? s / w : 0.0;
}

inline double naive_seq_mean_token_mean(const batch& b, const std::vector<double>& L,
                                        double eps = 0.0, double floor = 0.0,
                                        bool include_empty = false) {
  double total = 0;
  int rows = 0;
  for (std::size_t i = 0; i + 1 < b.offsets.size(); ++i) {
    double s = 0, w = 0;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t)
      if (b.mask[t] != 0) s += b.mask[t] * L[t], w += b.mask[t];
    if (w > 0) total += s / std::max(w + eps, floor);
    if (w > 0 || include_empty) ++rows;
  }
  return rows > 0 ? total / rows : 0.0;
}

// Central differences of f(ℓ) at every unmasked token vs the analytic grad.
inline void expect_fd_grad(const batch& b0, const std::function<double(const batch&)>& f,
                           const std::vector<double>& grad, double h = 1e-6, double tol = 1e-6) {
  for (std::size_t t = 0; t < b0.n(); ++t) {
    if (b0.mask[t] == 0) {
      EXPECT_EQ(grad[t], 0.0) << "masked token " << t;
      continue;
    }
    batch p = b0, m = b0;
    p.logp[t] += h;
    m.logp[t] -= h;
    const double fd = (f(p) - f(m)) / (2 * h);
    EXPECT_NEAR(grad[t], fd, tol * (1 + std::abs(fd))) << "token " << t;
  }
}

}  // namespace pg_test
