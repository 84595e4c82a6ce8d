// Tests for ops/kl.hpp: every estimator against naive float64 formulas, finite-difference
// gradients, clamps (active, inactive, boundaries), huge log-ratios, straight-through, the peer
// presets against the formulas of algorithms.md §1.5, NaN propagation, validation.
#include "posttrain/ops/kl.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
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
