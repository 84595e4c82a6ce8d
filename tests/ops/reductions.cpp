// Tests for ops/reductions.hpp: segmented masked statistics, the batch reductions, the mergeable
// moments (micro-batch invariance), per-group statistics over per-sequence scalars, validation.
// Also covers ops/reductions_types.hpp (the family contract: masked_stats, merge, the backend
// template) and backend/cpu/reductions.hpp (its host backend); the device backend is
// tests/cuda/reductions.cu, the workspace overload tests/ops/workspace.cpp.
#include "posttrain/ops/reductions.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "posttrain/core/ragged.hpp"

namespace pt = posttrain;

namespace {

const pt::exec::host host{};
constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();

// Independent float64 reference: skip w == 0, two passes in long double.
struct ref_stats {
  double count = 0, sum = 0, mean = 0, var_b = 0, var_u = 0;
};

template <class T>
std::vector<ref_stats> reference(const std::vector<T>& x, const std::vector<float>& m,
                                 const std::vector<pt::index_t>& off) {
  std::vector<ref_stats> r(off.size() - 1);
  for (std::size_t s = 0; s + 1 < off.size(); ++s) {
    long double c = 0, sum = 0;
    for (auto i = off[s]; i < off[s + 1]; ++i) {
      const long double w = m.empty() ? 1.0L : m[i];
      if (w == 0) continue;
      c += w;
      sum += w * static_cast<long double>(x[i]);
    }
    if (c == 0) continue;
    const long double mean = sum / c;
    long double m2 = 0;
    for (auto i = off[s]; i < off[s + 1]; ++i) {
      const long double w = m.empty() ? 1.0L : m[i];
      if (w == 0) continue;
      const long double d = static_cast<long double>(x[i]) - mean;
      m2 += w * d * d;
    }
    r[s].count = static_cast<double>(c);
    r[s].sum = static_cast<double>(sum);
    r[s].mean = static_cast<double>(mean);
    r[s].var_b = static_cast<double>(m2 / c);
    r[s].var_u = c > 1 ? static_cast<double>(m2 / (c - 1)) : 0.0;
  }
  return r;
}

void expect_close(double got, double want, double rel, const char* what, std::size_t s) {
  EXPECT_NEAR(got, want, rel * (1.0 + std::abs(want))) << what << " of segment " << s;
}

// Ragged batch: lengths in [0, max_len], ~30% masked-out tokens holding NaN, weights 0/1 or
// fractional.
struct batch {
  std::vector<pt::index_t> offsets;
  std::vector<double> values;
  std::vector<float> mask;
};

batch make_batch(std::mt19937_64& rng, int segments, int max_len, bool fractional) {
  batch b;
  std::uniform_int_distribution<int> len(0, max_len);
  std::vector<pt::index_t> lengths(segments);
  for (auto& l : lengths) l = len(rng);
  b.offsets = pt::offsets_from_lengths(lengths);
  const auto n = b.offsets.back();
  std::normal_distribution<double> nd(0.5, 2.0);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  b.values.resize(n);
  b.mask.resize(n);
  for (pt::index_t i = 0; i < n; ++i) {
    const bool on = u(rng) > 0.3f;
    b.mask[i] = on ? (fractional ? 0.1f + 2.0f * u(rng) : 1.0f) : 0.0f;
    b.values[i] = on ? nd(rng) : nan_v;
  }
  return b;
}

template <class T>
void check_segment_stats(const batch& b, double rel) {
  std::vector<T> x(b.values.begin(), b.values.end());
  const auto want = reference(x, b.mask, b.offsets);
  const std::size_t S = b.offsets.size() - 1;
  std::vector<double> sum(S), count(S), mean(S), vb(S), vu(S);
  std::vector<pt::masked_stats> mom(S);
  pt::segment_stats(host, x, b.mask, b.offsets,
                    {.sum = sum, .count = count, .mean = mean, .var_biased = vb,
                     .var_unbiased = vu, .moments = mom});
  for (std::size_t s = 0; s < S; ++s) {
    expect_close(sum[s], want[s].sum, rel, "sum", s);
    expect_close(count[s], want[s].count, rel, "count", s);
    expect_close(mean[s], want[s].mean, rel, "mean", s);
    expect_close(vb[s], want[s].var_b, rel, "var_biased", s);
    expect_close(vu[s], want[s].var_u, rel, "var_unbiased", s);
    EXPECT_EQ(mom[s].count, count[s]);
    EXPECT_EQ(mom[s].sum, sum[s]);
    EXPECT_EQ(mom[s].var_biased(), vb[s]);
    EXPECT_TRUE(std::isfinite(sum[s]) && std::isfinite(vu[s])) << "NaN leaked into segment " << s;
  }
}

}  // namespace

TEST(SegmentStats, MatchReferenceFloatAndDoubleBinaryMask) {
  std::mt19937_64 rng(1);
  // Lengths up to 5000 cross the 2048-token chunk boundary and leave odd tails.
  const batch b = make_batch(rng, 23, 5000, false);
  check_segment_stats<double>(b, 1e-12);
  check_segment_stats<float>(b, 1e-12);  // float inputs are exact in double
}

TEST(SegmentStats, MatchReferenceWeightedMask) {
  std::mt19937_64 rng(2);
  const batch b = make_batch(rng, 17, 3000, true);
  check_segment_stats<double>(b, 1e-12);
  check_segment_stats<float>(b, 1e-12);
}

TEST(SegmentStats, EmptyMaskMeansAllOnes) {
  std::mt19937_64 rng(3);
  batch b = make_batch(rng, 9, 700, false);
  for (auto& v : b.values) if (std::isnan(v)) v = 3.25;
  std::vector<float> ones(b.values.size(), 1.0f);
  const auto want = reference(b.values, ones, b.offsets);
  const std::size_t S = b.offsets.size() - 1;
  std::vector<double> mean(S), vu(S), count(S);
  pt::segment_stats(host, b.values, {}, b.offsets, {.count = count, .mean = mean, .var_unbiased = vu});
  for (std::size_t s = 0; s < S; ++s) {
    EXPECT_EQ(count[s], static_cast<double>(b.offsets[s + 1] - b.offsets[s]));
    expect_close(mean[s], want[s].mean, 1e-12, "mean", s);
    expect_close(vu[s], want[s].var_u, 1e-12, "var_unbiased", s);
  }
}

TEST(SegmentStats, EmptySegmentsAllMaskedAndSingletons) {
  // segments: [] | [NaN, inf] all masked | [5] | [NaN(masked), 2, 4]
  const std::vector<double> x{nan_v, std::numeric_limits<double>::infinity(), 5.0, nan_v, 2.0, 4.0};
  const std::vector<float> m{0, 0, 1, 0, 1, 1};
  const std::vector<pt::index_t> off{0, 0, 2, 3, 6};
  std::vector<double> sum(4, -1), count(4, -1), mean(4, -1), vb(4, -1), vu(4, -1);
  pt::segment_stats(host, x, m, off,
                    {.sum = sum, .count = count, .mean = mean, .var_biased = vb, .var_unbiased = vu});
  for (int s : {0, 1}) {
    EXPECT_EQ(sum[s], 0.0);
    EXPECT_EQ(count[s], 0.0);
    EXPECT_EQ(mean[s], 0.0);
    EXPECT_EQ(vb[s], 0.0);
    EXPECT_EQ(vu[s], 0.0);
  }
  EXPECT_EQ(sum[2], 5.0);
  EXPECT_EQ(count[2], 1.0);
  EXPECT_EQ(mean[2], 5.0);
  EXPECT_EQ(vb[2], 0.0);
  EXPECT_EQ(vu[2], 0.0);  // unbiased with count <= 1 is 0 by convention
  EXPECT_EQ(mean[3], 3.0);
  EXPECT_EQ(vb[3], 1.0);
  EXPECT_EQ(vu[3], 2.0);
}

TEST(SegmentStats, NaNAndInfUnderZeroWeightNeverPropagateFloat) {
  // Long enough to run through the vectorized body and the scalar tail.
  std::vector<float> x(1037), m(1037);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const bool on = i % 3 != 0;
    m[i] = on ? 1.0f : 0.0f;
    x[i] = on ? static_cast<float>(i % 7) : (i % 2 ? std::numeric_limits<float>::quiet_NaN()
                                                    : -std::numeric_limits<float>::infinity());
  }
  m[5] = -0.0f;  // a negative zero weight also excludes the token
  x[5] = std::numeric_limits<float>::quiet_NaN();
  const auto st = pt::masked_moments(host, x, m);
  EXPECT_TRUE(std::isfinite(st.sum) && std::isfinite(st.m2) && std::isfinite(st.mean));
  const auto want = reference(x, m, {0, static_cast<pt::index_t>(x.size())});
  EXPECT_NEAR(st.mean, want[0].mean, 1e-12);
  EXPECT_NEAR(st.var_unbiased(), want[0].var_u, 1e-12);
}

TEST(SegmentStats, StableForLargeOffset) {
  // values ~ 1e6 + noise of std 1e-3: a sum-of-squares formula loses every digit here.
  std::mt19937_64 rng(4);
  std::normal_distribution<double> nd(0.0, 1e-3);
  const std::size_t n = 20000;
  std::vector<double> x(n);
  for (auto& v : x) v = 1e6 + nd(rng);
  const std::vector<pt::index_t> off{0, 3, 7000, static_cast<pt::index_t>(n)};
  const auto want = reference(x, {}, off);
  std::vector<double> vu(3);
  pt::segment_stats(host, x, {}, off, {.var_unbiased = vu});
  for (std::size_t s = 0; s < 3; ++s) EXPECT_NEAR(vu[s], want[s].var_u, 1e-8 * want[s].var_u);
  const auto st = pt::masked_moments(host, x, {});
  const auto whole = reference(x, {}, {0, static_cast<pt::index_t>(n)});
  EXPECT_NEAR(st.var_unbiased(), whole[0].var_u, 1e-8 * whole[0].var_u);
}

TEST(SegmentStats, ResultDoesNotDependOnPositionAndIsDeterministic) {
  std::mt19937_64 rng(5);
  std::normal_distribution<double> nd;
  std::vector<float> seg(4500), mseg(4500);
  for (std::size_t i = 0; i < seg.size(); ++i) {
    seg[i] = static_cast<float>(nd(rng));
    mseg[i] = i % 5 ? 1.0f : 0.0f;
  }
  // The same segment at offset 0 and at offset 13 of a packed array.
  std::vector<float> packed(13, 7.0f), mpacked(13, 1.0f);
  packed.insert(packed.end(), seg.begin(), seg.end());
  mpacked.insert(mpacked.end(), mseg.begin(), mseg.end());
  const std::vector<pt::index_t> off1{0, 4500}, off2{0, 13, 4513};
  std::vector<pt::masked_stats> a(1), c(2), d(2);
  pt::segment_stats(host, seg, mseg, off1, {.moments = a});
  pt::segment_stats(host, packed, mpacked, off2, {.moments = c});
  pt::segment_stats(host, packed, mpacked, off2, {.moments = d});
  EXPECT_EQ(a[0].sum, c[1].sum);
  EXPECT_EQ(a[0].m2, c[1].m2);
  EXPECT_EQ(c[0].m2, d[0].m2);
  EXPECT_EQ(c[1].m2, d[1].m2);
}

TEST(MaskedReductions, BatchFunctionsAreOneSegment) {
  std::mt19937_64 rng(6);
  const batch b = make_batch(rng, 7, 900, true);
  const std::vector<float> x(b.values.begin(), b.values.end());
  const auto want = reference(x, b.mask, {0, static_cast<pt::index_t>(x.size())})[0];
  EXPECT_NEAR(pt::masked_sum(host, x, b.mask), want.sum, 1e-12 * std::abs(want.sum));
  EXPECT_NEAR(pt::masked_count(host, x, b.mask), want.count, 1e-12 * want.count);
  EXPECT_NEAR(pt::masked_mean(host, x, b.mask), want.mean, 1e-12);
  EXPECT_NEAR(pt::masked_var(host, x, b.mask), want.var_u, 1e-12 * want.var_u);
  EXPECT_NEAR(pt::masked_var(host, x, b.mask, pt::variance_kind::biased), want.var_b,
              1e-12 * want.var_b);
  const auto st = pt::masked_moments(host, x, b.mask);
  EXPECT_EQ(st.mean, pt::masked_mean(host, x, b.mask));
  // All masked: everything 0 (open-instruct masked_mean returns 0 for a zero denominator).
  const std::vector<float> zeros(x.size(), 0.0f);
  EXPECT_EQ(pt::masked_mean(host, x, zeros), 0.0);
  EXPECT_EQ(pt::masked_var(host, x, zeros), 0.0);
  const std::vector<double> none;
  EXPECT_EQ(pt::masked_count(host, none, {}), 0.0);
}

TEST(MaskedStats, MergeIsMicroBatchInvariant) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> nd(100.0, 3.0);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  const std::size_t n = 10007;
  std::vector<double> x(n);
  std::vector<float> m(n);
  for (std::size_t i = 0; i < n; ++i) {
    m[i] = u(rng) < 0.2f ? 0.0f : u(rng) * 2.0f;
    x[i] = m[i] == 0.0f ? nan_v : nd(rng);
  }
  const pt::masked_stats whole = pt::masked_moments(host, x, m);
  for (int k : {1, 2, 3, 7, 64}) {
    // k parts at random cut points (some parts may be empty).
    std::vector<std::size_t> cuts{0, n};
    std::uniform_int_distribution<std::size_t> pos(0, n);
    for (int j = 1; j < k; ++j) cuts.push_back(pos(rng));
    std::sort(cuts.begin(), cuts.end());
    std::vector<pt::masked_stats> parts;
    for (std::size_t j = 0; j + 1 < cuts.size(); ++j) {
      const std::span<const double> xs(x.data() + cuts[j], cuts[j + 1] - cuts[j]);
      const std::span<const float> ms(m.data() + cuts[j], cuts[j + 1] - cuts[j]);
      parts.push_back(pt::masked_moments(host, xs, ms));
    }
    const pt::masked_stats merged = pt::merge(std::span<const pt::masked_stats>(parts));
    EXPECT_NEAR(merged.count, whole.count, 1e-12 * whole.count) << k;
    EXPECT_NEAR(merged.sum, whole.sum, 1e-12 * std::abs(whole.sum)) << k;
    EXPECT_NEAR(merged.mean, whole.mean, 1e-12 * std::abs(whole.mean)) << k;
    EXPECT_NEAR(merged.m2, whole.m2, 1e-12 * whole.m2) << k;
    EXPECT_NEAR(merged.var_unbiased(), whole.var_unbiased(), 1e-12 * whole.var_unbiased()) << k;
  }
  // The segmented form: segments of one pass merge to the batch statistics too.
  const std::vector<pt::index_t> off{0, 1000, 1000, 5000, static_cast<pt::index_t>(n)};
  const auto seg = pt::segment_moments(host, x, m, off);
  const auto merged = pt::merge(std::span<const pt::masked_stats>(seg));
  EXPECT_NEAR(merged.m2, whole.m2, 1e-12 * whole.m2);
}

TEST(MaskedStats, MergeIdentityAndEmpty) {
  const pt::masked_stats b{3.0, 6.0, 2.0, 8.0};
  const pt::masked_stats e{};
  const auto l = pt::merge(e, b);
  const auto r = pt::merge(b, e);
  for (const auto& s : {l, r}) {
    EXPECT_EQ(s.count, b.count);
    EXPECT_EQ(s.sum, b.sum);
    EXPECT_EQ(s.mean, b.mean);
    EXPECT_EQ(s.m2, b.m2);
  }
  const auto z = pt::merge(e, e);
  EXPECT_EQ(z.count, 0.0);
  EXPECT_EQ(z.var_unbiased(), 0.0);
  // {1,3} (mean 2, m2 2) merged with {5} (mean 5, m2 0) = {1,3,5}: mean 3, m2 8.
  const auto t = pt::merge(pt::masked_stats{2, 4, 2, 2}, pt::masked_stats{1, 5, 5, 0});
  EXPECT_DOUBLE_EQ(t.mean, 3.0);
  EXPECT_DOUBLE_EQ(t.m2, 8.0);
  EXPECT_DOUBLE_EQ(t.var_unbiased(), 4.0);
}

TEST(SegmentStats, PerGroupIsSegmentedReductionOfPerSequenceScalars) {
  // Token rewards of B = 7 sequences -> per-sequence score (masked sum) -> group mean/std with
  // group_offsets over sequences: groups {0,1,2}, {3} (singleton), {} (empty), {4,5,6}.
  std::mt19937_64 rng(8);
  const batch b = make_batch(rng, 7, 40, false);
  const std::vector<float> x(b.values.begin(), b.values.end());
  std::vector<double> score(7);
  pt::segment_stats(host, x, b.mask, b.offsets, {.sum = score});
  const std::vector<pt::index_t> groups{0, 3, 4, 4, 7};
  std::vector<double> gmean(4), gvar(4), gcount(4);
  pt::segment_stats(host, score, {}, groups, {.count = gcount, .mean = gmean, .var_unbiased = gvar});
  for (std::size_t g = 0; g + 1 < groups.size(); ++g) {
    // Naive: per-sequence sums, then mean and torch.std of the members.
    std::vector<double> r;
    for (auto s = groups[g]; s < groups[g + 1]; ++s) {
      double acc = 0;
      for (auto i = b.offsets[s]; i < b.offsets[s + 1]; ++i)
        if (b.mask[i] != 0.0f) acc += static_cast<double>(x[i]);
      r.push_back(acc);
    }
    double mu = 0;
    for (double v : r) mu += v;
    mu = r.empty() ? 0.0 : mu / r.size();
    double ss = 0;
    for (double v : r) ss += (v - mu) * (v - mu);
    const double var = r.size() > 1 ? ss / (r.size() - 1) : 0.0;
    EXPECT_EQ(gcount[g], static_cast<double>(r.size()));
    EXPECT_NEAR(gmean[g], mu, 1e-12 * (1 + std::abs(mu))) << g;
    EXPECT_NEAR(gvar[g], var, 1e-12 * (1 + var)) << g;
  }
}

TEST(SegmentStats, ValidationErrorsLeaveOutputsUntouched) {
  const std::vector<float> x{1, 2, 3, 4};
  const std::vector<float> m{1, 1, 0, 1};
  const std::vector<pt::index_t> off{0, 2, 4};
  std::vector<double> mean(2, 42.0), vu(2, 42.0);
  std::vector<pt::masked_stats> mom(2, pt::masked_stats{42, 42, 42, 42});
  const pt::segment_stats_out out{.mean = mean, .var_unbiased = vu, .moments = mom};
  auto untouched = [&] {
    for (double v : mean) EXPECT_EQ(v, 42.0);
    for (double v : vu) EXPECT_EQ(v, 42.0);
    for (const auto& s : mom) EXPECT_EQ(s.m2, 42.0);
  };
  // mask size mismatch
  const std::vector<float> short_mask{1, 1, 1};
  EXPECT_THROW(pt::segment_stats(host, x, short_mask, off, out), pt::error);
  untouched();
  // bad offsets: wrong end, decreasing, not starting at 0, empty
  for (const std::vector<pt::index_t>& bad :
       {std::vector<pt::index_t>{0, 2, 5}, std::vector<pt::index_t>{0, 3, 2, 4},
        std::vector<pt::index_t>{1, 2, 4}, std::vector<pt::index_t>{}}) {
    EXPECT_THROW(pt::segment_stats(host, x, m, bad, out), pt::error);
    untouched();
  }
  // output span of the wrong size
  std::vector<double> wrong(3, 42.0);
  EXPECT_THROW(pt::segment_stats(host, x, m, off, {.sum = wrong, .mean = mean}), pt::error);
  untouched();
  for (double v : wrong) EXPECT_EQ(v, 42.0);
  // invalid weights: negative, NaN, inf; in the vectorized body and in the tail
  for (float badw : {-1.0f, std::numeric_limits<float>::quiet_NaN(),
                     std::numeric_limits<float>::infinity()}) {
    for (std::size_t where : {std::size_t{1}, std::size_t{3}}) {
      std::vector<float> mb = m;
      mb[where] = badw;
      EXPECT_THROW(pt::segment_stats(host, x, mb, off, out), pt::error);
      untouched();
      EXPECT_THROW(pt::masked_moments(host, x, mb), pt::error);
    }
    std::vector<float> xl(20, 1.0f), ml(20, 1.0f);
    ml[2] = badw;
    EXPECT_THROW(pt::masked_moments(host, xl, ml), pt::error);
    std::vector<double> xd(20, 1.0);
    EXPECT_THROW(pt::masked_mean(host, xd, ml), pt::error);
  }
  EXPECT_THROW(pt::segment_moments(host, x, m, std::vector<pt::index_t>{}), pt::error);
  EXPECT_THROW(pt::masked_mean(host, x, short_mask), pt::error);
}
