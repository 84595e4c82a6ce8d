#pragma once
// surrogate::reinforce — REINFORCE / GPG (Chu et al. 2025): L = −A·ℓ, ∂L/∂ℓ = −A.
//
// ℓold is not needed (inputs.old_logprobs may be empty); when given, it only feeds the ratio
// statistics. Truncated importance sampling (verl bypass_mode loss_type="reinforce"):
//   L = −A·ℓ·sg(min(w, C))
// is this surrogate with inputs.importance_weights = w = exp(ℓ − ℓroll) and
// options.importance_weight_cap = C (verl rollout_is_threshold, default 2.0); the composition
// applies the detached weight to any surrogate.
// Peers: verl `gpg` (empty metrics), verl compute_policy_loss_reinforce.
#include "posttrain/loss/policy_gradient/clip.hpp"
#include "posttrain/loss/policy_gradient/parts.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace surrogate {

struct reinforce : defaults {
  static constexpr const char* name = "reinforce";
  static constexpr bool uses_old_logprobs = false;
  static constexpr bool sequence_level = false;

  static void validate(const policy_gradient_options&, std::string_view) {}

  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate(T logp, T logr, T a,
                                                    const policy_gradient_options& o) {
    return evaluate_ratio(logp, logr, detail::ratio_exp(logr, o), a, o);
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate_ratio(T logp, T, T r, T a,
                                                          const policy_gradient_options&) {
    pg_token<T> out;
    out.ratio = r;
    out.loss = -a * logp;
    out.grad = -a;
    return out;
  }
};

}  // namespace surrogate

POSTTRAIN_NAMESPACE_END
