#pragma once
// loss::sft<Mode> — supervised fine-tuning NLL over packed token log-probs.
//
//   L_t = −ℓ_t (ℓ: token log-prob of the target), aggregated by ops/aggregate.hpp:
//     agg::token_sum            Σ m·(−ℓ)                          open-instruct legacy "sum"
//     agg::token_mean           Σ m·(−ℓ) / tokens                 HF/TRL/GPTLMLoss mean (local
//                                                                 tokens), OpenRLHF SFTLoss
//                                                                 token-level and open-instruct
//                                                                 HEAD (global tokens)
//     agg::seq_mean_token_mean  Σ_i (Σ_t m·(−ℓ)/|o_i|) / sequences  OpenRLHF sample level
//                                                                 (agg_conventions::openrlhf())
//     (agg::constant_divisor and the other aggregate modes work too.)
//   grad[t] = ∂loss/∂ℓ_t = −m_t·w_i/D (0 where m_t = 0).
//
//   Inputs: token_logprobs[N] (float or double; entries with m = 0 are never read), batch
//   (seq_offsets[B+1], mask[N] or empty = all ones), agg_normalizer (global token / sequence
//   counts for micro-batch invariance; unset = local, see ops/aggregate.hpp), agg_options.
//   Output: grad[N] or empty. Every argument is validated before anything is written.
#include <span>
#include <string>
#include <type_traits>

#include "posttrain/config.hpp"
#include "posttrain/core/batch.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/ops/aggregate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss {

// The Loss-concept bundles of loss::sft (compute(exec, sft_inputs, sft_options, sft_outputs,
// agg_normalizer)); the positional form compute(exec, logprobs, batch, grad, norm, agg) is the same
// call.
template <class T>
struct sft_inputs {
  std::span<const T> logprobs{};  // ℓ[N] target-token log-probs
  token_batch batch{};            // seq_offsets[B+1], mask[N] (empty = all ones)
};

template <class T>
struct sft_outputs {
  std::span<T> grad{};  // dLoss/dℓ[N], or empty
};

struct sft_options {
  agg_options aggregation{};  // conventions of the row divisors (ops/aggregate.hpp)
};

template <class Mode>
struct sft : loss_interface<sft_options, sft_inputs, sft_outputs, agg_normalizer, agg_result> {
  static_assert(check_aggregation<Mode>(), "loss::sft<Mode>: Mode must be an agg:: mode");
  using aggregation = Mode;

  static std::string name() { return "loss::sft"; }

  template <class T>
  static agg_result compute(exec::host, const sft_inputs<T>& in, const sft_options& options,
                            const sft_outputs<T>& out, const agg_normalizer& normalizer) {
    return compute(exec::host{}, in.logprobs, in.batch, out.grad, normalizer, options.aggregation);
  }

  template <class T>
  static agg_result compute(exec::host, std::span<const T> token_logprobs, const token_batch& batch,
                            std::span<T> grad = {}, const agg_normalizer& normalizer = {},
                            const agg_options& options = {}) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::sft::compute accepts float or double log-probs");
    constexpr const char* where = "loss::sft";
    batch.validate(where);
    expect_size(token_logprobs, batch.num_tokens(), where, "token_logprobs", "one per token");
    expect_size_or_empty(grad, batch.num_tokens(), where, "grad", "one per token");
    // The aggregation is linear and negation exact: aggregate ℓ itself, then negate the loss and
    // the gradient (no temporary −ℓ array). aggregate_loss validates the normaliser/options
    // before writing grad.
    agg_result r = aggregate_loss<Mode>(exec::host{}, token_logprobs, batch.mask, batch.seq_offsets,
                                        normalizer, grad, options);
    r.loss = 0.0 - r.loss;                        // +0, never −0, for an empty batch
    for (T& g : grad) g = g == T(0) ? T(0) : -g;  // no −0 where the mask is 0
    return r;
  }

  template <class T>
  static agg_result compute(std::span<const T> token_logprobs, const token_batch& batch,
                            std::span<T> grad = {}, const agg_normalizer& normalizer = {},
                            const agg_options& options = {}) {
    return compute(exec::host{}, token_logprobs, batch, grad, normalizer, options);
  }

  template <class T>
  static agg_result compute(exec::cuda, std::span<const T>, const token_batch&, std::span<T> = {},
                            const agg_normalizer& = {}, const agg_options& = {}) {
    static_assert(sizeof(T) == 0,
                  "loss::sft has no CUDA backend yet: call compute(exec::host{}, ...) with host "
                  "memory");
    return {};
  }
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
