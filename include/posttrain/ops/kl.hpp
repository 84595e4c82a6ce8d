#pragma once
// KL estimators: per-token estimates of KL(π ‖ π_ref) from the sampled token's log-probs.
//
//   d = ℓ − ℓref          (policy minus reference log-prob of the sampled token)
//
//   estimator                value(d)                 grad(d) = ∂value/∂ℓ
//   kl::k1                   d                        1
//   kl::abs                  |d|                      sign(d) (0 at d = 0)
//   kl::k2                   ½ d²                     d
//   kl::k3                   e^{−d} − 1 + d           1 − e^{−d}      (Schulman's low-variance k3)
//   kl::straight_through<E>  E::value(d)              d               (verl "k3+", "k1+", ...)
//   kl::none                 0                        0               (no KL term)
//
// k3 and its gradient come from one exp(−d), and from their Taylor series near d = 0 where
// e^{−d} − 1 + d and 1 − e^{−d} cancel: tiny KLs keep full relative precision (expm1(−d) + d loses
// ~ε/|d| of it, and libm's expm1 is ~5x slower than exp).
//
// kl_divergence<Estimator>(exec, logprob[N], ref_logprob[N], options, value[N], grad[N] or {})
// is elementwise: no mask and no reduction (aggregate the result with ops/aggregate.hpp). d and
// the clamps are in the input type (float or double). NaN inputs are not an error: they propagate to
// the value. An output may alias an input (same index); value and grad must be distinct.
//
// Clamps (kl_options, all default to ±∞ = off):
//   input  [input_min, input_max]   d is clamped before the estimator
//   output [output_min, output_max] the estimator's value is clamped
// The gradient is what autograd of torch.clamp gives: 0 where a clamp is active, i.e. where d is
// strictly outside the input range or the unclamped value strictly outside the output range; at
// a boundary exactly the gradient passes through (torch.clamp's backward keeps lo <= x <= hi).
// Where the unclamped k3 overflows (d < −88 in float, −709 in double) and the output clamp is on,
// the gradient is exactly 0 (torch would produce 0·∞ = NaN there). Without clamps k3 at such d is
// +∞ with gradient −∞ (never NaN).
// straight_through<E>: the value (including both clamps) is detached, so the gradient is the
// unclamped d whatever the clamps: verl's  k2 − sg(k2) + sg(forward).
//
// Peer presets (kl_conventions::*, each returns kl_options) and their default estimators:
//   verl(kind)       k3 ("low_var_kl", default of actor.kl_loss_type): d ∈ [−20, 20] (verl clamps
//                    ℓref − ℓ, the same range), value ∈ [−10, 10]; k1 ("kl", default of
//                    algorithm.kl_penalty), abs, k2 ("mse"): no clamps. "k3+" = straight_through<k3>
//                    with verl(kl_kind::k3). (verl at b178a3cd raises NotImplementedError for
//                    "k3+"; the documented intent is reproduced here.)
//   openrlhf()       value ∈ [−10, 10] for every estimator; default estimator k1 (reward and loss).
//   trl()            no clamps; GRPO loss uses k3, PPO reward k1 (default) or k3, RLOO reward k1.
//   open_instruct()  d ∈ [−40, 40] for every estimator; default estimator k3 (index 2).
// OpenRLHF casts inputs to fp32: call the float overload with fp32 log-probs for the same numbers.
// Importance-weighted KL (TRL use_bias_correction_kl, open-instruct index 3) is not a function of
// d alone: multiply the k3 value and gradient by the ratio in the loss.
#include <cmath>
#include <concepts>
#include <limits>
#include <span>
#include <type_traits>

#include "posttrain/backend/cpu/kl.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/ops/kl_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace detail {

inline void validate_kl_options(const kl_options& o, const char* where) {
  expect(!std::isnan(o.input_min) && !std::isnan(o.input_max), where,
         "options.input_min/input_max must not be NaN (use ±infinity for no clamp), got [",
         o.input_min, ", ", o.input_max, "]");
  expect(!std::isnan(o.output_min) && !std::isnan(o.output_max), where,
         "options.output_min/output_max must not be NaN (use ±infinity for no clamp), got [",
         o.output_min, ", ", o.output_max, "]");
  expect(o.input_min <= o.input_max, where, "options.input_min = ", o.input_min,
         " > options.input_max = ", o.input_max, ", expected lo <= hi");
  expect(o.output_min <= o.output_max, where, "options.output_min = ", o.output_min,
         " > options.output_max = ", o.output_max, ", expected lo <= hi");
}

}  // namespace detail


namespace detail {

template <class E, class Exec, class T>
void kl_divergence_impl(Exec exec, std::span<const T> logprob, std::span<const T> ref_logprob,
                        const kl_options& options, std::span<T> value, std::span<T> grad) {
  constexpr const char* where = "kl_divergence";
  const index_t n = ssize(logprob);
  expect_size(ref_logprob, n, where, "ref_logprob", "one per token of logprob");
  expect_size(value, n, where, "value", "one per token of logprob");
  expect_size_or_empty(grad, n, where, "grad", "one per token of logprob, or empty");
  expect(grad.empty() || n == 0 || value.data() != grad.data(), where,
         "value and grad are the same buffer, expected distinct outputs");
  validate_kl_options(options, where);
  const kl_element<E, T> element{kl_bound<T>(options.input_min), kl_bound<T>(options.input_max),
                                 kl_bound<T>(options.output_min), kl_bound<T>(options.output_max)};
  backend::kl_divergence_backend<Exec>::template run<E, T>(exec, logprob, ref_logprob, element,
                                                            value, grad);
}

}  // namespace detail

// value[i] = clamp(E(clamp(ℓ[i] − ℓref[i]))), grad[i] = ∂value[i]/∂ℓ[i] (grad may be empty).
template <kl_estimator Estimator, execution_tag Exec>
void kl_divergence(Exec exec, std::span<const float> logprob, std::span<const float> ref_logprob,
                   const kl_options& options, std::span<float> value,
                   std::span<float> grad = {}) {
  detail::kl_divergence_impl<Estimator>(exec, logprob, ref_logprob, options, value, grad);
}

template <kl_estimator Estimator, execution_tag Exec>
void kl_divergence(Exec exec, std::span<const double> logprob,
                   std::span<const double> ref_logprob, const kl_options& options,
                   std::span<double> value, std::span<double> grad = {}) {
  detail::kl_divergence_impl<Estimator>(exec, logprob, ref_logprob, options, value, grad);
}

POSTTRAIN_NAMESPACE_END
