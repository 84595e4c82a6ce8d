// Golden test: verl 0.9.1's clip_cov and kl_cov policy losses (tests/golden/data/verl_cov.json)
// against clip_cov_weights / kl_cov_selection (loss/policy_gradient/token_selection.hpp) and the
// algo::clip_cov / algo::kl_cov compositions: the tokens chosen, the loss value, the metrics and
// torch.autograd's d loss / d log_prob.
//
// verl picks clip_cov's tokens with torch.randperm and kl_cov's with torch.topk and returns neither
// choice; generate.py reads them from the locals of verl's own frame (sys.settrace, nothing
// patched): "candidates" (flat row-major indices in torch.nonzero order), "perm" (the randperm
// drawn), "selected", and clip_cov's corr. The randperm becomes caller keys here:
// key[candidates[perm[i]]] = i, so the min(k, #candidates) smallest keys are verl's choice, and
// everything else (candidate set, k, loss, gradient) is ours. Inputs: the shared rows (observation
// hole, an all-masked row in mask_empty, rollout IS weights in *_isw) with log-ratios of ±25
// ("logp") or ±2.5 ("moderate").
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "golden/golden.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/loss/policy_gradient.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"
#include "posttrain/loss/policy_gradient/token_selection.hpp"

namespace pt = posttrain;
using golden::json;
using golden::vec;
using offs = std::vector<pt::index_t>;

namespace {

const json& file() {
  static const json f = golden::load("verl_cov.json");
  return f;
}

struct cov_case {
  std::string name, agg;
  vec lp, old, adv, isw, mask_d, grad_expected;
  std::vector<float> mask;
  offs seqs;
  std::vector<long> selected;
  double loss_expected = 0;
};

cov_case read(const json& c) {
  const json& in = c.at("inputs");
  cov_case k;
  k.name = c.at("name");
  k.agg = c.at("params").at("loss_agg_mode");
  k.lp = golden::data(in.at("log_prob"));
  k.old = golden::data(in.at("old_log_prob"));
  k.adv = golden::data(in.at("advantages"));
  if (in.contains("rollout_is_weights")) k.isw = golden::data(in.at("rollout_is_weights"));
  k.mask_d = golden::data(in.at("response_mask"));
  k.mask = golden::as_float(k.mask_d);
  k.seqs = golden::row_offsets(in.at("response_mask"));
  k.selected = in.at("selected").get<std::vector<long>>();
  k.loss_expected = golden::scalar(c.at("outputs").at("loss"));
  k.grad_expected = golden::data(c.at("grads").at("log_prob"));
  return k;
}

pt::policy_gradient_inputs<double> inputs_of(const cov_case& k) {
  pt::policy_gradient_inputs<double> in;
  in.logprobs = k.lp;
  in.old_logprobs = k.old;
  in.advantages = k.adv;
  in.mask = k.mask;
  in.seq_offsets = k.seqs;
  return in;
}

void check_clip_cov(const json& c) {
  const cov_case k = read(c);
  const json& pl = c.at("params").at("policy_loss");
  const json& in_j = c.at("inputs");
  const auto candidates = in_j.at("candidates").get<std::vector<long>>();
  const auto perm = in_j.at("perm").get<std::vector<long>>();
  ASSERT_EQ(perm.size(), candidates.size()) << k.name;

  pt::policy_gradient_options o = pt::selection_presets::verl_clip_cov();
  o.clip_low = c.at("params").at("clip_ratio_low").get<double>();
  o.clip_high = c.at("params").at("clip_ratio_high").get<double>();
  const pt::clip_cov_options co{pl.at("clip_cov_ratio").get<double>(),
                                pl.at("clip_cov_lb").get<double>(),
                                pl.at("clip_cov_ub").get<double>()};
  // verl's torch.randperm as caller keys (non-candidates: the largest key, never read).
  std::vector<std::uint64_t> keys(k.lp.size(), std::numeric_limits<std::uint64_t>::max());
  for (std::size_t i = 0; i < perm.size(); ++i)
    keys[static_cast<std::size_t>(candidates[static_cast<std::size_t>(perm[i])])] = i;

  pt::policy_gradient_inputs<double> in = inputs_of(k);
  vec w(k.lp.size());
  const pt::selection_result s = pt::clip_cov_weights(
      pt::exec::host{}, in, co, o, std::span<const std::uint64_t>(keys), std::span<double>(w));
  EXPECT_EQ(s.candidates, static_cast<pt::index_t>(candidates.size())) << k.name;
  EXPECT_EQ(s.selected, static_cast<pt::index_t>(k.selected.size())) << k.name;
  for (long t : k.selected) EXPECT_EQ(w[static_cast<std::size_t>(t)], 0.0) << k.name << " " << t;
  golden::expect_close_masked(w, golden::data(c.at("outputs").at("corr")), k.mask_d,
                              k.name + " weights vs verl corr");
  const json& out = c.at("outputs");
  golden::expect_close(1.0 - s.kept_fraction, golden::scalar(out.at("actor/pg_clipfrac")),
                       k.name + " pg_clipfrac");

  vec iw = w;
  for (std::size_t t = 0; t < iw.size() && !k.isw.empty(); ++t) iw[t] *= k.isw[t];
  in.importance_weights = iw;
  vec grad(k.lp.size());
  pt::policy_gradient_outputs<double> po;
  po.grad = std::span<double>(grad);
  pt::policy_gradient_result r;
  if (k.agg == "token-mean") {
    r = pt::algo::clip_cov::compute(pt::exec::host{}, in, o, po, {}, pt::agg_conventions::verl());
  } else {
    ASSERT_EQ(k.agg, "seq-mean-token-mean");
    using loss = pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::none,
                                           pt::agg::seq_mean_token_mean>;
    r = loss::compute(pt::exec::host{}, in, o, po, {}, pt::agg_conventions::verl());
  }
  golden::expect_close(r.loss, k.loss_expected, k.name + " loss");
  golden::expect_close(grad, k.grad_expected, k.name + " d/dlog_prob");
  golden::expect_close(r.approx_kl, golden::scalar(out.at("actor/ppo_kl")), k.name + " ppo_kl");
}

void check_kl_cov(const json& c) {
  const cov_case k = read(c);
  const json& pl = c.at("params").at("policy_loss");
  const pt::kl_cov_options ko{pl.at("kl_cov_ratio").get<double>(),
                              pl.at("ppo_kl_coef").get<double>()};
  pt::policy_gradient_inputs<double> in = inputs_of(k);
  vec sel_peer(k.lp.size(), 0.0);
  for (long t : k.selected) sel_peer[static_cast<std::size_t>(t)] = 1.0;
  // Our top-k (no ties in these inputs) chooses the same tokens as verl's torch.topk.
  vec sel_ours(k.lp.size());
  pt::kl_cov_selection(pt::exec::host{}, in, ko, std::span<double>(sel_ours));
  golden::expect_close(sel_ours, sel_peer, k.name + " selection");

  if (!k.isw.empty()) in.importance_weights = k.isw;
  vec grad(k.lp.size());
  pt::policy_gradient_outputs<double> po;
  po.grad = std::span<double>(grad);
  const pt::policy_gradient_options o = pt::selection_presets::verl_kl_cov();
  pt::kl_cov_result r;
  if (k.agg == "token-mean") {
    r = pt::algo::kl_cov::compute_with_selection(pt::exec::host{}, in,
                                                 std::span<const double>(sel_peer), ko, o, po, {},
                                                 pt::agg_conventions::verl());
  } else {
    ASSERT_EQ(k.agg, "seq-mean-token-mean");
    r = pt::loss::kl_cov<pt::kl::none, pt::agg::seq_mean_token_mean>::compute_with_selection(
        pt::exec::host{}, in, std::span<const double>(sel_peer), ko, o, po, {},
        pt::agg_conventions::verl());
  }
  golden::expect_close(r.loss, k.loss_expected, k.name + " loss");
  golden::expect_close(grad, k.grad_expected, k.name + " d/dlog_prob");
  golden::expect_close(r.abs_kl, golden::scalar(c.at("outputs").at("actor/ppo_kl")),
                       k.name + " ppo_kl (|logr| mean)");
}

}  // namespace

TEST(GoldenVerlCov, Meta) {
  EXPECT_EQ(file().at("meta").at("peer"), "verl");
  EXPECT_TRUE(file().at("skipped").empty()) << file().at("skipped").dump();
}

TEST(GoldenVerlCov, ClipCovWithVerlsRandperm) {
  for (const json& c : golden::cases(file(), "compute_policy_loss_clip_cov")) check_clip_cov(c);
}

TEST(GoldenVerlCov, KlCovTopKSelection) {
  for (const json& c : golden::cases(file(), "compute_policy_loss_kl_cov")) check_kl_cov(c);
}

// The recorded randperm matters: with more candidates than k (clip_cov_ratio 0.1, lb 0.2) a
// different key order selects different tokens, and the loss no longer matches.
TEST(GoldenVerlCov, ClipCovKeysDecideTheChoice) {
  bool exercised = false;
  for (const json& c : golden::cases(file(), "compute_policy_loss_clip_cov")) {
    const auto candidates = c.at("inputs").at("candidates").get<std::vector<long>>();
    const auto selected = c.at("inputs").at("selected").get<std::vector<long>>();
    if (selected.size() >= candidates.size()) continue;
    exercised = true;
    const cov_case k = read(c);
    const json& pl = c.at("params").at("policy_loss");
    std::vector<std::uint64_t> keys(k.lp.size(), std::numeric_limits<std::uint64_t>::max());
    for (std::size_t i = 0; i < candidates.size(); ++i)  // nonzero order instead of randperm
      keys[static_cast<std::size_t>(candidates[i])] = i;
    pt::policy_gradient_options o = pt::selection_presets::verl_clip_cov();
    o.clip_high = c.at("params").at("clip_ratio_high").get<double>();
    vec w(k.lp.size());
    pt::clip_cov_weights(pt::exec::host{}, inputs_of(k),
                         pt::clip_cov_options{pl.at("clip_cov_ratio").get<double>(),
                                              pl.at("clip_cov_lb").get<double>(),
                                              pl.at("clip_cov_ub").get<double>()},
                         o, std::span<const std::uint64_t>(keys), std::span<double>(w));
    const vec corr = golden::data(c.at("outputs").at("corr"));
    double differ = 0;
    for (std::size_t t = 0; t < w.size(); ++t)
      if (k.mask_d[t] != 0.0) differ += std::abs(w[t] - corr[t]);
    EXPECT_GT(differ, 0.0) << k.name;
  }
  EXPECT_TRUE(exercised);
}
