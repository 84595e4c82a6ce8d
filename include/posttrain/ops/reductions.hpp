#pragma once
// Masked and segmented reductions over the packed ragged layout.
//
//   values[N]   float or double token values
//   mask[N]     float weights w >= 0 (empty = all ones); a value whose weight is 0 is never used
//               (it may be NaN or inf)
//   offsets[S+1] segment s owns [offsets[s], offsets[s+1]); empty segments are allowed
//
// Per segment (everything accumulated in double, fixed order, deterministic):
//   count = Σ w                 sum = Σ w·x               mean = sum / count
//   m2    = Σ w·(x − mean)²     var_biased = m2 / count   var_unbiased = m2 / (count − 1)
// The unbiased divisor is count − 1 with count = Σ w: Bessel's correction for 0/1 masks exactly as
// verl / TRL / torch.std compute it, and the "frequency weight" reading for other weights.
// Edge cases: count == 0 (empty segment or all weights 0) gives sum = count = mean = var = 0;
// var_unbiased is 0 whenever count <= 1. Non-zero weights on NaN/inf values give NaN results.
//
// Variance is computed stably: each segment is cut into chunks of `reduction_chunk` tokens
// (positions relative to the segment start), each chunk is reduced by the corrected two-pass
// algorithm (the second pass hits L1), and the chunks are combined with Chan's parallel update.
// Values ~1e6 with noise ~1e-3 keep the variance to 1e-8 relative (tested).
//
// The mergeable statistics `masked_stats {count, sum, mean, m2}` combine with merge() (Chan et
// al. 1979): stats(A ∪ B) = merge(stats(A), stats(B)) up to rounding, so micro-batches and ranks
// combine to the full-batch statistics. A distributed caller all-gathers the four doubles per rank
// and folds merge() in rank order (deterministic); summing (count, Σwx, Σwx²) with a plain
// all-reduce also works but loses precision when |mean| >> std.
//
// Scopes: "per batch" is one segment over all tokens (masked_moments / masked_sum / ...); "per
// sequence" is segment_stats with seq_offsets; "per group" is the same reduction applied to the B
// per-sequence scalars with group_offsets[G+1]:
//
//   segment_stats(exec::host{}, token_rewards, mask, seq_offsets, {.sum = seq_score});   // [B]
//   segment_stats(exec::host{}, seq_score, {}, group_offsets,
//                 {.mean = group_mean, .var_unbiased = group_var});                     // [G]
//
// Device memory (exec::cuda{stream}, with <posttrain/cuda.cuh>): every span is device memory and
// the front ends check sizes only (offsets.size() >= 1, mask and output sizes). NOT checked on the
// device: offsets being non-decreasing with offsets[0] = 0 and offsets[S] = N, and the mask
// weights (invalid weights give meaningless statistics instead of an error). segment_stats is
// asynchronous; segment_moments / masked_moments / masked_sum / ... return host values and
// therefore synchronise the stream. Details: backend/cuda/reductions.cuh.
//
// API (Exec is exec::host; exec::cuda needs the CUDA backend header):
//   segment_stats(exec, values, mask, offsets, segment_stats_out{...})   any output span may be
//                         empty (= not requested), otherwise it has S elements
//   segment_moments(exec, values, mask, offsets) -> std::vector<masked_stats>
//   masked_moments(exec, values, mask) -> masked_stats                  (one segment = all tokens)
//   masked_sum / masked_count / masked_mean / masked_var(exec, values, mask[, kind]) -> double
//
// Peer correspondence: OpenRLHF masked_mean (Σwx/Σw) and open-instruct masked_mean with the
// default denominator (0 when Σw == 0) are masked_mean; verl masked_mean adds 1e-8 to Σw and is
// reproduced by whiten_options (ops/whiten.hpp), which owns every epsilon convention.
// No gradient is provided here: these statistics feed advantages and logging.
#include <span>
#include <type_traits>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"

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

// Backend dispatch of the reductions. backend/cpu/reductions.hpp specializes it for exec::host;
// a CUDA backend header specializes it for exec::cuda.
template <class Exec>
struct reductions_backend {
  static_assert(always_false_v<Exec>,
                "posttrain reductions: no backend for this execution tag. exec::cuda needs the CUDA "
                "backend (link posttrain::cuda and include <posttrain/cuda.cuh>).");
};

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

// Called by backends that report an invalid weight found while reducing: rescans for the message.
[[noreturn]] inline void fail_mask(std::span<const float> mask, std::string_view where) {
  expect_mask(mask, where, "mask");
  detail::fail(where, "mask contains an invalid weight");  // unreachable in practice
}

}  // namespace detail

// Per-segment statistics. Validates sizes, offsets, mask weights (finite, >= 0: checked during the
// reduction pass, before any output is written) and writes only the requested outputs.
template <execution_tag Exec, detail::token_values V>
void segment_stats(Exec exec, const V& values_in, std::span<const float> mask,
                   std::span<const index_t> offsets, const segment_stats_out& out) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "segment_stats";
  const std::span<const T> values(values_in);
  detail::validate_masked_values(values, mask, where);
  if constexpr (detail::on_host_v<Exec>)
    expect_offsets(offsets, ssize(values), where, "offsets");
  else
    expect(!offsets.empty(), where, "offsets is empty, expected S + 1 >= 1 elements");
  const index_t segments = ssize(offsets) - 1;
  constexpr std::string_view meaning = "empty or one per segment";
  expect_size_or_empty(out.sum, segments, where, "out.sum", meaning);
  expect_size_or_empty(out.count, segments, where, "out.count", meaning);
  expect_size_or_empty(out.mean, segments, where, "out.mean", meaning);
  expect_size_or_empty(out.var_biased, segments, where, "out.var_biased", meaning);
  expect_size_or_empty(out.var_unbiased, segments, where, "out.var_unbiased", meaning);
  expect_size_or_empty(out.moments, segments, where, "out.moments", meaning);
  if constexpr (!detail::on_host_v<Exec>) {
    detail::reductions_backend<Exec>::segment_stats(exec, values, mask, offsets, out);
  } else {
    std::vector<masked_stats> stats(static_cast<std::size_t>(segments));
    if (!detail::reductions_backend<Exec>::segment_moments(exec, values, mask, offsets,
                                                           std::span<masked_stats>(stats)))
      detail::fail_mask(mask, where);
    for (index_t s = 0; s < segments; ++s) {
      const masked_stats& st = stats[static_cast<std::size_t>(s)];
      if (!out.sum.empty()) out.sum[s] = st.sum;
      if (!out.count.empty()) out.count[s] = st.count;
      if (!out.mean.empty()) out.mean[s] = st.mean;
      if (!out.var_biased.empty()) out.var_biased[s] = st.var_biased();
      if (!out.var_unbiased.empty()) out.var_unbiased[s] = st.var_unbiased();
      if (!out.moments.empty()) out.moments[s] = st;
    }
  }
}

// Per-segment mergeable statistics, allocated.
template <execution_tag Exec, detail::token_values V>
std::vector<masked_stats> segment_moments(Exec exec, const V& values, std::span<const float> mask,
                                          std::span<const index_t> offsets) {
  expect(!offsets.empty(), "segment_moments", "offsets is empty, expected S + 1 >= 1 elements");
  if constexpr (!detail::on_host_v<Exec>) {
    using T = detail::value_t<V>;
    const std::span<const T> v(values);
    detail::validate_masked_values(v, mask, "segment_moments");
    return detail::reductions_backend<Exec>::moments_to_host(exec, v, mask, offsets);
  } else {
    std::vector<masked_stats> result(offsets.size() - 1);
    segment_stats(exec, values, mask, offsets, segment_stats_out{.moments = result});
    return result;
  }
}

// Statistics of the whole batch (one segment over every token).
template <execution_tag Exec, detail::token_values V>
masked_stats masked_moments(Exec exec, const V& values_in, std::span<const float> mask) {
  using T = detail::value_t<V>;
  const std::span<const T> values(values_in);
  detail::validate_masked_values(values, mask, "masked_moments");
  if constexpr (!detail::on_host_v<Exec>) {
    return detail::reductions_backend<Exec>::moments_to_host(exec, values, mask, {})[0];
  } else {
    const index_t offsets[2] = {0, ssize(values)};
    masked_stats result[1];
    if (!detail::reductions_backend<Exec>::segment_moments(exec, values, mask,
                                                           std::span<const index_t>(offsets),
                                                           std::span<masked_stats>(result)))
      detail::fail_mask(mask, "masked_moments");
    return result[0];
  }
}

template <execution_tag Exec, detail::token_values V>
double masked_sum(Exec exec, const V& values, std::span<const float> mask) {
  return masked_moments(exec, values, mask).sum;
}

template <execution_tag Exec, detail::token_values V>
double masked_count(Exec exec, const V& values, std::span<const float> mask) {
  return masked_moments(exec, values, mask).count;
}

// Σwx / Σw, 0 when Σw == 0 (OpenRLHF masked_mean; open-instruct masked_mean's 0 for an empty mask).
template <execution_tag Exec, detail::token_values V>
double masked_mean(Exec exec, const V& values, std::span<const float> mask) {
  return masked_moments(exec, values, mask).mean;
}

template <execution_tag Exec, detail::token_values V>
double masked_var(Exec exec, const V& values, std::span<const float> mask,
                  variance_kind kind = variance_kind::unbiased) {
  return masked_moments(exec, values, mask).variance(kind);
}

POSTTRAIN_NAMESPACE_END

#include "posttrain/backend/cpu/reductions.hpp"
