// correction/rollout.hpp (was loss/policy_gradient/rollout_correction.hpp): rollout_is_weights (verl / TRL / OpenRLHF /
// open-instruct presets) and rollout_rejection_mask (verl), against naive float64 re-writings of
// each peer's formula (written the way the peer writes it, not through the general options).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "loss/policy_gradient_naive.hpp"
#include "posttrain/loss/policy_gradient.hpp"
#include "posttrain/correction/rollout.hpp"

namespace {

namespace pt = posttrain;
using pt::index_t;
constexpr double inf = std::numeric_limits<double>::infinity();

struct rbatch {
  std::vector<index_t> offsets;
  std::vector<double> lp, roll, adv;
  std::vector<float> mask;
  std::size_t n() const { return lp.size(); }
  std::size_t rows() const { return offsets.size() - 1; }
};

// Rows of the given lengths; d = ℓ − ℓroll uniform in [-spread, spread]; some masked tokens.
// A row of length 0 is empty; `all_masked_row` masks one whole row.
rbatch make(const std::vector<int>& lengths, double spread, unsigned seed, int all_masked_row = -1) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  rbatch b;
  b.offsets.push_back(0);
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    const double a = u(g);
    for (int t = 0; t < lengths[i]; ++t) {
      const double l = -1.0 + 0.5 * u(g);
      b.lp.push_back(l);
      b.roll.push_back(l - spread * u(g));
      b.adv.push_back(a);
      const bool masked = static_cast<int>(i) == all_masked_row || (t == 0 && lengths[i] > 2) ||
                          u(g) > 0.8;
      b.mask.push_back(masked ? 0.0f : 1.0f);
    }
    b.offsets.push_back(b.offsets.back() + lengths[i]);
  }
  return b;
}

pt::rollout_inputs<double> in_of(const rbatch& b, bool adv = false) {
  pt::rollout_inputs<double> in;
  in.logprobs = b.lp;
  in.rollout_logprobs = b.roll;
  in.mask = b.mask;
  in.seq_offsets = b.offsets;
  if (adv) in.advantages = b.adv;
  return in;
}

std::vector<double> weights_of(const rbatch& b, const pt::rollout_is_options& o,
                               pt::rollout_is_result* res = nullptr) {
  std::vector<double> w(b.n(), -7.0);
  const auto r = pt::rollout_is_weights(in_of(b, true), o, std::span<double>(w));
  if (res) *res = r;
  return w;
}

void expect_weights(const rbatch& b, const std::vector<double>& got,
                    const std::vector<double>& want, double tol = 1e-12) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t t = 0; t < got.size(); ++t) {
    if (b.mask[t] == 0) {
      EXPECT_EQ(got[t], 0.0) << "masked token " << t;
      continue;
    }
    EXPECT_NEAR(got[t], want[t], tol * (1 + std::abs(want[t]))) << "token " << t;
  }
}

double clampd(double x, double lo, double hi) { return std::min(std::max(x, lo), hi); }

// ---- naive verl compute_rollout_correction_weights (padded-row semantics on packed rows)
std::vector<double> naive_verl(const rbatch& b, bool sequence, double thr, bool normalize) {
  std::vector<double> w(b.n(), 0.0);
  for (std::size_t i = 0; i < b.rows(); ++i) {
    double s = 0;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t)
      if (b.mask[t] != 0) s += (b.lp[t] - b.roll[t]) * b.mask[t];
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
      const double lr = sequence ? s : b.lp[t] - b.roll[t];
      w[t] = std::min(std::exp(clampd(lr, -20, 20)) * b.mask[t], thr);
    }
  }
  if (normalize) {
    double mean;
    if (!sequence) {
      double s = 0, m = 0;
      for (std::size_t t = 0; t < b.n(); ++t) s += w[t] * b.mask[t], m += b.mask[t];
      mean = s / (m + 1e-8);
    } else {
      double s = 0, rows = 0;
      for (std::size_t i = 0; i < b.rows(); ++i) {
        double ws = 0, m = 0;
        for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) ws += w[t] * b.mask[t], m += b.mask[t];
        if (m > 0) s += ws / (m + 1e-8), rows += 1;
      }
      mean = s / std::max(rows, 1e-8);
    }
    if (mean > 1e-8)
      for (double& x : w) x /= mean;
  }
  return w;
}

// ---- naive TRL vLLM IS (d = (ℓold − ℓvllm)·m; token / sequence SUM; truncate / mask)
std::vector<double> naive_trl(const rbatch& b, bool sequence, bool truncate, double lo, double hi) {
  std::vector<double> w(b.n(), 0.0);
  for (std::size_t i = 0; i < b.rows(); ++i) {
    double s = 0;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) s += (b.lp[t] - b.roll[t]) * b.mask[t];
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
      const double rho = std::exp(sequence ? s : (b.lp[t] - b.roll[t]) * b.mask[t]);
      w[t] = truncate ? clampd(rho, lo, hi) : ((rho < lo || rho > hi) ? 0.0 : rho);
    }
  }
  return w;
}

// ---- naive OpenRLHF (rollout_log_ratio = ℓold − ℓroll)
std::vector<double> naive_openrlhf(const rbatch& b, int type, double lo, double hi) {
  std::vector<double> w(b.n(), 0.0);
  for (std::size_t i = 0; i < b.rows(); ++i) {
    double s = 0, m = 0;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t)
      s += (b.lp[t] - b.roll[t]) * b.mask[t], m += b.mask[t];
    const double seq_is = std::exp(s / m);  // masked_mean without eps (NaN for empty rows)
    const bool seq_keep = seq_is >= lo && seq_is <= hi;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
      const double rho = std::exp(b.lp[t] - b.roll[t]);
      if (type == 0) w[t] = clampd(rho, lo, hi);
      else if (type == 1) w[t] = (rho >= lo && rho <= hi) ? rho : 0.0;
      else w[t] = seq_keep ? rho : 0.0;
    }
  }
  return w;
}

// ---- naive open-instruct compute_rho_correction
std::vector<double> naive_open_instruct(const rbatch& b, const pt::open_instruct_rho& c) {
  const std::size_t n = b.n();
  std::vector<double> diff(n, 0.0), rho(n), eff(n), tvseq(n, 0.0), w(n, 0.0);
  for (std::size_t t = 0; t < n; ++t) {
    diff[t] = b.mask[t] != 0 ? clampd(b.lp[t] - b.roll[t], -10, 10) : 0.0;
    rho[t] = std::exp(diff[t]);
  }
  for (std::size_t i = 0; i < b.rows(); ++i) {
    double s = 0, cnt = 0, tv = 0;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
      const double v = b.mask[t] != 0 ? 1.0 : 0.0;
      s += diff[t] * v, cnt += v, tv += std::abs(rho[t] - 1.0) * v;
    }
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
      eff[t] = c.sequence_level ? std::exp(s / std::max(cnt, 1.0)) : rho[t];
      tvseq[t] = tv / std::max(cnt, 1.0);
    }
  }
  for (std::size_t t = 0; t < n; ++t) {
    if (b.mask[t] == 0) continue;
    bool low, high;
    if (c.tv_divergence) {
      const double sgn = diff[t] > 0 ? 1.0 : (diff[t] < 0 ? -1.0 : 0.0);
      const bool inc = sgn * b.adv[t] > 0;
      low = c.mask_lower > 0 && tvseq[t] < c.mask_lower && inc;
      high = c.mask_upper > 0 && tvseq[t] > c.mask_upper && inc;
    } else {
      low = c.mask_lower > 0 && eff[t] < c.mask_lower;
      high = c.mask_upper > 0 && eff[t] > c.mask_upper;
    }
    double cl = eff[t];
    if (c.clamp_lower > 0) cl = std::max(cl, c.clamp_lower);
    if (c.clamp_upper > 0) cl = std::min(cl, c.clamp_upper);
    w[t] = (low || high) ? 0.0 : cl;
  }
  return w;
}

// ---- naive verl compute_rollout_rejection_mask
std::vector<float> naive_verl_rs(const rbatch& b, const std::vector<pt::rs_rule>& rules) {
  using C = pt::rs_criterion;
  const std::size_t n = b.n();
  std::vector<double> k1(n), k2(n), k3(n);
  for (std::size_t t = 0; t < n; ++t) {
    const double lr = clampd(b.lp[t] - b.roll[t], -20, 20);
    k1[t] = -lr, k2[t] = 0.5 * lr * lr, k3[t] = std::exp(lr) - 1 - lr;
  }
  std::vector<double> keep(n, 1.0);
  for (const auto& r : rules) {
    const int c = static_cast<int>(r.criterion);
    const int family = c <= 2 ? 0 : (c <= 5 ? 1 : (c <= 8 ? 2 : 3));  // token/sum/mean/max
    const int est = family == 3 ? (c == static_cast<int>(C::seq_max_k2) ? 2 : 3) : c % 3 + 1;
    const std::vector<double>& k = est == 1 ? k1 : (est == 2 ? k2 : k3);
    auto pass = [&](double x) {
      return est == 1 ? (x >= std::log(r.lower) && x <= std::log(r.upper)) : x <= r.upper;
    };
    for (std::size_t i = 0; i < b.rows(); ++i) {
      double s = 0, m = 0, mx = -inf;
      for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
        if (b.mask[t] != 0) s += k[t] * b.mask[t], m += b.mask[t], mx = std::max(mx, k[t]);
      }
      const double stat = family == 1 ? s : (family == 2 ? s / (m + 1e-8) : (mx == -inf ? 0 : mx));
      for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
        const bool ok = family == 0 ? pass(k[t]) : pass(stat);
        if (!ok) keep[t] = 0.0;
      }
    }
  }
  std::vector<float> out(n);
  for (std::size_t t = 0; t < n; ++t) out[t] = static_cast<float>(b.mask[t] * keep[t]);
  return out;
}

const std::vector<int> kLengths{6, 0, 9, 1, 7, 12, 4};

// ------------------------------------------------------------------------------------- verl

TEST(RolloutIsVerl, TokenAndSequenceWithAndWithoutBatchNormalize) {
  for (unsigned seed : {1u, 2u, 3u}) {
    const rbatch b = make(kLengths, seed == 3 ? 2.0 : 0.4, seed, 4);
    for (bool seq : {false, true})
      for (bool norm : {false, true})
        for (double thr : {2.0, 1.1, 1e9}) {
          pt::rollout_is_result res;
          const auto w = weights_of(
              b, pt::rollout_presets::verl(seq ? pt::is_level::sequence_sum : pt::is_level::token,
                                           thr, norm),
              &res);
          expect_weights(b, w, naive_verl(b, seq, thr, norm));
          if (norm) {
            EXPECT_GT(res.batch_norm_factor, 0.0);
            EXPECT_NE(res.batch_norm_factor, 1.0);
          } else {
            EXPECT_EQ(res.batch_norm_factor, 1.0);
          }
        }
  }
}

// verl ≥ 0.9 "lower_upper" threshold (IcePop): raw = e^{clamp(·, ±20)}·m zeroed outside
// [lower, upper], no truncation, then the same optional batch normalisation.
std::vector<double> naive_verl_icepop(const rbatch& b, bool sequence, double lo, double hi,
                                      bool normalize) {
  std::vector<double> w(b.n(), 0.0);
  for (std::size_t i = 0; i < b.rows(); ++i) {
    double s = 0;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) s += (b.lp[t] - b.roll[t]) * b.mask[t];
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
      const double raw = std::exp(clampd(sequence ? s : b.lp[t] - b.roll[t], -20, 20)) * b.mask[t];
      w[t] = (raw >= lo && raw <= hi) ? raw : 0.0;
    }
  }
  if (normalize) {
    double mean;
    if (!sequence) {
      double sw = 0, m = 0;
      for (std::size_t t = 0; t < b.n(); ++t) sw += w[t] * b.mask[t], m += b.mask[t];
      mean = sw / (m + 1e-8);
    } else {
      double sw = 0, rows = 0;
      for (std::size_t i = 0; i < b.rows(); ++i) {
        double ws = 0, m = 0;
        for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) ws += w[t] * b.mask[t], m += b.mask[t];
        if (m > 0) sw += ws / (m + 1e-8), rows += 1;
      }
      mean = sw / std::max(rows, 1e-8);
    }
    if (mean > 1e-8)
      for (double& x : w) x /= mean;
  }
  return w;
}

TEST(RolloutIsVerl, IcePopLowerUpperThreshold) {
  for (unsigned seed : {8u, 9u}) {
    rbatch b = make(kLengths, 0.5, seed, 1);
    if (seed == 9u)
      for (std::size_t t = 0; t < b.n(); ++t)
        if (b.mask[t] != 0) b.mask[t] = 0.5f + 0.5f * static_cast<float>(t % 2);
    for (bool seq : {false, true})
      for (bool norm : {false, true}) {
        const auto lvl = seq ? pt::is_level::sequence_sum : pt::is_level::token;
        pt::rollout_is_result res;
        const auto w = weights_of(b, pt::rollout_presets::verl_icepop(lvl, 0.8, 1.25, norm), &res);
        expect_weights(b, w, naive_verl_icepop(b, seq, 0.8, 1.25, norm));
        if (!seq) {
          EXPECT_GT(res.filtered_fraction, 0.0);
        }
      }
  }
}

TEST(RolloutIsVerl, BatchNormalizedTokenMeanIsOne) {
  const rbatch b = make(kLengths, 0.5, 4);
  const auto w = weights_of(b, pt::rollout_presets::verl(pt::is_level::token, 2.0, true));
  double s = 0, m = 0;
  for (std::size_t t = 0; t < b.n(); ++t) s += w[t] * b.mask[t], m += b.mask[t];
  EXPECT_NEAR(s / m, 1.0, 1e-7);  // (Σm + 1e-8) divisor: 1 up to 1e-8 relative
}

TEST(RolloutIsVerl, NormalizationSkippedWhenMeanTiny) {
  rbatch b = make({4, 5}, 0.1, 5);
  for (std::size_t t = 0; t < b.n(); ++t) b.roll[t] = b.lp[t] + 30.0;  // w = e^{-20} (clamped)
  pt::rollout_is_result res;
  const auto w = weights_of(b, pt::rollout_presets::verl(pt::is_level::sequence_sum, 2.0, true), &res);
  EXPECT_EQ(res.batch_norm_factor, 1.0);  // mean ≤ 1e-8: skipped
  expect_weights(b, w, naive_verl(b, true, 2.0, true));
  for (std::size_t t = 0; t < b.n(); ++t) {
    if (b.mask[t] != 0) {
      EXPECT_NEAR(w[t], std::exp(-20.0), 1e-20);
    }
  }
}

TEST(RolloutIsVerl, FractionalMaskMultipliesBeforeTruncation) {
  rbatch b = make({5, 3}, 0.3, 6);
  for (std::size_t t = 0; t < b.n(); ++t) b.mask[t] = (t % 3 == 0) ? 0.0f : 0.5f + 0.25f * (t % 2);
  for (bool seq : {false, true})
    for (bool norm : {false, true}) {
      const auto w = weights_of(
          b, pt::rollout_presets::verl(seq ? pt::is_level::sequence_sum : pt::is_level::token,
                                       1.05, norm));
      expect_weights(b, w, naive_verl(b, seq, 1.05, norm));
    }
}

TEST(RolloutIsVerl, HugeLogRatiosClampedAt20) {
  rbatch b = make({4, 3}, 0.0, 7);
  b.mask.assign(b.n(), 1.0f);
  for (std::size_t t = 0; t < b.n(); ++t) b.roll[t] = b.lp[t] + (t % 2 ? 50.0 : -50.0);
  for (bool seq : {false, true}) {
    const auto w = weights_of(
        b, pt::rollout_presets::verl(seq ? pt::is_level::sequence_sum : pt::is_level::token,
                                     1e30, false));
    for (std::size_t t = 0; t < b.n(); ++t) EXPECT_TRUE(std::isfinite(w[t]));
    if (!seq) {
      EXPECT_NEAR(w[0], std::exp(20.0), 1e-3);
      EXPECT_NEAR(w[1], std::exp(-20.0), 1e-20);
    }
    expect_weights(b, w, naive_verl(b, seq, 1e30, false));
  }
}

// -------------------------------------------------------------------------------------- TRL

TEST(RolloutIsTrl, FourModesAndNoneBounds) {
  using M = pt::trl_is_mode;
  for (unsigned seed : {11u, 12u}) {
    const rbatch b = make(kLengths, 0.3, seed, 2);
    for (M mode : {M::token_truncate, M::token_mask, M::sequence_truncate, M::sequence_mask})
      for (auto [lo, hi] : {std::pair{-inf, 3.0}, std::pair{0.8, 1.2}, std::pair{-inf, inf},
                            std::pair{0.9, inf}}) {
        const bool seq = mode == M::sequence_truncate || mode == M::sequence_mask;
        const bool trunc = mode == M::token_truncate || mode == M::sequence_truncate;
        const auto w = weights_of(b, pt::rollout_presets::trl(mode, hi, lo));
        expect_weights(b, w, naive_trl(b, seq, trunc, lo, hi));
      }
  }
}

TEST(RolloutIsTrl, SequenceUsesTheSumNotTheMean) {
  rbatch b;
  b.offsets = {0, 4};
  b.lp = {-1, -1, -1, -1};
  b.roll = {-1.25, -1.25, -1.25, -1.25};  // d = 0.25 each
  b.mask = {1, 1, 1, 1};
  b.adv = {1, 1, 1, 1};
  const auto w = weights_of(b, pt::rollout_presets::trl(pt::trl_is_mode::sequence_truncate, 10.0));
  for (double x : w) EXPECT_NEAR(x, std::exp(1.0), 1e-12);
  // default sequence_mask with clip_max 3: e^1 ≤ 3 kept; with d = 0.3 each e^{1.2} > 3 → 0.
  for (auto& r : b.roll) r = -1.3;
  const auto w2 = weights_of(b, pt::rollout_presets::trl());
  for (double x : w2) EXPECT_EQ(x, 0.0);
}

TEST(RolloutIsTrl, HugeLogRatiosTruncateFiniteMaskZero) {
  rbatch b = make({5, 6}, 0.0, 13);
  b.mask.assign(b.n(), 1.0f);
  for (std::size_t t = 0; t < b.n(); ++t) b.roll[t] = b.lp[t] + (t < 5 ? -50.0 : 50.0);
  const auto wt = weights_of(b, pt::rollout_presets::trl(pt::trl_is_mode::sequence_truncate, 3.0));
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_EQ(wt[t], t < 5 ? 3.0 : std::exp(-300.0));
  const auto wm = weights_of(b, pt::rollout_presets::trl(pt::trl_is_mode::token_mask, 3.0, 0.1));
  for (double x : wm) EXPECT_EQ(x, 0.0);
}

// ---------------------------------------------------------------------------------- OpenRLHF

TEST(RolloutIsOpenRlhf, TisIcepopSeqMaskTis) {
  using Ty = pt::openrlhf_is_type;
  for (unsigned seed : {21u, 22u}) {
    const rbatch b = make(kLengths, 1.0, seed, 0);
    for (auto [lo, hi] : {std::pair{0.5, 5.0}, std::pair{0.9, 1.1}}) {
      expect_weights(b, weights_of(b, pt::rollout_presets::openrlhf(Ty::tis, lo, hi)),
                     naive_openrlhf(b, 0, lo, hi));
      expect_weights(b, weights_of(b, pt::rollout_presets::openrlhf(Ty::icepop, lo, hi)),
                     naive_openrlhf(b, 1, lo, hi));
      expect_weights(b, weights_of(b, pt::rollout_presets::openrlhf(Ty::seq_mask_tis, lo, hi)),
                     naive_openrlhf(b, 2, lo, hi));
    }
  }
}

TEST(RolloutIsOpenRlhf, MismatchKlStatistic) {
  const rbatch b = make(kLengths, 0.7, 23);
  pt::rollout_is_result res;
  weights_of(b, pt::rollout_presets::openrlhf(), &res);
  double s = 0, m = 0, kept = 0;
  for (std::size_t t = 0; t < b.n(); ++t)
    if (b.mask[t] != 0) s += b.roll[t] - b.lp[t], m += 1;
  EXPECT_NEAR(res.mismatch_kl, s / m, 1e-12);
  weights_of(b, pt::rollout_presets::openrlhf(pt::openrlhf_is_type::icepop, 0.9, 1.1), &res);
  for (std::size_t t = 0; t < b.n(); ++t)
    if (b.mask[t] != 0) {
      const double r = std::exp(b.lp[t] - b.roll[t]);
      kept += (r >= 0.9 && r <= 1.1) ? 1 : 0;
    }
  EXPECT_NEAR(res.filtered_fraction, 1.0 - kept / m, 1e-12);
  EXPECT_GT(res.filtered_fraction, 0.0);
}

// ------------------------------------------------------------------------------ open-instruct

TEST(RolloutIsOpenInstruct, ConfigurationsMatchNaive) {
  std::vector<pt::open_instruct_rho> cfgs{
      {},                                                    // defaults: clamp upper 2
      {.clamp_lower = 0.5, .clamp_upper = 1.5},
      {.clamp_upper = 0, .mask_lower = 0.7, .mask_upper = 1.4},
      {.mask_lower = 0.8, .mask_upper = 1.25, .sequence_level = true},
      {.clamp_upper = 0, .sequence_level = true},
      {.mask_lower = 0.05, .mask_upper = 1.1, .tv_divergence = true},
      {.clamp_lower = 0.9, .mask_upper = 1.3, .sequence_level = true, .tv_divergence = true},
  };
  for (unsigned seed : {31u, 32u, 33u}) {
    rbatch b = make(kLengths, seed == 33 ? 15.0 : 0.6, seed, 5);
    // per-token advantages of both signs within a row
    for (std::size_t t = 0; t < b.n(); ++t) b.adv[t] = (t * 7 % 5) - 2.0;
    for (const auto& c : cfgs)
      expect_weights(b, weights_of(b, pt::rollout_presets::open_instruct(c)),
                     naive_open_instruct(b, c));
  }
}

TEST(RolloutIsOpenInstruct, TvDivergenceNeedsAdvantages) {
  const rbatch b = make({3, 4}, 0.5, 34);
  std::vector<double> w(b.n(), 5.0);
  EXPECT_THROW(pt::rollout_is_weights(in_of(b, false),
                                      pt::rollout_presets::open_instruct({.mask_upper = 1.1,
                                                                          .tv_divergence = true}),
                                      std::span<double>(w)),
               pt::error);
  for (double x : w) EXPECT_EQ(x, 5.0);
}

// ------------------------------------------------------------------------------- float inputs

TEST(RolloutIs, FloatInputsMatchDouble) {
  const rbatch b = make(kLengths, 0.5, 41, 3);
  std::vector<float> lp(b.lp.begin(), b.lp.end()), roll(b.roll.begin(), b.roll.end()), w(b.n());
  pt::rollout_inputs<float> in;
  in.logprobs = lp;
  in.rollout_logprobs = roll;
  in.mask = b.mask;
  in.seq_offsets = b.offsets;
  rbatch bf = b;
  for (std::size_t t = 0; t < b.n(); ++t) bf.lp[t] = lp[t], bf.roll[t] = roll[t];
  pt::rollout_is_weights(in, pt::rollout_presets::verl(pt::is_level::sequence_sum, 2.0, true),
                         std::span<float>(w));
  const auto want = naive_verl(bf, true, 2.0, true);
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_NEAR(w[t], want[t], 1e-6 * (1 + want[t]));
}

// ------------------------------------------------------------------------- edge / bad input

TEST(RolloutIs, AllMaskedAndEmptyBatches) {
  rbatch b = make({3, 0, 4}, 0.5, 51);
  b.mask.assign(b.n(), 0.0f);
  for (const auto& o : {pt::rollout_presets::verl(pt::is_level::sequence_sum, 2.0, true),
                        pt::rollout_presets::verl(pt::is_level::token, 2.0, true),
                        pt::rollout_presets::trl(), pt::rollout_presets::openrlhf(
                                                        pt::openrlhf_is_type::seq_mask_tis),
                        pt::rollout_presets::open_instruct({.sequence_level = true})}) {
    pt::rollout_is_result res;
    const auto w = weights_of(b, o, &res);
    for (double x : w) EXPECT_EQ(x, 0.0);
    EXPECT_EQ(res.mean_weight, 0.0);
    EXPECT_EQ(res.batch_norm_factor, 1.0);
  }
  rbatch e;
  e.offsets = {0, 0, 0};
  std::vector<double> w;
  const auto r = pt::rollout_is_weights(in_of(e), pt::rollout_presets::verl(), std::span<double>(w));
  EXPECT_EQ(r.mean_weight, 0.0);
}

TEST(RolloutIs, BoundsAreInclusive) {
  rbatch b;
  b.offsets = {0, 3};
  b.lp = {-1, -1, -1};
  b.roll = {-1, -1, -1};  // ρ = 1 exactly
  b.mask = {1, 1, 1};
  b.adv = {1, 1, 1};
  for (const auto& o : {pt::rollout_presets::trl(pt::trl_is_mode::token_mask, 1.0, 1.0),
                        pt::rollout_presets::trl(pt::trl_is_mode::sequence_mask, 1.0, 1.0),
                        pt::rollout_presets::openrlhf(pt::openrlhf_is_type::icepop, 1.0, 1.0),
                        pt::rollout_presets::openrlhf(pt::openrlhf_is_type::seq_mask_tis, 1.0, 1.0)})
    for (double x : weights_of(b, o)) EXPECT_EQ(x, 1.0);
  for (double x : weights_of(b, pt::rollout_presets::trl(pt::trl_is_mode::token_mask, 0.999, 0.5)))
    EXPECT_EQ(x, 0.0);
}

TEST(RolloutIs, BadInputThrowsAndWritesNothing) {
  const rbatch b = make({3, 4}, 0.5, 52);
  std::vector<double> w(b.n(), 9.0), short_w(b.n() - 1, 9.0);
  auto in = in_of(b);
  const auto check = [&](const pt::rollout_inputs<double>& x, const pt::rollout_is_options& o,
                         std::span<double> out) {
    EXPECT_THROW(pt::rollout_is_weights(x, o, out), pt::error);
    for (double v : w) EXPECT_EQ(v, 9.0);
  };
  check(in, pt::rollout_presets::verl(), std::span<double>(short_w));
  auto bad = in;
  bad.rollout_logprobs = std::span<const double>(b.roll).first(b.n() - 1);
  check(bad, pt::rollout_presets::verl(), std::span<double>(w));
  bad = in;
  bad.seq_offsets = {};
  check(bad, pt::rollout_presets::verl(pt::is_level::sequence_sum), std::span<double>(w));
  const std::vector<index_t> off_bad{0, 5, 4, 7};
  bad = in;
  bad.seq_offsets = off_bad;
  check(bad, pt::rollout_presets::verl(pt::is_level::token), std::span<double>(w));
  std::vector<float> neg_mask(b.mask);
  neg_mask[1] = -1.0f;
  bad = in;
  bad.mask = neg_mask;
  check(bad, pt::rollout_presets::verl(), std::span<double>(w));
  auto o = pt::rollout_presets::verl();
  o.truncate_max = 0.0;
  check(in, o, std::span<double>(w));
  o = pt::rollout_presets::trl(pt::trl_is_mode::token_mask, 1.0, 2.0);  // lo > hi
  check(in, o, std::span<double>(w));
  o = pt::rollout_presets::openrlhf();
  o.truncate_min = std::nan("");
  check(in, o, std::span<double>(w));
  o = pt::rollout_presets::verl();
  o.length_epsilon = -1;
  check(in, o, std::span<double>(w));
  // token-level modes do not need offsets
  bad = in;
  bad.seq_offsets = {};
  EXPECT_NO_THROW(pt::rollout_is_weights(bad, pt::rollout_presets::openrlhf(), std::span<double>(w)));
}

// ------------------------------------------------------------------------ rejection (verl)

TEST(RolloutRejection, EveryCriterionMatchesNaive) {
  using C = pt::rs_criterion;
  const std::vector<pt::rs_rule> singles{
      {C::token_k1, 0.7, 1.3},  pt::rs_threshold(C::token_k1, 1.2),
      {C::token_k2, 0, 0.05},   {C::token_k3, 0, 0.04},
      {C::seq_sum_k1, 0.5, 2.0}, {C::seq_sum_k2, 0, 0.2},  {C::seq_sum_k3, 0, 0.15},
      {C::seq_mean_k1, 0.9, 1.1}, {C::seq_mean_k2, 0, 0.02}, {C::seq_mean_k3, 0, 0.02},
      {C::seq_max_k2, 0, 0.08}, {C::seq_max_k3, 0, 0.06}};
  for (unsigned seed : {61u, 62u}) {
    const rbatch b = make(kLengths, 0.5, seed, 6);
    int rejecting = 0;  // criteria that reject some valid token and keep some other
    for (const auto& r : singles) {
      std::vector<float> out(b.n(), 3.0f);
      const auto res = pt::rollout_rejection_mask(in_of(b), pt::rollout_presets::verl_rejection({r}),
                                                  std::span<float>(out));
      const auto want = naive_verl_rs(b, {r});
      double rej = 0, m = 0;
      for (std::size_t t = 0; t < b.n(); ++t) {
        EXPECT_EQ(out[t], want[t]) << "criterion " << static_cast<int>(r.criterion) << " token " << t;
        m += b.mask[t];
        rej += b.mask[t] - want[t];
      }
      EXPECT_NEAR(res.masked_fraction, rej / m, 1e-12);
      rejecting += (rej > 0 && rej < m) ? 1 : 0;
    }
    EXPECT_GE(rejecting, 9);
    // several criteria: AND
    const std::vector<pt::rs_rule> combo{{C::token_k1, 0.6, 1.6}, {C::seq_mean_k3, 0, 0.03},
                                         {C::seq_max_k2, 0, 0.1}};
    std::vector<float> out(b.n());
    pt::rollout_rejection_mask(in_of(b), pt::rollout_presets::verl_rejection(combo),
                               std::span<float>(out));
    const auto want = naive_verl_rs(b, combo);
    for (std::size_t t = 0; t < b.n(); ++t) EXPECT_EQ(out[t], want[t]);
    // the AND of the single-criterion masks
    std::vector<float> a(b.n()), c(b.mask);
    for (const auto& r : combo) {
      pt::rollout_rejection_mask(in_of(b), pt::rollout_presets::verl_rejection({r}), std::span<float>(a));
      for (std::size_t t = 0; t < b.n(); ++t) c[t] = std::min(c[t], a[t]);
    }
    for (std::size_t t = 0; t < b.n(); ++t) EXPECT_EQ(out[t], c[t]);
  }
}

TEST(RolloutRejection, SingleThresholdK1IsReciprocalAndBoundsInclusive) {
  const auto r = pt::rs_threshold(pt::rs_criterion::token_k1, 2.0);
  EXPECT_EQ(r.lower, 0.5);
  EXPECT_EQ(r.upper, 2.0);
  rbatch b;
  b.offsets = {0, 3};
  b.lp = {-1, -1, -1};
  b.roll = {-2, -1, 0};  // lr = 1, 0, −1: k1 = −1, 0, 1; k2 = ½, 0, ½
  b.mask = {1, 1, 1};
  std::vector<float> out(3);
  pt::rollout_rejection_mask(in_of(b),
                             pt::rollout_presets::verl_rejection({{pt::rs_criterion::token_k1, 1.0, 1.0}}),
                             std::span<float>(out));
  EXPECT_EQ(out, (std::vector<float>{0, 1, 0}));  // log 1 = 0 ≤ k1 ≤ 0 inclusive
  pt::rollout_rejection_mask(in_of(b),
                             pt::rollout_presets::verl_rejection({{pt::rs_criterion::token_k2, 0, 0.5}}),
                             std::span<float>(out));
  EXPECT_EQ(out, (std::vector<float>{1, 1, 1}));  // k2 = ½ ≤ ½
  pt::rollout_rejection_mask(
      in_of(b), pt::rollout_presets::verl_rejection({{pt::rs_criterion::token_k2, 0, 0.4999}}),
      std::span<float>(out));
  EXPECT_EQ(out, (std::vector<float>{0, 1, 0}));
  const auto res = pt::rollout_rejection_mask(
      in_of(b), pt::rollout_presets::verl_rejection({{pt::rs_criterion::seq_max_k2, 0, 0.4999}}),
      std::span<float>(out));
  EXPECT_EQ(out, (std::vector<float>{0, 0, 0}));
  EXPECT_EQ(res.seq_masked_fraction, 1.0);
}

TEST(RolloutRejection, HugeLogRatiosEmptyRowsAndInPlace) {
  rbatch b = make({4, 0, 5, 3}, 0.2, 63, 3);
  b.roll[2] = b.lp[2] + 50;  // lr = −50 → clamped −20
  b.mask[2] = 1.0f;
  std::vector<float> mask = b.mask;
  pt::rollout_inputs<double> in = in_of(b);
  in.mask = mask;
  const std::vector<pt::rs_rule> rules{{pt::rs_criterion::seq_sum_k3, 0, 1e9},
                                       {pt::rs_criterion::seq_max_k2, 0, 1.0}};
  const auto want = naive_verl_rs(b, rules);
  pt::rollout_rejection_mask(in, pt::rollout_presets::verl_rejection(rules), std::span<float>(mask));
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_EQ(mask[t], want[t]);
  for (auto t = b.offsets[0]; t < b.offsets[1]; ++t) EXPECT_EQ(mask[t], 0.0f);  // k2 = 200 > 1
}

TEST(RolloutRejection, FeedsPolicyGradientMaskAsVerl) {
  // verl: modified_response_mask = m·keep; the loss aggregates over it (rejected tokens leave the
  // denominator), while IS weights only multiply the per-token loss.
  rbatch b = make({5, 7, 4, 6}, 0.4, 64);
  std::vector<float> keep(b.n());
  const std::vector<pt::rs_rule> rules{{pt::rs_criterion::token_k1, 0.75, 1.33}};
  pt::rollout_rejection_mask(in_of(b), pt::rollout_presets::verl_rejection(rules), std::span<float>(keep));
  std::vector<double> w(b.n());
  pt::rollout_is_weights(in_of(b), pt::rollout_presets::verl(pt::is_level::token, 2.0), std::span<double>(w));
  pg_test::batch pb = pg_test::make_batch({5, 7, 4, 6}, 0.3, 65, false);
  pb.mask = keep;
  pb.weights = w;
  const auto res = pt::loss::policy_gradient<pt::surrogate::reinforce, pt::kl::none,
                                             pt::agg::token_mean>::compute(pg_test::inputs_of(pb, false, false, true));
  double s = 0, m = 0;
  for (std::size_t t = 0; t < b.n(); ++t)
    if (keep[t] != 0) s += keep[t] * (-pb.adv[t] * pb.logp[t]) * w[t], m += keep[t];
  EXPECT_NEAR(res.loss, s / m, 1e-12);
  EXPECT_LT(m, static_cast<double>(b.n()));
}

TEST(RolloutRejection, BadInputThrowsAndWritesNothing) {
  const rbatch b = make({3, 4}, 0.5, 66);
  std::vector<float> out(b.n(), 4.0f);
  const auto check = [&](const pt::rollout_rejection_options& o) {
    EXPECT_THROW(pt::rollout_rejection_mask(in_of(b), o, std::span<float>(out)), pt::error);
    for (float v : out) EXPECT_EQ(v, 4.0f);
  };
  check(pt::rollout_rejection_options{});
  check(pt::rollout_presets::verl_rejection({{pt::rs_criterion::token_k1, 0.0, 2.0}}));
  check(pt::rollout_presets::verl_rejection({{pt::rs_criterion::token_k2, 0.0, -1.0}}));
  check(pt::rollout_presets::verl_rejection({{pt::rs_criterion::seq_mean_k3, 0.0, std::nan("")}}));
  auto o = pt::rollout_presets::verl_rejection({{pt::rs_criterion::token_k2, 0.0, 1.0}});
  o.log_ratio_bound = -1;
  check(o);
  pt::rollout_inputs<double> in = in_of(b);
  in.seq_offsets = {};
  EXPECT_THROW(pt::rollout_rejection_mask(
                   in, pt::rollout_presets::verl_rejection({{pt::rs_criterion::seq_sum_k2, 0, 1.0}}),
                   std::span<float>(out)),
               pt::error);
  for (float v : out) EXPECT_EQ(v, 4.0f);
  std::vector<float> short_out(b.n() - 1);
  EXPECT_THROW(pt::rollout_rejection_mask(
                   in_of(b), pt::rollout_presets::verl_rejection({{pt::rs_criterion::token_k2, 0, 1.0}}),
                   std::span<float>(short_out)),
               pt::error);
}

}  // namespace
