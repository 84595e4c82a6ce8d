// reference_trainer: post-trains the reference transformer on a verifiable task, stage by stage.
//
//   reference_trainer --recipe recipes/quick.json [--algo grpo] [--conventions trl] [--out DIR]
//                     [--data DIR] [--quiet] [--threads N]
//
// What happens, in order (main() at the bottom reads the same way):
//   1 read the recipe (recipe.hpp: typed fields, unknown keys rejected)
//   2 data: generate the arithmetic task (task.hpp) into OUT/data/*.jsonl, or take --data DIR;
//     then read it back with pipeline's JSONL readers (so the files are the interface)
//   3 a fresh model (random init, seeded) — the "pre-trained checkpoint" comes from stage pretrain
//   4 held-out accuracy (greedy decoding, gsm8k verifier on the decoded text) before any stage
//   5 each stage (stages/*.hpp, one per kind): pretrain / sft (pipeline::sft_step) / rs_sft
//     (rejection_sampling + sft_step) / reward_model (reward_model_step on verifier-ranked
//     samples) / rl (pipeline::rl_step with the named algorithm and conventions) / dpo (online or
//     offline pairs + preference_step) / round (Llama 3: pipeline::iterative_round); metrics JSONL
//     per step; checkpoint (HF layout, atomic) after the stage; held-out accuracy after the stage
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
#include "recipe.hpp"
#include "stages/common.hpp"
#include "stages/dpo.hpp"
#include "stages/pretrain.hpp"
#include "stages/reward_model.hpp"
#include "stages/rl.hpp"
#include "stages/round.hpp"
#include "stages/rs_sft.hpp"
#include "stages/sft.hpp"

namespace rt = reference_trainer;
namespace fs = std::filesystem;
using namespace reference_trainer::stages;

namespace {

extern "C" void on_sigint(int) { g_interrupted = true; }

// ------------------------------------------------------------------------------------ eval
struct eval_result {
  double accuracy = 0, mean_length = 0;
  std::string sample;  // the first completion, for the log
};

// Greedy decoding of every held-out prompt, scored by the gsm8k verifier on the decoded text.
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
  const posttrain::reward::gsm8k_verifier verify;
  eval_result r;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const std::string text = tok.decode(out[i].tokens);
    r.accuracy += verify.score(text, d.eval[i].ground_truth);
    r.mean_length += static_cast<double>(out[i].tokens.size());
    if (i == 0) r.sample = text;
  }
  r.accuracy /= static_cast<double>(out.size());
  r.mean_length /= static_cast<double>(out.size());
  return r;
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
      {"orpo", &run_dpo<algo::orpo>},
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
// A reward_model stage's directory also holds its reward model in reward_model/.
void save_stage_checkpoint(const rt::policy<S>& p, const fs::path& dir, const nlohmann::json& state,
                           rt::reward_model<S>* reward_model = nullptr) {
  const fs::path tmp = dir.string() + ".tmp";
  fs::remove_all(tmp);
  rt::rm::save_checkpoint(p.model(), tmp);
  if (reward_model != nullptr) save_reward_model(*reward_model, tmp / "reward_model");
  {
    std::ofstream out(tmp / "trainer_state.json");
    out << state.dump(2) << '\n';
  }
  fs::remove_all(dir);
  fs::rename(tmp, dir);
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
    "  --resume       continue the run in --out from its last completed stage checkpoint (stages\n"
    "                 are deterministic in (seed, stage, step), so the result equals an\n"
    "                 uninterrupted run)\n";

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
      if (r.verifier != posttrain::reward::gsm8k_verifier::name())
        throw usage_error("data row names verifier \"" + r.verifier + "\"; this trainer scores with: gsm8k");
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

int run(int argc, char** argv) {
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
    if (s.stage == "round" && s.algo != "dpo_nll")
      throw usage_error("stage round runs algorithm dpo_nll (Llama 3), not \"" + s.algo + "\", in " + recipe.file);
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
  bool have_reward_model = false;
  for (std::size_t i = 0; i < recipe.stages.size(); ++i) {
    const rt::stage_options& s = recipe.stages[i];
    if (s.uses_reward_model() && !have_reward_model)
      throw usage_error("stage " + std::to_string(i + 1) + " (" + s.stage + ") of " + recipe.file +
                        " scores with the reward model, but no reward_model stage comes before it");
    have_reward_model = have_reward_model || s.stage == "reward_model";
  }
  if (!args.algo.empty() && !applied)
    throw usage_error("--algo " + args.algo + " is an " + (algo_online ? "online" : "offline") +
                      " algorithm but " + recipe.file + " has no " + (algo_online ? "rl" : "dpo") +
                      " stage to run it in");
  if (args.check) {
    std::printf("%s: ok (%zu stages)\n", recipe.file.c_str(), recipe.stages.size());
    return 0;
  }
  if (args.threads >= 0) recipe.threads = args.threads;
  rt::rm::set_num_threads(static_cast<int>(recipe.threads));

  const fs::path out(args.out);
  // --resume: the last stage whose checkpoint (with trainer_state.json) is complete. The stage
  // directories are renamed into place whole, so a present one is a complete one.
  std::size_t resume_after = 0;
  fs::path resume_dir;
  if (args.resume) {
    if (!fs::is_directory(out / "checkpoints"))
      throw usage_error("--resume: " + (out / "checkpoints").string() + " does not exist (nothing to resume)");
    for (std::size_t i = 0; i < recipe.stages.size(); ++i) {
      const fs::path d = out / "checkpoints" / ("stage" + std::to_string(i + 1) + "_" + recipe.stages[i].stage);
      if (!fs::exists(d / "trainer_state.json")) break;
      resume_after = i + 1;
      resume_dir = d;
    }
    if (resume_after == 0)
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
    const auto split = rt::make_split(recipe.task, static_cast<std::size_t>(recipe.train_size),
                                      static_cast<std::size_t>(recipe.eval_size));
    rt::write_task_files(split, out / "data");
    data = load_data(out / "data");
  }
  fs::create_directories(out / "checkpoints");
  reporter rep(args.quiet, out / "metrics.jsonl", args.resume);

  // 3 model
  rt::rm::transformer<S> model(model_config_of(recipe));
  if (args.resume) {
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
          std::to_string(rt::rm::num_threads()) + " threads");

  // 4 accuracy before training
  struct row {
    std::string stage;
    double accuracy, seconds;
    std::string note;
  };
  std::vector<row> table;
  const auto t_start = std::chrono::steady_clock::now();
  auto eval_and_record = [&](const std::string& name, std::size_t index, double secs) {
    const eval_result e = evaluate(policy, data, recipe.eval_max_new_tokens);
    rep.record({{"event", "eval"}, {"stage", name}, {"stage_index", index},
                {"heldout_accuracy", e.accuracy}, {"response_length", e.mean_length}});
    char line[256];
    std::snprintf(line, sizeof line, "eval after %-10s held-out accuracy %.3f  (sample: \"%s\")",
                  name.c_str(), e.accuracy, e.sample.substr(0, 40).c_str());
    std::string l(line);
    for (char& ch : l)
      if (ch == '\n') ch = ' ';
    rep.log(l);
    table.push_back({name, e.accuracy, secs, ""});
  };
  eval_and_record(args.resume ? "resumed" : "init", resume_after, 0.0);
  if (args.resume) rep.log("resumed from " + resume_dir.string());

  // 5 stages
  context ctx{recipe, data, policy, rep, 0, conventions, out, nullptr, ""};
  // A resumed run gets back the reward model of the last reward_model stage it completed.
  for (std::size_t i = resume_after; i-- > 0;)
    if (recipe.stages[i].stage == "reward_model") {
      const fs::path d = out / "checkpoints" / ("stage" + std::to_string(i + 1) + "_reward_model");
      ctx.reward_model = load_reward_model(d / "reward_model");
      break;
    }
  for (std::size_t i = resume_after; i < recipe.stages.size(); ++i) {
    const rt::stage_options& s = recipe.stages[i];
    ctx.stage_index = i + 1;
    const std::string name = s.stage == "rl" || s.stage == "dpo" ? s.stage + ":" + s.algo : s.stage;
    rep.stage_start(name, s.stage == "round" ? 1 : s.steps);
    ctx.note.clear();
    try {
      if (s.stage == "pretrain") run_pretrain(ctx, s);
      else if (s.stage == "sft" && s.loss == "sum") run_sft<posttrain::algo::sft_sum>(ctx, s);
      else if (s.stage == "sft") run_sft<posttrain::algo::sft>(ctx, s);
      else if (s.stage == "rs_sft" && s.loss == "sum") run_rs_sft<posttrain::algo::sft_sum>(ctx, s);
      else if (s.stage == "rs_sft") run_rs_sft<posttrain::algo::sft>(ctx, s);
      else if (s.stage == "reward_model") run_reward_model(ctx, s);
      else if (s.stage == "round") run_round(ctx, s);
      else if (s.stage == "rl") online_algorithms().at(s.algo)(ctx, s);
      else offline_algorithms().at(s.algo)(ctx, s);
    } catch (const std::runtime_error& e) {
      if (!g_interrupted) throw;
      // Ctrl-C: keep what was trained so far, then stop.
      rep.end_bar();
      const fs::path dir = out / "checkpoints" / ("interrupted_stage" + std::to_string(i + 1));
      save_stage_checkpoint(policy, dir, {{"recipe", recipe.file}, {"stage_index", i + 1}, {"interrupted", true}});
      std::fprintf(stderr, "reference_trainer: %s; saved %s\n", e.what(), dir.string().c_str());
      return 130;
    }
    const double secs = rep.seconds();
    rep.end_bar();
    const fs::path dir = out / "checkpoints" / ("stage" + std::to_string(i + 1) + "_" + s.stage);
    const bool rm_stage = s.stage == "reward_model";
    save_stage_checkpoint(policy, dir, {{"recipe", recipe.file}, {"stage_index", i + 1},
                                        {"stage", name}, {"steps", s.steps}},
                          rm_stage ? ctx.reward_model.get() : nullptr);
    rep.log("saved " + dir.string());
    if (rm_stage) {
      // The policy did not change: its accuracy is the previous row's; the stage's number is the
      // reward model's pairwise accuracy on held-out pairs.
      table.push_back({name, table.back().accuracy, secs, ctx.note});
      rep.log("reward_model: " + ctx.note);
    } else {
      eval_and_record(name, i + 1, secs);
      table.back().note = ctx.note;
    }
  }

  // 6 summary
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  std::string summary = "stage            held-out acc   stage time\n";
  for (const row& r : table) {
    char line[128];
    std::snprintf(line, sizeof line, "%-16s %12.3f %11.1fs", r.stage.c_str(), r.accuracy, r.seconds);
    summary += line + (r.note.empty() ? "" : "   " + r.note) + "\n";
  }
  char tail[96];
  std::snprintf(tail, sizeof tail, "total %.1fs (including evaluation)\n", total);
  summary += tail;
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
