// The reference trainer's transformer (examples/reference_trainer/model) on the CPU:
//   BM_ReferenceModelTrainStep   forward + fused linear/log-prob loss (token mean) + backward +
//                                AdamW, B sequences of T = 256 tokens; items = tokens
//   BM_ReferenceModelGenerate    32 prompts of 16 tokens, 32 new tokens each (no stop), KV cache,
//                                temperature 1; items = generated tokens
//   BM_EigenGemmPeak             one 2048³ float GEMM: the machine's attainable FLOP/s at this
//                                thread count, the denominator of the train step's MFU
// Configs (Llama layout, untied): 0 = tiny (d 256, 4 layers, 4 heads / 2 KV, I 704, V 512),
// 1 = small (d 512, 8 layers, 8 heads / 4 KV, I 1408, V 512). The thread count is the benchmark's
// second argument (Eigen's OpenMP GEMMs). bench/peers/reference_model_torch.py runs transformers
// eager on torch CPU with the same shapes and threads and prints the ratios.
// Counters: model_flops_per_s (PaLM's 6·P_matmul + 12·L·H·T per token), mfu (against the GEMM
// peak measured in the same process), max_rss_mb.
#include <benchmark/benchmark.h>

#include <sys/resource.h>

#include <chrono>
#include <random>
#include <vector>

#include <posttrain/ops/fused_linear_logprobs.hpp>

#include "model.hpp"

namespace rm = reference_model;
using rm::index_t;

namespace {

rm::model_config bench_config(int which) {
  rm::model_config c;
  c.arch = rm::architecture::llama;
  c.vocab_size = 512;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-6;
  if (which == 0) {
    c.hidden_size = 256, c.num_hidden_layers = 4, c.num_attention_heads = 4,
    c.num_key_value_heads = 2, c.intermediate_size = 704;
  } else {
    c.hidden_size = 512, c.num_hidden_layers = 8, c.num_attention_heads = 8,
    c.num_key_value_heads = 4, c.intermediate_size = 1408;
  }
  return c;
}

double max_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;
}

double gemm_flops_per_s(int threads) {
  static std::vector<std::pair<int, double>> cache;
  for (auto& [t, f] : cache)
    if (t == threads) return f;
  rm::set_num_threads(threads);
  const index_t n = 2048;
  rm::matrix<float> a = rm::matrix<float>::Random(n, n), b = rm::matrix<float>::Random(n, n), c(n, n);
  double best = 1e30;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    c.noalias() = a * b;
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  benchmark::DoNotOptimize(c.data());
  const double f = 2.0 * n * n * n / best;
  cache.push_back({threads, f});
  return f;
}

// FLOPs of one trained token: 6 × matmul parameters (embedding lookup excluded, lm_head included)
// plus 12·L·(heads·D)·T for attention scores and values (PaLM appendix B).
double train_flops_per_token(const rm::model_config& c, index_t t) {
  const double h = double(c.hidden_size), q = double(c.q_dim()), kv = double(c.kv_dim());
  const double per_layer = h * q * 2 + h * kv * 2 + 3 * h * double(c.intermediate_size);
  const double p = double(c.num_hidden_layers) * per_layer + double(c.vocab_size) * h;
  return 6 * p + 12.0 * double(c.num_hidden_layers) * q * double(t);
}

void BM_ReferenceModelTrainStep(benchmark::State& state) {
  const auto cfg = bench_config(static_cast<int>(state.range(0)));
  const int threads = static_cast<int>(state.range(1));
  const double peak = gemm_flops_per_s(threads);
  rm::set_num_threads(threads);
  const index_t b = cfg.hidden_size == 256 ? 4 : 2, t = 256, n = b * t;
  rm::transformer<float> m(cfg);
  m.init_random(1);
  std::mt19937_64 rng(2);
  std::vector<index_t> tokens(static_cast<std::size_t>(n)), offsets, targets(tokens.size());
  for (auto& x : tokens) x = static_cast<index_t>(rng() % cfg.vocab_size);
  for (index_t s = 0; s <= b; ++s) offsets.push_back(s * t);
  for (index_t i = 0; i < n; ++i)
    targets[i] = (i + 1) % t == 0 ? -100 : tokens[static_cast<std::size_t>(i + 1)];
  std::vector<float> d_lp(tokens.size(), -1.0f / float(n - b)), lp(tokens.size()), lse(tokens.size());
  rm::adamw<float> opt(m.parameters().size(), {});
  rm::activations<float> act;
  rm::matrix<float> dh(n, cfg.hidden_size);
  posttrain::fused_linear_logprobs_options o;
  o.accumulate_d_weight = true;
  o.num_threads = threads;
  for (auto _ : state) {
    m.zero_grad();
    const rm::matrix<float>& h = m.forward(tokens, offsets, act);
    posttrain::fused_linear_logprobs_forward_backward(
        posttrain::exec::host{}, posttrain::matrix_view<const float>{h.data(), n, h.cols()},
        m.lm_head(), targets, std::span<const float>(d_lp), {},
        posttrain::token_logprobs_outputs<float>{lp, lse},
        posttrain::matrix_view<float>{dh.data(), n, dh.cols()}, m.lm_head_grad(), o);
    m.backward(act, dh);
    opt.step(m.parameters(), m.gradients());
    benchmark::DoNotOptimize(m.parameters().data());
  }
  state.SetItemsProcessed(state.iterations() * n);
  const double flops = train_flops_per_token(cfg, t) * double(n);
  state.counters["model_flops_per_s"] =
      benchmark::Counter(flops * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["gemm_peak_flops_per_s"] = peak;
  state.counters["max_rss_mb"] = max_rss_mb();
  state.SetLabel(cfg.hidden_size == 256 ? "tiny" : "small");
}

void BM_ReferenceModelGenerate(benchmark::State& state) {
  const auto cfg = bench_config(static_cast<int>(state.range(0)));
  rm::set_num_threads(static_cast<int>(state.range(1)));
  rm::transformer<float> m(cfg);
  m.init_random(1);
  const index_t b = 32, plen = 16;
  std::mt19937_64 rng(3);
  std::vector<index_t> tokens(static_cast<std::size_t>(b * plen)), offsets;
  for (auto& x : tokens) x = static_cast<index_t>(rng() % cfg.vocab_size);
  for (index_t s = 0; s <= b; ++s) offsets.push_back(s * plen);
  std::vector<std::uint64_t> seeds(static_cast<std::size_t>(b));
  for (std::size_t s = 0; s < seeds.size(); ++s) seeds[s] = 100 + s;
  rm::sampling_options o;
  o.max_new_tokens = 32;
  index_t generated = 0;
  for (auto _ : state) {
    const auto out = rm::generate(m, tokens, offsets, seeds, o);
    for (const auto& c : out) generated += static_cast<index_t>(c.tokens.size());
  }
  state.SetItemsProcessed(generated);
  state.counters["max_rss_mb"] = max_rss_mb();
  state.SetLabel(cfg.hidden_size == 256 ? "tiny" : "small");
}

void BM_EigenGemmPeak(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  rm::set_num_threads(threads);
  const index_t n = 2048;
  rm::matrix<float> a = rm::matrix<float>::Random(n, n), b = rm::matrix<float>::Random(n, n), c(n, n);
  for (auto _ : state) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["flops_per_s"] =
      benchmark::Counter(2.0 * n * n * n * double(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_ReferenceModelTrainStep)->ArgsProduct({{0, 1}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_ReferenceModelGenerate)->ArgsProduct({{0, 1}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_EigenGemmPeak)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
