#pragma once
// The parts of a loss::policy_gradient composition besides the surrogate: the options, the
// input/output bundles and the per-token result type every surrogate returns.
//
//   pg_token<T>        what Surrogate::evaluate(logp, logr, A, options) returns for one token:
//                      loss, grad = ∂loss/∂ℓ (∂loss/∂log s for sequence-level surrogates),
//                      ratio (statistics), clipped / clipped_lower flags (statistics).
//   policy_gradient_options   the shared hyperparameters (double), defaults = plain PPO (ε = 0.2,
//                      no dual clip, no log-ratio clamp, no KL, no entropy bonus, no IS weights).
//   surrogate::defaults       the surrogate policy's defaults base (its options and hooks).
//   basic_policy_gradient_loss_options<SO> / policy_gradient_loss_options_for<S>
//                      the composition's options_type {policy, aggregation, surrogate}.
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

// The hyperparameters every surrogate shares (clip ranges, log-ratio clamp, KL, entropy, IS cap).
// A surrogate's own hyperparameters are its S::options (surrogate::cispo::options{cap},
// surrogate::sapo::options{tau_pos, tau_neg}, surrogate::vespo::options{k_pos, ...}), composed
// into the loss's options_type as its `surrogate` member.
struct policy_gradient_options {
  static constexpr double inf = std::numeric_limits<double>::infinity();
  double clip_low = 0.2;            // ε_low:  ratio clipped below at 1 − ε_low
  double clip_high = 0.2;           // ε_high: ratio clipped above at 1 + ε_high (DAPO 0.28)
  double dual_clip = inf;           // c > 1: for A < 0 the loss is min(−c·A, PPO); inf = off
  double log_ratio_min = -inf;      // ℓ − ℓold (or log s) clamped before exp (verl ±20)
  double log_ratio_max = inf;
  double kl_coef = 0.0;             // β of the in-loss KL term (ignored with kl::none)
  kl_options kl{};                  // clamps of the KL estimator (ops/kl.hpp kl_conventions)
  double entropy_coef = 0.0;        // c_H: loss −= c_H·agg(H); needs inputs.entropy when ≠ 0
  double importance_weight_cap = inf;  // C: detached weight min(w, C) on the surrogate (TIS)
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

namespace surrogate {

// surrogate::defaults — the documented defaults base of the surrogate policy (as stdexec's default
// customisations): a token-level surrogate that reads ℓold, takes the IS weights as a factor on
// its loss and has no hyperparameters of its own. A new surrogate derives from it and states only
// what differs — its name and formula, plus the hooks and options it changes — in one file:
//
//   struct my_surrogate : surrogate::defaults {
//     static constexpr const char* name = "my_surrogate";
//     struct options { double tau = 1.0; };                         // optional: its own options
//     static void validate(const policy_gradient_options&, const options& s,
//                          std::string_view where) {                  // optional: check them
//       expect_positive(s.tau, where, "options.surrogate.tau");
//     }
//     template <class T>
//     POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate(T logp, T logr, T a,
//                                                       const policy_gradient_options& o,
//                                                       const options& s);
//   };
//
// Hooks and their defaults:
//   name                            required: the surrogate's name in error messages
//   evaluate(logp, logr, A, o[, s]) required: pg_token<T> for T = float and double
//   options = {} (empty)            the surrogate's own hyperparameters; the composition's
//                                   options_type carries one as `.surrogate`
//                                   (policy_gradient_loss_options_for<S>), and compute passes it
//                                   to every hook below that takes `const options&` last
//   uses_old_logprobs = true        false: inputs.old_logprobs may be empty (REINFORCE)
//   sequence_level = false          true: also token_gradient, token_log_ratio(logr, A, o[, s])
//                                   and length_divisor(Σ m, agg_options) (the row statistic
//                                   log s_i, gspo.hpp)
//   importance_weight_use = multiply    how inputs.importance_weights enter (pg_weight_use)
//   validate(o[, s], where)         no checks; override to reject hyperparameters (throw
//                                   posttrain::error naming the option): the validation of a
//                                   surrogate's options lives with the surrogate
//   evaluate_ratio(logp, logr, r, A, o[, s])  optional: evaluate with r = e^{clamp(logr)} given
//                                   (the CPU backend then exps a block of tokens at once)
// The trailing `const options&` of a hook may be left out by a surrogate whose hook does not read
// its own options (clip, gspo, gmpo, reinforce: their options are empty); pg_surrogate_call below
// passes it where it is declared.
struct defaults {
  struct options {};
  static constexpr bool uses_old_logprobs = true;
  static constexpr bool sequence_level = false;
  static constexpr pg_weight_use importance_weight_use = pg_weight_use::multiply;
  static void validate(const policy_gradient_options&, std::string_view) {}
};

}  // namespace surrogate

// The options of a loss::policy_gradient composition under the Loss concept: the shared surrogate
// / KL / entropy hyperparameters, the aggregation conventions (ops/aggregate.hpp agg_options) and
// the surrogate's own options in one struct, so that a recipe preset (algo/) carries everything a
// peer sets. loss::policy_gradient<S, K, A>::options_type = policy_gradient_loss_options_for<S>;
// policy_gradient_loss_options is the one of every surrogate without options of its own.
template <class SurrogateOptions>
struct basic_policy_gradient_loss_options {
  policy_gradient_options policy{};
  agg_options aggregation{};
  SurrogateOptions surrogate{};
};

using policy_gradient_loss_options =
    basic_policy_gradient_loss_options<surrogate::defaults::options>;

// S::options, or the empty surrogate::defaults::options for a type that declares none.
template <class S>
using pg_surrogate_options_t = ::posttrain::detail::own_options_t<S, surrogate::defaults::options>;

template <class S>
using policy_gradient_loss_options_for = basic_policy_gradient_loss_options<pg_surrogate_options_t<S>>;

// Calls of a surrogate's option-taking hooks with its own options `s` appended where the hook
// declares that parameter (surrogate::defaults: a hook that does not read them may leave it out).
// Each call is constrained on the hook existing in one of the two forms, so that the concepts
// (pg_surrogate, the backend's pg_ratio_given) can ask through it.
namespace pg_hook {
template <class S, class T>
concept evaluate_own = requires(T x, const policy_gradient_options& o,
                                const typename S::options& s) { S::evaluate(x, x, x, o, s); };
template <class S, class T>
concept evaluate_shared = requires(T x, const policy_gradient_options& o) {
  S::evaluate(x, x, x, o);
};
template <class S, class T>
concept evaluate_ratio_own = requires(T x, const policy_gradient_options& o,
                                      const typename S::options& s) {
  S::evaluate_ratio(x, x, x, x, o, s);
};
template <class S, class T>
concept evaluate_ratio_shared = requires(T x, const policy_gradient_options& o) {
  S::evaluate_ratio(x, x, x, x, o);
};
template <class S, class T>
concept token_log_ratio_own = requires(T x, const policy_gradient_options& o,
                                       const typename S::options& s) {
  S::token_log_ratio(x, x, o, s);
};
template <class S, class T>
concept token_log_ratio_shared = requires(T x, const policy_gradient_options& o) {
  S::token_log_ratio(x, x, o);
};
template <class S>
concept validate_own = requires(const policy_gradient_options& o, const typename S::options& s,
                                std::string_view w) { S::validate(o, s, w); };
template <class S>
concept validate_shared = requires(const policy_gradient_options& o, std::string_view w) {
  S::validate(o, w);
};
}  // namespace pg_hook

struct pg_surrogate_call {
  template <class S>
    requires pg_hook::validate_own<S> || pg_hook::validate_shared<S>
  static void validate(const policy_gradient_options& o, const typename S::options& s,
                       std::string_view where) {
    if constexpr (pg_hook::validate_own<S>)
      S::validate(o, s, where);
    else
      S::validate(o, where);
  }
  template <class S, class T>
    requires pg_hook::evaluate_own<S, T> || pg_hook::evaluate_shared<S, T>
  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE static auto evaluate(
      T logp, T logr, T a, const policy_gradient_options& o, const typename S::options& s) {
    if constexpr (pg_hook::evaluate_own<S, T>)
      return S::evaluate(logp, logr, a, o, s);
    else
      return S::evaluate(logp, logr, a, o);
  }
  template <class S, class T>
    requires pg_hook::evaluate_ratio_own<S, T> || pg_hook::evaluate_ratio_shared<S, T>
  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE static auto evaluate_ratio(
      T logp, T logr, T r, T a, const policy_gradient_options& o, const typename S::options& s) {
    if constexpr (pg_hook::evaluate_ratio_own<S, T>)
      return S::evaluate_ratio(logp, logr, r, a, o, s);
    else
      return S::evaluate_ratio(logp, logr, r, a, o);
  }
  template <class S, class T>
    requires pg_hook::token_log_ratio_own<S, T> || pg_hook::token_log_ratio_shared<S, T>
  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE static auto token_log_ratio(
      T logr, T a, const policy_gradient_options& o, const typename S::options& s) {
    if constexpr (pg_hook::token_log_ratio_own<S, T>)
      return S::token_log_ratio(logr, a, o, s);
    else
      return S::token_log_ratio(logr, a, o);
  }
};

namespace detail {

inline void expect_not_nan(double v, std::string_view where, std::string_view argument) {
  expect(!std::isnan(v), where, argument, " is NaN, expected a number");
}

}  // namespace detail

POSTTRAIN_NAMESPACE_END
