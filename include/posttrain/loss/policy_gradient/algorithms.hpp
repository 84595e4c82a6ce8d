#pragma once
// Deprecated (kept for one release): the named policy-gradient algorithms moved to
// <posttrain/algo/policy_gradient.hpp> (recipes: loss type + advantage estimator + presets per
// peer) and the peers' option presets (pg_presets::) to loss/policy_gradient/presets.hpp.
#include "posttrain/algo/policy_gradient.hpp"
#include "posttrain/loss/policy_gradient/presets.hpp"
