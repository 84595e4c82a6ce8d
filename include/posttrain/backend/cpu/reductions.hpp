#pragma once
// CPU backend of ops/reductions.hpp: segmented masked moments, accumulated in double.
//
//   segment_moments(values[N], mask[N] or empty, offsets[S+1], out[S]) -> mask_ok
//
// Each segment is cut into chunks of reduction_chunk tokens counted from the segment start (so a
// segment's result does not depend on where it sits in the packed array). A chunk is reduced by
// the corrected two-pass algorithm in `reduction_lanes` independent accumulators (fixed order:
// deterministic, and wide enough for the compiler to vectorize without reassociation); chunks are
// combined with merge() (Chan). Values whose weight is 0 are never used: the accumulation selects
// 0 for them, so NaN/inf there cannot propagate.
//
// The mask is checked (finite, >= 0) in the same pass; the return value is false when some weight
// is invalid, and the front end then throws before writing any output. Arguments are assumed
// validated otherwise (sizes, offsets).
#include <cfloat>
#include <span>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/ops/reductions_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

inline constexpr index_t reduction_chunk = 2048;
inline constexpr int reduction_lanes = 8;

namespace detail {

// Finite and >= 0 (NaN fails both comparisons); bitwise & keeps the loop branch-free.
POSTTRAIN_FORCEINLINE bool valid_weight(double w) { return (w >= 0.0) & (w <= double(FLT_MAX)); }

// Corrected two-pass (Björck): m2 = Σw·d² − (Σw·d)²/count removes the rounding error of mean.
inline masked_stats finish_moments(double count, double total, double mean, double lin, double sq) {
  masked_stats r;
  r.count = count;
  r.sum = total;
  r.mean = mean;
  const double m2 = sq - lin * lin / count;
  r.m2 = m2 > 0.0 ? m2 : 0.0;
  return r;
}

// Moments of x[0, n) with weights m (HasMask) or ones. n <= reduction_chunk.
template <bool HasMask, class T>
masked_stats chunk_moments(const T* x, const float* m, index_t n, bool& mask_ok) {
  constexpr int L = reduction_lanes;
  double cnt[L] = {};
  double sum[L] = {};
  double bad[L] = {};
  const index_t body = n - n % L;
  for (index_t i = 0; i < body; i += L) {
    for (int j = 0; j < L; ++j) {
      const double xv = static_cast<double>(x[i + j]);
      if constexpr (HasMask) {
        const double w = static_cast<double>(m[i + j]);
        bad[j] += valid_weight(w) ? 0.0 : 1.0;
        cnt[j] += w;
        sum[j] += w * (w != 0.0 ? xv : 0.0);
      } else {
        sum[j] += xv;
      }
    }
  }
  for (index_t i = body; i < n; ++i) {
    const int j = static_cast<int>(i - body);
    const double xv = static_cast<double>(x[i]);
    if constexpr (HasMask) {
      const double w = static_cast<double>(m[i]);
      bad[j] += valid_weight(w) ? 0.0 : 1.0;
      cnt[j] += w;
      sum[j] += w * (w != 0.0 ? xv : 0.0);
    } else {
      sum[j] += xv;
    }
  }
  double count = 0.0;
  double total = 0.0;
  double any_bad = 0.0;
  for (int j = 0; j < L; ++j) {
    count += cnt[j];
    total += sum[j];
    any_bad += bad[j];
  }
  if (any_bad != 0.0) mask_ok = false;
  if constexpr (!HasMask) count = static_cast<double>(n);
  if (!(count > 0.0)) return masked_stats{};
  const double mean = total / count;

  // Second pass (L1-resident): Σw·d² and the correction Σw·d, d = x − mean.
  double lin[L] = {};
  double sq[L] = {};
  for (index_t i = 0; i < body; i += L) {
    for (int j = 0; j < L; ++j) {
      const double d = static_cast<double>(x[i + j]) - mean;
      if constexpr (HasMask) {
        const double w = static_cast<double>(m[i + j]);
        const double dm = w != 0.0 ? d : 0.0;
        lin[j] += w * dm;
        sq[j] += w * dm * dm;
      } else {
        lin[j] += d;
        sq[j] += d * d;
      }
    }
  }
  for (index_t i = body; i < n; ++i) {
    const int j = static_cast<int>(i - body);
    const double d = static_cast<double>(x[i]) - mean;
    if constexpr (HasMask) {
      const double w = static_cast<double>(m[i]);
      const double dm = w != 0.0 ? d : 0.0;
      lin[j] += w * dm;
      sq[j] += w * dm * dm;
    } else {
      lin[j] += d;
      sq[j] += d * d;
    }
  }
  double c = 0.0;
  double q = 0.0;
  for (int j = 0; j < L; ++j) {
    c += lin[j];
    q += sq[j];
  }
  return finish_moments(count, total, mean, c, q);
}

#if defined(__SSE2__)
// The hot case (float values with a mask) in SSE2: 8 tokens per iteration in 4 pairs of double
// lanes, the mask test and the weight check in float lanes. The generic loop above is not
// vectorized by GCC (the double accumulations may not be reassociated) and runs ~2x slower.
inline masked_stats chunk_moments_sse2(const float* x, const float* m, index_t n, bool& mask_ok) {
  const index_t body = n - n % 8;
  const __m128 zero = _mm_setzero_ps();
  const __m128 fmax = _mm_set1_ps(FLT_MAX);
  __m128d c0 = _mm_setzero_pd(), c1 = c0, c2 = c0, c3 = c0;
  __m128d s0 = c0, s1 = c0, s2 = c0, s3 = c0;
  __m128 bad = zero;
  for (index_t i = 0; i < body; i += 8) {
    const __m128 wa = _mm_loadu_ps(m + i);
    const __m128 wb = _mm_loadu_ps(m + i + 4);
    // Invalid: not (w >= 0) or not (w <= FLT_MAX); both are true for NaN.
    bad = _mm_or_ps(bad, _mm_or_ps(_mm_cmpnge_ps(wa, zero), _mm_cmpnle_ps(wa, fmax)));
    bad = _mm_or_ps(bad, _mm_or_ps(_mm_cmpnge_ps(wb, zero), _mm_cmpnle_ps(wb, fmax)));
    // x is replaced by +0 where w == 0 (bitwise, so a NaN there never reaches an accumulator).
    const __m128 xa = _mm_and_ps(_mm_loadu_ps(x + i), _mm_cmpneq_ps(wa, zero));
    const __m128 xb = _mm_and_ps(_mm_loadu_ps(x + i + 4), _mm_cmpneq_ps(wb, zero));
    const __m128d wa0 = _mm_cvtps_pd(wa), wa1 = _mm_cvtps_pd(_mm_movehl_ps(wa, wa));
    const __m128d wb0 = _mm_cvtps_pd(wb), wb1 = _mm_cvtps_pd(_mm_movehl_ps(wb, wb));
    c0 = _mm_add_pd(c0, wa0);
    c1 = _mm_add_pd(c1, wa1);
    c2 = _mm_add_pd(c2, wb0);
    c3 = _mm_add_pd(c3, wb1);
    s0 = _mm_add_pd(s0, _mm_mul_pd(wa0, _mm_cvtps_pd(xa)));
    s1 = _mm_add_pd(s1, _mm_mul_pd(wa1, _mm_cvtps_pd(_mm_movehl_ps(xa, xa))));
    s2 = _mm_add_pd(s2, _mm_mul_pd(wb0, _mm_cvtps_pd(xb)));
    s3 = _mm_add_pd(s3, _mm_mul_pd(wb1, _mm_cvtps_pd(_mm_movehl_ps(xb, xb))));
  }
  if (_mm_movemask_ps(bad) != 0) mask_ok = false;
  double lanes[2];
  _mm_storeu_pd(lanes, _mm_add_pd(_mm_add_pd(c0, c1), _mm_add_pd(c2, c3)));
  double count = lanes[0] + lanes[1];
  _mm_storeu_pd(lanes, _mm_add_pd(_mm_add_pd(s0, s1), _mm_add_pd(s2, s3)));
  double total = lanes[0] + lanes[1];
  for (index_t i = body; i < n; ++i) {
    const double w = static_cast<double>(m[i]);
    if (!valid_weight(w)) mask_ok = false;
    count += w;
    if (w != 0.0) total += w * static_cast<double>(x[i]);
  }
  if (!(count > 0.0)) return masked_stats{};
  const double mean = total / count;

  const __m128d mu = _mm_set1_pd(mean);
  __m128d l0 = _mm_setzero_pd(), l1 = l0, l2 = l0, l3 = l0;
  __m128d q0 = l0, q1 = l0, q2 = l0, q3 = l0;
  for (index_t i = 0; i < body; i += 8) {
    const __m128 wa = _mm_loadu_ps(m + i);
    const __m128 wb = _mm_loadu_ps(m + i + 4);
    const __m128 ka = _mm_cmpneq_ps(wa, zero);
    const __m128 kb = _mm_cmpneq_ps(wb, zero);
    const __m128 xa = _mm_loadu_ps(x + i);
    const __m128 xb = _mm_loadu_ps(x + i + 4);
    // d = (w != 0) ? x − mean : 0, the float keep-mask widened to double lanes.
    const __m128d da0 = _mm_and_pd(_mm_castps_pd(_mm_unpacklo_ps(ka, ka)),
                                   _mm_sub_pd(_mm_cvtps_pd(xa), mu));
    const __m128d da1 = _mm_and_pd(_mm_castps_pd(_mm_unpackhi_ps(ka, ka)),
                                   _mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(xa, xa)), mu));
    const __m128d db0 = _mm_and_pd(_mm_castps_pd(_mm_unpacklo_ps(kb, kb)),
                                   _mm_sub_pd(_mm_cvtps_pd(xb), mu));
    const __m128d db1 = _mm_and_pd(_mm_castps_pd(_mm_unpackhi_ps(kb, kb)),
                                   _mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(xb, xb)), mu));
    const __m128d ea0 = _mm_mul_pd(_mm_cvtps_pd(wa), da0);
    const __m128d ea1 = _mm_mul_pd(_mm_cvtps_pd(_mm_movehl_ps(wa, wa)), da1);
    const __m128d eb0 = _mm_mul_pd(_mm_cvtps_pd(wb), db0);
    const __m128d eb1 = _mm_mul_pd(_mm_cvtps_pd(_mm_movehl_ps(wb, wb)), db1);
    l0 = _mm_add_pd(l0, ea0);
    l1 = _mm_add_pd(l1, ea1);
    l2 = _mm_add_pd(l2, eb0);
    l3 = _mm_add_pd(l3, eb1);
    q0 = _mm_add_pd(q0, _mm_mul_pd(ea0, da0));
    q1 = _mm_add_pd(q1, _mm_mul_pd(ea1, da1));
    q2 = _mm_add_pd(q2, _mm_mul_pd(eb0, db0));
    q3 = _mm_add_pd(q3, _mm_mul_pd(eb1, db1));
  }
  _mm_storeu_pd(lanes, _mm_add_pd(_mm_add_pd(l0, l1), _mm_add_pd(l2, l3)));
  double lin = lanes[0] + lanes[1];
  _mm_storeu_pd(lanes, _mm_add_pd(_mm_add_pd(q0, q1), _mm_add_pd(q2, q3)));
  double sq = lanes[0] + lanes[1];
  for (index_t i = body; i < n; ++i) {
    const double w = static_cast<double>(m[i]);
    if (w == 0.0) continue;
    const double d = static_cast<double>(x[i]) - mean;
    lin += w * d;
    sq += w * d * d;
  }
  return finish_moments(count, total, mean, lin, sq);
}
#endif

template <bool HasMask, class T>
bool segment_moments_impl(const T* x, const float* m, std::span<const index_t> offsets,
                          std::span<masked_stats> out) {
  bool mask_ok = true;
  const std::size_t segments = offsets.size() - 1;
  for (std::size_t s = 0; s < segments; ++s) {
    masked_stats acc{};
    for (index_t b = offsets[s]; b < offsets[s + 1]; b += reduction_chunk) {
      const index_t n = offsets[s + 1] - b < reduction_chunk ? offsets[s + 1] - b : reduction_chunk;
      masked_stats part;
#if defined(__SSE2__)
      if constexpr (HasMask && std::is_same_v<T, float>)
        part = chunk_moments_sse2(x + b, m + b, n, mask_ok);
      else
#endif
        part = chunk_moments<HasMask>(x + b, HasMask ? m + b : nullptr, n, mask_ok);
      acc = merge(acc, part);
    }
    out[s] = acc;
  }
  return mask_ok;
}

}  // namespace detail

// out[s] = moments of segment s. Returns false if some mask weight is negative, NaN or inf.
template <class T>
bool segment_moments(std::span<const T> values, std::span<const float> mask,
                     std::span<const index_t> offsets, std::span<masked_stats> out) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "posttrain::backend::cpu::segment_moments: values must be float or double");
  if (mask.empty())
    return detail::segment_moments_impl<false>(values.data(), nullptr, offsets, out);
  return detail::segment_moments_impl<true>(values.data(), mask.data(), offsets, out);
}

}  // namespace backend::cpu

namespace backend {

template <>
struct reductions_backend<exec::host> {
  template <class T>
  static bool segment_moments(exec::host, std::span<const T> values, std::span<const float> mask,
                              std::span<const index_t> offsets, std::span<masked_stats> out) {
    return cpu::segment_moments(values, mask, offsets, out);
  }

  // The moments of every segment, held until the mask is known to be valid.
  static std::size_t segment_stats_workspace_bytes(exec::host, index_t segments) {
    return workspace_size().add<masked_stats>(static_cast<std::size_t>(segments));
  }

  template <class T>
  static bool segment_stats(exec::host e, std::span<const T> values, std::span<const float> mask,
                            std::span<const index_t> offsets, const segment_stats_out& out,
                            workspace ws) {
    const std::size_t segments = offsets.size() - 1;
    const std::span<masked_stats> stats = ws.take<masked_stats>(segments, "segment_stats");
    if (!segment_moments(e, values, mask, offsets, stats)) return false;
    for (std::size_t s = 0; s < segments; ++s) {
      const masked_stats& st = stats[s];
      if (!out.sum.empty()) out.sum[s] = st.sum;
      if (!out.count.empty()) out.count[s] = st.count;
      if (!out.mean.empty()) out.mean[s] = st.mean;
      if (!out.var_biased.empty()) out.var_biased[s] = st.var_biased();
      if (!out.var_unbiased.empty()) out.var_unbiased[s] = st.var_unbiased();
      if (!out.moments.empty()) out.moments[s] = st;
    }
    return true;
  }

  // offsets empty = one segment over every token. An invalid mask weight throws here (the host
  // has the mask at hand).
  template <class T>
  static std::vector<masked_stats> moments_to_host(exec::host e, std::span<const T> values,
                                                   std::span<const float> mask,
                                                   std::span<const index_t> offsets) {
    const index_t whole[2] = {0, ssize(values)};
    if (offsets.empty()) offsets = std::span<const index_t>(whole);
    std::vector<masked_stats> host(offsets.size() - 1);
    if (!segment_moments(e, values, mask, offsets, std::span<masked_stats>(host)))
      ::posttrain::detail::fail_mask(mask, "segment_moments");
    return host;
  }
};

}  // namespace backend

POSTTRAIN_NAMESPACE_END
