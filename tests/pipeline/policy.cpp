// pipeline/policy.hpp: policy_logprobs / policy_backward on both paths against finite differences
// of L = Σ_t a_t·ℓ_t + b_t·H_t (token-aligned log-probs and entropies), and the token alignment
// (first tokens 0, row t − 1 predicts token t); the lm_head on the `needed` rows only equals every
// row there; bad policy outputs are reported.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <posttrain/pipeline/policy.hpp>

#include "pipeline/test_policy.hpp"

using namespace pt_test;

namespace {
const std::vector<pt::index_t> toks{1, 2, 3, 0, 4, 4, 1, 0, 2};
const std::vector<pt::index_t> offs{0, 4, 4, 6, 9};
std::vector<double> coef(double base) {
  std::vector<double> c(toks.size());
  for (std::size_t i = 0; i < c.size(); ++i) c[i] = base + 0.1 * static_cast<double>(i % 5) - 0.2;
  return c;
}

template <class P>
double objective(P& p, const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> lp(toks.size()), h(toks.size());
  pp::forward_state<double> st;
  pp::policy_logprobs(p, {toks, offs}, std::span<double>(lp), st, 0.8, std::span<double>(h));
  double l = 0;
  for (std::size_t i = 0; i < lp.size(); ++i) l += a[i] * lp[i] + b[i] * h[i];
  return l;
}

template <class P>
void expect_fd(P& p) {
  const auto a = coef(1.0), b = coef(0.5);
  std::vector<double> lp(toks.size()), h(toks.size());
  pp::forward_state<double> st;
  pp::policy_logprobs(p, {toks, offs}, std::span<double>(lp), st, 0.8, std::span<double>(h));
  p.zero_grad();
  pp::policy_backward(p, {toks, offs}, st, std::span<const double>(a), 0.8, std::span<const double>(b));
  const std::vector<double> g(p.gradients().begin(), p.gradients().end());
  auto params = p.parameters();
  for (std::size_t i = 0; i < params.size(); ++i) {
    const double x = params[i], eps = 1e-6;
    params[i] = x + eps;
    const double up = objective(p, a, b);
    params[i] = x - eps;
    const double down = objective(p, a, b);
    params[i] = x;
    EXPECT_NEAR(g[i], (up - down) / (2 * eps), 1e-7) << i;
  }
}
}  // namespace

TEST(PolicyLogprobs, TokenAlignment) {
  bigram_policy<double> p(5);
  std::vector<double> lp(toks.size(), 9.0);
  pp::forward_state<double> st;
  pp::policy_logprobs(p, {toks, offs}, std::span<double>(lp), st);
  for (std::size_t b = 0; b + 1 < offs.size(); ++b)
    for (auto t = offs[b]; t < offs[b + 1]; ++t)
      EXPECT_NEAR(lp[t], t == offs[b] ? 0.0 : ref_logprob(p.w, 5, toks[t - 1], toks[t]), 1e-14) << t;
}

TEST(PolicyLogprobs, LogitsPathGradientMatchesFiniteDifferences) {
  bigram_policy<double> p(5);
  expect_fd(p);
}

TEST(PolicyLogprobs, HiddenPathGradientMatchesFiniteDifferences) {
  hidden_bigram<double> p(5, 3);
  expect_fd(p);
}

namespace {
struct wrong_shape : bigram_policy<double> {
  using bigram_policy<double>::bigram_policy;
  pt::matrix_view<const double> forward(const pp::token_sequences& s) {
    auto m = bigram_policy<double>::forward(s);
    return {m.data, m.rows, m.cols - 1, m.cols};
  }
};
}  // namespace

TEST(PolicyLogprobs, WrongLogitShapeOrMissingEntropyIsAnError) {
  wrong_shape p(5);
  std::vector<double> lp(toks.size());
  pp::forward_state<double> st;
  EXPECT_THROW(pp::policy_logprobs(p, {toks, offs}, std::span<double>(lp), st), pt::error);
  bigram_policy<double> q(5);
  pp::policy_logprobs(q, {toks, offs}, std::span<double>(lp), st);
  std::vector<double> d(toks.size(), 1.0);
  EXPECT_THROW(pp::policy_backward(q, {toks, offs}, st, std::span<const double>(d), 1.0,
                                   std::span<const double>(d)),
               pt::error);
}

// `needed` (hidden path): the lm_head op on the needed rows only gives the same ℓ and entropy
// there (0 elsewhere) and, with d_lp 0 off the mask, the same gradient as every row.
TEST(PolicyLogprobs, NeededRowsOnlyEqualsEveryRowOnThem) {
  hidden_bigram<double> p(5, 3);
  const std::vector<float> needed{0, 1, 0, 1, 0, 1, 0, 1, 1};
  auto a = coef(1.0), b = coef(0.5);
  for (std::size_t t = 0; t < needed.size(); ++t)
    if (needed[t] == 0) a[t] = b[t] = 0;
  std::vector<double> lp(toks.size()), h(toks.size()), lp2(toks.size(), 7.0), h2(toks.size(), 7.0);
  pp::forward_state<double> st, st2;
  pp::policy_logprobs(p, {toks, offs}, std::span<double>(lp), st, 0.8, std::span<double>(h));
  p.zero_grad();
  pp::policy_backward(p, {toks, offs}, st, std::span<const double>(a), 0.8, std::span<const double>(b));
  const std::vector<double> g(p.gradients().begin(), p.gradients().end());
  pp::policy_logprobs(p, {toks, offs}, std::span<double>(lp2), st2, 0.8, std::span<double>(h2), {},
                      std::span<const float>(needed));
  p.zero_grad();
  pp::policy_backward(p, {toks, offs}, st2, std::span<const double>(a), 0.8, std::span<const double>(b));
  for (std::size_t t = 0; t < toks.size(); ++t) {
    EXPECT_NEAR(lp2[t], needed[t] > 0 ? lp[t] : 0.0, 1e-14) << t;
    EXPECT_NEAR(h2[t], needed[t] > 0 ? h[t] : 0.0, 1e-14) << t;
  }
  for (std::size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(p.gradients()[i], g[i], 1e-13) << i;
}
