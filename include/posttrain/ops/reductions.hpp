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
//   segment_stats(exec, values, mask, offsets, out, workspace)   the same without allocating
//                         (segment_stats_workspace_bytes(exec, S) bytes)
//   segment_moments(exec, values, mask, offsets) -> std::vector<masked_stats>
//   masked_moments(exec, values, mask) -> masked_stats                  (one segment = all tokens)
//   masked_sum / masked_count / masked_mean / masked_var(exec, values, mask[, kind]) -> double
//
// Peer correspondence: OpenRLHF masked_mean (Σwx/Σw) and open-instruct masked_mean with the
// default denominator (0 when Σw == 0) are masked_mean; verl masked_mean adds 1e-8 to Σw and is
// reproduced by whiten_options (ops/whiten.hpp), which owns every epsilon convention.
// No gradient is provided here: these statistics feed advantages and logging.
// The contract (masked_stats, merge, segment_stats_out, the backend template) is
// ops/reductions_types.hpp; merging over ranks is dist/normalizers.hpp.
#include <span>
#include <type_traits>
#include <vector>

#include "posttrain/backend/cpu/reductions.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/ops/reductions_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

// Bytes of workspace segment_stats needs for S segments (Exec's memory).
template <execution_tag Exec>
std::size_t segment_stats_workspace_bytes(Exec exec, index_t segments) {
  expect(segments >= 0, "segment_stats_workspace_bytes", "segments is ", segments,
         ", expected >= 0");
  return backend::reductions_backend<Exec>::segment_stats_workspace_bytes(exec, segments);
}

// Per-segment statistics. Validates sizes, offsets, mask weights (finite, >= 0: checked during the
// reduction pass, before any output is written) and writes only the requested outputs. Scratch
// comes from `ws` (segment_stats_workspace_bytes): no allocation on the host.
template <execution_tag Exec, detail::token_values V>
void segment_stats(Exec exec, const V& values_in, std::span<const float> mask,
                   std::span<const index_t> offsets, const segment_stats_out& out, workspace ws) {
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
  if (!backend::reductions_backend<Exec>::segment_stats(exec, values, mask, offsets, out, ws))
    detail::fail_mask(mask, where);
}

// The same, with scratch allocated for this call.
template <execution_tag Exec, detail::token_values V>
void segment_stats(Exec exec, const V& values, std::span<const float> mask,
                   std::span<const index_t> offsets, const segment_stats_out& out) {
  workspace_buffer buffer;
  const std::size_t bytes = segment_stats_workspace_bytes(
      exec, offsets.empty() ? index_t(0) : ssize(offsets) - 1);
  segment_stats(exec, values, mask, offsets, out, detail::scratch_view(exec, buffer, bytes));
}

// Per-segment mergeable statistics, allocated (on exec::cuda: copied to the host, synchronising).
template <execution_tag Exec, detail::token_values V>
std::vector<masked_stats> segment_moments(Exec exec, const V& values_in,
                                          std::span<const float> mask,
                                          std::span<const index_t> offsets) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "segment_moments";
  const std::span<const T> values(values_in);
  expect(!offsets.empty(), where, "offsets is empty, expected S + 1 >= 1 elements");
  detail::validate_masked_values(values, mask, where);
  if constexpr (detail::on_host_v<Exec>) expect_offsets(offsets, ssize(values), where, "offsets");
  return backend::reductions_backend<Exec>::moments_to_host(exec, values, mask, offsets);
}

// Statistics of the whole batch (one segment over every token).
template <execution_tag Exec, detail::token_values V>
masked_stats masked_moments(Exec exec, const V& values_in, std::span<const float> mask) {
  using T = detail::value_t<V>;
  const std::span<const T> values(values_in);
  detail::validate_masked_values(values, mask, "masked_moments");
  if constexpr (!detail::on_host_v<Exec>) {
    return backend::reductions_backend<Exec>::moments_to_host(exec, values, mask, {})[0];
  } else {
    const index_t offsets[2] = {0, ssize(values)};
    masked_stats result[1];
    if (!backend::reductions_backend<Exec>::segment_moments(exec, values, mask,
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
