#pragma once
// Entropy-bonus coefficient controllers for the policy losses (loss ← loss − c·Ĥ, Ĥ the
// aggregated token entropy; see docs/loss/policy_gradient.md "Entropy coefficient controllers").
// Host-side state the trainer owns and updates once per optimizer step, like the KL controllers of
// advantage/shaping.hpp. No gradient: c multiplies the entropy term the caller adds.
//
//   fixed_entropy_controller{value}              applied() = value; update() does nothing
//                                                (verl entropy_coeff, OpenRLHF entropy_coef,
//                                                TRL entropy_coef without use_adaptive_entropy)
//   adaptive_entropy_controller{value, delta, target, min, max, last_entropy}
//                                                TRL GRPO use_adaptive_entropy:
//     update(H_w), after each optimizer step with the world-mean token entropy H_w of the step:
//       value ← min(value + delta, max)   if H_w ≤ target
//       value ← max(value − delta, min)   otherwise
//       last_entropy ← H_w
//     applied() = value if last_entropy ≤ target, else 0 (the bonus is switched off while the
//     entropy is above target, while value keeps decaying towards min).
//     world_entropy(Σ_t m·H_t, Σ_t m) = sum / max(count, 1): TRL's H_w from the entropy sum and
//     mask count accumulated over the step's micro-batches and summed over ranks (0 tokens → 0).
//   Defaults = TRL GRPOConfig: entropy_coef_delta 0.005, entropy_target 0.2,
//   entropy_coef_min 0, entropy_coef_max 1; value = entropy_coef (TRL default 0).
//   last_entropy starts at 0 (≤ target): the initial value is applied until the first update.
//   Set last_entropy = +∞ to start with the bonus off.
//   Presets: entropy_controller_conventions::trl_adaptive(initial coef).
// update() validates the state and H_w (finite, min ≤ max, delta ≥ 0) and changes nothing when
// it throws posttrain::error.
#include <cmath>
#include <limits>
#include <string_view>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss {

struct fixed_entropy_controller {
  double value = 0.0;
  double applied() const { return value; }
  void update(double) {}
};

struct adaptive_entropy_controller {
  double value = 0.0;         // the coefficient c (TRL entropy_coef, updated in place)
  double delta = 0.005;       // step δ_c (entropy_coef_delta)
  double target = 0.2;        // entropy_target
  double min = 0.0;           // entropy_coef_min
  double max = 1.0;           // entropy_coef_max
  double last_entropy = 0.0;  // H_w of the last update (TRL _last_world_entropy)

  // The coefficient to multiply the entropy term of the next loss by.
  double applied() const { return last_entropy <= target ? value : 0.0; }

  // After an optimizer step, with the world-mean token entropy of that step.
  void update(double world_entropy) {
    constexpr std::string_view where = "loss::adaptive_entropy_controller::update";
    expect_finite(world_entropy, where, "world_entropy");
    expect_finite(value, where, "value");
    expect_non_negative(delta, where, "delta");
    expect_finite(target, where, "target");
    expect(std::isfinite(min) && std::isfinite(max) && min <= max, where,
           "min <= max (both finite) expected, got [", min, ", ", max, "]");
    if (world_entropy <= target) {
      const double up = value + delta;
      value = up < max ? up : max;
    } else {
      const double down = value - delta;
      value = down > min ? down : min;
    }
    last_entropy = world_entropy;
  }

  // H_w from the step's Σ m·H and Σ m (summed over micro-batches and ranks): sum / max(count, 1).
  static double world_entropy(double entropy_sum, double token_count) {
    constexpr std::string_view where = "loss::adaptive_entropy_controller::world_entropy";
    expect_finite(entropy_sum, where, "entropy_sum");
    expect_non_negative(token_count, where, "token_count");
    return entropy_sum / (token_count > 1.0 ? token_count : 1.0);
  }
};

namespace entropy_controller_conventions {
// TRL GRPOConfig(use_adaptive_entropy=True, entropy_coef=coef): δ 0.005, target 0.2, [0, 1].
constexpr adaptive_entropy_controller trl_adaptive(double coef = 0.0) {
  return {
      .value = coef, .delta = 0.005, .target = 0.2, .min = 0.0, .max = 1.0, .last_entropy = 0.0};
}
// verl entropy_coeff / OpenRLHF entropy_coef / TRL entropy_coef (static): default 0.
inline constexpr fixed_entropy_controller fixed{.value = 0.0};
}  // namespace entropy_controller_conventions

}  // namespace loss

POSTTRAIN_NAMESPACE_END
