#pragma once
// pref::aot, pref::aot_unpaired — AOT (Melnyk et al. 2024, "Distributional preference alignment of
// LLMs via optimal transport"): a batch-level loss. The keys of the whole (micro-)batch are sorted
// independently, ascending, and the smoothed logistic loss is applied rank by rank.
//
//   aot           a_p = π_c,p − π_r,p (policy margins),  b_p = ρ_c,p − ρ_r,p (reference margins)
//   aot_unpaired  a_p = Δc,p,                            b_p = Δr,p
//   a_(k), b_(k): the k-th smallest of each (k = 1..P),  Δ_k = a_(k) − b_(k)
//   loss = Σ_k [−(1−ε)·logσ(βΔ_k) − ε·logσ(−βΔ_k)] / pairs
//   ∂loss/∂a_p = ℓ'(βΔ_k)·β/pairs for the rank k that a_p takes; ∂loss/∂b_p likewise with −
//   (aot: ∂/∂π_c = ∂/∂a, ∂/∂π_r = −∂/∂a, the reference margins get none; aot_unpaired:
//    ∂/∂π_c = ∂/∂a, ∂/∂π_r = ∂/∂b).
//
// Why a link with a flag rather than a loss of its own: after the sort, the per-rank formula is the
// sigmoid link on (a_(k), b_(k)), and everything else (reductions, reference, NLL, normaliser,
// validation, outputs) is the composition's. The flag `batch_sort` tells the generic loop
// (backend/cpu/preference.hpp) to gather the keys of every pair first, sort them (std::stable_sort:
// equal keys keep pair order, so ties are deterministic; the loss is continuous across ties and
// the gradient at a tie is the one-sided derivative of that order), evaluate evaluate(a_(k), b_(k))
// per rank and route each derivative back to the pair that held the key. A NaN key (only possible
// from a NaN policy log-prob) sorts last.
//
// Consequences: pair_losses[k] is the loss of rank k, not of pair k (there is no per-pair loss);
// the loss is NOT micro-batch invariant (it sorts what one call sees; TRL sorts the per-device
// batch the same way); per-pair weights (WPO) are rejected, as in TRL.
// Options: beta (β > 0), label_smoothing (ε ∈ [0, 0.5]). Peers: TRL HEAD `aot`, `aot_unpaired`;
// TRL v0.26 `aot` = HEAD `aot` and v0.26 `aot_pair` = HEAD `aot_unpaired` (same formulas).
#include "posttrain/loss/preference/link.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

namespace detail {
struct aot_base : link_defaults {
  static void validate(const loss::preference_options& o, std::string_view where) {
    expect_beta(o, where);
    expect_label_smoothing(o, where, false, false, 0.5, "AOT label smoothing");
  }
  // The loss of one rank: the smoothed logistic loss of β(a_(k) − b_(k)).
  template <class T>
  POSTTRAIN_HOST_DEVICE static pair_value<T> evaluate(T a, T b, const loss::preference_options& o) {
    const T beta = T(o.beta);
    const auto l = smoothed_logistic(beta * (a - b), T(o.label_smoothing));
    return {l.loss, beta * l.slope, -beta * l.slope};
  }
};
}  // namespace detail

struct aot : detail::aot_base {
  static constexpr const char* name = "aot";
  static constexpr batch_sort_keys batch_sort = batch_sort_keys::margins;
};

struct aot_unpaired : detail::aot_base {
  static constexpr const char* name = "aot_unpaired";
  static constexpr batch_sort_keys batch_sort = batch_sort_keys::log_ratios;
};

static_assert(diagnose_preference_link<aot>());
static_assert(diagnose_preference_link<aot_unpaired>());
static_assert(is_batch_sorted_v<aot> && !is_batch_sorted_v<detail::aot_base>);

}  // namespace pref

POSTTRAIN_NAMESPACE_END
