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
#include <string_view>

#include "posttrain/backend/cpu/mask_bits.hpp"
#include "posttrain/backend/cpu/reductions.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/ops/whiten_types.hpp"

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

namespace backend {

template <>
struct whiten_backend<exec::host> {
  // Coefficients per scope, and the moments unless the caller supplies them.
  static std::size_t workspace_bytes(exec::host, index_t scopes, bool with_moments) {
    workspace_size size;
    const auto n = static_cast<std::size_t>(scopes);
    if (!with_moments) size.add<masked_stats>(n);
    return size.add<whiten_coefficients>(n);
  }

  template <class T>
  static index_t whiten(exec::host, std::span<const T> values, std::span<const float> mask,
                        std::span<const index_t> offsets, const masked_stats* moments,
                        std::span<T> out, const whiten_options& options, workspace ws) {
    constexpr std::string_view where = "whiten";
    const index_t whole[2] = {0, ssize(values)};
    const std::span<const index_t> scopes =
        offsets.empty() ? std::span<const index_t>(whole) : offsets;
    const std::size_t n = scopes.size() - 1;
    std::span<const masked_stats> stats;
    if (moments == nullptr) {
      const std::span<masked_stats> computed = ws.take<masked_stats>(n, where);
      // The mask weights are checked in this pass, before anything is written.
      if (!cpu::segment_moments(values, mask, scopes, computed))
        ::posttrain::detail::fail_mask(mask, where);
      stats = computed;
    } else {
      stats = std::span<const masked_stats>(moments, n);
    }
    const std::span<whiten_coefficients> coefficients = ws.take<whiten_coefficients>(n, where);
    const index_t degenerate =
        ::posttrain::detail::whiten_coefficients_host(stats, options, coefficients);
    cpu::whiten_apply(values, mask, scopes, std::span<const whiten_coefficients>(coefficients),
                      options.multiply_by_mask, out);
    return degenerate;
  }

  template <class T>
  static index_t whiten_host_moments(exec::host e, std::span<const T> values,
                                     std::span<const float> mask, const masked_stats& moments,
                                     std::span<T> out, const whiten_options& options,
                                     workspace ws) {
    return whiten(e, values, mask, {}, &moments, out, options, ws);
  }
};

}  // namespace backend

POSTTRAIN_NAMESPACE_END
