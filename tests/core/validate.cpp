// expect_mask: the vectorised accept pass and the scalar pass that names the bad element must agree on every
// value class at every position (vector body and scalar tail), for float and double masks.
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "posttrain/core/validate.hpp"

namespace pt = posttrain;

namespace {

template <class T>
void check_every_position() {
  using lim = std::numeric_limits<T>;
  const std::vector<T> good{T(0), T(-0.0), T(0.5), T(1), lim::max(), lim::denorm_min(), lim::min()};
  const std::vector<T> bad{T(-1), -lim::denorm_min(), lim::infinity(), -lim::infinity(), lim::quiet_NaN(),
                           -lim::quiet_NaN(), lim::lowest()};
  for (std::size_t n : {1u, 3u, 7u, 8u, 9u, 16u, 33u}) {
    for (T g : good) {
      std::vector<T> m(n, T(1));
      for (std::size_t i = 0; i < n; ++i) {
        m[i] = g;
        EXPECT_NO_THROW(pt::expect_mask(std::span<const T>(m), "test", "mask")) << n << " " << i << " " << g;
        m[i] = T(1);
      }
    }
    for (T b : bad) {
      std::vector<T> m(n, T(1));
      for (std::size_t i = 0; i < n; ++i) {
        m[i] = b;
        try {
          pt::expect_mask(std::span<const T>(m), "test", "mask");
          ADD_FAILURE() << "accepted " << b << " at " << i << " of " << n;
        } catch (const pt::error& e) {
          const std::string what = e.what();
          EXPECT_NE(what.find("mask[" + std::to_string(i) + "]"), std::string::npos) << what;
          EXPECT_NE(what.find("expected a finite weight >= 0"), std::string::npos) << what;
        }
        m[i] = T(1);
      }
    }
  }
  EXPECT_NO_THROW(pt::expect_mask(std::span<const T>(), "test", "mask"));
}

}  // namespace

TEST(Validate, ExpectMaskFloat) { check_every_position<float>(); }
TEST(Validate, ExpectMaskDouble) { check_every_position<double>(); }
