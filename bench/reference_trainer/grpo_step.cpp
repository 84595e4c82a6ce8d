// One GRPO step of the reference trainer (examples/reference_trainer), end to end, on the CPU:
//
//   BM_GrpoStep/<config>/<beta_x1000>
//     pipeline::rl_step<algo::grpo> with the trainer's own adapters (adapters.hpp: policy,
//     generator = the model's batched KV-cache sampler, reference::frozen) and reward
//     (gsm8k verifier on the byte-decoded text), the TRL preset as in recipes/quick.json:
//       16 arithmetic prompts (task.hpp's generator, chat-rendered like the trainer's prompts)
//       × 8 samples, temperature 0.7, 16 new tokens, AdamW lr 5e-5, max grad norm 1.
//     One iteration = generate 128 completions → decode + verify → reference log-probs (at
//     β ≠ 0 only) → GRPO advantages → loss (forward; on-policy, the old log-probs are its own
//     detached ones, no separate pass) → backward → AdamW step.
//     No stop token: every completion is exactly 16 tokens, so the work per step is fixed and
//     equals the peer's (bench/peers/trl_grpo_step.py forces min_new_tokens = max_new_tokens).
//     The policy keeps training across iterations (as it would in a run); seeds differ per step.
//   Configs: 0 = quick (recipes/quick.json: d 64, 2 layers, 4 heads / 2 KV, SwiGLU 192, tied,
//   V 261); 1 = larger (d 256, 4 layers, 4 heads / 2 KV, SwiGLU 768, tied, V 261).
//   beta_x1000: the k3 KL coefficient × 1000 (0 = the quick recipe's TRL preset; 40 = β 0.04).
//   rl_step skips the reference pass at β = 0 and the separate old-log-prob pass on-policy
//   (docs/pipeline.md "Passes rl_step skips"), as TRL does; at β = 0 the bench fails (SkipWithError)
//   if either ran.
//   A warm-up step runs before the timed ones (not counted).
//   Counters (per step): generate_s / generate_cpu_s (the generator's wall / CPU share),
//   reference_s (the frozen reference's log-probs), policy_forward_s / policy_backward_s (the
//   transformer trunk's forward and backward; the lm_head + log-prob op, loss, advantages and
//   AdamW are the rest), reference_pass / old_logprob_pass (fraction of steps that ran it),
//   prompt_tokens (mean), completion_tokens. 1 GEMM thread (Eigen), as the recipe.
#include <benchmark/benchmark.h>

#include <chrono>
#include <ctime>
#include <span>
#include <string>
#include <vector>

#include <posttrain/algo.hpp>
#include <posttrain/pipeline.hpp>
#include <posttrain/reward.hpp>

#include "adapters.hpp"
#include "task.hpp"

namespace rt = reference_trainer;
using S = float;
using rt::pp::byte_tokenizer;

namespace {

rt::rm::model_config bench_config(int which) {
  rt::rm::model_config c;
  c.arch = rt::rm::architecture::llama;
  c.vocab_size = byte_tokenizer::size;
  c.tie_word_embeddings = true;
  c.bos_token_id = byte_tokenizer::bos;
  c.eos_token_id = byte_tokenizer::eos;
  c.max_position_embeddings = 512;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  if (which == 0) {
    c.hidden_size = 64, c.intermediate_size = 192, c.num_hidden_layers = 2;
  } else {
    c.hidden_size = 256, c.intermediate_size = 768, c.num_hidden_layers = 4;
  }
  return c;
}

// The trainer's generator, timed.
struct timed_generator {
  rt::generator<S> inner;
  double seconds = 0, cpu_seconds = 0;
  void generate(const rt::pp::generation_request& r, rt::pp::generation& out) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    inner.generate(r, out);
    cpu_seconds += static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};
static_assert(rt::pp::check_generator<timed_generator>());

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// The trainer's policy, its transformer forward / backward timed (the fused lm_head + log-prob
// op and the loss run in the pipeline, outside these calls).
struct timed_policy {
  using scalar_type = S;
  rt::policy<S>& inner;
  double forward_s = 0, backward_s = 0;
  rt::index_t vocab_size() const { return inner.vocab_size(); }
  rt::pp::policy_hidden<S> forward(const rt::pp::token_sequences& s) {
    const double t0 = now();
    auto h = inner.forward(s);
    forward_s += now() - t0;
    return h;
  }
  void backward(rt::pt::matrix_view<const S> dh, rt::pt::matrix_view<const S> dw) {
    const double t0 = now();
    inner.backward(dh, dw);
    backward_s += now() - t0;
  }
  std::span<S> parameters() { return inner.parameters(); }
  std::span<S> gradients() { return inner.gradients(); }
  void zero_grad() { inner.zero_grad(); }
};
static_assert(rt::pp::check_policy<timed_policy>());

// The trainer's reference (a frozen copy of the policy), timed.
struct timed_reference {
  static constexpr bool enabled = true;
  using scalar_type = S;
  rt::pp::reference::frozen<rt::policy<S>> inner;
  double seconds = 0;
  void logprobs(const rt::pp::token_sequences& s, std::span<S> lp) {
    const double t0 = now();
    inner.logprobs(s, lp);
    seconds += now() - t0;
  }
};
static_assert(rt::pp::check_reference_model<timed_reference>());

void BM_GrpoStep(benchmark::State& state) {
  rt::rm::set_num_threads(1);
  const int which = static_cast<int>(state.range(0));
  const double beta = static_cast<double>(state.range(1)) / 1000.0;
  constexpr long prompts = 16, samples = 8, new_tokens = 16;

  // 16 prompts the way the trainer renders them: the chat up to the assistant header.
  rt::problem_generator problems(rt::task_options{.seed = 1, .max_operand = 9});
  const byte_tokenizer tok;
  rt::pp::owned_sequences prompt_seqs;
  std::vector<rt::pp::example_info> examples;
  for (long i = 0; i < prompts; ++i) {
    const rt::problem p = problems.next();
    const std::vector<rt::pp::message> chat{{"user", p.question}};
    const auto r = rt::pp::render_chat(tok, std::span<const rt::pp::message>(chat), {}, true);
    prompt_seqs.append(r.tokens);
    prompt_seqs.ids.push_back(static_cast<std::uint64_t>(i));
    examples.push_back({static_cast<std::uint64_t>(i), p.answer, "gsm8k"});
  }
  const rt::pp::rl_batch batch{prompt_seqs.view(), examples};

  rt::rm::transformer<S> model(bench_config(which));
  model.init_random(1);
  rt::policy<S> inner(std::move(model));
  timed_policy policy{inner};
  timed_reference reference{rt::pp::reference::frozen<rt::policy<S>>(inner)};
  timed_generator gen{rt::generator<S>(inner)};
  rt::pp::reward::verifiers<byte_tokenizer, posttrain::reward::gsm8k_verifier> reward{};
  auto opt = rt::pt::optim::adamw({.lr = 5e-5, .weight_decay = 0.0});

  using R = rt::pt::algo::grpo;
  const auto preset = R::trl(beta);
  rt::pp::rl_step_options<R, R::advantage> o;
  o.loss = preset.loss;
  o.estimator = preset.advantage;
  o.samples_per_prompt = samples;
  o.max_grad_norm = 1.0;
  o.sampling.temperature = 0.7;
  o.sampling.max_new_tokens = new_tokens;
  o.sampling.stop_tokens = {};  // fixed length: 16 tokens per completion (see the header)
  o.temperature = 0.7;
  o.normalizer_constant = static_cast<double>(new_tokens);

  std::uint64_t step = 0;
  // Warm-up step (not timed), as the peer's.
  o.seed = rt::pp::sample_seed(1, ++step);
  rt::pp::rl_step<R, R::advantage>(policy, gen, reference, reward, opt, batch, o);
  double completion_tokens = 0, reward_sum = 0, reference_passes = 0, old_logprob_passes = 0;
  gen.seconds = gen.cpu_seconds = 0;
  policy.forward_s = policy.backward_s = reference.seconds = 0;
  for (auto _ : state) {
    o.seed = rt::pp::sample_seed(1, ++step);
    const auto m = rt::pp::rl_step<R, R::advantage>(policy, gen, reference, reward, opt, batch, o);
    completion_tokens += m.completion_tokens;
    reward_sum += m.reward_mean;
    reference_passes += m.reference_pass ? 1 : 0;
    old_logprob_passes += m.old_logprob_pass ? 1 : 0;
    benchmark::DoNotOptimize(m.loss);
  }
  // rl_step skips the reference pass at β = 0 and, on-policy (one update per rollout, as here),
  // the separate old-log-prob pass (docs/pipeline.md "Passes rl_step skips"): a step that ran
  // either at β = 0 would time work TRL does not do.
  if (beta == 0 && (reference_passes != 0 || old_logprob_passes != 0 || reference.seconds != 0)) {
    state.SkipWithError("beta 0: rl_step ran the reference or the old-log-prob pass");
    return;
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["generate_s"] = gen.seconds / n;
  state.counters["generate_cpu_s"] = gen.cpu_seconds / n;
  state.counters["reference_s"] = reference.seconds / n;
  state.counters["reference_pass"] = reference_passes / n;      // 1: ran every step, 0: skipped
  state.counters["old_logprob_pass"] = old_logprob_passes / n;
  state.counters["policy_forward_s"] = policy.forward_s / n;   // the loss's forward (+ old log-probs if that pass ran)
  state.counters["policy_backward_s"] = policy.backward_s / n;
  state.counters["prompt_tokens"] = static_cast<double>(prompt_seqs.tokens.size()) / prompts;
  state.counters["completion_tokens"] = completion_tokens / n;
  state.counters["reward_mean"] = reward_sum / n;
  state.counters["params"] = static_cast<double>(policy.parameters().size());
  state.SetLabel(which == 0 ? "quick d64 L2" : "d256 L4");
}

}  // namespace

BENCHMARK(BM_GrpoStep)
    ->ArgsProduct({{0, 1}, {0, 40}})
    ->ArgNames({"config", "beta_x1000"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0)
    ->MeasureProcessCPUTime();
