#pragma once
// Optimal token baseline (OTB; verl compute_optimal_token_baseline_advantage, and its multi-turn
// form compute_multi_turn_optimal_token_baseline_advantage = adv_estimator
// "tir_optimal_token_baseline"; Li et al. 2026, "Optimal Token Baseline").
//
// INPUT CONTRACT: token rewards r[N] (score on the last response token, plus any in-reward KL),
// behaviour log-probs ℓold[N] of the sampled tokens, Σ_v π_v²[N] of the behaviour distribution at
// every token (ops/token_logprobs can produce it; verl actor.calculate_sum_pi_squared), optional
// rollout importance weights ρ[N] (empty = none; verl rollout_is_weights), mask[N] float weights
// (empty = all ones; a token whose weight is 0 is never read), seq_offsets[B + 1], and contiguous
// groups group_offsets[G + 1] over the B sequences (the samples of one prompt; see group_by_ids).
// Outputs advantages[N] and returns[N] (returns may be empty = not requested) of the inputs'
// type, 0 where the mask is 0. No gradient: advantages are constants.
//
//   G_t = Σ_{s ≥ t} m_s·r_s                       (reward to go, within the sequence)
//   w_t = 1 − 2π_t + Σπ²_t,  π_t = exp(ℓold_t)      (= ‖∂ log π_t/∂ logits‖², the logit-gradient
//                                                  proxy; ≥ 0 for a true distribution)
//   w_t ← w_t·ρ_t²                                  (when ρ is given: MSE-optimal under truncated
//   IS) W_t = Σ_{s ≤ t} m_s·w_s                         (realised energy up to t) B_p = Σ_{i∈g}
//   G_{i,p}·W_{i,p}·c_{i,p} / (Σ_{i∈g} W_{i,p}·c_{i,p} + ε)    per group and time p A_t = (G_t −
//   B_p)·m_t
//
// Time index p (otb_alignment):
//   column       p = t − seq_offsets[i], the token's position in its padded row; c = m
//                (optimal_token_baseline: columns of verl's [B, T] tensors; in a left-aligned
//                response this is the response position).
//   valid_tokens p = k for the k-th token with m ≠ 0 of the row; c = 1; rows without valid token
//                are left out of their group (count and sums)  (tir_optimal_token_baseline: verl
//                compacts every row's valid tokens to the left, so turns interleaved with tool
//                output line up by generated-token index).
// Singleton groups (one member; under valid_tokens one non-empty member): B = 0, A = G·m (verl).
// A zero denominator (only with ε = 0 and W = 0) gives B = 0. handle_zero_tail: if exactly one
// member has the largest length L1 (Σ m; the valid-token count under valid_tokens) and L1 >
// L2 = the second largest, that member's baseline is 0 for p ≥ trunc(L2) (verl; lengths compare as
// verl's float sums to their truncation, so with fractional masks the tail rule may not fire).
// The returns are G (verl returns them too), 0 where the mask is 0.
//
// Presets (otb_conventions::, reference section 2.1):
//   verl       column alignment, handle_zero_tail = false, ε = 1e-8   (optimal_token_baseline)
//   verl_tir   valid_tokens alignment, handle_zero_tail = true, ε = 1e-8
//              (tir_optimal_token_baseline)
// The two agree on left-aligned 0/1 masks without interior holes or empty rows when the tail
// option is the same. verl computes in the inputs' dtype (float32); here everything is double.
//
// Validation before any write: sizes, offsets, group offsets, mask weights finite and >= 0,
// ε finite >= 0, alignment a valid enum; outputs may be an input span (exactly, in place) but not
// overlap partially, and advantages != returns. Token values (rewards, ℓold, Σπ², ρ) are not
// scanned: a NaN at a token with m ≠ 0 propagates to its group's baselines.
//
// Scratch (host only, no stream): optimal_token_baseline_workspace_bytes(exec::host, seq_offsets,
// options) bytes for the overload taking a posttrain::workspace, which allocates nothing; the
// overload without one allocates that much for the call. Both give the same bits.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string_view>
#include <type_traits>

#include "posttrain/advantage/common.hpp"
#include "posttrain/backend/cpu/advantage_otb.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/workspace.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace advantage {

enum class otb_alignment {
  column,        // time index = position in the row (verl optimal_token_baseline)
  valid_tokens,  // time index = rank among the row's valid tokens (verl tir_optimal_token_baseline)
};

struct otb_options {
  otb_alignment alignment = otb_alignment::column;
  bool handle_zero_tail = false;
  double epsilon = 1e-8;
};

namespace otb_conventions {

inline constexpr otb_options verl{};
inline constexpr otb_options verl_tir{
    .alignment = otb_alignment::valid_tokens, .handle_zero_tail = true, .epsilon = 1e-8};

}  // namespace otb_conventions

// w_t of one token (host and device): 1 − 2·exp(ℓold) + Σπ², times ρ² when has_is.
POSTTRAIN_HOST_DEVICE inline double otb_token_weight(double old_logprob, double sum_pi_squared,
                                                     double is_weight, bool has_is) {
  const double w = 1.0 - 2.0 * std::exp(old_logprob) + sum_pi_squared;
  return has_is ? w * is_weight * is_weight : w;
}

namespace detail {

inline void validate_otb_options(const otb_options& options, std::string_view where) {
  expect_non_negative(options.epsilon, where, "options.epsilon");
  expect(options.alignment == otb_alignment::column ||
             options.alignment == otb_alignment::valid_tokens,
         where, "options.alignment is not an otb_alignment");
}

// The longest sequence of seq_offsets (0 when there is none); bounds every group's time indices.
inline index_t longest_sequence(std::span<const index_t> seq_offsets) {
  index_t longest = 0;
  for (std::size_t b = 0; b + 1 < seq_offsets.size(); ++b)
    longest = std::max(longest, seq_offsets[b + 1] - seq_offsets[b]);
  return longest;
}

}  // namespace detail

// Bytes of the workspace optimal_token_baseline(exec::host, ..., ws) needs for the sequences of
// seq_offsets (N = seq_offsets.back() tokens, B sequences, L the longest): G and W [N], the
// lengths and the group members [B] (and the sorted lengths [B] with handle_zero_tail), and the
// numerator, denominator and baseline of one group [L].
inline std::size_t optimal_token_baseline_workspace_bytes(
    exec::host, std::span<const index_t> seq_offsets,
    const otb_options& options = otb_conventions::verl) {
  constexpr std::string_view where = "advantage::optimal_token_baseline_workspace_bytes";
  expect(!seq_offsets.empty(), where, "seq_offsets is empty, expected B + 1 >= 1 elements");
  expect_offsets(seq_offsets, seq_offsets.back(), where, "seq_offsets");
  const auto n = static_cast<std::size_t>(seq_offsets.back());
  const std::size_t b = seq_offsets.size() - 1;
  const auto longest = static_cast<std::size_t>(detail::longest_sequence(seq_offsets));
  return workspace_size()
      .add<double>(n)
      .add<double>(n)
      .add<double>(b)
      .add<index_t>(b)
      .add<double>(options.handle_zero_tail ? b : 0)
      .add<double>(longest)
      .add<double>(longest)
      .add<double>(longest);
}

// OTB advantages (and returns) on the host with caller scratch
// (optimal_token_baseline_workspace_bytes): no allocation; the allocating form below is this call
// over a workspace_buffer.
template <detail::values V>
void optimal_token_baseline(exec::host, const V& rewards_in,
                            std::span<const detail::value_t<V>> old_logprobs,
                            std::span<const detail::value_t<V>> sum_pi_squared,
                            std::span<const detail::value_t<V>> is_weights,
                            std::span<const float> mask, std::span<const index_t> seq_offsets,
                            std::span<const index_t> group_offsets,
                            std::span<detail::value_t<V>> advantages,
                            std::span<detail::value_t<V>> returns, const otb_options& options,
                            workspace ws) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::optimal_token_baseline";
  const std::span<const T> rewards(rewards_in);
  const index_t n = ssize(rewards);
  detail::validate_otb_options(options, where);
  detail::validate_tokens(rewards, mask, seq_offsets, advantages, where, "rewards", "advantages");
  expect_size(old_logprobs, n, where, "old_logprobs", "one behaviour log-prob per token");
  expect_size(sum_pi_squared, n, where, "sum_pi_squared", "one Σ_v π_v² per token");
  expect_size_or_empty(is_weights, n, where, "is_weights",
                       "one rollout importance weight per token, or empty (none)");
  expect_size_or_empty(returns, n, where, "returns", "one per token, or empty (not requested)");
  detail::validate_groups(group_offsets, ssize(seq_offsets) - 1, where);
  expect(returns.empty() || advantages.data() != returns.data(), where,
         "advantages and returns are the same buffer, expected distinct outputs");
  for (const auto out : {advantages, returns})
    expect(detail::disjoint_or_same(out, rewards) && detail::disjoint_or_same(out, old_logprobs) &&
               detail::disjoint_or_same(out, sum_pi_squared) &&
               detail::disjoint_or_same(out, is_weights),
           where,
           "an output partially overlaps an input (in place is allowed only index for index)");
  expect(detail::disjoint_or_same(returns, advantages), where,
         "returns partially overlaps advantages");
  detail::check_mask(mask, where);

  // The pieces in optimal_token_baseline_workspace_bytes' order, all before any write.
  const auto tokens = static_cast<std::size_t>(n);
  const std::size_t sequences = seq_offsets.size() - 1;
  const auto longest = static_cast<std::size_t>(detail::longest_sequence(seq_offsets));
  backend::cpu::otb_scratch scratch;
  scratch.reward_to_go = ws.take<double>(tokens, where);
  scratch.energy = ws.take<double>(tokens, where);
  scratch.length = ws.take<double>(sequences, where);
  scratch.members = ws.take<index_t>(sequences, where);
  scratch.sorted_lengths = ws.take<double>(options.handle_zero_tail ? sequences : 0, where);
  scratch.num = ws.take<double>(longest, where);
  scratch.den = ws.take<double>(longest, where);
  scratch.baseline = ws.take<double>(longest, where);

  const bool has_is = !is_weights.empty();
  const T* lp = old_logprobs.data();
  const T* sp = sum_pi_squared.data();
  const T* iw = is_weights.data();
  auto weight = [=](index_t t) {
    return otb_token_weight(static_cast<double>(lp[t]), static_cast<double>(sp[t]),
                            has_is ? static_cast<double>(iw[t]) : 1.0, has_is);
  };
  const backend::cpu::otb_params p{
      .valid_alignment = options.alignment == otb_alignment::valid_tokens,
      .handle_zero_tail = options.handle_zero_tail,
      .epsilon = options.epsilon};
  backend::cpu::optimal_token_baseline(rewards, mask, seq_offsets, group_offsets, weight, p,
                                       advantages, returns, scratch);
}

// OTB advantages (and returns); see the header comment. The scratch is allocated for this call
// (the workspace form above over a workspace_buffer).
template <execution_tag Exec, detail::values V>
void optimal_token_baseline(Exec exec, const V& rewards_in,
                            std::span<const detail::value_t<V>> old_logprobs,
                            std::span<const detail::value_t<V>> sum_pi_squared,
                            std::span<const detail::value_t<V>> is_weights,
                            std::span<const float> mask, std::span<const index_t> seq_offsets,
                            std::span<const index_t> group_offsets,
                            std::span<detail::value_t<V>> advantages,
                            std::span<detail::value_t<V>> returns,
                            const otb_options& options = otb_conventions::verl) {
  using T = detail::value_t<V>;
  static_assert(detail::host_only_exec_v<Exec>,
                "posttrain::advantage::optimal_token_baseline runs on exec::host only (no CUDA "
                "backend yet): copy the inputs to host memory");
  constexpr std::string_view where = "advantage::optimal_token_baseline";
  const std::span<const T> rewards(rewards_in);
  detail::validate_otb_options(options, where);
  detail::validate_tokens(rewards, mask, seq_offsets, advantages, where, "rewards", "advantages");
  workspace_buffer buffer;
  optimal_token_baseline(exec, rewards, old_logprobs, sum_pi_squared, is_weights, mask,
                         seq_offsets, group_offsets, advantages, returns, options,
                         buffer.view(optimal_token_baseline_workspace_bytes(exec, seq_offsets,
                                                                            options)));
}

// verl tir_optimal_token_baseline: optimal_token_baseline with otb_conventions::verl_tir.
template <execution_tag Exec, detail::values V>
void tir_optimal_token_baseline(Exec exec, const V& rewards_in,
                                std::span<const detail::value_t<V>> old_logprobs,
                                std::span<const detail::value_t<V>> sum_pi_squared,
                                std::span<const detail::value_t<V>> is_weights,
                                std::span<const float> mask, std::span<const index_t> seq_offsets,
                                std::span<const index_t> group_offsets,
                                std::span<detail::value_t<V>> advantages,
                                std::span<detail::value_t<V>> returns,
                                const otb_options& options = otb_conventions::verl_tir) {
  optimal_token_baseline(exec, rewards_in, old_logprobs, sum_pi_squared, is_weights, mask,
                         seq_offsets, group_offsets, advantages, returns, options);
}

// The same with caller scratch (optimal_token_baseline_workspace_bytes with the same options).
template <detail::values V>
void tir_optimal_token_baseline(exec::host exec, const V& rewards_in,
                                std::span<const detail::value_t<V>> old_logprobs,
                                std::span<const detail::value_t<V>> sum_pi_squared,
                                std::span<const detail::value_t<V>> is_weights,
                                std::span<const float> mask, std::span<const index_t> seq_offsets,
                                std::span<const index_t> group_offsets,
                                std::span<detail::value_t<V>> advantages,
                                std::span<detail::value_t<V>> returns, const otb_options& options,
                                workspace ws) {
  optimal_token_baseline(exec, rewards_in, old_logprobs, sum_pi_squared, is_weights, mask,
                         seq_offsets, group_offsets, advantages, returns, options, ws);
}

}  // namespace advantage

POSTTRAIN_NAMESPACE_END
