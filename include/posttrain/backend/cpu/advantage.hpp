#pragma once
// CPU backend of the advantage estimators (advantage/*.hpp): the generic loops, written once and
// driven by the per-element formulas of each family (POSTTRAIN_HOST_DEVICE policies there).
//
//   reverse_scan(seq_offsets, kernel)   for every sequence, state = {}, then for t from the last
//       token down to the first: kernel.step(inputs_t, m_t, state, outputs_t). GAE, discounted
//       returns and reverse cumulative sums are first-order recurrences run backwards in time;
//       step applies the affine map of token t to the carried state and computes the outputs
//       of t. One sequence alone is one dependent multiply-add chain per token (latency bound,
//       ~7 cycles per token), so scan_lanes sequences run together, one per SIMD lane: each
//       block of scan_lanes consecutive sequences is walked from its ends in tiles of
//       scan_tile tokens per sequence, copied (reversed and transposed) into an L1 buffer so
//       that every row is still read and written as a contiguous stream while the step loop
//       sees one token of every row side by side and vectorises across rows. Every sequence
//       gets exactly the serial recurrence of its own tokens (no reassociation); a sequence
//       shorter than the longest of its block idles (its lane computes on zeros and writes
//       nothing) until the block ends. Only with POSTTRAIN_SCAN_TILED=1: by default the
//       sequences run one after the other (reverse_scan_serial, measured faster; see there).
//   for_each_member(group_offsets, fn)      fn(g, i) for every sequence i of group g, in order.
//   broadcast(A[B], seq_offsets, mask, out[N])   out_t = A_b·m_t.
//   sequence_lengths(mask, seq_offsets, out[B])  Σ_t m_t.
// Arguments are validated by the front ends.
//
// A reverse_scan kernel (advantage/gae.hpp gae_step, advantage/reinforce.hpp return_step):
//   value_type T; inputs NI and outputs NO (token arrays of T); has_mask; const T* in[NI];
//   const float* mask; T* out[NO]; has_sequence_constant (and then const T* sequence_constant[B],
//   e.g. ReMax's baseline); template <class D> using state (D{}-initialised at each sequence's
//   end); template <class D> step(const std::array<D, NI>& x, D m, D constant, state<D>& s,
//   std::array<D, NO>& y) const, D = scan_vector: token t of scan_vector_lanes rows at once,
//   inputs and outputs in double (rounded to T by the scan). m is 1 where the kernel has no
//   mask.
#include <algorithm>
#include <array>
#include <span>
#include <type_traits>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

// Lanes: sequences scanned together, each lane one sequence, 8 by default. The state is double
// and the kernels compute on scan_vector, the widest double vector the target enables (AVX-512
// with -march=native: 8 lanes, one register; AVX: 4; SSE2, the default x86-64 build: 2), so
// scan_lanes / scan_vector_lanes independent vectors of rows advance together and hide the
// multiply-add latency. 16 lanes measured slower (twice the concurrent row streams to stage).
// Without GNU vector extensions (or under nvcc), scalar lanes.
#ifndef POSTTRAIN_SCAN_LANES
#define POSTTRAIN_SCAN_LANES 8
#endif
inline constexpr int scan_lanes = POSTTRAIN_SCAN_LANES;
// nvcc compiles host-device formulas for the device too, where vector types do not exist: CUDA
// translation units get the scalar (serial) scan.
#if defined(__GNUC__) && !defined(__CUDACC__)
#define POSTTRAIN_DETAIL_SCAN_VECTORS 1
#else
#define POSTTRAIN_DETAIL_SCAN_VECTORS 0
#endif
#if POSTTRAIN_DETAIL_SCAN_VECTORS
#if defined(__AVX512F__)
inline constexpr int scan_vector_lanes = 8;
#elif defined(__AVX__)
inline constexpr int scan_vector_lanes = 4;
#else
inline constexpr int scan_vector_lanes = 2;
#endif
// Arithmetic, comparisons and ?: act lane by lane (GNU vector extension).
typedef double scan_vector __attribute__((vector_size(scan_vector_lanes * sizeof(double))));
#else
inline constexpr int scan_vector_lanes = 1;
using scan_vector = double;
#endif
static_assert(scan_lanes % scan_vector_lanes == 0, "POSTTRAIN_SCAN_LANES must be a multiple of "
                                                   "the double vector width");
// Tokens per row staged per tile (256 B of float per row and stream): (inputs + outputs + mask)
// · scan_tile · scan_lanes elements, 10 KiB for float GAE, 18 KiB for double, inside L1.
#ifndef POSTTRAIN_SCAN_TILE
#define POSTTRAIN_SCAN_TILE 64
#endif
inline constexpr int scan_tile = POSTTRAIN_SCAN_TILE;

template <class T>
POSTTRAIN_FORCEINLINE void prefetch(const T* p) {
#if defined(__GNUC__)
  __builtin_prefetch(p);
#else
  (void)p;
#endif
}

// x rounded to T and back, lane by lane: the value a T output holds.
template <class T, class D>
POSTTRAIN_FORCEINLINE D round_lanes(D x) {
  if constexpr (std::is_arithmetic_v<D>) {
    return static_cast<D>(static_cast<T>(x));
  } else {
    for (int k = 0; k < scan_vector_lanes; ++k) x[k] = static_cast<double>(static_cast<T>(x[k]));
    return x;
  }
}

// Lanes [k0, k0 + scan_vector_lanes) of a tile row, in double.
template <class T>
POSTTRAIN_FORCEINLINE scan_vector load_lanes(const T* row, int k0) {
#if POSTTRAIN_DETAIL_SCAN_VECTORS
  scan_vector v;
  for (int k = 0; k < scan_vector_lanes; ++k) v[k] = static_cast<double>(row[k0 + k]);
  return v;
#else
  return static_cast<double>(row[k0]);
#endif
}

template <class T>
POSTTRAIN_FORCEINLINE void store_lanes(T* row, int k0, scan_vector v) {
#if POSTTRAIN_DETAIL_SCAN_VECTORS
  for (int k = 0; k < scan_vector_lanes; ++k) row[k0 + k] = static_cast<T>(v[k]);
#else
  row[k0] = static_cast<T>(v);
#endif
}

// One sequence after the other, the kernel on scalar doubles: the hardware prefetcher follows
// the single descending stream. The default: the tiled lane scan below (POSTTRAIN_SCAN_TILED=1)
// measured slower in bench/cpu/advantage.cpp at 512 x 4096 (GAE 11.3 vs 5.4 ms with AVX-512,
// 1.7x slower with SSE2): its staging loads stall on the W·(inputs + 1) strided row streams and
// it writes the transposed tile one element at a time, which costs more than the multiply-add
// latency it hides. Kept, tested (tests/advantage/scan_tiled_*.cpp), for an in-register
// transpose to build on.
#ifndef POSTTRAIN_SCAN_TILED
#define POSTTRAIN_SCAN_TILED 0
#endif
template <class Kernel>
void reverse_scan_serial(std::span<const index_t> seq_offsets, const Kernel& kernel) {
  using T = typename Kernel::value_type;
  constexpr int NI = Kernel::inputs, NO = Kernel::outputs;
  for (std::size_t b = 0; b + 1 < seq_offsets.size(); ++b) {
    double c = 0.0;
    if constexpr (Kernel::has_sequence_constant)
      c = static_cast<double>(kernel.sequence_constant[b]);
    typename Kernel::template state<double> state{};
    for (index_t t = seq_offsets[b + 1] - 1; t >= seq_offsets[b]; --t) {
      std::array<double, NI> x;
      for (int i = 0; i < NI; ++i) x[i] = static_cast<double>(kernel.in[i][t]);
      const double m = Kernel::has_mask ? static_cast<double>(kernel.mask[t]) : 1.0;
      std::array<double, NO> y;
      kernel.step(x, m, c, state, y);
      for (int o = 0; o < NO; ++o) kernel.out[o][t] = static_cast<T>(y[o]);
    }
  }
}

template <class Kernel>
void reverse_scan(std::span<const index_t> seq_offsets, const Kernel& kernel) {
  if constexpr (!POSTTRAIN_SCAN_TILED) {
    reverse_scan_serial(seq_offsets, kernel);
    return;
  }
  using T = typename Kernel::value_type;
  using L = scan_vector;
  using S = typename Kernel::template state<L>;
  constexpr int NI = Kernel::inputs, NO = Kernel::outputs, W = scan_lanes, C = scan_tile;
  constexpr int V = scan_vector_lanes, Q = W / V;  // Q vectors of V lanes
  const index_t sequences = static_cast<index_t>(seq_offsets.size()) - 1;
  alignas(64) T x[NI][C][W];
  alignas(64) float m[C][W];
  alignas(64) T y[NO][C][W];
  for (index_t b0 = 0; b0 < sequences; b0 += W) {
    index_t last[W], length[W], steps = 0;  // last token of each lane's row, its length
    alignas(64) double constant[W] = {};    // the kernel's per-sequence constant, if any
    for (int k = 0; k < W; ++k) {
      const bool live = b0 + k < sequences;
      last[k] = live ? seq_offsets[b0 + k + 1] - 1 : 0;
      length[k] = live ? seq_offsets[b0 + k + 1] - seq_offsets[b0 + k] : 0;
      steps = std::max(steps, length[k]);
      if constexpr (Kernel::has_sequence_constant)
        if (live) constant[k] = static_cast<double>(kernel.sequence_constant[b0 + k]);
    }
    L c[Q];
    S state[Q];
    for (int q = 0; q < Q; ++q) c[q] = load_lanes(constant, q * V), state[q] = S{};
    for (index_t c0 = 0; c0 < steps; c0 += C) {
      const int n = static_cast<int>(std::min<index_t>(C, steps - c0));
      int avail[W];
      // Stage: x[i][j][k] = in_i[last_k − c0 − j]; past a row's first token, zeros (m = 0).
      // The next tile of every row is prefetched: W·(NI + 1) short descending streams are more
      // than the hardware prefetcher follows.
      for (int k = 0; k < W; ++k) {
        avail[k] = static_cast<int>(std::clamp<index_t>(length[k] - c0, 0, n));
        const index_t top = last[k] - c0;
        const index_t ahead = std::clamp<index_t>(length[k] - c0 - C, 0, C);
        for (index_t j = 0; j < ahead; j += 64 / sizeof(T)) {
          for (int i = 0; i < NI; ++i) prefetch(kernel.in[i] + top - C - j);
          if constexpr (Kernel::has_mask) prefetch(kernel.mask + top - C - j);
        }
        for (int i = 0; i < NI; ++i) {
          const T* src = kernel.in[i];
          for (int j = 0; j < avail[k]; ++j) x[i][j][k] = src[top - j];
          for (int j = avail[k]; j < n; ++j) x[i][j][k] = T(0);
        }
        if constexpr (Kernel::has_mask) {
          for (int j = 0; j < avail[k]; ++j) m[j][k] = kernel.mask[top - j];
        } else {
          for (int j = 0; j < avail[k]; ++j) m[j][k] = 1.0f;
        }
        for (int j = avail[k]; j < n; ++j) m[j][k] = 0.0f;
      }
      // Scan: one token of every lane per step; the carried states stay in registers.
      for (int j = 0; j < n; ++j) {
        for (int q = 0; q < Q; ++q) {
          std::array<L, NI> xj;
          for (int i = 0; i < NI; ++i) xj[i] = load_lanes(x[i][j], q * V);
          std::array<L, NO> yj;
          kernel.step(xj, load_lanes(m[j], q * V), c[q], state[q], yj);
          for (int o = 0; o < NO; ++o) store_lanes(y[o][j], q * V, yj[o]);
        }
      }
      // Write back every lane's tokens of this tile (the inputs of the tile were read first, so
      // an output may alias an input index for index).
      for (int k = 0; k < W; ++k) {
        const index_t top = last[k] - c0;
        for (int o = 0; o < NO; ++o) {
          T* dst = kernel.out[o];
          for (int j = 0; j < avail[k]; ++j) dst[top - j] = y[o][j][k];
        }
      }
    }
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
