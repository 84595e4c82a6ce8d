#pragma once
// Deprecated (kept for one release): the selections moved to <posttrain/correction/token_selection.hpp>
// and the kl_cov loss to <posttrain/loss/kl_cov.hpp>.
#include "posttrain/correction/token_selection.hpp"
#include "posttrain/loss/kl_cov.hpp"
