// surrogate::vespo (algo::vespo): TRL loss_type="vespo" (GRPOTrainer.get_gamma_weights).
#include <limits>

#include "policy_gradient_naive.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"

namespace {

using namespace pg_test;
namespace pt = posttrain;
using vespo = pt::algo::vespo;
// The composition's options: the shared part (pg_presets::trl_vespo()), the aggregation and
// VESPO's own shape (surrogate::vespo::options) as options.surrogate.
using opts = vespo::options_type;
opts trl_vespo(double k_pos = 2.0, double lambda_pos = 3.0, double k_neg = 3.0,
               double lambda_neg = 2.0) {
  return {pt::pg_presets::trl_vespo(), {},
          pt::pg_presets::trl_vespo_surrogate(k_pos, lambda_pos, k_neg, lambda_neg)};
}

// get_gamma_weights + the vespo per-token loss + token-mean, float64; grad = the detached-φ
// gradient −φ·A·m / Σ m.
double naive_vespo(const batch& b, const opts& o,
                   const std::vector<double>* w, std::vector<double>* grad = nullptr) {
  const double lo = std::log(1e-8);
  double sum = 0, tokens = 0;
  std::vector<double> phi(b.n(), 0.0);
  for (std::size_t i = 0; i + 1 < b.offsets.size(); ++i) {
    double s = 0;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
      if (b.mask[t] == 0) continue;
      s += b.mask[t] * std::min(std::max(b.logp[t] - b.old_logp[t], -20.0), 20.0);
      if (w) {
        const double lw = std::log(std::min((*w)[t], o.policy.importance_weight_cap));
        s += std::min(std::max(lw, lo), 20.0);
      }
    }
    const double lw = std::min(std::max(s, lo), 20.0), W = std::exp(lw);
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
      const bool pos = b.adv[t] >= 0;
      const double k = pos ? o.surrogate.k_pos : o.surrogate.k_neg;
      const double lam = std::max(pos ? o.surrogate.lambda_pos : o.surrogate.lambda_neg, 1e-4);
      double p = std::exp(lam + k * lw - lam * W);
      phi[t] = std::isfinite(p) ? p : 0.0;
    }
  }
  for (std::size_t t = 0; t < b.n(); ++t) {
    if (b.mask[t] == 0) continue;
    sum += b.mask[t] * (-phi[t] * b.adv[t] * b.logp[t]);
    tokens += b.mask[t];
  }
  if (grad) {
    grad->assign(b.n(), 0.0);
    for (std::size_t t = 0; t < b.n(); ++t)
      if (b.mask[t] != 0) (*grad)[t] = -phi[t] * b.adv[t] * b.mask[t] / tokens;
  }
  return tokens > 0 ? sum / tokens : 0.0;
}

// φ is detached: moving ℓ_t and ℓold_t together keeps w_i (φ's input) fixed, so central
// differences of that move give exactly the stop-gradient derivative.
void expect_fd_detached(const batch& b0, const std::function<double(const batch&)>& f,
                        const std::vector<double>& grad) {
  const double h = 1e-6;
  for (std::size_t t = 0; t < b0.n(); ++t) {
    if (b0.mask[t] == 0) {
      EXPECT_EQ(grad[t], 0.0);
      continue;
    }
    batch p = b0, m = b0;
    p.logp[t] += h, p.old_logp[t] += h;
    m.logp[t] -= h, m.old_logp[t] -= h;
    const double fd = (f(p) - f(m)) / (2 * h);
    EXPECT_NEAR(grad[t], fd, 1e-7 * (1 + std::abs(fd))) << t;
  }
}

TEST(PolicyGradientVespo, MatchesNaiveAndDetachedFiniteDifferences) {
  batch b = make_batch({5, 0, 6, 3, 4}, 0.15, 201);
  for (std::size_t t = 0; t < b.n(); ++t) b.adv[t] += 0.2 * std::cos(2.0 * double(t));
  const auto o = trl_vespo();
  std::vector<double> g(b.n()), ng;
  const auto r = vespo::compute(inputs_of(b), o, {std::span<double>(g), {}});
  EXPECT_NEAR(r.loss, naive_vespo(b, o, nullptr, &ng), 1e-12);
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_NEAR(g[t], ng[t], 1e-14) << t;
  expect_fd_detached(b, [&](const batch& x) { return vespo::compute(inputs_of(x), o).loss; }, g);
  // The row statistic is the SUM of log-ratios: each token's φ differs from a mean-ratio φ.
  const auto o2 = trl_vespo(1.5, 0.5, 4.0, 1.0);
  EXPECT_NEAR(vespo::compute(inputs_of(b), o2).loss, naive_vespo(b, o2, nullptr), 1e-12);
}

TEST(PolicyGradientVespo, OnPolicyIsReinforce) {
  // w = 1: φ = e^{λ + 0 − λ} = 1 for either sign, so ∂loss/∂ℓ = −A·m/Σm (GPG / REINFORCE).
  batch b = make_batch({4, 5, 3}, 0.0, 202);
  std::vector<double> g1(b.n()), g2(b.n());
  const auto r1 = vespo::compute(inputs_of(b), trl_vespo(),
                                 {std::span<double>(g1), {}});
  const auto r2 = pt::algo::gpg::compute(inputs_of(b), {}, {std::span<double>(g2), {}});
  EXPECT_NEAR(r1.loss, r2.loss, 1e-14);
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_NEAR(g1[t], g2[t], 1e-15);
  EXPECT_NEAR(r1.mean_ratio, 1.0, 1e-15);
}

TEST(PolicyGradientVespo, ImportanceRatiosEnterTheSequenceWeight) {
  batch b = make_batch({4, 6, 3}, 0.1, 203);
  b.weights[5] = 0.0;  // a masked-out-by-MIS ratio: log 0 → clamped at log 1e-8
  auto o = trl_vespo();
  o.policy.importance_weight_cap = 1.4;
  std::vector<double> g(b.n()), ng;
  const auto in = inputs_of(b, false, false, true);
  const auto r = vespo::compute(in, o, {std::span<double>(g), {}});
  EXPECT_NEAR(r.loss, naive_vespo(b, o, &b.weights, &ng), 1e-12);
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_NEAR(g[t], ng[t], 1e-14) << t;
  // the weights are not multiplied into the loss: with w = 1 everywhere, same as no weights
  batch ones = b;
  for (auto& x : ones.weights) x = 1.0;
  EXPECT_NEAR(vespo::compute(inputs_of(ones, false, false, true), o).loss,
              vespo::compute(inputs_of(ones), o).loss, 1e-15);
}

TEST(PolicyGradientVespo, ExtremeRatiosAndNonFinitePhi) {
  // Σ logr = +100 → log w clamped at 20: φ = e^{λ + 20k − λe^{20}} = 0; Σ logr = −100 → log w =
  // log 1e-8: φ = e^{λ + k·log 1e-8 − λ·1e-8} (tiny, finite).
  const std::vector<index_t> off{0, 2, 4};
  std::vector<float> lp{-1, -1, -1, -1}, old{-51, -51, 49, 49}, adv{1, 1, -1, -1}, g(4, 9.f);
  pt::policy_gradient_inputs<float> in;
  in.logprobs = lp, in.old_logprobs = old, in.advantages = adv, in.seq_offsets = off;
  auto o = trl_vespo();
  const auto r = vespo::compute(in, o, {std::span<float>(g), {}});
  EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_EQ(g[0], 0.f);
  EXPECT_EQ(g[1], 0.f);
  const double phi_neg = std::exp(2.0 + 3.0 * std::log(1e-8) - 2.0 * 1e-8);
  EXPECT_NEAR(g[2] / (phi_neg / 4), 1.0, 1e-5);
  // k so large that k·log w overflows: φ = +∞ → 0 (torch.nan_to_num), never NaN.
  o.surrogate.k_pos = 1e308, o.surrogate.k_neg = 1e308;
  const std::vector<index_t> off1{0, 1};
  std::vector<float> lp1{-1}, old1{-2}, adv1{1}, g1(1, 9.f);
  pt::policy_gradient_inputs<float> in1;
  in1.logprobs = lp1, in1.old_logprobs = old1, in1.advantages = adv1, in1.seq_offsets = off1;
  const auto r1 = vespo::compute(in1, o, {std::span<float>(g1), {}});
  EXPECT_EQ(r1.loss, 0.0);
  EXPECT_EQ(g1[0], 0.f);
  // λ below 1e-4 is floored (TRL .clamp(min=1e-4))
  batch b = make_batch({3, 4}, 0.2, 204);
  auto o0 = trl_vespo(2.0, 0.0, 3.0, -1.0);
  auto o1 = trl_vespo(2.0, 1e-4, 3.0, 1e-4);
  EXPECT_EQ(vespo::compute(inputs_of(b), o0).loss, vespo::compute(inputs_of(b), o1).loss);
  EXPECT_NEAR(vespo::compute(inputs_of(b), o0).loss, naive_vespo(b, o0, nullptr), 1e-12);
}

TEST(PolicyGradientVespo, EmptyAndAllMaskedRows) {
  batch b = make_batch({3, 0, 4, 2}, 0.3, 205);
  for (auto t = b.offsets[3]; t < b.offsets[4]; ++t) {
    b.mask[t] = 0;
    b.logp[t] = std::numeric_limits<double>::quiet_NaN();
  }
  const auto o = trl_vespo();
  std::vector<double> g(b.n(), 5.0);
  const auto r = vespo::compute(inputs_of(b), o, {std::span<double>(g), {}});
  EXPECT_NEAR(r.loss, naive_vespo(b, o, nullptr), 1e-12);
  for (auto t = b.offsets[3]; t < b.offsets[4]; ++t) EXPECT_EQ(g[t], 0.0);
  for (auto& m : b.mask) m = 0;
  EXPECT_EQ(vespo::compute(inputs_of(b), o, {std::span<double>(g), {}}).loss, 0.0);
  for (double x : g) EXPECT_EQ(x, 0.0);
}

TEST(PolicyGradientVespo, BadInputLeavesOutputsUntouched) {
  batch b = make_batch({3, 4}, 0.3, 206);
  std::vector<double> g(b.n(), 42.0);
  const pt::policy_gradient_outputs<double> out{std::span<double>(g), {}};
  auto expect_bad = [&](auto in, opts o) {
    EXPECT_THROW(vespo::compute(in, o, out), pt::error);
    for (double x : g) EXPECT_EQ(x, 42.0);
  };
  const auto in = inputs_of(b);
  { auto p = trl_vespo(); p.surrogate.k_pos = std::nan(""); expect_bad(in, p); }
  { auto p = trl_vespo(); p.surrogate.lambda_neg = INFINITY; expect_bad(in, p); }
  { auto x = in; x.seq_offsets = {}; expect_bad(x, opts{}); }
  { auto x = in; x.old_logprobs = {}; expect_bad(x, opts{}); }
  { auto x = in; x.importance_weights = std::span<const double>(b.weights).first(2); expect_bad(x, opts{}); }
}

}  // namespace
