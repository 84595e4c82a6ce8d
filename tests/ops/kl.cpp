// Tests for ops/kl.hpp: every estimator against naive float64 formulas, finite-difference
// gradients, clamps (active, inactive, boundaries), huge log-ratios, straight-through, the peer
// presets against the formulas of algorithms.md §1.5, NaN propagation, validation.
// Also covers ops/kl_types.hpp (estimators, kl_element, presets, the backend template) and
// backend/cpu/kl.hpp (its host backend, block k3 included).
#include "posttrain/ops/kl.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <tuple>
#include <string>
#include <vector>

namespace pt = posttrain;

namespace {

enum class est { k1, abs, k2, k3 };

// Naive references (long double, written from the formulas, not from the library).
long double ref_value(est e, long double d) {
  switch (e) {
    case est::k1: return d;
    case est::abs: return d < 0 ? -d : d;
    case est::k2: return 0.5L * d * d;
    case est::k3: return std::exp(-d) - 1.0L + d;
  }
  return 0;
}

long double ref_grad(est e, long double d) {
  switch (e) {
    case est::k1: return 1;
    case est::abs: return d > 0 ? 1 : (d < 0 ? -1 : 0);
    case est::k2: return d;
    case est::k3: return 1.0L - std::exp(-d);
  }
  return 0;
}

// Dispatch an estimator enum onto the library type (instantiates each estimator once per type).
template <class T>
void run(est e, const std::vector<T>& lp, const std::vector<T>& rp, const pt::kl_options& o,
         std::vector<T>& v, std::vector<T>& g) {
  v.assign(lp.size(), T(0));
  g.assign(lp.size(), T(0));
  switch (e) {
    case est::k1: pt::kl_divergence<pt::kl::k1>(pt::exec::host{}, lp, rp, o, v, g); break;
    case est::abs: pt::kl_divergence<pt::kl::abs>(pt::exec::host{}, lp, rp, o, v, g); break;
    case est::k2: pt::kl_divergence<pt::kl::k2>(pt::exec::host{}, lp, rp, o, v, g); break;
    case est::k3: pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, lp, rp, o, v, g); break;
  }
}

double value_at(est e, double lp, double rp, const pt::kl_options& o) {
  std::vector<double> l{lp}, r{rp}, v, g;
  run(e, l, r, o, v, g);
  return v[0];
}

// Central difference of the library's value w.r.t. the policy log-prob.
double fd_grad(est e, double lp, double rp, const pt::kl_options& o, double h = 1e-6) {
  return (value_at(e, lp + h, rp, o) - value_at(e, lp - h, rp, o)) / (2 * h);
}

const std::vector<double> kDiffs{-7.5, -3.0, -1.3, -0.31, -0.2, -0.01, -1e-3, 1e-3,
                                 0.05, 0.24, 0.26, 0.7,  2.0,  6.0,   19.0};
const est kAll[] = {est::k1, est::abs, est::k2, est::k3};

std::string name(est e) {
  switch (e) {
    case est::k1: return "k1";
    case est::abs: return "abs";
    case est::k2: return "k2";
    case est::k3: return "k3";
  }
  return "?";
}

void expect_close(double got, long double want, double rel, const std::string& what) {
  const double w = static_cast<double>(want);
  EXPECT_NEAR(got, w, rel * std::max(1.0, std::fabs(w))) << what;
}

}  // namespace

static_assert(pt::kl_estimator<pt::kl::k3>);
static_assert(pt::kl_estimator<pt::kl::straight_through<pt::kl::k2>>);
static_assert(!pt::kl_estimator<int>);
struct value_only {
  static float value(float d) { return d; }
};
static_assert(!pt::kl_estimator<value_only>);

TEST(Kl, EstimatorsMatchNaiveFormulasDouble) {
  // Two ways to produce the same d: ℓ and ℓref both shifted, to exercise the subtraction.
  std::vector<double> lp, rp;
  for (double d : kDiffs) {
    rp.push_back(-2.5);
    lp.push_back(-2.5 + d);
  }
  for (est e : kAll) {
    std::vector<double> v, g;
    run(e, lp, rp, pt::kl_options{}, v, g);
    for (std::size_t i = 0; i < lp.size(); ++i) {
      const long double d = static_cast<long double>(lp[i]) - rp[i];
      expect_close(v[i], ref_value(e, d), 1e-12, name(e) + " value at d=" + std::to_string(kDiffs[i]));
      expect_close(g[i], ref_grad(e, d), 1e-12, name(e) + " grad at d=" + std::to_string(kDiffs[i]));
    }
  }
}

TEST(Kl, EstimatorsMatchNaiveFormulasFloat) {
  std::vector<float> lp, rp;
  for (double d : kDiffs) {
    rp.push_back(-1.0f);
    lp.push_back(static_cast<float>(-1.0 + d));
  }
  for (est e : kAll) {
    std::vector<float> v, g;
    run(e, lp, rp, pt::kl_options{}, v, g);
    for (std::size_t i = 0; i < lp.size(); ++i) {
      const long double d = static_cast<long double>(lp[i]) - rp[i];  // the float d, exactly
      expect_close(v[i], ref_value(e, d), 2e-6, name(e) + " float value");
      expect_close(g[i], ref_grad(e, d), 2e-6, name(e) + " float grad");
    }
  }
}

TEST(Kl, GradientsMatchFiniteDifferences) {
  const pt::kl_options presets[] = {pt::kl_options{}, pt::kl_conventions::verl(pt::kl_kind::k3),
                                    pt::kl_conventions::openrlhf(),
                                    pt::kl_conventions::open_instruct()};
  const std::vector<double> ds{-45.0, -25.0, -3.0, -2.2, -0.4, -0.01, 0.013, 0.3,
                               1.7,   4.0,   11.0, 22.0, 45.0};
  for (const auto& o : presets)
    for (est e : kAll)
      for (double d : ds) {
        const double lp = -1.0 + d, rp = -1.0;
        std::vector<double> l{lp}, r{rp}, v, g;
        run(e, l, r, o, v, g);
        const double fd = fd_grad(e, lp, rp, o);
        EXPECT_NEAR(g[0], fd, 1e-6 * std::max(1.0, std::fabs(fd)))
            << name(e) << " d=" << d << " clamps [" << o.input_min << "," << o.input_max << "] ["
            << o.output_min << "," << o.output_max << "]";
      }
}

TEST(Kl, K3KeepsRelativePrecisionForTinyDifferences) {
  // Reference: the Taylor series Σ_{n>=2} (−d)^n / n! in long double.
  auto series = [](long double d) {
    long double term = d * d / 2, sum = 0;
    for (int n = 2; n < 60; ++n) {
      sum += term;
      term *= -d / (n + 1);
    }
    return sum;
  };
  // Inside the series radius (|d| <= 1/2): a few ulp. Just outside it, where e^{−d} − 1 + d
  // still cancels a little: ~12 ulp.
  struct point {
    double d, rel_double, rel_float;
  };
  const point points[] = {{1e-9, 4e-16, 3e-7},       {-1e-9, 4e-16, 3e-7},  {1e-6, 4e-16, 3e-7},
                          {-3e-6, 4e-16, 3e-7},      {1e-3, 4e-16, 3e-7},   {-1e-3, 4e-16, 3e-7},
                          {0.1, 4e-16, 3e-7},        {-0.2, 4e-16, 3e-7},   {0.5, 4e-16, 3e-7},
                          {-0.5, 4e-16, 3e-7},       {0.5000001, 3e-15, 1.5e-6},
                          {-0.5000001, 3e-15, 1.5e-6}, {1.5, 1e-15, 5e-7},   {-2.5, 1e-15, 5e-7}};
  auto grad_series = [](long double d) {  // 1 − e^{−d} = Σ_{n>=1} −(−d)^n / n!
    long double term = d, sum = 0;
    for (int n = 1; n < 60; ++n) {
      sum += term;
      term *= -d / (n + 1);
    }
    return sum;
  };
  for (const auto& p : points) {
    const double d = p.d;
    const double v = pt::kl::k3::value(d), g = pt::kl::k3::grad(d);
    EXPECT_NEAR(v, static_cast<double>(series(d)), p.rel_double * static_cast<double>(series(d)))
        << d;
    EXPECT_NEAR(g, static_cast<double>(grad_series(d)),
                p.rel_double * std::fabs(static_cast<double>(grad_series(d))))
        << d;
    const float df = static_cast<float>(d);
    const double vf = pt::kl::k3::value(df), gf = pt::kl::k3::grad(df);
    EXPECT_NEAR(vf, static_cast<double>(series(df)), p.rel_float * static_cast<double>(series(df)))
        << d;
    EXPECT_NEAR(gf, static_cast<double>(grad_series(df)),
                p.rel_float * std::fabs(static_cast<double>(grad_series(df))))
        << d;
    // value_and_grad agrees with value and grad.
    double v2, g2;
    pt::kl::k3::value_and_grad(d, v2, g2);
    EXPECT_EQ(v2, v);
    EXPECT_EQ(g2, g);
  }
}

TEST(Kl, ClampsActiveAndInactiveAndBoundaryConvention) {
  const auto verl = pt::kl_conventions::verl(pt::kl_kind::k3);
  // d = −2: e² − 3 = 4.389 < 10, no clamp active.
  {
    std::vector<double> l{-2.0}, r{0.0}, v, g;
    run(est::k3, l, r, verl, v, g);
    EXPECT_NEAR(v[0], std::exp(2.0) - 3.0, 1e-14);
    EXPECT_NEAR(g[0], 1.0 - std::exp(2.0), 1e-13);
  }
  // d = −3: e³ − 4 = 16.09 > 10: output clamp active, gradient 0.
  {
    std::vector<double> l{-3.0}, r{0.0}, v, g;
    run(est::k3, l, r, verl, v, g);
    EXPECT_EQ(v[0], 10.0);
    EXPECT_EQ(g[0], 0.0);
  }
  // d = 30: input clamp to 20 active (and the value 19 is then clamped to 10): gradient 0.
  {
    std::vector<double> l{30.0}, r{0.0}, v, g;
    run(est::k3, l, r, verl, v, g);
    EXPECT_EQ(v[0], 10.0);
    EXPECT_EQ(g[0], 0.0);
  }
  // Input clamp alone (k1, [−1, 2]): inside passes, outside is 0, a boundary passes (torch).
  pt::kl_options o;
  o.input_min = -1.0;
  o.input_max = 2.0;
  {
    std::vector<double> l{-5.0, -1.0, 0.5, 2.0, 7.0}, r(5, 0.0), v, g;
    run(est::k1, l, r, o, v, g);
    EXPECT_EQ(v, (std::vector<double>{-1.0, -1.0, 0.5, 2.0, 2.0}));
    EXPECT_EQ(g, (std::vector<double>{0.0, 1.0, 1.0, 1.0, 0.0}));
  }
  // Output clamp alone (k2, value <= 2): value exactly at the bound keeps its gradient.
  pt::kl_options out;
  out.output_min = 0.0;
  out.output_max = 2.0;
  {
    std::vector<double> l{1.0, 2.0, 3.0, -3.0}, r(4, 0.0), v, g;
    run(est::k2, l, r, out, v, g);
    EXPECT_EQ(v, (std::vector<double>{0.5, 2.0, 2.0, 2.0}));
    EXPECT_EQ(g, (std::vector<double>{1.0, 2.0, 0.0, 0.0}));
  }
}

TEST(Kl, HugeLogRatiosStayFinite) {
  const std::vector<double> ds{-1e4, -50.0, 50.0, 1e4};
  const pt::kl_options clamped[] = {pt::kl_conventions::verl(pt::kl_kind::k3),
                                    pt::kl_conventions::openrlhf(),
                                    pt::kl_conventions::open_instruct()};
  for (const auto& o : clamped)
    for (est e : kAll) {
      std::vector<double> l, r(ds.size(), -3.0), v, g;
      for (double d : ds) l.push_back(-3.0 + d);
      run(e, l, r, o, v, g);
      std::vector<float> lf(l.begin(), l.end()), rf(r.begin(), r.end()), vf, gf;
      run(e, lf, rf, o, vf, gf);
      for (std::size_t i = 0; i < ds.size(); ++i) {
        EXPECT_TRUE(std::isfinite(v[i]) && std::isfinite(g[i])) << name(e) << " d=" << ds[i];
        EXPECT_TRUE(std::isfinite(vf[i]) && std::isfinite(gf[i])) << name(e) << " d=" << ds[i];
      }
    }
  // No clamps (TRL): finite everywhere but k3 at d = −1e4, which is +inf (gradient −inf), not NaN.
  for (est e : kAll) {
    std::vector<double> l(ds.begin(), ds.end()), r(ds.size(), 0.0), v, g;
    run(e, l, r, pt::kl_conventions::trl(), v, g);
    for (std::size_t i = 0; i < ds.size(); ++i) {
      EXPECT_FALSE(std::isnan(v[i]) || std::isnan(g[i])) << name(e) << " d=" << ds[i];
      if (!(e == est::k3 && ds[i] == -1e4)) {
        EXPECT_TRUE(std::isfinite(v[i]) && std::isfinite(g[i])) << name(e) << " d=" << ds[i];
      }
    }
  }
  std::vector<double> l{-1e4}, r{0.0}, v, g;
  run(est::k3, l, r, pt::kl_conventions::trl(), v, g);
  EXPECT_EQ(v[0], std::numeric_limits<double>::infinity());
  EXPECT_EQ(g[0], -std::numeric_limits<double>::infinity());
  // d = ±50 is finite for k3 without clamps in float too (e^50 ≈ 5e21).
  std::vector<float> lf{-50.0f, 50.0f}, rf{0.0f, 0.0f}, vf, gf;
  run(est::k3, lf, rf, pt::kl_conventions::trl(), vf, gf);
  EXPECT_NEAR(vf[0] / std::exp(50.0), 1.0, 1e-6);
  EXPECT_FLOAT_EQ(vf[1], 49.0f);
  EXPECT_FLOAT_EQ(gf[1], 1.0f);
}

TEST(Kl, StraightThroughValueOfEstimatorGradientOfK2) {
  using st = pt::kl::straight_through<pt::kl::k3>;
  const auto o = pt::kl_conventions::verl(pt::kl_kind::k3);
  const std::vector<double> ds{-30.0, -3.0, -0.5, 0.0, 0.4, 5.0, 30.0};
  std::vector<double> l(ds.begin(), ds.end()), r(ds.size(), 0.0), v(ds.size()), g(ds.size());
  pt::kl_divergence<st>(pt::exec::host{}, l, r, o, v, g);
  for (std::size_t i = 0; i < ds.size(); ++i) {
    // verl "k3+": forward = clamped low_var_kl, backward = d (unclamped k2), clamps ignored.
    const double x = std::clamp(-ds[i], -20.0, 20.0);
    const double forward = std::clamp(std::exp(x) - x - 1.0, -10.0, 10.0);
    EXPECT_NEAR(v[i], forward, 1e-12 * std::max(1.0, forward)) << ds[i];
    EXPECT_EQ(g[i], ds[i]) << ds[i];
  }
  std::vector<float> lf{-0.25f, 2.0f}, rf{0.0f, 0.0f}, vf(2), gf(2);
  pt::kl_divergence<pt::kl::straight_through<pt::kl::k1>>(pt::exec::host{}, lf, rf,
                                                          pt::kl_options{}, vf, gf);
  EXPECT_EQ(vf, (std::vector<float>{-0.25f, 2.0f}));
  EXPECT_EQ(gf, (std::vector<float>{-0.25f, 2.0f}));
}

TEST(Kl, NoneIsZero) {
  std::vector<double> l{-1.0, 3.0}, r{0.0, 0.0}, v(2, 7.0), g(2, 7.0);
  pt::kl_divergence<pt::kl::none>(pt::exec::host{}, l, r, pt::kl_options{}, v, g);
  EXPECT_EQ(v, (std::vector<double>{0.0, 0.0}));
  EXPECT_EQ(g, (std::vector<double>{0.0, 0.0}));
}

// Peer formulas of algorithms.md §1.5, written as the peers write them (with autograd semantics
// of torch.clamp for the gradient, checked by finite differences of these formulas).
namespace peer {

double verl(est e, double lp, double rp) {
  switch (e) {
    case est::k1: return lp - rp;
    case est::abs: return std::fabs(lp - rp);
    case est::k2: return 0.5 * (lp - rp) * (lp - rp);
    case est::k3: {
      const double x = std::clamp(rp - lp, -20.0, 20.0);
      return std::clamp(std::exp(x) - x - 1.0, -10.0, 10.0);
    }
  }
  return 0;
}

double openrlhf(est e, double lp, double rp) {
  double r = lp - rp;
  if (e == est::k2) r = r * r / 2.0;
  if (e == est::k3) {
    r = -r;
    r = std::exp(r) - 1.0 - r;
  }
  return std::clamp(r, -10.0, 10.0);
}

double trl(est e, double lp, double rp) {
  if (e == est::k3) return std::exp(rp - lp) - (rp - lp) - 1.0;  // GRPO loss
  return lp - rp;                                                  // PPO reward k1
}

double open_instruct(est e, double lp, double rp) {
  const double d = std::clamp(lp - rp, -40.0, 40.0);
  switch (e) {
    case est::k1: return d;
    case est::k2: return 0.5 * d * d;
    case est::k3: return std::expm1(-d) + d;
    default: return 0;
  }
}

}  // namespace peer

TEST(Kl, PresetsMatchPeerFormulas) {
  struct preset {
    const char* peer;
    pt::kl_options options;
    double (*formula)(est, double, double);
    std::vector<est> estimators;
  };
  const std::vector<preset> presets{
      {"verl k1", pt::kl_conventions::verl(pt::kl_kind::k1), peer::verl, {est::k1}},
      {"verl abs", pt::kl_conventions::verl(pt::kl_kind::abs), peer::verl, {est::abs}},
      {"verl k2", pt::kl_conventions::verl(pt::kl_kind::k2), peer::verl, {est::k2}},
      {"verl k3", pt::kl_conventions::verl(pt::kl_kind::k3), peer::verl, {est::k3}},
      {"openrlhf", pt::kl_conventions::openrlhf(), peer::openrlhf, {est::k1, est::k2, est::k3}},
      {"trl", pt::kl_conventions::trl(), peer::trl, {est::k1, est::k3}},
      {"open-instruct", pt::kl_conventions::open_instruct(), peer::open_instruct,
       {est::k1, est::k2, est::k3}},
  };
  const std::vector<double> ds{-45.0, -25.0, -12.0, -4.7, -2.9, -1.1, -0.37, -0.02, 0.08,
                               0.6,   1.9,   3.3,   9.0,  14.5, 21.0, 28.0,  41.5};
  for (const auto& p : presets)
    for (est e : p.estimators)
      for (double d : ds) {
        const double rp = -1.75, lp = rp + d;
        std::vector<double> l{lp}, r{rp}, v, g;
        run(e, l, r, p.options, v, g);
        const double want = p.formula(e, lp, rp);
        if (std::isinf(want)) continue;  // TRL k3 at very negative d overflows like the peer
        EXPECT_NEAR(v[0], want, 1e-12 * std::max(1.0, std::fabs(want)))
            << p.peer << " " << name(e) << " d=" << d;
        const double h = 1e-6;
        const double fd = (p.formula(e, lp + h, rp) - p.formula(e, lp - h, rp)) / (2 * h);
        EXPECT_NEAR(g[0], fd, 1e-6 * std::max(1.0, std::fabs(fd)))
            << p.peer << " " << name(e) << " grad d=" << d;
      }
}

TEST(Kl, NanInputsPropagateWithoutThrowing) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> l{nan, -1.0, 0.5}, r{0.0, nan, 0.0}, v, g;
  for (est e : kAll) {
    ASSERT_NO_THROW(run(e, l, r, pt::kl_conventions::verl(pt::kl_kind::k3), v, g));
    EXPECT_TRUE(std::isnan(v[0]) && std::isnan(v[1])) << name(e);
    EXPECT_FALSE(std::isnan(v[2])) << name(e);
    if (e != est::k1) {
      EXPECT_TRUE(std::isnan(g[0]) && std::isnan(g[1])) << name(e);
    }
  }
}

TEST(Kl, ValueOnlyAndInPlace) {
  std::vector<double> l{-1.0, -0.5, 0.2}, r{-0.7, -0.9, 0.1}, v(3), want, g;
  run(est::k3, l, r, pt::kl_options{}, want, g);
  pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, l, r, pt::kl_options{}, v);
  EXPECT_EQ(v, want);
  // The value may overwrite the policy log-probs.
  std::vector<double> in_place = l;
  pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, in_place, r, pt::kl_options{},
                                std::span<double>(in_place));
  EXPECT_EQ(in_place, want);
  // Empty input.
  std::vector<float> e;
  EXPECT_NO_THROW(pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, e, e, pt::kl_options{},
                                                std::span<float>(e), std::span<float>(e)));
}

TEST(Kl, ValidationThrowsAndLeavesOutputsUntouched) {
  const std::vector<float> l{-1.0f, -2.0f, -3.0f}, r{-1.0f, -1.0f, -1.0f}, short_r{-1.0f};
  std::vector<float> v(3, 42.0f), g(3, 43.0f), short_g(2, 43.0f);
  const auto untouched = [&] {
    EXPECT_EQ(v, std::vector<float>(3, 42.0f));
    EXPECT_EQ(g, std::vector<float>(3, 43.0f));
  };
  using k3 = pt::kl::k3;
  const pt::exec::host h;
  EXPECT_THROW(pt::kl_divergence<k3>(h, l, short_r, {}, v, g), pt::error);
  untouched();
  std::vector<float> short_v(2, 42.0f);
  EXPECT_THROW(pt::kl_divergence<k3>(h, l, r, {}, short_v, g), pt::error);
  EXPECT_EQ(short_v, std::vector<float>(2, 42.0f));
  untouched();
  EXPECT_THROW(pt::kl_divergence<k3>(h, l, r, {}, v, short_g), pt::error);
  EXPECT_EQ(short_g, std::vector<float>(2, 43.0f));
  untouched();
  EXPECT_THROW(pt::kl_divergence<k3>(h, l, r, {}, v, std::span<float>(v)), pt::error);
  untouched();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (int which = 0; which < 4; ++which) {
    pt::kl_options o;
    (which == 0 ? o.input_min : which == 1 ? o.input_max : which == 2 ? o.output_min
                                                                      : o.output_max) = nan;
    EXPECT_THROW(pt::kl_divergence<k3>(h, l, r, o, v, g), pt::error) << which;
    untouched();
  }
  pt::kl_options lo_gt_hi;
  lo_gt_hi.input_min = 1.0;
  lo_gt_hi.input_max = -1.0;
  EXPECT_THROW(pt::kl_divergence<k3>(h, l, r, lo_gt_hi, v, g), pt::error);
  untouched();
  pt::kl_options out_lo_gt_hi;
  out_lo_gt_hi.output_min = 0.5;
  out_lo_gt_hi.output_max = 0.25;
  EXPECT_THROW(pt::kl_divergence<k3>(h, l, r, out_lo_gt_hi, v, g), pt::error);
  untouched();
  // The message names the function and the argument.
  try {
    pt::kl_divergence<k3>(h, l, short_r, {}, v, g);
  } catch (const pt::error& err) {
    EXPECT_NE(std::string(err.what()).find("kl_divergence"), std::string::npos);
    EXPECT_NE(std::string(err.what()).find("ref_logprob"), std::string::npos);
  }
  // Equal bounds are allowed (a constant clamp), as are infinite ones.
  pt::kl_options eq;
  eq.input_min = eq.input_max = 0.5;
  EXPECT_NO_THROW(pt::kl_divergence<k3>(h, l, r, eq, v, g));
}

// k3 on the host goes through blocks of 128 tokens (backend/cpu/kl.hpp): a vector exp, both the
// series and the closed form, selects. The tests below pin what the blocks must not change.
namespace {

// The per-token scalar formula (libm exp, branch between series and closed form).
template <class E, class T>
void scalar_element(const pt::kl_options& o, T d, T& v, T& g) {
  const pt::detail::kl_element<E, T> el{
      pt::detail::kl_bound<T>(o.input_min), pt::detail::kl_bound<T>(o.input_max),
      pt::detail::kl_bound<T>(o.output_min), pt::detail::kl_bound<T>(o.output_max)};
  el.value_and_grad(d, v, g);
}

// Log-ratios over series and closed form, both signs, a few ±30 outliers.
template <class T>
std::vector<T> mixed_diffs(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-3.0, 3.0);
  std::vector<T> d(n);
  for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<T>(i % 37 == 5 ? 10.0 * u(rng) : u(rng));
  return d;
}

template <class T>
void check_tail_sizes(double rel) {
  const pt::kl_options o = pt::kl_conventions::verl(pt::kl_kind::k3);
  for (std::size_t n : {1u, 2u, 7u, 127u, 128u, 129u, 255u, 300u}) {
    const auto lp = mixed_diffs<T>(n, 11u + static_cast<unsigned>(n));
    const std::vector<T> rp(n, T(0));
    std::vector<T> v(n), g(n), v_only(n);
    pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, lp, rp, o, v, g);
    pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, lp, rp, o, v_only);
    for (std::size_t i = 0; i < n; ++i) {
      const long double d = lp[i];
      const std::string at = "n=" + std::to_string(n) + " i=" + std::to_string(i) +
                             " d=" + std::to_string(static_cast<double>(d));
      // float64 reference of verl's clamped k3 and its clamp-aware gradient.
      const long double dc = std::clamp(d, -20.0L, 20.0L);
      const long double raw = std::exp(-dc) - 1.0L + dc;
      const long double want_v = std::clamp(raw, -10.0L, 10.0L);
      const long double want_g = (d < -20 || d > 20 || raw > 10) ? 0.0L : 1.0L - std::exp(-dc);
      expect_close(v[i], want_v, rel, "value " + at);
      expect_close(g[i], want_g, rel, "grad " + at);
      EXPECT_EQ(v_only[i], v[i]) << at;
      // The same token alone (a tail of one, padded) gives the same bits: no dependence on N or
      // on the token's position in its block.
      std::vector<T> l1{lp[i]}, r1{T(0)}, v1(1), g1(1);
      pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, l1, r1, o, v1, g1);
      EXPECT_EQ(v1[0], v[i]) << at;
      EXPECT_EQ(g1[0], g[i]) << at;
    }
  }
}

}  // namespace

TEST(Kl, K3BlockTailsDouble) { check_tail_sizes<double>(2e-15); }
TEST(Kl, K3BlockTailsFloat) { check_tail_sizes<float>(2.4e-7); }

TEST(Kl, K3BlocksAtTheSeriesSwitch) {
  // Both sides of |d| = 1/2, a few ulp apart, both signs, through kl_divergence (blocks). Double:
  // the tolerances of K3KeepsRelativePrecisionForTinyDifferences; float is evaluated in double and
  // rounded once, so within 1 ulp (2^-23 relative) on both sides.
  auto series = [](long double d, int first) {  // Σ_{n>=first} −(−d)^n/n! · (first == 2 ? −1 : 1)
    long double term = first == 2 ? d * d / 2 : d, sum = 0;
    for (int k = first; k < first + 60; ++k) {
      sum += term;
      term *= -d / (k + 1);
    }
    return sum;
  };
  std::vector<double> ds;
  for (double s : {-1.0, 1.0})
    for (int ulps = -3; ulps <= 3; ++ulps) {
      double d = 0.5;
      for (int k = 0; k < std::abs(ulps); ++k) d = std::nextafter(d, ulps < 0 ? 0.0 : 1.0);
      ds.push_back(s * d);
    }
  std::vector<float> dsf;
  for (double s : {-1.0f, 1.0f})
    for (int ulps = -3; ulps <= 3; ++ulps) {
      float d = 0.5f;
      for (int k = 0; k < std::abs(ulps); ++k) d = std::nextafter(d, ulps < 0 ? 0.0f : 1.0f);
      dsf.push_back(static_cast<float>(s) * d);
    }
  const std::vector<double> zero(ds.size(), 0.0);
  std::vector<double> v(ds.size()), g(ds.size());
  pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, ds, zero, pt::kl_options{}, v, g);
  for (std::size_t i = 0; i < ds.size(); ++i) {
    const long double sv = series(ds[i], 2), sg = series(ds[i], 1);
    const double tol = std::fabs(ds[i]) <= 0.5 ? 4e-16 : 3e-15;
    EXPECT_NEAR(v[i], static_cast<double>(sv), tol * static_cast<double>(sv)) << ds[i];
    EXPECT_NEAR(g[i], static_cast<double>(sg), 4e-16 * std::fabs(static_cast<double>(sg))) << ds[i];
  }
  const std::vector<float> zerof(dsf.size(), 0.0f);
  std::vector<float> vf(dsf.size()), gf(dsf.size());
  pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, dsf, zerof, pt::kl_options{}, vf, gf);
  for (std::size_t i = 0; i < dsf.size(); ++i) {
    const long double sv = series(dsf[i], 2), sg = series(dsf[i], 1);
    EXPECT_NEAR(vf[i], static_cast<double>(sv), 0x1p-23 * static_cast<double>(sv)) << dsf[i];
    EXPECT_NEAR(gf[i], static_cast<double>(sg), 0x1p-23 * std::fabs(static_cast<double>(sg)))
        << dsf[i];
  }
}

namespace {

// Blocks agree with the scalar formula: the same infinities, NaNs and zero gradients, and finite
// values within rel (the exps differ in the last bits).
template <class E, class T>
void check_against_scalar(const std::vector<T>& ds, const pt::kl_options& o, double rel,
                          const std::string& what) {
  const std::vector<T> zero(ds.size(), T(0));
  std::vector<T> v(ds.size()), g(ds.size());
  pt::kl_divergence<E>(pt::exec::host{}, ds, zero, o, v, g);
  for (std::size_t i = 0; i < ds.size(); ++i) {
    T sv, sg;
    scalar_element<E>(o, ds[i], sv, sg);
    const std::string at = what + " i=" + std::to_string(i) + " d=" + std::to_string(ds[i]);
    for (auto [got, want, name] : {std::tuple{v[i], sv, "value"}, std::tuple{g[i], sg, "grad"}}) {
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(got)) << name << " " << at;
      } else if (std::isinf(want) || want == T(0)) {
        EXPECT_EQ(got, want) << name << " " << at;
      } else {
        EXPECT_NEAR(got, want, rel * std::fabs(static_cast<double>(want))) << name << " " << at;
      }
    }
  }
}

template <class T>
std::vector<T> huge_diffs() {
  const T inf = std::numeric_limits<T>::infinity();
  std::vector<T> ds;
  for (double d : {1e4, 710.0, 709.7, 709.0, 100.0, 89.0, 88.8, 88.7, 88.0, 45.0, 20.5, 20.0})
    for (double s : {-1.0, 1.0}) ds.push_back(static_cast<T>(s * d));
  ds.push_back(inf);
  ds.push_back(-inf);
  ds.push_back(std::numeric_limits<T>::max());
  ds.push_back(std::numeric_limits<T>::lowest());
  return ds;
}

}  // namespace

TEST(Kl, K3BlocksHugeLogRatiosLikeScalar) {
  const pt::kl_options presets[] = {pt::kl_conventions::trl(),
                                    pt::kl_conventions::verl(pt::kl_kind::k3),
                                    pt::kl_conventions::openrlhf(),
                                    pt::kl_conventions::open_instruct()};
  const char* names[] = {"trl (no clamps)", "verl", "openrlhf", "open-instruct"};
  for (int p = 0; p < 4; ++p) {
    check_against_scalar<pt::kl::k3>(huge_diffs<double>(), presets[p], 4e-15,
                                     std::string(names[p]) + " double");
    check_against_scalar<pt::kl::k3>(huge_diffs<float>(), presets[p], 2.4e-7,
                                     std::string(names[p]) + " float");
    check_against_scalar<pt::kl::straight_through<pt::kl::k3>>(
        huge_diffs<double>(), presets[p], 4e-15, std::string(names[p]) + " k3+ double");
  }
  // Without clamps k3 overflows where e^{−d} does in the input type: +inf with gradient −inf.
  const std::vector<float> lf{-89.0f, -88.0f}, rf{0.0f, 0.0f};
  std::vector<float> vf(2), gf(2);
  pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, lf, rf, pt::kl_options{}, vf, gf);
  EXPECT_EQ(vf[0], std::numeric_limits<float>::infinity());
  EXPECT_EQ(gf[0], -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isfinite(vf[1]) && std::isfinite(gf[1]));
  const std::vector<double> ld{-710.0, -709.0}, rd{0.0, 0.0};
  std::vector<double> vd(2), gd(2);
  pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, ld, rd, pt::kl_options{}, vd, gd);
  EXPECT_EQ(vd[0], std::numeric_limits<double>::infinity());
  EXPECT_EQ(gd[0], -std::numeric_limits<double>::infinity());
  EXPECT_NEAR(vd[1] / std::exp(709.0), 1.0, 4e-15);
}

TEST(Kl, K3BlocksKeepNanAndInfToTheirTokens) {
  // Non-finite log-probs (e.g. of padding a mask drops later) in the middle of a block: they give
  // what the scalar formula gives and leave every other token of the block bit-identical.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::size_t n = 300;
  const auto clean = mixed_diffs<double>(n, 5);
  auto dirty = clean;
  const std::size_t bad[] = {0, 3, 64, 127, 128, 200, 299};
  const double bad_values[] = {nan, inf, -inf, nan, -inf, inf, nan};
  for (std::size_t k = 0; k < std::size(bad); ++k) dirty[bad[k]] = bad_values[k];
  for (const auto& o : {pt::kl_conventions::trl(), pt::kl_conventions::verl(pt::kl_kind::k3)}) {
    const std::vector<double> zero(n, 0.0);
    std::vector<double> vc(n), gc(n), vd(n), gd(n);
    pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, clean, zero, o, vc, gc);
    pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, dirty, zero, o, vd, gd);
    for (std::size_t i = 0; i < n; ++i) {
      if (std::find(std::begin(bad), std::end(bad), i) != std::end(bad)) continue;
      EXPECT_EQ(vd[i], vc[i]) << i;
      EXPECT_EQ(gd[i], gc[i]) << i;
    }
    check_against_scalar<pt::kl::k3>(dirty, o, 4e-15, "dirty block");
    std::vector<float> dirtyf(dirty.begin(), dirty.end());
    // The scalar float formula itself is within ~12 ulp just past |d| = 1/2 (see above).
    check_against_scalar<pt::kl::k3>(dirtyf, o, 1.5e-6, "dirty float block");
  }
}
