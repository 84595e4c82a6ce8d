// Tests of advantage/pf_ppo.hpp: the weights against a float64 transcription of verl
// compute_pf_ppo_reweight_data (reference section 2.1), and the resampling's distribution,
// determinism and edge cases (its stream cannot match torch.multinomial's, by design).
#include "posttrain/advantage/pf_ppo.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/workspace.hpp"

#include "core/count_allocations.hpp"

namespace pt = posttrain;
namespace adv = posttrain::advantage;

namespace {

using vec = std::vector<double>;
using ivec = std::vector<pt::index_t>;

vec verl_weights(const vec& s, const char* method, double p) {
  double mx = s[0], mn = s[0];
  for (double v : s) mx = std::max(mx, v), mn = std::min(mn, v);
  vec w(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (std::string(method) == "pow") w[i] = std::pow(std::abs(s[i]), p);
    if (std::string(method) == "max_min") w[i] = (s[i] == mx || s[i] == mn) ? 1.0 : 0.0;
    if (std::string(method) == "max_random") w[i] = s[i] == mx ? 0.4 : 0.1;
    w[i] = std::max(w[i] + 1e-8, 1e-8);
  }
  return w;
}

vec weights(const vec& s, adv::pf_ppo_options o) {
  vec w(s.size(), -1);
  adv::pf_ppo_weights(pt::exec::host{}, s, std::span<double>(w), o);
  return w;
}

}  // namespace

TEST(PfPpo, WeightsMatchVerl) {
  const vec s = {0.0, 1.0, -2.0, 0.5, 1.0, -2.0, 0.25};
  const struct {
    const char* name;
    adv::pf_ppo_reweight m;
  } methods[] = {{"pow", adv::pf_ppo_reweight::pow},
                 {"max_min", adv::pf_ppo_reweight::max_min},
                 {"max_random", adv::pf_ppo_reweight::max_random}};
  for (const auto& [name, m] : methods)
    for (double p : {2.0, 1.0, 0.5, 3.0}) {
      const vec got = weights(s, {.method = m, .weight_pow = p});
      const vec want = verl_weights(s, name, p);
      for (std::size_t i = 0; i < s.size(); ++i) EXPECT_DOUBLE_EQ(got[i], want[i]) << name << i;
    }
  // The clamp: a zero score keeps weight 1e-8; ties at the max share the max weight.
  EXPECT_DOUBLE_EQ(weights(s, {})[0], 1e-8);
  const vec mr = weights(s, {.method = adv::pf_ppo_reweight::max_random});
  EXPECT_EQ(mr[1], mr[4]);
  // All scores equal: max_min gives every row 1 + 1e-8.
  for (double w : weights(vec(5, 0.3), {.method = adv::pf_ppo_reweight::max_min}))
    EXPECT_DOUBLE_EQ(w, 1.0 + 1e-8);
  // Float scores.
  std::vector<float> sf = {0.5f, -1.5f};
  vec wf(2);
  adv::pf_ppo_weights(pt::exec::host{}, sf, std::span<double>(wf));
  EXPECT_DOUBLE_EQ(wf[1], 2.25 + 1e-8);
}

TEST(PfPpo, ResampleIsDeterministicAndFollowsTheWeights) {
  const vec w = {0.1, 0.0, 0.4, 0.2, 0.3, 0.0};
  ivec a(200000), b(200000);
  adv::pf_ppo_resample(w, std::mt19937_64(7), std::span<pt::index_t>(a));
  adv::pf_ppo_resample(w, std::mt19937_64(7), std::span<pt::index_t>(b));
  EXPECT_EQ(a, b);
  ivec c(200000);
  adv::pf_ppo_resample(w, std::mt19937_64(8), std::span<pt::index_t>(c));
  EXPECT_NE(a, c);
  std::vector<double> count(w.size(), 0.0);
  for (pt::index_t i : a) {
    ASSERT_GE(i, 0);
    ASSERT_LT(i, 6);
    count[i] += 1;
  }
  EXPECT_EQ(count[1], 0.0);  // weight 0: never drawn
  EXPECT_EQ(count[5], 0.0);
  const double n = static_cast<double>(a.size());
  for (std::size_t i = 0; i < w.size(); ++i) {
    const double p = w[i];  // the weights sum to 1
    const double sd = std::sqrt(n * p * (1 - p));
    EXPECT_NEAR(count[i], n * p, 5 * sd + 1e-9) << i;
  }
  // A 32-bit generator works too (two draws per sample).
  ivec d(1000);
  std::mt19937 g32(3);
  adv::pf_ppo_resample(w, g32, std::span<pt::index_t>(d));
  for (pt::index_t i : d) EXPECT_TRUE(i == 0 || i == 2 || i == 3 || i == 4);
}

TEST(PfPpo, ResampleIndicesCombinesBothSteps) {
  const vec s = {1.0, 0.0, -3.0, 2.0};
  ivec got(64), want(64);
  adv::pf_ppo_resample_indices(pt::exec::host{}, s, std::mt19937_64(11),
                               std::span<pt::index_t>(got));
  adv::pf_ppo_resample(weights(s, {}), std::mt19937_64(11), std::span<pt::index_t>(want));
  EXPECT_EQ(got, want);
  // One row of positive weight is always drawn.
  ivec one(50);
  adv::pf_ppo_resample(vec{0.0, 0.0, 2.5}, std::mt19937_64(1), std::span<pt::index_t>(one));
  for (pt::index_t i : one) EXPECT_EQ(i, 2);
  // Empty batch, no draw.
  ivec none;
  EXPECT_NO_THROW(adv::pf_ppo_resample_indices(pt::exec::host{}, vec{}, std::mt19937_64(1),
                                               std::span<pt::index_t>(none)));
}

TEST(PfPpo, BadInputIsRejectedBeforeWriting) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  vec w(3, 5.0);
  const pt::exec::host h;
  EXPECT_THROW(adv::pf_ppo_weights(h, vec{1.0, nan, 2.0}, std::span<double>(w)), pt::error);
  EXPECT_THROW(adv::pf_ppo_weights(h, vec{1.0, inf, 2.0}, std::span<double>(w)), pt::error);
  EXPECT_THROW(adv::pf_ppo_weights(h, vec{1.0, 2.0}, std::span<double>(w)), pt::error);
  EXPECT_THROW(
      adv::pf_ppo_weights(h, vec{1.0, 2.0, 3.0}, std::span<double>(w), {.weight_pow = nan}),
      pt::error);
  EXPECT_THROW(adv::pf_ppo_weights(h, vec{0.0, 2.0, 3.0}, std::span<double>(w),
                                   {.weight_pow = -1.0}),  // 0^-1 = inf
               pt::error);
  EXPECT_THROW(adv::pf_ppo_weights(h, vec{1e200, 2.0, 3.0}, std::span<double>(w),
                                   {.weight_pow = 2.0}),  // overflow
               pt::error);
  EXPECT_THROW(adv::pf_ppo_weights(h, vec{1.0, 2.0, 3.0}, std::span<double>(w),
                                   {.method = static_cast<adv::pf_ppo_reweight>(9)}),
               pt::error);
  for (double v : w) EXPECT_EQ(v, 5.0);
  ivec idx(4, -7);
  EXPECT_THROW(adv::pf_ppo_resample(vec{0.0, 0.0}, std::mt19937_64(1), std::span<pt::index_t>(idx)),
               pt::error);
  EXPECT_THROW(
      adv::pf_ppo_resample(vec{1.0, -0.5}, std::mt19937_64(1), std::span<pt::index_t>(idx)),
      pt::error);
  EXPECT_THROW(adv::pf_ppo_resample(vec{1.0, nan}, std::mt19937_64(1), std::span<pt::index_t>(idx)),
               pt::error);
  EXPECT_THROW(adv::pf_ppo_resample(vec{}, std::mt19937_64(1), std::span<pt::index_t>(idx)),
               pt::error);
  for (pt::index_t v : idx) EXPECT_EQ(v, -7);
}

// pf_ppo_weights allocates nothing; the workspace forms of pf_ppo_resample and
// pf_ppo_resample_indices draw the indices of the allocating forms from the same seed (random
// scores; B = 0, 1 and more), allocate nothing, and a too-small workspace throws before any index
// is written.
TEST(PfPpo, WorkspaceFormsSameDrawsNoAllocation) {
  const pt::exec::host h;
  std::mt19937 rng(5);
  std::normal_distribution<double> nd(0.0, 2.0);
  for (const std::size_t b : {0u, 1u, 7u, 200u})
    for (const adv::pf_ppo_options o :
         {adv::pf_ppo_conventions::verl, adv::pf_ppo_options{.method = adv::pf_ppo_reweight::max_min},
          adv::pf_ppo_options{.method = adv::pf_ppo_reweight::max_random},
          adv::pf_ppo_options{.weight_pow = 0.5}}) {
      vec s(b);
      for (double& x : s) x = nd(rng);
      const char* method = o.method == adv::pf_ppo_reweight::pow       ? "pow"
                           : o.method == adv::pf_ppo_reweight::max_min ? "max_min"
                                                                       : "max_random";
      vec w(b, -1.0);
      EXPECT_EQ(count_allocations([&] { adv::pf_ppo_weights(h, s, std::span<double>(w), o); }),
                0);
      const vec ref = b == 0 ? vec{} : verl_weights(s, method, o.weight_pow);
      for (std::size_t i = 0; i < b; ++i) EXPECT_NEAR(w[i], ref[i], 1e-15 * (1 + ref[i])) << i;
      vec inplace = s;  // in place: the weights over the scores
      adv::pf_ppo_weights(h, inplace, std::span<double>(inplace), o);
      EXPECT_EQ(inplace, w);

      const std::size_t m = b == 0 ? 0 : 3 * b;
      ivec want(m), got(m, -9), got_w(m, -9);
      adv::pf_ppo_resample_indices(h, s, std::mt19937_64(b + 1), std::span<pt::index_t>(want), o);
      const std::size_t bytes = adv::pf_ppo_resample_indices_workspace_bytes(h, pt::index_t(b));
      const std::size_t bytes_w = adv::pf_ppo_resample_workspace_bytes(pt::index_t(b));
      std::vector<std::byte> storage(bytes + 64);
      for (const std::size_t offset : {0u, 5u, 40u}) {
        std::mt19937_64 g(b + 1), gw(b + 1);
        EXPECT_EQ(count_allocations([&] {
                    adv::pf_ppo_resample_indices(h, s, g, std::span<pt::index_t>(got), o,
                                                 pt::workspace(storage.data() + offset, bytes));
                    adv::pf_ppo_resample(std::span<const double>(w), gw,
                                         std::span<pt::index_t>(got_w),
                                         pt::workspace(storage.data() + offset, bytes_w));
                  }),
                  0);
        EXPECT_EQ(got, want);
        EXPECT_EQ(got_w, want);
      }
      if (bytes > 0) {
        ivec untouched(m, -3);
        EXPECT_THROW(adv::pf_ppo_resample_indices(h, s, std::mt19937_64(1),
                                                  std::span<pt::index_t>(untouched), o,
                                                  pt::workspace(storage.data(), bytes / 2)),
                     pt::error);
        EXPECT_THROW(adv::pf_ppo_resample(std::span<const double>(w), std::mt19937_64(1),
                                          std::span<pt::index_t>(untouched), pt::workspace()),
                     pt::error);
        for (pt::index_t i : untouched) EXPECT_EQ(i, -3);
      }
    }
}
