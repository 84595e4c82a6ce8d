#pragma once
// Deprecated (kept for one release): the DPO-family recipes moved to
// <posttrain/algo/preference.hpp> and their presets (pref::presets::) to
// loss/preference/presets.hpp.
#include "posttrain/algo/preference.hpp"
#include "posttrain/loss/preference/presets.hpp"
