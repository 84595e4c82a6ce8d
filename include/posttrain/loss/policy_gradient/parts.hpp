#pragma once
// The parts of a loss::policy_gradient composition besides the surrogate: the options, the
// input/output bundles and the per-token result type every surrogate returns.
//
//   pg_token<T>        what Surrogate::evaluate(logp, logr, A, options) returns for one token:
//                      loss, grad = ∂loss/∂ℓ (∂loss/∂log s for sequence-level surrogates),
//                      ratio (statistics), clipped / clipped_lower flags (statistics).
//   policy_gradient_options   hyperparameters (double), defaults = plain PPO (ε = 0.2, no dual
//                      clip, no log-ratio clamp, no KL, no entropy bonus, no IS weights).
//   policy_gradient_inputs<T> per-token views over N packed tokens of B sequences.
//   policy_gradient_outputs<T> caller spans for dLoss/dℓ[N] and dLoss/dH[N] (either may be empty).
//   policy_gradient_result    the scalar loss, its parts and the statistics.
//   pg_seq_token<T>    what a sequence-level surrogate's token_log_ratio(logr, A, options)
//                      returns for one token: its term of the row's log-ratio sum, the term's
//                      slope d(term)/dlogr, and statistic flags (GMPO's per-token clip).
//   pg_weight_use      how a surrogate consumes inputs.importance_weights.
//   kl_is_correction   the importance-sampling correction of the in-loss KL (TRL
//                      use_bias_correction_kl, open-instruct estimator 3).
//   entropy_aggregation how the entropy bonus c_H·H is aggregated (verl/OpenRLHF vs TRL 1.16).
#include <cmath>
#include <limits>
#include <span>
#include <string_view>

#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/math/stable.hpp"
#include "posttrain/ops/aggregate_types.hpp"
#include "posttrain/ops/kl_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

// How surrogate::cispo caps the detached ratio (algorithms.md §6 and §10 point 12).
enum class cispo_cap {
  two_sided,       // ĉ = clip(r, 1 − ε_low, 1 + ε_high)          verl
  relative_upper,  // ĉ = min(r, 1 + ε_high)                      open-instruct
  absolute_upper,  // ĉ = min(r, ε_high): clip_high IS the cap    TRL (e.g. 5.0)
};

// The importance-sampling correction of the in-loss KL term (algorithms.md §1.5, §4.1 step 6, §6):
//   KL_t ← ρ·K(d_t) with ρ = e^{clamp(logr)} carrying gradient (no stop-gradient at either peer):
//   ∂(ρ·K)/∂ℓ = ρ·(K'(d) + K(d)) for the token ratio.
enum class kl_is_correction {
  none,      // K(d_t)
  token,     // ρ_t = e^{ℓ_t − ℓold_t}: TRL use_bias_correction_kl (token level); open-instruct
             // kl_estimator=3 (r·d) is kl::k1 with this and kl_conventions::open_instruct()
  sequence,  // ρ_i = e^{Σ m·logr / max(Σ m, 1)} of the token's row, gradient to every token of
             // the row: TRL use_bias_correction_kl with importance_sampling_level="sequence"
};

// How a surrogate consumes inputs.importance_weights w (detached, capped at
// importance_weight_cap C first). Surrogates without a static `importance_weight_use` multiply.
enum class pg_weight_use {
  multiply,           // L_t ← min(w_t, C)·L_t                         (TIS; default)
  sequence_geo_mean,  // L_t ← exp(Σ m·log(min(w, C) + 1e-10) / D_i)·L_t of the row (verl GMPO)
  log_ratio_sum,      // the row's log-ratio sum += Σ_{m>0} log min(w, C); loss not multiplied
                      // (TRL VESPO: the vLLM token IS ratios enter the sequence weight)
};

// How the entropy bonus is aggregated. e_t = inputs.entropy_mask[t] (1 when empty) selects the
// tokens the bonus acts on (TRL top_entropy_quantile: the same high-entropy mask as the surrogate).
enum class entropy_aggregation {
  same_as_loss,  // L_t −= c_H·e_t·H_t before the aggregation: loss −= c_H·agg(e·H) with the
                 // loss's own mode and normaliser (verl entropy_coeff, OpenRLHF actor.entropy_coef)
  token_mean,    // beside the aggregated loss: loss −= c_H·Σ m·e·H / (max(Σ m·e, 1)·D_H),
                 // D_H = entropy_divisor, whatever the loss's mode (TRL 1.16 GRPOTrainer:
                 // D_H = gradient accumulation steps; conventions::trl::entropy_bonus)
};

struct policy_gradient_options {
  static constexpr double inf = std::numeric_limits<double>::infinity();
  double clip_low = 0.2;            // ε_low:  ratio clipped below at 1 − ε_low
  double clip_high = 0.2;           // ε_high: ratio clipped above at 1 + ε_high (DAPO 0.28)
  double dual_clip = inf;           // c > 1: for A < 0 the loss is min(−c·A, PPO); inf = off
  double log_ratio_min = -inf;      // ℓ − ℓold (or log s) clamped before exp (verl ±20)
  double log_ratio_max = inf;
  cispo_cap cispo_mode = cispo_cap::two_sided;
  double sapo_tau_pos = 1.0;        // SAPO temperature for A > 0
  double sapo_tau_neg = 1.05;       // SAPO temperature for A <= 0
  double kl_coef = 0.0;             // β of the in-loss KL term (ignored with kl::none)
  kl_options kl{};                  // clamps of the KL estimator (ops/kl.hpp kl_conventions)
  double entropy_coef = 0.0;        // c_H: loss −= c_H·agg(H); needs inputs.entropy when ≠ 0
  double importance_weight_cap = inf;  // C: detached weight min(w, C) on the surrogate (TIS)
  double vespo_k_pos = 2.0;         // VESPO shape k for A >= 0 (TRL vespo_k_pos)
  double vespo_lambda_pos = 3.0;    // VESPO rate λ for A >= 0 (floored at 1e-4)
  double vespo_k_neg = 3.0;         // VESPO shape k for A < 0
  double vespo_lambda_neg = 2.0;    // VESPO rate λ for A < 0 (floored at 1e-4)
  kl_is_correction kl_correction = kl_is_correction::none;  // IS-corrected KL (needs ℓold)
  entropy_aggregation entropy_agg = entropy_aggregation::same_as_loss;  // with entropy_coef
  double entropy_divisor = 1.0;     // D_H > 0 of entropy_aggregation::token_mean (TRL: GA)
};

template <class T>
struct pg_token {
  T loss = T(0);
  T grad = T(0);
  T ratio = T(1);
  bool clipped = false;
  bool clipped_lower = false;
};

template <class T>
struct pg_seq_token {
  T log_ratio = T(0);  // this token's term of the row's (weighted) log-ratio sum
  T slope = T(1);      // d(log_ratio)/d(ℓ − ℓold); 0 where a clip or clamp is active
  bool clipped = false;
  bool clipped_lower = false;
};

template <class T>
struct policy_gradient_inputs {
  std::span<const T> logprobs;             // ℓ[N] current policy
  std::span<const T> old_logprobs;         // ℓold[N] (may be empty for surrogate::reinforce)
  std::span<const T> advantages;           // A[N] per token (broadcast sequence advantages)
  std::span<const T> ref_logprobs;         // ℓref[N], required iff the KL estimator is not none
  std::span<const float> mask;             // m[N] weights, empty = all ones
  std::span<const index_t> seq_offsets;    // [B + 1]; required by per-sequence modes and GSPO
  std::span<const T> entropy;              // H[N], required iff entropy_coef ≠ 0
  std::span<const T> importance_weights;   // w[N] detached IS weights (e.g. exp(ℓ − ℓroll)), or empty
  std::span<const T> entropy_mask;         // e[N] weights >= 0 on the entropy bonus only (TRL's
                                           // top_entropy_quantile mask), or empty = all ones
};

template <class T>
struct policy_gradient_outputs {
  std::span<T> grad;          // dLoss/dℓ[N], or empty
  std::span<T> entropy_grad;  // dLoss/dH[N], or empty
};

struct policy_gradient_result {
  double loss = 0.0;            // pg_loss + β·kl_loss − c_H·entropy
  double pg_loss = 0.0;         // agg(w·surrogate)
  double kl_loss = 0.0;         // agg(KL estimate), before β
  double entropy = 0.0;         // agg(e·H) (same_as_loss) or Σ m·e·H / (max(Σ m·e, 1)·D_H)
  double divisor = 0.0;         // the aggregation divisor D
  // Statistics: masked token means over this call (local Σ m), as verl/OpenRLHF report them.
  double clip_fraction = 0.0;        // surrogate clipped (PPO: L2 > L1; CISPO: ĉ ≠ r)
  double clip_fraction_lower = 0.0;  // dual clip active (A < 0 and PPO loss > −c·A)
  // Two peers report a "ppo_kl" that differ once the log-ratio clamp is active:
  double approx_kl = 0.0;            // mean(−clamp(logr)) with options.log_ratio_min/max: verl's
                                     // ppo_kl (dp_actor, from the clamped log-ratio)
  double approx_kl_unclamped = 0.0;  // mean(−logr), no clamp: OpenRLHF's ppo_kl (PolicyLoss,
                                     // masked mean of −log_ratio before its ±20 clamp)
  double mean_ratio = 0.0;           // mean(r)
};

// The options of a loss::policy_gradient composition under the Loss concept: the surrogate / KL /
// entropy hyperparameters and the aggregation conventions (ops/aggregate.hpp agg_options) in one
// struct, so that a recipe preset (algo/) carries everything a peer sets.
struct policy_gradient_loss_options {
  policy_gradient_options policy{};
  agg_options aggregation{};
};

namespace surrogate {

// The defaults every surrogate inherits (as stdexec's default customisations): a token-level
// surrogate that reads ℓold, takes the IS weights as a factor on its loss, and has no
// hyperparameters of its own to check. A new surrogate derives from it and states only what
// differs, e.g.
//
//   struct my_surrogate : surrogate::defaults {
//     static constexpr const char* name = "my_surrogate";
//     template <class T>
//     POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate(T logp, T logr, T a,
//                                                       const policy_gradient_options& o);
//   };
//
// Hooks and their defaults:
//   uses_old_logprobs = true        false: inputs.old_logprobs may be empty (REINFORCE)
//   sequence_level = false          true: also token_gradient, token_log_ratio, length_divisor
//                                   (the row statistic log s_i, gspo.hpp)
//   importance_weight_use = multiply    how inputs.importance_weights enter (pg_weight_use)
//   validate(options, where)        no checks; override to reject hyperparameters (throw
//                                   posttrain::error naming the option)
struct defaults {
  static constexpr bool uses_old_logprobs = true;
  static constexpr bool sequence_level = false;
  static constexpr pg_weight_use importance_weight_use = pg_weight_use::multiply;
  static void validate(const policy_gradient_options&, std::string_view) {}
};

}  // namespace surrogate

namespace detail {

inline void expect_not_nan(double v, std::string_view where, std::string_view argument) {
  expect(!std::isnan(v), where, argument, " is NaN, expected a number");
}

}  // namespace detail

POSTTRAIN_NAMESPACE_END
