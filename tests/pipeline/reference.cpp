// pipeline/reference.hpp: reference::frozen is a snapshot (policy updates do not move it), sync()
// copies the policy again, mix() is TR-DPO's soft update θ_ref ← α·θ + (1 − α)·θ_ref (equal to
// ops/model_averaging.hpp soft_update); reference::none refuses to be asked.
#include <gtest/gtest.h>

#include <vector>

#include <posttrain/ops/model_averaging.hpp>
#include <posttrain/pipeline/reference.hpp>

#include "pipeline/test_policy.hpp"

using namespace pt_test;

TEST(Reference, FrozenIsASnapshotWithSyncAndMix) {
  bigram_policy<double> policy(4, 1);
  pp::reference::frozen<bigram_policy<double>> ref(policy);
  const auto snapshot = policy.w;
  for (auto& w : policy.w) w += 1.0;
  EXPECT_EQ(ref.model().w, snapshot);
  std::vector<double> want = snapshot;
  pt::soft_update(std::span<double>(want), std::span<const double>(policy.w), 0.6);
  ref.mix(policy, 0.6);
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(ref.model().w[i], want[i], 1e-15);
  ref.sync(policy);
  EXPECT_EQ(ref.model().w, policy.w);
  EXPECT_THROW(ref.mix(policy, 1.5), pt::error);
  std::vector<pt::index_t> toks{0, 1}, offs{0, 2};
  std::vector<double> lp(2), lp2(2);
  ref.logprobs({toks, offs}, lp);
  EXPECT_EQ(lp[0], 0.0);
  EXPECT_NEAR(lp[1], ref_logprob(policy.w, 4, 0, 1), 1e-14);
  pp::reference::none<double> none;
  EXPECT_THROW(none.logprobs({toks, offs}, lp2), pt::error);
}
