#pragma once
// OPO: on-policy RL with an optimal (length-weighted) reward baseline (verl
// compute_opo_outcome_advantage).
//
// INPUT CONTRACT: outcome rewards R[B], response lengths |o|[B] (double, e.g. sequence_lengths()
// of the response mask: Σ_t m_t), group_offsets[G + 1] over the B sequences. Output A[B] of R's
// type; broadcast_to_tokens() writes it per token. No gradient: advantages are constants.
//
//   b_g = Σ_{j∈g} |o_j|·R_j / Σ_{j∈g} |o_j|,      A_i = R_i − b_g
//
// Singleton groups: b = 0, so A = R (verl). A group whose lengths sum to 0 (only empty
// responses) also gets b = 0 (verl would divide 0 by 0). Rewards must be finite; lengths finite
// and >= 0. Arithmetic in double; out may be the rewards span itself.
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

POSTTRAIN_NAMESPACE_BEGIN

namespace advantage {

// The baseline of one group from Σ|o|·R and Σ|o| (host and device); n = group size.
POSTTRAIN_HOST_DEVICE inline double opo_baseline(double weighted_sum, double total_length,
                                                 index_t n) {
  return (n > 1 && total_length > 0.0) ? weighted_sum / total_length : 0.0;
}

// Bytes of the workspace opo_advantages(exec::host, ..., ws) needs for G = `groups` groups (one
// baseline per group).
inline std::size_t opo_advantages_workspace_bytes(exec::host, index_t members, index_t groups) {
  return workspace_size().add<double>(
      detail::checked_outcome_counts(members, groups, "advantage::opo_advantages_workspace_bytes")
          .groups);
}

// OPO advantages A[B] on the host with caller scratch (opo_advantages_workspace_bytes): no
// allocation; bit for bit the allocating form.
template <detail::values V>
void opo_advantages(exec::host exec, const V& rewards_in, std::span<const double> lengths,
                    std::span<const index_t> group_offsets, std::span<detail::value_t<V>> out,
                    workspace ws) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::opo_advantages";
  const std::span<const T> rewards(rewards_in);
  detail::validate_outcome(rewards, group_offsets, out, nan_policy::raise, where);
  expect_size(lengths, ssize(rewards), where, "lengths", "one response length per reward");
  for (std::size_t i = 0; i < lengths.size(); ++i)
    expect(std::isfinite(lengths[i]) && lengths[i] >= 0.0, where, "lengths[", i, "] = ", lengths[i],
           ", expected finite and >= 0");
  const std::span<double> baseline = ws.take<double>(group_offsets.size() - 1, where);
  for (std::size_t g = 0; g < baseline.size(); ++g) {
    double wsum = 0.0, tl = 0.0;
    for (index_t i = group_offsets[g]; i < group_offsets[g + 1]; ++i) {
      wsum += lengths[i] * static_cast<double>(rewards[i]);
      tl += lengths[i];
    }
    baseline[g] = opo_baseline(wsum, tl, group_offsets[g + 1] - group_offsets[g]);
  }
  detail::advantage_backend<exec::host>::for_each_member(
      exec, group_offsets, [&](index_t g, index_t i) {
        out[i] = static_cast<T>(static_cast<double>(rewards[i]) -
                                baseline[static_cast<std::size_t>(g)]);
      });
}

template <execution_tag Exec, detail::values V>
void opo_advantages(Exec exec, const V& rewards_in, std::span<const double> lengths,
                    std::span<const index_t> group_offsets, std::span<detail::value_t<V>> out) {
  using T = detail::value_t<V>;
  static_assert(detail::host_only_exec_v<Exec>,
                "advantage::opo_advantages has no device path yet: call it with exec::host");
  const std::span<const T> rewards(rewards_in);
  detail::with_outcome_workspace(
      ssize(rewards), group_offsets, "advantage::opo_advantages",
      [&](index_t b, index_t g) { return opo_advantages_workspace_bytes(exec, b, g); },
      [&](workspace ws) { opo_advantages(exec, rewards, lengths, group_offsets, out, ws); });
}

}  // namespace advantage

POSTTRAIN_NAMESPACE_END
