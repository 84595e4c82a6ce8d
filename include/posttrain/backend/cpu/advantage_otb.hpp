#pragma once
// CPU backend of the optimal token baseline (advantage/optimal_baseline.hpp). Arguments are
// validated by the front end; the per-token weight w_t comes from the front end's functor.
//
//   1. per sequence: G_t = Σ_{s ≥ t} m_s·r_s (backwards) and W_t = Σ_{s ≤ t} m_s·w_s (forwards),
//      both in double, masked tokens never read (their m·x term is 0 without touching x);
//   2. per group: the time index p of every token (its column t − start, or the rank k of the
//      k-th token with m ≠ 0 when `valid_alignment`), num[p] = Σ_i G·W·c, den[p] = Σ_i W·c with
//      c = m (column) or 1 (valid alignment, verl's compacted rows), B_p = num/(den + ε) (0 when
//      the denominator is 0); groups whose member count is <= 1 get B = 0;
//   3. zero tail: if exactly one member has the largest length and it is longer than the second
//      longest, its baseline is 0 from p = trunc(second length) on;
//   4. A_t = (G_t − B_p)·m_t, returns_t = G_t (0 where m_t = 0).
// One scratch pass per group over a [max length] accumulator; O(N) work. All scratch is the
// caller's (otb_scratch, carved from a posttrain::workspace by the front end): no allocation.
#include <algorithm>
#include <cmath>
#include <span>

#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

struct otb_params {
  bool valid_alignment = false;  // TIR: time index = rank among the row's valid tokens
  bool handle_zero_tail = false;
  double epsilon = 1e-8;
};

// The scratch of one call: N = tokens, B = sequences, L = the longest sequence (an upper bound of
// every group's time-index count under both alignments).
struct otb_scratch {
  std::span<double> reward_to_go;    // G[N]
  std::span<double> energy;          // W[N]
  std::span<double> length;          // [B]: Σ m (column) or #{m != 0} (valid alignment)
  std::span<index_t> members;        // [B]: the members of the current group
  std::span<double> sorted_lengths;  // [B] with handle_zero_tail, else empty
  std::span<double> num, den, baseline;  // [L] each
};

// weight(t) returns w_t (already multiplied by the IS factor) for a token with m_t != 0.
template <class T, class Weight>
void optimal_token_baseline(std::span<const T> rewards, std::span<const float> mask,
                            std::span<const index_t> seq_offsets,
                            std::span<const index_t> group_offsets, const Weight& weight,
                            const otb_params& p, std::span<T> advantages, std::span<T> returns,
                            const otb_scratch& scratch) {
  const std::size_t sequences = seq_offsets.size() - 1;
  auto m_of = [&](index_t t) { return mask.empty() ? 1.0 : static_cast<double>(mask[t]); };

  const std::span<double> G = scratch.reward_to_go, W = scratch.energy, length = scratch.length;
  for (std::size_t b = 0; b < sequences; ++b) {
    double g = 0.0;
    for (index_t t = seq_offsets[b + 1] - 1; t >= seq_offsets[b]; --t) {
      const double m = m_of(t);
      if (m != 0.0) g += m * static_cast<double>(rewards[t]);
      G[t] = g;
    }
    double w = 0.0, len = 0.0;
    for (index_t t = seq_offsets[b]; t < seq_offsets[b + 1]; ++t) {
      const double m = m_of(t);
      if (m != 0.0) {
        w += m * weight(t);
        len += p.valid_alignment ? 1.0 : m;
      }
      W[t] = w;
    }
    length[b] = len;
  }

  for (std::size_t g = 0; g + 1 < group_offsets.size(); ++g) {
    std::size_t member_count = 0;
    index_t width = 0;  // number of time indices the group spans
    for (index_t i = group_offsets[g]; i < group_offsets[g + 1]; ++i) {
      // TIR skips empty responses entirely (they neither count nor contribute).
      if (p.valid_alignment && length[i] == 0.0) continue;
      scratch.members[member_count++] = i;
      width = std::max(width, p.valid_alignment ? static_cast<index_t>(length[i])
                                                : seq_offsets[i + 1] - seq_offsets[i]);
    }
    const std::span<const index_t> members = scratch.members.first(member_count);
    const std::span<double> baseline = scratch.baseline.first(static_cast<std::size_t>(width));
    std::fill(baseline.begin(), baseline.end(), 0.0);
    if (members.size() > 1) {
      const std::span<double> num = scratch.num.first(baseline.size());
      const std::span<double> den = scratch.den.first(baseline.size());
      std::fill(num.begin(), num.end(), 0.0);
      std::fill(den.begin(), den.end(), 0.0);
      for (const index_t i : members) {
        index_t k = 0;
        for (index_t t = seq_offsets[i]; t < seq_offsets[i + 1]; ++t) {
          const double m = m_of(t);
          if (m == 0.0) continue;
          const index_t pos = p.valid_alignment ? k++ : t - seq_offsets[i];
          const double c = p.valid_alignment ? 1.0 : m;
          num[pos] += G[t] * W[t] * c;
          den[pos] += W[t] * c;
        }
      }
      for (std::size_t q = 0; q < baseline.size(); ++q) {
        const double d = den[q] + p.epsilon;
        baseline[q] = d != 0.0 ? num[q] / d : 0.0;
      }
    }
    // Per-member baseline view: the zero tail applies to one member only.
    index_t tail_member = -1, tail_from = 0;
    if (p.handle_zero_tail && members.size() > 1) {
      const std::span<double> sorted = scratch.sorted_lengths.first(members.size());
      for (std::size_t k = 0; k < members.size(); ++k) sorted[k] = length[members[k]];
      std::sort(sorted.begin(), sorted.end());
      const double longest = std::trunc(sorted.back());
      const double second = std::trunc(sorted[sorted.size() - 2]);
      index_t count = 0, who = -1;
      for (const index_t i : members)
        if (length[i] == longest) ++count, who = i;
      if (count == 1 && longest > second) {
        tail_member = who;
        tail_from = static_cast<index_t>(second);
      }
    }
    for (index_t i = group_offsets[g]; i < group_offsets[g + 1]; ++i) {
      index_t k = 0;
      for (index_t t = seq_offsets[i]; t < seq_offsets[i + 1]; ++t) {
        const double m = m_of(t);
        if (m == 0.0) {
          advantages[t] = T(0);
          if (!returns.empty()) returns[t] = T(0);
          continue;
        }
        const index_t pos = p.valid_alignment ? k++ : t - seq_offsets[i];
        double b = pos < static_cast<index_t>(baseline.size())
                       ? baseline[static_cast<std::size_t>(pos)]
                       : 0.0;
        if (i == tail_member && pos >= tail_from) b = 0.0;
        advantages[t] = static_cast<T>((G[t] - b) * m);
        if (!returns.empty()) returns[t] = static_cast<T>(G[t]);
      }
    }
  }
}

}  // namespace backend::cpu

POSTTRAIN_NAMESPACE_END
