// Tests of the loss::preference composition (loss/preference.hpp) and the named algorithms
// (loss/preference/algorithms.hpp) over packed ragged batches: every link with seq::sum and
// seq::mean against a naive float64 composition, ∂loss/∂ℓ by central differences through the
// whole composition, the peers' presets (TRL sigmoid_norm, TRL vs OpenRLHF IPO, SimPO, Llama 3 /
// OpenRLHF NLL), masks with NaN behind them, empty sequences, micro-batch invariance, per-pair
// outputs, float inputs, and every validation error (outputs left untouched).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "loss/preference_naive.hpp"
#include "loss/preference_testing.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/loss/preference/algorithms.hpp"

namespace pt = posttrain;
namespace pref = posttrain::pref;
namespace seq = posttrain::seq;
namespace algo = posttrain::algo;
namespace nv = preference_naive;
using pt::index_t;
using pt::loss::preference_inputs;
using pt::loss::preference_normalizer;
using pt::loss::preference_options;
using pt::loss::preference_outputs;

namespace {

using preference_testing::check_gradient;
using preference_testing::float_inputs;
using preference_testing::kNaN;
using preference_testing::naive_score;
using preference_testing::pair_data;
using preference_testing::side;

// Random pairs: lengths 0..max_len, mask weights in {0, 1} (or also 0.5 when fractional), NaN
// log-probs behind every zero mask, reference scores near the policy's.
pair_data make_data(std::mt19937_64& rng, int pairs, int max_len, bool fractional,
                    double logprob_scale = 1.0) {
  std::uniform_int_distribution<int> len(0, max_len);
  std::uniform_real_distribution<double> lp(-3.0, -0.05);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  pair_data d;
  for (side* s : {&d.chosen, &d.rejected}) {
    for (int p = 0; p < pairs; ++p) {
      const int n = len(rng);
      for (int t = 0; t < n; ++t) {
        const double c = coin(rng);
        const float m = c < 0.2 ? 0.0f : (fractional && c < 0.35 ? 0.5f : 1.0f);
        s->mask.push_back(m);
        s->logprobs.push_back(m == 0.0f ? kNaN : lp(rng) * logprob_scale);
      }
      s->offsets.push_back(static_cast<index_t>(s->mask.size()));
      s->reference.push_back(0);
    }
  }
  return d;
}

// Reference scores = the policy's own reduction shifted by a random amount (so Δ is moderate).
void set_reference(pair_data& d, std::mt19937_64& rng, bool mean) {
  std::uniform_real_distribution<double> shift(-1.5, 1.5);
  for (side* s : {&d.chosen, &d.rejected})
    for (index_t p = 0; p + 1 < static_cast<index_t>(s->offsets.size()); ++p)
      s->reference[p] =
          nv::score(s->logprobs, s->mask, s->offsets[p], s->offsets[p + 1], mean) + shift(rng);
}

// The naive parameters from a composition's options: the shared fields and the link's own γ or τ.
template <class Options>
nv::params naive_params(const Options& o) {
  nv::params p{.beta = o.beta, .eps = o.label_smoothing};
  if constexpr (requires { o.link.gamma; }) p.gamma = o.link.gamma;
  if constexpr (requires { o.link.tau; }) p.tau = o.link.tau;
  return p;
}

// Naive composition: mean over pairs of link(Δc, Δr).
template <class Options>
double naive_loss(nv::link_fn link, const pair_data& d, const Options& o, bool mean,
                  bool with_reference) {
  double total = 0;
  for (index_t p = 0; p < d.pairs(); ++p) {
    double dc = naive_score(d.chosen, p, mean);
    double dr = naive_score(d.rejected, p, mean);
    if (with_reference) {
      dc -= d.chosen.reference[p];
      dr -= d.rejected.reference[p];
    }
    total += link(dc, dr, naive_params(o));
  }
  return d.pairs() > 0 ? total / static_cast<double>(d.pairs()) : 0.0;
}

// A composition against the naive one on random batches (sum or mean), then its gradient.
template <class Comp>
void check_composition(nv::link_fn link, const typename Comp::options_type& o,
                       std::uint64_t seed) {
  constexpr bool mean = std::is_same_v<typename Comp::sequence_reduction, seq::mean>;
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 3; ++round) {
    pair_data d = make_data(rng, 4, 5, /*fractional=*/round == 2);
    set_reference(d, rng, mean);
    SCOPED_TRACE(Comp::name() + " round " + std::to_string(round));
    const auto r = Comp::compute(d.inputs(Comp::uses_reference), o);
    const double want = naive_loss(link, d, o, mean, Comp::uses_reference);
    EXPECT_NEAR(r.loss, want, 1e-12 * (1 + std::fabs(want)));
    EXPECT_EQ(r.loss, r.preference_loss);
    EXPECT_EQ(r.nll, 0.0);
    check_gradient<Comp>(d, o, Comp::uses_reference);
  }
}

template <class Link>
void check_link_both_reductions(nv::link_fn link,
                                const pt::loss::preference_options_for<Link>& o) {
  check_composition<pt::loss::preference<Link, seq::sum>>(link, o, 11);
  check_composition<pt::loss::preference<Link, seq::mean>>(link, o, 12);
}

}  // namespace

TEST(PreferenceCompose, EveryLinkMatchesNaiveAndFiniteDifferences) {
  check_link_both_reductions<pref::sigmoid>(nv::sigmoid, {.beta = 0.5});
  check_link_both_reductions<pref::sigmoid>(nv::sigmoid, {.beta = 0.3, .label_smoothing = 0.1});
  check_link_both_reductions<pref::simpo>(nv::simpo, {{.beta = 2.0}, {.gamma = 1.0}});
  check_link_both_reductions<pref::robust>(nv::robust, {.beta = 0.4, .label_smoothing = 0.2});
  check_link_both_reductions<pref::hinge>(nv::hinge, {.beta = 0.3});
  check_link_both_reductions<pref::ipo>(nv::ipo, {.beta = 0.5});
  check_link_both_reductions<pref::exo_pair>(nv::exo_pair, {.beta = 0.5, .label_smoothing = 0.01});
  check_link_both_reductions<pref::nca_pair>(nv::nca_pair, {.beta = 0.5});
  check_link_both_reductions<pref::bco_pair>(nv::bco_pair, {.beta = 0.5});
  check_link_both_reductions<pref::sppo_hard>(nv::sppo_hard, {.beta = 0.5});
  check_link_both_reductions<pref::apo_zero>(nv::apo_zero, {.beta = 0.5});
  check_link_both_reductions<pref::apo_down>(nv::apo_down, {.beta = 0.5});
  check_link_both_reductions<pref::discopop>(nv::discopop, {{.beta = 0.5}, {.tau = 0.3}});
}

TEST(PreferenceCompose, NamedAlgorithmsAreTheDocumentedCompositions) {
  using pt::loss::preference;
  // Each name is a recipe type whose loss is the documented composition; cDPO is its own recipe
  // over DPO's loss type (issue 9: a preset is not an alias that looks distinct).
  static_assert(std::is_same_v<algo::dpo::loss, preference<pref::sigmoid, seq::sum>>);
  static_assert(std::is_same_v<algo::cdpo::loss, algo::dpo::loss>);
  static_assert(!std::is_same_v<algo::cdpo, algo::dpo>);
  static_assert(std::is_same_v<algo::ipo::loss, preference<pref::ipo, seq::mean>>);
  static_assert(std::is_same_v<algo::ipo_sum::loss, preference<pref::ipo, seq::sum>>);
  static_assert(
      std::is_same_v<algo::dpo_length_normalized::loss, preference<pref::sigmoid, seq::mean>>);
  static_assert(!algo::simpo::uses_reference && algo::dpo::uses_reference);
  static_assert(algo::dpo_nll::has_nll && !algo::dpo::has_nll);
  EXPECT_EQ(algo::dpo::name(), "loss::preference<sigmoid, sum>");
  EXPECT_EQ(algo::simpo::name(), "loss::preference<simpo, mean, reference_free>");
  EXPECT_EQ(pref::presets::open_instruct_simpo().link.gamma, 1.5);
  EXPECT_EQ(pref::presets::llama3_dpo_nll.nll_coef, 0.2);
}

// DPO at zero margin is log 2 through the whole composition.
TEST(PreferenceCompose, DpoIsLog2WhenPolicyEqualsReference) {
  std::mt19937_64 rng(3);
  pair_data d = make_data(rng, 5, 6, true);
  set_reference(d, rng, false);
  for (side* s : {&d.chosen, &d.rejected})
    for (index_t p = 0; p < d.pairs(); ++p)
      s->reference[p] = nv::score(s->logprobs, s->mask, s->offsets[p], s->offsets[p + 1], false);
  const auto r = algo::dpo::compute(d.inputs(), {});
  EXPECT_NEAR(r.loss, std::log(2.0), 1e-14);
  EXPECT_EQ(r.reward_accuracy, 0.0);
  EXPECT_NEAR(r.reward_margin, 0.0, 1e-15);
}

// TRL sigmoid_norm divides the summed log-ratio by the completion length; open-instruct dpo_norm
// (algo::dpo_length_normalized) subtracts the reference mean from the policy mean. Same value
// with 0/1 masks, because policy and reference of one completion share the mask.
TEST(PreferenceCompose, LengthNormalizedDpoEqualsTrlSigmoidNorm) {
  std::mt19937_64 rng(5);
  for (int round = 0; round < 4; ++round) {
    pair_data d = make_data(rng, 6, 7, /*fractional=*/false);
    // Reference token log-probs on the same masks, reduced by sum (TRL) and by mean
    // (open-instruct).
    std::uniform_real_distribution<double> lp(-3.0, -0.05);
    std::vector<double> ref_c(d.chosen.logprobs.size()), ref_r(d.rejected.logprobs.size());
    for (auto& v : ref_c) v = lp(rng);
    for (auto& v : ref_r) v = lp(rng);
    const double beta = 5.0;  // open-instruct's default
    double trl = 0;
    for (index_t p = 0; p < d.pairs(); ++p) {
      const index_t c0 = d.chosen.offsets[p], c1 = d.chosen.offsets[p + 1];
      const index_t r0 = d.rejected.offsets[p], r1 = d.rejected.offsets[p + 1];
      const double len_c = std::max(nv::mask_weight(d.chosen.mask, c0, c1), 1.0);
      const double len_r = std::max(nv::mask_weight(d.rejected.mask, r0, r1), 1.0);
      const double sc = nv::score(d.chosen.logprobs, d.chosen.mask, c0, c1, false) -
                        nv::score(ref_c, d.chosen.mask, c0, c1, false);
      const double sr = nv::score(d.rejected.logprobs, d.rejected.mask, r0, r1, false) -
                        nv::score(ref_r, d.rejected.mask, r0, r1, false);
      trl += -nv::logsig(beta * (sc / len_c - sr / len_r));
    }
    trl /= static_cast<double>(d.pairs());
    d.chosen.reference = pt::loss::sequence_scores<seq::mean>(
        std::span<const double>(ref_c), pt::token_batch{d.chosen.offsets, d.chosen.mask});
    d.rejected.reference = pt::loss::sequence_scores<seq::mean>(
        std::span<const double>(ref_r), pt::token_batch{d.rejected.offsets, d.rejected.mask});
    const auto r =
        algo::dpo_length_normalized::compute(d.inputs(), pt::pref::presets::open_instruct);
    EXPECT_NEAR(r.loss, trl, 1e-12 * (1 + trl));
  }
}

// TRL IPO length-normalises (algo::ipo); OpenRLHF IPO uses sums (algo::ipo_sum).
TEST(PreferenceCompose, IpoPresetsMatchTrlAndOpenRlhf) {
  std::mt19937_64 rng(7);
  pair_data d = make_data(rng, 5, 6, false);
  const double beta = 0.1;
  double trl = 0, openrlhf = 0;
  std::vector<double> mean_c, mean_r, sum_c, sum_r;
  std::uniform_real_distribution<double> shift(-1.0, 1.0);
  for (index_t p = 0; p < d.pairs(); ++p) {
    const index_t c0 = d.chosen.offsets[p], c1 = d.chosen.offsets[p + 1];
    const index_t r0 = d.rejected.offsets[p], r1 = d.rejected.offsets[p + 1];
    // reference sums, and their length-normalised values
    const double len_c = std::max(nv::mask_weight(d.chosen.mask, c0, c1), 1.0);
    const double len_r = std::max(nv::mask_weight(d.rejected.mask, r0, r1), 1.0);
    const double rc = nv::score(d.chosen.logprobs, d.chosen.mask, c0, c1, false) + shift(rng);
    const double rr = nv::score(d.rejected.logprobs, d.rejected.mask, r0, r1, false) + shift(rng);
    sum_c.push_back(rc);
    sum_r.push_back(rr);
    mean_c.push_back(rc / len_c);
    mean_r.push_back(rr / len_r);
    const double sc = nv::score(d.chosen.logprobs, d.chosen.mask, c0, c1, false) - rc;
    const double sr = nv::score(d.rejected.logprobs, d.rejected.mask, r0, r1, false) - rr;
    const double g_trl = (sc / len_c - sr / len_r) - 1 / (2 * beta);
    const double g_orl = (sc - sr) - 1 / (2 * beta);
    trl += g_trl * g_trl;
    openrlhf += g_orl * g_orl;
  }
  trl /= static_cast<double>(d.pairs());
  openrlhf /= static_cast<double>(d.pairs());
  d.chosen.reference = mean_c;
  d.rejected.reference = mean_r;
  EXPECT_NEAR(algo::ipo::compute(d.inputs(), {.beta = beta}).loss, trl, 1e-12 * trl);
  d.chosen.reference = sum_c;
  d.rejected.reference = sum_r;
  EXPECT_NEAR(algo::ipo_sum::compute(d.inputs(), {.beta = beta}).loss, openrlhf, 1e-12 * openrlhf);
}

// SimPO: no reference, token-mean scores, −logσ(β(ā_c − ā_r) − γ); open-instruct's γ = β·ratio.
TEST(PreferenceCompose, SimpoIsReferenceFreeMeanWithMargin) {
  std::mt19937_64 rng(9);
  pair_data d = make_data(rng, 5, 6, true);
  using simpo_options = algo::simpo::options_type;
  for (const simpo_options& o :
       {simpo_options{{.beta = 2.0}, {.gamma = 1.0}}, pref::presets::open_instruct_simpo(),
        simpo_options{{.beta = 0.1, .label_smoothing = 0.1}, {.gamma = 0.5}}}) {
    double want = 0;
    for (index_t p = 0; p < d.pairs(); ++p) {
      const double ac = naive_score(d.chosen, p, true);
      const double ar = naive_score(d.rejected, p, true);
      const double u = o.beta * (ac - ar) - o.link.gamma;
      want += -(1 - o.label_smoothing) * nv::logsig(u) - o.label_smoothing * nv::logsig(-u);
    }
    want /= static_cast<double>(d.pairs());
    std::vector<double> rewards(static_cast<std::size_t>(d.pairs()));
    const auto r = algo::simpo::compute(d.inputs(false), o,
                                        preference_outputs<double>{.chosen_rewards = rewards});
    EXPECT_NEAR(r.loss, want, 1e-12 * want);
    // Logged rewards are β·ā (TRL CPO).
    EXPECT_NEAR(rewards[0],
                o.beta * nv::score(d.chosen.logprobs, d.chosen.mask, 0, d.chosen.offsets[1], true),
                1e-14);
    check_gradient<algo::simpo>(d, o, false);
  }
  // open-instruct defaults: β = 5, γ = 1.5.
  EXPECT_EQ(pref::presets::open_instruct_simpo().beta, 5.0);
  EXPECT_DOUBLE_EQ(pref::presets::open_instruct_simpo().link.gamma, 1.5);
}

// Llama 3 DPO + 0.2·NLL with NLL = token mean of −ℓ over all chosen completion tokens (TRL RPO);
// OpenRLHF's NLL = mean over chosen rows of the per-row token mean.
TEST(PreferenceCompose, DpoPlusNllMatchesLlama3AndOpenRlhf) {
  std::mt19937_64 rng(13);
  pair_data d = make_data(rng, 5, 6, true);
  set_reference(d, rng, false);
  const preference_options o = pref::presets::llama3_dpo_nll;
  const double dpo = naive_loss(nv::sigmoid, d, o, false, true);
  double tok_sum = 0, tok_w = 0, row_means = 0;
  for (index_t p = 0; p < d.pairs(); ++p) {
    const index_t c0 = d.chosen.offsets[p], c1 = d.chosen.offsets[p + 1];
    tok_sum += -nv::score(d.chosen.logprobs, d.chosen.mask, c0, c1, false);
    tok_w += nv::mask_weight(d.chosen.mask, c0, c1);
    row_means += -nv::score(d.chosen.logprobs, d.chosen.mask, c0, c1, true);
  }
  const double nll_tok = tok_sum / tok_w;
  const double nll_row = row_means / static_cast<double>(d.pairs());

  const auto a = algo::dpo_nll::compute(d.inputs(), o);
  EXPECT_NEAR(a.preference_loss, dpo, 1e-13);
  EXPECT_NEAR(a.nll, nll_tok, 1e-13);
  EXPECT_NEAR(a.loss, dpo + 0.2 * nll_tok, 1e-13);
  check_gradient<algo::dpo_nll>(d, o);

  const preference_options orl{.beta = 0.1, .nll_coef = 0.7};
  const auto b = algo::dpo_nll_sequence_mean::compute(d.inputs(), orl);
  EXPECT_NEAR(b.nll, nll_row, 1e-13);
  EXPECT_NEAR(b.loss, dpo + 0.7 * nll_row, 1e-13);
  check_gradient<algo::dpo_nll_sequence_mean>(d, orl);

  // nll_coef = 0 leaves plain DPO.
  EXPECT_NEAR(algo::dpo_nll::compute(d.inputs(), {.nll_coef = 0.0}).loss,
              algo::dpo::compute(d.inputs(), {}).loss, 1e-15);
}

// NaN behind zero masks never reaches the results; empty sequences score 0 under seq::mean and
// seq::sum; a batch of 0 pairs gives 0.
TEST(PreferenceCompose, MasksEmptySequencesAndEmptyBatches) {
  pair_data d;
  // pair 0: chosen empty, rejected fully masked (NaN behind the mask); pair 1: normal.
  d.chosen.offsets = {0, 0, 2};
  d.chosen.mask = {1, 0};
  d.chosen.logprobs = {-0.5, kNaN};
  d.rejected.offsets = {0, 2, 3};
  d.rejected.mask = {0, 0, 1};
  d.rejected.logprobs = {kNaN, kNaN, -2.0};
  d.chosen.reference = {-0.25, -1.0};
  d.rejected.reference = {0.5, -1.0};
  const preference_options o{.beta = 0.5};
  std::vector<double> gc(2, kNaN), gr(3, kNaN), losses(2);
  const auto r = algo::dpo_length_normalized::compute(d.inputs(), o,
                                                      preference_outputs<double>{gc, gr, losses});
  // pair 0: Δc = 0 − (−0.25), Δr = 0 − 0.5; pair 1: Δc = −0.5 + 1, Δr = −2 + 1.
  EXPECT_NEAR(losses[0], -nv::logsig(0.5 * (0.25 + 0.5)), 1e-15);
  EXPECT_NEAR(losses[1], -nv::logsig(0.5 * (0.5 + 1.0)), 1e-15);
  EXPECT_NEAR(r.loss, 0.5 * (losses[0] + losses[1]), 1e-15);
  EXPECT_EQ(gc[1], 0.0);
  EXPECT_EQ(gr[0], 0.0);
  EXPECT_EQ(gr[1], 0.0);
  EXPECT_TRUE(std::isfinite(gc[0]) && std::isfinite(gr[2]));
  EXPECT_NE(gc[0], 0.0);

  const pt::token_batch c{d.chosen.offsets, d.chosen.mask};
  const pt::token_batch rj{d.rejected.offsets, d.rejected.mask};
  const std::span<const double> cl(d.chosen.logprobs), rl(d.rejected.logprobs);
  EXPECT_EQ(pt::loss::sequence_scores<seq::mean>(cl, c)[0], 0.0);
  EXPECT_EQ(pt::loss::sequence_scores<seq::sum>(cl, c)[0], 0.0);
  EXPECT_EQ(pt::loss::sequence_scores<seq::mean>(rl, rj)[0], 0.0);
  EXPECT_EQ(pt::loss::sequence_scores<seq::mean>(rl, rj)[1], -2.0);

  // Zero pairs: loss 0 with the local normaliser, and nothing to write.
  pair_data none;
  const auto z = algo::dpo_nll::compute(none.inputs(), {});
  EXPECT_EQ(z.loss, 0.0);
  EXPECT_EQ(z.reward_accuracy, 0.0);
}

// Pairs split over two calls with the global normalisers add up to the full batch, for the loss
// and for every gradient, to 1e-12.
template <class Comp>
void check_micro_batches(const pair_data& d, const typename Comp::options_type& o, index_t split) {
  auto sub = [&](index_t p0, index_t p1) {
    pair_data s;
    for (int k = 0; k < 2; ++k) {
      const side& from = k == 0 ? d.chosen : d.rejected;
      side& to = k == 0 ? s.chosen : s.rejected;
      const index_t t0 = from.offsets[p0];
      for (index_t p = p0; p < p1; ++p) to.offsets.push_back(from.offsets[p + 1] - t0);
      to.mask.assign(from.mask.begin() + t0, from.mask.begin() + from.offsets[p1]);
      to.logprobs.assign(from.logprobs.begin() + t0, from.logprobs.begin() + from.offsets[p1]);
      to.reference.assign(from.reference.begin() + p0, from.reference.begin() + p1);
    }
    return s;
  };
  const index_t nc = static_cast<index_t>(d.chosen.logprobs.size());
  const index_t nr = static_cast<index_t>(d.rejected.logprobs.size());
  std::vector<double> gc(nc), gr(nr);
  const auto full = Comp::compute(d.inputs(), o, preference_outputs<double>{gc, gr});
  const preference_normalizer global{.pairs = static_cast<double>(d.pairs()),
                                     .chosen_tokens = nv::mask_weight(d.chosen.mask, 0, nc)};
  double total = 0;
  std::vector<double> gc_split, gr_split;
  for (auto [p0, p1] : {std::pair<index_t, index_t>{0, split}, {split, d.pairs()}}) {
    const pair_data s = sub(p0, p1);
    std::vector<double> a(s.chosen.logprobs.size()), b(s.rejected.logprobs.size());
    total += Comp::compute(s.inputs(), o, preference_outputs<double>{a, b}, global).loss;
    gc_split.insert(gc_split.end(), a.begin(), a.end());
    gr_split.insert(gr_split.end(), b.begin(), b.end());
  }
  EXPECT_NEAR(total, full.loss, 1e-12) << Comp::name();
  ASSERT_EQ(gc_split.size(), gc.size());
  ASSERT_EQ(gr_split.size(), gr.size());
  for (std::size_t t = 0; t < gc.size(); ++t) EXPECT_NEAR(gc_split[t], gc[t], 1e-12) << t;
  for (std::size_t t = 0; t < gr.size(); ++t) EXPECT_NEAR(gr_split[t], gr[t], 1e-12) << t;
}

TEST(PreferenceCompose, MicroBatchesAddUpToTheFullBatch) {
  std::mt19937_64 rng(17);
  pair_data d = make_data(rng, 9, 6, true);
  set_reference(d, rng, false);
  for (index_t split : {1, 4, 8}) {
    check_micro_batches<algo::dpo>(d, {.beta = 0.1}, split);
    check_micro_batches<algo::dpo_nll>(d, {.beta = 0.1, .nll_coef = 0.2}, split);
    check_micro_batches<algo::dpo_nll_sequence_mean>(d, {.beta = 0.1, .nll_coef = 0.5}, split);
    check_micro_batches<algo::discopop>(d, {{.beta = 0.5}}, split);
  }
  set_reference(d, rng, true);
  check_micro_batches<algo::ipo>(d, {.beta = 0.5}, 3);
  // An explicit normaliser equal to the local counts changes nothing.
  const auto a = algo::dpo_nll::compute(d.inputs(), {});
  const auto b = algo::dpo_nll::compute(
      d.inputs(), {}, {},
      {.pairs = 9, .chosen_tokens = nv::mask_weight(d.chosen.mask, 0, d.chosen.mask.size())});
  EXPECT_DOUBLE_EQ(a.loss, b.loss);
  // A constant normaliser divides the pair sum by it.
  const auto c = algo::dpo::compute(d.inputs(), {}, {}, {.pairs = 18});
  EXPECT_NEAR(c.loss, 0.5 * algo::dpo::compute(d.inputs(), {}).loss, 1e-15);
}

TEST(PreferenceCompose, PerPairOutputsAndStatistics) {
  std::mt19937_64 rng(19);
  pair_data d = make_data(rng, 6, 5, true);
  set_reference(d, rng, false);
  const preference_options o{.beta = 0.2};
  const auto P = static_cast<std::size_t>(d.pairs());
  std::vector<double> losses(P), rc(P), rr(P);
  const auto r =
      algo::nca_pair::compute(d.inputs(), o, preference_outputs<double>{{}, {}, losses, rc, rr});
  double sum = 0, mc = 0, mr = 0, acc = 0;
  for (std::size_t p = 0; p < P; ++p) {
    const index_t c0 = d.chosen.offsets[p], c1 = d.chosen.offsets[p + 1];
    const index_t r0 = d.rejected.offsets[p], r1 = d.rejected.offsets[p + 1];
    const double dc =
        nv::score(d.chosen.logprobs, d.chosen.mask, c0, c1, false) - d.chosen.reference[p];
    const double dr =
        nv::score(d.rejected.logprobs, d.rejected.mask, r0, r1, false) - d.rejected.reference[p];
    EXPECT_NEAR(losses[p], nv::nca_pair(dc, dr, naive_params(o)), 1e-13);
    EXPECT_NEAR(rc[p], 0.2 * dc, 1e-14);
    EXPECT_NEAR(rr[p], 0.2 * dr, 1e-14);
    sum += losses[p];
    mc += 0.2 * dc;
    mr += 0.2 * dr;
    acc += dc > dr ? 1 : 0;
  }
  const double n = static_cast<double>(P);
  EXPECT_NEAR(r.loss, sum / n, 1e-14);
  EXPECT_NEAR(r.chosen_reward, mc / n, 1e-14);
  EXPECT_NEAR(r.rejected_reward, mr / n, 1e-14);
  EXPECT_NEAR(r.reward_margin, (mc - mr) / n, 1e-14);
  EXPECT_DOUBLE_EQ(r.reward_accuracy, acc / n);
}

TEST(PreferenceCompose, FloatInputsAgreeWithDouble) {
  std::mt19937_64 rng(23);
  pair_data d = make_data(rng, 6, 8, true);
  set_reference(d, rng, true);
  const float_inputs fin(d);
  // The double run sees the same rounded values.
  for (std::size_t i = 0; i < fin.chosen.size(); ++i) d.chosen.logprobs[i] = fin.chosen[i];
  for (std::size_t i = 0; i < fin.rejected.size(); ++i) d.rejected.logprobs[i] = fin.rejected[i];
  for (std::size_t i = 0; i < fin.reference_chosen.size(); ++i)
    d.chosen.reference[i] = fin.reference_chosen[i];
  for (std::size_t i = 0; i < fin.reference_rejected.size(); ++i)
    d.rejected.reference[i] = fin.reference_rejected[i];
  std::vector<float> gcf(fin.chosen.size()), grf(fin.rejected.size());
  std::vector<double> gc(fin.chosen.size()), gr(fin.rejected.size());
  const preference_options o{.beta = 5.0};
  const auto f =
      algo::dpo_length_normalized::compute(fin.in, o, preference_outputs<float>{gcf, grf});
  const auto x =
      algo::dpo_length_normalized::compute(d.inputs(), o, preference_outputs<double>{gc, gr});
  EXPECT_NEAR(f.loss, x.loss, 1e-12);  // both reduce in double
  for (std::size_t t = 0; t < gc.size(); ++t)
    EXPECT_NEAR(gcf[t], gc[t], 1e-7 * (1 + std::fabs(gc[t])));
  for (std::size_t t = 0; t < gr.size(); ++t)
    EXPECT_NEAR(grf[t], gr[t], 1e-7 * (1 + std::fabs(gr[t])));
}

TEST(PreferenceCompose, ExtremeLogProbsGiveFiniteResults) {
  std::mt19937_64 rng(29);
  pair_data d = make_data(rng, 4, 6, false, /*logprob_scale=*/3e3);  // sums reach −1e5
  // References far from the policy: |Δ| up to 1e5.
  for (index_t p = 0; p < d.pairs(); ++p) {
    d.chosen.reference[p] = p % 2 ? 1e4 : -1e4;
    d.rejected.reference[p] = p % 2 ? -1e4 : 1e4;
  }
  std::vector<double> gc(d.chosen.logprobs.size()), gr(d.rejected.logprobs.size());
  const preference_outputs<double> out{gc, gr};
  auto finite = [&](const pt::loss::preference_result& r, const char* what) {
    EXPECT_TRUE(std::isfinite(r.loss)) << what;
    for (double g : gc) EXPECT_TRUE(std::isfinite(g)) << what;
    for (double g : gr) EXPECT_TRUE(std::isfinite(g)) << what;
  };
  finite(algo::dpo::compute(d.inputs(), {.beta = 10.0}, out), "dpo");
  finite(algo::cdpo::compute(d.inputs(), pref::presets::cdpo(0.1, 10.0), out), "cdpo");
  finite(algo::robust_dpo::compute(d.inputs(), {.beta = 10.0, .label_smoothing = 0.2}, out),
         "robust");
  finite(algo::exo_pair::compute(d.inputs(), pref::presets::exo, out), "exo");
  finite(algo::discopop::compute(d.inputs(), {{.beta = 10.0}}, out), "discopop");
  finite(algo::apo_down::compute(d.inputs(), {.beta = 10.0}, out), "apo_down");
  finite(algo::dpo_nll::compute(d.inputs(), {.beta = 10.0}, out), "dpo_nll");
  finite(algo::simpo::compute(d.inputs(false), {{.beta = 10.0}}, out), "simpo");
}

// Every validation error throws posttrain::error and leaves every output untouched.
TEST(PreferenceCompose, ValidationErrorsLeaveOutputsUntouched) {
  std::mt19937_64 rng(31);
  const pair_data good = make_data(rng, 3, 4, true);
  const double sentinel = 12345.0;
  const auto P = static_cast<std::size_t>(good.pairs());
  std::vector<double> gc(good.chosen.logprobs.size(), sentinel);
  std::vector<double> gr(good.rejected.logprobs.size(), sentinel);
  std::vector<double> losses(P, sentinel), rc(P, sentinel), rr(P, sentinel);
  const preference_outputs<double> out{gc, gr, losses, rc, rr};
  auto untouched = [&] {
    for (const auto* v : {&gc, &gr, &losses, &rc, &rr})
      for (double x : *v) ASSERT_EQ(x, sentinel);
  };
  ASSERT_NO_THROW(algo::dpo::compute(good.inputs(), {}, preference_outputs<double>{}));

  auto expect_error = [&](const std::function<void()>& call, const std::string& needle) {
    try {
      call();
      ADD_FAILURE() << "no error, expected one mentioning " << needle;
    } catch (const pt::error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    untouched();
  };
  auto with = [&](const std::function<void(pair_data&)>& edit) {
    pair_data d = good;
    edit(d);
    return d;
  };
  auto dpo = [&](const pair_data& d, const preference_options& o = {},
                 const preference_normalizer& n = {}) {
    return [=, &out] { algo::dpo::compute(d.inputs(), o, out, n); };
  };

  expect_error(dpo(with([](pair_data& d) { d.chosen.offsets[1] = 100; })), "seq_offsets");
  expect_error(dpo(with([](pair_data& d) { d.chosen.offsets[0] = 1; })), "seq_offsets");
  expect_error(
      dpo(with([](pair_data& d) { d.rejected.offsets.push_back(d.rejected.offsets.back()); })),
      "one rejected sequence per chosen");
  expect_error(dpo(with([](pair_data& d) { d.chosen.mask[0] = -1.0f; })), "mask");
  expect_error(dpo(with([](pair_data& d) { d.chosen.mask.pop_back(); })), "mask");
  expect_error(dpo(with([](pair_data& d) { d.chosen.logprobs.push_back(0); })), "chosen_logprobs");
  expect_error(dpo(with([](pair_data& d) { d.rejected.logprobs.pop_back(); })),
               "rejected_logprobs");
  expect_error(dpo(with([](pair_data& d) { d.chosen.reference.pop_back(); })), "reference_chosen");
  expect_error(dpo(with([](pair_data& d) { d.rejected.reference[0] = kNaN; })),
               "reference_rejected");
  expect_error(dpo(good, {.beta = 0.0}), "options.beta");
  expect_error(dpo(good, {.beta = kNaN}), "options.beta");
  expect_error(dpo(good, {.label_smoothing = 0.7}), "options.label_smoothing");
  expect_error(dpo(good, {}, {.pairs = -1}), "normalizer.pairs");
  expect_error(dpo(good, {}, {.chosen_tokens = kNaN}), "normalizer.chosen_tokens");
  expect_error([&] { algo::robust_dpo::compute(good.inputs(), {.label_smoothing = 0.5}, out); },
               "options.label_smoothing");
  expect_error([&] { algo::exo_pair::compute(good.inputs(), {}, out); }, "options.label_smoothing");
  expect_error([&] { algo::discopop::compute(good.inputs(), {{}, {.tau = 0.0}}, out); },
               "options.link.tau");
  expect_error([&] { algo::simpo::compute(good.inputs(), {}, out); }, "reference_free");
  expect_error([&] { algo::simpo::compute(good.inputs(false), {{}, {.gamma = kNaN}}, out); },
               "options.link.gamma");
  expect_error([&] { algo::dpo_nll::compute(good.inputs(), {.nll_coef = -0.1}, out); },
               "options.nll_coef");
  // Output sizes: each wrong-sized output is rejected before anything is written.
  std::vector<double> short_grad(gc.size() - 1), short_pairs(P - 1);
  expect_error(
      [&] {
        algo::dpo::compute(good.inputs(), {},
                           preference_outputs<double>{short_grad, gr, losses, rc, rr});
      },
      "chosen_grad");
  expect_error(
      [&] {
        algo::dpo::compute(good.inputs(), {},
                           preference_outputs<double>{gc, short_grad, losses, rc, rr});
      },
      "rejected_grad");
  expect_error(
      [&] {
        algo::dpo::compute(good.inputs(), {},
                           preference_outputs<double>{gc, gr, short_pairs, rc, rr});
      },
      "pair_losses");
  expect_error(
      [&] {
        algo::dpo::compute(good.inputs(), {},
                           preference_outputs<double>{gc, gr, losses, short_pairs, rr});
      },
      "chosen_rewards");
  expect_error(
      [&] {
        algo::dpo::compute(good.inputs(), {},
                           preference_outputs<double>{gc, gr, losses, rc, short_pairs});
      },
      "rejected_rewards");
  // The message names the composition.
  expect_error(dpo(good, {.beta = -1}), "loss::preference<sigmoid, sum>");
  // sequence_scores validates too.
  std::vector<double> scores(1);
  EXPECT_THROW(
      pt::loss::sequence_scores<seq::mean>(std::span<const double>(good.chosen.logprobs),
                                           pt::token_batch{good.chosen.offsets, good.chosen.mask},
                                           std::span<double>(scores)),
      pt::error);
}

// The example of docs/loss/preference.md, verbatim apart from the data.
TEST(PreferenceCompose, DocumentationExample) {
  const std::vector<index_t> chosen_offsets{0, 2, 3}, rejected_offsets{0, 1, 3};
  const std::vector<float> chosen_mask{1, 1, 1}, rejected_mask{1, 0, 1};
  const std::vector<float> lc{-0.5f, -1.0f, -0.25f}, lr{-2.0f, NAN, -1.0f};
  const std::vector<float> ref_c{-1.0f, -0.5f}, ref_r{-1.5f, -1.5f};
  std::vector<float> gc(3), gr(3);

  pt::loss::preference_inputs<float> in{.batch = {.chosen = {chosen_offsets, chosen_mask},
                                                  .rejected = {rejected_offsets, rejected_mask}},
                                        .chosen_logprobs = lc,
                                        .rejected_logprobs = lr,
                                        .reference_chosen = ref_c,
                                        .reference_rejected = ref_r};
  pt::loss::preference_outputs<float> out{.chosen_grad = gc, .rejected_grad = gr};
  auto r = pt::algo::dpo::compute(in, {.beta = 0.1}, out);
  // z_0 = (−1.5 + 1) − (−2 + 1.5) = 0, z_1 = (−0.25 + 0.5) − (−1 + 1.5) = −0.25
  const double want = 0.5 * (std::log(2.0) - nv::logsig(-0.025));
  EXPECT_NEAR(r.loss, want, 1e-7);
  EXPECT_EQ(gr[1], 0.0f);
  EXPECT_EQ(r.reward_accuracy, 0.0);
}
