// Tests for ops/aggregate.hpp: every mode against a naive float64 reference, finite-difference
// gradients w.r.t. the per-token loss, micro-batch invariance with global normalisers, empty and
// all-masked sequences, the peer normalisers (verl, TRL grpo/bnpo/dr_grpo/dapo), validation.
// Also covers ops/aggregate_types.hpp (agg::policy and its presets, the backend template) and
// backend/cpu/aggregate.hpp; backend/cpu/fused_aggregate.hpp is covered by
// tests/loss/policy_gradient_fused.cpp and tests/loss/value_fused.cpp (fused = this op).
#include "posttrain/ops/aggregate.hpp"

#include "posttrain/core/ragged.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace pt = posttrain;

namespace {

enum class mode { token_mean, token_sum, constant, seq_sum, seq_mean, seq_sum_norm };
const mode kModes[] = {mode::token_mean, mode::token_sum,  mode::constant,
                       mode::seq_sum,    mode::seq_mean,   mode::seq_sum_norm};

std::string name(mode m) {
  switch (m) {
    case mode::token_mean: return "token_mean";
    case mode::token_sum: return "token_sum";
    case mode::constant: return "constant_divisor";
    case mode::seq_sum: return "seq_mean_token_sum";
    case mode::seq_mean: return "seq_mean_token_mean";
    case mode::seq_sum_norm: return "seq_mean_token_sum_norm";
  }
  return "?";
}

struct batch {
  std::vector<double> loss;
  std::vector<float> mask;
  std::vector<pt::index_t> offsets;
};

// Rows of several lengths: an empty row, an all-masked row, fractional weights, and NaN losses
// at masked positions (they must never reach the result).
batch make_batch(unsigned seed, bool nan_at_masked = true) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-2.0, 3.0);
  const std::vector<pt::index_t> lengths{5, 0, 7, 3, 4, 1, 9, 6};
  batch b;
  b.offsets.push_back(0);
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    for (pt::index_t t = 0; t < lengths[i]; ++t) {
      float m = (rng() % 4 == 0) ? 0.0f : 1.0f;
      if (i == 3) m = 0.0f;                  // all masked
      if (i == 6 && t % 3 == 1) m = 0.25f;  // fractional weights
      b.mask.push_back(m);
      b.loss.push_back(m == 0.0f && nan_at_masked ? std::numeric_limits<double>::quiet_NaN()
                                                  : u(rng));
    }
    b.offsets.push_back(b.offsets.back() + lengths[i]);
  }
  return b;
}

// Naive reference: loss and gradient from the table of the header, in double.
struct reference {
  double loss;
  std::vector<double> grad;
};

reference naive(mode md, const batch& b, const pt::agg_normalizer& n, const pt::agg_options& o) {
  const std::size_t rows = b.offsets.size() - 1;
  auto m = [&](std::size_t t) { return b.mask.empty() ? 1.0 : static_cast<double>(b.mask[t]); };
  std::vector<double> len(rows, 0.0), sum(rows, 0.0);
  double tokens = 0.0;
  double nonempty = 0.0;
  for (std::size_t i = 0; i < rows; ++i) {
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
      const auto k = static_cast<std::size_t>(t);
      len[i] += m(k);
      if (m(k) != 0.0) sum[i] += m(k) * b.loss[k];
    }
    tokens += len[i];
    if (len[i] > 0.0) nonempty += 1.0;
  }
  const double seqs = o.include_empty_sequences ? static_cast<double>(rows) : nonempty;
  double divisor = 1.0;
  switch (md) {
    case mode::token_mean: divisor = n.tokens ? *n.tokens : tokens; break;
    case mode::token_sum: divisor = 1.0; break;
    case mode::constant:
    case mode::seq_sum_norm: divisor = *n.constant; break;
    case mode::seq_sum:
    case mode::seq_mean: divisor = n.sequences ? *n.sequences : seqs; break;
  }
  reference r{0.0, std::vector<double>(b.loss.size(), 0.0)};
  if (divisor == 0.0) return r;
  for (std::size_t i = 0; i < rows; ++i) {
    if (len[i] == 0.0) continue;
    double w = 1.0;
    if (md == mode::seq_mean) w = 1.0 / std::max(len[i] + o.length_epsilon, o.length_floor);
    r.loss += w * sum[i] / divisor;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t)
      r.grad[static_cast<std::size_t>(t)] = m(static_cast<std::size_t>(t)) * w / divisor;
  }
  return r;
}

template <class T>
pt::agg_result call(mode md, const std::vector<T>& loss, const std::vector<float>& mask,
                    const std::vector<pt::index_t>& offsets, const pt::agg_normalizer& n,
                    std::vector<T>* grad, const pt::agg_options& o) {
  const pt::exec::host h;
  std::span<T> g = grad ? std::span<T>(*grad) : std::span<T>();
  switch (md) {
    case mode::token_mean: return pt::aggregate_loss<pt::agg::token_mean>(h, loss, mask, offsets, n, g, o);
    case mode::token_sum: return pt::aggregate_loss<pt::agg::token_sum>(h, loss, mask, offsets, n, g, o);
    case mode::constant: return pt::aggregate_loss<pt::agg::constant_divisor>(h, loss, mask, offsets, n, g, o);
    case mode::seq_sum: return pt::aggregate_loss<pt::agg::seq_mean_token_sum>(h, loss, mask, offsets, n, g, o);
    case mode::seq_mean: return pt::aggregate_loss<pt::agg::seq_mean_token_mean>(h, loss, mask, offsets, n, g, o);
    case mode::seq_sum_norm: return pt::aggregate_loss<pt::agg::seq_mean_token_sum_norm>(h, loss, mask, offsets, n, g, o);
  }
  return {};
}

pt::agg_normalizer with_constant(double c) {
  pt::agg_normalizer n;
  n.constant = c;
  return n;
}

const pt::agg_options kOptionSets[] = {pt::agg_options{}, pt::agg_conventions::verl(),
                                       pt::agg_conventions::trl()};

void expect_near_rel(double got, double want, double rel, const std::string& what) {
  EXPECT_NEAR(got, want, rel * std::max(1.0, std::fabs(want))) << what;
}

}  // namespace

static_assert(pt::aggregation<pt::agg::seq_mean_token_mean>);
static_assert(!pt::aggregation<int>);
struct no_divisor {
  static constexpr bool per_sequence = true;
};
static_assert(!pt::aggregation<no_divisor>);

TEST(Aggregate, EveryModeMatchesNaiveReference) {
  for (unsigned seed : {1u, 2u, 3u}) {
    const batch b = make_batch(seed);
    for (const auto& o : kOptionSets)
      for (mode md : kModes) {
        const auto n = with_constant(4096.0);
        std::vector<double> g(b.loss.size(), -1.0);
        const auto r = call(md, b.loss, b.mask, b.offsets, n, &g, o);
        const auto want = naive(md, b, n, o);
        const std::string what = name(md) + " seed " + std::to_string(seed) +
                                 " include_empty " + std::to_string(o.include_empty_sequences);
        ASSERT_TRUE(std::isfinite(r.loss)) << what;
        expect_near_rel(r.loss, want.loss, 1e-13, what);
        for (std::size_t t = 0; t < g.size(); ++t)
          expect_near_rel(g[t], want.grad[t], 1e-14, what + " grad " + std::to_string(t));
        // Without a gradient the loss is the same.
        const auto r2 = call<double>(md, b.loss, b.mask, b.offsets, n, nullptr, o);
        EXPECT_EQ(r.loss, r2.loss) << what;
      }
  }
}

TEST(Aggregate, UnitMaskEqualsEmptyMask) {
  batch b = make_batch(4, false);
  const std::vector<float> ones(b.loss.size(), 1.0f);
  for (mode md : kModes) {
    std::vector<double> g1(b.loss.size()), g2(b.loss.size());
    const auto n = with_constant(3.0);
    const auto r1 = call(md, b.loss, ones, b.offsets, n, &g1, {});
    const auto r2 = call(md, b.loss, {}, b.offsets, n, &g2, {});
    expect_near_rel(r1.loss, r2.loss, 1e-14, name(md));
    EXPECT_EQ(g1, g2) << name(md);
    batch nb{b.loss, {}, b.offsets};
    expect_near_rel(r2.loss, naive(md, nb, n, {}).loss, 1e-13, name(md));
  }
}

TEST(Aggregate, GradientsMatchFiniteDifferences) {
  const batch b = make_batch(5, false);  // finite losses everywhere, so every L can be perturbed
  const double h = 1e-5;
  for (const auto& o : kOptionSets)
    for (mode md : kModes) {
      const auto n = with_constant(17.0);
      std::vector<double> g(b.loss.size());
      call(md, b.loss, b.mask, b.offsets, n, &g, o);
      for (std::size_t t = 0; t < b.loss.size(); ++t) {
        auto lp = b.loss, lm = b.loss;
        lp[t] += h;
        lm[t] -= h;
        const double fd = (call<double>(md, lp, b.mask, b.offsets, n, nullptr, o).loss -
                           call<double>(md, lm, b.mask, b.offsets, n, nullptr, o).loss) /
                          (2 * h);
        EXPECT_NEAR(g[t], fd, 1e-8) << name(md) << " token " << t;
      }
    }
}

TEST(Aggregate, MicroBatchInvarianceWithGlobalNormalizer) {
  const batch b = make_batch(6);
  // Split the 8 rows into micro-batches at several cut sets (a micro-batch may hold only empty
  // or all-masked rows).
  const std::vector<std::vector<std::size_t>> cut_sets{
      {0, 8}, {0, 3, 8}, {0, 1, 2, 4, 8}, {0, 2, 3, 4, 5, 6, 7, 8}, {0, 4, 4, 8}};
  for (const auto& o : kOptionSets)
    for (const auto& cuts : cut_sets) {
      // Global normaliser = sum of the local counts.
      pt::agg_normalizer global;
      double tokens = 0.0, sequences = 0.0;
      for (std::size_t k = 0; k + 1 < cuts.size(); ++k) {
        std::vector<pt::index_t> off;
        for (std::size_t i = cuts[k]; i <= cuts[k + 1]; ++i)
          off.push_back(b.offsets[i] - b.offsets[cuts[k]]);
        const auto begin = static_cast<std::size_t>(b.offsets[cuts[k]]);
        const std::vector<float> m(b.mask.begin() + begin, b.mask.begin() + begin + off.back());
        const auto c = pt::aggregation_counts(pt::exec::host{}, m, off, o);
        tokens += c.tokens;
        sequences += c.sequences;
      }
      global.tokens = tokens;
      global.sequences = sequences;
      global.constant = 2048.0;
      for (mode md : kModes) {
        std::vector<double> full_grad(b.loss.size());
        const auto full = call(md, b.loss, b.mask, b.offsets, global, &full_grad, o);
        // The default (local) normaliser of the full batch is the same.
        const auto local = call<double>(md, b.loss, b.mask, b.offsets, with_constant(2048.0),
                                        nullptr, o);
        EXPECT_NEAR(full.loss, local.loss, 1e-12) << name(md);
        EXPECT_EQ(full.divisor, local.divisor) << name(md);
        double sum = 0.0;
        std::vector<double> grad;
        for (std::size_t k = 0; k + 1 < cuts.size(); ++k) {
          std::vector<pt::index_t> off;
          for (std::size_t i = cuts[k]; i <= cuts[k + 1]; ++i)
            off.push_back(b.offsets[i] - b.offsets[cuts[k]]);
          const auto begin = static_cast<std::size_t>(b.offsets[cuts[k]]);
          const auto end = begin + static_cast<std::size_t>(off.back());
          const std::vector<double> l(b.loss.begin() + begin, b.loss.begin() + end);
          const std::vector<float> m(b.mask.begin() + begin, b.mask.begin() + end);
          std::vector<double> g(l.size());
          sum += call(md, l, m, off, global, &g, o).loss;
          grad.insert(grad.end(), g.begin(), g.end());
        }
        EXPECT_NEAR(sum, full.loss, 1e-12) << name(md) << " " << cuts.size() - 1 << " parts";
        ASSERT_EQ(grad.size(), full_grad.size());
        for (std::size_t t = 0; t < grad.size(); ++t)
          EXPECT_NEAR(grad[t], full_grad[t], 1e-15) << name(md) << " token " << t;
      }
    }
}

TEST(Aggregate, EmptyAndAllMaskedSequences) {
  // Rows: empty, all masked, one real row of two tokens.
  const std::vector<double> loss{std::nan(""), std::nan(""), 1.0, 3.0};
  const std::vector<float> mask{0.0f, 0.0f, 1.0f, 1.0f};
  const std::vector<pt::index_t> offsets{0, 0, 2, 4};
  std::vector<double> g(4, 9.0);
  // verl: empty rows excluded: mean over one row.
  auto r = pt::aggregate_loss<pt::agg::seq_mean_token_mean>(pt::exec::host{}, loss, mask, offsets,
                                                            {}, g, pt::agg_conventions::verl());
  EXPECT_NEAR(r.loss, 4.0 / (2.0 + 1e-8), 1e-15);
  EXPECT_EQ(r.divisor, 1.0);
  EXPECT_EQ(g[0], 0.0);
  EXPECT_EQ(g[1], 0.0);
  EXPECT_NEAR(g[2], 1.0 / (2.0 + 1e-8), 1e-16);
  // TRL grpo: mean over all three rows, empty rows contribute 0.
  r = pt::aggregate_loss<pt::agg::seq_mean_token_mean>(pt::exec::host{}, loss, mask, offsets, {},
                                                       g, pt::agg_conventions::trl());
  EXPECT_DOUBLE_EQ(r.loss, (4.0 / 2.0) / 3.0);
  EXPECT_EQ(r.divisor, 3.0);
  EXPECT_DOUBLE_EQ(g[3], 1.0 / 6.0);
  // Everything masked: divisor 0 -> loss 0 and zero gradients, for every mode with a count.
  const std::vector<float> zeros(4, 0.0f);
  for (mode md : {mode::token_mean, mode::seq_sum, mode::seq_mean}) {
    std::vector<double> gz(4, 9.0);
    const auto rz = call(md, loss, zeros, offsets, {}, &gz, {});
    EXPECT_EQ(rz.loss, 0.0) << name(md);
    EXPECT_EQ(rz.divisor, 0.0) << name(md);
    EXPECT_EQ(gz, std::vector<double>(4, 0.0)) << name(md);
  }
  // ... but TRL's include-empty mean over 3 rows is 0 / 3 with zero gradients.
  std::vector<double> gz(4, 9.0);
  const auto rz = call(mode::seq_mean, loss, zeros, offsets, {}, &gz, pt::agg_conventions::trl());
  EXPECT_EQ(rz.loss, 0.0);
  EXPECT_EQ(rz.divisor, 3.0);
  EXPECT_EQ(gz, std::vector<double>(4, 0.0));
  // An explicit zero normaliser also gives 0 (open-instruct convention).
  pt::agg_normalizer zero;
  zero.tokens = 0.0;
  std::vector<double> g0(4, 9.0);
  EXPECT_EQ(call(mode::token_mean, loss, mask, offsets, zero, &g0, {}).loss, 0.0);
  EXPECT_EQ(g0, std::vector<double>(4, 0.0));
  // No sequences at all.
  const std::vector<double> none;
  const std::vector<pt::index_t> just_zero{0};
  for (mode md : kModes)
    EXPECT_EQ(call<double>(md, none, {}, just_zero, with_constant(8.0), nullptr, {}).loss, 0.0);
}

TEST(Aggregate, PeerNormalisers) {
  // Padded [B, T] batch: B = 3, T = 4, binary mask, one empty row.
  const std::size_t B = 3, T = 4;
  const std::vector<double> loss{0.5, -1.0, 2.0, 0.25, 1.5, 7.0, 7.0, 7.0, 9.0, 9.0, 9.0, 9.0};
  const std::vector<float> mask{1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0};
  const auto offsets = pt::padded_offsets(B, T);
  const pt::exec::host h;
  auto masked = [&](std::size_t i) {
    double s = 0, n = 0;
    for (std::size_t t = 0; t < T; ++t)
      if (mask[i * T + t] != 0) {
        s += loss[i * T + t];
        n += 1;
      }
    return std::pair{s, n};
  };
  double total = 0, ntok = 0;
  for (std::size_t i = 0; i < B; ++i) {
    total += masked(i).first;
    ntok += masked(i).second;
  }
  const double GA = 2.0;
  // TRL grpo: mean_i(Σ m·L / max(|o_i|, 1)) / GA over all local rows.
  double grpo = 0;
  for (std::size_t i = 0; i < B; ++i) grpo += masked(i).first / std::max(masked(i).second, 1.0);
  grpo = grpo / B / GA;
  pt::agg_normalizer n;
  n.sequences = B * GA;
  EXPECT_NEAR(pt::aggregate_loss<pt::agg::seq_mean_token_mean>(h, loss, mask, offsets, n, {},
                                                               pt::agg_conventions::trl())
                  .loss,
              grpo, 1e-15);
  // TRL bnpo: Σ m·L / max(Σ m, 1) / GA.
  n = {};
  n.tokens = ntok * GA;
  EXPECT_NEAR(pt::aggregate_loss<pt::agg::token_mean>(h, loss, mask, offsets, n).loss,
              total / ntok / GA, 1e-15);
  // TRL dr_grpo: Σ m·L / (B · max_completion_length) / GA.
  n = {};
  n.constant = B * T * GA;
  EXPECT_NEAR(pt::aggregate_loss<pt::agg::constant_divisor>(h, loss, mask, offsets, n).loss,
              total / (B * T) / GA, 1e-15);
  // TRL dapo: Σ m·L / (num_items_in_batch / num_processes) with a global token count.
  n = {};
  const double num_items = 40, processes = 4;
  n.tokens = num_items / processes;
  EXPECT_NEAR(pt::aggregate_loss<pt::agg::token_mean>(h, loss, mask, offsets, n).loss,
              total / (num_items / processes), 1e-15);
  // verl seq-mean-token-sum-norm: Σ m·L / T, no division by B.
  n = {};
  n.constant = T;
  EXPECT_NEAR(pt::aggregate_loss<pt::agg::seq_mean_token_sum_norm>(h, loss, mask, offsets, n).loss,
              total / T, 1e-15);
  // verl seq-mean-token-sum: mean over the two non-empty rows of the row sums.
  EXPECT_NEAR(pt::aggregate_loss<pt::agg::seq_mean_token_sum>(h, loss, mask, offsets, {}, {},
                                                              pt::agg_conventions::verl())
                  .loss,
              total / 2.0, 1e-15);
  // SFT sum.
  EXPECT_NEAR(pt::aggregate_loss<pt::agg::token_sum>(h, loss, mask, offsets).loss, total, 1e-15);
  // Token-level modes accept empty seq_offsets.
  EXPECT_NEAR(pt::aggregate_loss<pt::agg::token_mean>(h, loss, mask, {}).loss, total / ntok,
              1e-15);
}

TEST(Aggregate, FloatInputsAccumulateInDouble) {
  const batch b = make_batch(7);
  const std::vector<float> lf(b.loss.begin(), b.loss.end());
  batch rounded{std::vector<double>(lf.begin(), lf.end()), b.mask, b.offsets};
  for (mode md : kModes) {
    std::vector<float> g(lf.size());
    const auto n = with_constant(10.0);
    const auto r = call(md, lf, b.mask, b.offsets, n, &g, pt::agg_conventions::verl());
    const auto want = naive(md, rounded, n, pt::agg_conventions::verl());
    expect_near_rel(r.loss, want.loss, 1e-13, name(md));  // double accumulation of float data
    for (std::size_t t = 0; t < g.size(); ++t)
      EXPECT_NEAR(g[t], want.grad[t], 1e-7 * std::fabs(want.grad[t]) + 1e-30) << name(md);
  }
}

TEST(Aggregate, ValidationThrowsAndLeavesOutputsUntouched) {
  const batch b = make_batch(8);
  const std::size_t n = b.loss.size();
  std::vector<double> g(n, 42.0);
  const auto untouched = [&] { EXPECT_EQ(g, std::vector<double>(n, 42.0)); };
  const pt::exec::host h;
  using tm = pt::agg::token_mean;
  using sm = pt::agg::seq_mean_token_mean;
  // Sizes.
  std::vector<double> short_loss(b.loss.begin(), b.loss.end() - 1);
  EXPECT_THROW(pt::aggregate_loss<sm>(h, short_loss, b.mask, b.offsets, {}, g), pt::error);
  untouched();
  std::vector<float> short_mask(b.mask.begin(), b.mask.end() - 1);
  EXPECT_THROW(pt::aggregate_loss<tm>(h, b.loss, short_mask, b.offsets, {}, g), pt::error);
  untouched();
  std::vector<double> short_grad(n - 1, 42.0);
  EXPECT_THROW(pt::aggregate_loss<tm>(h, b.loss, b.mask, b.offsets, {}, short_grad), pt::error);
  EXPECT_EQ(short_grad, std::vector<double>(n - 1, 42.0));
  // Offsets: non-monotone, wrong total, not starting at 0, missing for a per-sequence mode.
  auto bad = b.offsets;
  std::swap(bad[2], bad[3]);  // row 1 is empty, so swap two distinct offsets
  EXPECT_THROW(pt::aggregate_loss<sm>(h, b.loss, b.mask, bad, {}, g), pt::error);
  untouched();
  bad = b.offsets;
  bad.back() += 1;
  EXPECT_THROW(pt::aggregate_loss<tm>(h, b.loss, b.mask, bad, {}, g), pt::error);
  untouched();
  bad = b.offsets;
  bad.front() = 1;
  EXPECT_THROW(pt::aggregate_loss<sm>(h, b.loss, b.mask, bad, {}, g), pt::error);
  untouched();
  EXPECT_THROW(pt::aggregate_loss<sm>(h, b.loss, b.mask, {}, {}, g), pt::error);
  untouched();
  EXPECT_THROW(pt::aggregate_loss<pt::agg::seq_mean_token_sum>(h, b.loss, b.mask, {}, {}, g),
               pt::error);
  untouched();
  // Mask weights must be finite and >= 0.
  auto neg = b.mask;
  neg[2] = -1.0f;
  EXPECT_THROW(pt::aggregate_loss<tm>(h, b.loss, neg, b.offsets, {}, g), pt::error);
  untouched();
  neg[2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(pt::aggregate_loss<tm>(h, b.loss, neg, b.offsets, {}, g), pt::error);
  untouched();
  // Normalisers: NaN, negative, missing constant, zero constant.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  pt::agg_normalizer bad_n;
  bad_n.tokens = nan;
  EXPECT_THROW(pt::aggregate_loss<tm>(h, b.loss, b.mask, b.offsets, bad_n, g), pt::error);
  untouched();
  bad_n = {};
  bad_n.sequences = -1.0;
  EXPECT_THROW(pt::aggregate_loss<sm>(h, b.loss, b.mask, b.offsets, bad_n, g), pt::error);
  untouched();
  bad_n = {};
  bad_n.constant = 0.0;
  EXPECT_THROW(pt::aggregate_loss<pt::agg::constant_divisor>(h, b.loss, b.mask, b.offsets, bad_n, g),
               pt::error);
  untouched();
  EXPECT_THROW(pt::aggregate_loss<pt::agg::seq_mean_token_sum_norm>(h, b.loss, b.mask, b.offsets,
                                                                     {}, g),
               pt::error);
  untouched();
  EXPECT_THROW(pt::aggregate_loss<pt::agg::constant_divisor>(h, b.loss, b.mask, b.offsets, {}, g),
               pt::error);
  untouched();
  // Options.
  pt::agg_options bad_o;
  bad_o.length_epsilon = nan;
  EXPECT_THROW(pt::aggregate_loss<sm>(h, b.loss, b.mask, b.offsets, {}, g, bad_o), pt::error);
  untouched();
  bad_o = {};
  bad_o.length_floor = -1.0;
  EXPECT_THROW(pt::aggregate_loss<sm>(h, b.loss, b.mask, b.offsets, {}, g, bad_o), pt::error);
  untouched();
  // Messages name the function and the argument.
  try {
    pt::aggregate_loss<pt::agg::constant_divisor>(h, b.loss, b.mask, b.offsets, {}, g);
    ADD_FAILURE() << "expected a throw";
  } catch (const pt::error& e) {
    EXPECT_NE(std::string(e.what()).find("aggregate_loss"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("normalizer.constant"), std::string::npos);
  }
  // aggregation_counts validates too.
  EXPECT_THROW(pt::aggregation_counts(h, short_mask, b.offsets), pt::error);
  EXPECT_THROW(pt::aggregation_counts(h, b.mask, std::vector<pt::index_t>{}), pt::error);
}
