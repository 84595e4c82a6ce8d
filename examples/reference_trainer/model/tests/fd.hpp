#pragma once
// Central finite differences in double for the gradient tests: perturb each entry of `params`,
// evaluate `loss`, compare with `analytic`. Returns the largest error relative to max(1, |fd|).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <random>
#include <span>

#include <Eigen/Core>

namespace reference_model::testing {

inline double fd_max_error(std::span<double> params, std::span<const double> analytic,
                           const std::function<double()>& loss, double step = 1e-5) {
  double worst = 0;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const double keep = params[i];
    params[i] = keep + step;
    const double up = loss();
    params[i] = keep - step;
    const double down = loss();
    params[i] = keep;
    const double fd = (up - down) / (2 * step);
    worst = std::max(worst, std::abs(fd - analytic[i]) / std::max(1.0, std::abs(fd)));
  }
  return worst;
}

template <class M>
void fill_normal(M& m, std::mt19937_64& rng, double sd = 1.0) {
  std::normal_distribution<double> n(0.0, sd);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = n(rng);
}

}  // namespace reference_model::testing
