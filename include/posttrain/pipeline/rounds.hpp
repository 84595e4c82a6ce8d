#pragma once
// pipeline::iterative_round — one round of Llama 3's post-training loop over the current policy:
//
//   1 rejection sampling   best of N samples per prompt under the reward source (the round's
//                          reward model: retrain it with reward_model_step before the round)
//   2 SFT                  options.sft_epochs sft_step passes over the kept samples
//   3 reference            a frozen copy of the SFT model (the round's DPO reference)
//   4 online pairs         best and worst of N new samples per prompt (all-equal groups dropped)
//   5 DPO                  options.dpo_epochs preference_step passes over the pairs
//   6 averaging            θ ← a·θ_start + (1 − a)·θ (ops/model_averaging.hpp soft_update;
//                          a = options.average_with_start, 0 = off) — Llama 3 averages models of
//                          different runs; averaging with the round's start is the one-run case
//
// SftLoss: a loss::sft composition; PreferenceLoss: a loss::preference composition (Llama 3:
// algo::dpo_nll with format-token masked data). Sampling seeds: options.sampling.seed for the
// best-of-N draws, seed + 1 for the pair draws (distinct streams). Returns what each stage did.
#include <span>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/ops/model_averaging.hpp"
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
  double average_with_start = 0.0;
};

struct round_metrics {
  double best_of_n_reward = 0;  // mean reward of the kept samples
  double sft_loss = 0;          // of the last SFT pass
  index_t pairs = 0;            // DPO pairs found (prompts with differing rewards)
  double dpo_loss = 0;          // of the last DPO pass (0 when no pairs)
  double dpo_reward_accuracy = 0;
};

template <class SftLoss, class PreferenceLoss, policy P, generator G, reward_source W, class O1,
          class O2>
round_metrics iterative_round(P& policy, G& gen, W& reward, O1& sft_optimizer,
                              O2& dpo_optimizer,
                              const round_options<SftLoss, PreferenceLoss>& options) {
  using S = typename P::scalar_type;
  constexpr const char* where = "pipeline::iterative_round";
  expect(options.sft_epochs >= 0 && options.dpo_epochs >= 0, where,
         "options.sft_epochs and dpo_epochs must be >= 0");
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
  sampling_request pair_request = options.sampling;
  pair_request.seed = options.sampling.seed + 1;
  const preference_pairs pairs = online_preference_pairs(gen, reward, pair_request, v);
  m.pairs = pairs.chosen.num_sequences();
  if (m.pairs > 0)
    for (index_t e = 0; e < options.dpo_epochs; ++e) {
      const auto r = preference_step<PreferenceLoss>(
          policy, ref, dpo_optimizer,
          preference_data{pairs.chosen.view(), pairs.rejected.view(), pairs.chosen_mask,
                          pairs.rejected_mask},
          options.dpo);
      m.dpo_loss = r.loss;
      m.dpo_reward_accuracy = r.reward_accuracy;
    }

  if (options.average_with_start > 0)
    soft_update(policy.parameters(), std::span<const S>(start), options.average_with_start);
  return m;
}

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
