#pragma once
// The KTO recipes (namespace posttrain::algo), algo::recipe over loss::kto /
// loss::kto_vanilla_paired (loss/kto.hpp; options loss::kto_options / kto_vanilla_options, TRL's
// defaults):
//   algo::kto                    kto<unpaired::kto, sum>              TRL KTO, OpenRLHF KTOLoss
//   algo::kto_apo_zero_unpaired  kto<unpaired::apo_zero, sum>         TRL apo_zero_unpaired
//   algo::kto_vanilla_paired     kto_vanilla_paired                   OpenRLHF VanillaKTOLoss
#include "posttrain/algo/recipe.hpp"
#include "posttrain/config.hpp"
#include "posttrain/loss/kto.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace algo {

// KTO, Ethayarajh et al. 2024 (TRL KTOTrainer loss_type="kto", OpenRLHF KTOLoss); summed.
struct kto : recipe<loss::kto<unpaired::kto, seq::sum>> {
  static constexpr preset_type defaults() { return {}; }
};
// TRL KTOTrainer loss_type="apo_zero_unpaired" (D'Oosterlinck et al. 2024).
struct kto_apo_zero_unpaired : recipe<loss::kto<unpaired::apo_zero, seq::sum>> {
  static constexpr preset_type defaults() { return {}; }
};
// OpenRLHF VanillaKTOLoss (paired, balanced data, cross-KL reference points).
struct kto_vanilla_paired : recipe<loss::kto_vanilla_paired> {
  static constexpr preset_type defaults() { return {}; }
};

}  // namespace algo

POSTTRAIN_NAMESPACE_END
