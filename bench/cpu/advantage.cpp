// Benchmarks of the advantage estimators (advantage/*.hpp), float inputs, single thread.
// Shapes: B = 512, T = 4096 (N = 2,097,152 tokens, performance.md 7.4) and B = 64, T = 512;
// padded layout (seq_offsets[b] = b·T) with a response mask keeping a random prefix and a few
// interior holes; groups of 8 sequences.
//   advantage_gae                 masked-carry GAE, advantages + returns, no whitening
//                                 bytes: read r, V, mask, write A, ret = 20 B/token
//   advantage_gae_whiten          the verl preset (returns, then whitening of A)
//                                 bytes: 20 + 12 (whitening: read A, mask, write A) = 32 B/token
//   advantage_gae_plain           OpenRLHF recurrence, no whitening, 20 B/token
//   advantage_grpo                group_advantages (verl preset) on R[B]: 8 B/sequence
//   advantage_grpo_broadcast      + broadcast_to_tokens: + read mask, write A per token (8 B/token)
//   advantage_rloo                rloo_advantages (verl preset): 8 B/sequence
// items_per_second counts tokens for the token-level benchmarks, sequences for the group ones.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "posttrain/advantage/gae.hpp"
#include "posttrain/advantage/group.hpp"
#include "posttrain/advantage/rloo.hpp"
#include "posttrain/core/ragged.hpp"

namespace pt = posttrain;
namespace adv = posttrain::advantage;

namespace advantage_bench {

struct inputs {
  pt::index_t B = 0, T = 0;
  std::vector<float> r, v, mask, a, ret, seq_r, seq_a;
  std::vector<pt::index_t> offsets, groups;
};

const inputs& data(pt::index_t B, pt::index_t T) {
  static inputs cache[2];
  inputs& in = cache[B == 512 ? 0 : 1];
  if (in.B == B && in.T == T) return in;
  in = inputs{};
  in.B = B;
  in.T = T;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<pt::index_t> len(1, T);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  const std::size_t n = static_cast<std::size_t>(B * T);
  in.r.resize(n);
  in.v.resize(n);
  in.mask.assign(n, 0.0f);
  for (std::size_t i = 0; i < n; ++i) in.r[i] = 0.01f * nd(rng), in.v[i] = nd(rng);
  for (pt::index_t b = 0; b < B; ++b) {
    const pt::index_t l = len(rng);
    for (pt::index_t t = 0; t < l; ++t)
      in.mask[static_cast<std::size_t>(b * T + t)] = u(rng) < 0.02f ? 0.0f : 1.0f;
  }
  in.a.resize(n);
  in.ret.resize(n);
  in.offsets = pt::padded_offsets(B, T);
  in.seq_r.resize(static_cast<std::size_t>(B));
  in.seq_a.resize(static_cast<std::size_t>(B));
  for (auto& x : in.seq_r) x = u(rng) < 0.4f ? 1.0f : 0.0f;
  in.groups = pt::padded_offsets(B / 8, 8);
  return in;
}

void report(benchmark::State& state, double items, double bytes_per_item) {
  state.SetItemsProcessed(
      static_cast<std::int64_t>(static_cast<double>(state.iterations()) * items));
  state.SetBytesProcessed(
      static_cast<std::int64_t>(static_cast<double>(state.iterations()) * items * bytes_per_item));
}

void run_gae(benchmark::State& state, const adv::gae_options& o, double bytes_per_token) {
  auto& in = const_cast<inputs&>(data(state.range(0), state.range(1)));
  for (auto _ : state) {
    adv::gae(pt::exec::host{}, in.r, in.v, in.mask, in.offsets, in.a, in.ret, o);
    benchmark::DoNotOptimize(in.a.data());
    benchmark::DoNotOptimize(in.ret.data());
    benchmark::ClobberMemory();
  }
  report(state, static_cast<double>(in.B * in.T), bytes_per_token);
}

void advantage_gae(benchmark::State& state) {
  adv::gae_options o = adv::gae_conventions::verl;
  o.whiten = false;
  run_gae(state, o, 20.0);
}

void advantage_gae_whiten(benchmark::State& state) {
  run_gae(state, adv::gae_conventions::verl, 32.0);
}

void advantage_gae_plain(benchmark::State& state) {
  adv::gae_options o = adv::gae_conventions::openrlhf;
  o.whiten = false;
  run_gae(state, o, 20.0);
}

void advantage_grpo(benchmark::State& state) {
  auto& in = const_cast<inputs&>(data(state.range(0), state.range(1)));
  for (auto _ : state) {
    adv::group_advantages(pt::exec::host{}, in.seq_r, in.groups, in.seq_a,
                          adv::group_conventions::verl);
    benchmark::DoNotOptimize(in.seq_a.data());
    benchmark::ClobberMemory();
  }
  report(state, static_cast<double>(in.B), 8.0);
}

void advantage_grpo_broadcast(benchmark::State& state) {
  auto& in = const_cast<inputs&>(data(state.range(0), state.range(1)));
  for (auto _ : state) {
    adv::group_advantages(pt::exec::host{}, in.seq_r, in.groups, in.seq_a,
                          adv::group_conventions::verl);
    adv::broadcast_to_tokens(pt::exec::host{}, in.seq_a, in.offsets, in.mask, in.a);
    benchmark::DoNotOptimize(in.a.data());
    benchmark::ClobberMemory();
  }
  report(state, static_cast<double>(in.B * in.T), 8.0);
}

void advantage_rloo(benchmark::State& state) {
  auto& in = const_cast<inputs&>(data(state.range(0), state.range(1)));
  for (auto _ : state) {
    adv::rloo_advantages(pt::exec::host{}, in.seq_r, in.groups, in.seq_a,
                         adv::rloo_conventions::verl);
    benchmark::DoNotOptimize(in.seq_a.data());
    benchmark::ClobberMemory();
  }
  report(state, static_cast<double>(in.B), 8.0);
}

#define ADVANTAGE_BENCH_SHAPES(fn)                                                                 \
  BENCHMARK(fn)->Args({512, 4096})->Args({64, 512})->Unit(benchmark::kMicrosecond)

ADVANTAGE_BENCH_SHAPES(advantage_gae);
ADVANTAGE_BENCH_SHAPES(advantage_gae_whiten);
ADVANTAGE_BENCH_SHAPES(advantage_gae_plain);
ADVANTAGE_BENCH_SHAPES(advantage_grpo);
ADVANTAGE_BENCH_SHAPES(advantage_grpo_broadcast);
ADVANTAGE_BENCH_SHAPES(advantage_rloo);

}  // namespace advantage_bench
