#pragma once
// The preference family's types and its backend contract (issue 9 item 1): everything a backend
// needs and nothing that runs on the front end's side.
//
//   types     loss::preference_options, pref::pair_value, the link concept and traits
//             (loss/preference/link.hpp), preference_inputs / outputs / normalizer / result
//             (loss/preference/parts.hpp), the sequence reductions (loss/sequence_reduce.hpp)
//   backend   loss::preference_backend<Exec>: one specialisation per execution tag, with
//               static constexpr bool available = true;
//               template <class Link, class SeqReduce, class Reference, class Nll, class T,
//                         class Transform>
//               static preference_result pair_loop(Exec, inputs, options, link_options,
//                   outputs, pair_normalizer, token_normalizer, nll_coef, workspace, transform);
//               template <class Link> static std::size_t workspace_bytes(Exec, pairs);
//             (link_options: the link's own, pref::link_options_t<Link>; the loop evaluates the
//             link through pref::link_call, which passes them where the link's hook takes them)
//             exec::host: backend/cpu/preference.hpp. The primary template is `available =
//             false`; the front end's compute(exec::cuda, ...) states that in a static_assert
//             sentence until backend/cuda/preference.cuh specialises it (docs/architecture.md).
// Backends include this header (and policy headers), never the front end loss/preference.hpp.
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/loss/preference/link.hpp"
#include "posttrain/loss/preference/parts.hpp"
#include "posttrain/loss/sequence_reduce.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss {

template <class Exec>
struct preference_backend {
  static constexpr bool available = false;
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
