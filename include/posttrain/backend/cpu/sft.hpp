#pragma once
// CPU backend of loss::sft (front end: loss/sft.hpp, which validates every argument first).
// The aggregation is linear and negation exact: aggregate ℓ itself (the aggregation's host
// backend), then negate the loss and the gradient (no temporary −ℓ array).
#include <cstddef>
#include <span>

#include "posttrain/backend/cpu/aggregate.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/batch.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/loss/sft_types.hpp"
#include "posttrain/ops/aggregate_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

// The host backend of loss::sft (loss/sft_types.hpp).
template <>
struct loss::sft_backend<exec::host> {
  static constexpr bool available = true;

  template <class Mode>
  static std::size_t workspace_bytes(exec::host, index_t rows, bool with_grad) {
    return backend::aggregate_backend<exec::host>::template workspace_bytes<Mode>(exec::host{},
                                                                                  rows, with_grad);
  }

  template <class Mode, class T>
  static agg_result run(exec::host, std::span<const T> logprobs, const token_batch& batch,
                        std::span<T> grad, const agg_normalizer& normalizer,
                        const agg_options& options, workspace ws) {
    agg_result r = backend::aggregate_backend<exec::host>::template run<Mode, T>(
        exec::host{}, logprobs, batch.mask, batch.seq_offsets, normalizer, grad, options, ws);
    r.loss = 0.0 - r.loss;                        // +0, never −0, for an empty batch
    for (T& g : grad) g = g == T(0) ? T(0) : -g;  // no −0 where the mask is 0
    return r;
  }
};

POSTTRAIN_NAMESPACE_END
