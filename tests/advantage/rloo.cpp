// Tests of advantage/rloo.hpp against float64 transcriptions of verl (loop and vectorized), TRL
// (NaN-skipping leave-one-out, optional batch normalisation) and OpenRLHF.
#include "posttrain/advantage/rloo.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"

namespace pt = posttrain;
namespace adv = posttrain::advantage;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
using vec = std::vector<double>;
using offs = std::vector<pt::index_t>;

vec verl_loop(const vec& r, const offs& g) {
  vec a(r.size());
  for (std::size_t k = 0; k + 1 < g.size(); ++k) {
    const double n = static_cast<double>(g[k + 1] - g[k]);
    double s = 0;
    for (pt::index_t i = g[k]; i < g[k + 1]; ++i) s += r[i];
    for (pt::index_t i = g[k]; i < g[k + 1]; ++i)
      a[i] = n > 1 ? r[i] * n / (n - 1) - (s / n) * n / (n - 1) : r[i];
  }
  return a;
}

vec verl_vectorized(const vec& r, const offs& g) {
  vec a(r.size());
  for (std::size_t k = 0; k + 1 < g.size(); ++k) {
    const double c = static_cast<double>(g[k + 1] - g[k]);
    double s = 0;
    for (pt::index_t i = g[k]; i < g[k + 1]; ++i) s += r[i];
    for (pt::index_t i = g[k]; i < g[k + 1]; ++i)
      a[i] = (c * r[i] - s) / std::max(c - 1, 1.0) * (c > 1 ? 1.0 : 0.0);
  }
  return a;
}

vec trl(const vec& r, const offs& g, bool normalize) {
  vec a(r.size());
  for (std::size_t k = 0; k + 1 < g.size(); ++k) {
    double s = 0, n = 0;
    for (pt::index_t i = g[k]; i < g[k + 1]; ++i)
      if (!std::isnan(r[i])) s += r[i], n += 1;
    for (pt::index_t i = g[k]; i < g[k + 1]; ++i) a[i] = r[i] - (s - r[i]) / (n - 1);
  }
  if (normalize) {
    double s = 0, n = 0;
    for (double x : a)
      if (!std::isnan(x)) s += x, n += 1;
    const double mu = s / n;
    double c = 0;
    for (double x : a)
      if (!std::isnan(x)) c += (x - mu) * (x - mu);
    const double sd = std::sqrt(c / (n - 1));
    for (double& x : a) x = (x - mu) / (sd + 1e-4);
  }
  for (double& x : a)
    if (std::isnan(x)) x = 0;
  return a;
}

vec random_rewards(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.2, 1.0);
  vec r(n);
  for (double& v : r) v = nd(rng);
  return r;
}

vec run(const vec& r, const offs& g, const adv::rloo_options& o) {
  vec a(r.size(), -99);
  adv::rloo_advantages(pt::exec::host{}, r, g, a, o);
  return a;
}

void expect_near(const vec& got, const vec& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], tol * (1 + std::abs(want[i]))) << "index " << i;
}

const offs kGroups = {0, 8, 16, 17, 20, 22};  // includes a singleton (16)

}  // namespace

TEST(Rloo, PresetsMatchPeerLoops) {
  const vec r = random_rewards(22, 1);
  expect_near(run(r, kGroups, adv::rloo_conventions::verl), verl_loop(r, kGroups), 1e-12);
  expect_near(run(r, kGroups, adv::rloo_conventions::verl_vectorized), verl_vectorized(r, kGroups),
              1e-12);
  expect_near(run(r, kGroups, adv::rloo_conventions::trl), trl(r, kGroups, false), 1e-12);
  expect_near(run(r, kGroups, adv::rloo_conventions::trl_normalized), trl(r, kGroups, true), 1e-12);
  // Singletons: verl loop → R, vectorized / TRL → 0, OpenRLHF → error.
  EXPECT_DOUBLE_EQ(run(r, kGroups, adv::rloo_conventions::verl)[16], r[16]);
  EXPECT_EQ(run(r, kGroups, adv::rloo_conventions::verl_vectorized)[16], 0.0);
  vec out(22, 5.0);
  EXPECT_THROW(
      adv::rloo_advantages(pt::exec::host{}, r, kGroups, out, adv::rloo_conventions::openrlhf),
      pt::error);
  for (double v : out) EXPECT_EQ(v, 5.0);
  const offs no_singletons = {0, 8, 16, 22};
  expect_near(run(r, no_singletons, adv::rloo_conventions::openrlhf),
              verl_vectorized(r, no_singletons), 1e-12);
}

TEST(Rloo, LeaveOneOutDefinitionAndZeroSum) {
  const vec r = random_rewards(22, 2);
  const vec a = run(r, kGroups, adv::rloo_conventions::verl);
  for (std::size_t k = 0; k + 1 < kGroups.size(); ++k) {
    const pt::index_t n = kGroups[k + 1] - kGroups[k];
    if (n < 2) continue;
    double sum = 0;
    for (pt::index_t i = kGroups[k]; i < kGroups[k + 1]; ++i) {
      double others = 0;
      for (pt::index_t j = kGroups[k]; j < kGroups[k + 1]; ++j)
        if (j != i) others += r[j];
      EXPECT_NEAR(a[i], r[i] - others / static_cast<double>(n - 1), 1e-12);
      sum += a[i];
    }
    EXPECT_NEAR(sum, 0.0, 1e-12);
  }
  // Equal rewards → 0.
  for (double v : run(vec(5, 0.3), {0, 5}, adv::rloo_conventions::verl)) EXPECT_NEAR(v, 0, 1e-15);
}

TEST(Rloo, NanSkippingLikeTrl) {
  vec r = random_rewards(22, 3);
  r[2] = kNaN;
  r[18] = r[19] = kNaN;  // group 3 keeps one scorable member → 0
  for (bool normalize : {false, true}) {
    const vec a = run(
        r, kGroups, normalize ? adv::rloo_conventions::trl_normalized : adv::rloo_conventions::trl);
    expect_near(a, trl(r, kGroups, normalize), 1e-12);
    EXPECT_EQ(a[2], 0.0);
    EXPECT_EQ(a[17], 0.0);
  }
  vec out(22, 5.0);
  EXPECT_THROW(adv::rloo_advantages(pt::exec::host{}, r, kGroups, out), pt::error);
  for (double v : out) EXPECT_EQ(v, 5.0);
}

TEST(Rloo, FloatInPlaceAndValidation) {
  std::vector<float> rf = {1.0f, 0.0f, 0.5f, 2.0f};
  const vec want = verl_loop({1.0, 0.0, 0.5, 2.0}, {0, 4});
  adv::rloo_advantages(pt::exec::host{}, rf, offs{0, 4}, rf);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(rf[i], want[i], 1e-6);
  const vec r = {1, 2, 3};
  vec out(3, 5.0), small(2, 5.0);
  const pt::exec::host h;
  EXPECT_THROW(adv::rloo_advantages(h, r, offs{0, 2}, out), pt::error);
  EXPECT_THROW(adv::rloo_advantages(h, r, offs{0, 3}, small), pt::error);
  EXPECT_THROW(adv::rloo_advantages(h, vec{1, std::numeric_limits<double>::infinity(), 0},
                                    offs{0, 3}, out, adv::rloo_conventions::trl),
               pt::error);
  adv::rloo_options o;
  o.normalize_epsilon = -1;
  EXPECT_THROW(adv::rloo_advantages(h, r, offs{0, 3}, out, o), pt::error);
  o = {};
  o.singleton = static_cast<adv::singleton_policy>(7);
  EXPECT_THROW(adv::rloo_advantages(h, r, offs{0, 3}, out, o), pt::error);
  for (double v : out) EXPECT_EQ(v, 5.0);
  vec none;
  EXPECT_NO_THROW(adv::rloo_advantages(h, none, offs{0}, none));
}
