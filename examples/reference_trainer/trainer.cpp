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
//   5 each stage (stages/*.hpp, one per kind): pretrain / sft (pipeline::sft_step) / rs_sft
//     (rejection_sampling + sft_step) / reward_model (reward_model_step on verifier-ranked
//     samples) / rl (pipeline::rl_step with the named algorithm and conventions) / dpo (online or
//     offline pairs + preference_step or paired KTO) / round (Llama 3: iterative_round's phases,
//     one step per SFT / DPO pass); metrics JSONL per step; mid-stage checkpoints with the
//     optimizer state every checkpoint_every steps and on Ctrl-C (checkpoint.hpp: one begin()
//     before and one after_step() in each stage's loop); checkpoint (HF layout, atomic) after the stage; held-out
//     accuracy after the stage
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

rt::trainer_communicator g_comm;  // set in main(): MPI under a launcher, else one process
extern "C" void on_sigint(int) { g_interrupted = true; }

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
      {"kto", &run_kto<algo::kto>},
      {"kto_apo_zero_unpaired", &run_kto<algo::kto_apo_zero_unpaired>},
      {"kto_vanilla_paired", &run_dpo<algo::kto_vanilla_paired>},
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
  // Data parallelism (distributed.hpp): each rank takes an equal share of every batch.
  if (g_comm.size() > 1)
    for (std::size_t i = 0; i < recipe.stages.size(); ++i) {
      const auto& s = recipe.stages[i];
      const std::string where = "stages[" + std::to_string(i) + "] (" + s.stage + ")";
      // round and online pairs: every rank draws them all and takes a share of any size
      // (stages/common.hpp take_share).
      if (s.stage == "round") continue;
      const bool unpaired_kto = s.algo == "kto" || s.algo == "kto_apo_zero_unpaired";
      // Online pairs: every rank draws them all and takes a share of any size (stages/dpo.hpp).
      if (s.stage == "dpo" && s.pairs != "offline" && !unpaired_kto) continue;
      const bool by_prompts = s.stage == "rl" || s.stage == "rs_sft" ||
                              (s.stage == "dpo" && s.pairs != "offline");
      const long n = by_prompts ? s.prompts : s.batch;
      if (n % g_comm.size() != 0)
        throw usage_error(where + ": " + (by_prompts ? "prompts " : "batch ") + std::to_string(n) +
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
    std::string note;
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
    table.push_back({name, e.accuracy, secs, e.by_task, ""});
  };
  eval_and_record(args.resume ? "resumed" : "init", resume_after, 0.0);
  if (args.resume) rep.log("resumed from " + (mid ? resume_mid.string() + " (after step " + std::to_string(mid->step) + ")" : resume_dir.string()));

  // 5 stages
  context ctx{recipe, data, policy, rep, 0, conventions, out, nullptr, ""};
  // A resumed run gets back the reward model of the last reward_model stage it completed.
  for (std::size_t i = resume_after; i-- > 0;)
    if (recipe.stages[i].stage == "reward_model") {
      const fs::path d = out / "checkpoints" / ("stage" + std::to_string(i + 1) + "_reward_model");
      ctx.reward_model = load_reward_model(d / "reward_model");
      break;
    }
  ctx.comm = &g_comm;
  for (std::size_t i = resume_after; i < recipe.stages.size(); ++i) {
    const rt::stage_options& s = recipe.stages[i];
    ctx.stage_index = i + 1;
    const std::string name = s.stage == "rl" || s.stage == "dpo" ? s.stage + ":" + s.algo : s.stage;
    // A round's steps: its SFT passes, then each DPO run's passes (stages/round.hpp).
    rep.stage_start(name, s.stage == "round" ? s.steps * (1 + s.runs) : s.steps);
    ctx.note.clear();
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
      else if (s.stage == "reward_model") run_reward_model(ctx, s);
      else if (s.stage == "round") run_round(ctx, s);
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
    const bool rm_stage = s.stage == "reward_model";
    if (writer) {
      save_stage_checkpoint(policy, dir, {{"recipe", recipe.file}, {"stage_index", i + 1},
                                          {"stage", name}, {"steps", s.steps}, {"ranks", g_comm.size()}},
                            rm_stage ? ctx.reward_model.get() : nullptr);
      fs::remove_all(mid_dir);  // superseded by the stage checkpoint
    }
    rep.log("saved " + dir.string());
    if (rm_stage) {
      // The policy did not change: its accuracy is the previous row's; the stage's number is the
      // reward model's pairwise accuracy on held-out pairs.
      table.push_back({name, table.back().accuracy, secs, table.back().by_task, ctx.note});
      rep.log("reward_model: " + ctx.note);
    } else {
      eval_and_record(name, i + 1, secs);
      table.back().note = ctx.note;
    }
  }

  // 6 summary
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  // The stage column fits the longest name (dpo:kto_vanilla_paired), at least 16 wide.
  int width = 16;
  for (const row& r : table) width = std::max(width, static_cast<int>(r.stage.size()));
  std::string summary = "stage";
  summary.append(static_cast<std::size_t>(width - 5), ' ');
  summary += " held-out acc   stage time\n";
  for (const row& r : table) {
    char line[160];
    std::snprintf(line, sizeof line, "%-*s %12.3f %11.1fs", width, r.stage.c_str(), r.accuracy, r.seconds);
    summary += line;
    // Several task kinds: the accuracy of each after the stage time.
    if (r.by_task.size() > 1)
      for (const auto& [kind, acc] : r.by_task) {
        std::snprintf(line, sizeof line, "  %s %.3f", kind.c_str(), acc);
        summary += line;
      }
    summary += (r.note.empty() ? "" : "   " + r.note) + "\n";
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
