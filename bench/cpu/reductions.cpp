// Benchmarks of ops/reductions.hpp and ops/whiten.hpp at the reference shape B = 512, T = 4096
// (N = 2,097,152 float tokens, seq_offsets[b] = b·T, a response mask keeping a random prefix).
//   reductions_segment_stats        reads x, mask                     (8·N bytes)
//   reductions_segment_stats_nomask reads x                           (4·N bytes)
//   reductions_masked_moments       whole batch, reads x, mask        (8·N bytes)
//   reductions_whiten_batch         verl preset: reduction pass (x, mask) + write pass
//                                   (x, mask, out)                    (20·N bytes)
//   reductions_whiten_per_segment   OpenRLHF masked_normalize preset  (20·N bytes)
//   reductions_read_floor           plain sum of x in 4 double lanes  (4·N bytes): what one
//                                   thread of this machine streams, for comparison
// Single thread. bytes_per_second counts the bytes above; items_per_second counts tokens.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "posttrain/core/ragged.hpp"
#include "posttrain/ops/reductions.hpp"
#include "posttrain/ops/whiten.hpp"

namespace pt = posttrain;

namespace reductions_bench {

constexpr pt::index_t kBatch = 512;
constexpr pt::index_t kWidth = 4096;
constexpr pt::index_t kTokens = kBatch * kWidth;

struct inputs {
  std::vector<float> x;
  std::vector<float> mask;
  std::vector<pt::index_t> offsets;
};

const inputs& data() {
  static const inputs in = [] {
    inputs r;
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.5f, 2.0f);
    std::uniform_int_distribution<pt::index_t> len(1, kWidth);
    r.x.resize(static_cast<std::size_t>(kTokens));
    r.mask.assign(static_cast<std::size_t>(kTokens), 0.0f);
    for (auto& v : r.x) v = nd(rng);
    for (pt::index_t b = 0; b < kBatch; ++b) {
      const pt::index_t l = len(rng);
      for (pt::index_t t = 0; t < l; ++t) r.mask[static_cast<std::size_t>(b * kWidth + t)] = 1.0f;
    }
    r.offsets = pt::padded_offsets(kBatch, kWidth);
    return r;
  }();
  return in;
}

void report(benchmark::State& state, double bytes_per_token) {
  state.SetItemsProcessed(state.iterations() * kTokens);
  state.SetBytesProcessed(static_cast<std::int64_t>(static_cast<double>(state.iterations()) *
                                                    bytes_per_token * kTokens));
}

void reductions_segment_stats(benchmark::State& state) {
  const inputs& in = data();
  std::vector<double> mean(kBatch), var(kBatch);
  for (auto _ : state) {
    pt::segment_stats(pt::exec::host{}, in.x, in.mask, in.offsets,
                      {.mean = mean, .var_unbiased = var});
    benchmark::DoNotOptimize(mean.data());
    benchmark::DoNotOptimize(var.data());
  }
  report(state, 8.0);
}
BENCHMARK(reductions_segment_stats)->Unit(benchmark::kMillisecond);

void reductions_segment_stats_nomask(benchmark::State& state) {
  const inputs& in = data();
  std::vector<double> mean(kBatch), var(kBatch);
  for (auto _ : state) {
    pt::segment_stats(pt::exec::host{}, in.x, {}, in.offsets, {.mean = mean, .var_unbiased = var});
    benchmark::DoNotOptimize(mean.data());
    benchmark::DoNotOptimize(var.data());
  }
  report(state, 4.0);
}
BENCHMARK(reductions_segment_stats_nomask)->Unit(benchmark::kMillisecond);

void reductions_masked_moments(benchmark::State& state) {
  const inputs& in = data();
  for (auto _ : state) {
    pt::masked_stats s = pt::masked_moments(pt::exec::host{}, in.x, in.mask);
    benchmark::DoNotOptimize(s);
  }
  report(state, 8.0);
}
BENCHMARK(reductions_masked_moments)->Unit(benchmark::kMillisecond);

void reductions_whiten_batch(benchmark::State& state) {
  const inputs& in = data();
  std::vector<float> out(in.x.size());
  for (auto _ : state) {
    pt::whiten(pt::exec::host{}, in.x, in.mask, out, pt::whiten_conventions::verl);
    benchmark::DoNotOptimize(out.data());
  }
  report(state, 20.0);
}
BENCHMARK(reductions_whiten_batch)->Unit(benchmark::kMillisecond);

void reductions_whiten_per_segment(benchmark::State& state) {
  const inputs& in = data();
  std::vector<float> out(in.x.size());
  for (auto _ : state) {
    pt::whiten(pt::exec::host{}, in.x, in.mask, in.offsets, out,
               pt::whiten_conventions::openrlhf_masked_normalize);
    benchmark::DoNotOptimize(out.data());
  }
  report(state, 20.0);
}
BENCHMARK(reductions_whiten_per_segment)->Unit(benchmark::kMillisecond);

void reductions_read_floor(benchmark::State& state) {
  const inputs& in = data();
  for (auto _ : state) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (std::size_t i = 0; i < in.x.size(); i += 4) {
      a0 += in.x[i];
      a1 += in.x[i + 1];
      a2 += in.x[i + 2];
      a3 += in.x[i + 3];
    }
    double s = (a0 + a1) + (a2 + a3);
    benchmark::DoNotOptimize(s);
  }
  report(state, 4.0);
}
BENCHMARK(reductions_read_floor)->Unit(benchmark::kMillisecond);

}  // namespace reductions_bench
