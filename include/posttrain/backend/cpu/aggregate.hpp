#pragma once
// CPU backend of posttrain::aggregate_loss (ops/aggregate.hpp): backend::aggregate_backend<exec::host>
// (the contract is in ops/aggregate_types.hpp), built from the two passes of a masked,
// optionally per-sequence, weighted sum.
//
//   pass 1  token_sums: Σ_t m·L and Σ_t m over all tokens, or
//           row_sums:   per row i, |o_i| = Σ_t m and s_i = Σ_t m·L; Σ_i w(|o_i|)·s_i over rows
//                       with |o_i| > 0, the row weights w_i, and the count of non-empty rows
//   pass 2  token_grad: grad[t] = m_t·scale;  row_grad: grad[t] = m_t·scale_i
//
// For fused losses (backend/cpu/fused_aggregate.hpp): mask_sum (the weight half of pass 1) and
// ordered_sum (Σ m·L fed one token at a time in pass 1's order).
//
// Sums are in double, in a fixed order (4 interleaved accumulators per row, combined in a fixed
// tree), so results are deterministic. A token with m == 0 contributes nothing, whatever its loss
// (it may be NaN). An empty mask means every weight is 1. Arguments are validated by the front
// end; this layer trusts them.
#include <cstddef>
#include <span>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/ops/aggregate_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

struct agg_sums {
  double weighted_sum = 0.0;   // Σ m·L (token level) or Σ_i w_i·s_i (row level)
  double tokens = 0.0;         // Σ m
  index_t nonempty_rows = 0;   // rows with Σ m > 0 (row level only)
};

namespace detail {

struct masked_partial {
  double sum = 0.0;
  double weight = 0.0;
};

// Σ m·x and Σ m over [begin, end), skipping m == 0, with four accumulators in a fixed order.
template <class T>
inline masked_partial masked_dot(const T* x, const float* m, std::size_t begin, std::size_t end) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0, w0 = 0, w1 = 0, w2 = 0, w3 = 0;
  std::size_t t = begin;
  auto term = [&](std::size_t k, double& s, double& w) {
    const double mk = static_cast<double>(m[k]);
    s += mk != 0.0 ? mk * static_cast<double>(x[k]) : 0.0;
    w += mk;
  };
  for (; t + 4 <= end; t += 4) {
    term(t, s0, w0);
    term(t + 1, s1, w1);
    term(t + 2, s2, w2);
    term(t + 3, s3, w3);
  }
  for (; t < end; ++t) term(t, s0, w0);
  return {(s0 + s1) + (s2 + s3), (w0 + w1) + (w2 + w3)};
}

template <class T>
inline double plain_sum(const T* x, std::size_t begin, std::size_t end) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  std::size_t t = begin;
  for (; t + 4 <= end; t += 4) {
    s0 += static_cast<double>(x[t]);
    s1 += static_cast<double>(x[t + 1]);
    s2 += static_cast<double>(x[t + 2]);
    s3 += static_cast<double>(x[t + 3]);
  }
  for (; t < end; ++t) s0 += static_cast<double>(x[t]);
  return (s0 + s1) + (s2 + s3);
}

template <class T>
inline masked_partial segment_sums(std::span<const T> loss, std::span<const float> mask,
                                   std::size_t begin, std::size_t end) {
  if (mask.empty()) return {plain_sum(loss.data(), begin, end), static_cast<double>(end - begin)};
  return masked_dot(loss.data(), mask.data(), begin, end);
}

}  // namespace detail

template <class T>
agg_sums token_sums(std::span<const T> loss, std::span<const float> mask) {
  const auto p = detail::segment_sums(loss, mask, 0, loss.size());
  return {p.sum, p.weight, 0};
}

// row_weight(|o_i|) -> w_i for non-empty rows; row_scale[i] receives w_i (0 for empty rows)
// when non-empty (B elements).
template <class T, class RowWeight>
agg_sums row_sums(std::span<const T> loss, std::span<const float> mask,
                  std::span<const index_t> seq_offsets, const RowWeight& row_weight,
                  std::span<double> row_scale) {
  agg_sums out;
  const std::size_t rows = seq_offsets.size() - 1;
  for (std::size_t i = 0; i < rows; ++i) {
    const auto p = detail::segment_sums(loss, mask, static_cast<std::size_t>(seq_offsets[i]),
                                        static_cast<std::size_t>(seq_offsets[i + 1]));
    double w = 0.0;
    if (p.weight > 0.0) {
      w = row_weight(p.weight);
      out.weighted_sum += w * p.sum;
      ++out.nonempty_rows;
    }
    out.tokens += p.weight;
    if (!row_scale.empty()) row_scale[i] = w;
  }
  return out;
}

template <class T>
void token_grad(std::span<T> grad, std::span<const float> mask, double scale) {
  const std::size_t n = grad.size();
  T* g = grad.data();
  if (mask.empty()) {
    const T s = static_cast<T>(scale);
    for (std::size_t t = 0; t < n; ++t) g[t] = s;
    return;
  }
  const float* m = mask.data();
  for (std::size_t t = 0; t < n; ++t) g[t] = static_cast<T>(static_cast<double>(m[t]) * scale);
}

// grad[t] = m_t · row_scale[i] · inv_divisor for t in row i.
template <class T>
void row_grad(std::span<T> grad, std::span<const float> mask, std::span<const index_t> seq_offsets,
              std::span<const double> row_scale, double inv_divisor) {
  const std::size_t rows = seq_offsets.size() - 1;
  T* g = grad.data();
  for (std::size_t i = 0; i < rows; ++i) {
    const double s = row_scale[i] * inv_divisor;
    const auto begin = static_cast<std::size_t>(seq_offsets[i]);
    const auto end = static_cast<std::size_t>(seq_offsets[i + 1]);
    if (mask.empty()) {
      const T st = static_cast<T>(s);
      for (std::size_t t = begin; t < end; ++t) g[t] = st;
    } else {
      const float* m = mask.data();
      for (std::size_t t = begin; t < end; ++t)
        g[t] = static_cast<T>(static_cast<double>(m[t]) * s);
    }
  }
}

template <class T>
void fill_zero(std::span<T> grad) {
  for (auto& g : grad) g = T(0);
}

// Σ m over [begin, end) in masked_dot's order (its weight half): the lengths a fused loss pass
// (backend/cpu/fused_aggregate.hpp) computes from the mask alone equal aggregate_loss's.
inline double mask_sum(std::span<const float> mask, std::size_t begin, std::size_t end) {
  if (mask.empty()) return static_cast<double>(end - begin);
  const float* m = mask.data();
  double w0 = 0, w1 = 0, w2 = 0, w3 = 0;
  std::size_t t = begin;
  for (; t + 4 <= end; t += 4) {
    w0 += static_cast<double>(m[t]);
    w1 += static_cast<double>(m[t + 1]);
    w2 += static_cast<double>(m[t + 2]);
    w3 += static_cast<double>(m[t + 3]);
  }
  for (; t < end; ++t) w0 += static_cast<double>(m[t]);
  return (w0 + w1) + (w2 + w3);
}

// Σ m·L over a segment [begin, end), fed one token at a time in increasing t by a fused loss
// pass, in masked_dot's order: position k = t − begin goes to accumulator k mod 4 up to the last
// full group of four, the tail to the first; combined in the same tree. Tokens with m = 0 are
// simply not added (masked_dot adds +0.0 for them, which changes nothing).
class ordered_sum {
 public:
  void reset(std::size_t begin, std::size_t end) {
    begin_ = begin;
    full_end_ = begin + (end - begin) / 4 * 4;
    s_[0] = s_[1] = s_[2] = s_[3] = 0.0;
  }
  void add(std::size_t t, double x) { s_[t < full_end_ ? (t - begin_) & 3 : 0] += x; }
  double total() const { return (s_[0] + s_[1]) + (s_[2] + s_[3]); }

 private:
  std::size_t begin_ = 0, full_end_ = 0;
  double s_[4] = {0.0, 0.0, 0.0, 0.0};
};

}  // namespace backend::cpu

namespace backend {

template <>
struct aggregate_backend<exec::host> {
  // The per-row weights of the gradient pass (per-sequence modes with a gradient only).
  template <class Mode>
  static std::size_t workspace_bytes(exec::host, index_t rows, bool with_grad) {
    if (!Mode::per_sequence || !with_grad) return 0;
    return workspace_size().add<double>(static_cast<std::size_t>(rows));
  }

  template <class Mode, class T>
  static agg_result run(exec::host, std::span<const T> loss, std::span<const float> mask,
                        std::span<const index_t> seq_offsets, const agg_normalizer& normalizer,
                        std::span<T> grad, const agg_options& options, workspace ws) {
    agg_result result;
    if constexpr (Mode::per_sequence) {
      const std::size_t rows = seq_offsets.size() - 1;
      const std::span<double> row_scale =
          ws.take<double>(grad.empty() ? 0 : rows, "aggregate_loss");
      const auto weight = [&options](double length) { return Mode::row_weight(length, options); };
      const auto s = cpu::row_sums(loss, mask, seq_offsets, weight, row_scale);
      const double local_sequences = options.include_empty_sequences
                                         ? static_cast<double>(rows)
                                         : static_cast<double>(s.nonempty_rows);
      result.divisor = ::posttrain::detail::agg_divisor<Mode>(normalizer, s.tokens,
                                                              local_sequences);
      if (result.divisor == 0.0) {
        cpu::fill_zero(grad);
        return result;
      }
      result.loss = s.weighted_sum / result.divisor;
      if (!grad.empty())
        cpu::row_grad(grad, mask, seq_offsets, std::span<const double>(row_scale),
                      1.0 / result.divisor);
    } else {
      const auto s = cpu::token_sums(loss, mask);
      result.divisor = ::posttrain::detail::agg_divisor<Mode>(normalizer, s.tokens, 0.0);
      if (result.divisor == 0.0) {
        cpu::fill_zero(grad);
        return result;
      }
      result.loss = s.weighted_sum / result.divisor;
      if (!grad.empty()) cpu::token_grad(grad, mask, 1.0 / result.divisor);
    }
    return result;
  }

  static agg_counts counts(exec::host, std::span<const float> mask,
                           std::span<const index_t> seq_offsets, const agg_options& options) {
    const std::size_t rows = seq_offsets.size() - 1;
    agg_counts c;
    for (std::size_t i = 0; i < rows; ++i) {
      double w = 0.0;
      if (mask.empty()) {
        w = static_cast<double>(seq_offsets[i + 1] - seq_offsets[i]);
      } else {
        for (auto t = seq_offsets[i]; t < seq_offsets[i + 1]; ++t)
          w += static_cast<double>(mask[static_cast<std::size_t>(t)]);
      }
      c.tokens += w;
      if (w > 0.0 || options.include_empty_sequences) c.sequences += 1.0;
    }
    return c;
  }
};

}  // namespace backend

POSTTRAIN_NAMESPACE_END
