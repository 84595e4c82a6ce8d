#pragma once
// Reward combination (open-instruct ground_truth_utils.py apply_verifiable_reward,
// soft_format_reward_func, RewardConfig.build).
//
//   verifiable   = Σ_{(label, dataset) pairs} verification_reward · score_v(prediction, label) · w_v
//                  where v is the verifier whose name equals dataset.lower(); a pair whose dataset
//                  has no verifier contributes nothing (open-instruct logs a warning and skips it)
//   format       = r1_style_format_reward if the response matches
//                  re.match(r".*?</think>\s*<answer>.*?</answer>", response, re.DOTALL)
//                  (anchored at the start, '.' crosses newlines: some "</think>", optional
//                  whitespace, "<answer>", and a "</answer>" somewhere after it), else 0
//   turns        = the per-turn rewards of a multi-turn rollout with `verifiable` added to the last
//                  (or [verifiable] when there are none); raw = aggregate(turns): last or sum
//   score        = format                                   (start)
//                  raw + format  if apply_r1_style_format_reward and additive_format_reward
//                  raw if format == 1 else 0  if apply_r1_style_format_reward, multiplicative
//                  raw           otherwise                  (when apply_verifiable_reward)
//                  non_stop_penalty_value  if non_stop_penalty and finish_reason != "stop"
//
// Multiplicative gating compares the format score with 1 literally, as open-instruct does: with
// r1_style_format_reward != 1 it zeroes every reward (kept for fidelity, stated in the docs).
// Defaults are RewardConfig's (non_stop_penalty_value = −10); streaming_reward_options() gives the
// streaming config's 0.0. only_reward_good_outputs (tool-use bookkeeping) is not modelled.
#include <span>
#include <string>
#include <string_view>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/reward/concept.hpp"
#include "posttrain/reward/text.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace reward {

enum class turn_aggregation { last, sum };

struct reward_options {
  bool apply_verifiable_reward = true;
  double verification_reward = 10.0;
  bool apply_r1_style_format_reward = false;
  double r1_style_format_reward = 1.0;
  bool additive_format_reward = false;
  bool non_stop_penalty = false;
  double non_stop_penalty_value = -10.0;  // RewardConfig; the streaming config uses 0.0
  turn_aggregation aggregation = turn_aggregation::last;
};

// open-instruct's streaming data-loader defaults (non_stop_penalty_value = 0.0).
inline reward_options streaming_reward_options() {
  reward_options o;
  o.non_stop_penalty_value = 0.0;
  return o;
}

// re.match(r".*?</think>\s*<answer>.*?</answer>", response, re.DOTALL) is not None.
// Linear: a "</answer>" after some "<answer>" exists iff the last one in the whole response is
// after it, so the last "</answer>" is found once (searching from each "</think>" was quadratic
// on a response repeating "</think><answer>"); the whitespace runs after distinct "</think>"s
// do not overlap.
inline bool r1_format_matches(std::string_view response) {
  const std::string_view think = "</think>", open = "<answer>", close = "</answer>";
  const std::size_t last_close = response.rfind(close);
  if (last_close == std::string_view::npos) return false;
  for (std::size_t t = response.find(think); t != std::string_view::npos;
       t = response.find(think, t + 1)) {
    std::size_t i = t + think.size();
    while (i < response.size() && text::is_space(response[i])) ++i;
    if (response.substr(i, open.size()) == open && last_close >= i + open.size()) return true;
  }
  return false;
}

// soft_format_reward_func for one response.
inline double r1_format_reward(std::string_view response, double reward_scale = 1.0) {
  return r1_format_matches(response) ? reward_scale : 0.0;
}

// One (ground truth, dataset) pair of a sample.
struct labelled {
  std::string_view label;
  std::string_view dataset;
};

// apply_verifiable_reward for one response: Σ reward_mult · score · weight over the pairs whose
// dataset.lower() names one of the verifiers.
template <verifier... Vs>
double verifiable_reward([[maybe_unused]] std::string_view prediction,
                         std::span<const labelled> pairs, [[maybe_unused]] double reward_mult,
                         const Vs&... verifiers) {
  double total = 0.0;
  for (const auto& pair : pairs) {
    const std::string dataset = text::lower(pair.dataset);
    (
        [&] {
          if (dataset == Vs::name())
            total += reward_mult * static_cast<double>(verifiers.score(prediction, pair.label)) *
                     verifier_weight(verifiers);
        }(),
        ...);
  }
  return total;
}

// RewardConfig.build's per-response score from the already computed parts: `verifiable` (the sum
// above), the format score (r1_format_reward; ignored unless apply_r1_style_format_reward),
// the earlier turns' rewards (empty for single-turn), and whether generation stopped ("stop").
inline double combine_reward(const reward_options& o, double verifiable, double format_score,
                             std::span<const double> turn_rewards, bool finished_with_stop) {
  expect(o.aggregation == turn_aggregation::last || o.aggregation == turn_aggregation::sum,
         "reward::combine_reward", "aggregation is not a turn_aggregation value");
  double score = o.apply_r1_style_format_reward ? format_score : 0.0;
  if (o.apply_verifiable_reward) {
    double raw = verifiable;
    if (!turn_rewards.empty()) {
      if (o.aggregation == turn_aggregation::last) {
        raw = turn_rewards.back() + verifiable;
      } else {
        raw = 0.0;
        for (double r : turn_rewards) raw += r;
        raw += verifiable;
      }
    }
    if (o.apply_r1_style_format_reward && o.additive_format_reward)
      score = raw + score;
    else if (o.apply_r1_style_format_reward)
      score = format_score == 1.0 ? raw : 0.0;
    else
      score = raw;
  }
  if (o.non_stop_penalty && !finished_with_stop) score = o.non_stop_penalty_value;
  return score;
}

}  // namespace reward

POSTTRAIN_NAMESPACE_END
