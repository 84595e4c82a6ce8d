// CUDA token_logprobs benchmarks: bf16 logits [N, V] = [16384, 128256] (4.2 GB) on the device,
// forward (logprob + lse + entropy), backward (in place, with the entropy gradient) and fused
// forward + backward (in place). Timed with CUDA events (UseManualTime); bytes/s counts the
// ideal traffic: forward 1 read, backward and fused 1 read + 1 write of the logits. The small-N
// case (N = 64, N < 2 × SMs) takes the split-row forward (several CTAs per row).
// Without a device every benchmark reports an error and returns.
#include <benchmark/benchmark.h>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "posttrain/backend/cuda/token_logprobs.cuh"
#include "posttrain/cuda.cuh"

namespace bench_cuda_token_logprobs {

namespace pt = posttrain;
namespace ptc = posttrain::backend::cuda;
using pt::index_t;

__global__ void fill_kernel(__nv_bfloat16* x, std::size_t n, index_t* targets, index_t rows,
                            index_t v, float* d_lp) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    std::uint32_t h = static_cast<std::uint32_t>(i * 2654435761u) ^ 0x9e3779b9u;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    x[i] = __float2bfloat16_rn((static_cast<float>(h & 0xffffu) / 65535.0f - 0.5f) * 16.0f);
    if (i < static_cast<std::size_t>(rows)) {
      targets[i] = static_cast<index_t>(h % static_cast<std::uint32_t>(v));
      d_lp[i] = -1.0f / static_cast<float>(rows);
    }
  }
}

struct setup {
  index_t n, v;
  cudaStream_t s = nullptr;
  ptc::device_buffer<__nv_bfloat16> logits;
  ptc::device_buffer<index_t> targets;
  ptc::device_buffer<float> lp, lse, h, g;
  setup(index_t n_, index_t v_) : n(n_), v(v_) {
    ptc::cuda_check(cudaStreamCreate(&s), "cudaStreamCreate");
    logits = ptc::device_buffer<__nv_bfloat16>(static_cast<std::size_t>(n * v), s);
    targets = ptc::device_buffer<index_t>(static_cast<std::size_t>(n), s);
    lp = ptc::device_buffer<float>(static_cast<std::size_t>(n), s);
    lse = ptc::device_buffer<float>(static_cast<std::size_t>(n), s);
    h = ptc::device_buffer<float>(static_cast<std::size_t>(n), s);
    g = ptc::device_buffer<float>(static_cast<std::size_t>(n), s);
    fill_kernel<<<1024, 256, 0, s>>>(logits.data(), logits.size(), targets.data(), n, v,
                                     g.data());
    ptc::cuda_check(cudaGetLastError(), "fill_kernel");
    ptc::cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  }
  ~setup() {
    logits.reset();
    targets.reset();
    lp.reset();
    lse.reset();
    h.reset();
    g.reset();
    (void)cudaStreamSynchronize(s);
    (void)cudaStreamDestroy(s);
  }
};

enum class which { forward, backward, fused };

template <which W>
void run(benchmark::State& state) {
  std::string reason;
  if (!ptc::cuda_device_available(&reason)) {
    state.SkipWithError(("no CUDA device available: " + reason).c_str());
    return;
  }
  const index_t n = state.range(0), v = state.range(1);
  setup su(n, v);
  cudaEvent_t e0, e1;
  ptc::cuda_check(cudaEventCreate(&e0), "cudaEventCreate");
  ptc::cuda_check(cudaEventCreate(&e1), "cudaEventCreate");
  auto once = [&] {
    if constexpr (W == which::forward)
      ptc::token_logprobs_forward<__nv_bfloat16, float>(su.logits.data(), n, v, v,
                                                         su.targets.data(), 1.0, -100,
                                                         su.lp.data(), su.lse.data(),
                                                         su.h.data(), nullptr, su.s);
    else if constexpr (W == which::backward)
      ptc::token_logprobs_backward<__nv_bfloat16, __nv_bfloat16, float>(
          su.logits.data(), n, v, v, su.targets.data(), 1.0, -100, su.lse.data(), su.h.data(),
          su.g.data(), su.g.data(), su.logits.data(), v, su.s);
    else
      ptc::token_logprobs_fused<__nv_bfloat16, float>(su.logits.data(), n, v, v,
                                                       su.targets.data(), su.g.data(), 1.0, -100,
                                                       su.lp.data(), su.lse.data(), su.h.data(),
                                                       nullptr, su.s);
  };
  if constexpr (W == which::backward) {  // a valid lse / entropy for the backward
    ptc::token_logprobs_forward<__nv_bfloat16, float>(su.logits.data(), n, v, v,
                                                       su.targets.data(), 1.0, -100, su.lp.data(),
                                                       su.lse.data(), su.h.data(), nullptr, su.s);
  }
  once();  // warm-up
  for (auto _ : state) {
    ptc::cuda_check(cudaEventRecord(e0, su.s), "cudaEventRecord");
    once();
    ptc::cuda_check(cudaEventRecord(e1, su.s), "cudaEventRecord");
    ptc::cuda_check(cudaEventSynchronize(e1), "cudaEventSynchronize");
    float ms = 0.0f;
    ptc::cuda_check(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
    state.SetIterationTime(static_cast<double>(ms) * 1e-3);
  }
  const double bytes = static_cast<double>(n) * static_cast<double>(v) * 2.0 *
                       (W == which::forward ? 1.0 : 2.0);
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes * static_cast<double>(state.iterations())));
  state.counters["GB_ideal"] = bytes * 1e-9;
  (void)cudaEventDestroy(e0);
  (void)cudaEventDestroy(e1);
}

void forward_bf16(benchmark::State& s) { run<which::forward>(s); }
void backward_bf16(benchmark::State& s) { run<which::backward>(s); }
void fused_bf16(benchmark::State& s) { run<which::fused>(s); }

BENCHMARK(forward_bf16)->Args({16384, 128256})->Args({64, 128256})->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(backward_bf16)->Args({16384, 128256})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(fused_bf16)->Args({16384, 128256})->Args({64, 128256})->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace bench_cuda_token_logprobs
