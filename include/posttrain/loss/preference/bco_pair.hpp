#pragma once
// pref::bco_pair — BCO, pairwise form (Jung et al. 2024), TRL HEAD variant without the running
// reward shift.
//
//   loss = −logσ(βΔc) − logσ(−βΔr)
//   ∂loss/∂Δc = −β·σ(−βΔc),  ∂loss/∂Δr = β·σ(βΔr)
//
// Options: beta (β > 0). Peers: TRL HEAD `bco_pair`. TRL v0.26 subtracts a running mean δ̄ of the
// batch rewards from both arguments: loss::bco_pair_running_mean (loss/preference/
// bco_pair_running.hpp) with the caller-owned state below.
//
// pref::running_moments — TRL's RunningMoments (trl/trainer/utils.py, v0.26), the state of the
// v0.26 reward shift. Starts at mean 0, var 1, count 1e-24; update(x̄, v, n) with a batch of n
// values of mean x̄ and population variance v (TRL: one scalar per rank, the batch mean of
// [βΔc; βΔr], so n = 1, v = 0 on one process; across ranks n = world size, x̄ and v the mean and
// population variance of the ranks' scalars):
//   δ = x̄ − mean;  N = count + n
//   mean ← mean + δ·n/N;  var ← (var·count + δ²·count·n/N + v·n) / N;  count ← N
//   stddev = sqrt(var·N/(N − 1)) (TRL's formula: ∞ or NaN while N rounds to 1; unused by the loss)
// TRL keeps the state in float32; it is double here. update() validates (finite x̄, v >= 0,
// n > 0) before changing anything.
#include <cmath>
#include <string_view>

#include "posttrain/core/validate.hpp"
#include "posttrain/loss/preference/link.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

namespace detail {
struct bco_pair_scaled {
  static constexpr const char* name = "bco_pair";
  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> scaled(T c, T r) {
    return {-math::logsigmoid(c) - math::logsigmoid(-r), -math::sigmoid(-c), math::sigmoid(r)};
  }
};
}  // namespace detail

using bco_pair = beta_link<detail::bco_pair_scaled>;

static_assert(diagnose_preference_link<bco_pair>());

struct running_moments {
  double mean = 0.0;
  double var = 1.0;
  double stddev = 1.0;  // TRL std
  double count = 1e-24;

  void update(double batch_mean, double batch_var = 0.0, double batch_count = 1.0) {
    constexpr std::string_view where = "pref::running_moments::update";
    expect_finite(batch_mean, where, "batch_mean");
    expect_non_negative(batch_var, where, "batch_var");
    expect_positive(batch_count, where, "batch_count");
    expect(std::isfinite(mean) && std::isfinite(var) && var >= 0.0 && count > 0.0, where,
           "the state must be finite with var >= 0 and count > 0, got mean ", mean, ", var ", var,
           ", count ", count);
    const double delta = batch_mean - mean;
    const double total = count + batch_count;
    const double old_sum = var * count + delta * delta * count * batch_count / total;
    mean += delta * batch_count / total;
    var = (old_sum + batch_var * batch_count) / total;
    stddev = std::sqrt(var * total / (total - 1.0));  // TRL's; ∞/NaN while total rounds to 1
    count = total;
  }
};

}  // namespace pref

POSTTRAIN_NAMESPACE_END
