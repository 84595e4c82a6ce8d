#pragma once
// pipeline::iterative_round — one round of Llama 3's post-training loop over the current policy:
//
//   1 rejection sampling   best of N samples per prompt under the reward source (the round's
//                          reward model: retrain it with reward_model_step before the round)
//   2 SFT                  options.sft_epochs sft_step passes over the kept samples
//   3 reference            a frozen copy of the SFT model (the round's DPO reference)
//   4 online pairs         best and worst of N new samples per prompt (all-equal groups dropped);
//                          with options.mask_format_tokens the format tokens of options.format
//                          (bos, headers, end-of-turn) get mask 0 in both responses (Llama 3)
//   5 DPO                  options.dpo_epochs preference_step passes over the pairs
//                          options.dpo_runs = K > 1: K DPO runs from the SFT model, run k on the
//                          pairs of its own draw (seed + 1 + k) with a fresh copy of the DPO
//                          optimizer, then θ ← uniform_average of the K results (Llama 3's model
//                          averaging of runs with different data; ops/model_averaging.hpp)
//   6 averaging            θ ← a·θ_start + (1 − a)·θ (ops/model_averaging.hpp soft_update;
//                          a = options.average_with_start, 0 = off) — averaging with the round's
//                          start, the one-run case
//
// SftLoss: a loss::sft composition; PreferenceLoss: a loss::preference composition (Llama 3:
// algo::dpo_nll with format-token masked data). Sampling seeds: options.sampling.seed for the
// best-of-N draws, seed + 1 + k for the pair draws of DPO run k (distinct streams). Returns what
// each stage did (DPO numbers: means over the runs).
#include <span>
#include <type_traits>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/ops/model_averaging.hpp"
#include "posttrain/pipeline/chat.hpp"
#include "posttrain/pipeline/preference_step.hpp"
#include "posttrain/pipeline/reference.hpp"
#include "posttrain/pipeline/sampling.hpp"
#include "posttrain/pipeline/sft_step.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

template <class SftLoss, class PreferenceLoss>
struct round_options {
  sampling_request sampling{};  // prompts, N, sampling options, seed
  index_t sft_epochs = 1;
  sft_step_options<SftLoss> sft{};
  index_t dpo_epochs = 1;
  preference_step_options<PreferenceLoss> dpo{};
  index_t dpo_runs = 1;             // K runs averaged (needs a copyable DPO optimizer when K > 1)
  bool mask_format_tokens = false;  // Llama 3: format tokens out of the DPO log-probs
  chat_format format{};             // whose format tokens
  double average_with_start = 0.0;
};

struct round_metrics {
  double best_of_n_reward = 0;  // mean reward of the kept samples
  double sft_loss = 0;          // of the last SFT pass
  index_t pairs = 0;            // DPO pairs found (prompts with differing rewards), all runs
  double dpo_loss = 0;          // of the last DPO pass (0 when no pairs)
  double dpo_reward_accuracy = 0;
};

// Mask 0 on the chat format's tokens (bos, start/end header, end-of-turn) of both responses.
inline void mask_format(preference_pairs& pairs, const chat_format& f) {
  auto apply = [&](const owned_sequences& s, std::vector<float>& mask) {
    for (std::size_t t = 0; t < s.tokens.size(); ++t) {
      const index_t id = s.tokens[t];
      if (id == f.bos || id == f.start_header || id == f.end_header || id == f.end_of_turn)
        mask[t] = 0.0f;
    }
  };
  apply(pairs.chosen, pairs.chosen_mask);
  apply(pairs.rejected, pairs.rejected_mask);
}

template <class SftLoss, class PreferenceLoss, policy P, generator G, reward_source W, class O1,
          class O2>
round_metrics iterative_round(P& policy, G& gen, W& reward, O1& sft_optimizer,
                              O2& dpo_optimizer,
                              const round_options<SftLoss, PreferenceLoss>& options) {
  using S = typename P::scalar_type;
  constexpr const char* where = "pipeline::iterative_round";
  expect(options.sft_epochs >= 0 && options.dpo_epochs >= 0, where,
         "options.sft_epochs and dpo_epochs must be >= 0");
  expect(options.dpo_runs >= 1, where, "options.dpo_runs = ", options.dpo_runs, ", expected >= 1");
  expect(options.dpo_runs == 1 || std::is_copy_constructible_v<O2>, where,
         "options.dpo_runs > 1 needs a copyable DPO optimizer (each run starts from its state)");
  expect(options.average_with_start >= 0 && options.average_with_start <= 1, where,
         "options.average_with_start = ", options.average_with_start, ", expected in [0, 1]");
  const std::vector<S> start(policy.parameters().begin(), policy.parameters().end());
  const index_t v = policy.vocab_size();
  round_metrics m;

  const best_of_n best = rejection_sampling(gen, reward, options.sampling, v);
  for (double r : best.best_reward) m.best_of_n_reward += r;
  m.best_of_n_reward /= static_cast<double>(best.best_reward.size());
  for (index_t e = 0; e < options.sft_epochs; ++e)
    m.sft_loss = sft_step<SftLoss>(policy, sft_optimizer,
                                   sft_batch{best.sequences.view(), best.loss_mask}, options.sft)
                     .loss;

  reference::frozen<P> ref(policy);
  const index_t runs = options.dpo_runs;
  const std::vector<S> sft_model(policy.parameters().begin(), policy.parameters().end());
  std::vector<std::vector<S>> results;
  double loss_sum = 0, accuracy_sum = 0;
  index_t trained_runs = 0;
  for (index_t k = 0; k < runs; ++k) {
    if (k > 0) std::copy(sft_model.begin(), sft_model.end(), policy.parameters().begin());
    sampling_request pair_request = options.sampling;
    pair_request.seed = options.sampling.seed + 1 + static_cast<std::uint64_t>(k);
    preference_pairs pairs = online_preference_pairs(gen, reward, pair_request, v);
    if (options.mask_format_tokens) mask_format(pairs, options.format);
    m.pairs += pairs.chosen.num_sequences();
    const preference_data data{pairs.chosen.view(), pairs.rejected.view(), pairs.chosen_mask,
                               pairs.rejected_mask};
    auto run = [&](auto& optimizer) {
      if (pairs.chosen.num_sequences() == 0) return;
      preference_metrics r{};
      for (index_t e = 0; e < options.dpo_epochs; ++e)
        r = preference_step<PreferenceLoss>(policy, ref, optimizer, data, options.dpo);
      if (options.dpo_epochs > 0) {
        loss_sum += r.loss;
        accuracy_sum += r.reward_accuracy;
        ++trained_runs;
      }
    };
    if (runs == 1) {
      run(dpo_optimizer);
    } else if constexpr (std::is_copy_constructible_v<O2>) {
      O2 fresh = dpo_optimizer;  // every run starts from the same optimizer state
      run(fresh);
      results.emplace_back(policy.parameters().begin(), policy.parameters().end());
    }
  }
  if (trained_runs > 0) {
    m.dpo_loss = loss_sum / static_cast<double>(trained_runs);
    m.dpo_reward_accuracy = accuracy_sum / static_cast<double>(trained_runs);
  }
  if (runs > 1) {
    std::vector<std::span<const S>> models(results.begin(), results.end());
    uniform_average(std::span<const std::span<const S>>(models), policy.parameters());
  }

  if (options.average_with_start > 0)
    soft_update(policy.parameters(), std::span<const S>(start), options.average_with_start);
  return m;
}

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
