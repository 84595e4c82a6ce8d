// surrogate::gspo (sequence ratio) and surrogate::gspo_token (verl).
#include "policy_gradient_naive.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"

namespace {

using namespace pg_test;
namespace pt = posttrain;
using gspo = pt::algo::gspo;
using gspo_token = pt::algo::gspo_token;

std::vector<double> naive_gspo_losses(const batch& b, const pt::policy_gradient_options& o) {
  std::vector<double> L(b.n(), 0.0);
  for (std::size_t i = 0; i + 1 < b.offsets.size(); ++i) {
    double s = 0, w = 0;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t)
      if (b.mask[t] != 0) s += b.mask[t] * (b.logp[t] - b.old_logp[t]), w += b.mask[t];
    const double ls = std::min(std::max(s / std::max(w, 1.0), o.log_ratio_min), o.log_ratio_max);
    const double r = std::exp(ls);
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
      const double a = b.adv[t];
      L[t] = std::max(-a * r, -a * std::min(std::max(r, 1 - o.clip_low), 1 + o.clip_high));
    }
  }
  return L;
}

TEST(PolicyGradientGspo, SequenceGradientMatchesNaiveAndFiniteDifferences) {
  batch b = make_batch({5, 0, 6, 4}, 0.3, 41);
  pt::policy_gradient_options o;  // wide clip so that some rows are unclipped
  o.clip_low = 0.05, o.clip_high = 0.05;
  // per-token advantages that vary inside a row exercise the full sequence gradient
  for (std::size_t t = 0; t < b.n(); ++t) b.adv[t] += 0.1 * std::sin(double(t));
  const auto ao = pt::agg_conventions::verl();
  std::vector<double> g(b.n());
  const auto r = gspo::compute(inputs_of(b), o, {std::span<double>(g), {}}, {}, ao);
  EXPECT_NEAR(r.loss, naive_seq_mean_token_mean(b, naive_gspo_losses(b, o), 1e-8), 1e-12);
  expect_fd_grad(
      b, [&](const batch& x) { return gspo::compute(inputs_of(x), o, {}, {}, ao).loss; }, g);
}

TEST(PolicyGradientGspo, TokenVariantAgreesWithSequenceForSequenceAdvantages) {
  batch b = make_batch({5, 6, 4, 7}, 0.3, 42);
  pt::policy_gradient_options o;
  o.clip_low = 0.05, o.clip_high = 0.05;
  const auto ao = pt::agg_conventions::trl();  // |o_i| floored at 1, no epsilon
  std::vector<double> g1(b.n()), g2(b.n());
  const auto r1 = gspo::compute(inputs_of(b), o, {std::span<double>(g1), {}}, {}, ao);
  const auto r2 = gspo_token::compute(inputs_of(b), o, {std::span<double>(g2), {}}, {}, ao);
  EXPECT_NEAR(r1.loss, r2.loss, 1e-14);
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_NEAR(g1[t], g2[t], 1e-14);
  // gspo_token gradient: aggregation weight × ∂L/∂log s per token (naive)
  for (std::size_t i = 0; i + 1 < b.offsets.size(); ++i) {
    double s = 0, w = 0;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t)
      if (b.mask[t] != 0) s += b.logp[t] - b.old_logp[t], w += 1;
    const double r = std::exp(s / std::max(w, 1.0));
    const bool clipped = (b.adv[b.offsets[i]] > 0 && r > 1.05) ||
                         (b.adv[b.offsets[i]] < 0 && r < 0.95);
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
      const double expect =
          b.mask[t] == 0 || clipped ? 0.0 : -b.adv[t] * r / std::max(w, 1.0) / 4.0;
      EXPECT_NEAR(g2[t], expect, 1e-14);
    }
  }
}

TEST(PolicyGradientGspo, VerlClampAndOffsetsRequired) {
  batch b = make_batch({3, 3}, 0.0, 43, false);
  for (std::size_t t = 0; t < b.n(); ++t) b.old_logp[t] = b.logp[t] - 30;  // log s = 30 > 10
  std::vector<double> g(b.n(), 1.0);
  const auto r = gspo_token::compute(inputs_of(b), pt::pg_presets::verl_gspo(),
                                     {std::span<double>(g), {}}, {}, pt::agg_conventions::verl());
  EXPECT_TRUE(std::isfinite(r.loss));
  for (double x : g) EXPECT_EQ(x, 0.0);
  auto in = inputs_of(b);
  in.seq_offsets = {};
  std::vector<double> g2(b.n(), 4.0);
  EXPECT_THROW(gspo::compute(in, {}, {std::span<double>(g2), {}}), pt::error);
  for (double x : g2) EXPECT_EQ(x, 4.0);
}

}  // namespace
