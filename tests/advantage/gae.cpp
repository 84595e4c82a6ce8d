// Tests of advantage/gae.hpp against naive float64 transcriptions of the peers' loops over a
// padded [B, T] layout (verl compute_gae_advantage_return + masked_whiten; OpenRLHF
// get_advantages_and_returns + global normalisation; TRL PPO whitening).
#include "posttrain/advantage/gae.hpp"

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

struct padded {
  int B = 0, T = 0;
  std::vector<double> r, v, m;  // [B*T], finite everywhere (what the peers see)
};

// Rows with leading padding (prompt), interior holes (tool observations) and trailing padding.
padded make_padded(int B, int T, unsigned seed, bool fractional = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  padded p;
  p.B = B;
  p.T = T;
  p.r.resize(B * T);
  p.v.resize(B * T);
  p.m.assign(B * T, 0.0);
  for (int b = 0; b < B; ++b) {
    const int start = static_cast<int>(u(rng) * T / 4);
    const int end = start + static_cast<int>(u(rng) * (T - start));
    for (int t = 0; t < T; ++t) {
      p.r[b * T + t] = 0.1 * nd(rng);
      p.v[b * T + t] = nd(rng);
      if (t >= start && t < end && u(rng) > 0.2)
        p.m[b * T + t] = fractional ? double(float(u(rng) < 0.5 ? 1.0 : 0.25 + 0.5 * u(rng))) : 1.0;
    }
    if (end > start) p.r[b * T + end - 1] += nd(rng);  // the outcome score
  }
  return p;
}

// verl: masked-carry loop, returns before whitening.
void verl_gae(const padded& p, double gamma, double lam, std::vector<double>& adv,
              std::vector<double>& ret) {
  adv.assign(p.B * p.T, 0.0);
  ret.assign(p.B * p.T, 0.0);
  for (int b = 0; b < p.B; ++b) {
    double nextvalues = 0.0, lastgaelam = 0.0;
    for (int t = p.T - 1; t >= 0; --t) {
      const int i = b * p.T + t;
      const double delta = p.r[i] + gamma * nextvalues - p.v[i];
      const double lastgaelam_ = delta + gamma * lam * lastgaelam;
      nextvalues = p.m[i] * p.v[i] + (1 - p.m[i]) * nextvalues;
      lastgaelam = p.m[i] * lastgaelam_ + (1 - p.m[i]) * lastgaelam;
      adv[i] = lastgaelam;
    }
  }
  for (int i = 0; i < p.B * p.T; ++i) ret[i] = adv[i] + p.v[i];
}

// verl masked_whiten: masked_mean with +1e-8, unbiased masked_var, rsqrt(var + 1e-8).
void verl_whiten(std::vector<double>& x, const std::vector<double>& m) {
  double sm = 0, s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) sm += m[i], s += m[i] * x[i];
  const double mean = s / (sm + 1e-8);
  double c = 0;
  for (std::size_t i = 0; i < x.size(); ++i) c += m[i] * (x[i] - mean) * (x[i] - mean);
  double var = c / (sm + 1e-8);
  var *= sm / (sm - 1);
  for (double& xi : x) xi = (xi - mean) / std::sqrt(var + 1e-8);
}

// OpenRLHF: values and rewards multiplied by the mask, nextvalues = V[t+1].
void openrlhf_gae(const padded& p, double gamma, double lam, std::vector<double>& adv,
                  std::vector<double>& ret) {
  adv.assign(p.B * p.T, 0.0);
  ret.assign(p.B * p.T, 0.0);
  for (int b = 0; b < p.B; ++b) {
    double lastgaelam = 0.0;
    for (int t = p.T - 1; t >= 0; --t) {
      const int i = b * p.T + t;
      const double next = t < p.T - 1 ? p.m[i + 1] * p.v[i + 1] : 0.0;
      const double delta = p.m[i] * p.r[i] + gamma * next - p.m[i] * p.v[i];
      lastgaelam = delta + gamma * lam * lastgaelam;
      adv[i] = lastgaelam;
      ret[i] = lastgaelam + p.m[i] * p.v[i];
    }
  }
}

// OpenRLHF global normalisation (biased, clamp) or TRL masked_whiten (unbiased, no eps in mean).
void plain_whiten(std::vector<double>& x, const std::vector<double>& m, bool unbiased, bool clamp) {
  double sm = 0, s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) sm += m[i], s += m[i] * x[i];
  const double mean = s / sm;
  double c = 0;
  for (std::size_t i = 0; i < x.size(); ++i) c += m[i] * (x[i] - mean) * (x[i] - mean);
  double var = c / sm;
  if (unbiased) var *= sm / (sm - 1);
  const double v = clamp ? std::max(var, 1e-8) : var + 1e-8;
  for (double& xi : x) xi = (xi - mean) / std::sqrt(v);
}

// The implementation's view of a padded batch: NaN wherever the mask is 0.
template <class T>
struct device_inputs {
  std::vector<T> r, v;
  std::vector<float> m;
  std::vector<pt::index_t> offsets;
};

template <class T>
device_inputs<T> poisoned(const padded& p) {
  device_inputs<T> d;
  for (int i = 0; i < p.B * p.T; ++i) {
    d.r.push_back(p.m[i] != 0 ? static_cast<T>(p.r[i]) : static_cast<T>(kNaN));
    d.v.push_back(p.m[i] != 0 ? static_cast<T>(p.v[i]) : static_cast<T>(kNaN));
    d.m.push_back(static_cast<float>(p.m[i]));
  }
  d.offsets = pt::padded_offsets(p.B, p.T);
  return d;
}

template <class T>
void expect_match(const std::vector<T>& got, const std::vector<double>& want,
                  const std::vector<double>& m, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (m[i] != 0)
      EXPECT_NEAR(static_cast<double>(got[i]), want[i], tol * (1 + std::abs(want[i]))) << i;
    else
      EXPECT_EQ(got[i], T(0)) << "masked position " << i;
  }
}

}  // namespace

TEST(Gae, MaskedCarryMatchesVerlLoopWithHolesDouble) {
  const padded p = make_padded(7, 40, 1);
  auto d = poisoned<double>(p);
  std::vector<double> a(p.B * p.T, -7), r(p.B * p.T, -7), ra, rr;
  verl_gae(p, 0.99, 0.95, ra, rr);
  adv::gae_options o = adv::gae_conventions::verl;
  o.gamma = 0.99;
  o.lambda = 0.95;
  o.whiten = false;
  adv::gae(pt::exec::host{}, d.r, d.v, d.m, d.offsets, a, r, o);
  expect_match(a, ra, p.m, 1e-12);
  expect_match(r, rr, p.m, 1e-12);
  // Whitened: returns unchanged (taken before whitening), advantages = verl masked_whiten.
  o.whiten = true;
  adv::gae(pt::exec::host{}, d.r, d.v, d.m, d.offsets, a, r, o);
  verl_whiten(ra, p.m);
  expect_match(a, ra, p.m, 1e-10);
  expect_match(r, rr, p.m, 1e-12);
}

TEST(Gae, MaskedCarryMatchesVerlLoopFloat) {
  const padded p = make_padded(9, 33, 2);
  auto d = poisoned<float>(p);
  std::vector<float> a(p.B * p.T), r(p.B * p.T);
  std::vector<double> ra, rr;
  verl_gae(p, 1.0, 1.0, ra, rr);
  verl_whiten(ra, p.m);
  adv::gae(pt::exec::host{}, d.r, d.v, d.m, d.offsets, a, r, adv::gae_conventions::verl);
  // Inputs rounded to float; the recurrence itself runs in double.
  expect_match(a, ra, p.m, 2e-5);
  expect_match(r, rr, p.m, 2e-5);
}

TEST(Gae, FractionalMaskWeightsFollowVerlArithmetic) {
  const padded p = make_padded(5, 30, 3, /*fractional=*/true);
  auto d = poisoned<double>(p);
  std::vector<double> a(p.B * p.T), r(p.B * p.T), ra, rr;
  verl_gae(p, 0.9, 0.8, ra, rr);
  adv::gae_options o{.gamma = 0.9, .lambda = 0.8, .whiten = false};
  adv::gae(pt::exec::host{}, d.r, d.v, d.m, d.offsets, a, r, o);
  expect_match(a, ra, p.m, 1e-12);
  expect_match(r, rr, p.m, 1e-12);
}

TEST(Gae, PlainMatchesOpenRLHFLoopAndGlobalNormalisation) {
  const padded p = make_padded(6, 37, 4);
  auto d = poisoned<double>(p);
  std::vector<double> a(p.B * p.T), r(p.B * p.T), ra, rr;
  openrlhf_gae(p, 0.97, 0.9, ra, rr);
  adv::gae_options o = adv::gae_conventions::openrlhf;
  o.gamma = 0.97;
  o.lambda = 0.9;
  adv::gae(pt::exec::host{}, d.r, d.v, d.m, d.offsets, a, r, o);
  expect_match(r, rr, p.m, 1e-12);
  plain_whiten(ra, p.m, /*unbiased=*/false, /*clamp=*/true);
  expect_match(a, ra, p.m, 1e-10);
}

TEST(Gae, TrlPresetIsPlainWithUnbiasedWhitening) {
  const padded p = make_padded(4, 25, 5);
  auto d = poisoned<double>(p);
  std::vector<double> a(p.B * p.T), r(p.B * p.T), ra, rr;
  openrlhf_gae(p, 1.0, 0.95, ra, rr);
  adv::gae(pt::exec::host{}, d.r, d.v, d.m, d.offsets, a, r, adv::gae_conventions::trl_ppo);
  plain_whiten(ra, p.m, /*unbiased=*/true, /*clamp=*/false);
  expect_match(a, ra, p.m, 1e-10);
  expect_match(r, rr, p.m, 1e-12);
  EXPECT_EQ(adv::gae_conventions::trl_ppo.lambda, 0.95);
}

TEST(Gae, RecurrencesAgreeWithoutInteriorHolesAndDifferWithThem) {
  // Contiguous valid span per row: masked_carry == plain.
  padded p = make_padded(5, 20, 6);
  for (int b = 0; b < p.B; ++b) {
    int first = -1, last = -1;
    for (int t = 0; t < p.T; ++t)
      if (p.m[b * p.T + t] != 0) last = t, first = first < 0 ? t : first;
    for (int t = first; first >= 0 && t <= last; ++t) p.m[b * p.T + t] = 1.0;
  }
  auto d = poisoned<double>(p);
  std::vector<double> a1(p.B * p.T), a2(p.B * p.T), r1(p.B * p.T), r2(p.B * p.T);
  adv::gae_options o{.gamma = 0.9, .lambda = 0.7, .whiten = false};
  adv::gae(pt::exec::host{}, d.r, d.v, d.m, d.offsets, a1, r1, o);
  o.recurrence = adv::gae_recurrence::plain;
  adv::gae(pt::exec::host{}, d.r, d.v, d.m, d.offsets, a2, r2, o);
  for (std::size_t i = 0; i < a1.size(); ++i) {
    EXPECT_NEAR(a1[i], a2[i], 1e-12);
    EXPECT_NEAR(r1[i], r2[i], 1e-12);
  }
  // One interior hole: the token before it sees a different nextvalue.
  std::vector<double> r = {0.0, 0.0, 0.0, 1.0}, v = {0.5, 0.25, 9.0, 0.75};
  std::vector<float> m = {1, 1, 0, 1};
  std::vector<pt::index_t> off = {0, 4};
  std::vector<double> a(4), ret(4);
  o = {.gamma = 0.5,
       .lambda = 1.0,
       .recurrence = adv::gae_recurrence::masked_carry,
       .whiten = false};
  adv::gae(pt::exec::host{}, r, v, m, off, a, ret, o);
  // Skips the hole: A3 = 1 − 0.75; A1 = (0.5·0.75 − 0.25) + 0.5·A3.
  EXPECT_DOUBLE_EQ(a[1], 0.25);
  o.recurrence = adv::gae_recurrence::plain;
  adv::gae(pt::exec::host{}, r, v, m, off, a, ret, o);
  // The hole is a step: A2 = 0.5·0.75 + 0.5·A3 = 0.5; A1 = (0.5·0 − 0.25) + 0.5·A2 = 0.
  EXPECT_DOUBLE_EQ(a[1], 0.0);
}

TEST(Gae, PackedLayoutEqualsPaddedLayout) {
  const padded p = make_padded(11, 31, 7);
  auto d = poisoned<double>(p);
  for (auto rec : {adv::gae_recurrence::masked_carry, adv::gae_recurrence::plain}) {
    adv::gae_options o = rec == adv::gae_recurrence::plain ? adv::gae_conventions::openrlhf
                                                           : adv::gae_conventions::verl;
    o.gamma = 0.95;
    o.lambda = 0.9;
    std::vector<double> a(p.B * p.T), r(p.B * p.T);
    adv::gae(pt::exec::host{}, d.r, d.v, d.m, d.offsets, a, r, o);
    // Pack: keep each row's span from its first to its last valid token (holes included).
    std::vector<double> pr, pv, pa, pret;
    std::vector<float> pm;
    std::vector<pt::index_t> off = {0};
    std::vector<int> where;
    for (int b = 0; b < p.B; ++b) {
      int first = p.T, last = -1;
      for (int t = 0; t < p.T; ++t)
        if (p.m[b * p.T + t] != 0) first = std::min(first, t), last = t;
      for (int t = first; t <= last; ++t) {
        const int i = b * p.T + t;
        pr.push_back(d.r[i]);
        pv.push_back(d.v[i]);
        pm.push_back(d.m[i]);
        where.push_back(i);
      }
      off.push_back(static_cast<pt::index_t>(pr.size()));
    }
    pa.assign(pr.size(), 0);
    pret.assign(pr.size(), 0);
    adv::gae(pt::exec::host{}, pr, pv, pm, off, pa, pret, o);
    for (std::size_t k = 0; k < pr.size(); ++k) {
      EXPECT_NEAR(pa[k], a[where[k]], 1e-12);
      EXPECT_NEAR(pret[k], r[where[k]], 1e-12);
    }
  }
}

TEST(Gae, LambdaOneGammaOneZeroValuesIsReverseCumsum) {
  const padded p = make_padded(6, 29, 8);
  auto d = poisoned<double>(p);
  std::vector<double> zeros(d.v.size(), 0.0);
  std::vector<double> a(p.B * p.T), r(p.B * p.T);
  for (auto rec : {adv::gae_recurrence::masked_carry, adv::gae_recurrence::plain}) {
    adv::gae_options o{.gamma = 1, .lambda = 1, .recurrence = rec, .whiten = false};
    adv::gae(pt::exec::host{}, d.r, zeros, d.m, d.offsets, a, r, o);
    for (int b = 0; b < p.B; ++b) {
      double acc = 0;
      for (int t = p.T - 1; t >= 0; --t) {
        const int i = b * p.T + t;
        acc += p.m[i] * p.r[i];
        EXPECT_NEAR(a[i], p.m[i] != 0 ? acc : 0.0, 1e-12);
        EXPECT_EQ(a[i], r[i]);
      }
    }
  }
}

TEST(Gae, AffineMapsComposeToTheLoop) {
  // The scan form: A_t = (map_t ∘ map_{t+1} ∘ ... ∘ map_last)(0), nv likewise.
  const padded p = make_padded(1, 50, 9);
  const adv::gae_masked_carry rec{0.9, 0.9 * 0.8};
  std::vector<double> ra, rr;
  verl_gae(p, 0.9, 0.8, ra, rr);
  std::vector<double> nv_next(p.T + 1, 0.0);
  for (int t = p.T - 1; t >= 0; --t) {
    adv::affine_map<double> f{};
    for (int s = p.T - 1; s >= t; --s) f = adv::compose(rec.value_map(p.v[s], p.m[s]), f);
    nv_next[t] = adv::apply(f, 0.0);
  }
  for (int t = 0; t < p.T; ++t) {
    adv::affine_map<double> f{};
    for (int s = p.T - 1; s >= t; --s)
      f = adv::compose(rec.advantage_map(p.r[s], p.v[s], p.m[s], nv_next[s + 1]), f);
    EXPECT_NEAR(adv::apply(f, 0.0), ra[t], 1e-12) << t;
  }
  // Associativity of compose.
  const adv::affine_map<double> f{0.5, 1.0}, g{-2.0, 0.25}, h{3.0, -1.0};
  const auto l = adv::compose(adv::compose(f, g), h), r = adv::compose(f, adv::compose(g, h));
  EXPECT_DOUBLE_EQ(l.a, r.a);
  EXPECT_DOUBLE_EQ(l.b, r.b);
}

TEST(Gae, EmptySequencesAllMaskedRowsAndEmptyBatch) {
  // Lengths 0, 3 (all masked), 0, 2, 5 and then four more of varied lengths (lanes + tail).
  std::vector<pt::index_t> lengths = {0, 3, 0, 2, 5, 1, 4, 0, 6};
  const auto off = pt::offsets_from_lengths(lengths);
  const pt::index_t n = off.back();
  std::vector<double> r(n), v(n), a(n, 9), ret(n, 9);
  std::vector<float> m(n, 1.0f);
  for (pt::index_t t = 0; t < n; ++t) r[t] = 0.1 * t, v[t] = 0.05 * t;
  for (pt::index_t t = off[1]; t < off[2]; ++t) m[t] = 0, r[t] = kNaN, v[t] = kNaN;
  adv::gae_options o{.gamma = 0.9, .lambda = 0.5, .whiten = false};
  adv::gae(pt::exec::host{}, r, v, m, off, a, ret, o);
  for (pt::index_t t = off[1]; t < off[2]; ++t) {
    EXPECT_EQ(a[t], 0.0);
    EXPECT_EQ(ret[t], 0.0);
  }
  // Sequence 3 (two tokens): A_1 = r1 − v1, A_0 = r0 + γ v1 − v0 + γλ A_1.
  const pt::index_t s = off[3];
  EXPECT_NEAR(a[s + 1], r[s + 1] - v[s + 1], 1e-15);
  EXPECT_NEAR(a[s], r[s] + 0.9 * v[s + 1] - v[s] + 0.45 * a[s + 1], 1e-15);
  // Whitening with the verl preset still works (enough valid tokens).
  o.whiten = true;
  EXPECT_NO_THROW(adv::gae(pt::exec::host{}, r, v, m, off, a, ret, o));
  // Empty batch, and B = 0.
  std::vector<double> none;
  std::vector<pt::index_t> zero = {0}, empty3 = {0, 0, 0};
  o.whiten = false;
  EXPECT_NO_THROW(adv::gae(pt::exec::host{}, none, none, {}, zero, none, none, o));
  EXPECT_NO_THROW(adv::gae(pt::exec::host{}, none, none, {}, empty3, none, none, o));
  // The OpenRLHF preset (zero policy) accepts an all-masked batch: everything 0.
  std::vector<float> all0(n, 0.0f);
  adv::gae(pt::exec::host{}, r, v, all0, off, a, ret, adv::gae_conventions::openrlhf);
  for (pt::index_t t = 0; t < n; ++t) {
    EXPECT_EQ(a[t], 0.0);
    EXPECT_EQ(ret[t], 0.0);
  }
}

TEST(Gae, ReturnsOptionalAndInPlace) {
  const padded p = make_padded(5, 21, 10);
  auto d = poisoned<double>(p);
  std::vector<double> a(p.B * p.T), r(p.B * p.T), a2(p.B * p.T);
  adv::gae(pt::exec::host{}, d.r, d.v, d.m, d.offsets, a, r, adv::gae_conventions::verl);
  adv::gae(pt::exec::host{}, d.r, d.v, d.m, d.offsets, a2, {}, adv::gae_conventions::verl);
  EXPECT_EQ(a, a2);
  // advantages over the rewards, returns over the values.
  std::vector<double> rr = d.r, vv = d.v;
  adv::gae(pt::exec::host{}, rr, vv, d.m, d.offsets, rr, vv, adv::gae_conventions::verl);
  EXPECT_EQ(rr, a);
  EXPECT_EQ(vv, r);
}

TEST(Gae, ValidationLeavesOutputsUntouched) {
  std::vector<double> r = {1, 2, 3}, v = {0, 0, 0}, a(3, 7.0), ret(3, 7.0);
  std::vector<float> m = {1, 1, 1};
  std::vector<pt::index_t> off = {0, 3};
  const pt::exec::host h;
  auto untouched = [&] {
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(a[i], 7.0);
      EXPECT_EQ(ret[i], 7.0);
    }
  };
  auto o = adv::gae_conventions::verl;
  for (double bad : {-0.1, 1.5, kNaN, std::numeric_limits<double>::infinity()}) {
    o = adv::gae_conventions::verl;
    o.gamma = bad;
    EXPECT_THROW(adv::gae(h, r, v, m, off, a, ret, o), pt::error);
    o = adv::gae_conventions::verl;
    o.lambda = bad;
    EXPECT_THROW(adv::gae(h, r, v, m, off, a, ret, o), pt::error);
  }
  o = adv::gae_conventions::verl;
  std::vector<double> v2 = {0, 0};
  std::vector<float> m2 = {1, 1};
  std::vector<double> a2(2);
  EXPECT_THROW(adv::gae(h, r, v2, m, off, a, ret, o), pt::error);
  EXPECT_THROW(adv::gae(h, r, v, m2, off, a, ret, o), pt::error);
  EXPECT_THROW(adv::gae(h, r, v, m, off, a2, ret, o), pt::error);
  EXPECT_THROW(adv::gae(h, r, v, m, off, a, a2, o), pt::error);
  EXPECT_THROW(adv::gae(h, r, v, m, off, a, a, o), pt::error);  // same buffer
  std::vector<pt::index_t> bad_off = {0, 2, 1, 3}, bad_end = {0, 2}, bad_start = {1, 3};
  EXPECT_THROW(adv::gae(h, r, v, m, bad_off, a, ret, o), pt::error);
  EXPECT_THROW(adv::gae(h, r, v, m, bad_end, a, ret, o), pt::error);
  EXPECT_THROW(adv::gae(h, r, v, m, bad_start, a, ret, o), pt::error);
  std::vector<pt::index_t> no_off;
  EXPECT_THROW(adv::gae(h, r, v, m, no_off, a, ret, o), pt::error);
  std::vector<float> neg = {1, -1, 1}, nanm = {1, static_cast<float>(kNaN), 1};
  EXPECT_THROW(adv::gae(h, r, v, neg, off, a, ret, o), pt::error);
  EXPECT_THROW(adv::gae(h, r, v, nanm, off, a, ret, o), pt::error);
  // verl whitening raises on <= 1 valid token, before writing.
  std::vector<float> one = {0, 1, 0};
  EXPECT_THROW(adv::gae(h, r, v, one, off, a, ret, o), pt::error);
  o.whitening.eps = 0.0;
  EXPECT_THROW(adv::gae(h, r, v, m, off, a, ret, o), pt::error);
  o = adv::gae_conventions::verl;
  o.whitening.eps = -1.0;
  EXPECT_THROW(adv::gae(h, r, v, m, off, a, ret, o), pt::error);
  // Partial overlap of an output with an input.
  std::vector<double> buf = {1, 2, 3, 4};
  EXPECT_THROW(adv::gae(h, std::span<const double>(buf.data(), 3), v, m, off,
                        std::span<double>(buf.data() + 1, 3), ret, o),
               pt::error);
  untouched();
  // The same call with a valid mask succeeds (the tests above can fail).
  o = adv::gae_conventions::verl;
  EXPECT_NO_THROW(adv::gae(h, r, v, m, off, a, ret, o));
  EXPECT_NE(a[0], 7.0);
}

// The CPU backend scans blocks of backend::cpu::scan_rows sequences interleaved, row k skewed by
// k·scan_skew tokens (C: the lock-step start of the block's last row): batches smaller than a
// block, not a multiple of it, single tokens, rows shorter and longer than the skew and fully
// masked rows all get the peers' recurrence.
TEST(Gae, InterleavedBlocksMatchPeerLoopsForEveryShape) {
  const int W = posttrain::backend::cpu::scan_rows;
  const int C = static_cast<int>(posttrain::backend::cpu::scan_skew) * (W - 1) + 1;
  const std::pair<int, int> shapes[] = {{1, 1}, {3, 1}, {W - 1, 5}, {W, C + 3},
                                        {W + 3, 2 * C + 1}, {2 * W + 1, 9}, {1, 3 * C}};
  unsigned seed = 100;
  for (const auto& [B, T] : shapes) {
    padded p = make_padded(B, T, ++seed);
    for (int t = 0; t < T; ++t) p.m[t] = 0.0;  // row 0 fully masked
    const auto d = poisoned<double>(p);
    const auto f = poisoned<float>(p);
    for (auto rec : {adv::gae_recurrence::masked_carry, adv::gae_recurrence::plain}) {
      std::vector<double> ra, rr;
      if (rec == adv::gae_recurrence::masked_carry)
        verl_gae(p, 0.97, 0.9, ra, rr);
      else
        openrlhf_gae(p, 0.97, 0.9, ra, rr);
      const adv::gae_options o{.gamma = 0.97, .lambda = 0.9, .recurrence = rec, .whiten = false};
      std::vector<double> a(B * T, 7), r(B * T, 7), a2(B * T, 7);
      adv::gae(pt::exec::host{}, d.r, d.v, d.m, d.offsets, a, r, o);
      expect_match(a, ra, p.m, 1e-12);
      expect_match(r, rr, p.m, 1e-12);
      adv::gae(pt::exec::host{}, d.r, d.v, d.m, d.offsets, a2, {}, o);
      EXPECT_EQ(a2, a) << B << "x" << T;
      std::vector<float> af(B * T, 7), rf(B * T, 7);
      adv::gae(pt::exec::host{}, f.r, f.v, f.m, f.offsets, af, rf, o);
      expect_match(af, ra, p.m, 2e-5);
      expect_match(rf, rr, p.m, 2e-5);
      // No mask (every token valid): both recurrences are the textbook loop on unpoisoned data.
      padded all = p;
      std::fill(all.m.begin(), all.m.end(), 1.0);
      verl_gae(all, 0.97, 0.9, ra, rr);
      adv::gae(pt::exec::host{}, all.r, all.v, {}, d.offsets, a, r, o);
      expect_match(a, ra, all.m, 1e-12);
      expect_match(r, rr, all.m, 1e-12);
    }
  }
}

// Packed sequences of very different lengths in one interleaved block (the longer rows finish
// their heads alone), each against the peer loop on that sequence alone.
TEST(Gae, RaggedBlocksMatchPerSequenceLoops) {
  const std::vector<pt::index_t> lengths = {0, 1, 150, 3, 0, 64, 65, 2, 1, 200, 7, 31, 33};
  for (auto rec : {adv::gae_recurrence::masked_carry, adv::gae_recurrence::plain}) {
    std::vector<double> r, v, want_a, want_r, m;
    std::vector<float> mf;
    unsigned seed = 300;
    for (pt::index_t len : lengths) {
      padded p = make_padded(1, static_cast<int>(len), ++seed);
      std::vector<double> ra, rr;
      if (rec == adv::gae_recurrence::masked_carry)
        verl_gae(p, 0.95, 0.8, ra, rr);
      else
        openrlhf_gae(p, 0.95, 0.8, ra, rr);
      const auto d = poisoned<double>(p);
      r.insert(r.end(), d.r.begin(), d.r.end());
      v.insert(v.end(), d.v.begin(), d.v.end());
      mf.insert(mf.end(), d.m.begin(), d.m.end());
      m.insert(m.end(), p.m.begin(), p.m.end());
      want_a.insert(want_a.end(), ra.begin(), ra.end());
      want_r.insert(want_r.end(), rr.begin(), rr.end());
    }
    const auto off = pt::offsets_from_lengths(lengths);
    std::vector<double> a(r.size(), 7), ret(r.size(), 7);
    const adv::gae_options o{.gamma = 0.95, .lambda = 0.8, .recurrence = rec, .whiten = false};
    adv::gae(pt::exec::host{}, r, v, mf, off, a, ret, o);
    expect_match(a, want_a, m, 1e-12);
    expect_match(ret, want_r, m, 1e-12);
  }
}

namespace {

// Ragged batch for the scan identity tests: lengths 0..200 (the first block's rows longer than
// its skew, so that every batch of a block or more runs the lock-step loop), interior holes,
// every 5th row fully masked, fractional weights; NaN rewards and values where m = 0.
struct ragged_batch {
  std::vector<pt::index_t> offsets;
  std::vector<double> r, v;
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
      g.r.push_back(w != 0.0 ? 0.1 * nd(rng) : kNaN);
      g.v.push_back(w != 0.0 ? nd(rng) : kNaN);
    }
  }
  return g;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// The interleaved scan (backend::cpu::reverse_scan) against reverse_scan_serial, the one-row-at-
// a-time order, on the GAE kernels: every output bit-identical (where the compiler cannot
// contract multiply-adds: see below), for batches smaller than a block,
// equal to it, and not multiples of it, both recurrences, with and without mask and returns,
// float and double.
template <class T>
void expect_gae_scan_bit_identical() {
  namespace cpu = posttrain::backend::cpu;
  const int K = cpu::scan_rows;
  for (int B : {1, K - 1, K, K + 1, 3 * K + 2, 53}) {
    const ragged_batch g = make_ragged(B, 900 + static_cast<unsigned>(B));
    const std::vector<T> r(g.r.begin(), g.r.end()), v(g.v.begin(), g.v.end());
    const std::size_t n = r.size();
    auto check = [&]<class Rec, bool HasMask, bool HasReturns>(Rec rec) {
      std::vector<T> a1(n, T(7)), r1(n, T(7)), a2(n, T(7)), r2(n, T(7));
      using step_t = adv::detail::gae_step<T, Rec, HasMask, HasReturns>;
      step_t s1{rec, {r.data(), v.data()}, HasMask ? g.m.data() : nullptr, {a1.data()}};
      step_t s2{rec, {r.data(), v.data()}, HasMask ? g.m.data() : nullptr, {a2.data()}};
      if constexpr (HasReturns) s1.out[1] = r1.data(), s2.out[1] = r2.data();
      if constexpr (!HasMask) {  // unmasked: finite inputs everywhere
        std::vector<T> rf(n), vf(n);
        for (std::size_t i = 0; i < n; ++i)
          rf[i] = static_cast<T>(i % 7) - T(3), vf[i] = static_cast<T>(i % 5) * T(0.5);
        s1.in[0] = s2.in[0] = rf.data();
        s1.in[1] = s2.in[1] = vf.data();
        cpu::reverse_scan(g.offsets, s1);
        cpu::reverse_scan_serial(g.offsets, s2);
      } else {
        cpu::reverse_scan(g.offsets, s1);
        cpu::reverse_scan_serial(g.offsets, s2);
      }
#ifndef __FP_FAST_FMA
      EXPECT_TRUE(same_bits(a1, a2)) << "B=" << B << " mask=" << HasMask;
      EXPECT_TRUE(same_bits(r1, r2)) << "B=" << B << " mask=" << HasMask;
#else
      // With hardware FMA (-march=native) GCC's default -ffp-contract=fast fuses a·b + c into
      // one rounding where it chooses, independently in each loop: a few ulp apart, no more.
      const double tol = 8 * std::numeric_limits<T>::epsilon();
      for (std::size_t i = 0; i < n; ++i) {
        EXPECT_NEAR(a1[i], a2[i], tol * (1 + std::abs(double(a2[i])))) << "B=" << B << " i=" << i;
        EXPECT_NEAR(r1[i], r2[i], tol * (1 + std::abs(double(r2[i])))) << "B=" << B << " i=" << i;
      }
#endif
      // Not vacuous: the scan wrote every token (no 7 left).
      EXPECT_EQ(std::count(a1.begin(), a1.end(), T(7)), 0) << "B=" << B;
    };
    const adv::gae_masked_carry mc{0.97, 0.97 * 0.9};
    const adv::gae_plain pl{0.97, 0.97 * 0.9};
    check.template operator()<adv::gae_masked_carry, true, true>(mc);
    check.template operator()<adv::gae_masked_carry, true, false>(mc);
    check.template operator()<adv::gae_masked_carry, false, true>(mc);
    check.template operator()<adv::gae_plain, true, true>(pl);
    check.template operator()<adv::gae_plain, false, false>(pl);
  }
}

TEST(Gae, InterleavedScanIsBitIdenticalToSerialScan) {
  expect_gae_scan_bit_identical<double>();
  expect_gae_scan_bit_identical<float>();
}

}  // namespace
