#pragma once
// CUDA backend of ops/fused_linear_logprobs.hpp: cuBLAS GEMMs per chunk of tokens and the CUDA
// token log-prob kernels (backend/cuda/token_logprobs.cuh) on the chunk's logits.
//
// Including this header specialises backend::fused_linear_logprobs_backend<exec::cuda>, so
//   fused_linear_logprobs(exec::cuda{stream}, workspace, workspace_bytes, hidden, weight, ...)
//   fused_linear_logprobs_backward(...), fused_linear_logprobs_forward_backward(...)
// run here. Every view and span (hidden, weight, targets, outputs, grads, d_hidden, d_weight, the
// workspace) is DEVICE memory; options.blas_handle is the caller's cublasHandle_t (null allowed
// for N = 0). The call puts the handle on exec.stream and in host pointer mode, changing only
// what differs: cublasSetStream resets a workspace installed with cublasSetWorkspace, so a caller
// who needs its own cuBLAS workspace (CUDA graph capture does) binds the handle to exec.stream
// first, then sets the workspace; it is kept. backend::cuda::cublas_handle below is a small owning
// wrapper for callers without one. No allocation happens inside these calls (see the caveat on
// small chunks below), no host synchronisation, no host round trip.
//
// Per chunk of c tokens, row-major operands seen by column-major cuBLAS as their transposes:
//   Z  [c, V]  = X_c · Wᵀ      cublasGemmEx(T, N, V, c, H; W, X_c) into the workspace, in T
//   forward    token_logprobs_forward on Z (fp32 statistics from the T logits)
//   backward   Z recomputed, token_logprobs_backward written over Z in place (dZ, in T), then
//              dH_c [c, H] = dZ · W       cublasGemmEx(N, N, H, c, V; W, dZ)  into d_hidden (T or A)
//              dW  [V, H] += dZᵀ · X_c    cublasGemmEx(N, T, H, V, c; X_c, dZ) into d_weight (A),
//              beta = 0 on the first chunk unless options.accumulate_d_weight
//   forward_backward   Z, token_logprobs_fused over Z in place (no entropy gradient; with one,
//              the forward then the backward kernel), then the two gradient GEMMs: 6·N·H·V FLOP.
// GEMMs take T operands (bf16 / half / float / double) and accumulate in fp32 (fp64 for double;
// CUBLAS_COMPUTE_32F, no TF32). The chunk's logits and their gradient are stored in T, as
// Liger-Kernel's fused linear cross-entropy does: for bf16 operands the log-softmax sees logits
// rounded to bf16 (the host backend keeps them in float).
// Workspace: c·V·sizeof(T) (+ 2·c·sizeof(A) for forward_backward), 256-byte aligned pieces.
// Caveat: when c < 2 × the SM count and V >= 16384 the token forward splits rows over CTAs and
// takes a small stream-ordered scratch buffer (cudaMallocAsync; see token_logprobs.cuh); choose
// c >= 2 × SMs for an allocation-free hot path.
// Targets are not range-checked on the device (a bad target gives NaN rows, as in token_logprobs).
#if !defined(__CUDACC__)
#error "<posttrain/backend/cuda/fused_linear_logprobs.cuh> is compiled by nvcc only"
#endif

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <Eigen/Core>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "posttrain/backend/cuda/error.cuh"
#include "posttrain/backend/cuda/token_logprobs.cuh"
#include "posttrain/config.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/views.hpp"
#include "posttrain/ops/fused_linear_logprobs_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cuda {

inline void cublas_check(cublasStatus_t status, std::string_view where) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw error("posttrain::" + std::string(where) + ": cuBLAS error " +
              cublasGetStatusName(status) + ": " + cublasGetStatusString(status));
}

// An owning cublasHandle_t (created on the current device; move-only).
class cublas_handle {
 public:
  cublas_handle() { cublas_check(cublasCreate(&h_), "cublas_handle (cublasCreate)"); }
  cublas_handle(const cublas_handle&) = delete;
  cublas_handle& operator=(const cublas_handle&) = delete;
  cublas_handle(cublas_handle&& o) noexcept : h_(o.h_) { o.h_ = nullptr; }
  cublas_handle& operator=(cublas_handle&& o) noexcept {
    if (this != &o) {
      if (h_) (void)cublasDestroy(h_);
      h_ = o.h_;
      o.h_ = nullptr;
    }
    return *this;
  }
  ~cublas_handle() {
    if (h_) (void)cublasDestroy(h_);
  }
  cublasHandle_t get() const noexcept { return h_; }
  operator cublasHandle_t() const noexcept { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

namespace fused_linear_detail {

inline constexpr std::size_t alignment = 256;
constexpr std::size_t aligned(std::size_t b) { return (b + alignment - 1) / alignment * alignment; }

// cuBLAS storage type, compute type and alpha/beta scalar of an element type D.
template <cudaDataType_t Data, cublasComputeType_t Compute, class Scalar>
struct blas_type_info {
  static constexpr cudaDataType_t data = Data;
  static constexpr cublasComputeType_t compute = Compute;
  using scalar = Scalar;
};

template <class D>
struct blas_types;
template <>
struct blas_types<float> : blas_type_info<CUDA_R_32F, CUBLAS_COMPUTE_32F, float> {};
template <>
struct blas_types<double> : blas_type_info<CUDA_R_64F, CUBLAS_COMPUTE_64F, double> {};
template <>
struct blas_types<__nv_bfloat16> : blas_type_info<CUDA_R_16BF, CUBLAS_COMPUTE_32F, float> {};
template <>
struct blas_types<__half> : blas_type_info<CUDA_R_16F, CUBLAS_COMPUTE_32F, float> {};

template <class D>
constexpr std::size_t workspace_bytes(index_t c, index_t v, fused_linear_pass pass) {
  using A = token_logprobs_detail::device_accum_t<D>;
  const auto uc = static_cast<std::size_t>(c);
  std::size_t at = aligned(uc * static_cast<std::size_t>(v) * sizeof(D));
  if (pass == fused_linear_pass::forward_backward) at += aligned(2 * uc * sizeof(A));
  return at + alignment;  // the caller's pointer may be misaligned; never 0
}

inline int as_int(index_t x, const char* what) {
  if (x > INT_MAX)
    throw error(std::string("posttrain::fused_linear_logprobs: ") + what +
                " exceeds INT_MAX, the largest extent cublasGemmEx takes");
  return static_cast<int>(x);
}

// C = alpha·op(A)·op(B) + beta·C, column-major, D operands, C of type Cout.
template <class D, class Cout>
void gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, index_t m, index_t n,
          index_t k, const D* a, index_t lda, const D* b, index_t ldb, bool accumulate, Cout* c,
          index_t ldc) {
  using B = blas_types<D>;
  using S = typename B::scalar;
  const S alpha = S(1), beta = accumulate ? S(1) : S(0);
  cublas_check(cublasGemmEx(h, ta, tb, as_int(m, "a GEMM extent"), as_int(n, "a GEMM extent"),
                            as_int(k, "a GEMM extent"), &alpha, a, B::data,
                            as_int(lda, "a leading dimension"), b, B::data,
                            as_int(ldb, "a leading dimension"), &beta, c,
                            blas_types<Cout>::data, as_int(ldc, "a leading dimension"),
                            B::compute, CUBLAS_GEMM_DEFAULT),
               "fused_linear_logprobs (cublasGemmEx)");
}

// Puts the handle on `stream` with host pointer mode, changing only what differs. cublasSetStream
// unconditionally resets the handle's workspace to cuBLAS's default pool (cuBLAS documentation,
// cublasSetStream), discarding a workspace the caller installed with cublasSetWorkspace, which
// CUDA graph capture needs (cuBLAS must not allocate while a stream is captured). A caller who
// binds the handle to exec.stream and installs a workspace keeps it across these calls; a handle
// on another stream is moved to exec.stream (and its workspace reset, cuBLAS's rule).
inline void bind_handle(cublasHandle_t h, cudaStream_t stream) {
  cudaStream_t current = nullptr;
  cublas_check(cublasGetStream(h, &current), "fused_linear_logprobs (cublasGetStream)");
  if (current != stream)
    cublas_check(cublasSetStream(h, stream), "fused_linear_logprobs (cublasSetStream)");
  cublasPointerMode_t mode = CUBLAS_POINTER_MODE_HOST;
  cublas_check(cublasGetPointerMode(h, &mode), "fused_linear_logprobs (cublasGetPointerMode)");
  if (mode != CUBLAS_POINTER_MODE_HOST)
    cublas_check(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST),
                 "fused_linear_logprobs (cublasSetPointerMode)");
}

template <class A>
A* at(std::span<A> s, index_t r0) {
  return s.empty() ? nullptr : s.data() + r0;
}
template <class A>
const A* at(std::span<const A> s, index_t r0) {
  return s.empty() ? nullptr : s.data() + r0;
}

// The state of one call: handle on the stream, operands as device types, the workspace pieces.
template <class T>
struct call {
  using D = token_logprobs_detail::device_t<T>;
  using A = accum_t<T>;
  cublasHandle_t h;
  cudaStream_t stream;
  const D* x;
  const D* w;
  index_t n, hs, v, ldx, ldw, c;
  D* z;
  A* stats;

  call(exec::cuda e, std::span<std::byte> ws, matrix_view<const T> hidden,
       matrix_view<const T> weight, index_t chunk, const fused_linear_logprobs_options& o)
      : h(static_cast<cublasHandle_t>(o.blas_handle)),
        stream(e.stream),
        x(reinterpret_cast<const D*>(hidden.data)),
        w(reinterpret_cast<const D*>(weight.data)),
        n(hidden.rows),
        hs(hidden.cols),
        v(weight.rows),
        ldx(hidden.ld),
        ldw(weight.ld),
        c(chunk) {
    auto base = reinterpret_cast<std::uintptr_t>(ws.data());
    base = (base + alignment - 1) / alignment * alignment;
    z = reinterpret_cast<D*>(base);
    stats = reinterpret_cast<A*>(base +
                                 aligned(static_cast<std::size_t>(c * v) * sizeof(D)));
    // N = 0 issues no GEMM: the handle (null is allowed then, see the front end) is not touched.
    if (n > 0) bind_handle(h, stream);
  }

  // Z [rows, V] (ld V) = X[r0 : r0 + rows] · Wᵀ.
  void logits(index_t r0, index_t rows) const {
    gemm<D, D>(h, CUBLAS_OP_T, CUBLAS_OP_N, v, rows, hs, w, ldw, x + r0 * ldx, ldx, false, z, v);
  }

  // dH rows and dW from dZ (in z).
  template <class G>
  void weight_grads(index_t r0, index_t rows, matrix_view<G> d_hidden, matrix_view<A> d_weight,
                    bool accumulate_w) const {
    using DG = token_logprobs_detail::device_t<G>;
    if (!d_hidden.empty())
      gemm<D, DG>(h, CUBLAS_OP_N, CUBLAS_OP_N, hs, rows, v, w, ldw, z, v, false,
                  reinterpret_cast<DG*>(d_hidden.data) + r0 * d_hidden.ld, d_hidden.ld);
    if (!d_weight.empty())
      gemm<D, A>(h, CUBLAS_OP_N, CUBLAS_OP_T, hs, v, rows, x + r0 * ldx, ldx, z, v, accumulate_w,
                 d_weight.data, d_weight.ld);
  }

  // d_weight = 0 when nothing will be written to it (N = 0) and it is not accumulated.
  void zero_weight_if_no_chunks(matrix_view<A> d_weight, bool accumulate) const {
    if (n == 0 && !accumulate && !d_weight.empty())
      cuda_check(cudaMemset2DAsync(d_weight.data, static_cast<std::size_t>(d_weight.ld) * sizeof(A),
                                   0, static_cast<std::size_t>(d_weight.cols) * sizeof(A),
                                   static_cast<std::size_t>(d_weight.rows), stream),
                 "fused_linear_logprobs_backward (cudaMemset2DAsync)");
  }
};

}  // namespace fused_linear_detail

}  // namespace backend::cuda

template <>
struct backend::fused_linear_logprobs_backend<exec::cuda> {
  template <class T>
  static std::size_t workspace_bytes(index_t chunk, index_t /*h*/, index_t v,
                                     fused_linear_pass pass) {
    using D = backend::cuda::token_logprobs_detail::device_t<T>;
    return backend::cuda::fused_linear_detail::workspace_bytes<D>(chunk, v, pass);
  }

  template <class T, class A>
  static void forward(exec::cuda e, std::span<std::byte> ws, matrix_view<const T> hidden,
                      matrix_view<const T> weight, std::span<const index_t> targets,
                      const token_logprobs_outputs<A>& out, index_t chunk,
                      const fused_linear_logprobs_options& o) {
    namespace f = backend::cuda::fused_linear_detail;
    using D = backend::cuda::token_logprobs_detail::device_t<T>;
    const f::call<T> k(e, ws, hidden, weight, chunk, o);
    for (index_t r0 = 0; r0 < k.n; r0 += chunk) {
      const index_t rows = std::min(chunk, k.n - r0);
      k.logits(r0, rows);
      backend::cuda::token_logprobs_forward<D, A>(
          k.z, rows, k.v, k.v, targets.data() + r0, o.temperature, o.ignore_index,
          out.logprob.data() + r0, f::at(out.lse, r0), f::at(out.entropy, r0),
          f::at(out.sum_p_squared, r0), e.stream);
    }
  }

  template <class T, class G, class A>
  static void backward(exec::cuda e, std::span<std::byte> ws, matrix_view<const T> hidden,
                       matrix_view<const T> weight, std::span<const index_t> targets,
                       const token_logprobs_grads<A>& in, matrix_view<G> d_hidden,
                       matrix_view<A> d_weight, index_t chunk,
                       const fused_linear_logprobs_options& o) {
    namespace f = backend::cuda::fused_linear_detail;
    using D = backend::cuda::token_logprobs_detail::device_t<T>;
    const f::call<T> k(e, ws, hidden, weight, chunk, o);
    k.zero_weight_if_no_chunks(d_weight, o.accumulate_d_weight);
    const bool with_h = !in.d_entropy.empty();
    for (index_t r0 = 0; r0 < k.n; r0 += chunk) {
      const index_t rows = std::min(chunk, k.n - r0);
      k.logits(r0, rows);
      backend::cuda::token_logprobs_backward<D, D, A>(
          k.z, rows, k.v, k.v, targets.data() + r0, o.temperature, o.ignore_index,
          in.lse.data() + r0, with_h ? in.entropy.data() + r0 : nullptr, in.d_logprob.data() + r0,
          with_h ? in.d_entropy.data() + r0 : nullptr, k.z, k.v, e.stream);
      k.weight_grads(r0, rows, d_hidden, d_weight, o.accumulate_d_weight || r0 > 0);
    }
  }

  template <class T, class G, class A>
  static void forward_backward(exec::cuda e, std::span<std::byte> ws, matrix_view<const T> hidden,
                               matrix_view<const T> weight, std::span<const index_t> targets,
                               std::span<const A> d_logprob, std::span<const A> d_entropy,
                               const token_logprobs_outputs<A>& out, matrix_view<G> d_hidden,
                               matrix_view<A> d_weight, index_t chunk,
                               const fused_linear_logprobs_options& o) {
    namespace f = backend::cuda::fused_linear_detail;
    using D = backend::cuda::token_logprobs_detail::device_t<T>;
    const f::call<T> k(e, ws, hidden, weight, chunk, o);
    k.zero_weight_if_no_chunks(d_weight, o.accumulate_d_weight);
    const bool with_h = !d_entropy.empty();
    for (index_t r0 = 0; r0 < k.n; r0 += chunk) {
      const index_t rows = std::min(chunk, k.n - r0);
      const index_t* t = targets.data() + r0;
      k.logits(r0, rows);
      if (!with_h) {
        // One read + one write of the chunk's logits (the row stays on chip / in L2).
        backend::cuda::token_logprobs_fused<D, A>(
            k.z, rows, k.v, k.v, t, d_logprob.data() + r0, o.temperature, o.ignore_index,
            out.logprob.data() + r0, f::at(out.lse, r0), f::at(out.entropy, r0),
            f::at(out.sum_p_squared, r0), e.stream);
      } else {
        A* l = out.lse.empty() ? k.stats : out.lse.data() + r0;
        A* hh = out.entropy.empty() ? k.stats + chunk : out.entropy.data() + r0;
        backend::cuda::token_logprobs_forward<D, A>(k.z, rows, k.v, k.v, t, o.temperature,
                                                    o.ignore_index, out.logprob.data() + r0, l,
                                                    hh, f::at(out.sum_p_squared, r0), e.stream);
        backend::cuda::token_logprobs_backward<D, D, A>(
            k.z, rows, k.v, k.v, t, o.temperature, o.ignore_index, l, hh, d_logprob.data() + r0,
            d_entropy.data() + r0, k.z, k.v, e.stream);
      }
      k.weight_grads(r0, rows, d_hidden, d_weight, o.accumulate_d_weight || r0 > 0);
    }
  }
};

POSTTRAIN_NAMESPACE_END
