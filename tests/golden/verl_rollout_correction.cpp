// Golden test: rollout IS weights and rejection masks with the verl presets against verl's
// rollout_corr_helper.compute_rollout_correction_weights / compute_rollout_rejection_mask
// themselves (tests/golden/data/verl_rollout_correction.json). The log-ratio input holds a +30
// outlier (beyond verl's ±20 clamp), an observation hole and padding.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "golden/golden.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/loss/policy_gradient/rollout_correction.hpp"

namespace pt = posttrain;
using golden::json;
using golden::vec;
using offs = std::vector<pt::index_t>;

namespace {

const json& file() {
  static const json f = golden::load("verl_rollout_correction.json");
  return f;
}

// verl's "lower_upper" threshold string, or a number.
std::pair<double, double> bounds(const json& t) {
  if (t.is_number()) return {0.0, t.get<double>()};
  const std::string s = t.get<std::string>();
  const auto u = s.find('_');
  return {std::stod(s.substr(0, u)), std::stod(s.substr(u + 1))};
}

}  // namespace

TEST(GoldenVerlRolloutCorrection, Meta) {
  EXPECT_EQ(file().at("meta").at("peer"), "verl");
  EXPECT_TRUE(file().at("skipped").empty()) << file().at("skipped").dump();
}

TEST(GoldenVerlRolloutCorrection, IsWeights) {
  for (const json& c : golden::cases(file(), "compute_rollout_correction_weights")) {
    const json& in = c.at("inputs");
    const json& p = c.at("params");
    const vec d = golden::data(in.at("log_ratio"));
    const vec zero(d.size(), 0.0);
    const auto mask = golden::as_float(golden::data(in.at("response_mask")));
    const offs seqs = golden::row_offsets(in.at("response_mask"));
    const pt::is_level level = p.at("rollout_is") == "token" ? pt::is_level::token
                                                              : pt::is_level::sequence_sum;
    const bool bn = p.at("rollout_is_batch_normalize").get<bool>();
    const json& thr = p.at("rollout_is_threshold");
    const pt::rollout_is_options o =
        thr.is_number() ? pt::rollout_presets::verl(level, thr.get<double>(), bn)
                        : pt::rollout_presets::verl_icepop(level, bounds(thr).first,
                                                           bounds(thr).second, bn);
    pt::rollout_inputs<double> ri;
    ri.logprobs = d;  // verl takes log_ratio = ℓold − ℓroll: ℓ = log_ratio, ℓroll = 0
    ri.rollout_logprobs = zero;
    ri.mask = mask;
    ri.seq_offsets = seqs;
    vec w(d.size());
    pt::rollout_is_weights(pt::exec::host{}, ri, o, std::span<double>(w));
    golden::expect_close(w, golden::data(c.at("outputs").at("weights")), c.at("name"));
  }
}

TEST(GoldenVerlRolloutCorrection, RejectionMask) {
  const std::map<std::string, pt::rs_criterion> names{
      {"token_k1", pt::rs_criterion::token_k1},       {"token_k2", pt::rs_criterion::token_k2},
      {"token_k3", pt::rs_criterion::token_k3},       {"seq_sum_k1", pt::rs_criterion::seq_sum_k1},
      {"seq_sum_k2", pt::rs_criterion::seq_sum_k2},   {"seq_sum_k3", pt::rs_criterion::seq_sum_k3},
      {"seq_mean_k1", pt::rs_criterion::seq_mean_k1}, {"seq_mean_k2", pt::rs_criterion::seq_mean_k2},
      {"seq_mean_k3", pt::rs_criterion::seq_mean_k3}, {"seq_max_k2", pt::rs_criterion::seq_max_k2},
      {"seq_max_k3", pt::rs_criterion::seq_max_k3}};
  for (const json& c : golden::cases(file(), "compute_rollout_rejection_mask")) {
    const json& in = c.at("inputs");
    const json& p = c.at("params");
    const vec d = golden::data(in.at("log_ratio"));
    const vec zero(d.size(), 0.0);
    const auto mask = golden::as_float(golden::data(in.at("response_mask")));
    const offs seqs = golden::row_offsets(in.at("response_mask"));
    const pt::rs_criterion crit = names.at(p.at("rollout_rs").get<std::string>());
    const json& thr = p.at("rollout_rs_threshold");
    const pt::rs_rule rule = thr.is_number()
                                 ? pt::rs_threshold(crit, thr.get<double>())
                                 : pt::rs_rule{crit, bounds(thr).first, bounds(thr).second};
    pt::rollout_inputs<double> ri;
    ri.logprobs = d;
    ri.rollout_logprobs = zero;
    ri.mask = mask;
    ri.seq_offsets = seqs;
    std::vector<float> out(d.size());
    pt::rollout_rejection_mask(pt::exec::host{}, ri, pt::rollout_presets::verl_rejection({rule}),
                               std::span<float>(out));
    golden::expect_close(vec(out.begin(), out.end()), golden::data(c.at("outputs").at("mask")),
                         c.at("name"), 0.0, 0.0);
  }
}
