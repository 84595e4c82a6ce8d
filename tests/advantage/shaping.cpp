// Tests of advantage/shaping.hpp: KL in the reward (token and sequence level), KL controllers,
// overlong / stop-properly / missing-EOS penalties, reward clipping, truncated-row masking.
#include "posttrain/advantage/shaping.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"

namespace pt = posttrain;
namespace adv = posttrain::advantage;

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
using vec = std::vector<double>;
using offs = std::vector<pt::index_t>;
}  // namespace

TEST(KlInReward, TokenLevelK1AndVerlControllerStatistic) {
  const vec r = {0.0, 0.0, 1.0, kNaN, 0.0, 2.0};
  const vec old = {-1.0, -2.0, -0.5, kNaN, -1.5, -0.25};
  const vec ref = {-1.5, -1.0, -0.5, kNaN, -1.0, -1.25};
  const std::vector<float> m = {1, 1, 1, 0, 1, 1};
  const offs so = {0, 3, 3, 6};  // an empty middle row
  vec out(6), kl(6);
  const double beta = 0.1;
  const auto s = adv::kl_in_reward<pt::kl::k1>(pt::exec::host{}, r, old, ref, m, so, beta,
                                               pt::kl_options{}, out, kl);
  for (int t : {0, 1, 2, 4, 5}) {
    EXPECT_NEAR(kl[t], old[t] - ref[t], 1e-15);
    EXPECT_NEAR(out[t], r[t] - beta * (old[t] - ref[t]), 1e-15);
  }
  EXPECT_TRUE(std::isnan(out[3]));  // masked: the reward passes through unchanged
  EXPECT_EQ(kl[3], 0.0);
  const double row0 = (0.5 - 1.0 + 0.0) / (3 + 1e-8), row2 = (-0.5 + 1.0) / (2 + 1e-8);
  EXPECT_NEAR(s.sequence_mean, (row0 + 0.0 + row2) / 3.0, 1e-15);
  EXPECT_NEAR(s.token_mean, (0.5 - 1.0 + 0.0 - 0.5 + 1.0) / 5.0, 1e-15);
  EXPECT_EQ(s.count, 5.0);
}

TEST(KlInReward, K3WithVerlClampsAndFloat) {
  const std::vector<float> r(4, 0.0f), old = {-1.0f, -30.0f, -2.0f, 0.0f},
                                       ref = {-2.0f, -1.0f, -2.5f, -0.5f};
  std::vector<float> out(4);
  adv::kl_in_reward<pt::kl::k3>(pt::exec::host{}, r, old, ref, {}, offs{0, 4}, 1.0,
                                pt::kl_conventions::verl(pt::kl_kind::k3), out);
  for (int t = 0; t < 4; ++t) {
    double x = std::clamp(double(ref[t]) - double(old[t]), -20.0, 20.0);
    const double k3 = std::clamp(std::exp(x) - x - 1, -10.0, 10.0);
    EXPECT_NEAR(out[t], -k3, 1e-6) << t;
  }
  EXPECT_NEAR(out[1], -10.0, 1e-6);  // value clamp
}

TEST(KlInReward, SequenceLevelTrlRloo) {
  const vec R = {1.0, kNaN, 0.5};
  const vec old = {-1.0, -2.0, -0.5, -1.5, -0.25};
  const vec ref = {-1.5, -1.0, -0.5, -1.0, -1.25};
  const std::vector<float> m = {1, 0, 1, 1, 1};
  const offs so = {0, 2, 4, 5};
  vec out(3);
  adv::sequence_kl_penalty(pt::exec::host{}, R, old, ref, m, so, 0.05, out);
  EXPECT_NEAR(out[0], 1.0 - 0.05 * 0.5, 1e-15);
  EXPECT_TRUE(std::isnan(out[1]));
  EXPECT_NEAR(out[2], 0.5 - 0.05 * 1.0, 1e-15);
}

TEST(KlInReward, Validation) {
  const vec r = {0, 0}, lp = {0, 0}, short_lp = {0};
  vec out(2, 5.0), kl(2, 5.0);
  const offs so = {0, 2};
  const pt::exec::host h;
  EXPECT_THROW(adv::kl_in_reward<pt::kl::k1>(h, r, lp, lp, {}, so, -1.0, {}, out), pt::error);
  EXPECT_THROW(adv::kl_in_reward<pt::kl::k1>(h, r, lp, lp, {}, so, kNaN, {}, out), pt::error);
  EXPECT_THROW(adv::kl_in_reward<pt::kl::k1>(h, r, lp, short_lp, {}, so, 0.1, {}, out), pt::error);
  EXPECT_THROW(adv::kl_in_reward<pt::kl::k1>(h, r, lp, lp, {}, offs{0, 1}, 0.1, {}, out),
               pt::error);
  EXPECT_THROW(adv::kl_in_reward<pt::kl::k1>(h, r, lp, lp, {}, so, 0.1, {}, out, out), pt::error);
  pt::kl_options bad;
  bad.output_min = 1;
  bad.output_max = 0;
  EXPECT_THROW(adv::kl_in_reward<pt::kl::k1>(h, r, lp, lp, {}, so, 0.1, bad, out), pt::error);
  EXPECT_THROW(adv::sequence_kl_penalty(h, vec{0, 0}, lp, lp, {}, so, 0.1, out), pt::error);
  for (double v : out) EXPECT_EQ(v, 5.0);
}

TEST(KlController, AdaptiveFollowsZiegler) {
  adv::adaptive_kl_controller c = adv::kl_controller_conventions::verl_adaptive;
  EXPECT_EQ(c.value, 0.001);
  c.update(0.15, 256);  // e = 0.5 → clipped to 0.2
  EXPECT_NEAR(c.value, 0.001 * (1 + 0.2 * 256 / 10000.0), 1e-18);
  const double v = c.value;
  c.update(0.09, 1000);  // e = −0.1
  EXPECT_NEAR(c.value, v * (1 - 0.1 * 1000 / 10000.0), 1e-18);
  c.update(0.0, 100);  // e = −1 → −0.2
  adv::fixed_kl_controller f = adv::kl_controller_conventions::openrlhf_fixed;
  f.update(5.0, 100);
  EXPECT_EQ(f.value, 0.01);
  const double before = c.value;
  EXPECT_THROW(c.update(kNaN, 1), pt::error);
  EXPECT_THROW(c.update(0.1, -1), pt::error);
  c.target = 0;
  EXPECT_THROW(c.update(0.1, 1), pt::error);
  EXPECT_EQ(c.value, before);
}

TEST(OutcomeShaping, OverlongPenaltyVerlAndOpenRLHF) {
  const vec R = {1, 1, 1, 1};
  const std::vector<pt::index_t> len = {10, 17, 20, 23};  // max 20, buffer 4: expected 16
  vec v(4), o(4);
  adv::overlong_penalty(pt::exec::host{}, R, len, adv::overlong_conventions::verl(20, 4), v);
  adv::overlong_penalty(pt::exec::host{}, R, len, adv::overlong_conventions::openrlhf(20, 4), o);
  EXPECT_EQ(v, (vec{1, 0.75, 0.0, -0.75}));
  EXPECT_EQ(o, (vec{1, 0.75, 0.0, 0.0}));  // exceed capped at the buffer
  vec out(4, 5.0);
  const pt::exec::host h;
  EXPECT_THROW(adv::overlong_penalty(h, R, len, adv::overlong_conventions::verl(20, 0), out),
               pt::error);
  EXPECT_THROW(adv::overlong_penalty(h, R, len, adv::overlong_conventions::verl(3, 4), out),
               pt::error);
  EXPECT_THROW(adv::overlong_penalty(h, R, std::vector<pt::index_t>{1, 2, -3, 4},
                                     adv::overlong_conventions::verl(20, 4), out),
               pt::error);
  EXPECT_THROW(adv::overlong_penalty(h, R, len, adv::overlong_conventions::verl(20, 4, -1), out),
               pt::error);
  for (double x : out) EXPECT_EQ(x, 5.0);
}

TEST(OutcomeShaping, ClipStopProperlyMissingEos) {
  const vec R = {-20, -1, 3, 15, kNaN};
  vec out(5);
  adv::clip_rewards(pt::exec::host{}, R, adv::reward_clip_options{}, out);
  EXPECT_EQ(out[0], -10);
  EXPECT_EQ(out[1], -1);
  EXPECT_EQ(out[3], 10);
  EXPECT_TRUE(std::isnan(out[4]));
  EXPECT_THROW(adv::clip_rewards(pt::exec::host{}, R, {.lo = 1, .hi = 0}, out), pt::error);
  const std::vector<std::uint8_t> tr = {0, 1, 1, 0, 0};
  const vec S = {1, 2, -4, 3, 0};
  vec s(5);
  adv::stop_properly_penalty(pt::exec::host{}, S, tr, 0.5, s);
  EXPECT_EQ(s, (vec{1, 1, -2, 3, 0}));
  adv::stop_properly_penalty(pt::exec::host{}, S, tr, -1.0, s);
  EXPECT_EQ(s, (vec{1, -1, -1, 3, 0}));
  adv::missing_eos_penalty(pt::exec::host{}, S, tr, 0.5, s);
  EXPECT_EQ(s, (vec{1, 1.5, -4.5, 3, 0}));
  EXPECT_THROW(adv::missing_eos_penalty(pt::exec::host{}, S, std::vector<std::uint8_t>{0}, 0.5, s),
               pt::error);
}

TEST(OutcomeShaping, MaskTruncatedRows) {
  const std::vector<float> m = {0, 1, 1, 1, 0.5f, 1};
  const offs so = {0, 3, 3, 6};
  const std::vector<std::uint8_t> tr = {1, 1, 0};
  std::vector<float> out(6, 9);
  adv::mask_truncated(pt::exec::host{}, m, so, tr, out);
  EXPECT_EQ(out, (std::vector<float>{0, 0, 0, 1, 0.5f, 1}));
  adv::mask_truncated(pt::exec::host{}, {}, so, tr, out);
  EXPECT_EQ(out, (std::vector<float>{0, 0, 0, 1, 1, 1}));
  std::vector<float> inplace = m;
  adv::mask_truncated(pt::exec::host{}, inplace, so, tr, inplace);
  EXPECT_EQ(inplace, (std::vector<float>{0, 0, 0, 1, 0.5f, 1}));
  std::vector<float> small(5, 9);
  EXPECT_THROW(adv::mask_truncated(pt::exec::host{}, m, so, tr, small), pt::error);
  EXPECT_THROW(adv::mask_truncated(pt::exec::host{}, m, so, std::vector<std::uint8_t>{1}, out),
               pt::error);
}
