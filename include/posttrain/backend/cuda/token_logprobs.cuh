#pragma once
// CUDA backend of ops/token_logprobs.hpp: per-token log-probabilities, log-sum-exp, entropy and
// Σ p² from materialised logits on the device, their gradient, and a fused forward + backward.
// Formulas: see ops/token_logprobs.hpp (z = logits / τ, lse, logprob = z_y − lse, entropy,
// Σ p², dL/dlogits = (1/τ)(g_lp (1[v = y] − p) − g_H p (log p + H))).
//
// Including this header specialises backend::token_logprobs_backend<exec::cuda>, so
//   token_logprobs(exec::cuda{stream}, logits, targets, outputs, options)
//   token_logprobs_backward(exec::cuda{stream}, logits, targets, grads, d_logits, options)
// run here. Every pointer (logits, targets, outputs, grads) is DEVICE memory. Front-end types:
// float, double, Eigen::bfloat16 and Eigen::half (bit-identical to __nv_bfloat16 and __half,
// reinterpreted here). The raw entry points backend::cuda::token_logprobs_{forward,backward,fused}
// below take __half and __nv_bfloat16 directly.
//
//   token_logprobs_fused(exec::cuda{stream}, logits_inout, targets, d_logprob, outputs, options)
// (the front end of ops/token_logprobs.hpp, which also has a host version) computes the forward
// outputs and overwrites the logits with dL/dlogits for a per-token gradient d_logprob known up
// front (SFT: −1/N per token). No entropy gradient.
//
// Kernels (one row of logits per CTA; rows loop over a grid-stride):
//   forward  each thread walks its share of the row with 16-byte loads (8 bf16 / 4 float /
//            2 double), UNROLL vectors in flight; per vector one max, at most one rescale, and per
//            element one exp2 (ex2.approx for float accumulation) into a thread-local state
//            (m, s, t, s2) kept in base-2 units relative to the running raw max m; the states are
//            turned into math::softmax_stats (natural units) and merged with its associative
//            combine: warp butterfly shuffles, then one warp over the per-warp states in shared
//            memory (fixed order: deterministic). The target's logit is one extra scalar load.
//            Traffic: 1 read of the logits.
//   backward one read of the logits and one write of the gradient, elementwise (in place is safe:
//            each element is read and written by the same thread; the target's column is compared
//            by index, never re-read).
//   fused    the forward's pass, a block broadcast of lse, then the backward's pass over the same
//            row written in place: DRAM traffic 1 read + 1 write when the row is still in L2 for
//            the second read. Persistent CTAs loop over rows; their number comes from the real
//            L2 size and the kernel's occupancy (fused_grid below: 2 rows of L2 per CTA, within
//            half of L2); a row too large for that costs 2 reads + 1 write (Liger's traffic).
// Ignored rows (target == ignore_index) are never read: forward outputs 0, gradient 0. A target
// outside [0, V) that is not ignore_index cannot be reported from the device without a host round
// trip: the row's outputs are NaN (and its gradient row NaN) instead.
// NaN logits give NaN statistics. −inf logits contribute nothing (like the CPU backend).
// Small N (N < 2 × SMs, V >= 16384): the forward splits each row over several CTAs (pieces of
// >= 8192 elements, ~2 CTAs per SM in all), each writing a partial math::softmax_stats to
// scratch, and a second tiny kernel combines them in index order. That scratch follows CUB's
// two-phase contract (token_logprobs_forward(d_temp, temp_bytes, ...), sized by
// token_logprobs_forward_scratch); the form without d_temp, which the exec::cuda backend runs,
// allocates it stream-ordered (cudaMallocAsync / cudaFreeAsync on the stream). The backward needs
// no reduction and keeps one CTA per row; the fused kernel keeps one CTA per row (a split would
// need a grid-wide barrier between statistics and gradient). Entry points never synchronise the
// host, never copy scalars, launch on the given stream and report launch errors through
// cuda_check(cudaGetLastError()).
#if !defined(__CUDACC__)
#error "<posttrain/backend/cuda/token_logprobs.cuh> is compiled by nvcc only"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>

#include "posttrain/backend/cuda/error.cuh"
#include "posttrain/backend/cuda/memory.cuh"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/views.hpp"
#include "posttrain/math/logsumexp.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/ops/token_logprobs_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cuda {

namespace token_logprobs_detail {

inline constexpr int max_threads = 1024;
inline constexpr int unroll = 4;  // 16-byte vectors in flight per thread

// Host element type -> device element type.
template <class T>
struct device_type {
  using type = T;
};
template <>
struct device_type<Eigen::bfloat16> {
  using type = __nv_bfloat16;
};
template <>
struct device_type<Eigen::half> {
  using type = __half;
};
template <class T>
using device_t = typename device_type<T>::type;

template <class D>
using device_accum_t = std::conditional_t<std::is_same_v<D, double>, double, float>;

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }

template <class G, class A>
__device__ __forceinline__ G from_acc(A x) {
  if constexpr (std::is_same_v<G, __nv_bfloat16>)
    return __float2bfloat16_rn(static_cast<float>(x));
  else if constexpr (std::is_same_v<G, __half>)
    return __float2half_rn(static_cast<float>(x));
  else
    return static_cast<G>(x);
}

// 2^x: one MUFU op for float (max rel. error ~2^-22; ftz: results below 2^-126 flush to 0),
// the exact libm exp2 for double.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ double fast_exp2(double x) { return ::exp2(x); }

template <class A>
struct log2e_c;
template <>
struct log2e_c<float> {
  static constexpr float log2e = 1.44269504088896340736f, ln2 = 0.693147180559945309417f;
  static constexpr float floor_d = -126.0f;
};
template <>
struct log2e_c<double> {
  static constexpr double log2e = 1.44269504088896340736, ln2 = 0.693147180559945309417;
  static constexpr double floor_d = -1022.0;
};

__device__ __forceinline__ float max_ignoring_nan(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double max_ignoring_nan(double a, double b) { return fmax(a, b); }

// 16-byte vector of D.
template <class D>
inline constexpr int vec_width = 16 / static_cast<int>(sizeof(D));
template <class D>
struct alignas(16) vec16 {
  D v[vec_width<D>];
};

// VEC outputs of G, aligned to min(16, their size) bytes.
template <class G, int N>
struct alignas(N * sizeof(G) >= 16 ? 16 : N * sizeof(G)) out_vec {
  G v[N];
};

// Thread-local softmax state in base-2 units relative to the raw (un-tempered) max m:
// d = (x − m)·scale with scale = log2(e)/τ; s = Σ 2^d, t = Σ 2^d·d, s2 = Σ 4^d.
template <class A, bool Full>
struct thread_state {
  A m = -std::numeric_limits<A>::infinity();
  A s = A(0), t = A(0), s2 = A(0);

  template <int N>
  __device__ __forceinline__ void push(const A (&x)[N], A scale) {
    using C = log2e_c<A>;
    A vmax = x[0];
#pragma unroll
    for (int k = 1; k < N; ++k) vmax = max_ignoring_nan(vmax, x[k]);  // one FMNMX each
    // A NaN element is ignored by the max but makes its exp, and so s, NaN below.
    if (vmax > m) {
      if (s != A(0)) {
        const A delta = (m - vmax) * scale;
        const A f = fast_exp2(delta);
        if constexpr (Full) {
          t = f * (t + delta * s);
          s2 = f * f * s2;
        }
        s = f * s;
      }
      m = vmax;
    }
    if (!(m > -std::numeric_limits<A>::infinity())) {
      // Nothing finite seen yet (m = −inf) or already poisoned (m = NaN): −inf adds nothing, a
      // NaN poisons the state (m = s = NaN). Rare path: the start of all −inf rows only.
#pragma unroll
      for (int k = 0; k < N; ++k)
        if (x[k] != x[k] || m != m) m = s = t = s2 = std::numeric_limits<A>::quiet_NaN();
      return;
    }
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const A d = (x[k] - m) * scale;
      const A e = fast_exp2(d);
      s += e;
      if constexpr (Full) {
        t += e * (d > C::floor_d ? d : C::floor_d);
        s2 += e * e;
      }
    }
  }

  // The natural-units state of math/logsumexp.hpp.
  __device__ __forceinline__ math::softmax_stats<A> to_stats(A inv_tau) const {
    math::softmax_stats<A> r;
    if (s == A(0)) return r;
    r.m = m * inv_tau;
    r.s = s;
    r.t = Full ? t * log2e_c<A>::ln2 : A(0);
    r.s2 = Full ? s2 : A(0);
    return r;
  }
};

// Accumulates this thread's share of row[0, n) (scalar head to 16-byte alignment, vector body,
// scalar tail).
template <class D, class A, bool Full>
__device__ __forceinline__ void accumulate_row(const D* __restrict__ row, index_t n, A scale,
                                               thread_state<A, Full>& st) {
  constexpr int W = vec_width<D>;
  const int tid = threadIdx.x, nt = blockDim.x;
  const auto addr = reinterpret_cast<std::uintptr_t>(row);
  const index_t mis = static_cast<index_t>((addr % 16) / sizeof(D));
  index_t head = mis == 0 ? 0 : (W - mis);
  if (addr % sizeof(D) != 0) head = n;  // not even element-aligned: all scalar
  head = head < n ? head : n;
  const index_t nvec = (n - head) / W;
  const index_t tail0 = head + nvec * W;
  for (index_t i = tid; i < head; i += nt) {
    const A x[1] = {to_acc(row[i])};
    st.push(x, scale);
  }
  const vec16<D>* body = reinterpret_cast<const vec16<D>*>(row + head);
  index_t k = tid;
  for (; k + index_t(unroll - 1) * nt < nvec; k += index_t(unroll) * nt) {
    vec16<D> buf[unroll];
#pragma unroll
    for (int u = 0; u < unroll; ++u) buf[u] = body[k + index_t(u) * nt];
#pragma unroll
    for (int u = 0; u < unroll; ++u) {
      A x[W];
#pragma unroll
      for (int j = 0; j < W; ++j) x[j] = to_acc(buf[u].v[j]);
      st.push(x, scale);
    }
  }
  for (; k < nvec; k += nt) {
    const vec16<D> b = body[k];
    A x[W];
#pragma unroll
    for (int j = 0; j < W; ++j) x[j] = to_acc(b.v[j]);
    st.push(x, scale);
  }
  for (index_t i = tail0 + tid; i < n; i += nt) {
    const A x[1] = {to_acc(row[i])};
    st.push(x, scale);
  }
}

template <class A>
__device__ __forceinline__ math::softmax_stats<A> shfl_xor(const math::softmax_stats<A>& a,
                                                          int mask) {
  math::softmax_stats<A> r;
  r.m = __shfl_xor_sync(0xffffffffu, a.m, mask);
  r.s = __shfl_xor_sync(0xffffffffu, a.s, mask);
  r.t = __shfl_xor_sync(0xffffffffu, a.t, mask);
  r.s2 = __shfl_xor_sync(0xffffffffu, a.s2, mask);
  return r;
}

// Block-wide combine; every thread gets the row's state. `scratch` holds 33 states. The butterfly
// gives every lane the same value (combine is commutative up to rounding only, so the result is
// taken from a fixed lane order: lane 0's value is broadcast).
template <class A>
__device__ __forceinline__ math::softmax_stats<A> block_combine(math::softmax_stats<A> st,
                                                               math::softmax_stats<A>* scratch) {
  using S = math::softmax_stats<A>;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) st = S::combine(st, shfl_xor(st, off));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = (blockDim.x + 31) / 32;
  if (lane == 0) scratch[warp] = st;
  __syncthreads();
  if (warp == 0) {
    S w = lane < nw ? scratch[lane] : S{};
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) w = S::combine(w, shfl_xor(w, off));
    if (lane == 0) scratch[32] = w;
  }
  __syncthreads();
  const S r = scratch[32];
  __syncthreads();  // scratch is reused by the next row
  return r;
}

// log p_y = (z_y − m) − log s, the CPU backend's order (backend/cpu/token_logprobs.hpp). The
// other order, z_y − (m + log s), rounds m + log s to the precision of the logits first: a float
// row whose target is the argmax at 1e4 next to a 9990 has log s = 4.54e-5, below half an ulp of
// 1e4 (4.9e-4), so lse rounds to 1e4 and log p_y to 0 instead of −4.54e-5. With z_y − m exact
// (0 at the argmax) only log s's own rounding remains. (An all −inf row gives NaN, as on the
// CPU: z_y − m = −inf − (−inf).)
// Host and device (tests/cuda/token_logprobs.cu checks the order on the host).
template <class A>
POSTTRAIN_HOST_DEVICE POSTTRAIN_FORCEINLINE A logprob_from_stats(A zy,
                                                                const math::softmax_stats<A>& st) {
  using std::log;
  return (zy - st.m) - log(st.s);
}

// Forward of one row by the whole block; returns (in every thread) the row's lse (natural units;
// NaN for a bad target, 0 for an ignored row) and writes the per-row outputs from thread 0.
template <class D, class A, bool Full>
__device__ __forceinline__ A forward_row(const D* __restrict__ row, index_t v, index_t y,
                                         bool ignored, A scale, A inv_tau, index_t r,
                                         A* __restrict__ logprob, A* __restrict__ lse,
                                         A* __restrict__ entropy, A* __restrict__ sum_p_squared,
                                         math::softmax_stats<A>* scratch, A* entropy_out) {
  if (ignored) {
    if (threadIdx.x == 0) {
      logprob[r] = A(0);
      if (lse) lse[r] = A(0);
      if (entropy) entropy[r] = A(0);
      if (sum_p_squared) sum_p_squared[r] = A(0);
    }
    *entropy_out = A(0);
    return A(0);
  }
  const bool bad = y < 0 || y >= v;
  // The target's logit is loaded before the barriers of block_combine (the fused kernel
  // overwrites the row right after them).
  A zy = A(0);
  if (threadIdx.x == 0 && !bad) zy = to_acc(row[y]) * inv_tau;
  thread_state<A, Full> ts;
  accumulate_row<D, A, Full>(row, v, scale, ts);
  const math::softmax_stats<A> st = block_combine(ts.to_stats(inv_tau), scratch);
  const A nan = std::numeric_limits<A>::quiet_NaN();
  const A l = bad ? nan : st.lse();
  const A h = bad ? nan : st.entropy();
  if (threadIdx.x == 0) {
    logprob[r] = bad ? nan : logprob_from_stats(zy, st);
    if (lse) lse[r] = l;
    if (entropy) entropy[r] = h;
    if (sum_p_squared) sum_p_squared[r] = bad ? nan : st.sum_p_squared();
  }
  *entropy_out = h;
  return l;
}

template <class D, class A, bool Full>
__global__ void __launch_bounds__(max_threads, 1)
    forward_kernel(const D* __restrict__ logits, index_t n, index_t v, index_t ld,
                   const index_t* __restrict__ targets, A scale, A inv_tau, index_t ignore_index,
                   A* __restrict__ logprob, A* __restrict__ lse, A* __restrict__ entropy,
                   A* __restrict__ sum_p_squared) {
  __shared__ math::softmax_stats<A> scratch[33];
  for (index_t r = blockIdx.x; r < n; r += gridDim.x) {
    const index_t y = targets[r];
    A h;
    (void)forward_row<D, A, Full>(logits + r * ld, v, y, y == ignore_index, scale, inv_tau, r,
                                  logprob, lse, entropy, sum_p_squared, scratch, &h);
  }
}

// Split rows (small N): CTA (r, c) reduces columns [c·chunk, min(V, (c + 1)·chunk)) of row r
// into partial[r · splits + c] (chunk is a multiple of the vector width, so every piece keeps
// the row's alignment); split_finish_kernel combines the pieces of each row in index order.
template <class D, class A, bool Full>
__global__ void __launch_bounds__(max_threads, 1)
    split_partial_kernel(const D* __restrict__ logits, index_t n, index_t v, index_t ld,
                         const index_t* __restrict__ targets, A scale, A inv_tau,
                         index_t ignore_index, index_t chunk, int splits,
                         math::softmax_stats<A>* __restrict__ partial) {
  __shared__ math::softmax_stats<A> scratch[33];
  const index_t r = blockIdx.x;
  if (r >= n || targets[r] == ignore_index) return;  // uniform over the block
  const index_t c0 = index_t(blockIdx.y) * chunk;
  const index_t len = c0 < v ? (v - c0 < chunk ? v - c0 : chunk) : 0;
  thread_state<A, Full> ts;
  accumulate_row<D, A, Full>(logits + r * ld + c0, len, scale, ts);
  const math::softmax_stats<A> st = block_combine(ts.to_stats(inv_tau), scratch);
  if (threadIdx.x == 0) partial[r * splits + blockIdx.y] = st;
}

template <class D, class A>
__global__ void split_finish_kernel(const D* __restrict__ logits, index_t n, index_t v,
                                    index_t ld, const index_t* __restrict__ targets, A inv_tau,
                                    index_t ignore_index, int splits,
                                    const math::softmax_stats<A>* __restrict__ partial,
                                    A* __restrict__ logprob, A* __restrict__ lse,
                                    A* __restrict__ entropy, A* __restrict__ sum_p_squared) {
  const index_t r = index_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= n) return;
  const index_t y = targets[r];
  if (y == ignore_index) {
    logprob[r] = A(0);
    if (lse) lse[r] = A(0);
    if (entropy) entropy[r] = A(0);
    if (sum_p_squared) sum_p_squared[r] = A(0);
    return;
  }
  math::softmax_stats<A> st = partial[r * splits];
  for (int c = 1; c < splits; ++c) st = math::softmax_stats<A>::combine(st, partial[r * splits + c]);
  const bool bad = y < 0 || y >= v;
  const A nan = std::numeric_limits<A>::quiet_NaN();
  const A l = bad ? nan : st.lse();
  logprob[r] = bad ? nan : logprob_from_stats(to_acc(logits[r * ld + y]) * inv_tau, st);
  if (lse) lse[r] = l;
  if (entropy) entropy[r] = bad ? nan : st.entropy();
  if (sum_p_squared) sum_p_squared[r] = bad ? nan : st.sum_p_squared();
}

// Gradient of one row by the whole block (in may equal out).
template <class D, class G, class A, bool WithEntropy>
__device__ __forceinline__ void gradient_row(const D* in, G* out, index_t v, index_t y, A inv_tau,
                                             A l, A g_lp, A g_h, A h) {
  constexpr int W = vec_width<D>;
  using C = log2e_c<A>;
  const int tid = threadIdx.x, nt = blockDim.x;
  const A c_lp = g_lp * inv_tau, c_h = g_h * inv_tau;
  auto grad = [&](A x, index_t col) -> A {
    // log p, clamped above at 0 as on the CPU (rounding can push z − lse a hair above 0); a NaN
    // (bad target: l = NaN) stays NaN.
    A lp = x * inv_tau - l;
    lp = lp > A(0) ? A(0) : lp;
    const A p = fast_exp2(lp * C::log2e);
    A g = (col == y ? c_lp : A(0)) - c_lp * p;
    if constexpr (WithEntropy) g -= c_h * p * (lp + h);
    return g;
  };
  const auto a_in = reinterpret_cast<std::uintptr_t>(in);
  const index_t mis = static_cast<index_t>((a_in % 16) / sizeof(D));
  index_t head = mis == 0 ? 0 : (W - mis);
  if (a_in % sizeof(D) != 0) head = v;
  head = head < v ? head : v;
  const index_t nvec = (v - head) / W;
  const index_t tail0 = head + nvec * W;
  using OV = out_vec<G, W>;
  const bool out_vec_ok = reinterpret_cast<std::uintptr_t>(out + head) % alignof(OV) == 0;
  for (index_t i = tid; i < head; i += nt) out[i] = from_acc<G>(grad(to_acc(in[i]), i));
  const vec16<D>* body = reinterpret_cast<const vec16<D>*>(in + head);
  for (index_t k = tid; k < nvec; k += nt) {
    const vec16<D> b = body[k];
    const index_t c0 = head + k * W;
    OV o;
#pragma unroll
    for (int j = 0; j < W; ++j) o.v[j] = from_acc<G>(grad(to_acc(b.v[j]), c0 + j));
    if (out_vec_ok) {
      reinterpret_cast<OV*>(out + head)[k] = o;
    } else {
#pragma unroll
      for (int j = 0; j < W; ++j) out[c0 + j] = o.v[j];
    }
  }
  for (index_t i = tail0 + tid; i < v; i += nt) out[i] = from_acc<G>(grad(to_acc(in[i]), i));
}

template <class G>
__device__ __forceinline__ void zero_row(G* out, index_t v) {
  for (index_t i = threadIdx.x; i < v; i += blockDim.x) out[i] = from_acc<G>(0.0f);
}

template <class D, class G, class A, bool WithEntropy>
__global__ void __launch_bounds__(max_threads, 1)
    backward_kernel(const D* logits, index_t n, index_t v, index_t ld,
                    const index_t* __restrict__ targets, A inv_tau, index_t ignore_index,
                    const A* __restrict__ lse, const A* __restrict__ entropy,
                    const A* __restrict__ d_logprob, const A* __restrict__ d_entropy, G* d_logits,
                    index_t ld_out) {
  for (index_t r = blockIdx.x; r < n; r += gridDim.x) {
    const index_t y = targets[r];
    G* out = d_logits + r * ld_out;
    if (y == ignore_index) {
      zero_row(out, v);
      continue;
    }
    const bool bad = y < 0 || y >= v;
    const A l = bad ? std::numeric_limits<A>::quiet_NaN() : lse[r];
    gradient_row<D, G, A, WithEntropy>(logits + r * ld, out, v, y, inv_tau, l, d_logprob[r],
                                       WithEntropy ? d_entropy[r] : A(0),
                                       WithEntropy ? entropy[r] : A(0));
  }
}

template <class D, class A, bool Full>
__global__ void __launch_bounds__(max_threads, 1)
    fused_kernel(D* logits, index_t n, index_t v, index_t ld, const index_t* __restrict__ targets,
                 const A* __restrict__ d_logprob, A scale, A inv_tau, index_t ignore_index,
                 A* __restrict__ logprob, A* __restrict__ lse, A* __restrict__ entropy,
                 A* __restrict__ sum_p_squared) {
  __shared__ math::softmax_stats<A> scratch[33];
  for (index_t r = blockIdx.x; r < n; r += gridDim.x) {
    const index_t y = targets[r];
    D* row = logits + r * ld;
    const bool ignored = y == ignore_index;
    A h;
    const A l = forward_row<D, A, Full>(row, v, y, ignored, scale, inv_tau, r, logprob, lse,
                                        entropy, sum_p_squared, scratch, &h);
    // Every thread has read its row elements and thread 0 the target's logit before the
    // block_combine barriers, so the row may now be overwritten.
    if (ignored) {
      zero_row(row, v);
    } else {
      gradient_row<D, D, A, false>(row, row, v, y, inv_tau, l, d_logprob[r], A(0), A(0));
    }
    __syncthreads();
  }
}

// Threads per CTA for a row of v elements of D: enough for ~4 vectors per thread, 64..1024.
template <class D>
inline int threads_for(index_t v) {
  const index_t vecs = (v + vec_width<D> - 1) / vec_width<D>;
  index_t t = 64;
  while (t < max_threads && t * 4 < vecs) t *= 2;
  return static_cast<int>(t);
}

struct device_info {
  int sms = 132;
  int l2_bytes = 50 << 20;
};

// Pieces per row for the forward: 1 when N >= 2 × SMs; otherwise enough pieces for ~2 CTAs per
// SM, each at least min_piece elements.
template <class D>
inline int forward_splits(index_t n, index_t v, int sms) {
  constexpr index_t min_piece = 8192;
  if (n >= 2 * index_t(sms)) return 1;
  const index_t want = (2 * index_t(sms) + n - 1) / n;
  const index_t most = v / min_piece;
  const index_t s = want < most ? want : most;
  return static_cast<int>(s < 1 ? 1 : (s > 256 ? 256 : s));
}

inline device_info query_device() {
  device_info d;
  int dev = 0;
  cuda_check(cudaGetDevice(&dev), "token_logprobs (cudaGetDevice)");
  cuda_check(cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, dev),
             "token_logprobs (cudaDeviceGetAttribute)");
  cuda_check(cudaDeviceGetAttribute(&d.l2_bytes, cudaDevAttrL2CacheSize, dev),
             "token_logprobs (cudaDeviceGetAttribute)");
  return d;
}

// CTAs of `kernel` at `threads` threads that one SM holds at once (registers, shared memory and
// the thread limit all counted by the runtime; __launch_bounds__(1024, 1) kernels may get 1).
template <class Kernel>
inline int resident_ctas_per_sm(Kernel kernel, int threads) {
  int blocks = 0;
  cuda_check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, 0),
             "token_logprobs (cudaOccupancyMaxActiveBlocksPerMultiprocessor)");
  return blocks < 1 ? 1 : blocks;
}

// Grid of the fused kernel (persistent CTAs, one row at a time each, grid-stride over rows).
// Its second read of a row (the gradient pass) is served by L2 only while every row between its
// two reads is still there. Per CTA, L2 then holds the row being worked on (read, then
// overwritten in place: the same lines, now dirty) and the previous row's dirty lines, which
// leave L2 only when evicted (write-back): 2 rows per CTA in flight. Those must fit in half of
// L2 (the other half absorbs the 2-partition split of Hopper's L2, the targets / per-token
// outputs, and the imperfect LRU):
//   l2_ctas = floor(L2 / 2 / (2 · row bytes)),   resident = SMs × occupancy (runtime query)
//   grid    = min(N, resident, l2_ctas)   when l2_ctas >= SMs / 4
//           = min(N, resident)            otherwise
// No floor at the SM count: when fewer rows than SMs fit (bf16 V = 128256: 256 KB rows, 50 MB
// L2 -> 51 CTAs on an H100) the grid is smaller than the machine rather than spilling. One
// 1024-thread CTA keeps 64 KB of loads in flight (4 × 16 B per thread), ~90 GB/s at ~0.7 µs
// DRAM latency, so 33 CTAs (SMs / 4) reach ~3 TB/s: below that, fitting in L2 (1 read + 1 write
// at < 2/3 of the bandwidth) loses to spilling with every SM busy (2 reads + 1 write at full
// bandwidth). Expected DRAM traffic: 1 read + 1 write of the logits (bf16: 4 B per element)
// when l2_ctas >= SMs / 4 (bf16 rows up to V ≈ 200k on an H100, float up to ≈ 100k); otherwise
// 2 reads + 1 write (Liger's traffic). bench/cuda/token_logprobs.cu measures it (bytes/s of
// 1 read + 1 write).
inline unsigned fused_grid(index_t n, index_t v, std::size_t elem_bytes, const device_info& info,
                           int resident_per_sm) {
  const double row_bytes = static_cast<double>(v) * static_cast<double>(elem_bytes);
  const double budget = 0.5 * static_cast<double>(info.l2_bytes);
  const index_t l2_ctas = static_cast<index_t>(budget / std::max(1.0, 2.0 * row_bytes));
  const index_t resident = static_cast<index_t>(info.sms) * resident_per_sm;
  index_t g = std::min(n, resident);
  if (4 * l2_ctas >= static_cast<index_t>(info.sms)) g = std::min(g, l2_ctas);
  return static_cast<unsigned>(g < 1 ? 1 : g);
}

// Rows per grid: one CTA per row up to a cap (a grid-stride loop covers the rest).
inline unsigned grid_for(index_t n) {
  const index_t cap = index_t(1) << 20;
  return static_cast<unsigned>(n < cap ? n : cap);
}

template <class D, class A>
void forward_into(const D* logits, index_t n, index_t v, index_t ld, const index_t* targets,
                  double temperature, index_t ignore_index, A* logprob, A* lse, A* entropy,
                  A* sum_p_squared, cudaStream_t stream, int splits, workspace& ws) {
  const A inv_tau = static_cast<A>(1.0 / temperature);
  const A scale = static_cast<A>(1.4426950408889634 / temperature);
  const bool full = entropy != nullptr || sum_p_squared != nullptr;
  if (splits > 1) {
    // Small N: split each row over `splits` CTAs; the partial states live in ws.
    constexpr index_t w = vec_width<D>;
    const index_t chunk = ((v + splits - 1) / splits + w - 1) / w * w;
    const int threads = threads_for<D>(chunk);
    math::softmax_stats<A>* partial =
        ws.take<math::softmax_stats<A>>(static_cast<std::size_t>(n) * splits, "token_logprobs")
            .data();
    const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(splits));
    if (full)
      split_partial_kernel<D, A, true><<<grid, threads, 0, stream>>>(
          logits, n, v, ld, targets, scale, inv_tau, ignore_index, chunk, splits, partial);
    else
      split_partial_kernel<D, A, false><<<grid, threads, 0, stream>>>(
          logits, n, v, ld, targets, scale, inv_tau, ignore_index, chunk, splits, partial);
    cuda_check(cudaGetLastError(), "token_logprobs (split forward kernel launch)");
    split_finish_kernel<D, A><<<static_cast<unsigned>((n + 127) / 128), 128, 0, stream>>>(
        logits, n, v, ld, targets, inv_tau, ignore_index, splits, partial, logprob, lse, entropy,
        sum_p_squared);
    cuda_check(cudaGetLastError(), "token_logprobs (split finish kernel launch)");
    return;
  }
  const int threads = threads_for<D>(v);
  const unsigned grid = grid_for(n);
  if (full)
    forward_kernel<D, A, true><<<grid, threads, 0, stream>>>(logits, n, v, ld, targets, scale,
                                                             inv_tau, ignore_index, logprob, lse,
                                                             entropy, sum_p_squared);
  else
    forward_kernel<D, A, false><<<grid, threads, 0, stream>>>(logits, n, v, ld, targets, scale,
                                                              inv_tau, ignore_index, logprob, lse,
                                                              entropy, sum_p_squared);
  cuda_check(cudaGetLastError(), "token_logprobs (forward kernel launch)");
}

}  // namespace token_logprobs_detail

// Scratch of token_logprobs_forward for N rows of V logits of D on a device with
// `multiprocessors` SMs: the split partials (N × splits softmax states) when N < 2 × SMs splits
// each row over several CTAs, nothing otherwise.
template <class D, class A>
workspace_size token_logprobs_forward_scratch(index_t n, index_t v, int multiprocessors) {
  workspace_size size;
  if (n <= 0) return size;
  const int splits = token_logprobs_detail::forward_splits<D>(n, v, multiprocessors);
  if (splits > 1)
    size.add<math::softmax_stats<A>>(static_cast<std::size_t>(n) *
                                     static_cast<std::size_t>(splits));
  return size;
}

// Raw forward on device pointers. D: float, double, __nv_bfloat16 or __half; A = float (double
// for double). lse / entropy / sum_p_squared may be null (skipped). temperature > 0. Two-phase:
// d_temp == nullptr sets temp_bytes (token_logprobs_forward_scratch, at least 1) and returns;
// too small throws posttrain::error before any launch. The split depends on the SM count:
// multiprocessors = 0 reads the current device's (cudaDeviceGetAttribute: no launch, no
// synchronisation; the one CUDA call of the size query); give the same value to both calls.
template <class D, class A>
void token_logprobs_forward(void* d_temp, std::size_t& temp_bytes, const D* logits, index_t n,
                            index_t v, index_t ld, const index_t* targets, double temperature,
                            index_t ignore_index, A* logprob, A* lse, A* entropy, A* sum_p_squared,
                            cudaStream_t stream, int multiprocessors = 0) {
  namespace d = token_logprobs_detail;
  static_assert(std::is_same_v<A, d::device_accum_t<D>>,
                "token_logprobs_forward: outputs must be float (double for double logits)");
  const int sms = n > 0 && multiprocessors <= 0 ? d::query_device().sms : multiprocessors;
  two_phase(d_temp, temp_bytes, token_logprobs_forward_scratch<D, A>(n, v, sms),
            "token_logprobs_forward", [&](workspace& ws) {
              if (n > 0)
                d::forward_into(logits, n, v, ld, targets, temperature, ignore_index, logprob, lse,
                                entropy, sum_p_squared, stream, d::forward_splits<D>(n, v, sms),
                                ws);
            });
}

// The same with the split partials allocated stream-ordered for the call (cudaMallocAsync /
// cudaFreeAsync on `stream`; nothing is allocated when rows are not split).
template <class D, class A>
void token_logprobs_forward(const D* logits, index_t n, index_t v, index_t ld,
                            const index_t* targets, double temperature, index_t ignore_index,
                            A* logprob, A* lse, A* entropy, A* sum_p_squared, cudaStream_t stream) {
  namespace d = token_logprobs_detail;
  static_assert(std::is_same_v<A, d::device_accum_t<D>>,
                "token_logprobs_forward: outputs must be float (double for double logits)");
  if (n <= 0) return;
  const int sms = d::query_device().sms;
  with_stream_scratch(token_logprobs_forward_scratch<D, A>(n, v, sms), stream, [&](workspace& ws) {
    d::forward_into(logits, n, v, ld, targets, temperature, ignore_index, logprob, lse, entropy,
                    sum_p_squared, stream, d::forward_splits<D>(n, v, sms), ws);
  });
}

// Raw backward. d_entropy (and then entropy) may be null; d_logits may equal logits (same ld).
template <class D, class G, class A>
void token_logprobs_backward(const D* logits, index_t n, index_t v, index_t ld,
                             const index_t* targets, double temperature, index_t ignore_index,
                             const A* lse, const A* entropy, const A* d_logprob,
                             const A* d_entropy, G* d_logits, index_t ld_out,
                             cudaStream_t stream) {
  namespace d = token_logprobs_detail;
  static_assert(std::is_same_v<A, d::device_accum_t<D>>, "token_logprobs_backward: per-token "
                "inputs must be float (double for double logits)");
  if (n <= 0 || v <= 0) return;
  const A inv_tau = static_cast<A>(1.0 / temperature);
  const int threads = d::threads_for<D>(v);
  const unsigned grid = d::grid_for(n);
  if (d_entropy != nullptr)
    d::backward_kernel<D, G, A, true><<<grid, threads, 0, stream>>>(
        logits, n, v, ld, targets, inv_tau, ignore_index, lse, entropy, d_logprob, d_entropy,
        d_logits, ld_out);
  else
    d::backward_kernel<D, G, A, false><<<grid, threads, 0, stream>>>(
        logits, n, v, ld, targets, inv_tau, ignore_index, lse, entropy, d_logprob, d_entropy,
        d_logits, ld_out);
  cuda_check(cudaGetLastError(), "token_logprobs_backward (kernel launch)");
}

// Raw fused forward + backward: writes the forward outputs, then dL/dlogits over the logits.
template <class D, class A>
void token_logprobs_fused(D* logits, index_t n, index_t v, index_t ld, const index_t* targets,
                          const A* d_logprob, double temperature, index_t ignore_index,
                          A* logprob, A* lse, A* entropy, A* sum_p_squared, cudaStream_t stream) {
  namespace d = token_logprobs_detail;
  static_assert(std::is_same_v<A, d::device_accum_t<D>>, "token_logprobs_fused: outputs must be "
                "float (double for double logits)");
  if (n <= 0) return;
  const A inv_tau = static_cast<A>(1.0 / temperature);
  const A scale = static_cast<A>(1.4426950408889634 / temperature);
  const int threads = d::threads_for<D>(v);
  const bool full = entropy != nullptr || sum_p_squared != nullptr;
  const auto kernel = full ? d::fused_kernel<D, A, true> : d::fused_kernel<D, A, false>;
  const unsigned grid = d::fused_grid(n, v, sizeof(D), d::query_device(),
                                      d::resident_ctas_per_sm(kernel, threads));
  kernel<<<grid, threads, 0, stream>>>(logits, n, v, ld, targets, d_logprob, scale, inv_tau,
                                       ignore_index, logprob, lse, entropy, sum_p_squared);
  cuda_check(cudaGetLastError(), "token_logprobs_fused (kernel launch)");
}

}  // namespace backend::cuda

// The family backend for exec::cuda (device memory; contract in ops/token_logprobs_types.hpp).
template <>
struct backend::token_logprobs_backend<exec::cuda> {
  template <class T, class A>
  static void forward(exec::cuda exec, matrix_view<const T> logits,
                      std::span<const index_t> targets, const token_logprobs_outputs<A>& out,
                      const token_logprobs_options& opt) {
    using D = backend::cuda::token_logprobs_detail::device_t<T>;
    auto ptr = [](std::span<A> s) { return s.empty() ? nullptr : s.data(); };
    backend::cuda::token_logprobs_forward<D, A>(
        reinterpret_cast<const D*>(logits.data), logits.rows, logits.cols, logits.ld,
        targets.data(), opt.temperature, opt.ignore_index, out.logprob.data(), ptr(out.lse),
        ptr(out.entropy), ptr(out.sum_p_squared), exec.stream);
  }
  template <class T, class G, class A>
  static void backward(exec::cuda exec, matrix_view<const T> logits,
                       std::span<const index_t> targets, const token_logprobs_grads<A>& in,
                       matrix_view<G> d_logits, const token_logprobs_options& opt) {
    using D = backend::cuda::token_logprobs_detail::device_t<T>;
    using DG = backend::cuda::token_logprobs_detail::device_t<G>;
    const bool with_h = !in.d_entropy.empty();
    backend::cuda::token_logprobs_backward<D, DG, A>(
        reinterpret_cast<const D*>(logits.data), logits.rows, logits.cols, logits.ld,
        targets.data(), opt.temperature, opt.ignore_index, in.lse.data(),
        with_h ? in.entropy.data() : nullptr, in.d_logprob.data(),
        with_h ? in.d_entropy.data() : nullptr, reinterpret_cast<DG*>(d_logits.data),
        d_logits.ld, exec.stream);
  }
  // Fused forward + backward in place (the front end is token_logprobs_fused in
  // ops/token_logprobs.hpp): 1 read + 1 write of the logits when the row stays in L2.
  // The fused kernel never splits a row: no scratch on the device.
  template <class T, class A>
  static std::size_t fused_workspace_bytes(exec::cuda, index_t, index_t, bool,
                                           const token_logprobs_options&) {
    return 0;
  }
  template <class T, class A>
  static void fused(exec::cuda exec, matrix_view<T> logits, std::span<const index_t> targets,
                    std::span<const A> d_logprob, const token_logprobs_outputs<A>& out,
                    const token_logprobs_options& opt, workspace /*ws*/) {
    using D = backend::cuda::token_logprobs_detail::device_t<T>;
    auto ptr = [](std::span<A> s) { return s.empty() ? nullptr : s.data(); };
    backend::cuda::token_logprobs_fused<D, A>(
        reinterpret_cast<D*>(logits.data), logits.rows, logits.cols, logits.ld, targets.data(),
        d_logprob.data(), opt.temperature, opt.ignore_index, out.logprob.data(), ptr(out.lse),
        ptr(out.entropy), ptr(out.sum_p_squared), exec.stream);
  }
};

POSTTRAIN_NAMESPACE_END
