// Tests of ORPO (pref::orpo composed as algo::orpo, loss/algorithms_offline.hpp): the TRL formula
// written naively in float64, ∂loss/∂ℓ for every token by central differences through the token
// means, symmetric cases (equal means → β·log 2; swapping sides), extremes (ā = −1e-12, ā = 0 /
// empty completions, very negative ā), micro-batch invariance, float inputs, validation.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "loss/preference_testing.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/loss/algorithms_offline.hpp"

namespace pt = posttrain;
namespace algo = posttrain::algo;
namespace tst = preference_testing;
using pt::index_t;
using pt::loss::preference_inputs;
using pt::loss::preference_normalizer;
using pt::loss::preference_options;
using pt::loss::preference_outputs;
using tst::pair_data;
using tst::side;

namespace {

// ORPO's log(1 − exp ā) needs ā < 0: no empty or all-padding completions.
pair_data make(std::mt19937_64& rng, int n, int max_len) {
  return tst::make_policy_data(rng, n, max_len, /*nonempty=*/true);
}

// TRL odds_ratio_loss, naive: log(1 − exp(a)) directly.
double naive_or(double ac, double ar, double beta) {
  const double lo = (ac - ar) - (std::log(1 - std::exp(ac)) - std::log(1 - std::exp(ar)));
  return beta * -std::log1p(std::exp(-lo));  // β·logσ(lo)
}

double naive(const pair_data& d, double beta, double nll_coef) {
  const index_t n = static_cast<index_t>(d.chosen.offsets.size()) - 1;
  double ors = 0, nll = 0, w = 0;
  for (index_t p = 0; p < n; ++p)
    ors +=
        naive_or(tst::naive_score(d.chosen, p, true), tst::naive_score(d.rejected, p, true), beta);
  for (std::size_t t = 0; t < d.chosen.logprobs.size(); ++t)
    if (d.chosen.mask[t] != 0) {
      nll -= d.chosen.mask[t] * d.chosen.logprobs[t];
      w += d.chosen.mask[t];
    }
  return nll_coef * nll / w - ors / static_cast<double>(n);
}

}  // namespace

TEST(Orpo, MatchesNaiveTrlFormulaAndFiniteDifferences) {
  std::mt19937_64 rng(21);
  for (double beta : {0.1, 0.7}) {
    pair_data d = make(rng, 5, 6);
    const preference_options o{.beta = beta, .nll_coef = 1.0};
    std::vector<double> gc(d.chosen.logprobs.size()), gr(d.rejected.logprobs.size());
    const auto res = algo::orpo::compute(d.inputs(), o, preference_outputs<double>{gc, gr});
    EXPECT_NEAR(res.loss, naive(d, beta, 1.0), 1e-12);
    EXPECT_NEAR(res.loss, res.nll + res.preference_loss, 1e-15);
    const double h = 1e-7;
    for (side* s : {&d.chosen, &d.rejected})
      for (std::size_t t = 0; t < s->logprobs.size(); ++t) {
        const double g = s == &d.chosen ? gc[t] : gr[t];
        if (s->mask[t] == 0) {
          EXPECT_EQ(g, 0.0);
          continue;
        }
        const double x = s->logprobs[t];
        s->logprobs[t] = x + h;
        const double up = naive(d, beta, 1.0);
        s->logprobs[t] = x - h;
        const double dn = naive(d, beta, 1.0);
        s->logprobs[t] = x;
        EXPECT_NEAR(g, (up - dn) / (2 * h), 1e-6 * (1 + std::abs(g)));
      }
  }
}

TEST(Orpo, SymmetricCases) {
  std::vector<index_t> off{0, 2};
  std::vector<float> m{1, 1};
  std::vector<double> a{-0.4, -1.2}, b{-1.2, -0.4}, far{-3.0, -5.0};
  auto run = [&](const std::vector<double>& c, const std::vector<double>& r) {
    preference_inputs<double> in;
    in.batch.chosen = {off, m};
    in.batch.rejected = {off, m};
    in.chosen_logprobs = c;
    in.rejected_logprobs = r;
    return algo::orpo::compute(in, pt::pref::presets::trl_orpo);
  };
  // Equal means: log_odds = 0, odds-ratio term β·log 2.
  EXPECT_NEAR(run(a, b).preference_loss, 0.1 * std::log(2.0), 1e-15);
  // Swapping sides: L(c, r) − L(r, c) = −β·log_odds(c, r).
  const double ac = -0.8, ar = -4.0;
  const double lo = (ac - ar) - (std::log(1 - std::exp(ac)) - std::log(1 - std::exp(ar)));
  EXPECT_NEAR(run(a, far).preference_loss - run(far, a).preference_loss, -0.1 * lo, 1e-13);
  // Total = NLL(chosen) − mean β·logσ: with nll_coef = 1 the NLL of `a` is 0.8.
  EXPECT_NEAR(run(a, far).nll, 0.8, 1e-15);
}

TEST(Orpo, ExtremesAreFinite) {
  // ā = −1e-12 (near-certain chosen), ā = 0 (empty or certain), ā very negative.
  std::vector<index_t> off{0, 1, 1, 2, 3};
  std::vector<float> m{1, 1, 1};
  for (double near : {-1e-12, 0.0, -1e-300, -1e4}) {
    std::vector<double> c{near, near, -2.0}, r{-2.0, near, near};
    std::vector<float> cf(c.begin(), c.end()), rf(r.begin(), r.end());
    std::vector<double> gc(3), gr(3);
    std::vector<float> gcf(3), grf(3);
    preference_inputs<double> in;
    in.batch.chosen = {off, m};
    in.batch.rejected = {off, m};
    in.chosen_logprobs = c;
    in.rejected_logprobs = r;
    const auto res =
        algo::orpo::compute(in, pt::pref::presets::trl_orpo, preference_outputs<double>{gc, gr});
    preference_inputs<float> inf;
    inf.batch = in.batch;
    inf.chosen_logprobs = cf;
    inf.rejected_logprobs = rf;
    const auto resf =
        algo::orpo::compute(inf, pt::pref::presets::trl_orpo, preference_outputs<float>{gcf, grf});
    EXPECT_TRUE(std::isfinite(res.loss)) << near;
    EXPECT_TRUE(std::isfinite(resf.loss)) << near;
    for (int i = 0; i < 3; ++i) {
      EXPECT_TRUE(std::isfinite(gc[i]) && std::isfinite(gr[i])) << near;
      EXPECT_TRUE(std::isfinite(gcf[i]) && std::isfinite(grf[i])) << near;
    }
  }
  // Near 0 (ā_c = −1e-6, derivative ~1e6 inside) the gradient matches central differences.
  std::vector<index_t> o1{0, 1};
  std::vector<float> m1{1};
  std::vector<double> c{-1e-6}, r{-1.0}, gc(1), gr(1);
  preference_inputs<double> in;
  in.batch.chosen = {o1, m1};
  in.batch.rejected = {o1, m1};
  in.chosen_logprobs = c;
  in.rejected_logprobs = r;
  const preference_options o{.beta = 0.5, .nll_coef = 0.0};
  algo::orpo::compute(in, o, preference_outputs<double>{gc, gr});
  const double h = 1e-10;
  c[0] = -1e-6 + h;
  const double up = algo::orpo::compute(in, o).loss;
  c[0] = -1e-6 - h;
  const double dn = algo::orpo::compute(in, o).loss;
  EXPECT_NEAR(gc[0], (up - dn) / (2 * h), 1e-5 * std::abs(gc[0]));
}

TEST(Orpo, MicroBatchInvariance) {
  std::mt19937_64 rng(22);
  const pair_data d = make(rng, 6, 5);
  const auto o = pt::pref::presets::trl_orpo;
  std::vector<double> gc(d.chosen.logprobs.size()), gr(d.rejected.logprobs.size());
  const auto full = algo::orpo::compute(d.inputs(), o, preference_outputs<double>{gc, gr});
  double tokens = 0;
  for (float w : d.chosen.mask) tokens += w;
  double sum = 0;
  std::vector<double> pc(gc.size()), pr(gr.size());
  for (const auto& range : {std::pair<int, int>{0, 2}, {2, 6}}) {
    const int b = range.first, e = range.second;  // not a structured binding: captured below
    auto slice = [&](const side& s, std::vector<index_t>& off) {
      for (int i = b; i <= e; ++i) off.push_back(s.offsets[i] - s.offsets[b]);
      return std::pair<index_t, index_t>{s.offsets[b], s.offsets[e] - s.offsets[b]};
    };
    std::vector<index_t> oc, orr;
    const auto [c0, cn] = slice(d.chosen, oc);
    const auto [r0, rn] = slice(d.rejected, orr);
    preference_inputs<double> in;
    in.batch.chosen = {oc, std::span<const float>(d.chosen.mask).subspan(c0, cn)};
    in.batch.rejected = {orr, std::span<const float>(d.rejected.mask).subspan(r0, rn)};
    in.chosen_logprobs = std::span<const double>(d.chosen.logprobs).subspan(c0, cn);
    in.rejected_logprobs = std::span<const double>(d.rejected.logprobs).subspan(r0, rn);
    sum += algo::orpo::compute(in, o,
                               preference_outputs<double>{std::span<double>(pc).subspan(c0, cn),
                                                          std::span<double>(pr).subspan(r0, rn)},
                               preference_normalizer{6, tokens})
               .loss;
  }
  EXPECT_NEAR(sum, full.loss, 1e-12);
  for (std::size_t t = 0; t < gc.size(); ++t) EXPECT_NEAR(pc[t], gc[t], 1e-15);
  for (std::size_t t = 0; t < gr.size(); ++t) EXPECT_NEAR(pr[t], gr[t], 1e-15);
}

TEST(Orpo, ValidationAndNames) {
  std::mt19937_64 rng(23);
  pair_data d = make(rng, 2, 3);
  std::vector<double> gc(d.chosen.logprobs.size(), 3.0);
  EXPECT_THROW(algo::orpo::compute(d.inputs(), {.beta = 0.0, .nll_coef = 1.0},
                                   preference_outputs<double>{gc}),
               pt::error);
  EXPECT_THROW(algo::orpo::compute(d.inputs(), {.beta = 0.1, .nll_coef = -1.0},
                                   preference_outputs<double>{gc}),
               pt::error);
  auto in = d.inputs();
  std::vector<double> ref{0, 0};
  in.reference_chosen = ref;
  in.reference_rejected = ref;
  EXPECT_THROW(algo::orpo::compute(in, pt::pref::presets::trl_orpo, preference_outputs<double>{gc}),
               pt::error);
  for (double g : gc) EXPECT_EQ(g, 3.0);
  EXPECT_EQ(algo::orpo::name(), "loss::preference<orpo, mean, reference_free, nll_token_mean>");
  EXPECT_EQ(pt::pref::presets::trl_orpo.nll_coef, 1.0);
}

// An nll_coef left unset means ORPO's 1 (TRL ORPOConfig), not the generic 0.2; explicit wins.
TEST(Orpo, UnsetNllCoefIsOne) {
  std::mt19937_64 rng(77);
  const pair_data d = make(rng, 4, 5);
  const auto unset = algo::orpo::compute(d.inputs(), {.beta = 0.3});
  const auto one = algo::orpo::compute(d.inputs(), {.beta = 0.3, .nll_coef = 1.0});
  EXPECT_NEAR(unset.loss, one.loss, 1e-15);
  EXPECT_NEAR(unset.loss, naive(d, 0.3, 1.0), 1e-12);
  const auto zero = algo::orpo::compute(d.inputs(), {.beta = 0.3, .nll_coef = 0.0});
  EXPECT_NEAR(one.loss - zero.loss, one.nll, 1e-14);
  static_assert(algo::orpo::defaults::nll_coef == 1.0);
  // User compositions and algo::dpo_nll keep Llama 3's 0.2.
  static_assert(pt::loss::preference<pt::pref::sigmoid, pt::seq::sum, pt::pref::with_reference,
                                     pt::pref::nll_token_mean>::defaults::nll_coef == 0.2);
}
