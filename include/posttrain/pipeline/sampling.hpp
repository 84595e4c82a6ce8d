#pragma once
// Data-generation drivers over a Generator and a RewardSource:
//
//   sample_and_score        N samples per prompt (seeded per global sample as rl_step seeds them:
//                           sample_seed(seed, first_sample_index + p·N + k)), validated, scored,
//                           every reward finite
//   rejection_sampling      best-of-N per prompt (Llama 3 / DeepSeek-V3 SFT data): the sample with
//                           the highest reward (the first one on ties), as prompt ++ completion
//                           with a loss mask on the completion — ready for sft_step
//   online_preference_pairs Qwen 2's online DPO: per prompt the best and the worst of N samples
//                           become (chosen, rejected); prompts whose N rewards are all equal carry
//                           no preference and are dropped — ready for preference_step
//   order_by_reward_variance  prompt indices by decreasing variance of their N rewards (Qwen2.5:
//                           high-variance prompts first; population variance; stable on ties)
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/pipeline/generator.hpp"
#include "posttrain/pipeline/reward_source.hpp"
#include "posttrain/pipeline/rl_step.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

struct scored_samples {
  owned_sequences prompts;    // [P·N] the request's prompts (prompt p repeated N times)
  generation out;             // [P·N] completions
  std::vector<double> rewards;  // [P·N]
  index_t samples_per_prompt = 0;
};

struct sampling_request {
  token_sequences prompts{};                 // P prompts
  std::span<const example_info> examples{};  // [P] or empty
  index_t samples_per_prompt = 4;            // N
  sampling_options sampling{};
  std::uint64_t seed = 0;
  std::uint64_t first_sample_index = 0;
};

template <generator G, reward_source W>
scored_samples sample_and_score(G& gen, W& reward, const sampling_request& r, index_t vocab) {
  constexpr const char* where = "pipeline::sample_and_score";
  r.prompts.validate(where, "request.prompts", vocab);
  const index_t p = r.prompts.num_sequences(), n = r.samples_per_prompt;
  expect(p > 0, where, "request.prompts is empty, expected at least one prompt");
  expect(n >= 1, where, "request.samples_per_prompt = ", n, ", expected >= 1");
  expect_size_or_empty(r.examples, p, where, "request.examples", "one per prompt, or empty");
  scored_samples s;
  s.samples_per_prompt = n;
  std::vector<std::uint64_t> seeds;
  std::vector<example_info> examples;
  for (index_t i = 0; i < p; ++i)
    for (index_t k = 0; k < n; ++k) {
      s.prompts.append(r.prompts.tokens.subspan(r.prompts.seq_offsets[i],
                                                r.prompts.seq_offsets[i + 1] - r.prompts.seq_offsets[i]));
      if (!r.prompts.ids.empty()) s.prompts.ids.push_back(r.prompts.ids[i]);
      seeds.push_back(sample_seed(r.seed, r.first_sample_index + static_cast<std::uint64_t>(i * n + k)));
      if (!r.examples.empty()) examples.push_back(r.examples[i]);
    }
  const generation_request req{s.prompts.view(), seeds, r.sampling};
  validate_request(req, where);
  gen.generate(req, s.out);
  validate_generation(req, s.out, vocab, where);
  s.rewards.assign(static_cast<std::size_t>(p * n), 0.0);
  reward.score(reward_query{req.prompts, s.out.completions.view(), examples}, std::span<double>(s.rewards));
  expect_finite_rewards(s.rewards, where);
  return s;
}

// Sample b of a scored set as prompt ++ completion, with its completion mask.
inline void append_sample(const scored_samples& s, index_t b, owned_sequences& seqs,
                          std::vector<float>& mask) {
  const token_sequences pr = s.prompts.view(), c = s.out.completions.view();
  std::vector<index_t> seq(pr.tokens.begin() + pr.seq_offsets[b], pr.tokens.begin() + pr.seq_offsets[b + 1]);
  const std::size_t prompt_len = seq.size();
  seq.insert(seq.end(), c.tokens.begin() + c.seq_offsets[b], c.tokens.begin() + c.seq_offsets[b + 1]);
  seqs.append(seq);
  if (!s.prompts.ids.empty()) seqs.ids.push_back(s.prompts.ids[b]);
  mask.insert(mask.end(), prompt_len, 0.0f);
  mask.insert(mask.end(), seq.size() - prompt_len, 1.0f);
}

struct best_of_n {
  owned_sequences sequences;        // P sequences: prompt ++ best completion
  std::vector<float> loss_mask;     // 1 on the completion
  std::vector<index_t> best_sample; // [P] index k in [0, N) of the kept sample
  std::vector<double> best_reward;  // [P]
  scored_samples samples;           // everything that was drawn
};

template <generator G, reward_source W>
best_of_n rejection_sampling(G& gen, W& reward, const sampling_request& r, index_t vocab) {
  best_of_n out;
  out.samples = sample_and_score(gen, reward, r, vocab);
  const index_t n = r.samples_per_prompt, p = r.prompts.num_sequences();
  for (index_t i = 0; i < p; ++i) {
    const auto first = out.samples.rewards.begin() + i * n;
    const index_t k = std::max_element(first, first + n) - first;  // first maximum
    out.best_sample.push_back(k);
    out.best_reward.push_back(first[k]);
    append_sample(out.samples, i * n + k, out.sequences, out.loss_mask);
  }
  return out;
}

struct preference_pairs {
  owned_sequences chosen, rejected;  // prompt ++ best / worst completion, per kept prompt
  std::vector<float> chosen_mask, rejected_mask;
  std::vector<index_t> prompt;       // [pairs] the prompt index of each pair
  std::vector<double> chosen_reward, rejected_reward;
  scored_samples samples;
};

template <generator G, reward_source W>
preference_pairs online_preference_pairs(G& gen, W& reward, const sampling_request& r,
                                         index_t vocab) {
  preference_pairs out;
  out.samples = sample_and_score(gen, reward, r, vocab);
  const index_t n = r.samples_per_prompt, p = r.prompts.num_sequences();
  for (index_t i = 0; i < p; ++i) {
    const auto first = out.samples.rewards.begin() + i * n;
    const auto [lo, hi] = std::minmax_element(first, first + n);
    if (!(*hi > *lo)) continue;  // all equal: no preference signal
    const index_t best = std::max_element(first, first + n) - first;
    const index_t worst = std::min_element(first, first + n) - first;
    out.prompt.push_back(i);
    out.chosen_reward.push_back(first[best]);
    out.rejected_reward.push_back(first[worst]);
    append_sample(out.samples, i * n + best, out.chosen, out.chosen_mask);
    append_sample(out.samples, i * n + worst, out.rejected, out.rejected_mask);
  }
  return out;
}

inline std::vector<index_t> order_by_reward_variance(std::span<const double> rewards,
                                                     index_t samples_per_prompt) {
  constexpr const char* where = "pipeline::order_by_reward_variance";
  expect(samples_per_prompt >= 1, where, "samples_per_prompt = ", samples_per_prompt, ", expected >= 1");
  expect(ssize(rewards) % samples_per_prompt == 0, where, "rewards has ", rewards.size(),
         " elements, expected a multiple of samples_per_prompt = ", samples_per_prompt);
  expect_finite_rewards(rewards, where);
  const index_t p = ssize(rewards) / samples_per_prompt, n = samples_per_prompt;
  std::vector<double> var(static_cast<std::size_t>(p));
  for (index_t i = 0; i < p; ++i) {
    double mean = 0, sq = 0;
    for (index_t k = 0; k < n; ++k) mean += rewards[i * n + k];
    mean /= static_cast<double>(n);
    for (index_t k = 0; k < n; ++k) sq += (rewards[i * n + k] - mean) * (rewards[i * n + k] - mean);
    var[i] = sq / static_cast<double>(n);
  }
  std::vector<index_t> order(static_cast<std::size_t>(p));
  std::iota(order.begin(), order.end(), index_t(0));
  std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) { return var[a] > var[b]; });
  return order;
}

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
