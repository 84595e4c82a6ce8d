// reference_trainer: post-trains the reference transformer on a verifiable task, stage by stage.
//
//   reference_trainer --recipe recipes/quick.json [--algo grpo] [--conventions trl] [--out DIR]
//                     [--data DIR] [--quiet] [--threads N] [--resume]
//   reference_trainer plot RUN_DIR            PNG plots of metrics.jsonl (plot.hpp, gnuplot)
//   mpirun -np 2 reference_trainer --recipe   data-parallel (distributed.hpp; an MPI build)
//
// What happens, in order (main() at the bottom reads the same way):
//   1 read the recipe (recipe.hpp: typed fields, unknown keys rejected)
//   2 data: generate the recipe's task mix (task.hpp: gsm8k, math, ifeval) into OUT/data/*.jsonl,
//     or take --data DIR;
//     then read it back with pipeline's JSONL readers (so the files are the interface)
//   3 a fresh model (random init, seeded) — the "pre-trained checkpoint" comes from stage pretrain
//   4 held-out accuracy (greedy decoding, each row's verifier on the decoded text; overall and
//     per task kind) before any stage
//   5 each stage: pretrain / sft (pipeline::sft_step) / rl (pipeline::rl_step with the named
//     algorithm and conventions) / dpo (online DPO: pipeline::online_preference_pairs +
//     preference_step); metrics JSONL per step; mid-stage checkpoints with the optimizer state
//     every checkpoint_every steps and on Ctrl-C (checkpoint.hpp: one begin() before and one
//     after_step() in each stage's loop); checkpoint (HF layout, atomic) after the stage;
//     held-out accuracy after the stage
//   6 the summary table
// Errors (bad flag, missing file, bad JSONL row, unknown algorithm, wrong-typed recipe field) are
// one line on stderr and exit code 2; nothing in OUT is overwritten before the inputs are read.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <posttrain/algo.hpp>
#include <posttrain/pipeline.hpp>
#include <posttrain/pipeline/jsonl.hpp>
#include <posttrain/reward.hpp>

#include "adapters.hpp"
#include "checkpoint.hpp"
#include "distributed.hpp"
#include "plot.hpp"
#include "recipe.hpp"
#include "task.hpp"

namespace rt = reference_trainer;
namespace fs = std::filesystem;
using S = float;
using rt::index_t;
using rt::pp::byte_tokenizer;

namespace {

std::atomic<bool> g_interrupted{false};
rt::trainer_communicator g_comm;  // set in main(): MPI under a launcher, else one process
extern "C" void on_sigint(int) { g_interrupted = true; }

// A user error: printed as one line, exit code 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ------------------------------------------------------------------------------------ output
// Progress on a terminal (one rewritten line), plain lines otherwise, nothing with --quiet. The
// metrics JSONL gets every step regardless.
class reporter {
 public:
  // append: a resumed run continues the metrics of the run it resumes.
  reporter(bool quiet, const fs::path& metrics, bool append)
      : quiet_(quiet), tty_(::isatty(STDERR_FILENO) == 1),
        metrics_(metrics, append ? std::ios::app : std::ios::trunc) {
    if (!metrics_) throw usage_error("cannot write " + metrics.string());
  }
  void log(const std::string& line) {
    if (quiet_) return;
    end_bar();
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  void record(const nlohmann::json& j) { metrics_ << j.dump() << '\n' << std::flush; }
  void stage_start(const std::string& name, long total) {
    stage_ = name;
    total_ = total;
    t0_ = clock::now();
    tokens_ = 0;
  }
  // One step done: show step/total, ETA, tokens/s and the live numbers.
  void step(long done, double tokens, const std::string& live) {
    tokens_ += tokens;
    if (quiet_) return;
    const double el = seconds();
    const double eta = done > 0 ? el / static_cast<double>(done) * static_cast<double>(total_ - done) : 0;
    char head[160];
    std::snprintf(head, sizeof head, "[%s] %ld/%ld  %4.0fs elapsed, ETA %4.0fs  %6.0f tok/s  ",
                  stage_.c_str(), done, total_, el, eta, el > 0 ? tokens_ / el : 0.0);
    if (tty_) {
      const int width = 20;
      const int fill = total_ > 0 ? static_cast<int>(width * done / total_) : width;
      std::string bar(static_cast<std::size_t>(fill), '#');
      bar.resize(width, '.');
      std::fprintf(stderr, "\r\033[K%s|%s| %s", head, bar.c_str(), live.c_str());
      bar_open_ = true;
    } else {
      const long every = std::max(1L, total_ / 10);
      if (done % every == 0 || done == total_) std::fprintf(stderr, "%s%s\n", head, live.c_str());
    }
  }
  void end_bar() {
    if (bar_open_) std::fprintf(stderr, "\n");
    bar_open_ = false;
  }
  double seconds() const { return std::chrono::duration<double>(clock::now() - t0_).count(); }
  bool quiet() const { return quiet_; }

 private:
  using clock = std::chrono::steady_clock;
  bool quiet_, tty_, bar_open_ = false;
  std::ofstream metrics_;
  std::string stage_;
  long total_ = 0;
  double tokens_ = 0;
  clock::time_point t0_ = clock::now();
};

// ------------------------------------------------------------------------------------ data
struct dataset {
  std::vector<std::string> pretrain;
  std::vector<rt::pp::sft_example> sft;
  std::vector<rt::pp::rlvr_example> rl, eval;
};

// Renders an RLVR row as the prompt the model answers: the chat up to the assistant header.
struct prompt_set {
  rt::pp::owned_sequences prompts;
  std::vector<rt::pp::example_info> examples;
};

prompt_set render_prompts(const std::vector<rt::pp::rlvr_example>& rows, std::span<const std::size_t> pick) {
  const byte_tokenizer tok;
  prompt_set p;
  for (std::size_t i : pick) {
    const auto r = rt::pp::render_chat(tok, std::span<const rt::pp::message>(rows[i].messages), {}, true);
    p.prompts.append(r.tokens);
    p.prompts.ids.push_back(i);
    p.examples.push_back({i, rows[i].ground_truth, rows[i].verifier});
  }
  return p;
}

// Seeded choice of `n` row indices for step `step` of stage `stage`: a function of (seed, stage,
// step) only, so a run's batches do not depend on how it was split into invocations.
std::vector<std::size_t> batch_rows(std::uint64_t seed, std::size_t stage, long step, long n,
                                    std::size_t rows) {
  rt::pp::generate::sample_rng rng(rt::pp::sample_seed(seed ^ (0xba7c400ull + stage), static_cast<std::uint64_t>(step)));
  std::vector<std::size_t> out;
  for (long i = 0; i < n; ++i) out.push_back(static_cast<std::size_t>(rng.next() % rows));
  return out;
}

// Every task kind's verifier; each sample is scored by the one its row names (task.hpp).
using reward_t = rt::pp::reward::verifiers<byte_tokenizer, posttrain::reward::gsm8k_verifier,
                                           posttrain::reward::math_verifier, rt::tasks::ifeval_en_verifier>;

// ------------------------------------------------------------------------------------ eval
struct eval_result {
  double accuracy = 0, mean_length = 0;
  std::map<std::string, double> by_task;  // mean score per task kind (verifier)
  std::string sample;  // the first completion, for the log
};

// Greedy decoding of every held-out prompt, scored by the verifier its row names (gsm8k, math,
// ifeval) on the decoded text; accuracy = mean score, overall and per task kind.
eval_result evaluate(const rt::policy<S>& policy, const dataset& d, long max_new_tokens) {
  std::vector<std::size_t> all(d.eval.size());
  std::iota(all.begin(), all.end(), std::size_t{0});
  const prompt_set p = render_prompts(d.eval, all);
  rt::rm::sampling_options o;
  o.temperature = 0;
  o.max_new_tokens = max_new_tokens;
  o.stop_tokens = {byte_tokenizer::end_of_turn};
  const std::vector<std::uint64_t> seeds(all.size(), 0);
  const auto out = rt::rm::generate(policy.model(), p.prompts.tokens, p.prompts.seq_offsets, seeds, o);
  const byte_tokenizer tok;
  eval_result r;
  std::map<std::string, double> count;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const std::string text = tok.decode(out[i].tokens);
    const double score = rt::verify(d.eval[i].verifier, text, d.eval[i].ground_truth);
    r.accuracy += score;
    r.by_task[d.eval[i].verifier] += score;
    count[d.eval[i].verifier] += 1;
    r.mean_length += static_cast<double>(out[i].tokens.size());
    if (i == 0) r.sample = text;
  }
  for (auto& [k, v] : r.by_task) v /= count[k];
  r.accuracy /= static_cast<double>(out.size());
  r.mean_length /= static_cast<double>(out.size());
  return r;
}

// ------------------------------------------------------------------------------------ stages
struct context {
  const rt::recipe& recipe;
  const dataset& data;
  rt::policy<S>& policy;
  reporter& out;
  std::size_t stage_index = 0;
  std::string conventions;
  rt::stage_checkpointer* ckpt = nullptr;  // checkpoint.hpp: begin / after_step hooks of each loop
  rt::trainer_communicator* comm = nullptr;  // distributed.hpp: this rank's share, the all-reduces
};

// Ctrl-C received: the checkpointer saves the steps done and throws rt::interrupted.
void check_interrupt(context& c, long step) { c.ckpt->before_step(step); }

rt::pt::optim::adamw make_optimizer(const rt::stage_options& s) {
  return rt::pt::optim::adamw({.lr = s.lr, .weight_decay = s.weight_decay});
}

// pretrain: next-token prediction on the plain-text corpus (every token but the first trained).
void run_pretrain(context& c, const rt::stage_options& s) {
  auto opt = make_optimizer(s);
  const byte_tokenizer tok;
  rt::pp::sft_step_options<rt::pt::algo::sft> o;
  o.max_grad_norm = s.max_grad_norm;
  for (long step = c.ckpt->begin({{c.policy.parameters(), &opt}}); step <= s.steps; ++step) {
    check_interrupt(c, step);
    rt::pp::owned_sequences seqs;
    std::vector<float> mask;
    for (std::size_t i : c.comm->shard(batch_rows(c.recipe.seed, c.stage_index, step, s.batch, c.data.pretrain.size()))) {
      std::vector<index_t> ids{byte_tokenizer::bos};
      const auto body = tok.encode(c.data.pretrain[i]);
      ids.insert(ids.end(), body.begin(), body.end());
      ids.push_back(byte_tokenizer::eos);
      seqs.append(ids);
      mask.push_back(0.0f);
      mask.insert(mask.end(), ids.size() - 1, 1.0f);
    }
    const auto m = rt::pp::sft_step<rt::pt::algo::sft>(c.policy, opt, {seqs.view(), mask}, o, *c.comm);
    c.out.record({{"stage", "pretrain"}, {"stage_index", c.stage_index}, {"step", step},
                  {"loss", m.loss}, {"grad_norm", m.grad_norm}, {"tokens", m.tokens},
                  {"time_s", c.out.seconds()}});
    char live[64];
    std::snprintf(live, sizeof live, "loss %.4f", m.loss);
    c.out.step(step, static_cast<double>(seqs.tokens.size()), live);
    c.ckpt->after_step(step);
  }
}

// sft: chat-formatted prompt/answer pairs, prompt tokens masked (Llama 3); Loss = algo::sft
// (token mean) or algo::sft_sum (Tülu 3's sum loss).
template <class Loss>
void run_sft(context& c, const rt::stage_options& s) {
  auto opt = make_optimizer(s);
  const byte_tokenizer tok;
  rt::pp::sft_step_options<Loss> o;
  o.max_grad_norm = s.max_grad_norm;
  for (long step = c.ckpt->begin({{c.policy.parameters(), &opt}}); step <= s.steps; ++step) {
    check_interrupt(c, step);
    std::vector<rt::pp::sft_example> batch;
    for (std::size_t i : c.comm->shard(batch_rows(c.recipe.seed, c.stage_index, step, s.batch, c.data.sft.size())))
      batch.push_back(c.data.sft[i]);
    const auto packed = rt::pp::pack_sft(tok, std::span<const rt::pp::sft_example>(batch));
    const auto m = rt::pp::sft_step<Loss>(c.policy, opt, {packed.sequences.view(), packed.loss_mask}, o, *c.comm);
    c.out.record({{"stage", "sft"}, {"stage_index", c.stage_index}, {"step", step},
                  {"loss", m.loss}, {"grad_norm", m.grad_norm}, {"tokens", m.tokens},
                  {"time_s", c.out.seconds()}});
    char live[64];
    std::snprintf(live, sizeof live, "loss %.4f", m.loss);
    c.out.step(step, static_cast<double>(packed.sequences.tokens.size()), live);
    c.ckpt->after_step(step);
  }
}

// rs_sft: rejection sampling (pipeline::rejection_sampling: best of N per prompt by the
// verifier, first argmax) from the current policy, then one SFT step on the kept samples that the
// verifier accepts (DeepSeek-V3's "SFT data filtered by rejection sampling", Llama 3's RS).
template <class Loss>
void run_rs_sft(context& c, const rt::stage_options& s) {
  auto opt = make_optimizer(s);
  rt::generator<S> gen(c.policy);
  reward_t reward{};
  rt::pp::sft_step_options<Loss> o;
  o.max_grad_norm = s.max_grad_norm;
  for (long step = c.ckpt->begin({{c.policy.parameters(), &opt}}); step <= s.steps; ++step) {
    check_interrupt(c, step);
    const auto rows = batch_rows(c.recipe.seed, c.stage_index, step, s.prompts, c.data.rl.size());
    const prompt_set p = render_prompts(c.data.rl, rows);
    rt::pp::sampling_request req;
    req.prompts = p.prompts.view();
    req.examples = p.examples;
    req.samples_per_prompt = s.samples;
    req.sampling.temperature = s.temperature;
    req.sampling.max_new_tokens = s.max_new_tokens;
    req.sampling.stop_tokens = {byte_tokenizer::end_of_turn};
    req.seed = rt::pp::sample_seed(c.recipe.seed + c.stage_index, static_cast<std::uint64_t>(step));
    const auto best = rt::pp::rejection_sampling(gen, reward, req, c.policy.vocab_size());
    // Keep only accepted samples (reward > 0): a wrong best-of-N is not SFT data.
    rt::pp::owned_sequences kept;
    std::vector<float> mask;
    const auto all = best.sequences.view();
    for (std::size_t i = 0; i < best.best_reward.size(); ++i) {
      if (!(best.best_reward[i] > 0)) continue;
      const auto b0 = all.seq_offsets[i], b1 = all.seq_offsets[i + 1];
      kept.append(all.tokens.subspan(b0, b1 - b0));
      mask.insert(mask.end(), best.loss_mask.begin() + b0, best.loss_mask.begin() + b1);
    }
    double mean_reward = 0;
    for (double r : best.samples.rewards) mean_reward += r;
    mean_reward /= static_cast<double>(best.samples.rewards.size());
    nlohmann::json rec{{"stage", "rs_sft"}, {"stage_index", c.stage_index}, {"step", step},
                       {"reward", mean_reward}, {"kept", kept.num_sequences()},
                       {"time_s", c.out.seconds()}};
    char live[96];
    std::snprintf(live, sizeof live, "reward %.3f  kept %ld/%ld", mean_reward,
                  static_cast<long>(kept.num_sequences()), s.prompts);
    if (kept.num_sequences() > 0) {
      const auto m = rt::pp::sft_step<Loss>(c.policy, opt, {kept.view(), mask}, o);
      rec["loss"] = m.loss;
      rec["grad_norm"] = m.grad_norm;
    }
    c.out.record(rec);
    c.out.step(step, static_cast<double>(best.samples.out.completions.tokens.size()), live);
    c.ckpt->after_step(step);
  }
}

// The preset of recipe R under the named conventions; an algorithm a peer does not have is an
// error naming the conventions it does have.
template <class R>
typename R::preset_type preset_for(const std::string& conv, const std::string& algo) {
  std::string have;
  if constexpr (requires { R::trl(); }) {
    if (conv == "trl") return R::trl();
    have += " trl";
  }
  if constexpr (requires { R::verl(); }) {
    if (conv == "verl") return R::verl();
    have += " verl";
  }
  if constexpr (requires { R::openrlhf(); }) {
    if (conv == "openrlhf") return R::openrlhf();
    have += " openrlhf";
  }
  if constexpr (requires { R::open_instruct(); }) {
    if (conv == "open_instruct") return R::open_instruct();
    have += " open_instruct";
  }
  throw usage_error("algorithm " + algo + " has no " + conv + " conventions; it has:" + have);
}

// The conventions recipe R has presets for, e.g. "trl verl".
template <class R>
std::string conventions_of() {
  std::string have;
  if constexpr (requires { R::trl(); }) have += " trl";
  if constexpr (requires { R::verl(); }) have += " verl";
  if constexpr (requires { R::openrlhf(); }) have += " openrlhf";
  if constexpr (requires { R::open_instruct(); }) have += " open_instruct";
  return have;
}

// rl: pipeline::rl_step with recipe R (its loss, its estimator, the conventions' preset).
template <class R>
void run_rl(context& c, const rt::stage_options& s) {
  using E = typename R::advantage;
  auto preset = preset_for<R>(c.conventions, s.algo);
  auto opt = make_optimizer(s);
  rt::pp::reference::frozen<rt::policy<S>> reference(c.policy);  // KL anchor: the policy now
  rt::generator<S> gen(c.policy);
  reward_t reward{};
  rt::pp::rl_step_options<R, E> o;
  o.loss = preset.loss;
  o.estimator = preset.advantage;
  if constexpr (requires { o.loss.policy.kl_coef; })
    if (s.kl_coef > 0) o.loss.policy.kl_coef = s.kl_coef;
  o.samples_per_prompt = s.samples;
  o.epochs = s.epochs;
  o.mini_batch = s.mini_batch;
  o.max_grad_norm = s.max_grad_norm;
  o.sampling.temperature = s.temperature;
  o.sampling.max_new_tokens = s.max_new_tokens;
  o.sampling.stop_tokens = {byte_tokenizer::end_of_turn};
  o.temperature = s.temperature;
  // Constant-divisor aggregations (Dr. GRPO, TRL's dr_grpo) divide by the generation budget.
  o.normalizer_constant = static_cast<double>(s.max_new_tokens);
  // PPO's GAE reads values: a critic, initialised from the policy's trunk (Tülu 3 initialises it
  // from the reward model; the trunk is the nearest thing this recipe has).
  std::optional<rt::critic<S>> critic;
  std::optional<rt::pt::optim::adamw> critic_opt;
  if constexpr (E::contract.values) {
    critic.emplace(c.policy.model());
    critic_opt.emplace(make_optimizer(s));
  }
  std::vector<rt::trainable> trained{{c.policy.parameters(), &opt}};
  if (critic) trained.push_back({critic->parameters(), &*critic_opt});
  for (long step = c.ckpt->begin(trained); step <= s.steps; ++step) {
    check_interrupt(c, step);
    const auto rows = c.comm->shard(batch_rows(c.recipe.seed, c.stage_index, step, s.prompts, c.data.rl.size()));
    const prompt_set p = render_prompts(c.data.rl, rows);
    o.seed = rt::pp::sample_seed(c.recipe.seed + c.stage_index, static_cast<std::uint64_t>(step));
    o.first_sample_index = c.comm->first_row(static_cast<std::size_t>(s.prompts)) * static_cast<std::size_t>(s.samples);
    const rt::pp::rl_batch batch{p.prompts.view(), p.examples};
    rt::pp::rl_metrics m;
    if constexpr (E::contract.values)
      m = rt::pp::rl_step<R, E>(c.policy, gen, reference, reward, opt, *critic, *critic_opt, batch,
                                o, *c.comm);
    else
      m = rt::pp::rl_step<R, E>(c.policy, gen, reference, reward, opt, batch, o, *c.comm);
    c.out.record({{"stage", "rl"}, {"algo", s.algo}, {"stage_index", c.stage_index}, {"step", step},
                  {"reward", m.reward_mean}, {"loss", m.loss}, {"kl", m.kl_loss},
                  {"approx_kl", m.approx_kl}, {"clip_fraction", m.clip_fraction},
                  {"value_loss", m.value_loss}, {"grad_norm", m.grad_norm},
                  {"completion_tokens", m.completion_tokens},
                  {"response_length", m.completion_tokens / static_cast<double>(s.prompts * s.samples)},
                  {"truncated", m.truncated_fraction}, {"time_s", c.out.seconds()}});
    char live[96];
    std::snprintf(live, sizeof live, "reward %.3f  loss %+.4f  kl(ref) %.4f", m.reward_mean, m.loss,
                  m.kl_loss);
    c.out.step(step, static_cast<double>(p.prompts.tokens.size()) + m.completion_tokens, live);
    c.ckpt->after_step(step);
  }
}

// dpo: online DPO (Qwen 2): N samples per prompt from the current policy, the verifier picks the
// best and worst (all-equal groups dropped), one preference_step<R> on those pairs.
template <class R>
void run_dpo(context& c, const rt::stage_options& s) {
  auto opt = make_optimizer(s);
  rt::pp::reference::frozen<rt::policy<S>> reference(c.policy);
  rt::generator<S> gen(c.policy);
  reward_t reward{};
  rt::pp::preference_step_options<R> o;
  if constexpr (requires { R::defaults(); }) o.loss = R::defaults().loss;
  if constexpr (requires { o.loss.beta; }) o.loss.beta = s.beta;
  o.max_grad_norm = s.max_grad_norm;
  for (long step = c.ckpt->begin({{c.policy.parameters(), &opt}}); step <= s.steps; ++step) {
    check_interrupt(c, step);
    const auto rows = batch_rows(c.recipe.seed, c.stage_index, step, s.prompts, c.data.rl.size());
    const prompt_set p = render_prompts(c.data.rl, rows);
    rt::pp::sampling_request req;
    req.prompts = p.prompts.view();
    req.examples = p.examples;
    req.samples_per_prompt = s.samples;
    req.sampling.temperature = s.temperature;
    req.sampling.max_new_tokens = s.max_new_tokens;
    req.sampling.stop_tokens = {byte_tokenizer::end_of_turn};
    req.seed = rt::pp::sample_seed(c.recipe.seed + c.stage_index, static_cast<std::uint64_t>(step));
    const auto pairs = rt::pp::online_preference_pairs(gen, reward, req, c.policy.vocab_size());
    double mean_reward = 0;
    for (double r : pairs.samples.rewards) mean_reward += r;
    mean_reward /= static_cast<double>(pairs.samples.rewards.size());
    nlohmann::json rec{{"stage", "dpo"}, {"algo", s.algo}, {"stage_index", c.stage_index},
                       {"step", step}, {"reward", mean_reward}, {"pairs", pairs.prompt.size()},
                       {"time_s", c.out.seconds()}};
    char live[96];
    if (pairs.prompt.empty()) {
      // Every group all-correct or all-wrong: no preference signal this step.
      std::snprintf(live, sizeof live, "reward %.3f  no pairs", mean_reward);
    } else {
      const auto m = rt::pp::preference_step<R>(
          c.policy, reference, opt,
          {pairs.chosen.view(), pairs.rejected.view(), pairs.chosen_mask, pairs.rejected_mask}, o);
      rec["loss"] = m.loss;
      rec["reward_margin"] = m.reward_margin;
      rec["reward_accuracy"] = m.reward_accuracy;
      rec["grad_norm"] = m.grad_norm;
      std::snprintf(live, sizeof live, "reward %.3f  pairs %zu  loss %.4f", mean_reward,
                    pairs.prompt.size(), m.loss);
    }
    c.out.record(rec);
    c.out.step(step, static_cast<double>(pairs.samples.out.completions.tokens.size()), live);
    c.ckpt->after_step(step);
  }
}

using stage_fn = void (*)(context&, const rt::stage_options&);

const std::map<std::string, stage_fn>& online_algorithms() {
  namespace algo = posttrain::algo;
  static const std::map<std::string, stage_fn> m{
      {"grpo", &run_rl<algo::grpo>},         {"dr_grpo", &run_rl<algo::dr_grpo>},
      {"dapo", &run_rl<algo::dapo>},         {"gspo", &run_rl<algo::gspo>},
      {"cispo", &run_rl<algo::cispo>},       {"rloo", &run_rl<algo::rloo>},
      {"reinforce_pp", &run_rl<algo::reinforce_pp>}, {"ppo", &run_rl<algo::ppo>},
  };
  return m;
}

// Checked before anything runs: each online algorithm's presets (same keys as above).
const std::map<std::string, std::string (*)()>& online_conventions() {
  namespace algo = posttrain::algo;
  static const std::map<std::string, std::string (*)()> m{
      {"grpo", &conventions_of<algo::grpo>},         {"dr_grpo", &conventions_of<algo::dr_grpo>},
      {"dapo", &conventions_of<algo::dapo>},         {"gspo", &conventions_of<algo::gspo>},
      {"cispo", &conventions_of<algo::cispo>},       {"rloo", &conventions_of<algo::rloo>},
      {"reinforce_pp", &conventions_of<algo::reinforce_pp>}, {"ppo", &conventions_of<algo::ppo>},
  };
  return m;
}

const std::map<std::string, stage_fn>& offline_algorithms() {
  namespace algo = posttrain::algo;
  static const std::map<std::string, stage_fn> m{
      {"dpo", &run_dpo<algo::dpo>},
      {"ipo", &run_dpo<algo::ipo>},
      {"simpo", &run_dpo<algo::simpo>},
      {"dpo_nll", &run_dpo<algo::dpo_nll>},
      {"dpo_length_normalized", &run_dpo<algo::dpo_length_normalized>},
  };
  return m;
}

std::string names_of(const std::map<std::string, stage_fn>& m) {
  std::string s;
  for (const auto& [k, v] : m) s += (s.empty() ? "" : ", ") + k;
  return s;
}

// ------------------------------------------------------------------------------------ checkpoints
// HF layout (config.json + model.safetensors) written into a temporary directory that is renamed
// into place: a reader never sees half a checkpoint directory.
void save_stage_checkpoint(const rt::policy<S>& p, const fs::path& dir, const nlohmann::json& state) {
  const fs::path tmp = dir.string() + ".tmp";
  fs::remove_all(tmp);
  rt::rm::save_checkpoint(p.model(), tmp);
  {
    std::ofstream out(tmp / "trainer_state.json");
    out << state.dump(2) << '\n';
  }
  fs::remove_all(dir);
  fs::rename(tmp, dir);
}

// The mid-stage checkpoint directory of stage K (checkpoint.hpp).
std::string mid_dir_name(std::size_t k, const std::string& stage) {
  return "midstage" + std::to_string(k) + "_" + stage;
}

// ------------------------------------------------------------------------------------ CLI
struct cli {
  std::string recipe, algo, conventions, out = "reference_trainer_out", data, init;
  bool quiet = false, resume = false, check = false;
  long threads = -1;
};

const char* const usage_text =
    "usage: reference_trainer --recipe FILE.json [--algo NAME] [--conventions verl|trl|openrlhf|open_instruct]\n"
    "                         [--out DIR] [--data DIR] [--init CHECKPOINT_DIR] [--threads N] [--quiet]\n"
    "  --recipe       a JSON recipe (examples/reference_trainer/recipes/)\n"
    "  --algo         the algorithm of the recipe's rl (online) or dpo (offline) stages\n"
    "  --conventions  whose defaults the algorithm's preset follows (default: the recipe's, else trl)\n"
    "  --out          output directory: data/, checkpoints/, metrics.jsonl, summary.txt\n"
    "  --data         read pretrain.jsonl, sft.jsonl, rl.jsonl, eval.jsonl from DIR instead of generating\n"
    "  --init         start from this HF checkpoint (config.json + model.safetensors) instead of a\n"
    "                 random init; its vocabulary must be the byte tokenizer's (261)\n"
    "  --threads      GEMM threads (0 = all cores)\n"
    "  --quiet        no progress output, only the summary table\n"
    "  --check        validate the recipe, algorithm and conventions, then exit (writes nothing)\n"
    "  --resume       continue the run in --out from its last checkpoint: a completed stage's, or\n"
    "                 the next stage's mid-stage one (checkpoint_every, Ctrl-C); parameters,\n"
    "                 AdamW state and data position are restored, so the result equals an\n"
    "                 uninterrupted run byte for byte\n"
    "\n"
    "       reference_trainer plot RUN_DIR [PLOTS_DIR] [--script-only]\n"
    "  renders RUN_DIR/metrics.jsonl as PNGs with gnuplot (reward, held-out accuracy, KL, loss,\n"
    "  response length by step; stage boundaries marked) into PLOTS_DIR (default RUN_DIR/plots);\n"
    "  --script-only writes the data and the gnuplot script without rendering. Exit code 3 when\n"
    "  gnuplot is not installed (apt-get install gnuplot-nox).\n"
    "\n"
    "       reference_trainer compare RUN_A RUN_B [--tolerance T]\n"
    "  the per-step loss / reward / KL and held-out accuracies of two runs (e.g. one process and\n"
    "  mpirun -np 2); exit code 1 when one differs by more than T*max(1,|value|) (default 1e-4)\n"
    "\n"
    "  Under mpirun / mpiexec (an MPI build) the trainer runs data-parallel: each rank trains on\n"
    "  its share of every batch; rank 0 writes the outputs.\n";

cli parse_cli(int argc, char** argv) {
  cli c;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw usage_error("option " + a + " needs a value (see --help)");
      return argv[++i];
    };
    if (a == "--recipe") c.recipe = value();
    else if (a == "--algo") c.algo = value();
    else if (a == "--conventions") c.conventions = value();
    else if (a == "--out") c.out = value();
    else if (a == "--data") c.data = value();
    else if (a == "--init") c.init = value();
    else if (a == "--quiet") c.quiet = true;
    else if (a == "--resume") c.resume = true;
    else if (a == "--check") c.check = true;
    else if (a == "--threads") {
      const std::string v = value();
      char* end = nullptr;
      c.threads = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || c.threads < 0) throw usage_error("--threads " + v + ": expected an integer >= 0");
    } else if (a == "-h" || a == "--help") {
      std::fputs(usage_text, stdout);
      std::exit(0);
    } else
      throw usage_error("unknown option " + a + " (see --help)");
  }
  if (c.recipe.empty()) throw usage_error("--recipe FILE.json is required (see --help)");
  return c;
}

dataset load_data(const fs::path& dir) {
  dataset d;
  for (const char* f : {"pretrain.jsonl", "sft.jsonl", "rl.jsonl", "eval.jsonl"})
    if (!fs::exists(dir / f)) throw usage_error("missing data file " + (dir / f).string());
  d.pretrain = rt::read_text_jsonl((dir / "pretrain.jsonl").string());
  d.sft = rt::pp::read_sft_jsonl((dir / "sft.jsonl").string());
  d.rl = rt::pp::read_rlvr_jsonl((dir / "rl.jsonl").string());
  d.eval = rt::pp::read_rlvr_jsonl((dir / "eval.jsonl").string());
  auto nonempty = [&](std::size_t n, const char* f) {
    if (n == 0) throw usage_error((dir / f).string() + " has no rows");
  };
  nonempty(d.pretrain.size(), "pretrain.jsonl");
  nonempty(d.sft.size(), "sft.jsonl");
  nonempty(d.rl.size(), "rl.jsonl");
  nonempty(d.eval.size(), "eval.jsonl");
  for (const auto* rows : {&d.rl, &d.eval})
    for (const auto& r : *rows)
      if (std::find(rt::task_kinds().begin(), rt::task_kinds().end(), r.verifier) == rt::task_kinds().end())
        throw usage_error("data row names verifier \"" + r.verifier + "\"; this trainer scores with: gsm8k, ifeval, math");
  return d;
}

rt::rm::model_config model_config_of(const rt::recipe& r) {
  rt::rm::model_config c;
  c.arch = r.model.arch == "qwen2" ? rt::rm::architecture::qwen2 : rt::rm::architecture::llama;
  c.vocab_size = byte_tokenizer::size;
  c.hidden_size = r.model.hidden_size;
  c.intermediate_size = r.model.intermediate_size;
  c.num_hidden_layers = r.model.layers;
  c.num_attention_heads = r.model.heads;
  c.num_key_value_heads = r.model.kv_heads;
  c.tie_word_embeddings = r.model.tie_word_embeddings;
  c.bos_token_id = byte_tokenizer::bos;
  c.eos_token_id = byte_tokenizer::eos;
  c.max_position_embeddings = 512;
  return c;
}

// `reference_trainer plot RUN_DIR [PLOTS_DIR] [--script-only]` (plot.hpp).
int run_plot(int argc, char** argv) {
  std::vector<std::string> pos;
  bool script_only = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--script-only") script_only = true;
    else if (a == "-h" || a == "--help") {
      std::fputs(usage_text, stdout);
      return 0;
    } else if (!a.empty() && a[0] == '-') throw usage_error("plot: unknown option " + a + " (see --help)");
    else pos.push_back(a);
  }
  if (pos.empty() || pos.size() > 2) throw usage_error("plot: expected RUN_DIR [PLOTS_DIR] (see --help)");
  if (!fs::exists(fs::path(pos[0]) / "metrics.jsonl"))
    throw usage_error("plot: no metrics.jsonl in " + pos[0] + " (expected the --out of a trainer run)");
  return rt::plot::run(pos[0], pos.size() > 1 ? fs::path(pos[1]) : fs::path(), script_only);
}

int run(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "plot") return run_plot(argc, argv);
  if (argc > 1 && std::string(argv[1]) == "compare") {
    // compare RUN_A RUN_B [--tolerance T] (plot.hpp): e.g. one process against mpirun -np 2.
    if (argc != 4 && !(argc == 6 && std::string(argv[4]) == "--tolerance"))
      throw usage_error("compare: expected RUN_A RUN_B [--tolerance T]");
    return rt::plot::compare(argv[2], argv[3], argc == 6 ? std::atof(argv[5]) : 1e-4);
  }
  // Installed first: a shell starts background jobs with SIGINT ignored, and a signal that arrives
  // before the handler would otherwise be lost. The flag is read between steps.
  std::signal(SIGINT, on_sigint);
  // 1 recipe and flags, all checked before anything is written.
  const cli args = parse_cli(argc, argv);
  rt::recipe recipe = rt::read_recipe(args.recipe);
  const std::string conventions = !args.conventions.empty() ? args.conventions : recipe.conventions;
  static const std::set<std::string> known_conventions{"verl", "trl", "openrlhf", "open_instruct"};
  if (!known_conventions.count(conventions))
    throw usage_error("unknown conventions \"" + conventions + "\"; valid: open_instruct, openrlhf, trl, verl");
  // --algo replaces the algorithm of the stages of its kind (online → rl, offline → dpo).
  const bool algo_online = online_algorithms().count(args.algo) > 0;
  const bool algo_offline = offline_algorithms().count(args.algo) > 0;
  if (!args.algo.empty() && !algo_online && !algo_offline)
    throw usage_error("unknown algorithm \"" + args.algo + "\"; online: " + names_of(online_algorithms()) +
                      "; offline: " + names_of(offline_algorithms()));
  bool applied = false;
  for (auto& s : recipe.stages) {
    if (s.stage != "rl" && s.stage != "dpo") continue;
    if ((s.stage == "rl" && algo_online) || (s.stage == "dpo" && algo_offline)) {
      s.algo = args.algo;
      applied = true;
    }
    const auto& table = s.stage == "rl" ? online_algorithms() : offline_algorithms();
    if (!table.count(s.algo))
      throw usage_error("unknown " + std::string(s.stage == "rl" ? "online" : "offline") +
                        " algorithm \"" + s.algo + "\" in " + recipe.file + "; valid: " + names_of(table));
    if (s.stage == "rl") {
      const std::string have = online_conventions().at(s.algo)();
      if ((have + " ").find(" " + conventions + " ") == std::string::npos)
        throw usage_error("algorithm " + s.algo + " has no " + conventions + " conventions; it has:" + have);
    }
  }
  if (!args.algo.empty() && !applied)
    throw usage_error("--algo " + args.algo + " is an " + (algo_online ? "online" : "offline") +
                      " algorithm but " + recipe.file + " has no " + (algo_online ? "rl" : "dpo") +
                      " stage to run it in");
  // Data parallelism (distributed.hpp): each rank takes an equal share of every batch.
  if (g_comm.size() > 1)
    for (std::size_t i = 0; i < recipe.stages.size(); ++i) {
      const auto& s = recipe.stages[i];
      const std::string where = "stages[" + std::to_string(i) + "] (" + s.stage + ")";
      if (s.stage == "rs_sft" || s.stage == "dpo")
        throw usage_error(where + " does not run data-parallel yet (pretrain, sft and rl do); run it in one process");
      const long n = s.stage == "rl" ? s.prompts : s.batch;
      if (n % g_comm.size() != 0)
        throw usage_error(where + ": " + (s.stage == "rl" ? "prompts " : "batch ") + std::to_string(n) +
                          " does not divide by the " + std::to_string(g_comm.size()) + " ranks");
    }
  if (!rt::built_with_mpi() && rt::launched_by_mpi())
    std::fprintf(stderr, "reference_trainer: warning: started by an MPI launcher but built without MPI; "
                         "every process trains alone\n");
  if (args.check) {
    if (g_comm.rank() == 0) std::printf("%s: ok (%zu stages)\n", recipe.file.c_str(), recipe.stages.size());
    return 0;
  }
  if (args.threads >= 0) recipe.threads = args.threads;
  rt::rm::set_num_threads(static_cast<int>(recipe.threads));

  const fs::path out(args.out);
  // --resume: the last stage whose checkpoint (with trainer_state.json) is complete. The stage
  // directories are renamed into place whole, so a present one is a complete one.
  std::size_t resume_after = 0;
  fs::path resume_dir, resume_mid;
  if (args.resume) {
    if (!fs::is_directory(out / "checkpoints"))
      throw usage_error("--resume: " + (out / "checkpoints").string() + " does not exist (nothing to resume)");
    for (std::size_t i = 0; i < recipe.stages.size(); ++i) {
      const fs::path d = out / "checkpoints" / ("stage" + std::to_string(i + 1) + "_" + recipe.stages[i].stage);
      if (!fs::exists(d / "trainer_state.json")) break;
      resume_after = i + 1;
      resume_dir = d;
    }
    // A mid-stage checkpoint of the next stage (checkpoint.hpp) continues inside that stage.
    if (resume_after < recipe.stages.size()) {
      const fs::path m = out / "checkpoints" / mid_dir_name(resume_after + 1, recipe.stages[resume_after].stage);
      if (fs::exists(m / "trainer_state.json")) resume_mid = m;
    }
    if (resume_after == 0 && resume_mid.empty())
      throw usage_error("--resume: no completed stage checkpoint of this recipe in " + (out / "checkpoints").string());
  }

  // 2 data: read (and validated) before the output directory is touched.
  const std::string data_dir = !args.data.empty() ? args.data : recipe.data;
  dataset data;
  if (!data_dir.empty()) {
    data = load_data(data_dir);
  } else if (args.resume && fs::exists(out / "data")) {
    data = load_data(out / "data");
  } else {
    // Rank 0 writes the files; every rank reads them back once they are there.
    if (g_comm.rank() == 0) {
      const auto split = rt::make_split(recipe.task, static_cast<std::size_t>(recipe.train_size),
                                        static_cast<std::size_t>(recipe.eval_size));
      rt::write_task_files(split, out / "data");
    }
    g_comm.barrier();
    data = load_data(out / "data");
  }
  const bool writer = g_comm.rank() == 0;  // metrics, checkpoints, summary: rank 0 only
  if (writer) fs::create_directories(out / "checkpoints");
  std::optional<rt::mid_state> mid;
  if (!resume_mid.empty()) mid = rt::read_mid_state(resume_mid);
  // A resumed run drops the metrics lines of the steps it runs again.
  if (args.resume && writer) rt::trim_metrics(out / "metrics.jsonl", resume_after + 1, mid ? mid->step : 0);
  reporter rep(args.quiet || !writer, writer ? out / "metrics.jsonl" : fs::path("/dev/null"), args.resume);

  // 3 model
  rt::rm::transformer<S> model(model_config_of(recipe));
  if (!resume_mid.empty()) {
    // The stage restarts from its start parameters; begin() restores the rest (checkpoint.hpp).
    model = rt::rm::load_checkpoint<S>(resume_mid);
    auto p = model.parameters();
    if (mid->stage_start.size() != p.size())
      throw usage_error(resume_mid.string() + ": state.bin does not match its model");
    std::copy(mid->stage_start.begin(), mid->stage_start.end(), p.begin());
  } else if (args.resume) {
    model = rt::rm::load_checkpoint<S>(resume_dir);
  } else if (!args.init.empty()) {
    if (!fs::exists(fs::path(args.init) / "config.json"))
      throw usage_error("--init " + args.init + ": no config.json there (expected an HF checkpoint directory)");
    model = rt::rm::load_checkpoint<S>(args.init);
    if (model.config().vocab_size != byte_tokenizer::size)
      throw usage_error("--init " + args.init + ": vocab_size " + std::to_string(model.config().vocab_size) +
                        ", expected the byte tokenizer's " + std::to_string(byte_tokenizer::size));
  } else {
    model.init_random(recipe.seed);
  }
  rt::policy<S> policy(std::move(model));
  rep.log("reference_trainer: recipe " + recipe.name + " (" + recipe.file + "), " +
          std::to_string(policy.parameters().size()) + " parameters, " +
          std::to_string(data.sft.size()) + " train / " + std::to_string(data.eval.size()) +
          " held-out problems, conventions " + conventions + ", " +
          std::to_string(rt::rm::num_threads()) + " threads" +
          (g_comm.size() > 1 ? ", " + std::to_string(g_comm.size()) + " MPI ranks (data-parallel)" : ""));

  // 4 accuracy before training
  struct row {
    std::string stage;
    double accuracy, seconds;
    std::map<std::string, double> by_task;
  };
  std::vector<row> table;
  const auto t_start = std::chrono::steady_clock::now();
  auto eval_and_record = [&](const std::string& name, std::size_t index, double secs) {
    const eval_result e = evaluate(policy, data, recipe.eval_max_new_tokens);
    rep.record({{"event", "eval"}, {"stage", name}, {"stage_index", index},
                {"heldout_accuracy", e.accuracy}, {"heldout_accuracy_by_task", e.by_task},
                {"response_length", e.mean_length}});
    char line[256];
    std::snprintf(line, sizeof line, "eval after %-10s held-out accuracy %.3f  (sample: \"%s\")",
                  name.c_str(), e.accuracy, e.sample.substr(0, 40).c_str());
    std::string l(line);
    for (char& ch : l)
      if (ch == '\n') ch = ' ';
    rep.log(l);
    table.push_back({name, e.accuracy, secs, e.by_task});
  };
  eval_and_record(args.resume ? "resumed" : "init", resume_after, 0.0);
  if (args.resume) rep.log("resumed from " + (mid ? resume_mid.string() + " (after step " + std::to_string(mid->step) + ")" : resume_dir.string()));

  // 5 stages
  context ctx{recipe, data, policy, rep, 0, conventions};
  ctx.comm = &g_comm;
  for (std::size_t i = resume_after; i < recipe.stages.size(); ++i) {
    const rt::stage_options& s = recipe.stages[i];
    ctx.stage_index = i + 1;
    const std::string name = s.stage == "rl" || s.stage == "dpo" ? s.stage + ":" + s.algo : s.stage;
    rep.stage_start(name, s.steps);
    const fs::path mid_dir = out / "checkpoints" / mid_dir_name(i + 1, s.stage);
    rt::stage_checkpointer ckpt(
        mid_dir, i + 1, s.checkpoint_every, g_interrupted,
        [&](const fs::path& d) { rt::rm::save_checkpoint(policy.model(), d); },
        {{"recipe", recipe.file}, {"stage_index", i + 1}, {"stage", name}, {"steps", s.steps}},
        i == resume_after ? std::move(mid) : std::nullopt, writer,
        [](bool flag) { return g_comm.any(flag); });
    ctx.ckpt = &ckpt;
    try {
      if (s.stage == "pretrain") run_pretrain(ctx, s);
      else if (s.stage == "sft" && s.loss == "sum") run_sft<posttrain::algo::sft_sum>(ctx, s);
      else if (s.stage == "sft") run_sft<posttrain::algo::sft>(ctx, s);
      else if (s.stage == "rs_sft" && s.loss == "sum") run_rs_sft<posttrain::algo::sft_sum>(ctx, s);
      else if (s.stage == "rs_sft") run_rs_sft<posttrain::algo::sft>(ctx, s);
      else if (s.stage == "rl") online_algorithms().at(s.algo)(ctx, s);
      else offline_algorithms().at(s.algo)(ctx, s);
    } catch (const rt::interrupted& e) {
      // Ctrl-C: the checkpointer saved the steps done (parameters, optimizer, position).
      rep.end_bar();
      std::fprintf(stderr, "reference_trainer: %s\n", e.what());
      return 130;
    }
    const double secs = rep.seconds();
    rep.end_bar();
    const fs::path dir = out / "checkpoints" / ("stage" + std::to_string(i + 1) + "_" + s.stage);
    if (writer) {
      save_stage_checkpoint(policy, dir, {{"recipe", recipe.file}, {"stage_index", i + 1},
                                          {"stage", name}, {"steps", s.steps}, {"ranks", g_comm.size()}});
      fs::remove_all(mid_dir);  // superseded by the stage checkpoint
    }
    rep.log("saved " + dir.string());
    eval_and_record(name, i + 1, secs);
  }

  // 6 summary
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  std::string summary = "stage            held-out acc   stage time\n";
  for (const row& r : table) {
    char line[128];
    std::snprintf(line, sizeof line, "%-16s %12.3f %11.1fs", r.stage.c_str(), r.accuracy, r.seconds);
    summary += line;
    // Several task kinds: the accuracy of each after the stage time.
    if (r.by_task.size() > 1)
      for (const auto& [kind, acc] : r.by_task) {
        std::snprintf(line, sizeof line, "  %s %.3f", kind.c_str(), acc);
        summary += line;
      }
    summary += "\n";
  }
  char tail[96];
  std::snprintf(tail, sizeof tail, "total %.1fs (including evaluation)\n", total);
  summary += tail;
  if (!writer) return 0;
  std::fputs(summary.c_str(), stdout);
  std::ofstream(out / "summary.txt") << summary;
  return 0;
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  // MPI_Init under mpirun / mpiexec (an MPI build only); MPI_Finalize when main returns.
  rt::mpi_session mpi(&argc, &argv);
  g_comm = mpi.communicator();
  try {
    return run(argc, argv);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "reference_trainer: error: %s\n", one_line(e.what()).c_str());
  } catch (const posttrain::error& e) {
    std::fprintf(stderr, "reference_trainer: error: %s\n", one_line(e.what()).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reference_trainer: error: %s\n", one_line(e.what()).c_str());
  }
  return 2;
}
