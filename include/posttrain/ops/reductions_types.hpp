#pragma once
// The contract of the reductions family (ops/reductions.hpp): its value types, outputs and traits,
// and the backend template both backends implement. Included by the front end and by the
// backends (backend/cpu/reductions.hpp, backend/cuda/reductions.cuh); it includes no backend and
// no front end.
//
// backend::reductions_backend<Exec> members (exec::host in backend/cpu, exec::cuda in
// backend/cuda; every span is in Exec's memory):
//   bool segment_moments(Exec, span<const T> values, span<const float> mask,
//                        span<const index_t> offsets, span<masked_stats> out)
//       out[s] = moments of segment s; false when a mask weight is invalid (the host checks in
//       the same pass; the device does not check and returns true)
//   std::size_t segment_stats_workspace_bytes(Exec, index_t segments)
//   bool segment_stats(Exec, values, mask, offsets, const segment_stats_out& out, workspace ws)
//       the requested outputs; nothing is written when it returns false
//   std::vector<masked_stats> moments_to_host(Exec, values, mask, offsets)
//       host copies of the moments (offsets empty = one segment over every token); on the device
//       this synchronises the stream
// T is float or double.
#include <cstddef>
#include <span>
#include <string_view>
#include <type_traits>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/workspace.hpp"

POSTTRAIN_NAMESPACE_BEGIN

enum class variance_kind {
  biased,    // m2 / count            (numpy.std, OpenRLHF whitening)
  unbiased,  // m2 / (count − 1)      (torch.std, verl / TRL masked_var)
};

// Mergeable weighted moments of one set of tokens.
struct masked_stats {
  double count = 0.0;  // Σ w
  double sum = 0.0;    // Σ w·x
  double mean = 0.0;   // sum / count, 0 when count == 0
  double m2 = 0.0;     // Σ w·(x − mean)²

  POSTTRAIN_HOST_DEVICE constexpr double var_biased() const {
    return count > 0.0 ? m2 / count : 0.0;
  }
  POSTTRAIN_HOST_DEVICE constexpr double var_unbiased() const {
    return count > 1.0 ? m2 / (count - 1.0) : 0.0;
  }
  POSTTRAIN_HOST_DEVICE constexpr double variance(variance_kind kind) const {
    return kind == variance_kind::biased ? var_biased() : var_unbiased();
  }
};

// Chan's parallel combination. merge({}, b) == b exactly.
POSTTRAIN_HOST_DEVICE constexpr masked_stats merge(const masked_stats& a, const masked_stats& b) {
  const double n = a.count + b.count;
  if (!(n > 0.0)) return masked_stats{};
  const double delta = b.mean - a.mean;
  masked_stats r;
  r.count = n;
  r.sum = a.sum + b.sum;
  r.mean = r.sum / n;
  r.m2 = a.m2 + b.m2 + delta * delta * (a.count * b.count / n);
  return r;
}

// Left fold in the given order (deterministic): e.g. per-rank stats after an all-gather.
inline masked_stats merge(std::span<const masked_stats> parts) {
  masked_stats r{};
  for (const masked_stats& p : parts) r = merge(r, p);
  return r;
}

// Caller-provided outputs of segment_stats; each span is empty (not requested) or has S elements.
struct segment_stats_out {
  std::span<double> sum{};
  std::span<double> count{};
  std::span<double> mean{};
  std::span<double> var_biased{};
  std::span<double> var_unbiased{};
  std::span<masked_stats> moments{};  // the mergeable form
};

namespace detail {

template <class Exec>
inline constexpr bool always_false_v = false;

// Token values are float or double; anything convertible to std::span<const float> (a vector, a
// span) selects float, likewise for double.
template <class V>
inline constexpr bool float_values_v = std::is_convertible_v<const V&, std::span<const float>>;
template <class V>
inline constexpr bool double_values_v = std::is_convertible_v<const V&, std::span<const double>>;
template <class V>
concept token_values = float_values_v<V> != double_values_v<V>;
template <class V>
using value_t = std::conditional_t<float_values_v<V>, float, double>;

// Host memory: the front ends may read values, masks and offsets; device memory: sizes only.
template <class Exec>
inline constexpr bool on_host_v = std::is_same_v<Exec, exec::host>;

template <class T>
inline void validate_masked_values(std::span<const T> values, std::span<const float> mask,
                                   std::string_view where) {
  expect_size_or_empty(mask, ssize(values), where, "mask", "one weight per token of values");
}

// The scratch of an allocating front end: host memory from `buffer` (grown to `bytes`) on
// exec::host; on a device an empty workspace, with which the device backend allocates its scratch
// stream-ordered itself (a host buffer is not device memory).
template <class Exec>
workspace scratch_view(Exec, workspace_buffer& buffer, std::size_t bytes) {
  if constexpr (on_host_v<Exec>)
    return buffer.view(bytes);
  else
    return workspace{};
}

// Called by backends that report an invalid weight found while reducing: rescans for the message.
[[noreturn]] inline void fail_mask(std::span<const float> mask, std::string_view where) {
  expect_mask(mask, where, "mask");
  detail::fail(where, "mask contains an invalid weight");  // unreachable in practice
}

}  // namespace detail

namespace backend {

// The primary template: a tag without a specialisation stops compilation with this sentence.
template <class Exec>
struct reductions_backend {
  static_assert(::posttrain::detail::always_false_v<Exec>,
                "posttrain reductions: no backend for this execution tag. exec::cuda needs the CUDA "
                "backend (link posttrain::cuda and include <posttrain/cuda.cuh>).");
};

}  // namespace backend

POSTTRAIN_NAMESPACE_END
