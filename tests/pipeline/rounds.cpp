// pipeline::iterative_round on the bandit task: one round (best-of-N → SFT → online pairs → DPO)
// raises the expected reward; averaging with the round's start at a = 1 restores the start exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <posttrain/algo.hpp>
#include <posttrain/optim/adamw.hpp>
#include <posttrain/pipeline/rounds.hpp>

#include "pipeline/test_policy.hpp"

using namespace pt_test;

namespace {
constexpr pt::index_t V = 6;
double reward_fn(std::span<const pt::index_t> p, std::span<const pt::index_t> c, const pp::example_info&) {
  return c[0] == (p[0] + 2) % V ? 1.0 : 0.0;
}
double expected_reward(const bigram_policy<double>& p, const std::vector<pt::index_t>& prompts) {
  double r = 0;
  for (auto t : prompts) r += std::exp(ref_logprob(p.w, V, t, (t + 2) % V));
  return r / static_cast<double>(prompts.size());
}
using options_t = pp::round_options<pt::algo::sft, pt::algo::dpo_nll>;
}  // namespace

TEST(IterativeRound, OneRoundRaisesExpectedReward) {
  const std::vector<pt::index_t> prompts{0, 1, 2, 3}, off{0, 1, 2, 3, 4};
  bigram_policy<double> policy(V, 21);
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::reward::callable reward{&reward_fn};
  pt::optim::adamw sft_opt({0.05, 0.9, 0.999, 1e-8, 0.0}), dpo_opt({0.05, 0.9, 0.999, 1e-8, 0.0});
  options_t o;
  o.sampling = {{prompts, off}, {}, 8, {}, 3};
  o.sampling.sampling.max_new_tokens = 1;
  o.sft_epochs = 10;
  o.dpo_epochs = 5;
  const double before = expected_reward(policy, prompts);
  const auto m = pp::iterative_round(policy, gen, reward, sft_opt, dpo_opt, o);
  EXPECT_GT(m.best_of_n_reward, before);
  EXPECT_GT(m.pairs, 0);
  EXPECT_GT(expected_reward(policy, prompts), before + 0.2) << before;
}

TEST(IterativeRound, FullAveragingWithStartRestoresIt) {
  const std::vector<pt::index_t> prompts{0, 1}, off{0, 1, 2};
  bigram_policy<double> policy(V, 21);
  const auto start = policy.w;
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::reward::callable reward{&reward_fn};
  pt::optim::adamw sft_opt, dpo_opt;
  options_t o;
  o.sampling = {{prompts, off}, {}, 4, {}, 3};
  o.sampling.sampling.max_new_tokens = 1;
  o.average_with_start = 1.0;
  pp::iterative_round(policy, gen, reward, sft_opt, dpo_opt, o);
  EXPECT_EQ(policy.w, start);
  o.average_with_start = 1.5;
  EXPECT_THROW(pp::iterative_round(policy, gen, reward, sft_opt, dpo_opt, o), pt::error);
}

// dpo_runs = 2: two DPO runs from the SFT model (pairs of draws seed + 1 and seed + 2, each with a
// fresh copy of the optimizer), averaged — the mean of two one-run rounds with those draws.
TEST(IterativeRound, DpoRunsAreAveraged) {
  const std::vector<pt::index_t> prompts{0, 1, 2, 3}, off{0, 1, 2, 3, 4};
  auto one_round = [&](std::uint64_t seed, pt::index_t runs) {
    bigram_policy<double> policy(V, 21);
    pp::generate::from_policy<bigram_policy<double>> gen(policy);
    pp::reward::callable reward{&reward_fn};
    pt::optim::adamw sft_opt({0.05, 0.9, 0.999, 1e-8, 0.0}), dpo_opt({0.05, 0.9, 0.999, 1e-8, 0.0});
    options_t o;
    o.sampling = {{prompts, off}, {}, 8, {}, seed};
    o.sampling.sampling.max_new_tokens = 1;
    o.sft_epochs = 0;  // the SFT model is the start, whatever the best-of-N draw
    o.dpo_epochs = 3;
    o.dpo_runs = runs;
    const auto m = pp::iterative_round(policy, gen, reward, sft_opt, dpo_opt, o);
    EXPECT_GT(m.pairs, 0);
    return policy.w;
  };
  const auto a = one_round(3, 1), b = one_round(4, 1), avg = one_round(3, 2);
  ASSERT_EQ(avg.size(), a.size());
  EXPECT_NE(a, b);
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(avg[i], 0.5 * (a[i] + b[i]), 1e-12) << i;
}

TEST(IterativeRound, MaskFormatZeroesFormatTokens) {
  const pp::chat_format f{};
  pp::preference_pairs pairs;
  pairs.chosen.append(std::vector<pt::index_t>{f.bos, 65, f.start_header, 66, f.end_of_turn});
  pairs.rejected.append(std::vector<pt::index_t>{67, f.end_header, 68});
  pairs.chosen_mask = {1, 1, 1, 1, 1};
  pairs.rejected_mask = {1, 1, 1};
  pp::mask_format(pairs, f);
  EXPECT_EQ(pairs.chosen_mask, (std::vector<float>{0, 1, 0, 1, 0}));
  EXPECT_EQ(pairs.rejected_mask, (std::vector<float>{1, 0, 1}));
  options_t o;
  o.dpo_runs = 0;
  bigram_policy<double> policy(V, 21);
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::reward::callable reward{&reward_fn};
  pt::optim::adamw sft_opt, dpo_opt;
  EXPECT_THROW(pp::iterative_round(policy, gen, reward, sft_opt, dpo_opt, o), pt::error);
}
