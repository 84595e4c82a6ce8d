// Tests of CPO (algo::cpo, cpo_hinge, cpo_ipo, cpo_simpo) and AlphaPO (algo::alphapo,
// alphapo_simpo) from loss/algorithms_offline.hpp against TRL's cpo_loss written naively in
// float64 (policy-only scores, summed or averaged, + cpo_alpha·token-mean NLL on chosen tokens),
// ∂loss/∂ℓ by central differences, α → 0 continuity, extremes, micro-batch invariance, validation.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "posttrain/core/error.hpp"
#include "posttrain/loss/algorithms_offline.hpp"

namespace pt = posttrain;
namespace algo = posttrain::algo;
using pt::index_t;
using pt::loss::alphapo_options;
using pt::loss::preference_inputs;
using pt::loss::preference_normalizer;
using pt::loss::preference_options;
using pt::loss::preference_outputs;

namespace {

struct side {
  std::vector<index_t> off{0};
  std::vector<float> mask;
  std::vector<double> lp;
};
struct pairs_t {
  side c, r;
  preference_inputs<double> in() const {
    preference_inputs<double> x;
    x.batch.chosen = {c.off, c.mask};
    x.batch.rejected = {r.off, r.mask};
    x.chosen_logprobs = c.lp;
    x.rejected_logprobs = r.lp;
    return x;
  }
};

pairs_t make(std::mt19937_64& rng, int n, int max_len) {
  std::uniform_int_distribution<int> len(0, max_len);
  std::uniform_real_distribution<double> u(0, 1), lp(-2.0, -0.05);
  pairs_t d;
  for (side* s : {&d.c, &d.r})
    for (int p = 0; p < n; ++p) {
      const int k = len(rng);
      for (int t = 0; t < k; ++t) {
        const float m = u(rng) < 0.2 ? 0.0f : (u(rng) < 0.2 ? 0.5f : 1.0f);
        s->mask.push_back(m);
        s->lp.push_back(m == 0 ? std::numeric_limits<double>::quiet_NaN() : lp(rng));
      }
      s->off.push_back(static_cast<index_t>(s->lp.size()));
    }
  return d;
}

double score(const side& s, index_t p, bool mean) {
  double a = 0, w = 0;
  for (index_t t = s.off[p]; t < s.off[p + 1]; ++t)
    if (s.mask[t] != 0) {
      a += s.mask[t] * s.lp[t];
      w += s.mask[t];
    }
  return mean ? a / std::max(w, 1.0) : a;
}

double logsig(double x) { return -std::log1p(std::exp(-x)); }

enum kind { sigmoid, hinge, ipo, simpo };

// TRL cpo_loss + cpo_alpha·NLL, naive.
double naive_cpo(const pairs_t& d, kind k, double beta, double eps, double gamma, double cpo_alpha,
                 double alpha) {
  const bool mean = k == ipo || k == simpo;
  const index_t n = static_cast<index_t>(d.c.off.size()) - 1;
  double total = 0;
  for (index_t p = 0; p < n; ++p) {
    double pc = score(d.c, p, mean), pr = score(d.r, p, mean);
    if (alpha != 0) {
      pc = (1 - std::pow(std::exp(pc), -alpha)) / alpha;
      pr = (1 - std::pow(std::exp(pr), -alpha)) / alpha;
    }
    double z = pc - pr;
    if (k == simpo) z -= gamma / beta;
    if (k == sigmoid || k == simpo)
      total += -(1 - eps) * logsig(beta * z) - eps * logsig(-beta * z);
    else if (k == hinge)
      total += std::max(0.0, 1 - beta * z);
    else
      total += (z - 1 / (2 * beta)) * (z - 1 / (2 * beta));
  }
  double nll = 0, w = 0;
  for (std::size_t t = 0; t < d.c.lp.size(); ++t)
    if (d.c.mask[t] != 0) {
      nll -= d.c.mask[t] * d.c.lp[t];
      w += d.c.mask[t];
    }
  return total / n + cpo_alpha * (w > 0 ? nll / w : 0.0);
}

// Central differences of `naive_fn` against the gradient `compute` writes.
void check_grad(pairs_t d, const std::function<double(const pairs_t&)>& naive_fn,
                const std::function<void(const pairs_t&, std::vector<double>&,
                                         std::vector<double>&)>& compute) {
  std::vector<double> gc(d.c.lp.size()), gr(d.r.lp.size());
  compute(d, gc, gr);
  const double h = 1e-6;
  for (side* s : {&d.c, &d.r})
    for (std::size_t t = 0; t < s->lp.size(); ++t) {
      const double g = s == &d.c ? gc[t] : gr[t];
      if (s->mask[t] == 0) {
        EXPECT_EQ(g, 0.0);
        continue;
      }
      const double x = s->lp[t];
      s->lp[t] = x + h;
      const double up = naive_fn(d);
      s->lp[t] = x - h;
      const double dn = naive_fn(d);
      s->lp[t] = x;
      EXPECT_NEAR(g, (up - dn) / (2 * h), 1e-7 * (1 + std::abs(g)));
    }
}

template <class Comp>
void check_cpo(kind k, const preference_options& o, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (int rep = 0; rep < 3; ++rep) {
    const pairs_t d = make(rng, 4, 6);
    auto nf = [&](const pairs_t& x) {
      return naive_cpo(x, k, o.beta, o.label_smoothing, o.gamma, o.nll_coef, 0.0);
    };
    EXPECT_NEAR(Comp::compute(d.in(), o).loss, nf(d), 1e-12);
    check_grad(d, nf, [&](const pairs_t& x, std::vector<double>& gc, std::vector<double>& gr) {
      Comp::compute(x.in(), o, preference_outputs<double>{gc, gr});
    });
  }
}

template <class Comp>
void check_alphapo(kind k, const alphapo_options& o, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (int rep = 0; rep < 3; ++rep) {
    const pairs_t d = make(rng, 4, 6);
    const auto& p = o.preference;
    auto nf = [&](const pairs_t& x) {
      // An unset nll_coef is TRL's cpo_alpha = 1 (not the generic 0.2).
      const double nll = std::isnan(p.nll_coef) ? 1.0 : p.nll_coef;
      return naive_cpo(x, k, p.beta, p.label_smoothing, p.gamma, nll, o.alpha);
    };
    EXPECT_NEAR(Comp::compute(d.in(), o).loss, nf(d), 1e-11);
    check_grad(d, nf, [&](const pairs_t& x, std::vector<double>& gc, std::vector<double>& gr) {
      Comp::compute(x.in(), o, preference_outputs<double>{gc, gr});
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
  check_cpo<algo::cpo_simpo>(simpo, trl, 35);
  check_cpo<algo::cpo_simpo>(simpo, {.beta = 2.0, .gamma = 1.0, .nll_coef = 0.0}, 36);
  EXPECT_EQ(trl.beta, 0.1);
  EXPECT_EQ(trl.gamma, 0.5);
  EXPECT_EQ(trl.nll_coef, 1.0);
}

TEST(AlphaPo, MatchesTrlAndFiniteDifferences) {
  check_alphapo<algo::alphapo>(sigmoid, {.alpha = 0.25, .preference = {.beta = 0.5}}, 41);
  check_alphapo<algo::alphapo>(sigmoid, {.alpha = -0.5, .preference = {.nll_coef = 0.0}}, 42);
  check_alphapo<algo::alphapo_simpo>(
      simpo, {.alpha = 1.0, .preference = {.beta = 2.0, .gamma = 1.0, .nll_coef = 1.0}}, 43);
  check_alphapo<pt::loss::alphapo<pt::pref::ipo, pt::seq::mean>>(
      ipo, {.alpha = 0.5, .preference = {.beta = 0.5, .nll_coef = 1.0}}, 44);
}

TEST(AlphaPo, AlphaZeroIsCpoAndContinuous) {
  std::mt19937_64 rng(45);
  const pairs_t d = make(rng, 5, 6);
  const auto cpo = algo::cpo::compute(d.in(), pt::pref::presets::trl_cpo);
  const auto a0 = algo::alphapo::compute(d.in(), {});
  EXPECT_NEAR(a0.loss, cpo.loss, 1e-15);
  EXPECT_NEAR(a0.chosen_reward, cpo.chosen_reward, 1e-15);
  const auto tiny = algo::alphapo::compute(d.in(), {.alpha = 1e-9});
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
  const pairs_t d = make(rng, 4, 5);
  const alphapo_options o{.alpha = 0.3};
  std::vector<double> gc(d.c.lp.size()), gr(d.r.lp.size());
  const auto full = algo::alphapo::compute(d.in(), o, preference_outputs<double>{gc, gr});
  double tokens = 0;
  for (float w : d.c.mask) tokens += w;
  double sum = 0;
  std::vector<double> pc(gc.size()), pr(gr.size());
  for (auto [b, e] : {std::pair<int, int>{0, 1}, {1, 4}}) {
    std::vector<index_t> oc, orr;
    for (int i = b; i <= e; ++i) {
      oc.push_back(d.c.off[i] - d.c.off[b]);
      orr.push_back(d.r.off[i] - d.r.off[b]);
    }
    const index_t c0 = d.c.off[b], cn = d.c.off[e] - c0, r0 = d.r.off[b], rn = d.r.off[e] - r0;
    preference_inputs<double> in;
    in.batch.chosen = {oc, std::span<const float>(d.c.mask).subspan(c0, cn)};
    in.batch.rejected = {orr, std::span<const float>(d.r.mask).subspan(r0, rn)};
    in.chosen_logprobs = std::span<const double>(d.c.lp).subspan(c0, cn);
    in.rejected_logprobs = std::span<const double>(d.r.lp).subspan(r0, rn);
    sum += algo::alphapo::compute(in, o,
                                  preference_outputs<double>{std::span<double>(pc).subspan(c0, cn),
                                                             std::span<double>(pr).subspan(r0, rn)},
                                  preference_normalizer{4, tokens})
               .loss;
  }
  EXPECT_NEAR(sum, full.loss, 1e-12);
  for (std::size_t t = 0; t < gc.size(); ++t) EXPECT_NEAR(pc[t], gc[t], 1e-15);
  for (std::size_t t = 0; t < gr.size(); ++t) EXPECT_NEAR(pr[t], gr[t], 1e-15);

  std::vector<double> g(d.c.lp.size(), 2.0);
  const preference_outputs<double> out{g};
  EXPECT_THROW(algo::alphapo::compute(d.in(), {.alpha = NAN}, out), pt::error);
  EXPECT_THROW(algo::alphapo::compute(d.in(), {.preference = {.beta = -1}}, out), pt::error);
  auto in = d.in();
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
  const pairs_t d = make(rng, 4, 5);
  auto same = [&](double a, double b) { EXPECT_NEAR(a, b, 1e-15); };
  same(algo::cpo::compute(d.in(), {.beta = 0.5}).loss,
       algo::cpo::compute(d.in(), {.beta = 0.5, .nll_coef = 1.0}).loss);
  same(algo::cpo_hinge::compute(d.in(), {}).loss,
       algo::cpo_hinge::compute(d.in(), {.nll_coef = 1.0}).loss);
  same(algo::cpo_ipo::compute(d.in(), {}).loss,
       algo::cpo_ipo::compute(d.in(), {.nll_coef = 1.0}).loss);
  same(algo::cpo_simpo::compute(d.in(), {}).loss,
       algo::cpo_simpo::compute(d.in(), pt::pref::presets::trl_cpo).loss);
  same(algo::alphapo::compute(d.in(), {.alpha = 0.2, .preference = {.beta = 0.3}}).loss,
       algo::alphapo::compute(d.in(), {.alpha = 0.2, .preference = {.beta = 0.3, .nll_coef = 1.0}})
           .loss);
  const auto r = algo::cpo::compute(d.in(), {});
  const auto explicit_02 = algo::cpo::compute(d.in(), {.nll_coef = 0.2});
  EXPECT_NEAR(r.loss - explicit_02.loss, 0.8 * r.nll, 1e-14);
  EXPECT_GT(r.nll, 0.0);
  static_assert(algo::cpo::defaults::nll_coef == 1.0 && algo::cpo_simpo::defaults::nll_coef == 1.0);
}
