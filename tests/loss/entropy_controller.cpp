// loss::adaptive_entropy_controller (TRL GRPO use_adaptive_entropy) and fixed_entropy_controller:
// a naive float64 simulation of TRL's update over entropy sequences, the clamps at min/max, the
// applied coefficient switching off above target, world_entropy, presets, the controller feeding
// policy_gradient_options::entropy_coef, and bad input leaving the state untouched.
#include "posttrain/loss/policy_gradient/entropy_controller.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "posttrain/core/error.hpp"
#include "posttrain/loss/policy_gradient/parts.hpp"

namespace {

namespace pt = posttrain;
using pt::loss::adaptive_entropy_controller;

// TRL GRPOTrainer._compute_loss, transcribed: returns the coefficient applied at every step
// (before that step's update), then updates.
struct naive_trl {
  double coef, delta, target, lo, hi, last;
  double applied() const { return last <= target ? coef : 0.0; }
  void step(double h) {
    if (h <= target)
      coef = std::min(coef + delta, hi);
    else
      coef = std::max(coef - delta, lo);
    last = h;
  }
};

// Bitwise, so that a NaN field compares equal to itself.
void expect_same_state(const adaptive_entropy_controller& a, const adaptive_entropy_controller& b) {
  const double x[6] = {a.value, a.delta, a.target, a.min, a.max, a.last_entropy};
  const double y[6] = {b.value, b.delta, b.target, b.min, b.max, b.last_entropy};
  EXPECT_EQ(std::memcmp(x, y, sizeof x), 0);
}

TEST(EntropyController, MatchesNaiveTrlOverRandomEntropies) {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> h(0.0, 0.45);
  for (double coef0 : {0.0, 0.01, 0.5, 0.998}) {
    auto c = pt::loss::entropy_controller_conventions::trl_adaptive(coef0);
    naive_trl n{coef0, 0.005, 0.2, 0.0, 1.0, 0.0};
    for (int step = 0; step < 400; ++step) {
      ASSERT_EQ(c.applied(), n.applied()) << step;
      const double x = h(rng);
      c.update(x);
      n.step(x);
      ASSERT_NEAR(c.value, n.coef, 1e-15) << step;
      ASSERT_EQ(c.last_entropy, x);
      ASSERT_GE(c.value, 0.0);
      ASSERT_LE(c.value, 1.0);
    }
  }
}

TEST(EntropyController, ClampsAtBoundsAndSwitchesOffAboveTarget) {
  adaptive_entropy_controller c{.value = 0.99, .delta = 0.005, .target = 0.2};
  EXPECT_EQ(c.applied(), 0.99);               // last_entropy starts at 0 <= target
  for (int i = 0; i < 5; ++i) c.update(0.1);  // low entropy: coefficient rises to max
  EXPECT_EQ(c.value, 1.0);
  EXPECT_EQ(c.applied(), 1.0);
  c.update(0.2);  // H_w == target counts as "at or below": still rises (clamped)
  EXPECT_EQ(c.value, 1.0);
  EXPECT_EQ(c.applied(), 1.0);
  c.update(0.3);  // above target: decays and the bonus is off
  EXPECT_NEAR(c.value, 0.995, 1e-15);
  EXPECT_EQ(c.applied(), 0.0);
  for (int i = 0; i < 300; ++i) c.update(5.0);
  EXPECT_EQ(c.value, 0.0);  // clamped at min
  EXPECT_EQ(c.applied(), 0.0);
  c.update(0.0);
  EXPECT_NEAR(c.applied(), 0.005, 1e-18);

  adaptive_entropy_controller off{.value = 0.3,
                                  .last_entropy = std::numeric_limits<double>::infinity()};
  EXPECT_EQ(off.applied(), 0.0);  // start with the bonus off

  // Custom bounds, a zero step: value never moves.
  adaptive_entropy_controller z{.value = 0.4, .delta = 0.0, .target = 1.0, .min = 0.1, .max = 0.5};
  z.update(0.5);
  z.update(2.0);
  EXPECT_EQ(z.value, 0.4);
  // A value outside [min, max] is pulled in by one step's clamp.
  adaptive_entropy_controller out{.value = 3.0, .delta = 0.01, .min = 0.0, .max = 1.0};
  out.update(0.0);
  EXPECT_EQ(out.value, 1.0);
}

TEST(EntropyController, WorldEntropyAndPresets) {
  EXPECT_EQ(adaptive_entropy_controller::world_entropy(3.0, 12.0), 0.25);
  EXPECT_EQ(adaptive_entropy_controller::world_entropy(0.0, 0.0), 0.0);  // no tokens: 0
  EXPECT_EQ(adaptive_entropy_controller::world_entropy(0.6, 0.5), 0.6);  // max(count, 1)
  // Two ranks, two micro-batches each: the sums add before the division (not a mean of means).
  const double sums[4] = {1.0, 2.0, 0.5, 4.0}, counts[4] = {4, 10, 1, 25};
  double s = 0, n = 0;
  for (int i = 0; i < 4; ++i) s += sums[i], n += counts[i];
  EXPECT_NEAR(adaptive_entropy_controller::world_entropy(s, n), 7.5 / 40.0, 1e-16);

  const auto t = pt::loss::entropy_controller_conventions::trl_adaptive(0.01);
  EXPECT_EQ(t.value, 0.01);
  EXPECT_EQ(t.delta, 0.005);
  EXPECT_EQ(t.target, 0.2);
  EXPECT_EQ(t.min, 0.0);
  EXPECT_EQ(t.max, 1.0);
  const adaptive_entropy_controller d{};
  EXPECT_EQ(d.value, 0.0);  // TRL entropy_coef default
  pt::loss::fixed_entropy_controller f{.value = 0.02};
  f.update(10.0);
  EXPECT_EQ(f.applied(), 0.02);
  EXPECT_EQ(pt::loss::entropy_controller_conventions::fixed.applied(), 0.0);

  // The controller feeds the policy loss's entropy coefficient.
  pt::policy_gradient_options o;
  adaptive_entropy_controller c = pt::loss::entropy_controller_conventions::trl_adaptive(0.1);
  c.update(0.05);
  o.entropy_coef = c.applied();
  EXPECT_NEAR(o.entropy_coef, 0.105, 1e-15);
}

TEST(EntropyController, BadInputThrowsAndLeavesStateUntouched) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const adaptive_entropy_controller good{.value = 0.3, .last_entropy = 0.1};
  auto expect_rejected = [&](adaptive_entropy_controller c, double h) {
    const adaptive_entropy_controller before = c;
    EXPECT_THROW(c.update(h), pt::error);
    expect_same_state(c, before);
  };
  expect_rejected(good, nan);
  expect_rejected(good, inf);
  auto c = good;
  c.value = nan;
  expect_rejected(c, 0.1);
  c = good;
  c.delta = -0.1;
  expect_rejected(c, 0.1);
  c = good;
  c.target = nan;
  expect_rejected(c, 0.1);
  c = good;
  c.min = 0.6;
  c.max = 0.5;
  expect_rejected(c, 0.1);
  c = good;
  c.max = inf;
  expect_rejected(c, 0.1);
  EXPECT_THROW(adaptive_entropy_controller::world_entropy(nan, 1.0), pt::error);
  EXPECT_THROW(adaptive_entropy_controller::world_entropy(1.0, -1.0), pt::error);
  try {
    c = good;
    c.update(nan);
  } catch (const pt::error& e) {
    EXPECT_NE(std::string(e.what()).find("world_entropy"), std::string::npos) << e.what();
  }
}

}  // namespace
