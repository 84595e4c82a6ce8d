// Tests of token_logprobs_fused (ops/token_logprobs.hpp) on the host: the forward outputs and
// dL/dlogits written over the logits, against an independent float64 reference, against the
// separate forward + backward, across row blocks, threads, temperature and ignored rows; bad input
// leaves everything untouched.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "ops/logprobs_testing.hpp"
#include "posttrain/ops/token_logprobs.hpp"

namespace {

using namespace logprobs_testing;

template <class T>
std::vector<T> random_logits(index_t n, index_t ld, double scale, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> d(0.0, scale);
  std::vector<T> x(static_cast<std::size_t>(n * ld));
  for (auto& e : x) e = T(static_cast<float>(d(gen)));
  return x;
}

// float64 reference of one row: logprob, lse, entropy and d/dx of a·logprob.
struct ref_row {
  double logprob, lse, entropy;
  std::vector<double> grad;
};
ref_row reference(const double* x, index_t v, index_t y, double tau, double a) {
  double m = -INFINITY;
  for (index_t k = 0; k < v; ++k) m = std::max(m, x[k] / tau);
  double s = 0;
  for (index_t k = 0; k < v; ++k) s += std::exp(x[k] / tau - m);
  ref_row r;
  r.lse = m + std::log(s);
  r.logprob = x[y] / tau - r.lse;
  r.entropy = 0;
  r.grad.resize(static_cast<std::size_t>(v));
  for (index_t k = 0; k < v; ++k) {
    const double lp = x[k] / tau - r.lse, p = std::exp(lp);
    r.entropy -= p * lp;
    r.grad[k] = a * ((k == y ? 1.0 : 0.0) - p) / tau;
  }
  return r;
}

template <class T>
void check(index_t n, index_t v, index_t ld, double tau, int threads, double tol_fwd,
           double tol_grad, unsigned seed) {
  using A = pt::accum_t<T>;
  auto x = random_logits<T>(n, ld, 2.0, seed);
  const auto x0 = x;
  std::mt19937 gen(seed + 1);
  std::uniform_int_distribution<index_t> col(0, v - 1);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<index_t> y(static_cast<std::size_t>(n));
  std::vector<A> g(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    y[i] = (i % 5 == 3) ? ignore : col(gen);
    g[i] = A(u(gen));
  }
  pt::token_logprobs_options opt;
  opt.temperature = tau;
  opt.num_threads = threads;
  std::vector<A> lp(n, A(9)), lse(n, A(9)), ent(n, A(9));
  pt::token_logprobs_fused(host, matrix_view<T>(x.data(), n, v, ld), y, std::span<const A>(g),
                           pt::token_logprobs_outputs<A>{lp, lse, ent}, opt);
  const std::string tag = "n=" + std::to_string(n) + " v=" + std::to_string(v);
  std::vector<double> row(static_cast<std::size_t>(v));
  for (index_t i = 0; i < n; ++i) {
    if (y[i] == ignore) {
      EXPECT_EQ(lp[i], A(0));
      EXPECT_EQ(lse[i], A(0));
      for (index_t k = 0; k < v; ++k) EXPECT_EQ(to_d(x[i * ld + k]), 0.0) << tag;
      continue;
    }
    for (index_t k = 0; k < v; ++k) row[k] = to_d(x0[i * ld + k]);
    const ref_row r = reference(row.data(), v, y[i], tau, to_d(g[i]));
    EXPECT_NEAR(lp[i], r.logprob, tol_fwd * (1 + std::fabs(r.logprob))) << tag << " row " << i;
    EXPECT_NEAR(lse[i], r.lse, tol_fwd * (1 + std::fabs(r.lse))) << tag;
    EXPECT_NEAR(ent[i], r.entropy, tol_fwd * (1 + r.entropy)) << tag;
    for (index_t k = 0; k < v; ++k)
      ASSERT_NEAR(to_d(x[i * ld + k]), r.grad[k], tol_grad) << tag << " row " << i << " col " << k;
    for (index_t k = v; k < ld; ++k)  // padding untouched
      EXPECT_EQ(to_d(x[i * ld + k]), to_d(x0[i * ld + k]));
  }

  // The same bits as the separate forward + in-place backward.
  auto x2 = x0;
  std::vector<A> lp2(n), lse2(n), ent2(n);
  const matrix_view<T> m2(x2.data(), n, v, ld);
  pt::token_logprobs(host, matrix_view<const T>(m2), y,
                     pt::token_logprobs_outputs<A>{lp2, lse2, ent2}, opt);
  pt::token_logprobs_backward(host, matrix_view<const T>(m2), y,
                              pt::token_logprobs_grads<A>{lse2, {}, g, {}}, m2, opt);
  EXPECT_EQ(lp2, lp) << tag;
  EXPECT_EQ(lse2, lse) << tag;
  EXPECT_EQ(ent2, ent) << tag;
  for (std::size_t k = 0; k < x.size(); ++k)
    ASSERT_EQ(to_d(x2[k]), to_d(x[k])) << tag << " element " << k;
}

TEST(TokenLogprobsFused, MatchesReferenceAndTheSeparatePasses) {
  check<double>(7, 33, 35, 1.0, 1, 1e-12, 1e-12, 1);
  check<float>(9, 1001, 1003, 0.7, 1, 1e-5, 1e-6, 2);
  check<bf16>(6, 300, 300, 1.0, 1, 1e-5, 4e-3, 3);
}

TEST(TokenLogprobsFused, ManyRowBlocksAndThreads) {
  // 40000 floats per row = 160 kB: 6 rows per 1 MiB block, so 50 rows span 9 blocks.
  check<float>(50, 40000, 40000, 1.3, 1, 1e-5, 1e-6, 4);
  check<float>(50, 40000, 40000, 1.0, 2, 1e-5, 1e-6, 5);
}

TEST(TokenLogprobsFused, OptionalOutputsAndEmptyBatch) {
  const index_t n = 4, v = 50;
  auto x = random_logits<float>(n, v, 1.0, 7);
  auto x2 = x;
  std::vector<index_t> y{1, 49, ignore, 0};
  std::vector<float> g{0.5f, -1.0f, 2.0f, 0.25f}, lp(n), lp2(n), lse(n);
  pt::token_logprobs_fused(host, matrix_view<float>(x.data(), n, v), y, std::span<const float>(g),
                           pt::token_logprobs_outputs<float>{lp});
  pt::token_logprobs_fused(host, matrix_view<float>(x2.data(), n, v), y, std::span<const float>(g),
                           pt::token_logprobs_outputs<float>{lp2, lse});
  EXPECT_EQ(lp, lp2);
  EXPECT_EQ(x, x2);
  std::vector<index_t> none;
  std::vector<float> empty;
  pt::token_logprobs_fused(host, matrix_view<float>(nullptr, 0, v), none,
                           std::span<const float>(empty), pt::token_logprobs_outputs<float>{empty});
}

TEST(TokenLogprobsFused, BadInputLeavesEverythingUntouched) {
  const index_t n = 3, v = 5;
  auto x = random_logits<float>(n, v, 1.0, 9);
  const auto x0 = x;
  std::vector<float> g(n, 1.0f), shrt(n - 1, 1.0f), lp(n, 7.0f);
  auto run = [&](std::vector<index_t> y, std::span<const float> d, std::span<float> out,
                 double tau = 1.0) {
    pt::token_logprobs_options opt;
    opt.temperature = tau;
    EXPECT_THROW(pt::token_logprobs_fused(host, matrix_view<float>(x.data(), n, v), y, d,
                                          pt::token_logprobs_outputs<float>{out}, opt),
                 pt::error);
    EXPECT_EQ(x, x0);
    EXPECT_EQ(lp, std::vector<float>(n, 7.0f));
  };
  run({0, 1}, g, lp);                // targets size
  run({0, 5, 1}, g, lp);             // target == V
  run({0, 1, 2}, shrt, lp);          // d_logprob size
  run({0, 1, 2}, g, shrt);           // logprob size
  run({0, 1, 2}, g, lp, 0.0);        // temperature
  run({0, 1, 2}, g, lp, std::nan(""));
}

}  // namespace
