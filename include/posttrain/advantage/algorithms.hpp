#pragma once
// Deprecated (kept for one release): the online recipes (algo::rloo, reinforce_pp,
// reinforce_pp_baseline, ppo_gae and the others) moved to <posttrain/algo/policy_gradient.hpp>.
#include "posttrain/algo/policy_gradient.hpp"
