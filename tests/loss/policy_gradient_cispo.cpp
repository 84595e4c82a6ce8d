// surrogate::cispo with each peer's cap form.
#include "policy_gradient_naive.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"

namespace {

using namespace pg_test;
namespace pt = posttrain;
using cispo = pt::algo::cispo;

double naive_cap(double r, const pt::policy_gradient_options& o,
                 const pt::surrogate::cispo::options& so) {
  switch (so.cap) {
    case pt::cispo_cap::two_sided: return std::min(std::max(r, 1 - o.clip_low), 1 + o.clip_high);
    case pt::cispo_cap::relative_upper: return std::min(r, 1 + o.clip_high);
    case pt::cispo_cap::absolute_upper: return std::min(r, o.clip_high);
  }
  return r;
}

void check(const pt::policy_gradient_options& o, const pt::surrogate::cispo::options& so,
           unsigned seed) {
  batch b = make_batch({5, 6, 2}, 1.5, seed);
  std::vector<double> g(b.n());
  const auto r = cispo::compute(inputs_of(b), o, {std::span<double>(g), {}}, {}, {}, so);
  std::vector<double> L(b.n());
  double clipped = 0, m = 0;
  for (std::size_t t = 0; t < b.n(); ++t) {
    const double lr = std::min(std::max(b.logp[t] - b.old_logp[t], o.log_ratio_min),
                               o.log_ratio_max);
    const double c = naive_cap(std::exp(lr), o, so);
    L[t] = -c * b.adv[t] * b.logp[t];
    if (b.mask[t] != 0) m += 1, clipped += c != std::exp(lr) ? 1 : 0;
  }
  EXPECT_NEAR(r.loss, naive_token_mean(b, L), 1e-13);
  EXPECT_NEAR(r.clip_fraction, clipped / m, 1e-13);
  EXPECT_GT(r.clip_fraction, 0.0);
  // ĉ is detached: the gradient is −ĉ·A·m/D; finite differences through r see the cap's slope,
  // so compare with the naive detached form instead.
  double w = 0;
  for (float x : b.mask) w += x;
  for (std::size_t t = 0; t < b.n(); ++t) {
    const double lr = std::min(std::max(b.logp[t] - b.old_logp[t], o.log_ratio_min),
                               o.log_ratio_max);
    EXPECT_NEAR(g[t], b.mask[t] * -naive_cap(std::exp(lr), o, so) * b.adv[t] / w, 1e-14);
  }
}

TEST(PolicyGradientCispo, VerlTwoSided) {
  check(pt::pg_presets::verl_cispo(), pt::pg_presets::verl_cispo_surrogate(), 21);
}
TEST(PolicyGradientCispo, TrlAbsoluteUpper) {
  check(pt::pg_presets::trl_cispo(1.5), pt::pg_presets::trl_cispo_surrogate(), 22);
}
TEST(PolicyGradientCispo, OpenInstructRelativeUpper) {
  check(pt::pg_presets::open_instruct_cispo(), pt::pg_presets::open_instruct_cispo_surrogate(),
        23);
}

TEST(PolicyGradientCispo, DetachedRatioFiniteDifferenceWithFrozenOld) {
  // With ℓold moved together with ℓ the ratio is constant: FD sees exactly −ĉ·A.
  batch b = make_batch({4, 4}, 1.0, 24);
  const auto o = pt::pg_presets::trl_cispo(1.3);
  const auto so = pt::pg_presets::trl_cispo_surrogate();
  std::vector<double> g(b.n());
  cispo::compute(inputs_of(b), o, {std::span<double>(g), {}}, {}, {}, so);
  for (std::size_t t = 0; t < b.n(); ++t) {
    if (b.mask[t] == 0) continue;
    batch p = b, m = b;
    p.logp[t] += 1e-6, p.old_logp[t] += 1e-6, m.logp[t] -= 1e-6, m.old_logp[t] -= 1e-6;
    const double fd =
        (cispo::compute(inputs_of(p), o, {}, {}, {}, so).loss -
         cispo::compute(inputs_of(m), o, {}, {}, {}, so).loss) /
        2e-6;
    EXPECT_NEAR(g[t], fd, 1e-8);
  }
}

TEST(PolicyGradientCispo, AbsoluteCapMustBePositive) {
  batch b = make_batch({3}, 0.2, 25);
  auto o = pt::pg_presets::trl_cispo(0.0);
  std::vector<double> g(b.n(), 2.0);
  EXPECT_THROW(cispo::compute(inputs_of(b), o, {std::span<double>(g), {}}, {}, {},
                              pt::pg_presets::trl_cispo_surrogate()),
               pt::error);
  for (double x : g) EXPECT_EQ(x, 2.0);
}

}  // namespace
