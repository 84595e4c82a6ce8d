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

#include "posttrain/backend/cpu/fused_aggregate.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/ops/aggregate.hpp"

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
    // One fused pass per row (backend/cpu/fused_aggregate.hpp): dLoss/dL_t = m_t·scale_i is
    // known from the mask, so L_t is aggregated and dloss/dv written as it is computed; bit for
    // bit the per-token loss array followed by aggregate_loss.
    const std::size_t n = in.values.size();
    backend::cpu::fused_aggregate<Aggregation> agg(in.mask, in.seq_offsets, n, norm, agg_opts);
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

  template <class T>
  static value_result compute(const value_inputs<T>& in, const value_options& o = {},
                              std::span<T> grad = {}, const agg_normalizer& norm = {},
                              const agg_options& agg_opts = {}) {
    return compute(exec::host{}, in, o, grad, norm, agg_opts);
  }
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
