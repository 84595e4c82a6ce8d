// Tests of advantage/reinforce.hpp against float64 transcriptions of verl's REINFORCE++,
// REINFORCE++-baseline and ReMax and OpenRLHF's get_cumulative_returns + normalisation, over a
// padded [B, T] layout with interior mask holes.
#include "posttrain/advantage/reinforce.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
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

struct padded {
  int B, T;
  vec r, m;
  std::vector<float> mf;
  vec r_poisoned;  // NaN where m == 0
  offs offsets;
};

padded make(int B, int T, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  padded p{B, T, vec(B * T), vec(B * T, 0.0), {}, {}, pt::padded_offsets(B, T)};
  for (int b = 0; b < B; ++b) {
    const int len = 2 + static_cast<int>(u(rng) * (T - 2));
    for (int t = 0; t < T; ++t) {
      p.r[b * T + t] = 0.05 * nd(rng);
      if (t < len && (t == len - 1 || u(rng) > 0.15)) p.m[b * T + t] = 1.0;
    }
    p.r[b * T + len - 1] += nd(rng);
  }
  for (int i = 0; i < B * T; ++i) {
    p.mf.push_back(static_cast<float>(p.m[i]));
    p.r_poisoned.push_back(p.m[i] != 0 ? p.r[i] : kNaN);
  }
  return p;
}

vec verl_returns(const padded& p, double gamma) {
  vec g(p.B * p.T);
  for (int b = 0; b < p.B; ++b) {
    double running = 0;
    for (int t = p.T - 1; t >= 0; --t) {
      const int i = b * p.T + t;
      running = p.r[i] + gamma * running;
      g[i] = running;
      running = running * p.m[i];
    }
  }
  return g;
}

vec openrlhf_returns(const padded& p, double gamma) {
  vec g(p.B * p.T);
  for (int b = 0; b < p.B; ++b) {
    double running = 0;
    for (int t = p.T - 1; t >= 0; --t) {
      const int i = b * p.T + t;
      running = p.r[i] * p.m[i] + gamma * running;
      g[i] = running;
    }
  }
  return g;
}

void whiten_ref(vec& x, const vec& m, bool verl) {
  double sm = 0, s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) sm += m[i], s += m[i] * x[i];
  const double mu = s / (sm + (verl ? 1e-8 : 0));
  double c = 0;
  for (std::size_t i = 0; i < x.size(); ++i) c += m[i] * (x[i] - mu) * (x[i] - mu);
  double var = c / (sm + (verl ? 1e-8 : 0));
  if (verl) var *= sm / (sm - 1);
  const double v = verl ? var + 1e-8 : std::max(var, 1e-8);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = (x[i] - mu) / std::sqrt(v) * (verl ? m[i] : 1);
}

void expect_masked(const vec& got, const vec& want, const vec& m, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (m[i] != 0)
      EXPECT_NEAR(got[i], want[i], tol * (1 + std::abs(want[i]))) << i;
    else
      EXPECT_EQ(got[i], 0.0) << i;
  }
}

}  // namespace

TEST(DiscountedReturns, BothConventionsMatchPeerLoops) {
  const padded p = make(7, 30, 1);
  vec g(p.B * p.T);
  for (double gamma : {1.0, 0.9}) {
    adv::discounted_returns(
        pt::exec::host{}, p.r_poisoned, p.mf, p.offsets, g,
        {.gamma = gamma, .convention = adv::return_convention::reset_at_masked});
    expect_masked(g, verl_returns(p, gamma), p.m, 1e-12);
    adv::discounted_returns(pt::exec::host{}, p.r_poisoned, p.mf, p.offsets, g,
                            {.gamma = gamma, .convention = adv::return_convention::mask_rewards});
    expect_masked(g, openrlhf_returns(p, gamma), p.m, 1e-12);
  }
  // The conventions differ at interior holes (verl resets there).
  const vec r = {1, 1, 1}, w = {1, 0, 1};
  const std::vector<float> m = {1, 0, 1};
  vec a(3), b(3);
  adv::discounted_returns(pt::exec::host{}, r, m, offs{0, 3}, a);
  adv::discounted_returns(pt::exec::host{}, r, m, offs{0, 3}, b,
                          {.gamma = 1.0, .convention = adv::return_convention::mask_rewards});
  EXPECT_EQ(a, (vec{1, 0, 1}));
  EXPECT_EQ(b, (vec{2, 0, 1}));
  (void)w;
}

TEST(DiscountedReturns, ReverseCumsumAndPackedEqualsPadded) {
  const padded p = make(5, 17, 2);
  vec c(p.B * p.T), g(p.B * p.T);
  adv::reverse_cumsum(pt::exec::host{}, p.r_poisoned, p.mf, p.offsets, c);
  expect_masked(c, openrlhf_returns(p, 1.0), p.m, 1e-12);
  // Packed: drop the trailing padding of every row.
  vec pr;
  std::vector<float> pm;
  offs off = {0};
  std::vector<int> where;
  for (int b = 0; b < p.B; ++b) {
    int last = -1;
    for (int t = 0; t < p.T; ++t)
      if (p.m[b * p.T + t] != 0) last = t;
    for (int t = 0; t <= last; ++t) {
      pr.push_back(p.r_poisoned[b * p.T + t]);
      pm.push_back(p.mf[b * p.T + t]);
      where.push_back(b * p.T + t);
    }
    off.push_back(static_cast<pt::index_t>(pr.size()));
  }
  vec pg(pr.size());
  adv::discounted_returns(pt::exec::host{}, p.r_poisoned, p.mf, p.offsets, g, {.gamma = 0.95});
  adv::discounted_returns(pt::exec::host{}, pr, pm, off, pg, {.gamma = 0.95});
  for (std::size_t k = 0; k < pr.size(); ++k) EXPECT_EQ(pg[k], g[where[k]]);
}

TEST(ReinforcePlusPlus, VerlAndOpenRLHFPresets) {
  const padded p = make(6, 25, 3);
  vec a(p.B * p.T), ret(p.B * p.T);
  adv::reinforce_plus_plus(pt::exec::host{}, p.r_poisoned, p.mf, p.offsets, a, ret,
                           adv::reinforce_pp_conventions::verl);
  vec want = verl_returns(p, 1.0);
  expect_masked(ret, want, p.m, 1e-12);
  whiten_ref(want, p.m, true);
  expect_masked(a, want, p.m, 1e-10);
  adv::reinforce_plus_plus(pt::exec::host{}, p.r_poisoned, p.mf, p.offsets, a, ret,
                           adv::reinforce_pp_conventions::openrlhf);
  want = openrlhf_returns(p, 1.0);
  expect_masked(ret, want, p.m, 1e-12);
  whiten_ref(want, p.m, false);
  expect_masked(a, want, p.m, 1e-10);
}

TEST(ReinforcePlusPlus, BaselineIsTokenWeightedWhitening) {
  const padded p = make(8, 20, 4);
  const vec R = {1, 0, 0.5, 1, /*g1*/ 0, 0, 1, /*g2*/ 2};
  const offs g = {0, 4, 7, 8};
  vec a(p.B * p.T);
  adv::reinforce_plus_plus_baseline(pt::exec::host{}, R, g, p.mf, p.offsets, a,
                                    adv::reinforce_pp_conventions::verl_baseline);
  // verl: scores = R − μ (singleton μ = 0), tiled × m, masked_whiten × m.
  vec want(p.B * p.T);
  for (std::size_t k = 0; k + 1 < g.size(); ++k) {
    const double n = static_cast<double>(g[k + 1] - g[k]);
    double s = 0;
    for (pt::index_t i = g[k]; i < g[k + 1]; ++i) s += R[i];
    for (pt::index_t i = g[k]; i < g[k + 1]; ++i)
      for (int t = 0; t < p.T; ++t)
        want[i * p.T + t] = (R[i] - (n > 1 ? s / n : 0.0)) * p.m[i * p.T + t];
  }
  whiten_ref(want, p.m, true);
  expect_masked(a, want, p.m, 1e-10);
  // OpenRLHF: singleton rejected before anything is written.
  vec out(p.B * p.T, 5.0);
  EXPECT_THROW(adv::reinforce_plus_plus_baseline(pt::exec::host{}, R, g, p.mf, p.offsets, out,
                                                 adv::reinforce_pp_conventions::openrlhf_baseline),
               pt::error);
  for (double v : out) EXPECT_EQ(v, 5.0);
}

TEST(Remax, ReturnsMinusGreedyBaseline) {
  const padded p = make(4, 15, 5);
  const vec b = {0.5, -0.25, 1.0, 0.0};
  vec a(p.B * p.T), ret(p.B * p.T);
  adv::remax(pt::exec::host{}, p.r_poisoned, b, p.mf, p.offsets, a, ret);
  const vec g = openrlhf_returns(p, 1.0);
  vec want(g.size());
  for (int i = 0; i < p.B * p.T; ++i) want[i] = g[i] - b[i / p.T] * p.m[i];
  expect_masked(ret, g, p.m, 1e-12);
  expect_masked(a, want, p.m, 1e-12);
}

TEST(Reinforce, EdgeCasesAndValidation) {
  // Empty and all-masked sequences.
  const offs off = pt::offsets_from_lengths(std::vector<pt::index_t>{0, 3, 0, 2});
  const vec r = {kNaN, kNaN, kNaN, 1.0, 2.0};
  const std::vector<float> m = {0, 0, 0, 1, 1};
  vec g(5, 9);
  adv::discounted_returns(pt::exec::host{}, r, m, off, g);
  EXPECT_EQ(g, (vec{0, 0, 0, 3, 2}));
  const pt::exec::host h;
  vec out(5, 7.0), small(4, 7.0);
  EXPECT_THROW(adv::discounted_returns(h, r, m, off, out, {.gamma = 1.5}), pt::error);
  EXPECT_THROW(adv::discounted_returns(h, r, m, off, out, {.gamma = kNaN}), pt::error);
  EXPECT_THROW(adv::discounted_returns(h, r, m, off, small), pt::error);
  EXPECT_THROW(adv::discounted_returns(h, r, std::vector<float>{0, 0, -1, 1, 1}, off, out),
               pt::error);
  EXPECT_THROW(adv::discounted_returns(h, r, m, offs{0, 3, 4}, out), pt::error);
  EXPECT_THROW(adv::reverse_cumsum(h, r, m, off, small), pt::error);
  // REINFORCE++ with verl whitening needs >= 2 valid tokens.
  const std::vector<float> one = {0, 0, 0, 1, 0};
  EXPECT_THROW(adv::reinforce_plus_plus(h, r, one, off, out, {}), pt::error);
  EXPECT_THROW(adv::reinforce_plus_plus(h, r, m, off, out, out), pt::error);
  EXPECT_THROW(adv::remax(h, r, vec{0, 0, 0}, m, off, out, {}), pt::error);
  EXPECT_THROW(adv::remax(h, r, vec{0, kNaN, 0, 0}, m, off, out, {}), pt::error);
  EXPECT_THROW(adv::reinforce_plus_plus_baseline(h, vec{1, 2, 3}, offs{0, 4}, m, off, out),
               pt::error);
  for (double v : out) EXPECT_EQ(v, 7.0);
  EXPECT_NO_THROW(adv::reinforce_plus_plus(h, r, m, off, out, {}));
  EXPECT_NE(out[3], 7.0);
}

// verl 0.9.1 compute_reinforce_plus_plus_outcome_advantage, transcribed: masked tokens (tool
// observations) are skipped, the running return passes through them undiscounted.
TEST(DiscountedReturns, CarryThroughMaskedMatchesVerl091Loop) {
  const padded p = make(6, 23, 77);
  for (const double gamma : {1.0, 0.9}) {
    vec expected(p.B * p.T);
    for (int b = 0; b < p.B; ++b) {
      double running = 0;
      for (int t = p.T - 1; t >= 0; --t) {
        const int i = b * p.T + t;
        const double fresh = p.r[i] + gamma * running;
        expected[i] = fresh * p.m[i];
        running = fresh * p.m[i] + running * (1 - p.m[i]);
      }
    }
    vec out(p.B * p.T, kNaN);
    adv::discounted_returns(pt::exec::host{}, p.r_poisoned, p.mf, p.offsets,
                            std::span<double>(out),
                            {.gamma = gamma, .convention = adv::return_convention::carry_through_masked});
    for (int i = 0; i < p.B * p.T; ++i) EXPECT_NEAR(out[i], expected[i], 1e-12) << i;
    // With holes it differs from the reset convention (the test data has holes).
    vec reset(p.B * p.T);
    adv::discounted_returns(pt::exec::host{}, p.r_poisoned, p.mf, p.offsets,
                            std::span<double>(reset), {.gamma = gamma});
    double diff = 0;
    for (int i = 0; i < p.B * p.T; ++i) diff += std::abs(reset[i] - out[i]);
    EXPECT_GT(diff, 1e-6);
  }
}

// The CPU backend scans blocks of backend::cpu::scan_rows sequences interleaved, row k skewed by
// k·scan_skew tokens (C: the lock-step start of the block's last row): every convention, ReMax
// and the unmasked path on batches smaller than a block, not a multiple of it, single tokens,
// rows shorter and longer than the skew, and a fully masked row, in double and float, against
// the peer loops.
TEST(DiscountedReturns, InterleavedBlocksMatchPeerLoopsForEveryShape) {
  const int W = posttrain::backend::cpu::scan_rows;
  const int C = static_cast<int>(posttrain::backend::cpu::scan_skew) * (W - 1) + 1;
  const std::pair<int, int> shapes[] = {{1, 2}, {3, 2}, {W - 1, 5}, {W, C + 3},
                                        {W + 3, 2 * C + 1}, {2 * W + 1, 9}, {1, 3 * C}};
  unsigned seed = 100;
  for (const auto& [B, T] : shapes) {
    padded p = make(B, T, ++seed);
    for (int t = 0; t < T; ++t) p.m[t] = 0.0, p.mf[t] = 0.0f, p.r_poisoned[t] = kNaN;
    const double gamma = 0.93;
    // verl 0.9.1 (carry through masked tokens).
    vec carry(B * T);
    for (int b = 0; b < B; ++b) {
      double running = 0;
      for (int t = T - 1; t >= 0; --t) {
        const int i = b * T + t;
        const double fresh = p.r[i] + gamma * running;
        carry[i] = fresh * p.m[i];
        running = fresh * p.m[i] + running * (1 - p.m[i]);
      }
    }
    const std::pair<adv::return_convention, vec> cases[] = {
        {adv::return_convention::reset_at_masked, verl_returns(p, gamma)},
        {adv::return_convention::mask_rewards, openrlhf_returns(p, gamma)},
        {adv::return_convention::carry_through_masked, carry}};
    const std::vector<float> rf(p.r_poisoned.begin(), p.r_poisoned.end());
    for (const auto& [convention, want] : cases) {
      vec g(B * T, 7);
      adv::discounted_returns(pt::exec::host{}, p.r_poisoned, p.mf, p.offsets, g,
                              {.gamma = gamma, .convention = convention});
      expect_masked(g, want, p.m, 1e-12);
      std::vector<float> gf(B * T, 7);
      adv::discounted_returns(pt::exec::host{}, rf, p.mf, p.offsets, std::span<float>(gf),
                              {.gamma = gamma, .convention = convention});
      expect_masked(vec(gf.begin(), gf.end()), want, p.m, 2e-5);
      // No mask: every convention is the plain discounted sum.
      padded all = p;
      std::fill(all.m.begin(), all.m.end(), 1.0);
      adv::discounted_returns(pt::exec::host{}, all.r, {}, p.offsets, g,
                              {.gamma = gamma, .convention = convention});
      expect_masked(g, openrlhf_returns(all, gamma), all.m, 1e-12);
    }
    // ReMax: returns and returns − b·m, with and without the returns output, float and double.
    vec b(B);
    for (int i = 0; i < B; ++i) b[i] = 0.25 * i - 1.0;
    const vec g = openrlhf_returns(p, 1.0);
    vec want(B * T);
    for (int i = 0; i < B * T; ++i) want[i] = g[i] - b[i / T] * p.m[i];
    vec a(B * T, 7), ret(B * T, 7), a2(B * T, 7);
    adv::remax(pt::exec::host{}, p.r_poisoned, b, p.mf, p.offsets, a, ret);
    expect_masked(ret, g, p.m, 1e-12);
    expect_masked(a, want, p.m, 1e-12);
    adv::remax(pt::exec::host{}, p.r_poisoned, b, p.mf, p.offsets, a2, {});
    EXPECT_EQ(a2, a);
    const std::vector<float> bf(b.begin(), b.end());
    std::vector<float> af(B * T, 7), retf(B * T, 7);
    adv::remax(pt::exec::host{}, rf, std::span<const float>(bf), p.mf, p.offsets,
               std::span<float>(af), std::span<float>(retf));
    expect_masked(vec(retf.begin(), retf.end()), g, p.m, 2e-5);
    expect_masked(vec(af.begin(), af.end()), want, p.m, 2e-5);
    // ReMax without a mask.
    padded all = p;
    std::fill(all.m.begin(), all.m.end(), 1.0);
    const vec ga = openrlhf_returns(all, 1.0);
    adv::remax(pt::exec::host{}, all.r, b, {}, p.offsets, a, ret);
    for (int i = 0; i < B * T; ++i) {
      EXPECT_NEAR(ret[i], ga[i], 1e-12 * (1 + std::abs(ga[i])));
      EXPECT_NEAR(a[i], ga[i] - b[i / T], 1e-12 * (1 + std::abs(ga[i])));
    }
  }
}

// Packed sequences of very different lengths in one lane block, each against the loop on that
// sequence alone (verl's reset convention and ReMax).
TEST(DiscountedReturns, RaggedBlocksMatchPerSequenceLoops) {
  const std::vector<pt::index_t> lengths = {2, 0, 150, 3, 0, 64, 65, 2, 2, 200, 7, 31, 33};
  vec r, m, want, want_remax, baselines;
  std::vector<float> mf;
  unsigned seed = 300;
  for (pt::index_t len : lengths) {
    baselines.push_back(0.1 * static_cast<double>(baselines.size()));
    if (len == 0) continue;  // make() needs two tokens
    const padded p = make(1, static_cast<int>(len), ++seed);
    const vec g = verl_returns(p, 0.9), c = openrlhf_returns(p, 1.0);
    r.insert(r.end(), p.r_poisoned.begin(), p.r_poisoned.end());
    m.insert(m.end(), p.m.begin(), p.m.end());
    mf.insert(mf.end(), p.mf.begin(), p.mf.end());
    want.insert(want.end(), g.begin(), g.end());
    for (pt::index_t t = 0; t < len; ++t) want_remax.push_back(c[t] - baselines.back() * p.m[t]);
  }
  const auto off = pt::offsets_from_lengths(lengths);
  vec g(r.size(), 7), a(r.size(), 7);
  adv::discounted_returns(pt::exec::host{}, r, mf, off, g, {.gamma = 0.9});
  expect_masked(g, want, m, 1e-12);
  adv::remax(pt::exec::host{}, r, baselines, mf, off, a, {});
  expect_masked(a, want_remax, m, 1e-12);
}

namespace {

// Ragged batch for the scan identity test: lengths 0..200 (the first block's rows longer than
// its skew, so that every batch of a block or more runs the lock-step loop), interior holes,
// every 5th row fully masked, fractional weights; NaN rewards where m = 0 (they must be selected
// away, never leak).
struct ragged_batch {
  offs offsets;
  vec r;
  std::vector<float> m;
};

ragged_batch make_ragged(int B, unsigned seed) {
  namespace cpu = posttrain::backend::cpu;
  const pt::index_t lock_step =
      std::min<pt::index_t>(cpu::scan_skew * (cpu::scan_rows - 1) + 1, 200);
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<pt::index_t> lengths(B);
  for (int b = 0; b < B; ++b)
    lengths[b] =
        std::uniform_int_distribution<pt::index_t>(b < cpu::scan_rows ? lock_step : 0, 200)(rng);
  ragged_batch g;
  g.offsets = pt::offsets_from_lengths(lengths);
  for (int b = 0; b < B; ++b) {
    for (pt::index_t t = 0; t < lengths[b]; ++t) {
      const double w = b % 5 == 4 ? 0.0 : u(rng) < 0.2 ? 0.0 : u(rng) < 0.8 ? 1.0 : u(rng);
      g.m.push_back(static_cast<float>(w));
      g.r.push_back(w != 0.0 ? 0.1 * nd(rng) + (t + 1 == lengths[b] ? nd(rng) : 0.0) : kNaN);
    }
  }
  return g;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Every output of the interleaved scan equals reverse_scan_serial's: bit for bit where the
// compiler cannot contract multiply-adds, else within a few ulp (see GAE's identity test).
template <class T>
void expect_same_scan_outputs(const std::vector<T>& got, const std::vector<T>& want, int B,
                              const char* what) {
#ifndef __FP_FAST_FMA
  EXPECT_TRUE(same_bits(got, want)) << what << " B=" << B;
#else
  // With hardware FMA (-march=native) GCC's default -ffp-contract=fast fuses a·b + c into one
  // rounding where it chooses, independently in each loop: a few ulp apart, no more.
  const double tol = 8 * std::numeric_limits<T>::epsilon();
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], tol * (1 + std::abs(double(want[i]))))
        << what << " B=" << B << " i=" << i;
#endif
  // Not vacuous: the scan wrote every token (no 7 left).
  EXPECT_EQ(std::count(got.begin(), got.end(), T(7)), 0) << what << " B=" << B;
}

// The interleaved scan (backend::cpu::reverse_scan) against reverse_scan_serial on the
// REINFORCE-family kernels: discounted returns in every convention (γ < 1 and γ = 1; γ = 1 with
// mask_rewards is reverse_cumsum), ReMax with and without the returns output, each with and
// without a mask, for batches smaller than a block, equal to it and not multiples of it, float
// and double.
template <class T>
void expect_return_scans_bit_identical() {
  namespace cpu = posttrain::backend::cpu;
  namespace d = adv::detail;
  const int K = cpu::scan_rows;
  for (int B : {1, K - 1, K, K + 1, 3 * K + 2, 53}) {
    const ragged_batch g = make_ragged(B, 700 + static_cast<unsigned>(B));
    const std::size_t n = g.r.size();
    const std::vector<T> r(g.r.begin(), g.r.end());
    std::vector<T> rf(n);  // unmasked: finite inputs everywhere
    for (std::size_t i = 0; i < n; ++i) rf[i] = static_cast<T>(i % 7) * T(0.25) - T(0.75);
    // Baselines of ReMax, one per sequence.
    std::vector<T> base(B);
    for (int b = 0; b < B; ++b) base[b] = static_cast<T>(0.3 * b - 2.0);

    auto returns = [&]<class Conv, bool HasMask>(Conv conv, const char* what) {
      std::vector<T> o1(n, T(7)), o2(n, T(7));
      using step_t = d::return_step<T, Conv, HasMask>;
      const T* in = HasMask ? r.data() : rf.data();
      const float* m = HasMask ? g.m.data() : nullptr;
      cpu::reverse_scan(g.offsets, step_t{conv, {in}, m, {o1.data()}});
      cpu::reverse_scan_serial(g.offsets, step_t{conv, {in}, m, {o2.data()}});
      expect_same_scan_outputs(o1, o2, B, what);
    };
    for (double gamma : {0.93, 1.0}) {
      returns.template operator()<adv::returns_reset_at_masked, true>({gamma}, "reset_at_masked");
      returns.template operator()<adv::returns_reset_at_masked, false>({gamma}, "reset, no mask");
      returns.template operator()<adv::returns_mask_rewards, true>({gamma}, "mask_rewards");
      returns.template operator()<adv::returns_mask_rewards, false>({gamma}, "mask_r, no mask");
      returns.template operator()<adv::returns_carry_through_masked, true>({gamma},
                                                                           "carry_through");
      returns.template operator()<adv::returns_carry_through_masked, false>({gamma},
                                                                            "carry, no mask");
    }

    auto remax = [&]<bool HasMask, bool HasReturns>(const char* what) {
      std::vector<T> a1(n, T(7)), g1(n, T(7)), a2(n, T(7)), g2(n, T(7));
      using step_t = d::remax_step<T, HasMask, HasReturns>;
      const T* in = HasMask ? r.data() : rf.data();
      const float* m = HasMask ? g.m.data() : nullptr;
      step_t s1{base.data(), {in}, m, {a1.data()}};
      step_t s2{base.data(), {in}, m, {a2.data()}};
      if constexpr (HasReturns) s1.out[1] = g1.data(), s2.out[1] = g2.data();
      cpu::reverse_scan(g.offsets, s1);
      cpu::reverse_scan_serial(g.offsets, s2);
      expect_same_scan_outputs(a1, a2, B, what);
      if constexpr (HasReturns) expect_same_scan_outputs(g1, g2, B, what);
    };
    remax.template operator()<true, true>("remax");
    remax.template operator()<true, false>("remax, no returns");
    remax.template operator()<false, true>("remax, no mask");
    remax.template operator()<false, false>("remax, neither");
  }
}

TEST(DiscountedReturns, InterleavedScanIsBitIdenticalToSerialScan) {
  expect_return_scans_bit_identical<double>();
  expect_return_scans_bit_identical<float>();
}

}  // namespace
