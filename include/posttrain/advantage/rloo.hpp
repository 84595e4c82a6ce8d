#pragma once
// RLOO: REINFORCE with a leave-one-out baseline (Kool et al. 2019; Ahmadian et al. 2024).
//
// INPUT CONTRACT: one scalar outcome reward per sequence R[B] (after any sequence-level KL
// shaping: advantage/shaping.hpp sequence_kl_penalty), group_offsets[G + 1] over the B sequences
// (contiguous groups; see group_by_ids). Output A[B] of R's type; broadcast_to_tokens() writes it
// per token. No gradient: advantages are constants.
//
//   A_i = R_i − (S_g − R_i) / (n − 1),   S_g = Σ_{j ∈ g} R_j,  n = |g|        (= R_i − mean_{j≠i}
//   R_j)
//
// which is verl's n/(n−1)·(R_i − μ_g) and (n·R_i − S_g)/(n−1) (rloo_vectorized) up to rounding.
// Singleton groups (n = 1), singleton_policy:
//   unit_stats  no baseline: A = R_i                       (verl compute_rloo_outcome_advantage
//   loop) zero        A = 0                                      (verl rloo_vectorized; TRL) raise
//   posttrain::error before writing            (OpenRLHF asserts n > 1)
// NaN rewards (nan_policy::ignore, TRL): the leave-one-out runs over the scorable siblings only,
// b_i = (nansum_g − R_i)/(n_scorable − 1); unscorable rows get 0.
// Optional batch normalisation (TRL normalize_advantages): A ← (A − mean(A)) / (std(A) + ε) over
// the rows with a defined advantage (scorable, in a group with n >= 2 under singleton zero: TRL's
// singleton rows are NaN and excluded), unbiased std, ε = 1e-4; other rows stay 0.
//
// Presets (rloo_conventions::): verl (singleton R), verl_vectorized (singleton 0), trl (singleton
// 0, NaN ignored, no normalisation; trl_normalized: normalize_advantages=True), openrlhf (raise).
// Arithmetic in double; out may be the rewards span itself (in place).
// exec::cuda (device memory; backend/cuda/group_advantage.cuh): every preset; options and sizes
// are checked on the host, reward finiteness and offsets are not (advantage/common.hpp);
// singleton raise costs one stream synchronisation.
#include <cmath>
#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "posttrain/advantage/common.hpp"
#include "posttrain/advantage/group.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/ops/reductions.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace advantage {

struct rloo_options {
  singleton_policy singleton = singleton_policy::unit_stats;
  nan_policy nan = nan_policy::raise;
  bool normalize = false;           // TRL normalize_advantages
  double normalize_epsilon = 1e-4;  // added to the batch std
};

namespace rloo_conventions {

inline constexpr rloo_options verl{};
inline constexpr rloo_options verl_vectorized{.singleton = singleton_policy::zero};
inline constexpr rloo_options trl{.singleton = singleton_policy::zero, .nan = nan_policy::ignore};
inline constexpr rloo_options trl_normalized{
    .singleton = singleton_policy::zero, .nan = nan_policy::ignore, .normalize = true};
inline constexpr rloo_options openrlhf{.singleton = singleton_policy::raise};

}  // namespace rloo_conventions

// One member (host and device): sum and count over the group's scorable rewards. Returns NaN for
// a row without a defined advantage (unscorable, or a singleton under the zero policy).
POSTTRAIN_HOST_DEVICE inline double rloo_advantage(double r, double group_sum, double count,
                                                   singleton_policy singleton) {
  if (r != r) return r;
  if (count > 1.0) return r - (group_sum - r) / (count - 1.0);
  return singleton == singleton_policy::unit_stats ? r : NAN;
}

namespace detail {
inline void validate_rloo_options(const rloo_options& options, std::string_view where) {
  expect(options.singleton == singleton_policy::unit_stats ||
             options.singleton == singleton_policy::zero ||
             options.singleton == singleton_policy::raise,
         where, "options.singleton is not a singleton_policy");
  expect(options.nan == nan_policy::raise || options.nan == nan_policy::ignore, where,
         "options.nan is not a nan_policy");
  expect_non_negative(options.normalize_epsilon, where, "options.normalize_epsilon");
}
}  // namespace detail

// Bytes of the workspace rloo_advantages(exec::host, ..., ws) needs for B = `members` rewards in
// G = `groups` groups: the scorable mask (nan_policy::ignore), the group moments, A[B] in double
// and, with normalize, the defined-row weights.
inline std::size_t rloo_advantages_workspace_bytes(exec::host, index_t members, index_t groups,
                                                   const rloo_options& options = {}) {
  const detail::outcome_counts n = detail::checked_outcome_counts(
      members, groups, "advantage::rloo_advantages_workspace_bytes");
  return workspace_size()
      .add<float>(options.nan == nan_policy::ignore ? n.members : 0)
      .add<masked_stats>(n.groups)
      .add<double>(n.members)
      .add<float>(options.normalize ? n.members : 0);
}

// RLOO advantages A[B] on the host with caller scratch (rloo_advantages_workspace_bytes): no
// allocation; the same arithmetic as the allocating form, bit for bit.
template <detail::values V>
void rloo_advantages(exec::host exec, const V& rewards_in, std::span<const index_t> group_offsets,
                     std::span<detail::value_t<V>> out, const rloo_options& options,
                     workspace ws) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::rloo_advantages";
  const std::span<const T> rewards(rewards_in);
  detail::validate_rloo_options(options, where);
  const std::span<const masked_stats> stats = detail::checked_group_moments(
      exec, rewards, group_offsets, out, options.nan, options.singleton, where, ws);
  const std::size_t b = rewards.size();
  const std::span<double> a = ws.take<double>(b, where);
  const std::span<float> defined = ws.take<float>(options.normalize ? b : 0, where);

  detail::advantage_backend<exec::host>::for_each_member(
      exec, group_offsets, [&](index_t g, index_t i) {
        const masked_stats& s = stats[static_cast<std::size_t>(g)];
        a[static_cast<std::size_t>(i)] =
            rloo_advantage(static_cast<double>(rewards[i]), s.sum, s.count, options.singleton);
      });
  if (options.normalize) {
    for (std::size_t i = 0; i < b; ++i) defined[i] = std::isnan(a[i]) ? 0.0f : 1.0f;
    const masked_stats s = masked_moments(exec::host{}, std::span<const double>(a),
                                          std::span<const float>(defined));
    const double d = std::sqrt(s.var_unbiased()) + options.normalize_epsilon;
    for (double& x : a) x = d != 0.0 ? (x - s.mean) / d : 0.0;
  }
  for (std::size_t i = 0; i < b; ++i) out[i] = std::isnan(a[i]) ? T(0) : static_cast<T>(a[i]);
}

// RLOO advantages A[B]; see the header comment. On the host the scratch is allocated for this
// call (the workspace form above without a caller buffer).
template <execution_tag Exec, detail::values V>
void rloo_advantages(Exec exec, const V& rewards_in, std::span<const index_t> group_offsets,
                     std::span<detail::value_t<V>> out, const rloo_options& options = {}) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::rloo_advantages";
  const std::span<const T> rewards(rewards_in);
  detail::validate_rloo_options(options, where);
  if constexpr (!detail::on_host_v<Exec>) {
    detail::validate_outcome_sizes(rewards, group_offsets, out, where);
    detail::advantage_backend<Exec>::rloo_advantages(exec, rewards, group_offsets, out, options);
  } else {
    detail::with_outcome_workspace(
        ssize(rewards), group_offsets, where,
        [&](index_t b, index_t g) { return rloo_advantages_workspace_bytes(exec, b, g, options); },
        [&](workspace ws) { rloo_advantages(exec, rewards, group_offsets, out, options, ws); });
  }
}

}  // namespace advantage

POSTTRAIN_NAMESPACE_END
