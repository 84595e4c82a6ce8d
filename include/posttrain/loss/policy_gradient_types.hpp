#pragma once
// The policy-gradient family's types and its backend contract (issue 9 item 1).
//
//   types     policy_gradient_options, policy_gradient_loss_options, inputs / outputs / result,
//             basic_policy_gradient_loss_options<SO>, pg_token, pg_seq_token, pg_weight_use,
//             surrogate::defaults, pg_surrogate_call
//             (loss/policy_gradient/parts.hpp), agg_options / agg_normalizer (ops/aggregate.hpp)
//   backend   loss::policy_gradient_backend<Exec>: one specialisation per execution tag, with
//               static constexpr bool available = true;
//               template <class Surrogate, class Kl, class Agg>
//               static std::size_t workspace_bytes(Exec, seq_offsets, options, bool with_grad);
//               template <class Surrogate, class Kl, class Agg, class T>
//               static policy_gradient_result run(Exec, inputs, options, outputs, normalizer,
//                                                 agg_options, const Surrogate::options&,
//                                                 workspace);  // scratch of workspace_bytes
//             (the surrogate's hooks are called through pg_surrogate_call, which passes its own
//             options where the hook declares them)
//             exec::host: backend/cpu/policy_gradient.hpp. The primary template is `available =
//             false`; the front end's compute(exec::cuda, ...) says so in a static_assert sentence
//             until backend/cuda/policy_gradient.cuh specialises it (docs/architecture.md).
// Backends include this header (and the policies), never the front end loss/policy_gradient.hpp.
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/loss/policy_gradient/parts.hpp"
#include "posttrain/ops/aggregate_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss {

template <class Exec>
struct policy_gradient_backend {
  static constexpr bool available = false;
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
