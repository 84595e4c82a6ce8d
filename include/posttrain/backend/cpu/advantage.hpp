#pragma once
// CPU backend of the advantage estimators (advantage/*.hpp): the generic loops, written once and
// driven by the per-element formulas of each family (POSTTRAIN_HOST_DEVICE policies there).
//
//   reverse_scan(seq_offsets, kernel)   for every sequence, state = {}, then for t from the last
//       token down to the first: kernel.step(inputs_t, m_t, state, outputs_t). GAE, discounted
//       returns and reverse cumulative sums are first-order recurrences run backwards in time;
//       step applies the affine map of token t to the carried state and computes the outputs
//       of t. Sequences are walked scan_rows at a time, interleaved token by token (see there);
//       every sequence gets exactly the serial recurrence of its own tokens.
//   for_each_member(group_offsets, fn)      fn(g, i) for every sequence i of group g, in order.
//   broadcast(A[B], seq_offsets, mask, out[N])   out_t = A_b·m_t.
//   sequence_lengths(mask, seq_offsets, out[B])  Σ_t m_t.
// Arguments are validated by the front ends.
//
// A reverse_scan kernel (advantage/gae.hpp gae_step, advantage/reinforce.hpp return_step and
// remax_step):
//   value_type T; inputs NI and outputs NO (token arrays of T); has_mask; const T* in[NI];
//   const float* mask; T* out[NO]; has_sequence_constant (and then const T* sequence_constant[B],
//   e.g. ReMax's baseline); state (value-initialised at each sequence's end);
//   step(const std::array<double, NI>& x, double m, double constant, state& s,
//   std::array<double, NO>& y) const: inputs and outputs in double (rounded to T by the scan).
//   m is 1 where the kernel has no mask.
#include <algorithm>
#include <array>
#include <cstddef>
#include <span>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

// One sequence's recurrence is one dependent multiply-add chain per token (latency bound: the
// serial scan ran at about twice the memory floor at 512 x 4096), so reverse_scan walks scan_rows
// consecutive sequences together in scalar code: each step advances every row of the block by
// one token, and the rows' independent chains overlap in the pipeline. The block is aligned on
// the rows' ends (t counts back from each row's last token); row k first runs scan_skew·k tokens
// alone, so that the rows' streams are not 16 KiB apart (rows of 4096 floats): at that distance
// every row's line falls in the same L1 set, and 4 rows of GAE's 5 streams overflow its 12 ways
// (unskewed, 4 rows measured barely faster than 1 for GAE and 8 rows 4x slower). Then the rows go
// in lock step for as many tokens as all of them have left, and each finishes its head alone
// with its carried state; the last B mod scan_rows sequences run one after the other. Every row
// gets its own recurrence in its own order with the same operations: bit-identical to
// reverse_scan_serial (tests/advantage/{gae,reinforce}.cpp), except that with hardware FMA
// (-march=native) GCC's default -ffp-contract=fast fuses a·b + c where it chooses in each loop
// (a few ulp). bench/cpu/advantage.cpp, 512 x 4096, -march=native: GAE 5.17 -> 3.36 ms,
// discounted returns 3.76 -> 2.13 ms; 4 rows beat 2 and 8.
// (The tiled SIMD-lane scan this replaces, b264522, staged an L1 tile element by element and
// measured 2x slower than the serial scan.)
#ifndef POSTTRAIN_SCAN_ROWS
#define POSTTRAIN_SCAN_ROWS 4
#endif
inline constexpr int scan_rows = POSTTRAIN_SCAN_ROWS;
static_assert(scan_rows >= 1, "POSTTRAIN_SCAN_ROWS must be >= 1");
#ifndef POSTTRAIN_SCAN_SKEW
#define POSTTRAIN_SCAN_SKEW 16
#endif
inline constexpr index_t scan_skew = POSTTRAIN_SCAN_SKEW;  // tokens: one 64 B line of float

namespace scan_detail {

// Token t of the sequence whose per-sequence constant is c and carried state s.
template <class Kernel>
POSTTRAIN_FORCEINLINE void scan_token(const Kernel& kernel, index_t t, double c,
                                      typename Kernel::state& s) {
  using T = typename Kernel::value_type;
  constexpr int NI = Kernel::inputs, NO = Kernel::outputs;
  std::array<double, NI> x;
  for (int i = 0; i < NI; ++i) x[i] = static_cast<double>(kernel.in[i][t]);
  const double m = Kernel::has_mask ? static_cast<double>(kernel.mask[t]) : 1.0;
  std::array<double, NO> y;
  kernel.step(x, m, c, s, y);
  for (int o = 0; o < NO; ++o) kernel.out[o][t] = static_cast<T>(y[o]);
}

template <class Kernel>
POSTTRAIN_FORCEINLINE double sequence_constant(const Kernel& kernel, std::size_t b) {
  if constexpr (Kernel::has_sequence_constant)
    return static_cast<double>(kernel.sequence_constant[b]);
  else
    return 0.0;
}

}  // namespace scan_detail

// One sequence after the other (the reference order; the remainder rows of reverse_scan).
template <class Kernel>
void reverse_scan_serial(std::span<const index_t> seq_offsets, const Kernel& kernel,
                         std::size_t first = 0) {
  for (std::size_t b = first; b + 1 < seq_offsets.size(); ++b) {
    const double c = scan_detail::sequence_constant(kernel, b);
    typename Kernel::state state{};
    for (index_t t = seq_offsets[b + 1] - 1; t >= seq_offsets[b]; --t)
      scan_detail::scan_token(kernel, t, c, state);
  }
}

template <class Kernel>
void reverse_scan(std::span<const index_t> seq_offsets, const Kernel& kernel) {
  constexpr int K = scan_rows;
  constexpr index_t S = scan_skew;
  using State = typename Kernel::state;
  const std::size_t sequences = seq_offsets.empty() ? 0 : seq_offsets.size() - 1;
  std::size_t b0 = 0;
  if constexpr (K > 1) {
    for (; b0 + K <= sequences; b0 += K) {
      // next[k]: the next token of row k (counting down); common: tokens every row of the block
      // has.
      index_t next[K], first[K], common = 0;
      double c[K];
      State state[K];
      for (int k = 0; k < K; ++k) {
        first[k] = seq_offsets[b0 + k];
        next[k] = seq_offsets[b0 + k + 1] - 1;
        const index_t length = next[k] + 1 - first[k];
        common = k == 0 ? length : std::min(common, length);
        c[k] = scan_detail::sequence_constant(kernel, b0 + k);
        state[k] = State{};
      }
      // Skew: row k first runs k·S tokens alone, so that the rows' streams stay k·S tokens apart
      // and do not share L1 sets (padded rows of 4096 floats are 16 KiB apart: same set).
      for (int k = 1; k < K; ++k)
        for (index_t i = 0; i < k * S && next[k] >= first[k]; ++i, --next[k])
          scan_detail::scan_token(kernel, next[k], c[k], state[k]);
      const index_t n = std::max<index_t>(common - (K - 1) * S, 0);
      for (index_t j = 0; j < n; ++j)
        for (int k = 0; k < K; ++k) scan_detail::scan_token(kernel, next[k] - j, c[k], state[k]);
      for (int k = 0; k < K; ++k)
        for (index_t t = next[k] - n; t >= first[k]; --t)
          scan_detail::scan_token(kernel, t, c[k], state[k]);
    }
  }
  reverse_scan_serial(seq_offsets, kernel, b0);
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
  template <class Kernel>
  static void reverse_scan(exec::host, std::span<const index_t> seq_offsets,
                           const Kernel& kernel) {
    backend::cpu::reverse_scan(seq_offsets, kernel);
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
