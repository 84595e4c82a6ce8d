#pragma once
// loss::bco_pair_running_mean<Reference> — BCO pairwise as TRL v0.26 computed it: the HEAD
// bco_pair link (loss/preference/bco_pair.hpp) with both arguments shifted by a running mean δ̄
// of the batch rewards.
//
//   loss_p = −logσ(βΔc − δ̄) − logσ(−(βΔr − δ̄))          Δ = Σ m·ℓ − ρ (seq::sum; ρ = 0 with
//   loss   = Σ_p w_p·loss_p / pairs                       pref::reference_free)
//   ∂loss_p/∂Δc = −β·σ(−(βΔc − δ̄)),  ∂loss_p/∂Δr = β·σ(βΔr − δ̄);  δ̄ is detached (no gradient)
//
//   TRL v0.26 per call: x̄ = mean([βΔc; βΔr]) over the 2P rewards of the batch (detached),
//   running.update(x̄) (pref::running_moments, bco_pair.hpp), δ̄ = running.mean — the current
//   batch is included. Here the caller owns the state and runs the same three steps:
//     const double x = bco::batch_reward_mean(inputs, options);   // 0 for P = 0 (skip update)
//     state.update(x);               // multi-rank: update(mean of ranks' x, their var, ranks)
//     bco::compute(inputs, state.mean, options, outputs, normalizer);
//   δ̄ = reward_shift, any finite value (0 gives TRL HEAD's bco_pair exactly).
//
//   Inputs, outputs and normaliser as loss::preference<pref::bco_pair, seq::sum, Reference>
//   (loss/preference.hpp). chosen/rejected rewards (outputs and result) are the unshifted β·Δ,
//   as TRL logs them (computed as the shifted value plus δ̄: equal up to rounding).
//   Every argument is validated before anything is written.
#include <cmath>
#include <concepts>
#include <span>
#include <string>
#include <type_traits>

#include "posttrain/backend/cpu/preference.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/preference.hpp"
#include "posttrain/loss/preference/bco_pair.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss {

namespace detail {
template <class>
inline constexpr bool bco_running_dependent_false = false;

// u(π) = π − shift: moves δ̄/β from the loss argument into the log-ratio; du/dπ = 1.
struct shifted_score {
  double shift;
  backend::cpu::score_derivative operator()(double score) const { return {score - shift, 1.0}; }
};
}  // namespace detail

// The options of loss::bco_pair_running_mean under the Loss concept: the running reward mean δ̄
// (reward_shift, from pref::running_moments) beside the preference hyperparameters.
struct bco_pair_running_options {
  double reward_shift = 0.0;
  preference_options preference{};
};

template <class Reference = pref::with_reference>
struct bco_pair_running_mean
    : loss_interface<bco_pair_running_options, preference_inputs, preference_outputs,
                     preference_normalizer, preference_result> {
  using composition = preference<pref::bco_pair, seq::sum, Reference>;
  static constexpr bool uses_reference = composition::uses_reference;

  template <class T, std::same_as<bco_pair_running_options> O>
  static preference_result compute(exec::host, const preference_inputs<T>& in, const O& options,
                                   const preference_outputs<T>& out,
                                   const preference_normalizer& norm) {
    return compute(exec::host{}, in, options.reward_shift, options.preference, out, norm);
  }

  static std::string name() {
    return uses_reference ? "loss::bco_pair_running_mean"
                          : "loss::bco_pair_running_mean<reference_free>";
  }

  template <class T>
  static void validate(const preference_inputs<T>& in, double reward_shift,
                       const preference_options& options, const preference_outputs<T>& out,
                       const preference_normalizer& norm) {
    composition::validate(in, options, out, norm);
    expect_finite(reward_shift, name(), "reward_shift");
  }

  // mean over the 2P values [β·Δc; β·Δr] (TRL's `torch.cat((chosen_rewards, rejected_rewards))
  // .mean()`); 0 when P = 0. Validates the inputs like compute().
  template <class T>
  static double batch_reward_mean(const preference_inputs<T>& in,
                                  const preference_options& options) {
    composition::validate(in, options, preference_outputs<T>{}, preference_normalizer{});
    const index_t pairs = in.batch.num_pairs();
    if (pairs == 0) return 0.0;
    double sum = 0;
    for (index_t p = 0; p < pairs; ++p) {
      const token_batch& c = in.batch.chosen;
      const token_batch& r = in.batch.rejected;
      double dc = backend::cpu::masked_sum(in.chosen_logprobs, c.mask, c.seq_offsets[p],
                                           c.seq_offsets[p + 1])
                      .sum;
      double dr = backend::cpu::masked_sum(in.rejected_logprobs, r.mask, r.seq_offsets[p],
                                           r.seq_offsets[p + 1])
                      .sum;
      if constexpr (uses_reference) {
        dc -= static_cast<double>(in.reference_chosen[p]);
        dr -= static_cast<double>(in.reference_rejected[p]);
      }
      sum += options.beta * dc + options.beta * dr;
    }
    return sum / (2.0 * static_cast<double>(pairs));
  }

  template <class T>
  static preference_result compute(exec::host, const preference_inputs<T>& in, double reward_shift,
                                   const preference_options& options = {},
                                   const preference_outputs<T>& out = {},
                                   const preference_normalizer& norm = {}) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::bco_pair_running_mean::compute accepts float or double log-probs");
    validate(in, reward_shift, options, out, norm);
    const double pair_normalizer =
        norm.pairs > 0 ? norm.pairs : static_cast<double>(in.batch.num_pairs());
    preference_result r = preference_backend<exec::host>::pair_loop<pref::bco_pair, seq::sum,
                                                                    Reference, pref::no_nll>(
        exec::host{}, in, options, pref::link_options_t<pref::bco_pair>{}, out, pair_normalizer,
        0.0, 0.0, workspace{},  // bco_pair is a per-pair link: the loop takes no scratch
        detail::shifted_score{reward_shift / options.beta});
    // Report the unshifted rewards β·Δ (TRL logs those).
    for (double& x : out.chosen_rewards) x += reward_shift;
    for (double& x : out.rejected_rewards) x += reward_shift;
    if (in.batch.num_pairs() > 0) {
      r.chosen_reward += reward_shift;
      r.rejected_reward += reward_shift;
    }
    return r;
  }

  template <class T>
  static preference_result compute(const preference_inputs<T>& in, double reward_shift,
                                   const preference_options& options = {},
                                   const preference_outputs<T>& out = {},
                                   const preference_normalizer& norm = {}) {
    return compute(exec::host{}, in, reward_shift, options, out, norm);
  }

  template <class T>
  static preference_result compute(exec::cuda, const preference_inputs<T>&, double,
                                   const preference_options& = {},
                                   const preference_outputs<T>& = {},
                                   const preference_normalizer& = {}) {
    static_assert(detail::bco_running_dependent_false<T>,
                  "loss::bco_pair_running_mean has no CUDA backend yet: call "
                  "compute(exec::host{}, ...) with host memory");
    return {};
  }
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
