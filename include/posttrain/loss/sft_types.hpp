#pragma once
// The SFT family's types and its backend contract (loss/sft.hpp documents the formula).
//
//   types     sft_inputs / sft_outputs / sft_options; the normaliser and result are the
//             aggregation's (agg_normalizer, agg_result: ops/aggregate_types.hpp).
//   backend   loss::sft_backend<Exec>: one specialisation per execution tag, with
//               static constexpr bool available = true;
//               template <class Mode>
//               static std::size_t workspace_bytes(Exec, index_t rows, bool with_grad);
//               template <class Mode, class T>
//               static agg_result run(Exec, std::span<const T> logprobs, const token_batch&,
//                                     std::span<T> grad, const agg_normalizer&,
//                                     const agg_options&, workspace ws);
//             Arguments are validated by the front end; `ws` holds workspace_bytes<Mode>(rows,
//             !grad.empty()) bytes. exec::host: backend/cpu/sft.hpp. The primary template is
//             `available = false`, which the front end's compute(exec::cuda, ...) turns into a
//             static_assert sentence.
// Backends include this header, never the front end loss/sft.hpp.
#include <span>

#include "posttrain/config.hpp"
#include "posttrain/core/batch.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/ops/aggregate_types.hpp"

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

template <class Exec>
struct sft_backend {
  static constexpr bool available = false;
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
