// surrogate::sapo: soft sigmoid gate with sign-dependent temperature.
#include "policy_gradient_naive.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"

namespace {

using namespace pg_test;
namespace pt = posttrain;
using sapo = pt::algo::sapo;

TEST(PolicyGradientSapo, MatchesNaiveAndFiniteDifferences) {
  batch b = make_batch({5, 0, 7, 3}, 0.7, 31);
  const auto o = pt::pg_presets::verl_sapo();
  const auto ao = pt::agg_conventions::verl();
  std::vector<double> g(b.n());
  const auto r = sapo::compute(inputs_of(b), o, {std::span<double>(g), {}}, {}, ao,
                               pt::pg_presets::sapo_surrogate());
  std::vector<double> L(b.n());
  for (std::size_t t = 0; t < b.n(); ++t) {
    const double rr = std::exp(b.logp[t] - b.old_logp[t]);
    const double tau = b.adv[t] > 0 ? 1.0 : 1.05;
    L[t] = -1.0 / (1.0 + std::exp(-tau * (rr - 1))) * 4 / tau * b.adv[t];
  }
  EXPECT_NEAR(r.loss, naive_seq_mean_token_mean(b, L, 1e-8), 1e-12);
  const auto so = pt::pg_presets::sapo_surrogate();
  expect_fd_grad(
      b, [&](const batch& x) { return sapo::compute(inputs_of(x), o, {}, {}, ao, so).loss; }, g);
}

TEST(PolicyGradientSapo, OnPolicyEqualsReinforceGradient) {
  batch b = make_batch({4, 4}, 0.0, 32, false);  // r = 1
  std::vector<double> g(b.n());
  using tm = pt::loss::policy_gradient<pt::surrogate::sapo, pt::kl::none, pt::agg::token_mean>;
  const auto r = tm::compute(inputs_of(b), {}, {std::span<double>(g), {}}, {}, {},
                             pt::pg_presets::sapo_surrogate());
  double l = 0;
  for (std::size_t t = 0; t < b.n(); ++t) {
    EXPECT_NEAR(g[t], -b.adv[t] / b.n(), 1e-15);
    l += -2 * b.adv[t] / (b.adv[t] > 0 ? 1.0 : 1.05);
  }
  EXPECT_NEAR(r.loss, l / b.n(), 1e-14);
}

TEST(PolicyGradientSapo, HugeLogRatioFiniteAndBadTau) {
  std::vector<float> lp{-1, -1}, old{-51, 49}, adv{1, -1}, g(2, 5.f);
  const std::vector<index_t> off{0, 2};
  pt::policy_gradient_inputs<float> in{lp, old, adv, {}, {}, off, {}, {}, {}};
  const auto r = sapo::compute(in, pt::pg_presets::verl_sapo(), {std::span<float>(g), {}}, {}, {},
                               pt::pg_presets::sapo_surrogate());
  EXPECT_TRUE(std::isfinite(r.loss));
  for (float x : g) EXPECT_TRUE(std::isfinite(x));
  auto bad = pt::pg_presets::sapo_surrogate();
  bad.tau_neg = 0;
  std::vector<float> g2(2, 5.f);
  EXPECT_THROW(sapo::compute(in, pt::pg_presets::trl_sapo(), {std::span<float>(g2), {}}, {}, {},
                             bad),
               pt::error);
  for (float x : g2) EXPECT_EQ(x, 5.f);
}

}  // namespace
