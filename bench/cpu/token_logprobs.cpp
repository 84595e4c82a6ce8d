// Google Benchmark: token log-prob (+ entropy) forward and backward from materialised logits.
// Shapes N x V with V = 32000 (N = 256) and V = 128256 (N = 64), which stay in the last-level
// cache, and (forward) N = 2048, V = 128256, which streams from DRAM; float and bfloat16 logits,
// 1 and 2 threads. Counters: bytes_per_second = logits bytes read (forward) or read + written
// (backward), items_per_second = tokens/s, Gelem/s = N·V / s (compare with
// shared/reference/performance.md §1 and §7.1: CPU floor 3.45 Gelem/s bf16 fused 1-pass on 2 cores).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include <Eigen/Core>

#include "posttrain/ops/token_logprobs.hpp"

namespace bench_token_logprobs {

using posttrain::index_t;

template <class T>
struct problem {
  index_t n, v;
  std::vector<T> logits;
  std::vector<index_t> targets;
  std::vector<float> logprob, lse, entropy, d_logprob, d_entropy;
  std::vector<T> d_logits;

  problem(index_t rows, index_t cols, bool with_grad) : n(rows), v(cols) {
    logits.resize(static_cast<std::size_t>(n * v));
    // Irwin-Hall(4) approximation of N(0, 3^2) from a 64-bit LCG: fast enough for 1 GB of logits.
    std::uint64_t state = 42;
    auto uniform = [&] {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      return static_cast<float>(state >> 40) * (1.0f / 16777216.0f);
    };
    for (auto& x : logits)
      x = T(3.0f * 1.7320508f * (uniform() + uniform() + uniform() + uniform() - 2.0f));
    std::mt19937 gen(42);
    std::uniform_int_distribution<index_t> pick(0, v - 1);
    targets.resize(static_cast<std::size_t>(n));
    for (auto& y : targets) y = pick(gen);
    logprob.assign(static_cast<std::size_t>(n), 0.0f);
    lse = entropy = logprob;
    d_logprob.assign(static_cast<std::size_t>(n), 1.0f / static_cast<float>(n));
    d_entropy.assign(static_cast<std::size_t>(n), -0.01f / static_cast<float>(n));
    if (with_grad) d_logits.resize(logits.size());
  }
  posttrain::matrix_view<const T> view() const { return {logits.data(), n, v}; }
};

void set_counters(benchmark::State& state, index_t n, index_t v, std::size_t bytes_per_elem) {
  const auto iters = static_cast<double>(state.iterations());
  const double elems = static_cast<double>(n) * static_cast<double>(v);
  state.SetItemsProcessed(static_cast<std::int64_t>(iters * static_cast<double>(n)));
  state.SetBytesProcessed(static_cast<std::int64_t>(iters * elems * static_cast<double>(bytes_per_elem)));
  state.counters["Gelem/s"] = benchmark::Counter(iters * elems * 1e-9, benchmark::Counter::kIsRate);
}

// args: N, V, threads
template <class T>
void forward(benchmark::State& state) {
  problem<T> p(state.range(0), state.range(1), false);
  posttrain::token_logprobs_options opt;
  opt.num_threads = static_cast<int>(state.range(2));
  const posttrain::token_logprobs_outputs<float> out{p.logprob, p.lse, p.entropy};
  for (auto _ : state) {
    posttrain::token_logprobs(posttrain::exec::host{}, p.view(), p.targets, out, opt);
    benchmark::DoNotOptimize(p.logprob.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, p.n, p.v, sizeof(T));
}

// Backward of logprob + entropy into a separate d_logits of the same dtype (1 read + 1 write).
template <class T>
void backward(benchmark::State& state) {
  problem<T> p(state.range(0), state.range(1), true);
  posttrain::token_logprobs_options opt;
  opt.num_threads = static_cast<int>(state.range(2));
  posttrain::token_logprobs(posttrain::exec::host{}, p.view(), p.targets,
                            posttrain::token_logprobs_outputs<float>{p.logprob, p.lse, p.entropy},
                            opt);
  const posttrain::token_logprobs_grads<float> in{p.lse, p.entropy, p.d_logprob, p.d_entropy};
  const posttrain::matrix_view<T> g(p.d_logits.data(), p.n, p.v);
  for (auto _ : state) {
    posttrain::token_logprobs_backward(posttrain::exec::host{}, p.view(), p.targets, in, g, opt);
    benchmark::DoNotOptimize(p.d_logits.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, p.n, p.v, 2 * sizeof(T));
}

void common(benchmark::internal::Benchmark* b) {
  // With --benchmark_repetitions, the "min" row's time is the number to read on a shared machine.
  b->ArgNames({"N", "V", "threads"})
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime()
      ->ComputeStatistics("min", [](const std::vector<double>& v) {
        return *std::min_element(v.begin(), v.end());
      });
}

// Cache-resident shapes (16-33 MB of logits) for forward and backward.
void shapes(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2}) {
    b->Args({256, 32000, threads});
    b->Args({64, 128256, threads});
  }
  common(b);
}

// Forward only, plus the DRAM-scale shape of performance.md a10 (N = 2048, V = 128256: 0.5 GB
// of bf16, 1 GB of f32 logits).
void forward_shapes(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2}) {
    b->Args({256, 32000, threads});
    b->Args({64, 128256, threads});
    b->Args({2048, 128256, threads});
  }
  common(b);
}

BENCHMARK(forward<float>)->Name("token_logprobs_fwd/f32")->Apply(forward_shapes);
BENCHMARK(forward<Eigen::bfloat16>)->Name("token_logprobs_fwd/bf16")->Apply(forward_shapes);
BENCHMARK(backward<float>)->Name("token_logprobs_bwd/f32")->Apply(shapes);
BENCHMARK(backward<Eigen::bfloat16>)->Name("token_logprobs_bwd/bf16")->Apply(shapes);

}  // namespace bench_token_logprobs
