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

#include "posttrain/backend/cpu/sft.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/batch.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/sft_types.hpp"
#include "posttrain/ops/aggregate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss {

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

  // Bytes of the workspace compute(..., ws) needs for B = rows sequences (0 for the token-level
  // modes and without grad).
  static std::size_t workspace_bytes(exec::host, index_t rows, bool with_grad = true) {
    expect(rows >= 0, "loss::sft::workspace_bytes", "rows is ", rows, ", expected >= 0");
    return sft_backend<exec::host>::workspace_bytes<Mode>(exec::host{}, rows, with_grad);
  }

  // Caller scratch (workspace_bytes(exec, B, !grad.empty()) bytes): no allocation.
  template <class T>
  static agg_result compute(exec::host, std::span<const T> token_logprobs, const token_batch& batch,
                            std::span<T> grad, const agg_normalizer& normalizer,
                            const agg_options& options, workspace ws) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::sft::compute accepts float or double log-probs");
    validate(token_logprobs, batch, grad, normalizer, options);
    return sft_backend<exec::host>::run<Mode, T>(exec::host{}, token_logprobs, batch, grad,
                                                 normalizer, options, ws);
  }

  // The same, allocating its scratch (per-sequence modes with grad: B doubles).
  template <class T>
  static agg_result compute(exec::host, std::span<const T> token_logprobs, const token_batch& batch,
                            std::span<T> grad = {}, const agg_normalizer& normalizer = {},
                            const agg_options& options = {}) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::sft::compute accepts float or double log-probs");
    validate(token_logprobs, batch, grad, normalizer, options);
    workspace_buffer buffer;
    const auto ws = buffer.view(sft_backend<exec::host>::workspace_bytes<Mode>(
        exec::host{}, batch.seq_offsets.empty() ? 0 : batch.num_sequences(), !grad.empty()));
    return sft_backend<exec::host>::run<Mode, T>(exec::host{}, token_logprobs, batch, grad,
                                                 normalizer, options, ws);
  }

  // Every argument, before anything is written: the batch and the sizes here, the normaliser and
  // options as aggregate_loss checks them (its messages).
  template <class T>
  static void validate(std::span<const T> token_logprobs, const token_batch& batch,
                       std::span<T> grad, const agg_normalizer& normalizer,
                       const agg_options& options) {
    constexpr const char* where = "loss::sft";
    batch.validate(where);
    expect_size(token_logprobs, batch.num_tokens(), where, "token_logprobs", "one per token");
    expect_size_or_empty(grad, batch.num_tokens(), where, "grad", "one per token");
    posttrain::detail::validate_aggregate_loss<Mode>(token_logprobs, batch.mask,
                                                     batch.seq_offsets, normalizer, grad, options);
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
    static_assert(sft_backend<exec::cuda>::available && sizeof(T) > 0,
                  "loss::sft has no CUDA backend yet (no loss::sft_backend<exec::cuda> "
                  "specialisation, loss/sft_types.hpp): call compute(exec::host{}, ...) with host "
                  "memory");
    return {};
  }
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
