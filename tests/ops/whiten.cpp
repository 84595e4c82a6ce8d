// Tests for ops/whiten.hpp: every preset against an independent re-implementation of the peer
// formula (algorithms.md section 1.3), each option on its own, degenerate policies, masked-out
// positions, in-place use, micro-batch invariance with merged moments, validation.
// Also covers ops/whiten_types.hpp (options, presets, coefficients, the backend template),
// backend/cpu/whiten.hpp and backend/cpu/mask_bits.hpp (its masked write pass); the device
// backend is tests/cuda/whiten.cu, the communicator overloads tests/dist/normalizers.cpp.
#include "posttrain/ops/whiten.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "posttrain/core/ragged.hpp"

namespace pt = posttrain;

namespace {

const pt::exec::host host{};
constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();
namespace wc = pt::whiten_conventions;

// ---- peer formulas, written as the reference states them (double, masked values skipped) ----

double masked_sum_ref(const std::vector<double>& v, const std::vector<double>& m, std::size_t b,
                      std::size_t e) {
  double s = 0;
  for (std::size_t i = b; i < e; ++i)
    if (m[i] != 0) s += m[i] * v[i];
  return s;
}

// verl masked_mean: Σmx / (Σm + 1e-8); masked_var: masked_mean((x−μ)²)·N/(N−1);
// masked_whiten: (x−μ)·rsqrt(var + 1e-8), + μ when shift_mean is false.
std::vector<double> verl_whiten(const std::vector<double>& x, const std::vector<double>& m,
                                bool shift_mean) {
  const std::size_t n = x.size();
  std::vector<double> ones(n, 1.0);
  const double msum = masked_sum_ref(m, ones, 0, n);
  const double mean = masked_sum_ref(x, m, 0, n) / (msum + 1e-8);
  std::vector<double> c2(n, 0.0);
  for (std::size_t i = 0; i < n; ++i)
    if (m[i] != 0) c2[i] = (x[i] - mean) * (x[i] - mean);
  double var = masked_sum_ref(c2, m, 0, n) / (msum + 1e-8);
  var = var * msum / (msum - 1);
  std::vector<double> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = (x[i] - mean) / std::sqrt(var + 1e-8);
    if (!shift_mean) out[i] += mean;
  }
  return out;
}

// TRL PPO masked_whiten: mean Σmx/Σm, Bessel-corrected variance, (x−μ)·rsqrt(var + 1e-8).
std::vector<double> trl_whiten(const std::vector<double>& x, const std::vector<double>& m,
                               bool shift_mean) {
  const std::size_t n = x.size();
  double msum = 0, s = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (m[i] != 0) msum += m[i], s += m[i] * x[i];
  const double mean = s / msum;
  double v = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (m[i] != 0) v += m[i] * (x[i] - mean) * (x[i] - mean);
  v = v / msum * (msum / (msum - 1));
  std::vector<double> out(n);
  for (std::size_t i = 0; i < n; ++i)
    out[i] = (x[i] - mean) / std::sqrt(v + 1e-8) + (shift_mean ? 0.0 : mean);
  return out;
}

// OpenRLHF global advantage normalisation: token mean, biased variance, rsqrt(clamp(var, 1e-8)).
std::vector<double> openrlhf_global(const std::vector<double>& x, const std::vector<double>& m) {
  const std::size_t n = x.size();
  double num = 0, s = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (m[i] != 0) num += m[i], s += m[i] * x[i];
  const double mean = s / num;
  double v = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (m[i] != 0) v += m[i] * (x[i] - mean) * (x[i] - mean);
  v /= num;
  std::vector<double> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = (x[i] - mean) / std::sqrt(std::max(v, 1e-8));
  return out;
}

// OpenRLHF masked_normalize along each row: count clamped >= 1, biased, (x−μ)·m·rsqrt(max(var,eps)).
std::vector<double> openrlhf_masked_normalize(const std::vector<double>& x,
                                              const std::vector<double>& m,
                                              const std::vector<pt::index_t>& off, double eps) {
  std::vector<double> out(x.size(), 0.0);
  for (std::size_t r = 0; r + 1 < off.size(); ++r) {
    double cnt = 0, s = 0;
    for (auto i = off[r]; i < off[r + 1]; ++i)
      if (m[i] != 0) cnt += m[i], s += m[i] * x[i];
    cnt = std::max(cnt, 1.0);
    const double mean = s / cnt;
    double v = 0;
    for (auto i = off[r]; i < off[r + 1]; ++i)
      if (m[i] != 0) v += m[i] * (x[i] - mean) * (x[i] - mean);
    v /= cnt;
    for (auto i = off[r]; i < off[r + 1]; ++i)
      out[i] = m[i] != 0 ? (x[i] - mean) * m[i] / std::sqrt(std::max(v, eps)) : 0.0;
  }
  return out;
}

struct data {
  std::vector<double> x;
  std::vector<float> m;
  std::vector<double> md;  // the mask in double for the references
  std::vector<pt::index_t> offsets;
};

data make_data(std::uint64_t seed, int rows, int max_len, bool fractional, double offset = 0.0,
               double scale = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> len(0, max_len);
  std::vector<pt::index_t> lengths(rows);
  for (auto& l : lengths) l = len(rng);
  data d;
  d.offsets = pt::offsets_from_lengths(lengths);
  const auto n = static_cast<std::size_t>(d.offsets.back());
  std::normal_distribution<double> nd(offset, scale);
  std::uniform_real_distribution<double> u(0, 1);
  d.x.resize(n);
  d.m.resize(n);
  d.md.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const bool on = u(rng) > 0.25;
    d.m[i] = on ? (fractional ? static_cast<float>(0.2 + 1.5 * u(rng)) : 1.0f) : 0.0f;
    d.md[i] = d.m[i];
    d.x[i] = on ? nd(rng) : nan_v;  // NaN under zero weight must never leak
  }
  return d;
}

template <class T>
void expect_matches(const std::vector<T>& got, const std::vector<double>& want,
                    const std::vector<float>& m, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (m[i] == 0.0f) {
      EXPECT_EQ(got[i], T(0)) << what << ": masked-out position " << i << " must be 0";
    } else {
      EXPECT_NEAR(static_cast<double>(got[i]), want[i], tol * (1 + std::abs(want[i])))
          << what << " at " << i;
    }
  }
}

template <class T>
std::vector<T> run(const data& d, const pt::whiten_options& o, bool with_offsets = false) {
  std::vector<T> x(d.x.begin(), d.x.end());
  std::vector<T> out(x.size(), T(-7));
  if (with_offsets)
    pt::whiten(host, x, d.m, d.offsets, out, o);
  else
    pt::whiten(host, x, d.m, out, o);
  return out;
}

}  // namespace

TEST(Whiten, VerlPresetMatchesVerlFormula) {
  const data d = make_data(1, 9, 300, false, 2.0, 3.0);
  for (bool shift : {true, false}) {
    auto o = wc::verl;
    o.shift_mean = shift;
    const auto want = verl_whiten(d.x, d.md, shift);
    expect_matches(run<double>(d, o), want, d.m, 1e-12, "verl double");
    expect_matches(run<float>(d, o), want, d.m, 2e-6, "verl float");
  }
}

TEST(Whiten, TrlPresetMatchesTrlFormula) {
  const data d = make_data(2, 9, 300, false, -1.0, 0.5);
  for (bool shift : {true, false}) {
    auto o = wc::trl_ppo;
    o.shift_mean = shift;
    const auto want = trl_whiten(d.x, d.md, shift);
    expect_matches(run<double>(d, o), want, d.m, 1e-12, "trl double");
    expect_matches(run<float>(d, o), want, d.m, 2e-6, "trl float");
  }
}

TEST(Whiten, VerlAndTrlDifferOnlyByTheMeanEpsilon) {
  // Two tokens of magnitude 1e4: verl's Σm + 1e-8 shifts the mean by ~5e-5, which is visible.
  const data d{{1e4, 1e4 + 1.0}, {1.0f, 1.0f}, {1.0, 1.0}, {0, 2}};
  const auto verl_out = run<double>(d, wc::verl);
  const auto trl_out = run<double>(d, wc::trl_ppo);
  const auto verl_want = verl_whiten(d.x, d.md, true);
  const auto trl_want = trl_whiten(d.x, d.md, true);
  expect_matches(verl_out, verl_want, d.m, 1e-12, "verl");
  expect_matches(trl_out, trl_want, d.m, 1e-12, "trl");
  EXPECT_GT(std::abs(verl_out[0] - trl_out[0]), 1e-6);
}

TEST(Whiten, OpenRlhfGlobalMatchesFormula) {
  const data d = make_data(3, 12, 200, false, 0.3, 2.0);
  const auto want = openrlhf_global(d.x, d.md);
  expect_matches(run<double>(d, wc::openrlhf_global), want, d.m, 1e-12, "openrlhf double");
  expect_matches(run<float>(d, wc::openrlhf_global), want, d.m, 2e-6, "openrlhf float");
}

TEST(Whiten, OpenRlhfMaskedNormalizeMatchesFormulaPerRow) {
  for (bool fractional : {false, true}) {
    data d = make_data(4, 15, 60, fractional, 1.0, 4.0);
    // Make row 0 all-masked (count clamped to 1: output 0) when it is not empty.
    for (auto i = d.offsets[0]; i < d.offsets[1]; ++i) d.m[i] = 0.0f, d.md[i] = 0.0;
    const auto want = openrlhf_masked_normalize(d.x, d.md, d.offsets, 1e-8);
    expect_matches(run<double>(d, wc::openrlhf_masked_normalize, true), want, d.m, 1e-12,
                   "masked_normalize double");
    expect_matches(run<float>(d, wc::openrlhf_masked_normalize, true), want, d.m, 2e-6,
                   "masked_normalize float");
  }
}

TEST(Whiten, MaskedNormalizeCountFloorWithSmallWeights) {
  // Σw = 0.5 < 1: OpenRLHF divides by max(Σw, 1) = 1, not by 0.5.
  const data d{{2.0, 4.0, nan_v}, {0.25f, 0.25f, 0.0f}, {0.25, 0.25, 0.0}, {0, 3}};
  const auto want = openrlhf_masked_normalize(d.x, d.md, d.offsets, 1e-8);
  expect_matches(run<double>(d, wc::openrlhf_masked_normalize, true), want, d.m, 1e-12,
                 "count floor");
}

TEST(Whiten, EpsModeAddVersusClamp) {
  // Variance 1e-10 is far below eps 1e-8: add gives 1/sqrt(1.01e-8), clamp gives 1/sqrt(1e-8).
  const std::vector<double> x{1.0 - 1e-5, 1.0 + 1e-5};  // biased var = 1e-10
  const data d{x, {1, 1}, {1, 1}, {0, 2}};
  auto o = wc::openrlhf_global;
  const auto clamp_out = run<double>(d, o);
  o.eps_mode = pt::whiten_eps_mode::add_inside_sqrt;
  const auto add_out = run<double>(d, o);
  EXPECT_NEAR(clamp_out[1], 1e-5 / std::sqrt(1e-8), 1e-12);
  EXPECT_NEAR(add_out[1], 1e-5 / std::sqrt(1e-8 + 1e-10), 1e-12);
}

TEST(Whiten, BiasedVersusUnbiasedAndMultiplyByMask) {
  const data w{{1.0, 2.0, 6.0, nan_v}, {1.0f, 0.5f, 2.0f, 0.0f}, {1.0, 0.5, 2.0, 0.0}, {0, 4}};
  // Naive weighted: count 3.5, mean (1 + 1 + 12)/3.5 = 4, m2 = 9 + 0.5·4 + 2·4 = 19.
  pt::whiten_options o{};
  o.eps = 0.0;
  o.variance = pt::variance_kind::biased;
  auto out = run<double>(w, o);
  EXPECT_NEAR(out[0], (1.0 - 4.0) / std::sqrt(19.0 / 3.5), 1e-12);
  o.variance = pt::variance_kind::unbiased;
  out = run<double>(w, o);
  EXPECT_NEAR(out[2], (6.0 - 4.0) / std::sqrt(19.0 / 2.5), 1e-12);
  o.multiply_by_mask = true;
  out = run<double>(w, o);
  EXPECT_NEAR(out[1], 0.5 * (2.0 - 4.0) / std::sqrt(19.0 / 2.5), 1e-12);
  EXPECT_NEAR(out[2], 2.0 * (6.0 - 4.0) / std::sqrt(19.0 / 2.5), 1e-12);
  EXPECT_EQ(out[3], 0.0);
}

TEST(Whiten, EmptyMaskMeansAllOnes) {
  data d = make_data(6, 4, 100, false);
  for (auto& v : d.x) if (std::isnan(v)) v = 0.75;
  std::vector<double> out(d.x.size());
  pt::whiten(host, d.x, {}, out, wc::trl_ppo);
  const std::vector<double> ones(d.x.size(), 1.0);
  const auto want = trl_whiten(d.x, ones, true);
  for (std::size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], want[i], 1e-12);
}

TEST(Whiten, InPlaceEqualsOutOfPlace) {
  const data d = make_data(7, 6, 500, true, 3.0, 2.0);
  for (const auto& o : {wc::verl, wc::openrlhf_masked_normalize}) {
    std::vector<float> x(d.x.begin(), d.x.end());
    std::vector<float> out(x.size());
    pt::whiten(host, x, d.m, d.offsets, out, o);
    pt::whiten(host, x, d.m, d.offsets, std::span<float>(x), o);
    for (std::size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x[i], out[i]) << i;
  }
}

TEST(Whiten, DegenerateRaiseLeavesOutputUntouched) {
  const std::vector<double> x{3.0, nan_v, 5.0};
  std::vector<double> out(3, 42.0);
  const std::vector<float> none{0, 0, 0}, one{1, 0, 0};
  for (const auto& o : {wc::verl, wc::trl_ppo}) {
    EXPECT_THROW(pt::whiten(host, x, none, out, o), pt::error);  // Σm == 0
    EXPECT_THROW(pt::whiten(host, x, one, out, o), pt::error);   // Σm == 1, unbiased
    for (double v : out) EXPECT_EQ(v, 42.0);
  }
  // Per-segment raise: the second segment is degenerate, the first must not be written either.
  auto o = wc::trl_ppo;
  o.scope = pt::whiten_scope::per_segment;
  const std::vector<float> m{1, 1, 1};
  const std::vector<double> y{1.0, 2.0, 3.0};
  const std::vector<pt::index_t> off{0, 2, 3};
  EXPECT_THROW(pt::whiten(host, y, m, off, out, o), pt::error);
  for (double v : out) EXPECT_EQ(v, 42.0);
}

TEST(Whiten, DegenerateZeroAndPassThrough) {
  const std::vector<double> y{1.0, nan_v, 2.0, 5.0, 7.0};
  const std::vector<float> m{1, 0, 1, 1, 0};
  // Segments [0,1) = {1}, [1,1) empty, [1,2) = {NaN masked}, [2,5) = {2, 5, 7 masked}: the first
  // three are degenerate for the unbiased variance (count 1, 0, 0).
  const std::vector<pt::index_t> off{0, 1, 1, 2, 5};
  auto o = wc::trl_ppo;
  o.scope = pt::whiten_scope::per_segment;
  o.on_degenerate = pt::degenerate_policy::zero;
  std::vector<double> out(5, 42.0);
  const auto n_degenerate = pt::whiten(host, y, m, off, out, o);
  EXPECT_EQ(n_degenerate, 3);
  EXPECT_EQ(out[0], 0.0);
  EXPECT_EQ(out[1], 0.0);
  // Last segment {2, 5}: mean 3.5, unbiased variance 4.5.
  EXPECT_NEAR(out[2], (2.0 - 3.5) / std::sqrt(4.5 + 1e-8), 1e-12);
  EXPECT_NEAR(out[3], (5.0 - 3.5) / std::sqrt(4.5 + 1e-8), 1e-12);
  EXPECT_EQ(out[4], 0.0);
  o.on_degenerate = pt::degenerate_policy::pass_through;
  std::fill(out.begin(), out.end(), 42.0);
  EXPECT_EQ(pt::whiten(host, y, m, off, out, o), 3);
  EXPECT_EQ(out[0], 1.0);  // passed through
  EXPECT_EQ(out[1], 0.0);  // masked out
  EXPECT_EQ(out[4], 0.0);
  // eps == 0 on constant values: variance + eps == 0 is degenerate too.
  pt::whiten_options c{};
  c.eps = 0.0;
  const std::vector<double> k{2.0, 2.0, 2.0};
  std::vector<double> ko(3, 42.0);
  EXPECT_THROW(pt::whiten(host, k, {}, ko, c), pt::error);
  c.on_degenerate = pt::degenerate_policy::zero;
  EXPECT_EQ(pt::whiten(host, k, {}, ko, c), 1);
  for (double v : ko) EXPECT_EQ(v, 0.0);
  // Biased with a single token is not degenerate: x − μ = 0.
  const std::vector<float> single{0, 1, 0};
  EXPECT_EQ(pt::whiten(host, k, single, ko, wc::openrlhf_global), 0);
  EXPECT_EQ(ko[1], 0.0);
  // OpenRLHF global with no valid token: zero policy, all outputs 0.
  const std::vector<float> none{0, 0, 0};
  std::fill(ko.begin(), ko.end(), 42.0);
  EXPECT_EQ(pt::whiten(host, k, none, ko, wc::openrlhf_global), 1);
  for (double v : ko) EXPECT_EQ(v, 0.0);
}

TEST(Whiten, NaNUnderZeroWeightDoesNotPropagate) {
  const data d = make_data(8, 5, 400, false);
  for (const auto& o : {wc::verl, wc::trl_ppo, wc::openrlhf_global}) {
    const auto out = run<float>(d, o);
    for (float v : out) EXPECT_TRUE(std::isfinite(v));
  }
  const auto out = run<float>(d, wc::openrlhf_masked_normalize, true);
  for (float v : out) EXPECT_TRUE(std::isfinite(v));
}

TEST(Whiten, MicroBatchesWithMergedMomentsEqualWholeBatch) {
  const data d = make_data(9, 20, 200, true, 5.0, 2.0);
  const std::size_t n = d.x.size();
  for (const auto& o : {wc::verl, wc::openrlhf_global}) {
    std::vector<double> whole(n);
    pt::whiten(host, d.x, d.m, whole, o);
    // Three micro-batches: stats per part, merged (as after an all-gather), whiten each part.
    const std::size_t cuts[4] = {0, n / 3, n / 2, n};
    std::vector<pt::masked_stats> parts;
    for (int p = 0; p < 3; ++p)
      parts.push_back(pt::masked_moments(
          host, std::span<const double>(d.x.data() + cuts[p], cuts[p + 1] - cuts[p]),
          std::span<const float>(d.m.data() + cuts[p], cuts[p + 1] - cuts[p])));
    const pt::masked_stats global = pt::merge(std::span<const pt::masked_stats>(parts));
    std::vector<double> split(n, -7.0);
    for (int p = 0; p < 3; ++p)
      pt::whiten_with_moments(
          host, std::span<const double>(d.x.data() + cuts[p], cuts[p + 1] - cuts[p]),
          std::span<const float>(d.m.data() + cuts[p], cuts[p + 1] - cuts[p]), global,
          std::span<double>(split.data() + cuts[p], cuts[p + 1] - cuts[p]), o);
    for (std::size_t i = 0; i < n; ++i) EXPECT_NEAR(split[i], whole[i], 1e-12) << i;
  }
}

TEST(Whiten, ValidationErrorsLeaveOutputUntouched) {
  const std::vector<float> x{1, 2, 3, 4};
  const std::vector<float> m{1, 1, 0, 1};
  const std::vector<pt::index_t> off{0, 2, 4};
  std::vector<float> out(4, 42.0f);
  auto untouched = [&] {
    for (float v : out) EXPECT_EQ(v, 42.0f);
  };
  const auto ok = wc::trl_ppo;
  // sizes
  EXPECT_THROW(pt::whiten(host, x, std::vector<float>{1, 1}, out, ok), pt::error);
  untouched();
  std::vector<float> short_out(3, 42.0f);
  EXPECT_THROW(pt::whiten(host, x, m, short_out, ok), pt::error);
  // offsets
  EXPECT_THROW(pt::whiten(host, x, m, std::vector<pt::index_t>{0, 3, 2, 4}, out, ok), pt::error);
  EXPECT_THROW(pt::whiten(host, x, m, std::vector<pt::index_t>{0, 5}, out, ok), pt::error);
  auto seg = ok;
  seg.scope = pt::whiten_scope::per_segment;
  EXPECT_THROW(pt::whiten(host, x, m, out, seg), pt::error);  // per_segment needs offsets
  untouched();
  // mask weights
  for (float bad : {-0.5f, std::numeric_limits<float>::quiet_NaN(),
                    std::numeric_limits<float>::infinity()}) {
    std::vector<float> mb = m;
    mb[3] = bad;
    EXPECT_THROW(pt::whiten(host, x, mb, out, ok), pt::error);
    EXPECT_THROW(pt::whiten_with_moments(host, x, mb, pt::masked_stats{3, 7, 7.0 / 3, 1}, out, ok),
                 pt::error);
    untouched();
  }
  // options
  auto o = ok;
  o.eps = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(pt::whiten(host, x, m, out, o), pt::error);
  o.eps = -1e-8;
  EXPECT_THROW(pt::whiten(host, x, m, out, o), pt::error);
  o = ok;
  o.mean_denominator_eps = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(pt::whiten(host, x, m, out, o), pt::error);
  o = ok;
  o.count_floor = -1.0;
  EXPECT_THROW(pt::whiten(host, x, m, out, o), pt::error);
  o = ok;
  o.eps_mode = static_cast<pt::whiten_eps_mode>(7);
  EXPECT_THROW(pt::whiten(host, x, m, out, o), pt::error);
  untouched();
  // partial overlap of out and values
  std::vector<float> buf{1, 2, 3, 4, 5};
  EXPECT_THROW(pt::whiten(host, std::span<const float>(buf.data(), 4), {},
                          std::span<float>(buf.data() + 1, 4), ok),
               pt::error);
  EXPECT_EQ(buf[4], 5.0f);
  // moments of the wrong count / not finite
  const std::vector<pt::masked_stats> two(2);
  EXPECT_THROW(pt::whiten_with_moments(host, x, m, {}, two, out, ok), pt::error);
  EXPECT_THROW(pt::whiten_with_moments(host, x, m, pt::masked_stats{3, nan_v, 1, 1}, out, ok),
               pt::error);
  untouched();
}
