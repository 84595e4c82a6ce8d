#pragma once
// Multi-objective group advantages: TRL GRPOTrainer multi_objective_aggregation =
// "sum_then_normalize" (its default) and "normalize_then_sum" (GDPO, group reward-decoupled
// normalisation; reference section 2.2).
//
// INPUT CONTRACT: the rewards of K reward functions for B sequences, a row-major matrix_view
// rewards[B, K] (TRL rewards_per_func, gathered over every process: all statistics of a group and
// of the batch must be in the call), reward weights w[K] (empty = all 1; TRL reward_weights), and
// contiguous groups group_offsets[G + 1] over the B rows (TRL: equal groups of num_generations).
// NaN marks an unscorable entry (a reward function that returned None); ±inf is rejected. Output
// A[B] of the rewards' type; broadcast_to_tokens() writes it per token. No gradient.
//
// sum_then_normalize:   R_i = Σ_{k: r_ik not NaN} w_k·r_ik  (NaN when every r_ik is NaN: the row is
//                       unscorable), then group_advantages(R, options.group) (advantage/group.hpp:
//                       nanmean / nanstd per group, scale group / batch / none, NaN rows get 0).
//                       group_conventions::trl is TRL's scale_rewards="group".
// normalize_then_sum (GDPO):
//   per function k and group g over the scorable entries (S = #{i ∈ g: r_ik not NaN}):
//     μ_gk = mean, σ_gk = std (unbiased by default: TRL nanstd; S <= 1 → NaN, a group of one member
//            → 0 as TRL's num_generations = 1)
//     z_ik = (r_ik − μ_gk) / (σ_gk + ε)          (NaN when r_ik or σ_gk is NaN: dropped below)
//   R_i  = Σ_{k: z_ik not NaN} w_k·z_ik           (TRL nansum)
//   A_i  = (R_i − nanmean(R)) / (nanstd(R) + ε)   over the batch; NaN → 0 (nan_to_num)
//   An entry whose group has zero variance gives z = 0 (for every ε > 0); a group of one member,
//   or with one scorable entry, contributes 0 for that function.
//   Unscorable rows (every z_ik NaN), unscorable_rows:
//     excluded     R_i = NaN: left out of the batch mean / std, A_i = 0 (reference section 2.2:
//                  TRL HEAD's nanmean / nanstd)
//     zero_reward  R_i = 0 (a plain nansum of nothing) and the row enters the batch statistics as
//                  0, A_i = −mean/(std + ε) (TRL releases whose batch z-score is the plain
//                  rewards.mean() / rewards.std() after nansum)
//   ε = options.epsilon (1e-4) in both z-scores.
//
// Presets (multi_objective_conventions::): trl (sum_then_normalize, group_conventions::trl),
// trl_batch (scale_rewards="batch"), trl_none (scale_rewards="none"), trl_gdpo
// (normalize_then_sum, unbiased, ε = 1e-4, unscorable rows excluded).
// nan = raise (in options.nan) rejects every NaN entry before anything is written.
// Arithmetic in double. Host memory only (exec::host), no stream.
// Scratch: multi_objective_advantages_workspace_bytes(exec::host, B, G, options) (gdpo_advantages_
// workspace_bytes) bytes for the overloads taking a posttrain::workspace, which allocate nothing;
// the overloads without one allocate that much for the call. Both give the same bits.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "posttrain/advantage/common.hpp"
#include "posttrain/advantage/group.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/views.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/ops/reductions.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace advantage {

enum class multi_objective {
  sum_then_normalize,  // weighted sum of the functions, then GRPO group normalisation (TRL default)
  normalize_then_sum,  // GDPO: per-function group z-scores, weighted sum, batch z-score
};

enum class unscorable_rows {
  excluded,     // R = NaN, left out of the batch statistics, A = 0
  zero_reward,  // R = 0, counted in the batch statistics
};

struct multi_objective_options {
  multi_objective aggregation = multi_objective::sum_then_normalize;
  group_options group = group_conventions::trl;  // sum_then_normalize only
  // normalize_then_sum only:
  variance_kind std_kind = variance_kind::unbiased;
  double epsilon = 1e-4;
  unscorable_rows unscorable = unscorable_rows::excluded;
  nan_policy nan = nan_policy::ignore;  // both aggregations
};

namespace multi_objective_conventions {

inline constexpr multi_objective_options trl{};
inline constexpr multi_objective_options trl_batch{.group = group_conventions::trl_batch};
inline constexpr multi_objective_options trl_none{.group = group_conventions::trl_none};
inline constexpr multi_objective_options trl_gdpo{.aggregation =
                                                      multi_objective::normalize_then_sum};

}  // namespace multi_objective_conventions

// z of one entry of one function (host and device); NaN when r is NaN or the group's σ is
// undefined (fewer than two scorable entries in a group of several members).
POSTTRAIN_HOST_DEVICE inline double gdpo_zscore(double r, const masked_stats& s, index_t members,
                                                variance_kind kind, double epsilon) {
  if (r != r) return r;
  if (members <= 1) return (r - s.mean) / epsilon;  // σ := 0 (TRL num_generations = 1)
  if (!(s.count > 1.0)) return NAN;
  return (r - s.mean) / (std::sqrt(s.variance(kind)) + epsilon);
}

namespace detail {

template <class T>
void validate_multi_objective(const matrix_view<const T>& rewards, std::span<const double> weights,
                              std::span<const index_t> group_offsets, std::span<T> out,
                              const multi_objective_options& o, std::string_view where) {
  expect(o.aggregation == multi_objective::sum_then_normalize ||
             o.aggregation == multi_objective::normalize_then_sum,
         where, "options.aggregation is not a multi_objective");
  expect(o.nan == nan_policy::raise || o.nan == nan_policy::ignore, where,
         "options.nan is not a nan_policy");
  expect(o.unscorable == unscorable_rows::excluded || o.unscorable == unscorable_rows::zero_reward,
         where, "options.unscorable is not an unscorable_rows");
  expect(o.std_kind == variance_kind::biased || o.std_kind == variance_kind::unbiased, where,
         "options.std_kind is not a variance_kind");
  expect_positive(o.epsilon, where, "options.epsilon");
  if (o.aggregation == multi_objective::sum_then_normalize) validate_group_options(o.group, where);
  expect_matrix(rewards, where, "rewards");
  expect(rewards.rows == 0 || rewards.cols >= 1, where,
         "rewards has no column, expected one column per reward function");
  expect_size_or_empty(weights, rewards.cols, where, "weights",
                       "one weight per reward function (column), or empty (all 1)");
  for (std::size_t k = 0; k < weights.size(); ++k)
    expect(std::isfinite(weights[k]), where, "weights[", k, "] = ", weights[k],
           ", expected finite");
  validate_groups(group_offsets, rewards.rows, where);
  expect_size(out, rewards.rows, where, "out", "one advantage per row of rewards");
  for (index_t i = 0; i < rewards.rows; ++i)
    for (index_t k = 0; k < rewards.cols; ++k) {
      const double r = static_cast<double>(rewards(i, k));
      if (std::isnan(r) && o.nan == nan_policy::ignore) continue;
      if (!std::isfinite(r))
        ::posttrain::detail::fail(where, "rewards(", i, ", ", k, ") = ", r,
                                  o.nan == nan_policy::ignore
                                      ? ", expected a finite reward or NaN (unscorable)"
                                      : ", expected a finite reward (nan_policy::ignore accepts "
                                        "NaN as unscorable)");
    }
  // out is written only after every read of rewards; it must not overlap them partially.
  const auto* lo = reinterpret_cast<const unsigned char*>(rewards.data);
  const auto* hi = rewards.rows == 0
                       ? lo
                       : reinterpret_cast<const unsigned char*>(
                             rewards.data + (rewards.rows - 1) * rewards.ld + rewards.cols);
  const auto* po = reinterpret_cast<const unsigned char*>(out.data());
  expect(out.empty() || lo == hi || po + out.size_bytes() <= lo || hi <= po, where,
         "out overlaps rewards, expected a separate buffer");
}

}  // namespace detail

// Bytes of the workspace multi_objective_advantages(exec::host, ..., ws) needs for B = `rows`
// rows in G = `groups` groups: R[B], then with sum_then_normalize A[B] and group_advantages'
// scratch (nan_policy::ignore), with normalize_then_sum one column, its scorable weights, the
// rows with a defined z and the batch weights [B], and the moments of every group [G].
inline std::size_t multi_objective_advantages_workspace_bytes(
    exec::host exec, index_t rows, index_t groups, const multi_objective_options& options = {}) {
  constexpr std::string_view where = "advantage::multi_objective_advantages_workspace_bytes";
  expect(rows >= 0, where, "rows is ", rows, ", expected >= 0");
  expect(groups >= 0, where, "groups is ", groups, ", expected >= 0");
  const auto b = static_cast<std::size_t>(rows);
  workspace_size size;
  size.add<double>(b);
  if (options.aggregation == multi_objective::sum_then_normalize) {
    group_options g = options.group;
    g.nan = nan_policy::ignore;
    size.add<double>(b);
    return size + group_advantages_workspace_bytes(exec, rows, groups, g);
  }
  return size.add<double>(b)
      .add<float>(b)
      .add<unsigned char>(b)
      .add<masked_stats>(static_cast<std::size_t>(groups))
      .add<float>(b);
}

// Multi-objective advantages A[B] on the host with caller scratch
// (multi_objective_advantages_workspace_bytes): no allocation; the allocating form below is this
// call over a workspace_buffer.
template <class T>
requires(std::is_same_v<T, float> || std::is_same_v<T, double>) void multi_objective_advantages(
    exec::host exec, const matrix_view<const T>& rewards, std::span<const double> weights,
    std::span<const index_t> group_offsets, std::span<T> out,
    const multi_objective_options& options, workspace ws) {
  constexpr std::string_view where = "advantage::multi_objective_advantages";
  detail::validate_multi_objective(rewards, weights, group_offsets, out, options, where);
  const index_t B = rewards.rows, K = rewards.cols;
  const auto b = static_cast<std::size_t>(B);
  auto w = [&](index_t k) { return weights.empty() ? 1.0 : weights[static_cast<std::size_t>(k)]; };
  const std::span<double> R = ws.take<double>(b, where);

  if (options.aggregation == multi_objective::sum_then_normalize) {
    const std::span<double> a = ws.take<double>(b, where);
    for (index_t i = 0; i < B; ++i) {
      double s = 0.0;
      bool any = false;
      for (index_t k = 0; k < K; ++k) {
        const double r = static_cast<double>(rewards(i, k));
        if (r == r) s += w(k) * r, any = true;
      }
      R[static_cast<std::size_t>(i)] = any ? s : NAN;
    }
    group_options g = options.group;
    g.nan = nan_policy::ignore;  // NaN here only marks unscorable rows that options.nan accepted
    // group_advantages takes the rest of ws before it writes a; out is written after.
    group_advantages(exec, std::span<const double>(R), group_offsets, a, g, ws);
    for (std::size_t i = 0; i < a.size(); ++i) out[i] = static_cast<T>(a[i]);
    return;
  }

  // normalize_then_sum
  const std::span<double> column = ws.take<double>(b, where);
  const std::span<float> scorable = ws.take<float>(b, where);
  const std::span<unsigned char> any = ws.take<unsigned char>(b, where);  // a z was added to R_i
  const std::span<masked_stats> stats = ws.take<masked_stats>(group_offsets.size() - 1, where);
  const std::span<float> defined = ws.take<float>(b, where);
  std::fill(R.begin(), R.end(), 0.0);
  std::fill(any.begin(), any.end(), static_cast<unsigned char>(0));
  for (index_t k = 0; k < K; ++k) {
    for (index_t i = 0; i < B; ++i) {
      const double r = static_cast<double>(rewards(i, k));
      column[static_cast<std::size_t>(i)] = r;
      scorable[static_cast<std::size_t>(i)] = r == r ? 1.0f : 0.0f;
    }
    // NaN entries carry weight 0 and are never read by the moments.
    if (!backend::reductions_backend<exec::host>::segment_moments(
            exec, std::span<const double>(column), std::span<const float>(scorable),
            group_offsets, stats))
      ::posttrain::detail::fail_mask(std::span<const float>(scorable), "segment_moments");
    detail::advantage_backend<exec::host>::for_each_member(
        exec, group_offsets, [&](index_t g, index_t i) {
          const auto gi = static_cast<std::size_t>(g);
          const double z = gdpo_zscore(column[static_cast<std::size_t>(i)], stats[gi],
                                       group_offsets[gi + 1] - group_offsets[gi], options.std_kind,
                                       options.epsilon);
          if (z == z) {
            R[static_cast<std::size_t>(i)] += w(k) * z;
            any[static_cast<std::size_t>(i)] = 1;
          }
        });
  }
  for (std::size_t i = 0; i < b; ++i)
    defined[i] = !any[i] && options.unscorable == unscorable_rows::excluded ? 0.0f : 1.0f;
  const masked_stats s =
      masked_moments(exec, std::span<const double>(R), std::span<const float>(defined));
  // TRL: std over one row is NaN (nanstd) or 0 (numel <= 1): either way A = 0 there.
  const double d = s.count > 1.0 ? std::sqrt(s.variance(options.std_kind)) + options.epsilon : 0.0;
  for (std::size_t i = 0; i < b; ++i) {
    const double a = (defined[i] != 0.0f && d != 0.0) ? (R[i] - s.mean) / d : 0.0;
    out[i] = static_cast<T>(a);
  }
}

// Multi-objective advantages A[B]; see the header comment. The scratch is allocated for this
// call (the workspace form above over a workspace_buffer).
template <execution_tag Exec, class T>
requires(std::is_same_v<T, float> || std::is_same_v<T, double>) void multi_objective_advantages(
    Exec exec, const matrix_view<const T>& rewards, std::span<const double> weights,
    std::span<const index_t> group_offsets, std::span<T> out,
    const multi_objective_options& options = {}) {
  static_assert(std::is_same_v<Exec, exec::host>,
                "posttrain::advantage::multi_objective_advantages runs on exec::host only: copy "
                "the rewards to host memory");
  // Sized from the shapes alone (clamped, so that a bad shape reaches the workspace form's
  // validation and its message rather than the size function's).
  const index_t rows = rewards.rows > 0 ? rewards.rows : 0;
  const index_t groups = group_offsets.empty() ? 0 : ssize(group_offsets) - 1;
  workspace_buffer buffer;
  multi_objective_advantages(
      exec, rewards, weights, group_offsets, out, options,
      buffer.view(multi_objective_advantages_workspace_bytes(exec, rows, groups, options)));
}

// GDPO (TRL multi_objective_aggregation="normalize_then_sum"): multi_objective_advantages with
// multi_objective_conventions::trl_gdpo.
template <execution_tag Exec, class T>
requires(std::is_same_v<T, float> || std::is_same_v<T, double>) void gdpo_advantages(
    Exec exec, const matrix_view<const T>& rewards, std::span<const double> weights,
    std::span<const index_t> group_offsets, std::span<T> out,
    const multi_objective_options& options = multi_objective_conventions::trl_gdpo) {
  static_assert(detail::host_only_exec_v<Exec>,
                "advantage::gdpo_advantages has no device path yet: call it with exec::host");
  multi_objective_advantages(exec, rewards, weights, group_offsets, out, options);
}

// Bytes of the workspace gdpo_advantages(exec::host, ..., ws) needs (those of
// multi_objective_advantages with the same options).
inline std::size_t gdpo_advantages_workspace_bytes(
    exec::host exec, index_t rows, index_t groups,
    const multi_objective_options& options = multi_objective_conventions::trl_gdpo) {
  return multi_objective_advantages_workspace_bytes(exec, rows, groups, options);
}

// GDPO with caller scratch (gdpo_advantages_workspace_bytes): no allocation.
template <class T>
requires(std::is_same_v<T, float> || std::is_same_v<T, double>) void gdpo_advantages(
    exec::host exec, const matrix_view<const T>& rewards, std::span<const double> weights,
    std::span<const index_t> group_offsets, std::span<T> out,
    const multi_objective_options& options, workspace ws) {
  multi_objective_advantages(exec, rewards, weights, group_offsets, out, options, ws);
}

}  // namespace advantage

POSTTRAIN_NAMESPACE_END
