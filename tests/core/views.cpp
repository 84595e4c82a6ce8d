// Tests for core/views.hpp, core/validate.hpp, core/exec.hpp and config.hpp.
// Also covers core/types.hpp (index_t, accum_t through the views) and core/error.hpp (the
// messages of validate).
#include "posttrain/core/views.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/validate.hpp"

namespace pt = posttrain;

TEST(Views, MatrixViewAddressesRowsThroughLeadingDimension) {
  std::vector<float> buffer(3 * 5);
  for (std::size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<float>(i);
  pt::matrix_view<float> m{buffer.data(), 3, 4, 5};  // 3x4 slice of a 3x5 buffer
  EXPECT_EQ(m(0, 0), 0.0f);
  EXPECT_EQ(m(1, 0), 5.0f);
  EXPECT_EQ(m(2, 3), 13.0f);
  EXPECT_EQ(m.row(1).size(), 4u);
  EXPECT_EQ(m.row(1)[2], 7.0f);
  EXPECT_EQ(m.size(), 12);
  pt::matrix_view<const float> c = m;  // const conversion
  EXPECT_EQ(c(2, 1), 11.0f);
  pt::matrix_view contiguous{buffer.data(), 3, 5};
  EXPECT_EQ(contiguous.ld, 5);
  EXPECT_TRUE((pt::matrix_view<float>{nullptr, 0, 7}.empty()));
}

TEST(Validate, MessagesNameFunctionArgumentAndExpectation) {
  const std::vector<float> v(3);
  try {
    pt::expect_size(std::span<const float>(v), 4, "token_logprobs", "targets", "one per row");
    FAIL();
  } catch (const pt::error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("posttrain::token_logprobs"), std::string::npos) << what;
    EXPECT_NE(what.find("targets has 3 elements, expected 4"), std::string::npos) << what;
  }
  EXPECT_NO_THROW(pt::expect_size_or_empty(std::span<const float>(), 4, "f", "mask", "per token"));
  EXPECT_THROW(pt::expect_finite(std::nan(""), "f", "beta"), pt::error);
  EXPECT_THROW(pt::expect_positive(0.0, "f", "temperature"), pt::error);
  EXPECT_THROW(pt::expect_positive(std::numeric_limits<double>::infinity(), "f", "t"), pt::error);
  EXPECT_THROW(pt::expect_non_negative(-1e-9, "f", "eps"), pt::error);
  EXPECT_NO_THROW(pt::expect_non_negative(0.0, "f", "eps"));
}

TEST(Validate, Offsets) {
  const std::vector<pt::index_t> good{0, 0, 3, 5};
  EXPECT_NO_THROW(pt::expect_offsets(good, 5, "f", "seq_offsets"));
  EXPECT_THROW(pt::expect_offsets(good, 6, "f", "seq_offsets"), pt::error);
  const std::vector<pt::index_t> not_zero{1, 3};
  EXPECT_THROW(pt::expect_offsets(not_zero, 3, "f", "seq_offsets"), pt::error);
  EXPECT_THROW(pt::expect_offsets({}, 0, "f", "seq_offsets"), pt::error);
}

TEST(Validate, MatrixAndMask) {
  float x = 0;
  EXPECT_THROW(pt::expect_matrix(pt::matrix_view<float>{&x, 2, 3, 2}, "f", "logits"), pt::error);
  EXPECT_THROW(pt::expect_matrix(pt::matrix_view<float>{nullptr, 2, 3}, "f", "logits"), pt::error);
  EXPECT_THROW(pt::expect_matrix(pt::matrix_view<float>{&x, -1, 3}, "f", "logits"), pt::error);
  EXPECT_NO_THROW(pt::expect_matrix(pt::matrix_view<float>{nullptr, 0, 3}, "f", "logits"));
  EXPECT_THROW(pt::expect_same_shape(pt::matrix_view<float>{&x, 1, 1},
                                     pt::matrix_view<float>{&x, 1, 2}, "f", "a", "b"),
               pt::error);
  const std::vector<float> mask{1, 0, 0.5f, std::nanf("")};
  EXPECT_THROW(pt::expect_mask(std::span<const float>(mask), "f", "mask"), pt::error);
  EXPECT_NO_THROW(pt::expect_mask(std::span<const float>(mask).first(3), "f", "mask"));
}

TEST(Exec, TagsAndConfig) {
  static_assert(pt::execution_tag<pt::exec::host>);
  static_assert(pt::execution_tag<const pt::exec::cuda&>);
  static_assert(!pt::execution_tag<int>);
  EXPECT_EQ(pt::exec::cuda{}.stream, nullptr);
  EXPECT_STREQ(POSTTRAIN_VERSION_STRING, "0.1.0");
  // The versioned inline namespace is transparent to users.
  static_assert(std::is_same_v<pt::v0::index_t, pt::index_t>);
}
