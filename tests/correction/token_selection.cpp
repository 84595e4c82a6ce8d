// correction/token_selection.hpp and loss/kl_cov.hpp (the kl_cov loss; was
// loss/policy_gradient/token_selection.hpp).
// TRL off-policy sequence mask and high-entropy mask,
// verl clip-cov weights and kl-cov selection / loss::kl_cov, against naive float64 re-writings of
// the peers' formulas; the end-to-end clip-cov and kl-cov losses against verl's formulas (value
// and finite-difference gradient).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "loss/policy_gradient_naive.hpp"
#include "posttrain/loss/policy_gradient.hpp"
#include "posttrain/correction/token_selection.hpp"
#include "posttrain/loss/kl_cov.hpp"

namespace {

namespace pt = posttrain;
using namespace pg_test;
using pt::index_t;
using clip_cov_token_mean = pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::none, pt::agg::token_mean>;
using clip_cov_seq_mean =
    pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::none, pt::agg::seq_mean_token_mean>;
using kl_cov_token_mean = pt::loss::kl_cov<pt::kl::none, pt::agg::token_mean>;
using kl_cov_seq_mean = pt::loss::kl_cov<pt::kl::none, pt::agg::seq_mean_token_mean>;

// A batch with covariances (A − Ā)(ℓ − ℓ̄) spread over roughly [−8, 8]: advantages ×scale_a and
// log-probs stretched, keeping ℓ − ℓold.
batch make_cov_batch(const std::vector<int>& lengths, double spread, unsigned seed,
                     double scale_a = 3.0, bool ragged_mask = true) {
  batch b = make_batch(lengths, spread, seed, ragged_mask);
  std::mt19937 g(seed + 1000);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (std::size_t t = 0; t < b.n(); ++t) {
    const double lr = b.logp[t] - b.old_logp[t];
    b.logp[t] = -3.0 + 2.5 * u(g);
    b.old_logp[t] = b.logp[t] - lr;
    b.adv[t] *= scale_a;
  }
  return b;
}

std::vector<std::uint64_t> keys_of(std::size_t n, unsigned seed) {
  std::mt19937_64 g(seed);
  std::vector<std::uint64_t> k(n);
  for (auto& x : k) x = g();
  return k;
}

// ------------------------------------------------------------------------------------- OPSM

std::vector<double> naive_opsm(const batch& b, double delta) {
  std::vector<double> w(b.n(), 0.0);
  for (std::size_t i = 0; i + 1 < b.offsets.size(); ++i) {
    double s = 0, m = 0;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t)
      s += (b.old_logp[t] - b.logp[t]) * b.mask[t], m += b.mask[t];
    const double avg = s / std::max(m, 1.0);
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t)
      w[t] = b.mask[t] != 0 && (b.adv[t] >= 0 || avg <= delta) ? 1.0 : 0.0;
  }
  return w;
}

TEST(OffPolicySequenceMask, MatchesTrl) {
  for (unsigned seed : {1u, 2u, 3u}) {
    batch b = make_batch({5, 0, 8, 1, 6, 9, 3}, 0.6, seed);
    for (double delta : {-0.2, 0.0, 0.05, 0.2, std::numeric_limits<double>::infinity()}) {
      std::vector<double> w(b.n(), 7.0);
      const auto r = pt::off_policy_sequence_mask(inputs_of(b), {delta}, std::span<double>(w));
      const auto want = naive_opsm(b, delta);
      int kept = 0, dropped = 0;
      for (std::size_t t = 0; t < b.n(); ++t) {
        EXPECT_EQ(w[t], want[t]) << "delta " << delta << " token " << t;
        if (b.mask[t] != 0) (want[t] != 0 ? kept : dropped) += 1;
      }
      EXPECT_NEAR(r.kept_fraction, static_cast<double>(kept) / (kept + dropped), 1e-12);
      if (delta == -0.2 && seed == 1) {
        EXPECT_GT(dropped, 0);
      }
    }
  }
}

TEST(OffPolicySequenceMask, EmptyAllMaskedAndBadInput) {
  batch b = make_batch({3, 0, 4}, 0.5, 4);
  for (auto t = b.offsets[2]; t < b.offsets[3]; ++t) b.mask[t] = 0.0f;
  for (auto& a : b.adv) a = -1.0;
  std::vector<double> w(b.n(), 7.0);
  pt::off_policy_sequence_mask(inputs_of(b), {-1e9}, std::span<double>(w));
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_EQ(w[t], 0.0);  // A < 0, avg_kl > δ; masked → 0
  std::fill(w.begin(), w.end(), 7.0);
  auto in = inputs_of(b);
  in.seq_offsets = {};
  EXPECT_THROW(pt::off_policy_sequence_mask(in, {0.1}, std::span<double>(w)), pt::error);
  EXPECT_THROW(pt::off_policy_sequence_mask(inputs_of(b), {std::nan("")}, std::span<double>(w)),
               pt::error);
  in = inputs_of(b);
  in.old_logprobs = {};
  EXPECT_THROW(pt::off_policy_sequence_mask(in, {0.1}, std::span<double>(w)), pt::error);
  for (double x : w) EXPECT_EQ(x, 7.0);
}

// ------------------------------------------------------------------------ high-entropy mask

double naive_quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * (v.size() - 1);
  const std::size_t lo = static_cast<std::size_t>(pos);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - lo) * (v[hi] - v[lo]);
}

TEST(LinearQuantile, TorchValues) {
  const std::vector<double> v{4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(pt::linear_quantile(std::span<const double>(v), 0.5), 2.5);
  EXPECT_DOUBLE_EQ(pt::linear_quantile(std::span<const double>(v), 0.0), 1.0);
  EXPECT_DOUBLE_EQ(pt::linear_quantile(std::span<const double>(v), 1.0), 4.0);
  EXPECT_DOUBLE_EQ(pt::linear_quantile(std::span<const double>(v), 0.8), 3.4);  // pos 2.4
  const std::vector<double> one{7.5};
  EXPECT_EQ(pt::linear_quantile(std::span<const double>(one), 0.3), 7.5);
  std::mt19937 g(5);
  std::uniform_real_distribution<double> u(0.0, 5.0);
  for (int rep = 0; rep < 50; ++rep) {
    std::vector<double> x(1 + rep % 17);
    for (auto& e : x) e = u(g);
    const double q = (rep % 11) / 10.0;
    EXPECT_NEAR(pt::linear_quantile(std::span<const double>(x), q), naive_quantile(x, q), 1e-12);
  }
  const std::vector<double> empty;
  EXPECT_THROW(pt::linear_quantile(std::span<const double>(empty), 0.5), pt::error);
  EXPECT_THROW(pt::linear_quantile(std::span<const double>(v), 1.5), pt::error);
  const std::vector<double> nan{1.0, std::nan("")};
  EXPECT_THROW(pt::linear_quantile(std::span<const double>(nan), 0.5), pt::error);
}

TEST(HighEntropyMask, MatchesTrlAndGivenThreshold) {
  for (unsigned seed : {6u, 7u}) {
    batch b = make_batch({6, 0, 9, 4, 11}, 0.3, seed);
    for (double rho : {1.0, 0.8, 0.5, 0.2, 0.0}) {
      std::vector<double> valid;
      for (std::size_t t = 0; t < b.n(); ++t)
        if (b.mask[t] != 0) valid.push_back(b.entropy[t]);
      const double theta = naive_quantile(valid, 1.0 - rho);
      std::vector<double> w(b.n(), 7.0);
      const auto r = pt::high_entropy_mask(inputs_of(b, false, true), {rho}, std::span<double>(w));
      EXPECT_NEAR(r.threshold, theta, 1e-12);
      double kept = 0;
      for (std::size_t t = 0; t < b.n(); ++t) {
        const double want = b.mask[t] != 0 && b.entropy[t] >= theta ? 1.0 : 0.0;
        EXPECT_EQ(w[t], want) << "rho " << rho << " token " << t;
        kept += want;
      }
      if (rho == 1.0) {
        EXPECT_EQ(kept, valid.size());
      }
      if (rho == 0.5) {
        EXPECT_NEAR(kept, std::ceil(valid.size() / 2.0), 1.0);
      }
      // the same threshold given by the caller (e.g. gathered across ranks) gives the same mask
      std::vector<double> w2(b.n(), 7.0);
      pt::high_entropy_mask(inputs_of(b, false, true), {.top_quantile = 0.123, .threshold = theta},
                            std::span<double>(w2));
      EXPECT_EQ(w, w2);
    }
  }
}

TEST(HighEntropyMask, NoValidTokenAndBadInput) {
  batch b = make_batch({3, 4}, 0.3, 8);
  b.mask.assign(b.n(), 0.0f);
  std::vector<double> w(b.n(), 7.0);
  const auto r = pt::high_entropy_mask(inputs_of(b, false, true), {0.2}, std::span<double>(w));
  for (double x : w) EXPECT_EQ(x, 0.0);
  EXPECT_EQ(r.kept_fraction, 0.0);
  b = make_batch({3, 4}, 0.3, 8, false);
  std::fill(w.begin(), w.end(), 7.0);
  EXPECT_THROW(pt::high_entropy_mask(inputs_of(b, false, true), {1.5}, std::span<double>(w)),
               pt::error);
  EXPECT_THROW(pt::high_entropy_mask(inputs_of(b, false, true), {.threshold = std::nan("")},
                                     std::span<double>(w)),
               pt::error);
  b.entropy[2] = std::nan("");
  EXPECT_THROW(pt::high_entropy_mask(inputs_of(b, false, true), {0.5}, std::span<double>(w)),
               pt::error);
  b.mask[2] = 0.0f;  // NaN at a masked token is never read
  b.entropy[2] = std::nan("");
  std::vector<double> short_w(b.n() - 1);
  EXPECT_THROW(pt::high_entropy_mask(inputs_of(b, false, true), {0.5}, std::span<double>(short_w)),
               pt::error);
  for (double x : w) EXPECT_EQ(x, 7.0);
  EXPECT_NO_THROW(pt::high_entropy_mask(inputs_of(b, false, true), {0.5}, std::span<double>(w)));
  EXPECT_EQ(w[2], 0.0);
}

// ---------------------------------------------------------------------------------- clip-cov

// verl compute_policy_loss_clip_cov's selection, with torch.randperm replaced by the order of the
// keys over the candidate list (a uniformly random permutation for iid keys).
std::vector<double> naive_clip_cov_corr(const batch& b, const std::vector<std::uint64_t>& keys,
                                        double ratio, double lb, double ub, double el, double eh) {
  const std::size_t n = b.n();
  double sm = 0, sa = 0, sl = 0;
  for (std::size_t t = 0; t < n; ++t) sm += b.mask[t], sa += b.adv[t] * b.mask[t], sl += b.logp[t] * b.mask[t];
  const double ma = sa / (sm + 1e-8), ml = sl / (sm + 1e-8);
  std::vector<std::size_t> cand;
  for (std::size_t t = 0; t < n; ++t) {
    const double r = std::exp(b.logp[t] - b.old_logp[t]);
    const double l1 = -b.adv[t] * r, l2 = -b.adv[t] * std::min(std::max(r, 1 - el), 1 + eh);
    double cov = (b.adv[t] - ma) * (b.logp[t] - ml);
    if (b.mask[t] == 0) cov = -INFINITY;
    if (l2 > l1 && b.mask[t] > 0) cov = -INFINITY;
    if (cov < ub && cov > lb && b.mask[t] > 0) cand.push_back(t);
  }
  const std::size_t k = std::max<std::size_t>(static_cast<std::size_t>(ratio * sm), 1);
  std::vector<std::size_t> perm(cand.size());
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(),
                   [&](std::size_t a, std::size_t c) { return keys[cand[a]] < keys[cand[c]]; });
  std::vector<double> corr(n, 1.0);
  for (std::size_t j = 0; j < std::min(k, cand.size()); ++j) corr[cand[perm[j]]] = 0.0;
  return corr;
}

// verl: pg_losses = max(L1, L2)·corr (·rollout w); agg_loss(token-mean | seq-mean-token-mean).
double naive_clip_cov_loss(const batch& b, const std::vector<double>& corr, double el, double eh,
                           bool seq_mean, bool with_w) {
  std::vector<double> L(b.n());
  for (std::size_t t = 0; t < b.n(); ++t) {
    const double r = std::exp(b.logp[t] - b.old_logp[t]);
    const double l1 = -b.adv[t] * r, l2 = -b.adv[t] * std::min(std::max(r, 1 - el), 1 + eh);
    L[t] = std::max(l1, l2) * corr[t] * (with_w ? b.weights[t] : 1.0);
  }
  return seq_mean ? naive_seq_mean_token_mean(b, L, 1e-8) : naive_token_mean(b, L);
}

void avoid_clip_edges(batch& b, double el, double eh) {
  for (std::size_t t = 0; t < b.n(); ++t)
    for (double edge : {std::log(1 - el), std::log(1 + eh)})
      if (std::abs(b.logp[t] - b.old_logp[t] - edge) < 2e-3) b.old_logp[t] -= 5e-3;
}

TEST(ClipCov, SelectionMatchesVerlWithTheSameKeys) {
  for (unsigned seed : {11u, 12u, 13u}) {
    batch b = make_cov_batch({9, 0, 14, 1, 12, 20, 7}, 0.5, seed);
    const auto keys = keys_of(b.n(), seed);
    for (double ratio : {2e-4, 0.05, 0.2, 1.0})
      for (auto [lb, ub] : {std::pair{1.0, 5.0}, std::pair{-0.5, 0.5}, std::pair{0.2, 0.2}}) {
        std::vector<double> w(b.n(), 7.0);
        const pt::clip_cov_options o{ratio, lb, ub};
        const auto r = pt::clip_cov_weights(pt::exec::host{}, inputs_of(b), o, {},
                                            std::span<const std::uint64_t>(keys), std::span<double>(w));
        const auto corr = naive_clip_cov_corr(b, keys, ratio, lb, ub, 0.2, 0.2);
        int sel = 0;
        for (std::size_t t = 0; t < b.n(); ++t) {
          EXPECT_EQ(w[t], b.mask[t] != 0 ? corr[t] : 0.0) << "token " << t;
          sel += b.mask[t] != 0 && corr[t] == 0 ? 1 : 0;
        }
        EXPECT_EQ(r.selected, sel);
        if (lb == 1.0 && ratio == 0.2) {
          EXPECT_GT(sel, 1);
        }
        if (lb == 0.2) {
          EXPECT_EQ(sel, 0);  // lb < c < ub is empty
        }
        if (ratio == 2e-4 && r.candidates > 0) {
          EXPECT_EQ(sel, 1);  // k = max(⌊ratio·Σm⌋, 1)
        }
      }
  }
}

TEST(ClipCov, CandidatesUseMaskWeightedMeans) {
  // verl masked_mean: Σ m·x / (Σ m + 1e-8); with ratio 1 every candidate is selected, so the
  // selection is the candidate window itself and shows the centring.
  batch b = make_cov_batch({30, 25}, 0.1, 31);
  for (std::size_t t = 0; t < b.n(); ++t) {
    b.adv[t] += 10.0 + 0.05 * static_cast<double>(t % 7);
    if (b.mask[t] != 0) b.mask[t] = 0.25f + 0.25f * static_cast<float>(t % 4);
  }
  const auto keys = keys_of(b.n(), 31);
  for (auto [lb, ub] : {std::pair{-0.05, 0.05}, std::pair{0.0, 0.3}, std::pair{-0.3, 0.0}}) {
    std::vector<double> w(b.n());
    const auto r = pt::clip_cov_weights(pt::exec::host{}, inputs_of(b), {1.0, lb, ub}, {},
                                        std::span<const std::uint64_t>(keys), std::span<double>(w));
    EXPECT_GT(r.selected, 0);
    const auto corr = naive_clip_cov_corr(b, keys, 1.0, lb, ub, 0.2, 0.2);
    for (std::size_t t = 0; t < b.n(); ++t) EXPECT_EQ(w[t], b.mask[t] != 0 ? corr[t] : 0.0) << t;
  }
}

TEST(ClipCov, SeededEngineIsReproducibleAndUniform) {
  batch b = make_cov_batch({10, 12, 9}, 0.05, 14, 3.0, false);
  const pt::clip_cov_options o{0.05, 0.0, 1e9};  // k = ⌊0.05·31⌋ = 1
  std::vector<double> w1(b.n()), w2(b.n());
  std::mt19937_64 g1(99), g2(99);
  pt::clip_cov_weights(pt::exec::host{}, inputs_of(b), o, {}, g1, std::span<double>(w1));
  pt::clip_cov_weights(pt::exec::host{}, inputs_of(b), o, {}, g2, std::span<double>(w2));
  EXPECT_EQ(w1, w2);
  // the engine version equals the keys version with keys = successive g() values
  std::mt19937_64 g3(99);
  std::vector<std::uint64_t> keys(b.n());
  for (auto& k : keys) k = g3();
  std::vector<double> w3(b.n());
  pt::clip_cov_weights(pt::exec::host{}, inputs_of(b), o, {}, std::span<const std::uint64_t>(keys),
                       std::span<double>(w3));
  EXPECT_EQ(w1, w3);
  // uniform: every candidate is chosen about equally often over seeds
  std::vector<int> hits(b.n(), 0);
  int cands = 0;
  const int trials = 4000;
  for (int s = 0; s < trials; ++s) {
    std::mt19937_64 g(static_cast<unsigned>(s));
    const auto r = pt::clip_cov_weights(pt::exec::host{}, inputs_of(b), o, {}, g, std::span<double>(w1));
    cands = static_cast<int>(r.candidates);
    for (std::size_t t = 0; t < b.n(); ++t) hits[t] += w1[t] == 0.0 ? 1 : 0;
  }
  ASSERT_GT(cands, 5);
  int chosen_ever = 0;
  for (std::size_t t = 0; t < b.n(); ++t) {
    if (hits[t] == 0) continue;
    ++chosen_ever;
    EXPECT_NEAR(hits[t], static_cast<double>(trials) / cands, 0.3 * trials / cands);
  }
  EXPECT_EQ(chosen_ever, cands);
}

TEST(ClipCov, LossMatchesVerlValueAndGradient) {
  const auto pg = pt::selection_presets::verl_clip_cov();
  for (unsigned seed : {15u, 16u}) {
    batch b = make_cov_batch({9, 0, 14, 3, 12, 20}, 0.6, seed);
    avoid_clip_edges(b, 0.2, 0.2);
    const auto keys = keys_of(b.n(), seed);
    std::vector<double> corr(b.n());
    const pt::clip_cov_options o{0.1, 1.0, 5.0};
    const auto sel = pt::clip_cov_weights(pt::exec::host{}, inputs_of(b), o, pg,
                                          std::span<const std::uint64_t>(keys), std::span<double>(corr));
    ASSERT_GT(sel.selected, 0);
    for (bool with_w : {false, true}) {
      // the caller multiplies the 0/1 weights with any rollout IS weight
      batch x = b;
      for (std::size_t t = 0; t < b.n(); ++t) x.weights[t] = corr[t] * (with_w ? b.weights[t] : 1.0);
      std::vector<double> naive_corr(corr);
      for (std::size_t t = 0; t < b.n(); ++t)
        if (b.mask[t] == 0) naive_corr[t] = 1.0;
      for (bool seq_mean : {false, true}) {
        std::vector<double> grad(b.n(), 7.0);
        const pt::policy_gradient_outputs<double> out{std::span<double>(grad), {}};
        const double loss =
            seq_mean ? clip_cov_seq_mean::compute(inputs_of(x, false, false, true), pg, out, {},
                                                  pt::agg_conventions::verl())
                           .loss
                     : clip_cov_token_mean::compute(inputs_of(x, false, false, true), pg, out).loss;
        EXPECT_NEAR(loss, naive_clip_cov_loss(b, naive_corr, 0.2, 0.2, seq_mean, with_w), 1e-12);
        // the denominator still counts the dropped tokens: not the loss over the kept ones only
        expect_fd_grad(
            b,
            [&](const batch& y) {
              return naive_clip_cov_loss(y, naive_corr, 0.2, 0.2, seq_mean, with_w);
            },
            grad);
        for (std::size_t t = 0; t < b.n(); ++t) {
          if (corr[t] == 0.0) {
            EXPECT_EQ(grad[t], 0.0);
          }
        }
      }
    }
  }
}

TEST(ClipCov, ClippedTokensAreNeverSelectedAndBadInput) {
  batch b = make_cov_batch({8, 8}, 3.0, 17, 3.0, false);  // many clipped tokens
  const auto keys = keys_of(b.n(), 17);
  std::vector<double> w(b.n());
  pt::clip_cov_weights(pt::exec::host{}, inputs_of(b), {1.0, -1e9, 1e9}, {},
                       std::span<const std::uint64_t>(keys), std::span<double>(w));
  int clipped = 0;
  for (std::size_t t = 0; t < b.n(); ++t) {
    const auto q = pt::surrogate::clip::evaluate(b.logp[t], b.logp[t] - b.old_logp[t], b.adv[t],
                                                 pt::policy_gradient_options{});
    if (q.clipped) {
      ++clipped;
      EXPECT_EQ(w[t], 1.0);
    } else {
      EXPECT_EQ(w[t], 0.0);  // ratio 1 → k = Σm: every unclipped token selected
    }
  }
  EXPECT_GT(clipped, 0);
  std::fill(w.begin(), w.end(), 7.0);
  const auto bad = [&](const pt::clip_cov_options& o, const pt::policy_gradient_options& pg,
                       std::span<const std::uint64_t> k) {
    EXPECT_THROW(pt::clip_cov_weights(pt::exec::host{}, inputs_of(b), o, pg, k, std::span<double>(w)),
                 pt::error);
    for (double x : w) EXPECT_EQ(x, 7.0);
  };
  bad({0.0, 1, 5}, {}, keys);
  bad({std::nan(""), 1, 5}, {}, keys);
  bad({2e-4, 5, 1}, {}, keys);
  bad({2e-4, 1, 5}, pt::policy_gradient_options{.clip_low = -0.1}, keys);
  bad({2e-4, 1, 5}, {}, std::span<const std::uint64_t>(keys).first(3));
  std::mt19937_64 g(1);
  const auto before = g;
  EXPECT_THROW(pt::clip_cov_weights(pt::exec::host{}, inputs_of(b), {0.0, 1, 5}, {}, g,
                                    std::span<double>(w)),
               pt::error);
  EXPECT_EQ(g, before);  // a rejected call draws nothing
}

TEST(ClipCov, AllMaskedSelectsNothing) {
  batch b = make_cov_batch({4, 5}, 0.5, 18);
  b.mask.assign(b.n(), 0.0f);
  std::vector<double> w(b.n(), 7.0);
  const auto keys = keys_of(b.n(), 18);
  const auto r = pt::clip_cov_weights(pt::exec::host{}, inputs_of(b), {}, {},
                                      std::span<const std::uint64_t>(keys), std::span<double>(w));
  EXPECT_EQ(r.selected, 0);
  for (double x : w) EXPECT_EQ(x, 0.0);
}

// ----------------------------------------------------------------------------------- kl-cov

std::vector<double> naive_kl_cov_sel(const batch& b, double ratio) {
  std::vector<std::size_t> valid;
  for (std::size_t t = 0; t < b.n(); ++t)
    if (b.mask[t] > 0) valid.push_back(t);
  std::vector<double> sel(b.n(), 0.0);
  if (valid.empty()) return sel;
  double ma = 0, ml = 0;
  for (auto t : valid) ma += b.adv[t], ml += b.logp[t];
  ma /= valid.size(), ml /= valid.size();
  std::vector<std::pair<double, std::size_t>> cov;
  for (auto t : valid) cov.push_back({(b.adv[t] - ma) * (b.logp[t] - ml), t});
  std::stable_sort(cov.begin(), cov.end(), [](auto& x, auto& y) { return x.first > y.first; });
  const std::size_t k = std::max<std::size_t>(1, static_cast<std::size_t>(valid.size() * ratio));
  for (std::size_t j = 0; j < k; ++j) sel[cov[j].second] = 1.0;
  return sel;
}

// verl: pg_losses = −A·r, top tokens −A·r + coef·|logr|; × rollout w; agg_loss.
double naive_kl_cov_loss(const batch& b, const std::vector<double>& sel, double coef,
                         bool seq_mean, bool with_w) {
  std::vector<double> L(b.n());
  for (std::size_t t = 0; t < b.n(); ++t) {
    const double lr = b.logp[t] - b.old_logp[t];
    L[t] = (-b.adv[t] * std::exp(lr) + (sel[t] != 0 ? coef * std::abs(lr) : 0.0)) *
           (with_w ? b.weights[t] : 1.0);
  }
  return seq_mean ? naive_seq_mean_token_mean(b, L, 1e-8) : naive_token_mean(b, L);
}

TEST(KlCov, SelectionMatchesVerl) {
  for (unsigned seed : {21u, 22u}) {
    batch b = make_cov_batch({9, 0, 14, 1, 12, 20, 7}, 0.5, seed);
    for (double ratio : {2e-4, 0.01, 0.1, 0.5, 1.0}) {
      std::vector<double> s(b.n(), 7.0);
      const auto r = pt::kl_cov_selection(pt::exec::host{}, inputs_of(b), {ratio, 0.1}, std::span<double>(s));
      const auto want = naive_kl_cov_sel(b, ratio);
      EXPECT_EQ(s, want) << "ratio " << ratio;
      EXPECT_EQ(r.selected, static_cast<index_t>(std::accumulate(want.begin(), want.end(), 0.0)));
    }
  }
}

TEST(KlCov, SelectionUsesPlainMeansOverValidTokens) {
  // verl averages the selected valid entries without the mask weights; a large common advantage
  // offset makes the centring visible in the order.
  batch b = make_cov_batch({30, 25}, 0.3, 30);
  for (std::size_t t = 0; t < b.n(); ++t) {
    b.adv[t] += 10.0 + 0.05 * static_cast<double>(t % 7);
    if (b.mask[t] != 0) b.mask[t] = 0.25f + 0.25f * static_cast<float>(t % 4);
  }
  for (double ratio : {0.1, 0.3, 0.5}) {
    std::vector<double> s(b.n());
    pt::kl_cov_selection(pt::exec::host{}, inputs_of(b), {ratio, 0.1}, std::span<double>(s));
    EXPECT_EQ(s, naive_kl_cov_sel(b, ratio)) << "ratio " << ratio;
  }
}

TEST(KlCov, TiesGoToTheLowerIndex) {
  batch b = make_batch({6}, 0.2, 23, false);
  for (std::size_t t = 0; t < b.n(); ++t) b.adv[t] = t < 3 ? 1.0 : -1.0, b.logp[t] = t < 3 ? -1.0 : -2.0;
  std::vector<double> s(b.n());
  pt::kl_cov_selection(pt::exec::host{}, inputs_of(b), {0.34, 0.1}, std::span<double>(s));  // k = 2
  EXPECT_EQ(s, (std::vector<double>{1, 1, 0, 0, 0, 0}));
}

TEST(KlCov, LossMatchesVerlValueAndGradient) {
  for (unsigned seed : {24u, 25u}) {
    const batch b = make_cov_batch({9, 0, 14, 3, 12, 20}, 0.6, seed);
    const pt::kl_cov_options ko{0.1, 0.1};
    const auto sel = naive_kl_cov_sel(b, ko.ratio);
    for (bool with_w : {false, true})
      for (bool seq_mean : {false, true}) {
        std::vector<double> grad(b.n(), 7.0);
        const pt::policy_gradient_outputs<double> out{std::span<double>(grad), {}};
        const auto in = inputs_of(b, false, false, with_w);
        const auto r = seq_mean ? kl_cov_seq_mean::compute(in, ko, pt::selection_presets::verl_kl_cov(),
                                                           out, {}, pt::agg_conventions::verl())
                                : kl_cov_token_mean::compute(in, ko, {}, out);
        const double want = naive_kl_cov_loss(b, sel, ko.coef, seq_mean, with_w);
        EXPECT_NEAR(r.loss, want, 1e-12);
        EXPECT_NEAR(r.pg_loss, want, 1e-12);
        EXPECT_GT(r.kl_cov_penalty, 0.0);
        EXPECT_EQ(r.selected, static_cast<index_t>(std::accumulate(sel.begin(), sel.end(), 0.0)));
        double sa = 0, sm = 0;
        for (std::size_t t = 0; t < b.n(); ++t)
          if (b.mask[t] != 0) sa += std::abs(b.logp[t] - b.old_logp[t]), sm += 1;
        EXPECT_NEAR(r.abs_kl, sa / sm, 1e-12);
        expect_fd_grad(
            b, [&](const batch& y) { return naive_kl_cov_loss(y, sel, ko.coef, seq_mean, with_w); },
            grad);
      }
  }
}

TEST(KlCov, WithKlAndEntropyTermsAddsLinearly) {
  const batch b = make_cov_batch({9, 14, 12}, 0.4, 26);
  using K3 = pt::loss::kl_cov<pt::kl::k3, pt::agg::token_mean>;
  pt::policy_gradient_options o;
  o.kl_coef = 0.05;
  o.entropy_coef = 0.01;
  const pt::kl_cov_options ko{0.05, 0.3};
  std::vector<double> g1(b.n()), g0(b.n());
  const auto r1 = K3::compute(inputs_of(b, true, true), ko, o,
                              pt::policy_gradient_outputs<double>{std::span<double>(g1), {}});
  const auto r0 = kl_cov_token_mean::compute(inputs_of(b), ko, {},
                                             pt::policy_gradient_outputs<double>{std::span<double>(g0), {}});
  double kl = 0, h = 0, m = 0;
  for (std::size_t t = 0; t < b.n(); ++t)
    if (b.mask[t] != 0) {
      const double x = b.ref[t] - b.logp[t];
      kl += std::exp(x) - x - 1, h += b.entropy[t], m += 1;
    }
  EXPECT_NEAR(r1.loss, r0.loss + 0.05 * kl / m - 0.01 * h / m, 1e-12);
  EXPECT_NEAR(r1.kl_cov_penalty, r0.kl_cov_penalty, 1e-15);
}

TEST(KlCov, HugeLogRatiosAllMaskedAndBadInput) {
  batch b = make_cov_batch({4, 4}, 0.0, 27, 3.0, false);
  for (std::size_t t = 0; t < b.n(); ++t) b.old_logp[t] = b.logp[t] + (t % 2 ? 50.0 : -50.0);
  std::vector<double> grad(b.n());
  const auto r = kl_cov_token_mean::compute(inputs_of(b), {0.5, 0.1}, {},
                                            pt::policy_gradient_outputs<double>{std::span<double>(grad), {}});
  EXPECT_TRUE(std::isfinite(r.loss));  // e^{50} is finite in double (verl: no clamp)
  for (double g : grad) EXPECT_TRUE(std::isfinite(g));
  const auto sel = naive_kl_cov_sel(b, 0.5);
  EXPECT_NEAR(r.loss, naive_kl_cov_loss(b, sel, 0.1, false, false), 1e-9 * std::abs(r.loss));
  // clamped through the options (±20), still finite and zero clamp gradient of the ratio part
  pt::policy_gradient_options o;
  o.log_ratio_min = -20, o.log_ratio_max = 20;
  kl_cov_token_mean::compute(inputs_of(b), {0.5, 0.1}, o,
                             pt::policy_gradient_outputs<double>{std::span<double>(grad), {}});
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_NEAR(std::abs(grad[t]), sel[t] * 0.1 / b.n(), 1e-15);

  b.mask.assign(b.n(), 0.0f);
  std::fill(grad.begin(), grad.end(), 7.0);
  const auto z = kl_cov_token_mean::compute(inputs_of(b), {}, {},
                                            pt::policy_gradient_outputs<double>{std::span<double>(grad), {}});
  EXPECT_EQ(z.loss, 0.0);
  EXPECT_EQ(z.selected, 0);
  for (double g : grad) EXPECT_EQ(g, 0.0);

  b = make_cov_batch({4, 4}, 0.3, 28);
  std::fill(grad.begin(), grad.end(), 7.0);
  const pt::policy_gradient_outputs<double> out{std::span<double>(grad), {}};
  EXPECT_THROW(kl_cov_token_mean::compute(inputs_of(b), {0.0, 0.1}, {}, out), pt::error);
  EXPECT_THROW(kl_cov_token_mean::compute(inputs_of(b), {1.5, 0.1}, {}, out), pt::error);
  EXPECT_THROW(kl_cov_token_mean::compute(inputs_of(b), {0.1, std::nan("")}, {}, out), pt::error);
  auto in = inputs_of(b);
  in.old_logprobs = {};
  EXPECT_THROW(kl_cov_token_mean::compute(in, {}, {}, out), pt::error);
  std::vector<double> bad_sel(b.n(), 0.5);
  EXPECT_THROW(kl_cov_token_mean::compute_with_selection(pt::exec::host{}, inputs_of(b),
                                                         std::span<const double>(bad_sel), {}, {}, out),
               pt::error);
  for (double g : grad) EXPECT_EQ(g, 7.0);
}

TEST(KlCov, FloatInputs) {
  const batch b = make_cov_batch({9, 14, 12}, 0.4, 29);
  std::vector<float> lp(b.logp.begin(), b.logp.end()), old(b.old_logp.begin(), b.old_logp.end()),
      adv(b.adv.begin(), b.adv.end()), grad(b.n());
  pt::policy_gradient_inputs<float> in;
  in.logprobs = lp;
  in.old_logprobs = old;
  in.advantages = adv;
  in.mask = b.mask;
  in.seq_offsets = b.offsets;
  const auto r = kl_cov_token_mean::compute(in, {0.1, 0.1}, {},
                                            pt::policy_gradient_outputs<float>{std::span<float>(grad), {}});
  batch bf = b;
  for (std::size_t t = 0; t < b.n(); ++t) bf.logp[t] = lp[t], bf.old_logp[t] = old[t], bf.adv[t] = adv[t];
  EXPECT_NEAR(r.loss, naive_kl_cov_loss(bf, naive_kl_cov_sel(bf, 0.1), 0.1, false, false), 1e-5);
}

}  // namespace

namespace {

TEST(TokenSelection, FloatInputsMatchDouble) {
  const batch b = make_cov_batch({9, 14, 12}, 0.4, 40);
  std::vector<float> lp(b.logp.begin(), b.logp.end()), old(b.old_logp.begin(), b.old_logp.end()),
      adv(b.adv.begin(), b.adv.end()), ent(b.entropy.begin(), b.entropy.end()), wf(b.n());
  pt::policy_gradient_inputs<float> in;
  in.logprobs = lp;
  in.old_logprobs = old;
  in.advantages = adv;
  in.entropy = ent;
  in.mask = b.mask;
  in.seq_offsets = b.offsets;
  batch bf = b;
  for (std::size_t t = 0; t < b.n(); ++t)
    bf.logp[t] = lp[t], bf.old_logp[t] = old[t], bf.adv[t] = adv[t], bf.entropy[t] = ent[t];
  std::vector<double> wd(b.n());
  const auto same = [&] {
    for (std::size_t t = 0; t < b.n(); ++t) EXPECT_EQ(static_cast<double>(wf[t]), wd[t]) << t;
  };
  pt::off_policy_sequence_mask(in, {0.01}, std::span<float>(wf));
  pt::off_policy_sequence_mask(inputs_of(bf), {0.01}, std::span<double>(wd));
  same();
  pt::high_entropy_mask(in, {0.3}, std::span<float>(wf));
  pt::high_entropy_mask(inputs_of(bf, false, true), {0.3}, std::span<double>(wd));
  same();
  const auto keys = keys_of(b.n(), 40);
  pt::clip_cov_weights(pt::exec::host{}, in, {0.2, 0.0, 5.0}, {}, std::span<const std::uint64_t>(keys),
                       std::span<float>(wf));
  pt::clip_cov_weights(pt::exec::host{}, inputs_of(bf), {0.2, 0.0, 5.0}, {},
                       std::span<const std::uint64_t>(keys), std::span<double>(wd));
  same();
  pt::kl_cov_selection(pt::exec::host{}, in, {0.2, 0.1}, std::span<float>(wf));
  pt::kl_cov_selection(pt::exec::host{}, inputs_of(bf), {0.2, 0.1}, std::span<double>(wd));
  same();
}

}  // namespace
