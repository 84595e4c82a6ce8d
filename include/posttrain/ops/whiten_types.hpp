#pragma once
// The contract of the whitening family (ops/whiten.hpp): options and peer presets, the per-scope
// coefficients and the per-token formula (host and device), and the backend template both
// backends implement. Included by the front end and the backends; includes neither.
//
// backend::whiten_backend<Exec> members (exec::host in backend/cpu/whiten.hpp, exec::cuda in
// backend/cuda/whiten.cuh; spans in Exec's memory, validated by the front end):
//   std::size_t workspace_bytes(Exec, index_t scopes, bool with_moments)
//   index_t whiten(Exec, span<const T> values, span<const float> mask,
//                  span<const index_t> offsets,   // per_segment: S + 1; batch: empty
//                  const masked_stats* moments,   // Exec memory, one per scope, or nullptr
//                  span<T> out, const whiten_options&, workspace ws)
//       statistics (unless given), coefficients, then the write pass; the number of degenerate
//       scopes, or -1 where it stays on the device; degenerate_policy::raise throws before any
//       write
//   index_t whiten_host_moments(Exec, values, mask, const masked_stats& moments (host),
//                               out, const whiten_options& (batch scope), workspace ws)
#include <cmath>
#include <span>
#include <string>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/ops/reductions_types.hpp"

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

// Host: the coefficients of every scope from its moments, degenerate scopes replaced by the
// policy's coefficients; with degenerate_policy::raise, throws (before the caller writes
// anything). Returns the number of degenerate scopes.
inline index_t whiten_coefficients_host(std::span<const masked_stats> stats,
                                        const whiten_options& options,
                                        std::span<whiten_coefficients> coefficients) {
  index_t degenerate = 0;
  for (std::size_t s = 0; s < stats.size(); ++s) {
    const masked_stats& st = stats[s];
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
    coefficients[s] = c;
  }
  return degenerate;
}

}  // namespace detail

namespace backend {

// The primary template: a tag without a specialisation stops compilation with this sentence.
template <class Exec>
struct whiten_backend {
  static_assert(::posttrain::detail::always_false_v<Exec>,
                "posttrain::whiten: no backend for this execution tag. exec::cuda needs the CUDA "
                "backend (link posttrain::cuda and include <posttrain/cuda.cuh>).");
};

}  // namespace backend

POSTTRAIN_NAMESPACE_END
