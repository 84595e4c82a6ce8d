// Shared-prompt prefill (generate.hpp): rows with equal prompt tokens are prefilled once. The
// completions must equal the unshared path's (share_prompt_prefill = false) for the same seeds:
// same tokens, same stop reasons, log-probs equal to rounding, on mixed batches (groups of
// different sizes, equal prompts far apart, different prompt lengths, a prompt that is a prefix
// of another, groups of one), with sampling, greedy decoding, stop tokens and max length; and on
// a float model of the benchmark's shape (16 prompts × 8 samples).
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "checkpoint.hpp"
#include "generate.hpp"
#include "golden.hpp"
#include "test_models.hpp"

namespace rm = reference_model;
using rm::index_t;

namespace {

using batch = rm::testing::packed_rows;

// Rows: A C B A D C A E A'  (A ×3 non-adjacent, C ×2, B, D, E, A' groups of one; D differs from C
// in its last token only; A' is A plus one token; B is a single token).
batch mixed() {
  const std::vector<index_t> a = {5, 17, 3, 60}, b = {9}, c = {2, 9, 9, 41, 77, 12, 8},
                             d = {2, 9, 9, 41, 77, 12, 30}, e = {44, 1, 50, 7, 7},
                             a2 = {5, 17, 3, 60, 11};
  batch x;
  for (const auto* p : {&a, &c, &b, &a, &d, &c, &a, &e, &a2}) x.add(*p);
  return x;
}

template <class S>
void expect_same(const std::vector<rm::completion>& shared,
                 const std::vector<rm::completion>& unshared, double tol, const char* what) {
  ASSERT_EQ(shared.size(), unshared.size()) << what;
  for (std::size_t s = 0; s < shared.size(); ++s) {
    EXPECT_EQ(shared[s].tokens, unshared[s].tokens) << what << " row " << s;
    EXPECT_EQ(shared[s].reason, unshared[s].reason) << what << " row " << s;
    ASSERT_EQ(shared[s].model_logprobs.size(), unshared[s].model_logprobs.size()) << what;
    ASSERT_EQ(shared[s].sampling_logprobs.size(), unshared[s].sampling_logprobs.size()) << what;
    for (std::size_t t = 0; t < shared[s].model_logprobs.size(); ++t) {
      EXPECT_NEAR(shared[s].model_logprobs[t], unshared[s].model_logprobs[t], tol)
          << what << " row " << s << " step " << t;
      EXPECT_NEAR(shared[s].sampling_logprobs[t], unshared[s].sampling_logprobs[t], tol)
          << what << " row " << s << " step " << t;
    }
  }
}

template <class S>
void compare(const rm::transformer<S>& m, const batch& x, const std::vector<std::uint64_t>& seeds,
             rm::sampling_options o, double tol, const char* what) {
  o.share_prompt_prefill = true;
  const auto shared = rm::generate(m, x.tokens, x.offsets, seeds, o);
  o.share_prompt_prefill = false;
  const auto unshared = rm::generate(m, x.tokens, x.offsets, seeds, o);
  expect_same<S>(shared, unshared, tol, what);
}

}  // namespace

TEST(ReferenceModelGenerateShared, GroupsByPromptTokens) {
  const batch x = mixed();
  const rm::prompt_groups g = rm::group_prompts(x.tokens, x.offsets, true);
  EXPECT_EQ(g.first, (std::vector<index_t>{0, 1, 2, 4, 7, 8}));
  EXPECT_EQ(g.of, (std::vector<index_t>{0, 1, 2, 0, 3, 1, 0, 4, 5}));
  const rm::prompt_groups off = rm::group_prompts(x.tokens, x.offsets, false);
  EXPECT_EQ(off.first, (std::vector<index_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(off.of, off.first);
}

TEST(ReferenceModelGenerateShared, SameCompletionsAsUnsharedOnMixedBatches) {
  const batch x = mixed();
  const std::vector<std::uint64_t> seeds = {11, 22, 33, 44, 55, 66, 77, 88, 99};
  for (const std::string name : {"llama", "qwen2"}) {
    const auto m = rm::load_checkpoint<double>(rm::testing::golden_dir() + "/" + name);
    rm::sampling_options o;
    o.temperature = 1.0;  // plain sampling
    o.max_new_tokens = 9;
    compare(m, x, seeds, o, 1e-12, "sampling");
    o.temperature = 0.9;  // truncated sampling
    o.top_k = 40;
    o.top_p = 0.95;
    compare(m, x, seeds, o, 1e-12, "top-k/top-p");
    o.max_new_tokens = 1;  // the prefill's token only
    compare(m, x, seeds, o, 1e-12, "one token");
    o.max_new_tokens = 9;
    o.temperature = 0;  // greedy: equal prompts give equal completions
    compare(m, x, seeds, o, 1e-12, "greedy");

    // Stop tokens: stop at tokens the free run samples, so some rows stop early (different
    // lengths within a group), others run to max length.
    o.temperature = 1.0;
    o.top_k = 0;
    o.top_p = 1.0;
    o.share_prompt_prefill = false;
    const auto free_run = rm::generate(m, x.tokens, x.offsets, seeds, o);
    o.stop_tokens = {free_run[0].tokens[1], free_run[4].tokens[3]};
    compare(m, x, seeds, o, 1e-12, "stop tokens");
    o.share_prompt_prefill = true;
    const auto stopped = rm::generate(m, x.tokens, x.offsets, seeds, o);
    bool some_stop = false, some_length = false;
    for (const auto& c : stopped) {
      some_stop |= c.reason == rm::stop_reason::stop_token;
      some_length |= c.reason == rm::stop_reason::length;
    }
    EXPECT_TRUE(some_stop) << name;
    EXPECT_TRUE(some_length) << name;
    o.stop_tokens.clear();

    // The rows of a group draw from their own streams: the three A rows do not all agree.
    const auto sampled = rm::generate(m, x.tokens, x.offsets, seeds, o);
    EXPECT_TRUE(sampled[0].tokens != sampled[3].tokens || sampled[0].tokens != sampled[6].tokens)
        << name;
    // And a row's completion is the one it gets alone (its own prompt, its own seed).
    for (std::size_t s : {0u, 3u, 6u}) {
      const std::vector<index_t> one(x.tokens.begin() + x.offsets[s],
                                     x.tokens.begin() + x.offsets[s + 1]);
      const std::vector<index_t> off = {0, static_cast<index_t>(one.size())};
      const std::vector<std::uint64_t> seed = {seeds[s]};
      EXPECT_EQ(rm::generate(m, one, off, seed, o)[0].tokens, sampled[s].tokens) << name << s;
    }
  }
}

// The benchmark's shape in float: 16 prompts of 20–75 tokens × 8 samples, the samples of a prompt
// adjacent (as GRPO lays them out) and, in a second batch, interleaved.
TEST(ReferenceModelGenerateShared, SameCompletionsAsUnsharedFloatGrpoBatch) {
  rm::model_config c = rm::testing::two_layers(rm::architecture::llama, 261, 64, 192);
  c.max_position_embeddings = 512;
  rm::transformer<float> m(c);
  m.init_random(3);
  std::mt19937_64 rng(17);
  std::vector<std::vector<index_t>> prompts(16);
  for (auto& p : prompts) {
    p.resize(std::uniform_int_distribution<int>(20, 75)(rng));
    for (auto& t : p) t = std::uniform_int_distribution<index_t>(0, 260)(rng);
  }
  batch adjacent, interleaved;
  for (const auto& p : prompts)
    for (int g = 0; g < 8; ++g) adjacent.add(p);
  for (int g = 0; g < 8; ++g)
    for (const auto& p : prompts) interleaved.add(p);
  std::vector<std::uint64_t> seeds(128);
  for (std::size_t i = 0; i < seeds.size(); ++i) seeds[i] = 1000 + 7 * i;
  EXPECT_EQ(rm::group_prompts(adjacent.tokens, adjacent.offsets, true).first.size(), 16u);
  EXPECT_EQ(rm::group_prompts(interleaved.tokens, interleaved.offsets, true).first.size(), 16u);
  rm::sampling_options o;
  o.temperature = 0.7;
  o.max_new_tokens = 16;
  compare(m, adjacent, seeds, o, 1e-5, "float adjacent");
  o.stop_tokens = {10, 100, 200};
  compare(m, interleaved, seeds, o, 1e-5, "float interleaved, stop tokens");
}
