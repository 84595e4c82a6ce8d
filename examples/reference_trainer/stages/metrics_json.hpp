#pragma once
// The metrics.jsonl fields of each pipeline step's metrics: one to_json per metrics struct, so a
// stage's record is its own fields (stage, step, reward, ...) plus rec.update(to_json(m)), and two
// stages that log the same step log the same keys. (The structs live in posttrain::pipeline, which
// does not depend on nlohmann-json; these are the trainer's view of them, not ADL hooks.)
// The keys are those of docs/reference_trainer.md's metrics; the values are the structs' doubles as
// they are (derived ones, a margin or a fraction, computed here from them).
#include <nlohmann/json.hpp>

#include <posttrain/pipeline.hpp>

namespace reference_trainer::stages {

// sft_step (sft and pretrain stages).
inline nlohmann::json to_json(const posttrain::pipeline::sft_metrics& m) {
  return {{"loss", m.loss}, {"grad_norm", m.grad_norm}, {"tokens", m.tokens}};
}

// preference_step (dpo stages: dpo, ipo, simpo, dpo_nll, dpo_length_normalized, orpo).
inline nlohmann::json to_json(const posttrain::pipeline::preference_metrics& m) {
  return {{"loss", m.loss}, {"reward_margin", m.reward_margin}, {"reward_accuracy", m.reward_accuracy},
          {"grad_norm", m.grad_norm}};
}

// kto_paired_step (dpo stages, algo kto_vanilla_paired).
inline nlohmann::json to_json(const posttrain::pipeline::kto_paired_metrics& m) {
  return {{"loss", m.loss},
          {"kl_chosen", m.kl_chosen},
          {"kl_rejected", m.kl_rejected},
          {"chosen_reward", m.chosen_reward},
          {"rejected_reward", m.rejected_reward},
          {"reward_margin", m.reward_margin},
          {"reward_accuracy", m.reward_accuracy},
          {"grad_norm", m.grad_norm}};
}

// kto_step (dpo stages, algo kto / kto_apo_zero_unpaired).
inline double desirable_fraction(const posttrain::pipeline::kto_metrics& m) {
  return m.examples > 0 ? m.desirable / m.examples : 0.0;
}
inline nlohmann::json to_json(const posttrain::pipeline::kto_metrics& m) {
  return {{"examples", m.examples},
          {"desirable_fraction", desirable_fraction(m)},
          {"loss", m.loss},
          {"kl_reference", m.kl_reference},
          {"desirable_reward", m.desirable_reward},
          {"undesirable_reward", m.undesirable_reward},
          {"reward_margin", m.desirable_reward - m.undesirable_reward},
          {"grad_norm", m.grad_norm}};
}

// reward_model_step (reward_model stages).
inline nlohmann::json to_json(const posttrain::pipeline::reward_model_metrics& m) {
  return {{"loss", m.loss}, {"accuracy", m.accuracy}, {"margin", m.margin}, {"grad_norm", m.grad_norm}};
}

// rl_step (rl stages; the stage adds response_length, which needs its prompts × samples).
inline nlohmann::json to_json(const posttrain::pipeline::rl_metrics& m) {
  return {{"reward", m.reward_mean},
          {"loss", m.loss},
          {"kl", m.kl_loss},
          {"approx_kl", m.approx_kl},
          {"clip_fraction", m.clip_fraction},
          {"value_loss", m.value_loss},
          {"grad_norm", m.grad_norm},
          {"completion_tokens", m.completion_tokens},
          {"truncated", m.truncated_fraction}};
}

}  // namespace reference_trainer::stages
