// From an open-instruct RLVR JSONL file to one rl_step: read_rlvr_jsonl → pack_rlvr (chat prompts
// ending in the assistant header) → rl_step with a byte-level bigram policy, scored by
// reward::verifiers dispatching on each row's "dataset" (gsm8k, and a user verifier). The rewards
// rl_step reports are the verifiers' scores of the decoded completions.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include <posttrain/algo.hpp>
#include <posttrain/optim/adamw.hpp>
#include <posttrain/pipeline/jsonl.hpp>
#include <posttrain/pipeline/rl_step.hpp>
#include <posttrain/reward/gsm8k.hpp>

#include "pipeline/test_policy.hpp"

using namespace pt_test;

namespace {
struct contains_verifier {  // 1 when the response contains the label
  static std::string name() { return "contains"; }
  double score(std::string_view prediction, std::string_view label) const {
    return prediction.find(label) != std::string_view::npos ? 1.0 : 0.0;
  }
};
}  // namespace

TEST(RlvrEndToEnd, JsonlToRlStepWithVerifiers) {
  const std::string path = ::testing::TempDir() + "rlvr_e2e.jsonl";
  std::ofstream(path)
      << R"({"messages": [{"role": "user", "content": "1+1?"}], "ground_truth": "2", "dataset": "gsm8k"})" "\n"
      << R"({"messages": [{"role": "user", "content": "say a"}], "ground_truth": "a", "dataset": "contains"})" "\n";
  const auto rows = pp::read_rlvr_jsonl(path);
  std::remove(path.c_str());
  pp::byte_tokenizer tok;
  const auto packed = pp::pack_rlvr(tok, std::span<const pp::rlvr_example>(rows));
  ASSERT_EQ(packed.prompts.num_sequences(), 2);
  EXPECT_TRUE(tok.decode(packed.prompts.tokens).ends_with("assistant<|end_header_id|>\n\n"));
  EXPECT_EQ(packed.examples[1].verifier, "contains");

  bigram_policy<double> policy(tok.vocab_size(), 3, 0.05);
  // Make '2' and 'a' likely after "\n\n" so some samples are right.
  policy.w['\n' * tok.vocab_size() + '2'] = 6.0;
  policy.w['\n' * tok.vocab_size() + 'a'] = 6.0;
  pp::reference::frozen<bigram_policy<double>> reference(policy);
  pp::generate::from_policy<bigram_policy<double>> gen(policy);
  pp::reward::verifiers<pp::byte_tokenizer, pt::reward::gsm8k_verifier, contains_verifier> reward{};
  pt::optim::adamw opt({0.05, 0.9, 0.999, 1e-8, 0.0});
  auto o = pp::rl_options_from<pt::algo::grpo>(pt::algo::grpo::defaults());
  o.samples_per_prompt = 8;
  o.sampling.max_new_tokens = 1;
  o.seed = 4;
  const auto m = pp::rl_step<pt::algo::grpo>(policy, gen, reference, reward, opt,
                                             pp::rl_batch{packed.prompts.view(), packed.examples}, o);
  ASSERT_EQ(m.rewards.size(), 16u);
  double correct = 0;
  for (std::size_t i = 0; i < 16; ++i) {
    const std::string c = tok.decode(std::span<const pt::index_t>(m.rollout.completions.tokens).subspan(i, 1));
    const double want = i < 8 ? (c == "2" ? 1.0 : 0.0) : (c == "a" ? 1.0 : 0.0);
    EXPECT_EQ(m.rewards[i], want) << i << " " << c;
    correct += want;
  }
  EXPECT_GT(correct, 0.0);
  EXPECT_EQ(m.updates, 1);
}
