// Overhead of a pipeline step beyond the model's own forward and backward, on the bigram test
// policy (tests/pipeline/test_policy.hpp) at B = 64 sequences × T = 512 tokens (N = 32768),
// V = 64, float:
//   BM_PolicyForwardBackward   the model alone: forward (logits [N, V]) + backward of a fixed
//                              d_logits — what any training loop pays
//   BM_TokenLogprobsForwardBackward  ops/token_logprobs forward + backward over the same [N, V]
//                              logits: the share of the step any loss on logits needs
//   BM_SftStep                 pipeline::sft_step<algo::sft> (log-probs, loss, d_logits, the same
//                              forward/backward, clip, SGD)
//   BM_PreferenceStep          pipeline::preference_step<algo::dpo> over 32 pairs (64 sequences),
//                              reference log-probs precomputed (no reference forward)
//   BM_RlStepDapo              pipeline::rl_step<algo::dapo> (GRPO estimator) over 16 prompts × 4
//                              samples of 128 + 384 tokens from a replaying generator: ℓold
//                              forward, advantages, one update (forward + backward), SGD.
//                              /0: as the step decides (on-policy: ℓold from the update's
//                              forward); /1: force_old_logprob_pass (the separate ℓold forward)
//   BM_RlStepGrpoBeta0         pipeline::rl_step<algo::grpo> (k3 in the loss) at β = 0 with a
//                              frozen reference (a copy of the policy), same batch: /0 skips the
//                              reference and the ℓold forward; /1 forces both (the step before
//                              they were skipped)
// Overhead = BM_SftStep − BM_PolicyForwardBackward (items/s = tokens/s).
#include <benchmark/benchmark.h>

#include <vector>

#include <posttrain/algo.hpp>
#include <posttrain/pipeline.hpp>

#include "../../tests/pipeline/test_policy.hpp"

namespace pt = posttrain;
namespace pp = posttrain::pipeline;

namespace {

constexpr pt::index_t B = 64, T = 512, V = 64;

struct batch {
  std::vector<pt::index_t> tokens, offsets{0};
  std::vector<float> mask;
  std::vector<std::uint64_t> ids;
  explicit batch(pt::index_t sequences, std::uint64_t seed = 1) {
    std::uint64_t x = seed;
    for (pt::index_t b = 0; b < sequences; ++b) {
      for (pt::index_t t = 0; t < T; ++t) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        tokens.push_back(static_cast<pt::index_t>((x >> 33) % V));
        mask.push_back(t < T / 4 ? 0.0f : 1.0f);  // a quarter prompt
      }
      offsets.push_back(static_cast<pt::index_t>(tokens.size()));
      ids.push_back(static_cast<std::uint64_t>(b + seed * 1000));
    }
  }
  pp::token_sequences view() const { return {tokens, offsets, ids}; }
};

void BM_PolicyForwardBackward(benchmark::State& state) {
  const batch data(B);
  pt_test::bigram_policy<float> policy(V);
  std::vector<float> d(static_cast<std::size_t>(B * T * V), 1e-3f);
  for (auto _ : state) {
    policy.zero_grad();
    const auto logits = policy.forward(data.view());
    benchmark::DoNotOptimize(logits.data);
    policy.backward(pt::matrix_view<const float>(d.data(), B * T, V));
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * B * T);
}

// The part of the step every loss needs: log-softmax forward and backward over [N, V].
void BM_TokenLogprobsForwardBackward(benchmark::State& state) {
  const batch data(B);
  pt_test::bigram_policy<float> policy(V);
  const auto logits = policy.forward(data.view());
  std::vector<pt::index_t> targets;
  pp::next_token_targets(data.view(), targets);
  std::vector<float> lp(B * T), lse(B * T), g(B * T, -1e-5f), d(static_cast<std::size_t>(B * T * V));
  for (auto _ : state) {
    pt::token_logprobs(pt::exec::host{}, logits, std::span<const pt::index_t>(targets),
                       pt::token_logprobs_outputs<float>{lp, lse});
    pt::token_logprobs_backward(pt::exec::host{}, logits, std::span<const pt::index_t>(targets),
                                pt::token_logprobs_grads<float>{lse, {}, g, {}},
                                pt::matrix_view<float>(d.data(), B * T, V));
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * B * T);
}

void BM_SftStep(benchmark::State& state) {
  const batch data(B);
  pt_test::bigram_policy<float> policy(V);
  pt::optim::sgd opt{1e-6};
  for (auto _ : state) {
    const auto m = pp::sft_step<pt::algo::sft>(policy, opt, pp::sft_batch{data.view(), data.mask});
    benchmark::DoNotOptimize(m.loss);
  }
  state.SetItemsProcessed(state.iterations() * B * T);
}

void BM_PreferenceStep(benchmark::State& state) {
  const batch chosen(B / 2, 1), rejected(B / 2, 2);
  pt_test::bigram_policy<float> policy(V), ref_model(V, 5);
  pp::reference::frozen<pt_test::bigram_policy<float>> frozen(ref_model);
  pp::reference::precomputed<float> reference;
  reference.precompute(frozen, chosen.view());
  reference.precompute(frozen, rejected.view());
  pt::optim::sgd opt{1e-6};
  const pp::preference_data d{chosen.view(), rejected.view(), chosen.mask, rejected.mask};
  for (auto _ : state) {
    const auto m = pp::preference_step<pt::algo::dpo>(policy, reference, opt, d);
    benchmark::DoNotOptimize(m.loss);
  }
  state.SetItemsProcessed(state.iterations() * B * T);
}

// A generator that replays fixed completions (generation itself is the engine's cost, not the
// pipeline's): every prompt of 128 tokens gets a 384-token completion, so B = 64 sequences of
// T = 512 as above.
struct replay_generator {
  std::vector<pt::index_t> completion;
  void generate(const pp::generation_request& r, pp::generation& out) {
    out = {};
    for (pt::index_t i = 0; i < r.prompts.num_sequences(); ++i) {
      out.completions.append(completion);
      out.logprobs.insert(out.logprobs.end(), completion.size(), -1.0);
      out.stop.push_back(pp::stop_reason::length);
      out.truncated.push_back(1);
    }
  }
};

// The RL benchmarks' inputs: 16 prompts of T/4 tokens, each completed by the replayed 3T/4-token
// completion, and a reward that depends on the prompt only (its first token mod 3), so groups differ.
struct rl_inputs {
  pp::owned_sequences prompts;
  replay_generator gen;
  rl_inputs() {
    const batch source(16);
    for (pt::index_t p = 0; p < 16; ++p)
      prompts.append(std::span<const pt::index_t>(source.tokens).subspan(p * T, T / 4));
    gen.completion.assign(source.tokens.begin(), source.tokens.begin() + 3 * T / 4);
  }
  static auto reward() {
    return pp::reward::callable{[](std::span<const pt::index_t> p, std::span<const pt::index_t>,
                                   const pp::example_info&) { return static_cast<double>(p[0] % 3); }};
  }
};

void BM_RlStepDapo(benchmark::State& state) {
  // 16 prompts × G = 4; one policy forward for ℓold, one forward + backward per update (one
  // mini-batch, one epoch): the model's share is two forwards and one backward.
  rl_inputs in;
  pt_test::bigram_policy<float> policy(V);
  pp::reference::none<float> none;
  auto reward = rl_inputs::reward();
  pt::optim::sgd opt{1e-6};
  pp::rl_step_options<pt::algo::dapo, pt::estimator::grpo> o;
  o.samples_per_prompt = 4;
  o.sampling.max_new_tokens = 3 * T / 4;
  o.force_old_logprob_pass = state.range(0) != 0;
  for (auto _ : state) {
    const auto m = pp::rl_step<pt::algo::dapo>(policy, in.gen, none, reward, opt,
                                               pp::rl_batch{in.prompts.view(), {}}, o);
    benchmark::DoNotOptimize(m.loss);
  }
  state.SetItemsProcessed(state.iterations() * B * T);
}

void BM_RlStepGrpoBeta0(benchmark::State& state) {
  rl_inputs in;
  pt_test::bigram_policy<float> policy(V);
  pp::reference::frozen<pt_test::bigram_policy<float>> reference(policy);
  auto reward = rl_inputs::reward();
  pt::optim::sgd opt{1e-6};
  auto o = pp::rl_options_from<pt::algo::grpo>(pt::algo::grpo::trl(0.0));
  o.samples_per_prompt = 4;
  o.sampling.max_new_tokens = 3 * T / 4;
  o.force_reference_pass = o.force_old_logprob_pass = state.range(0) != 0;
  for (auto _ : state) {
    const auto m = pp::rl_step<pt::algo::grpo>(policy, in.gen, reference, reward, opt,
                                               pp::rl_batch{in.prompts.view(), {}}, o);
    benchmark::DoNotOptimize(m.loss);
  }
  state.SetItemsProcessed(state.iterations() * B * T);
}

}  // namespace

BENCHMARK(BM_PolicyForwardBackward)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TokenLogprobsForwardBackward)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SftStep)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PreferenceStep)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RlStepDapo)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RlStepGrpoBeta0)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
