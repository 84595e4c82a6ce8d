#pragma once
// GPG: group policy gradient advantages (verl compute_gpg_outcome_advantage).
//
// INPUT CONTRACT: outcome rewards R[B] of the WHOLE batch (α counts over all of them),
// group_offsets[G + 1] over the B sequences. Output A[B] of R's type; broadcast_to_tokens()
// writes it per token. No gradient: advantages are constants.
//
//   α   = B / max(1, #{i : R_i ≠ 0})          (raw non-zero rewards of the batch; verl ignores its
//                                             `alpha` argument and always uses this)
//   A_i = α·(R_i − μ_g) / f_norm
//
// Singleton groups: μ = 0, so A = α·R/f_norm (verl). The group std that verl computes is unused.
// Rewards must be finite; f_norm finite and > 0. Arithmetic in double; out may alias rewards.
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

struct gpg_options {
  double f_norm = 1.0;
};

// α of the batch (host and device).
POSTTRAIN_HOST_DEVICE inline double gpg_alpha(index_t batch, index_t nonzero) {
  return static_cast<double>(batch) / static_cast<double>(nonzero > 0 ? nonzero : 1);
}

// Bytes of the workspace gpg_advantages(exec::host, ..., ws) needs for G = `groups` groups (the
// group moments; `members` is the reward count, unused today).
inline std::size_t gpg_advantages_workspace_bytes(exec::host, index_t members, index_t groups,
                                                  const gpg_options& = {}) {
  return workspace_size().add<masked_stats>(
      detail::checked_outcome_counts(members, groups, "advantage::gpg_advantages_workspace_bytes")
          .groups);
}

// GPG advantages A[B] on the host with caller scratch (gpg_advantages_workspace_bytes): no
// allocation; bit for bit the allocating form.
template <detail::values V>
void gpg_advantages(exec::host exec, const V& rewards_in, std::span<const index_t> group_offsets,
                    std::span<detail::value_t<V>> out, const gpg_options& options, workspace ws) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::gpg_advantages";
  const std::span<const T> rewards(rewards_in);
  expect_positive(options.f_norm, where, "options.f_norm");
  detail::validate_outcome(rewards, group_offsets, out, nan_policy::raise, where);
  const std::span<masked_stats> stats = ws.take<masked_stats>(group_offsets.size() - 1, where);
  index_t nonzero = 0;
  for (const T r : rewards) nonzero += r != T(0) ? 1 : 0;
  const double alpha = gpg_alpha(ssize(rewards), nonzero);
  // μ_g with verl's singleton μ = 0 (the Dr.GRPO centring).
  if (!backend::reductions_backend<exec::host>::segment_moments(
          exec, rewards, std::span<const float>(), group_offsets, stats))
    ::posttrain::detail::fail_mask(std::span<const float>(), "segment_moments");
  detail::advantage_backend<exec::host>::for_each_member(
      exec, group_offsets, [&](index_t g, index_t i) {
        const masked_stats& s = stats[static_cast<std::size_t>(g)];
        const double mu = s.count > 1.0 ? s.mean : 0.0;
        out[i] = static_cast<T>(alpha * (static_cast<double>(rewards[i]) - mu) / options.f_norm);
      });
}

template <execution_tag Exec, detail::values V>
void gpg_advantages(Exec exec, const V& rewards_in, std::span<const index_t> group_offsets,
                    std::span<detail::value_t<V>> out, const gpg_options& options = {}) {
  using T = detail::value_t<V>;
  static_assert(detail::host_only_exec_v<Exec>,
                "advantage::gpg_advantages has no device path yet: call it with exec::host");
  constexpr std::string_view where = "advantage::gpg_advantages";
  const std::span<const T> rewards(rewards_in);
  expect_positive(options.f_norm, where, "options.f_norm");
  detail::with_outcome_workspace(
      ssize(rewards), group_offsets, where,
      [&](index_t b, index_t g) { return gpg_advantages_workspace_bytes(exec, b, g, options); },
      [&](workspace ws) { gpg_advantages(exec, rewards, group_offsets, out, options, ws); });
}

}  // namespace advantage

POSTTRAIN_NAMESPACE_END
