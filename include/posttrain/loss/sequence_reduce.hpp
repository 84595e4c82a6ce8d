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
//   An empty or fully masked sequence scores 0 under both (W = 0 → divisor 1). Tokens with
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

}  // namespace seq

POSTTRAIN_NAMESPACE_END
