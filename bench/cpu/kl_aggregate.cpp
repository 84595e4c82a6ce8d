// Benchmarks of ops/kl.hpp and ops/aggregate.hpp at the reference shape B = 512, T = 4096
// (N = 2,097,152 tokens, packed with seq_offsets[b] = b·T).
//   kl_k3_value_grad<T>      reads ℓ, ℓref; writes value, grad   (4·N·sizeof(T) bytes)
//   aggregate_<mode>_grad<T> reads L, mask; writes grad           (N·(2·sizeof(T) + 4) bytes)
// Single thread. bytes_per_second counts the bytes above; items_per_second counts tokens.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "posttrain/core/ragged.hpp"
#include "posttrain/ops/aggregate.hpp"
#include "posttrain/ops/kl.hpp"

namespace pt = posttrain;

namespace kl_aggregate_bench {

constexpr pt::index_t kBatch = 512;
constexpr pt::index_t kWidth = 4096;
constexpr pt::index_t kTokens = kBatch * kWidth;

template <class T>
std::vector<T> uniform(std::size_t n, double lo, double hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(u(rng));
  return v;
}

// A response mask: each row keeps a random-length prefix (padding after it), like a padded batch.
std::vector<float> response_mask() {
  std::mt19937 rng(7);
  std::uniform_int_distribution<pt::index_t> len(1, kWidth);
  std::vector<float> m(static_cast<std::size_t>(kTokens), 0.0f);
  for (pt::index_t b = 0; b < kBatch; ++b) {
    const pt::index_t l = len(rng);
    for (pt::index_t t = 0; t < l; ++t) m[static_cast<std::size_t>(b * kWidth + t)] = 1.0f;
  }
  return m;
}

template <class T>
void kl_k3_value_grad(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(kTokens);
  const auto lp = uniform<T>(n, -6.0, -0.01, 1);
  const auto rp = uniform<T>(n, -6.0, -0.01, 2);
  std::vector<T> value(n), grad(n);
  const auto options = pt::kl_conventions::verl(pt::kl_kind::k3);
  for (auto _ : state) {
    pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, lp, rp, options, value, grad);
    benchmark::DoNotOptimize(value.data());
    benchmark::DoNotOptimize(grad.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kTokens);
  state.SetBytesProcessed(state.iterations() * kTokens * static_cast<int64_t>(4 * sizeof(T)));
}

template <class Mode, class T>
void aggregate_grad(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(kTokens);
  const auto loss = uniform<T>(n, -2.0, 2.0, 3);
  const auto mask = response_mask();
  const auto offsets = pt::padded_offsets(kBatch, kWidth);
  std::vector<T> grad(n);
  const pt::agg_normalizer normalizer;  // local normaliser
  for (auto _ : state) {
    const auto r = pt::aggregate_loss<Mode>(pt::exec::host{}, loss, mask, offsets, normalizer,
                                            grad, pt::agg_conventions::verl());
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(grad.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kTokens);
  state.SetBytesProcessed(state.iterations() * kTokens *
                          static_cast<int64_t>(2 * sizeof(T) + sizeof(float)));
}

BENCHMARK(kl_k3_value_grad<float>)->Name("kl/k3_value_grad/float/N=2097152")->Unit(benchmark::kMillisecond);
BENCHMARK(kl_k3_value_grad<double>)->Name("kl/k3_value_grad/double/N=2097152")->Unit(benchmark::kMillisecond);
BENCHMARK(aggregate_grad<pt::agg::token_mean, float>)
    ->Name("aggregate/token_mean_grad/float/N=2097152")
    ->Unit(benchmark::kMillisecond);
BENCHMARK(aggregate_grad<pt::agg::seq_mean_token_mean, float>)
    ->Name("aggregate/seq_mean_token_mean_grad/float/N=2097152")
    ->Unit(benchmark::kMillisecond);
BENCHMARK(aggregate_grad<pt::agg::token_mean, double>)
    ->Name("aggregate/token_mean_grad/double/N=2097152")
    ->Unit(benchmark::kMillisecond);
BENCHMARK(aggregate_grad<pt::agg::seq_mean_token_mean, double>)
    ->Name("aggregate/seq_mean_token_mean_grad/double/N=2097152")
    ->Unit(benchmark::kMillisecond);

}  // namespace kl_aggregate_bench
