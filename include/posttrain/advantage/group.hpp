#pragma once
// Group-relative outcome advantages: GRPO and its std / epsilon variants, Dr.GRPO centring,
// batch-std scaling, and GRPO pass@k.
//
// INPUT CONTRACT: one scalar outcome reward per sequence R[B] (e.g. sequence_rewards() of the
// token rewards, verl's R_i = Σ_t r_t) and group_offsets[G + 1] over the B sequences (contiguous
// groups: the samples of one prompt; for arbitrary uids use group_by_ids() in core/ragged.hpp,
// permute R by grouping::order, compute, and scatter back). Output A[B] of R's type (one
// advantage per sequence; broadcast_to_tokens() in advantage/common.hpp writes A_b·m_t per token).
// All statistics of a group must be present in the call (TRL gathers the whole generation batch
// across processes first). No gradient: advantages are constants.
//
// group_advantages (per group g with scorable members S_g, n = |S_g|):
//   μ_g = mean(R over S_g)
//   var = Σ (R − μ_g)² / (n − 1)   (variance_kind::unbiased, torch.std)   or / n (biased,
//   numpy.std) var = max(var, variance_floor)                               (verl vectorized: 1e-6)
//   d   = sqrt(var) + ε   (epsilon_mode add_to_std)   or   sqrt(var + ε)   (add_inside_sqrt)
//   scale = group: d from the group's var;  batch: d from the var of every scorable R of the
//   call (TRL scale_rewards="batch": the mean stays per group!);  none: d = 1 (Dr.GRPO).
//   A_i = (R_i − μ_g) / d          (d == 0, possible only with ε = 0 and zero variance: A_i = 0)
// Zero-variance groups (all rewards equal) give A = 0 (up to rounding of μ) for every ε > 0.
// Singleton groups (n = 1, or n = 0 for a group of unscorable rewards), singleton_policy:
//   unit_stats  μ = 0, σ = 1: A = R / (1 + ε) with scale group, R with scale none   (verl)
//   zero        A = 0                                                           (TRL,
//   open-instruct) raise       posttrain::error before anything is written (OpenRLHF: n > 1)
// NaN rewards (nan_policy::ignore, TRL's unscorable samples): excluded from μ, σ and n (nanmean,
// nanstd), and their advantage is 0 (nan_to_num). nan_policy::raise rejects them. ±inf is always
// rejected.
//
// Presets (group_conventions::, reference section 1.4):
//   verl                    unbiased, (R−μ)/(σ + 1e-6), singleton μ=0 σ=1
//   (compute_grpo_outcome_advantage) verl_vectorized         as verl with σ = sqrt(max(var, 1e-6))
//   (grpo_vectorized; verl
//                           sums Σx² − (Σx)²/n in float32, here a two-pass double: same up to
//                           rounding)
//   trl                     unbiased nanstd, (R−μ)/(σ + 1e-4), NaN ignored, singleton 0
//   trl_batch               as trl with σ of the whole batch (scale_rewards="batch")
//   trl_none                as trl with scale none (scale_rewards="none")
//   openrlhf                unbiased, (R−μ)/(σ + 1e-9), singleton error      (group_norm)
//   open_instruct_standard  biased (numpy), (R−μ)/(σ + 1e-8), singleton 0
//   open_instruct_centered  R − μ (the default), singleton 0
//   dr_grpo                 R − μ, singleton μ=0 (verl norm_adv_by_std_in_grpo=False; OpenRLHF
//                           dr_grpo is the same with singleton raise)
//
// passk_advantages (verl compute_grpo_passk_outcome_advantage): every group needs n >= 2; the
// arg-max member gets A = (r_max − r_2nd) / (σ_g + ε) (σ unbiased; divided only when
// normalize_by_std), every other member 0. Ties: the FIRST index holding the maximum is the
// arg-max (and then r_2nd = r_max, so its advantage is 0). torch.topk's tie order is
// implementation-defined; this choice is deterministic. Rewards must be finite.
//
// Arithmetic in double; out may be the rewards span itself (in place).
// exec::cuda (device memory; backend/cuda/group_advantage.cuh): group_advantages only, every
// preset; options and sizes are checked on the host, reward finiteness and offsets are not (see
// advantage/common.hpp); singleton raise costs one stream synchronisation. passk_advantages is
// host-only.
#include <cmath>
#include <span>
#include <string_view>
#include <vector>

#include "posttrain/advantage/common.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/ops/reductions.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace advantage {

enum class group_scale {
  group,  // divide by the group's std (GRPO)
  batch,  // divide by the std of the whole batch, mean still per group (TRL "batch")
  none,   // centre only (Dr.GRPO, open-instruct "centered", TRL "none")
};

enum class std_epsilon {
  add_to_std,       // (R − μ) / (σ + ε)          every peer's GRPO
  add_inside_sqrt,  // (R − μ) / sqrt(var + ε)
};

struct group_options {
  variance_kind std_kind = variance_kind::unbiased;
  double epsilon = 1e-6;
  std_epsilon epsilon_mode = std_epsilon::add_to_std;
  double variance_floor = 0.0;  // var = max(var, floor) before the square root
  group_scale scale = group_scale::group;
  singleton_policy singleton = singleton_policy::unit_stats;
  nan_policy nan = nan_policy::raise;
};

namespace group_conventions {

inline constexpr group_options verl{};
inline constexpr group_options verl_vectorized{.variance_floor = 1e-6};
inline constexpr group_options trl{
    .epsilon = 1e-4, .singleton = singleton_policy::zero, .nan = nan_policy::ignore};
inline constexpr group_options trl_batch{.epsilon = 1e-4,
                                         .scale = group_scale::batch,
                                         .singleton = singleton_policy::zero,
                                         .nan = nan_policy::ignore};
inline constexpr group_options trl_none{.epsilon = 1e-4,
                                        .scale = group_scale::none,
                                        .singleton = singleton_policy::zero,
                                        .nan = nan_policy::ignore};
inline constexpr group_options openrlhf{.epsilon = 1e-9, .singleton = singleton_policy::raise};
inline constexpr group_options open_instruct_standard{
    .std_kind = variance_kind::biased, .epsilon = 1e-8, .singleton = singleton_policy::zero};
inline constexpr group_options open_instruct_centered{.std_kind = variance_kind::biased,
                                                      .epsilon = 1e-8,
                                                      .scale = group_scale::none,
                                                      .singleton = singleton_policy::zero};
inline constexpr group_options dr_grpo{.scale = group_scale::none};

}  // namespace group_conventions

// A_i = (R_i − mean) / denominator, or 0 when zero is set.
struct group_coefficients {
  double mean = 0.0;
  double denominator = 1.0;
  bool zero = false;
};

// d from a variance (host and device).
POSTTRAIN_HOST_DEVICE inline double group_std_denominator(double var, const group_options& o) {
  const double v = var > o.variance_floor ? var : o.variance_floor;
  return o.epsilon_mode == std_epsilon::add_to_std ? std::sqrt(v) + o.epsilon
                                                   : std::sqrt(v + o.epsilon);
}

// The coefficients of one group from its moments over scorable members (host and device).
// batch_denominator is d of the whole batch (read only with group_scale::batch).
POSTTRAIN_HOST_DEVICE inline group_coefficients make_group_coefficients(const masked_stats& s,
                                                                        const group_options& o,
                                                                        double batch_denominator) {
  group_coefficients c;
  if (!(s.count > 1.0)) {  // singleton (or no scorable member)
    if (o.singleton != singleton_policy::unit_stats) {
      c.zero = true;
      return c;
    }
    c.mean = 0.0;
    c.denominator = o.scale == group_scale::none    ? 1.0
                    : o.scale == group_scale::batch ? batch_denominator
                                                    : group_std_denominator(1.0, o);
  } else {
    c.mean = s.mean;
    c.denominator = o.scale == group_scale::none ? 1.0
                    : o.scale == group_scale::batch
                        ? batch_denominator
                        : group_std_denominator(s.variance(o.std_kind), o);
  }
  c.zero = c.denominator == 0.0;
  return c;
}

// One member (host and device): NaN (unscorable) rewards get 0.
POSTTRAIN_HOST_DEVICE inline double group_advantage(double r, const group_coefficients& c) {
  return (c.zero || r != r) ? 0.0 : (r - c.mean) / c.denominator;
}

struct passk_options {
  bool normalize_by_std = true;  // verl config.norm_adv_by_std_in_grpo
  double epsilon = 1e-6;
};

namespace detail {

inline void validate_group_options(const group_options& o, std::string_view where) {
  expect_non_negative(o.epsilon, where, "options.epsilon");
  expect_non_negative(o.variance_floor, where, "options.variance_floor");
  expect(o.std_kind == variance_kind::biased || o.std_kind == variance_kind::unbiased, where,
         "options.std_kind is not a variance_kind");
  expect(
      o.epsilon_mode == std_epsilon::add_to_std || o.epsilon_mode == std_epsilon::add_inside_sqrt,
      where, "options.epsilon_mode is not a std_epsilon");
  expect(o.scale == group_scale::group || o.scale == group_scale::batch ||
             o.scale == group_scale::none,
         where, "options.scale is not a group_scale");
  expect(o.singleton == singleton_policy::unit_stats || o.singleton == singleton_policy::zero ||
             o.singleton == singleton_policy::raise,
         where, "options.singleton is not a singleton_policy");
  expect(o.nan == nan_policy::raise || o.nan == nan_policy::ignore, where,
         "options.nan is not a nan_policy");
}

// Validates the common outcome arguments (groups, out's size and aliasing, reward finiteness).
template <class T>
void validate_outcome(std::span<const T> rewards, std::span<const index_t> group_offsets,
                      std::span<T> out, nan_policy nan, std::string_view where) {
  validate_groups(group_offsets, ssize(rewards), where);
  expect_size(out, ssize(rewards), where, "out", "one advantage per reward");
  expect(disjoint_or_same(out, rewards), where,
         "out partially overlaps rewards (in place needs out == rewards)");
  validate_rewards(rewards, nan, where, "rewards");
}

// Throws when a non-empty group has fewer than two scorable members.
inline void reject_singletons(std::span<const masked_stats> stats,
                              std::span<const index_t> group_offsets, std::string_view where,
                              std::string_view why) {
  for (std::size_t g = 0; g < stats.size(); ++g)
    if (group_offsets[g + 1] > group_offsets[g] && !(stats[g].count > 1.0))
      ::posttrain::detail::fail(where, "group ", g, " has ", stats[g].count,
                                " scorable member(s), expected at least 2 (", why, ")");
}

// Device front end: sizes and aliasing only (the offsets and rewards stay in device memory).
template <class T>
void validate_outcome_sizes(std::span<const T> rewards, std::span<const index_t> group_offsets,
                            std::span<T> out, std::string_view where) {
  expect(!group_offsets.empty(), where, "group_offsets is empty, expected G + 1 >= 1 elements");
  expect_size(out, ssize(rewards), where, "out", "one advantage per reward");
  expect(disjoint_or_same(out, rewards), where,
         "out partially overlaps rewards (in place needs out == rewards)");
}

// Host: validate_outcome, then the per-group moments of the scorable rewards with the singleton
// "raise" policy checked before any output is written; shared by GRPO and RLOO (the host twin of
// backend/cuda's group_detail::checked_group_moments). The scorable mask (nan_policy::ignore,
// B floats) and the G moments are taken from ws, in that order.
template <class T>
std::span<const masked_stats> checked_group_moments(exec::host exec, std::span<const T> rewards,
                                                    std::span<const index_t> group_offsets,
                                                    std::span<T> out, nan_policy nan,
                                                    singleton_policy singleton,
                                                    std::string_view where, workspace& ws) {
  validate_outcome(rewards, group_offsets, out, nan, where);
  const std::span<float> scorable_buf =
      ws.take<float>(nan == nan_policy::ignore ? rewards.size() : 0, where);
  const std::span<masked_stats> stats = ws.take<masked_stats>(group_offsets.size() - 1, where);
  const std::span<const float> scorable = nan == nan_policy::ignore
                                              ? scorable_mask(rewards, scorable_buf)
                                              : std::span<const float>();
  if (!backend::reductions_backend<exec::host>::segment_moments(exec, rewards, scorable,
                                                               group_offsets, stats))
    ::posttrain::detail::fail_mask(scorable, "segment_moments");
  if (singleton == singleton_policy::raise)
    reject_singletons(stats, group_offsets, where, "options.singleton = raise");
  return stats;
}

}  // namespace detail

// Bytes of the workspace group_advantages(exec::host, ..., ws) needs for B = `members` rewards in
// G = `groups` groups (the scorable mask with nan_policy::ignore, the moments and the
// coefficients of every group).
inline std::size_t group_advantages_workspace_bytes(exec::host, index_t members, index_t groups,
                                                    const group_options& options = {}) {
  const detail::outcome_counts n = detail::checked_outcome_counts(
      members, groups, "advantage::group_advantages_workspace_bytes");
  return workspace_size()
      .add<float>(options.nan == nan_policy::ignore ? n.members : 0)
      .add<masked_stats>(n.groups)
      .add<group_coefficients>(n.groups);
}

// GRPO-family advantages A[B] on the host with caller scratch (group_advantages_workspace_bytes):
// no allocation. The same arithmetic as the allocating form below, bit for bit.
template <detail::values V>
void group_advantages(exec::host exec, const V& rewards_in, std::span<const index_t> group_offsets,
                      std::span<detail::value_t<V>> out, const group_options& options,
                      workspace ws) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::group_advantages";
  const std::span<const T> rewards(rewards_in);
  detail::validate_group_options(options, where);
  const std::span<const masked_stats> stats = detail::checked_group_moments(
      exec, rewards, group_offsets, out, options.nan, options.singleton, where, ws);
  const std::size_t groups = stats.size();
  const std::span<group_coefficients> coefficients = ws.take<group_coefficients>(groups, where);
  double batch_denominator = 1.0;
  if (options.scale == group_scale::batch) {
    const masked_stats all = merge(std::span<const masked_stats>(stats));
    batch_denominator = group_std_denominator(all.variance(options.std_kind), options);
  }
  for (std::size_t g = 0; g < groups; ++g)
    coefficients[g] = make_group_coefficients(stats[g], options, batch_denominator);
  detail::advantage_backend<exec::host>::for_each_member(
      exec, group_offsets, [&](index_t g, index_t i) {
        out[i] = static_cast<T>(group_advantage(static_cast<double>(rewards[i]),
                                                coefficients[static_cast<std::size_t>(g)]));
      });
}

// GRPO-family advantages A[B]; see the header comment. On the host the scratch is allocated for
// this call (the workspace form above without a caller buffer).
template <execution_tag Exec, detail::values V>
void group_advantages(Exec exec, const V& rewards_in, std::span<const index_t> group_offsets,
                      std::span<detail::value_t<V>> out, const group_options& options = {}) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::group_advantages";
  const std::span<const T> rewards(rewards_in);
  if constexpr (!detail::on_host_v<Exec>) {
    detail::validate_group_options(options, where);
    detail::validate_outcome_sizes(rewards, group_offsets, out, where);
    detail::advantage_backend<Exec>::group_advantages(exec, rewards, group_offsets, out, options);
  } else {
    detail::validate_group_options(options, where);
    detail::with_outcome_workspace(
        ssize(rewards), group_offsets, where,
        [&](index_t b, index_t g) { return group_advantages_workspace_bytes(exec, b, g, options); },
        [&](workspace ws) { group_advantages(exec, rewards, group_offsets, out, options, ws); });
  }
}

// Bytes of the workspace passk_advantages(exec::host, ..., ws) needs for G = `groups` groups (the
// group moments, the arg-max and the gain of every group).
inline std::size_t passk_advantages_workspace_bytes(exec::host, index_t members, index_t groups,
                                                    const passk_options& = {}) {
  const std::size_t g = detail::checked_outcome_counts(
                            members, groups, "advantage::passk_advantages_workspace_bytes")
                            .groups;
  return workspace_size().add<masked_stats>(g).add<index_t>(g).add<double>(g);
}

// GRPO pass@k advantages on the host with caller scratch (passk_advantages_workspace_bytes): no
// allocation; bit for bit the allocating form.
template <detail::values V>
void passk_advantages(exec::host exec, const V& rewards_in, std::span<const index_t> group_offsets,
                      std::span<detail::value_t<V>> out, const passk_options& options,
                      workspace ws) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::passk_advantages";
  const std::span<const T> rewards(rewards_in);
  expect_non_negative(options.epsilon, where, "options.epsilon");
  detail::validate_outcome(rewards, group_offsets, out, nan_policy::raise, where);
  for (std::size_t g = 0; g + 1 < group_offsets.size(); ++g)
    expect(group_offsets[g + 1] - group_offsets[g] >= 2, where, "group ", g, " has ",
           group_offsets[g + 1] - group_offsets[g], " member(s), pass@k needs at least 2");
  const std::size_t groups = group_offsets.size() - 1;
  const std::span<masked_stats> stats = ws.take<masked_stats>(groups, where);
  const std::span<index_t> best = ws.take<index_t>(groups, where);
  const std::span<double> gain = ws.take<double>(groups, where);
  if (!backend::reductions_backend<exec::host>::segment_moments(
          exec, rewards, std::span<const float>(), group_offsets, stats))
    ::posttrain::detail::fail_mask(std::span<const float>(), "segment_moments");
  // Per group: the arg-max (first index wins ties) and the advantage it receives.
  for (std::size_t g = 0; g < groups; ++g) {
    index_t arg = group_offsets[g];
    for (index_t i = group_offsets[g] + 1; i < group_offsets[g + 1]; ++i)
      if (rewards[i] > rewards[arg]) arg = i;
    double second = -INFINITY;
    for (index_t i = group_offsets[g]; i < group_offsets[g + 1]; ++i)
      if (i != arg && static_cast<double>(rewards[i]) > second) second = rewards[i];
    double a = static_cast<double>(rewards[arg]) - second;
    if (options.normalize_by_std && a != 0.0)  // a tie gives 0 even with ε = 0 and σ = 0
      a /= std::sqrt(stats[g].variance(variance_kind::unbiased)) + options.epsilon;
    best[g] = arg;
    gain[g] = a;
  }
  detail::advantage_backend<exec::host>::for_each_member(
      exec, group_offsets, [&](index_t g, index_t i) {
        const auto k = static_cast<std::size_t>(g);
        out[i] = static_cast<T>(i == best[k] ? gain[k] : 0.0);
      });
}

// GRPO pass@k advantages (verl grpo_passk); see the header comment. The scratch is allocated for
// this call (the workspace form above without a caller buffer).
template <execution_tag Exec, detail::values V>
void passk_advantages(Exec exec, const V& rewards_in, std::span<const index_t> group_offsets,
                      std::span<detail::value_t<V>> out, const passk_options& options = {}) {
  using T = detail::value_t<V>;
  static_assert(detail::host_only_exec_v<Exec>,
                "advantage::passk_advantages has no device path yet: call it with exec::host");
  const std::span<const T> rewards(rewards_in);
  constexpr std::string_view where = "advantage::passk_advantages";
  expect_non_negative(options.epsilon, where, "options.epsilon");
  detail::with_outcome_workspace(
      ssize(rewards), group_offsets, where,
      [&](index_t b, index_t g) { return passk_advantages_workspace_bytes(exec, b, g, options); },
      [&](workspace ws) { passk_advantages(exec, rewards, group_offsets, out, options, ws); });
}

}  // namespace advantage

POSTTRAIN_NAMESPACE_END
