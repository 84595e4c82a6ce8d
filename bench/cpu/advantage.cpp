// Benchmarks of every advantage estimator of advantage/*.hpp (and the reward shaping), float
// inputs, single thread. Shapes (Args {B, T}): B = 512, T = 4096 (N = 2,097,152 tokens,
// performance.md 7.4) and B = 8, T = 256; padded layout (seq_offsets[b] = b·T) with a response
// mask keeping a random prefix and a few interior holes; groups of 8 sequences.
// bytes_per_second counts the compulsory traffic, 4 B per float read or written (the mask is
// float: 4 B/token, performance.md's "fp32 mask" row); items_per_second counts tokens (N = B·T)
// for the token-level benchmarks and sequences (B) for the outcome-level ones.
//   advantage_floor_gae_traffic   NOT an estimator: a stream kernel with GAE's traffic (read 3,
//                                 write 2 floats per token): what one thread of this machine moves
//   advantage_gae                 masked-carry GAE (verl), advantages + returns, no whitening
//                                 read r, V, mask, write A, ret = 20 B/token
//   advantage_gae_whiten          verl preset (returns, then whitening of A): 20 + 12 = 32 B/token
//   advantage_gae_plain           OpenRLHF recurrence, no whitening, 20 B/token
//   advantage_gae_trl_ppo         TRL PPO preset (plain, λ = 0.95, whitening): 32 B/token
//   advantage_discounted_returns  γ-discounted returns (reset at masked): read r, mask, write 12
//   advantage_reverse_cumsum      12 B/token
//   advantage_reinforce_pp        REINFORCE++ verl preset (returns + whitening, returns kept):
//                                 read r, mask, write A, ret + whitening 12 = 28 B/token
//   advantage_reinforce_pp_baseline  verl preset: R[B] → centred, broadcast, whitened:
//                                 write A + whitening (read A, mask, write A) = 16 B/token
//   advantage_remax               read r, mask, write A, ret = 16 B/token (+ b[B])
//   advantage_kl_in_reward        r − β·k1(ℓold, ℓref) (verl): read r, ℓold, ℓref, mask; write r',
//                                 kl = 24 B/token
//   advantage_sequence_kl_penalty OpenRLHF sequence KL: read ℓold, ℓref, mask = 12 B/token
//   advantage_grpo_<preset>       group_advantages on R[B]: 8 B/sequence
//   advantage_grpo_broadcast      verl preset + broadcast_to_tokens: + read mask, write A per
//                                 token (8 B/token)
//   advantage_passk, _rloo_<preset>, _opo, _gpg: outcome level, 8 B/sequence (OPO: + 8 B length)
//   advantage_<estimator>_broadcast  the estimator + broadcast_to_tokens (the token-level
//                                 advantages the peers' functions return): 8 B/token
//   advantage_shaping_<op>        overlong / clip / stop-properly / missing-EOS: 8–9 B/sequence
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "posttrain/advantage/gae.hpp"
#include "posttrain/advantage/gpg.hpp"
#include "posttrain/advantage/group.hpp"
#include "posttrain/advantage/opo.hpp"
#include "posttrain/advantage/reinforce.hpp"
#include "posttrain/advantage/rloo.hpp"
#include "posttrain/advantage/shaping.hpp"
#include "posttrain/core/ragged.hpp"

namespace pt = posttrain;
namespace adv = posttrain::advantage;

namespace advantage_bench {

struct inputs {
  pt::index_t B = 0, T = 0;
  std::vector<float> r, v, mask, a, ret, seq_r, seq_a, old_lp, ref_lp;
  std::vector<double> lengths;
  std::vector<pt::index_t> offsets, groups, int_lengths;
  std::vector<std::uint8_t> truncated;
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
  in.old_lp.resize(n);
  in.ref_lp.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    in.old_lp[i] = -3.0f * u(rng);
    in.ref_lp[i] = in.old_lp[i] + 0.05f * nd(rng);
  }
  for (pt::index_t b = 0; b < B; ++b) {
    const pt::index_t l = len(rng);
    in.int_lengths.push_back(l);
    in.lengths.push_back(static_cast<double>(l));
    in.truncated.push_back(l == T ? 1 : 0);
  }
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

// A stream kernel with GAE's traffic: a, ret from r, v, mask (what one thread moves).
void advantage_floor_gae_traffic(benchmark::State& state) {
  auto& in = const_cast<inputs&>(data(state.range(0), state.range(1)));
  const std::size_t n = in.r.size();
  for (auto _ : state) {
    const float* r = in.r.data();
    const float* v = in.v.data();
    const float* m = in.mask.data();
    float* a = in.a.data();
    float* ret = in.ret.data();
    for (std::size_t i = 0; i < n; ++i) {
      a[i] = m[i] * (r[i] - v[i]);
      ret[i] = r[i] + v[i];
    }
    benchmark::DoNotOptimize(in.a.data());
    benchmark::DoNotOptimize(in.ret.data());
    benchmark::ClobberMemory();
  }
  report(state, static_cast<double>(in.B * in.T), 20.0);
}

void advantage_gae_trl_ppo(benchmark::State& state) {
  run_gae(state, adv::gae_conventions::trl_ppo, 32.0);
}

template <class F>
void run_tokens(benchmark::State& state, double bytes_per_token, F&& f) {
  auto& in = const_cast<inputs&>(data(state.range(0), state.range(1)));
  for (auto _ : state) {
    f(in);
    benchmark::DoNotOptimize(in.a.data());
    benchmark::ClobberMemory();
  }
  report(state, static_cast<double>(in.B * in.T), bytes_per_token);
}

template <class F>
void run_outcome(benchmark::State& state, double bytes_per_sequence, F&& f) {
  auto& in = const_cast<inputs&>(data(state.range(0), state.range(1)));
  for (auto _ : state) {
    f(in);
    benchmark::DoNotOptimize(in.seq_a.data());
    benchmark::ClobberMemory();
  }
  report(state, static_cast<double>(in.B), bytes_per_sequence);
}

void advantage_discounted_returns(benchmark::State& state) {
  run_tokens(state, 12.0, [](inputs& in) {
    adv::discounted_returns(pt::exec::host{}, in.r, in.mask, in.offsets, std::span<float>(in.a),
                            {.gamma = 0.99});
  });
}

void advantage_reverse_cumsum(benchmark::State& state) {
  run_tokens(state, 12.0, [](inputs& in) {
    adv::reverse_cumsum(pt::exec::host{}, in.r, in.mask, in.offsets, std::span<float>(in.a));
  });
}

void advantage_reinforce_pp(benchmark::State& state) {
  run_tokens(state, 28.0, [](inputs& in) {
    adv::reinforce_plus_plus(pt::exec::host{}, in.r, in.mask, in.offsets, std::span<float>(in.a),
                             std::span<float>(in.ret), adv::reinforce_pp_conventions::verl);
  });
}

void advantage_reinforce_pp_baseline(benchmark::State& state) {
  run_tokens(state, 16.0, [](inputs& in) {
    adv::reinforce_plus_plus_baseline(pt::exec::host{}, in.seq_r, in.groups, in.mask, in.offsets,
                                      std::span<float>(in.a),
                                      adv::reinforce_pp_conventions::verl_baseline);
  });
}

void advantage_remax(benchmark::State& state) {
  run_tokens(state, 16.0, [](inputs& in) {
    adv::remax(pt::exec::host{}, in.r, std::span<const float>(in.seq_r), in.mask, in.offsets,
               std::span<float>(in.a), std::span<float>(in.ret));
  });
}

void advantage_kl_in_reward(benchmark::State& state) {
  run_tokens(state, 24.0, [](inputs& in) {
    const auto s = adv::kl_in_reward<pt::kl::k1>(
        pt::exec::host{}, in.r, std::span<const float>(in.old_lp),
        std::span<const float>(in.ref_lp), in.mask, in.offsets, 0.001,
        pt::kl_conventions::verl(pt::kl_kind::k1), std::span<float>(in.a),
        std::span<float>(in.ret));
    benchmark::DoNotOptimize(s);
  });
}

void advantage_sequence_kl_penalty(benchmark::State& state) {
  run_tokens(state, 12.0, [](inputs& in) {
    adv::sequence_kl_penalty(pt::exec::host{}, in.seq_r, std::span<const float>(in.old_lp),
                             std::span<const float>(in.ref_lp), in.mask, in.offsets, 0.01,
                             std::span<float>(in.seq_a));
  });
}

template <const adv::group_options& O>
void advantage_grpo_preset(benchmark::State& state) {
  run_outcome(state, 8.0, [](inputs& in) {
    adv::group_advantages(pt::exec::host{}, in.seq_r, in.groups, std::span<float>(in.seq_a), O);
  });
}

template <const adv::rloo_options& O>
void advantage_rloo_preset(benchmark::State& state) {
  run_outcome(state, 8.0, [](inputs& in) {
    adv::rloo_advantages(pt::exec::host{}, in.seq_r, in.groups, std::span<float>(in.seq_a), O);
  });
}

void advantage_passk(benchmark::State& state) {
  run_outcome(state, 8.0, [](inputs& in) {
    adv::passk_advantages(pt::exec::host{}, in.seq_r, in.groups, std::span<float>(in.seq_a));
  });
}

void advantage_opo(benchmark::State& state) {
  run_outcome(state, 16.0, [](inputs& in) {
    adv::opo_advantages(pt::exec::host{}, in.seq_r, std::span<const double>(in.lengths), in.groups,
                        std::span<float>(in.seq_a));
  });
}

void advantage_gpg(benchmark::State& state) {
  run_outcome(state, 8.0, [](inputs& in) {
    adv::gpg_advantages(pt::exec::host{}, in.seq_r, in.groups, std::span<float>(in.seq_a));
  });
}

// Outcome estimator + broadcast_to_tokens: the token-level advantages a loss reads (what the
// peers' functions return). 8 B/token (read mask, write A) + the estimator's B scalars.
template <class F>
void run_broadcast(benchmark::State& state, F&& estimator) {
  run_tokens(state, 8.0, [&](inputs& in) {
    estimator(in);
    adv::broadcast_to_tokens(pt::exec::host{}, in.seq_a, in.offsets, in.mask,
                             std::span<float>(in.a));
  });
}

void advantage_rloo_broadcast(benchmark::State& state) {
  run_broadcast(state, [](inputs& in) {
    adv::rloo_advantages(pt::exec::host{}, in.seq_r, in.groups, std::span<float>(in.seq_a),
                         adv::rloo_conventions::verl);
  });
}

void advantage_dr_grpo_broadcast(benchmark::State& state) {
  run_broadcast(state, [](inputs& in) {
    adv::group_advantages(pt::exec::host{}, in.seq_r, in.groups, std::span<float>(in.seq_a),
                          adv::group_conventions::dr_grpo);
  });
}

void advantage_passk_broadcast(benchmark::State& state) {
  run_broadcast(state, [](inputs& in) {
    adv::passk_advantages(pt::exec::host{}, in.seq_r, in.groups, std::span<float>(in.seq_a));
  });
}

void advantage_opo_broadcast(benchmark::State& state) {
  run_broadcast(state, [](inputs& in) {
    adv::opo_advantages(pt::exec::host{}, in.seq_r, std::span<const double>(in.lengths), in.groups,
                        std::span<float>(in.seq_a));
  });
}

void advantage_gpg_broadcast(benchmark::State& state) {
  run_broadcast(state, [](inputs& in) {
    adv::gpg_advantages(pt::exec::host{}, in.seq_r, in.groups, std::span<float>(in.seq_a));
  });
}

void advantage_shaping_overlong(benchmark::State& state) {
  run_outcome(state, 16.0, [](inputs& in) {
    adv::overlong_penalty(pt::exec::host{}, in.seq_r, std::span<const pt::index_t>(in.int_lengths),
                          adv::overlong_conventions::verl(in.T, in.T / 4),
                          std::span<float>(in.seq_a));
  });
}

void advantage_shaping_clip(benchmark::State& state) {
  run_outcome(state, 8.0, [](inputs& in) {
    adv::clip_rewards(pt::exec::host{}, in.seq_r, adv::reward_clip_options{},
                      std::span<float>(in.seq_a));
  });
}

void advantage_shaping_stop_properly(benchmark::State& state) {
  run_outcome(state, 9.0, [](inputs& in) {
    adv::stop_properly_penalty(pt::exec::host{}, in.seq_r,
                               std::span<const std::uint8_t>(in.truncated), 0.5,
                               std::span<float>(in.seq_a));
  });
}

void advantage_shaping_missing_eos(benchmark::State& state) {
  run_outcome(state, 9.0, [](inputs& in) {
    adv::missing_eos_penalty(pt::exec::host{}, in.seq_r,
                             std::span<const std::uint8_t>(in.truncated), -1.0,
                             std::span<float>(in.seq_a));
  });
}

#define ADVANTAGE_BENCH_SHAPES(fn)                                                                 \
  BENCHMARK(fn)->Args({512, 4096})->Args({8, 256})->Unit(benchmark::kMicrosecond)

ADVANTAGE_BENCH_SHAPES(advantage_floor_gae_traffic);
ADVANTAGE_BENCH_SHAPES(advantage_gae);
ADVANTAGE_BENCH_SHAPES(advantage_gae_whiten);
ADVANTAGE_BENCH_SHAPES(advantage_gae_plain);
ADVANTAGE_BENCH_SHAPES(advantage_gae_trl_ppo);
ADVANTAGE_BENCH_SHAPES(advantage_discounted_returns);
ADVANTAGE_BENCH_SHAPES(advantage_reverse_cumsum);
ADVANTAGE_BENCH_SHAPES(advantage_reinforce_pp);
ADVANTAGE_BENCH_SHAPES(advantage_reinforce_pp_baseline);
ADVANTAGE_BENCH_SHAPES(advantage_remax);
ADVANTAGE_BENCH_SHAPES(advantage_kl_in_reward);
ADVANTAGE_BENCH_SHAPES(advantage_sequence_kl_penalty);
ADVANTAGE_BENCH_SHAPES(advantage_grpo);
ADVANTAGE_BENCH_SHAPES(advantage_grpo_broadcast);
ADVANTAGE_BENCH_SHAPES(advantage_grpo_preset<adv::group_conventions::trl>)
    ->Name("advantage_grpo_trl");
ADVANTAGE_BENCH_SHAPES(advantage_grpo_preset<adv::group_conventions::trl_batch>)
    ->Name("advantage_grpo_trl_batch");
ADVANTAGE_BENCH_SHAPES(advantage_grpo_preset<adv::group_conventions::openrlhf>)
    ->Name("advantage_grpo_openrlhf");
ADVANTAGE_BENCH_SHAPES(advantage_grpo_preset<adv::group_conventions::open_instruct_standard>)
    ->Name("advantage_grpo_open_instruct");
ADVANTAGE_BENCH_SHAPES(advantage_grpo_preset<adv::group_conventions::dr_grpo>)
    ->Name("advantage_grpo_dr_grpo");
ADVANTAGE_BENCH_SHAPES(advantage_passk);
ADVANTAGE_BENCH_SHAPES(advantage_rloo);
ADVANTAGE_BENCH_SHAPES(advantage_rloo_preset<adv::rloo_conventions::trl_normalized>)
    ->Name("advantage_rloo_trl_normalized");
ADVANTAGE_BENCH_SHAPES(advantage_rloo_broadcast);
ADVANTAGE_BENCH_SHAPES(advantage_dr_grpo_broadcast);
ADVANTAGE_BENCH_SHAPES(advantage_passk_broadcast);
ADVANTAGE_BENCH_SHAPES(advantage_opo_broadcast);
ADVANTAGE_BENCH_SHAPES(advantage_gpg_broadcast);
ADVANTAGE_BENCH_SHAPES(advantage_opo);
ADVANTAGE_BENCH_SHAPES(advantage_gpg);
ADVANTAGE_BENCH_SHAPES(advantage_shaping_overlong);
ADVANTAGE_BENCH_SHAPES(advantage_shaping_clip);
ADVANTAGE_BENCH_SHAPES(advantage_shaping_stop_properly);
ADVANTAGE_BENCH_SHAPES(advantage_shaping_missing_eos);

}  // namespace advantage_bench
