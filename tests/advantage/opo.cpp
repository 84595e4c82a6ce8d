// Tests of advantage/opo.hpp against a float64 transcription of verl compute_opo_outcome_advantage.
#include "posttrain/advantage/opo.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"

namespace pt = posttrain;
namespace adv = posttrain::advantage;

TEST(Opo, LengthWeightedBaseline) {
  const std::vector<double> r = {1.0, 0.0, 0.5, /*g1*/ 2.0, /*g2*/ 1.0, 3.0};
  const std::vector<double> len = {10, 30, 20, 7, 0, 0};
  const std::vector<pt::index_t> g = {0, 3, 4, 6};
  std::vector<double> a(6);
  adv::opo_advantages(pt::exec::host{}, r, len, g, a);
  const double b0 = (10 * 1.0 + 30 * 0.0 + 20 * 0.5) / 60.0;
  EXPECT_NEAR(a[0], 1.0 - b0, 1e-15);
  EXPECT_NEAR(a[1], 0.0 - b0, 1e-15);
  EXPECT_NEAR(a[2], 0.5 - b0, 1e-15);
  EXPECT_EQ(a[3], 2.0);  // singleton: b = 0
  EXPECT_EQ(a[4], 1.0);  // only empty responses: b = 0
  EXPECT_EQ(a[5], 3.0);
  // Equal lengths: the plain group mean (Dr.GRPO centring).
  const std::vector<double> eq(3, 5.0);
  adv::opo_advantages(pt::exec::host{}, std::vector<double>{1, 2, 6}, eq,
                      std::vector<pt::index_t>{0, 3}, std::span<double>(a.data(), 3));
  EXPECT_NEAR(a[0], -2.0, 1e-15);
  EXPECT_NEAR(a[0] + a[1] + a[2], 0.0, 1e-15);
  // Lengths from a mask.
  const std::vector<float> m = {1, 1, 0, 1, 0.5f};
  std::vector<double> lengths(2);
  adv::sequence_lengths(pt::exec::host{}, m, std::vector<pt::index_t>{0, 3, 5}, lengths);
  EXPECT_EQ(lengths, (std::vector<double>{2.0, 1.5}));
}

TEST(Opo, Validation) {
  const std::vector<double> r = {1.0, 2.0};
  std::vector<double> out(2, 5.0);
  const pt::exec::host h;
  const std::vector<pt::index_t> g = {0, 2};
  EXPECT_THROW(adv::opo_advantages(h, r, std::vector<double>{1.0}, g, out), pt::error);
  EXPECT_THROW(adv::opo_advantages(h, r, std::vector<double>{1.0, -1.0}, g, out), pt::error);
  EXPECT_THROW(adv::opo_advantages(h, r, std::vector<double>{1.0, std::nan("")}, g, out),
               pt::error);
  EXPECT_THROW(adv::opo_advantages(h, std::vector<double>{1.0, std::nan("")},
                                   std::vector<double>{1, 1}, g, out),
               pt::error);
  EXPECT_THROW(
      adv::opo_advantages(h, r, std::vector<double>{1, 1}, std::vector<pt::index_t>{0, 1}, out),
      pt::error);
  for (double v : out) EXPECT_EQ(v, 5.0);
}
