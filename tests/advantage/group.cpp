// Tests of advantage/group.hpp (GRPO family, pass@k) and broadcast_to_tokens against per-group
// float64 loops that transcribe each peer (reference sections 1.4, 2.1, 2.2, 2.4, 2.5).
#include "posttrain/advantage/group.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/ragged.hpp"

namespace pt = posttrain;
namespace adv = posttrain::advantage;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
using vec = std::vector<double>;
using offs = std::vector<pt::index_t>;

double mean_of(const vec& x) {
  double s = 0;
  for (double v : x) s += v;
  return s / static_cast<double>(x.size());
}
// torch.std (unbiased) / numpy.std (biased).
double std_of(const vec& x, bool unbiased) {
  const double m = mean_of(x);
  double c = 0;
  for (double v : x) c += (v - m) * (v - m);
  return std::sqrt(c / static_cast<double>(x.size() - (unbiased ? 1 : 0)));
}
vec slice(const vec& r, const offs& g, std::size_t k) {
  return vec(r.begin() + g[k], r.begin() + g[k + 1]);
}

// verl compute_grpo_outcome_advantage (loop): singleton μ=0, σ=1.
vec verl_loop(const vec& r, const offs& g, double eps, bool norm) {
  vec a(r.size());
  for (std::size_t k = 0; k + 1 < g.size(); ++k) {
    const vec x = slice(r, g, k);
    double mu = 0, sd = 1;
    if (x.size() > 1) mu = mean_of(x), sd = std_of(x, true);
    for (pt::index_t i = g[k]; i < g[k + 1]; ++i)
      a[i] = norm ? (r[i] - mu) / (sd + eps) : r[i] - mu;
  }
  return a;
}

// verl group_mean_std: naive Σx² form, Bessel with max(n−1, 1), σ = sqrt(max(var, 1e-6)).
vec verl_vectorized(const vec& r, const offs& g, double eps) {
  vec a(r.size());
  for (std::size_t k = 0; k + 1 < g.size(); ++k) {
    const vec x = slice(r, g, k);
    const double n = static_cast<double>(x.size());
    double s1 = 0, s2 = 0;
    for (double v : x) s1 += v, s2 += v * v;
    double mu = s1 / n, sd = std::sqrt(std::max((s2 - s1 * s1 / n) / std::max(n - 1, 1.0), 1e-6));
    if (n <= 1) mu = 0, sd = 1;
    for (pt::index_t i = g[k]; i < g[k + 1]; ++i) a[i] = (r[i] - mu) / (sd + eps);
  }
  return a;
}

double nanmean(const vec& x) {
  double s = 0, n = 0;
  for (double v : x)
    if (!std::isnan(v)) s += v, n += 1;
  return s / n;  // NaN when n == 0
}
double nanstd(const vec& x) {  // unbiased; NaN when count <= 1
  const double m = nanmean(x);
  double c = 0, n = 0;
  for (double v : x)
    if (!std::isnan(v)) c += (v - m) * (v - m), n += 1;
  return n <= 1 ? kNaN : std::sqrt(c / (n - 1));
}
// TRL GRPO: nanmean/nanstd per group, or nanstd of the batch; nan_to_num at the end.
vec trl(const vec& r, const offs& g, const std::string& scale) {
  vec a(r.size());
  const double batch_sd = nanstd(r);
  for (std::size_t k = 0; k + 1 < g.size(); ++k) {
    const vec x = slice(r, g, k);
    const double mu = nanmean(x);
    const double sd = scale == "batch" ? batch_sd : nanstd(x);
    for (pt::index_t i = g[k]; i < g[k + 1]; ++i) {
      double v = r[i] - mu;
      if (scale != "none") v /= sd + 1e-4;
      a[i] = std::isnan(v) ? 0.0 : v;
    }
  }
  return a;
}

// OpenRLHF group_norm, open-instruct standard / centered (reshape to (-1, n)).
vec reshape_norm(const vec& r, const offs& g, bool unbiased, double eps, bool divide) {
  vec a(r.size());
  for (std::size_t k = 0; k + 1 < g.size(); ++k) {
    const vec x = slice(r, g, k);
    const double mu = mean_of(x), sd = std_of(x, unbiased);
    for (pt::index_t i = g[k]; i < g[k + 1]; ++i)
      a[i] = divide ? (r[i] - mu) / (sd + eps) : r[i] - mu;
  }
  return a;
}

vec random_rewards(std::size_t n, unsigned seed, bool binary = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.3, 1.0);
  std::bernoulli_distribution bd(0.4);
  vec r(n);
  for (double& v : r) v = binary ? (bd(rng) ? 1.0 : 0.0) : nd(rng);
  return r;
}

void expect_near(const vec& got, const vec& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], tol * (1 + std::abs(want[i]))) << "index " << i;
}

vec run(const vec& r, const offs& g, const adv::group_options& o) {
  vec a(r.size(), -99);
  adv::group_advantages(pt::exec::host{}, r, g, a, o);
  return a;
}

// Groups of 8 (with a binary-reward group of equal rewards) followed by uneven groups.
const offs kGroups = {0, 8, 16, 24, 27, 32, 34};

}  // namespace

TEST(GroupAdvantages, PresetsMatchPeerLoops) {
  vec r = random_rewards(34, 1);
  for (int i = 8; i < 16; ++i) r[i] = 1.0;  // zero-variance group
  expect_near(run(r, kGroups, adv::group_conventions::verl), verl_loop(r, kGroups, 1e-6, true),
              1e-12);
  expect_near(run(r, kGroups, adv::group_conventions::verl_vectorized),
              verl_vectorized(r, kGroups, 1e-6), 1e-9);
  expect_near(run(r, kGroups, adv::group_conventions::dr_grpo), verl_loop(r, kGroups, 0, false),
              1e-12);
  expect_near(run(r, kGroups, adv::group_conventions::trl), trl(r, kGroups, "group"), 1e-12);
  expect_near(run(r, kGroups, adv::group_conventions::trl_batch), trl(r, kGroups, "batch"), 1e-12);
  expect_near(run(r, kGroups, adv::group_conventions::trl_none), trl(r, kGroups, "none"), 1e-12);
  expect_near(run(r, kGroups, adv::group_conventions::openrlhf),
              reshape_norm(r, kGroups, true, 1e-9, true), 1e-12);
  expect_near(run(r, kGroups, adv::group_conventions::open_instruct_standard),
              reshape_norm(r, kGroups, false, 1e-8, true), 1e-12);
  expect_near(run(r, kGroups, adv::group_conventions::open_instruct_centered),
              reshape_norm(r, kGroups, false, 0, false), 1e-12);
}

TEST(GroupAdvantages, VectorizedFloorOnlyMattersBelowVarianceOneMillionth) {
  // Rewards 1 ± 1e-4: variance ~1e-8 < 1e-6, so σ is floored at 1e-3.
  vec r = {1.0, 1.0001, 0.9999, 1.0};
  offs g = {0, 4};
  const vec loop = run(r, g, adv::group_conventions::verl);
  const vec vect = run(r, g, adv::group_conventions::verl_vectorized);
  EXPECT_NEAR(vect[1], 1e-4 / (1e-3 + 1e-6), 1e-9);
  EXPECT_GT(std::abs(loop[1]), 10 * std::abs(vect[1]));
  // With a larger spread both agree.
  vec w = random_rewards(8, 3);
  offs g8 = {0, 8};
  expect_near(run(w, g8, adv::group_conventions::verl),
              run(w, g8, adv::group_conventions::verl_vectorized), 1e-15);
}

TEST(GroupAdvantages, CentredPresetsSumToZeroAndEqualRewardsGiveZero) {
  const vec r = random_rewards(34, 4, /*binary=*/true);
  for (auto o : {adv::group_conventions::verl, adv::group_conventions::trl,
                 adv::group_conventions::openrlhf, adv::group_conventions::open_instruct_standard,
                 adv::group_conventions::open_instruct_centered, adv::group_conventions::dr_grpo,
                 adv::group_conventions::trl_batch}) {
    const vec a = run(r, kGroups, o);
    for (std::size_t k = 0; k + 1 < kGroups.size(); ++k) {
      double s = 0;
      for (pt::index_t i = kGroups[k]; i < kGroups[k + 1]; ++i) s += a[i];
      EXPECT_NEAR(s, 0.0, 1e-9) << "group " << k;
    }
  }
  const vec same(8, 0.7);
  for (double v : run(same, {0, 8}, adv::group_conventions::verl)) EXPECT_NEAR(v, 0.0, 1e-9);
  for (double v : run(same, {0, 8}, adv::group_conventions::trl)) EXPECT_NEAR(v, 0.0, 1e-9);
}

TEST(GroupAdvantages, SingletonPolicies) {
  const vec r = {2.0, 1.0, 3.0, -4.0};
  const offs g = {0, 1, 3, 4};  // sizes 1, 2, 1
  vec a = run(r, g, adv::group_conventions::verl);
  EXPECT_DOUBLE_EQ(a[0], 2.0 / (1 + 1e-6));
  EXPECT_DOUBLE_EQ(a[3], -4.0 / (1 + 1e-6));
  a = run(r, g, adv::group_conventions::verl_vectorized);
  EXPECT_DOUBLE_EQ(a[0], 2.0 / (1 + 1e-6));
  a = run(r, g, adv::group_conventions::dr_grpo);
  EXPECT_DOUBLE_EQ(a[0], 2.0);
  for (auto o : {adv::group_conventions::trl, adv::group_conventions::open_instruct_standard,
                 adv::group_conventions::open_instruct_centered}) {
    a = run(r, g, o);
    EXPECT_EQ(a[0], 0.0);
    EXPECT_EQ(a[3], 0.0);
    EXPECT_NE(a[1], 0.0);
  }
  expect_near(run(r, g, adv::group_conventions::trl), trl(r, g, "group"), 1e-12);
  vec out(4, 5.0);
  EXPECT_THROW(adv::group_advantages(pt::exec::host{}, r, g, out, adv::group_conventions::openrlhf),
               pt::error);
  for (double v : out) EXPECT_EQ(v, 5.0);
}

TEST(GroupAdvantages, NanRewardsIgnoredLikeTrl) {
  vec r = random_rewards(34, 5);
  r[3] = kNaN;
  r[17] = kNaN;
  r[25] = r[26] = kNaN;                       // group 3 keeps one scorable member: singleton → 0
  for (int i = 32; i < 34; ++i) r[i] = kNaN;  // an all-unscorable group
  for (const char* scale : {"group", "batch", "none"}) {
    adv::group_options o = std::string(scale) == "group"   ? adv::group_conventions::trl
                           : std::string(scale) == "batch" ? adv::group_conventions::trl_batch
                                                           : adv::group_conventions::trl_none;
    const vec a = run(r, kGroups, o);
    expect_near(a, trl(r, kGroups, scale), 1e-12);
    EXPECT_EQ(a[3], 0.0);
    EXPECT_EQ(a[24], 0.0);
  }
  vec out(34, 5.0);
  EXPECT_THROW(adv::group_advantages(pt::exec::host{}, r, kGroups, out),  // verl: NaN rejected
               pt::error);
  for (double v : out) EXPECT_EQ(v, 5.0);
}

TEST(GroupAdvantages, EpsilonPlacementAndFloatInputs) {
  const vec r = {0.0, 1.0, 1.0, 0.0, 1.0};
  adv::group_options o{.epsilon = 0.25, .epsilon_mode = adv::std_epsilon::add_inside_sqrt};
  const vec a = run(r, {0, 5}, o);
  const double var = std_of(r, true) * std_of(r, true);
  EXPECT_NEAR(a[1], (1.0 - 0.6) / std::sqrt(var + 0.25), 1e-15);
  o.epsilon = 0;  // zero variance with ε = 0: 0, not NaN
  for (double v : run(vec(4, 3.0), {0, 4}, o)) EXPECT_EQ(v, 0.0);
  std::vector<float> rf = {0.5f, 1.5f, -1.0f, 2.0f, 0.25f, 0.0f, 1.0f, 3.0f}, af(8);
  adv::group_advantages(pt::exec::host{}, rf, offs{0, 4, 8}, af, adv::group_conventions::trl);
  const vec want = trl({0.5, 1.5, -1.0, 2.0, 0.25, 0.0, 1.0, 3.0}, {0, 4, 8}, "group");
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(af[i], want[i], 1e-6);
  // In place.
  vec inplace = {1.0, 2.0, 4.0};
  adv::group_advantages(pt::exec::host{}, inplace, offs{0, 3}, inplace);
  expect_near(inplace, verl_loop({1.0, 2.0, 4.0}, {0, 3}, 1e-6, true), 1e-15);
}

TEST(GroupAdvantages, ArbitraryUidsThroughGroupByIds) {
  // verl passes a uid per sample; groups need not be contiguous.
  const std::vector<std::string> uid = {"p7", "p2", "p7", "p9", "p2", "p7", "p9", "p2"};
  const vec r = random_rewards(8, 6);
  const pt::grouping grp = pt::group_by_ids(uid);
  vec grouped(8), a_grouped(8), a(8);
  for (std::size_t k = 0; k < 8; ++k) grouped[k] = r[grp.order[k]];
  adv::group_advantages(pt::exec::host{}, grouped, grp.group_offsets, a_grouped);
  for (std::size_t k = 0; k < 8; ++k) a[grp.order[k]] = a_grouped[k];
  // Reference: per uid, loop over members.
  for (std::size_t i = 0; i < 8; ++i) {
    vec members;
    for (std::size_t j = 0; j < 8; ++j)
      if (uid[j] == uid[i]) members.push_back(r[j]);
    EXPECT_NEAR(a[i], (r[i] - mean_of(members)) / (std_of(members, true) + 1e-6), 1e-12);
  }
}

TEST(GroupAdvantages, EmptyGroupsAndEmptyBatch) {
  const vec r = {1.0, 2.0, 3.0};
  const offs g = {0, 0, 3, 3};
  expect_near(run(r, g, adv::group_conventions::openrlhf),
              reshape_norm(r, {0, 3}, true, 1e-9, true), 1e-12);  // empty groups are not singletons
  vec none;
  EXPECT_NO_THROW(adv::group_advantages(pt::exec::host{}, none, offs{0}, none));
}

TEST(GroupAdvantages, ValidationLeavesOutputUntouched) {
  const vec r = {1.0, 2.0, 3.0, 4.0};
  vec out(4, 5.0), small(3, 5.0);
  const pt::exec::host h;
  EXPECT_THROW(adv::group_advantages(h, r, offs{0, 2, 3}, out), pt::error);  // back != B
  EXPECT_THROW(adv::group_advantages(h, r, offs{0, 3, 2, 4}, out), pt::error);
  EXPECT_THROW(adv::group_advantages(h, r, offs{}, out), pt::error);
  EXPECT_THROW(adv::group_advantages(h, r, offs{0, 4}, small), pt::error);
  vec inf_r = {1.0, std::numeric_limits<double>::infinity(), 0, 0};
  EXPECT_THROW(adv::group_advantages(h, inf_r, offs{0, 4}, out, adv::group_conventions::trl),
               pt::error);
  adv::group_options o;
  o.epsilon = -1;
  EXPECT_THROW(adv::group_advantages(h, r, offs{0, 4}, out, o), pt::error);
  o = {};
  o.epsilon = kNaN;
  EXPECT_THROW(adv::group_advantages(h, r, offs{0, 4}, out, o), pt::error);
  o = {};
  o.variance_floor = -1;
  EXPECT_THROW(adv::group_advantages(h, r, offs{0, 4}, out, o), pt::error);
  o = {};
  o.scale = static_cast<adv::group_scale>(9);
  EXPECT_THROW(adv::group_advantages(h, r, offs{0, 4}, out, o), pt::error);
  vec overlap = {1, 2, 3, 4, 5};
  EXPECT_THROW(adv::group_advantages(h, std::span<const double>(overlap.data(), 4), offs{0, 4},
                                     std::span<double>(overlap.data() + 1, 4)),
               pt::error);
  for (double v : out) EXPECT_EQ(v, 5.0);
  EXPECT_NO_THROW(adv::group_advantages(h, r, offs{0, 4}, out));
  EXPECT_NE(out[0], 5.0);
}

TEST(PasskAdvantages, ArgMaxGetsMarginOverSecond) {
  const vec r = {0.2, 0.9, 0.5, 0.1, /*g1*/ 1.0, 0.0, 0.0};
  const offs g = {0, 4, 7};
  vec a(7);
  adv::passk_advantages(pt::exec::host{}, r, g, a);
  const double sd0 = std_of({0.2, 0.9, 0.5, 0.1}, true), sd1 = std_of({1.0, 0.0, 0.0}, true);
  EXPECT_NEAR(a[1], (0.9 - 0.5) / (sd0 + 1e-6), 1e-12);
  EXPECT_NEAR(a[4], 1.0 / (sd1 + 1e-6), 1e-12);
  for (int i : {0, 2, 3, 5, 6}) EXPECT_EQ(a[i], 0.0);
  adv::passk_advantages(pt::exec::host{}, r, g, a, {.normalize_by_std = false});
  EXPECT_NEAR(a[1], 0.4, 1e-15);
  // Ties: the first maximum is the arg-max and gets r_max − r_2nd = 0.
  const vec tie = {0.0, 1.0, 1.0};
  vec t(3, 5.0);
  adv::passk_advantages(pt::exec::host{}, tie, offs{0, 3}, t,
                        {.normalize_by_std = true, .epsilon = 0});
  for (double v : t) EXPECT_EQ(v, 0.0);
  // Groups of fewer than 2, NaN rewards: rejected before writing.
  vec out(3, 5.0);
  EXPECT_THROW(adv::passk_advantages(pt::exec::host{}, tie, offs{0, 1, 3}, out), pt::error);
  const vec nan_r = {0.0, kNaN, 1.0};
  EXPECT_THROW(adv::passk_advantages(pt::exec::host{}, nan_r, offs{0, 3}, out), pt::error);
  for (double v : out) EXPECT_EQ(v, 5.0);
}

TEST(BroadcastToTokens, WritesAdvantageTimesMask) {
  const vec a = {1.5, -2.0, 3.0};
  const offs so = {0, 3, 3, 5};
  const std::vector<float> m = {0, 1, 0.5f, 1, 0};
  vec out(5, 9);
  adv::broadcast_to_tokens(pt::exec::host{}, a, so, m, out);
  EXPECT_EQ(out, (vec{0, 1.5, 0.75, 3.0, 0}));
  adv::broadcast_to_tokens(pt::exec::host{}, a, so, {}, out);
  EXPECT_EQ(out, (vec{1.5, 1.5, 1.5, 3.0, 3.0}));
  vec bad(4, 9);
  EXPECT_THROW(adv::broadcast_to_tokens(pt::exec::host{}, a, so, m, bad), pt::error);
  EXPECT_THROW(adv::broadcast_to_tokens(pt::exec::host{}, vec{1.0}, so, m, out), pt::error);
  for (double v : bad) EXPECT_EQ(v, 9);
}
