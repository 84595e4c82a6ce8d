#pragma once
// What every stage of the reference trainer shares: the reporter (progress + metrics JSONL), the
// dataset, prompt rendering, seeded batches, the reward sources, the stage context.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <posttrain/algo.hpp>
#include <posttrain/pipeline.hpp>
#include <posttrain/pipeline/jsonl.hpp>
#include <posttrain/reward.hpp>

#include "../adapters.hpp"
#include "../checkpoint.hpp"
#include "../distributed.hpp"
#include "../recipe.hpp"
#include "../task.hpp"
#include "metrics_json.hpp"

namespace reference_trainer::stages {

namespace rt = ::reference_trainer;
namespace fs = std::filesystem;
using S = float;
using rt::index_t;
using rt::pp::byte_tokenizer;

// Set by the SIGINT handler; stages check it between steps.
inline std::atomic<bool> g_interrupted{false};

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

inline prompt_set render_prompts(const std::vector<rt::pp::rlvr_example>& rows, std::span<const std::size_t> pick) {
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
inline std::vector<std::size_t> batch_rows(std::uint64_t seed, std::size_t stage, long step, long n,
                                    std::size_t rows) {
  rt::pp::generate::sample_rng rng(rt::pp::sample_seed(seed ^ (0xba7c400ull + stage), static_cast<std::uint64_t>(step)));
  std::vector<std::size_t> out;
  for (long i = 0; i < n; ++i) out.push_back(static_cast<std::size_t>(rng.next() % rows));
  return out;
}

// Every task kind's verifier; each sample is scored by the one its row names (task.hpp).
using reward_t = rt::pp::reward::verifiers<byte_tokenizer, posttrain::reward::gsm8k_verifier,
                                           posttrain::reward::math_verifier, rt::tasks::ifeval_en_verifier>;

// ------------------------------------------------------------------------------------ stages
struct context {
  const rt::recipe& recipe;
  const dataset& data;
  rt::policy<S>& policy;
  reporter& out;
  std::size_t stage_index = 0;
  std::string conventions;
  fs::path out_dir;                                   // OUT (stage data files go to OUT/data)
  std::shared_ptr<rt::reward_model<S>> reward_model;  // the last reward_model stage's; or null
  std::string note;                                   // the stage's extra summary column
  rt::stage_checkpointer* ckpt = nullptr;  // checkpoint.hpp: begin / after_step hooks of each loop
  rt::trainer_communicator* comm = nullptr;  // distributed.hpp: this rank's share, the all-reduces
};

// A stage's reward (its `reward` field): the row's verifier (gsm8k, math, ifeval), the reward model (reward::learned),
// or their weighted sum (DeepSeek-V3's rule-based + model-based reward; reward::weighted).
struct stage_reward {
  rt::reward_model<S>* model = nullptr;  // null: the verifier alone
  double verifier_weight = 1.0, model_weight = 0.0;

  void score(const rt::pp::reward_query& q, std::span<double> out) {
    if (model == nullptr) {
      reward_t{}.score(q, out);
      return;
    }
    rt::pp::reward::weighted<reward_t, rt::pp::reward::learned<rt::reward_model<S>>> w{
        {reward_t{}, {model}}, {verifier_weight, model_weight}};
    w.score(q, out);
  }
};
static_assert(rt::pp::check_reward_source<stage_reward>());

inline stage_reward reward_of(const context& c, const rt::stage_options& s) {
  if (s.reward == "verifier" && s.stage != "round") return {};
  if (!c.reward_model)
    throw std::runtime_error("stage " + std::to_string(c.stage_index) + " (" + s.stage +
                             ") scores with the reward model, but no reward_model stage ran before it");
  if (s.reward == "verifier+rm") return {c.reward_model.get(), 1.0, s.rm_weight};
  return {c.reward_model.get(), 0.0, 1.0};
}

// The sampling request of `s` for prompts `p` at step `step` (seeded by recipe seed, stage, step).
inline rt::pp::sampling_request make_request(const context& c, const rt::stage_options& s,
                                             const prompt_set& p, long step) {
  rt::pp::sampling_request req;
  req.prompts = p.prompts.view();
  req.examples = p.examples;
  req.samples_per_prompt = s.samples;
  req.sampling.temperature = s.temperature;
  req.sampling.max_new_tokens = s.max_new_tokens;
  req.sampling.stop_tokens = {byte_tokenizer::end_of_turn};
  req.seed = rt::pp::sample_seed(c.recipe.seed + c.stage_index, static_cast<std::uint64_t>(step));
  return req;
}

inline double mean_of(std::span<const double> v) {
  double m = 0;
  for (double x : v) m += x;
  return v.empty() ? 0.0 : m / static_cast<double>(v.size());
}

// Ctrl-C received: the checkpointer saves the steps done and throws rt::interrupted.
inline void check_interrupt(context& c, long step) { c.ckpt->before_step(step); }

// Keeps sequences [b0, b1) of s (and their mask).
inline void keep_sequences(rt::pp::owned_sequences& s, std::vector<float>& mask, index_t b0, index_t b1) {
  rt::pp::owned_sequences out;
  std::vector<float> m;
  const auto v = s.view();
  for (index_t b = b0; b < b1; ++b) {
    const auto t0 = v.seq_offsets[b], t1 = v.seq_offsets[b + 1];
    out.append(v.tokens.subspan(t0, t1 - t0));
    m.insert(m.end(), mask.begin() + t0, mask.begin() + t1);
  }
  s = std::move(out);
  mask = std::move(m);
}

// Sequences every rank holds, this rank's contiguous share of them (uneven when the ranks do not
// divide the count): keeps its [b0, b1) and returns the step's communicator; with fewer sequences
// than ranks every rank keeps them all and runs the whole, identical step alone (`alone`).
inline rt::trainer_communicator* take_share(const context& c, rt::trainer_communicator& alone,
                                            rt::pp::owned_sequences& s, std::vector<float>& mask) {
  const index_t all = s.num_sequences(), ranks = c.comm->size(), r = c.comm->rank();
  if (ranks == 1) return c.comm;
  if (all < ranks) return &alone;
  keep_sequences(s, mask, all * r / ranks, all * (r + 1) / ranks);
  return c.comm;
}

inline rt::pt::optim::adamw make_optimizer(const rt::stage_options& s) {
  return rt::pt::optim::adamw({.lr = s.lr, .weight_decay = s.weight_decay});
}

}  // namespace reference_trainer::stages
