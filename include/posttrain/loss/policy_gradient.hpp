#pragma once
// loss::policy_gradient<Surrogate, KlEstimator, Aggregation> — the per-token policy-gradient loss
// of PPO, GRPO and their descendants as a compile-time composition.
//
//   L_t  = w_t·Surrogate(ℓ_t, logr_t, A_t) + β·KL(ℓ_t − ℓref_t) − c_H·e_t·H_t    (m_t > 0)
//   loss = Aggregation(L, m)   (ops/aggregate.hpp: Σ_i w_i Σ_t m_t·L_t / D)
//   options.entropy_agg = token_mean (TRL 1.16) takes the bonus out of L_t instead:
//   loss = Aggregation(L, m) − c_H·Σ m·e·H / (max(Σ m·e, 1)·D_H), D_H = options.entropy_divisor.
//   e_t = inputs.entropy_mask (TRL's top_entropy_quantile mask), 1 when empty.
//   logr_t = ℓ_t − ℓold_t (the surrogate clamps it before exp).
//   w_t = sg(min(importance_weights_t, importance_weight_cap)) when given, else 1 (TIS, verl
//   rollout_is_weights / TRL vLLM IS / OpenRLHF tis: multiplies the surrogate, not the KL);
//   surrogates may consume w otherwise (pg_weight_use: GMPO per-row geometric mean, VESPO inside
//   its sequence ratio).
//   Sequence-level surrogates (GSPO, GMPO, VESPO, RLOO sequence PPO) see the row statistic
//   log s_i = Σ m·term(logr_t, A_t) / D_i of their token_log_ratio / length_divisor hooks.
//   IS-corrected KL (options.kl_correction, default none): KL_t = ρ·K(ℓ_t − ℓref_t) with the token
//   ratio ρ_t or the row's sequence ratio ρ_i, ρ carrying gradient (TRL use_bias_correction_kl,
//   open-instruct kl_estimator 3 = kl::k1 with the token ratio).
// Writes dLoss/dℓ[N] and dLoss/dH[N] (= −c_H·e_t·dLoss/dL_t, or −c_H·m·e/(max(Σ m·e, 1)·D_H));
// 0 where m = 0.
//
// KL location. The KL estimate is added per token before aggregation (TRL GRPO, open-instruct,
// OpenRLHF use_loss). verl instead adds β·agg(KL) aggregated separately with the same mode; every
// aggregation mode is linear in L, so the two are identical (tested for every mode); the result
// reports the parts (pg_loss, kl_loss, entropy) each as agg(part).
//
// Inputs  policy_gradient_inputs<T> (T = float or double, N tokens, B rows): logprobs[N],
//         old_logprobs[N] (empty allowed for surrogate::reinforce unless kl_correction is set),
//         advantages[N], ref_logprobs[N] (iff KlEstimator ≠ kl::none), mask[N] (or empty),
//         seq_offsets[B+1] (required by per-sequence aggregations, sequence-level surrogates and
//         the sequence KL correction; otherwise may be empty), entropy[N] (iff entropy_coef ≠ 0),
//         importance_weights[N] (or empty), entropy_mask[N] (or empty).
// Outputs policy_gradient_outputs<T>: grad[N], entropy_grad[N] (each may be empty).
// Normaliser agg_normalizer (global divisors, micro-batch invariance) and agg_options as in
//         ops/aggregate.hpp. Statistics are local masked token means.
// Scratch  row buffers for sequence-level surrogates / the sequence KL correction and the
//         per-sequence aggregation's row scratch: workspace_bytes(exec::host, in, options,
//         with_grad) and a trailing `workspace` on compute (no allocation; too small throws
//         before any write); the forms without it allocate the same in a workspace_buffer.
// Every argument is validated before anything is written (posttrain::error naming it). Named
// compositions and peer presets: loss/policy_gradient/algorithms.hpp; docs/loss/policy_gradient.md.
#include <cmath>
#include <concepts>
#include <string>
#include <type_traits>

#include "posttrain/backend/cpu/policy_gradient.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/policy_gradient/cispo.hpp"
#include "posttrain/loss/policy_gradient/clip.hpp"
#include "posttrain/loss/policy_gradient/gmpo.hpp"
#include "posttrain/loss/policy_gradient/gspo.hpp"
#include "posttrain/loss/policy_gradient/parts.hpp"
#include "posttrain/loss/policy_gradient/reinforce.hpp"
#include "posttrain/loss/policy_gradient/rloo_sequence.hpp"
#include "posttrain/loss/policy_gradient/sapo.hpp"
#include "posttrain/loss/policy_gradient/vespo.hpp"
#include "posttrain/loss/policy_gradient_types.hpp"
#include "posttrain/ops/aggregate.hpp"
#include "posttrain/ops/kl.hpp"

POSTTRAIN_NAMESPACE_BEGIN

// A surrogate: name, options (its own hyperparameters, default-constructible), uses_old_logprobs,
// sequence_level, importance_weight_use (pg_weight_use: how it consumes IS weights),
// validate(options, [own options,] where) and a POSTTRAIN_HOST_DEVICE
// evaluate(logp, logr, A, options[, own options]) -> pg_token<T> for float and double. A
// sequence-level surrogate also has token_gradient, token_log_ratio(logr, A, options[, own]) ->
// pg_seq_token<double> and length_divisor(Σ m, agg_options) (the row statistic, gspo.hpp). Every
// hook but name and evaluate has a default in surrogate::defaults (loss/policy_gradient/parts.hpp,
// whose header comment lists them): derive from it, and a new surrogate is one file with its name,
// its formula and, if it has any, its options (surrogate::ratio, loss/kl_cov.hpp;
// tests/loss/custom_policy.cpp).
template <class S>
concept pg_sequence_hooks = requires(double d, const policy_gradient_options& o,
                                     const typename S::options& s, const agg_options& ao) {
  { S::token_gradient } -> std::convertible_to<bool>;
  { pg_surrogate_call::token_log_ratio<S>(d, d, o, s) } -> std::same_as<pg_seq_token<double>>;
  { S::length_divisor(d, ao) } -> std::convertible_to<double>;
};

template <class S>
concept pg_surrogate = std::default_initializable<typename S::options> &&
                       requires(float f, double d, const policy_gradient_options& o,
                                const typename S::options& s) {
  { S::name } -> std::convertible_to<const char*>;
  { S::uses_old_logprobs } -> std::convertible_to<bool>;
  { S::sequence_level } -> std::convertible_to<bool>;
  { S::importance_weight_use } -> std::convertible_to<pg_weight_use>;
  pg_surrogate_call::validate<S>(o, s, std::string_view{});
  { pg_surrogate_call::evaluate<S>(f, f, f, o, s) } -> std::same_as<pg_token<float>>;
  { pg_surrogate_call::evaluate<S>(d, d, d, o, s) } -> std::same_as<pg_token<double>>;
}
&&(!S::sequence_level || pg_sequence_hooks<S>);

template <class S>
constexpr bool check_pg_surrogate() {
  constexpr bool has_defaults = requires {
    typename S::options;
    { S::importance_weight_use } -> std::convertible_to<pg_weight_use>;
  };
  static_assert(has_defaults,
                "a policy-gradient surrogate needs `importance_weight_use` (pg_weight_use) and "
                "`options` (its own hyperparameters): derive from surrogate::defaults, which "
                "supplies them (multiply, an empty struct) and the other optional hooks");
  static_assert(pg_surrogate<S>,
                "a policy-gradient surrogate needs static `name`, `uses_old_logprobs`, "
                "`sequence_level`, validate(const policy_gradient_options&[, const options&], "
                "std::string_view) and evaluate(logp, logr, A, options[, const options&]) "
                "returning pg_token<T> for float and double; a sequence-level one also "
                "`token_gradient`, token_log_ratio(double logr, double A, options[, const "
                "options&]) -> pg_seq_token<double> and length_divisor(double, const "
                "agg_options&)");
  return pg_surrogate<S>;
}

static_assert(check_pg_surrogate<surrogate::clip>());
static_assert(check_pg_surrogate<surrogate::reinforce>());
static_assert(check_pg_surrogate<surrogate::cispo>());
static_assert(check_pg_surrogate<surrogate::sapo>());
static_assert(check_pg_surrogate<surrogate::gspo>());
static_assert(check_pg_surrogate<surrogate::gspo_token>());
static_assert(check_pg_surrogate<surrogate::gmpo>());
static_assert(check_pg_surrogate<surrogate::vespo>());
static_assert(check_pg_surrogate<surrogate::rloo_sequence>());

namespace loss {

namespace detail {
template <class>
inline constexpr bool pg_dependent_false = false;
}  // namespace detail

template <class Surrogate, class KlEstimator, class Aggregation>
struct policy_gradient
    : loss_interface<policy_gradient_loss_options_for<Surrogate>, policy_gradient_inputs,
                     policy_gradient_outputs, agg_normalizer, policy_gradient_result> {
  static_assert(check_pg_surrogate<Surrogate>(),
                "loss::policy_gradient<Surrogate, ...>: Surrogate is not a surrogate (see above)");
  static_assert(check_kl_estimator<KlEstimator>(),
                "loss::policy_gradient<S, KlEstimator, ...>: not a KL estimator (see above)");
  static_assert(check_aggregation<Aggregation>(),
                "loss::policy_gradient<S, K, Aggregation>: not an aggregation (see above)");

  using surrogate = Surrogate;
  using surrogate_options = pg_surrogate_options_t<Surrogate>;
  using options_type = policy_gradient_loss_options_for<Surrogate>;
  using kl_estimator = KlEstimator;
  using aggregation = Aggregation;
  static constexpr bool uses_reference = !std::is_same_v<KlEstimator, kl::none>;

  // The run-time answer (loss/concept.hpp loss_reference_needed): the reference enters only as
  // β·KL, so with β = kl_coef = 0 the KL term is ×0 and compute's loss and gradient do not depend
  // on ref_logprobs (any finite values; pipeline::rl_step then skips the reference forward).
  static constexpr bool reference_needed(const options_type& o) {
    return uses_reference && o.policy.kl_coef != 0.0;
  }

  static std::string name() {
    return std::string("loss::policy_gradient<") + Surrogate::name + ">";
  }

  // The surrogate's own options have no default where it has any (see compute below).
  template <class T>
  static void validate(const policy_gradient_inputs<T>& in, const policy_gradient_options& o,
                       const policy_gradient_outputs<T>& out, const agg_normalizer& norm,
                       const agg_options& agg_opts) {
    static_assert(std::is_empty_v<surrogate_options> && sizeof(T) > 0,
                  "loss::policy_gradient: the positional validate/compute of a surrogate with "
                  "options of its own needs them as the last argument (surrogate::cispo's cap, "
                  "sapo's temperatures, vespo's shapes: e.g. pg_presets::trl_cispo_surrogate()), "
                  "or use the Loss-concept form with options_type{policy, aggregation, surrogate}");
    validate(in, o, out, norm, agg_opts, surrogate_options{});
  }
  template <class T>
  static void validate(const policy_gradient_inputs<T>& in, const policy_gradient_options& o,
                       const policy_gradient_outputs<T>& out, const agg_normalizer& norm,
                       const agg_options& agg_opts, const surrogate_options& so) {
    // built once: the workspace form of compute allocates nothing after its first call
    static const std::string where = name();
    const index_t n = ssize(in.logprobs);
    if constexpr (Surrogate::uses_old_logprobs)
      expect_size(in.old_logprobs, n, where, "old_logprobs", "one per token of logprobs");
    else
      expect_size_or_empty(in.old_logprobs, n, where, "old_logprobs",
                           "one per token of logprobs, or empty");
    expect_size(in.advantages, n, where, "advantages", "one per token of logprobs");
    if constexpr (uses_reference)
      expect_size(in.ref_logprobs, n, where, "ref_logprobs",
                  "one per token of logprobs (the KL estimator needs the reference)");
    else
      expect_size_or_empty(in.ref_logprobs, n, where, "ref_logprobs",
                           "one per token of logprobs, or empty (kl::none ignores it)");
    expect_size_or_empty(in.mask, n, where, "mask", "one weight per token, or empty");
    expect_mask(in.mask, where, "mask");
    const bool kl_corrected = uses_reference && o.kl_correction != kl_is_correction::none;
    if (kl_corrected)
      expect_size(in.old_logprobs, n, where, "old_logprobs",
                  "one per token of logprobs (options.kl_correction needs the ratio)");
    if (Aggregation::per_sequence || Surrogate::sequence_level ||
        (kl_corrected && o.kl_correction == kl_is_correction::sequence))
      expect(!in.seq_offsets.empty(), where,
             "seq_offsets is empty, expected B + 1 offsets (this composition works per sequence)");
    if (!in.seq_offsets.empty()) expect_offsets(in.seq_offsets, n, where, "seq_offsets");
    if (o.entropy_coef != 0.0)
      expect_size(in.entropy, n, where, "entropy", "one per token (entropy_coef != 0)");
    else
      expect_size_or_empty(in.entropy, n, where, "entropy", "one per token, or empty");
    expect_size_or_empty(in.importance_weights, n, where, "importance_weights",
                         "one per token, or empty");
    expect_size_or_empty(in.entropy_mask, n, where, "entropy_mask", "one per token, or empty");
    expect_mask(in.entropy_mask, where, "entropy_mask");
    expect_size_or_empty(out.grad, n, where, "grad", "one per token, or empty");
    expect_size_or_empty(out.entropy_grad, n, where, "entropy_grad", "one per token, or empty");
    expect(out.grad.empty() || out.entropy_grad.empty() || n == 0 ||
               static_cast<const void*>(out.grad.data()) !=
                   static_cast<const void*>(out.entropy_grad.data()),
           where, "grad and entropy_grad are the same buffer, expected distinct outputs");

    posttrain::detail::expect_not_nan(o.log_ratio_min, where, "options.log_ratio_min");
    posttrain::detail::expect_not_nan(o.log_ratio_max, where, "options.log_ratio_max");
    expect(o.log_ratio_min <= o.log_ratio_max, where, "options.log_ratio_min = ", o.log_ratio_min,
           " > options.log_ratio_max = ", o.log_ratio_max, ", expected lo <= hi");
    pg_surrogate_call::validate<Surrogate>(o, so, where);
    if constexpr (uses_reference) {
      expect_non_negative(o.kl_coef, where, "options.kl_coef");
      expect_finite(o.kl_coef, where, "options.kl_coef");
      posttrain::detail::validate_kl_options(o.kl, where.c_str());
    }
    expect_finite(o.entropy_coef, where, "options.entropy_coef");
    expect(o.entropy_agg == entropy_aggregation::same_as_loss ||
               o.entropy_agg == entropy_aggregation::token_mean,
           where, "options.entropy_agg = ", static_cast<int>(o.entropy_agg),
           ", expected same_as_loss or token_mean");
    expect_positive(o.entropy_divisor, where, "options.entropy_divisor");
    expect_finite(o.entropy_divisor, where, "options.entropy_divisor");
    posttrain::detail::expect_not_nan(o.importance_weight_cap, where,
                                      "options.importance_weight_cap");
    expect(o.importance_weight_cap > 0.0, where,
           "options.importance_weight_cap = ", o.importance_weight_cap,
           ", expected C > 0 (infinity = no truncation)");
    posttrain::detail::validate_agg_normalizer(norm, where.c_str());
    posttrain::detail::validate_agg_options(agg_opts, where.c_str());
    if constexpr (Aggregation::divisor == agg::divisor_kind::constant)
      expect(norm.constant.has_value(), where,
             "normalizer.constant is unset, expected the constant divisor C > 0 (e.g. the "
             "padded width T or B * max_completion_length)");
  }

  // The positional form: the shared options, the aggregation conventions and the surrogate's own
  // options (Surrogate::options, empty for most surrogates) as separate arguments. The surrogate's
  // options have no default where it has any: a peer preset's shared part alone
  // (pg_presets::trl_cispo()) would otherwise silently get the surrogate's default form (verl's
  // two-sided CISPO cap), so leaving them out is a compile error (the short form below).
  template <class T>
  static policy_gradient_result compute(exec::host, const policy_gradient_inputs<T>& in,
                                        const policy_gradient_options& options,
                                        const policy_gradient_outputs<T>& out,
                                        const agg_normalizer& norm, const agg_options& agg_opts,
                                        const surrogate_options& surrogate_opts) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::policy_gradient::compute accepts float or double log-probs");
    validate(in, options, out, norm, agg_opts, surrogate_opts);
    workspace_buffer buffer;  // the row buffers (0 bytes, no allocation, for token-level ones)
    const workspace ws = buffer.view(
        policy_gradient_backend<exec::host>::workspace_bytes<Surrogate, KlEstimator, Aggregation>(
            exec::host{}, in.seq_offsets, options, !out.grad.empty()));
    return policy_gradient_backend<exec::host>::run<Surrogate, KlEstimator, Aggregation>(
        exec::host{}, in, options, out, norm, agg_opts, surrogate_opts, ws);
  }

  // Bytes of the workspace compute(..., ws) needs for these inputs and options (the row buffers
  // of the sequence-level surrogates, sequence gradients and the sequence KL correction, the
  // per-sequence aggregations' row scratch: a few numbers per token of the longest row and per
  // row; 0 for token-level compositions). with_grad = false sizes a call without outputs.grad.
  template <class T>
  static std::size_t workspace_bytes(exec::host, const policy_gradient_inputs<T>& in,
                                     const policy_gradient_options& options = {},
                                     bool with_grad = true) {
    static const std::string where = name() + "::workspace_bytes";
    if (!in.seq_offsets.empty())
      expect_offsets(in.seq_offsets, ssize(in.logprobs), where, "seq_offsets");
    return policy_gradient_backend<exec::host>::workspace_bytes<Surrogate, KlEstimator,
                                                                Aggregation>(
        exec::host{}, in.seq_offsets, options, with_grad);
  }

  // Caller scratch (workspace_bytes(exec::host{}, in, options, !out.grad.empty()) bytes): no
  // allocation, the same bits as the allocating form; a too-small workspace throws
  // posttrain::error before anything is written.
  template <class T>
  static policy_gradient_result compute(exec::host, const policy_gradient_inputs<T>& in,
                                        const policy_gradient_options& options,
                                        const policy_gradient_outputs<T>& out,
                                        const agg_normalizer& norm, const agg_options& agg_opts,
                                        const surrogate_options& surrogate_opts, workspace ws) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::policy_gradient::compute accepts float or double log-probs");
    validate(in, options, out, norm, agg_opts, surrogate_opts);
    return policy_gradient_backend<exec::host>::run<Surrogate, KlEstimator, Aggregation>(
        exec::host{}, in, options, out, norm, agg_opts, surrogate_opts, ws);
  }

  // The same with the Loss-concept options.
  template <class T, std::same_as<options_type> O>
  static policy_gradient_result compute(exec::host, const policy_gradient_inputs<T>& in,
                                        const O& options, const policy_gradient_outputs<T>& out,
                                        const agg_normalizer& norm, workspace ws) {
    return compute(exec::host{}, in, options.policy, out, norm, options.aggregation,
                   options.surrogate, ws);
  }

  // The short positional form, for surrogates without options of their own (clip, gspo, ...).
  template <class T>
  static policy_gradient_result compute(exec::host, const policy_gradient_inputs<T>& in,
                                        const policy_gradient_options& options = {},
                                        const policy_gradient_outputs<T>& out = {},
                                        const agg_normalizer& norm = {},
                                        const agg_options& agg_opts = {}) {
    static_assert(std::is_empty_v<surrogate_options> && sizeof(T) > 0,
                  "loss::policy_gradient: the positional validate/compute of a surrogate with "
                  "options of its own needs them as the last argument (surrogate::cispo's cap, "
                  "sapo's temperatures, vespo's shapes: e.g. pg_presets::trl_cispo_surrogate()), "
                  "or use the Loss-concept form with options_type{policy, aggregation, surrogate}");
    return compute(exec::host{}, in, options, out, norm, agg_opts, surrogate_options{});
  }

  // The Loss-concept form: options.policy, options.aggregation and options.surrogate in one struct
  // (O is deduced so that a braced `{}` still selects the positional form above).
  template <class T, std::same_as<options_type> O>
  static policy_gradient_result compute(exec::host, const policy_gradient_inputs<T>& in,
                                        const O& options, const policy_gradient_outputs<T>& out,
                                        const agg_normalizer& norm) {
    return compute(exec::host{}, in, options.policy, out, norm, options.aggregation,
                   options.surrogate);
  }

  // Host memory, the calling thread: same as compute(exec::host{}, ...), in both positional forms.
  template <class T>
  static policy_gradient_result compute(const policy_gradient_inputs<T>& in,
                                        const policy_gradient_options& options,
                                        const policy_gradient_outputs<T>& out,
                                        const agg_normalizer& norm, const agg_options& agg_opts,
                                        const surrogate_options& surrogate_opts) {
    return compute(exec::host{}, in, options, out, norm, agg_opts, surrogate_opts);
  }
  template <class T>
  static policy_gradient_result compute(const policy_gradient_inputs<T>& in,
                                        const policy_gradient_options& options = {},
                                        const policy_gradient_outputs<T>& out = {},
                                        const agg_normalizer& norm = {},
                                        const agg_options& agg_opts = {}) {
    return compute(exec::host{}, in, options, out, norm, agg_opts);
  }

  // The same with the Loss-concept options (options.policy, .aggregation, .surrogate).
  template <class T, std::same_as<options_type> O>
  static policy_gradient_result compute(const policy_gradient_inputs<T>& in, const O& options,
                                        const policy_gradient_outputs<T>& out = {},
                                        const agg_normalizer& norm = {}) {
    return compute(exec::host{}, in, options.policy, out, norm, options.aggregation,
                   options.surrogate);
  }

  template <class T>
  static policy_gradient_result compute(exec::cuda, const policy_gradient_inputs<T>&,
                                        const policy_gradient_options& = {},
                                        const policy_gradient_outputs<T>& = {},
                                        const agg_normalizer& = {}, const agg_options& = {},
                                        const surrogate_options& = {}) {
    static_assert(
        policy_gradient_backend<exec::cuda>::available && sizeof(T) > 0,
        "loss::policy_gradient has no CUDA backend yet (no "
        "loss::policy_gradient_backend<exec::cuda> specialisation, "
        "loss/policy_gradient_types.hpp): call compute(exec::host{}, ...) with host memory");
    return {};
  }
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
