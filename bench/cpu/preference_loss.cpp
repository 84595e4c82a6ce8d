// Benchmarks of the offline losses: the DPO family (loss/preference/algorithms.hpp), ORPO / CPO /
// AlphaPO / KTO / reward model / SFT (loss/algorithms_offline.hpp), float, single thread.
// Shapes: P = 512 and P = 8192 pairs (Args {P, L}), each completion L = 256 tokens wide, padded
// layout (seq_offsets[p] = p·L) with a mask keeping a random prefix of each completion; the
// reference scores ρ are precomputed per sequence (loss::sequence_scores), as every peer does.
//
// Each benchmark computes the loss and ∂loss/∂ℓ for every token (∂loss/∂r for the reward model).
// items_per_second counts pairs (examples for KTO, sequences for SFT); bytes_per_second counts the
// compulsory traffic, 4 B per float read or written:
//   preference / orpo / cpo / alphapo / kto_vanilla_paired: read ℓ, mask; write grad for chosen
//        and rejected tokens (12 B/token, 2·L tokens per pair) + read ρ_c, ρ_r (8 B/pair;
//        reference-free: none)                       = 24·L + 8 B/pair
//   kto (unpaired, P examples, half desirable): 12·L + 4 (ρ) + 1 (label) B/example
//   reward model (Bradley-Terry / LogExp): read r_c, r_r; write both grads = 16 B/pair
//   reward model, Llama 3 ranking (Bradley-Terry with margin and an edited response on 2 pairs
//        of 3): read r_c, r_r, r_e, margin, edited mask; write three grads = 32 B/pair
//   sft (P sequences of L tokens): read ℓ, mask; write grad = 12·L B/sequence
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

#include "posttrain/core/ragged.hpp"
#include "posttrain/loss/algorithms_offline.hpp"
#include "posttrain/loss/alphapo.hpp"
#include "posttrain/loss/kto.hpp"
#include "posttrain/loss/preference.hpp"
#include "posttrain/loss/preference/algorithms.hpp"
#include "posttrain/loss/reward_model.hpp"
#include "posttrain/loss/sft.hpp"

namespace pt = posttrain;

namespace preference_loss_bench {

struct side {
  std::vector<float> logp, mask, grad;
  std::vector<float> ref_sum, ref_mean;  // ρ reduced with seq::sum / seq::mean
};

struct inputs {
  pt::index_t P = 0, L = 0;
  side chosen, rejected;
  std::vector<pt::index_t> offsets;
  std::vector<std::uint8_t> desirable;
  std::vector<float> r_chosen, r_rejected, g_chosen, g_rejected;
  std::vector<float> r_edited, margin, edited_mask, g_edited;
};

void fill_side(side& s, pt::index_t P, pt::index_t L, std::mt19937& rng) {
  std::uniform_real_distribution<float> lp(-4.0f, -0.01f);
  std::uniform_int_distribution<pt::index_t> len(1, L);
  const auto n = static_cast<std::size_t>(P * L);
  s.logp.resize(n);
  for (auto& x : s.logp) x = lp(rng);
  s.mask.assign(n, 0.0f);
  for (pt::index_t p = 0; p < P; ++p) {
    const pt::index_t l = len(rng);
    for (pt::index_t t = 0; t < l; ++t) s.mask[static_cast<std::size_t>(p * L + t)] = 1.0f;
  }
  s.grad.resize(n);
}

inputs& data(pt::index_t P, pt::index_t L) {
  static inputs cache[2];
  inputs& in = cache[P == 512 ? 0 : 1];
  if (in.P == P && in.L == L) return in;
  in = inputs{};
  in.P = P;
  in.L = L;
  std::mt19937 rng(5);
  fill_side(in.chosen, P, L, rng);
  fill_side(in.rejected, P, L, rng);
  in.offsets = pt::padded_offsets(P, L);
  // Reference token log-probs: the policy's plus noise, reduced once (outside the timed loop).
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (side* s : {&in.chosen, &in.rejected}) {
    std::vector<float> ref(s->logp);
    for (auto& x : ref) x += 0.05f * nd(rng);
    const pt::token_batch b{in.offsets, s->mask};
    s->ref_sum = pt::loss::sequence_scores<pt::seq::sum>(std::span<const float>(ref), b);
    s->ref_mean = pt::loss::sequence_scores<pt::seq::mean>(std::span<const float>(ref), b);
  }
  in.desirable.resize(static_cast<std::size_t>(P));
  for (pt::index_t p = 0; p < P; ++p) in.desirable[static_cast<std::size_t>(p)] = p % 2 == 0;
  in.r_chosen.resize(static_cast<std::size_t>(P));
  in.r_rejected.resize(static_cast<std::size_t>(P));
  for (auto& x : in.r_chosen) x = nd(rng);
  for (auto& x : in.r_rejected) x = nd(rng);
  in.g_chosen.resize(static_cast<std::size_t>(P));
  in.g_rejected.resize(static_cast<std::size_t>(P));
  in.r_edited.resize(static_cast<std::size_t>(P));
  in.margin.resize(static_cast<std::size_t>(P));
  in.edited_mask.resize(static_cast<std::size_t>(P));
  for (pt::index_t p = 0; p < P; ++p) {
    const auto i = static_cast<std::size_t>(p);
    in.r_edited[i] = in.r_chosen[i] + std::abs(nd(rng));
    in.margin[i] = 0.25f * std::abs(nd(rng));
    in.edited_mask[i] = p % 3 == 2 ? 0.0f : 1.0f;
  }
  in.g_edited.resize(static_cast<std::size_t>(P));
  return in;
}

void report(benchmark::State& state, double items, double bytes_per_item) {
  const double n = items * static_cast<double>(state.iterations());
  state.SetItemsProcessed(static_cast<std::int64_t>(n));
  state.SetBytesProcessed(static_cast<std::int64_t>(n * bytes_per_item));
}

template <class Algo>
constexpr bool uses_reference() {
  if constexpr (requires { Algo::uses_reference; })
    return Algo::uses_reference;
  else
    return false;  // alphapo: reference-free
}

// One preference-shaped loss (loss::preference, loss::alphapo, loss::kto_vanilla_paired).
template <class Algo, bool Mean, class Options>
void run_pair(benchmark::State& state, const Options& o) {
  inputs& in = data(state.range(0), state.range(1));
  pt::loss::preference_inputs<float> pin{
      .batch = {.chosen = {in.offsets, in.chosen.mask}, .rejected = {in.offsets, in.rejected.mask}},
      .chosen_logprobs = in.chosen.logp,
      .rejected_logprobs = in.rejected.logp};
  constexpr bool ref = uses_reference<Algo>() || std::is_same_v<Algo, pt::algo::kto_vanilla_paired>;
  if constexpr (ref) {
    pin.reference_chosen = Mean ? in.chosen.ref_mean : in.chosen.ref_sum;
    pin.reference_rejected = Mean ? in.rejected.ref_mean : in.rejected.ref_sum;
  }
  const pt::loss::preference_outputs<float> out{.chosen_grad = in.chosen.grad,
                                                .rejected_grad = in.rejected.grad};
  for (auto _ : state) {
    if constexpr (std::is_same_v<Algo, pt::algo::kto_vanilla_paired>) {
      const auto r = Algo::compute(pin, o, out);
      benchmark::DoNotOptimize(r);
    } else {
      const auto r = Algo::compute(pt::exec::host{}, pin, o, out);
      benchmark::DoNotOptimize(r);
    }
    benchmark::DoNotOptimize(in.chosen.grad.data());
    benchmark::DoNotOptimize(in.rejected.grad.data());
    benchmark::ClobberMemory();
  }
  report(state, static_cast<double>(in.P), 24.0 * static_cast<double>(in.L) + (ref ? 8.0 : 0.0));
}

// KTO unpaired: P examples (the chosen side's completions), half desirable.
template <class Algo>
void kto_unpaired(benchmark::State& state) {
  inputs& in = data(state.range(0), state.range(1));
  const pt::loss::kto_inputs<float> kin{.batch = {in.offsets, in.chosen.mask},
                                        .logprobs = in.chosen.logp,
                                        .reference = in.chosen.ref_sum,
                                        .desirable = in.desirable,
                                        .kl_reference = 0.05};
  const pt::loss::kto_outputs<float> out{.grad = in.chosen.grad};
  for (auto _ : state) {
    const auto r = Algo::compute(pt::exec::host{}, kin, pt::loss::kto_options{}, out);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(in.chosen.grad.data());
    benchmark::ClobberMemory();
  }
  report(state, static_cast<double>(in.P), 12.0 * static_cast<double>(in.L) + 5.0);
}

template <class Algo>
void reward_model(benchmark::State& state) {
  inputs& in = data(state.range(0), state.range(1));
  const pt::loss::reward_model_inputs<float> rin{.chosen = in.r_chosen, .rejected = in.r_rejected};
  const pt::loss::reward_model_outputs<float> out{.chosen_grad = in.g_chosen,
                                                  .rejected_grad = in.g_rejected};
  for (auto _ : state) {
    const auto r = Algo::compute(pt::exec::host{}, rin, {}, out);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(in.g_chosen.data());
    benchmark::ClobberMemory();
  }
  report(state, static_cast<double>(in.P), 16.0);
}

// Llama 3 ranking form: edited > chosen > rejected, with margins.
void reward_model_ranking(benchmark::State& state) {
  inputs& in = data(state.range(0), state.range(1));
  const pt::loss::reward_model_inputs<float> rin{.chosen = in.r_chosen,
                                                 .rejected = in.r_rejected,
                                                 .margin = in.margin,
                                                 .edited = in.r_edited,
                                                 .edited_mask = in.edited_mask};
  const pt::loss::reward_model_outputs<float> out{
      .chosen_grad = in.g_chosen, .rejected_grad = in.g_rejected, .edited_grad = in.g_edited};
  for (auto _ : state) {
    const auto r = pt::algo::bradley_terry::compute(pt::exec::host{}, rin, {}, out);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(in.g_chosen.data());
    benchmark::ClobberMemory();
  }
  report(state, static_cast<double>(in.P), 32.0);
}

template <class Algo>
void sft(benchmark::State& state, const pt::agg_options& agg) {
  inputs& in = data(state.range(0), state.range(1));
  const pt::token_batch b{in.offsets, in.chosen.mask};
  for (auto _ : state) {
    const auto r = Algo::compute(pt::exec::host{}, std::span<const float>(in.chosen.logp), b,
                                 std::span<float>(in.chosen.grad), {}, agg);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(in.chosen.grad.data());
    benchmark::ClobberMemory();
  }
  report(state, static_cast<double>(in.P), 12.0 * static_cast<double>(in.L));
}

namespace presets = pt::pref::presets;

void apply_shapes(benchmark::internal::Benchmark* b) {
  b->Args({512, 256})->Args({8192, 256})->Unit(benchmark::kMicrosecond);
}

template <class Algo, bool Mean, class Options>
void add_pair(const char* name, const Options& o) {
  benchmark::RegisterBenchmark(name, [o](benchmark::State& s) { run_pair<Algo, Mean>(s, o); })
      ->Apply(apply_shapes);
}

template <class Algo>
void add_pref(const char* name, const typename Algo::options_type& o) {
  add_pair<Algo, std::is_same_v<typename Algo::sequence_reduction, pt::seq::mean>>(name, o);
}

template <class Algo>
void add_sft(const char* name, const pt::agg_options& agg) {
  benchmark::RegisterBenchmark(name, [agg](benchmark::State& s) { sft<Algo>(s, agg); })
      ->Apply(apply_shapes);
}

const bool registered = [] {
  namespace algo = pt::algo;
  add_pref<algo::dpo>("pref/dpo", presets::trl);
  add_pref<algo::cdpo>("pref/cdpo", presets::cdpo(0.1));
  add_pref<algo::robust_dpo>("pref/robust_dpo", presets::cdpo(0.1));
  add_pref<algo::ipo>("pref/ipo", presets::trl);
  add_pref<algo::ipo_sum>("pref/ipo_sum", presets::trl);
  add_pref<algo::dpo_length_normalized>("pref/dpo_length_normalized", presets::open_instruct);
  add_pref<algo::simpo>("pref/simpo", presets::trl_cpo_simpo);
  add_pref<algo::dpo_nll>("pref/dpo_nll", presets::llama3_dpo_nll);
  add_pref<algo::dpo_nll_sequence_mean>("pref/dpo_nll_sequence_mean", presets::llama3_dpo_nll);
  add_pref<algo::hinge>("pref/hinge", presets::trl);
  add_pref<algo::exo_pair>("pref/exo_pair", presets::exo);
  add_pref<algo::nca_pair>("pref/nca_pair", presets::trl);
  add_pref<algo::bco_pair>("pref/bco_pair", presets::trl);
  add_pref<algo::sppo_hard>("pref/sppo_hard", presets::trl);
  add_pref<algo::apo_zero>("pref/apo_zero", presets::trl);
  add_pref<algo::apo_down>("pref/apo_down", presets::trl);
  add_pref<algo::discopop>("pref/discopop", {presets::trl, {}});
  add_pref<algo::orpo>("pref/orpo", presets::trl_orpo);
  add_pref<algo::cpo>("pref/cpo", presets::trl_cpo);
  add_pref<algo::cpo_hinge>("pref/cpo_hinge", presets::trl_cpo);
  add_pref<algo::cpo_ipo>("pref/cpo_ipo", presets::trl_cpo);
  add_pref<algo::cpo_simpo>("pref/cpo_simpo", algo::cpo_simpo::trl().loss);
  pt::loss::alphapo_options alpha;
  alpha.alpha = 0.1;
  add_pair<algo::alphapo, false>("pref/alphapo", alpha);
  pt::loss::alphapo_options_for<pt::pref::simpo> alpha_simpo;
  alpha_simpo.alpha = 0.1;
  add_pair<algo::alphapo_simpo, true>("pref/alphapo_simpo", alpha_simpo);
  add_pair<algo::kto_vanilla_paired, false>("pref/kto_vanilla_paired",
                                            pt::loss::kto_vanilla_options{});
  benchmark::RegisterBenchmark("pref/kto", kto_unpaired<algo::kto>)->Apply(apply_shapes);
  benchmark::RegisterBenchmark("pref/kto_apo_zero_unpaired",
                               kto_unpaired<algo::kto_apo_zero_unpaired>)
      ->Apply(apply_shapes);
  benchmark::RegisterBenchmark("rm/bradley_terry", reward_model<algo::bradley_terry>)
      ->Apply(apply_shapes);
  benchmark::RegisterBenchmark("rm/log_exp", reward_model<algo::reward_log_exp>)
      ->Apply(apply_shapes);
  benchmark::RegisterBenchmark("rm/bradley_terry_ranking", reward_model_ranking)
      ->Apply(apply_shapes);
  add_sft<algo::sft>("sft/token_mean", pt::agg_conventions::verl());
  add_sft<algo::sft_sum>("sft/token_sum", pt::agg_conventions::verl());
  add_sft<algo::sft_sample_mean>("sft/sample_mean", pt::agg_conventions::openrlhf());
  return true;
}();

}  // namespace preference_loss_bench
