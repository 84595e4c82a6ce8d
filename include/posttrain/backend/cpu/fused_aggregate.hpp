#pragma once
// Aggregation inside a fused per-token loss pass (backend/cpu/policy_gradient.hpp,
// loss/value.hpp): the loss computes L_t, adds m_t·L_t to the aggregate and writes its gradient
// in the same pass, with no full-length scratch array.
//
// This works because dLoss/dL_t = m_t·w_i / D (ops/aggregate.hpp) depends on the mask only: the
// row lengths |o_i| = Σ m, hence w_i, and the divisor D are known from one read of the mask
// before any L_t (no read at all when the normaliser fixes D and the mode has no row weight).
// Every sum is formed exactly as aggregate_loss forms it (mask_sum and ordered_sum follow
// masked_dot's accumulators and order), so a fused loss equals "per-token loss array, then
// aggregate_loss" bit for bit (tests/loss/policy_gradient_fused.cpp, tests/loss/value.cpp).
//
// Use: construct (validated arguments), then for each segment in increasing order — every row
// for per-sequence modes, any split into consecutive ranges otherwise — begin_row, add(t, m·L)
// for its tokens with m ≠ 0 in increasing t, end_row; scale(i) is dLoss/dL_t / m_t in row i.
#include <cstddef>
#include <span>
#include <vector>

#include "posttrain/backend/cpu/aggregate.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/ops/aggregate_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

template <class Mode>
class fused_aggregate {
 public:
  // Scratch of the per-sequence modes: three doubles per row (B = seq_offsets.size() - 1).
  static std::size_t workspace_bytes(std::size_t rows) {
    if constexpr (!Mode::per_sequence) return 0;
    return workspace_size().add<double>(rows).add<double>(rows).add<double>(rows);
  }

  // n = number of tokens (seq_offsets may be empty for the token-level modes). Allocates the
  // per-row scratch of the per-sequence modes.
  fused_aggregate(std::span<const float> mask, std::span<const index_t> seq_offsets,
                  std::size_t n, const agg_normalizer& normalizer, const agg_options& options) {
    if constexpr (Mode::per_sequence) {
      const std::size_t rows = seq_offsets.size() - 1;
      owned_.resize(3 * rows);
      const std::span<double> all(owned_);
      init(mask, seq_offsets, n, normalizer, options, all.subspan(0, rows),
           all.subspan(rows, rows), all.subspan(2 * rows, rows));
    } else {
      init(mask, seq_offsets, n, normalizer, options, {}, {}, {});
    }
  }

  // The same with the scratch taken from ws (workspace_bytes(rows)): no allocation.
  fused_aggregate(std::span<const float> mask, std::span<const index_t> seq_offsets,
                  std::size_t n, const agg_normalizer& normalizer, const agg_options& options,
                  workspace ws) {
    const std::size_t rows = Mode::per_sequence ? seq_offsets.size() - 1 : 0;
    const auto a = ws.take<double>(rows, "fused_aggregate");
    const auto b = ws.take<double>(rows, "fused_aggregate");
    const auto c = ws.take<double>(rows, "fused_aggregate");
    init(mask, seq_offsets, n, normalizer, options, a, b, c);
  }

  // The row spans may point into owned_: not copyable or movable.
  fused_aggregate(const fused_aggregate&) = delete;
  fused_aggregate& operator=(const fused_aggregate&) = delete;

  double divisor() const { return divisor_; }

  // dLoss/dL_t = m_t·scale(i) for t in row i (0 when D = 0, as aggregate_loss's zero gradient).
  double scale([[maybe_unused]] std::size_t row) const {
    if constexpr (Mode::per_sequence)
      return row_scale_[row];
    else
      return token_scale_;
  }

  void begin_row([[maybe_unused]] std::size_t begin, [[maybe_unused]] std::size_t end) {
    if constexpr (Mode::per_sequence) sum_.reset(begin, end);
  }

  void add(std::size_t t, double masked_loss) { sum_.add(t, masked_loss); }

  void end_row([[maybe_unused]] std::size_t row) {
    if constexpr (Mode::per_sequence)
      if (row_length_[row] > 0.0) weighted_sum_ += row_weight_[row] * sum_.total();
  }

  // The aggregated loss, after the last end_row.
  double loss() const {
    if (divisor_ == 0.0) return 0.0;
    if constexpr (Mode::per_sequence)
      return weighted_sum_ / divisor_;
    else
      return sum_.total() / divisor_;
  }

 private:
  void init(std::span<const float> mask, std::span<const index_t> seq_offsets, std::size_t n,
            const agg_normalizer& normalizer, const agg_options& options,
            std::span<double> row_length, std::span<double> row_weight,
            std::span<double> row_scale) {
    row_length_ = row_length;
    row_weight_ = row_weight;
    row_scale_ = row_scale;
    if constexpr (Mode::per_sequence) {
      const std::size_t rows = seq_offsets.size() - 1;
      double tokens = 0.0, nonempty = 0.0;
      for (std::size_t i = 0; i < rows; ++i) {
        const double len = mask_sum(mask, static_cast<std::size_t>(seq_offsets[i]),
                                    static_cast<std::size_t>(seq_offsets[i + 1]));
        row_length_[i] = len;
        row_weight_[i] = len > 0.0 ? Mode::row_weight(len, options) : 0.0;
        if (len > 0.0) nonempty += 1.0;
        tokens += len;
      }
      const double local_sequences =
          options.include_empty_sequences ? static_cast<double>(rows) : nonempty;
      divisor_ = posttrain::detail::agg_divisor<Mode>(normalizer, tokens, local_sequences);
      // Every row scale is written (0 when D = 0): workspace memory starts uninitialised.
      const double inv = divisor_ != 0.0 ? 1.0 / divisor_ : 0.0;
      for (std::size_t i = 0; i < rows; ++i)
        row_scale_[i] = divisor_ != 0.0 ? row_weight_[i] * inv : 0.0;
    } else {
      // Σ m only when the divisor is the local token count
      const bool local_tokens =
          Mode::divisor == agg::divisor_kind::tokens && !normalizer.tokens.has_value();
      divisor_ = posttrain::detail::agg_divisor<Mode>(
          normalizer, local_tokens ? mask_sum(mask, 0, n) : 0.0, 0.0);
      if (divisor_ != 0.0) token_scale_ = 1.0 / divisor_;
      sum_.reset(0, n);
    }
  }

  double divisor_ = 0.0;
  double token_scale_ = 0.0;
  double weighted_sum_ = 0.0;
  std::vector<double> owned_;
  std::span<double> row_length_, row_weight_, row_scale_;
  ordered_sum sum_;
};

}  // namespace backend::cpu

POSTTRAIN_NAMESPACE_END
