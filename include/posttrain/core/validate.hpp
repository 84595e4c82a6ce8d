#pragma once
// Argument validation helpers. Public entry points call these before any work so that bad input
// throws posttrain::error (naming the function, the argument and the expectation) and leaves every
// output untouched. Each helper takes `where`, the public function's name, for the message.
#include <cmath>
#include <limits>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>

#include "posttrain/config.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/views.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace detail {

template <class... Parts>
[[noreturn]] inline void fail(std::string_view where, const Parts&... parts) {
  std::ostringstream message;
  message << "posttrain::" << where << ": ";
  (message << ... << parts);
  throw error(message.str());
}

}  // namespace detail

// Throws "posttrain::<where>: <what>" unless `condition` holds.
template <class... Parts>
inline void expect(bool condition, std::string_view where, const Parts&... what) {
  if (!condition) detail::fail(where, what...);
}

// `argument` must have exactly `expected` elements; `meaning` says why, e.g. "one per token".
template <class T, std::size_t E>
inline void expect_size(std::span<T, E> s, index_t expected, std::string_view where,
                        std::string_view argument, std::string_view meaning) {
  if (ssize(s) != expected)
    detail::fail(where, argument, " has ", s.size(), " elements, expected ", expected, " (",
                 meaning, ")");
}

// An optional per-token input: empty means "absent", otherwise exactly `expected` elements.
template <class T, std::size_t E>
inline void expect_size_or_empty(std::span<T, E> s, index_t expected, std::string_view where,
                                 std::string_view argument, std::string_view meaning) {
  if (!s.empty()) expect_size(s, expected, where, argument, meaning);
}

// A hyperparameter must be a finite number.
template <class T>
inline void expect_finite(T value, std::string_view where, std::string_view argument) {
  if (!std::isfinite(static_cast<double>(value)))
    detail::fail(where, argument, " must be finite, got ", static_cast<double>(value));
}

// A hyperparameter must be finite and > 0.
template <class T>
inline void expect_positive(T value, std::string_view where, std::string_view argument) {
  if (!(std::isfinite(static_cast<double>(value)) && value > T(0)))
    detail::fail(where, argument, " must be finite and > 0, got ", static_cast<double>(value));
}

// A hyperparameter must be finite and >= 0.
template <class T>
inline void expect_non_negative(T value, std::string_view where, std::string_view argument) {
  if (!(std::isfinite(static_cast<double>(value)) && value >= T(0)))
    detail::fail(where, argument, " must be finite and >= 0, got ", static_cast<double>(value));
}

// Offsets delimiting segments of a packed array: size >= 1, offsets[0] == 0, non-decreasing
// (empty segments allowed), offsets.back() == total.
inline void expect_offsets(std::span<const index_t> offsets, index_t total, std::string_view where,
                           std::string_view argument) {
  if (offsets.empty())
    detail::fail(where, argument, " is empty, expected at least one element (offsets[0] == 0)");
  if (offsets.front() != 0)
    detail::fail(where, argument, "[0] is ", offsets.front(), ", expected 0");
  for (std::size_t i = 1; i < offsets.size(); ++i)
    if (offsets[i] < offsets[i - 1])
      detail::fail(where, argument, " is not non-decreasing: ", argument, "[", i, "] = ",
                   offsets[i], " < ", argument, "[", i - 1, "] = ", offsets[i - 1],
                   " (a negative length)");
  if (offsets.back() != total)
    detail::fail(where, argument, ".back() is ", offsets.back(), ", expected ", total,
                 " (the length of the packed array it delimits)");
}

// A 2-D view: non-negative extents, ld >= cols, data present when non-empty.
template <class T>
inline void expect_matrix(const matrix_view<T>& m, std::string_view where,
                          std::string_view argument) {
  if (m.rows < 0 || m.cols < 0)
    detail::fail(where, argument, " has negative extents [", m.rows, ", ", m.cols, "]");
  if (m.ld < m.cols)
    detail::fail(where, argument, " has leading dimension ", m.ld, " < cols ", m.cols);
  if (!m.empty() && m.data == nullptr)
    detail::fail(where, argument, " is [", m.rows, ", ", m.cols, "] but its data is null");
}

// Two matrices with the same shape (leading dimensions may differ).
template <class T, class U>
inline void expect_same_shape(const matrix_view<T>& a, const matrix_view<U>& b,
                              std::string_view where, std::string_view a_name,
                              std::string_view b_name) {
  if (a.rows != b.rows || a.cols != b.cols)
    detail::fail(where, b_name, " is [", b.rows, ", ", b.cols, "], expected the shape of ", a_name,
                 " [", a.rows, ", ", a.cols, "]");
}

// Token mask weights: finite and >= 0 (a mask is a weight; 0 excludes a token).
template <class T, std::size_t E>
inline void expect_mask(std::span<T, E> mask, std::string_view where, std::string_view argument) {
  using V = std::remove_cv_t<T>;
  if constexpr (std::is_floating_point_v<V>) {
    // Fast path: one branch-free pass that the compiler vectorises (NaN fails both ordered compares, ±inf fails
    // the upper bound, -0 passes). It sits on every loss's hot path (half the DPO time when it was the scalar loop
    // below); only a failing mask pays for the second pass that finds the index for the message.
    constexpr V largest = std::numeric_limits<V>::max();
    unsigned all_valid = 1;
    for (std::size_t i = 0; i < mask.size(); ++i)
      all_valid &= static_cast<unsigned>(detail::all_of_branchless(mask[i] >= V(0), mask[i] <= largest));
    if (all_valid != 0) return;
  }
  for (std::size_t i = 0; i < mask.size(); ++i) {
    const double w = static_cast<double>(mask[i]);
    if (!(std::isfinite(w) && w >= 0.0))
      detail::fail(where, argument, "[", i, "] = ", w, ", expected a finite weight >= 0");
  }
}

POSTTRAIN_NAMESPACE_END
