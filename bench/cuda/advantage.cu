// CUDA advantage benchmarks through the front ends with exec::cuda (device memory):
//   gae           GAE + returns, B = 512 sequences × T = 4096 tokens (padded layout, float,
//                 mask with ~10% trailing padding), without and with verl whitening
//   grpo          group_advantages (verl preset), G groups of 16 float rewards
//   whiten        batch whitening of N float tokens with a mask (openrlhf_global: asynchronous;
//                 verl: on_degenerate = raise, one stream synchronisation)
//   segment_stats per-sequence mean and unbiased variance, B = 512 × T = 4096
// Timed with CUDA events (UseManualTime) around one call; bytes/s counts the ideal traffic (each
// input read once, each output written once): GAE 12 B/token read (r, V, m) + 8 B/token written;
// whitening 8 B read + 4 B written per token (the implementation reads x and m twice);
// GRPO 4 B read + 4 B written per reward; segment_stats 8 B read per token.
// Without a device every benchmark reports an error and returns.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "posttrain/cuda.cuh"

namespace bench_cuda_advantage {

namespace pt = posttrain;
namespace ptc = posttrain::backend::cuda;
namespace adv = posttrain::advantage;
using pt::index_t;

__device__ __forceinline__ float hash_unit(std::uint64_t i, std::uint32_t salt) {
  std::uint32_t h = static_cast<std::uint32_t>(i * 2654435761u) ^ salt;
  h ^= h >> 15;
  h *= 0x2c1b3c6du;
  h ^= h >> 12;
  return static_cast<float>(h & 0xffffu) / 65535.0f;
}

// x in [-1, 1); mask: sequence b of length T keeps its first 90–100% tokens; offsets i·T.
__global__ void fill_kernel(float* x, float* y, float* m, std::size_t n, index_t t_len) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    x[i] = 2.0f * hash_unit(i, 0x9e3779b9u) - 1.0f;
    if (y) y[i] = 2.0f * hash_unit(i, 0x7f4a7c15u) - 1.0f;
    if (m) {
      const std::size_t b = i / static_cast<std::size_t>(t_len);
      const float keep = 0.9f + 0.1f * hash_unit(b, 0x1234567u);
      m[i] = static_cast<float>(i % static_cast<std::size_t>(t_len)) < keep * float(t_len) ? 1.0f
                                                                                           : 0.0f;
    }
  }
}

__global__ void offsets_kernel(index_t* o, index_t count, index_t step) {
  const index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x;
  if (i <= count) o[i] = i * step;
}

struct device_data {
  cudaStream_t s = nullptr;
  ptc::device_buffer<float> x, y, m, out1, out2;
  ptc::device_buffer<index_t> offsets;
  device_data(index_t segments, index_t per_segment, bool two_inputs, bool mask) {
    ptc::cuda_check(cudaStreamCreate(&s), "cudaStreamCreate");
    const auto n = static_cast<std::size_t>(segments * per_segment);
    x = ptc::device_buffer<float>(n, s);
    if (two_inputs) y = ptc::device_buffer<float>(n, s);
    if (mask) m = ptc::device_buffer<float>(n, s);
    out1 = ptc::device_buffer<float>(n, s);
    out2 = ptc::device_buffer<float>(n, s);
    offsets = ptc::device_buffer<index_t>(static_cast<std::size_t>(segments + 1), s);
    fill_kernel<<<1024, 256, 0, s>>>(x.data(), y.data(), m.data(), n, per_segment);
    offsets_kernel<<<static_cast<unsigned>((segments + 256) / 256), 256, 0, s>>>(
        offsets.data(), segments, per_segment);
    ptc::cuda_check(cudaGetLastError(), "fill");
    ptc::cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  }
  ~device_data() {
    x.reset();
    y.reset();
    m.reset();
    out1.reset();
    out2.reset();
    offsets.reset();
    (void)cudaStreamSynchronize(s);
    (void)cudaStreamDestroy(s);
  }
  std::span<const float> cx() const { return x.span(); }
  std::span<const float> cy() const { return y.span(); }
  std::span<const float> cm() const { return m.span(); }
  std::span<const index_t> co() const { return offsets.span(); }
};

// Times `once` with CUDA events on the data's stream; bytes per call for bytes/s.
template <class Once>
void timed(benchmark::State& state, cudaStream_t s, double bytes, Once&& once) {
  cudaEvent_t e0, e1;
  ptc::cuda_check(cudaEventCreate(&e0), "cudaEventCreate");
  ptc::cuda_check(cudaEventCreate(&e1), "cudaEventCreate");
  once();  // warm-up (also the stream-ordered allocator's pool)
  for (auto _ : state) {
    ptc::cuda_check(cudaEventRecord(e0, s), "cudaEventRecord");
    once();
    ptc::cuda_check(cudaEventRecord(e1, s), "cudaEventRecord");
    ptc::cuda_check(cudaEventSynchronize(e1), "cudaEventSynchronize");
    float ms = 0.0f;
    ptc::cuda_check(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
    state.SetIterationTime(static_cast<double>(ms) * 1e-3);
  }
  state.SetBytesProcessed(
      static_cast<std::int64_t>(bytes * static_cast<double>(state.iterations())));
  state.counters["GB_ideal"] = bytes * 1e-9;
  (void)cudaEventDestroy(e0);
  (void)cudaEventDestroy(e1);
}

bool have_device(benchmark::State& state) {
  std::string reason;
  if (ptc::cuda_device_available(&reason)) return true;
  state.SkipWithError(("no CUDA device available: " + reason).c_str());
  return false;
}

// range(0) = B, range(1) = T, range(2) = whiten (0/1).
void gae(benchmark::State& state) {
  if (!have_device(state)) return;
  const index_t b = state.range(0), t = state.range(1);
  device_data d(b, t, true, true);
  adv::gae_options o = adv::gae_conventions::verl;
  o.whiten = state.range(2) != 0;
  const double n = static_cast<double>(b * t);
  timed(state, d.s, n * 20.0, [&] {
    adv::gae(pt::exec::cuda{d.s}, d.cx(), d.cy(), d.cm(), d.co(), d.out1.span(), d.out2.span(), o);
  });
}

// range(0) = G, range(1) = group size.
void grpo(benchmark::State& state) {
  if (!have_device(state)) return;
  const index_t g = state.range(0), k = state.range(1);
  device_data d(g, k, false, false);
  const double n = static_cast<double>(g * k);
  timed(state, d.s, n * 8.0, [&] {
    adv::group_advantages(pt::exec::cuda{d.s}, d.cx(), d.co(), d.out1.span(),
                          adv::group_conventions::verl);
  });
}

// range(0) = N / 4096 sequences of 4096, range(1) = 0 openrlhf_global, 1 verl.
void whiten(benchmark::State& state) {
  if (!have_device(state)) return;
  const index_t b = state.range(0), t = 4096;
  device_data d(b, t, false, true);
  const pt::whiten_options o =
      state.range(1) ? pt::whiten_conventions::verl : pt::whiten_conventions::openrlhf_global;
  const double n = static_cast<double>(b * t);
  timed(state, d.s, n * 12.0,
        [&] { pt::whiten(pt::exec::cuda{d.s}, d.cx(), d.cm(), d.out1.span(), o); });
}

void segment_stats(benchmark::State& state) {
  if (!have_device(state)) return;
  const index_t b = state.range(0), t = state.range(1);
  device_data d(b, t, false, true);
  ptc::device_buffer<double> mean(static_cast<std::size_t>(b), d.s), var(mean.size(), d.s);
  const double n = static_cast<double>(b * t);
  timed(state, d.s, n * 8.0, [&] {
    pt::segment_stats(pt::exec::cuda{d.s}, d.cx(), d.cm(), d.co(),
                      {.mean = mean.span(), .var_unbiased = var.span()});
  });
  mean.reset();
  var.reset();
}

BENCHMARK(gae)
    ->Args({512, 4096, 0})
    ->Args({512, 4096, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(grpo)
    ->Args({1024, 16})
    ->Args({65536, 16})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(whiten)->Args({512, 0})->Args({512, 1})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(segment_stats)->Args({512, 4096})->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace bench_cuda_advantage
