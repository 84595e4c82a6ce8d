// Reward combination (apply_verifiable_reward, soft_format_reward_func, RewardConfig.build), the
// verifier concept.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "posttrain/reward/verifiers.hpp"

namespace pt = posttrain;
using pt::reward::labelled;
using pt::reward::r1_format_matches;

TEST(R1Format, ReMatchDotall) {
  EXPECT_TRUE(r1_format_matches("<think>x</think><answer>5</answer>"));
  EXPECT_TRUE(r1_format_matches("reason\nmore</think> \n\t<answer>\n5\n</answer> trailing"));
  EXPECT_TRUE(r1_format_matches("</think><answer></answer>"));
  EXPECT_FALSE(r1_format_matches("<think>x</think> text <answer>5</answer>"));  // only \s between
  EXPECT_FALSE(r1_format_matches("<think>x</think><answer>5"));                 // no close tag
  EXPECT_FALSE(r1_format_matches("<answer>5</answer>"));                         // no </think>
  // A later </think> may be the one followed by <answer>.
  EXPECT_TRUE(r1_format_matches("a</think>b</think><answer>c</answer>"));
  EXPECT_FALSE(r1_format_matches("</answer></think><answer>"));  // close must come after open
  EXPECT_FALSE(r1_format_matches(""));
  EXPECT_EQ(pt::reward::r1_format_reward("</think><answer>1</answer>", 0.5), 0.5);
  EXPECT_EQ(pt::reward::r1_format_reward("nothing", 0.5), 0.0);
}

// A verifier that is not one of the library's: it scores 0.25 for any input.
struct quarter {
  static std::string name() { return "quarter"; }
  double weight = 2.0;
  double score(std::string_view, std::string_view) const { return 0.25; }
};
struct no_weight {
  static std::string name() { return "no_weight"; }
  double score(std::string_view, std::string_view) const { return 1.0; }
};
struct not_a_verifier {
  static std::string name() { return "x"; }
};
static_assert(pt::reward::check_verifier<quarter>());
static_assert(pt::reward::verifier<no_weight>);
static_assert(!pt::reward::verifier<not_a_verifier>);
static_assert(!pt::reward::verifier<pt::reward::max_length_verifier>);  // reads token counts

TEST(VerifiableReward, SumOverPairs) {
  const pt::reward::gsm8k_verifier g;
  const pt::reward::math_verifier m;
  const quarter q;
  const no_weight n;
  EXPECT_EQ(pt::reward::verifier_weight(q), 2.0);
  EXPECT_EQ(pt::reward::verifier_weight(n), 1.0);
  const std::string pred = "so \\boxed{18}";
  // gsm8k: 10·1·1, MATH (dataset name lower-cased): 10·1·1, quarter: 10·0.25·2, unknown: skipped.
  const std::vector<labelled> pairs = {
      {"18", "gsm8k"}, {"18", "MATH"}, {"x", "quarter"}, {"18", "unknown"}, {"17", "gsm8k"}};
  EXPECT_DOUBLE_EQ(pt::reward::verifiable_reward(pred, pairs, 10.0, g, m, q, n),
                   10.0 + 10.0 + 10.0 * 0.25 * 2.0 + 0.0 + 0.0);
  EXPECT_EQ(pt::reward::verifiable_reward(pred, std::span<const labelled>{}, 10.0, g, m), 0.0);
  EXPECT_EQ(pt::reward::verifiable_reward(pred, pairs, 10.0), 0.0);  // no verifiers
}

TEST(CombineReward, Gating) {
  pt::reward::reward_options o;  // RewardConfig defaults
  const std::vector<double> none;
  EXPECT_EQ(o.verification_reward, 10.0);
  EXPECT_EQ(o.non_stop_penalty_value, -10.0);
  EXPECT_EQ(pt::reward::streaming_reward_options().non_stop_penalty_value, 0.0);
  EXPECT_EQ(pt::reward::combine_reward(o, 10.0, 1.0, none, true), 10.0);  // format not applied
  o.apply_r1_style_format_reward = true;
  EXPECT_EQ(pt::reward::combine_reward(o, 10.0, 1.0, none, true), 10.0);  // multiplicative, kept
  EXPECT_EQ(pt::reward::combine_reward(o, 10.0, 0.0, none, true), 0.0);   // gated off
  EXPECT_EQ(pt::reward::combine_reward(o, 10.0, 0.5, none, true), 0.0);   // compared with 1 literally
  o.additive_format_reward = true;
  EXPECT_EQ(pt::reward::combine_reward(o, 10.0, 1.0, none, true), 11.0);
  EXPECT_EQ(pt::reward::combine_reward(o, 10.0, 0.0, none, true), 10.0);
  o.apply_verifiable_reward = false;
  EXPECT_EQ(pt::reward::combine_reward(o, 10.0, 1.0, none, true), 1.0);   // the format score only
  o.non_stop_penalty = true;
  EXPECT_EQ(pt::reward::combine_reward(o, 10.0, 1.0, none, false), -10.0);
  EXPECT_EQ(pt::reward::combine_reward(o, 10.0, 1.0, none, true), 1.0);
}

TEST(CombineReward, MultiTurn) {
  pt::reward::reward_options o;
  const std::vector<double> turns = {1.0, 2.0, 3.0};
  EXPECT_EQ(pt::reward::combine_reward(o, 10.0, 0.0, turns, true), 13.0);  // last: 3 + 10
  o.aggregation = pt::reward::turn_aggregation::sum;
  EXPECT_EQ(pt::reward::combine_reward(o, 10.0, 0.0, turns, true), 16.0);  // 1 + 2 + (3 + 10)
  const std::vector<double> none;
  EXPECT_EQ(pt::reward::combine_reward(o, 10.0, 0.0, none, true), 10.0);
}
