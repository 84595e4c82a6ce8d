#pragma once
// CPU backend of loss::value_clipped (front end: loss/value.hpp, which validates every argument
// first). One fused pass per row (backend/cpu/fused_aggregate.hpp): dLoss/dL_t = m_t·scale_i is
// known from the mask, so L_t is aggregated and dloss/dv written as it is computed; bit for bit
// the per-token loss array followed by aggregate_loss.
#include <cstddef>
#include <span>

#include "posttrain/backend/cpu/fused_aggregate.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/loss/value_types.hpp"
#include "posttrain/ops/aggregate_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

template <class Aggregation, class T>
value_result value_clipped(const value_inputs<T>& in, const value_options& o, std::span<T> grad,
                           fused_aggregate<Aggregation>& agg) {
  const std::size_t n = in.values.size();
  const bool write_grad = !grad.empty();
  double sum_m = 0.0, sum_clip = 0.0;
  const auto segment = [&](std::size_t i, std::size_t b, std::size_t e) {
    const double scale = agg.scale(i);
    agg.begin_row(b, e);
    for (std::size_t t = b; t < e; ++t) {
      const double m = in.mask.empty() ? 1.0 : static_cast<double>(in.mask[t]);
      double dl = 0.0;
      if (m != 0.0) {
        const double v = in.values[t], vo = in.old_values[t], r = in.returns[t];
        const bool inside = !(v < vo - o.clip) && !(vo + o.clip < v);
        const double vc = inside ? v : (v < vo - o.clip ? vo - o.clip : vo + o.clip);
        const double a = (v - r) * (v - r), b2 = (vc - r) * (vc - r);
        double l;
        if (b2 > a) {
          l = 0.5 * b2;
          dl = inside ? vc - r : 0.0;
          sum_clip += m;
        } else {
          l = 0.5 * a;
          dl = v - r;
        }
        sum_m += m;
        agg.add(t, m * l);
      }
      if (write_grad) grad[t] = static_cast<T>(o.coef * (m * scale) * dl);
    }
    agg.end_row(i);
  };
  if constexpr (Aggregation::per_sequence) {
    for (std::size_t i = 0; i + 1 < in.seq_offsets.size(); ++i)
      segment(i, static_cast<std::size_t>(in.seq_offsets[i]),
              static_cast<std::size_t>(in.seq_offsets[i + 1]));
  } else {
    segment(0, 0, n);
  }
  return {o.coef * agg.loss(), agg.divisor(), sum_m > 0 ? sum_clip / sum_m : 0.0};
}

}  // namespace backend::cpu

// The host backend of loss::value_clipped (loss/value_types.hpp).
template <>
struct loss::value_backend<exec::host> {
  static constexpr bool available = true;

  template <class Aggregation>
  static std::size_t workspace_bytes(exec::host, index_t rows) {
    return backend::cpu::fused_aggregate<Aggregation>::workspace_bytes(
        static_cast<std::size_t>(rows));
  }

  template <class Aggregation, class T>
  static value_result run(exec::host, const value_inputs<T>& in, const value_options& o,
                          std::span<T> grad, const agg_normalizer& norm,
                          const agg_options& agg_opts, workspace ws) {
    backend::cpu::fused_aggregate<Aggregation> agg(in.mask, in.seq_offsets, in.values.size(), norm,
                                                   agg_opts, ws);
    return backend::cpu::value_clipped(in, o, grad, agg);
  }

  // The same, the per-row scratch allocated.
  template <class Aggregation, class T>
  static value_result run(exec::host, const value_inputs<T>& in, const value_options& o,
                          std::span<T> grad, const agg_normalizer& norm,
                          const agg_options& agg_opts) {
    backend::cpu::fused_aggregate<Aggregation> agg(in.mask, in.seq_offsets, in.values.size(), norm,
                                                   agg_opts);
    return backend::cpu::value_clipped(in, o, grad, agg);
  }
};

POSTTRAIN_NAMESPACE_END
