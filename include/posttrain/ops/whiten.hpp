#pragma once
// Whitening (advantage normalisation) of token values with every peer convention as a field.
//
//   values[N] float or double, mask[N] float weights (empty = all ones), offsets[S+1] (only for
//   scope::per_segment), out[N] of the values' type; out may be values itself (in place), it must
//   not otherwise overlap it.
//
// Over each scope (the whole batch, or each segment), with count = Σw, S = Σw·x:
//   D       = max(count + mean_denominator_eps, count_floor)
//   μ       = S / D
//   var_b   = Σ w·(x − μ)² / D
//   var     = var_b                          (variance_kind::biased)
//           = var_b · count / (count − 1)    (variance_kind::unbiased, Bessel on Σw as verl/TRL)
//   v       = var + eps                      (eps_mode::add_inside_sqrt)
//           = max(var, eps)                  (eps_mode::clamp_min)
//   out     = ((x − μ) / sqrt(v) + (shift_mean ? 0 : μ)) · (multiply_by_mask ? w : 1)   where w != 0
//   out     = 0                                                                          where w == 0
// Masked-out positions (w == 0) are never read and are written as 0, whatever the convention
// (peers write the formula there and multiply by the mask later, which gives the same 0 unless the
// input there is NaN/inf). With 0/1 masks multiply_by_mask is therefore a no-op; it matters only
// for fractional weights.
//
// Degenerate scope: count == 0, or variance_kind::unbiased with count <= 1, or v == 0 (only
// possible with eps == 0 on constant values). Policy (on_degenerate):
//   raise         throw posttrain::error before anything is written (verl / TRL raise)
//   zero          write 0 on the whole scope
//   pass_through  write x unchanged where w != 0 (times w with multiply_by_mask), 0 where w == 0
// The return value is the number of degenerate scopes (0 or 1 for scope::batch).
//
// Presets (whiten_conventions::, section 1.3 of the reference):
//   verl         masked_whiten: mean Σwx/(Σw + 1e-8), masked_var unbiased (its inner masked_mean
//                also divides by Σw + 1e-8), (x−μ)·rsqrt(var + 1e-8), raises on Σw == 0 or 1
//   trl_ppo      masked_whiten: mean Σwx/Σw, unbiased, (x−μ)·rsqrt(var + 1e-8), raises
//   openrlhf_global   advantage normalisation over all experiences: mean Σwx/Σw, biased,
//                (x−μ)·rsqrt(max(var, 1e-8)), no mask multiply (we still zero masked-out outputs)
//   openrlhf_masked_normalize   per row: count clamped >= 1, biased, (x−μ)·w·rsqrt(max(var, eps))
// shift_mean = false (verl/TRL option) re-adds μ. Edit a copy of a preset for other settings:
//   auto o = whiten_conventions::verl; o.shift_mean = false;
//
// API (Exec is exec::host; exec::cuda needs the CUDA backend header):
//   whiten(exec, values, mask, [offsets,] out, options) -> index_t degenerate scopes
//   whiten_with_moments(exec, values, mask, offsets, moments[1 or S], out, options)
//   whiten_with_moments(exec, values, mask, const masked_stats& global, out, options)
//     whiten with caller-supplied statistics: merge() of every micro-batch's / rank's
//     masked_moments whitens each part exactly as the whole batch would be.
//   whiten(comm, exec::host, values, mask, [offsets,] out, options)
//     over the ranks of a dist::communicator: the statistics of every scope merged over ranks
//     (dist/normalizers.hpp), so R ranks whiten as one process over all the data
// Every form has an overload taking a trailing `workspace` (whiten_workspace_bytes): no
// allocation on the host; the others allocate their scratch. The contract (options, presets,
// coefficients, backend template) is ops/whiten_types.hpp.
// Device memory (exec::cuda{stream}, with <posttrain/cuda.cuh>; backend/cuda/whiten.cuh): every
// span is device memory (moments too). The front end checks options and sizes and the aliasing
// of out (pointers only); NOT checked on the device: offsets' contents, mask weights, the finiteness
// of caller moments. The statistics stay on the device (no host round trip); on_degenerate = raise
// costs one stream synchronisation before the write pass (and still throws before writing);
// with zero / pass_through the call is asynchronous and returns -1 (the degenerate count stays on
// the device: backend::cuda::whiten can write it to a device counter).
// Cost on the CPU: one reduction pass (read x, w) and one write pass (read x, w, write out).
//
// No backward: whitening is applied to advantages, which carry no gradient.
#include <cmath>
#include <span>
#include <string>
#include <string_view>

#include "posttrain/backend/cpu/whiten.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/dist/communicator.hpp"
#include "posttrain/dist/normalizers.hpp"
#include "posttrain/ops/reductions.hpp"
#include "posttrain/ops/whiten_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace detail {

// Scopes of a call, for sizing its workspace (before validation: offsets may still be invalid).
inline index_t whiten_scope_count(const whiten_options& options, std::span<const index_t> offsets) {
  return options.scope == whiten_scope::per_segment && !offsets.empty() ? ssize(offsets) - 1
                                                                         : index_t(1);
}

inline bool finite_moments(const masked_stats& m) {
  return std::isfinite(m.count) && m.count >= 0.0 && std::isfinite(m.sum) && std::isfinite(m.mean) &&
         std::isfinite(m.m2) && m.m2 >= 0.0;
}

inline void validate_whiten_options(const whiten_options& o) {
  constexpr std::string_view where = "whiten";
  expect_non_negative(o.mean_denominator_eps, where, "options.mean_denominator_eps");
  expect_non_negative(o.count_floor, where, "options.count_floor");
  expect_non_negative(o.eps, where, "options.eps");
  expect(o.variance == variance_kind::biased || o.variance == variance_kind::unbiased, where,
         "options.variance is not a variance_kind");
  expect(o.eps_mode == whiten_eps_mode::add_inside_sqrt ||
             o.eps_mode == whiten_eps_mode::clamp_min,
         where, "options.eps_mode is not a whiten_eps_mode");
  expect(o.scope == whiten_scope::batch || o.scope == whiten_scope::per_segment, where,
         "options.scope is not a whiten_scope");
  expect(o.on_degenerate == degenerate_policy::raise || o.on_degenerate == degenerate_policy::zero ||
             o.on_degenerate == degenerate_policy::pass_through,
         where, "options.on_degenerate is not a degenerate_policy");
}

// Shared by both entry points: sizes, aliasing, offsets; returns the scopes' offsets.
// On the device (on_host = false) offsets are checked by size only.
template <class T>
std::span<const index_t> validate_whiten_inputs(std::span<const T> values,
                                                std::span<const float> mask,
                                                std::span<const index_t> offsets,
                                                std::span<const T> out,
                                                const whiten_options& options,
                                                const index_t (&whole)[2], bool on_host = true) {
  constexpr std::string_view where = "whiten";
  const index_t n = ssize(values);
  validate_whiten_options(options);
  validate_masked_values(values, mask, where);
  expect_size(out, n, where, "out", "one per token of values");
  expect(values.data() == out.data() || n == 0 || values.data() + n <= out.data() ||
             out.data() + n <= values.data(),
         where, "out overlaps values without being the same array (in place needs out == values)");
  if (options.scope == whiten_scope::per_segment) {
    expect(!offsets.empty(), where,
           "options.scope is per_segment but offsets is empty (expected S + 1 offsets)");
    if (on_host) expect_offsets(offsets, n, where, "offsets");
    return offsets;
  }
  if (!offsets.empty() && on_host) expect_offsets(offsets, n, where, "offsets");
  return std::span<const index_t>(whole);
}

}  // namespace detail

// Bytes of workspace a whiten call needs for `scopes` scopes (1 for scope::batch, S for
// per_segment); with_moments: the whiten_with_moments form (statistics supplied by the caller).
template <execution_tag Exec>
std::size_t whiten_workspace_bytes(Exec exec, index_t scopes, bool with_moments = false) {
  expect(scopes >= 0, "whiten_workspace_bytes", "scopes is ", scopes, ", expected >= 0");
  return backend::whiten_backend<Exec>::workspace_bytes(exec, scopes, with_moments);
}

// Whitens values into out with statistics computed here. offsets delimit the segments for
// scope::per_segment; with scope::batch they may be empty (if given they are validated and
// otherwise ignored). Returns the number of degenerate scopes handled by zero / pass_through.
// Scratch comes from ws (whiten_workspace_bytes): no allocation on the host.
template <execution_tag Exec, detail::token_values V>
index_t whiten(Exec exec, const V& values_in, std::span<const float> mask,
               std::span<const index_t> offsets, std::span<detail::value_t<V>> out,
               const whiten_options& options, workspace ws) {
  using T = detail::value_t<V>;
  const std::span<const T> values(values_in);
  const index_t whole[2] = {0, ssize(values)};
  detail::validate_whiten_inputs(values, mask, offsets, std::span<const T>(out), options, whole,
                                 detail::on_host_v<Exec>);
  // The mask weights are checked by the backend's reduction pass, before anything is written.
  return backend::whiten_backend<Exec>::whiten(
      exec, values, mask,
      options.scope == whiten_scope::per_segment ? offsets : std::span<const index_t>(), nullptr,
      out, options, ws);
}

// The same, with scratch allocated for this call.
template <execution_tag Exec, detail::token_values V>
index_t whiten(Exec exec, const V& values, std::span<const float> mask,
               std::span<const index_t> offsets, std::span<detail::value_t<V>> out,
               const whiten_options& options) {
  workspace_buffer buffer;
  const index_t scopes = detail::whiten_scope_count(options, offsets);
  return whiten(exec, values, mask, offsets, out, options,
                detail::scratch_view(exec, buffer, whiten_workspace_bytes(exec, scopes)));
}

// Batch scope without offsets.
template <execution_tag Exec, detail::token_values V>
index_t whiten(Exec exec, const V& values, std::span<const float> mask,
               std::span<detail::value_t<V>> out, const whiten_options& options) {
  return whiten(exec, values, mask, std::span<const index_t>(), out, options);
}

template <execution_tag Exec, detail::token_values V>
index_t whiten(Exec exec, const V& values, std::span<const float> mask,
               std::span<detail::value_t<V>> out, const whiten_options& options, workspace ws) {
  return whiten(exec, values, mask, std::span<const index_t>(), out, options, ws);
}

// Whitens with statistics supplied by the caller: one masked_stats per scope (1 for
// scope::batch, S for per_segment), e.g. the merge() of every micro-batch's or rank's
// masked_moments, so that each part is whitened with the global mean and variance exactly as the
// whole batch would be (OpenRLHF normalises over all experiences; verl over the global batch).
// The moments are in Exec's memory.
template <execution_tag Exec, detail::token_values V>
index_t whiten_with_moments(Exec exec, const V& values_in, std::span<const float> mask,
                            std::span<const index_t> offsets,
                            std::span<const masked_stats> moments,
                            std::span<detail::value_t<V>> out, const whiten_options& options,
                            workspace ws) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "whiten";
  const std::span<const T> values(values_in);
  const index_t whole[2] = {0, ssize(values)};
  const std::span<const index_t> scopes = detail::validate_whiten_inputs(
      values, mask, offsets, std::span<const T>(out), options, whole, detail::on_host_v<Exec>);
  expect_size(moments, ssize(scopes) - 1, where, "moments",
              "one per scope: 1 for scope::batch, S for per_segment");
  if constexpr (detail::on_host_v<Exec>) {
    for (std::size_t s = 0; s < moments.size(); ++s)
      expect(detail::finite_moments(moments[s]), where, "moments[", s,
             "] is not finite with count >= 0 and m2 >= 0");
    expect_mask(mask, where, "mask");  // no reduction pass reads the mask here
  }
  return backend::whiten_backend<Exec>::whiten(
      exec, values, mask,
      options.scope == whiten_scope::per_segment ? offsets : std::span<const index_t>(),
      moments.data(), out, options, ws);
}

template <execution_tag Exec, detail::token_values V>
index_t whiten_with_moments(Exec exec, const V& values, std::span<const float> mask,
                            std::span<const index_t> offsets,
                            std::span<const masked_stats> moments,
                            std::span<detail::value_t<V>> out, const whiten_options& options) {
  workspace_buffer buffer;
  return whiten_with_moments(exec, values, mask, offsets, moments, out, options,
                             detail::scratch_view(exec, buffer,
                                                  whiten_workspace_bytes(exec, ssize(moments), true)));
}

// Batch scope with one set of statistics held on the host (on exec::cuda it is copied into the
// stream first).
template <execution_tag Exec, detail::token_values V>
index_t whiten_with_moments(Exec exec, const V& values, std::span<const float> mask,
                            const masked_stats& moments, std::span<detail::value_t<V>> out,
                            const whiten_options& options, workspace ws) {
  if constexpr (detail::on_host_v<Exec>) {
    return whiten_with_moments(exec, values, mask, std::span<const index_t>(),
                               std::span<const masked_stats>(&moments, 1), out, options, ws);
  } else {
    using T = detail::value_t<V>;
    const std::span<const T> v(values);
    const index_t whole[2] = {0, ssize(v)};
    whiten_options batch = options;
    batch.scope = whiten_scope::batch;
    detail::validate_whiten_inputs(v, mask, std::span<const index_t>(), std::span<const T>(out),
                                   batch, whole, false);
    expect(detail::finite_moments(moments), "whiten",
           "moments is not finite with count >= 0 and m2 >= 0");
    return backend::whiten_backend<Exec>::whiten_host_moments(exec, v, mask, moments, out, batch,
                                                              ws);
  }
}

template <execution_tag Exec, detail::token_values V>
index_t whiten_with_moments(Exec exec, const V& values, std::span<const float> mask,
                            const masked_stats& moments, std::span<detail::value_t<V>> out,
                            const whiten_options& options) {
  workspace_buffer buffer;
  return whiten_with_moments(exec, values, mask, moments, out, options,
                             detail::scratch_view(exec, buffer, whiten_workspace_bytes(exec, 1, true)));
}

// Over the ranks of `comm` (dist/communicator.hpp; host communicators and exec::host): every
// scope's statistics are merged over the ranks (dist/normalizers.hpp) before the write pass, so
// each rank's tokens are whitened exactly as one process whitening all ranks' data would (up to
// the rounding of the merge). scope::batch: one global batch. scope::per_segment: segment s of
// every rank is a part of the same global segment s (e.g. group s with its samples spread over
// ranks), so every rank passes the same S. Two collectives per call (a small header, then 4·S·R
// doubles); every rank must call it, and when one rank's input is rejected every rank throws.
template <class C, execution_tag Exec>
  requires dist::communicator<C>
std::size_t whiten_workspace_bytes(C& comm, Exec exec, index_t scopes) {
  return workspace_size().add<masked_stats>(static_cast<std::size_t>(scopes)).bytes() +
         dist::all_reduce_moments_workspace_bytes(comm, scopes) +
         whiten_workspace_bytes(exec, scopes, true);
}

template <class C, execution_tag Exec, detail::token_values V>
  requires dist::communicator<C>
index_t whiten(C& comm, Exec exec, const V& values_in, std::span<const float> mask,
               std::span<const index_t> offsets, std::span<detail::value_t<V>> out,
               const whiten_options& options, workspace ws) {
  using T = detail::value_t<V>;
  static_assert(detail::on_host_v<Exec>,
                "posttrain::whiten over a communicator runs on exec::host (the merged statistics "
                "are host values; on the device, reduce masked_moments and call "
                "whiten_with_moments)");
  dist::detail::require_host_communicator<C>();
  constexpr std::string_view where = "whiten";
  const std::span<const T> values(values_in);
  std::string failure;
  std::span<masked_stats> stats;
  std::span<const index_t> scopes;
  const index_t whole[2] = {0, ssize(values)};
  try {
    scopes = detail::validate_whiten_inputs(values, mask, offsets, std::span<const T>(out),
                                            options, whole);
    stats = ws.take<masked_stats>(scopes.size() - 1, where);
    // The mask weights are checked in this pass, before anything is written.
    if (!backend::reductions_backend<Exec>::segment_moments(exec, values, mask, scopes, stats))
      detail::fail_mask(mask, where);
  } catch (const error& e) {
    failure = e.what();
    stats = {};
  }
  dist::detail::merge_moments_over_ranks(comm, stats, ws, failure, where);
  return backend::whiten_backend<Exec>::whiten(
      exec, values, mask,
      options.scope == whiten_scope::per_segment ? offsets : std::span<const index_t>(),
      stats.data(), out, options, ws);
}

template <class C, execution_tag Exec, detail::token_values V>
  requires dist::communicator<C>
index_t whiten(C& comm, Exec exec, const V& values, std::span<const float> mask,
               std::span<const index_t> offsets, std::span<detail::value_t<V>> out,
               const whiten_options& options) {
  workspace_buffer buffer;
  const index_t scopes = detail::whiten_scope_count(options, offsets);
  return whiten(comm, exec, values, mask, offsets, out, options,
                buffer.view(whiten_workspace_bytes(comm, exec, scopes)));
}

// Batch scope without offsets, over the ranks of comm.
template <class C, execution_tag Exec, detail::token_values V>
  requires dist::communicator<C>
index_t whiten(C& comm, Exec exec, const V& values, std::span<const float> mask,
               std::span<detail::value_t<V>> out, const whiten_options& options) {
  return whiten(comm, exec, values, mask, std::span<const index_t>(), out, options);
}

POSTTRAIN_NAMESPACE_END
