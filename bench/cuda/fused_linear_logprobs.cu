// CUDA fused linear + log-prob benchmarks at the performance.md §7.2 shape: hidden [N, H] =
// [16384, 4096] and lm_head [V, H] = [128256, 4096], bf16, fp32 accumulation, on the device.
//   fll_forward            logprob + lse + entropy                          2·N·H·V FLOP
//   fll_forward_backward   forward outputs + d_hidden + d_weight, one sweep  6·N·H·V FLOP
//   fll_backward           backward alone (recomputes the logits)           6·N·H·V FLOP
//                          (forward + backward = 8·N·H·V, the CCE / Liger "full" count)
//   cublas_gemm_*          the raw cuBLAS bf16 GEMMs of one chunk, repeated N / chunk times: the
//                          ceiling of the fused path in this binary (logits Z = X·Wᵀ into bf16,
//                          dH = dZ·W into bf16, dW += dZᵀ·X into fp32)
// Arg: the chunk size (tokens per chunk). Counters: TFLOPs (rate, the FLOP count above),
// GB_ideal (operand bytes: W and X read once per GEMM pass, dW/dH written, the chunk logits written
// and read by the token kernels) and ws_MB (workspace). Timed with CUDA events (UseManualTime).
// Without a device every benchmark reports an error and returns.
#include <benchmark/benchmark.h>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>

#include "posttrain/backend/cuda/fused_linear_logprobs.cuh"
#include "posttrain/cuda.cuh"
#include "posttrain/ops/fused_linear_logprobs.hpp"

namespace bench_cuda_fused_linear_logprobs {

namespace pt = posttrain;
namespace ptc = posttrain::backend::cuda;
using pt::index_t;
using bf16 = Eigen::bfloat16;

constexpr index_t N = 16384, H = 4096, V = 128256;

__global__ void fill_bf16(__nv_bfloat16* x, std::size_t n, float scale, std::uint32_t seed) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    std::uint32_t h = static_cast<std::uint32_t>(i * 2654435761u) ^ seed;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    x[i] = __float2bfloat16_rn((static_cast<float>(h & 0xffffu) / 65535.0f - 0.5f) * scale);
  }
}

__global__ void fill_targets(index_t* t, float* g, index_t n, index_t v) {
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x) {
    std::uint32_t h = static_cast<std::uint32_t>(i) * 2654435761u;
    h ^= h >> 13;
    t[i] = static_cast<index_t>(h % static_cast<std::uint32_t>(v));
    g[i] = -1.0f / static_cast<float>(n);
  }
}

struct setup {
  cudaStream_t s = nullptr;
  ptc::cublas_handle blas;
  ptc::device_buffer<bf16> x, w, dh;
  ptc::device_buffer<float> dw, lp, lse, ent, g;
  ptc::device_buffer<index_t> t;
  setup() {
    ptc::cuda_check(cudaStreamCreate(&s), "cudaStreamCreate");
    x = ptc::device_buffer<bf16>(static_cast<std::size_t>(N * H), s);
    w = ptc::device_buffer<bf16>(static_cast<std::size_t>(V * H), s);
    dh = ptc::device_buffer<bf16>(static_cast<std::size_t>(N * H), s);
    dw = ptc::device_buffer<float>(static_cast<std::size_t>(V * H), s);
    lp = ptc::device_buffer<float>(static_cast<std::size_t>(N), s);
    lse = ptc::device_buffer<float>(static_cast<std::size_t>(N), s);
    ent = ptc::device_buffer<float>(static_cast<std::size_t>(N), s);
    g = ptc::device_buffer<float>(static_cast<std::size_t>(N), s);
    t = ptc::device_buffer<index_t>(static_cast<std::size_t>(N), s);
    // |x·w| stays O(10): x ~ U(-2, 2), w ~ U(-0.05, 0.05), H = 4096.
    fill_bf16<<<1024, 256, 0, s>>>(reinterpret_cast<__nv_bfloat16*>(x.data()), x.size(), 4.0f,
                                   0x9e3779b9u);
    fill_bf16<<<1024, 256, 0, s>>>(reinterpret_cast<__nv_bfloat16*>(w.data()), w.size(), 0.1f,
                                   0x85ebca6bu);
    fill_targets<<<64, 256, 0, s>>>(t.data(), g.data(), N, V);
    ptc::cuda_check(cudaGetLastError(), "fill kernels");
    ptc::cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  }
  ~setup() {
    x.reset();
    w.reset();
    dh.reset();
    dw.reset();
    lp.reset();
    lse.reset();
    ent.reset();
    g.reset();
    t.reset();
    (void)cudaStreamSynchronize(s);
    (void)cudaStreamDestroy(s);
  }
  pt::matrix_view<const bf16> xv() const { return {x.data(), N, H}; }
  pt::matrix_view<const bf16> wv() const { return {w.data(), V, H}; }
  std::span<const index_t> tv() const { return {t.data(), static_cast<std::size_t>(N)}; }
};

// Times `once` with CUDA events per iteration.
template <class F>
void timed(benchmark::State& state, cudaStream_t s, F&& once) {
  cudaEvent_t e0, e1;
  ptc::cuda_check(cudaEventCreate(&e0), "cudaEventCreate");
  ptc::cuda_check(cudaEventCreate(&e1), "cudaEventCreate");
  once();  // warm-up
  for (auto _ : state) {
    ptc::cuda_check(cudaEventRecord(e0, s), "cudaEventRecord");
    once();
    ptc::cuda_check(cudaEventRecord(e1, s), "cudaEventRecord");
    ptc::cuda_check(cudaEventSynchronize(e1), "cudaEventSynchronize");
    float ms = 0.0f;
    ptc::cuda_check(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
    state.SetIterationTime(static_cast<double>(ms) * 1e-3);
  }
  (void)cudaEventDestroy(e0);
  (void)cudaEventDestroy(e1);
}

void counters(benchmark::State& state, double flops, double bytes, std::size_t ws) {
  state.counters["TFLOPs"] = benchmark::Counter(flops * 1e-12 * double(state.iterations()),
                                                benchmark::Counter::kIsRate);
  state.counters["GB_ideal"] = bytes * 1e-9;
  state.counters["ws_MB"] = static_cast<double>(ws) * 1e-6;
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes * double(state.iterations())));
}

bool have_device(benchmark::State& state) {
  std::string reason;
  if (ptc::cuda_device_available(&reason)) return true;
  state.SkipWithError(("no CUDA device available: " + reason).c_str());
  return false;
}

enum class pass { forward, forward_backward, backward };

template <pass P>
void fll(benchmark::State& state) {
  if (!have_device(state)) return;
  setup su;
  pt::fused_linear_logprobs_options opt;
  opt.chunk_size = state.range(0);
  opt.blas_handle = su.blas.get();
  const pt::exec::cuda ex{su.s};
  const auto which = P == pass::forward            ? pt::fused_linear_pass::forward
                     : P == pass::forward_backward ? pt::fused_linear_pass::forward_backward
                                                   : pt::fused_linear_pass::backward;
  std::size_t bytes = pt::fused_linear_logprobs_workspace_bytes<bf16>(ex, N, H, V, which, opt);
  ptc::device_buffer<std::byte> ws(bytes, su.s);
  const pt::token_logprobs_outputs<float> out{su.lp.span(), su.lse.span(), su.ent.span()};
  const pt::matrix_view<bf16> dh{su.dh.data(), N, H};
  const pt::matrix_view<float> dw{su.dw.data(), V, H};
  const std::span<const float> g(su.g.span());
  // The backward needs the forward's lse.
  pt::fused_linear_logprobs(ex, ws.data(), bytes, su.xv(), su.wv(), su.tv(), out, opt);
  timed(state, su.s, [&] {
    if constexpr (P == pass::forward)
      pt::fused_linear_logprobs(ex, ws.data(), bytes, su.xv(), su.wv(), su.tv(), out, opt);
    else if constexpr (P == pass::forward_backward)
      pt::fused_linear_logprobs_forward_backward(ex, ws.data(), bytes, su.xv(), su.wv(), su.tv(),
                                                 g, {}, out, dh, dw, opt);
    else
      pt::fused_linear_logprobs_backward(
          ex, ws.data(), bytes, su.xv(), su.wv(), su.tv(),
          pt::token_logprobs_grads<float>{su.lse.span(), {}, g, {}}, dh, dw, opt);
  });
  const double nhv = double(N) * double(H) * double(V);
  const double c = double(pt::detail::fused_linear_chunk(N, H, V, opt.chunk_size));
  const double chunks = std::ceil(double(N) / c);
  const double wb = double(V) * H * 2, xb = double(N) * H * 2, zb = double(N) * V * 2;
  double flops = 0, io = 0;
  if constexpr (P == pass::forward) {
    flops = 2 * nhv;
    io = chunks * wb + xb + 2 * zb;  // W per chunk, X, logits written + read
  } else {
    flops = 6 * nhv;
    // 3 GEMM passes over W / X, dW (fp32) read + written per chunk, dH written, logits w + r/w.
    io = 3 * chunks * wb + 3 * xb + chunks * 2 * (double(V) * H * 4) + xb + 3 * zb;
  }
  counters(state, flops, io, bytes);
}

void fll_forward(benchmark::State& s) { fll<pass::forward>(s); }
void fll_forward_backward(benchmark::State& s) { fll<pass::forward_backward>(s); }
void fll_backward(benchmark::State& s) { fll<pass::backward>(s); }

// Raw cuBLAS GEMMs of one chunk (c tokens), repeated N / c times.
enum class gemm_kind { logits, d_hidden, d_weight };

template <gemm_kind K>
void cublas_gemm(benchmark::State& state) {
  if (!have_device(state)) return;
  setup su;
  const index_t c = state.range(0);
  ptc::device_buffer<bf16> z(static_cast<std::size_t>(c * V), su.s);
  ptc::cuda_check(cudaMemsetAsync(z.data(), 0, z.size() * sizeof(bf16), su.s), "memset");
  cublasHandle_t h = su.blas.get();
  ptc::cublas_check(cublasSetStream(h, su.s), "cublasSetStream");
  const float one = 1.0f, zero = 0.0f;
  const auto* x = su.x.data();
  const auto* w = su.w.data();
  timed(state, su.s, [&] {
    for (index_t r0 = 0; r0 < N; r0 += c) {
      const int rows = static_cast<int>(std::min(c, N - r0));
      cublasStatus_t st;
      if constexpr (K == gemm_kind::logits)
        st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(V), rows, int(H), &one, w, CUDA_R_16BF,
                          int(H), x + r0 * H, CUDA_R_16BF, int(H), &zero, z.data(), CUDA_R_16BF,
                          int(V), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      else if constexpr (K == gemm_kind::d_hidden)
        st = cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, int(H), rows, int(V), &one, w, CUDA_R_16BF,
                          int(H), z.data(), CUDA_R_16BF, int(V), &zero, su.dh.data() + r0 * H,
                          CUDA_R_16BF, int(H), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      else
        st = cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, int(H), int(V), rows, &one, x + r0 * H,
                          CUDA_R_16BF, int(H), z.data(), CUDA_R_16BF, int(V), &one, su.dw.data(),
                          CUDA_R_32F, int(H), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      ptc::cublas_check(st, "cublasGemmEx");
    }
  });
  const double nhv = double(N) * double(H) * double(V);
  counters(state, 2 * nhv, double(V) * H * 2 + double(N) * H * 2 + double(N) * V * 2,
           z.size() * sizeof(bf16));
}

void cublas_gemm_logits(benchmark::State& s) { cublas_gemm<gemm_kind::logits>(s); }
void cublas_gemm_d_hidden(benchmark::State& s) { cublas_gemm<gemm_kind::d_hidden>(s); }
void cublas_gemm_d_weight(benchmark::State& s) { cublas_gemm<gemm_kind::d_weight>(s); }

// Chunks: 512 (the automatic rule at this shape: Liger's), 2048, 8192.
#define POSTTRAIN_FLL_ARGS                                                                         \
  ->Arg(512)->Arg(2048)->Arg(8192)->UseManualTime()->Unit(benchmark::kMillisecond)
BENCHMARK(fll_forward) POSTTRAIN_FLL_ARGS;
BENCHMARK(fll_forward_backward) POSTTRAIN_FLL_ARGS;
BENCHMARK(fll_backward) POSTTRAIN_FLL_ARGS;
BENCHMARK(cublas_gemm_logits) POSTTRAIN_FLL_ARGS;
BENCHMARK(cublas_gemm_d_hidden) POSTTRAIN_FLL_ARGS;
BENCHMARK(cublas_gemm_d_weight) POSTTRAIN_FLL_ARGS;
#undef POSTTRAIN_FLL_ARGS

}  // namespace bench_cuda_fused_linear_logprobs
