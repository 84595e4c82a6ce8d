#pragma once
// Non-owning views. 1-D data is a std::span; 2-D data is a row-major matrix_view with a leading
// dimension (the distance in elements between the starts of consecutive rows, >= cols), so a view
// can address a slice of a wider buffer such as the [N, V] logits of a padded batch.
//
//   matrix_view<T> m{data, rows, cols, ld};   m(i, j) == data[i * ld + j]
//
// A view with rows == 0 or cols == 0 is empty and may hold a null pointer.
#include <cstddef>
#include <span>
#include <type_traits>

#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

template <class T>
struct matrix_view {
  using element_type = T;
  using value_type = std::remove_cv_t<T>;

  T* data = nullptr;
  index_t rows = 0;
  index_t cols = 0;
  index_t ld = 0;  // leading dimension in elements

  constexpr matrix_view() = default;
  POSTTRAIN_HOST_DEVICE constexpr matrix_view(T* d, index_t r, index_t c, index_t leading)
      : data(d), rows(r), cols(c), ld(leading) {}
  // Contiguous rows: ld == cols.
  POSTTRAIN_HOST_DEVICE constexpr matrix_view(T* d, index_t r, index_t c)
      : data(d), rows(r), cols(c), ld(c) {}

  // A view of const T from a view of T.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  POSTTRAIN_HOST_DEVICE constexpr matrix_view(const matrix_view<U>& other)
      : data(other.data), rows(other.rows), cols(other.cols), ld(other.ld) {}

  POSTTRAIN_HOST_DEVICE constexpr T& operator()(index_t i, index_t j) const {
    return data[i * ld + j];
  }
  POSTTRAIN_HOST_DEVICE constexpr T* row_data(index_t i) const { return data + i * ld; }
  std::span<T> row(index_t i) const {
    return std::span<T>(row_data(i), static_cast<std::size_t>(cols));
  }
  POSTTRAIN_HOST_DEVICE constexpr bool empty() const { return rows == 0 || cols == 0; }
  POSTTRAIN_HOST_DEVICE constexpr index_t size() const { return rows * cols; }
};

template <class T>
matrix_view(T*, index_t, index_t, index_t) -> matrix_view<T>;
template <class T>
matrix_view(T*, index_t, index_t) -> matrix_view<T>;

// Size of a span as the library's signed index type.
template <class T, std::size_t E>
constexpr index_t ssize(std::span<T, E> s) {
  return static_cast<index_t>(s.size());
}

POSTTRAIN_NAMESPACE_END
