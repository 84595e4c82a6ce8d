#pragma once
// The value (critic) family's types and its backend contract (loss/value.hpp documents the
// formula and the peers' conventions).
//
//   types     value_options (+ value_conventions::{verl, trl, openrlhf}), value_inputs /
//             value_outputs / value_result, value_loss_options{value, aggregation}; the
//             normaliser is the aggregation's (agg_normalizer, ops/aggregate_types.hpp).
//   backend   loss::value_backend<Exec>: one specialisation per execution tag, with
//               static constexpr bool available = true;
//               template <class Aggregation>
//               static std::size_t workspace_bytes(Exec, index_t rows);
//               template <class Aggregation, class T>
//               static value_result run(Exec, const value_inputs<T>&, const value_options&,
//                                       std::span<T> grad, const agg_normalizer&,
//                                       const agg_options&, workspace ws);
//             Arguments are validated by the front end; `ws` holds workspace_bytes<Aggregation>(B)
//             bytes. exec::host: backend/cpu/value.hpp. The primary template is
//             `available = false`.
// Backends include this header, never the front end loss/value.hpp.
#include <span>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/ops/aggregate_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

struct value_options {
  double clip = 0.5;  // c; infinity = no clipping
  double coef = 1.0;  // scales loss and gradient (TRL vf_coef)
};

namespace value_conventions {
inline constexpr value_options verl{0.5, 1.0};
inline constexpr value_options trl{0.2, 0.1};
inline constexpr value_options openrlhf{0.5, 1.0};
}  // namespace value_conventions

template <class T>
struct value_inputs {
  std::span<const T> values;
  std::span<const T> old_values;
  std::span<const T> returns;
  std::span<const float> mask;
  std::span<const index_t> seq_offsets;
};

struct value_result {
  double loss = 0.0;
  double divisor = 0.0;
  double clip_fraction = 0.0;
};

// The Loss-concept bundles of loss::value_clipped (compute(exec, value_inputs, value_loss_options,
// value_outputs, agg_normalizer)); the positional form is the same call.
template <class T>
struct value_outputs {
  std::span<T> grad{};  // dLoss/dv[N], or empty
};

struct value_loss_options {
  value_options value{};
  agg_options aggregation{};
};

namespace loss {

template <class Exec>
struct value_backend {
  static constexpr bool available = false;
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
