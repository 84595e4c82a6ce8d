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
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/ops/reductions.hpp"

POSTTRAIN_NAMESPACE_BEGIN

enum class whiten_eps_mode {
  add_inside_sqrt,  // (x − μ)·rsqrt(var + eps)        verl, TRL
  clamp_min,        // (x − μ)·rsqrt(max(var, eps))    OpenRLHF
};

enum class whiten_scope {
  batch,        // one mean/variance over every token
  per_segment,  // one mean/variance per segment of offsets (OpenRLHF masked_normalize, per row)
};

enum class degenerate_policy { raise, zero, pass_through };

struct whiten_options {
  double mean_denominator_eps = 0.0;  // added to Σw in every mean (verl 1e-8)
  double count_floor = 0.0;           // denominators are at least this (OpenRLHF per-row: 1)
  variance_kind variance = variance_kind::unbiased;
  whiten_eps_mode eps_mode = whiten_eps_mode::add_inside_sqrt;
  double eps = 1e-8;
  bool shift_mean = true;         // false re-adds μ after scaling
  bool multiply_by_mask = false;  // OpenRLHF masked_normalize multiplies the result by w
  whiten_scope scope = whiten_scope::batch;
  degenerate_policy on_degenerate = degenerate_policy::raise;
};

namespace whiten_conventions {

// Each preset names only what differs from whiten_options' defaults (TRL's masked_whiten).
inline constexpr whiten_options verl{.mean_denominator_eps = 1e-8};

inline constexpr whiten_options trl_ppo{};

inline constexpr whiten_options openrlhf_global{.variance = variance_kind::biased,
                                                .eps_mode = whiten_eps_mode::clamp_min,
                                                .on_degenerate = degenerate_policy::zero};

inline constexpr whiten_options openrlhf_masked_normalize{
    .count_floor = 1.0,
    .variance = variance_kind::biased,
    .eps_mode = whiten_eps_mode::clamp_min,
    .multiply_by_mask = true,
    .scope = whiten_scope::per_segment,
    .on_degenerate = degenerate_policy::zero};

}  // namespace whiten_conventions

// Per-scope affine map: out = (x − mean)·scale + shift, then · w if multiply_by_mask.
enum class whiten_state { normal, degenerate };

struct whiten_coefficients {
  double mean = 0.0;
  double scale = 1.0;
  double shift = 0.0;
  whiten_state state = whiten_state::normal;
};

// The convention formulas from a scope's moments (host and device).
POSTTRAIN_HOST_DEVICE inline whiten_coefficients make_whiten_coefficients(const masked_stats& s,
                                                                          const whiten_options& o) {
  whiten_coefficients c;
  const double count = s.count;
  const bool unbiased = o.variance == variance_kind::unbiased;
  if (!(count > 0.0) || (unbiased && !(count > 1.0))) {
    c.state = whiten_state::degenerate;
    return c;
  }
  const double raw = count + o.mean_denominator_eps;
  const double denom = raw > o.count_floor ? raw : o.count_floor;
  const double mu = s.sum / denom;
  // Σw(x − μ)² from the moments about the exact mean: m2 + count·(mean − μ)².
  const double dm = s.mean - mu;
  const double var_b = (s.m2 + count * dm * dm) / denom;
  const double var = unbiased ? var_b * (count / (count - 1.0)) : var_b;
  const double v = o.eps_mode == whiten_eps_mode::add_inside_sqrt ? var + o.eps
                                                                  : (var > o.eps ? var : o.eps);
  if (v == 0.0) {  // NaN (a NaN value with w != 0) propagates instead
    c.state = whiten_state::degenerate;
    return c;
  }
  c.mean = mu;
  c.scale = 1.0 / std::sqrt(v);
  c.shift = o.shift_mean ? 0.0 : mu;
  return c;
}

// What a degenerate scope writes under the zero / pass_through policies.
POSTTRAIN_HOST_DEVICE constexpr whiten_coefficients degenerate_whiten_coefficients(
    degenerate_policy policy) {
  whiten_coefficients c;
  c.mean = 0.0;
  c.scale = policy == degenerate_policy::pass_through ? 1.0 : 0.0;
  c.shift = 0.0;
  c.state = whiten_state::degenerate;
  return c;
}

// The affine part of one token, in double (host and device).
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE double whiten_affine(double x,
                                                                 const whiten_coefficients& c) {
  return (x - c.mean) * c.scale + c.shift;
}

// One token (host and device): x is not used when w == 0 (the value computed from it is
// discarded by a select, so NaN there cannot leak); a zero scale (the zero policy) gives 0.
template <class T>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE T whiten_value(T x, float w,
                                                           const whiten_coefficients& c,
                                                           bool multiply_by_mask) {
  const double y = whiten_affine(static_cast<double>(x), c);
  const double r = multiply_by_mask ? y * static_cast<double>(w) : y;
  return (w != 0.0f && c.scale != 0.0) ? static_cast<T>(r) : T(0);
}

namespace detail {

template <class Exec>
struct whiten_backend {
  static_assert(always_false_v<Exec>,
                "posttrain::whiten: no backend for this execution tag. exec::cuda needs the CUDA "
                "backend (link posttrain::cuda and include <posttrain/cuda.cuh>).");
};

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

// Coefficients per scope (raising before any write if the policy says so), then the write pass.
template <class Exec, class T>
index_t whiten_finish(Exec exec, std::span<const T> values, std::span<const float> mask,
                      std::span<const index_t> scopes, std::span<const masked_stats> stats,
                      std::span<T> out, const whiten_options& options) {
  const index_t segments = ssize(scopes) - 1;
  std::vector<whiten_coefficients> coefficients(static_cast<std::size_t>(segments));
  index_t degenerate = 0;
  for (index_t s = 0; s < segments; ++s) {
    const masked_stats& st = stats[static_cast<std::size_t>(s)];
    whiten_coefficients c = make_whiten_coefficients(st, options);
    if (c.state == whiten_state::degenerate) {
      if (options.on_degenerate == degenerate_policy::raise)
        fail("whiten",
             options.scope == whiten_scope::batch ? std::string("the batch")
                                                  : "segment " + std::to_string(s),
             " is degenerate: mask weight sum ", st.count,
             options.variance == variance_kind::unbiased ? " (the unbiased variance needs > 1)"
                                                         : " (needs > 0)",
             " or variance + eps == 0; options.on_degenerate = zero or pass_through accepts it");
      c = degenerate_whiten_coefficients(options.on_degenerate);
      ++degenerate;
    }
    coefficients[static_cast<std::size_t>(s)] = c;
  }
  whiten_backend<Exec>::apply(exec, values, mask, scopes,
                              std::span<const whiten_coefficients>(coefficients),
                              options.multiply_by_mask, out);
  return degenerate;
}

}  // namespace detail

// Whitens values into out with statistics computed here. offsets delimit the segments for
// scope::per_segment; with scope::batch they may be empty (if given they are validated and
// otherwise ignored). Returns the number of degenerate scopes handled by zero / pass_through.
template <execution_tag Exec, detail::token_values V>
index_t whiten(Exec exec, const V& values_in, std::span<const float> mask,
               std::span<const index_t> offsets, std::span<detail::value_t<V>> out,
               const whiten_options& options) {
  using T = detail::value_t<V>;
  const std::span<const T> values(values_in);
  const index_t whole[2] = {0, ssize(values)};
  const std::span<const index_t> scopes = detail::validate_whiten_inputs(
      values, mask, offsets, std::span<const T>(out), options, whole, detail::on_host_v<Exec>);
  if constexpr (!detail::on_host_v<Exec>) {
    return detail::whiten_backend<Exec>::whiten(
        exec, values, mask,
        options.scope == whiten_scope::per_segment ? offsets : std::span<const index_t>(),
        nullptr, out, options);
  } else {
    std::vector<masked_stats> stats(scopes.size() - 1);
    // The mask weights are checked during this pass, before anything is written.
    if (!detail::reductions_backend<Exec>::segment_moments(exec, values, mask, scopes,
                                                           std::span<masked_stats>(stats)))
      detail::fail_mask(mask, "whiten");
    return detail::whiten_finish(exec, values, mask, scopes, std::span<const masked_stats>(stats),
                                 out, options);
  }
}

// Batch scope without offsets.
template <execution_tag Exec, detail::token_values V>
index_t whiten(Exec exec, const V& values, std::span<const float> mask,
               std::span<detail::value_t<V>> out, const whiten_options& options) {
  return whiten(exec, values, mask, std::span<const index_t>(), out, options);
}

// Whitens with statistics supplied by the caller: one masked_stats per scope (1 for
// scope::batch, S for per_segment), e.g. the merge() of every micro-batch's or rank's
// masked_moments, so that each part is whitened with the global mean and variance exactly as the
// whole batch would be (OpenRLHF normalises over all experiences; verl over the global batch).
template <execution_tag Exec, detail::token_values V>
index_t whiten_with_moments(Exec exec, const V& values_in, std::span<const float> mask,
                            std::span<const index_t> offsets,
                            std::span<const masked_stats> moments,
                            std::span<detail::value_t<V>> out, const whiten_options& options) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "whiten";
  const std::span<const T> values(values_in);
  const index_t whole[2] = {0, ssize(values)};
  const std::span<const index_t> scopes = detail::validate_whiten_inputs(
      values, mask, offsets, std::span<const T>(out), options, whole, detail::on_host_v<Exec>);
  expect_size(moments, ssize(scopes) - 1, where, "moments",
              "one per scope: 1 for scope::batch, S for per_segment");
  if constexpr (!detail::on_host_v<Exec>) {
    return detail::whiten_backend<Exec>::whiten(
        exec, values, mask,
        options.scope == whiten_scope::per_segment ? offsets : std::span<const index_t>(),
        moments.data(), out, options);
  } else {
    for (std::size_t s = 0; s < moments.size(); ++s) {
      const masked_stats& m = moments[s];
      expect(std::isfinite(m.count) && m.count >= 0.0 && std::isfinite(m.sum) &&
                 std::isfinite(m.mean) && std::isfinite(m.m2) && m.m2 >= 0.0,
             where, "moments[", s, "] is not finite with count >= 0 and m2 >= 0");
    }
    expect_mask(mask, where, "mask");
    return detail::whiten_finish(exec, values, mask, scopes, moments, out, options);
  }
}

template <execution_tag Exec, detail::token_values V>
index_t whiten_with_moments(Exec exec, const V& values, std::span<const float> mask,
                            const masked_stats& moments, std::span<detail::value_t<V>> out,
                            const whiten_options& options) {
  // `moments` is a host value on every backend (the device one copies it into the stream).
  if constexpr (!detail::on_host_v<Exec>) {
    using T = detail::value_t<V>;
    const std::span<const T> v(values);
    const index_t whole[2] = {0, ssize(v)};
    whiten_options batch = options;
    batch.scope = whiten_scope::batch;
    detail::validate_whiten_inputs(v, mask, std::span<const index_t>(), std::span<const T>(out),
                                   batch, whole, false);
    expect(std::isfinite(moments.count) && moments.count >= 0.0 && std::isfinite(moments.sum) &&
               std::isfinite(moments.mean) && std::isfinite(moments.m2) && moments.m2 >= 0.0,
           "whiten", "moments is not finite with count >= 0 and m2 >= 0");
    return detail::whiten_backend<Exec>::whiten_host_moments(exec, v, mask, moments, out, batch);
  } else {
    return whiten_with_moments(exec, values, mask, std::span<const index_t>(),
                               std::span<const masked_stats>(&moments, 1), out, options);
  }
}

POSTTRAIN_NAMESPACE_END

#include "posttrain/backend/cpu/whiten.hpp"
