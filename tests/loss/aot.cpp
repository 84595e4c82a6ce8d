// Tests of AOT and AOT-unpaired (pref::aot, pref::aot_unpaired; algo::aot, algo::aot_unpaired):
// the batch sort against a naive float64 sort-then-sum, ∂loss/∂ℓ through the permutation by
// central differences, ∂loss/∂ρ, per-rank outputs, permutation invariance, ties (stable order,
// one-sided derivatives), groups of one (= DPO), empty batches, NaN keys, reference-free keys,
// rejection of pair weights, and option validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "loss/preference_naive.hpp"
#include "loss/preference_testing.hpp"

namespace pt = posttrain;
namespace pref = posttrain::pref;
namespace seq = posttrain::seq;
namespace algo = posttrain::algo;
namespace nv = preference_naive;
namespace tst = preference_testing;
using pt::index_t;
using pt::loss::preference_options;
using pt::loss::preference_outputs;

namespace {

struct keys {
  std::vector<double> a, b;
};

// The sort keys of TRL's aot (margins) or aot_unpaired (log-ratios), naively.
keys naive_keys(const tst::pair_data& d, bool unpaired, bool with_reference = true) {
  keys k;
  for (index_t p = 0; p < d.pairs(); ++p) {
    const double pc = tst::naive_score(d.chosen, p);
    const double pr = tst::naive_score(d.rejected, p);
    const double rc = with_reference ? d.chosen.reference[p] : 0.0;
    const double rr = with_reference ? d.rejected.reference[p] : 0.0;
    if (unpaired) {
      k.a.push_back(pc - rc);
      k.b.push_back(pr - rr);
    } else {
      k.a.push_back(pc - pr);
      k.b.push_back(rc - rr);
    }
  }
  return k;
}

double naive_aot(const tst::pair_data& d, bool unpaired, const preference_options& o,
                 bool with_reference = true) {
  const keys k = naive_keys(d, unpaired, with_reference);
  return nv::aot_sum(k.a, k.b, o.beta, o.label_smoothing) / static_cast<double>(d.pairs());
}

template <class Comp>
void check_random(bool unpaired, const preference_options& o, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(Comp::name() + " round " + std::to_string(round));
    const tst::pair_data d = tst::make_data(rng, 6, 0, 5, round == 2);
    const double want = naive_aot(d, unpaired, o);
    EXPECT_NEAR(Comp::compute(d.inputs(), o).loss, want, 1e-13 * (1 + std::fabs(want)));
    tst::check_gradient<Comp>(d, o, true, 1e-7);
  }
}

}  // namespace

TEST(Aot, MatchesNaiveSortAndFiniteDifferences) {
  check_random<algo::aot>(false, {.beta = 0.5}, 1);
  check_random<algo::aot>(false, {.beta = 0.3, .label_smoothing = 0.2}, 2);
  check_random<algo::aot_unpaired>(true, {.beta = 0.5}, 3);
  check_random<algo::aot_unpaired>(true, {.beta = 0.3, .label_smoothing = 0.2}, 4);
  // With token-mean scores the keys are means; the sort is the same.
  using aot_mean = pt::loss::preference<pref::aot, seq::mean>;
  std::mt19937_64 rng(5);
  tst::check_gradient<aot_mean>(tst::make_data(rng, 5, 1, 5, true), {.beta = 2.0});
}

// aot_unpaired's keys are Δc and Δr: ∂loss/∂ρ = −∂loss/∂π. aot's reference margins are constants
// of the sort: ∂loss/∂ρ by central differences equals the naive one.
TEST(Aot, ReferenceDerivatives) {
  const tst::pair_data one = tst::single_tokens({-1.0, -2.5, -0.3, -1.7}, {-2.0, -0.7, -1.1, -0.2},
                                                {-1.4, -2.0, -1.0, -0.9}, {-1.2, -1.5, -0.2, -2.2});
  tst::check_reference_gradient<algo::aot_unpaired>(one, {.beta = 0.8});
  tst::check_gradient<algo::aot>(one, {.beta = 0.8});
  const preference_options o{.beta = 0.8, .label_smoothing = 0.1};
  tst::pair_data d = one;
  const double h = 1e-6;
  for (int s = 0; s < 2; ++s)
    for (std::size_t p = 0; p < 4; ++p) {
      std::vector<double>& ref = s == 0 ? d.chosen.reference : d.rejected.reference;
      const double saved = ref[p];
      ref[p] = saved + h;
      const double up = algo::aot::compute(d.inputs(), o).loss, nup = naive_aot(d, false, o);
      ref[p] = saved - h;
      const double dn = algo::aot::compute(d.inputs(), o).loss, ndn = naive_aot(d, false, o);
      ref[p] = saved;
      EXPECT_NEAR((up - dn) / (2 * h), (nup - ndn) / (2 * h), 1e-8);
      EXPECT_NE(up, dn);  // the reference margins do move the loss
    }
}

// pair_losses are per rank; permuting the pairs changes neither the loss nor the per-rank losses,
// and permutes the gradients with the pairs.
TEST(Aot, PerRankOutputsAndPermutationInvariance) {
  const tst::pair_data d =
      tst::single_tokens({-1.0, -2.5, -0.3, -1.7, -0.9}, {-2.0, -0.7, -1.1, -0.2, -3.0},
                         {-1.4, -2.0, -1.0, -0.9, -1.0}, {-1.2, -1.5, -0.2, -2.2, -2.5});
  const preference_options o{.beta = 0.6, .label_smoothing = 0.05};
  for (bool unpaired : {false, true}) {
    auto run = [&](const tst::pair_data& x, std::vector<double>& losses, std::vector<double>& gc,
                   std::vector<double>& gr) {
      const preference_outputs<double> out{gc, gr, losses};
      return unpaired ? algo::aot_unpaired::compute(x.inputs(), o, out).loss
                      : algo::aot::compute(x.inputs(), o, out).loss;
    };
    std::vector<double> l(5), gc(5), gr(5);
    const double loss = run(d, l, gc, gr);
    keys k = naive_keys(d, unpaired);
    std::sort(k.a.begin(), k.a.end());
    std::sort(k.b.begin(), k.b.end());
    for (std::size_t r = 0; r < 5; ++r)
      EXPECT_NEAR(l[r], nv::smoothed(o.beta * (k.a[r] - k.b[r]), o.label_smoothing), 1e-14);
    EXPECT_NEAR(loss, std::accumulate(l.begin(), l.end(), 0.0) / 5, 1e-15);

    const std::vector<std::size_t> perm{3, 0, 4, 1, 2};
    tst::pair_data q = d;
    for (std::size_t i = 0; i < 5; ++i) {
      q.chosen.logprobs[i] = d.chosen.logprobs[perm[i]];
      q.rejected.logprobs[i] = d.rejected.logprobs[perm[i]];
      q.chosen.reference[i] = d.chosen.reference[perm[i]];
      q.rejected.reference[i] = d.rejected.reference[perm[i]];
    }
    std::vector<double> l2(5), gc2(5), gr2(5);
    EXPECT_NEAR(run(q, l2, gc2, gr2), loss, 1e-15);
    for (std::size_t i = 0; i < 5; ++i) {
      EXPECT_EQ(l2[i], l[i]);
      EXPECT_NEAR(gc2[i], gc[perm[i]], 1e-16);
      EXPECT_NEAR(gr2[i], gr[perm[i]], 1e-16);
    }
  }
}

// Ties: the stable sort keeps pair order, so the earlier pair of a tie takes the lower rank; its
// derivative is the backward (left) difference and the later pair's the forward one. Moving the
// tied keys together has the two-sided derivative of their sum. Results are deterministic.
TEST(Aot, TiesUseTheStableOrder) {
  // aot_unpaired, Δc tied between pairs 0 and 1 (−0.5), Δr distinct.
  const tst::pair_data d = tst::single_tokens({-1.0, -2.0, -0.4}, {-1.0, -3.0, -2.0},
                                              {-0.5, -1.5, 0.3}, {0.0, -1.0, -1.3});
  const preference_options o{.beta = 1.0};
  std::vector<double> gc(3), gr(3), gc2(3), gr2(3);
  const double loss =
      algo::aot_unpaired::compute(d.inputs(), o, preference_outputs<double>{gc, gr}).loss;
  algo::aot_unpaired::compute(d.inputs(), o, preference_outputs<double>{gc2, gr2});
  EXPECT_EQ(gc, gc2);
  EXPECT_EQ(gr, gr2);
  const double h = 1e-7;
  tst::pair_data x = d;
  x.chosen.logprobs[0] -= h;
  const double left0 = (loss - algo::aot_unpaired::compute(x.inputs(), o).loss) / h;
  x = d;
  x.chosen.logprobs[1] += h;
  const double right1 = (algo::aot_unpaired::compute(x.inputs(), o).loss - loss) / h;
  EXPECT_NEAR(gc[0], left0, 1e-6);
  EXPECT_NEAR(gc[1], right1, 1e-6);
  EXPECT_NE(gc[0], gc[1]);  // different ranks, different slopes
  x = d;
  x.chosen.logprobs[0] += h;
  x.chosen.logprobs[1] += h;
  tst::pair_data y = d;
  y.chosen.logprobs[0] -= h;
  y.chosen.logprobs[1] -= h;
  const double both = (algo::aot_unpaired::compute(x.inputs(), o).loss -
                       algo::aot_unpaired::compute(y.inputs(), o).loss) /
                      (2 * h);
  EXPECT_NEAR(gc[0] + gc[1], both, 1e-6);
}

// One pair: aot is DPO on z (sorting one key is the identity); aot_unpaired too. No pairs: 0.
TEST(Aot, GroupsOfOneEmptyBatchesAndNaN) {
  const tst::pair_data one = tst::single_tokens({-1.0}, {-2.0}, {-1.5}, {-1.2});
  const preference_options o{.beta = 0.4, .label_smoothing = 0.1};
  const double dpo = algo::dpo::compute(one.inputs(), o).loss;
  EXPECT_NEAR(algo::aot::compute(one.inputs(), o).loss, dpo, 1e-15);
  EXPECT_NEAR(algo::aot_unpaired::compute(one.inputs(), o).loss, dpo, 1e-15);
  const tst::pair_data none;
  EXPECT_EQ(algo::aot::compute(none.inputs(), o).loss, 0.0);
  // Equal policy and reference margins everywhere: log 2 per rank.
  const tst::pair_data eq =
      tst::single_tokens({-1.0, -2.0}, {-2.0, -1.0}, {-1.0, -2.0}, {-2.0, -1.0});
  EXPECT_NEAR(algo::aot::compute(eq.inputs(), {}).loss, std::log(2.0), 1e-15);
  // Reference-free keys: b = 0.
  using aot_free = pt::loss::preference<pref::aot, seq::sum, pref::reference_free>;
  std::mt19937_64 rng(8);
  const tst::pair_data d = tst::make_data(rng, 5, 1, 4, false);
  EXPECT_NEAR(aot_free::compute(d.inputs(false), o).loss, naive_aot(d, false, o, false), 1e-13);
  tst::check_gradient<aot_free>(d, o, false);
  // An unmasked NaN log-prob makes its key NaN: it sorts last (no undefined behaviour), the loss
  // is NaN.
  tst::pair_data n = one;
  n.chosen.logprobs[0] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(std::isnan(algo::aot::compute(n.inputs(), o).loss));
  // Extremes stay finite.
  const tst::pair_data big =
      tst::single_tokens({-1e5, -1.0}, {-1.0, -1e5}, {1e4, -1e4}, {-1e4, 1e4});
  std::vector<double> gc(2), gr(2);
  EXPECT_TRUE(std::isfinite(
      algo::aot::compute(big.inputs(), {.beta = 10.0}, preference_outputs<double>{gc, gr}).loss));
  for (double g : gc) EXPECT_TRUE(std::isfinite(g));
}

TEST(Aot, ValidationErrorsLeaveOutputsUntouched) {
  std::mt19937_64 rng(9);
  tst::pair_data d = tst::make_data(rng, 3, 1, 4, false);
  std::vector<double> gc(d.chosen.logprobs.size(), 5.0);
  const preference_outputs<double> out{gc};
  tst::expect_error([&] { algo::aot::compute(d.inputs(), {.beta = 0.0}, out); }, "options.beta");
  tst::expect_error([&] { algo::aot_unpaired::compute(d.inputs(), {.label_smoothing = 0.6}, out); },
                    "options.label_smoothing");
  d.weights = {1.0, 1.0, 1.0};
  tst::expect_error([&] { algo::aot::compute(d.inputs(), {}, out); }, "pair_weights");
  for (double g : gc) EXPECT_EQ(g, 5.0);
  EXPECT_EQ(algo::aot_unpaired::name(), "loss::preference<aot_unpaired, sum>");
  static_assert(algo::aot::batch_sorted && !algo::dpo::batch_sorted);
}
