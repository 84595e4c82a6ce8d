#pragma once
// Mid-stage checkpoints and exact resume.
//
// A stage registers what it trains (the policy, and PPO's critic: parameters + AdamW) once, before
// its loop, and calls after_step(step) at the end of each step:
//
//   for (long step = c.ckpt->begin({{c.policy.parameters(), &opt}}); step <= s.steps; ++step) {
//     ... one step ...
//     c.ckpt->after_step(step);
//   }
//
// Every `checkpoint_every` steps, and when Ctrl-C (SIGINT) was received, the checkpointer writes
// OUT/checkpoints/midstageK_<stage>/ (a temporary directory renamed into place, like the stage
// checkpoints):
//
//   config.json, model.safetensors   the policy now (HF layout: usable with --init)
//   trainer_state.json               recipe, stage_index, stage, step (steps done), interrupted
//   state.bin                        for each registered trainable: its parameters (float), the
//                                    AdamW moments m, v (double) and step count; then the policy's
//                                    parameters at the stage's start (the frozen reference of RL /
//                                    DPO stages and the critic's initial trunk are built from them)
//
// Everything else a step draws is a function of (seed, stage, step) (batch rows, sample seeds), so
// the data-order / RNG position is the step count. --resume loads the policy's stage-start
// parameters, runs the stage function (which builds its reference / critic from them), and begin()
// then restores the parameters and optimizer states and returns step + 1: the rest of the stage is
// byte-identical to an uninterrupted run (tests/resume_mid.cmake).
//
// Ctrl-C: after_step (or the check before a step) saves the steps done so far and throws
// `interrupted`; the trainer exits with 130. For tests, POSTTRAIN_RT_INTERRUPT_AT=K:N raises
// SIGINT after step N of stage K, and POSTTRAIN_RT_CRASH_AT=K:N exits with 3 there without saving
// (a crash: resume then starts from the last periodic checkpoint).
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <posttrain/core/validate.hpp>
#include <posttrain/optim/adamw.hpp>

namespace reference_trainer {

struct trainable {
  std::span<float> params;
  posttrain::optim::adamw* opt = nullptr;
};

// Thrown by the checkpointer after it saved the state of an interrupted stage.
struct interrupted : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace checkpoint_detail {

inline constexpr std::uint64_t magic = 0x3154534d54505452ull;  // "RTPTMST1"

template <class T>
void put(std::ofstream& out, std::span<const T> v) {
  const std::uint64_t n = v.size();
  out.write(reinterpret_cast<const char*>(&n), sizeof n);
  out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
}

template <class T>
std::vector<T> get(std::ifstream& in, const std::string& file) {
  std::uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), sizeof n);
  posttrain::expect(in.good() && n < (1ull << 34), "reference_trainer::checkpoint", file, " is truncated or corrupt");
  std::vector<T> v(n);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T)));
  posttrain::expect(in.good(), "reference_trainer::checkpoint", file, " is truncated");
  return v;
}

// "K:N" from the environment variable `name`, or nullopt.
inline std::optional<std::pair<std::size_t, long>> env_step(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return std::nullopt;
  std::size_t k = 0;
  long n = 0;
  if (std::sscanf(v, "%zu:%ld", &k, &n) != 2) return std::nullopt;
  return std::make_pair(k, n);
}

}  // namespace checkpoint_detail

// The saved state of one stage, as read back for --resume.
struct mid_state {
  long step = 0;
  struct part {
    std::vector<float> params;
    std::vector<double> m, v;
    std::int64_t t = 0;
  };
  std::vector<part> parts;
  std::vector<float> stage_start;
};

inline mid_state read_mid_state(const std::filesystem::path& dir) {
  const std::string file = (dir / "state.bin").string();
  std::ifstream in(file, std::ios::binary);
  posttrain::expect(static_cast<bool>(in), "reference_trainer::checkpoint", "cannot open ", file);
  std::uint64_t magic = 0, n = 0;
  std::int64_t step = 0;
  in.read(reinterpret_cast<char*>(&magic), sizeof magic);
  in.read(reinterpret_cast<char*>(&step), sizeof step);
  in.read(reinterpret_cast<char*>(&n), sizeof n);
  posttrain::expect(in.good() && magic == checkpoint_detail::magic && n < 16, "reference_trainer::checkpoint",
                    file, " is not a reference_trainer state file");
  mid_state s;
  s.step = step;
  for (std::uint64_t i = 0; i < n; ++i) {
    mid_state::part p;
    p.params = checkpoint_detail::get<float>(in, file);
    p.m = checkpoint_detail::get<double>(in, file);
    p.v = checkpoint_detail::get<double>(in, file);
    in.read(reinterpret_cast<char*>(&p.t), sizeof p.t);
    s.parts.push_back(std::move(p));
  }
  s.stage_start = checkpoint_detail::get<float>(in, file);
  return s;
}

class stage_checkpointer {
 public:
  // dir: OUT/checkpoints/midstageK_<stage>; every: checkpoint_every (0 = only on Ctrl-C);
  // save_model(tmp_dir) writes the policy's HF checkpoint; meta goes into trainer_state.json.
  stage_checkpointer(std::filesystem::path dir, std::size_t stage_index, long every,
                     const std::atomic<bool>& interrupt_flag,
                     std::function<void(const std::filesystem::path&)> save_model, nlohmann::json meta,
                     std::optional<mid_state> resume = std::nullopt, bool writer = true,
                     std::function<bool(bool)> any_rank = {})
      : dir_(std::move(dir)), stage_index_(stage_index), every_(every), flag_(interrupt_flag),
        save_model_(std::move(save_model)), meta_(std::move(meta)), resume_(std::move(resume)),
        writer_(writer), any_rank_(std::move(any_rank)) {}

  // Registers the trainables (the policy first) and returns the first step to run: 1, or the
  // saved step + 1 after restoring parameters and optimizer states.
  long begin(std::vector<trainable> t) {
    trainables_ = std::move(t);
    posttrain::expect(!trainables_.empty(), "reference_trainer::checkpoint", "nothing to train");
    const auto p = trainables_.front().params;
    stage_start_.assign(p.begin(), p.end());
    if (!resume_) return 1;
    const mid_state& r = *resume_;
    posttrain::expect(r.parts.size() == trainables_.size(), "reference_trainer::checkpoint",
                      dir_.string(), " holds ", r.parts.size(), " trainables, this stage trains ",
                      trainables_.size());
    for (std::size_t i = 0; i < trainables_.size(); ++i) {
      auto& tr = trainables_[i];
      posttrain::expect(r.parts[i].params.size() == tr.params.size(), "reference_trainer::checkpoint",
                        dir_.string(), ": parameter count differs from the model's");
      std::copy(r.parts[i].params.begin(), r.parts[i].params.end(), tr.params.begin());
      tr.opt->restore(r.parts[i].m, r.parts[i].v, r.parts[i].t);
    }
    const long first = r.step + 1;
    resume_.reset();
    return first;
  }

  // Before step `step`: Ctrl-C already received saves the steps done (step − 1) and stops.
  void before_step(long step) {
    if (interrupt_requested()) stop(step - 1);
  }

  // After step `step`: the test hooks, the periodic checkpoint, Ctrl-C.
  void after_step(long step) {
    if (const auto at = checkpoint_detail::env_step("POSTTRAIN_RT_CRASH_AT"); at && at->first == stage_index_ && at->second == step)
      std::_Exit(3);
    if (const auto at = checkpoint_detail::env_step("POSTTRAIN_RT_INTERRUPT_AT"); at && at->first == stage_index_ && at->second == step)
      std::raise(SIGINT);
    if (interrupt_requested()) stop(step);
    if (every_ > 0 && step % every_ == 0) save(step, false);
  }

  const std::filesystem::path& dir() const { return dir_; }

 private:
  // With several ranks (writer = rank 0, any_rank = an all-reduce): every rank stops at the same
  // step when any of them received SIGINT.
  bool interrupt_requested() const { return any_rank_ ? any_rank_(flag_.load()) : flag_.load(); }

  [[noreturn]] void stop(long done) {
    save(done, true);
    throw interrupted("interrupted after step " + std::to_string(done) + " of stage " +
                      std::to_string(stage_index_) + "; saved " + dir_.string() + " (--resume continues there)");
  }

  void save(long step, bool was_interrupted) {
    if (!writer_) return;  // ranks other than 0 hold the same state
    namespace fs = std::filesystem;
    const fs::path tmp = dir_.string() + ".tmp";
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    save_model_(tmp);
    {
      std::ofstream out(tmp / "state.bin", std::ios::binary);
      const std::uint64_t magic = checkpoint_detail::magic, n = trainables_.size();
      const std::int64_t s = step;
      out.write(reinterpret_cast<const char*>(&magic), sizeof magic);
      out.write(reinterpret_cast<const char*>(&s), sizeof s);
      out.write(reinterpret_cast<const char*>(&n), sizeof n);
      for (const auto& tr : trainables_) {
        checkpoint_detail::put<float>(out, tr.params);
        checkpoint_detail::put<double>(out, tr.opt->first_moment());
        checkpoint_detail::put<double>(out, tr.opt->second_moment());
        const std::int64_t t = tr.opt->steps();
        out.write(reinterpret_cast<const char*>(&t), sizeof t);
      }
      checkpoint_detail::put<float>(out, stage_start_);
      out.flush();
      posttrain::expect(out.good(), "reference_trainer::checkpoint", "writing ", (tmp / "state.bin").string(), " failed");
    }
    nlohmann::json state = meta_;
    state["step"] = step;
    state["interrupted"] = was_interrupted;
    std::ofstream(tmp / "trainer_state.json") << state.dump(2) << '\n';
    fs::remove_all(dir_);
    fs::rename(tmp, dir_);
  }

  std::filesystem::path dir_;
  std::size_t stage_index_;
  long every_;
  const std::atomic<bool>& flag_;
  std::function<void(const std::filesystem::path&)> save_model_;
  nlohmann::json meta_;
  std::optional<mid_state> resume_;
  bool writer_;
  std::function<bool(bool)> any_rank_;
  std::vector<trainable> trainables_;
  std::vector<float> stage_start_;
};

// A resumed run continues metrics.jsonl: the lines of the steps it will run again (those of stage
// `stage_index` after step `step`, and of later stages) are dropped first, so every step appears
// once.
inline void trim_metrics(const std::filesystem::path& file, std::size_t stage_index, long step) {
  std::ifstream in(file);
  if (!in) return;
  std::vector<std::string> keep;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("stage_index")) continue;
    const auto k = j["stage_index"].get<std::size_t>();
    const bool is_eval = j.contains("event");
    if (k < stage_index || (k == stage_index && !is_eval && j.value("step", 0L) <= step))
      keep.push_back(line);
  }
  in.close();
  const std::filesystem::path tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp);
    for (const auto& l : keep) out << l << '\n';
  }
  std::filesystem::rename(tmp, file);
}

}  // namespace reference_trainer
