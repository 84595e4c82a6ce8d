#pragma once
// Deprecated (kept for one release): the offline recipes moved to <posttrain/algo/preference.hpp>
// (ORPO, CPO, AlphaPO), algo/kto.hpp, algo/reward_model.hpp and algo/sft.hpp; the presets
// pref::presets::trl_orpo / trl_cpo to loss/preference/presets.hpp.
#include "posttrain/algo/kto.hpp"
#include "posttrain/algo/preference.hpp"
#include "posttrain/algo/reward_model.hpp"
#include "posttrain/algo/sft.hpp"
#include "posttrain/loss/preference/presets.hpp"
