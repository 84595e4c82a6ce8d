#pragma once
// The reward-model recipes (namespace posttrain::algo), algo::recipe over loss::reward_model
// (loss/reward_model.hpp; options loss::reward_model_options):
//   algo::bradley_terry   reward_model<rm::bradley_terry>    TRL RewardTrainer, OpenRLHF
//   PairWiseLoss algo::reward_log_exp  reward_model<rm::log_exp>          OpenRLHF LogExpLoss
#include "posttrain/algo/recipe.hpp"
#include "posttrain/config.hpp"
#include "posttrain/loss/reward_model.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace algo {

// Bradley-Terry reward model (Ouyang et al. 2022; TRL RewardTrainer, OpenRLHF PairWiseLoss).
struct bradley_terry : recipe<loss::reward_model<rm::bradley_terry>> {
  static constexpr preset_type defaults() { return {}; }
};
// LogExp reward-model loss (OpenRLHF LogExpLoss), computed stably.
struct reward_log_exp : recipe<loss::reward_model<rm::log_exp>> {
  static constexpr preset_type defaults() { return {}; }
};

}  // namespace algo

POSTTRAIN_NAMESPACE_END
