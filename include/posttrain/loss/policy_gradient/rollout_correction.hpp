#pragma once
// Deprecated (kept for one release): rollout corrections moved to <posttrain/correction/rollout.hpp>.
#include "posttrain/correction/rollout.hpp"
