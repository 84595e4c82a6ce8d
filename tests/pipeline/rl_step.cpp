// pipeline::rl_step on a bandit task (prompt = one token, completion = one token, reward 1 when it
// is the prompt's target): the step's gradient equals the composition of the library's generator,
// estimator and loss with a bigram backward written here; micro-batches equal the full batch;
// GRPO and DAPO/RLOO steps raise the exact expected reward; bad input (NaN rewards, a generator
// returning more tokens than asked, empty batches) throws before the parameters change.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <posttrain/algo.hpp>
#include <posttrain/optim/adamw.hpp>
#include <posttrain/pipeline/rl_step.hpp>

#include "pipeline/test_policy.hpp"

using namespace pt_test;

namespace {

constexpr pt::index_t V = 6;

pt::index_t target_of(pt::index_t prompt) { return (prompt + 2) % V; }

struct bandit {
  std::vector<pt::index_t> tokens{0, 1, 3};
  std::vector<pt::index_t> offsets{0, 1, 2, 3};
  pp::rl_batch batch() const { return {{tokens, offsets}, {}}; }
  static double reward(std::span<const pt::index_t> prompt, std::span<const pt::index_t> completion,
                       const pp::example_info&) {
    return !completion.empty() && completion[0] == target_of(prompt[0]) ? 1.0 : 0.0;
  }
  template <class S>
  double expected_reward(const bigram_policy<S>& p) const {
    double r = 0;
    for (auto t : tokens) r += std::exp(ref_logprob(p.w, V, t, target_of(t)));
    return r / static_cast<double>(tokens.size());
  }
};

template <class Loss, class Est>
pp::rl_step_options<Loss, Est> bandit_options(pt::index_t g = 8) {
  pp::rl_step_options<Loss, Est> o;
  o.samples_per_prompt = g;
  o.sampling.max_new_tokens = 1;
  o.seed = 42;
  return o;
}

}  // namespace

TEST(RlStep, GrpoGradientEqualsTheCompositionOfLibraryCalls) {
  bandit task;
  bigram_policy<double> policy(V, 3);
  pp::reference::frozen<bigram_policy<double>> reference(policy);
  reference.model().w[5] += 0.3;  // a reference away from the policy: the KL term has a gradient
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::reward::callable reward{&bandit::reward};
  capture_optimizer cap;
  auto o = bandit_options<pt::algo::grpo, pt::estimator::grpo>(4);
  o.loss.policy.kl_coef = 0.05;
  const auto m = pp::rl_step<pt::algo::grpo, pt::estimator::grpo>(policy, gen, reference, reward,
                                                                 cap, task.batch(), o);
  ASSERT_EQ(cap.steps, 1);

  // The composition: same seeds → same samples; rewards; estimator::grpo; the loss at ratio 1
  // (ℓold = ℓ); the bigram backward of dLoss/dℓ written here.
  const pt::index_t b = 12;
  pp::owned_sequences full, prompts;
  std::vector<std::uint64_t> seeds;
  for (pt::index_t i = 0; i < b; ++i) {
    prompts.append(std::span<const pt::index_t>(task.tokens).subspan(i / 4, 1));
    seeds.push_back(pp::sample_seed(42, static_cast<std::uint64_t>(i)));
  }
  pp::generation out;
  gen.generate({prompts.view(), seeds, o.sampling}, out);
  EXPECT_EQ(out.completions.tokens, m.rollout.completions.tokens);
  std::vector<double> rewards(b), lp, ref_lp, mask;
  for (pt::index_t i = 0; i < b; ++i) {
    const pt::index_t pr = task.tokens[i / 4], c = out.completions.tokens[i];
    rewards[i] = bandit::reward(std::span<const pt::index_t>(&pr, 1), std::span<const pt::index_t>(&c, 1), {});
    full.append(std::vector<pt::index_t>{pr, c});
    lp.insert(lp.end(), {0.0, ref_logprob(policy.w, V, pr, c)});
    ref_lp.insert(ref_lp.end(), {0.0, ref_logprob(reference.model().w, V, pr, c)});
    mask.insert(mask.end(), {0.0, 1.0});
  }
  EXPECT_EQ(rewards, m.rewards);
  std::vector<float> fmask(mask.begin(), mask.end());
  std::vector<double> adv(2 * b), ret(2 * b);
  std::vector<pt::index_t> groups{0, 4, 8, 12};
  pt::advantage::estimator_inputs<double> ein;
  ein.rewards = rewards;
  ein.mask = fmask;
  ein.seq_offsets = full.seq_offsets;
  ein.group_offsets = groups;
  pt::estimator::grpo::compute(pt::exec::host{}, ein, {adv, ret});
  std::vector<double> dlp(2 * b);
  pt::policy_gradient_inputs<double> in;
  in.logprobs = lp;
  in.old_logprobs = lp;
  in.advantages = adv;
  in.ref_logprobs = ref_lp;
  in.mask = fmask;
  in.seq_offsets = full.seq_offsets;
  const auto r = pt::algo::grpo::compute(pt::exec::host{}, in, o.loss, {dlp, {}}, {});
  EXPECT_NEAR(m.loss, r.loss, 1e-14);
  std::vector<double> g(policy.w.size(), 0.0);
  for (pt::index_t i = 0; i < b; ++i) {
    const pt::index_t a = full.tokens[2 * i], y = full.tokens[2 * i + 1];
    for (pt::index_t j = 0; j < V; ++j)
      g[a * V + j] += dlp[2 * i + 1] * ((j == y) - std::exp(ref_logprob(policy.w, V, a, j)));
  }
  for (std::size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(cap.grads[i], g[i], 1e-14) << i;
}

TEST(RlStep, EntropyBonusAndRolloutCorrectionGradientEqualsComposition) {
  // Samples drawn at temperature 0.7, trained at 1: the rollout log-probs differ from ℓold, so the
  // TIS weights exp(ℓold − ℓrollout) are not 1; an entropy bonus adds dL/dH through the backward.
  bandit task;
  bigram_policy<double> policy(V, 3);
  pp::reference::none<double> none;
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::reward::callable reward{&bandit::reward};
  capture_optimizer cap;
  auto o = bandit_options<pt::algo::dapo, pt::estimator::rloo>(4);
  o.sampling.temperature = 0.7;
  o.rollout_correction = true;
  o.loss.policy.entropy_coef = 0.05;
  o.loss.policy.importance_weight_cap = 1.5;
  const auto m = pp::rl_step<pt::algo::dapo, pt::estimator::rloo>(policy, gen, none, reward, cap,
                                                                 task.batch(), o);
  const pt::index_t b = 12;
  std::vector<double> rewards(b), lp, ent, roll, w, adv(2 * b), ret(2 * b), dlp(2 * b), dh(2 * b);
  std::vector<float> mask;
  pp::owned_sequences full;
  for (pt::index_t i = 0; i < b; ++i) {
    const pt::index_t pr = task.tokens[i / 4], c = m.rollout.completions.tokens[i];
    rewards[i] = m.rewards[i];
    full.append(std::vector<pt::index_t>{pr, c});
    const double l = ref_logprob(policy.w, V, pr, c);
    double h = 0;
    for (pt::index_t j = 0; j < V; ++j) {
      const double lj = ref_logprob(policy.w, V, pr, j);
      h -= std::exp(lj) * lj;
    }
    lp.insert(lp.end(), {0.0, l});
    ent.insert(ent.end(), {0.0, h});
    w.insert(w.end(), {0.0, std::exp(l - m.rollout.logprobs[i])});
    mask.insert(mask.end(), {0.0f, 1.0f});
  }
  EXPECT_GT(std::abs(w[1] - 1.0), 1e-3);  // the correction is not trivially 1
  std::vector<pt::index_t> groups{0, 4, 8, 12};
  pt::advantage::estimator_inputs<double> ein;
  ein.rewards = rewards;
  ein.mask = mask;
  ein.seq_offsets = full.seq_offsets;
  ein.group_offsets = groups;
  pt::estimator::rloo::compute(pt::exec::host{}, ein, {adv, ret});
  pt::policy_gradient_inputs<double> in;
  in.logprobs = lp;
  in.old_logprobs = lp;
  in.advantages = adv;
  in.mask = mask;
  in.seq_offsets = full.seq_offsets;
  in.entropy = ent;
  in.importance_weights = w;
  const auto r = pt::algo::dapo::compute(pt::exec::host{}, in, o.loss, {dlp, dh}, {});
  EXPECT_NEAR(m.loss, r.loss, 1e-14);
  std::vector<double> g(policy.w.size(), 0.0);
  for (pt::index_t i = 0; i < b; ++i) {
    const pt::index_t a = full.tokens[2 * i], y = full.tokens[2 * i + 1];
    for (pt::index_t j = 0; j < V; ++j) {
      const double lj = ref_logprob(policy.w, V, a, j), pj = std::exp(lj);
      g[a * V + j] += dlp[2 * i + 1] * ((j == y) - pj) + dh[2 * i + 1] * (-pj * (lj + ent[2 * i + 1]));
    }
  }
  for (std::size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(cap.grads[i], g[i], 1e-14) << i;
}

TEST(RlStep, DynamicSamplingRedrawsAndFiltersAllEqualGroups) {
  // Prompt 3 always answers the wrong token (reward 0 for all G samples): after the re-draws it is
  // masked out, and the update equals the update on prompts {0, 1} alone (same global sample
  // indices, so the same draws and re-draws for them).
  bandit task;
  bigram_policy<double> pa(V, 3), pb(V, 3);
  for (auto* p : {&pa, &pb}) p->w[3 * V + 0] = 30.0;
  pp::reference::frozen<bigram_policy<double>> ra(pa), rb(pb);
  pp::generate::from_policy<bigram_policy<double>> ga(pa), gb(pb);
  pp::reward::callable reward{&bandit::reward};
  capture_optimizer a, b;
  auto o = bandit_options<pt::algo::grpo, pt::estimator::grpo>(4);
  o.loss.policy.kl_coef = 0;
  o.dynamic_sampling = true;
  o.max_resample_rounds = 2;
  const auto ma = pp::rl_step<pt::algo::grpo, pt::estimator::grpo>(pa, ga, ra, reward, a, task.batch(), o);
  std::vector<pt::index_t> two{0, 1}, off2{0, 1, 2};
  const auto mb = pp::rl_step<pt::algo::grpo, pt::estimator::grpo>(pb, gb, rb, reward, b,
                                                                  pp::rl_batch{{two, off2}, {}}, o);
  EXPECT_GE(ma.filtered_groups, 1.0);
  EXPECT_GE(ma.resampled_groups, 2.0);  // prompt 3 was drawn again in both rounds
  EXPECT_EQ(ma.filtered_groups, mb.filtered_groups + 1.0);
  for (pt::index_t k = 0; k < 8; ++k) EXPECT_EQ(ma.rewards[k], mb.rewards[k]);
  for (std::size_t i = 0; i < a.grads.size(); ++i) EXPECT_NEAR(a.grads[i], b.grads[i], 1e-14) << i;
}

namespace {
// rl_step with kl_in_reward = β against the composition: token rewards (R on the last token) or
// outcome rewards, advantage::kl_in_reward<kl::k1> / sequence_kl_penalty, the estimator, the loss
// at ratio 1, and the bigram backward.
template <class Recipe>
void expect_kl_in_reward_composition() {
  bandit task;
  bigram_policy<double> policy(V, 3);
  pp::reference::frozen<bigram_policy<double>> reference(policy);
  for (pt::index_t j = 0; j < V; ++j) reference.model().w[j] += 0.2 * j;  // prompt 0's row differs
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::reward::callable reward{&bandit::reward};
  capture_optimizer cap;
  auto o = bandit_options<Recipe, typename Recipe::advantage>(4);
  o.kl_in_reward = 0.2;
  const auto m = pp::rl_step<Recipe>(policy, gen, reference, reward, cap, task.batch(), o);
  const pt::index_t b = 12;
  std::vector<double> lp, ref, adv(2 * b), ret(2 * b), dlp(2 * b), tok_r(2 * b, 0.0), seq_r(b);
  std::vector<float> mask;
  pp::owned_sequences full;
  for (pt::index_t i = 0; i < b; ++i) {
    const pt::index_t pr = task.tokens[i / 4], c = m.rollout.completions.tokens[i];
    full.append(std::vector<pt::index_t>{pr, c});
    lp.insert(lp.end(), {0.0, ref_logprob(policy.w, V, pr, c)});
    ref.insert(ref.end(), {0.0, ref_logprob(reference.model().w, V, pr, c)});
    mask.insert(mask.end(), {0.0f, 1.0f});
    tok_r[2 * i + 1] = m.rewards[i];
    seq_r[i] = m.rewards[i];
  }
  pt::advantage::estimator_inputs<double> ein;
  ein.mask = mask;
  ein.seq_offsets = full.seq_offsets;
  std::vector<pt::index_t> groups{0, 4, 8, 12};
  if constexpr (Recipe::advantage::contract.rewards == pt::advantage::reward_level::token) {
    pt::advantage::kl_in_reward<pt::kl::k1>(pt::exec::host{}, std::span<const double>(tok_r), lp, ref,
                                            mask, full.seq_offsets, 0.2, pt::kl_options{},
                                            std::span<double>(tok_r));
    ein.token_rewards = tok_r;
  } else {
    pt::advantage::sequence_kl_penalty(pt::exec::host{}, std::span<const double>(seq_r), lp, ref, mask,
                                       full.seq_offsets, 0.2, std::span<double>(seq_r));
    ein.rewards = seq_r;
    ein.group_offsets = groups;
  }
  Recipe::advantage::compute(pt::exec::host{}, ein, {adv, ret}, o.estimator);
  pt::policy_gradient_inputs<double> in;
  in.logprobs = lp;
  in.old_logprobs = lp;
  in.advantages = adv;
  in.ref_logprobs = ref;
  in.mask = mask;
  in.seq_offsets = full.seq_offsets;
  Recipe::compute(pt::exec::host{}, in, o.loss, {dlp, {}}, {});
  std::vector<double> g(policy.w.size(), 0.0);
  double nonzero_kl = 0;
  for (pt::index_t i = 0; i < b; ++i) {
    const pt::index_t a = full.tokens[2 * i], y = full.tokens[2 * i + 1];
    nonzero_kl += std::abs(lp[2 * i + 1] - ref[2 * i + 1]);
    for (pt::index_t j = 0; j < V; ++j)
      g[a * V + j] += dlp[2 * i + 1] * ((j == y) - std::exp(ref_logprob(policy.w, V, a, j)));
  }
  EXPECT_GT(nonzero_kl, 0.1);
  for (std::size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(cap.grads[i], g[i], 1e-14) << i;
}
}  // namespace

TEST(RlStep, KlInRewardGradientEqualsComposition) {
  expect_kl_in_reward_composition<pt::algo::reinforce_pp>();  // token-level: r_t −= β·k1_t
  expect_kl_in_reward_composition<pt::algo::rloo>();          // outcome: R −= β·Σ k1
}

TEST(RlStep, RemaxUsesTheGreedyRewardAsBaseline) {
  // Prompt 0's greedy answer is its target (reward 1), prompt 1's is not (reward 0): the baselines
  // are 1 and 0, and the gradient equals the composition with estimator::remax.
  bandit task;
  bigram_policy<double> policy(V, 3);
  policy.w[0 * V + target_of(0)] = 1.5;
  policy.w[1 * V + target_of(1)] = -1.5;
  pp::reference::none<double> none;
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::reward::callable reward{&bandit::reward};
  capture_optimizer cap;
  auto o = bandit_options<pt::algo::ppo, pt::estimator::remax>(4);
  const auto m = pp::rl_step<pt::algo::ppo>(policy, gen, none, reward, cap, task.batch(), o);
  ASSERT_EQ(m.greedy_rewards.size(), 3u);
  EXPECT_EQ(m.greedy_rewards[0], 1.0);
  EXPECT_EQ(m.greedy_rewards[1], 0.0);
  const pt::index_t b = 12;
  std::vector<double> lp, tok_r(2 * b, 0.0), base(b), adv(2 * b), ret(2 * b), dlp(2 * b);
  std::vector<float> mask;
  pp::owned_sequences full;
  for (pt::index_t i = 0; i < b; ++i) {
    const pt::index_t pr = task.tokens[i / 4], c = m.rollout.completions.tokens[i];
    full.append(std::vector<pt::index_t>{pr, c});
    lp.insert(lp.end(), {0.0, ref_logprob(policy.w, V, pr, c)});
    mask.insert(mask.end(), {0.0f, 1.0f});
    tok_r[2 * i + 1] = m.rewards[i];
    base[i] = m.greedy_rewards[i / 4];
  }
  pt::advantage::estimator_inputs<double> ein;
  ein.token_rewards = tok_r;
  ein.baselines = base;
  ein.mask = mask;
  ein.seq_offsets = full.seq_offsets;
  pt::estimator::remax::compute(pt::exec::host{}, ein, {adv, ret});
  pt::policy_gradient_inputs<double> in;
  in.logprobs = lp;
  in.old_logprobs = lp;
  in.advantages = adv;
  in.mask = mask;
  in.seq_offsets = full.seq_offsets;
  pt::algo::ppo::compute(pt::exec::host{}, in, o.loss, {dlp, {}}, {});
  std::vector<double> g(policy.w.size(), 0.0);
  for (pt::index_t i = 0; i < b; ++i) {
    const pt::index_t a = full.tokens[2 * i], y = full.tokens[2 * i + 1];
    for (pt::index_t j = 0; j < V; ++j)
      g[a * V + j] += dlp[2 * i + 1] * ((j == y) - std::exp(ref_logprob(policy.w, V, a, j)));
  }
  for (std::size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(cap.grads[i], g[i], 1e-14) << i;
}

TEST(RlStep, OptimalTokenBaselineGradientEqualsComposition) {
  // Two-token completions so that the per-position baselines matter; Σp² written here.
  bandit task;
  bigram_policy<double> policy(V, 3);
  pp::reference::none<double> none;
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::reward::callable reward{&bandit::reward};
  capture_optimizer cap;
  auto o = bandit_options<pt::algo::ppo, pt::estimator::optimal_token_baseline>(4);
  o.sampling.max_new_tokens = 2;
  const auto m = pp::rl_step<pt::algo::ppo>(policy, gen, none, reward, cap, task.batch(), o);
  const pt::index_t b = 12;
  pp::owned_sequences full;
  std::vector<double> lp, sp2, tok_r;
  std::vector<float> mask;
  for (pt::index_t i = 0; i < b; ++i) {
    const auto c = m.rollout.completions.view();
    std::vector<pt::index_t> seq{task.tokens[i / 4]};
    seq.insert(seq.end(), c.tokens.begin() + c.seq_offsets[i], c.tokens.begin() + c.seq_offsets[i + 1]);
    full.append(seq);
    for (std::size_t t = 0; t < seq.size(); ++t) {
      if (t == 0) {
        lp.push_back(0), sp2.push_back(0), mask.push_back(0), tok_r.push_back(0);
        continue;
      }
      lp.push_back(ref_logprob(policy.w, V, seq[t - 1], seq[t]));
      double s2 = 0;
      for (pt::index_t j = 0; j < V; ++j) s2 += std::exp(2 * ref_logprob(policy.w, V, seq[t - 1], j));
      sp2.push_back(s2);
      mask.push_back(1);
      tok_r.push_back(t + 1 == seq.size() ? m.rewards[i] : 0.0);
    }
  }
  const std::size_t n = lp.size();
  std::vector<double> adv(n), ret(n), dlp(n);
  std::vector<pt::index_t> groups{0, 4, 8, 12};
  pt::advantage::estimator_inputs<double> ein;
  ein.token_rewards = tok_r;
  ein.old_logprobs = lp;
  ein.sum_pi_squared = sp2;
  ein.mask = mask;
  ein.seq_offsets = full.seq_offsets;
  ein.group_offsets = groups;
  pt::estimator::optimal_token_baseline::compute(pt::exec::host{}, ein, {adv, ret});
  pt::policy_gradient_inputs<double> in;
  in.logprobs = lp;
  in.old_logprobs = lp;
  in.advantages = adv;
  in.mask = mask;
  in.seq_offsets = full.seq_offsets;
  pt::algo::ppo::compute(pt::exec::host{}, in, o.loss, {dlp, {}}, {});
  std::vector<double> g(policy.w.size(), 0.0);
  for (std::size_t t = 0; t < n; ++t) {
    if (mask[t] == 0) continue;
    const pt::index_t a = full.tokens[t - 1], y = full.tokens[t];
    for (pt::index_t j = 0; j < V; ++j)
      g[a * V + j] += dlp[t] * ((j == y) - std::exp(ref_logprob(policy.w, V, a, j)));
  }
  for (std::size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(cap.grads[i], g[i], 1e-13) << i;
}

TEST(RlStep, MicroBatchesEqualTheFullBatch) {
  bandit task;
  for (pt::index_t k : {1, 5}) {
    bigram_policy<double> p1(V, 3), p2(V, 3);
    pp::reference::frozen<bigram_policy<double>> r1(p1), r2(p2);
    pp::generate::from_policy<bigram_policy<double>> g1(p1), g2(p2);
    pp::reward::callable reward{&bandit::reward};
    capture_optimizer a, b;
    auto o = bandit_options<pt::algo::grpo, pt::estimator::grpo>();
    o.loss.policy.kl_coef = 0.1;
    const auto ma = pp::rl_step<pt::algo::grpo, pt::estimator::grpo>(p1, g1, r1, reward, a, task.batch(), o);
    o.micro_batch = k;
    const auto mb = pp::rl_step<pt::algo::grpo, pt::estimator::grpo>(p2, g2, r2, reward, b, task.batch(), o);
    EXPECT_NEAR(ma.loss, mb.loss, 1e-12);
    for (std::size_t i = 0; i < a.grads.size(); ++i) EXPECT_NEAR(a.grads[i], b.grads[i], 1e-12);
  }
}

TEST(RlStep, GrpoRaisesExpectedReward) {
  bandit task;
  bigram_policy<double> policy(V, 7);
  pp::reference::frozen<bigram_policy<double>> reference(policy);
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::reward::callable reward{&bandit::reward};
  pt::optim::adamw opt({0.1, 0.9, 0.999, 1e-8, 0.0});
  auto o = bandit_options<pt::algo::grpo, pt::estimator::grpo>();
  o.epochs = 2;
  o.mini_batch = 12;
  const double before = task.expected_reward(policy);
  for (int s = 0; s < 10; ++s) {
    o.seed = 100 + s;
    const auto m = pp::rl_step<pt::algo::grpo, pt::estimator::grpo>(policy, gen, reference, reward, opt, task.batch(), o);
    EXPECT_EQ(m.updates, 4);
  }
  const double after = task.expected_reward(policy);
  EXPECT_GT(after, before + 0.3) << before << " -> " << after;
}

TEST(RlStep, DapoLossWithRlooRaisesExpectedReward) {
  bandit task;
  bigram_policy<double> policy(V, 11);
  pp::reference::none<double> none;
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::reward::callable reward{&bandit::reward};
  pt::optim::adamw opt({0.1, 0.9, 0.999, 1e-8, 0.0});
  auto o = bandit_options<pt::algo::dapo, pt::estimator::rloo>();
  const double before = task.expected_reward(policy);
  for (int s = 0; s < 20; ++s) {
    o.seed = 7 + s;
    pp::rl_step<pt::algo::dapo, pt::estimator::rloo>(policy, gen, none, reward, opt, task.batch(), o);
  }
  EXPECT_GT(task.expected_reward(policy), before + 0.3) << before;
}

namespace {
// One recipe on the bandit from its peer preset: 15 steps must raise the exact expected reward.
template <class Recipe>
void expect_recipe_learns(const pp::rl_options<Recipe>& preset_options, double constant = 0) {
  bandit task;
  bigram_policy<double> policy(V, 13);
  pp::reference::frozen<bigram_policy<double>> reference(policy);
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::reward::callable reward{&bandit::reward};
  pt::optim::adamw opt({0.1, 0.9, 0.999, 1e-8, 0.0});
  auto o = preset_options;
  o.samples_per_prompt = 8;
  o.sampling.max_new_tokens = 1;
  if (constant > 0) o.normalizer_constant = constant;
  const double before = task.expected_reward(policy);
  for (int s = 0; s < 15; ++s) {
    o.seed = 500 + s;
    pp::rl_step<Recipe>(policy, gen, reference, reward, opt, task.batch(), o);
  }
  EXPECT_GT(task.expected_reward(policy), before + 0.3) << before;
}
}  // namespace

TEST(RlStep, RecipesFromPeerPresetsRaiseExpectedReward) {
  expect_recipe_learns<pt::algo::grpo>(pp::rl_options_from<pt::algo::grpo>(pt::algo::grpo::trl()));
  // Dr.GRPO divides by a constant (B·max_completion_length in TRL).
  expect_recipe_learns<pt::algo::dr_grpo>(pp::rl_options_from<pt::algo::dr_grpo>(pt::algo::dr_grpo::defaults()), 24.0);
  expect_recipe_learns<pt::algo::dapo>(pp::rl_options_from<pt::algo::dapo>(pt::algo::dapo::defaults()));
  expect_recipe_learns<pt::algo::rloo>(pp::rl_options_from<pt::algo::rloo>(pt::algo::rloo::defaults()));
  expect_recipe_learns<pt::algo::reinforce_pp>(pp::rl_options_from<pt::algo::reinforce_pp>(pt::algo::reinforce_pp::defaults()));
  expect_recipe_learns<pt::algo::gspo>(pp::rl_options_from<pt::algo::gspo>(pt::algo::gspo::defaults()));
  expect_recipe_learns<pt::algo::cispo>(pp::rl_options_from<pt::algo::cispo>(pt::algo::cispo::defaults()));
}

static_assert(pp::check_critic<table_critic>());

TEST(RlStep, PpoWithGaeAndCriticRaisesRewardAndFitsValues) {
  bandit task;
  bigram_policy<double> policy(V, 5);
  pp::reference::none<double> none;
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::reward::callable reward{&bandit::reward};
  table_critic critic(std::vector<double>(V, 0.0));
  pt::optim::adamw opt({0.1, 0.9, 0.999, 1e-8, 0.0}), critic_opt({0.1, 0.9, 0.999, 1e-8, 0.0});
  auto o = bandit_options<pt::algo::ppo, pt::estimator::gae>();
  o.estimator.gamma = 1.0;
  o.estimator.lambda = 1.0;
  o.epochs = 2;
  o.mini_batch = 8;
  o.value.value.clip = 1e9;
  const double before = task.expected_reward(policy);
  pt::dist::single_process_communicator comm;
  pp::rl_metrics first, last;
  for (int s = 0; s < 20; ++s) {
    o.seed = 300 + s;
    last = pp::rl_step<pt::algo::ppo, pt::estimator::gae>(policy, gen, none, reward, opt, critic,
                                                          critic_opt, task.batch(), o, comm);
    if (s == 0) first = last;
  }
  EXPECT_GT(task.expected_reward(policy), before + 0.3);
  EXPECT_GT(first.value_loss, 0.0);
  EXPECT_LT(last.value_loss, first.value_loss);
  // Each prompt's value approaches its expected reward under the policy.
  for (auto t : task.tokens)
    EXPECT_NEAR(critic.c[t], std::exp(ref_logprob(policy.w, V, t, target_of(t))), 0.35) << t;
}

namespace {
// A generator that answers with one token more than asked.
struct greedy_overrun {
  void generate(const pp::generation_request& r, pp::generation& out) {
    out = {};
    for (pt::index_t i = 0; i < r.prompts.num_sequences(); ++i) {
      std::vector<pt::index_t> c(static_cast<std::size_t>(r.sampling.max_new_tokens + 1), 1);
      out.completions.append(c);
      out.stop.push_back(pp::stop_reason::length);
      out.truncated.push_back(1);
    }
  }
};
static_assert(pp::check_generator<greedy_overrun>());
}  // namespace

TEST(RlStep, BadInputThrowsAndLeavesParametersUntouched) {
  bandit task;
  bigram_policy<double> policy(V, 3);
  pp::reference::frozen<bigram_policy<double>> reference(policy);
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pt::optim::adamw opt;
  const auto before = policy.w;
  const auto o = bandit_options<pt::algo::grpo, pt::estimator::grpo>();
  using L = pt::algo::grpo;
  using E = pt::estimator::grpo;

  auto run = [&](auto& generator, auto& source, const pp::rl_batch& batch,
                 const pp::rl_step_options<L, E>& options) {
    pp::rl_step<L, E>(policy, generator, reference, source, opt, batch, options);
  };
  pp::reward::callable nan_reward{[](auto, auto, const pp::example_info&) { return std::nan(""); }};
  EXPECT_THROW(run(gen, nan_reward, task.batch(), o), pt::error);

  greedy_overrun overrun;
  pp::reward::callable reward{&bandit::reward};
  EXPECT_THROW(run(overrun, reward, task.batch(), o), pt::error);

  std::vector<pt::index_t> zero{0};
  EXPECT_THROW(run(gen, reward, pp::rl_batch{{{}, zero}, {}}, o), pt::error);
  std::vector<pt::index_t> with_empty{0, 1, 1};
  EXPECT_THROW(run(gen, reward,
                   pp::rl_batch{{std::span<const pt::index_t>(task.tokens).first(1), with_empty}, {}}, o),
               pt::error);
  auto bad = o;
  bad.samples_per_prompt = 0;
  EXPECT_THROW(run(gen, reward, task.batch(), bad), pt::error);
  bad = o;
  bad.sampling.top_p = 0;
  EXPECT_THROW(run(gen, reward, task.batch(), bad), pt::error);
  EXPECT_EQ(policy.w, before);
  EXPECT_EQ(opt.steps(), 0);
}

TEST(RlStep, SamplesDoNotDependOnBatchComposition) {
  // Sample i of prompt p drawn alone equals the same sample drawn in a batch (seeded per sample).
  bigram_policy<double> policy(V, 3);
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::sampling_options s;
  s.max_new_tokens = 5;
  s.top_k = 4;
  s.top_p = 0.9;
  std::vector<pt::index_t> toks{0, 1, 2, 3}, offs{0, 1, 2, 4};
  std::vector<std::uint64_t> seeds{11, 22, 33};
  pp::generation all, one;
  gen.generate({{toks, offs}, seeds, s}, all);
  std::vector<pt::index_t> o1{0, 2};
  gen.generate({{std::span<const pt::index_t>(toks).subspan(2, 2), o1},
                std::span<const std::uint64_t>(seeds).subspan(2, 1), s}, one);
  ASSERT_EQ(one.completions.tokens.size(), 5u);
  EXPECT_TRUE(std::equal(one.completions.tokens.begin(), one.completions.tokens.end(),
                         all.completions.tokens.begin() + all.completions.seq_offsets[2]));
}

// ---- The passes rl_step skips (docs/pipeline.md "Passes rl_step skips"): the reference when the
// loss's KL weight is 0 and the reward has no KL term; the separate ℓold forward when the step is
// on-policy (one epoch, one mini-batch) and nothing reads ℓold before the update. Each skipped run
// is compared with the same run forced to take the pass (force_* options): same gradient and
// parameters; and counting models prove which passes ran.
namespace {

// The generator samples from a copy of the policy, so only the step's own forwards count.
struct counting_policy : bigram_policy<double> {
  int forwards = 0;
  using bigram_policy<double>::bigram_policy;
  pt::matrix_view<const double> forward(const pp::token_sequences& s) {
    ++forwards;
    return bigram_policy<double>::forward(s);
  }
};
static_assert(pp::check_policy<counting_policy>());

struct counting_reference {
  static constexpr bool enabled = true;
  using scalar_type = double;
  pp::reference::frozen<bigram_policy<double>> inner;
  int calls = 0;
  void logprobs(const pp::token_sequences& s, std::span<double> lp) {
    ++calls;
    inner.logprobs(s, lp);
  }
};
static_assert(pp::check_reference_model<counting_reference>());

// SGD that also records the gradient it was given.
struct recording_sgd {
  std::vector<double> grads;
  int steps = 0;
  template <class S>
  void step(std::span<S> p, std::span<const S> g) {
    grads.assign(g.begin(), g.end());
    for (std::size_t i = 0; i < p.size(); ++i) p[i] -= S(0.5) * g[i];
    ++steps;
  }
};

struct counted_step {
  pp::rl_metrics m;
  int policy_forwards = 0, reference_calls = 0, updates = 0;
  std::vector<double> params, grads, critic;
};

// One step on the bandit (12 sequences) with micro-batches of 5 (3 micro-batches per mini-batch).
template <bool with_critic = false, class Loss, class Est>
counted_step counted(pp::rl_step_options<Loss, Est> o) {
  bandit task;
  counting_policy policy(V, 3);
  bigram_policy<double> sampler = policy, ref_model = policy;
  ref_model.w[5] += 0.3;  // the reference differs from the policy: a real KL to it is not 0
  counting_reference reference{pp::reference::frozen<bigram_policy<double>>(ref_model)};
  pp::generate::from_policy<bigram_policy<double>> gen(sampler);
  pp::reward::callable reward{&bandit::reward};
  recording_sgd opt, critic_opt;
  table_critic critic(std::vector<double>(V, 0.25));
  pt::dist::single_process_communicator comm;
  counted_step r;
  if constexpr (with_critic) {
    r.m = pp::rl_step<Loss, Est>(policy, gen, reference, reward, opt, critic, critic_opt,
                                 task.batch(), o, comm);
    r.critic = critic.c;
  } else {
    r.m = pp::rl_step<Loss, Est>(policy, gen, reference, reward, opt, task.batch(), o, comm);
  }
  r.policy_forwards = policy.forwards;
  r.reference_calls = reference.calls;
  r.updates = opt.steps;
  r.params = policy.w;
  r.grads = opt.grads;
  return r;
}

template <class Loss, class Est>
pp::rl_step_options<Loss, Est> pass_options() {
  auto o = bandit_options<Loss, Est>(4);
  o.micro_batch = 5;
  o.sampling.temperature = 0.9;  // rollout log-probs differ from ℓold (rollout correction)
  return o;
}

// Bit for bit: the bigram log-softmax of a row does not depend on the batch it is computed in,
// and β·KL with β = 0 adds exactly 0.
void expect_same_step(const counted_step& a, const counted_step& b) {
  ASSERT_EQ(a.grads.size(), b.grads.size());
  double norm = 0;
  for (double g : a.grads) norm += g * g;
  EXPECT_GT(norm, 1e-6);  // the update is not trivially 0
  for (std::size_t i = 0; i < a.grads.size(); ++i) EXPECT_EQ(a.grads[i], b.grads[i]) << i;
  for (std::size_t i = 0; i < a.params.size(); ++i) EXPECT_EQ(a.params[i], b.params[i]) << i;
  for (std::size_t i = 0; i < a.critic.size(); ++i) EXPECT_EQ(a.critic[i], b.critic[i]) << i;
  EXPECT_EQ(a.m.loss, b.m.loss);
  EXPECT_EQ(a.m.pg_loss, b.m.pg_loss);
  EXPECT_EQ(a.m.value_loss, b.m.value_loss);
}

}  // namespace

TEST(RlStepPasses, ReferenceSkippedAtZeroKlCoefSameStep) {
  // GRPO's loss has a k3 term (uses_reference), but at kl_coef = 0 it is ×0: no reference pass,
  // kl_loss = 0 (not computed); forced, the pass runs, kl_loss is the KL to the reference, and the
  // step is the same. The old-log-prob pass is forced on both sides so only the reference differs.
  auto o = pass_options<pt::algo::grpo, pt::estimator::grpo>();
  o.loss.policy.kl_coef = 0;
  o.force_old_logprob_pass = true;
  const auto skip = counted(o);
  o.force_reference_pass = true;
  const auto keep = counted(o);
  EXPECT_EQ(skip.reference_calls, 0);
  EXPECT_FALSE(skip.m.reference_pass);
  EXPECT_EQ(skip.m.kl_loss, 0.0);
  EXPECT_EQ(keep.reference_calls, 1);
  EXPECT_TRUE(keep.m.reference_pass);
  EXPECT_GT(std::abs(keep.m.kl_loss), 1e-4);
  EXPECT_EQ(skip.policy_forwards, 1 + 3);
  EXPECT_EQ(keep.policy_forwards, 1 + 3);
  expect_same_step(skip, keep);
}

TEST(RlStepPasses, ReferenceKeptWhenAnythingReadsIt) {
  using L = pt::algo::grpo;
  using E = pt::estimator::grpo;
  {
    auto o = pass_options<L, E>();
    o.loss.policy.kl_coef = 0.05;  // the in-loss KL is on
    const auto r = counted(o);
    EXPECT_EQ(r.reference_calls, 1);
    EXPECT_TRUE(r.m.reference_pass);
    EXPECT_GT(std::abs(r.m.kl_loss), 1e-4);
  }
  {
    auto o = pass_options<L, E>();
    o.loss.policy.kl_coef = 0;
    o.kl_in_reward = 0.1;  // KL in the reward reads ℓref before the advantages
    const auto r = counted(o);
    EXPECT_EQ(r.reference_calls, 1);
    EXPECT_TRUE(r.m.reference_pass);
  }
  {
    // A loss without a KL estimator never reads it, forced or not (as before).
    auto o = pass_options<pt::algo::dapo, E>();
    o.force_reference_pass = true;
    const auto r = counted(o);
    EXPECT_EQ(r.reference_calls, 0);
    EXPECT_FALSE(r.m.reference_pass);
  }
}

TEST(RlStepPasses, ReferenceNoneAcceptedOnlyAtZeroKlCoef) {
  // As TRL's GRPO at β = 0 (no reference model loaded): reference::none with a k3 loss is the same
  // step as a frozen reference; at β ≠ 0 it is refused before anything changes.
  bandit task;
  auto o = pass_options<pt::algo::grpo, pt::estimator::grpo>();
  o.loss.policy.kl_coef = 0;
  const auto with_ref = counted(o);
  counting_policy policy(V, 3);
  bigram_policy<double> sampler = policy;
  pp::reference::none<double> none;
  pp::generate::from_policy<bigram_policy<double>> gen(sampler);
  pp::reward::callable reward{&bandit::reward};
  recording_sgd opt;
  const auto m = pp::rl_step<pt::algo::grpo, pt::estimator::grpo>(policy, gen, none, reward, opt,
                                                                 task.batch(), o);
  counted_step r{m, policy.forwards, 0, opt.steps, policy.w, opt.grads, {}};
  expect_same_step(with_ref, r);
  EXPECT_EQ(m.kl_loss, 0.0);
  o.loss.policy.kl_coef = 0.05;
  const auto before = policy.w;
  EXPECT_THROW((pp::rl_step<pt::algo::grpo, pt::estimator::grpo>(policy, gen, none, reward, opt,
                                                                  task.batch(), o)),
               pt::error);
  EXPECT_EQ(policy.w, before);
}

TEST(RlStepPasses, OldLogprobsFromTheUpdateWhenOnPolicySameStep) {
  // One epoch, one mini-batch (3 micro-batches): ℓold is each micro-batch's own forward, detached —
  // 3 policy forwards instead of 4, and the same step as the separate pass (with β ≠ 0, so the
  // reference runs on both sides, and an entropy bonus).
  auto o = pass_options<pt::algo::grpo, pt::estimator::grpo>();
  o.loss.policy.kl_coef = 0.05;
  o.loss.policy.entropy_coef = 0.01;
  const auto fused = counted(o);
  o.force_old_logprob_pass = true;
  const auto separate = counted(o);
  EXPECT_EQ(fused.policy_forwards, 3);
  EXPECT_FALSE(fused.m.old_logprob_pass);
  EXPECT_EQ(separate.policy_forwards, 1 + 3);
  EXPECT_TRUE(separate.m.old_logprob_pass);
  EXPECT_EQ(fused.reference_calls, 1);
  expect_same_step(fused, separate);
  EXPECT_EQ(fused.m.approx_kl, 0.0);  // ℓ − ℓold = 0 exactly
  // mini_batch ≥ B is still one mini-batch.
  o.force_old_logprob_pass = false;
  o.mini_batch = 12;
  EXPECT_EQ(counted(o).policy_forwards, 3);
}

TEST(RlStepPasses, OldLogprobsFromTheUpdateWithACritic) {
  // PPO + GAE + a table critic: the value loss reads the critic's own values and the returns,
  // nothing of the ℓold pass, so the pass is skipped; policy and critic steps are the same.
  auto o = pass_options<pt::algo::ppo, pt::estimator::gae>();
  o.estimator.gamma = 1.0;
  o.estimator.lambda = 0.95;
  const auto fused = counted<true>(o);
  o.force_old_logprob_pass = true;
  const auto separate = counted<true>(o);
  EXPECT_EQ(fused.policy_forwards, 3);
  EXPECT_EQ(separate.policy_forwards, 1 + 3);
  EXPECT_FALSE(fused.critic.empty());
  expect_same_step(fused, separate);
  EXPECT_GT(fused.m.value_loss, 0.0);
}

TEST(RlStepPasses, OldLogprobPassKeptWhenAnyConditionSaysKeep) {
  using L = pt::algo::grpo;
  using E = pt::estimator::grpo;
  auto base = pass_options<L, E>();
  base.loss.policy.kl_coef = 0.05;
  {
    auto o = base;
    o.epochs = 2;  // two updates: the second needs the pre-update ℓold
    const auto r = counted(o);
    EXPECT_EQ(r.updates, 2);
    EXPECT_EQ(r.policy_forwards, 1 + 2 * 3);
    EXPECT_TRUE(r.m.old_logprob_pass);
  }
  {
    auto o = base;
    o.mini_batch = 4;  // three mini-batches, one micro-batch each
    const auto r = counted(o);
    EXPECT_EQ(r.updates, 3);
    EXPECT_EQ(r.policy_forwards, 1 + 3);
    EXPECT_TRUE(r.m.old_logprob_pass);
  }
  {
    auto o = base;
    o.rollout_correction = true;  // TIS weights exp(ℓold − ℓrollout) before the update
    const auto r = counted(o);
    EXPECT_EQ(r.policy_forwards, 1 + 3);
    EXPECT_TRUE(r.m.old_logprob_pass);
  }
  {
    auto o = base;
    o.kl_in_reward = 0.1;  // k1 = ℓold − ℓref before the advantages
    const auto r = counted(o);
    EXPECT_EQ(r.policy_forwards, 1 + 3);
    EXPECT_TRUE(r.m.old_logprob_pass);
  }
  {
    auto o = base;
    o.force_old_logprob_pass = true;
    EXPECT_EQ(counted(o).policy_forwards, 1 + 3);
  }
  {
    auto o = base;
    o.old_logprobs = pp::old_logprob_source::rollout;  // the generator's: no pass at all
    const auto r = counted(o);
    EXPECT_EQ(r.policy_forwards, 3);
    EXPECT_FALSE(r.m.old_logprob_pass);
  }
  {
    // An estimator that reads ℓold (and Σp²) before the update.
    auto o = pass_options<pt::algo::ppo, pt::estimator::optimal_token_baseline>();
    const auto r = counted(o);
    EXPECT_EQ(r.policy_forwards, 1 + 3);
    EXPECT_TRUE(r.m.old_logprob_pass);
  }
}

TEST(RlStepPasses, BothSkippedAtTrlDefaults) {
  // TRL's GRPO defaults (β = 0, num_iterations = 1): the step runs only the update's forwards —
  // and equals the step with both passes forced.
  auto o = pass_options<pt::algo::grpo, pt::estimator::grpo>();
  const auto trl = pt::algo::grpo::trl(0.0);
  o.loss = trl.loss;
  o.estimator = trl.advantage;
  const auto lean = counted(o);
  o.force_reference_pass = o.force_old_logprob_pass = true;
  const auto full = counted(o);
  EXPECT_EQ(lean.policy_forwards, 3);
  EXPECT_EQ(lean.reference_calls, 0);
  EXPECT_EQ(full.policy_forwards, 1 + 3);
  EXPECT_EQ(full.reference_calls, 1);
  expect_same_step(lean, full);
}
