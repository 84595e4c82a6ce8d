// Golden test: our advantage estimators with the verl presets against verl core_algos itself
// (tests/golden/data/verl_advantage.json, written by tests/golden/generate.py from the installed
// verl package). Groups 3 | 2 | 1 (a singleton), rewards with ties and equal-reward groups, masks
// with padding and a two-token hole (observation tokens).
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "golden/golden.hpp"
#include "posttrain/advantage/gae.hpp"
#include "posttrain/advantage/gpg.hpp"
#include "posttrain/advantage/group.hpp"
#include "posttrain/advantage/opo.hpp"
#include "posttrain/advantage/optimal_baseline.hpp"
#include "posttrain/advantage/reinforce.hpp"
#include "posttrain/advantage/rloo.hpp"
#include "posttrain/core/exec.hpp"

namespace pt = posttrain;
namespace adv = posttrain::advantage;
using golden::json;
using golden::vec;
using offs = std::vector<pt::index_t>;

namespace {

const json& file() {
  static const json f = golden::load("verl_advantage.json");
  return f;
}

struct outcome_case {
  vec rewards;  // R_b = Σ_t token_level_rewards (verl: scores = token_level_rewards.sum(-1))
  offs groups;
  offs seqs;
  std::vector<float> mask;
  vec expected;  // advantages [B*T]
  std::string name;
};

outcome_case outcome(const json& c) {
  const json& in = c.at("inputs");
  return {golden::row_sums(in.at("token_level_rewards")),
          golden::group_offsets(in.at("index")),
          golden::row_offsets(in.at("response_mask")),
          golden::as_float(golden::data(in.at("response_mask"))),
          golden::data(c.at("outputs").at("advantages")),
          c.at("name").get<std::string>()};
}

// A_b broadcast to tokens with the mask (verl: scores.unsqueeze(-1) * response_mask).
void check_outcome(const outcome_case& oc, const vec& a) {
  vec tokens(oc.mask.size());
  adv::broadcast_to_tokens(pt::exec::host{}, a, oc.seqs, oc.mask, std::span<double>(tokens));
  golden::expect_close(tokens, oc.expected, oc.name);
}

void run_outcome(const std::string& fn, const std::function<vec(const outcome_case&, const json&)>& f) {
  for (const json& c : golden::cases(file(), fn)) {
    const outcome_case oc = outcome(c);
    check_outcome(oc, f(oc, c.at("params")));
  }
}

}  // namespace

TEST(GoldenVerlAdvantage, Meta) {
  EXPECT_EQ(file().at("meta").at("peer"), "verl");
  EXPECT_TRUE(file().at("skipped").empty()) << file().at("skipped").dump();
}

TEST(GoldenVerlAdvantage, GrpoLoop) {
  run_outcome("compute_grpo_outcome_advantage", [](const outcome_case& oc, const json& p) {
    vec a(oc.rewards.size());
    const bool norm = p.at("norm_adv_by_std_in_grpo").get<bool>();
    adv::group_advantages(pt::exec::host{}, oc.rewards, oc.groups, std::span<double>(a),
                          norm ? adv::group_conventions::verl : adv::group_conventions::dr_grpo);
    return a;
  });
}

TEST(GoldenVerlAdvantage, GrpoVectorized) {
  run_outcome("compute_grpo_vectorized_outcome_advantage", [](const outcome_case& oc, const json& p) {
    vec a(oc.rewards.size());
    adv::group_options o = adv::group_conventions::verl_vectorized;
    if (!p.at("norm_adv_by_std_in_grpo").get<bool>()) o.scale = adv::group_scale::none;
    adv::group_advantages(pt::exec::host{}, oc.rewards, oc.groups, std::span<double>(a), o);
    return a;
  });
}

TEST(GoldenVerlAdvantage, PassK) {
  run_outcome("compute_grpo_passk_outcome_advantage", [](const outcome_case& oc, const json& p) {
    vec a(oc.rewards.size());
    adv::passk_advantages(pt::exec::host{}, oc.rewards, oc.groups, std::span<double>(a),
                          {.normalize_by_std = p.at("norm_adv_by_std_in_grpo").get<bool>(),
                           .epsilon = p.at("epsilon").get<double>()});
    return a;
  });
}

TEST(GoldenVerlAdvantage, Rloo) {
  run_outcome("compute_rloo_outcome_advantage", [](const outcome_case& oc, const json&) {
    vec a(oc.rewards.size());
    adv::rloo_advantages(pt::exec::host{}, oc.rewards, oc.groups, std::span<double>(a),
                         adv::rloo_conventions::verl);
    return a;
  });
}

TEST(GoldenVerlAdvantage, RlooVectorized) {
  run_outcome("compute_rloo_vectorized_outcome_advantage", [](const outcome_case& oc, const json&) {
    vec a(oc.rewards.size());
    adv::rloo_advantages(pt::exec::host{}, oc.rewards, oc.groups, std::span<double>(a),
                         adv::rloo_conventions::verl_vectorized);
    for (double& v : a)
      if (std::isnan(v)) v = 0.0;  // singleton under the zero policy: verl writes 0
    return a;
  });
}

TEST(GoldenVerlAdvantage, Opo) {
  run_outcome("compute_opo_outcome_advantage", [](const outcome_case& oc, const json&) {
    vec lengths(oc.rewards.size());
    adv::sequence_lengths(pt::exec::host{}, oc.mask, oc.seqs, std::span<double>(lengths));
    vec a(oc.rewards.size());
    adv::opo_advantages(pt::exec::host{}, oc.rewards, lengths, oc.groups, std::span<double>(a));
    return a;
  });
}

TEST(GoldenVerlAdvantage, Gpg) {
  run_outcome("compute_gpg_outcome_advantage", [](const outcome_case& oc, const json& p) {
    vec a(oc.rewards.size());
    adv::gpg_advantages(pt::exec::host{}, oc.rewards, oc.groups, std::span<double>(a),
                        {.f_norm = p.at("f_norm").get<double>()});
    return a;
  });
}

TEST(GoldenVerlAdvantage, ReinforcePlusPlusBaseline) {
  for (const json& c : golden::cases(file(), "compute_reinforce_plus_plus_baseline_outcome_advantage")) {
    const outcome_case oc = outcome(c);
    vec a(oc.mask.size());
    adv::reinforce_plus_plus_baseline(pt::exec::host{}, oc.rewards, oc.groups, oc.mask, oc.seqs,
                                      std::span<double>(a),
                                      adv::reinforce_pp_conventions::verl_baseline);
    golden::expect_close(a, oc.expected, oc.name);
  }
}

// verl 0.9.1 carries the running return THROUGH observation tokens (mask 0 inside a response):
//   returns[t] = (r_t + γ·G)·m_t;  G ← (r_t + γ·G)·m_t + G·(1 − m_t)
// while our verl preset (reinforce_pp_conventions::verl, return_convention::reset_at_masked, per
// the reference at verl b178a3c) resets G to 0 at every masked token. Both agree when the mask is
// contiguous (padding only), which the enabled test checks; the disabled test is the finding for
// masks with holes (multi-turn), see tests/golden/README.md.
void check_reinforce_pp(const std::string& mask_name, const adv::reinforce_pp_options& preset) {
  bool any = false;
  for (const json& c : golden::cases(file(), "compute_reinforce_plus_plus_outcome_advantage")) {
    if (c.at("params").at("mask") != mask_name) continue;
    any = true;
    const json& in = c.at("inputs");
    const vec r = golden::data(in.at("token_level_rewards"));
    const auto mask = golden::as_float(golden::data(in.at("response_mask")));
    const offs seqs = golden::row_offsets(in.at("response_mask"));
    adv::reinforce_pp_options o = preset;
    o.gamma = c.at("params").at("gamma").get<double>();
    vec a(r.size()), ret(r.size());
    adv::reinforce_plus_plus(pt::exec::host{}, r, mask, seqs, std::span<double>(a),
                             std::span<double>(ret), o);
    const std::string name = c.at("name");
    golden::expect_close(a, golden::data(c.at("outputs").at("advantages")), name + " advantages");
    golden::expect_close(ret, golden::data(c.at("outputs").at("returns")), name + " returns");
  }
  EXPECT_TRUE(any) << mask_name;
}

// The reference's verl (b178a3c) resets the return at masked tokens, verl 0.9.1 carries it
// through observation holes: both presets agree without holes; with holes only verl_0_9 does.
TEST(GoldenVerlAdvantage, ReinforcePlusPlusContiguousMask) {
  check_reinforce_pp("mask_contig", adv::reinforce_pp_conventions::verl);
  check_reinforce_pp("mask_contig", adv::reinforce_pp_conventions::verl_0_9);
}
TEST(GoldenVerlAdvantage, ReinforcePlusPlusObservationHoleCarryThrough) {
  check_reinforce_pp("mask", adv::reinforce_pp_conventions::verl_0_9);
}

TEST(GoldenVerlAdvantage, Remax) {
  for (const json& c : golden::cases(file(), "compute_remax_outcome_advantage")) {
    const json& in = c.at("inputs");
    const vec r = golden::data(in.at("token_level_rewards"));
    const vec base = golden::data(in.at("reward_baselines"));
    const auto mask = golden::as_float(golden::data(in.at("response_mask")));
    const offs seqs = golden::row_offsets(in.at("response_mask"));
    vec a(r.size()), ret(r.size());
    adv::remax(pt::exec::host{}, r, std::span<const double>(base), mask, seqs,
               std::span<double>(a), std::span<double>(ret));
    const std::string name = c.at("name");
    const vec m = golden::data(in.at("response_mask"));
    golden::expect_close_masked(a, golden::data(c.at("outputs").at("advantages")), m,
                                name + " advantages");
    golden::expect_close_masked(ret, golden::data(c.at("outputs").at("returns")), m,
                                name + " returns");
  }
}

TEST(GoldenVerlAdvantage, Gae) {
  for (const json& c : golden::cases(file(), "compute_gae_advantage_return")) {
    const json& in = c.at("inputs");
    const vec r = golden::data(in.at("token_level_rewards"));
    const vec v = golden::data(in.at("values"));
    const auto mask = golden::as_float(golden::data(in.at("response_mask")));
    const offs seqs = golden::row_offsets(in.at("response_mask"));
    adv::gae_options o = adv::gae_conventions::verl;
    o.gamma = c.at("params").at("gamma").get<double>();
    o.lambda = c.at("params").at("lam").get<double>();
    vec a(r.size()), ret(r.size());
    adv::gae(pt::exec::host{}, r, std::span<const double>(v), mask, seqs, std::span<double>(a),
             std::span<double>(ret), o);
    const std::string name = c.at("name");
    const vec m = golden::data(in.at("response_mask"));
    golden::expect_close_masked(a, golden::data(c.at("outputs").at("advantages")), m,
                                name + " advantages");
    golden::expect_close_masked(ret, golden::data(c.at("outputs").at("returns")), m,
                                name + " returns");
  }
}

namespace {

void check_otb(const std::string& fn, adv::otb_options base) {
  for (const json& c : golden::cases(file(), fn)) {
    const json& in = c.at("inputs");
    const vec r = golden::data(in.at("token_level_rewards"));
    const vec old = golden::data(in.at("old_log_probs"));
    const vec spi = golden::data(in.at("sum_pi_squared"));
    const vec w = in.contains("rollout_is_weights") ? golden::data(in.at("rollout_is_weights")) : vec{};
    const vec m = golden::data(in.at("response_mask"));
    const offs seqs = golden::row_offsets(in.at("response_mask"));
    const offs groups = golden::group_offsets(in.at("index"));
    adv::otb_options o = base;
    o.handle_zero_tail = c.at("params").at("handle_zero_tail").get<bool>();
    o.epsilon = c.at("params").at("epsilon").get<double>();
    vec a(r.size()), ret(r.size());
    adv::optimal_token_baseline(pt::exec::host{}, r, std::span<const double>(old),
                                std::span<const double>(spi), std::span<const double>(w),
                                golden::as_float(m), seqs, groups, std::span<double>(a),
                                std::span<double>(ret), o);
    const std::string name = c.at("name");
    golden::expect_close(a, golden::data(c.at("outputs").at("advantages")), name + " advantages");
    golden::expect_close_masked(ret, golden::data(c.at("outputs").at("returns")), m,
                                name + " returns");
  }
}

}  // namespace

TEST(GoldenVerlAdvantage, OptimalTokenBaseline) {
  check_otb("compute_optimal_token_baseline_advantage", adv::otb_conventions::verl);
}

TEST(GoldenVerlAdvantage, TirOptimalTokenBaseline) {
  check_otb("compute_multi_turn_optimal_token_baseline_advantage", adv::otb_conventions::verl_tir);
}

// verl GDPO (compute_gdpo_outcome_advantage): per reward component the verl GRPO advantage
// (loop form), weighted sum, then masked_whiten over the batch's tokens and × mask. The library
// has no verl-GDPO preset (advantage/gdpo.hpp is TRL's sequence-level GDPO); this composes it from
// group_advantages + broadcast_to_tokens + whiten to pin the formula against verl.
TEST(GoldenVerlAdvantage, GdpoComposedFromParts) {
  for (const json& c : golden::cases(file(), "compute_gdpo_outcome_advantage")) {
    const json& in = c.at("inputs");
    const vec m = golden::data(in.at("response_mask"));
    const offs seqs = golden::row_offsets(in.at("response_mask"));
    const offs groups = golden::group_offsets(in.at("index"));
    const auto keys = c.at("params").at("gdpo_reward_keys").get<std::vector<std::string>>();
    const auto weights = c.at("params").at("gdpo_reward_weights").get<vec>();
    vec total(seqs.size() - 1, 0.0);
    for (std::size_t k = 0; k < keys.size(); ++k) {
      const vec r = golden::data(in.at(keys[k]));
      vec a(r.size());
      adv::group_advantages(pt::exec::host{}, r, groups, std::span<double>(a),
                            adv::group_conventions::verl);
      for (std::size_t i = 0; i < a.size(); ++i) total[i] += weights[k] * a[i];
    }
    vec tokens(m.size()), out(m.size());
    adv::broadcast_to_tokens(pt::exec::host{}, total, seqs, golden::as_float(m),
                             std::span<double>(tokens));
    pt::whiten(pt::exec::host{}, tokens, golden::as_float(m), std::span<double>(out),
               pt::whiten_conventions::verl);
    golden::expect_close(out, golden::data(c.at("outputs").at("advantages")), c.at("name"));
  }
}
