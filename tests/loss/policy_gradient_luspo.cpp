// algo::luspo = policy_gradient<surrogate::gspo, kl::none, agg::seq_mean_token_sum>: TRL
// loss_type="luspo" (importance_sampling_level="sequence"), proved against the TRL formula.
#include "policy_gradient_naive.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"

namespace {

using namespace pg_test;
namespace pt = posttrain;
using luspo = pt::algo::luspo;

// TRL: coef_1 = exp(Σ m·logr / max(|o_i|, 1)); coef_2 = clip(coef_1); delta: coef_1 ← min(coef_1, δ);
// L_i = −min(coef_1·A_i, coef_2·A_i); loss = mean over all B rows of L_i·|o_i|.
double naive_luspo(const batch& b, double el, double eh, double delta) {
  double total = 0;
  const std::size_t rows = b.offsets.size() - 1;
  for (std::size_t i = 0; i < rows; ++i) {
    double s = 0, len = 0;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t)
      if (b.mask[t] != 0) s += b.mask[t] * (b.logp[t] - b.old_logp[t]), len += b.mask[t];
    const double c1 = std::exp(s / std::max(len, 1.0));
    const double c2 = std::min(std::max(c1, 1 - el), 1 + eh);
    const double a = b.offsets[i] < b.offsets[i + 1] ? b.adv[b.offsets[i]] : 0.0;
    const double L = -std::min(std::min(c1, delta) * a, c2 * a);
    total += L * len;
  }
  return rows ? total / rows : 0.0;
}

// Keeps every row's ratio at least 1e-3 away from 1 ± ε (finite differences).
void avoid_row_boundaries(batch& b, double el, double eh) {
  for (std::size_t i = 0; i + 1 < b.offsets.size(); ++i) {
    for (int k = 0; k < 10; ++k) {
      double s = 0, len = 0;
      index_t last = -1;
      for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t)
        if (b.mask[t] != 0) s += b.mask[t] * (b.logp[t] - b.old_logp[t]), len += b.mask[t], last = t;
      const double r = std::exp(s / std::max(len, 1.0));
      if (last < 0 || (std::abs(r - 1 + el) > 1e-3 && std::abs(r - 1 - eh) > 1e-3)) break;
      b.old_logp[last] -= 0.01;
    }
  }
}

TEST(PolicyGradientLuspo, CompositionEqualsTrlFormulaAndFiniteDifferences) {
  batch b = make_batch({5, 0, 6, 4, 7, 3}, 0.3, 401);
  const auto o = pt::pg_presets::trl_luspo(0.05);
  avoid_row_boundaries(b, 0.05, 0.05);
  const auto ao = pt::agg_conventions::trl();
  std::vector<double> g(b.n());
  const auto r = luspo::compute(inputs_of(b), o, {std::span<double>(g), {}}, {}, ao);
  EXPECT_NEAR(r.loss, naive_luspo(b, 0.05, 0.05, o.dual_clip), 1e-12);
  EXPECT_EQ(r.divisor, 6.0);  // mean over all B rows, the empty one included
  expect_fd_grad(
      b, [&](const batch& x) { return luspo::compute(inputs_of(x), o, {}, {}, ao).loss; }, g);
  // LUSPO = GSPO's per-row loss weighted by |o_i|: longer rows get proportionally larger grads
  // (GSPO with seq_mean_token_mean gives every row the same weight).
  EXPECT_GT(r.clip_fraction, 0.0);
  EXPECT_LT(r.clip_fraction, 1.0);
}

TEST(PolicyGradientLuspo, DeltaIsDualClipAndClipHigher) {
  // TRL's coef_1 ← min(coef_1, δ) equals the dual clip c = δ for δ ≥ 1 + ε_high. Rows: A < 0 with
  // s ≈ e^{0.6} > δ (dual clip active), A > 0 with s ≈ e^{0.3} > 1.2 (clipped), A < 0 with
  // s ≈ e^{0.15} (unclipped), A > 0 with s ≈ e^{−0.3} (unclipped).
  batch b = make_batch({4, 6, 5, 3}, 0.1, 402);
  const double adv[] = {-0.6, 0.6, -0.6, 0.6}, shift[] = {0.6, 0.3, 0.15, -0.3};
  for (std::size_t i = 0; i < 4; ++i)
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t)
      b.adv[t] = adv[i], b.old_logp[t] -= shift[i];
  const auto o = pt::pg_presets::trl_luspo(0.1, 0.2, 1.5);
  avoid_row_boundaries(b, 0.1, 0.2);
  const auto ao = pt::agg_conventions::trl();
  std::vector<double> g(b.n());
  const auto r = luspo::compute(inputs_of(b), o, {std::span<double>(g), {}}, {}, ao);
  EXPECT_NEAR(r.loss, naive_luspo(b, 0.1, 0.2, 1.5), 1e-12);
  EXPECT_GT(r.clip_fraction_lower, 0.0);
  for (auto t = b.offsets[0]; t < b.offsets[1]; ++t) EXPECT_EQ(g[t], 0.0);
  expect_fd_grad(
      b, [&](const batch& x) { return luspo::compute(inputs_of(x), o, {}, {}, ao).loss; }, g);
}

TEST(PolicyGradientLuspo, MicroBatchesAddUpWithGlobalSequenceCount) {
  batch b = make_batch({4, 6, 3, 5, 2}, 0.3, 403);
  const auto o = pt::pg_presets::trl_luspo();
  const auto ao = pt::agg_conventions::trl();
  std::vector<double> full(b.n()), g(b.n());
  const auto rf = luspo::compute(inputs_of(b), o, {std::span<double>(full), {}}, {}, ao);
  const pt::agg_normalizer norm{{}, 5.0, {}};
  double total = 0;
  for (auto [r0, r1] : {std::pair{0, 2}, std::pair{2, 5}}) {
    batch p;
    const auto b0 = b.offsets[r0], b1 = b.offsets[r1];
    for (int i = r0; i <= r1; ++i) p.offsets.push_back(b.offsets[i] - b0);
    auto cut = [&](const std::vector<double>& v) {
      return std::vector<double>(v.begin() + b0, v.begin() + b1);
    };
    p.logp = cut(b.logp), p.old_logp = cut(b.old_logp), p.adv = cut(b.adv);
    p.mask = std::vector<float>(b.mask.begin() + b0, b.mask.begin() + b1);
    total += luspo::compute(inputs_of(p), o, {std::span<double>(g).subspan(b0, b1 - b0), {}},
                            norm, ao)
                 .loss;
  }
  EXPECT_NEAR(total, rf.loss, 1e-13);
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_NEAR(g[t], full[t], 1e-15);
}

TEST(PolicyGradientLuspo, AllMaskedAndBadInput) {
  batch b = make_batch({3, 4}, 0.3, 404);
  for (auto& m : b.mask) m = 0;
  std::vector<double> g(b.n(), 7.0);
  const auto ao = pt::agg_conventions::trl();
  EXPECT_EQ(luspo::compute(inputs_of(b), {}, {std::span<double>(g), {}}, {}, ao).loss, 0.0);
  for (double x : g) EXPECT_EQ(x, 0.0);
  std::fill(g.begin(), g.end(), 42.0);
  auto in = inputs_of(b);
  in.seq_offsets = {};
  EXPECT_THROW(luspo::compute(in, {}, {std::span<double>(g), {}}, {}, ao), pt::error);
  EXPECT_THROW(luspo::compute(inputs_of(b), {}, {std::span<double>(g), {}}, {{}, -1.0, {}}, ao),
               pt::error);
  for (double x : g) EXPECT_EQ(x, 42.0);
}

}  // namespace
