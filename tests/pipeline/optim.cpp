// optim::adamw and optim::clip_grad_norm against float64 references written here from the
// formulas of torch.optim.AdamW and torch.nn.utils.clip_grad_norm_.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include <posttrain/optim/adamw.hpp>
#include <posttrain/optim/clip.hpp>

namespace pt = posttrain;

namespace {

// torch AdamW, literally (long double, so the comparison measures the library's rounding).
struct adamw_ref {
  long double lr, b1, b2, eps, wd;
  std::vector<long double> m, v;
  int t = 0;
  void step(std::vector<long double>& p, const std::vector<long double>& g) {
    if (m.empty()) m.assign(p.size(), 0), v.assign(p.size(), 0);
    ++t;
    for (std::size_t i = 0; i < p.size(); ++i) {
      p[i] *= 1 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const long double mh = m[i] / (1 - std::pow(b1, (long double)t));
      const long double vh = v[i] / (1 - std::pow(b2, (long double)t));
      p[i] -= lr * mh / (std::sqrt(vh) + eps);
    }
  }
};

}  // namespace

TEST(AdamW, MatchesFloat64ReferenceOverSteps) {
  pt::optim::adamw_options o{0.01, 0.9, 0.95, 1e-8, 0.1};
  pt::optim::adamw opt(o);
  adamw_ref ref{0.01L, 0.9L, 0.95L, 1e-8L, 0.1L, {}, {}};
  std::vector<double> p{0.5, -1.0, 2.0, 0.0, 3e-3};
  std::vector<long double> pr(p.begin(), p.end());
  for (int s = 0; s < 7; ++s) {
    std::vector<double> g{0.1 * s - 0.3, 1.0, -2.0 + s, 1e-4, 0.0};
    std::vector<long double> gr(g.begin(), g.end());
    opt.step(std::span<double>(p), std::span<const double>(g));
    ref.step(pr, gr);
    for (std::size_t i = 0; i < p.size(); ++i)
      EXPECT_NEAR(p[i], static_cast<double>(pr[i]), 1e-14) << "step " << s << " i " << i;
  }
  EXPECT_EQ(opt.steps(), 7);
}

TEST(AdamW, FirstStepMovesByLrTimesSignWithoutDecay) {
  // Bias correction makes the first update lr·g/(|g| + ε) ≈ lr·sign(g) (the textbook check).
  pt::optim::adamw opt({0.1, 0.9, 0.999, 1e-12, 0.0});
  std::vector<float> p{1.0f, 1.0f};
  std::vector<float> g{3.0f, -0.5f};
  opt.step(std::span<float>(p), std::span<const float>(g));
  EXPECT_NEAR(p[0], 0.9f, 1e-6);
  EXPECT_NEAR(p[1], 1.1f, 1e-6);
}

TEST(AdamW, DecayIsDecoupledFromTheGradient) {
  // Zero gradient: only the decay acts, θ·(1 − lr·λ), whatever the moments.
  pt::optim::adamw opt({0.1, 0.9, 0.999, 1e-8, 0.5});
  std::vector<double> p{2.0}, g{0.0};
  opt.step(std::span<double>(p), std::span<const double>(g));
  EXPECT_DOUBLE_EQ(p[0], 2.0 * (1 - 0.1 * 0.5));
}

TEST(AdamW, BadInputLeavesParametersAndStateUntouched) {
  pt::optim::adamw opt;
  std::vector<double> p{1.0, 2.0}, g{0.5, 0.5};
  opt.step(std::span<double>(p), std::span<const double>(g));
  const auto before = p;
  std::vector<double> nan_g{0.5, std::nan("")};
  EXPECT_THROW(opt.step(std::span<double>(p), std::span<const double>(nan_g)), pt::error);
  std::vector<double> short_g{0.5};
  EXPECT_THROW(opt.step(std::span<double>(p), std::span<const double>(short_g)), pt::error);
  std::vector<double> p3{1, 2, 3}, g3{1, 1, 1};
  EXPECT_THROW(opt.step(std::span<double>(p3), std::span<const double>(g3)), pt::error);
  opt.options().beta1 = 1.0;
  EXPECT_THROW(opt.step(std::span<double>(p), std::span<const double>(g)), pt::error);
  EXPECT_EQ(p, before);
  EXPECT_EQ(opt.steps(), 1);
}

TEST(AdamW, RestoredStateContinuesBitForBit) {
  // Two steps, save, restore into a fresh optimizer: its next steps equal the uninterrupted ones.
  std::vector<float> a{0.5f, -1.0f, 2.0f}, b;
  const std::vector<float> g1{0.1f, -0.3f, 0.7f}, g2{-0.2f, 0.05f, 0.4f}, g3{0.3f, 0.3f, -0.1f};
  pt::optim::adamw full({.lr = 0.01, .weight_decay = 0.1});
  full.step(std::span<float>(a), std::span<const float>(g1));
  full.step(std::span<float>(a), std::span<const float>(g2));
  b = a;
  pt::optim::adamw resumed({.lr = 0.01, .weight_decay = 0.1});
  const std::vector<double> m(full.first_moment().begin(), full.first_moment().end()),
      v(full.second_moment().begin(), full.second_moment().end());
  resumed.restore(m, v, full.steps());
  full.step(std::span<float>(a), std::span<const float>(g3));
  resumed.step(std::span<float>(b), std::span<const float>(g3));
  EXPECT_EQ(a, b);
  EXPECT_EQ(resumed.steps(), 3);
  EXPECT_THROW(resumed.restore(m, std::vector<double>{1.0}, 2), pt::error);
  EXPECT_THROW(resumed.restore({}, {}, 2), pt::error);
}

TEST(ClipGradNorm, GlobalNormOverViewsMatchesReference) {
  std::vector<double> a{3.0, 4.0}, b{12.0};
  const double norm = pt::optim::clip_grad_norm<double>({std::span<double>(a), std::span<double>(b)}, 6.5);
  EXPECT_DOUBLE_EQ(norm, 13.0);
  const double c = 6.5 / (13.0 + 1e-6);
  EXPECT_DOUBLE_EQ(a[0], 3.0 * c);
  EXPECT_DOUBLE_EQ(a[1], 4.0 * c);
  EXPECT_DOUBLE_EQ(b[0], 12.0 * c);
  EXPECT_NEAR(pt::optim::grad_norm<double>({std::span<double>(a), std::span<double>(b)}), 6.5, 1e-6);
}

TEST(ClipGradNorm, BelowTheLimitOrInfiniteLimitIsUnchanged) {
  std::vector<float> g{0.3f, -0.4f};
  EXPECT_NEAR(pt::optim::clip_grad_norm(std::span<float>(g), 1.0), 0.5, 1e-7);
  EXPECT_EQ(g[0], 0.3f);
  EXPECT_NEAR(pt::optim::clip_grad_norm(std::span<float>(g), std::numeric_limits<double>::infinity()), 0.5, 1e-7);
  EXPECT_EQ(g[1], -0.4f);
}

TEST(ClipGradNorm, NonFiniteNormOrBadLimitThrowsWithoutWriting) {
  std::vector<double> g{1e300, 1e300, std::nan("")};
  const auto before = g;
  EXPECT_THROW(pt::optim::clip_grad_norm(std::span<double>(g), 1.0), pt::error);
  std::vector<double> h{1.0};
  EXPECT_THROW(pt::optim::clip_grad_norm(std::span<double>(h), 0.0), pt::error);
  EXPECT_THROW(pt::optim::clip_grad_norm(std::span<double>(h), std::nan("")), pt::error);
  EXPECT_EQ(h[0], 1.0);
  EXPECT_TRUE(std::isnan(g[2]) && g[0] == before[0]);
}
