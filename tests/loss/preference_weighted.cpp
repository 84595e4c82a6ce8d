// loss::weighted<Term...> (TRL DPOTrainer loss_type lists with loss_weights), algo::mpo and
// algo::rpo: against naive float64 sums of the individual naive formulas
// (preference_naive.hpp), central differences of every token gradient, RPO = dpo_nll, pair
// weights (WPO) on the sft term, micro-batch invariance, float vs double, empty and all-masked
// batches, huge log-ratios, and bad input leaving every output untouched.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "posttrain/loss/preference/algorithms.hpp"
#include "preference_naive.hpp"
#include "preference_testing.hpp"

namespace {

namespace pt = posttrain;
namespace nv = preference_naive;
using namespace preference_testing;

struct naive_term {
  nv::link_fn link;  // nullptr: the sft term
  double weight;
};

struct naive_result {
  double loss = 0, nll = 0;
  std::vector<double> pair_losses;
};

// Σ_k w_k·L_k with L_k = Σ_p ω_p·link_k(Δc, Δr)/P (summed log-probs) or ω̄·NLL token mean.
naive_result naive(const pair_data& d, const std::vector<naive_term>& terms, const nv::params& p,
                   double pairs_norm = 0, double tokens_norm = 0) {
  const auto P = static_cast<std::size_t>(d.pairs());
  const double pairs = pairs_norm > 0 ? pairs_norm : static_cast<double>(P);
  naive_result r;
  r.pair_losses.assign(P, 0.0);
  double s = 0, w = 0;
  for (std::size_t t = 0; t < d.chosen.logprobs.size(); ++t)
    if (d.chosen.mask[t] != 0) {
      s += d.chosen.mask[t] * d.chosen.logprobs[t];
      w += d.chosen.mask[t];
    }
  const double tokens = tokens_norm > 0 ? tokens_norm : w;
  r.nll = tokens > 0 ? -s / tokens : 0.0;
  double wsum = 0;
  for (std::size_t i = 0; i < P; ++i) wsum += d.weights.empty() ? 1.0 : d.weights[i];
  for (const naive_term& term : terms) {
    if (!term.link) {
      const double factor = d.weights.empty() ? 1.0 : (pairs > 0 ? wsum / pairs : 0.0);
      r.loss += term.weight * factor * r.nll;
      continue;
    }
    for (std::size_t i = 0; i < P; ++i) {
      const double pc = naive_score(d.chosen, i);
      const double pr = naive_score(d.rejected, i);
      const double om = d.weights.empty() ? 1.0 : d.weights[i];
      const double l = om * term.link(pc - d.chosen.reference[i], pr - d.rejected.reference[i], p);
      r.pair_losses[i] += term.weight * l;
      if (pairs > 0) r.loss += term.weight * l / pairs;
    }
  }
  return r;
}

// Central differences of W::compute(...).loss against the written gradient; masked tokens get +0.
template <class W>
void check_weighted_gradient(pair_data d, const typename W::weights_type& w,
                             const pt::loss::preference_options& o, double tol = 1e-7) {
  std::vector<double> gc(d.chosen.logprobs.size(), kNaN), gr(d.rejected.logprobs.size(), kNaN);
  W::compute(d.inputs(), w, o, pt::loss::preference_outputs<double>{gc, gr});
  const double h = 1e-6;
  for (side* s : {&d.chosen, &d.rejected}) {
    const std::vector<double>& g = s == &d.chosen ? gc : gr;
    for (std::size_t t = 0; t < s->logprobs.size(); ++t) {
      if (s->mask[t] == 0.0f) {
        EXPECT_EQ(g[t], 0.0) << "masked token " << t;
        EXPECT_FALSE(std::signbit(g[t])) << "masked token " << t;
        continue;
      }
      const double saved = s->logprobs[t];
      s->logprobs[t] = saved + h;
      const double up = W::compute(d.inputs(), w, o).loss;
      s->logprobs[t] = saved - h;
      const double down = W::compute(d.inputs(), w, o).loss;
      s->logprobs[t] = saved;
      const double fd = (up - down) / (2 * h);
      EXPECT_NEAR(g[t], fd, tol * (1 + std::fabs(fd)))
          << W::name() << (s == &d.chosen ? " chosen" : " rejected") << " token " << t;
    }
  }
}

TEST(PreferenceWeighted, MpoMatchesNaiveSumAndFiniteDifferences) {
  std::mt19937_64 rng(101);
  for (int rep = 0; rep < 3; ++rep) {
    const pair_data d = make_data(rng, 5, 0, 7, rep == 1);
    const auto w = pt::pref::presets::mpo_weights;
    const pt::loss::preference_options o{.beta = 0.3};
    std::vector<double> pl(5, kNaN), cr(5, kNaN), rr(5, kNaN);
    const auto r = pt::algo::mpo::compute(d.inputs(), w, o, {{}, {}, pl, cr, rr});
    const nv::params p{.beta = 0.3};
    const naive_result n = naive(d, {{nv::sigmoid, 0.8}, {nv::bco_pair, 0.2}, {nullptr, 1.0}}, p);
    EXPECT_NEAR(r.loss, n.loss, 1e-12);
    EXPECT_NEAR(r.nll, n.nll, 1e-12);
    EXPECT_NEAR(r.terms[2], n.nll, 1e-12);
    EXPECT_NEAR(r.preference_loss, n.loss - n.nll, 1e-12);
    EXPECT_NEAR(r.loss, 0.8 * r.terms[0] + 0.2 * r.terms[1] + 1.0 * r.terms[2], 1e-13);
    const naive_result dpo_only = naive(d, {{nv::sigmoid, 1.0}}, p);
    const naive_result bco_only = naive(d, {{nv::bco_pair, 1.0}}, p);
    EXPECT_NEAR(r.terms[0], dpo_only.loss, 1e-12);
    EXPECT_NEAR(r.terms[1], bco_only.loss, 1e-12);
    for (std::size_t i = 0; i < 5; ++i) {
      EXPECT_NEAR(pl[i], n.pair_losses[i], 1e-12) << i;
      const double pc = naive_score(d.chosen, i);
      EXPECT_NEAR(cr[i], 0.3 * (pc - d.chosen.reference[i]), 1e-12) << i;
      EXPECT_FALSE(std::isnan(rr[i]));
    }
    check_weighted_gradient<pt::algo::mpo>(d, w, o);
  }
}

TEST(PreferenceWeighted, RpoEqualsDpoNllAndNaive) {
  std::mt19937_64 rng(102);
  const pair_data d = make_data(rng, 6, 1, 8, true);
  for (double alpha : {0.0, 0.5, 1.0, 2.5}) {
    const pt::loss::preference_options o{.beta = 0.2, .label_smoothing = 0.1, .nll_coef = alpha};
    std::vector<double> gc(d.chosen.logprobs.size()), gr(d.rejected.logprobs.size());
    std::vector<double> hc(gc.size()), hr(gr.size());
    const auto a = pt::algo::rpo::compute(d.inputs(), pt::pref::presets::rpo_weights(alpha), o,
                                          pt::loss::preference_outputs<double>{gc, gr});
    const auto b =
        pt::algo::dpo_nll::compute(d.inputs(), o, pt::loss::preference_outputs<double>{hc, hr});
    EXPECT_NEAR(a.loss, b.loss, 1e-13) << alpha;
    EXPECT_NEAR(a.nll, b.nll, 1e-13);
    for (std::size_t t = 0; t < gc.size(); ++t) EXPECT_NEAR(gc[t], hc[t], 1e-15) << t;
    for (std::size_t t = 0; t < gr.size(); ++t) EXPECT_NEAR(gr[t], hr[t], 1e-15) << t;
    const naive_result n =
        naive(d, {{nv::sigmoid, 1.0}, {nullptr, alpha}}, nv::params{.beta = 0.2, .eps = 0.1});
    EXPECT_NEAR(a.loss, n.loss, 1e-12);
  }
  EXPECT_EQ(pt::pref::presets::rpo_weights()[1], 1.0);
  check_weighted_gradient<pt::algo::rpo>(d, pt::pref::presets::rpo_weights(0.7),
                                         pt::loss::preference_options{.beta = 0.2});
}

// A longer list with terms of several links, one with its own NLL, a zero weight, sft first.
using mixed = pt::loss::weighted<pt::pref::sft, pt::algo::discopop, pt::algo::apo_zero,
                                 pt::algo::nca_pair, pt::algo::dpo_nll>;

TEST(PreferenceWeighted, MixedListMatchesNaive) {
  std::mt19937_64 rng(103);
  const pair_data d = make_data(rng, 4, 0, 6, true);
  const mixed::weights_type w{0.3, 1.7, 0.0, 0.4, 0.9};
  const pt::loss::preference_options o{.beta = 0.5, .tau = 0.3, .nll_coef = 0.25};
  const nv::params p{.beta = 0.5, .tau = 0.3};
  const auto r = mixed::compute(d.inputs(), w, o);
  const naive_result base = naive(d,
                                  {{nullptr, 0.3},
                                   {nv::discopop, 1.7},
                                   {nv::apo_zero, 0.0},
                                   {nv::nca_pair, 0.4},
                                   {nv::sigmoid, 0.9}},
                                  p);
  // dpo_nll carries its own 0.25·NLL inside its term.
  EXPECT_NEAR(r.loss, base.loss + 0.9 * 0.25 * base.nll, 1e-12);
  EXPECT_NEAR(r.terms[0], base.nll, 1e-12);
  EXPECT_NEAR(r.terms[2], naive(d, {{nv::apo_zero, 1.0}}, p).loss, 1e-12);  // evaluated, weight 0
  check_weighted_gradient<mixed>(d, w, o);
  EXPECT_NE(mixed::name().find("sft"), std::string::npos);
  EXPECT_NE(mixed::name().find("discopop"), std::string::npos);
}

TEST(PreferenceWeighted, PairWeightsScaleEveryTermIncludingSft) {
  std::mt19937_64 rng(104);
  pair_data d = make_data(rng, 5, 1, 6, false);
  d.weights = {0.5, 1.0, 0.0, 2.0, 0.7};
  const auto w = pt::pref::presets::mpo_weights;
  const pt::loss::preference_options o{.beta = 0.1};
  const auto r = pt::algo::mpo::compute(d.inputs(), w, o);
  const naive_result n =
      naive(d, {{nv::sigmoid, 0.8}, {nv::bco_pair, 0.2}, {nullptr, 1.0}}, nv::params{});
  EXPECT_NEAR(r.loss, n.loss, 1e-12);
  EXPECT_NEAR(r.terms[2], (4.2 / 5.0) * r.nll, 1e-13);
  check_weighted_gradient<pt::algo::mpo>(d, w, o);
}

TEST(PreferenceWeighted, MicroBatchesAddUpWithGlobalNormalizers) {
  std::mt19937_64 rng(105);
  const pair_data d = make_data(rng, 6, 0, 6, true);
  const auto w = pt::pref::presets::mpo_weights;
  const pt::loss::preference_options o{.beta = 0.25};
  std::vector<double> gc(d.chosen.logprobs.size()), gr(d.rejected.logprobs.size());
  const auto full = pt::algo::mpo::compute(d.inputs(), w, o, {gc, gr});
  double tokens = 0;
  for (float m : d.chosen.mask) tokens += m;
  const pt::loss::preference_normalizer norm{.pairs = 6, .chosen_tokens = tokens};
  double sum = 0;
  for (int half = 0; half < 2; ++half) {
    pair_data part;
    for (int i = half * 3; i < half * 3 + 3; ++i)
      for (const bool chosen : {true, false}) {
        const side& s = chosen ? d.chosen : d.rejected;
        side& o2 = chosen ? part.chosen : part.rejected;
        for (index_t t = s.offsets[i]; t < s.offsets[i + 1]; ++t) {
          o2.mask.push_back(s.mask[t]);
          o2.logprobs.push_back(s.logprobs[t]);
        }
        o2.offsets.push_back(static_cast<index_t>(o2.mask.size()));
        o2.reference.push_back(s.reference[i]);
      }
    std::vector<double> pc(part.chosen.logprobs.size()), pr(part.rejected.logprobs.size());
    sum += pt::algo::mpo::compute(part.inputs(), w, o, {pc, pr}, norm).loss;
    const index_t c0 = d.chosen.offsets[half * 3], r0 = d.rejected.offsets[half * 3];
    for (std::size_t t = 0; t < pc.size(); ++t) EXPECT_NEAR(pc[t], gc[c0 + t], 1e-15);
    for (std::size_t t = 0; t < pr.size(); ++t) EXPECT_NEAR(pr[t], gr[r0 + t], 1e-15);
  }
  EXPECT_NEAR(sum, full.loss, 1e-13);
}

TEST(PreferenceWeighted, FloatMatchesDouble) {
  std::mt19937_64 rng(106);
  const pair_data d = make_data(rng, 4, 1, 6, true);
  const float_inputs f(d);
  std::vector<float> gc(f.chosen.size()), gr(f.rejected.size());
  std::vector<double> hc(f.chosen.size()), hr(f.rejected.size());
  const auto w = pt::pref::presets::mpo_weights;
  const auto a = pt::algo::mpo::compute(f.in, w, {}, pt::loss::preference_outputs<float>{gc, gr});
  const auto b = pt::algo::mpo::compute(d.inputs(), w, {}, {hc, hr});
  EXPECT_NEAR(a.loss, b.loss, 1e-5 * (1 + std::fabs(b.loss)));
  for (std::size_t t = 0; t < gc.size(); ++t) EXPECT_NEAR(gc[t], hc[t], 1e-6) << t;
  for (std::size_t t = 0; t < gr.size(); ++t) EXPECT_NEAR(gr[t], hr[t], 1e-6) << t;
}

TEST(PreferenceWeighted, EmptyAllMaskedAndHugeLogRatios) {
  const auto w = pt::pref::presets::mpo_weights;
  pair_data empty;  // P = 0
  const auto e = pt::algo::mpo::compute(empty.inputs(), w);
  EXPECT_EQ(e.loss, 0.0);
  EXPECT_EQ(e.nll, 0.0);

  // Every chosen token masked: the sft term is 0 (not NaN); the pair terms see π_c = 0.
  pair_data m = single_tokens({kNaN, kNaN}, {-1.0, -2.0}, {0.3, -0.2}, {-1.5, -1.0});
  m.chosen.mask = {0.0f, 0.0f};
  std::vector<double> gc(2, kNaN), gr(2, kNaN);
  const auto a = pt::algo::mpo::compute(m.inputs(), w, {}, {gc, gr});
  EXPECT_EQ(a.nll, 0.0);
  EXPECT_TRUE(std::isfinite(a.loss));
  EXPECT_EQ(gc[0], 0.0);
  EXPECT_EQ(gc[1], 0.0);
  EXPECT_FALSE(std::signbit(gc[0]));
  EXPECT_TRUE(std::isfinite(gr[0]) && std::isfinite(gr[1]));

  // Log-ratios of ±1e4 (β = 1): finite loss and gradients of bounded size.
  const pair_data h = single_tokens({-1.0, -1e4}, {-1e4, -1.0}, {-1e4, 0.0}, {0.0, -1e4});
  std::vector<double> hc(2), hr(2);
  const auto r = pt::algo::mpo::compute(h.inputs(), w, {.beta = 1.0}, {hc, hr});
  EXPECT_TRUE(std::isfinite(r.loss));
  for (double g : {hc[0], hc[1], hr[0], hr[1]}) {
    EXPECT_TRUE(std::isfinite(g));
    EXPECT_LE(std::fabs(g), 2.0);
  }
}

TEST(PreferenceWeighted, BadInputThrowsAndWritesNothing) {
  std::mt19937_64 rng(107);
  const pair_data d = make_data(rng, 3, 1, 4, false);
  std::vector<double> gc(d.chosen.logprobs.size(), 7.0), gr(d.rejected.logprobs.size(), 7.0);
  std::vector<double> pl(3, 7.0);
  const pt::loss::preference_outputs<double> out{gc, gr, pl};
  auto untouched = [&] {
    for (double v : gc) EXPECT_EQ(v, 7.0);
    for (double v : gr) EXPECT_EQ(v, 7.0);
    for (double v : pl) EXPECT_EQ(v, 7.0);
  };
  using mpo = pt::algo::mpo;
  expect_error([&] { mpo::compute(d.inputs(), {0.8, -0.2, 1.0}, {}, out); }, "weights[1]");
  untouched();
  expect_error([&] { mpo::compute(d.inputs(), {0.8, 0.2, kNaN}, {}, out); }, "weights[2]");
  untouched();
  expect_error(
      [&] {
        mpo::compute(d.inputs(), mpo::weights_type{0.8, 0.2, 1.0}, {.beta = 0.0}, out);
      },
      "options.beta");
  untouched();
  auto in = d.inputs();
  in.reference_rejected = in.reference_rejected.subspan(1);
  expect_error([&] { mpo::compute(in, pt::pref::presets::mpo_weights, {}, out); },
               "reference_rejected");
  untouched();
  std::vector<double> short_grad(1);
  expect_error(
      [&] {
        mpo::compute(d.inputs(), pt::pref::presets::mpo_weights, {},
                     pt::loss::preference_outputs<double>{gc, short_grad});
      },
      "rejected_grad");
  untouched();
  expect_error(
      [&] {
        mpo::compute(d.inputs(), pt::pref::presets::mpo_weights, {}, out,
                     pt::loss::preference_normalizer{.chosen_tokens = -1});
      },
      "normalizer.chosen_tokens");
  untouched();
}

}  // namespace
