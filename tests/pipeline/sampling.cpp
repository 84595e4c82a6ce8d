// pipeline/sampling.hpp: rejection sampling keeps the argmax of each prompt's N rewards (first on
// ties) as prompt ++ completion with a completion mask; online pairs take the best and the worst
// and drop all-equal groups; prompt ordering sorts by reward variance; bad rewards throw.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include <posttrain/pipeline/sampling.hpp>

#include "pipeline/test_policy.hpp"

using namespace pt_test;

namespace {
constexpr pt::index_t V = 8;
// Reward = the completion's first token id, except for prompt 7, whose samples all score 1.
double token_reward(std::span<const pt::index_t> p, std::span<const pt::index_t> c, const pp::example_info&) {
  return p[0] == 7 ? 1.0 : static_cast<double>(c[0]);
}
}  // namespace

TEST(Sampling, RejectionSamplingKeepsTheArgmax) {
  bigram_policy<double> policy(V, 3, 0.1);  // nearly uniform: varied samples
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::reward::callable reward{&token_reward};
  std::vector<pt::index_t> prompts{0, 1, 2}, off{0, 1, 2, 3};
  pp::sampling_request r{{prompts, off}, {}, 6, {}, 9};
  r.sampling.max_new_tokens = 2;
  const auto best = pp::rejection_sampling(gen, reward, r, V);
  ASSERT_EQ(best.sequences.num_sequences(), 3);
  for (pt::index_t i = 0; i < 3; ++i) {
    const auto first = best.samples.rewards.begin() + i * 6;
    EXPECT_EQ(best.best_reward[i], *std::max_element(first, first + 6));
    EXPECT_EQ(best.best_sample[i], std::max_element(first, first + 6) - first);
    // The kept sequence is the prompt followed by that sample's completion.
    const auto seq = std::span<const pt::index_t>(best.sequences.tokens)
                         .subspan(best.sequences.seq_offsets[i], 3);
    EXPECT_EQ(seq[0], prompts[i]);
    EXPECT_EQ(static_cast<double>(seq[1]), best.best_reward[i]);
    EXPECT_EQ(best.loss_mask[best.sequences.seq_offsets[i]], 0.0f);
    EXPECT_EQ(best.loss_mask[best.sequences.seq_offsets[i] + 1], 1.0f);
  }
  // The same draws as sample_and_score alone (seeded per sample).
  pp::reward::callable reward2{&token_reward};
  const auto again = pp::sample_and_score(gen, reward2, r, V);
  EXPECT_EQ(again.rewards, best.samples.rewards);
}

TEST(Sampling, OnlinePairsTakeBestAndWorstAndDropTies) {
  bigram_policy<double> policy(V, 4, 0.1);
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::reward::callable reward{&token_reward};
  std::vector<pt::index_t> prompts{0, 7, 3}, off{0, 1, 2, 3};
  pp::sampling_request r{{prompts, off}, {}, 5, {}, 2};
  r.sampling.max_new_tokens = 1;
  const auto pairs = pp::online_preference_pairs(gen, reward, r, V);
  ASSERT_EQ(pairs.prompt, (std::vector<pt::index_t>{0, 2}));  // prompt 7's rewards are all equal
  for (std::size_t k = 0; k < 2; ++k) {
    const auto first = pairs.samples.rewards.begin() + pairs.prompt[k] * 5;
    EXPECT_EQ(pairs.chosen_reward[k], *std::max_element(first, first + 5));
    EXPECT_EQ(pairs.rejected_reward[k], *std::min_element(first, first + 5));
    EXPECT_GT(pairs.chosen_reward[k], pairs.rejected_reward[k]);
    EXPECT_EQ(static_cast<double>(pairs.chosen.tokens[2 * k + 1]), pairs.chosen_reward[k]);
    EXPECT_EQ(static_cast<double>(pairs.rejected.tokens[2 * k + 1]), pairs.rejected_reward[k]);
  }
}

TEST(Sampling, OrderByRewardVariance) {
  const std::vector<double> r{1, 1, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0};  // var 0, 1/4, 3/16... per 3
  // groups of 3: {1,1,1} var 0; {0,1,0} 2/9; {0,0,1} 2/9; {0,0,0} 0
  EXPECT_EQ(pp::order_by_reward_variance(r, 3), (std::vector<pt::index_t>{1, 2, 0, 3}));
  EXPECT_THROW(pp::order_by_reward_variance(r, 5), pt::error);
  const std::vector<double> bad{1, std::nan("")};
  EXPECT_THROW(pp::order_by_reward_variance(bad, 2), pt::error);
}

TEST(Sampling, NanRewardOrEmptyPromptsThrow) {
  bigram_policy<double> policy(V, 4);
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::reward::callable nan_reward{[](auto, auto, const pp::example_info&) { return std::nan(""); }};
  std::vector<pt::index_t> prompts{0}, off{0, 1}, none{0};
  EXPECT_THROW(pp::rejection_sampling(gen, nan_reward, {{prompts, off}, {}, 2, {}, 0}, V), pt::error);
  pp::reward::callable reward{&token_reward};
  EXPECT_THROW(pp::rejection_sampling(gen, reward, {{{}, none}, {}, 2, {}, 0}, V), pt::error);
}
