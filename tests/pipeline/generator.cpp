// pipeline/generator.hpp: generate::from_policy stops at stop tokens (kept, stop_reason::stop_token,
// not truncated) or at max_new_tokens (truncated); greedy and top_k = 1 pick the argmax; the
// sampler's log-probs are those of its processed distribution; top-p keeps the smallest
// high-mass set; validate_generation rejects malformed generator output.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <posttrain/pipeline/generator.hpp>

#include "pipeline/test_policy.hpp"

using namespace pt_test;

namespace {
constexpr pt::index_t V = 5;
}

TEST(Generator, StopTokensAndTruncation) {
  bigram_policy<double> p(V, 1);
  // Token 0 always leads to 3; 3 always leads to 4 (the stop token).
  for (pt::index_t j = 0; j < V; ++j) p.w[0 * V + j] = p.w[3 * V + j] = -50.0;
  p.w[0 * V + 3] = 50.0;
  p.w[3 * V + 4] = 50.0;
  pp::generate::from_policy<bigram_policy<double>> gen(p);
  std::vector<pt::index_t> toks{0, 0}, offs{0, 1, 2};
  std::vector<std::uint64_t> seeds{1, 2};
  pp::sampling_options s;
  s.max_new_tokens = 5;
  s.stop_tokens = {4};
  pp::generation out;
  gen.generate({{toks, offs}, seeds, s}, out);
  EXPECT_EQ(out.completions.tokens, (std::vector<pt::index_t>{3, 4, 3, 4}));
  EXPECT_EQ(out.stop[0], pp::stop_reason::stop_token);
  EXPECT_EQ(out.truncated[1], 0);
  for (double lp : out.logprobs) EXPECT_NEAR(lp, 0.0, 1e-12);
  s.max_new_tokens = 1;
  gen.generate({{toks, offs}, seeds, s}, out);
  EXPECT_EQ(out.completions.tokens, (std::vector<pt::index_t>{3, 3}));
  EXPECT_EQ(out.stop[0], pp::stop_reason::length);
  EXPECT_EQ(out.truncated[0], 1);
}

TEST(Generator, GreedyTopKAndTopPAndLogprobs) {
  bigram_policy<double> p(V, 7);
  pp::generate::from_policy<bigram_policy<double>> gen(p);
  std::vector<pt::index_t> toks{2}, offs{0, 1};
  std::vector<std::uint64_t> seeds{9};
  pt::index_t argmax = 0;
  for (pt::index_t j = 1; j < V; ++j)
    if (p.w[2 * V + j] > p.w[2 * V + argmax]) argmax = j;
  pp::sampling_options greedy;
  greedy.temperature = 0;
  greedy.max_new_tokens = 1;
  pp::generation out;
  gen.generate({{toks, offs}, seeds, greedy}, out);
  EXPECT_EQ(out.completions.tokens[0], argmax);
  pp::sampling_options k1;
  k1.top_k = 1;
  k1.max_new_tokens = 1;
  gen.generate({{toks, offs}, seeds, k1}, out);
  EXPECT_EQ(out.completions.tokens[0], argmax);
  EXPECT_NEAR(out.logprobs[0], 0.0, 1e-15);  // the only kept token
  // Full distribution at temperature 0.5: the recorded log-prob is log softmax(z / 0.5).
  pp::sampling_options t;
  t.temperature = 0.5;
  t.max_new_tokens = 1;
  gen.generate({{toks, offs}, seeds, t}, out);
  double z = 0;
  for (pt::index_t j = 0; j < V; ++j) z += std::exp(p.w[2 * V + j] / 0.5);
  EXPECT_NEAR(out.logprobs[0], p.w[2 * V + out.completions.tokens[0]] / 0.5 - std::log(z), 1e-12);
  // top_p tiny keeps only the most likely token.
  pp::sampling_options tp;
  tp.top_p = 1e-9;
  tp.max_new_tokens = 1;
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    std::vector<std::uint64_t> one{seed};
    gen.generate({{toks, offs}, one, tp}, out);
    EXPECT_EQ(out.completions.tokens[0], argmax);
  }
}

TEST(Generator, ValidateGenerationRejectsMalformedOutput) {
  std::vector<pt::index_t> toks{1}, offs{0, 1};
  std::vector<std::uint64_t> seeds{0};
  pp::sampling_options s;
  s.max_new_tokens = 2;
  const pp::generation_request r{{toks, offs}, seeds, s};
  pp::generation g;
  g.completions.append(std::vector<pt::index_t>{1, 2});
  g.stop = {pp::stop_reason::length};
  g.truncated = {1};
  EXPECT_NO_THROW(pp::validate_generation(r, g, V, "test"));
  auto bad = g;
  bad.completions.tokens[1] = V;  // out of the vocabulary
  EXPECT_THROW(pp::validate_generation(r, bad, V, "test"), pt::error);
  bad = g;
  bad.logprobs = {-0.1};  // one per token or none
  EXPECT_THROW(pp::validate_generation(r, bad, V, "test"), pt::error);
  bad = g;
  bad.logprobs = {-0.1, 0.5};  // not a log-probability
  EXPECT_THROW(pp::validate_generation(r, bad, V, "test"), pt::error);
  bad = g;
  bad.stop.clear();
  EXPECT_THROW(pp::validate_generation(r, bad, V, "test"), pt::error);
  bad = g;
  bad.completions.append(std::vector<pt::index_t>{1});  // more completions than prompts
  bad.stop.push_back(pp::stop_reason::length);
  bad.truncated.push_back(1);
  EXPECT_THROW(pp::validate_generation(r, bad, V, "test"), pt::error);
}
