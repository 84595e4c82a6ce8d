#pragma once
// surrogate::gspo / surrogate::gspo_token — GSPO (Zheng et al. 2025): the PPO clip applied to
// the length-normalised sequence ratio.
//
//   log s_i = Σ_{t∈i} m_t·(ℓ_t − ℓold_t) / max(Σ_{t∈i} m_t, 1),  clamped to
//             [log_ratio_min, log_ratio_max] (verl ≤ 10), s_i = e^{log s_i}
//   L_t = max(−A_t·s_i, −A_t·clip(s_i, 1 − ε_low, 1 + ε_high))   (surrogate::clip on log s_i)
//   gspo        ∂Loss/∂ℓ_u = m_u / max(Σ m, 1) · Σ_{t∈i} (∂Loss/∂L_t)·(∂L_t/∂log s_i)
//               (the gradient of exp(mean logr): TRL importance_sampling_level="sequence",
//               OpenRLHF `gspo`)
//   gspo_token  log s_{i,t} = sg(log s_i) + ℓ_t − sg(ℓ_t): same value, ∂Loss/∂ℓ_t =
//               (∂Loss/∂L_t)·(∂L_t/∂log s_{i,t}) (verl `gspo`, TRL experimental gspo_token)
// With a per-sequence advantage and agg::seq_mean_token_mean both gradients agree (tested).
// The composition computes log s_i per sequence (seq_offsets required) and calls evaluate with
// logr = log s_i. Paper clip ranges 3e-4 / 4e-4.
// The sequence-level interface (also gmpo, vespo, rloo_sequence): token_gradient,
// token_log_ratio(logr, A, options) -> pg_seq_token (the token's term of the row sum and its
// slope) and length_divisor(Σ m, agg_options) -> D_i, so that log s_i = Σ m·term / D_i.
#include "posttrain/loss/policy_gradient/clip.hpp"
#include "posttrain/loss/policy_gradient/parts.hpp"
#include "posttrain/ops/aggregate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace surrogate {

struct gspo : defaults {
  static constexpr const char* name = "gspo";
  static constexpr bool uses_old_logprobs = true;
  static constexpr bool sequence_level = true;
  static constexpr bool token_gradient = false;

  static void validate(const policy_gradient_options& o, std::string_view where) {
    clip::validate(o, where);
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_seq_token<T> token_log_ratio(T logr, T,
                                                               const policy_gradient_options&) {
    return {logr, T(1), false, false};
  }

  static double length_divisor(double length, const agg_options&) {
    return length > 1.0 ? length : 1.0;
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate(T logp, T log_s, T a,
                                                    const policy_gradient_options& o) {
    return clip::evaluate(logp, log_s, a, o);
  }

  // s = e^{clamp(log s)} given: the backend exps it once per row.
  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate_ratio(T logp, T log_s, T s, T a,
                                                          const policy_gradient_options& o) {
    return clip::evaluate_ratio(logp, log_s, s, a, o);
  }
};

struct gspo_token : gspo {
  static constexpr const char* name = "gspo_token";
  static constexpr bool token_gradient = true;
};

}  // namespace surrogate

POSTTRAIN_NAMESPACE_END
