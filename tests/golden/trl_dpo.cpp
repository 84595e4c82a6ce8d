// Golden test: our DPO family (algo::*, pref::presets) against TRL's DPOTrainer._compute_loss
// itself (tests/golden/data/trl_dpo.json). TRL 1.x has no standalone dpo_loss: generate.py calls
// the real DPOTrainer._compute_loss method on an instance holding only the attributes it reads,
// with a torch module standing in for the model whose forward returns the seeded per-token
// log-probs (so autograd gives d loss / d per-token log-prob); reference scores are precomputed.
// Layout: rows 0..P-1 chosen, P..2P-1 rejected, each L tokens wide with the completion mask.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "golden/golden.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/loss/preference.hpp"
#include "posttrain/loss/preference/algorithms.hpp"
#include "posttrain/loss/sft.hpp"

namespace pt = posttrain;
using golden::json;
using golden::vec;
using offs = std::vector<pt::index_t>;

namespace {

const json& file() {
  static const json f = golden::load("trl_dpo.json");
  return f;
}

struct dpo_case {
  long pairs = 0, width = 0;
  vec chosen, rejected;                  // [P·L] each
  std::vector<float> mask_c, mask_r;     // [P·L]
  offs seqs;                             // {0, L, 2L, ...}
  vec ref_c, ref_r;                      // [P] token sums
  vec len_c, len_r;                      // [P] completion lengths
  vec grad_expected, mask_all;           // [2P·L]
};

dpo_case read(const json& c) {
  const json& in = c.at("inputs");
  const auto shape = golden::shape(in.at("per_token_logps"));
  dpo_case d;
  d.pairs = shape[0] / 2;
  d.width = shape[1];
  const vec lp = golden::data(in.at("per_token_logps"));
  const vec m = golden::data(in.at("completion_mask"));
  const std::size_t half = static_cast<std::size_t>(d.pairs * d.width);
  d.chosen.assign(lp.begin(), lp.begin() + half);
  d.rejected.assign(lp.begin() + half, lp.end());
  d.mask_c.assign(m.begin(), m.begin() + half);
  d.mask_r.assign(m.begin() + half, m.end());
  for (long p = 0; p <= d.pairs; ++p) d.seqs.push_back(static_cast<pt::index_t>(p * d.width));
  d.ref_c = golden::data(in.at("ref_chosen_logps"));
  d.ref_r = golden::data(in.at("ref_rejected_logps"));
  for (long p = 0; p < d.pairs; ++p) {
    double a = 0, b = 0;
    for (long t = 0; t < d.width; ++t) a += d.mask_c[p * d.width + t], b += d.mask_r[p * d.width + t];
    d.len_c.push_back(a);
    d.len_r.push_back(b);
  }
  d.grad_expected = golden::data(c.at("grads").at("per_token_logps"));
  d.mask_all = m;
  return d;
}

// Runs Loss with reference scores ref (sums, or means for seq::mean compositions).
// A case's DPOConfig: the shared options and the two fields only one policy reads (discopop_tau,
// f_alpha_divergence_coef); options_for<Loss> puts them where Loss's options_type has them.
struct trl_options {
  pt::loss::preference_options shared;
  double discopop_tau = 0.05;
  double f_alpha = 0.5;
};

template <class Loss>
typename Loss::options_type options_for(const trl_options& t) {
  typename Loss::options_type o{};
  static_cast<pt::loss::preference_options&>(o) = t.shared;
  if constexpr (requires { o.link.tau; }) o.link.tau = t.discopop_tau;
  if constexpr (requires { o.link.divergence.alpha; }) o.link.divergence.alpha = t.f_alpha;
  return o;
}

template <class Loss>
void check(const json& c, const trl_options& t, bool reference_means = false) {
  const typename Loss::options_type o = options_for<Loss>(t);
  const dpo_case d = read(c);
  vec rc = d.ref_c, rr = d.ref_r;
  if (reference_means)
    for (long p = 0; p < d.pairs; ++p) rc[p] /= std::max(d.len_c[p], 1.0), rr[p] /= std::max(d.len_r[p], 1.0);
  pt::loss::preference_inputs<double> in;
  in.batch = {{d.seqs, d.mask_c}, {d.seqs, d.mask_r}};
  in.chosen_logprobs = d.chosen;
  in.rejected_logprobs = d.rejected;
  in.reference_chosen = rc;
  in.reference_rejected = rr;
  vec gc(d.chosen.size()), gr(d.rejected.size());
  pt::loss::preference_outputs<double> out;
  out.chosen_grad = std::span<double>(gc);
  out.rejected_grad = std::span<double>(gr);
  const pt::loss::preference_result r = Loss::compute(pt::exec::host{}, in, o, out);
  const std::string name = c.at("name");
  golden::expect_close(r.loss, golden::scalar(c.at("outputs").at("loss")), name + " loss");
  vec g = gc;
  g.insert(g.end(), gr.begin(), gr.end());
  // TRL sums per_token_logps over the whole row (they are 0 off the completion), so its gradient
  // is also defined at masked positions; no loss reads them: compare where the mask is 1.
  golden::expect_close_masked(g, d.grad_expected, d.mask_all, name + " d/dlogps");
}

// Runs a loss::weighted list W (TRL loss_type list with loss_weights) with per-term reference
// scores: reference[k] = 's' sums, 'm' means (seq::mean terms), '-' none (pref::sft).
template <class W>
void check_weighted(const json& c, const trl_options& t,
                    const std::array<char, W::size>& reference) {
  const pt::loss::preference_options& o = t.shared;  // these lists' links have no own options
  const dpo_case d = read(c);
  vec mc = d.ref_c, mr = d.ref_r;
  for (long p = 0; p < d.pairs; ++p) mc[p] /= std::max(d.len_c[p], 1.0), mr[p] /= std::max(d.len_r[p], 1.0);
  pt::loss::preference_inputs<double> in;
  in.batch = {{d.seqs, d.mask_c}, {d.seqs, d.mask_r}};
  in.chosen_logprobs = d.chosen;
  in.rejected_logprobs = d.rejected;
  typename W::template reference_type<double> ref;
  for (std::size_t k = 0; k < W::size; ++k) {
    if (reference[k] == '-') continue;
    const bool means = reference[k] == 'm';
    ref.chosen[k] = means ? std::span<const double>(mc) : std::span<const double>(d.ref_c);
    ref.rejected[k] = means ? std::span<const double>(mr) : std::span<const double>(d.ref_r);
  }
  const json& p = c.at("params");
  typename W::weights_type w{};
  for (std::size_t k = 0; k < W::size; ++k) w[k] = p.at("loss_weights").at(k).get<double>();
  vec gc(d.chosen.size()), gr(d.rejected.size());
  const auto r = W::compute(pt::exec::host{}, in, ref, w, o,
                            pt::loss::preference_outputs<double>{gc, gr});
  const std::string name = c.at("name");
  golden::expect_close(r.loss, golden::scalar(c.at("outputs").at("loss")), name + " loss");
  vec g = gc;
  g.insert(g.end(), gr.begin(), gr.end());
  golden::expect_close_masked(g, d.grad_expected, d.mask_all, name + " d/dlogps");
}

// The case of a loss_type list (params.loss_type "a,b,...").
json multi(const std::string& loss_types, const std::string& fdiv) {
  for (const json& c : golden::cases(file(), "DPOTrainer._compute_loss")) {
    const json& p = c.at("params");
    if (p.at("loss_type") == loss_types && p.at("f_divergence_type") == fdiv) return c;
  }
  ADD_FAILURE() << "no golden case for loss_type [" << loss_types << "] " << fdiv;
  return json::object();
}

std::vector<json> by_type(const std::string& loss_type, const std::string& fdiv = "reverse_kl",
                          bool with_ld = false) {
  std::vector<json> out;
  for (const json& c : golden::cases(file(), "DPOTrainer._compute_loss")) {
    const json& p = c.at("params");
    if (p.at("loss_type") == loss_type && p.at("f_divergence_type") == fdiv &&
        p.at("ld_alpha").is_null() != with_ld)
      out.push_back(c);
  }
  EXPECT_FALSE(out.empty()) << loss_type << " " << fdiv;
  return out;
}

trl_options opts(const json& c) {
  const json& p = c.at("params");
  trl_options t{pt::pref::presets::trl};
  pt::loss::preference_options& o = t.shared;
  o.beta = p.at("beta").get<double>();
  o.label_smoothing = p.at("label_smoothing").get<double>();
  t.discopop_tau = p.at("discopop_tau").get<double>();
  t.f_alpha = p.at("f_alpha_divergence_coef").get<double>();
  if (!p.at("ld_alpha").is_null()) o.ld_alpha = p.at("ld_alpha").get<double>();
  return t;
}

}  // namespace

TEST(GoldenTrlDpo, Meta) {
  EXPECT_EQ(file().at("meta").at("peer"), "trl");
  EXPECT_TRUE(file().at("skipped").empty()) << file().at("skipped").dump();
}

TEST(GoldenTrlDpo, Sigmoid) {
  for (const json& c : by_type("sigmoid")) check<pt::algo::dpo>(c, opts(c));
}
TEST(GoldenTrlDpo, Hinge) {
  for (const json& c : by_type("hinge")) check<pt::algo::hinge>(c, opts(c));
}
TEST(GoldenTrlDpo, IpoLengthNormalised) {
  for (const json& c : by_type("ipo")) check<pt::algo::ipo>(c, opts(c), true);
}
// Issue 9 item 8: the named recipe for TRL's IPO takes TRL's reference sums directly.
TEST(GoldenTrlDpo, IpoReferenceSumsRecipe) {
  for (const json& c : by_type("ipo")) check<pt::algo::ipo_reference_sums>(c, opts(c));
}
TEST(GoldenTrlDpo, ExoPair) {
  for (const json& c : by_type("exo_pair")) {
    if (c.at("params").at("label_smoothing").get<double>() == 0.0) {
      // TRL with label_smoothing = 0 takes log(0): its loss is +inf (recorded as such); ours
      // requires ε in (0, 1) (pref::presets::exo uses 1e-3), so only the finite case compares.
      EXPECT_TRUE(std::isinf(golden::scalar(c.at("outputs").at("loss"))));
      continue;
    }
    check<pt::algo::exo_pair>(c, opts(c));
  }
}
TEST(GoldenTrlDpo, NcaPair) {
  for (const json& c : by_type("nca_pair")) check<pt::algo::nca_pair>(c, opts(c));
}
TEST(GoldenTrlDpo, Robust) {
  for (const json& c : by_type("robust")) check<pt::algo::robust_dpo>(c, opts(c));
}
TEST(GoldenTrlDpo, BcoPair) {
  for (const json& c : by_type("bco_pair")) check<pt::algo::bco_pair>(c, opts(c));
}
TEST(GoldenTrlDpo, SppoHard) {
  for (const json& c : by_type("sppo_hard")) check<pt::algo::sppo_hard>(c, opts(c));
}
TEST(GoldenTrlDpo, Aot) {
  for (const json& c : by_type("aot")) check<pt::algo::aot>(c, opts(c));
}
TEST(GoldenTrlDpo, AotUnpaired) {
  for (const json& c : by_type("aot_unpaired")) check<pt::algo::aot_unpaired>(c, opts(c));
}
TEST(GoldenTrlDpo, ApoZero) {
  for (const json& c : by_type("apo_zero")) check<pt::algo::apo_zero>(c, opts(c));
}
TEST(GoldenTrlDpo, ApoDown) {
  for (const json& c : by_type("apo_down")) check<pt::algo::apo_down>(c, opts(c));
}
TEST(GoldenTrlDpo, Discopop) {
  for (const json& c : by_type("discopop")) check<pt::algo::discopop>(c, opts(c));
}
TEST(GoldenTrlDpo, SigmoidNorm) {
  for (const json& c : by_type("sigmoid_norm"))
    check<pt::algo::dpo_length_normalized>(c, opts(c), true);
}
TEST(GoldenTrlDpo, FDivergenceForwardKl) {
  for (const json& c : by_type("sigmoid", "forward_kl")) check<pt::algo::f_dpo_forward_kl>(c, opts(c));
}
TEST(GoldenTrlDpo, FDivergenceJs) {
  for (const json& c : by_type("sigmoid", "js_divergence")) check<pt::algo::f_dpo_js>(c, opts(c));
}
TEST(GoldenTrlDpo, FDivergenceAlpha) {
  for (const json& c : by_type("sigmoid", "alpha_divergence")) check<pt::algo::f_dpo_alpha>(c, opts(c));
}
TEST(GoldenTrlDpo, LdDpo) {
  // Reference scores are precomputed sums (TRL precompute_ref_logps): TRL applies ld_alpha to
  // the policy only in that case, i.e. the v0.26 policy_only form on precomputed references.
  for (const json& c : by_type("sigmoid", "reverse_kl", true))
    check<pt::algo::ld_dpo_policy_only>(c, opts(c));
}
TEST(GoldenTrlDpo, SftTokenMeanOfChosen) {
  for (const json& c : by_type("sft")) {
    const dpo_case d = read(c);
    vec g(d.chosen.size());
    const pt::agg_result r = pt::loss::sft<pt::agg::token_mean>::compute(
        pt::exec::host{}, std::span<const double>(d.chosen), pt::token_batch{d.seqs, d.mask_c},
        std::span<double>(g));
    const std::string name = c.at("name");
    golden::expect_close(r.loss, golden::scalar(c.at("outputs").at("loss")), name + " loss");
    g.resize(d.grad_expected.size(), 0.0);  // rejected rows get no gradient
    golden::expect_close_masked(g, d.grad_expected, d.mask_all, name + " d/dlogps");
  }
}

// TRL 1.16 ipo / sigmoid_norm with f_divergence_type: the f-score of the SUMMED log-ratio (zero
// at Δ = 0) divided by the completion length (pref::f_divergence_length_normalized), not the
// score of the mean log-ratio (f_divergence<ipo, Div> with seq::mean). Reference sums.
TEST(GoldenTrlDpo, IpoLengthNormalisedFDivergence) {
  for (const json& c : by_type("ipo", "forward_kl"))
    check<pt::algo::ipo_f_divergence<pt::divergence::forward_kl>>(c, opts(c));
  for (const json& c : by_type("ipo", "js_divergence"))
    check<pt::algo::ipo_f_divergence<pt::divergence::js_divergence>>(c, opts(c));
  for (const json& c : by_type("ipo", "alpha_divergence"))
    check<pt::algo::ipo_f_divergence<pt::divergence::alpha_divergence>>(c, opts(c));
  // reverse_kl: the same composition is TRL's plain ipo.
  for (const json& c : by_type("ipo"))
    check<pt::algo::ipo_f_divergence<pt::divergence::reverse_kl>>(c, opts(c));
}
TEST(GoldenTrlDpo, SigmoidNormLengthNormalisedFDivergence) {
  for (const json& c : by_type("sigmoid_norm", "forward_kl"))
    check<pt::algo::dpo_length_normalized_f_divergence<pt::divergence::forward_kl>>(c, opts(c));
  for (const json& c : by_type("sigmoid_norm", "js_divergence"))
    check<pt::algo::dpo_length_normalized_f_divergence<pt::divergence::js_divergence>>(c,
                                                                                      opts(c));
  for (const json& c : by_type("sigmoid_norm", "alpha_divergence"))
    check<pt::algo::dpo_length_normalized_f_divergence<pt::divergence::alpha_divergence>>(
        c, opts(c));
  for (const json& c : by_type("sigmoid_norm"))
    check<pt::algo::dpo_length_normalized_f_divergence<pt::divergence::reverse_kl>>(c, opts(c));
}

// TRL 1.16 feeds nca_pair, bco_pair, sppo_hard and apo_down the RAW log-ratios whatever
// f_divergence_type is: the plain links reproduce it.
TEST(GoldenTrlDpo, RawLogRatioLinksIgnoreFDivergence) {
  for (const json& c : by_type("nca_pair", "forward_kl")) check<pt::algo::nca_pair>(c, opts(c));
  for (const json& c : by_type("bco_pair", "forward_kl")) check<pt::algo::bco_pair>(c, opts(c));
  for (const json& c : by_type("sppo_hard", "forward_kl")) check<pt::algo::sppo_hard>(c, opts(c));
  for (const json& c : by_type("apo_down", "forward_kl")) check<pt::algo::apo_down>(c, opts(c));
}

// Finding (a version difference, not a bug to fix here): pref::f_divergence<Link, Div> over
// nca_pair / bco_pair / sppo_hard / apo_down scores the log-ratios as the reference's TRL HEAD
// (algorithms.md §7.1) did; TRL 1.16 uses the raw log-ratios there (test above), so the scored
// composition does not reproduce TRL 1.16 for f_divergence_type != reverse_kl.
TEST(GoldenTrlDpo, DISABLED_ScoredRawLinksAreTrl116) {
  using fkl = pt::divergence::forward_kl;
  for (const json& c : by_type("nca_pair", "forward_kl"))
    check<pt::loss::preference<pt::pref::f_divergence<pt::pref::nca_pair, fkl>, pt::seq::sum>>(
        c, opts(c));
  for (const json& c : by_type("bco_pair", "forward_kl"))
    check<pt::loss::preference<pt::pref::f_divergence<pt::pref::bco_pair, fkl>, pt::seq::sum>>(
        c, opts(c));
}

// loss_type lists: MPO (one reduction), and ["sigmoid", "ipo"] whose ipo term is length-normalised
// (per-term reference scores: sums for sigmoid, means for ipo).
TEST(GoldenTrlDpo, MpoLossList) {
  const json c = multi("sigmoid,bco_pair,sft", "reverse_kl");
  ASSERT_FALSE(c.empty());
  check_weighted<pt::algo::mpo>(c, opts(c), {'s', 's', '-'});
  // The shared-reference form and the preset weights give the same.
  const dpo_case d = read(c);
  pt::loss::preference_inputs<double> in;
  in.batch = {{d.seqs, d.mask_c}, {d.seqs, d.mask_r}};
  in.chosen_logprobs = d.chosen;
  in.rejected_logprobs = d.rejected;
  in.reference_chosen = d.ref_c;
  in.reference_rejected = d.ref_r;
  const auto r = pt::algo::mpo::compute(in, pt::pref::presets::mpo_weights, opts(c).shared);
  golden::expect_close(r.loss, golden::scalar(c.at("outputs").at("loss")), "mpo preset loss");
}
TEST(GoldenTrlDpo, SigmoidPlusIpoLossList) {
  const json c = multi("sigmoid,ipo", "reverse_kl");
  ASSERT_FALSE(c.empty());
  check_weighted<pt::loss::weighted<pt::algo::dpo, pt::algo::ipo>>(c, opts(c), {'s', 'm'});
}
TEST(GoldenTrlDpo, SigmoidPlusIpoLossListWithJsScores) {
  const json c = multi("sigmoid,ipo", "js_divergence");
  ASSERT_FALSE(c.empty());
  using js = pt::divergence::js_divergence;
  check_weighted<pt::loss::weighted<pt::algo::f_dpo_js, pt::algo::ipo_f_divergence<js>>>(
      c, opts(c), {'s', 's'});
}
