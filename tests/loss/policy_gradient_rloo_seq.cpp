// surrogate::rloo_sequence (algo::rloo_sequence_ppo): TRL RLOOTrainer sequence-level PPO.
#include <limits>

#include "policy_gradient_naive.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"

namespace {

using namespace pg_test;
namespace pt = posttrain;
using rloo = pt::algo::rloo_sequence_ppo;

// TRL RLOOTrainer._compute_loss in float64: logps = Σ m·ℓ, coef_1 = exp(logps − old_logps),
// −min(coef_1·A, clip(coef_1)·A), mean over rows (rows without tokens: 0 here, see header).
double naive_rloo(const batch& b, const pt::policy_gradient_options& o) {
  double total = 0;
  const std::size_t rows = b.offsets.size() - 1;
  for (std::size_t i = 0; i < rows; ++i) {
    double s = 0, len = 0;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t)
      if (b.mask[t] != 0) s += b.mask[t] * (b.logp[t] - b.old_logp[t]), len += b.mask[t];
    if (len == 0) continue;
    const double a = b.adv[b.offsets[i]];
    const double c = std::exp(std::min(std::max(s, o.log_ratio_min), o.log_ratio_max));
    const double c2 = std::min(std::max(c, 1 - o.clip_low), 1 + o.clip_high);
    total += -std::min(c * a, c2 * a);
  }
  return rows ? total / rows : 0.0;
}

// Rows with set advantages and set sequence log-ratios Σ m·(ℓ − ℓold).
batch make_rows(const std::vector<int>& lengths, const std::vector<double>& adv,
                const std::vector<double>& seq_log_ratio, unsigned seed) {
  batch b = make_batch(lengths, 0.1, seed);
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    double s = 0;
    std::size_t last = b.n();
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
      b.adv[t] = adv[i];
      if (b.mask[t] != 0) s += b.mask[t] * (b.logp[t] - b.old_logp[t]), last = t;
    }
    if (last < b.n()) b.old_logp[last] -= (seq_log_ratio[i] - s) / b.mask[last];
  }
  return b;
}

TEST(PolicyGradientRlooSeq, MatchesNaiveAndFiniteDifferences) {
  // A > 0 with s = e^{0.3} > 1.2 (clipped), A > 0 with s = e^{−0.3} (not), A < 0 with e^{0.1}
  // (not), A < 0 with e^{−0.5} < 0.8 (clipped), and an empty row.
  batch b = make_rows({4, 5, 3, 6, 0}, {0.7, 0.4, -0.5, -0.9, 0.3}, {0.3, -0.3, 0.1, -0.5, 0}, 301);
  const auto o = pt::pg_presets::trl_rloo();
  const auto ao = pt::agg_conventions::trl();
  std::vector<double> g(b.n());
  const auto r = rloo::compute(inputs_of(b), o, {std::span<double>(g), {}}, {}, ao);
  EXPECT_NEAR(r.loss, naive_rloo(b, o), 1e-12);
  EXPECT_EQ(r.divisor, 5.0);
  expect_fd_grad(
      b, [&](const batch& x) { return rloo::compute(inputs_of(x), o, {}, {}, ao).loss; }, g);
  for (std::size_t i = 0; i < 4; ++i)
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
      if (b.mask[t] == 0) continue;
      if (i == 0 || i == 3) {
        EXPECT_EQ(g[t], 0.0) << t;
      } else {
        // ∂/∂ℓ_t of −A·e^{Σ m·logr} / B = −A·s·m_t / B: the full-sequence ratio, no 1/|o_i|
        EXPECT_NEAR(g[t], -b.adv[t] * std::exp(i == 1 ? -0.3 : 0.1) / 5, 1e-12) << t;
      }
    }
  EXPECT_GT(r.clip_fraction, 0.0);
}

TEST(PolicyGradientRlooSeq, EqualsGspoForSingleTokenRows) {
  // One token per row: the sum of log-ratios is the mean, so RLOO sequence PPO = GSPO.
  batch b = make_batch({1, 1, 1, 1, 1, 1}, 0.3, 302, false);
  const auto o = pt::pg_presets::trl_rloo();
  const auto ao = pt::agg_conventions::trl();
  std::vector<double> g1(b.n()), g2(b.n());
  const auto r1 = rloo::compute(inputs_of(b), o, {std::span<double>(g1), {}}, {}, ao);
  const auto r2 = pt::algo::gspo::compute(inputs_of(b), o, {std::span<double>(g2), {}}, {}, ao);
  EXPECT_NEAR(r1.loss, r2.loss, 1e-15);
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_NEAR(g1[t], g2[t], 1e-15);
}

TEST(PolicyGradientRlooSeq, HugeSequenceLogRatios) {
  // Σ logr = ±150 over three tokens.
  const std::vector<index_t> off{0, 3, 6};
  std::vector<float> lp(6, -1.f), old{-51, -51, -51, 49, 49, 49}, adv{-1, -1, -1, 1, 1, 1};
  std::vector<float> g(6, 9.f);
  pt::policy_gradient_inputs<float> in;
  in.logprobs = lp, in.old_logprobs = old, in.advantages = adv, in.seq_offsets = off;
  const auto ao = pt::agg_conventions::trl();
  // float without a clamp: e^{150} overflows to +∞ for A < 0 (TRL gives inf too); the clamp
  // (log_ratio_max = 20) keeps loss and gradient finite, with zero gradient where it is active.
  auto o = pt::pg_presets::trl_rloo();
  o.log_ratio_min = -20, o.log_ratio_max = 20;
  const auto r = rloo::compute(in, o, {std::span<float>(g), {}}, {}, ao);
  EXPECT_NEAR(r.loss / ((std::exp(20.0) - std::exp(-20.0)) / 2), 1.0, 1e-6);
  for (float x : g) EXPECT_EQ(x, 0.f);
  // double, no clamp: finite (e^{150} ≈ 1.4e65); A > 0 with e^{−150} is unclipped (tiny grad)
  std::vector<double> lpd(lp.begin(), lp.end()), oldd(old.begin(), old.end()),
      advd(adv.begin(), adv.end()), gd(6);
  pt::policy_gradient_inputs<double> ind;
  ind.logprobs = lpd, ind.old_logprobs = oldd, ind.advantages = advd, ind.seq_offsets = off;
  const auto rd = rloo::compute(ind, pt::pg_presets::trl_rloo(), {std::span<double>(gd), {}}, {}, ao);
  EXPECT_NEAR(rd.loss / ((std::exp(150.0) - std::exp(-150.0)) / 2), 1.0, 1e-12);
  for (int t = 0; t < 3; ++t) EXPECT_NEAR(gd[t] / (std::exp(150.0) / 2), 1.0, 1e-12);
  for (int t = 3; t < 6; ++t) EXPECT_NEAR(gd[t] / (-std::exp(-150.0) / 2), 1.0, 1e-12);
}

TEST(PolicyGradientRlooSeq, EmptyAndAllMaskedRows) {
  batch b = make_rows({3, 0, 4, 2}, {0.5, 0.1, -0.4, 0.9}, {0.05, 0, -0.1, 0.02}, 303);
  for (auto t = b.offsets[3]; t < b.offsets[4]; ++t) {
    b.mask[t] = 0;
    b.logp[t] = std::numeric_limits<double>::quiet_NaN();
  }
  const auto ao = pt::agg_conventions::trl();
  std::vector<double> g(b.n(), 5.0);
  const auto r = rloo::compute(inputs_of(b), pt::pg_presets::trl_rloo(),
                               {std::span<double>(g), {}}, {}, ao);
  EXPECT_NEAR(r.loss, naive_rloo(b, pt::pg_presets::trl_rloo()), 1e-12);
  for (auto t = b.offsets[3]; t < b.offsets[4]; ++t) EXPECT_EQ(g[t], 0.0);
  for (auto& m : b.mask) m = 0;
  EXPECT_EQ(rloo::compute(inputs_of(b), {}, {std::span<double>(g), {}}, {}, ao).loss, 0.0);
  for (double x : g) EXPECT_EQ(x, 0.0);
}

TEST(PolicyGradientRlooSeq, BadInputLeavesOutputsUntouched) {
  batch b = make_batch({3, 4}, 0.3, 304);
  std::vector<double> g(b.n(), 42.0);
  const pt::policy_gradient_outputs<double> out{std::span<double>(g), {}};
  auto expect_bad = [&](auto in, pt::policy_gradient_options o) {
    EXPECT_THROW(rloo::compute(in, o, out), pt::error);
    for (double x : g) EXPECT_EQ(x, 42.0);
  };
  const auto in = inputs_of(b);
  { auto p = pt::pg_presets::trl_rloo(); p.clip_high = -0.2; expect_bad(in, p); }
  { auto p = pt::pg_presets::trl_rloo(); p.dual_clip = 0.5; expect_bad(in, p); }
  { auto x = in; x.seq_offsets = {}; expect_bad(x, {}); }
  { auto x = in; x.old_logprobs = {}; expect_bad(x, {}); }
  std::vector<index_t> bad_off{0, 5, 3};
  { auto x = in; x.seq_offsets = bad_off; expect_bad(x, {}); }
}

}  // namespace
