#pragma once
// Per-sequence reductions of token log-probs: the sequence score π of the DPO family.
//
//   For sequence b with tokens t in [seq_offsets[b], seq_offsets[b+1]), mask weights m_t and
//   token log-probs ℓ_t, the sufficient statistics are S = Σ_t m_t·ℓ_t and W = Σ_t m_t.
//
//   seq::sum    π = S                ∂π/∂ℓ_t = m_t
//               (TRL DPO, OpenRLHF, open-instruct `dpo`)
//   seq::mean   π = S / max(W, 1)    ∂π/∂ℓ_t = m_t / max(W, 1)
//               (open-instruct average_log_prob, TRL CPO/SimPO and IPO, OpenRLHF masked mean)
//
//   seq::ld<Side>  LD-DPO (Liu et al. 2024, length desensitisation; TRL ld_alpha): a PAIRED
//               reduction. With n_c, n_r the numbers of tokens with m_t > 0 of a pair's chosen and
//               rejected completions, L = min(n_c, n_r): the first L such tokens of each side are
//               the shared part, the rest the tail, and
//               π = Σ_shared m·ℓ + α·Σ_tail m·ℓ        ∂π/∂ℓ_t = m_t (shared) or α·m_t (tail)
//               with α = preference_options::ld_alpha (must be set, in [0, 1]). α = 1 is seq::sum.
//               The generic preference loop recognises it (length_desensitized) and computes it
//               per pair; score/token_scale below describe the shared part only.
//               Side says which scores get it: ld_side::policy_and_reference (seq::ld<>, TRL HEAD:
//               the cached reference scores must be LD-reduced too) or ld_side::policy_only
//               (seq::ld<ld_side::policy_only>, TRL v0.26: reference scores are plain sums).
//               loss::preference<...>::reference_scores computes the matching reference scores.
//               For 0/1 masks this is TRL's cumsum(mask) split exactly; fractional weights count
//               as one position each.
//
//   An empty or fully masked sequence scores 0 under all of them (W = 0 → divisor 1). Tokens with
//   m_t = 0 are never read into S (their log-probs may be NaN).
//
// A reduction policy exposes its formula over (S, W) as POSTTRAIN_HOST_DEVICE functions so the
// CPU loop and a future segmented-reduce kernel share it:
//   R::name                              "sum" / "mean" (used in diagnostics)
//   R::score(S, W)        -> T           the sequence score π
//   R::token_scale(W)     -> T           ∂π/∂ℓ_t / m_t (the same for every token of the sequence)
#include <concepts>

#include "posttrain/config.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace seq {

struct sum {
  static constexpr const char* name = "sum";
  template <class T>
  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE static T score(T masked_sum, T /*weight*/) {
    return masked_sum;
  }
  template <class T>
  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE static T token_scale(T /*weight*/) {
    return T(1);
  }
};

struct mean {
  static constexpr const char* name = "mean";
  template <class T>
  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE static T score(T masked_sum, T weight) {
    return masked_sum / (weight > T(1) ? weight : T(1));
  }
  template <class T>
  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE static T token_scale(T weight) {
    return T(1) / (weight > T(1) ? weight : T(1));
  }
};

enum class ld_side { policy_and_reference, policy_only };

template <ld_side Side = ld_side::policy_and_reference>
struct ld {
  static constexpr const char* name =
      Side == ld_side::policy_and_reference ? "ld" : "ld_policy_only";
  static constexpr bool length_desensitized = true;
  static constexpr ld_side side = Side;
  template <class T>
  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE static T score(T masked_sum, T /*weight*/) {
    return masked_sum;
  }
  template <class T>
  POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE static T token_scale(T /*weight*/) {
    return T(1);
  }
};

// True for the paired LD reduction, which the preference loop computes per pair.
template <class R>
inline constexpr bool is_length_desensitized_v = requires {
  R::length_desensitized;
};

// A sequence reduction: named, with score(S, W) and token_scale(W) for float and double.
template <class R>
concept sequence_reduction = requires(double d, float f) {
  { R::name } -> std::convertible_to<const char*>;
  { R::score(d, d) } -> std::same_as<double>;
  { R::score(f, f) } -> std::same_as<float>;
  { R::token_scale(d) } -> std::same_as<double>;
  { R::token_scale(f) } -> std::same_as<float>;
};

// Names what is missing, one sentence per requirement; returns true so it can sit in a
// static_assert of its own.
template <class R>
constexpr bool diagnose_sequence_reduction() {
  static_assert(
      requires {
        { R::name } -> std::convertible_to<const char*>;
      },
      "a sequence reduction needs `static constexpr const char* name` (e.g. \"sum\")");
  static_assert(
      requires(double d) {
        { R::score(d, d) } -> std::same_as<double>;
      },
      "a sequence reduction needs `template <class T> static T score(T masked_sum, "
      "T mask_weight)`, the sequence score π from S = Σ m·ℓ and W = Σ m");
  static_assert(
      requires(double d) {
        { R::token_scale(d) } -> std::same_as<double>;
      },
      "a sequence reduction needs `template <class T> static T token_scale(T "
      "mask_weight)`, the gradient ∂π/∂ℓ_t divided by the token's mask weight");
  return sequence_reduction<R>;
}

static_assert(sequence_reduction<sum>);
static_assert(sequence_reduction<mean>);
static_assert(sequence_reduction<ld<>> && sequence_reduction<ld<ld_side::policy_only>>);
static_assert(is_length_desensitized_v<ld<>> && !is_length_desensitized_v<sum>);

}  // namespace seq

POSTTRAIN_NAMESPACE_END
