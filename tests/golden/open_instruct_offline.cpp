// Golden test: our DPO-family and SFT losses with the open-instruct presets against open-instruct's
// own code at e6c3044 (tests/golden/data/open_instruct_offline.json, written by
// generate_open_instruct.py): dpo_utils.compute_loss (dpo_loss / simpo_loss / wpo_loss chosen by
// a real DPOConfig) on log-probs from dpo_utils._get_batch_logps (sums, or token means for
// dpo_norm / simpo), loss = losses.mean() as dpo_tune_cache.py and the OLMo-core train module
// take it; dpo_loss with reference_free; SFT: finetune.py's reduce_loss "sum" block (at bb98dbca~1,
// the last commit with the option) and "mean" (the model's loss, HEAD's only mode).
// Values (loss, per-pair losses, rewards) and torch.autograd gradients per token.
//
// Mapping:
//   dpo (β, label_smoothing ε)      algo::dpo, pref::presets::open_instruct with β, ε (cDPO)
//   dpo_norm                        algo::dpo_length_normalized, reference token means (the
//                                   reference cache holds _get_batch_logps(average) values)
//   simpo (β, gamma_beta_ratio, ε)  algo::simpo, pref::presets::open_instruct_simpo(β, ratio), ε
//   dpo_loss(reference_free=True)   loss::preference<pref::sigmoid, seq::sum, reference_free>
//   wpo                             algo::wpo + wpo_pair_weights(pref::presets::wpo_open_instruct)
//                                   — DISABLED, see DISABLED_WpoWeightIsSummedLogProbsWithGradient
//   reduce_loss sum | mean          loss::sft<agg::token_sum> | loss::sft<agg::token_mean>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "golden/golden.hpp"
#include "posttrain/conventions.hpp"
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
  static const json f = golden::load("open_instruct_offline.json");
  return f;
}

const json& named(const std::string& name) { return golden::named_case(file(), name); }

struct pair_case {
  vec chosen, rejected, ref_c, ref_r, mask_all;
  std::vector<float> mask_c, mask_r;
  offs seqs;
};

pair_case read(const json& c) {
  const json& in = c.at("inputs");
  pair_case d;
  d.chosen = golden::data(in.at("chosen_logps"));
  d.rejected = golden::data(in.at("rejected_logps"));
  const vec mc = golden::data(in.at("chosen_mask")), mr = golden::data(in.at("rejected_mask"));
  d.mask_c = golden::as_float(mc);
  d.mask_r = golden::as_float(mr);
  d.mask_all = mc;
  d.mask_all.insert(d.mask_all.end(), mr.begin(), mr.end());
  d.seqs = golden::row_offsets(in.at("chosen_mask"));
  d.ref_c = golden::data(in.at("reference_chosen_logps"));
  d.ref_r = golden::data(in.at("reference_rejected_logps"));
  return d;
}

// Runs Loss on the case; pair_weights (WPO) optional. Reference scores are the peer's own
// _get_batch_logps values (sums, or means for the averaged loss types).
template <class Loss>
void check(const json& c, const typename Loss::options_type& o, bool wpo = false) {
  const pair_case d = read(c);
  pt::loss::preference_inputs<double> in;
  in.batch = {{d.seqs, d.mask_c}, {d.seqs, d.mask_r}};
  in.chosen_logprobs = d.chosen;
  in.rejected_logprobs = d.rejected;
  if constexpr (!std::is_same_v<Loss, pt::loss::preference<pt::pref::sigmoid, pt::seq::sum,
                                                           pt::pref::reference_free>> &&
                !std::is_same_v<Loss, pt::algo::simpo>) {
    in.reference_chosen = d.ref_c;
    in.reference_rejected = d.ref_r;
  }
  const auto pairs = static_cast<std::size_t>(d.seqs.size() - 1);
  vec weights(pairs);
  if (wpo) {
    pt::loss::wpo_pair_weights<double>(in.batch, d.chosen, d.rejected, {}, {},
                                       std::span<double>(weights),
                                       pt::conventions::open_instruct::wpo);
    in.pair_weights = weights;
  }
  vec gc(d.chosen.size()), gr(d.rejected.size()), losses(pairs), cr(pairs), rr(pairs);
  pt::loss::preference_outputs<double> out;
  out.chosen_grad = std::span<double>(gc);
  out.rejected_grad = std::span<double>(gr);
  out.pair_losses = std::span<double>(losses);
  out.chosen_rewards = std::span<double>(cr);
  out.rejected_rewards = std::span<double>(rr);
  const pt::loss::preference_result r = Loss::compute(pt::exec::host{}, in, o, out);
  const std::string name = c.at("name");
  const json& po = c.at("outputs");
  golden::expect_close(r.loss, golden::scalar(po.at("loss")), name + " loss");
  golden::expect_close(losses, golden::data(po.at("losses")), name + " per-pair losses");
  golden::expect_close(cr, golden::data(po.at("chosen_rewards")), name + " chosen rewards");
  golden::expect_close(rr, golden::data(po.at("rejected_rewards")), name + " rejected rewards");
  vec g = gc;
  g.insert(g.end(), gr.begin(), gr.end());
  vec peer = golden::data(c.at("grads").at("chosen_logps"));
  const vec pr = golden::data(c.at("grads").at("rejected_logps"));
  peer.insert(peer.end(), pr.begin(), pr.end());
  // _get_batch_logps multiplies by the label mask: the peer's gradient is 0 off the mask, as ours.
  golden::expect_close(g, peer, name + " d/dlogps");
}

pt::loss::preference_options dpo_opts(const json& c) {
  const json& p = c.at("params");
  pt::loss::preference_options o = pt::conventions::open_instruct::dpo;
  o.beta = p.at("beta").get<double>();
  o.label_smoothing = p.at("label_smoothing").get<double>();
  return o;
}

std::vector<json> of_type(const std::string& type) {
  std::vector<json> out;
  for (const json& c : golden::cases(file(), "dpo_utils.compute_loss"))
    if (c.at("params").at("loss_type") == type) out.push_back(c);
  EXPECT_FALSE(out.empty()) << "no golden case for loss_type " << type;
  return out;
}

}  // namespace

TEST(GoldenOpenInstructOffline, Meta) {
  EXPECT_EQ(file().at("meta").at("peer"), "open-instruct");
  EXPECT_EQ(file().at("meta").at("peer_version"), "e6c3044aa6201c8bfa4573c1b03142af599e730d");
  // Only DPO+NLL is skipped: dpo_utils has no NLL term at this commit.
  ASSERT_EQ(file().at("skipped").size(), 1u) << file().at("skipped").dump();
  EXPECT_EQ(file().at("skipped")[0].at("name"), "dpo_nll");
}

TEST(GoldenOpenInstructOffline, PresetIsDpoConfigDefault) {
  // DPOConfig() defaults: dpo_norm with β = 5, no smoothing (case dpo_norm_default).
  const json& p = named("dpo_norm_default").at("params");
  EXPECT_EQ(p.at("loss_type"), "dpo_norm");
  EXPECT_EQ(pt::conventions::open_instruct::dpo.beta, p.at("beta").get<double>());
  EXPECT_EQ(pt::conventions::open_instruct::dpo.label_smoothing,
            p.at("label_smoothing").get<double>());
  const auto simpo = pt::pref::presets::open_instruct_simpo();
  EXPECT_EQ(simpo.beta, named("simpo_default").at("params").at("beta").get<double>());
  EXPECT_DOUBLE_EQ(simpo.link.gamma,
                   simpo.beta * named("simpo_default").at("params").at("gamma_beta_ratio").get<double>());
}

TEST(GoldenOpenInstructOffline, DpoAndCdpo) {
  for (const json& c : of_type("dpo")) check<pt::algo::cdpo>(c, dpo_opts(c));
}

TEST(GoldenOpenInstructOffline, DpoNormLengthNormalised) {
  for (const json& c : of_type("dpo_norm")) check<pt::algo::dpo_length_normalized>(c, dpo_opts(c));
}

TEST(GoldenOpenInstructOffline, Simpo) {
  for (const json& c : of_type("simpo")) {
    const json& p = c.at("params");
    pt::algo::simpo::options_type o = pt::pref::presets::open_instruct_simpo(
        p.at("beta").get<double>(), p.at("gamma_beta_ratio").get<double>());
    o.label_smoothing = p.at("label_smoothing").get<double>();
    check<pt::algo::simpo>(c, o);
  }
}

TEST(GoldenOpenInstructOffline, DpoReferenceFree) {
  const json& c = named("dpo_reference_free");
  check<pt::loss::preference<pt::pref::sigmoid, pt::seq::sum, pt::pref::reference_free>>(
      c, dpo_opts(c));
}

// FINDING (see tests/golden/README.md): open-instruct e6c3044 wpo_loss forms its weight as
//   w = clamp(exp(avg_c + avg_r), max=1),  avg = (policy_logps · loss_mask).sum(-1) / loss_mask.sum(-1)
// with policy_logps the SUMMED (P,) sequence log-probs (wpo is not an averaged loss type) times
// the (P, W) label mask: it broadcasts only when P == W (then row i mixes every pair's sum) or
// P == 1 (then avg = the sum itself), and the weight is NOT detached (gradient flows through w).
// pref::presets::wpo_open_instruct implements the intended form (token means, detached, TRL v0.26).
// Case wpo_single_pair: peer w = exp(S_c + S_r) with gradient; case wpo_square: the P == W mix.
TEST(GoldenOpenInstructOffline, DISABLED_WpoWeightIsSummedLogProbsWithGradient) {
  for (const json& c : of_type("wpo")) check<pt::algo::wpo>(c, dpo_opts(c), true);
}

TEST(GoldenOpenInstructOffline, SftSumAndMean) {
  for (const json& c : golden::cases(file(), "finetune.reduce_loss")) {
    const json& in = c.at("inputs");
    const vec lp = golden::data(in.at("token_logprobs"));
    const auto mask = golden::as_float(golden::data(in.at("mask")));
    const offs seqs = golden::row_offsets(in.at("mask"));
    const pt::token_batch batch{seqs, mask};
    vec g(lp.size());
    const std::string mode = c.at("params").at("reduce_loss");
    const pt::agg_result r =
        mode == "sum"
            ? pt::loss::sft<pt::agg::token_sum>::compute(pt::exec::host{}, std::span<const double>(lp),
                                                         batch, std::span<double>(g))
            : pt::loss::sft<pt::agg::token_mean>::compute(pt::exec::host{}, std::span<const double>(lp),
                                                          batch, std::span<double>(g));
    const std::string name = c.at("name");
    golden::expect_close(r.loss, golden::scalar(c.at("outputs").at("loss")), name + " loss");
    golden::expect_close(g, golden::data(c.at("grads").at("token_logprobs")), name + " grad");
  }
}
