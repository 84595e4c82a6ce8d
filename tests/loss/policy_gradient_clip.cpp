// loss::policy_gradient<surrogate::clip, ...>: PPO / dual-clip / clip-higher, KL, entropy, IS.
#include <limits>

#include "policy_gradient_naive.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"

namespace {

using namespace pg_test;
namespace pt = posttrain;
using ppo = pt::algo::ppo;
using grpo = pt::algo::grpo;

// Naive PPO per token (float64), verl's formulation.
double naive_clip(double logp, double old, double a, double el, double eh, double c, double lo,
                  double hi) {
  const double lr = std::min(std::max(logp - old, lo), hi);
  const double r = std::exp(lr);
  const double l1 = -a * r, l2 = -a * std::min(std::max(r, 1 - el), 1 + eh);
  const double lc = std::max(l1, l2);
  return a < 0 ? std::min(-c * a, lc) : lc;
}

std::vector<double> naive_losses(const batch& b, const pt::policy_gradient_options& o) {
  std::vector<double> L(b.n(), 0.0);
  for (std::size_t t = 0; t < b.n(); ++t)
    L[t] = naive_clip(b.logp[t], b.old_logp[t], b.adv[t], o.clip_low, o.clip_high, o.dual_clip,
                      o.log_ratio_min, o.log_ratio_max);
  return L;
}

// Moves log-ratios within 1e-3 of a clip boundary away from it (finite differences).
void avoid_boundaries(batch& b, const pt::policy_gradient_options& o) {
  for (std::size_t t = 0; t < b.n(); ++t) {
    for (double edge : {std::log(1 - o.clip_low), std::log(1 + o.clip_high)}) {
      const double lr = b.logp[t] - b.old_logp[t];
      if (std::abs(lr - edge) < 2e-3) b.old_logp[t] -= 5e-3;
    }
    for (double c : {o.dual_clip}) {
      if (b.adv[t] < 0 && std::isfinite(c)) {
        const double lr = b.logp[t] - b.old_logp[t];
        if (std::abs(lr - std::log(c)) < 2e-3) b.old_logp[t] -= 5e-3;
      }
    }
  }
}

TEST(PolicyGradientClip, MatchesNaiveAndFiniteDifferences) {
  pt::policy_gradient_options o = pt::pg_presets::verl_ppo();
  o.clip_high = 0.28;
  o.dual_clip = 1.5;  // small enough that some A < 0 tokens hit it
  batch b = make_batch({5, 7, 1, 9, 4}, 0.8, 1);
  avoid_boundaries(b, o);
  std::vector<double> grad(b.n(), -7.0);
  const auto res = ppo::compute(inputs_of(b), o, {std::span<double>(grad), {}});
  EXPECT_NEAR(res.loss, naive_token_mean(b, naive_losses(b, o)), 1e-12);
  EXPECT_NEAR(res.pg_loss, res.loss, 1e-12);
  EXPECT_GT(res.clip_fraction, 0.0);
  EXPECT_GT(res.clip_fraction_lower, 0.0);
  // statistics: verl ppo_kl = mean(−logr), mean ratio
  double skl = 0, sr = 0, sm = 0, sc = 0;
  for (std::size_t t = 0; t < b.n(); ++t)
    if (b.mask[t] != 0) {
      const double lr = b.logp[t] - b.old_logp[t];
      skl -= lr, sr += std::exp(lr), sm += 1;
      const double r = std::exp(lr), a = b.adv[t];
      sc += (-a * std::min(std::max(r, 1 - o.clip_low), 1 + o.clip_high) > -a * r) ? 1 : 0;
    }
  EXPECT_NEAR(res.approx_kl, skl / sm, 1e-12);
  EXPECT_NEAR(res.mean_ratio, sr / sm, 1e-12);
  EXPECT_NEAR(res.clip_fraction, sc / sm, 1e-12);
  expect_fd_grad(
      b, [&](const batch& x) { return ppo::compute(inputs_of(x), o).loss; }, grad);
}

TEST(PolicyGradientClip, GradientExactlyZeroWhereClipped) {
  batch b = make_batch({6, 6}, 0.0, 2, false);
  for (std::size_t t = 0; t < b.n(); ++t) {
    b.adv[t] = t % 2 ? 1.0 : -1.0;
    // A > 0 with r ≫ 1 + ε and A < 0 with r ≪ 1 − ε: the clipped branch is active.
    b.old_logp[t] = b.logp[t] - (b.adv[t] > 0 ? 3.0 : -3.0);
  }
  std::vector<double> grad(b.n(), 1.0);
  const auto res = ppo::compute(inputs_of(b), {}, {std::span<double>(grad), {}});
  EXPECT_EQ(res.clip_fraction, 1.0);
  for (double g : grad) EXPECT_EQ(g, 0.0);
  // Dual clip: A < 0 and r ≫ 1: loss −c·A, gradient 0; without dual clip gradient −A·r.
  for (std::size_t t = 0; t < b.n(); ++t) b.adv[t] = -1.0, b.old_logp[t] = b.logp[t] - 2.0;
  pt::policy_gradient_options o;
  o.dual_clip = 3.0;
  const auto r2 = ppo::compute(inputs_of(b), o, {std::span<double>(grad), {}});
  EXPECT_NEAR(r2.loss, 3.0, 1e-12);
  EXPECT_EQ(r2.clip_fraction_lower, 1.0);
  for (double g : grad) EXPECT_EQ(g, 0.0);
  ppo::compute(inputs_of(b), {}, {std::span<double>(grad), {}});
  for (double g : grad) EXPECT_NEAR(g, std::exp(2.0) / b.n(), 1e-12);
}

TEST(PolicyGradientClip, HugeLogRatiosFiniteWithClamp) {
  const std::vector<index_t> off{0, 4};
  std::vector<float> lp{-1, -1, -1, -1}, old{-51, 49, -51, 49}, adv{1, 1, -1, -1}, g(4, 9.f);
  pt::policy_gradient_inputs<float> in;
  in.logprobs = lp;
  in.old_logprobs = old;
  in.advantages = adv;
  in.seq_offsets = off;
  const auto o = pt::pg_presets::verl_ppo();
  const auto r = ppo::compute(in, o, {std::span<float>(g), {}});
  EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_TRUE(std::isfinite(r.approx_kl));
  // logr = +50 clamped to 20, logr = −50 clamped to −20: torch.clamp's gradient is 0.
  for (float x : g) EXPECT_EQ(x, 0.f);
  // naive: token0 A=1 r=e^20 -> clipped −1.2; token1 r=e^-20 A=1 -> −e^-20;
  // token2 A=−1 r=e^20 -> min(3, e^20) = 3; token3 A=−1 r=e^-20 -> 0.8
  EXPECT_NEAR(r.loss, (-1.2 - std::exp(-20.0) + 3.0 + 0.8) / 4, 1e-6);
}

TEST(PolicyGradientClip, EmptyAndAllMaskedSequences) {
  batch b = make_batch({3, 0, 4, 2}, 0.5, 3);
  for (auto t = b.offsets[3]; t < b.offsets[4]; ++t) {
    b.mask[t] = 0;
    b.logp[t] = std::numeric_limits<double>::quiet_NaN();  // never read
  }
  using sm = pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::none,
                                       pt::agg::seq_mean_token_mean>;
  std::vector<double> grad(b.n(), 5.0);
  const auto r = sm::compute(inputs_of(b), {}, {std::span<double>(grad), {}}, {},
                             pt::agg_conventions::verl());
  EXPECT_NEAR(r.loss, naive_seq_mean_token_mean(b, naive_losses(b, {}), 1e-8), 1e-12);
  for (auto t = b.offsets[3]; t < b.offsets[4]; ++t) EXPECT_EQ(grad[t], 0.0);
  // Everything masked: loss 0, zero gradients.
  for (auto& m : b.mask) m = 0;
  const auto r0 = ppo::compute(inputs_of(b), {}, {std::span<double>(grad), {}});
  EXPECT_EQ(r0.loss, 0.0);
  for (double g : grad) EXPECT_EQ(g, 0.0);
  // No tokens at all.
  batch e;
  e.offsets = {0, 0};
  EXPECT_EQ(ppo::compute(inputs_of(e)).loss, 0.0);
}

template <class Algo>
void check_micro_batch(const pt::agg_options& ao) {
  batch b = make_batch({4, 6, 3, 5, 2}, 0.5, 4);
  const pt::policy_gradient_options o = pt::pg_presets::trl_grpo(0.04);
  std::vector<double> full(b.n());
  const auto rf = Algo::compute(inputs_of(b, true), o, {std::span<double>(full), {}}, {}, ao);
  const auto counts = pt::aggregation_counts(pt::exec::host{}, std::span<const float>(b.mask),
                                             std::span<const index_t>(b.offsets), ao);
  pt::agg_normalizer norm{counts.tokens, counts.sequences, {}};
  // split into rows [0,2) and [2,5)
  double total = 0;
  std::vector<double> g(b.n());
  for (auto [r0, r1] : {std::pair{0, 2}, std::pair{2, 5}}) {
    batch p;
    const auto b0 = b.offsets[r0], b1 = b.offsets[r1];
    for (int i = r0; i <= r1; ++i) p.offsets.push_back(b.offsets[i] - b0);
    auto cut = [&](const std::vector<double>& v) {
      return std::vector<double>(v.begin() + b0, v.begin() + b1);
    };
    p.logp = cut(b.logp), p.old_logp = cut(b.old_logp), p.adv = cut(b.adv), p.ref = cut(b.ref);
    p.mask = std::vector<float>(b.mask.begin() + b0, b.mask.begin() + b1);
    total += Algo::compute(inputs_of(p, true), o,
                           {std::span<double>(g).subspan(b0, b1 - b0), {}}, norm, ao)
                 .loss;
  }
  EXPECT_NEAR(total, rf.loss, 1e-12);
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_NEAR(g[t], full[t], 1e-14);
}

TEST(PolicyGradientClip, MicroBatchInvariance) {
  check_micro_batch<pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::k3,
                                              pt::agg::token_mean>>({});
  check_micro_batch<grpo>(pt::agg_conventions::trl());
}

// KL added per token before aggregation == verl's separately aggregated β·agg(KL).
template <class Agg>
void check_kl_split(const pt::agg_normalizer& norm) {
  using with_kl = pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::k3, Agg>;
  using no_kl = pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::none, Agg>;
  batch b = make_batch({4, 0, 6, 3}, 0.5, 5);
  const auto o = pt::pg_presets::verl_grpo(0.1);
  std::vector<double> g1(b.n()), g2(b.n()), kv(b.n()), kg(b.n()), ag(b.n());
  const auto r1 = with_kl::compute(inputs_of(b, true), o, {std::span<double>(g1), {}}, norm,
                                   pt::agg_conventions::verl());
  const auto r2 = no_kl::compute(inputs_of(b), o, {std::span<double>(g2), {}}, norm,
                                 pt::agg_conventions::verl());
  pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, std::span<const double>(b.logp),
                                std::span<const double>(b.ref), o.kl, std::span<double>(kv),
                                std::span<double>(kg));
  const auto ka = pt::aggregate_loss<Agg>(pt::exec::host{}, std::span<const double>(kv),
                                          std::span<const float>(b.mask),
                                          std::span<const index_t>(b.offsets), norm,
                                          std::span<double>(ag), pt::agg_conventions::verl());
  EXPECT_NEAR(r1.loss, r2.loss + 0.1 * ka.loss, 1e-13);
  EXPECT_NEAR(r1.kl_loss, ka.loss, 1e-13);
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_NEAR(g1[t], g2[t] + 0.1 * ag[t] * kg[t], 1e-14);
}

TEST(PolicyGradientClip, KlInLossEqualsSeparatelyAggregatedKl) {
  check_kl_split<pt::agg::token_mean>({});
  check_kl_split<pt::agg::token_sum>({});
  check_kl_split<pt::agg::seq_mean_token_mean>({});
  check_kl_split<pt::agg::seq_mean_token_sum>({});
  check_kl_split<pt::agg::seq_mean_token_sum_norm>({{}, {}, 16.0});
}

TEST(PolicyGradientClip, GrpoKlEntropyAndImportanceWeightsFiniteDifferences) {
  batch b = make_batch({5, 3, 6}, 0.6, 6);
  pt::policy_gradient_options o = pt::pg_presets::trl_grpo(0.04);
  o.entropy_coef = 0.01;
  o.importance_weight_cap = 1.5;
  avoid_boundaries(b, o);
  std::vector<double> g(b.n()), gh(b.n());
  const auto ao = pt::agg_conventions::trl();
  const auto r = grpo::compute(inputs_of(b, true, true, true), o,
                               {std::span<double>(g), std::span<double>(gh)}, {}, ao);
  std::vector<double> L = naive_losses(b, o);
  for (std::size_t t = 0; t < b.n(); ++t) {
    const double d = b.logp[t] - b.ref[t];
    L[t] = std::min(b.weights[t], 1.5) * L[t] + 0.04 * (std::exp(-d) - 1 + d) -
           0.01 * b.entropy[t];
  }
  EXPECT_NEAR(r.loss, naive_seq_mean_token_mean(b, L, 0.0, 1.0, true), 1e-12);
  expect_fd_grad(
      b,
      [&](const batch& x) {
        return grpo::compute(inputs_of(x, true, true, true), o, {}, {}, ao).loss;
      },
      g);
  // dLoss/dH: finite differences in H.
  for (std::size_t t = 0; t < b.n(); ++t) {
    if (b.mask[t] == 0) {
      EXPECT_EQ(gh[t], 0.0);
      continue;
    }
    batch p = b, m = b;
    p.entropy[t] += 1e-6, m.entropy[t] -= 1e-6;
    const double fd = (grpo::compute(inputs_of(p, true, true, true), o, {}, {}, ao).loss -
                       grpo::compute(inputs_of(m, true, true, true), o, {}, {}, ao).loss) /
                      2e-6;
    EXPECT_NEAR(gh[t], fd, 1e-8);
  }
  EXPECT_NEAR(r.loss, r.pg_loss + 0.04 * r.kl_loss - 0.01 * r.entropy, 1e-13);
}

TEST(PolicyGradientClip, ValidationErrorsLeaveOutputsUntouched) {
  batch b = make_batch({3, 4}, 0.3, 7);
  std::vector<double> g(b.n(), 42.0), gh(b.n(), 43.0), small(2);
  const pt::policy_gradient_outputs<double> out{std::span<double>(g), std::span<double>(gh)};
  auto expect_bad = [&](auto in, pt::policy_gradient_options o, auto out_,
                        pt::agg_normalizer n = {}) {
    EXPECT_THROW(grpo::compute(in, o, out_, n), pt::error);
    for (double x : g) EXPECT_EQ(x, 42.0);
    for (double x : gh) EXPECT_EQ(x, 43.0);
  };
  auto in = inputs_of(b, true, true);
  pt::policy_gradient_options o;
  o.entropy_coef = 0.1;
  { auto x = in; x.old_logprobs = std::span<const double>(b.old_logp).first(3); expect_bad(x, o, out); }
  { auto x = in; x.advantages = {}; expect_bad(x, o, out); }
  { auto x = in; x.ref_logprobs = {}; expect_bad(x, o, out); }  // k3 needs the reference
  { auto x = in; x.entropy = {}; expect_bad(x, o, out); }       // entropy_coef != 0
  { auto x = in; x.seq_offsets = {}; expect_bad(x, o, out); }   // per-sequence mode
  { pt::policy_gradient_outputs<double> y{std::span<double>(small), {}}; expect_bad(in, o, y); }
  { auto p = o; p.clip_low = -0.1; expect_bad(in, p, out); }
  { auto p = o; p.dual_clip = 1.0; expect_bad(in, p, out); }
  { auto p = o; p.log_ratio_min = 1, p.log_ratio_max = -1; expect_bad(in, p, out); }
  { auto p = o; p.kl_coef = std::nan(""); expect_bad(in, p, out); }
  { auto p = o; p.importance_weight_cap = 0; expect_bad(in, p, out); }
  { auto p = o; p.kl.input_min = 5, p.kl.input_max = 1; expect_bad(in, p, out); }
  expect_bad(in, o, out, pt::agg_normalizer{{}, -1.0, {}});
  std::vector<float> bad_mask(b.n(), 1.0f);
  bad_mask[1] = -1.0f;
  { auto x = in; x.mask = bad_mask; expect_bad(x, o, out); }
  using dr = pt::algo::dr_grpo;
  EXPECT_THROW(dr::compute(inputs_of(b), {}, {std::span<double>(g), {}}), pt::error);
  for (double x : g) EXPECT_EQ(x, 42.0);
  EXPECT_NO_THROW(dr::compute(inputs_of(b), {}, {std::span<double>(g), {}}, {{}, {}, 8.0}));
}

}  // namespace
