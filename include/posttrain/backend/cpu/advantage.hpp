#pragma once
// CPU backend of the advantage estimators (advantage/*.hpp): the generic loops, written once and
// driven by the per-element formulas of each family (POSTTRAIN_HOST_DEVICE policies there).
//
//   reverse_scan(seq_offsets, init, step)   for every sequence, state = init, then for t from
//       the last token down to the first: step(t, state). GAE, discounted returns and reverse
//       cumulative sums are first-order recurrences run backwards in time; step applies the
//       affine map of token t to the carried state and writes the outputs of t. One sequence
//       after the other: the hardware prefetcher follows the single descending stream, and the
//       loop-carried chain (one multiply-add and a select per token) overlaps with the loads.
//       (Four sequences in lock-step measured slower: four strided streams.)
//   for_each_member(group_offsets, fn)      fn(g, i) for every sequence i of group g, in order.
//   broadcast(A[B], seq_offsets, mask, out[N])   out_t = A_b·m_t.
//   sequence_lengths(mask, seq_offsets, out[B])  Σ_t m_t.
// Arguments are validated by the front ends.
#include <span>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

template <class State, class Step>
void reverse_scan(std::span<const index_t> seq_offsets, const State& init, const Step& step) {
  const index_t sequences = static_cast<index_t>(seq_offsets.size()) - 1;
  for (index_t b = 0; b < sequences; ++b) {
    State state = init;
    for (index_t t = seq_offsets[b + 1] - 1; t >= seq_offsets[b]; --t) step(t, state);
  }
}

template <class Fn>
void for_each_member(std::span<const index_t> group_offsets, Fn&& fn) {
  for (std::size_t g = 0; g + 1 < group_offsets.size(); ++g)
    for (index_t i = group_offsets[g]; i < group_offsets[g + 1]; ++i)
      fn(static_cast<index_t>(g), i);
}

template <class T>
void broadcast(std::span<const T> advantages, std::span<const index_t> seq_offsets,
               std::span<const float> mask, std::span<T> out) {
  for (std::size_t b = 0; b + 1 < seq_offsets.size(); ++b) {
    const double a = static_cast<double>(advantages[b]);
    if (mask.empty()) {
      for (index_t t = seq_offsets[b]; t < seq_offsets[b + 1]; ++t) out[t] = static_cast<T>(a);
    } else {
      for (index_t t = seq_offsets[b]; t < seq_offsets[b + 1]; ++t)
        out[t] = mask[t] != 0.0f ? static_cast<T>(a * static_cast<double>(mask[t])) : T(0);
    }
  }
}

inline void sequence_lengths(std::span<const float> mask, std::span<const index_t> seq_offsets,
                             std::span<double> out) {
  for (std::size_t b = 0; b + 1 < seq_offsets.size(); ++b) {
    double n = 0.0;
    if (mask.empty()) {
      n = static_cast<double>(seq_offsets[b + 1] - seq_offsets[b]);
    } else {
      for (index_t t = seq_offsets[b]; t < seq_offsets[b + 1]; ++t) n += mask[t];
    }
    out[b] = n;
  }
}

}  // namespace backend::cpu

namespace advantage::detail {

template <class Exec>
struct advantage_backend;

template <>
struct advantage_backend<exec::host> {
  template <class State, class Step>
  static void reverse_scan(exec::host, std::span<const index_t> seq_offsets, const State& init,
                           const Step& step) {
    backend::cpu::reverse_scan(seq_offsets, init, step);
  }
  template <class Fn>
  static void for_each_member(exec::host, std::span<const index_t> group_offsets, Fn&& fn) {
    backend::cpu::for_each_member(group_offsets, static_cast<Fn&&>(fn));
  }
  template <class T>
  static void broadcast(exec::host, std::span<const T> advantages,
                        std::span<const index_t> seq_offsets, std::span<const float> mask,
                        std::span<T> out) {
    backend::cpu::broadcast(advantages, seq_offsets, mask, out);
  }
  static void sequence_lengths(exec::host, std::span<const float> mask,
                               std::span<const index_t> seq_offsets, std::span<double> out) {
    backend::cpu::sequence_lengths(mask, seq_offsets, out);
  }
};

}  // namespace advantage::detail

POSTTRAIN_NAMESPACE_END
