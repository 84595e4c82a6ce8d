// Generation: greedy decoding with the KV cache equals the argmax of a full forward over prompt +
// completion at every step (and its log-probs equal the full forward's); a sample's completion is
// the same alone or in a batch; stop tokens and lengths end sequences; top-k / top-p restrict the
// support; sampling frequencies follow the softmax; bad options are refused.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

#include "checkpoint.hpp"
#include "generate.hpp"
#include "golden.hpp"

namespace rm = reference_model;
using rm::index_t;

namespace {

struct prompts {
  std::vector<index_t> tokens = {5, 17, 3, 60, 2, 9, 9, 41, 77, 12, 8, 30};
  std::vector<index_t> offsets = {0, 4, 5, 12};
};

// Full-forward log-softmax row of position `at` of one sequence.
template <class S>
std::vector<double> full_logprobs(const rm::transformer<S>& m, const std::vector<index_t>& seq,
                                  index_t at) {
  rm::activations<S> act;
  const std::vector<index_t> off = {0, static_cast<index_t>(seq.size())};
  const rm::matrix<S> logits = m.logits(m.forward(seq, off, act));
  std::vector<double> row(static_cast<std::size_t>(logits.cols()));
  double mx = -INFINITY, sum = 0;
  for (index_t j = 0; j < logits.cols(); ++j) mx = std::max(mx, double(logits(at, j)));
  for (index_t j = 0; j < logits.cols(); ++j) sum += std::exp(double(logits(at, j)) - mx);
  for (index_t j = 0; j < logits.cols(); ++j) row[j] = double(logits(at, j)) - mx - std::log(sum);
  return row;
}

}  // namespace

TEST(ReferenceModelGenerate, GreedyEqualsArgmaxOfFullForward) {
  for (const std::string name : {"llama", "qwen2"}) {
    const auto m = rm::load_checkpoint<double>(rm::testing::golden_dir() + "/" + name);
    const prompts p;
    rm::sampling_options o;
    o.temperature = 0;
    o.max_new_tokens = 9;
    const std::vector<std::uint64_t> seeds = {1, 2, 3};
    const auto out = rm::generate(m, p.tokens, p.offsets, seeds, o);
    ASSERT_EQ(out.size(), 3u);
    for (std::size_t s = 0; s < 3; ++s) {
      ASSERT_EQ(out[s].tokens.size(), 9u);
      EXPECT_EQ(out[s].reason, rm::stop_reason::length);
      std::vector<index_t> seq(p.tokens.begin() + p.offsets[s], p.tokens.begin() + p.offsets[s + 1]);
      const index_t plen = static_cast<index_t>(seq.size());
      seq.insert(seq.end(), out[s].tokens.begin(), out[s].tokens.end());
      for (index_t t = 0; t < 9; ++t) {
        const auto row = full_logprobs(m, seq, plen + t - 1);
        const index_t argmax = std::max_element(row.begin(), row.end()) - row.begin();
        EXPECT_EQ(out[s].tokens[t], argmax) << name << " sequence " << s << " step " << t;
        EXPECT_NEAR(out[s].model_logprobs[t], row[argmax], 1e-12);
      }
    }
  }
}

TEST(ReferenceModelGenerate, SampleIndependentOfBatchAndLogprobsMatchFullForward) {
  const auto m = rm::load_checkpoint<double>(rm::testing::golden_dir() + "/qwen2");
  const prompts p;
  rm::sampling_options o;
  o.temperature = 0.9;
  o.top_k = 40;
  o.top_p = 0.95;
  o.max_new_tokens = 8;
  const std::vector<std::uint64_t> seeds = {11, 22, 33};
  const auto all = rm::generate(m, p.tokens, p.offsets, seeds, o);
  for (std::size_t s = 0; s < 3; ++s) {
    const std::vector<index_t> one(p.tokens.begin() + p.offsets[s],
                                   p.tokens.begin() + p.offsets[s + 1]);
    const std::vector<index_t> off = {0, static_cast<index_t>(one.size())};
    const std::vector<std::uint64_t> seed = {seeds[s]};
    const auto alone = rm::generate(m, one, off, seed, o);
    EXPECT_EQ(alone[0].tokens, all[s].tokens) << s;
    // model_logprob = log-softmax(logits / τ) of the full forward at that position.
    std::vector<index_t> seq = one;
    seq.insert(seq.end(), all[s].tokens.begin(), all[s].tokens.end());
    for (std::size_t t = 0; t < all[s].tokens.size(); ++t) {
      rm::activations<double> act;
      const std::vector<index_t> so = {0, static_cast<index_t>(seq.size())};
      const rm::matrix<double> lg = m.logits(m.forward(seq, so, act)) / o.temperature;
      const auto row = lg.row(static_cast<index_t>(one.size() + t) - 1);
      const double lse = std::log((row.array() - row.maxCoeff()).exp().sum()) + row.maxCoeff();
      EXPECT_NEAR(all[s].model_logprobs[t], row(all[s].tokens[t]) - lse, 1e-12);
      // Truncation only removes mass: the sampled distribution is sharper.
      EXPECT_GE(all[s].sampling_logprobs[t], all[s].model_logprobs[t] - 1e-12);
    }
  }
  // Different seeds give different samples.
  const std::vector<std::uint64_t> other = {12, 23, 34};
  const auto diff = rm::generate(m, p.tokens, p.offsets, other, o);
  EXPECT_TRUE(diff[0].tokens != all[0].tokens || diff[1].tokens != all[1].tokens ||
              diff[2].tokens != all[2].tokens);
}

TEST(ReferenceModelGenerate, StopTokensEndSequences) {
  const auto m = rm::load_checkpoint<double>(rm::testing::golden_dir() + "/llama");
  const prompts p;
  rm::sampling_options o;
  o.temperature = 0;
  o.max_new_tokens = 9;
  const std::vector<std::uint64_t> seeds = {1, 2, 3};
  const auto free_run = rm::generate(m, p.tokens, p.offsets, seeds, o);
  // Stop at the third greedy token of sequence 1: it ends there (token kept), others run on
  // unless the same token appears earlier in them.
  const index_t stop = free_run[1].tokens[2];
  o.stop_tokens = {stop};
  const auto out = rm::generate(m, p.tokens, p.offsets, seeds, o);
  for (std::size_t s = 0; s < 3; ++s) {
    const auto& f = free_run[s].tokens;
    const auto it = std::find(f.begin(), f.end(), stop);
    if (it == f.end()) {
      EXPECT_EQ(out[s].tokens, f);
      EXPECT_EQ(out[s].reason, rm::stop_reason::length);
    } else {
      EXPECT_EQ(out[s].tokens, std::vector<index_t>(f.begin(), it + 1));
      EXPECT_EQ(out[s].reason, rm::stop_reason::stop_token);
    }
  }
  EXPECT_LE(out[1].tokens.size(), 3u);
}

TEST(ReferenceModelSampling, FrequenciesFollowTheTruncatedSoftmax) {
  const std::vector<double> logits = {2.0, 1.0, 0.5, 0.0, -1.0};
  std::mt19937_64 rng(5);
  rm::sampling_options o;
  o.temperature = 0.7;
  o.top_k = 4;     // drops id 4
  o.top_p = 0.9;   // then drops id 3 (see below)
  // Independent reference: softmax(logits / τ) over the 4 largest, then keep a token while the
  // mass of the more likely ones is < 0.9 (HF's TopPLogitsWarper), renormalise.
  std::vector<double> p(5, 0.0);
  double z = 0;
  for (int i = 0; i < 4; ++i) z += (p[i] = std::exp(logits[i] / 0.7));
  for (int i = 0; i < 4; ++i) p[i] /= z;  // ≈ .707 .169 .083 .041: masses before = 0 .707 .876 .959
  p[3] = 0;                               // .959 >= .9: dropped
  const double kept = p[0] + p[1] + p[2];
  for (int i = 0; i < 3; ++i) p[i] /= kept;
  std::vector<int> counts(5, 0);
  const int draws = 200000;
  double lp_check = 0;
  for (int i = 0; i < draws; ++i) {
    const auto t = rm::sample_token<double>(logits, o, rng);
    counts[t.token]++;
    lp_check = std::max(lp_check, std::abs(t.sampling_logprob - std::log(p[t.token])));
  }
  EXPECT_EQ(counts[4], 0);
  EXPECT_EQ(counts[3], 0);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(counts[i] / double(draws), p[i], 0.005) << i;
  EXPECT_LT(lp_check, 1e-12);
  // A tighter top-p keeps only the most likely token.
  o.top_p = 0.5;
  for (int i = 0; i < 100; ++i) EXPECT_EQ(rm::sample_token<double>(logits, o, rng).token, 0);
  EXPECT_NEAR(rm::sample_token<double>(logits, o, rng).sampling_logprob, 0.0, 1e-15);
}

TEST(ReferenceModelSampling, UntruncatedFrequenciesFollowTheSoftmax) {
  const std::vector<double> logits = {0.3, -1.0, 1.5, 0.0};
  std::mt19937_64 rng(6);
  rm::sampling_options o;
  o.temperature = 1.3;
  std::vector<double> p(4);
  double z = 0;
  for (int i = 0; i < 4; ++i) z += (p[i] = std::exp(logits[i] / 1.3));
  for (int i = 0; i < 4; ++i) p[i] /= z;
  std::vector<int> counts(4, 0);
  const int draws = 200000;
  for (int i = 0; i < draws; ++i) {
    const auto t = rm::sample_token<double>(logits, o, rng);
    counts[t.token]++;
    ASSERT_NEAR(t.sampling_logprob, std::log(p[t.token]), 1e-12);
    ASSERT_EQ(t.sampling_logprob, t.model_logprob);
  }
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(counts[i] / double(draws), p[i], 0.005) << i;
}

TEST(ReferenceModelGenerate, RejectsBadArguments) {
  rm::model_config c;
  c.vocab_size = 16;
  rm::transformer<float> m(c);
  const std::vector<index_t> t = {1, 2};
  const std::vector<index_t> off = {0, 2};
  const std::vector<std::uint64_t> one = {1}, two = {1, 2};
  rm::sampling_options o;
  EXPECT_THROW(rm::generate(m, t, off, two, o), posttrain::error);
  const std::vector<index_t> empty_prompt = {0, 0, 2};
  EXPECT_THROW(rm::generate(m, t, empty_prompt, two, o), posttrain::error);
  o.top_p = 0;
  EXPECT_THROW(rm::generate(m, t, off, one, o), posttrain::error);
  o = {};
  o.temperature = -1;
  EXPECT_THROW(rm::generate(m, t, off, one, o), posttrain::error);
  o = {};
  o.stop_tokens = {16};
  EXPECT_THROW(rm::generate(m, t, off, one, o), posttrain::error);
}
