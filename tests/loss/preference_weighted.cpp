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
                             const typename W::preference_options_type& o, double tol = 1e-7) {
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
  // discopop (term 1) has its own τ: the list's options carry one link options set per term.
  mixed::preference_options_type o{};
  o.beta = 0.5;
  o.nll_coef = 0.25;
  std::get<1>(o.links).tau = 0.3;
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

namespace {

// Reference token log-probs behind the batch (NaN where masked), and their naive sums and means.
struct reference_tokens {
  std::vector<double> chosen, rejected;
};
reference_tokens make_reference_tokens(std::mt19937_64& rng, const pair_data& d) {
  std::normal_distribution<double> noise(0.0, 0.4);
  reference_tokens r;
  for (const bool c : {true, false}) {
    const side& s = c ? d.chosen : d.rejected;
    std::vector<double>& out = c ? r.chosen : r.rejected;
    for (std::size_t t = 0; t < s.logprobs.size(); ++t)
      out.push_back(s.mask[t] == 0.0f ? kNaN : s.logprobs[t] + noise(rng));
  }
  return r;
}
double naive_reference(const side& s, const std::vector<double>& ref, index_t p, bool mean) {
  return nv::score(ref, s.mask, s.offsets[p], s.offsets[p + 1], mean);
}

// TRL ["sigmoid", "ipo", "sft"]: sigmoid on summed log-probs, ipo on token means, the chosen NLL.
using sigmoid_ipo_sft = pt::loss::weighted<pt::algo::dpo, pt::algo::ipo, pt::pref::sft>;

}  // namespace

TEST(PreferenceWeighted, MixedSequenceReductionsMatchNaiveAndFiniteDifferences) {
  std::mt19937_64 rng(108);
  for (int rep = 0; rep < 3; ++rep) {
    pair_data d = make_data(rng, 5, 0, 7, rep == 1);
    const reference_tokens rt = make_reference_tokens(rng, d);
    const auto scores = sigmoid_ipo_sft::reference_scores(
        pt::preference_batch{{d.chosen.offsets, d.chosen.mask}, {d.rejected.offsets, d.rejected.mask}},
        std::span<const double>(rt.chosen), std::span<const double>(rt.rejected));
    ASSERT_EQ(scores.chosen[0].size(), 5u);
    ASSERT_EQ(scores.chosen[1].size(), 5u);
    EXPECT_TRUE(scores.chosen[2].empty());
    const sigmoid_ipo_sft::weights_type w{0.7, 1.3, 0.4};
    const pt::loss::preference_options o{.beta = 0.3};
    const nv::params p{.beta = 0.3};
    std::vector<double> gc(d.chosen.logprobs.size(), kNaN), gr(d.rejected.logprobs.size(), kNaN);
    std::vector<double> pl(5, kNaN), cr(5, kNaN);
    auto in = d.inputs(false);
    const auto r = sigmoid_ipo_sft::compute(in, scores.view(), w, o, {gc, gr, pl, cr});
    // Naive: Σ_k w_k·L_k, each term with its own reduction of policy AND reference.
    double sig = 0, ipo = 0;
    for (index_t i = 0; i < 5; ++i) {
      const double ls = nv::sigmoid(naive_score(d.chosen, i) - naive_reference(d.chosen, rt.chosen, i, false),
                                    naive_score(d.rejected, i) - naive_reference(d.rejected, rt.rejected, i, false), p);
      const double li = nv::ipo(naive_score(d.chosen, i, true) - naive_reference(d.chosen, rt.chosen, i, true),
                                naive_score(d.rejected, i, true) - naive_reference(d.rejected, rt.rejected, i, true), p);
      sig += ls / 5;
      ipo += li / 5;
      EXPECT_NEAR(pl[i], 0.7 * ls + 1.3 * li, 1e-11) << i;
      EXPECT_NEAR(cr[i], 0.3 * (naive_score(d.chosen, i) - naive_reference(d.chosen, rt.chosen, i, false)), 1e-12);
    }
    const double nll = naive(d, {{nullptr, 1.0}}, p).nll;
    EXPECT_NEAR(r.terms[0], sig, 1e-12);
    EXPECT_NEAR(r.terms[1], ipo, 1e-11);
    EXPECT_NEAR(r.terms[2], nll, 1e-12);
    EXPECT_NEAR(r.loss, 0.7 * sig + 1.3 * ipo + 0.4 * nll, 1e-11);
    EXPECT_NEAR(r.preference_loss, 0.7 * sig + 1.3 * ipo, 1e-11);
    // ∂loss/∂ℓ: central differences through every term's own reduction (references fixed).
    const double h = 1e-6;
    for (side* s : {&d.chosen, &d.rejected}) {
      const std::vector<double>& g = s == &d.chosen ? gc : gr;
      for (std::size_t t = 0; t < s->logprobs.size(); ++t) {
        if (s->mask[t] == 0.0f) {
          EXPECT_EQ(g[t], 0.0);
          EXPECT_FALSE(std::signbit(g[t]));
          continue;
        }
        const double saved = s->logprobs[t];
        s->logprobs[t] = saved + h;
        const double up = sigmoid_ipo_sft::compute(d.inputs(false), scores.view(), w, o).loss;
        s->logprobs[t] = saved - h;
        const double down = sigmoid_ipo_sft::compute(d.inputs(false), scores.view(), w, o).loss;
        s->logprobs[t] = saved;
        const double fd = (up - down) / (2 * h);
        EXPECT_NEAR(g[t], fd, 1e-7 * (1 + std::fabs(fd))) << (s == &d.chosen ? "chosen " : "rejected ") << t;
      }
    }
  }
}

// A list whose terms share the reduction gives the same through both forms; a reference-free
// term mixes with referenced ones in the per-term form; float matches double.
TEST(PreferenceWeighted, PerTermReferenceFormAgreesAndMixesReferenceFree) {
  std::mt19937_64 rng(109);
  const pair_data d = make_data(rng, 4, 1, 6, true);
  const auto w = pt::pref::presets::mpo_weights;
  std::vector<double> gc(d.chosen.logprobs.size()), gr(d.rejected.logprobs.size());
  std::vector<double> hc(gc.size()), hr(gr.size());
  const auto a = pt::algo::mpo::compute(d.inputs(), w, {}, {gc, gr});
  pt::algo::mpo::reference_type<double> ref;
  for (std::size_t k = 0; k < 2; ++k) {
    ref.chosen[k] = d.chosen.reference;
    ref.rejected[k] = d.rejected.reference;
  }
  const auto b = pt::algo::mpo::compute(d.inputs(false), ref, w, {}, {hc, hr});
  EXPECT_EQ(a.loss, b.loss);
  for (std::size_t t = 0; t < gc.size(); ++t) EXPECT_EQ(gc[t], hc[t]);
  for (std::size_t t = 0; t < gr.size(); ++t) EXPECT_EQ(gr[t], hr[t]);
  static_assert(pt::algo::mpo::shared_reference);
  static_assert(!sigmoid_ipo_sft::shared_reference && sigmoid_ipo_sft::uses_reference);

  // DPO + SimPO (reference-free, means): SimPO's term sees no reference.
  using dpo_simpo = pt::loss::weighted<pt::algo::dpo, pt::algo::simpo>;
  dpo_simpo::reference_type<double> rs;
  rs.chosen[0] = d.chosen.reference;
  rs.rejected[0] = d.rejected.reference;
  dpo_simpo::preference_options_type o{};
  o.beta = 0.2;
  std::get<1>(o.links).gamma = 0.3;  // simpo is term 1
  const auto m = dpo_simpo::compute(d.inputs(false), rs, {1.0, 0.5}, o);
  const nv::params p{.beta = 0.2, .gamma = 0.3};
  double want = 0;
  for (index_t i = 0; i < 4; ++i)
    want += (nv::sigmoid(naive_score(d.chosen, i) - d.chosen.reference[i],
                         naive_score(d.rejected, i) - d.rejected.reference[i], p) +
             0.5 * nv::simpo(naive_score(d.chosen, i, true), naive_score(d.rejected, i, true), p)) /
            4;
  EXPECT_NEAR(m.loss, want, 1e-12);

  // float
  const float_inputs f(d);
  std::vector<float> rc(d.chosen.reference.begin(), d.chosen.reference.end());
  std::vector<float> rr(d.rejected.reference.begin(), d.rejected.reference.end());
  dpo_simpo::reference_type<float> rf;
  rf.chosen[0] = rc;
  rf.rejected[0] = rr;
  pt::loss::preference_inputs<float> fin = f.in;
  fin.reference_chosen = {};
  fin.reference_rejected = {};
  EXPECT_NEAR(dpo_simpo::compute(fin, rf, {1.0, 0.5}, o).loss, m.loss, 1e-5 * (1 + std::fabs(m.loss)));
}

TEST(PreferenceWeighted, PerTermReferenceBadInputThrowsAndWritesNothing) {
  std::mt19937_64 rng(110);
  const pair_data d = make_data(rng, 3, 1, 4, false);
  std::vector<double> gc(d.chosen.logprobs.size(), 7.0), gr(d.rejected.logprobs.size(), 7.0);
  std::vector<double> pl(3, 7.0);
  const pt::loss::preference_outputs<double> out{gc, gr, pl};
  auto untouched = [&] {
    for (double v : gc) EXPECT_EQ(v, 7.0);
    for (double v : gr) EXPECT_EQ(v, 7.0);
    for (double v : pl) EXPECT_EQ(v, 7.0);
  };
  std::vector<double> means_c(3, -1.0), means_r(3, -1.2);
  sigmoid_ipo_sft::reference_type<double> ref;
  ref.chosen = {d.chosen.reference, means_c, {}};
  ref.rejected = {d.rejected.reference, means_r, {}};
  const sigmoid_ipo_sft::weights_type w{1.0, 1.0, 1.0};
  // the shared scores must not be given as well
  expect_error([&] { sigmoid_ipo_sft::compute(d.inputs(), ref, w, {}, out); }, "must be empty");
  untouched();
  // a term without reference (sft) given scores
  auto bad = ref;
  bad.chosen[2] = means_c;
  expect_error([&] { sigmoid_ipo_sft::compute(d.inputs(false), bad, w, {}, out); },
               "reference.chosen[2]");
  untouched();
  // a term's scores of the wrong size, and missing
  bad = ref;
  bad.rejected[1] = std::span<const double>(means_r).subspan(1);
  expect_error([&] { sigmoid_ipo_sft::compute(d.inputs(false), bad, w, {}, out); },
               "reference_rejected");
  untouched();
  bad = ref;
  bad.chosen[0] = {};
  expect_error([&] { sigmoid_ipo_sft::compute(d.inputs(false), bad, w, {}, out); },
               "reference_chosen");
  untouched();
  bad = ref;
  std::vector<double> nan_scores{0.0, kNaN, 0.0};
  bad.chosen[1] = nan_scores;
  expect_error([&] { sigmoid_ipo_sft::compute(d.inputs(false), bad, w, {}, out); },
               "finite reference score");
  untouched();
  expect_error([&] { sigmoid_ipo_sft::compute(d.inputs(false), ref, {1.0, -1.0, 1.0}, {}, out); },
               "weights[1]");
  untouched();
  // reference_scores validates the batch
  std::vector<index_t> broken{0, 5};
  std::vector<double> tok(2);
  expect_error(
      [&] {
        sigmoid_ipo_sft::reference_scores(
            pt::preference_batch{{broken, {}}, {d.rejected.offsets, d.rejected.mask}},
            std::span<const double>(tok), std::span<const double>(tok));
      },
      "reference_scores");
}
