// Tests for math/stable.hpp against long-double references, at the extremes the losses meet
// (logits ±1e4, log-ratios ±50, margins of ±1e300), and the derivative identities the losses rely
// on (d/dx log1pexp = sigmoid, d/dx logsigmoid = 1 − sigmoid) by central differences.
#include "posttrain/math/stable.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace pt = posttrain;
namespace m = posttrain::math;

namespace {

long double ref_log1pexp(long double x) {
  // log(1 + e^x) = max(x, 0) + log1p(e^-|x|): exact in long double for the range tested.
  return std::fmax(x, 0.0L) + std::log1p(std::exp(-std::fabs(x)));
}
long double ref_sigmoid(long double x) { return 1.0L / (1.0L + std::exp(-x)); }

const std::vector<double> kPoints{-1e300, -1e4, -745, -710, -100, -50, -37.5, -37, -20, -18.5,
                                  -1,     -1e-8, 0,    1e-8, 0.5,  1,   17.9, 18,  18.1, 33,
                                  33.4,   50,    100,  710,  1e4,  1e300};

// Relative error, except that results below the smallest normal of T (underflow towards 0) are
// compared absolutely: such values cannot carry relative precision in T.
template <class T>
double rel_err(T got, long double want) {
  const long double scale =
      std::fmax(std::fabs(want), static_cast<long double>(std::numeric_limits<T>::min()));
  return static_cast<double>(std::fabs(static_cast<long double>(got) - want) / scale);
}

}  // namespace

TEST(MathStable, Log1pexpDouble) {
  for (double x : kPoints) {
    const double got = m::log1pexp(x);
    ASSERT_TRUE(std::isfinite(got)) << x;
    EXPECT_LE(rel_err(got, ref_log1pexp(x)), 4e-16) << "x=" << x;
  }
}

TEST(MathStable, Log1pexpFloat) {
  for (double xd : kPoints) {
    const float x = static_cast<float>(xd);
    if (!std::isfinite(x)) continue;
    const float got = m::log1pexp(x);
    ASSERT_TRUE(std::isfinite(got)) << x;
    EXPECT_LE(rel_err(got, ref_log1pexp(x)), 3e-7) << "x=" << x;
  }
}

TEST(MathStable, LogsigmoidAndSigmoid) {
  for (double x : kPoints) {
    const long double want_ls = -ref_log1pexp(-static_cast<long double>(x));
    EXPECT_LE(rel_err(m::logsigmoid(x), want_ls), 4e-16) << x;
    const double s = m::sigmoid(x);
    EXPECT_GE(s, 0.0);
    EXPECT_LE(s, 1.0);
    EXPECT_LE(rel_err(s, ref_sigmoid(x)), 4e-16) << x;
    EXPECT_LE(rel_err(m::sigmoid(static_cast<float>(std::fmax(std::fmin(x, 1e30), -1e30))),
                      ref_sigmoid(static_cast<float>(std::fmax(std::fmin(x, 1e30), -1e30)))),
              3e-7)
        << x;
  }
  EXPECT_DOUBLE_EQ(m::logsigmoid(0.0), -std::log(2.0));
  EXPECT_EQ(m::sigmoid(-1e4), 0.0);
  EXPECT_EQ(m::sigmoid(1e4), 1.0);
}

TEST(MathStable, Log1mexp) {
  for (double x : {-1e-300, -1e-20, -1e-8, -0.1, -0.6931, -0.6932, -1.0, -20.0, -50.0, -745.0}) {
    // Reference: log(-expm1(x)) where that is well conditioned, else the series −Σ e^{kx}/k.
    long double want = 0;
    if (x > -1) {
      want = std::log(-std::expm1(static_cast<long double>(x)));
    } else {
      const long double e = std::exp(static_cast<long double>(x));
      long double power = e;
      for (int k = 1; k < 60; ++k, power *= e) want -= power / k;
    }
    EXPECT_LE(rel_err(m::log1mexp(x), want), 1e-15) << "x=" << x << " got " << m::log1mexp(x) << " want " << static_cast<double>(want);
  }
  EXPECT_EQ(m::log1mexp(0.0), -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(m::log1mexp(0.5)));
  EXPECT_EQ(m::log1mexp(-std::numeric_limits<double>::infinity()), 0.0);
}

TEST(MathStable, SoftplusMatchesTorchSemantics) {
  // torch: softplus(x, beta, threshold) = x where beta*x > threshold, else log1p(exp(beta*x))/beta.
  for (double x : {-30.0, -1.0, 0.0, 2.0, 9.9, 10.1, 40.0}) {
    const double beta = 2.0, threshold = 20.0;
    const long double want =
        beta * x > threshold ? x : ref_log1pexp(beta * static_cast<long double>(x)) / beta;
    EXPECT_LE(rel_err(m::softplus(x, beta, threshold), want), 4e-16) << x;
  }
  EXPECT_DOUBLE_EQ(m::softplus(1.5), m::log1pexp(1.5));
}

TEST(MathStable, LogaddexpAndClamp) {
  EXPECT_NEAR(m::logaddexp(1e4, 1e4), 1e4 + std::log(2.0), 1e-12);
  EXPECT_NEAR(m::logaddexp(-1e4, 0.0), 0.0, 1e-300);
  const double ninf = -std::numeric_limits<double>::infinity();
  EXPECT_EQ(m::logaddexp(ninf, ninf), ninf);
  EXPECT_EQ(m::logaddexp(ninf, 2.0), 2.0);
  EXPECT_EQ(m::clamp(5.0, -1.0, 1.0), 1.0);
  EXPECT_EQ(m::clamp(-5.0, -1.0, 1.0), -1.0);
  EXPECT_EQ(m::clamp(0.25, -1.0, 1.0), 0.25);
  static_assert(m::clamp(3, 0, 2) == 2, "clamp is constexpr");
}

TEST(MathStable, DerivativeIdentitiesByCentralDifferences) {
  for (double x : {-30.0, -5.0, -0.3, 0.0, 0.7, 4.0, 25.0}) {
    const double h = 1e-5;
    const double d_log1pexp = (m::log1pexp(x + h) - m::log1pexp(x - h)) / (2 * h);
    EXPECT_NEAR(d_log1pexp, m::sigmoid(x), 1e-9) << x;
    const double d_logsigmoid = (m::logsigmoid(x + h) - m::logsigmoid(x - h)) / (2 * h);
    EXPECT_NEAR(d_logsigmoid, 1.0 - m::sigmoid(x), 1e-9) << x;
  }
  for (double x : {-20.0, -3.0, -0.5, -0.01}) {
    const double h = 1e-7;
    const double d = (m::log1mexp(x + h) - m::log1mexp(x - h)) / (2 * h);
    EXPECT_NEAR(d, -1.0 / std::expm1(-x), 1e-6 * std::fabs(d) + 1e-9) << x;  // d/dx log(1-e^x)
  }
}
