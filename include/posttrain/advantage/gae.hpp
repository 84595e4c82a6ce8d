#pragma once
// Generalized advantage estimation (GAE, Schulman et al. 2016) over the packed ragged layout.
//
// INPUT CONTRACT: token rewards r[N] (the score on the last response token, minus any in-reward
// KL: advantage/shaping.hpp), critic values V[N], a mask[N] of float weights (empty = all ones),
// seq_offsets[B + 1]. Each sequence is an independent episode: the recurrences start at its last
// token with nextvalue = 0 and A = 0 (no bootstrap past the end). No groups; there is no
// singleton / zero-variance group policy (whitening's degenerate batch is whiten_options'
// on_degenerate). Outputs advantages[N] and returns[N] (returns may be empty = not requested) of
// the inputs' type; both are 0 where the mask is 0. No gradient: advantages are constants.
//
// Two recurrences (gae_recurrence), both backwards in time within each sequence:
//
//   masked_carry (verl compute_gae_advantage_return; performance.md 5.3): masked tokens (prompt,
//   tool-observation, padding) are skipped, not reset: the next VALID value and the advantage
//   are carried across them.
//     δ_t   = r_t + γ·nv_{t+1} − V_t
//     A_t   = m_t·(δ_t + γλ·A_{t+1}) + (1 − m_t)·A_{t+1}
//     nv_t  = m_t·V_t + (1 − m_t)·nv_{t+1}            (nv past the end = 0, A past the end = 0)
//     ret_t = A_t + V_t
//
//   plain (OpenRLHF get_advantages_and_returns, TRL PPO, open-instruct calculate_advantages):
//   rewards and values are multiplied by the mask first (r̃ = m·r, Ṽ = m·V), then the textbook
//   recurrence with nextvalue = Ṽ_{t+1} (no carry across masked tokens):
//     δ_t   = r̃_t + γ·Ṽ_{t+1} − Ṽ_t,    A_t = δ_t + γλ·A_{t+1},    ret_t = A_t + Ṽ_t
//   On trailing padding both recurrences agree; they differ on interior masked tokens (multi-turn).
//
// Both are pairs of affine maps x ↦ a·x + b applied in reverse order (performance.md 5.3), with
// composition (a1, b1)∘(a2, b2) = (a1·a2, a1·b2 + b1) (apply 2 then 1): the CPU runs them as a
// serial loop per sequence, a GPU as a reverse segmented scan of the same maps.
//   masked_carry: value map (1 − m, m·V); advantage map (m·γλ + 1 − m, m·δ)    (identity at m = 0)
//   plain:        value map (0, m·V);      advantage map (γλ, δ)
// Masked tokens (m = 0) are never read: their maps are selected as above without touching r, V.
//
// returns = A + V is computed from the advantages BEFORE whitening (verl, TRL, OpenRLHF). Then,
// if options.whiten, the advantages are whitened in place with options.whitening
// (ops/whiten.hpp; batch scope over every token of the call):
//   verl / TRL:  unbiased variance, (A − μ)·rsqrt(var + 1e-8)            (raises on Σm <= 1)
//   OpenRLHF:    biased variance,   (A − μ)·rsqrt(max(var, 1e-8))
// For micro-batches / ranks whitened with global statistics, set whiten = false and call
// whiten_with_moments with the merge() of every part's masked_moments.
//
// Presets (gae_conventions::):
//   verl       γ = 1, λ = 1, masked_carry, whitening verl (algorithm.gamma / lam defaults)
//   trl_ppo    γ = 1, λ = 0.95, plain, whitening trl_ppo (pass TRL's ~padding_mask as the mask)
//   openrlhf   γ = 1, λ = 1, plain, whitening openrlhf_global
//   open_instruct  γ = 1, λ = 1, plain, no whitening (rl_utils.calculate_advantages)
// exec::cuda (device memory; backend/cuda/gae.cuh then ops/whiten.hpp on the device): options,
// sizes and aliasing are checked on the host; offsets and mask weights are not
// (advantage/common.hpp). With whitening on_degenerate = raise the degenerate batch is detected
// after the scan (one synchronisation): advantages / returns then hold the unwhitened values.
// Validation: γ, λ finite in [0, 1]; sizes; offsets; mask weights finite >= 0; outputs may alias
// the inputs exactly (same index) but not each other; with on_degenerate = raise, a batch (or
// segment) whose weight is too small to whiten is rejected before anything is written, and
// whitening.eps must then be > 0 (a zero variance could not be detected before writing).
#include <array>
#include <cmath>
#include <span>
#include <string_view>

#include "posttrain/advantage/common.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/ops/whiten.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace advantage {

// x ↦ a·x + b. Identity by default.
template <class T>
struct affine_map {
  T a = T(1);
  T b = T(0);
};

// outer ∘ inner: apply inner, then outer (associative, not commutative).
template <class T>
POSTTRAIN_HOST_DEVICE constexpr affine_map<T> compose(const affine_map<T>& outer,
                                                      const affine_map<T>& inner) {
  return {outer.a * inner.a, outer.a * inner.b + outer.b};
}

template <class T>
POSTTRAIN_HOST_DEVICE constexpr T apply(const affine_map<T>& f, T x) {
  return f.a * x + f.b;
}

enum class gae_recurrence {
  masked_carry,  // verl: nextvalue and advantage carried across masked tokens
  plain,         // OpenRLHF / TRL PPO / open-instruct: r, V multiplied by the mask, no carry
};

struct gae_options {
  double gamma = 1.0;   // discount γ ∈ [0, 1]
  double lambda = 1.0;  // GAE λ ∈ [0, 1]
  gae_recurrence recurrence = gae_recurrence::masked_carry;
  bool whiten = true;  // whiten the advantages (after the returns are taken)
  whiten_options whitening = whiten_conventions::verl;
};

namespace gae_conventions {

inline constexpr gae_options verl{.gamma = 1.0,
                                  .lambda = 1.0,
                                  .recurrence = gae_recurrence::masked_carry,
                                  .whiten = true,
                                  .whitening = whiten_conventions::verl};
inline constexpr gae_options trl_ppo{.gamma = 1.0,
                                     .lambda = 0.95,
                                     .recurrence = gae_recurrence::plain,
                                     .whiten = true,
                                     .whitening = whiten_conventions::trl_ppo};
inline constexpr gae_options openrlhf{.gamma = 1.0,
                                      .lambda = 1.0,
                                      .recurrence = gae_recurrence::plain,
                                      .whiten = true,
                                      .whitening = whiten_conventions::openrlhf_global};
inline constexpr gae_options open_instruct{.gamma = 1.0,
                                           .lambda = 1.0,
                                           .recurrence = gae_recurrence::plain,
                                           .whiten = false,
                                           .whitening = whiten_conventions::verl};

}  // namespace gae_conventions

// The per-token maps of each recurrence (host and device), in double (callers passing float get
// double arithmetic). m == 0 gives the maps' masked form without reading r or v (a NaN there is
// selected away, never multiplied by 0).
struct gae_masked_carry {
  double gamma;
  double gamma_lambda;

  // Branch-free: at m = 0 the a's are exactly 1 and the b's are selected to 0 (never m·NaN).
  POSTTRAIN_HOST_DEVICE affine_map<double> value_map(double v, double m) const {
    return {1.0 - m, m != 0.0 ? m * v : 0.0};
  }
  POSTTRAIN_HOST_DEVICE affine_map<double> advantage_map(double r, double v, double m,
                                                         double next_value) const {
    const double delta = r + gamma * next_value - v;
    return {m * gamma_lambda + (1.0 - m), m != 0.0 ? m * delta : 0.0};
  }
  // The value added to A_t to form the return (verl: returns = advantages + values).
  POSTTRAIN_HOST_DEVICE double return_value(double v, double) const { return v; }
};

struct gae_plain {
  double gamma;
  double gamma_lambda;

  POSTTRAIN_HOST_DEVICE affine_map<double> value_map(double v, double m) const {
    return {0.0, m != 0.0 ? m * v : 0.0};
  }
  // 0.0 + γλ: a γ of −0.0 (validation accepts it) acts as +0.0 (a −0.0 slope could flip the
  // sign of a zero advantage).
  POSTTRAIN_HOST_DEVICE affine_map<double> advantage_map(double r, double v, double m,
                                                         double next_value) const {
    const double rm = m != 0.0 ? m * r : 0.0;
    const double vm = m != 0.0 ? m * v : 0.0;
    return {0.0 + gamma_lambda, rm + gamma * next_value - vm};
  }
  POSTTRAIN_HOST_DEVICE double return_value(double v, double m) const {
    return m != 0.0 ? m * v : 0.0;
  }
};

namespace detail {

struct gae_state {
  double next_value = 0.0;
  double advantage = 0.0;
};

// One token of the reverse loop (a backend reverse_scan kernel): apply the maps of t, compute
// the outputs of t in double (the backend rounds them to T). The mask and the returns are
// compile-time present or absent so the hot loop has no tests of them.
template <class T, class Recurrence, bool HasMask, bool HasReturns>
struct gae_step {
  using value_type = T;
  using state = gae_state;
  static constexpr int inputs = 2;                    // rewards, values
  static constexpr int outputs = HasReturns ? 2 : 1;  // advantages, returns
  static constexpr bool has_mask = HasMask;
  static constexpr bool has_sequence_constant = false;
  Recurrence rec;
  const T* in[inputs];
  const float* mask;
  T* out[outputs];

  POSTTRAIN_FORCEINLINE void step(const std::array<double, inputs>& x, double w, double,
                                  gae_state& s, std::array<double, outputs>& y) const {
    const double rt = x[0], vt = x[1];
    if constexpr (!HasMask) w = 1.0;
    s.advantage = apply(rec.advantage_map(rt, vt, w, s.next_value), s.advantage);
    s.next_value = apply(rec.value_map(vt, w), s.next_value);
    const bool keep = w != 0.0;
    y[0] = keep ? s.advantage : 0.0;
    if constexpr (HasReturns) y[1] = keep ? s.advantage + rec.return_value(vt, w) : 0.0;
  }
};

template <class Exec, class T, class Recurrence, bool HasMask, bool HasReturns>
void run_gae(Exec exec, const Recurrence& rec, std::span<const T> rewards,
             std::span<const T> values, std::span<const float> mask,
             std::span<const index_t> seq_offsets, std::span<T> advantages, std::span<T> returns) {
  gae_step<T, Recurrence, HasMask, HasReturns> step{rec, {rewards.data(), values.data()},
                                                    mask.data(), {advantages.data()}};
  if constexpr (HasReturns) step.out[1] = returns.data();
  advantage_backend<Exec>::reverse_scan(exec, seq_offsets, step);
}

template <class Exec, class T, class Recurrence>
void dispatch_gae(Exec exec, const Recurrence& rec, std::span<const T> rewards,
                  std::span<const T> values, std::span<const float> mask,
                  std::span<const index_t> seq_offsets, std::span<T> advantages,
                  std::span<T> returns) {
  const bool has_mask = !mask.empty(), has_returns = !returns.empty();
  if (has_mask && has_returns)
    run_gae<Exec, T, Recurrence, true, true>(exec, rec, rewards, values, mask, seq_offsets,
                                             advantages, returns);
  else if (has_mask)
    run_gae<Exec, T, Recurrence, true, false>(exec, rec, rewards, values, mask, seq_offsets,
                                              advantages, returns);
  else if (has_returns)
    run_gae<Exec, T, Recurrence, false, true>(exec, rec, rewards, values, mask, seq_offsets,
                                              advantages, returns);
  else
    run_gae<Exec, T, Recurrence, false, false>(exec, rec, rewards, values, mask, seq_offsets,
                                               advantages, returns);
}

// One pass over the mask: weights finite >= 0, and (when whitening would raise) enough weight in
// every whitening scope. Runs before anything is written.
inline void validate_mask_for_whitening(std::span<const float> mask,
                                        std::span<const index_t> seq_offsets, bool whiten,
                                        const whiten_options& w, std::string_view where) {
  check_mask(mask, where);
  if (!whiten || w.on_degenerate != degenerate_policy::raise) return;
  expect(w.eps > 0.0, where,
         "options.whitening.eps must be > 0 with on_degenerate = raise (a zero variance could "
         "only be detected after the outputs are written); use zero or pass_through for eps = 0");
  const double needed = w.variance == variance_kind::unbiased ? 1.0 : 0.0;
  auto check = [&](index_t begin, index_t end, std::string_view scope) {
    expect(mask_weight_exceeds(mask, begin, end, needed), where, "cannot whiten ", scope,
           ": its mask weight sum is <= ", needed,
           needed > 0.0 ? " (the unbiased variance needs > 1)" : " (needs > 0)",
           "; options.whitening.on_degenerate = zero or pass_through accepts it");
  };
  if (w.scope == whiten_scope::batch) {
    check(0, seq_offsets.back(), "the batch");
  } else {
    for (std::size_t b = 0; b + 1 < seq_offsets.size(); ++b)
      check(seq_offsets[b], seq_offsets[b + 1], "a sequence");
  }
}

}  // namespace detail

// Bytes of the workspace gae(..., ws) needs: the whitening's scratch (options.whiten) over the
// B sequences of seq_offsets (whiten_workspace_bytes), 0 without whitening.
template <execution_tag Exec>
std::size_t gae_workspace_bytes(Exec exec, std::span<const index_t> seq_offsets,
                                const gae_options& options = {}) {
  if (!options.whiten) return 0;
  return whiten_workspace_bytes(exec,
                                ::posttrain::detail::whiten_scope_count(options.whitening, seq_offsets));
}

// GAE advantages (and returns) into caller spans; see the header comment. The whitening's
// scratch comes from ws (gae_workspace_bytes): no allocation on the host.
template <execution_tag Exec, detail::values V>
void gae(Exec exec, const V& rewards_in, std::span<const detail::value_t<V>> values,
         std::span<const float> mask, std::span<const index_t> seq_offsets,
         std::span<detail::value_t<V>> advantages, std::span<detail::value_t<V>> returns,
         const gae_options& options, workspace ws) {
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::gae";
  const std::span<const T> rewards(rewards_in);
  const index_t n = ssize(rewards);
  detail::validate_unit_interval(options.gamma, where, "options.gamma");
  detail::validate_unit_interval(options.lambda, where, "options.lambda");
  expect(options.recurrence == gae_recurrence::masked_carry ||
             options.recurrence == gae_recurrence::plain,
         where, "options.recurrence is not a gae_recurrence");
  if (options.whiten) ::posttrain::detail::validate_whiten_options(options.whitening);
  detail::validate_tokens(rewards, mask, seq_offsets, advantages, where, "rewards", "advantages",
                          detail::on_host_v<Exec>);
  expect_size(values, n, where, "values", "one per token of rewards");
  expect_size_or_empty(returns, n, where, "returns", "one per token, or empty (not requested)");
  expect(returns.empty() || advantages.data() != returns.data(), where,
         "advantages and returns are the same buffer, expected distinct outputs");
  expect(detail::disjoint_or_same(advantages, rewards) &&
             detail::disjoint_or_same(advantages, values) &&
             detail::disjoint_or_same(returns, rewards) &&
             detail::disjoint_or_same(returns, values) &&
             detail::disjoint_or_same(returns, advantages),
         where,
         "an output partially overlaps an input or the other output (in place is allowed "
         "only index for index)");
  // The whitening takes its scratch after the advantages are written: check its size first.
  const std::size_t needed = gae_workspace_bytes(exec, seq_offsets, options);
  expect(needed == 0 || ws.size() >= needed || (!detail::on_host_v<Exec> && ws.data() == nullptr),
         where, "workspace of ", ws.size(),
         " bytes is too small (", needed, " needed): size it with gae_workspace_bytes");
  if constexpr (!detail::on_host_v<Exec>) {
    detail::advantage_backend<Exec>::gae(exec, rewards, values, mask, seq_offsets, advantages,
                                         returns, options);
  } else {
    detail::validate_mask_for_whitening(mask, seq_offsets, options.whiten, options.whitening,
                                        where);
    const double gl = options.gamma * options.lambda;
    if (options.recurrence == gae_recurrence::masked_carry)
      detail::dispatch_gae(exec, gae_masked_carry{options.gamma, gl}, rewards, values, mask,
                           seq_offsets, advantages, returns);
    else
      detail::dispatch_gae(exec, gae_plain{options.gamma, gl}, rewards, values, mask, seq_offsets,
                           advantages, returns);
  }
  if (options.whiten)
    whiten(exec, std::span<const T>(advantages), mask, seq_offsets, advantages, options.whitening,
           ws);
}

// The same, with the whitening's scratch allocated for this call.
template <execution_tag Exec, detail::values V>
void gae(Exec exec, const V& rewards, std::span<const detail::value_t<V>> values,
         std::span<const float> mask, std::span<const index_t> seq_offsets,
         std::span<detail::value_t<V>> advantages, std::span<detail::value_t<V>> returns,
         const gae_options& options = {}) {
  workspace_buffer buffer;
  gae(exec, rewards, values, mask, seq_offsets, advantages, returns, options,
      ::posttrain::detail::scratch_view(exec, buffer,
                                        gae_workspace_bytes(exec, seq_offsets, options)));
}

}  // namespace advantage

POSTTRAIN_NAMESPACE_END
