// surrogate::gmpo (algo::gmpo): verl geo_mean and TRL experimental gmpo.
#include <limits>

#include "policy_gradient_naive.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"

namespace {

using namespace pg_test;
namespace pt = posttrain;
using gmpo = pt::algo::gmpo;
using gmpo_k3 = pt::loss::policy_gradient<pt::surrogate::gmpo, pt::kl::k3,
                                          pt::agg::seq_mean_token_mean>;

double sign(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }

// verl compute_policy_loss_geo_mean, float64, written from the torch expression.
double naive_verl_gmpo(const batch& b, double el, double eh, const std::vector<double>* w = nullptr,
                       double cap = std::numeric_limits<double>::infinity()) {
  double total = 0;
  const std::size_t rows = b.offsets.size() - 1;
  for (std::size_t i = 0; i < rows; ++i) {
    double len = 0, sc = 0, sa = 0, sw = 0;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
      if (b.mask[t] == 0) continue;
      const double m = b.mask[t], lr = b.logp[t] - b.old_logp[t], s = sign(b.adv[t]);
      const double c = s * std::min(s * lr, s * std::min(std::max(lr, -el), eh));
      len += m, sc += m * c, sa += m * b.adv[t];
      if (w) sw += m * std::log(std::min((*w)[t], cap) + 1e-10);
    }
    const double d = len + 1e-8;
    double L = -(sa / d) * std::exp(sc / d);
    if (w) L *= std::exp(sw / d);
    total += L;
  }
  return rows ? total / rows : 0.0;
}

// TRL GMPOTrainer._compute_loss: per-sequence A_i, max(|o_i|, 1), + β·mean_t k3, mean over rows.
double naive_trl_gmpo(const batch& b, double el, double eh, double beta) {
  double total = 0;
  const std::size_t rows = b.offsets.size() - 1;
  for (std::size_t i = 0; i < rows; ++i) {
    double len = 0, sc = 0, kl = 0;
    const double a = b.adv[b.offsets[i]];
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
      if (b.mask[t] == 0) continue;
      const double lr = b.logp[t] - b.old_logp[t];
      const double cl = std::min(std::max(lr, -el), eh);
      const double c = a > 0 ? std::min(lr, cl) : std::max(lr, cl);
      const double x = b.ref[t] - b.logp[t];
      len += b.mask[t], sc += b.mask[t] * c, kl += b.mask[t] * (std::exp(x) - x - 1);
    }
    // A row without tokens: TRL adds the constant −A_i (ρ = e^0), this library 0 (no gradient
    // either way; documented).
    if (len == 0) continue;
    const double d = std::max(len, 1.0);
    total += -std::exp(sc / d) * a + beta * kl / d;
  }
  return rows ? total / rows : 0.0;
}

// Moves log-ratios within 1e-3 of ±ε (log space) away from the clip boundary.
void avoid_log_boundaries(batch& b, double el, double eh) {
  for (std::size_t t = 0; t < b.n(); ++t) {
    const double lr = b.logp[t] - b.old_logp[t];
    if (std::abs(lr - eh) < 1e-3 || std::abs(lr + el) < 1e-3) b.old_logp[t] -= 0.01;
  }
}

TEST(PolicyGradientGmpo, VerlMatchesNaiveAndFiniteDifferences) {
  batch b = make_batch({5, 0, 6, 4, 7}, 0.8, 101);
  for (std::size_t t = 0; t < b.n(); ++t) b.adv[t] += 0.3 * std::sin(3.0 * double(t));
  b.adv[8] = 0.0;  // sign(0) = 0: the token adds nothing to the geometric mean
  const auto o = pt::pg_presets::verl_gmpo();
  avoid_log_boundaries(b, 0.4, 0.4);
  const auto ao = pt::pg_presets::verl_gmpo_agg();
  std::vector<double> g(b.n());
  const auto r = gmpo::compute(inputs_of(b), o, {std::span<double>(g), {}}, {}, ao);
  EXPECT_NEAR(r.loss, naive_verl_gmpo(b, 0.4, 0.4), 1e-12);
  EXPECT_EQ(r.divisor, 5.0);  // every row counts, the empty one included (torch.mean)
  expect_fd_grad(
      b, [&](const batch& x) { return gmpo::compute(inputs_of(x), o, {}, {}, ao).loss; }, g);
  // Clipped tokens get no gradient; the clip is one-sided by sign(A).
  double clipped = 0, lower = 0, tokens = 0;
  for (std::size_t t = 0; t < b.n(); ++t) {
    if (b.mask[t] == 0) continue;
    const double lr = b.logp[t] - b.old_logp[t];
    const bool hi = b.adv[t] > 0 && lr > 0.4, lo = b.adv[t] < 0 && lr < -0.4;
    if (hi || lo) {
      EXPECT_EQ(g[t], 0.0) << t;
    }
    clipped += hi || lo, lower += lo, tokens += 1;
  }
  EXPECT_GT(clipped, 0);
  EXPECT_NEAR(r.clip_fraction, clipped / tokens, 1e-15);
  EXPECT_NEAR(r.clip_fraction_lower, lower / tokens, 1e-15);
}

TEST(PolicyGradientGmpo, TrlWithKlMatchesNaiveAndFiniteDifferences) {
  batch b = make_batch({4, 6, 0, 5}, 0.7, 102);
  const double beta = 0.04;
  const auto o = pt::pg_presets::trl_gmpo(0.4, beta);
  avoid_log_boundaries(b, 0.4, 0.4);
  const auto ao = pt::agg_conventions::trl();
  std::vector<double> g(b.n());
  const auto r = gmpo_k3::compute(inputs_of(b, true), o, {std::span<double>(g), {}}, {}, ao);
  EXPECT_NEAR(r.loss, naive_trl_gmpo(b, 0.4, 0.4, beta), 1e-12);
  EXPECT_NEAR(r.loss, r.pg_loss + beta * r.kl_loss, 1e-14);
  expect_fd_grad(
      b, [&](const batch& x) { return gmpo_k3::compute(inputs_of(x, true), o, {}, {}, ao).loss; },
      g);
  // Asymmetric log-space clip (epsilon_high).
  const auto o2 = pt::pg_presets::trl_gmpo(0.2, 0.0, 0.5);
  EXPECT_NEAR(gmpo::compute(inputs_of(b), o2, {}, {}, ao).loss, naive_trl_gmpo(b, 0.2, 0.5, 0.0),
              1e-12);
}

TEST(PolicyGradientGmpo, OnPolicyIsMeanAdvantageGradient) {
  batch b = make_batch({3, 5, 4}, 0.0, 103);
  const auto ao = pt::pg_presets::verl_gmpo_agg();
  std::vector<double> g(b.n());
  const auto r = gmpo::compute(inputs_of(b), pt::pg_presets::verl_gmpo(),
                               {std::span<double>(g), {}}, {}, ao);
  // ρ = 1: loss = mean_i(−Ā_i), ∂/∂ℓ_u = −Ā_i·m_u/(|o_i| + 1e-8)/B (sequence advantages).
  double expect_loss = 0;
  for (std::size_t i = 0; i + 1 < b.offsets.size(); ++i) {
    double len = 0;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) len += b.mask[t];
    const double a = b.adv[b.offsets[i]], abar = a * len / (len + 1e-8);
    expect_loss -= abar / 3;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t)
      EXPECT_NEAR(g[t], b.mask[t] == 0 ? 0.0 : -abar / (len + 1e-8) / 3, 1e-15);
  }
  EXPECT_NEAR(r.loss, expect_loss, 1e-15);
  EXPECT_NEAR(r.mean_ratio, 1.0, 1e-15);
}

TEST(PolicyGradientGmpo, VerlSequenceGeometricMeanImportanceWeights) {
  batch b = make_batch({5, 3, 6}, 0.6, 104);
  auto o = pt::pg_presets::verl_gmpo();
  o.importance_weight_cap = 1.5;
  avoid_log_boundaries(b, 0.4, 0.4);
  const auto ao = pt::pg_presets::verl_gmpo_agg();
  std::vector<double> g(b.n());
  const auto r = gmpo::compute(inputs_of(b, false, false, true), o, {std::span<double>(g), {}},
                               {}, ao);
  EXPECT_NEAR(r.loss, naive_verl_gmpo(b, 0.4, 0.4, &b.weights, 1.5), 1e-12);
  expect_fd_grad(
      b,
      [&](const batch& x) {
        return gmpo::compute(inputs_of(x, false, false, true), o, {}, {}, ao).loss;
      },
      g);
}

TEST(PolicyGradientGmpo, HugeLogRatiosFinite) {
  // A > 0, logr = +50: clipped at ε_high (no gradient); A > 0, logr = −50: ρ tiny;
  // A < 0, logr = −50: clipped at −ε_low; A < 0, logr = +50: unclipped, ρ = e^{50/len}.
  const std::vector<index_t> off{0, 1, 2, 3, 4};
  std::vector<float> lp{-1, -1, -1, -1}, old{-51, 49, 49, -51}, adv{1, 1, -1, -1}, g(4, 9.f);
  pt::policy_gradient_inputs<float> in;
  in.logprobs = lp, in.old_logprobs = old, in.advantages = adv, in.seq_offsets = off;
  const auto ao = pt::pg_presets::verl_gmpo_agg();
  const auto r = gmpo::compute(in, pt::pg_presets::verl_gmpo(), {std::span<float>(g), {}}, {}, ao);
  EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_EQ(g[0], 0.f);
  EXPECT_EQ(g[2], 0.f);
  EXPECT_NEAR(g[1] / (-std::exp(-50.0) / 4), 1.0, 1e-6);
  EXPECT_NEAR(g[3] / (std::exp(50.0) / 4), 1.0, 1e-6);
  for (float x : g) EXPECT_TRUE(std::isfinite(x));
  // with the optional clamp (verl's commented-out ±20) the unclipped ratio is bounded
  auto o = pt::pg_presets::verl_gmpo();
  o.log_ratio_min = -20, o.log_ratio_max = 20;
  const auto r2 = gmpo::compute(in, o, {std::span<float>(g), {}}, {}, ao);
  EXPECT_NEAR(r2.loss / ((-std::exp(0.4) - std::exp(-20.0) + std::exp(-0.4) + std::exp(20.0)) / 4),
              1.0, 1e-5);
  for (float x : g) EXPECT_EQ(x, 0.f);
}

TEST(PolicyGradientGmpo, EmptyAndAllMaskedRows) {
  batch b = make_batch({3, 0, 4, 2}, 0.5, 105);
  for (auto t = b.offsets[3]; t < b.offsets[4]; ++t) {
    b.mask[t] = 0;
    b.logp[t] = std::numeric_limits<double>::quiet_NaN();  // never read
  }
  const auto ao = pt::pg_presets::verl_gmpo_agg();
  std::vector<double> g(b.n(), 5.0);
  const auto r = gmpo::compute(inputs_of(b), pt::pg_presets::verl_gmpo(),
                               {std::span<double>(g), {}}, {}, ao);
  EXPECT_NEAR(r.loss, naive_verl_gmpo(b, 0.4, 0.4), 1e-12);
  for (auto t = b.offsets[3]; t < b.offsets[4]; ++t) EXPECT_EQ(g[t], 0.0);
  for (auto& m : b.mask) m = 0;
  const auto r0 = gmpo::compute(inputs_of(b), {}, {std::span<double>(g), {}}, {}, ao);
  EXPECT_EQ(r0.loss, 0.0);
  for (double x : g) EXPECT_EQ(x, 0.0);
  batch e;
  e.offsets = {0};
  EXPECT_EQ(gmpo::compute(inputs_of(e), {}, {}, {}, ao).loss, 0.0);
}

TEST(PolicyGradientGmpo, BadInputLeavesOutputsUntouched) {
  batch b = make_batch({3, 4}, 0.3, 106);
  std::vector<double> g(b.n(), 42.0);
  const pt::policy_gradient_outputs<double> out{std::span<double>(g), {}};
  auto expect_bad = [&](auto in, pt::policy_gradient_options o) {
    EXPECT_THROW(gmpo::compute(in, o, out), pt::error);
    for (double x : g) EXPECT_EQ(x, 42.0);
  };
  const auto in = inputs_of(b);
  { auto p = pt::pg_presets::verl_gmpo(); p.clip_low = -0.1; expect_bad(in, p); }
  { auto p = pt::pg_presets::verl_gmpo(); p.clip_high = std::nan(""); expect_bad(in, p); }
  { auto x = in; x.seq_offsets = {}; expect_bad(x, {}); }
  { auto x = in; x.old_logprobs = {}; expect_bad(x, {}); }
  { auto x = in; x.advantages = std::span<const double>(b.adv).first(2); expect_bad(x, {}); }
}

}  // namespace
