#pragma once
// Shared vocabulary of the advantage estimators (advantage/*.hpp).
//
//   Token-level inputs use the packed ragged layout (core/ragged.hpp): N tokens of B sequences,
//   seq_offsets[B + 1]; a float weight mask[N] (empty = all ones; where the weight is 0 the token
//   is never read, it may hold NaN). Outcome-level inputs are one scalar per sequence R[B]; groups
//   (the samples of one prompt) are contiguous runs of sequences delimited by group_offsets[G+1]
//   (core/ragged.hpp group_by_ids turns arbitrary uids into such runs).
//
//   Every estimator writes into caller spans of the inputs' type (float or double); the arithmetic
//   is done in double. Advantages and returns are constants with respect to the policy, so no
//   estimator has a gradient. Every argument is validated (posttrain::error) before anything is
//   written. Token-level outputs are 0 wherever the mask is 0.
//
// Helpers defined here:
//   broadcast_to_tokens(exec, A[B], seq_offsets, mask, out[N])   out_t = A_b·m_t (verl
//       `scores.unsqueeze(-1) * response_mask`); empty mask: out_t = A_b.
//   sequence_rewards(exec, r[N], mask, seq_offsets, out R[B])    R_b = Σ_t m_t·r_t (verl
//       `token_level_rewards.sum(-1)`, whose rewards are 0 outside the mask anyway).
//   sequence_lengths(exec, mask, seq_offsets, out[B])            |o_b| = Σ_t m_t (double).
//
// Device memory (exec::cuda{stream} with <posttrain/cuda.cuh>; every estimator of advantage/ that
// has a device path dispatches through advantage_backend<exec::cuda> in
// backend/cuda/group_advantage.cuh): the front ends check options, sizes and pointer aliasing
// only. NOT checked on the device: offsets' contents (non-decreasing, first 0, last N or B), mask
// weights (finite, >= 0), reward finiteness. On the device broadcast_to_tokens and
// sequence_lengths take N from out.size() / mask.size() instead of seq_offsets.back().
#include <cmath>
#include <cstddef>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "posttrain/backend/cpu/advantage.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/ops/reductions.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace advantage {

// What an estimator does with a group whose (scorable) size is 1.
enum class singleton_policy {
  unit_stats,  // μ = 0, σ = 1: GRPO → R/(1 + ε), Dr.GRPO / baselines → R   (verl)
  zero,        // advantage 0                                                (TRL, open-instruct)
  raise,  // posttrain::error                                           (OpenRLHF asserts n > 1)
};

// What an outcome estimator does with NaN rewards (unscorable samples).
enum class nan_policy {
  raise,   // posttrain::error naming the index (verl, OpenRLHF, open-instruct have no NaN path)
  ignore,  // excluded from every mean / std / count, advantage 0 (TRL nanmean / nanstd /
           // nan_to_num)
};

namespace detail {

template <class V>
concept values = ::posttrain::detail::token_values<V>;
template <class V>
using value_t = ::posttrain::detail::value_t<V>;

template <class Exec>
inline constexpr bool always_false_v = false;

using ::posttrain::detail::on_host_v;

// Front ends that have no device path yet say so at compile time.
template <class Exec>
inline constexpr bool host_only_exec_v = on_host_v<Exec>;

// Backend of the advantage estimators for an execution tag: backend/cpu/advantage.hpp specialises
// it for exec::host; a CUDA backend header would specialise it for exec::cuda.
template <class Exec>
struct advantage_backend {
  static_assert(always_false_v<Exec>,
                "posttrain::advantage: no backend for this execution tag. exec::cuda needs the "
                "CUDA backend (link posttrain::cuda and include <posttrain/cuda.cuh>).");
};

inline void validate_unit_interval(double x, std::string_view where, std::string_view name) {
  expect(std::isfinite(x) && x >= 0.0 && x <= 1.0, where, name,
         " must be finite and in [0, 1], got ", x);
}

// Sizes and offsets of a token-level estimator; the mask weights are checked by the caller's pass.
// On the device (on_host = false) the offsets are checked by size only.
template <class T, class U>
void validate_tokens(std::span<const T> tokens, std::span<const float> mask,
                     std::span<const index_t> seq_offsets, std::span<U> out, std::string_view where,
                     std::string_view tokens_name, std::string_view out_name,
                     bool on_host = true) {
  expect(!seq_offsets.empty(), where, "seq_offsets is empty, expected B + 1 >= 1 elements");
  if (on_host) expect_offsets(seq_offsets, ssize(tokens), where, "seq_offsets");
  expect_size_or_empty(mask, ssize(tokens), where, "mask", "one weight per token");
  expect_size(out, ssize(tokens), where, out_name, "one per token");
  (void)tokens_name;
}

// Outcome rewards: finite, or NaN when the policy ignores NaN (inf is always an error).
template <class T>
void validate_rewards(std::span<const T> rewards, nan_policy nan, std::string_view where,
                      std::string_view name) {
  for (std::size_t i = 0; i < rewards.size(); ++i) {
    const double r = static_cast<double>(rewards[i]);
    if (std::isnan(r) && nan == nan_policy::ignore) continue;
    if (!std::isfinite(r))
      ::posttrain::detail::fail(where, name, "[", i, "] = ", r,
                                nan == nan_policy::ignore
                                    ? ", expected a finite reward or NaN (unscorable)"
                                    : ", expected a finite reward (nan_policy::ignore accepts NaN "
                                      "as unscorable)");
  }
}

inline void validate_groups(std::span<const index_t> group_offsets, index_t sequences,
                            std::string_view where) {
  expect(!group_offsets.empty(), where, "group_offsets is empty, expected G + 1 >= 1 elements");
  expect_offsets(group_offsets, sequences, where, "group_offsets");
}

// The argument checks of sequence_rewards, host and device front ends alike. The offsets' values
// are checked only where they are in host memory (offsets_in::host); on the device only their
// count is.
enum class offsets_in { host, device };

template <class T>
void validate_sequence_rewards(std::span<const T> token_rewards, std::span<const float> mask,
                               std::span<const index_t> seq_offsets, std::span<T> out,
                               std::string_view where, offsets_in offsets) {
  expect(!seq_offsets.empty(), where, "seq_offsets is empty, expected B + 1 >= 1 elements");
  if (offsets == offsets_in::host)
    expect_offsets(seq_offsets, ssize(token_rewards), where, "seq_offsets");
  expect_size_or_empty(mask, ssize(token_rewards), where, "mask", "one weight per token");
  expect_size(out, ssize(seq_offsets) - 1, where, "out", "one per sequence");
}

// The workspace preamble of the host outcome estimators (group, passk, rloo, gpg, opo):
//   checked_outcome_counts   the size check their *_workspace_bytes(exec::host, B, G, ...) start
//                            with (B = members and G = groups, both >= 0), as element counts;
//   with_outcome_workspace   their allocating form: group_offsets checked against B (G is read
//                            from them), then call(ws) over a workspace_buffer of bytes(B, G)
//                            bytes, i.e. the workspace form with scratch allocated for the call.
struct outcome_counts {
  std::size_t members = 0;
  std::size_t groups = 0;
};

inline outcome_counts checked_outcome_counts(index_t members, index_t groups,
                                             std::string_view where) {
  expect(members >= 0, where, "members is ", members, ", expected >= 0");
  expect(groups >= 0, where, "groups is ", groups, ", expected >= 0");
  return {static_cast<std::size_t>(members), static_cast<std::size_t>(groups)};
}

template <class Bytes, class Call>
void with_outcome_workspace(index_t members, std::span<const index_t> group_offsets,
                            std::string_view where, const Bytes& bytes, const Call& call) {
  validate_groups(group_offsets, members, where);
  workspace_buffer buffer;
  call(buffer.view(bytes(members, ssize(group_offsets) - 1)));
}

// Weight 1 for scorable rewards, 0 for NaN; empty when every reward is scorable.
// The same into caller memory buf[B]: returns buf when a reward is NaN (1 scorable, 0 not),
// otherwise an empty span (every reward scorable) without touching buf.
template <class T>
std::span<const float> scorable_mask(std::span<const T> rewards, std::span<float> buf) {
  for (std::size_t i = 0; i < rewards.size(); ++i)
    if (std::isnan(static_cast<double>(rewards[i]))) {
      for (std::size_t j = 0; j < i; ++j) buf[j] = 1.0f;
      for (std::size_t j = i; j < rewards.size(); ++j)
        buf[j] = std::isnan(static_cast<double>(rewards[j])) ? 0.0f : 1.0f;
      return buf;
    }
  return {};
}

template <class T>
std::vector<float> scorable_mask(std::span<const T> rewards) {
  std::vector<float> mask;
  for (std::size_t i = 0; i < rewards.size(); ++i)
    if (std::isnan(static_cast<double>(rewards[i]))) {
      mask.assign(rewards.size(), 1.0f);
      for (std::size_t j = i; j < rewards.size(); ++j)
        if (std::isnan(static_cast<double>(rewards[j]))) mask[j] = 0.0f;
      break;
    }
  return mask;
}

// One vectorisable pass over the mask: every weight finite and >= 0, else the message of
// expect_mask. (core/validate's expect_mask is a per-element branchy loop, ~3 ms for 2M weights;
// an integer OR-reduction vectorises.)
inline void check_mask(std::span<const float> mask, std::string_view where) {
  const float* m = mask.data();
  const std::size_t n = mask.size();
  unsigned bad = 0;
  for (std::size_t i = 0; i < n; ++i) bad |= ((m[i] >= 0.0f) & (m[i] <= 3.402823466e38f)) ? 0u : 1u;
  if (bad) expect_mask(mask, where, "mask");
}

// Whether Σ m over [begin, end) exceeds `threshold` (empty mask: the token count); stops as soon
// as it does, so the common case reads a few weights.
inline bool mask_weight_exceeds(std::span<const float> mask, index_t begin, index_t end,
                                double threshold) {
  if (mask.empty()) return static_cast<double>(end - begin) > threshold;
  double sum = 0.0;
  for (index_t t = begin; t < end; ++t)
    if ((sum += static_cast<double>(mask[t])) > threshold) return true;
  return false;
}

// Regions that must not overlap unless identical (in place).
template <class A, class B>
bool disjoint_or_same(std::span<A> a, std::span<B> b) {
  const auto* pa = reinterpret_cast<const unsigned char*>(a.data());
  const auto* pb = reinterpret_cast<const unsigned char*>(b.data());
  if (a.empty() || b.empty() || pa == pb) return true;
  return pa + a.size_bytes() <= pb || pb + b.size_bytes() <= pa;
}

}  // namespace detail

// out_t = A_b·m_t for every token t of sequence b (A_b where the mask is empty, 0 where m_t = 0).
template <execution_tag Exec, detail::values V>
void broadcast_to_tokens(Exec exec, const V& advantages_in, std::span<const index_t> seq_offsets,
                         std::span<const float> mask, std::span<detail::value_t<V>> out) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::broadcast_to_tokens";
  const std::span<const T> advantages(advantages_in);
  expect(!seq_offsets.empty(), where, "seq_offsets is empty, expected B + 1 >= 1 elements");
  expect_size(advantages, ssize(seq_offsets) - 1, where, "advantages", "one per sequence");
  if constexpr (!detail::on_host_v<Exec>) {
    expect_size_or_empty(mask, ssize(out), where, "mask", "one weight per token of out");
  } else {
    expect_offsets(seq_offsets, seq_offsets.back(), where, "seq_offsets");
    expect_size(out, seq_offsets.back(), where, "out", "one per token (seq_offsets.back())");
    expect_size_or_empty(mask, seq_offsets.back(), where, "mask", "one weight per token");
    detail::check_mask(mask, where);
  }
  detail::advantage_backend<Exec>::broadcast(exec, advantages, seq_offsets, mask, out);
}

// R_b = Σ_t m_t·r_t over the tokens of sequence b (accumulated in double).
template <execution_tag Exec, detail::values V>
void sequence_rewards(Exec exec, const V& token_rewards_in, std::span<const float> mask,
                      std::span<const index_t> seq_offsets, std::span<detail::value_t<V>> out) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::sequence_rewards";
  const std::span<const T> token_rewards(token_rewards_in);
  detail::validate_sequence_rewards(
      token_rewards, mask, seq_offsets, out, where,
      detail::on_host_v<Exec> ? detail::offsets_in::host : detail::offsets_in::device);
  if constexpr (!detail::on_host_v<Exec>) {
    detail::advantage_backend<Exec>::sequence_rewards(exec, token_rewards, mask, seq_offsets, out);
  } else {
    const std::vector<masked_stats> s = segment_moments(exec, token_rewards, mask, seq_offsets);
    for (std::size_t b = 0; b < s.size(); ++b) out[b] = static_cast<T>(s[b].sum);
  }
}

// Bytes of the workspace sequence_rewards(exec::host, ..., ws) needs for B sequences (their
// moments).
inline std::size_t sequence_rewards_workspace_bytes(exec::host, index_t sequences) {
  expect(sequences >= 0, "advantage::sequence_rewards_workspace_bytes", "sequences is ", sequences,
         ", expected >= 0");
  return workspace_size().add<masked_stats>(static_cast<std::size_t>(sequences));
}

// The same on the host with the per-sequence moments in caller scratch: no allocation, the same
// sums.
template <detail::values V>
void sequence_rewards(exec::host exec, const V& token_rewards_in, std::span<const float> mask,
                      std::span<const index_t> seq_offsets, std::span<detail::value_t<V>> out,
                      workspace ws) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::sequence_rewards";
  const std::span<const T> token_rewards(token_rewards_in);
  detail::validate_sequence_rewards(token_rewards, mask, seq_offsets, out, where,
                                    detail::offsets_in::host);
  const std::span<masked_stats> s = ws.take<masked_stats>(out.size(), where);
  if (!backend::reductions_backend<exec::host>::segment_moments(exec, token_rewards, mask,
                                                               seq_offsets, s))
    ::posttrain::detail::fail_mask(mask, "segment_moments");
  for (std::size_t b = 0; b < s.size(); ++b) out[b] = static_cast<T>(s[b].sum);
}

// |o_b| = Σ_t m_t (the token count of each sequence when the mask is 0/1).
template <execution_tag Exec>
void sequence_lengths(Exec exec, std::span<const float> mask, std::span<const index_t> seq_offsets,
                      std::span<double> out) {
  constexpr std::string_view where = "advantage::sequence_lengths";
  expect(!seq_offsets.empty(), where, "seq_offsets is empty, expected B + 1 >= 1 elements");
  if constexpr (detail::on_host_v<Exec>) {
    expect_offsets(seq_offsets, seq_offsets.back(), where, "seq_offsets");
    expect_size_or_empty(mask, seq_offsets.back(), where, "mask", "one weight per token");
  }
  expect_size(out, ssize(seq_offsets) - 1, where, "out", "one per sequence");
  if constexpr (detail::on_host_v<Exec>) detail::check_mask(mask, where);
  detail::advantage_backend<Exec>::sequence_lengths(exec, mask, seq_offsets, out);
}

}  // namespace advantage

POSTTRAIN_NAMESPACE_END
