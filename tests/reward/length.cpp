// Length verifiers (open-instruct MaxLenVerifier, UpToMaxLenVerifier): hand-checked formulas and
// bad labels.
#include <gtest/gtest.h>

#include "posttrain/core/error.hpp"
#include "posttrain/reward/length.hpp"

namespace pt = posttrain;

TEST(LengthVerifiers, Formulas) {
  const pt::reward::max_length_verifier ml;
  EXPECT_DOUBLE_EQ(ml.score(100, 100.0), 1.0);
  EXPECT_DOUBLE_EQ(ml.score(0, 100.0), 1.0 - 100.0 / 32768.0);
  EXPECT_DOUBLE_EQ(ml.score(300, 100.0), 1.0 - 200.0 / 32768.0);
  EXPECT_DOUBLE_EQ(ml.score(70000, 0.0), 1.0 - 70000.0 / 32768.0);  // negative: not clamped
  EXPECT_DOUBLE_EQ(ml.score_label(50, " 100 "), 1.0 - 50.0 / 32768.0);
  EXPECT_DOUBLE_EQ(ml.score_label(50, "100.5"), 1.0 - 50.5 / 32768.0);
  const pt::reward::up_to_max_length_verifier up;
  EXPECT_EQ(up.score(0, 100.0), 1.0);
  EXPECT_EQ(up.score(99, 100.0), 1.0);
  EXPECT_EQ(up.score(100, 100.0), 1.0);  // diff 0: 1 − 0
  EXPECT_DOUBLE_EQ(up.score(164, 100.0), 1.0 - 64.0 / 32768.0);
  pt::reward::up_to_max_length_verifier small;
  small.max_length = 10.0;
  EXPECT_DOUBLE_EQ(small.score(15, 10.0), 0.5);
}

TEST(LengthVerifiers, BadInput) {
  const pt::reward::max_length_verifier ml;
  EXPECT_THROW(ml.score_label(5, "abc"), pt::error);
  EXPECT_THROW(ml.score_label(5, ""), pt::error);
  EXPECT_THROW(ml.score_label(5, "nan"), pt::error);
  pt::reward::up_to_max_length_verifier up;
  up.max_length = 0.0;
  EXPECT_THROW(up.score(5, 1.0), pt::error);
  EXPECT_THROW(up.score_label(5, "12x"), pt::error);
}
