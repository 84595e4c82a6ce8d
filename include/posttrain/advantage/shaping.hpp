#pragma once
// Reward shaping applied before the advantage estimators: KL in the reward (token and sequence
// level), KL coefficient controllers, DAPO overlong penalty, ProRL stop-properly and missing-EOS
// penalties, reward clipping, truncated-completion masking. No gradient anywhere: shaped rewards
// use the behaviour ("old") and reference log-probs, which are constants.
//
// kl_in_reward<Estimator>(exec, r[N], old_logprob[N], ref_logprob[N], mask[N], seq_offsets[B+1],
//                          beta, kl_options, out_rewards[N], out_kl[N] or {}) -> kl_in_reward_stats
//   k_t = Estimator(ℓold_t − ℓref_t) with the clamps of kl_options (ops/kl.hpp; k1 for verl
//   "kl" / OpenRLHF / TRL PPO defaults, use kl_conventions::* for the clamps)
//   out_rewards_t = r_t − β·k_t·m_t where m_t != 0, r_t unchanged where m_t = 0
//   out_kl_t      = k_t·m_t (0 where m_t = 0)                       (verl's `kld`)
//   stats.sequence_mean = mean_b( Σ_t m_t·kld_t / (Σ_t m_t + 1e-8) )  (verl's current_kl for the
//                         adaptive controller; rows without tokens count as 0)
//   stats.token_mean    = Σ m·kld / Σ m (0 for an empty mask)
//   Peers: verl apply_kl_penalty (β from the controller, default fixed 0.001), OpenRLHF
//   compute_reward (−kl_coef·k per token, β 0.01; its reward clamp and last-token placement are
//   clip_rewards and the caller's reward layout), TRL PPO (reward_t = −kl_coef·k_t, 0.05).
// sequence_kl_penalty(exec, R[B], old_logprob[N], ref_logprob[N], mask, seq_offsets, beta, out[B])
//   out_b = R_b − β·Σ_t m_t·(ℓold_t − ℓref_t)          (TRL RLOO, k1 summed over the sequence,
//   β = 0.05; applied before the leave-one-out baseline). NaN rewards stay NaN (unscorable).
// Controllers (Ziegler et al. 2019; verl core_algos and OpenRLHF kl_controller are identical):
//   fixed_kl_controller{value}                 value never changes
//   adaptive_kl_controller{value, target, horizon}.update(current_kl, n_steps):
//     e = clip(current_kl/target − 1, −0.2, 0.2);  value ← value·(1 + e·n_steps/horizon)
//   Presets (kl_controller_conventions::): verl_fixed (0.001), openrlhf_fixed (0.01),
//   verl_adaptive (0.001, target 0.1, horizon 10000). n_steps = batch size (verl) or
//   rollout_batch_size × n_samples_per_prompt (OpenRLHF).
// overlong_penalty(exec, R[B], lengths[B], overlong_options, out[B])          (DAPO)
//   exceed = len − (max_length − buffer_length); verl: R + min(−exceed/buffer·factor, 0);
//   OpenRLHF (cap = true): exceed = min(exceed, buffer), R − exceed/buffer·factor if exceed > 0.
// stop_properly_penalty(exec, R[B], truncated[B], coef, out[B])               (ProRL, OpenRLHF)
//   truncated rows: R ← coef·R if coef >= 0, else R ← coef; other rows unchanged.
// missing_eos_penalty(exec, R[B], truncated[B], penalty, out[B])             (TRL PPO)
//   truncated rows: R ← R − penalty.
// clip_rewards(exec, R[B], reward_clip_options{lo, hi}, out[B])    clamp(R, lo, hi); NaN stays NaN.
//   Default ±10 = OpenRLHF (applied after rloo/group shaping, before the KL term).
// mask_truncated(exec, mask[N] or {}, seq_offsets, truncated[B], out_mask[N])  (TRL / DAPO
//   "overlong filtering", open-instruct): out_t = 0 for tokens of truncated rows, else m_t (1 for
//   an empty mask).
// truncated[B] is a byte per sequence (0 = finished with EOS, non-zero = truncated). Every out may
// be its input span (in place). Validation before any write, as everywhere.
#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>

#include "posttrain/advantage/common.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/ops/kl.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace advantage {

struct kl_in_reward_stats {
  double sequence_mean = 0.0;  // verl current_kl
  double token_mean = 0.0;
  double count = 0.0;  // Σ m
};

namespace detail {

template <class T>
void validate_logprob_pair(std::span<const T> old_logprob, std::span<const T> ref_logprob,
                           std::span<const float> mask, std::span<const index_t> seq_offsets,
                           std::string_view where) {
  expect(!seq_offsets.empty(), where, "seq_offsets is empty, expected B + 1 >= 1 elements");
  expect_offsets(seq_offsets, ssize(old_logprob), where, "seq_offsets");
  expect_size(ref_logprob, ssize(old_logprob), where, "ref_logprob",
              "one per token of old_logprob");
  expect_size_or_empty(mask, ssize(old_logprob), where, "mask", "one weight per token");
  detail::check_mask(mask, where);
}

template <class Exec>
inline constexpr bool host_only_v = std::is_same_v<Exec, exec::host>;

// Every shaping entry point takes an execution tag; only exec::host is implemented.
template <class Exec>
constexpr void require_host(Exec) {
  static_assert(host_only_v<Exec>,
                "posttrain::advantage shaping: only exec::host is "
                "implemented (shaping touches B scalars or one pass of tokens)");
}

inline void validate_beta(double beta, std::string_view where) {
  expect_non_negative(beta, where, "beta");
}

}  // namespace detail

template <kl_estimator Estimator, execution_tag Exec, detail::values V>
kl_in_reward_stats kl_in_reward(Exec exec, const V& rewards_in,
                                std::span<const detail::value_t<V>> old_logprob,
                                std::span<const detail::value_t<V>> ref_logprob,
                                std::span<const float> mask, std::span<const index_t> seq_offsets,
                                double beta, const kl_options& kl,
                                std::span<detail::value_t<V>> out_rewards,
                                std::span<detail::value_t<V>> out_kl = {}) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::kl_in_reward";
  const std::span<const T> rewards(rewards_in);
  detail::validate_beta(beta, where);
  ::posttrain::detail::validate_kl_options(kl, "advantage::kl_in_reward");
  detail::validate_logprob_pair(old_logprob, ref_logprob, mask, seq_offsets, where);
  expect_size(rewards, ssize(old_logprob), where, "rewards", "one per token");
  expect_size(out_rewards, ssize(old_logprob), where, "out_rewards", "one per token");
  expect_size_or_empty(out_kl, ssize(old_logprob), where, "out_kl", "one per token, or empty");
  expect(detail::disjoint_or_same(out_rewards, rewards) &&
             (out_kl.empty() || (out_kl.data() != out_rewards.data() &&
                                 detail::disjoint_or_same(out_kl, out_rewards))),
         where, "outputs overlap each other or partially overlap rewards");
  const ::posttrain::detail::kl_element<Estimator, double> element{
      ::posttrain::detail::kl_bound<double>(kl.input_min),
      ::posttrain::detail::kl_bound<double>(kl.input_max),
      ::posttrain::detail::kl_bound<double>(kl.output_min),
      ::posttrain::detail::kl_bound<double>(kl.output_max)};
  kl_in_reward_stats stats;
  double total = 0.0;
  const index_t sequences = ssize(seq_offsets) - 1;
  for (index_t b = 0; b < sequences; ++b) {
    double row = 0.0, row_count = 0.0;
    for (index_t t = seq_offsets[b]; t < seq_offsets[b + 1]; ++t) {
      const double w = mask.empty() ? 1.0 : static_cast<double>(mask[t]);
      if (w == 0.0) {
        out_rewards[t] = rewards[t];
        if (!out_kl.empty()) out_kl[t] = T(0);
        continue;
      }
      const double d = static_cast<double>(old_logprob[t]) - static_cast<double>(ref_logprob[t]);
      const double kld = element.value(d) * w;
      out_rewards[t] = static_cast<T>(static_cast<double>(rewards[t]) - beta * kld);
      if (!out_kl.empty()) out_kl[t] = static_cast<T>(kld);
      row += w * kld;
      row_count += w;
    }
    total += row;
    stats.count += row_count;
    stats.sequence_mean += row / (row_count + 1e-8);
  }
  if (sequences > 0) stats.sequence_mean /= static_cast<double>(sequences);
  stats.token_mean = stats.count > 0.0 ? total / stats.count : 0.0;
  detail::require_host(exec);
  return stats;
}

template <execution_tag Exec, detail::values V>
void sequence_kl_penalty(Exec exec, const V& rewards_in,
                         std::span<const detail::value_t<V>> old_logprob,
                         std::span<const detail::value_t<V>> ref_logprob,
                         std::span<const float> mask, std::span<const index_t> seq_offsets,
                         double beta, std::span<detail::value_t<V>> out) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::sequence_kl_penalty";
  const std::span<const T> rewards(rewards_in);
  detail::validate_beta(beta, where);
  detail::validate_logprob_pair(old_logprob, ref_logprob, mask, seq_offsets, where);
  expect_size(rewards, ssize(seq_offsets) - 1, where, "rewards", "one per sequence");
  expect_size(out, ssize(seq_offsets) - 1, where, "out", "one per sequence");
  expect(detail::disjoint_or_same(out, rewards), where, "out partially overlaps rewards");
  detail::require_host(exec);
  for (std::size_t b = 0; b + 1 < seq_offsets.size(); ++b) {
    double s = 0.0;
    for (index_t t = seq_offsets[b]; t < seq_offsets[b + 1]; ++t) {
      const double w = mask.empty() ? 1.0 : static_cast<double>(mask[t]);
      if (w != 0.0)
        s += w * (static_cast<double>(old_logprob[t]) - static_cast<double>(ref_logprob[t]));
    }
    out[b] = static_cast<T>(static_cast<double>(rewards[b]) - beta * s);
  }
}

// ---- KL coefficient controllers ----------------------------------------------------------------

struct fixed_kl_controller {
  double value = 0.001;
  void update(double, index_t) {}
};

struct adaptive_kl_controller {
  double value = 0.001;
  double target = 0.1;
  double horizon = 10000.0;

  // e = clip(current/target − 1, ±0.2); value ← value·(1 + e·n_steps/horizon).
  void update(double current_kl, index_t n_steps) {
    constexpr std::string_view where = "advantage::adaptive_kl_controller::update";
    expect_finite(current_kl, where, "current_kl");
    expect(n_steps >= 0, where, "n_steps must be >= 0, got ", n_steps);
    expect_positive(target, where, "target");
    expect_positive(horizon, where, "horizon");
    expect_finite(value, where, "value");
    double e = current_kl / target - 1.0;
    e = e < -0.2 ? -0.2 : (e > 0.2 ? 0.2 : e);
    value *= 1.0 + e * static_cast<double>(n_steps) / horizon;
  }
};

namespace kl_controller_conventions {
inline constexpr fixed_kl_controller verl_fixed{.value = 0.001};
inline constexpr fixed_kl_controller openrlhf_fixed{.value = 0.01};
inline constexpr adaptive_kl_controller verl_adaptive{
    .value = 0.001, .target = 0.1, .horizon = 10000.0};
}  // namespace kl_controller_conventions

// ---- outcome-reward shaping ---------------------------------------------------------------------

struct overlong_options {
  index_t max_length = 0;     // max response length (verl max_resp_len, OpenRLHF max_new_tokens)
  index_t buffer_length = 0;  // L_buf > 0
  double factor = 1.0;        // penalty factor f >= 0
  bool cap = false;           // OpenRLHF caps exceed at L_buf; verl does not
};

// The additive penalty of one response (host and device): <= 0.
POSTTRAIN_HOST_DEVICE inline double overlong_penalty_value(index_t length,
                                                           const overlong_options& o) {
  double exceed = static_cast<double>(length - (o.max_length - o.buffer_length));
  if (o.cap && exceed > static_cast<double>(o.buffer_length))
    exceed = static_cast<double>(o.buffer_length);
  const double p = -exceed / static_cast<double>(o.buffer_length) * o.factor;
  return p < 0.0 ? p : 0.0;
}

namespace overlong_conventions {
inline constexpr overlong_options verl(index_t max_length, index_t buffer_length,
                                       double factor = 1.0) {
  return {max_length, buffer_length, factor, false};
}
inline constexpr overlong_options openrlhf(index_t max_length, index_t buffer_length,
                                           double factor = 1.0) {
  return {max_length, buffer_length, factor, true};
}
}  // namespace overlong_conventions

struct reward_clip_options {
  double lo = -10.0;  // OpenRLHF --reward.clip_range default
  double hi = 10.0;
};

namespace detail {

template <class T>
void validate_scalar_io(std::span<const T> rewards, std::span<T> out, std::string_view where) {
  expect_size(out, ssize(rewards), where, "out", "one per reward");
  expect(disjoint_or_same(out, rewards), where, "out partially overlaps rewards");
}

inline void validate_truncated(std::span<const std::uint8_t> truncated, index_t sequences,
                               std::string_view where) {
  expect_size(truncated, sequences, where, "truncated", "one flag per sequence");
}

// The truncation penalties: a finite `value` (named `value_name`), then out_b = penalise(R_b) in
// double for truncated rows and R_b for the others.
template <class T, class Penalise>
void penalise_truncated(std::span<const T> rewards, std::span<const std::uint8_t> truncated,
                        double value, std::string_view value_name, std::span<T> out,
                        std::string_view where, Penalise penalise) {
  expect_finite(value, where, value_name);
  validate_truncated(truncated, ssize(rewards), where);
  validate_scalar_io(rewards, out, where);
  for (std::size_t i = 0; i < rewards.size(); ++i)
    out[i] = truncated[i] ? static_cast<T>(penalise(static_cast<double>(rewards[i]))) : rewards[i];
}

}  // namespace detail

template <execution_tag Exec, detail::values V>
void overlong_penalty(Exec exec, const V& rewards_in, std::span<const index_t> lengths,
                      const overlong_options& options, std::span<detail::value_t<V>> out) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::overlong_penalty";
  const std::span<const T> rewards(rewards_in);
  expect(options.buffer_length > 0, where, "options.buffer_length must be > 0, got ",
         options.buffer_length);
  expect(options.max_length >= options.buffer_length, where, "options.max_length (",
         options.max_length, ") must be >= options.buffer_length (", options.buffer_length, ")");
  expect_non_negative(options.factor, where, "options.factor");
  expect_size(lengths, ssize(rewards), where, "lengths", "one response length per reward");
  for (std::size_t i = 0; i < lengths.size(); ++i)
    expect(lengths[i] >= 0, where, "lengths[", i, "] = ", lengths[i], ", expected >= 0");
  detail::validate_scalar_io(rewards, out, where);
  detail::require_host(exec);
  for (std::size_t i = 0; i < rewards.size(); ++i)
    out[i] = static_cast<T>(static_cast<double>(rewards[i]) +
                            overlong_penalty_value(lengths[i], options));
}

template <execution_tag Exec, detail::values V>
void stop_properly_penalty(Exec exec, const V& rewards_in, std::span<const std::uint8_t> truncated,
                           double coef, std::span<detail::value_t<V>> out) {
  detail::require_host(exec);
  detail::penalise_truncated(std::span<const detail::value_t<V>>(rewards_in), truncated, coef,
                             "coef", out, "advantage::stop_properly_penalty",
                             [coef](double r) { return coef >= 0.0 ? coef * r : coef; });
}

template <execution_tag Exec, detail::values V>
void missing_eos_penalty(Exec exec, const V& rewards_in, std::span<const std::uint8_t> truncated,
                         double penalty, std::span<detail::value_t<V>> out) {
  detail::require_host(exec);
  detail::penalise_truncated(std::span<const detail::value_t<V>>(rewards_in), truncated, penalty,
                             "penalty", out, "advantage::missing_eos_penalty",
                             [penalty](double r) { return r - penalty; });
}

template <execution_tag Exec, detail::values V>
void clip_rewards(Exec exec, const V& rewards_in, const reward_clip_options& options,
                  std::span<detail::value_t<V>> out) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::clip_rewards";
  const std::span<const T> rewards(rewards_in);
  expect(!std::isnan(options.lo) && !std::isnan(options.hi) && options.lo <= options.hi, where,
         "options.lo <= options.hi (not NaN) expected, got [", options.lo, ", ", options.hi, "]");
  detail::validate_scalar_io(rewards, out, where);
  detail::require_host(exec);
  for (std::size_t i = 0; i < rewards.size(); ++i) {
    const double r = static_cast<double>(rewards[i]);
    out[i] = static_cast<T>(r < options.lo ? options.lo : (r > options.hi ? options.hi : r));
  }
}

template <execution_tag Exec>
void mask_truncated(Exec exec, std::span<const float> mask, std::span<const index_t> seq_offsets,
                    std::span<const std::uint8_t> truncated, std::span<float> out_mask) {
  constexpr std::string_view where = "advantage::mask_truncated";
  expect(!seq_offsets.empty(), where, "seq_offsets is empty, expected B + 1 >= 1 elements");
  expect_offsets(seq_offsets, seq_offsets.back(), where, "seq_offsets");
  expect_size_or_empty(mask, seq_offsets.back(), where, "mask", "one weight per token");
  expect_size(out_mask, seq_offsets.back(), where, "out_mask", "one weight per token");
  detail::validate_truncated(truncated, ssize(seq_offsets) - 1, where);
  expect(detail::disjoint_or_same(out_mask, mask), where, "out_mask partially overlaps mask");
  detail::require_host(exec);
  for (std::size_t b = 0; b + 1 < seq_offsets.size(); ++b)
    for (index_t t = seq_offsets[b]; t < seq_offsets[b + 1]; ++t)
      out_mask[t] = truncated[b] ? 0.0f : (mask.empty() ? 1.0f : mask[t]);
}

}  // namespace advantage

POSTTRAIN_NAMESPACE_END
