#pragma once
// The parts of a loss::preference composition besides the link (loss/preference/link.hpp) and the
// sequence reduction (loss/sequence_reduce.hpp): the reference tag, the chosen-NLL term, and the
// input/output bundles of loss::preference<...>::compute.
//
//   Reference tags   pref::with_reference   Δ = π − ρ with cached reference scores ρ[P]
//                    pref::reference_free   Δ = π (SimPO, CPO, TRL v0.26 reference_free=True)
//   NLL terms        pref::no_nll           nothing
//                    pref::nll_token_mean   NLL = Σ_chosen tokens m·(−ℓ) / chosen_tokens
//                                           (Llama 3 DPO+NLL, TRL v0.26 rpo_alpha, TRL HEAD
//                                           loss_type "sft", TRL CPO cpo_alpha; chosen_tokens
//                                           defaults to the local Σ m over chosen tokens)
//                    pref::nll_sequence_mean NLL = Σ_p (−S_c,p / max(W_c,p, 1)) / pairs
//                                           (OpenRLHF nll_loss_coef: mean over chosen rows of
//                                           the per-row token mean)
//   The total loss is  Σ_p w_p·loss_p / pairs + nll_coef·NLL  (w_p = pair_weights[p], default 1).
//   Defaults         the composition's default for hyperparameters left unset in the options
//                    (only nll_coef so far): pref::defaults::llama3 (0.2, the generic default),
//                    pref::defaults::trl_orpo and pref::defaults::trl_cpo (1).
#include <span>

#include "posttrain/config.hpp"
#include "posttrain/core/batch.hpp"
#include "posttrain/core/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

struct with_reference {
  static constexpr bool uses_reference = true;
};
struct reference_free {
  static constexpr bool uses_reference = false;
};

struct no_nll {
  static constexpr bool enabled = false;
  static constexpr bool divides_by_tokens = false;
  template <class T>
  POSTTRAIN_HOST_DEVICE static T value(T, T) {
    return T(0);
  }
  template <class T>
  POSTTRAIN_HOST_DEVICE static T token_scale(T) {
    return T(0);
  }
};

// From the chosen sequence's S = Σ m·ℓ and W = Σ m: its contribution to the NLL numerator and the
// derivative of that contribution per unit mask weight; divided by chosen_tokens or by pairs.
struct nll_token_mean {
  static constexpr bool enabled = true;
  static constexpr bool divides_by_tokens = true;
  template <class T>
  POSTTRAIN_HOST_DEVICE static T value(T masked_sum, T) {
    return -masked_sum;
  }
  template <class T>
  POSTTRAIN_HOST_DEVICE static T token_scale(T) {
    return T(-1);
  }
};

struct nll_sequence_mean {
  static constexpr bool enabled = true;
  static constexpr bool divides_by_tokens = false;
  template <class T>
  POSTTRAIN_HOST_DEVICE static T value(T masked_sum, T weight) {
    return -masked_sum / (weight > T(1) ? weight : T(1));
  }
  template <class T>
  POSTTRAIN_HOST_DEVICE static T token_scale(T weight) {
    return T(-1) / (weight > T(1) ? weight : T(1));
  }
};

// Defaults of a composition for the option fields left unset (NaN) by the caller.
namespace defaults {
struct llama3 {  // DPO + 0.2·NLL (Llama 3); the generic default
  static constexpr double nll_coef = 0.2;
};
struct trl_orpo {  // TRL ORPOConfig: the NLL weighs 1
  static constexpr double nll_coef = 1.0;
};
struct trl_cpo {  // TRL CPOConfig: cpo_alpha = 1
  static constexpr double nll_coef = 1.0;
};
}  // namespace defaults

}  // namespace pref

namespace loss {

// What compute() reads. P pairs; Nc / Nr packed chosen / rejected tokens.
template <class T>
struct preference_inputs {
  preference_batch batch{};                 // chosen/rejected seq_offsets[P+1] and float masks
  std::span<const T> chosen_logprobs{};     // [Nc] policy token log-probs ℓ of chosen completions
  std::span<const T> rejected_logprobs{};   // [Nr]
  std::span<const T> reference_chosen{};    // [P] ρ_c, reduced like π (empty: reference_free)
  std::span<const T> reference_rejected{};  // [P] ρ_r
  // [P] optional detached per-pair weights w_p (empty = all 1), e.g. WPO's w_c·w_r from
  // loss::wpo_pair_weights: loss_p and its gradient are multiplied by w_p (finite, >= 0).
  std::span<const double> pair_weights{};
};

// What compute() writes (each may be empty = not wanted). Gradients are overwritten, not
// accumulated; they are exactly 0 where the mask is 0.
template <class T>
struct preference_outputs {
  std::span<T> chosen_grad{};            // [Nc] ∂loss/∂ℓ for chosen tokens
  std::span<T> rejected_grad{};          // [Nr]
  std::span<double> pair_losses{};       // [P] w_p·loss_p (before division by the pair normaliser;
                                         //     batch-sorted links: the loss of rank p)
  std::span<double> chosen_rewards{};    // [P] β·Δc
  std::span<double> rejected_rewards{};  // [P] β·Δr
};

// Divisors that make micro-batches and ranks add up: pass the global values to every call and
// sum the results. 0 (the default) means the local value.
struct preference_normalizer {
  double pairs = 0;          // divisor of Σ_p loss_p (and of the sequence-mean NLL)
  double chosen_tokens = 0;  // divisor of the token-mean NLL (Σ of chosen mask weights)
};

// Scalars of one call. The reward statistics are logging means over the local pairs (TRL's
// rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies); 0 when P = 0.
struct preference_result {
  double loss = 0;             // preference_loss + nll_coef·nll
  double preference_loss = 0;  // Σ_p loss_p / pairs
  double nll = 0;              // the chosen NLL term before its coefficient (0 without one)
  double chosen_reward = 0;    // mean β·Δc
  double rejected_reward = 0;  // mean β·Δr
  double reward_margin = 0;    // mean β·(Δc − Δr)
  double reward_accuracy = 0;  // fraction of pairs with β·Δc > β·Δr (ties count as wrong)
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
