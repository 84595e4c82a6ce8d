// Tests of CPO (algo::cpo, cpo_hinge, cpo_ipo, cpo_simpo) and AlphaPO (algo::alphapo,
// alphapo_simpo) from loss/algorithms_offline.hpp against TRL's cpo_loss written naively in
// float64 (policy-only scores, summed or averaged, + cpo_alpha·token-mean NLL on chosen tokens),
// ∂loss/∂ℓ by central differences, α → 0 continuity, extremes, micro-batch invariance, validation.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "loss/preference_naive.hpp"
#include "loss/preference_testing.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/loss/algorithms_offline.hpp"

namespace pt = posttrain;
namespace algo = posttrain::algo;
namespace nv = preference_naive;
namespace tst = preference_testing;
using pt::index_t;
using pt::loss::alphapo_options;
using pt::loss::preference_inputs;
using pt::loss::preference_normalizer;
using pt::loss::preference_options;
using pt::loss::preference_outputs;
using tst::pair_data;
using tst::side;

namespace {

// Completions may be empty or all padding (score 0, which CPO and AlphaPO accept); log-probs
// ≥ −2 keep AlphaPO's exp(−α·π) moderate for the finite-difference checks.
pair_data make(std::mt19937_64& rng, int n, int max_len) {
  return tst::make_policy_data(rng, n, max_len, /*nonempty=*/false, -2.0);
}

enum kind { sigmoid, hinge, ipo, simpo };

// TRL cpo_loss + cpo_alpha·NLL, naive.
double naive_cpo(const pair_data& d, kind k, double beta, double eps, double gamma,
                 double cpo_alpha, double alpha) {
  const bool mean = k == ipo || k == simpo;
  const index_t n = static_cast<index_t>(d.chosen.offsets.size()) - 1;
  double total = 0;
  for (index_t p = 0; p < n; ++p) {
    double pc = tst::naive_score(d.chosen, p, mean), pr = tst::naive_score(d.rejected, p, mean);
    if (alpha != 0) {
      pc = (1 - std::pow(std::exp(pc), -alpha)) / alpha;
      pr = (1 - std::pow(std::exp(pr), -alpha)) / alpha;
    }
    double z = pc - pr;
    if (k == simpo) z -= gamma / beta;
    if (k == sigmoid || k == simpo)
      total += nv::smoothed(beta * z, eps);
    else if (k == hinge)
      total += std::max(0.0, 1 - beta * z);
    else
      total += (z - 1 / (2 * beta)) * (z - 1 / (2 * beta));
  }
  double nll = 0, w = 0;
  for (std::size_t t = 0; t < d.chosen.logprobs.size(); ++t)
    if (d.chosen.mask[t] != 0) {
      nll -= d.chosen.mask[t] * d.chosen.logprobs[t];
      w += d.chosen.mask[t];
    }
  return total / n + cpo_alpha * (w > 0 ? nll / w : 0.0);
}

// Central differences of `naive_fn` against the gradient `compute` writes.
void check_grad(pair_data d, const std::function<double(const pair_data&)>& naive_fn,
                const std::function<void(const pair_data&, std::vector<double>&,
                                         std::vector<double>&)>& compute) {
  std::vector<double> gc(d.chosen.logprobs.size()), gr(d.rejected.logprobs.size());
  compute(d, gc, gr);
  const double h = 1e-6;
  for (side* s : {&d.chosen, &d.rejected})
    for (std::size_t t = 0; t < s->logprobs.size(); ++t) {
      const double g = s == &d.chosen ? gc[t] : gr[t];
      if (s->mask[t] == 0) {
        EXPECT_EQ(g, 0.0);
        continue;
      }
      const double x = s->logprobs[t];
      s->logprobs[t] = x + h;
      const double up = naive_fn(d);
      s->logprobs[t] = x - h;
      const double dn = naive_fn(d);
      s->logprobs[t] = x;
      EXPECT_NEAR(g, (up - dn) / (2 * h), 1e-7 * (1 + std::abs(g)));
    }
}

// γ of options that carry simpo's own options (.link.gamma); simpo's default for the others (the
// naive form reads γ only for simpo).
template <class Options>
double gamma_of(const Options& o) {
  if constexpr (requires { o.link.gamma; })
    return o.link.gamma;
  else
    return pt::pref::simpo::options{}.gamma;
}

template <class Comp>
void check_cpo(kind k, const typename Comp::options_type& o, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (int rep = 0; rep < 3; ++rep) {
    const pair_data d = make(rng, 4, 6);
    auto nf = [&](const pair_data& x) {
      return naive_cpo(x, k, o.beta, o.label_smoothing, gamma_of(o), o.nll_coef, 0.0);
    };
    EXPECT_NEAR(Comp::compute(d.inputs(), o).loss, nf(d), 1e-12);
    check_grad(d, nf, [&](const pair_data& x, std::vector<double>& gc, std::vector<double>& gr) {
      Comp::compute(x.inputs(), o, preference_outputs<double>{gc, gr});
    });
  }
}

template <class Comp>
void check_alphapo(kind k, const typename Comp::options_type& o, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (int rep = 0; rep < 3; ++rep) {
    const pair_data d = make(rng, 4, 6);
    const auto& p = o.preference;
    auto nf = [&](const pair_data& x) {
      // An unset nll_coef is TRL's cpo_alpha = 1 (not the generic 0.2).
      const double nll = std::isnan(p.nll_coef) ? 1.0 : p.nll_coef;
      return naive_cpo(x, k, p.beta, p.label_smoothing, gamma_of(p), nll, o.alpha);
    };
    EXPECT_NEAR(Comp::compute(d.inputs(), o).loss, nf(d), 1e-11);
    check_grad(d, nf, [&](const pair_data& x, std::vector<double>& gc, std::vector<double>& gr) {
      Comp::compute(x.inputs(), o, preference_outputs<double>{gc, gr});
    });
  }
}

}  // namespace

TEST(Cpo, EveryLossTypeMatchesTrlAndFiniteDifferences) {
  const auto trl = pt::pref::presets::trl_cpo;
  check_cpo<algo::cpo>(sigmoid, trl, 31);
  check_cpo<algo::cpo>(sigmoid, {.beta = 0.5, .label_smoothing = 0.1, .nll_coef = 0.3}, 32);
  check_cpo<algo::cpo_hinge>(hinge, {.beta = 0.3, .nll_coef = 1.0}, 33);
  check_cpo<algo::cpo_ipo>(ipo, {.beta = 0.5, .nll_coef = 1.0}, 34);
  check_cpo<algo::cpo_simpo>(simpo, algo::cpo_simpo::trl().loss, 35);
  check_cpo<algo::cpo_simpo>(simpo, {{.beta = 2.0, .nll_coef = 0.0}, {.gamma = 1.0}}, 36);
  EXPECT_EQ(trl.beta, 0.1);
  EXPECT_EQ(algo::cpo_simpo::trl().loss.link.gamma, 0.5);
  EXPECT_EQ(algo::cpo_simpo::trl().loss.beta, 0.1);
  EXPECT_EQ(algo::cpo_simpo::trl().loss.nll_coef, 1.0);
  EXPECT_EQ(trl.nll_coef, 1.0);
}

TEST(AlphaPo, MatchesTrlAndFiniteDifferences) {
  check_alphapo<algo::alphapo>(sigmoid, {.alpha = 0.25, .preference = {.beta = 0.5}}, 41);
  check_alphapo<algo::alphapo>(sigmoid, {.alpha = -0.5, .preference = {.nll_coef = 0.0}}, 42);
  check_alphapo<algo::alphapo_simpo>(
      simpo, {.alpha = 1.0, .preference = {{.beta = 2.0, .nll_coef = 1.0}, {.gamma = 1.0}}}, 43);
  check_alphapo<pt::loss::alphapo<pt::pref::ipo, pt::seq::mean>>(
      ipo, {.alpha = 0.5, .preference = {.beta = 0.5, .nll_coef = 1.0}}, 44);
}

TEST(AlphaPo, AlphaZeroIsCpoAndContinuous) {
  std::mt19937_64 rng(45);
  const pair_data d = make(rng, 5, 6);
  const auto cpo = algo::cpo::compute(d.inputs(), pt::pref::presets::trl_cpo);
  const auto a0 = algo::alphapo::compute(d.inputs(), {});
  EXPECT_NEAR(a0.loss, cpo.loss, 1e-15);
  EXPECT_NEAR(a0.chosen_reward, cpo.chosen_reward, 1e-15);
  const auto tiny = algo::alphapo::compute(d.inputs(), {.alpha = 1e-9});
  EXPECT_NEAR(tiny.loss, cpo.loss, 1e-7);
}

TEST(AlphaPo, ExtremesAndEmpty) {
  // Very long summed completions: π = −1e4; α = 0.25 → exponent 2500 is clamped, finite.
  std::vector<index_t> off{0, 1, 1};
  std::vector<float> m{1};
  std::vector<double> c{-1e4}, r{-1.0};
  std::vector<double> gc(1), gr(1);
  preference_inputs<double> in;
  in.batch.chosen = {off, m};
  in.batch.rejected = {off, m};
  in.chosen_logprobs = c;
  in.rejected_logprobs = r;
  // pair 0 has chosen −1e4 vs rejected −1; pair 1 is empty on both sides (scores 0).
  const auto res = algo::alphapo::compute(in, {.alpha = 0.25}, preference_outputs<double>{gc, gr});
  EXPECT_TRUE(std::isfinite(res.loss));
  EXPECT_TRUE(std::isfinite(gc[0]) && std::isfinite(gr[0]));
  const auto cres =
      algo::cpo::compute(in, pt::pref::presets::trl_cpo, preference_outputs<double>{gc, gr});
  EXPECT_TRUE(std::isfinite(cres.loss));
  EXPECT_TRUE(std::isfinite(gc[0]) && std::isfinite(gr[0]));
}

TEST(AlphaPo, MicroBatchInvarianceAndValidation) {
  std::mt19937_64 rng(46);
  const pair_data d = make(rng, 4, 5);
  const alphapo_options o{.alpha = 0.3};
  std::vector<double> gc(d.chosen.logprobs.size()), gr(d.rejected.logprobs.size());
  const auto full = algo::alphapo::compute(d.inputs(), o, preference_outputs<double>{gc, gr});
  double tokens = 0;
  for (float w : d.chosen.mask) tokens += w;
  double sum = 0;
  std::vector<double> pc(gc.size()), pr(gr.size());
  for (auto [b, e] : {std::pair<int, int>{0, 1}, {1, 4}}) {
    std::vector<index_t> oc, orr;
    for (int i = b; i <= e; ++i) {
      oc.push_back(d.chosen.offsets[i] - d.chosen.offsets[b]);
      orr.push_back(d.rejected.offsets[i] - d.rejected.offsets[b]);
    }
    const index_t c0 = d.chosen.offsets[b], cn = d.chosen.offsets[e] - c0,
                  r0 = d.rejected.offsets[b], rn = d.rejected.offsets[e] - r0;
    preference_inputs<double> in;
    in.batch.chosen = {oc, std::span<const float>(d.chosen.mask).subspan(c0, cn)};
    in.batch.rejected = {orr, std::span<const float>(d.rejected.mask).subspan(r0, rn)};
    in.chosen_logprobs = std::span<const double>(d.chosen.logprobs).subspan(c0, cn);
    in.rejected_logprobs = std::span<const double>(d.rejected.logprobs).subspan(r0, rn);
    sum += algo::alphapo::compute(in, o,
                                  preference_outputs<double>{std::span<double>(pc).subspan(c0, cn),
                                                             std::span<double>(pr).subspan(r0, rn)},
                                  preference_normalizer{4, tokens})
               .loss;
  }
  EXPECT_NEAR(sum, full.loss, 1e-12);
  for (std::size_t t = 0; t < gc.size(); ++t) EXPECT_NEAR(pc[t], gc[t], 1e-15);
  for (std::size_t t = 0; t < gr.size(); ++t) EXPECT_NEAR(pr[t], gr[t], 1e-15);

  std::vector<double> g(d.chosen.logprobs.size(), 2.0);
  const preference_outputs<double> out{g};
  EXPECT_THROW(algo::alphapo::compute(d.inputs(), {.alpha = NAN}, out), pt::error);
  EXPECT_THROW(algo::alphapo::compute(d.inputs(), {.preference = {.beta = -1}}, out), pt::error);
  auto in = d.inputs();
  std::vector<double> ref(4, 0.0);
  in.reference_chosen = ref;
  in.reference_rejected = ref;
  EXPECT_THROW(algo::alphapo::compute(in, {}, out), pt::error);
  EXPECT_THROW(algo::cpo::compute(in, pt::pref::presets::trl_cpo, out), pt::error);
  for (double v : g) EXPECT_EQ(v, 2.0);
}

// An nll_coef left unset means TRL's cpo_alpha = 1 for every CPO alias and AlphaPO, never the
// generic 0.2 (Llama 3) default; an explicit value wins.
TEST(Cpo, UnsetNllCoefIsTrlsCpoAlpha) {
  std::mt19937_64 rng(47);
  const pair_data d = make(rng, 4, 5);
  auto same = [&](double a, double b) { EXPECT_NEAR(a, b, 1e-15); };
  same(algo::cpo::compute(d.inputs(), {.beta = 0.5}).loss,
       algo::cpo::compute(d.inputs(), {.beta = 0.5, .nll_coef = 1.0}).loss);
  same(algo::cpo_hinge::compute(d.inputs(), {}).loss,
       algo::cpo_hinge::compute(d.inputs(), {.nll_coef = 1.0}).loss);
  same(algo::cpo_ipo::compute(d.inputs(), {}).loss,
       algo::cpo_ipo::compute(d.inputs(), {.nll_coef = 1.0}).loss);
  same(algo::cpo_simpo::compute(d.inputs(), {}).loss,
       algo::cpo_simpo::compute(d.inputs(), {pt::pref::presets::trl_cpo, {}}).loss);
  same(algo::alphapo::compute(d.inputs(), {.alpha = 0.2, .preference = {.beta = 0.3}}).loss,
       algo::alphapo::compute(d.inputs(),
                              {.alpha = 0.2, .preference = {.beta = 0.3, .nll_coef = 1.0}})
           .loss);
  const auto r = algo::cpo::compute(d.inputs(), {});
  const auto explicit_02 = algo::cpo::compute(d.inputs(), {.nll_coef = 0.2});
  EXPECT_NEAR(r.loss - explicit_02.loss, 0.8 * r.nll, 1e-14);
  EXPECT_GT(r.nll, 0.0);
  static_assert(algo::cpo::defaults::nll_coef == 1.0 && algo::cpo_simpo::defaults::nll_coef == 1.0);
}
