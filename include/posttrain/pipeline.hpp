#pragma once
// <posttrain/pipeline.hpp> — the training steps over a user's model (DESIGN.md §4.5). Kept out of
// <posttrain/posttrain.hpp> so that a user of the losses alone does not parse the steps (they
// pull in every loss family, the estimators and <fstream>); include this umbrella, or one step.
//
//   pipeline/types.hpp            token_sequences (packed, token-aligned log-probs), example_info
//   pipeline/policy.hpp           Policy concept (logits or hidden + lm_head), policy_logprobs /
//                                 policy_backward between a model and per-token log-probs
//   optim/optimizer.hpp           Optimizer concept; optim/adamw.hpp (adamw, sgd),
//                                 optim/clip.hpp (global-norm clip over flat views)
//   pipeline/reference.hpp        ReferenceModel: reference::frozen, precomputed, none
//   pipeline/reward_source.hpp    RewardSource: reward::precomputed, callable, text, weighted
//   pipeline/generator.hpp        Generator (sampling options, per-sample seeds), generate::from_policy
//   pipeline/critic.hpp           Critic (PPO value model), critic::none
//   pipeline/tokenizer.hpp        Tokenizer, byte_tokenizer
//   pipeline/sft_step.hpp         sft_step<Loss>
//   pipeline/preference_step.hpp  preference_step<Loss> (DPO family, AlphaPO, format-token masking)
//   pipeline/kto_step.hpp         kto_step<Loss> (KTO on unpaired data, KL reference point)
//   pipeline/kto_paired_step.hpp  kto_paired_step<Loss> (paired KTO, batch reference points)
//   pipeline/rl_step.hpp          rl_step<Loss, Estimator> (+ critic)
//   pipeline/reward_model_step.hpp  RewardModel concept, reward_model_step<Loss>, reward::learned
//   pipeline/sampling.hpp         sample_and_score, rejection_sampling (best-of-N),
//                                 online_preference_pairs, order_by_reward_variance
//   pipeline/rounds.hpp           iterative_round (Llama 3: best-of-N → SFT → pairs → DPO → average)
//   pipeline/chat.hpp             chat rendering (prompt / format / loss masks), pack_sft,
//                                 pack_preference
//   pipeline/step_common.hpp      micro-batches, all-reduce of counts and gradients, clip + step
//   pipeline/jsonl.hpp            JSONL readers (needs nlohmann_json; not included here)
#include "posttrain/optim/adamw.hpp"
#include "posttrain/optim/clip.hpp"
#include "posttrain/optim/optimizer.hpp"
#include "posttrain/pipeline/chat.hpp"
#include "posttrain/pipeline/critic.hpp"
#include "posttrain/pipeline/generator.hpp"
#include "posttrain/pipeline/kto_paired_step.hpp"
#include "posttrain/pipeline/kto_step.hpp"
#include "posttrain/pipeline/policy.hpp"
#include "posttrain/pipeline/preference_step.hpp"
#include "posttrain/pipeline/reference.hpp"
#include "posttrain/pipeline/reward_model_step.hpp"
#include "posttrain/pipeline/reward_source.hpp"
#include "posttrain/pipeline/rl_step.hpp"
#include "posttrain/pipeline/rounds.hpp"
#include "posttrain/pipeline/sampling.hpp"
#include "posttrain/pipeline/sft_step.hpp"
#include "posttrain/pipeline/step_common.hpp"
#include "posttrain/pipeline/tokenizer.hpp"
#include "posttrain/pipeline/types.hpp"
