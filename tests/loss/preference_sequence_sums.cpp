// Tests of the token kernels of the preference loop (backend/cpu/preference.hpp): masked_sum's 8
// lanes (every length mod 8, NaN/inf behind zero masks, ±0 weights, all-masked and empty ranges,
// no mask), its order fixed by the range alone (same bits at every offset; the SSE2 float loop and
// the portable double loop agree bit for bit), write_masked's exact +0 at masked tokens, LD-DPO's
// shared/tail split, and through loss::preference the one-pass gradients: a pair's loss and
// gradients do not depend on where it sits in the batch. References: plain float64 loops
// (preference_naive) and long-double sums.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "loss/preference_naive.hpp"
#include "posttrain/backend/cpu/preference.hpp"
#include "posttrain/loss/preference/algorithms.hpp"

namespace pt = posttrain;
namespace nv = preference_naive;
namespace cpu = posttrain::backend::cpu;
using pt::index_t;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// One range of n tokens: masks in {0, −0, 0.25, 0.5, 1}, log-probs in [−4, −0.01] with NaN, ±inf
// or a huge value behind zero masks (so a masked token that leaked into a sum would show).
struct tokens {
  std::vector<float> mask;
  std::vector<double> logp;
};

tokens make_tokens(std::mt19937_64& rng, index_t n, double zero_fraction) {
  std::uniform_real_distribution<double> u(0.0, 1.0), lp(-4.0, -0.01);
  const double junk[] = {kNaN, kInf, -kInf, 1e30};
  tokens t;
  for (index_t i = 0; i < n; ++i) {
    const double c = u(rng);
    float m = 1.0f;
    if (c < zero_fraction)
      m = (i % 2 == 0) ? 0.0f : -0.0f;
    else if (c < zero_fraction + 0.1)
      m = 0.25f;
    else if (c < zero_fraction + 0.2)
      m = 0.5f;
    t.mask.push_back(m);
    // float-representable log-probs, so the float and double paths see the same values
    const double v = static_cast<float>(lp(rng));
    t.logp.push_back(m == 0.0f ? junk[i % 4] : v);
  }
  return t;
}

// Long-double reference of Σ m·ℓ and Σ m over the unmasked tokens.
std::pair<long double, long double> reference_sums(const tokens& t) {
  long double s = 0, w = 0;
  for (std::size_t i = 0; i < t.mask.size(); ++i) {
    if (t.mask[i] == 0.0f) continue;
    s += static_cast<long double>(t.mask[i]) * static_cast<long double>(t.logp[i]);
    w += t.mask[i];
  }
  return {s, w};
}

// masked_sum over the whole of a vector placed at `offset` inside a larger buffer (junk around).
template <class T>
cpu::masked_sums sum_at(const tokens& t, index_t offset, bool with_mask = true) {
  const auto n = static_cast<index_t>(t.mask.size());
  std::vector<T> values(static_cast<std::size_t>(offset + n + 5), static_cast<T>(kNaN));
  std::vector<float> mask(values.size(), 1.0f);
  for (index_t i = 0; i < n; ++i) {
    values[static_cast<std::size_t>(offset + i)] = static_cast<T>(t.logp[static_cast<std::size_t>(i)]);
    mask[static_cast<std::size_t>(offset + i)] = t.mask[static_cast<std::size_t>(i)];
  }
  return cpu::masked_sum(std::span<const T>(values),
                         with_mask ? std::span<const float>(mask) : std::span<const float>(),
                         offset, offset + n);
}

}  // namespace

TEST(PreferenceSequenceSums, EveryLengthAgainstLongDouble) {
  std::mt19937_64 rng(11);
  for (index_t n = 0; n <= 70; ++n) {
    for (double zf : {0.0, 0.3, 0.9}) {
      const tokens t = make_tokens(rng, n, zf);
      const auto [s, w] = reference_sums(t);
      for (const cpu::masked_sums r : {sum_at<double>(t, 0), sum_at<float>(t, 0)}) {
        EXPECT_NEAR(r.sum, static_cast<double>(s), 1e-13 * (1 + std::abs(static_cast<double>(s))))
            << "n " << n;
        EXPECT_EQ(r.weight, static_cast<double>(w)) << "n " << n;  // sums of quarters: exact
        EXPECT_TRUE(std::isfinite(r.sum));
      }
    }
  }
}

TEST(PreferenceSequenceSums, AllMaskedAndEmptyRangesAreZero) {
  std::mt19937_64 rng(12);
  for (index_t n : {0, 1, 7, 8, 9, 16, 33}) {
    const tokens t = make_tokens(rng, n, 1.1);  // every weight ±0, junk behind every one
    for (const cpu::masked_sums r : {sum_at<double>(t, 3), sum_at<float>(t, 3)}) {
      EXPECT_EQ(r.sum, 0.0) << "n " << n;
      EXPECT_FALSE(std::signbit(r.sum));
      EXPECT_EQ(r.weight, 0.0);
    }
  }
}

TEST(PreferenceSequenceSums, NoMaskSumsEveryToken) {
  std::mt19937_64 rng(13);
  for (index_t n = 0; n <= 40; ++n) {
    tokens t = make_tokens(rng, n, 0.0);
    long double s = 0;
    for (double v : t.logp) s += v;
    for (const cpu::masked_sums r : {sum_at<double>(t, 5, false), sum_at<float>(t, 5, false)}) {
      EXPECT_NEAR(r.sum, static_cast<double>(s), 1e-13 * (1 + std::abs(static_cast<double>(s))));
      EXPECT_EQ(r.weight, static_cast<double>(n));
    }
  }
}

// The order is a function of the range alone: the same tokens at any offset (any alignment) give
// the same bits, and float values through the SSE2 loop equal the same values as double through
// the portable loop.
TEST(PreferenceSequenceSums, SameBitsAtEveryOffsetAndForFloatAndDouble) {
  std::mt19937_64 rng(14);
  for (index_t n : {1, 5, 8, 13, 64, 100, 257}) {
    const tokens t = make_tokens(rng, n, 0.3);
    const cpu::masked_sums base = sum_at<double>(t, 0);
    for (index_t offset : {1, 2, 3, 4, 7, 8, 17}) {
      for (const cpu::masked_sums r : {sum_at<double>(t, offset), sum_at<float>(t, offset)}) {
        EXPECT_EQ(r.sum, base.sum) << "n " << n << " offset " << offset;
        EXPECT_EQ(r.weight, base.weight);
      }
    }
  }
}

TEST(PreferenceSequenceSums, WriteMaskedIsExactZeroBehindMasks) {
  std::mt19937_64 rng(15);
  for (index_t n : {0, 3, 8, 21}) {
    const tokens t = make_tokens(rng, n, 0.4);
    for (double scale : {-0.37, 2.5, kInf, -kInf, kNaN}) {
      std::vector<float> gf(static_cast<std::size_t>(n) + 2, 7.0f);
      std::vector<double> gd(static_cast<std::size_t>(n) + 2, 7.0);
      cpu::write_masked(std::span<float>(gf), std::span<const float>(t.mask), 0, n, scale);
      cpu::write_masked(std::span<double>(gd), std::span<const float>(t.mask), 0, n, scale);
      for (index_t i = 0; i < n; ++i) {
        const auto k = static_cast<std::size_t>(i);
        const double want = static_cast<double>(t.mask[k]) * scale;
        if (t.mask[k] == 0.0f) {
          EXPECT_EQ(gd[k], 0.0);
          EXPECT_FALSE(std::signbit(gd[k]));
          EXPECT_EQ(gf[k], 0.0f);
          EXPECT_FALSE(std::signbit(gf[k]));
        } else if (std::isnan(want)) {
          EXPECT_TRUE(std::isnan(gd[k]) && std::isnan(gf[k]));
        } else {
          EXPECT_EQ(gd[k], want);
          EXPECT_EQ(gf[k], static_cast<float>(want));
        }
      }
      EXPECT_EQ(gd[static_cast<std::size_t>(n)], 7.0);  // nothing written past the range
      EXPECT_EQ(gf[static_cast<std::size_t>(n)], 7.0f);
    }
  }
  std::vector<float> g(5, 7.0f);
  cpu::write_masked(std::span<float>(g), std::span<const float>(), 1, 4, -0.5);
  EXPECT_EQ(g, (std::vector<float>{7.0f, -0.5f, -0.5f, -0.5f, 7.0f}));
}

TEST(PreferenceSequenceSums, LdSplitMatchesNaiveSharedAndTail) {
  std::mt19937_64 rng(16);
  for (index_t n = 0; n <= 30; ++n) {
    for (double zf : {0.0, 0.5, 1.1}) {
      const tokens t = make_tokens(rng, n, zf);
      const index_t count = cpu::nonzero_count(std::span<const float>(t.mask), 0, n);
      EXPECT_EQ(count, nv::positive(t.mask, 0, n));
      for (index_t shared = 0; shared <= count + 1; ++shared) {
        const cpu::ld_split s =
            cpu::ld_sums(std::span<const double>(t.logp), std::span<const float>(t.mask), 0, n,
                         shared);
        for (double alpha : {0.0, 0.3, 1.0}) {
          const double want = nv::ld_score(t.logp, t.mask, 0, n, shared, alpha);
          EXPECT_NEAR(s.score(alpha), want, 1e-13 * (1 + std::abs(want)))
              << "n " << n << " shared " << shared << " alpha " << alpha;
        }
        // The split sits after the shared-th unmasked token: exactly min(shared, count) of them
        // lie before it.
        EXPECT_EQ(nv::positive(t.mask, 0, s.split), std::min(shared, count));
        EXPECT_NEAR(s.whole().sum, nv::score(t.logp, t.mask, 0, n, false), 1e-12);
        EXPECT_EQ(s.whole().weight, nv::mask_weight(t.mask, 0, n));
      }
    }
  }
  // No mask: the split is at begin + shared.
  std::vector<double> v{-1, -2, -3, -4, -5};
  const cpu::ld_split s = cpu::ld_sums(std::span<const double>(v), {}, 1, 5, 2);
  EXPECT_EQ(s.split, 3);
  EXPECT_EQ(s.shared.sum, -5.0);
  EXPECT_EQ(s.tail.sum, -9.0);
}

// Through loss::preference: pairs of every length mod 8 (including fully masked and empty
// completions) give, pair by pair, the same loss and gradient bits whether alone in a batch or
// inside a larger one at another offset; and the one-pass gradient equals a naive float64
// gradient (∂loss/∂ℓ_t = m_t·∂loss/∂π_side · ∂π/∂S).
template <class Algo>
void check_position_independence(bool mean, const pt::loss::preference_options& options) {
  std::mt19937_64 rng(17);
  std::uniform_real_distribution<double> shift(-1.0, 1.0);
  struct seq_data {
    tokens t;
    double reference;
  };
  std::vector<seq_data> chosen, rejected;
  for (index_t len = 0; len < 20; ++len) {
    for (auto* side : {&chosen, &rejected}) {
      seq_data s{make_tokens(rng, (len * 7 + (side == &chosen ? 0 : 3)) % 20, len == 5 ? 1.1 : 0.3),
                 0.0};
      s.reference = (mean ? 0.0 : -10.0) + shift(rng);
      side->push_back(s);
    }
  }
  const auto P = static_cast<index_t>(chosen.size());
  auto build = [](const std::vector<seq_data>& side, index_t first, index_t count,
                  std::vector<index_t>& offsets, std::vector<float>& mask, std::vector<double>& lp,
                  std::vector<double>& ref) {
    offsets = {0};
    for (index_t p = first; p < first + count; ++p) {
      const seq_data& s = side[static_cast<std::size_t>(p)];
      mask.insert(mask.end(), s.t.mask.begin(), s.t.mask.end());
      lp.insert(lp.end(), s.t.logp.begin(), s.t.logp.end());
      offsets.push_back(static_cast<index_t>(mask.size()));
      ref.push_back(s.reference);
    }
  };
  struct batch {
    std::vector<index_t> oc, orj;
    std::vector<float> mc, mr;
    std::vector<double> lc, lr, rc, rr, gc, gr, losses;
  };
  auto run = [&](index_t first, index_t count, batch& b) {
    build(chosen, first, count, b.oc, b.mc, b.lc, b.rc);
    build(rejected, first, count, b.orj, b.mr, b.lr, b.rr);
    b.gc.assign(b.lc.size(), 99.0);
    b.gr.assign(b.lr.size(), 99.0);
    b.losses.assign(static_cast<std::size_t>(count), 99.0);
    pt::loss::preference_inputs<double> in;
    in.batch.chosen = {b.oc, b.mc};
    in.batch.rejected = {b.orj, b.mr};
    in.chosen_logprobs = b.lc;
    in.rejected_logprobs = b.lr;
    in.reference_chosen = b.rc;
    in.reference_rejected = b.rr;
    pt::loss::preference_outputs<double> out;
    out.chosen_grad = b.gc;
    out.rejected_grad = b.gr;
    out.pair_losses = b.losses;
    // a fixed pair normaliser, so per-pair gradients do not depend on the batch size
    return Algo::compute(in, options, out, pt::loss::preference_normalizer{.pairs = 4.0});
  };
  batch full;
  run(0, P, full);
  const nv::params np{.beta = options.beta};
  for (index_t p = 0; p < P; ++p) {
    batch one;
    run(p, 1, one);
    const auto k = static_cast<std::size_t>(p);
    EXPECT_EQ(one.losses[0], full.losses[k]) << "pair " << p;
    const index_t c0 = full.oc[k], r0 = full.orj[k];
    for (std::size_t t = 0; t < one.gc.size(); ++t)
      EXPECT_EQ(one.gc[t], full.gc[static_cast<std::size_t>(c0) + t]) << "pair " << p;
    for (std::size_t t = 0; t < one.gr.size(); ++t)
      EXPECT_EQ(one.gr[t], full.gr[static_cast<std::size_t>(r0) + t]) << "pair " << p;
    // naive: loss_p = sigmoid link on Δ; ∂/∂ℓ_t by the chain rule written out
    const seq_data &sc = chosen[k], &sr = rejected[k];
    const double pc = nv::score(sc.t.logp, sc.t.mask, 0, ssize(sc.t.mask), mean);
    const double pr = nv::score(sr.t.logp, sr.t.mask, 0, ssize(sr.t.mask), mean);
    const double dc = pc - sc.reference, dr = pr - sr.reference;
    EXPECT_NEAR(full.losses[k], nv::sigmoid(dc, dr, np), 1e-12);
    const double slope = -options.beta * (1.0 - nv::sig(options.beta * (dc - dr))) / 4.0;
    const double wc = std::max(1.0, nv::mask_weight(sc.t.mask, 0, ssize(sc.t.mask)));
    const double wr = std::max(1.0, nv::mask_weight(sr.t.mask, 0, ssize(sr.t.mask)));
    for (std::size_t t = 0; t < sc.t.mask.size(); ++t) {
      const double want = sc.t.mask[t] * slope / (mean ? wc : 1.0);
      EXPECT_NEAR(one.gc[t], want, 1e-14) << "pair " << p << " t " << t;
      if (sc.t.mask[t] == 0.0f) {
        EXPECT_FALSE(std::signbit(one.gc[t]));
      }
    }
    for (std::size_t t = 0; t < sr.t.mask.size(); ++t)
      EXPECT_NEAR(one.gr[t], -sr.t.mask[t] * slope / (mean ? wr : 1.0), 1e-14);
  }
}

TEST(PreferenceSequenceSums, DpoPairsIndependentOfPosition) {
  check_position_independence<pt::algo::dpo>(false, pt::pref::presets::trl);
}

TEST(PreferenceSequenceSums, LengthNormalizedDpoPairsIndependentOfPosition) {
  check_position_independence<pt::algo::dpo_length_normalized>(true,
                                                               pt::pref::presets::open_instruct);
}
