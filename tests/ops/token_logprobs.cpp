// Tests of ops/token_logprobs.hpp and math/logsumexp.hpp against an independent long-double
// reference (two-pass log-softmax), with finite-difference checks of the backward.
// Also covers ops/token_logprobs_types.hpp and backend/cpu/token_logprobs.hpp (the fused pass:
// tests/ops/token_logprobs_fused.cpp; the device backend: tests/cuda/token_logprobs.cu).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <Eigen/Core>

#include "posttrain/math/logsumexp.hpp"
#include "posttrain/ops/token_logprobs.hpp"

namespace {

using posttrain::index_t;
using posttrain::matrix_view;
using posttrain::token_logprobs_grads;
using posttrain::token_logprobs_options;
using posttrain::token_logprobs_outputs;
using bf16 = Eigen::bfloat16;
using ld_t = long double;
constexpr double inf = std::numeric_limits<double>::infinity();
constexpr index_t ignore = -100;

// ------------------------------------------------------------------ reference (long double)
struct ref_row {
  ld_t lse = 0, logprob = 0, entropy = 0, sum_p2 = 0;
};

// Naive two-pass log-softmax of row x (length V) at temperature tau.
ref_row reference(const std::vector<ld_t>& x, index_t y, ld_t tau) {
  ref_row r;
  ld_t m = -INFINITY;
  for (ld_t v : x) m = std::max(m, v / tau);
  ld_t s = 0;
  for (ld_t v : x) s += std::exp(v / tau - m);
  r.lse = m + std::log(s);
  r.logprob = x[static_cast<std::size_t>(y)] / tau - r.lse;
  for (ld_t v : x) {
    const ld_t lp = v / tau - r.lse;
    const ld_t p = std::exp(lp);
    if (p > 0) r.entropy -= p * lp;
    r.sum_p2 += p * p;
  }
  return r;
}

// Reference d/dx of  a·logprob + b·entropy.
std::vector<ld_t> reference_grad(const std::vector<ld_t>& x, index_t y, ld_t tau, ld_t a, ld_t b) {
  const ref_row r = reference(x, y, tau);
  std::vector<ld_t> g(x.size());
  for (std::size_t v = 0; v < x.size(); ++v) {
    const ld_t lp = x[v] / tau - r.lse;
    const ld_t p = std::exp(lp);
    g[v] = (a * ((static_cast<index_t>(v) == y ? 1 : 0) - p) - b * p * (lp + r.entropy)) / tau;
  }
  return g;
}

template <class T>
double as_double(T v) {
  return static_cast<double>(static_cast<float>(v));
}
template <>
double as_double<double>(double v) {
  return v;
}

// A [rows, cols] matrix stored with leading dimension ld (padding filled with NaN: never read).
template <class T>
struct matrix {
  index_t rows, cols, ld;
  std::vector<T> data;
  matrix(index_t r, index_t c, index_t l)
      : rows(r), cols(c), ld(l), data(static_cast<std::size_t>(r * l), T(std::nanf(""))) {}
  T& operator()(index_t i, index_t j) { return data[static_cast<std::size_t>(i * ld + j)]; }
  matrix_view<const T> view() const { return {data.data(), rows, cols, ld}; }
  matrix_view<T> mview() { return {data.data(), rows, cols, ld}; }
  std::vector<ld_t> row(index_t i) const {
    std::vector<ld_t> r(static_cast<std::size_t>(cols));
    for (index_t j = 0; j < cols; ++j) r[j] = as_double(data[static_cast<std::size_t>(i * ld + j)]);
    return r;
  }
};

template <class T>
matrix<T> random_logits(index_t rows, index_t cols, index_t ld, double scale, unsigned seed) {
  matrix<T> m(rows, cols, ld);
  std::mt19937 gen(seed);
  std::normal_distribution<double> dist(0.0, scale);
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) {
      const double v = dist(gen);
      if constexpr (std::is_same_v<T, double>)
        m(i, j) = v;
      else
        m(i, j) = T(static_cast<float>(v));
    }
  return m;
}

template <class A>
struct fwd_out {
  std::vector<A> logprob, lse, entropy, sum_p2;
  explicit fwd_out(index_t n, A fill = A(12345))
      : logprob(n, fill), lse(n, fill), entropy(n, fill), sum_p2(n, fill) {}
  token_logprobs_outputs<A> all() { return {logprob, lse, entropy, sum_p2}; }
};

template <class T>
void expect_matches_reference(const matrix<T>& x, const std::vector<index_t>& targets,
                              double tau, double rtol, double atol) {
  using A = posttrain::accum_t<T>;
  fwd_out<A> out(x.rows);
  token_logprobs_options opt;
  opt.temperature = tau;
  posttrain::token_logprobs(posttrain::exec::host{}, x.view(), targets, out.all(), opt);
  for (index_t i = 0; i < x.rows; ++i) {
    SCOPED_TRACE(testing::Message() << "row " << i << " V " << x.cols << " tau " << tau);
    if (targets[i] == ignore) {
      EXPECT_EQ(out.logprob[i], A(0));
      EXPECT_EQ(out.lse[i], A(0));
      EXPECT_EQ(out.entropy[i], A(0));
      EXPECT_EQ(out.sum_p2[i], A(0));
      continue;
    }
    const ref_row r = reference(x.row(i), targets[i], tau);
    auto tol = [&](ld_t ref) { return static_cast<double>(atol + rtol * std::fabs(ref)); };
    EXPECT_NEAR(out.lse[i], static_cast<double>(r.lse), tol(r.lse));
    EXPECT_NEAR(out.logprob[i], static_cast<double>(r.logprob), tol(r.logprob));
    EXPECT_NEAR(out.entropy[i], static_cast<double>(r.entropy), tol(r.entropy));
    EXPECT_NEAR(out.sum_p2[i], static_cast<double>(r.sum_p2), tol(r.sum_p2));
  }
}

std::vector<index_t> make_targets(index_t rows, index_t cols, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<index_t> d(0, cols - 1);
  std::vector<index_t> t(static_cast<std::size_t>(rows));
  for (auto& y : t) y = d(gen);
  if (rows > 0) t[0] = 0;
  if (rows > 1) t[1] = cols - 1;
  if (rows > 2) t[2] = ignore;
  return t;
}

// ------------------------------------------------------------------ math/logsumexp.hpp

TEST(OnlineLse, PushMatchesReferenceAndCombineIsAssociative) {
  std::mt19937 gen(7);
  std::normal_distribution<double> d(0, 20);
  std::vector<double> x(101);
  for (auto& v : x) v = d(gen);
  x[5] = -inf;
  posttrain::math::softmax_stats<double> all;
  posttrain::math::online_lse<double> lse_all;
  for (double v : x) {
    all.push(v);
    lse_all.push(v);
  }
  std::vector<ld_t> xl(x.begin(), x.end());
  const ref_row r = reference(xl, 0, 1);
  EXPECT_NEAR(all.lse(), static_cast<double>(r.lse), 1e-12);
  EXPECT_NEAR(lse_all.value(), static_cast<double>(r.lse), 1e-12);
  EXPECT_NEAR(all.entropy(), static_cast<double>(r.entropy), 1e-12);
  EXPECT_NEAR(all.sum_p_squared(), static_cast<double>(r.sum_p2), 1e-12);

  // Split at every point into three parts and combine in both groupings.
  using S = posttrain::math::softmax_stats<double>;
  for (std::size_t cut : {std::size_t(0), std::size_t(13), std::size_t(60), x.size()}) {
    S a, b, c;
    for (std::size_t i = 0; i < x.size(); ++i) (i < cut ? a : (i < cut + 20 ? b : c)).push(x[i]);
    const S left = S::combine(S::combine(a, b), c), right = S::combine(a, S::combine(b, c));
    for (const S& s : {left, right}) {
      EXPECT_NEAR(s.lse(), all.lse(), 1e-12);
      EXPECT_NEAR(s.entropy(), all.entropy(), 1e-12);
      EXPECT_NEAR(s.sum_p_squared(), all.sum_p_squared(), 1e-12);
    }
  }
}

TEST(OnlineLse, EmptyAndInfiniteStates) {
  using S = posttrain::math::softmax_stats<float>;
  S empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.lse(), -std::numeric_limits<float>::infinity());
  EXPECT_EQ(empty.entropy(), 0.0f);
  S only_ninf;
  only_ninf.push(-std::numeric_limits<float>::infinity());
  EXPECT_TRUE(only_ninf.empty());
  S one;
  one.push(3.0f);
  const S c1 = S::combine(empty, one), c2 = S::combine(one, empty);
  EXPECT_EQ(c1.lse(), 3.0f);
  EXPECT_EQ(c2.lse(), 3.0f);
  EXPECT_EQ(c1.entropy(), 0.0f);
  EXPECT_EQ(c1.sum_p_squared(), 1.0f);
  S extreme;  // ±1e4 in one row: no overflow, no cancellation
  extreme.push(1e4f);
  extreme.push(-1e4f);
  extreme.push(1e4f);
  EXPECT_NEAR(extreme.lse(), 1e4f + std::log(2.0f), 1e-3);
  EXPECT_NEAR(extreme.entropy(), std::log(2.0f), 1e-6);
  EXPECT_NEAR(extreme.sum_p_squared(), 0.5f, 1e-6);
  S nan = one;
  nan.push(std::nanf(""));
  EXPECT_TRUE(std::isnan(nan.lse()));
  posttrain::math::online_lse<double> l;
  EXPECT_EQ(l.value(), -inf);
  l.push(-inf);
  EXPECT_EQ(l.value(), -inf);
}

// ------------------------------------------------------------------ forward

TEST(TokenLogprobs, FloatMatchesReference) {
  for (index_t V : {1, 7, 16, 33, 2048, 2049, 4100}) {
    auto x = random_logits<float>(6, V, V + 3, 4.0, static_cast<unsigned>(V));
    expect_matches_reference(x, make_targets(6, V, 1), 1.0, 2e-6, 2e-6);
    expect_matches_reference(x, make_targets(6, V, 2), 0.7, 2e-6, 2e-6);
  }
}

TEST(TokenLogprobs, DoubleMatchesReference) {
  for (index_t V : {1, 5, 2049, 5000}) {
    auto x = random_logits<double>(5, V, V, 5.0, static_cast<unsigned>(V) + 1);
    expect_matches_reference(x, make_targets(5, V, 3), 1.0, 1e-13, 1e-13);
    expect_matches_reference(x, make_targets(5, V, 4), 1.3, 1e-13, 1e-13);
  }
}

TEST(TokenLogprobs, Bfloat16MatchesReference) {
  for (index_t V : {1, 3, 17, 2050}) {
    auto x = random_logits<bf16>(5, V, V + 1, 3.0, static_cast<unsigned>(V) + 2);
    expect_matches_reference(x, make_targets(5, V, 5), 1.0, 2e-6, 2e-6);
    expect_matches_reference(x, make_targets(5, V, 6), 0.5, 2e-6, 2e-6);
  }
}

TEST(TokenLogprobs, LargeVocabularyFloatWithin1e5Relative) {
  const index_t V = 128256;
  auto x = random_logits<float>(3, V, V, 6.0, 11);
  x(1, 77) = 40.0f;  // a peaked row
  expect_matches_reference(x, {5, 77, V - 1}, 1.0, 1e-5, 1e-6);
  expect_matches_reference(x, {5, 77, V - 1}, 0.6, 1e-5, 1e-6);
}

TEST(TokenLogprobs, ExtremeAndInfiniteLogits) {
  const index_t V = 40;
  matrix<float> x(4, V, V);
  for (index_t j = 0; j < V; ++j) {
    x(0, j) = (j % 2 == 0) ? 1e4f : -1e4f;  // ±1e4 in one row
    x(1, j) = j == 3 ? 0.0f : -std::numeric_limits<float>::infinity();  // one finite entry
    x(2, j) = j < 20 ? -std::numeric_limits<float>::infinity() : float(j);
    x(3, j) = 1e4f - float(j);
  }
  fwd_out<float> out(4);
  posttrain::token_logprobs(posttrain::exec::host{}, x.view(), std::vector<index_t>{1, 3, 39, 0},
                            out.all());
  EXPECT_FLOAT_EQ(out.logprob[1], 0.0f);
  EXPECT_NEAR(out.entropy[1], 0.0f, 1e-30);  // -inf entries weigh at most 2^-125 each
  EXPECT_FLOAT_EQ(out.sum_p2[1], 1.0f);
  EXPECT_FLOAT_EQ(out.lse[1], 0.0f);
  for (index_t i : {0, 2, 3}) {
    SCOPED_TRACE(i);
    std::vector<ld_t> row = x.row(i);
    const ref_row r = reference(row, std::vector<index_t>{1, 3, 39, 0}[i], 1);
    EXPECT_TRUE(std::isfinite(out.logprob[i]));
    EXPECT_NEAR(out.lse[i], static_cast<double>(r.lse), 2e-6 * std::fabs(double(r.lse)) + 1e-6);
    EXPECT_NEAR(out.logprob[i], static_cast<double>(r.logprob),
                1e-3 + 1e-6 * std::fabs(double(r.logprob)));
    EXPECT_NEAR(out.entropy[i], static_cast<double>(r.entropy), 1e-5);
    EXPECT_NEAR(out.sum_p2[i], static_cast<double>(r.sum_p2), 1e-5);
  }
  EXPECT_NEAR(out.logprob[0], -2e4 - std::log(20.0), 1e-2);
  EXPECT_NEAR(out.entropy[0], std::log(20.0), 1e-5);
}

TEST(TokenLogprobs, NanInARowGivesNan) {
  auto x = random_logits<float>(2, 3000, 3000, 1.0, 3);
  x(0, 2500) = std::nanf("");
  fwd_out<float> out(2);
  posttrain::token_logprobs(posttrain::exec::host{}, x.view(), std::vector<index_t>{0, 0},
                            out.all());
  EXPECT_TRUE(std::isnan(out.lse[0]));
  EXPECT_TRUE(std::isnan(out.logprob[0]));
  EXPECT_TRUE(std::isfinite(out.lse[1]));
}

TEST(TokenLogprobs, IgnoredRowsAreNotRead) {
  auto x = random_logits<float>(3, 50, 50, 1.0, 4);
  for (index_t j = 0; j < 50; ++j) x(1, j) = std::nanf("");
  fwd_out<float> out(3);
  token_logprobs_options opt;
  opt.ignore_index = -1;
  posttrain::token_logprobs(posttrain::exec::host{}, x.view(), std::vector<index_t>{4, -1, 9},
                            out.all(), opt);
  EXPECT_EQ(out.logprob[1], 0.0f);
  EXPECT_EQ(out.lse[1], 0.0f);
  EXPECT_EQ(out.entropy[1], 0.0f);
  EXPECT_TRUE(std::isfinite(out.logprob[0]) && std::isfinite(out.logprob[2]));
  // The default ignore_index (-100) is then an out-of-range target.
  EXPECT_THROW(posttrain::token_logprobs(posttrain::exec::host{}, x.view(),
                                         std::vector<index_t>{4, -100, 9}, out.all(), opt),
               posttrain::error);
}

TEST(TokenLogprobs, OptionalOutputsAndThreadsGiveIdenticalResults) {
  const index_t N = 9, V = 40000;  // enough work for two threads
  auto x = random_logits<bf16>(N, V, V, 4.0, 5);
  const auto targets = make_targets(N, V, 8);
  fwd_out<float> full(N);
  posttrain::token_logprobs(posttrain::exec::host{}, x.view(), targets, full.all());
  for (int threads : {0, 2, 3}) {
    fwd_out<float> t(N);
    token_logprobs_options opt;
    opt.num_threads = threads;
    posttrain::token_logprobs(posttrain::exec::host{}, x.view(), targets, t.all(), opt);
    EXPECT_EQ(0, std::memcmp(t.logprob.data(), full.logprob.data(), N * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(t.entropy.data(), full.entropy.data(), N * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(t.sum_p2.data(), full.sum_p2.data(), N * sizeof(float)));
  }
  fwd_out<float> only(N, -7.0f);
  posttrain::token_logprobs(posttrain::exec::host{}, x.view(), targets,
                            token_logprobs_outputs<float>{.logprob = only.logprob});
  EXPECT_EQ(only.logprob, full.logprob);
  EXPECT_EQ(only.entropy, std::vector<float>(N, -7.0f));  // not requested, untouched
  fwd_out<float> p2(N, -7.0f);
  posttrain::token_logprobs(
      posttrain::exec::host{}, x.view(), targets,
      token_logprobs_outputs<float>{.logprob = p2.logprob, .sum_p_squared = p2.sum_p2});
  EXPECT_EQ(p2.sum_p2, full.sum_p2);
  // The allocating convenience overload.
  const auto r = posttrain::token_logprobs(posttrain::exec::host{}, x.view(), targets, {}, true);
  EXPECT_EQ(r.logprob, full.logprob);
  EXPECT_EQ(r.entropy, full.entropy);
  EXPECT_EQ(r.sum_p_squared, full.sum_p2);
}

TEST(TokenLogprobs, EmptyBatch) {
  std::vector<float> lp;
  posttrain::token_logprobs(posttrain::exec::host{}, matrix_view<const float>(nullptr, 0, 5),
                            std::span<const index_t>{}, token_logprobs_outputs<float>{lp});
  std::vector<float> g;
  posttrain::token_logprobs_backward(
      posttrain::exec::host{}, matrix_view<const float>(nullptr, 0, 5), std::span<const index_t>{},
      token_logprobs_grads<float>{.lse = {}, .d_logprob = {}}, matrix_view<float>(nullptr, 0, 5));
  SUCCEED();
}

// ------------------------------------------------------------------ backward

template <class T, class G>
void check_backward_against_reference(index_t N, index_t V, double tau, bool with_entropy,
                                      double tol) {
  using A = posttrain::accum_t<T>;
  auto x = random_logits<T>(N, V, V + 2, 3.0, static_cast<unsigned>(V * 3 + N));
  auto targets = make_targets(N, V, 9);
  token_logprobs_options opt;
  opt.temperature = tau;
  fwd_out<A> f(N);
  posttrain::token_logprobs(posttrain::exec::host{}, x.view(), targets, f.all(), opt);
  std::vector<A> dlp(N), dh(N);
  for (index_t i = 0; i < N; ++i) {
    dlp[i] = A(0.5 + 0.25 * static_cast<double>(i));
    dh[i] = A(-0.3 + 0.1 * static_cast<double>(i));
  }
  matrix<G> g(N, V, V + 1);
  token_logprobs_grads<A> in{f.lse, f.entropy, dlp, {}};
  if (with_entropy) in.d_entropy = dh;
  posttrain::token_logprobs_backward(posttrain::exec::host{}, x.view(), targets, in, g.mview(),
                                     opt);
  for (index_t i = 0; i < N; ++i) {
    if (targets[i] == ignore) {
      for (index_t v = 0; v < V; ++v) EXPECT_EQ(as_double(g(i, v)), 0.0);
      continue;
    }
    const auto ref =
        reference_grad(x.row(i), targets[i], tau, dlp[i], with_entropy ? ld_t(dh[i]) : ld_t(0));
    for (index_t v = 0; v < V; ++v)
      ASSERT_NEAR(as_double(g(i, v)), static_cast<double>(ref[v]),
                  tol * (1e-3 + std::fabs(static_cast<double>(ref[v]))))
          << "row " << i << " v " << v;
  }
}

TEST(TokenLogprobsBackward, MatchesReferenceFloatDoubleBf16) {
  for (bool h : {false, true}) {
    SCOPED_TRACE(h);
    check_backward_against_reference<double, double>(5, 7, 1.0, h, 1e-11);
    check_backward_against_reference<double, double>(4, 2100, 0.8, h, 1e-11);
    check_backward_against_reference<float, float>(5, 2049, 1.0, h, 1e-5);
    check_backward_against_reference<float, float>(4, 37, 0.7, h, 1e-5);
    check_backward_against_reference<bf16, float>(4, 300, 1.1, h, 1e-5);
    check_backward_against_reference<bf16, bf16>(4, 300, 1.0, h, 1e-2);
    check_backward_against_reference<float, double>(3, 1, 1.0, h, 1e-5);
  }
}

// Central differences of  L = Σ_i a_i·logprob_i + b_i·entropy_i  (through the library forward in
// double), against the library backward.
TEST(TokenLogprobsBackward, FiniteDifferences) {
  const index_t N = 4, V = 9;
  const double tau = 0.8;
  auto x = random_logits<double>(N, V, V, 2.0, 21);
  std::vector<index_t> targets{0, V - 1, ignore, 4};
  const std::vector<double> a{0.7, -1.2, 0.4, 0.9}, b{0.3, 0.5, -2.0, -0.8};
  token_logprobs_options opt;
  opt.temperature = tau;
  auto loss = [&](const matrix<double>& m, bool use_a, bool use_b) {
    fwd_out<double> f(N);
    posttrain::token_logprobs(posttrain::exec::host{}, m.view(), targets, f.all(), opt);
    double L = 0;
    for (index_t i = 0; i < N; ++i)
      L += (use_a ? a[i] * f.logprob[i] : 0.0) + (use_b ? b[i] * f.entropy[i] : 0.0);
    return L;
  };
  fwd_out<double> f(N);
  posttrain::token_logprobs(posttrain::exec::host{}, x.view(), targets, f.all(), opt);
  for (int mode = 0; mode < 3; ++mode) {  // logprob only, entropy only, both
    const bool use_a = mode != 1, use_b = mode != 0;
    std::vector<double> da(N, 0.0), db(N, 0.0);
    for (index_t i = 0; i < N; ++i) {
      if (use_a) da[i] = a[i];
      if (use_b) db[i] = b[i];
    }
    matrix<double> g(N, V, V);
    token_logprobs_grads<double> in{f.lse, f.entropy, da, {}};
    if (use_b) in.d_entropy = db;
    posttrain::token_logprobs_backward(posttrain::exec::host{}, x.view(), targets, in, g.mview(),
                                       opt);
    const double h = 1e-6;
    for (index_t i = 0; i < N; ++i)
      for (index_t v = 0; v < V; ++v) {
        matrix<double> xp = x, xm = x;
        xp(i, v) += h;
        xm(i, v) -= h;
        const double fd = (loss(xp, use_a, use_b) - loss(xm, use_a, use_b)) / (2 * h);
        EXPECT_NEAR(g(i, v), fd, 1e-7) << "mode " << mode << " row " << i << " v " << v;
      }
  }
}

TEST(TokenLogprobsBackward, InPlaceEqualsOutOfPlace) {
  const index_t N = 5, V = 2100, LD = 2110;
  auto x = random_logits<float>(N, V, LD, 3.0, 31);
  auto targets = make_targets(N, V, 10);
  fwd_out<float> f(N);
  posttrain::token_logprobs(posttrain::exec::host{}, x.view(), targets, f.all());
  std::vector<float> dlp{1, -2, 3, 0.5f, 1}, dh{0.1f, 0.2f, 0.3f, -0.4f, 0.5f};
  token_logprobs_grads<float> in{f.lse, f.entropy, dlp, dh};
  matrix<float> g(N, V, V);
  posttrain::token_logprobs_backward(posttrain::exec::host{}, x.view(), targets, in, g.mview());
  posttrain::token_logprobs_backward(posttrain::exec::host{}, x.view(), targets, in, x.mview());
  for (index_t i = 0; i < N; ++i)
    for (index_t v = 0; v < V; ++v) ASSERT_EQ(x(i, v), g(i, v)) << i << " " << v;
}

TEST(TokenLogprobsBackward, InPlaceBfloat16) {
  const index_t N = 4, V = 300;
  auto x = random_logits<bf16>(N, V, V, 3.0, 32);
  auto targets = make_targets(N, V, 11);
  fwd_out<float> f(N);
  posttrain::token_logprobs(posttrain::exec::host{}, x.view(), targets, f.all());
  std::vector<float> dlp{1, -2, 3, 0.5f};
  token_logprobs_grads<float> in{.lse = f.lse, .d_logprob = dlp};
  matrix<bf16> g(N, V, V);
  posttrain::token_logprobs_backward(posttrain::exec::host{}, x.view(), targets, in, g.mview());
  posttrain::token_logprobs_backward(posttrain::exec::host{}, x.view(), targets, in, x.mview());
  for (index_t i = 0; i < N; ++i)
    for (index_t v = 0; v < V; ++v) ASSERT_EQ(float(x(i, v)), float(g(i, v)));
}

TEST(TokenLogprobsBackward, ExtremeLogitsStayFinite) {
  const index_t V = 10;
  matrix<float> x(1, V, V);
  for (index_t j = 0; j < V; ++j) x(0, j) = (j % 2) ? 1e4f : -1e4f;
  std::vector<index_t> t{1};
  fwd_out<float> f(1);
  posttrain::token_logprobs(posttrain::exec::host{}, x.view(), t, f.all());
  std::vector<float> one{1.0f}, two{2.0f};
  matrix<float> g(1, V, V);
  posttrain::token_logprobs_backward(posttrain::exec::host{}, x.view(), t,
                                     token_logprobs_grads<float>{f.lse, f.entropy, one, two},
                                     g.mview());
  const auto ref = reference_grad(x.row(0), 1, 1, 1, 2);
  for (index_t v = 0; v < V; ++v) EXPECT_NEAR(g(0, v), static_cast<double>(ref[v]), 1e-3);
}

// ------------------------------------------------------------------ validation

template <class Fn>
void expect_error_untouched(Fn&& fn, const std::vector<std::vector<float>*>& outputs,
                            const char* what) {
  std::vector<std::vector<float>> before;
  for (auto* o : outputs) before.push_back(*o);
  EXPECT_THROW(fn(), posttrain::error) << what;
  for (std::size_t k = 0; k < outputs.size(); ++k) EXPECT_EQ(*outputs[k], before[k]) << what;
}

TEST(TokenLogprobsValidation, ForwardErrorsLeaveOutputsUntouched) {
  const index_t N = 3, V = 6;
  auto x = random_logits<float>(N, V, V, 1.0, 40);
  std::vector<index_t> targets{0, 5, ignore};
  fwd_out<float> o(N, 9.0f);
  std::vector<float> short_out(N - 1, 9.0f);
  std::vector<std::vector<float>*> outs{&o.logprob, &o.lse, &o.entropy, &o.sum_p2, &short_out};
  const posttrain::exec::host host;
  auto run = [&](matrix_view<const float> m, std::vector<index_t> t, token_logprobs_outputs<float> out,
                 token_logprobs_options opt = {}) {
    return [=] { posttrain::token_logprobs(host, m, t, out, opt); };
  };
  expect_error_untouched(run(x.view(), {0, 1}, o.all()), outs, "targets size");
  expect_error_untouched(run(x.view(), {0, 6, 1}, o.all()), outs, "target == V");
  expect_error_untouched(run(x.view(), {0, -1, 1}, o.all()), outs, "negative target");
  expect_error_untouched(run(x.view(), targets, {short_out, o.lse}), outs, "logprob size");
  expect_error_untouched(run(x.view(), targets, {}), outs, "logprob missing");
  expect_error_untouched(run(x.view(), targets, {o.logprob, short_out}), outs, "lse size");
  expect_error_untouched(run(x.view(), targets, {o.logprob, o.lse, short_out}), outs,
                         "entropy size");
  expect_error_untouched(run(x.view(), targets, {o.logprob, o.lse, o.entropy, short_out}), outs,
                         "sum_p_squared size");
  for (double tau : {0.0, -1.0, std::nan(""), inf}) {
    token_logprobs_options opt;
    opt.temperature = tau;
    expect_error_untouched(run(x.view(), targets, o.all(), opt), outs, "temperature");
  }
  token_logprobs_options threads;
  threads.num_threads = -1;
  expect_error_untouched(run(x.view(), targets, o.all(), threads), outs, "num_threads");
  expect_error_untouched(run(matrix_view<const float>(nullptr, N, V), targets, o.all()), outs,
                         "null data");
  expect_error_untouched(run(matrix_view<const float>(x.data.data(), N, V, V - 1), targets,
                             o.all()),
                         outs, "ld < cols");
  expect_error_untouched(run(matrix_view<const float>(x.data.data(), N, 0), {ignore, ignore, ignore},
                             o.all()),
                         outs, "empty vocabulary");
  // The message names the row.
  try {
    posttrain::token_logprobs(host, x.view(), std::vector<index_t>{0, 1, 17}, o.all());
    FAIL();
  } catch (const posttrain::error& e) {
    EXPECT_NE(std::string(e.what()).find("row 2"), std::string::npos) << e.what();
  }
}

TEST(TokenLogprobsValidation, BackwardErrorsLeaveOutputsUntouched) {
  const index_t N = 3, V = 6;
  auto x = random_logits<float>(N, V, V, 1.0, 41);
  std::vector<index_t> targets{0, 5, ignore};
  std::vector<float> lse(N, 1.0f), ent(N, 1.0f), dlp(N, 1.0f), dh(N, 1.0f), shrt(N - 1, 1.0f);
  matrix<float> g(N, V, V);
  for (auto& v : g.data) v = 4.0f;
  std::vector<std::vector<float>*> outs{&g.data, &x.data};
  const posttrain::exec::host host;
  auto run = [&](matrix_view<const float> m, std::vector<index_t> t, token_logprobs_grads<float> in,
                 matrix_view<float> out, token_logprobs_options opt = {}) {
    return [=] { posttrain::token_logprobs_backward(host, m, t, in, out, opt); };
  };
  const token_logprobs_grads<float> ok{lse, ent, dlp, dh};
  expect_error_untouched(run(x.view(), targets, ok, {g.data.data(), N, V - 1}), outs, "shape");
  expect_error_untouched(run(x.view(), {0, 1}, ok, g.mview()), outs, "targets size");
  expect_error_untouched(run(x.view(), {0, 9, 1}, ok, g.mview()), outs, "target range");
  expect_error_untouched(run(x.view(), targets, {shrt, ent, dlp, dh}, g.mview()), outs, "lse");
  expect_error_untouched(run(x.view(), targets, {lse, ent, shrt, dh}, g.mview()), outs,
                         "d_logprob");
  expect_error_untouched(run(x.view(), targets, {lse, ent, dlp, shrt}, g.mview()), outs,
                         "d_entropy");
  expect_error_untouched(run(x.view(), targets, {lse, {}, dlp, dh}, g.mview()), outs,
                         "entropy missing with d_entropy");
  token_logprobs_options bad;
  bad.temperature = 0;
  expect_error_untouched(run(x.view(), targets, ok, g.mview(), bad), outs, "temperature");
  expect_error_untouched(run(x.view(), targets, ok, {nullptr, N, V}), outs, "null d_logits");
  // Partial overlap with the logits (shifted by one element) is rejected; exact aliasing is not.
  expect_error_untouched(run(matrix_view<const float>(x.data.data(), N, V - 1, V), targets, ok,
                             {x.data.data() + 1, N, V - 1, V}),
                         outs, "partial overlap");
  expect_error_untouched(run(matrix_view<const float>(x.data.data(), N, V - 1, V), targets, ok,
                             {x.data.data(), N, V - 1, V - 1}),
                         outs, "overlap with another ld");
}

}  // namespace
