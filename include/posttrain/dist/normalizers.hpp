#pragma once
// Global normalisers across ranks: the token counts, sequence counts and moments that make a loss
// or a whitening on R data-parallel ranks equal to the same call on one process over all the data.
//
//   dist::all_reduce_counts(comm, local)              agg_counts summed over ranks
//   dist::global_normalizer(comm, local[, constant])  the agg_normalizer of those sums
//   dist::all_reduce_moments(comm, local)             masked_stats merged over ranks
//   dist::all_reduce_moments(comm, inout[S], ws)      segment s merged over ranks, for every s
//
// Counts are sums of the ranks' Σm and row counts (exact while they stay below 2^53). Moments are
// merged with merge() (Chan) in rank order after an all-gather built from all_reduce_sum (each
// rank writes its slot of a zero buffer; adding zeros is exact), so every rank gets the same bits,
// whatever the reduction order of the communicator. The merged moments equal the moments of the
// concatenated data up to rounding (~1e-15 relative in the tests).
//
// Segment moments (the per-group form): segment s of every rank is one part of the same global
// segment s (e.g. group s, whose samples are spread over ranks; a rank without a part passes an
// empty segment), so every rank must pass the same S; this is checked with one small collective
// before the data is exchanged, and a mismatch throws posttrain::error on every rank.
//
// Collective calls: every rank calls the same helper in the same order. Where a rank's own input
// is rejected, the front ends that take a communicator (ops/aggregate.hpp, ops/whiten.hpp) still
// join the collective with a failure flag, so every rank throws instead of the others waiting.
//
// Host communicators only (communicator_exec_t<C> = exec::host: single_process, MPI): the NCCL
// communicator reduces device memory, and these statistics are host values.
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "posttrain/config.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/views.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/dist/communicator.hpp"
#include "posttrain/ops/aggregate_types.hpp"
#include "posttrain/ops/reductions_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace dist {

template <class C>
concept host_communicator =
    communicator<C> && std::is_same_v<communicator_exec_t<C>, exec::host>;

namespace detail {

template <class C>
constexpr void require_host_communicator() {
  static_assert(host_communicator<C>,
                "posttrain::dist normalisers need a communicator of host memory "
                "(communicator_exec_t<C> = exec::host, e.g. single_process_communicator or "
                "mpi_communicator): the counts and moments are host values");
}

// Throws on every rank when some rank failed (its own message where it failed locally).
inline void throw_if_any_failed(double failures, const std::string& local_message,
                                std::string_view where) {
  if (!local_message.empty()) throw error(local_message);
  if (failures > 0.0)
    throw error("posttrain::" + std::string(where) + ": the input of another rank was rejected (" +
                std::to_string(static_cast<long long>(failures)) +
                " rank(s)); see that rank's error");
}

}  // namespace detail

// Bytes of workspace all_reduce_moments(comm, inout[S], ws) needs on `comm`.
template <class C>
std::size_t all_reduce_moments_workspace_bytes(const C& comm, index_t segments) {
  detail::require_host_communicator<C>();
  if (segments < 0)
    throw error("posttrain::all_reduce_moments_workspace_bytes: segments is " +
                std::to_string(segments) + ", expected >= 0");
  return workspace_size()
      .add<double>(4 * static_cast<std::size_t>(segments) * static_cast<std::size_t>(comm.size()))
      .bytes();
}

namespace detail {

// The all-gather and rank-order merge, after the shape check. `local_failure` joins the first
// collective: when any rank failed, every rank throws before the data exchange.
template <class C>
void merge_moments_over_ranks(C& comm, std::span<masked_stats> inout, workspace ws,
                              const std::string& local_failure, std::string_view where) {
  const double s = static_cast<double>(inout.size());
  double head[3] = {local_failure.empty() ? 0.0 : 1.0, s, s * s};
  comm.all_reduce_sum(std::span<double>(head));
  throw_if_any_failed(head[0], local_failure, where);
  const double ranks = static_cast<double>(comm.size());
  // Σ S = R·S and Σ S² = R·S² together hold only when every rank has the same S.
  if (head[1] != ranks * s || head[2] != ranks * s * s)
    throw error("posttrain::" + std::string(where) +
                ": the ranks passed different numbers of segments (this rank " +
                std::to_string(inout.size()) + ", mean over ranks " +
                std::to_string(head[1] / ranks) + "); every rank must pass the same S");
  if (inout.empty()) return;
  const std::size_t per_rank = 4 * inout.size();
  const std::size_t r = static_cast<std::size_t>(comm.size());
  const std::span<double> all = ws.take<double>(per_rank * r, where);
  for (double& v : all) v = 0.0;
  const std::size_t me = static_cast<std::size_t>(comm.rank());
  for (std::size_t k = 0; k < inout.size(); ++k) {
    double* slot = all.data() + me * per_rank + 4 * k;
    slot[0] = inout[k].count;
    slot[1] = inout[k].sum;
    slot[2] = inout[k].mean;
    slot[3] = inout[k].m2;
  }
  comm.all_reduce_sum(all);
  for (std::size_t k = 0; k < inout.size(); ++k) {
    masked_stats merged{};
    for (std::size_t q = 0; q < r; ++q) {
      const double* slot = all.data() + q * per_rank + 4 * k;
      merged = merge(merged, masked_stats{slot[0], slot[1], slot[2], slot[3]});
    }
    inout[k] = merged;
  }
}

}  // namespace detail

// Sums of the local counts over ranks.
template <class C>
agg_counts all_reduce_counts(C& comm, const agg_counts& local) {
  detail::require_host_communicator<C>();
  double v[2] = {local.tokens, local.sequences};
  comm.all_reduce_sum(std::span<double>(v));
  return agg_counts{v[0], v[1]};
}

// The global agg_normalizer from each rank's local counts (aggregation_counts of its data);
// `constant` is passed through (it is the same on every rank by definition).
template <class C>
agg_normalizer global_normalizer(C& comm, const agg_counts& local,
                                 std::optional<double> constant = {}) {
  const agg_counts global = all_reduce_counts(comm, local);
  return agg_normalizer{global.tokens, global.sequences, constant};
}

// Segment s of every rank merged into the global segment s, in place (same S on every rank).
template <class C>
void all_reduce_moments(C& comm, std::span<masked_stats> inout, workspace ws) {
  detail::require_host_communicator<C>();
  detail::merge_moments_over_ranks(comm, inout, ws, std::string(), "all_reduce_moments");
}

template <class C>
void all_reduce_moments(C& comm, std::span<masked_stats> inout) {
  workspace_buffer buffer;
  all_reduce_moments(comm, inout,
                     buffer.view(all_reduce_moments_workspace_bytes(comm, ssize(inout))));
}

// The moments of every rank's data together.
template <class C>
masked_stats all_reduce_moments(C& comm, const masked_stats& local) {
  masked_stats one[1] = {local};
  all_reduce_moments(comm, std::span<masked_stats>(one));
  return one[0];
}

}  // namespace dist

POSTTRAIN_NAMESPACE_END
