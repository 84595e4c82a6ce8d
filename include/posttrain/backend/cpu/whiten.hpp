#pragma once
// CPU backend of ops/whiten.hpp: the write pass out[i] = whiten_value(x[i], w[i], c[s]) over each
// scope s of offsets, with coefficients the front end computed from the segmented moments
// (backend/cpu/reductions.hpp). out may be values itself: every element is read before it is
// written, at the same index.
//
// The masked loops select with integer bit masks instead of `w != 0 ? y : 0`: GCC (with the
// default -ftrapping-math) refuses to if-convert floating-point selects, and the bitwise form
// vectorizes. Same results as whiten_value, bit for bit.
#include <span>

#include "posttrain/backend/cpu/mask_bits.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/ops/whiten.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

template <class T>
void whiten_apply(std::span<const T> values, std::span<const float> mask,
                  std::span<const index_t> offsets,
                  std::span<const whiten_coefficients> coefficients, bool multiply_by_mask,
                  std::span<T> out) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "posttrain::backend::cpu::whiten_apply: values must be float or double");
  const T* x = values.data();
  T* y = out.data();
  const float* m = mask.data();
  const std::size_t segments = offsets.size() - 1;
  for (std::size_t s = 0; s < segments; ++s) {
    const whiten_coefficients c = coefficients[s];
    const index_t b = offsets[s];
    const index_t e = offsets[s + 1];
    if (c.scale == 0.0) {
      for (index_t i = b; i < e; ++i) y[i] = T(0);
    } else if (mask.empty()) {
      for (index_t i = b; i < e; ++i)
        y[i] = static_cast<T>(whiten_affine(static_cast<double>(x[i]), c));
    } else if (multiply_by_mask) {
      for (index_t i = b; i < e; ++i) {
        const T v = static_cast<T>(whiten_affine(static_cast<double>(x[i]), c) *
                                   static_cast<double>(m[i]));
        y[i] = mask_bits::select(v, mask_bits::keep<T>(m[i]));
      }
    } else {
      for (index_t i = b; i < e; ++i) {
        const T v = static_cast<T>(whiten_affine(static_cast<double>(x[i]), c));
        y[i] = mask_bits::select(v, mask_bits::keep<T>(m[i]));
      }
    }
  }
}

}  // namespace backend::cpu

namespace detail {

template <>
struct whiten_backend<exec::host> {
  template <class T>
  static void apply(exec::host, std::span<const T> values, std::span<const float> mask,
                    std::span<const index_t> offsets,
                    std::span<const whiten_coefficients> coefficients, bool multiply_by_mask,
                    std::span<T> out) {
    backend::cpu::whiten_apply(values, mask, offsets, coefficients, multiply_by_mask, out);
  }
};

}  // namespace detail

POSTTRAIN_NAMESPACE_END
