// options.kl_correction: IS-corrected in-loss KL — TRL use_bias_correction_kl (k3·coef_1, token
// or sequence coef_1, carrying gradient) and open-instruct kl_estimator=3 (r·d).
#include <limits>

#include "policy_gradient_naive.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"

namespace {

using namespace pg_test;
namespace pt = posttrain;
using grpo = pt::algo::grpo;
using gspo_k3 = pt::loss::policy_gradient<pt::surrogate::gspo, pt::kl::k3,
                                          pt::agg::seq_mean_token_mean>;
using oi_k1 = pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::k1, pt::agg::token_mean>;

double clip_loss(double r, double a, double el, double eh) {
  return std::max(-a * r, -a * std::min(std::max(r, 1 - el), 1 + eh));
}
double k3(double logp, double ref) {
  const double x = ref - logp;
  return std::exp(x) - x - 1;
}

// Moves token log-ratios within 1e-3 of log(1 ± ε) away (finite differences).
void avoid_token_boundaries(batch& b, double el, double eh) {
  for (std::size_t t = 0; t < b.n(); ++t) {
    const double r = std::exp(b.logp[t] - b.old_logp[t]);
    if (std::abs(r - 1 + el) < 2e-3 || std::abs(r - 1 - eh) < 2e-3) b.old_logp[t] -= 0.01;
  }
}

TEST(PolicyGradientIsKl, TrlTokenCoefficientCarriesGradient) {
  batch b = make_batch({5, 0, 4, 6}, 0.4, 501);
  const double beta = 0.1;
  const auto o = pt::pg_presets::trl_grpo_bias_corrected_kl(beta);
  EXPECT_EQ(o.kl_correction, pt::kl_is_correction::token);
  avoid_token_boundaries(b, 0.2, 0.2);
  const auto ao = pt::agg_conventions::trl();
  std::vector<double> g(b.n()), L(b.n()), K(b.n());
  const auto r = grpo::compute(inputs_of(b, true), o, {std::span<double>(g), {}}, {}, ao);
  for (std::size_t t = 0; t < b.n(); ++t) {
    const double ratio = std::exp(b.logp[t] - b.old_logp[t]);
    K[t] = ratio * k3(b.logp[t], b.ref[t]);
    L[t] = clip_loss(ratio, b.adv[t], 0.2, 0.2) + beta * K[t];
  }
  EXPECT_NEAR(r.loss, naive_seq_mean_token_mean(b, L, 0.0, 1.0, true), 1e-12);
  EXPECT_NEAR(r.kl_loss, naive_seq_mean_token_mean(b, K, 0.0, 1.0, true), 1e-12);
  EXPECT_NEAR(r.loss, r.pg_loss + beta * r.kl_loss, 1e-14);
  // finite differences of the value: the ratio is not detached (TRL multiplies by coef_1 itself)
  expect_fd_grad(
      b, [&](const batch& x) { return grpo::compute(inputs_of(x, true), o, {}, {}, ao).loss; }, g);
  // off by default: the plain k3
  const auto r0 = grpo::compute(inputs_of(b, true), pt::pg_presets::trl_grpo(beta), {}, {}, ao);
  for (std::size_t t = 0; t < b.n(); ++t)
    L[t] = clip_loss(std::exp(b.logp[t] - b.old_logp[t]), b.adv[t], 0.2, 0.2) +
           beta * k3(b.logp[t], b.ref[t]);
  EXPECT_NEAR(r0.loss, naive_seq_mean_token_mean(b, L, 0.0, 1.0, true), 1e-12);
}

TEST(PolicyGradientIsKl, TrlSequenceCoefficientWithGspo) {
  batch b = make_batch({5, 3, 6, 4}, 0.2, 502);
  const double beta = 0.2;
  auto o = pt::pg_presets::gspo();
  o.clip_low = o.clip_high = 0.05;
  o.kl_coef = beta;
  o.kl_correction = pt::kl_is_correction::sequence;
  const auto ao = pt::agg_conventions::trl();
  std::vector<double> g(b.n()), L(b.n());
  const auto r = gspo_k3::compute(inputs_of(b, true), o, {std::span<double>(g), {}}, {}, ao);
  for (std::size_t i = 0; i + 1 < b.offsets.size(); ++i) {
    double s = 0, len = 0;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t)
      if (b.mask[t] != 0) s += b.mask[t] * (b.logp[t] - b.old_logp[t]), len += b.mask[t];
    const double c = std::exp(s / std::max(len, 1.0));
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t)
      L[t] = clip_loss(c, b.adv[t], 0.05, 0.05) + beta * c * k3(b.logp[t], b.ref[t]);
  }
  EXPECT_NEAR(r.loss, naive_seq_mean_token_mean(b, L, 0.0, 1.0, true), 1e-12);
  expect_fd_grad(
      b, [&](const batch& x) { return gspo_k3::compute(inputs_of(x, true), o, {}, {}, ao).loss; },
      g);
}

TEST(PolicyGradientIsKl, OpenInstructRatioTimesD) {
  batch b = make_batch({4, 6, 5}, 0.4, 503);
  b.ref[3] = b.logp[3] - 50;  // d = 50 is clamped at 40: ∂d/∂ℓ = 0 there, r·40 still moves
  b.ref[9] = b.logp[9] + 45;  // d = −45 → −40
  b.mask[3] = b.mask[9] = 1;
  const double beta = 0.05;
  const auto o = pt::pg_presets::open_instruct_is_kl(beta);
  avoid_token_boundaries(b, 0.2, 0.272);
  std::vector<double> g(b.n()), L(b.n());
  const auto r = oi_k1::compute(inputs_of(b, true), o, {std::span<double>(g), {}});
  for (std::size_t t = 0; t < b.n(); ++t) {
    const double ratio = std::exp(b.logp[t] - b.old_logp[t]);
    const double d = std::min(std::max(b.logp[t] - b.ref[t], -40.0), 40.0);
    L[t] = clip_loss(ratio, b.adv[t], 0.2, 0.272) + beta * ratio * d;
  }
  EXPECT_NEAR(r.loss, naive_token_mean(b, L), 1e-12);
  expect_fd_grad(
      b, [&](const batch& x) { return oi_k1::compute(inputs_of(x, true), o).loss; }, g);
}

TEST(PolicyGradientIsKl, HugeLogRatiosWithClampAndKlNoneIgnores) {
  // logr = ±50 with the verl clamp ±20: ρ = e^{±20}, its slope 0; the KL term stays finite.
  const std::vector<index_t> off{0, 2};
  std::vector<float> lp{-1, -1}, old{-51, 49}, adv{1, -1}, ref{-1.5f, -0.5f}, g(2, 9.f);
  pt::policy_gradient_inputs<float> in;
  in.logprobs = lp, in.old_logprobs = old, in.advantages = adv, in.ref_logprobs = ref;
  in.seq_offsets = off;
  auto o = pt::pg_presets::verl_grpo(0.01);
  o.kl_correction = pt::kl_is_correction::token;
  using ppo_k3 = pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::k3, pt::agg::token_mean>;
  const auto r = ppo_k3::compute(in, o, {std::span<float>(g), {}});
  EXPECT_TRUE(std::isfinite(r.loss));
  for (float x : g) EXPECT_TRUE(std::isfinite(x));
  // token 0: pg clipped (grad 0); KL grad = β·e^{20}·k3'(0.5)/2, ρ's own slope 0 (clamped)
  EXPECT_NEAR(g[0] / (0.01 * std::exp(20.0) * (1 - std::exp(-0.5)) / 2), 1.0, 1e-5);
  // kl::none: the correction has nothing to correct and is ignored (like kl_coef)
  batch b = make_batch({3, 4}, 0.3, 504);
  auto oc = pt::pg_presets::trl_grpo_bias_corrected_kl(0.1);
  EXPECT_EQ(pt::algo::ppo::compute(inputs_of(b), oc).loss,
            pt::algo::ppo::compute(inputs_of(b), pt::pg_presets::trl_grpo(0.1)).loss);
}

TEST(PolicyGradientIsKl, EmptyAndAllMaskedRows) {
  batch b = make_batch({3, 0, 4, 2}, 0.3, 505);
  for (auto t = b.offsets[3]; t < b.offsets[4]; ++t) {
    b.mask[t] = 0;
    b.logp[t] = b.old_logp[t] = std::numeric_limits<double>::quiet_NaN();
  }
  auto o = pt::pg_presets::trl_grpo_bias_corrected_kl(0.1);
  o.kl_correction = pt::kl_is_correction::sequence;
  std::vector<double> g(b.n(), 5.0);
  const auto r = grpo::compute(inputs_of(b, true), o, {std::span<double>(g), {}}, {},
                               pt::agg_conventions::trl());
  EXPECT_TRUE(std::isfinite(r.loss));
  for (auto t = b.offsets[3]; t < b.offsets[4]; ++t) EXPECT_EQ(g[t], 0.0);
  for (auto& m : b.mask) m = 0;
  EXPECT_EQ(grpo::compute(inputs_of(b, true), o, {std::span<double>(g), {}}).loss, 0.0);
  for (double x : g) EXPECT_EQ(x, 0.0);
}

TEST(PolicyGradientIsKl, BadInputLeavesOutputsUntouched) {
  batch b = make_batch({3, 4}, 0.3, 506);
  std::vector<double> g(b.n(), 42.0);
  const pt::policy_gradient_outputs<double> out{std::span<double>(g), {}};
  // REINFORCE does not need ℓold, but the corrected KL does
  using rf_k3 = pt::loss::policy_gradient<pt::surrogate::reinforce, pt::kl::k3, pt::agg::token_mean>;
  auto o = pt::pg_presets::trl_grpo_bias_corrected_kl(0.1);
  auto in = inputs_of(b, true);
  in.old_logprobs = {};
  EXPECT_NO_THROW(rf_k3::compute(in, pt::pg_presets::trl_grpo(0.1)));
  EXPECT_THROW(rf_k3::compute(in, o, out), pt::error);
  for (double x : g) EXPECT_EQ(x, 42.0);
  // the sequence ratio needs seq_offsets even with a token-level aggregation
  o.kl_correction = pt::kl_is_correction::sequence;
  auto in2 = inputs_of(b, true);
  in2.seq_offsets = {};
  using ppo_k3 = pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::k3, pt::agg::token_mean>;
  EXPECT_THROW(ppo_k3::compute(in2, o, out), pt::error);
  for (double x : g) EXPECT_EQ(x, 42.0);
  o.kl_correction = pt::kl_is_correction::token;
  EXPECT_NO_THROW(ppo_k3::compute(in2, o, out));
}

}  // namespace
