#pragma once
// The SFT recipes (namespace posttrain::algo), algo::recipe over loss::sft (loss/sft.hpp; options
// loss::sft_options{aggregation}):
//   algo::sft              sft<token_mean>            HF/TRL/OpenRLHF GPTLMLoss, open-instruct mean
//   algo::sft_sum          sft<token_sum>             open-instruct legacy reduce_loss="sum"
//   algo::sft_sample_mean  sft<seq_mean_token_mean>   OpenRLHF SFTLoss sample level
#include "posttrain/algo/recipe.hpp"
#include "posttrain/config.hpp"
#include "posttrain/loss/sft.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace algo {

// SFT NLL, token mean (HF/TRL/OpenRLHF GPTLMLoss; global token count: OpenRLHF SFTLoss).
struct sft : recipe<loss::sft<agg::token_mean>> {
  static constexpr preset_type defaults() { return {}; }
};
// SFT NLL summed over tokens (open-instruct legacy reduce_loss="sum").
struct sft_sum : recipe<loss::sft<agg::token_sum>> {
  static constexpr preset_type defaults() { return {}; }
};
// SFT NLL, mean of per-sequence token means (OpenRLHF SFTLoss sample level).
struct sft_sample_mean : recipe<loss::sft<agg::seq_mean_token_mean>> {
  static constexpr preset_type defaults() { return {}; }
};

}  // namespace algo

POSTTRAIN_NAMESPACE_END
