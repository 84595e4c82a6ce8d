#pragma once
// loss::value_clipped<Aggregation> — the clipped critic loss of PPO.
//
//   v_c  = clamp(v, V_old − c, V_old + c)
//   L_t  = ½·max((v − R)², (v_c − R)²)          loss = coef·Aggregation(L, m)
//   ∂L_t/∂v = (v − R) where the unclipped term is the max, (v_c − R)·[v inside the clip] otherwise
//   c = ∞ gives the unclipped ½·(v − R)² (OpenRLHF without value_clip).
// Inputs value_inputs<T>: values v[N], old_values V_old[N], returns R[N], mask[N] (or empty),
//        seq_offsets[B+1] (required by per-sequence aggregations). Output grad[N] = dloss/dv.
// Statistic clip_fraction = masked mean of (v_c − R)² > (v − R)² (verl vf_clipfrac).
// Peers (value_conventions::*): verl clip 0.5 (token-mean); TRL PPO clip 0.2, coef vf_coef = 0.1
//        (loss = pg + 0.1·vf); OpenRLHF clip 0.5 (V_old + clamp(v − V_old, ±c), same value).
#include <cmath>
#include <concepts>
#include <limits>
#include <span>
#include <string>
#include <type_traits>

#include "posttrain/backend/cpu/value.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/value_types.hpp"
#include "posttrain/ops/aggregate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss {

template <class Aggregation>
struct value_clipped : loss_interface<value_loss_options, value_inputs, value_outputs,
                                      agg_normalizer, value_result> {
  static_assert(check_aggregation<Aggregation>(),
                "loss::value_clipped<Aggregation>: not an aggregation (see above)");

  static std::string name() { return "loss::value_clipped"; }

  // (O = value_loss_options, deduced, so that a braced `{}` still selects the positional form.)
  template <class T, std::same_as<value_loss_options> O>
  static value_result compute(exec::host, const value_inputs<T>& in, const O& options,
                              const value_outputs<T>& out, const agg_normalizer& norm) {
    return compute(exec::host{}, in, options.value, out.grad, norm, options.aggregation);
  }

  template <class T>
  static void validate(const value_inputs<T>& in, const value_options& o, std::span<T> grad,
                       const agg_normalizer& norm, const agg_options& agg_opts) {
    constexpr const char* where = "loss::value_clipped";
    const index_t n = ssize(in.values);
    expect_size(in.old_values, n, where, "old_values", "one per token of values");
    expect_size(in.returns, n, where, "returns", "one per token of values");
    expect_size_or_empty(in.mask, n, where, "mask", "one weight per token, or empty");
    expect_mask(in.mask, where, "mask");
    if (Aggregation::per_sequence)
      expect(!in.seq_offsets.empty(), where, "seq_offsets is empty, expected B + 1 offsets");
    if (!in.seq_offsets.empty()) expect_offsets(in.seq_offsets, n, where, "seq_offsets");
    expect_size_or_empty(grad, n, where, "grad", "one per token, or empty");
    expect(!std::isnan(o.clip) && o.clip >= 0.0, where, "options.clip = ", o.clip,
           ", expected c >= 0 (infinity = off)");
    expect_finite(o.coef, where, "options.coef");
    posttrain::detail::validate_agg_normalizer(norm, where);
    posttrain::detail::validate_agg_options(agg_opts, where);
    if constexpr (Aggregation::divisor == agg::divisor_kind::constant)
      expect(norm.constant.has_value(), where,
             "normalizer.constant is unset, expected the constant divisor C > 0");
  }

  template <class T>
  static value_result compute(exec::host, const value_inputs<T>& in, const value_options& o = {},
                              std::span<T> grad = {}, const agg_normalizer& norm = {},
                              const agg_options& agg_opts = {}) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::value_clipped::compute accepts float or double values");
    validate(in, o, grad, norm, agg_opts);
    return value_backend<exec::host>::run<Aggregation>(exec::host{}, in, o, grad, norm, agg_opts);
  }

  // Bytes of the workspace compute(..., ws) needs for B = rows sequences (0 for token-level
  // aggregations).
  static std::size_t workspace_bytes(exec::host, index_t rows) {
    expect(rows >= 0, "loss::value_clipped::workspace_bytes", "rows is ", rows, ", expected >= 0");
    return value_backend<exec::host>::workspace_bytes<Aggregation>(exec::host{}, rows);
  }

  // Caller scratch (workspace_bytes(exec, B) bytes): no allocation.
  template <class T>
  static value_result compute(exec::host, const value_inputs<T>& in, const value_options& o,
                              std::span<T> grad, const agg_normalizer& norm,
                              const agg_options& agg_opts, workspace ws) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::value_clipped::compute accepts float or double values");
    validate(in, o, grad, norm, agg_opts);
    return value_backend<exec::host>::run<Aggregation>(exec::host{}, in, o, grad, norm, agg_opts,
                                                       ws);
  }

  template <class T>
  static value_result compute(const value_inputs<T>& in, const value_options& o = {},
                              std::span<T> grad = {}, const agg_normalizer& norm = {},
                              const agg_options& agg_opts = {}) {
    return compute(exec::host{}, in, o, grad, norm, agg_opts);
  }

  template <class T>
  static value_result compute(exec::cuda, const value_inputs<T>&, const value_options& = {},
                              std::span<T> = {}, const agg_normalizer& = {},
                              const agg_options& = {}) {
    static_assert(value_backend<exec::cuda>::available && sizeof(T) > 0,
                  "loss::value_clipped has no CUDA backend yet (no loss::value_backend<exec::cuda> "
                  "specialisation, loss/value_types.hpp): call compute(exec::host{}, ...) with "
                  "host memory");
    return {};
  }
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
