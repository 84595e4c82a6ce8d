// Golden test: our offline compositions against TRL 1.16's own trainers
// (tests/golden/data/trl_offline.json):
//   CPOTrainer.get_batch_loss_metrics (trl.experimental.cpo; sigmoid/hinge/ipo/simpo, label
//     smoothing, cpo_alpha incl. 0, AlphaPO alpha ≠ 0)   → algo::cpo / cpo_hinge / cpo_ipo /
//     cpo_simpo / alphapo / alphapo_simpo
//   ORPOTrainer.get_batch_loss_metrics (trl.experimental.orpo)  → algo::orpo
//   KTOTrainer._compute_loss (kto with the KL reference point z0, apo_zero_unpaired, weights)
//     → algo::kto / kto_apo_zero_unpaired with kto_kl_reference
//   RewardTrainer.compute_loss (margin, center_rewards_coefficient) → algo::bradley_terry
// CPO and ORPO run their real concatenated_forward (padding, label masks, cross-entropy NLL,
// get_batch_logps): the stand-in model's logits over a 2-token vocabulary are [ℓ, log(1 − e^ℓ)],
// so label 0's log-softmax is the seeded per-token log-prob ℓ and autograd gives d loss / dℓ.
// Layout of per_token_logps: rows 0..P−1 chosen, P..2P−1 rejected; column j scores token j + 1.
// KTO and the reward model take the per-token log-probs / rewards directly.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "golden/golden.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/loss/algorithms_offline.hpp"

namespace pt = posttrain;
using golden::json;
using golden::vec;
using offs = std::vector<pt::index_t>;

namespace {

const json& file() {
  static const json f = golden::load("trl_offline.json");
  return f;
}

struct pair_case {
  std::string name;
  long pairs = 0, width = 0;
  vec chosen, rejected, grad_expected, mask_all;
  std::vector<float> mask_c, mask_r;
  offs seqs;
};

pair_case read_pairs(const json& c) {
  const json& in = c.at("inputs");
  const auto shape = golden::shape(in.at("per_token_logps"));
  pair_case d;
  d.name = c.at("name");
  d.pairs = shape[0] / 2;
  d.width = shape[1];
  const vec lp = golden::data(in.at("per_token_logps"));
  d.mask_all = golden::data(in.at("completion_mask"));
  const auto half = static_cast<std::size_t>(d.pairs * d.width);
  d.chosen.assign(lp.begin(), lp.begin() + half);
  d.rejected.assign(lp.begin() + half, lp.end());
  d.mask_c.assign(d.mask_all.begin(), d.mask_all.begin() + half);
  d.mask_r.assign(d.mask_all.begin() + half, d.mask_all.end());
  for (long p = 0; p <= d.pairs; ++p) d.seqs.push_back(static_cast<pt::index_t>(p * d.width));
  d.grad_expected = golden::data(c.at("grads").at("per_token_logps"));
  return d;
}

// Runs a reference-free preference composition (Loss::compute(host, in, options, out)).
template <class Loss, class Options>
void check_pairs(const json& c, const Options& o, bool compare_nll) {
  const pair_case d = read_pairs(c);
  pt::loss::preference_inputs<double> in;
  in.batch = {{d.seqs, d.mask_c}, {d.seqs, d.mask_r}};
  in.chosen_logprobs = d.chosen;
  in.rejected_logprobs = d.rejected;
  vec gc(d.chosen.size()), gr(d.rejected.size());
  pt::loss::preference_outputs<double> out;
  out.chosen_grad = std::span<double>(gc);
  out.rejected_grad = std::span<double>(gr);
  const pt::loss::preference_result r = Loss::compute(pt::exec::host{}, in, o, out);
  const json& outs = c.at("outputs");
  golden::expect_close(r.loss, golden::scalar(outs.at("loss")), d.name + " loss");
  if (compare_nll)
    golden::expect_close(r.nll, golden::scalar(outs.at("nll_loss")), d.name + " nll");
  if (outs.contains("rewards_chosen")) {
    golden::expect_close(r.chosen_reward, golden::scalar(outs.at("rewards_chosen")),
                         d.name + " rewards/chosen");
    golden::expect_close(r.rejected_reward, golden::scalar(outs.at("rewards_rejected")),
                         d.name + " rewards/rejected");
  }
  vec g = gc;
  g.insert(g.end(), gr.begin(), gr.end());
  // Every column of a row is a scored position; off the completion TRL's gradient is exactly 0
  // as ours, except where TRL's NLL reads prompt tokens (the disabled ORPO case below).
  golden::expect_close(g, d.grad_expected, d.name + " d/dper_token_logps");
}

void check_cpo(const json& c) {
  const json& p = c.at("params");
  const std::string lt = p.at("loss_type");
  pt::loss::preference_options o = pt::pref::presets::trl_cpo;
  o.beta = p.at("beta").get<double>();
  o.label_smoothing = p.at("label_smoothing").get<double>();
  o.nll_coef = p.at("cpo_alpha").get<double>();
  // simpo_gamma is simpo's own option (.link.gamma).
  const pt::loss::preference_options_for<pt::pref::simpo> simpo{
      o, {.gamma = p.at("simpo_gamma").get<double>()}};
  const bool nll = o.nll_coef != 0.0;
  const double alpha = p.at("alpha").get<double>();
  if (alpha != 0.0) {
    if (lt == "sigmoid")
      return check_pairs<pt::algo::alphapo>(c, pt::loss::alphapo_options{alpha, o}, nll);
    if (lt == "simpo")
      return check_pairs<pt::algo::alphapo_simpo>(
          c, pt::loss::alphapo_options_for<pt::pref::simpo>{alpha, simpo}, nll);
    ADD_FAILURE() << "no AlphaPO composition for loss_type " << lt;
    return;
  }
  if (lt == "sigmoid") return check_pairs<pt::algo::cpo>(c, o, nll);
  if (lt == "hinge") return check_pairs<pt::algo::cpo_hinge>(c, o, nll);
  if (lt == "ipo") return check_pairs<pt::algo::cpo_ipo>(c, o, nll);
  if (lt == "simpo") return check_pairs<pt::algo::cpo_simpo>(c, simpo, nll);
  ADD_FAILURE() << "unmapped CPO loss_type " << lt;
}

std::vector<json> orpo_cases(long prompt_len) {
  std::vector<json> out;
  for (const json& c : golden::cases(file(), "ORPOTrainer.get_batch_loss_metrics"))
    if (c.at("params").at("prompt_len").get<long>() == prompt_len) out.push_back(c);
  EXPECT_FALSE(out.empty()) << "no ORPO case with prompt_len " << prompt_len;
  return out;
}

void check_orpo(const json& c) {
  pt::loss::preference_options o = pt::pref::presets::trl_orpo;
  o.beta = c.at("params").at("beta").get<double>();
  check_pairs<pt::algo::orpo>(c, o, true);
}

}  // namespace

TEST(GoldenTrlOffline, Meta) {
  EXPECT_EQ(file().at("meta").at("peer"), "trl");
  EXPECT_TRUE(file().at("skipped").empty()) << file().at("skipped").dump();
}

TEST(GoldenTrlOffline, CpoEveryLossTypeAndAlphaPo) {
  for (const json& c : golden::cases(file(), "CPOTrainer.get_batch_loss_metrics")) check_cpo(c);
}

// Prompt of one token: the NLL's first predicted token is the first completion token.
TEST(GoldenTrlOffline, Orpo) {
  for (const json& c : orpo_cases(1)) check_orpo(c);
}

// Finding: TRL 1.16's ORPO concatenated_forward computes the NLL with labels =
// concatenated_input_ids where attention_mask == 1, i.e. over PROMPT and completion tokens (every
// attended token but the first), while the odds ratio uses completion-only labels. algo::orpo
// (pref::nll_token_mean; reference §7.4 "NLL_chosen") averages over chosen completion tokens
// only, so with a prompt longer than one token loss and gradient differ (TRL's gradient is
// non-zero at the prompt position). Not reproducible by the composition: its NLL and odds ratio
// read the same mask.
TEST(GoldenTrlOffline, DISABLED_OrpoNllIncludesPromptTokens) {
  for (const json& c : orpo_cases(2)) check_orpo(c);
}

TEST(GoldenTrlOffline, KtoWithKlReferencePointAndApoZeroUnpaired) {
  for (const json& c : golden::cases(file(), "KTOTrainer._compute_loss")) {
    const json& in = c.at("inputs");
    const json& p = c.at("params");
    const std::string name = c.at("name");
    const vec lp = golden::data(in.at("per_token_logps"));
    const std::vector<float> mask = golden::as_float(golden::data(in.at("completion_mask")));
    const offs seqs = golden::row_offsets(in.at("completion_mask"));
    const vec ref = golden::data(in.at("ref_logps"));
    std::vector<std::uint8_t> desirable;
    for (long v : in.at("label").get<std::vector<long>>()) desirable.push_back(v != 0 ? 1 : 0);
    const vec kl_pol = golden::data(in.at("KL_logps")), kl_ref = golden::data(in.at("ref_KL_logps"));
    const pt::loss::kto_options o{p.at("beta").get<double>(),
                                  p.at("desirable_weight").get<double>(),
                                  p.at("undesirable_weight").get<double>()};
    pt::loss::kto_inputs<double> ki;
    ki.batch = {seqs, mask};
    ki.logprobs = lp;
    ki.reference = ref;
    ki.desirable = desirable;
    vec grad(lp.size());
    pt::loss::kto_outputs<double> ko;
    ko.grad = std::span<double>(grad);
    pt::loss::kto_result r;
    const std::string lt = p.at("loss_type");
    if (lt == "kto") {
      ki.kl_reference = pt::loss::kto_kl_reference(std::span<const double>(kl_pol),
                                                   std::span<const double>(kl_ref));
      golden::expect_close(ki.kl_reference, golden::scalar(c.at("outputs").at("kl")),
                           name + " z0");
      r = pt::algo::kto::compute(pt::exec::host{}, ki, o, ko);
    } else {
      ASSERT_EQ(lt, "apo_zero_unpaired");
      r = pt::algo::kto_apo_zero_unpaired::compute(pt::exec::host{}, ki, o, ko);
    }
    golden::expect_close(r.loss, golden::scalar(c.at("outputs").at("loss")), name + " loss");
    // TRL sums the model's per-token log-probs over the whole row (the model returns 0 off the
    // completion), so its gradient is also defined at padding; no loss reads it.
    golden::expect_close_masked(grad, golden::data(c.at("grads").at("per_token_logps")),
                                golden::data(in.at("completion_mask")), name + " d/dper_token_logps");
  }
}

TEST(GoldenTrlOffline, RewardTrainerMarginAndCentering) {
  for (const json& c : golden::cases(file(), "RewardTrainer.compute_loss")) {
    const json& in = c.at("inputs");
    const std::string name = c.at("name");
    const vec rc = golden::data(in.at("rewards_chosen")), rr = golden::data(in.at("rewards_rejected"));
    const vec margin = in.contains("margin") ? golden::data(in.at("margin")) : vec{};
    const json& center = c.at("params").at("center_rewards_coefficient");
    pt::loss::reward_model_inputs<double> ri;
    ri.chosen = rc;
    ri.rejected = rr;
    ri.margin = margin;
    vec gc(rc.size()), gr(rr.size());
    pt::loss::reward_model_outputs<double> ro;
    ro.chosen_grad = std::span<double>(gc);
    ro.rejected_grad = std::span<double>(gr);
    const pt::loss::reward_model_options o{center.is_null() ? 0.0 : center.get<double>()};
    const pt::loss::reward_model_result r = pt::algo::bradley_terry::compute(pt::exec::host{}, ri, o, ro);
    golden::expect_close(r.loss, golden::scalar(c.at("outputs").at("loss")), name + " loss");
    golden::expect_close(gc, golden::data(c.at("grads").at("rewards_chosen")), name + " d/dr_c");
    golden::expect_close(gr, golden::data(c.at("grads").at("rewards_rejected")), name + " d/dr_r");
  }
}
