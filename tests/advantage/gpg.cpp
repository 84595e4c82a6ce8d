// Tests of advantage/gpg.hpp against a float64 transcription of verl compute_gpg_outcome_advantage.
#include "posttrain/advantage/gpg.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"

namespace pt = posttrain;
namespace adv = posttrain::advantage;

TEST(Gpg, AlphaTimesCentredRewards) {
  const std::vector<double> r = {1.0, 0.0, 0.0, 1.0, /*g1*/ 0.0, 0.0, /*g2*/ 2.0};
  const std::vector<pt::index_t> g = {0, 4, 6, 7};
  std::vector<double> a(7);
  adv::gpg_advantages(pt::exec::host{}, r, g, a, {.f_norm = 2.0});
  const double alpha = 7.0 / 3.0;  // B / #nonzero
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(a[i], alpha * (r[i] - 0.5) / 2.0, 1e-15);
  EXPECT_EQ(a[4], 0.0);
  EXPECT_EQ(a[5], 0.0);
  EXPECT_NEAR(a[6], alpha * 2.0 / 2.0, 1e-15);  // singleton: μ = 0
  // All rewards zero: α = B / max(1, 0) = B, advantages 0.
  std::vector<double> z(3, 0.0), az(3, 9.0);
  adv::gpg_advantages(pt::exec::host{}, z, std::vector<pt::index_t>{0, 3}, az);
  for (double v : az) EXPECT_EQ(v, 0.0);
  EXPECT_EQ(adv::gpg_alpha(8, 0), 8.0);
  EXPECT_EQ(adv::gpg_alpha(8, 2), 4.0);
}

TEST(Gpg, Validation) {
  const std::vector<double> r = {1.0, 2.0};
  std::vector<double> out(2, 5.0);
  const pt::exec::host h;
  const std::vector<pt::index_t> g = {0, 2};
  EXPECT_THROW(adv::gpg_advantages(h, r, g, out, {.f_norm = 0.0}), pt::error);
  EXPECT_THROW(adv::gpg_advantages(h, r, g, out, {.f_norm = std::nan("")}), pt::error);
  EXPECT_THROW(adv::gpg_advantages(h, std::vector<double>{1.0, std::nan("")}, g, out), pt::error);
  EXPECT_THROW(adv::gpg_advantages(h, r, std::vector<pt::index_t>{0, 3}, out), pt::error);
  for (double v : out) EXPECT_EQ(v, 5.0);
}
