// The pipeline steps on R ranks (mpiexec -n 2; also runs as one process) equal the step on one
// process over the whole batch: each rank takes its share of sequences / pairs / prompts, the
// steps all-reduce the global normalisers and the gradients, and the gradient every rank hands
// its optimizer equals the single-process full-batch gradient (to 1e-12 in double).
#include <gtest/gtest.h>
#include <mpi.h>

#include <array>
#include <vector>

#include "posttrain/algo.hpp"
#include "posttrain/dist/mpi_communicator.hpp"
#include "posttrain/pipeline.hpp"
#include "posttrain/pipeline/reward_model_step.hpp"
#include "pipeline/test_policy.hpp"

using namespace pt_test;

namespace {

constexpr pt::index_t V = 6;

// Sequences [b0, b1) of a packed batch with their token-aligned mask, rebased.
struct part {
  std::vector<pt::index_t> tokens, offsets{0};
  std::vector<float> mask;
  std::vector<std::uint64_t> ids;
};
part take(const std::vector<pt::index_t>& tok, const std::vector<pt::index_t>& off,
          const std::vector<float>& mask, pt::index_t b0, pt::index_t b1) {
  part p;
  for (pt::index_t b = b0; b < b1; ++b) {
    p.tokens.insert(p.tokens.end(), tok.begin() + off[b], tok.begin() + off[b + 1]);
    p.mask.insert(p.mask.end(), mask.begin() + off[b], mask.begin() + off[b + 1]);
    p.offsets.push_back(static_cast<pt::index_t>(p.tokens.size()));
    p.ids.push_back(static_cast<std::uint64_t>(b));
  }
  return p;
}

void expect_near(const std::vector<double>& a, const std::vector<double>& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], tol) << i;
}

// 8 sequences split evenly over the ranks (the test needs size() to divide 8).
const std::vector<pt::index_t> tok{0, 1, 2, 3, 4, 1, 5, 5, 2, 0, 3, 3, 1, 2, 4, 0, 5, 1, 2, 2, 3, 0, 4, 1};
const std::vector<pt::index_t> off{0, 3, 6, 9, 12, 15, 18, 21, 24};
const std::vector<float> msk{0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 0, 1, 0, 1, 0.5f, 0, 1, 1, 0, 1, 1};

// The 4 pairs of the pair tests (first = sequences 0..3, second = sequences 4..7 of the table
// above): this rank's `per` of them, and all of them (the one-process run).
struct pair_share {
  part first_mine, second_mine, first_all, second_all;
  pair_share(int rank, pt::index_t per)
      : first_mine(take(tok, off, msk, rank * per, (rank + 1) * per)),
        second_mine(take(tok, off, msk, 4 + rank * per, 4 + (rank + 1) * per)),
        first_all(take(tok, off, msk, 0, 4)),
        second_all(take(tok, off, msk, 4, 8)) {}
};

// The prompts {0, 1, 3, 4} of the RL tests, and this rank's `per` of them (with their offsets).
struct prompt_share {
  std::vector<pt::index_t> prompts{0, 1, 3, 4}, poff{0, 1, 2, 3, 4}, mine, moff{0};
  prompt_share(int rank, pt::index_t per) {
    mine.assign(prompts.begin() + rank * per, prompts.begin() + (rank + 1) * per);
    for (pt::index_t i = 1; i <= per; ++i) moff.push_back(i);
  }
};

// The bandit reward: 1 when the first completion token is (prompt + 2) mod V.
double bandit_reward(std::span<const pt::index_t> p, std::span<const pt::index_t> c,
                     const pp::example_info&) {
  return c[0] == (p[0] + 2) % V ? 1.0 : 0.0;
}

// The RL tests' set-up: the 4 prompts with G = 4 samples each and this rank's share of them, the
// same policy twice (one copy steps on the ranks, one in the one-process run) with a generator on
// each, the bandit reward, and an optimizer capturing each run's gradient.
struct rl_ranks_and_one {
  pt::dist::mpi_communicator comm;
  const int rank = comm.rank();
  const pt::index_t g = 4, per = 4 / comm.size();
  const prompt_share share{rank, per};
  bigram_policy<double> p_rank{V, 3}, p_one{V, 3};
  pp::generate::from_policy<bigram_policy<double>> gen_rank{p_rank}, gen_one{p_one};
  pp::reward::callable<decltype(&bandit_reward)> reward{&bandit_reward};
  capture_optimizer a, b;

  pp::rl_batch all_prompts() const { return {{share.prompts, share.poff}, {}}; }
  pp::rl_batch my_prompts() const { return {{share.mine, share.moff}, {}}; }
  // Where this rank's samples start in the one-process numbering (their sampling seeds).
  std::uint64_t first_sample_index() const { return static_cast<std::uint64_t>(rank * per * g); }
};

}  // namespace

TEST(MpiPipeline, SftStepOnRanksEqualsOneProcess) {
  pt::dist::mpi_communicator comm;
  const int r = comm.rank(), n = comm.size();
  ASSERT_EQ(8 % n, 0);
  const pt::index_t per = 8 / n;
  const part mine = take(tok, off, msk, r * per, (r + 1) * per);
  const part all = take(tok, off, msk, 0, 8);
  bigram_policy<double> p_rank(V, 3), p_one(V, 3);
  capture_optimizer a, b;
  pp::sft_step_options<pt::algo::sft_sample_mean> o;
  const auto ma = pp::sft_step<pt::algo::sft_sample_mean>(
      p_rank, a, {{mine.tokens, mine.offsets}, mine.mask}, o, comm);
  const auto mb = pp::sft_step<pt::algo::sft_sample_mean>(p_one, b, {{all.tokens, all.offsets}, all.mask}, o);
  EXPECT_NEAR(ma.loss, mb.loss, 1e-12);
  EXPECT_EQ(ma.tokens, mb.tokens);
  expect_near(a.grads, b.grads, 1e-12);
}

TEST(MpiPipeline, SftStepWithUnequalShares) {
  // The offline steps have no collective inside their micro-batch loops: 3 sequences on rank 0
  // and 5 on rank 1 (micro-batches of 2: 2 and 3 of them) equal one process over the 8.
  pt::dist::mpi_communicator comm;
  const int r = comm.rank(), n = comm.size();
  if (n > 2) GTEST_SKIP() << "written for 1 or 2 ranks";
  const part mine = n == 1 ? take(tok, off, msk, 0, 8) : r == 0 ? take(tok, off, msk, 0, 3)
                                                               : take(tok, off, msk, 3, 8);
  const part all = take(tok, off, msk, 0, 8);
  bigram_policy<double> p_rank(V, 3), p_one(V, 3);
  capture_optimizer a, b;
  pp::sft_step_options<pt::algo::sft> o;
  o.micro_batch = 2;
  const auto ma = pp::sft_step<pt::algo::sft>(p_rank, a, {{mine.tokens, mine.offsets}, mine.mask}, o, comm);
  o.micro_batch = 0;
  const auto mb = pp::sft_step<pt::algo::sft>(p_one, b, {{all.tokens, all.offsets}, all.mask}, o);
  EXPECT_NEAR(ma.loss, mb.loss, 1e-12);
  EXPECT_EQ(ma.tokens, mb.tokens);
  expect_near(a.grads, b.grads, 1e-12);
}

TEST(MpiPipeline, PreferenceStepOnRanksEqualsOneProcess) {
  pt::dist::mpi_communicator comm;
  const int r = comm.rank(), n = comm.size();
  const pt::index_t pairs = 4, per = pairs / n;
  // chosen = sequences 0..3, rejected = sequences 4..7 of the table above.
  const pair_share share(r, per);
  const auto& [c_mine, r_mine, c_all, r_all] = share;
  bigram_policy<double> p_rank(V, 3), p_one(V, 3), ref(V, 9);
  pp::reference::frozen<bigram_policy<double>> reference(ref);
  capture_optimizer a, b;
  const auto ma = pp::preference_step<pt::algo::dpo_nll>(
      p_rank, reference, a,
      {{c_mine.tokens, c_mine.offsets}, {r_mine.tokens, r_mine.offsets}, c_mine.mask, r_mine.mask},
      {}, comm);
  const auto mb = pp::preference_step<pt::algo::dpo_nll>(
      p_one, reference, b,
      {{c_all.tokens, c_all.offsets}, {r_all.tokens, r_all.offsets}, c_all.mask, r_all.mask});
  EXPECT_NEAR(ma.loss, mb.loss, 1e-12);
  EXPECT_NEAR(ma.reward_accuracy, mb.reward_accuracy, 1e-15);
  expect_near(a.grads, b.grads, 1e-12);
}

TEST(MpiPipeline, KtoStepOnRanksEqualsOneProcess) {
  // Examples = sequences 0..3 of the table, their mismatched pairs = sequences 4..7; z0 is the
  // mean over every rank's pairs (one all-reduce), so the ranks' update is the one-process update.
  pt::dist::mpi_communicator comm;
  const int r = comm.rank(), n = comm.size();
  const pt::index_t per = 4 / n;
  const pair_share share(r, per);
  const auto& [e_mine, k_mine, e_all, k_all] = share;
  const std::vector<std::uint8_t> labels{1, 0, 0, 1};
  bigram_policy<double> p_rank(V, 3), p_one(V, 3), ref(V, 7, 2.0);  // z0 > 0 (not clamped)
  pp::reference::frozen<bigram_policy<double>> reference(ref);
  capture_optimizer a, b;
  pp::kto_step_options<pt::algo::kto> o;
  o.loss.beta = 0.5;
  const auto ma = pp::kto_step<pt::algo::kto>(
      p_rank, reference, a,
      {{e_mine.tokens, e_mine.offsets}, e_mine.mask,
       std::span<const std::uint8_t>(labels).subspan(r * per, per), {k_mine.tokens, k_mine.offsets},
       k_mine.mask}, o, comm);
  const auto mb = pp::kto_step<pt::algo::kto>(
      p_one, reference, b,
      {{e_all.tokens, e_all.offsets}, e_all.mask, labels, {k_all.tokens, k_all.offsets}, k_all.mask}, o);
  EXPECT_GT(mb.kl_reference, 0.0);
  EXPECT_NEAR(ma.kl_reference, mb.kl_reference, 1e-14);
  EXPECT_NEAR(ma.loss, mb.loss, 1e-12);
  EXPECT_NEAR(ma.desirable_reward, mb.desirable_reward, 1e-12);
  expect_near(a.grads, b.grads, 1e-12);
}

TEST(MpiPipeline, RlStepOnRanksEqualsOneProcess) {
  rl_ranks_and_one t;
  pp::reference::frozen<bigram_policy<double>> ref_rank(t.p_rank), ref_one(t.p_one);
  pp::rl_step_options<pt::algo::grpo, pt::estimator::grpo> o;
  o.samples_per_prompt = t.g;
  o.sampling.max_new_tokens = 1;
  o.loss.policy.kl_coef = 0.1;
  o.seed = 5;
  const auto mb = pp::rl_step<pt::algo::grpo, pt::estimator::grpo>(
      t.p_one, t.gen_one, ref_one, t.reward, t.b, t.all_prompts(), o);
  o.first_sample_index = t.first_sample_index();
  const auto ma = pp::rl_step<pt::algo::grpo, pt::estimator::grpo>(
      t.p_rank, t.gen_rank, ref_rank, t.reward, t.a, t.my_prompts(), o, t.comm);
  EXPECT_NEAR(ma.reward_mean, mb.reward_mean, 1e-15);
  EXPECT_NEAR(ma.loss, mb.loss, 1e-12);
  expect_near(t.a.grads, t.b.grads, 1e-12);
}


TEST(MpiPipeline, RlStepSkippedPassesOnRanksEqualOneProcessWithThePasses) {
  // GRPO at β = 0, one epoch, one mini-batch: on the ranks neither the reference nor the ℓold
  // forward runs (each rank decides from the all-reduced mini-batch count); one process with both
  // passes forced gives the same loss and gradient.
  rl_ranks_and_one t;
  bigram_policy<double> ref_model(V, 3);
  ref_model.w[5] += 0.3;
  pp::reference::frozen<bigram_policy<double>> ref_rank(ref_model), ref_one(ref_model);
  pp::rl_step_options<pt::algo::grpo, pt::estimator::grpo> o;
  o.samples_per_prompt = t.g;
  o.sampling.max_new_tokens = 1;
  o.loss.policy.kl_coef = 0;
  o.micro_batch = 3;
  o.seed = 5;
  o.force_reference_pass = o.force_old_logprob_pass = true;
  const auto mb = pp::rl_step<pt::algo::grpo, pt::estimator::grpo>(
      t.p_one, t.gen_one, ref_one, t.reward, t.b, t.all_prompts(), o);
  o.force_reference_pass = o.force_old_logprob_pass = false;
  o.first_sample_index = t.first_sample_index();
  const auto ma = pp::rl_step<pt::algo::grpo, pt::estimator::grpo>(
      t.p_rank, t.gen_rank, ref_rank, t.reward, t.a, t.my_prompts(), o, t.comm);
  EXPECT_TRUE(mb.reference_pass && mb.old_logprob_pass);
  EXPECT_FALSE(ma.reference_pass || ma.old_logprob_pass);
  EXPECT_EQ(ma.kl_loss, 0.0);
  double norm = 0;
  for (double x : t.b.grads) norm += x * x;
  EXPECT_GT(norm, 0.0);  // some group has unequal rewards: the update is not trivially 0
  EXPECT_NEAR(ma.loss, mb.loss, 1e-12);
  expect_near(t.a.grads, t.b.grads, 1e-12);
}

TEST(MpiPipeline, RewardModelStepOnRanksEqualsOneProcess) {
  pt::dist::mpi_communicator comm;
  const int r = comm.rank(), n = comm.size();
  const pt::index_t per = 4 / n;
  const pair_share share(r, per);
  const auto& [c_mine, r_mine, c_all, r_all] = share;
  const std::vector<double> margin{0.5, 0.0, 1.0, 0.25};
  const std::vector<double> w{0.1, -0.2, 0.3, 0.05, -0.1, 0.2};
  bag_scorer m_rank(w), m_one(w);
  capture_optimizer a, b;
  const auto ma = pp::reward_model_step<pt::algo::bradley_terry>(
      m_rank, a, {{c_mine.tokens, c_mine.offsets}, {r_mine.tokens, r_mine.offsets}, {},
                  std::span<const double>(margin).subspan(r * per, per), {}}, {}, comm);
  const auto mb = pp::reward_model_step<pt::algo::bradley_terry>(
      m_one, b, {{c_all.tokens, c_all.offsets}, {r_all.tokens, r_all.offsets}, {}, margin, {}});
  EXPECT_NEAR(ma.loss, mb.loss, 1e-12);
  EXPECT_NEAR(ma.accuracy, mb.accuracy, 1e-15);
  expect_near(a.grads, b.grads, 1e-12);
}


TEST(MpiPipeline, PpoWithWhitenedGaeAndCriticOnRanksEqualsOneProcess) {
  // GAE whitens over the whole batch: on ranks with the global moments.
  rl_ranks_and_one t;
  pp::reference::none<double> none;
  const std::vector<double> c0{0.1, 0.2, -0.1, 0.3, 0.0, 0.05};
  table_critic c_rank(c0), c_one(c0);
  capture_optimizer ca, cb;
  pp::rl_step_options<pt::algo::ppo, pt::estimator::gae> o;
  o.samples_per_prompt = t.g;
  o.sampling.max_new_tokens = 2;
  o.seed = 8;
  ASSERT_TRUE(o.estimator.whiten);
  pt::dist::single_process_communicator one;
  const auto mb = pp::rl_step<pt::algo::ppo, pt::estimator::gae>(
      t.p_one, t.gen_one, none, t.reward, t.b, c_one, cb, t.all_prompts(), o, one);
  o.first_sample_index = t.first_sample_index();
  const auto ma = pp::rl_step<pt::algo::ppo, pt::estimator::gae>(
      t.p_rank, t.gen_rank, none, t.reward, t.a, c_rank, ca, t.my_prompts(), o, t.comm);
  EXPECT_NEAR(ma.loss, mb.loss, 1e-12);
  EXPECT_NEAR(ma.value_loss, mb.value_loss, 1e-12);
  expect_near(t.a.grads, t.b.grads, 1e-12);
  expect_near(ca.grads, cb.grads, 1e-12);
}

TEST(MpiPipeline, ReinforcePpWithWhiteningOnRanksEqualsOneProcess) {
  rl_ranks_and_one t;
  pp::reference::none<double> none;
  auto o = pp::rl_options_from<pt::algo::reinforce_pp>(pt::algo::reinforce_pp::defaults());
  o.samples_per_prompt = t.g;
  o.sampling.max_new_tokens = 2;
  o.seed = 12;
  ASSERT_TRUE(o.estimator.whiten);
  const auto mb = pp::rl_step<pt::algo::reinforce_pp>(t.p_one, t.gen_one, none, t.reward, t.b,
                                                      t.all_prompts(), o);
  o.first_sample_index = t.first_sample_index();
  const auto ma = pp::rl_step<pt::algo::reinforce_pp>(t.p_rank, t.gen_rank, none, t.reward, t.a,
                                                      t.my_prompts(), o, t.comm);
  EXPECT_NEAR(ma.loss, mb.loss, 1e-12);
  expect_near(t.a.grads, t.b.grads, 1e-12);
}

TEST(MpiPipeline, ReinforcePpBaselineWhitensOverAllRanks) {
  // REINFORCE++-baseline whitens R − mean(group) over the whole batch: on ranks with the moments
  // merged over ranks. Whitening per rank gives each rank's tokens unit variance on its own and
  // a different gradient (this test fails then).
  rl_ranks_and_one t;
  // Rewards whose groups differ in spread, so the ranks' local moments differ.
  auto reward_fn = [](std::span<const pt::index_t> p, std::span<const pt::index_t> c,
                      const pp::example_info&) {
    return c[0] == (p[0] + 2) % V ? 1.0 + 0.5 * static_cast<double>(p[0]) : 0.25 * static_cast<double>(c[0]);
  };
  pp::reference::none<double> none;
  pp::reward::callable reward{reward_fn};
  auto o = pp::rl_options_from<pt::algo::reinforce_pp_baseline>(
      pt::algo::reinforce_pp_baseline::defaults());
  o.samples_per_prompt = t.g;
  o.sampling.max_new_tokens = 2;
  o.seed = 21;
  const auto mb = pp::rl_step<pt::algo::reinforce_pp_baseline>(
      t.p_one, t.gen_one, none, reward, t.b, t.all_prompts(), o);
  o.first_sample_index = t.first_sample_index();
  const auto ma = pp::rl_step<pt::algo::reinforce_pp_baseline>(
      t.p_rank, t.gen_rank, none, reward, t.a, t.my_prompts(), o, t.comm);
  EXPECT_NEAR(ma.loss, mb.loss, 1e-12);
  expect_near(t.a.grads, t.b.grads, 1e-12);
}

namespace {
// The prompts [p0, p1) of this rank when 8 prompts are split 3 : 5 over 2 ranks (all on 1 rank).
std::array<pt::index_t, 2> uneven_share(int rank, int size) {
  if (size == 1) return {0, 8};
  return rank == 0 ? std::array<pt::index_t, 2>{0, 3} : std::array<pt::index_t, 2>{3, 8};
}
const std::vector<pt::index_t> eight_prompts{0, 1, 3, 4, 5, 2, 0, 3};

// Records the sum of every step's gradient (parameters unchanged).
struct summing_optimizer {
  std::vector<double> grads;
  int steps = 0;
  template <class S>
  void step(std::span<S>, std::span<const S> g) {
    grads.resize(g.size(), 0.0);
    for (std::size_t i = 0; i < g.size(); ++i) grads[i] += static_cast<double>(g[i]);
    ++steps;
  }
};

template <class Recipe, bool WithReference>
void expect_uneven_ranks_equal_one_process(pp::rl_options<Recipe> o) {
  pt::dist::mpi_communicator comm;
  const int r = comm.rank(), n = comm.size();
  if (n > 2) GTEST_SKIP() << "written for 1 or 2 ranks";
  const auto [p0, p1] = uneven_share(r, n);
  const pt::index_t g = o.samples_per_prompt;
  std::vector<pt::index_t> mine(eight_prompts.begin() + p0, eight_prompts.begin() + p1), moff{0},
      aoff{0};
  for (pt::index_t i = 1; i <= p1 - p0; ++i) moff.push_back(i);
  for (pt::index_t i = 1; i <= 8; ++i) aoff.push_back(i);
  auto reward_fn = [](std::span<const pt::index_t> p, std::span<const pt::index_t> c,
                      const pp::example_info&) {
    return c[0] == (p[0] + 2) % V ? 1.0 : 0.1 * static_cast<double>(c.back());
  };
  bigram_policy<double> p_rank(V, 3), p_one(V, 3);
  pp::reference::frozen<bigram_policy<double>> ref_rank(bigram_policy<double>(V, 9)),
      ref_one(bigram_policy<double>(V, 9));
  pp::reference::none<double> none;
  pp::generate::from_policy<bigram_policy<double>> gen_rank(p_rank), gen_one(p_one);
  pp::reward::callable reward{reward_fn};
  summing_optimizer a, b;
  auto full = o;
  full.mini_batch = 0;  // one process, one update over all 8 prompts
  pp::rl_metrics mb, ma;
  if constexpr (WithReference) {
    mb = pp::rl_step<Recipe>(p_one, gen_one, ref_one, reward, b, pp::rl_batch{{eight_prompts, aoff}, {}}, full);
    o.first_sample_index = static_cast<std::uint64_t>(p0 * g);
    ma = pp::rl_step<Recipe>(p_rank, gen_rank, ref_rank, reward, a, pp::rl_batch{{mine, moff}, {}}, o, comm);
  } else {
    mb = pp::rl_step<Recipe>(p_one, gen_one, none, reward, b, pp::rl_batch{{eight_prompts, aoff}, {}}, full);
    o.first_sample_index = static_cast<std::uint64_t>(p0 * g);
    ma = pp::rl_step<Recipe>(p_rank, gen_rank, none, reward, a, pp::rl_batch{{mine, moff}, {}}, o, comm);
  }
  EXPECT_NEAR(ma.reward_mean, mb.reward_mean, 1e-15);
  EXPECT_EQ(ma.completion_tokens, mb.completion_tokens);
  // Every rank ran the same number of updates: the most any rank needed.
  const pt::index_t per_rank = (p1 - p0) * g;
  const pt::index_t most = o.mini_batch > 0 ? (n == 2 ? (5 * g + o.mini_batch - 1) / o.mini_batch
                                                      : (per_rank + o.mini_batch - 1) / o.mini_batch)
                                            : 1;
  EXPECT_EQ(ma.updates, most);
  EXPECT_EQ(a.steps, most);
  if (o.mini_batch == 0) {
    EXPECT_NEAR(ma.loss, mb.loss, 1e-12);
  }
  expect_near(a.grads, b.grads, 1e-12);
}
}  // namespace

TEST(MpiPipeline, UnequalPromptCountsGrpoWithKlEqualsOneProcess) {
  // 3 prompts on rank 0, 5 on rank 1 (× G = 4 samples): one update with the global normalisers.
  auto o = pp::rl_options_from<pt::algo::grpo>(pt::algo::grpo::defaults());
  o.samples_per_prompt = 4;
  o.sampling.max_new_tokens = 2;
  o.loss.policy.kl_coef = 0.1;
  o.seed = 31;
  expect_uneven_ranks_equal_one_process<pt::algo::grpo, true>(o);
}

TEST(MpiPipeline, UnequalPromptCountsReinforcePpBaselineEqualsOneProcess) {
  // Global whitening with 12 sequences on one rank and 20 on the other.
  auto o = pp::rl_options_from<pt::algo::reinforce_pp_baseline>(
      pt::algo::reinforce_pp_baseline::defaults());
  o.samples_per_prompt = 4;
  o.sampling.max_new_tokens = 2;
  o.seed = 32;
  expect_uneven_ranks_equal_one_process<pt::algo::reinforce_pp_baseline, false>(o);
}

TEST(MpiPipeline, UnequalMiniBatchCountsRunTheSameUpdatesEverywhere) {
  // mini_batch = 8 sequences: rank 0 has 12 (2 mini-batches), rank 1 has 20 (3); both run 3
  // updates, rank 0's last one empty. With a constant divisor (Dr.GRPO) and the parameters left
  // unchanged, the updates' gradients add up to the one-process full-batch gradient: every
  // sequence counted once, none dropped, none doubled.
  auto o = pp::rl_options_from<pt::algo::dr_grpo>(pt::algo::dr_grpo::defaults());
  o.samples_per_prompt = 4;
  o.sampling.max_new_tokens = 2;
  o.normalizer_constant = 7.0;
  o.mini_batch = 8;
  o.seed = 33;
  expect_uneven_ranks_equal_one_process<pt::algo::dr_grpo, false>(o);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any_failed;
}
