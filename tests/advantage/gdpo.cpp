// Tests of advantage/gdpo.hpp against float64 transcriptions of TRL GRPOTrainer's
// multi_objective_aggregation branches (reference section 2.2), written over equal groups of
// num_generations rows as TRL reshapes them.
#include "posttrain/advantage/gdpo.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <vector>

#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/workspace.hpp"

#include "core/count_allocations.hpp"

namespace pt = posttrain;
namespace adv = posttrain::advantage;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
using vec = std::vector<double>;
using offs = std::vector<pt::index_t>;

double nanmean(const vec& x) {
  double s = 0, n = 0;
  for (double v : x)
    if (!std::isnan(v)) s += v, n += 1;
  return s / n;  // NaN when n == 0
}
double nanstd(const vec& x) {  // TRL nanstd: unbiased, NaN when count <= 1
  const double m = nanmean(x);
  double c = 0, n = 0;
  for (double v : x)
    if (!std::isnan(v)) c += (v - m) * (v - m), n += 1;
  return n <= 1 ? kNaN : std::sqrt(c / (n - 1));
}
double plain_mean(const vec& x) {
  double s = 0;
  for (double v : x) s += v;
  return s / static_cast<double>(x.size());
}
double plain_std(const vec& x) {  // torch.std (unbiased); TRL uses 0 when numel <= 1
  if (x.size() <= 1) return 0.0;
  const double m = plain_mean(x);
  double c = 0;
  for (double v : x) c += (v - m) * (v - m);
  return std::sqrt(c / static_cast<double>(x.size() - 1));
}

// TRL normalize_then_sum over rewards[N*K] (row-major) with groups of G rows. head = true: the
// batch z-score over nanmean/nanstd with all-NaN rows NaN (reference 2.2); false: nansum gives
// 0 and the batch z-score is the plain mean/std.
vec trl_normalize_then_sum(const vec& r, int N, int K, int G, const vec& w, bool head) {
  vec R(N, 0.0);
  std::vector<bool> any(N, false);
  for (int k = 0; k < K; ++k)
    for (int g = 0; g < N / G; ++g) {
      vec x;
      for (int j = 0; j < G; ++j) x.push_back(r[(g * G + j) * K + k]);
      const double mu = nanmean(x);
      const double sd = G > 1 ? nanstd(x) : 0.0;
      for (int j = 0; j < G; ++j) {
        const double z = (x[j] - mu) / (sd + 1e-4);
        if (!std::isnan(z)) R[g * G + j] += z * w[k], any[g * G + j] = true;
      }
    }
  vec A(N);
  if (head) {
    for (int i = 0; i < N; ++i)
      if (!any[i]) R[i] = kNaN;
    const double mu = nanmean(R), sd = nanstd(R);
    for (int i = 0; i < N; ++i) {
      const double a = (R[i] - mu) / (sd + 1e-4);
      A[i] = std::isnan(a) ? 0.0 : a;
    }
  } else {
    const double mu = plain_mean(R), sd = plain_std(R);
    for (int i = 0; i < N; ++i) A[i] = (R[i] - mu) / (sd + 1e-4);
  }
  return A;
}

// TRL sum_then_normalize (scale_rewards="group"): nansum (all-NaN rows stay NaN), nanmean /
// nanstd per group, /(σ + 1e-4), NaN → 0.
vec trl_sum_then_normalize(const vec& r, int N, int K, int G, const vec& w) {
  vec R(N);
  for (int i = 0; i < N; ++i) {
    double s = 0;
    bool any = false;
    for (int k = 0; k < K; ++k)
      if (!std::isnan(r[i * K + k])) s += w[k] * r[i * K + k], any = true;
    R[i] = any ? s : kNaN;
  }
  vec A(N);
  for (int g = 0; g < N / G; ++g) {
    vec x(R.begin() + g * G, R.begin() + (g + 1) * G);
    const double mu = nanmean(x), sd = G > 1 ? nanstd(x) : 0.0;
    for (int j = 0; j < G; ++j) {
      const double a = (x[j] - mu) / (sd + 1e-4);
      A[g * G + j] = std::isnan(a) ? 0.0 : a;
    }
  }
  return A;
}

// 6 groups of 4 rows, K = 3: NaN entries, an all-NaN row, a function with one scorable entry in
// a group, a zero-variance function in a group.
vec make_rewards(int N, int K, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.2, 1.0);
  vec r(N * K);
  for (double& v : r) v = nd(rng);
  r[1 * K + 0] = kNaN;
  r[5 * K + 2] = kNaN;
  for (int k = 0; k < K; ++k) r[9 * K + k] = kNaN;                   // unscorable row
  for (int j : {12, 13, 14}) r[j * K + 1] = kNaN;                    // one scorable entry
  for (int j = 16; j < 20; ++j) r[j * K + 2] = 0.75;                 // zero variance
  for (int j = 20; j < 24; ++j) r[j * K + 0] = (j % 2) ? 1.0 : 0.0;  // binary
  return r;
}

vec run(const vec& r, int N, int K, const offs& g, const vec& w,
        const adv::multi_objective_options& o) {
  vec a(N, -99);
  adv::multi_objective_advantages(pt::exec::host{}, pt::matrix_view<const double>(r.data(), N, K),
                                  std::span<const double>(w), g, std::span<double>(a), o);
  return a;
}

void expect_near(const vec& got, const vec& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], tol * (1 + std::abs(want[i]))) << "index " << i;
}

constexpr int kN = 24, kK = 3;
const offs kGroups = {0, 4, 8, 12, 16, 20, 24};
const vec kW = {1.0, 0.5, -2.0};

}  // namespace

TEST(Gdpo, NormalizeThenSumMatchesTrl) {
  const vec r = make_rewards(kN, kK, 1);
  expect_near(run(r, kN, kK, kGroups, kW, adv::multi_objective_conventions::trl_gdpo),
              trl_normalize_then_sum(r, kN, kK, 4, kW, true), 1e-10);
  adv::multi_objective_options o = adv::multi_objective_conventions::trl_gdpo;
  o.unscorable = adv::unscorable_rows::zero_reward;
  expect_near(run(r, kN, kK, kGroups, kW, o), trl_normalize_then_sum(r, kN, kK, 4, kW, false),
              1e-10);
  // gdpo_advantages is the same call with the trl_gdpo preset; empty weights = all ones.
  vec a(kN);
  adv::gdpo_advantages(pt::exec::host{}, pt::matrix_view<const double>(r.data(), kN, kK), {},
                       kGroups, std::span<double>(a));
  expect_near(a, trl_normalize_then_sum(r, kN, kK, 4, {1, 1, 1}, true), 1e-10);
}

TEST(Gdpo, NormalizeThenSumInvariants) {
  const vec r = make_rewards(kN, kK, 2);
  const vec a = run(r, kN, kK, kGroups, kW, adv::multi_objective_conventions::trl_gdpo);
  EXPECT_EQ(a[9], 0.0);  // unscorable row
  double s = 0, s2 = 0;
  for (int i = 0; i < kN; ++i)
    if (i != 9) s += a[i], s2 += a[i] * a[i];
  EXPECT_NEAR(s, 0.0, 1e-9);  // the batch z-score is centred over the scorable rows
  const double sd = std::sqrt(s2 / (kN - 2));
  EXPECT_GT(sd, 0.99);  // unit std up to ε / σ
  EXPECT_LT(sd, 1.0);
  // Scaling one function's rewards does not change its z-scores (decoupled normalisation).
  // (ε is made negligible so that the comparison is exact up to rounding.)
  adv::multi_objective_options tiny = adv::multi_objective_conventions::trl_gdpo;
  tiny.epsilon = 1e-15;
  vec scaled = r;
  for (int i = 0; i < kN; ++i) scaled[i * kK + 1] = 1000.0 * r[i * kK + 1] + 7.0;
  expect_near(run(scaled, kN, kK, kGroups, kW, tiny), run(r, kN, kK, kGroups, kW, tiny), 1e-9);
}

TEST(Gdpo, SingletonGroupsAndEqualRewardsGiveZero) {
  const vec r = make_rewards(kN, kK, 3);
  offs singles(kN + 1);
  for (int i = 0; i <= kN; ++i) singles[i] = i;
  const vec a = run(r, kN, kK, singles, kW, adv::multi_objective_conventions::trl_gdpo);
  expect_near(a, trl_normalize_then_sum(r, kN, kK, 1, kW, true), 1e-12);
  for (double v : a) EXPECT_EQ(v, 0.0);
  const vec same(8 * 2, 0.3);
  for (double v : run(same, 8, 2, {0, 4, 8}, {1, 1}, adv::multi_objective_conventions::trl_gdpo))
    EXPECT_NEAR(v, 0.0, 1e-9);
}

TEST(Gdpo, SumThenNormalizeMatchesTrl) {
  const vec r = make_rewards(kN, kK, 4);
  const vec a = run(r, kN, kK, kGroups, kW, adv::multi_objective_conventions::trl);
  expect_near(a, trl_sum_then_normalize(r, kN, kK, 4, kW), 1e-12);
  EXPECT_EQ(a[9], 0.0);
  // It is group_advantages of the NaN-aware weighted sum.
  vec R(kN), b(kN);
  for (int i = 0; i < kN; ++i) {
    double s = 0;
    bool any = false;
    for (int k = 0; k < kK; ++k)
      if (!std::isnan(r[i * kK + k])) s += kW[k] * r[i * kK + k], any = true;
    R[i] = any ? s : kNaN;
  }
  adv::group_advantages(pt::exec::host{}, R, kGroups, std::span<double>(b),
                        adv::group_conventions::trl_batch);
  expect_near(run(r, kN, kK, kGroups, kW, adv::multi_objective_conventions::trl_batch), b, 0);
}

TEST(Gdpo, FloatInputsAndEmptyBatch) {
  const vec r = make_rewards(kN, kK, 5);
  std::vector<float> rf(r.begin(), r.end()), af(kN);
  adv::gdpo_advantages(pt::exec::host{}, pt::matrix_view<const float>(rf.data(), kN, kK),
                       std::span<const double>(kW), kGroups, std::span<float>(af));
  std::vector<double> rr(rf.begin(), rf.end());
  const vec want = trl_normalize_then_sum(rr, kN, kK, 4, kW, true);
  for (int i = 0; i < kN; ++i) EXPECT_NEAR(af[i], want[i], 1e-5 * (1 + std::abs(want[i])));
  std::vector<float> none;
  EXPECT_NO_THROW(adv::gdpo_advantages(pt::exec::host{},
                                       pt::matrix_view<const float>(nullptr, 0, 2), {}, offs{0},
                                       std::span<float>(none)));
}

TEST(Gdpo, ValidationLeavesOutputUntouched) {
  vec r = {0.1, 1.0, kNaN, 0.0, 0.4, 1.0, 0.9, 0.5, 0.2, 0.0, 0.3, 1.0, 0.8, 0.5, 0.6, 0.0};
  vec out(8, 5.0);
  const pt::exec::host h;
  const offs g = {0, 4, 8};
  auto call = [&](const vec& rv, pt::index_t rows, pt::index_t cols, const vec& w, const offs& go,
                  std::span<double> o,
                  adv::multi_objective_options opt = adv::multi_objective_conventions::trl_gdpo) {
    adv::multi_objective_advantages(h, pt::matrix_view<const double>(rv.data(), rows, cols),
                                    std::span<const double>(w), go, o, opt);
  };
  EXPECT_THROW(call(r, 8, 2, {1.0}, g, out), pt::error);           // weights size
  EXPECT_THROW(call(r, 8, 2, {1.0, kNaN}, g, out), pt::error);     // NaN weight
  EXPECT_THROW(call(r, 8, 2, {}, offs{0, 4, 7}, out), pt::error);  // groups != rows
  EXPECT_THROW(call(r, 8, 2, {}, offs{}, out), pt::error);
  EXPECT_THROW(call(r, 8, 2, {}, g, std::span<double>(out.data(), 7)), pt::error);
  vec inf_r = r;
  inf_r[3] = std::numeric_limits<double>::infinity();
  EXPECT_THROW(call(inf_r, 8, 2, {}, g, out), pt::error);
  adv::multi_objective_options o = adv::multi_objective_conventions::trl_gdpo;
  o.nan = adv::nan_policy::raise;
  EXPECT_THROW(call(r, 8, 2, {}, g, out, o), pt::error);  // r has NaN at (1, 0)
  o.aggregation = adv::multi_objective::sum_then_normalize;
  EXPECT_THROW(call(r, 8, 2, {}, g, out, o), pt::error);
  o = adv::multi_objective_conventions::trl_gdpo;
  o.epsilon = 0;
  EXPECT_THROW(call(r, 8, 2, {}, g, out, o), pt::error);
  o.epsilon = kNaN;
  EXPECT_THROW(call(r, 8, 2, {}, g, out, o), pt::error);
  o = adv::multi_objective_conventions::trl_gdpo;
  o.aggregation = static_cast<adv::multi_objective>(5);
  EXPECT_THROW(call(r, 8, 2, {}, g, out, o), pt::error);
  o = adv::multi_objective_conventions::trl;
  o.group.epsilon = -1;
  EXPECT_THROW(call(r, 8, 2, {}, g, out, o), pt::error);
  EXPECT_THROW(adv::multi_objective_advantages(h, pt::matrix_view<const double>(r.data(), 8, 2, 1),
                                               {}, g, std::span<double>(out)),
               pt::error);  // ld < cols
  vec overlap = r;
  EXPECT_THROW(call(overlap, 8, 2, {}, g, std::span<double>(overlap.data() + 2, 8)), pt::error);
  for (double v : out) EXPECT_EQ(v, 5.0);
  EXPECT_NO_THROW(call(r, 8, 2, {}, g, out));
  EXPECT_NE(out[0], 5.0);
}

// The workspace form: the bits of the allocating form for every preset, on the TRL-shaped batch
// (also checked against the float64 TRL transcriptions) and on groups with an empty group and
// singletons; no allocation in the call; a too-small workspace throws before out is written.
TEST(Gdpo, WorkspaceFormSameBitsNoAllocation) {
  const pt::exec::host h;
  const vec r = make_rewards(kN, kK, 17);
  const pt::matrix_view<const double> rv(r.data(), kN, kK);
  const offs irregular = {0, 4, 4, 5, 9, 10, 17, 24};  // an empty group and two singletons
  adv::multi_objective_options gdpo_zero = adv::multi_objective_conventions::trl_gdpo;
  gdpo_zero.unscorable = adv::unscorable_rows::zero_reward;
  for (const offs& groups : {kGroups, irregular})
    for (const adv::multi_objective_options& o :
         {adv::multi_objective_conventions::trl, adv::multi_objective_conventions::trl_batch,
          adv::multi_objective_conventions::trl_none, adv::multi_objective_conventions::trl_gdpo,
          gdpo_zero}) {
      const vec want = run(r, kN, kK, groups, kW, o);
      const std::size_t bytes = adv::multi_objective_advantages_workspace_bytes(
          h, kN, pt::ssize(std::span(groups)) - 1, o);
      std::vector<std::byte> storage(bytes + 64);
      for (const std::size_t offset : {0u, 5u, 40u}) {
        vec got(kN, -7.0);
        const long made = count_allocations([&] {
          adv::multi_objective_advantages(h, rv, std::span<const double>(kW), groups,
                                          std::span<double>(got), o,
                                          pt::workspace(storage.data() + offset, bytes));
        });
        EXPECT_EQ(made, 0);
        EXPECT_EQ(got, want);
      }
      vec untouched(kN, -3.0);
      for (const std::size_t small : {std::size_t{0}, bytes / 2})
        EXPECT_THROW(adv::multi_objective_advantages(h, rv, std::span<const double>(kW), groups,
                                                     std::span<double>(untouched), o,
                                                     pt::workspace(storage.data(), small)),
                     pt::error);
      for (double v : untouched) EXPECT_EQ(v, -3.0);
    }
  // The TRL references on the equal groups, through the workspace form.
  pt::workspace_buffer buffer;
  vec got(kN);
  adv::gdpo_advantages(h, rv, std::span<const double>(kW), kGroups, std::span<double>(got),
                       adv::multi_objective_conventions::trl_gdpo,
                       buffer.view(adv::gdpo_advantages_workspace_bytes(h, kN, 6)));
  expect_near(got, trl_normalize_then_sum(r, kN, kK, 4, kW, true), 1e-12);
  adv::multi_objective_advantages(
      h, rv, std::span<const double>(kW), kGroups, std::span<double>(got),
      adv::multi_objective_conventions::trl,
      buffer.view(adv::multi_objective_advantages_workspace_bytes(h, kN, 6)));
  expect_near(got, trl_sum_then_normalize(r, kN, kK, 4, kW), 1e-12);
  // Float rewards: the bits of the allocating float call.
  const std::vector<float> rf(r.begin(), r.end());
  const pt::matrix_view<const float> fv(rf.data(), kN, kK);
  std::vector<float> fwant(kN), fgot(kN, -7.0f);
  adv::gdpo_advantages(h, fv, std::span<const double>(kW), irregular, std::span<float>(fwant));
  adv::gdpo_advantages(h, fv, std::span<const double>(kW), irregular, std::span<float>(fgot),
                       adv::multi_objective_conventions::trl_gdpo,
                       buffer.view(adv::gdpo_advantages_workspace_bytes(h, kN, 7)));
  EXPECT_EQ(fgot, fwant);
  // Empty batch: 0 bytes (sum_then_normalize) and nothing to write.
  EXPECT_EQ(adv::multi_objective_advantages_workspace_bytes(h, 0, 0), 0u);
  std::vector<double> none;
  EXPECT_NO_THROW(adv::multi_objective_advantages(
      h, pt::matrix_view<const double>(nullptr, 0, kK), std::span<const double>(kW), offs{0},
      std::span<double>(none), adv::multi_objective_conventions::trl, pt::workspace()));
  EXPECT_THROW(adv::multi_objective_advantages_workspace_bytes(h, -1, 0), pt::error);
}
