// Tests of f-DPO (pref::f_divergence<Link, divergence::...>, loss/preference/f_divergence.hpp): the
// four TRL HEAD scores and their derivatives against naive float64 forms and central differences;
// every link TRL feeds the scores to, composed over random packed batches, against the naive
// composition link(s(Δc), s(Δr)), with ∂loss/∂ℓ, ∂loss/∂π and ∂loss/∂ρ by central differences;
// apo_down's mixed form; the limits (reverse_kl wrap = plain link, α → 1, α = 0 = forward KL); the
// TRL v0.26 JS and α forms via presets; the exponent clamp at 80; validation.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "loss/preference_naive.hpp"
#include "loss/preference_testing.hpp"

namespace pt = posttrain;
namespace pref = posttrain::pref;
namespace divergence = posttrain::divergence;
namespace seq = posttrain::seq;
namespace algo = posttrain::algo;
namespace nv = preference_naive;
namespace tst = preference_testing;
using pt::loss::preference_options;

namespace {

using score_fn = std::function<double(double)>;

// One option set of the grids below, flat: the shared fields, discopop's τ and the α-divergence's
// α; options_for<Comp> splits it into the composition's options_type (.link.link.tau,
// .link.divergence.alpha where the composition has them).
struct flat_options {
  double beta = 0.1;
  double label_smoothing = 0.0;
  double tau = 0.05;
  double f_alpha = 0.5;
};

template <class Comp>
typename Comp::options_type options_for(const flat_options& f) {
  typename Comp::options_type o{};
  o.beta = f.beta;
  o.label_smoothing = f.label_smoothing;
  if constexpr (requires { o.link.link.tau; }) o.link.link.tau = f.tau;
  if constexpr (requires { o.link.divergence.alpha; }) o.link.divergence.alpha = f.f_alpha;
  return o;
}

template <class Div>
typename Div::options divergence_options(const flat_options& f) {
  if constexpr (requires(typename Div::options d) { d.alpha; })
    return {.alpha = f.f_alpha};
  else
    return {};
}

template <class Div>
void check_score(const score_fn& naive, const flat_options& flat) {
  const typename Div::options o = divergence_options<Div>(flat);
  for (double d : {-6.0, -2.5, -0.3, 0.0, 0.4, 1.7, 5.0}) {
    const auto v = Div::score(d, o);
    EXPECT_NEAR(v.s, naive(d), 1e-13 * (1 + std::fabs(v.s))) << Div::name << " at " << d;
    const double h = 1e-6;
    const double fd = (naive(d + h) - naive(d - h)) / (2 * h);
    EXPECT_NEAR(v.ds, fd, 1e-7 * (1 + std::fabs(fd))) << Div::name << " slope at " << d;
    const auto f = Div::score(static_cast<float>(d), o);
    EXPECT_NEAR(f.s, v.s, 1e-5 * (1 + std::fabs(v.s)));
  }
}

// The naive composition: mean over pairs of link(s(Δc), s(Δr)) with summed log-probs.
double naive_loss(nv::link_fn link, const score_fn& s, const tst::pair_data& d,
                  const flat_options& o) {
  const nv::params p{.beta = o.beta, .eps = o.label_smoothing, .tau = o.tau};
  double total = 0;
  for (pt::index_t k = 0; k < d.pairs(); ++k) {
    const double dc = nv::score(d.chosen.logprobs, d.chosen.mask, d.chosen.offsets[k],
                                d.chosen.offsets[k + 1], false) -
                      d.chosen.reference[k];
    const double dr = nv::score(d.rejected.logprobs, d.rejected.mask, d.rejected.offsets[k],
                                d.rejected.offsets[k + 1], false) -
                      d.rejected.reference[k];
    total += link(s(dc), s(dr), p);
  }
  return total / static_cast<double>(d.pairs());
}

template <class Link, class Div>
void check_link(nv::link_fn link, const score_fn& s, const flat_options& flat,
                std::uint64_t seed) {
  using comp = pt::loss::preference<pref::f_divergence<Link, Div>, seq::sum>;
  SCOPED_TRACE(comp::name());
  const typename comp::options_type o = options_for<comp>(flat);
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 2; ++round) {
    const tst::pair_data d = tst::make_data(rng, 4, 0, 5, round == 1);
    const double want = naive_loss(link, s, d, flat);
    EXPECT_NEAR(comp::compute(d.inputs(), o).loss, want, 1e-12 * (1 + std::fabs(want)));
    tst::check_gradient<comp>(d, o, true, 2e-7);
  }
  // ∂/∂π and ∂/∂ρ on single-token pairs.
  const tst::pair_data one = tst::single_tokens({-1.0, -2.5, -0.3}, {-2.0, -0.7, -1.1},
                                                {-1.4, -2.0, -1.0}, {-1.2, -1.5, -0.2});
  tst::check_gradient<comp>(one, o, true, 2e-7);
  tst::check_reference_gradient<comp>(one, o, 2e-7);
}

template <class Div>
void check_every_link(const score_fn& s, const flat_options& o, std::uint64_t seed) {
  flat_options eps = o;
  eps.label_smoothing = 0.1;
  check_link<pref::sigmoid, Div>(nv::sigmoid, s, o, seed + 1);
  check_link<pref::sigmoid, Div>(nv::sigmoid, s, eps, seed + 2);
  check_link<pref::hinge, Div>(nv::hinge, s, o, seed + 3);
  check_link<pref::ipo, Div>(nv::ipo, s, o, seed + 4);
  check_link<pref::exo_pair, Div>(nv::exo_pair, s, eps, seed + 5);
  check_link<pref::nca_pair, Div>(nv::nca_pair, s, o, seed + 6);
  check_link<pref::robust, Div>(nv::robust, s, eps, seed + 7);
  check_link<pref::bco_pair, Div>(nv::bco_pair, s, o, seed + 8);
  check_link<pref::sppo_hard, Div>(nv::sppo_hard, s, o, seed + 9);
  check_link<pref::discopop, Div>(nv::discopop, s, o, seed + 10);
}

}  // namespace

TEST(FDpo, ScoresMatchNaiveAndFiniteDifferences) {
  const flat_options o{.f_alpha = 0.3};
  check_score<divergence::reverse_kl>([](double d) { return d; }, o);
  check_score<divergence::forward_kl>(nv::f_forward_kl, o);
  check_score<divergence::js_divergence>(nv::f_js, o);
  check_score<divergence::alpha_divergence>([](double d) { return nv::f_alpha(d, 0.3); }, o);
  check_score<divergence::alpha_divergence>([](double d) { return nv::f_alpha(d, 1.8); },
                                            {.f_alpha = 1.8});
  check_score<divergence::alpha_divergence>([](double d) { return nv::f_alpha(d, -0.5); },
                                            {.f_alpha = -0.5});
}

TEST(FDpo, EveryScoredLinkMatchesNaiveWithGradients) {
  const flat_options o{.beta = 0.5, .tau = 0.3, .f_alpha = 0.3};
  check_every_link<divergence::forward_kl>(nv::f_forward_kl, o, 100);
  check_every_link<divergence::js_divergence>(nv::f_js, o, 200);
  check_every_link<divergence::alpha_divergence>([](double d) { return nv::f_alpha(d, 0.3); }, o,
                                                 300);
}

// TRL HEAD apo_down: σ(βΔc) on the raw chosen log-ratio plus 1 − σ(β(s_c − s_r)).
TEST(FDpo, ApoDownMixesRawAndScoredLogRatios) {
  const flat_options o{.beta = 0.7};
  nv::link_fn naive = [](double dc, double dr, const nv::params& p) {
    return nv::sig(p.beta * dc) + 1 - nv::sig(p.beta * (nv::f_js(dc) - nv::f_js(dr)));
  };
  check_link<pref::apo_down, divergence::js_divergence>(
      naive, [](double d) { return d; }, o, 400);
  using comp =
      pt::loss::preference<pref::f_divergence<pref::apo_down, divergence::reverse_kl>, seq::sum>;
  std::mt19937_64 rng(5);
  const tst::pair_data d = tst::make_data(rng, 5, 1, 4, false);
  EXPECT_NEAR(comp::compute(d.inputs(), {.beta = 0.7}).loss,
              algo::apo_down::compute(d.inputs(), {.beta = 0.7}).loss, 1e-15);
}

namespace {
// algo::f_dpo_alpha's options with α = a (β and the rest at their defaults).
pref::presets::f_dpo_alpha_options alpha(double a) { return {{}, {.divergence = {.alpha = a}}}; }
}  // namespace

// Limits: reverse_kl is the plain link; α within 1e-6 of 1 is reverse_kl; α = 0 is forward KL.
TEST(FDpo, LimitsAndPresets) {
  std::mt19937_64 rng(7);
  const tst::pair_data d = tst::make_data(rng, 6, 1, 5, true);
  using rkl =
      pt::loss::preference<pref::f_divergence<pref::nca_pair, divergence::reverse_kl>, seq::sum>;
  EXPECT_EQ(rkl::compute(d.inputs(), {.beta = 0.4}).loss,
            algo::nca_pair::compute(d.inputs(), {.beta = 0.4}).loss);
  const double dpo = algo::dpo::compute(d.inputs(), {}).loss;
  EXPECT_NEAR(algo::f_dpo_alpha::compute(d.inputs(), alpha(1.0)).loss, dpo, 1e-15);
  EXPECT_NEAR(algo::f_dpo_alpha::compute(d.inputs(), alpha(1.0 + 5e-7)).loss, dpo, 1e-15);
  EXPECT_NEAR(algo::f_dpo_alpha::compute(d.inputs(), alpha(0.0)).loss,
              algo::f_dpo_forward_kl::compute(d.inputs(), {}).loss, 1e-15);
  // Near α = 1 (outside the tolerance) the score tends to reverse KL continuously.
  EXPECT_NEAR(algo::f_dpo_alpha::compute(d.inputs(), alpha(1.0 + 1e-5)).loss, dpo, 1e-4);

  // TRL v0.26: alpha z = (e^{−α'Δr} − e^{−α'Δc})/α'; JS z = Δc − Δr − (softplus(Δc) −
  // softplus(Δr)).
  const double beta = 0.1;
  for (double a26 : {1.0, 0.5, 0.25}) {
    double want = 0, js = 0;
    for (pt::index_t p = 0; p < d.pairs(); ++p) {
      const double dc = nv::score(d.chosen.logprobs, d.chosen.mask, d.chosen.offsets[p],
                                  d.chosen.offsets[p + 1], false) -
                        d.chosen.reference[p];
      const double dr = nv::score(d.rejected.logprobs, d.rejected.mask, d.rejected.offsets[p],
                                  d.rejected.offsets[p + 1], false) -
                        d.rejected.reference[p];
      const double z = (std::exp(-a26 * dr) - std::exp(-a26 * dc)) / a26;
      want += -nv::logsig(beta * z);
      const double zj = dc - dr - (std::log1p(std::exp(dc)) - std::log1p(std::exp(dr)));
      js += -nv::logsig(beta * zj);
    }
    want /= static_cast<double>(d.pairs());
    js /= static_cast<double>(d.pairs());
    EXPECT_NEAR(
        algo::f_dpo_alpha::compute(d.inputs(), pref::presets::trl_v026_alpha_divergence(a26, beta))
            .loss,
        want, 1e-13)
        << a26;
    EXPECT_NEAR(algo::f_dpo_js::compute(d.inputs(), {.beta = beta}).loss, js, 1e-13);
  }
  EXPECT_EQ(pref::presets::trl_alpha_divergence().link.divergence.alpha, 0.5);
  // TRL HEAD f_alpha_divergence_coef
  EXPECT_EQ(algo::f_dpo_alpha::options_type{}.link.divergence.alpha, 0.5);
  EXPECT_EQ(std::string(pref::f_divergence<pref::sigmoid, divergence::forward_kl>::name),
            "f_divergence<sigmoid, forward_kl>");
  EXPECT_EQ(algo::f_dpo_js::name(), "loss::preference<f_divergence<sigmoid, js_divergence>, sum>");
}

// The exponent is clamped at 80 (TRL's fp32 clamp, also for forward KL here): finite results and a
// zero derivative beyond the clamp.
TEST(FDpo, ExponentClampKeepsExtremesFinite) {
  const auto a = divergence::alpha_divergence::score(50.0, {.alpha = 3.0});  // (α−1)Δ = 100 > 80
  EXPECT_NEAR(a.s, std::exp(80.0) / 2.0, 1e-12 * a.s);
  EXPECT_EQ(a.ds, 0.0);
  const auto f = divergence::forward_kl::score(-1e4, {});
  EXPECT_NEAR(f.s, -std::exp(80.0), 1e-12 * std::exp(80.0));
  EXPECT_EQ(f.ds, 0.0);
  const auto ff = divergence::forward_kl::score(-1e4f, {});
  EXPECT_TRUE(std::isfinite(ff.s) && ff.ds == 0.0f);

  // Whole compositions at |Δ| ~ 1e4: finite loss and gradients for every divergence.
  const tst::pair_data d = tst::single_tokens({-1.0, -5.0}, {-2.0, -1.0}, {1e4, -1e4}, {-1e4, 1e4});
  std::vector<double> gc(2), gr(2);
  const pt::loss::preference_outputs<double> out{gc, gr};
  auto finite = [&](double loss) {
    EXPECT_TRUE(std::isfinite(loss));
    for (double g : gc) EXPECT_TRUE(std::isfinite(g));
    for (double g : gr) EXPECT_TRUE(std::isfinite(g));
  };
  finite(algo::f_dpo_forward_kl::compute(d.inputs(), {}, out).loss);
  finite(algo::f_dpo_js::compute(d.inputs(), {}, out).loss);
  finite(algo::f_dpo_alpha::compute(d.inputs(), alpha(3.0), out).loss);
  finite(algo::f_dpo_alpha::compute(d.inputs(), alpha(-2.0), out).loss);
}

TEST(FDpo, ValidationErrorsLeaveOutputsUntouched) {
  std::mt19937_64 rng(9);
  const tst::pair_data d = tst::make_data(rng, 3, 1, 4, false);
  std::vector<double> gc(d.chosen.logprobs.size(), 7.0);
  const pt::loss::preference_outputs<double> out{gc};
  const double nan = std::numeric_limits<double>::quiet_NaN();
  tst::expect_error([&] { algo::f_dpo_alpha::compute(d.inputs(), alpha(nan), out); },
                    "options.link.divergence.alpha");
  tst::expect_error([&] { algo::f_dpo_js::compute(d.inputs(), {.beta = -1.0}, out); },
                    "options.beta");
  using exo =
      pt::loss::preference<pref::f_divergence<pref::exo_pair, divergence::forward_kl>, seq::sum>;
  tst::expect_error([&] { exo::compute(d.inputs(), {}, out); }, "options.label_smoothing");
  for (double g : gc) EXPECT_EQ(g, 7.0);
}

namespace {

// TRL 1.16's written scores f'(e^Δ), zero at Δ = 0 (independent of divergence::*::score).
double trl_forward_kl(double d) { return 1.0 - std::exp(-d); }
double trl_js(double d) { return std::log(2.0) + nv::logsig(d); }
double trl_alpha(double d, double a) { return (std::exp((a - 1) * d) - 1) / (a - 1); }

// mean_p link(s(Δc)/max(W_c, 1), s(Δr)/max(W_r, 1)) with summed log-probs and reference sums.
double naive_length_normalized(nv::link_fn link, const score_fn& s, const tst::pair_data& d,
                               const flat_options& o) {
  const nv::params p{.beta = o.beta, .eps = o.label_smoothing, .tau = o.tau};
  auto length = [](const tst::side& side, pt::index_t k) {
    double w = 0;
    for (pt::index_t t = side.offsets[k]; t < side.offsets[k + 1]; ++t) w += side.mask[t];
    return std::max(w, 1.0);
  };
  double total = 0;
  for (pt::index_t k = 0; k < d.pairs(); ++k) {
    const double dc = tst::naive_score(d.chosen, k) - d.chosen.reference[k];
    const double dr = tst::naive_score(d.rejected, k) - d.rejected.reference[k];
    total += link(s(dc) / length(d.chosen, k), s(dr) / length(d.rejected, k), p);
  }
  return d.pairs() > 0 ? total / static_cast<double>(d.pairs()) : 0.0;
}

template <class Link, class Div>
void check_length_normalized(nv::link_fn link, const score_fn& s, const flat_options& flat,
                             std::uint64_t seed) {
  using comp = pt::loss::preference<pref::f_divergence_length_normalized<Link, Div>, seq::sum>;
  SCOPED_TRACE(comp::name());
  const typename comp::options_type o = options_for<comp>(flat);
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 3; ++round) {
    const tst::pair_data d = tst::make_data(rng, 5, 0, 6, round == 1);
    const double want = naive_length_normalized(link, s, d, flat);
    EXPECT_NEAR(comp::compute(d.inputs(), o).loss, want, 1e-12 * (1 + std::fabs(want)));
    tst::check_gradient<comp>(d, o, true, 2e-7);
  }
  const tst::pair_data one = tst::single_tokens({-1.0, -2.5, -0.3}, {-2.0, -0.7, -1.1},
                                                {-1.4, -2.0, -1.0}, {-1.2, -1.5, -0.2});
  tst::check_reference_gradient<comp>(one, o, 2e-7);
}

}  // namespace

// TRL 1.16 ipo / sigmoid_norm with f_divergence_type: scores of the summed log-ratios (TRL's
// written forms, zero at Δ = 0) divided by the lengths, against naive float64 forms with central
// differences of ∂loss/∂ℓ (0/1 and fractional masks, empty sequences) and ∂loss/∂ρ.
TEST(FDpo, LengthNormalizedScoresMatchNaiveWithGradients) {
  const flat_options o{.beta = 0.4, .f_alpha = 0.3};
  check_length_normalized<pref::ipo, divergence::forward_kl>(nv::ipo, trl_forward_kl, o, 500);
  check_length_normalized<pref::ipo, divergence::js_divergence>(nv::ipo, trl_js, o, 501);
  check_length_normalized<pref::ipo, divergence::alpha_divergence>(
      nv::ipo, [](double d) { return trl_alpha(d, 0.3); }, o, 502);
  check_length_normalized<pref::sigmoid, divergence::forward_kl>(nv::sigmoid, trl_forward_kl, o,
                                                                 503);
  check_length_normalized<pref::sigmoid, divergence::js_divergence>(nv::sigmoid, trl_js, o, 504);
  check_length_normalized<pref::sigmoid, divergence::alpha_divergence>(
      nv::sigmoid, [](double d) { return trl_alpha(d, 1.7); }, {.beta = 0.4, .f_alpha = 1.7},
      505);
  check_length_normalized<pref::hinge, divergence::js_divergence>(nv::hinge, trl_js, o, 506);
  EXPECT_EQ(std::string(pref::f_divergence_length_normalized<pref::ipo, divergence::js_divergence>::name),
            "f_divergence_length_normalized<ipo, js_divergence>");
  static_assert(pref::uses_lengths_v<pref::f_divergence_length_normalized<pref::ipo, divergence::reverse_kl>>);
  static_assert(!pref::uses_lengths_v<pref::f_divergence<pref::ipo, divergence::reverse_kl>>);
}

// reverse_kl: TRL's plain ipo / sigmoid_norm, i.e. algo::ipo / dpo_length_normalized with
// reference means (0/1 masks: Δ_sum/W = mean(π) − mean(ρ)); and the constant s(0) matters once
// the lengths differ (the s(Δ̄) form of f_divergence<ipo, Div> with seq::mean is another loss).
TEST(FDpo, LengthNormalizedReverseKlIsPlainLengthNormalizedLoss) {
  std::mt19937_64 rng(11);
  tst::pair_data d = tst::make_data(rng, 6, 1, 7, false);
  tst::pair_data means = d;
  for (tst::side* s : {&means.chosen, &means.rejected})
    for (pt::index_t k = 0; k < d.pairs(); ++k) {
      double w = 0;
      for (pt::index_t t = s->offsets[k]; t < s->offsets[k + 1]; ++t) w += s->mask[t];
      s->reference[k] /= std::max(w, 1.0);
    }
  const preference_options o{.beta = 0.3};
  std::vector<double> gc(d.chosen.logprobs.size()), gr(d.rejected.logprobs.size());
  std::vector<double> hc(gc.size()), hr(gr.size());
  const double a = algo::ipo_f_divergence<divergence::reverse_kl>::compute(
                       d.inputs(), o, pt::loss::preference_outputs<double>{gc, gr})
                       .loss;
  const double b =
      algo::ipo::compute(means.inputs(), o, pt::loss::preference_outputs<double>{hc, hr}).loss;
  EXPECT_NEAR(a, b, 1e-12 * (1 + std::fabs(b)));
  for (std::size_t t = 0; t < gc.size(); ++t) EXPECT_NEAR(gc[t], hc[t], 1e-12) << t;
  for (std::size_t t = 0; t < gr.size(); ++t) EXPECT_NEAR(gr[t], hr[t], 1e-12) << t;
  EXPECT_NEAR(algo::dpo_length_normalized_f_divergence<divergence::reverse_kl>::compute(d.inputs(), o).loss,
              algo::dpo_length_normalized::compute(means.inputs(), o).loss, 1e-12);
  using mean_form = pt::loss::preference<pref::f_divergence<pref::ipo, divergence::forward_kl>, seq::mean>;
  EXPECT_GT(std::fabs(algo::ipo_f_divergence<divergence::forward_kl>::compute(d.inputs(), o).loss -
                      mean_form::compute(means.inputs(), o).loss),
            1e-6);
}

// NLL term, pair weights, rewards, float, empty batch and validation through the length-aware loop.
TEST(FDpo, LengthNormalizedLoopOutputsAndValidation) {
  using comp = pt::loss::preference<
      pref::f_divergence_length_normalized<pref::sigmoid, divergence::forward_kl>, seq::sum,
      pref::with_reference, pref::nll_token_mean>;
  std::mt19937_64 rng(12);
  tst::pair_data d = tst::make_data(rng, 4, 0, 5, true);
  d.weights = {0.5, 1.0, 0.0, 2.0};
  const preference_options o{.beta = 0.2, .nll_coef = 0.3};
  std::vector<double> pl(4), cr(4), rr(4);
  const auto r = comp::compute(d.inputs(), o, {{}, {}, pl, cr, rr});
  double want = 0, s = 0, w = 0;
  for (pt::index_t k = 0; k < d.pairs(); ++k) {
    const double l = naive_length_normalized(  // pair k alone, weight 1
        nv::sigmoid, trl_forward_kl,
        [&] {
          tst::pair_data x;
          for (const bool c : {true, false}) {
            const tst::side& from = c ? d.chosen : d.rejected;
            tst::side& to = c ? x.chosen : x.rejected;
            for (pt::index_t t = from.offsets[k]; t < from.offsets[k + 1]; ++t) {
              to.mask.push_back(from.mask[t]);
              to.logprobs.push_back(from.logprobs[t]);
            }
            to.offsets.push_back(static_cast<pt::index_t>(to.mask.size()));
            to.reference.push_back(from.reference[k]);
          }
          return x;
        }(),
        flat_options{.beta = o.beta});
    EXPECT_NEAR(pl[k], d.weights[k] * l, 1e-12) << k;
    want += d.weights[k] * l / 4.0;
    EXPECT_NEAR(cr[k], 0.2 * (tst::naive_score(d.chosen, k) - d.chosen.reference[k]), 1e-12);
    EXPECT_NEAR(rr[k], 0.2 * (tst::naive_score(d.rejected, k) - d.rejected.reference[k]), 1e-12);
  }
  for (std::size_t t = 0; t < d.chosen.logprobs.size(); ++t)
    if (d.chosen.mask[t] != 0) s += d.chosen.mask[t] * d.chosen.logprobs[t], w += d.chosen.mask[t];
  EXPECT_NEAR(r.preference_loss, want, 1e-12);
  EXPECT_NEAR(r.nll, -s / w, 1e-12);
  EXPECT_NEAR(r.loss, want + 0.3 * (-s / w), 1e-12);
  tst::check_gradient<comp>(d, o, true, 2e-7);

  const tst::float_inputs f(d);
  std::vector<float> fc(f.chosen.size()), fr(f.rejected.size());
  std::vector<double> hc(fc.size()), hr(fr.size());
  pt::loss::preference_inputs<float> fin = f.in;
  fin.pair_weights = d.weights;
  const auto a = comp::compute(fin, o, pt::loss::preference_outputs<float>{fc, fr});
  const auto b = comp::compute(d.inputs(), o, pt::loss::preference_outputs<double>{hc, hr});
  EXPECT_NEAR(a.loss, b.loss, 1e-5 * (1 + std::fabs(b.loss)));
  for (std::size_t t = 0; t < fc.size(); ++t) EXPECT_NEAR(fc[t], hc[t], 1e-5) << t;

  const tst::pair_data empty;
  EXPECT_EQ(comp::compute(empty.inputs(), o).loss, 0.0);

  std::vector<double> gc(d.chosen.logprobs.size(), 7.0), gr(d.rejected.logprobs.size(), 7.0);
  tst::expect_error([&] { comp::compute(d.inputs(), {.beta = -1.0}, {gc, gr}); }, "options.beta");
  auto in = d.inputs();
  in.reference_chosen = in.reference_chosen.subspan(1);
  tst::expect_error([&] { comp::compute(in, o, {gc, gr}); }, "reference_chosen");
  for (double v : gc) EXPECT_EQ(v, 7.0);
  for (double v : gr) EXPECT_EQ(v, 7.0);
}
