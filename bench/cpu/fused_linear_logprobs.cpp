// Host fused linear + log-prob (ops/fused_linear_logprobs.hpp) against the unfused path at a
// modest shape: hidden [N, H] = [1024, 1024], lm_head [V, H] = [32000, 1024].
//   fused_forward            chunked GEMM + token log-probs (logprob, lse, entropy)
//   unfused_forward          one GEMM into materialised [N, V] float logits, then token_logprobs
//   fused_forward_backward   forward outputs + d_hidden + d_weight in one chunked sweep
//   unfused_forward_backward GEMM, token forward, token backward in place, dH = dZ·W, dW = dZᵀ·X
// Arg: the chunk size (fused) — the unfused path needs N·V·4 bytes of logits (131 MB here), the
// fused one chunk·V·4. Counters: GFLOPs (rate; 2NHV forward, 6NHV forward+backward) and
// logits_MB (the [N, V] or chunk buffer). float operands; bf16 operands with _bf16.
#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "posttrain/ops/fused_linear_logprobs.hpp"
#include "posttrain/ops/token_logprobs.hpp"

namespace bench_cpu_fused_linear_logprobs {

namespace pt = posttrain;
using pt::index_t;

constexpr index_t N = 1024, H = 1024, V = 32000;

template <class T>
struct data {
  std::vector<T> x, w;
  std::vector<index_t> y;
  std::vector<float> g, lp, lse, ent;
  std::vector<float> dh, dw;
  data() : x(N * H), w(V * H), y(N), g(N, -1.0f / N), lp(N), lse(N), ent(N), dh(N * H), dw(V * H) {
    std::mt19937 gen(1);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (auto& e : x) e = T(d(gen));
    for (auto& e : w) e = T(0.05f * d(gen));
    std::uniform_int_distribution<index_t> col(0, V - 1);
    for (auto& e : y) e = col(gen);
  }
  pt::matrix_view<const T> xv() const { return {x.data(), N, H}; }
  pt::matrix_view<const T> wv() const { return {w.data(), V, H}; }
};

void counters(benchmark::State& state, double flops, double logits_bytes) {
  state.counters["GFLOPs"] =
      benchmark::Counter(flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["logits_MB"] = logits_bytes * 1e-6;
}

template <class T, bool Backward>
void fused(benchmark::State& state) {
  static const data<T> d0;
  data<T>& d = const_cast<data<T>&>(d0);
  pt::fused_linear_logprobs_options opt;
  opt.chunk_size = state.range(0);
  const pt::exec::host host;
  const auto pass = Backward ? pt::fused_linear_pass::forward_backward : pt::fused_linear_pass::forward;
  std::size_t bytes = pt::fused_linear_logprobs_workspace_bytes<T>(host, N, H, V, pass, opt);
  std::vector<std::byte> ws(bytes);
  const pt::token_logprobs_outputs<float> out{d.lp, d.lse, d.ent};
  for (auto _ : state) {
    if constexpr (Backward)
      pt::fused_linear_logprobs_forward_backward(
          host, ws.data(), bytes, d.xv(), d.wv(), d.y, std::span<const float>(d.g), {}, out,
          pt::matrix_view<float>{d.dh.data(), N, H}, pt::matrix_view<float>{d.dw.data(), V, H},
          opt);
    else
      pt::fused_linear_logprobs(host, ws.data(), bytes, d.xv(), d.wv(), d.y, out, opt);
    benchmark::DoNotOptimize(d.lp.data());
  }
  counters(state, (Backward ? 6.0 : 2.0) * N * H * V, static_cast<double>(bytes));
}

template <bool Backward>
void unfused(benchmark::State& state) {
  static const data<float> d0;
  data<float>& d = const_cast<data<float>&>(d0);
  using rmat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const rmat> X(d.x.data(), N, H), W(d.w.data(), V, H);
  Eigen::Map<rmat> DH(d.dh.data(), N, H), DW(d.dw.data(), V, H);
  rmat Z(N, V);
  const pt::exec::host host;
  for (auto _ : state) {
    Z.noalias() = X * W.transpose();
    const pt::matrix_view<float> z{Z.data(), N, V};
    pt::token_logprobs(host, pt::matrix_view<const float>(z), d.y,
                       pt::token_logprobs_outputs<float>{d.lp, d.lse, d.ent});
    if constexpr (Backward) {
      pt::token_logprobs_backward(host, pt::matrix_view<const float>(z), d.y,
                                  pt::token_logprobs_grads<float>{d.lse, {}, d.g, {}}, z);
      DH.noalias() = Z * W;
      DW.noalias() = Z.transpose() * X;
    }
    benchmark::DoNotOptimize(d.lp.data());
  }
  counters(state, (Backward ? 6.0 : 2.0) * N * H * V, double(N) * V * 4);
}

void fused_forward(benchmark::State& s) { fused<float, false>(s); }
void fused_forward_backward(benchmark::State& s) { fused<float, true>(s); }
void fused_forward_bf16(benchmark::State& s) { fused<Eigen::bfloat16, false>(s); }
void unfused_forward(benchmark::State& s) { unfused<false>(s); }
void unfused_forward_backward(benchmark::State& s) { unfused<true>(s); }

BENCHMARK(fused_forward)->Arg(32)->Arg(128)->Arg(256)->Arg(512)->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK(unfused_forward)->Unit(benchmark::kMillisecond);
BENCHMARK(fused_forward_backward)->Arg(32)->Arg(256)->Unit(benchmark::kMillisecond);
BENCHMARK(unfused_forward_backward)->Unit(benchmark::kMillisecond);
BENCHMARK(fused_forward_bf16)->Arg(128)->Unit(benchmark::kMillisecond);

}  // namespace bench_cpu_fused_linear_logprobs
