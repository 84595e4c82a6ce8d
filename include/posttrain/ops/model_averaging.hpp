#pragma once
// Model averaging over flat parameter vectors: uniform and weighted averages (model soups,
// checkpoint averaging), the EMA update, and TR-DPO's reference-model sync (soft and hard).
//
//   uniform_average    out = (1/K)·Σ_k θ_k
//   weighted_average   out = Σ_k w_k·θ_k / Σ_k w_k   (normalize = true, default: w_k >= 0, Σ w > 0)
//                      out = Σ_k w_k·θ_k             (normalize = false: any finite w, e.g. task
//                                                     arithmetic; the weights are used as given)
//   ema_update         θ_avg ← d·θ_avg + (1 − d)·θ   (d = decay ∈ [0, 1])
//   soft_update        θ_tgt ← α·θ + (1 − α)·θ_tgt   (α ∈ [0, 1]; Polyak update; α = 1 copies)
//   tr_dpo_sync        soft_update of the reference when step % every == 0 and step > 0
//                      (TR-DPO, Gorbatovski et al. 2024; TRL SyncRefModelCallback: on the end of
//                      optimizer step `global_step` (1-based), if global_step %
//                      ref_model_sync_steps
//                      == 0: θ_ref ← α·θ + (1 − α)·θ_ref; TRL defaults α = 0.6, every 512).
//                      Presets: tr_dpo_soft (α 0.6, τ 512), tr_dpo_hard (α 1: a copy every τ).
//
// Element types: float, double, Eigen::bfloat16 (all spans of one call share it). Arithmetic is in
// accum_t<T> (float for float/bfloat16, double for double) with Eigen array expressions
// (vectorised), then rounded once to T; for bfloat16 the result is computed in float and rounded
// to nearest-even once, not after each addend. Sizes must match; `out`/the target may be the very
// same span as one input (in-place), any other overlap between an output and an input is rejected.
// Every argument is validated before anything is written (posttrain::error). Host memory only.
// Deterministic: a fixed order of operations, no threads.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

template <class T>
inline constexpr bool is_parameter_type_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, Eigen::bfloat16>;

struct weighted_average_options {
  bool normalize = true;  // divide by Σ w (weights must then be >= 0 with a positive sum)
};

struct tr_dpo_sync_options {
  double alpha = 0.6;   // TRL ref_model_mixup_alpha
  index_t every = 512;  // TRL ref_model_sync_steps (τ)
};

namespace presets {
// TR-DPO soft update (TRL defaults): θ_ref ← 0.6·θ + 0.4·θ_ref every 512 steps.
inline constexpr tr_dpo_sync_options tr_dpo_soft{};
// TR-DPO hard update: θ_ref ← θ every 512 steps.
inline constexpr tr_dpo_sync_options tr_dpo_hard{.alpha = 1.0};
}  // namespace presets

namespace detail {

template <class T>
using param_array = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T>
using const_param_map = Eigen::Map<const param_array<T>>;
template <class T>
using param_map = Eigen::Map<param_array<T>>;

// Identical spans are allowed (in place); partial or shifted overlap is not.
template <class T, class U>
bool overlaps_but_differs(std::span<T> a, std::span<U> b) {
  if (a.empty() || b.empty()) return false;
  const auto* a0 = reinterpret_cast<const char*>(a.data());
  const auto* b0 = reinterpret_cast<const char*>(b.data());
  const auto* a1 = a0 + a.size_bytes();
  const auto* b1 = b0 + b.size_bytes();
  const bool overlap = std::less<>{}(a0, b1) && std::less<>{}(b0, a1);
  return overlap && !(a0 == b0 && a.size() == b.size());
}

template <class T>
void expect_parameters(std::span<T> out, std::span<const T> in, std::string_view where,
                       std::string_view out_name, std::string_view in_name) {
  expect_size(in, static_cast<index_t>(out.size()), where, in_name,
              "one value per parameter, as many as the output");
  expect(!overlaps_but_differs(out, in), where, out_name, " and ", in_name,
         " overlap without being the same span (in place needs the identical span)");
}

inline void expect_unit_interval(double x, std::string_view where, std::string_view argument) {
  expect(std::isfinite(x) && x >= 0.0 && x <= 1.0, where, argument, " must be in [0, 1], got ", x);
}

// out = Σ_k c_k·θ_k, in chunks so every input of a chunk is read before out's chunk is written.
template <class T>
void linear_combination(std::span<const std::span<const T>> models, std::span<const double> coef,
                        std::span<T> out) {
  using A = accum_t<T>;
  constexpr std::ptrdiff_t chunk = 4096;
  const auto n = static_cast<std::ptrdiff_t>(out.size());
  param_array<A> acc(std::min(chunk, n));
  for (std::ptrdiff_t begin = 0; begin < n; begin += chunk) {
    const std::ptrdiff_t len = std::min(chunk, n - begin);
    auto a = acc.head(len);
    a.setZero();
    for (std::size_t k = 0; k < models.size(); ++k) {
      const const_param_map<T> x(models[k].data() + begin, len);
      if constexpr (std::is_same_v<T, A>)
        a += A(coef[k]) * x;
      else
        a += A(coef[k]) * x.template cast<A>();
    }
    param_map<T> y(out.data() + begin, len);
    if constexpr (std::is_same_v<T, A>)
      y = a;
    else
      y = a.template cast<T>();
  }
}

// target ← keep·target + (1 − keep)·source, evaluated in accum_t<T>.
template <class T>
void blend(std::span<T> target, std::span<const T> source, double keep) {
  using A = accum_t<T>;
  const auto n = static_cast<std::ptrdiff_t>(target.size());
  param_map<T> y(target.data(), n);
  const const_param_map<T> x(source.data(), n);
  const A k = A(keep), m = A(1.0 - keep);
  if constexpr (std::is_same_v<T, A>)
    y = k * y + m * x;
  else
    y = (k * y.template cast<A>() + m * x.template cast<A>()).template cast<T>();
}

}  // namespace detail

// out = (1/K)·Σ_k models[k]; K >= 1 models of out.size() parameters each.
template <class T>
void uniform_average(std::span<const std::span<const T>> models, std::span<T> out) {
  static_assert(is_parameter_type_v<T>,
                "uniform_average: parameters must be float, double or Eigen::bfloat16");
  constexpr std::string_view where = "uniform_average";
  expect(!models.empty(), where, "models is empty, expected at least one parameter vector");
  for (std::size_t k = 0; k < models.size(); ++k)
    detail::expect_parameters(out, models[k], where, "out", "models[k]");
  if (models.size() == 1 && models[0].data() == out.data()) return;
  const double c = 1.0 / static_cast<double>(models.size());
  std::vector<double> coef(models.size(), c);
  detail::linear_combination(models, std::span<const double>(coef), out);
}

// out = Σ_k w_k·models[k] / Σ_k w_k (normalize) or Σ_k w_k·models[k] (as given).
template <class T>
void weighted_average(std::span<const std::span<const T>> models, std::span<const double> weights,
                      std::span<T> out, const weighted_average_options& options = {}) {
  static_assert(is_parameter_type_v<T>,
                "weighted_average: parameters must be float, double or Eigen::bfloat16");
  constexpr std::string_view where = "weighted_average";
  expect(!models.empty(), where, "models is empty, expected at least one parameter vector");
  expect_size(weights, static_cast<index_t>(models.size()), where, "weights", "one per model");
  double total = 0;
  for (std::size_t k = 0; k < weights.size(); ++k) {
    if (options.normalize)
      expect(std::isfinite(weights[k]) && weights[k] >= 0.0, where, "weights[", k,
             "] = ", weights[k], ", expected a finite weight >= 0 (normalize = true)");
    else
      expect(std::isfinite(weights[k]), where, "weights[", k, "] = ", weights[k],
             ", expected a finite weight");
    total += weights[k];
  }
  if (options.normalize)
    expect(total > 0.0, where, "the weights sum to 0; normalize = true needs a positive sum");
  for (std::size_t k = 0; k < models.size(); ++k)
    detail::expect_parameters(out, models[k], where, "out", "models[k]");
  std::vector<double> coef(weights.begin(), weights.end());
  if (options.normalize)
    for (double& c : coef) c /= total;
  detail::linear_combination(models, std::span<const double>(coef), out);
}

// average ← decay·average + (1 − decay)·params.
template <class T>
void ema_update(std::span<T> average, std::span<const T> params, double decay) {
  static_assert(is_parameter_type_v<T>,
                "ema_update: parameters must be float, double or Eigen::bfloat16");
  constexpr std::string_view where = "ema_update";
  detail::expect_unit_interval(decay, where, "decay");
  detail::expect_parameters(average, params, where, "average", "params");
  detail::blend(average, params, decay);
}

// target ← alpha·source + (1 − alpha)·target.
template <class T>
void soft_update(std::span<T> target, std::span<const T> source, double alpha) {
  static_assert(is_parameter_type_v<T>,
                "soft_update: parameters must be float, double or Eigen::bfloat16");
  constexpr std::string_view where = "soft_update";
  detail::expect_unit_interval(alpha, where, "alpha");
  detail::expect_parameters(target, source, where, "target", "source");
  if (alpha == 1.0) {
    std::copy(source.begin(), source.end(), target.begin());
    return;
  }
  detail::blend(target, source, 1.0 - alpha);
}

// Whether optimizer step `step` (1-based, as TRL's global_step after the step) syncs the reference.
inline bool tr_dpo_should_sync(index_t step, const tr_dpo_sync_options& options = {}) {
  constexpr std::string_view where = "tr_dpo_should_sync";
  expect(options.every >= 1, where, "options.every must be >= 1, got ", options.every);
  expect(step >= 0, where, "step must be >= 0, got ", step);
  return step > 0 && step % options.every == 0;
}

// TR-DPO: on a sync step, reference ← alpha·policy + (1 − alpha)·reference. Returns whether it
// synced. Validates every argument on every call (also on steps that do not sync).
template <class T>
bool tr_dpo_sync(std::span<T> reference, std::span<const T> policy, index_t step,
                 const tr_dpo_sync_options& options = {}) {
  static_assert(is_parameter_type_v<T>,
                "tr_dpo_sync: parameters must be float, double or Eigen::bfloat16");
  constexpr std::string_view where = "tr_dpo_sync";
  detail::expect_unit_interval(options.alpha, where, "options.alpha");
  detail::expect_parameters(reference, policy, where, "reference", "policy");
  if (!tr_dpo_should_sync(step, options)) return false;
  soft_update(reference, policy, options.alpha);
  return true;
}

POSTTRAIN_NAMESPACE_END
