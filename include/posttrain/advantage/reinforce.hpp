#pragma once
// REINFORCE-family estimators over token rewards: discounted returns, reverse cumulative sums,
// REINFORCE++ (Hu 2025), REINFORCE++-baseline and ReMax (Li et al. 2023).
//
// INPUT CONTRACT: token rewards r[N] (score on the last response token plus any per-token
// in-reward KL, advantage/shaping.hpp), mask[N] float weights (empty = all ones),
// seq_offsets[B + 1]; the baseline variants also take per-sequence scalars. Outputs are [N]
// token arrays of the inputs' type, 0 where the mask is 0. No gradient: advantages are constants.
// Every sequence is its own episode (the carry starts at 0 after its last token).
//
// discounted_returns: G_t = r_t + γ·G_{t+1} backwards within each sequence, convention:
//   reset_at_masked (verl compute_reinforce_plus_plus_outcome_advantage): G_t = r_t + γ·c_{t+1}
//       is stored, then the carry is c_t = G_t·m_t: a masked token (padding past EOS, a tool
//       observation) resets the return to 0 for the tokens before it.
//   mask_rewards (OpenRLHF get_cumulative_returns): G_t = m_t·r_t + γ·G_{t+1}: masked tokens add
//       nothing but the return flows through them (discounted by γ).
//   carry_through_masked (verl 0.9.1 compute_reinforce_plus_plus_outcome_advantage): G_t =
//       r_t + γ·c_{t+1} is stored, the carry is c_t = m_t·G_t + (1 − m_t)·c_{t+1}: a masked token
//       (a tool observation inside a multi-turn response) is skipped, neither resetting nor
//       discounting the return (the reference's verl b178a3c resets: reset_at_masked).
//   Both are affine maps of the carry (returns_reset_at_masked / returns_mask_rewards), i.e. the
//   same reverse scan as GAE. With γ = 1 and 0/1 masks without interior holes they agree.
// reverse_cumsum: out_t = Σ_{s ≥ t in the sequence} m_s·x_s (mask_rewards with γ = 1).
//
// reinforce_plus_plus: returns = discounted_returns(r); advantages = whiten(returns) over every
//   token of the call (batch scope). Presets (reinforce_pp_conventions::):
//     verl      γ = 1, reset_at_masked, masked_whiten (unbiased, +1e-8 in rsqrt) then ·m
//     verl_0_9  as verl with carry_through_masked (verl 0.9.1; equal to verl without mask holes)
//     openrlhf  γ = 1, mask_rewards, global normalisation (biased, max(var, 1e-8))
// reinforce_plus_plus_baseline (outcome rewards R[B], group_offsets[G+1]): A_i = R_i − μ_g
//   (singleton: μ = 0 with unit_stats (verl), error with raise (OpenRLHF asserts n > 1)), tiled
//   onto every token of sequence i (×m), then whitened over all tokens: the statistics are
//   TOKEN-weighted (longer responses count more in μ, σ). Presets: verl (unbiased, +1e-8, ·m),
//   openrlhf (biased clamp). (OpenRLHF builds its returns from the token rewards, KL included:
//   with KL in the reward use group_advantages(dr_grpo) on R, place it on the last token,
//   discounted_returns(mask_rewards, γ = 1), then whiten: that is its exact pipeline.)
// remax (verl compute_remax_outcome_advantage): returns = reverse_cumsum(r·m),
//   advantages_t = returns_t − b_i·m_t with b_i the reward of sequence i's greedy rollout. No
//   whitening.
//
// exec::cuda (device memory; backend/cuda/reinforce.cuh, scan.cuh, whiten.cuh):
// discounted_returns, reverse_cumsum and reinforce_plus_plus (every preset). γ, options and sizes
// are checked on the host; offsets and mask weights are not (advantage/common.hpp). With
// whitening on_degenerate = raise the degenerate batch is detected on the device after the
// returns are written (one synchronisation): advantages / returns then hold the unwhitened
// returns when it throws. remax and reinforce_plus_plus_baseline are host-only for now.
// Validation as for GAE (advantage/gae.hpp): γ finite in [0, 1], sizes, offsets, mask weights,
// and with whitening on_degenerate = raise the batch must have enough weight (checked first).
#include <array>
#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "posttrain/advantage/common.hpp"
#include "posttrain/advantage/gae.hpp"
#include "posttrain/advantage/group.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/ops/whiten.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace advantage {

enum class return_convention {
  reset_at_masked,  // verl: store r + γ·c, then c ← G·m
  mask_rewards,     // OpenRLHF: G = m·r + γ·G'
  carry_through_masked,  // verl 0.9.1: store r + γ·c, then c ← m·G + (1 − m)·c
};

struct discounted_return_options {
  double gamma = 1.0;
  return_convention convention = return_convention::reset_at_masked;
};

// Carry maps (host and device), in double. output() is G_t given the carry after token t+1 and
// after t. m == 0 gives the masked map without reading r (a NaN there is selected away, never
// multiplied by 0).
struct returns_reset_at_masked {
  double gamma;
  POSTTRAIN_HOST_DEVICE affine_map<double> map(double r, double m) const {
    return m != 0.0 ? affine_map<double>{m * gamma, m * r} : affine_map<double>{0.0, 0.0};
  }
  POSTTRAIN_HOST_DEVICE double output(double r, double next, double) const {
    return r + gamma * next;
  }
};

struct returns_mask_rewards {
  double gamma;
  // 0.0 + γ: a γ of −0.0 (validation accepts it) acts as +0.0 (see gae_plain).
  POSTTRAIN_HOST_DEVICE affine_map<double> map(double r, double m) const {
    return {0.0 + gamma, m != 0.0 ? m * r : 0.0};
  }
  POSTTRAIN_HOST_DEVICE double output(double, double, double current) const { return current; }
};

struct returns_carry_through_masked {
  double gamma;
  POSTTRAIN_HOST_DEVICE affine_map<double> map(double r, double m) const {
    return m != 0.0 ? affine_map<double>{m * gamma + (1.0 - m), m * r}
                    : affine_map<double>{1.0, 0.0};
  }
  POSTTRAIN_HOST_DEVICE double output(double r, double next, double) const {
    return r + gamma * next;
  }
};

struct reinforce_pp_options {
  double gamma = 1.0;
  return_convention convention = return_convention::reset_at_masked;
  bool whiten = true;
  whiten_options whitening = [] {
    whiten_options w = whiten_conventions::verl;
    w.multiply_by_mask = true;
    return w;
  }();
};

struct reinforce_pp_baseline_options {
  singleton_policy singleton = singleton_policy::unit_stats;
  whiten_options whitening = reinforce_pp_options{}.whitening;
};

namespace reinforce_pp_conventions {

// `verl` is the reference's verl commit b178a3c (reset at masked tokens), also under its versioned
// name verl_b178a3c; verl 0.9.1 (the current release, conventions::verl::reinforce_pp) is
// verl_0_9. The two agree without interior mask holes.
inline constexpr reinforce_pp_options verl{};
inline constexpr reinforce_pp_options verl_b178a3c{};
inline constexpr reinforce_pp_options verl_0_9{.convention =
                                                   return_convention::carry_through_masked};
inline constexpr reinforce_pp_options openrlhf{.gamma = 1.0,
                                               .convention = return_convention::mask_rewards,
                                               .whiten = true,
                                               .whitening = whiten_conventions::openrlhf_global};
inline constexpr reinforce_pp_baseline_options verl_baseline{};
inline constexpr reinforce_pp_baseline_options openrlhf_baseline{
    .singleton = singleton_policy::raise, .whitening = whiten_conventions::openrlhf_global};

}  // namespace reinforce_pp_conventions

namespace detail {

// One token of the reverse loop (a backend reverse_scan kernel): G_t from the carry, then the
// carry of t.
template <class T, class Convention, bool HasMask>
struct return_step {
  using value_type = T;
  using state = double;  // the carry, 0 past each sequence's end
  static constexpr int inputs = 1, outputs = 1;
  static constexpr bool has_mask = HasMask;
  static constexpr bool has_sequence_constant = false;
  Convention conv;
  const T* in[1];
  const float* mask;
  T* out[1];

  POSTTRAIN_FORCEINLINE void step(const std::array<double, 1>& x, double w, double, double& carry,
                                  std::array<double, 1>& y) const {
    if constexpr (!HasMask) w = 1.0;
    const double next = carry;
    carry = apply(conv.map(x[0], w), carry);
    y[0] = w != 0.0 ? conv.output(x[0], next, carry) : 0.0;
  }
};

// ReMax (a reverse_scan kernel): G_t = Σ_{s ≥ t} m_s·r_s (mask_rewards, γ = 1), advantages
// A_t = G_t − b·m_t with G_t rounded to T first (the value the returns hold), returns G_t. The
// baseline b of the sequence is the kernel's per-sequence constant.
template <class T, bool HasMask, bool HasReturns>
struct remax_step {
  using value_type = T;
  using state = double;
  static constexpr int inputs = 1;
  static constexpr int outputs = HasReturns ? 2 : 1;  // advantages, returns
  static constexpr bool has_mask = HasMask;
  static constexpr bool has_sequence_constant = true;
  const T* sequence_constant;  // b[B]
  const T* in[1];
  const float* mask;
  T* out[outputs];

  POSTTRAIN_FORCEINLINE void step(const std::array<double, 1>& x, double w, double baseline,
                                  double& carry, std::array<double, outputs>& y) const {
    if constexpr (!HasMask) w = 1.0;
    carry = apply(returns_mask_rewards{1.0}.map(x[0], w), carry);
    const double g = static_cast<double>(static_cast<T>(carry));  // the value the returns hold
    const bool keep = w != 0.0;
    y[0] = keep ? g - baseline * w : 0.0;
    if constexpr (HasReturns) y[1] = keep ? g : 0.0;
  }
};

template <class T>
void validate_return_inputs(std::span<const T> rewards, std::span<const float> mask,
                            std::span<const index_t> seq_offsets, std::span<T> out, double gamma,
                            std::string_view where, std::string_view out_name,
                            bool on_host = true) {
  validate_unit_interval(gamma, where, "gamma");
  validate_tokens(rewards, mask, seq_offsets, out, where, "rewards", out_name, on_host);
  expect(disjoint_or_same(out, rewards), where, out_name,
         " partially overlaps rewards (in place needs the same span)");
}

template <class Exec, class T>
void run_returns(Exec exec, std::span<const T> rewards, std::span<const float> mask,
                 std::span<const index_t> seq_offsets, std::span<T> out,
                 const discounted_return_options& o) {
  if constexpr (!on_host_v<Exec>) {
    advantage_backend<Exec>::returns(exec, rewards, mask, seq_offsets, out, o);
  } else {
    auto scan = [&]<class Convention>(Convention conv) {
      if (mask.empty()) {
        return_step<T, Convention, false> step{conv, {rewards.data()}, nullptr, {out.data()}};
        advantage_backend<Exec>::reverse_scan(exec, seq_offsets, step);
      } else {
        return_step<T, Convention, true> step{conv, {rewards.data()}, mask.data(), {out.data()}};
        advantage_backend<Exec>::reverse_scan(exec, seq_offsets, step);
      }
    };
    if (o.convention == return_convention::reset_at_masked)
      scan(returns_reset_at_masked{o.gamma});
    else if (o.convention == return_convention::carry_through_masked)
      scan(returns_carry_through_masked{o.gamma});
    else
      scan(returns_mask_rewards{o.gamma});
  }
}

}  // namespace detail

template <execution_tag Exec, detail::values V>
void discounted_returns(Exec exec, const V& rewards_in, std::span<const float> mask,
                        std::span<const index_t> seq_offsets, std::span<detail::value_t<V>> out,
                        const discounted_return_options& options = {}) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::discounted_returns";
  const std::span<const T> rewards(rewards_in);
  detail::validate_return_inputs(rewards, mask, seq_offsets, out, options.gamma, where, "out",
                                 detail::on_host_v<Exec>);
  expect(options.convention == return_convention::reset_at_masked ||
             options.convention == return_convention::mask_rewards ||
             options.convention == return_convention::carry_through_masked,
         where, "options.convention is not a return_convention");
  if constexpr (detail::on_host_v<Exec>) detail::check_mask(mask, where);
  detail::run_returns(exec, rewards, mask, seq_offsets, out, options);
}

template <execution_tag Exec, detail::values V>
void reverse_cumsum(Exec exec, const V& values_in, std::span<const float> mask,
                    std::span<const index_t> seq_offsets, std::span<detail::value_t<V>> out) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::reverse_cumsum";
  const std::span<const T> values(values_in);
  detail::validate_return_inputs(values, mask, seq_offsets, out, 1.0, where, "out",
                                 detail::on_host_v<Exec>);
  if constexpr (detail::on_host_v<Exec>) detail::check_mask(mask, where);
  detail::run_returns(exec, values, mask, seq_offsets, out,
                      {.gamma = 1.0, .convention = return_convention::mask_rewards});
}

// Bytes of the workspace reinforce_plus_plus(..., ws) needs: the whitening's scratch
// (options.whiten) over the B sequences of seq_offsets (whiten_workspace_bytes), else 0.
template <execution_tag Exec>
std::size_t reinforce_plus_plus_workspace_bytes(Exec exec, std::span<const index_t> seq_offsets,
                                                const reinforce_pp_options& options = {}) {
  if (!options.whiten) return 0;
  return whiten_workspace_bytes(
      exec, ::posttrain::detail::whiten_scope_count(options.whitening, seq_offsets));
}

// REINFORCE++: advantages[N] (whitened returns) and returns[N] (optional, unwhitened). The
// whitening's scratch comes from ws (reinforce_plus_plus_workspace_bytes): no allocation on the
// host.
template <execution_tag Exec, detail::values V>
void reinforce_plus_plus(Exec exec, const V& rewards_in, std::span<const float> mask,
                         std::span<const index_t> seq_offsets,
                         std::span<detail::value_t<V>> advantages,
                         std::span<detail::value_t<V>> returns,
                         const reinforce_pp_options& options, workspace ws) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::reinforce_plus_plus";
  const std::span<const T> rewards(rewards_in);
  detail::validate_return_inputs(rewards, mask, seq_offsets, advantages, options.gamma, where,
                                 "advantages", detail::on_host_v<Exec>);
  expect(options.convention == return_convention::reset_at_masked ||
             options.convention == return_convention::mask_rewards ||
             options.convention == return_convention::carry_through_masked,
         where, "options.convention is not a return_convention");
  expect_size_or_empty(returns, ssize(rewards), where, "returns",
                       "one per token, or empty (not requested)");
  expect(returns.empty() || (returns.data() != advantages.data() &&
                             detail::disjoint_or_same(returns, advantages) &&
                             detail::disjoint_or_same(returns, rewards)),
         where, "returns overlaps advantages or partially overlaps rewards");
  if (options.whiten) ::posttrain::detail::validate_whiten_options(options.whitening);
  // The whitening takes its scratch after the advantages are written: check its size first (an
  // empty workspace on the device lets the whitening allocate stream-ordered).
  const std::size_t needed = reinforce_plus_plus_workspace_bytes(exec, seq_offsets, options);
  expect(needed == 0 || ws.size() >= needed || (!detail::on_host_v<Exec> && ws.data() == nullptr),
         where, "workspace of ", ws.size(), " bytes is too small (", needed,
         " needed): size it with reinforce_plus_plus_workspace_bytes");
  if constexpr (!detail::on_host_v<Exec>) {
    // Returns into `returns` when requested, then whitened from there into advantages (no copy).
    const std::span<T> target = returns.empty() ? advantages : returns;
    detail::run_returns(exec, rewards, mask, seq_offsets, target,
                        {.gamma = options.gamma, .convention = options.convention});
    if (options.whiten)
      whiten(exec, std::span<const T>(target), mask, seq_offsets, advantages, options.whitening,
             ws);
    else if (!returns.empty())
      detail::run_returns(exec, rewards, mask, seq_offsets, advantages,
                          {.gamma = options.gamma, .convention = options.convention});
  } else {
    detail::validate_mask_for_whitening(mask, seq_offsets, options.whiten, options.whitening,
                                        where);
    detail::run_returns(exec, rewards, mask, seq_offsets, advantages,
                        {.gamma = options.gamma, .convention = options.convention});
    if (!returns.empty()) std::copy(advantages.begin(), advantages.end(), returns.begin());
    if (options.whiten)
      whiten(exec, std::span<const T>(advantages), mask, seq_offsets, advantages,
             options.whitening, ws);
  }
}

// The same, with the whitening's scratch allocated for this call (on the device: stream-ordered).
template <execution_tag Exec, detail::values V>
void reinforce_plus_plus(Exec exec, const V& rewards, std::span<const float> mask,
                         std::span<const index_t> seq_offsets,
                         std::span<detail::value_t<V>> advantages,
                         std::span<detail::value_t<V>> returns,
                         const reinforce_pp_options& options = {}) {
  workspace_buffer buffer;
  reinforce_plus_plus(exec, rewards, mask, seq_offsets, advantages, returns, options,
                      ::posttrain::detail::scratch_view(
                          exec, buffer, reinforce_plus_plus_workspace_bytes(exec, seq_offsets,
                                                                            options)));
}

// Bytes of the workspace reinforce_plus_plus_baseline(exec::host, ..., ws) needs for B sequences
// in G groups: R − μ_g [B] of T, group_advantages' scratch (centring only) and the whitening's.
template <class T>
std::size_t reinforce_plus_plus_baseline_workspace_bytes(
    exec::host exec, std::span<const index_t> seq_offsets, index_t groups,
    const reinforce_pp_baseline_options& options = {}) {
  const index_t b = seq_offsets.empty() ? 0 : ssize(seq_offsets) - 1;
  return workspace_size().add<T>(static_cast<std::size_t>(b)) +
         group_advantages_workspace_bytes(
             exec, b, groups,
             group_options{.scale = group_scale::none, .singleton = options.singleton}) +
         whiten_workspace_bytes(
             exec, ::posttrain::detail::whiten_scope_count(options.whitening, seq_offsets));
}

// REINFORCE++-baseline: outcome rewards R[B] with groups, token advantages[N]. Scratch from ws
// (reinforce_plus_plus_baseline_workspace_bytes<T>): no allocation.
template <detail::values V>
void reinforce_plus_plus_baseline(exec::host exec, const V& rewards_in,
                                  std::span<const index_t> group_offsets,
                                  std::span<const float> mask, std::span<const index_t> seq_offsets,
                                  std::span<detail::value_t<V>> advantages,
                                  const reinforce_pp_baseline_options& options, workspace ws) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::reinforce_plus_plus_baseline";
  const std::span<const T> rewards(rewards_in);
  expect(!seq_offsets.empty(), where, "seq_offsets is empty, expected B + 1 >= 1 elements");
  expect_size(rewards, ssize(seq_offsets) - 1, where, "rewards", "one per sequence");
  expect_offsets(seq_offsets, seq_offsets.back(), where, "seq_offsets");
  expect_size(advantages, seq_offsets.back(), where, "advantages", "one per token");
  expect_size_or_empty(mask, seq_offsets.back(), where, "mask", "one weight per token");
  detail::validate_groups(group_offsets, ssize(rewards), where);
  detail::validate_rewards(rewards, nan_policy::raise, where, "rewards");
  ::posttrain::detail::validate_whiten_options(options.whitening);
  detail::validate_mask_for_whitening(mask, seq_offsets, true, options.whitening, where);
  // Everything is taken before anything is written: the whitening's share is checked here.
  const std::size_t needed =
      reinforce_plus_plus_baseline_workspace_bytes<T>(exec, seq_offsets,
                                                      ssize(group_offsets) - 1, options);
  expect(ws.size() >= needed || needed == 0, where, "workspace of ", ws.size(),
         " bytes is too small (", needed,
         " needed): size it with reinforce_plus_plus_baseline_workspace_bytes");
  const std::span<T> centred = ws.take<T>(rewards.size(), where);
  const group_options centring{.scale = group_scale::none, .singleton = options.singleton};
  const std::span<std::byte> group_scratch = ws.take<std::byte>(
      group_advantages_workspace_bytes(exec, ssize(rewards), ssize(group_offsets) - 1, centring),
      where);
  // R − μ_g with the requested singleton policy (raises before anything is written).
  group_advantages(exec, std::span<const T>(rewards), group_offsets, centred, centring,
                   workspace(group_scratch.data(), group_scratch.size()));
  detail::advantage_backend<exec::host>::broadcast(exec, std::span<const T>(centred), seq_offsets,
                                                   mask, advantages);
  whiten(exec, std::span<const T>(advantages), mask, seq_offsets, advantages, options.whitening,
         ws);
}

// The same, with the scratch allocated for this call.
template <execution_tag Exec, detail::values V>
void reinforce_plus_plus_baseline(Exec exec, const V& rewards_in,
                                  std::span<const index_t> group_offsets,
                                  std::span<const float> mask, std::span<const index_t> seq_offsets,
                                  std::span<detail::value_t<V>> advantages,
                                  const reinforce_pp_baseline_options& options = {}) {
  using T = detail::value_t<V>;
  static_assert(detail::host_only_exec_v<Exec>,
                "advantage::reinforce_plus_plus_baseline has no device path yet: call it with "
                "exec::host");
  const index_t groups = group_offsets.empty() ? 0 : ssize(group_offsets) - 1;
  workspace_buffer buffer;
  reinforce_plus_plus_baseline(exec, std::span<const T>(rewards_in), group_offsets, mask,
                               seq_offsets, advantages, options,
                               buffer.view(reinforce_plus_plus_baseline_workspace_bytes<T>(
                                   exec, seq_offsets, groups, options)));
}

// ReMax: advantages[N] = reverse_cumsum(r·m) − b_i·m, returns[N] (optional) = reverse_cumsum.
template <execution_tag Exec, detail::values V>
void remax(Exec exec, const V& rewards_in, std::span<const detail::value_t<V>> baselines,
           std::span<const float> mask, std::span<const index_t> seq_offsets,
           std::span<detail::value_t<V>> advantages, std::span<detail::value_t<V>> returns) {
  using T = detail::value_t<V>;
  static_assert(detail::host_only_exec_v<Exec>,
                "advantage::remax has no device path yet: call it with exec::host");
  constexpr std::string_view where = "advantage::remax";
  const std::span<const T> rewards(rewards_in);
  detail::validate_return_inputs(rewards, mask, seq_offsets, advantages, 1.0, where, "advantages");
  expect_size(baselines, ssize(seq_offsets) - 1, where, "baselines",
              "one greedy-rollout reward per sequence");
  detail::validate_rewards(baselines, nan_policy::raise, where, "baselines");
  expect_size_or_empty(returns, ssize(rewards), where, "returns",
                       "one per token, or empty (not requested)");
  expect(returns.empty() || (returns.data() != advantages.data() &&
                             detail::disjoint_or_same(returns, advantages) &&
                             detail::disjoint_or_same(returns, rewards)),
         where, "returns overlaps advantages or partially overlaps rewards");
  detail::check_mask(mask, where);
  // One pass: the reverse cumulative sum and the baseline subtraction in the same scan.
  auto scan = [&]<bool HasMask, bool HasReturns>() {
    detail::remax_step<T, HasMask, HasReturns> step{
        baselines.data(), {rewards.data()}, mask.data(), {advantages.data()}};
    if constexpr (HasReturns) step.out[1] = returns.data();
    detail::advantage_backend<Exec>::reverse_scan(exec, seq_offsets, step);
  };
  if (mask.empty() && returns.empty())
    scan.template operator()<false, false>();
  else if (mask.empty())
    scan.template operator()<false, true>();
  else if (returns.empty())
    scan.template operator()<true, false>();
  else
    scan.template operator()<true, true>();
}

}  // namespace advantage

POSTTRAIN_NAMESPACE_END
