// Benchmarks of the policy-gradient compositions of loss/policy_gradient/algorithms.hpp (every
// posttrain::algo alias with its peer preset) and of loss::value_clipped, float, single thread.
// Shapes: B = 512, T = 4096 (N = 2,097,152 tokens, performance.md 7.4) and B = 8, T = 256;
// padded layout (seq_offsets[b] = b·T) with a response mask keeping a random prefix of each row.
//
// Each benchmark computes the loss value and dLoss/dℓ[N] (the statistics come for free).
// bytes_per_second counts the compulsory traffic of one call, 4 B per float read or written:
//   read ℓ, ℓold, A, mask; write grad                         20 B/token   (ppo, dapo, dr_grpo,
//                                                                           gspo, gspo_token, cispo,
//                                                                           sapo)
//   + read ℓref (KL in the loss)                              24 B/token   (grpo, grpo_verl)
//   gpg (REINFORCE: no ℓold)                                  16 B/token
//   ppo_entropy: + read H, write dH                           28 B/token
//   value_clipped: read v, V_old, R, mask; write grad         20 B/token
// Sequence-level surrogates (GSPO) and per-sequence aggregations need per-row sums first; a row
// (T·16 B = 64 KiB here) stays in cache, so their compulsory traffic is the same. The aggregation
// weights need Σ m before the first gradient is written (token_mean with a local divisor, the
// per-sequence modes): one more read of the mask, 4 B/token, not counted as compulsory.
// items_per_second counts tokens (N = B·T, padding included).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "posttrain/core/ragged.hpp"
#include "posttrain/loss/policy_gradient.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"
#include "posttrain/loss/value.hpp"

namespace pt = posttrain;

namespace policy_loss_bench {

struct inputs {
  pt::index_t B = 0, T = 0;
  std::vector<float> logp, old_logp, adv, ref_logp, entropy, mask, values, old_values, returns;
  std::vector<float> grad, entropy_grad;
  std::vector<pt::index_t> offsets;
};

inputs& data(pt::index_t B, pt::index_t T) {
  static inputs cache[2];
  inputs& in = cache[B == 512 ? 0 : 1];
  if (in.B == B && in.T == T) return in;
  in = inputs{};
  in.B = B;
  in.T = T;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> lp(-6.0f, -0.01f);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<pt::index_t> len(1, T);
  const auto n = static_cast<std::size_t>(B * T);
  in.logp.resize(n);
  in.old_logp.resize(n);
  in.adv.resize(n);
  in.ref_logp.resize(n);
  in.entropy.resize(n);
  in.values.resize(n);
  in.old_values.resize(n);
  in.returns.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    in.old_logp[i] = lp(rng);
    in.logp[i] = in.old_logp[i] + 0.1f * nd(rng);  // ratios around 1, some outside the clip range
    in.ref_logp[i] = in.old_logp[i] + 0.05f * nd(rng);
    in.adv[i] = nd(rng);
    in.entropy[i] = 2.0f + nd(rng) * 0.1f;
    in.values[i] = nd(rng);
    in.old_values[i] = in.values[i] + 0.3f * nd(rng);
    in.returns[i] = nd(rng);
  }
  in.mask.assign(n, 0.0f);
  for (pt::index_t b = 0; b < B; ++b) {
    const pt::index_t l = len(rng);
    for (pt::index_t t = 0; t < l; ++t) in.mask[static_cast<std::size_t>(b * T + t)] = 1.0f;
  }
  in.grad.resize(n);
  in.entropy_grad.resize(n);
  in.offsets = pt::padded_offsets(B, T);
  return in;
}

// x_floor = time / floor, floor = compulsory bytes / 15.6 GB/s (floor_pm of
// docs/performance.md): an inverted rate, so it uses CPU time and Google Benchmark prints it with
// an "s" suffix although it is a plain ratio.
constexpr double floor_bytes_per_second = 15.6e9;

void report(benchmark::State& state, const inputs& in, double bytes_per_token) {
  const double n = static_cast<double>(in.B * in.T) * static_cast<double>(state.iterations());
  state.SetItemsProcessed(static_cast<std::int64_t>(n));
  state.SetBytesProcessed(static_cast<std::int64_t>(n * bytes_per_token));
  state.counters["x_floor"] =
      benchmark::Counter(n * bytes_per_token / floor_bytes_per_second,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// One composition with its options; Algo::uses_reference decides whether ℓref is passed.
template <class Algo>
void run_pg(benchmark::State& state, const pt::policy_gradient_options& o,
            const pt::agg_normalizer& norm, const pt::agg_options& agg, double bytes_per_token,
            bool with_old = true, const typename Algo::surrogate_options& so = {}) {
  inputs& in = data(state.range(0), state.range(1));
  pt::policy_gradient_inputs<float> pin;
  pin.logprobs = in.logp;
  pin.advantages = in.adv;
  pin.mask = in.mask;
  pin.seq_offsets = in.offsets;
  if (with_old) pin.old_logprobs = in.old_logp;
  if constexpr (Algo::uses_reference) pin.ref_logprobs = in.ref_logp;
  pt::policy_gradient_outputs<float> out;
  out.grad = in.grad;
  if (o.entropy_coef != 0.0) {
    pin.entropy = in.entropy;
    out.entropy_grad = in.entropy_grad;
  }
  for (auto _ : state) {
    const auto r = Algo::compute(pt::exec::host{}, pin, o, out, norm, agg, so);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(in.grad.data());
    benchmark::ClobberMemory();
  }
  report(state, in, bytes_per_token);
}

void pg_ppo(benchmark::State& s) {
  run_pg<pt::algo::ppo>(s, pt::pg_presets::verl_ppo(), {}, pt::agg_conventions::verl(), 20.0);
}
void pg_ppo_entropy(benchmark::State& s) {
  auto o = pt::pg_presets::verl_ppo();
  o.entropy_coef = 1e-3;
  run_pg<pt::algo::ppo>(s, o, {}, pt::agg_conventions::verl(), 28.0);
}
void pg_grpo(benchmark::State& s) {
  run_pg<pt::algo::grpo>(s, pt::pg_presets::trl_grpo(0.04), {}, pt::agg_conventions::trl(), 24.0);
}
void pg_grpo_verl(benchmark::State& s) {
  run_pg<pt::algo::grpo>(s, pt::pg_presets::verl_grpo(), {}, pt::agg_conventions::verl(), 24.0);
}
void pg_dr_grpo(benchmark::State& s) {
  pt::agg_normalizer norm;
  norm.constant = static_cast<double>(s.range(1));  // verl: the padded width T
  run_pg<pt::algo::dr_grpo>(s, {}, norm, pt::agg_conventions::verl(), 20.0);
}
void pg_dapo(benchmark::State& s) {
  run_pg<pt::algo::dapo>(s, pt::pg_presets::dapo(), {}, pt::agg_conventions::verl(), 20.0);
}
void pg_gspo(benchmark::State& s) {
  run_pg<pt::algo::gspo>(s, pt::pg_presets::gspo(), {}, pt::agg_conventions::trl(), 20.0);
}
void pg_gspo_token(benchmark::State& s) {
  run_pg<pt::algo::gspo_token>(s, pt::pg_presets::verl_gspo(), {}, pt::agg_conventions::verl(),
                               20.0);
}
void pg_cispo(benchmark::State& s) {
  run_pg<pt::algo::cispo>(s, pt::pg_presets::verl_cispo(), {}, pt::agg_conventions::verl(), 20.0,
                          true, pt::pg_presets::verl_cispo_surrogate());
}
void pg_gpg(benchmark::State& s) {
  run_pg<pt::algo::gpg>(s, {}, {}, pt::agg_conventions::verl(), 16.0, /*with_old=*/false);
}
void pg_sapo(benchmark::State& s) {
  run_pg<pt::algo::sapo>(s, pt::pg_presets::verl_sapo(), {}, pt::agg_conventions::verl(), 20.0,
                         true, pt::pg_presets::sapo_surrogate());
}

// verl compute_value_loss: clip 0.5, token-mean.
void value_clipped(benchmark::State& state) {
  inputs& in = data(state.range(0), state.range(1));
  const pt::value_inputs<float> vin{in.values, in.old_values, in.returns, in.mask, in.offsets};
  for (auto _ : state) {
    const auto r = pt::loss::value_clipped<pt::agg::token_mean>::compute(
        pt::exec::host{}, vin, pt::value_conventions::verl, std::span<float>(in.grad), {},
        pt::agg_conventions::verl());
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(in.grad.data());
    benchmark::ClobberMemory();
  }
  report(state, in, 20.0);
}

#define POLICY_LOSS_SHAPES(fn)                                                                     \
  BENCHMARK(fn)->Args({512, 4096})->Args({8, 256})->Unit(benchmark::kMicrosecond)

POLICY_LOSS_SHAPES(pg_ppo);
POLICY_LOSS_SHAPES(pg_ppo_entropy);
POLICY_LOSS_SHAPES(pg_grpo);
POLICY_LOSS_SHAPES(pg_grpo_verl);
POLICY_LOSS_SHAPES(pg_dr_grpo);
POLICY_LOSS_SHAPES(pg_dapo);
POLICY_LOSS_SHAPES(pg_gspo);
POLICY_LOSS_SHAPES(pg_gspo_token);
POLICY_LOSS_SHAPES(pg_cispo);
POLICY_LOSS_SHAPES(pg_gpg);
POLICY_LOSS_SHAPES(pg_sapo);
POLICY_LOSS_SHAPES(value_clipped);

}  // namespace policy_loss_bench
