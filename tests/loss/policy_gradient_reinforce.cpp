// surrogate::reinforce (GPG, −A·ℓ) and REINFORCE with truncated importance weights.
#include "policy_gradient_naive.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"

namespace {

using namespace pg_test;
namespace pt = posttrain;
using gpg = pt::algo::gpg;

TEST(PolicyGradientReinforce, PlainGpgMatchesNaive) {
  batch b = make_batch({4, 5, 3}, 0.4, 11);
  std::vector<double> g(b.n());
  auto in = inputs_of(b);
  in.old_logprobs = {};  // not needed
  const auto r = gpg::compute(in, {}, {std::span<double>(g), {}});
  std::vector<double> L(b.n());
  for (std::size_t t = 0; t < b.n(); ++t) L[t] = -b.adv[t] * b.logp[t];
  EXPECT_NEAR(r.loss, naive_token_mean(b, L), 1e-13);
  double w = 0;
  for (float m : b.mask) w += m;
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_NEAR(g[t], -b.mask[t] * b.adv[t] / w, 1e-15);
  expect_fd_grad(
      b, [&](const batch& x) { return gpg::compute(inputs_of(x)).loss; }, g);
}

TEST(PolicyGradientReinforce, TruncatedImportanceWeights) {
  batch b = make_batch({6, 4}, 0.4, 12);
  pt::policy_gradient_options o;
  o.importance_weight_cap = 1.2;  // verl rollout_is_threshold
  std::vector<double> g(b.n());
  const auto r = gpg::compute(inputs_of(b, false, false, true), o, {std::span<double>(g), {}});
  std::vector<double> L(b.n());
  for (std::size_t t = 0; t < b.n(); ++t)
    L[t] = -b.adv[t] * b.logp[t] * std::min(b.weights[t], 1.2);
  EXPECT_NEAR(r.loss, naive_token_mean(b, L), 1e-13);
  // the weight is detached: dL/dℓ = −A·min(w, C)
  expect_fd_grad(
      b,
      [&](const batch& x) { return gpg::compute(inputs_of(x, false, false, true), o).loss; }, g);
  // Validation: wrong weight size leaves the gradient untouched.
  std::vector<double> g2(b.n(), 3.0);
  auto in = inputs_of(b, false, false, true);
  in.importance_weights = in.importance_weights.first(2);
  EXPECT_THROW(gpg::compute(in, o, {std::span<double>(g2), {}}), pt::error);
  for (double x : g2) EXPECT_EQ(x, 3.0);
}

}  // namespace
