// Tests of loss::sft (loss/sft.hpp): sum, token mean (local and global token count) and
// sequence-mean-token-mean against naive float64 loops, ∂loss/∂ℓ by central differences, NaN
// behind zero masks, empty / all-masked sequences, micro-batch invariance with global normalisers,
// float inputs, and validation errors (grad untouched).
#include "posttrain/loss/sft.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "posttrain/core/error.hpp"

namespace pt = posttrain;
namespace agg = posttrain::agg;
using pt::index_t;

namespace {

struct batch_data {
  std::vector<index_t> offsets{0};
  std::vector<float> mask;
  std::vector<double> lp;
  pt::token_batch batch() const { return {offsets, mask}; }
};

batch_data make(std::mt19937_64& rng, int b, int max_len) {
  std::uniform_int_distribution<int> len(0, max_len);
  std::uniform_real_distribution<double> u(0, 1), lp(-4, -0.01);
  batch_data d;
  for (int i = 0; i < b; ++i) {
    const int n = i == 1 ? 3 : len(rng);
    for (int t = 0; t < n; ++t) {
      const double c = u(rng);
      const float m = i == 1 ? 0.0f : (c < 0.2 ? 0.0f : (c < 0.3 ? 0.5f : 1.0f));
      d.mask.push_back(m);
      d.lp.push_back(m == 0 ? std::numeric_limits<double>::quiet_NaN() : lp(rng));
    }
    d.offsets.push_back(static_cast<index_t>(d.lp.size()));
  }
  return d;
}

// mode 0 sum, 1 token mean, 2 seq-mean-token-mean (rows with |o|>0, divisor |o| + eps)
double naive(const batch_data& d, int mode, double eps = 0.0) {
  double total = 0, tokens = 0, seqs = 0;
  for (std::size_t i = 0; i + 1 < d.offsets.size(); ++i) {
    double s = 0, w = 0;
    for (index_t t = d.offsets[i]; t < d.offsets[i + 1]; ++t)
      if (d.mask[t] != 0) {
        s += d.mask[t] * -d.lp[t];
        w += d.mask[t];
      }
    tokens += w;
    if (mode == 2) {
      if (w > 0) {
        total += s / (w + eps);
        seqs += 1;
      }
    } else {
      total += s;
    }
  }
  if (mode == 0) return total;
  if (mode == 1) return tokens > 0 ? total / tokens : 0.0;
  return seqs > 0 ? total / seqs : 0.0;
}

template <class Mode>
void check(const batch_data& d, int mode, const pt::agg_options& o = {}) {
  std::vector<double> g(d.lp.size(), 9.0);
  const auto r = pt::loss::sft<Mode>::compute(std::span<const double>(d.lp), d.batch(),
                                              std::span<double>(g), {}, o);
  EXPECT_NEAR(r.loss, naive(d, mode, o.length_epsilon), 1e-12);
  batch_data x = d;
  for (std::size_t t = 0; t < d.lp.size(); ++t) {
    if (d.mask[t] == 0) {
      EXPECT_EQ(g[t], 0.0);
      EXPECT_FALSE(std::signbit(g[t]));
      continue;
    }
    const double h = 1e-6;
    x.lp[t] = d.lp[t] + h;
    const double up = naive(x, mode, o.length_epsilon);
    x.lp[t] = d.lp[t] - h;
    const double dn = naive(x, mode, o.length_epsilon);
    x.lp[t] = d.lp[t];
    EXPECT_NEAR(g[t], (up - dn) / (2 * h), 1e-7);
    // and through the code under test itself
    x.lp[t] = d.lp[t] + h;
    const double up2 = pt::loss::sft<Mode>::compute(std::span<const double>(x.lp), x.batch()).loss;
    x.lp[t] = d.lp[t] - h;
    const double dn2 = pt::loss::sft<Mode>::compute(std::span<const double>(x.lp), x.batch()).loss;
    x.lp[t] = d.lp[t];
    if (o.length_epsilon == 0) {
      EXPECT_NEAR(g[t], (up2 - dn2) / (2 * h), 1e-7);
    }
  }
}

}  // namespace

TEST(Sft, ModesMatchNaiveAndFiniteDifferences) {
  std::mt19937_64 rng(5);
  for (int rep = 0; rep < 3; ++rep) {
    const batch_data d = make(rng, 6, 7);
    check<agg::token_sum>(d, 0);
    check<agg::token_mean>(d, 1);
    check<agg::seq_mean_token_mean>(d, 2);
    check<agg::seq_mean_token_mean>(d, 2, pt::agg_conventions::openrlhf());
  }
}

TEST(Sft, EmptyAndAllMasked) {
  batch_data d;  // B = 0
  EXPECT_EQ(pt::loss::sft<agg::token_mean>::compute(std::span<const double>(d.lp), d.batch()).loss,
            0.0);
  d.offsets = {0, 0, 2};
  d.mask = {0, 0};
  d.lp = {NAN, NAN};
  std::vector<double> g(2, 5.0);
  for (double v :
       {pt::loss::sft<agg::token_mean>::compute(std::span<const double>(d.lp), d.batch(),
                                                std::span<double>(g))
            .loss,
        pt::loss::sft<agg::seq_mean_token_mean>::compute(std::span<const double>(d.lp), d.batch())
            .loss,
        pt::loss::sft<agg::token_sum>::compute(std::span<const double>(d.lp), d.batch()).loss}) {
    EXPECT_EQ(v, 0.0);
    EXPECT_FALSE(std::signbit(v));  // +0, not −0 (the loss is the negated aggregate of ℓ)
  }
  EXPECT_EQ(g[0], 0.0);
  EXPECT_EQ(g[1], 0.0);
}

// sft negates the aggregate of ℓ instead of aggregating a −ℓ copy: the result must be bitwise
// the aggregate of −ℓ (negation is exact and the aggregation linear).
TEST(Sft, BitwiseEqualToAggregatingNegatedLogprobs) {
  std::mt19937_64 rng(11);
  const batch_data d = make(rng, 5, 9);
  std::vector<double> nll(d.lp.size());
  for (std::size_t t = 0; t < nll.size(); ++t) nll[t] = -d.lp[t];
  std::vector<double> g(d.lp.size()), g_ref(d.lp.size());
  const auto r = pt::loss::sft<agg::seq_mean_token_mean>::compute(std::span<const double>(d.lp),
                                                                  d.batch(), std::span<double>(g));
  const auto ref = pt::aggregate_loss<agg::seq_mean_token_mean>(
      pt::exec::host{}, std::span<const double>(nll), std::span<const float>(d.mask),
      std::span<const pt::index_t>(d.offsets), {}, std::span<double>(g_ref));
  EXPECT_EQ(r.loss, ref.loss);
  EXPECT_EQ(r.divisor, ref.divisor);
  for (std::size_t t = 0; t < g.size(); ++t)
    if (d.mask[t] != 0.0f) {
      EXPECT_EQ(g[t], -g_ref[t]) << t;
    }
}

TEST(Sft, MicroBatchInvarianceWithGlobalNormalizers) {
  std::mt19937_64 rng(6);
  const batch_data d = make(rng, 8, 6);
  const auto counts =
      pt::aggregation_counts(pt::exec::host{}, std::span<const float>(d.mask), d.offsets);
  auto run = [&](auto mode_tag) {
    using Mode = decltype(mode_tag);
    std::vector<double> gfull(d.lp.size()), gparts(d.lp.size());
    const double full = pt::loss::sft<Mode>::compute(std::span<const double>(d.lp), d.batch(),
                                                     std::span<double>(gfull))
                            .loss;
    double sum = 0;
    pt::agg_normalizer norm{counts.tokens, counts.sequences, {}};
    for (auto [b, e] : {std::pair<int, int>{0, 3}, {3, 3}, {3, 8}}) {
      const index_t t0 = d.offsets[b], t1 = d.offsets[e];
      std::vector<index_t> off;
      for (int i = b; i <= e; ++i) off.push_back(d.offsets[i] - t0);
      pt::token_batch mb{off, std::span<const float>(d.mask).subspan(t0, t1 - t0)};
      sum += pt::loss::sft<Mode>::compute(std::span<const double>(d.lp).subspan(t0, t1 - t0), mb,
                                          std::span<double>(gparts).subspan(t0, t1 - t0), norm)
                 .loss;
    }
    EXPECT_NEAR(sum, full, 1e-12);
    for (std::size_t t = 0; t < d.lp.size(); ++t) EXPECT_NEAR(gparts[t], gfull[t], 1e-15);
  };
  run(agg::token_mean{});
  run(agg::seq_mean_token_mean{});
  run(agg::token_sum{});
}

TEST(Sft, FloatMatchesDouble) {
  std::mt19937_64 rng(7);
  const batch_data d = make(rng, 5, 9);
  std::vector<float> f(d.lp.begin(), d.lp.end());
  std::vector<float> gf(f.size());
  std::vector<double> gd(f.size());
  const auto rf = pt::loss::sft<agg::token_mean>::compute(std::span<const float>(f), d.batch(),
                                                          std::span<float>(gf));
  const auto rd = pt::loss::sft<agg::token_mean>::compute(std::span<const double>(d.lp), d.batch(),
                                                          std::span<double>(gd));
  EXPECT_NEAR(rf.loss, rd.loss, 1e-5);
  for (std::size_t t = 0; t < f.size(); ++t) EXPECT_NEAR(gf[t], gd[t], 1e-6);
}

TEST(Sft, ValidationLeavesGradUntouched) {
  std::vector<index_t> off{0, 2, 3}, bad_off{0, 3, 2};
  std::vector<float> mask{1, 1, 1}, neg{1, -1, 1}, short_mask{1, 1};
  std::vector<double> lp{-1, -2, -3}, short_lp{-1, -2};
  std::vector<double> g(3, 4.0), short_g(2, 4.0);
  using S = pt::loss::sft<agg::token_mean>;
  auto cl = [](const std::vector<double>& v) { return std::span<const double>(v); };
  EXPECT_THROW(S::compute(cl(short_lp), {off, mask}, std::span<double>(g)), pt::error);
  EXPECT_THROW(S::compute(cl(lp), {bad_off, mask}, std::span<double>(g)), pt::error);
  EXPECT_THROW(S::compute(cl(lp), {off, neg}, std::span<double>(g)), pt::error);
  EXPECT_THROW(S::compute(cl(lp), {off, short_mask}, std::span<double>(g)), pt::error);
  EXPECT_THROW(S::compute(cl(lp), {{}, mask}, std::span<double>(g)), pt::error);
  EXPECT_THROW(S::compute(cl(lp), {off, mask}, std::span<double>(short_g)), pt::error);
  EXPECT_THROW(
      S::compute(cl(lp), {off, mask}, std::span<double>(g), pt::agg_normalizer{-1.0, {}, {}}),
      pt::error);
  EXPECT_THROW(
      pt::loss::sft<agg::constant_divisor>::compute(cl(lp), {off, mask}, std::span<double>(g)),
      pt::error);
  EXPECT_THROW(
      S::compute(cl(lp), {off, mask}, std::span<double>(g), {}, pt::agg_options{false, -1.0, 0.0}),
      pt::error);
  for (double v : g) EXPECT_EQ(v, 4.0);
}
