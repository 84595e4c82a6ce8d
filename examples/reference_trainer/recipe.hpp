#pragma once
// Recipes: JSON configs (examples/reference_trainer/recipes/*.json) read into typed structs.
// Every field is checked for its type and every object for unknown keys (a typo is an error, not a
// silently ignored setting); the message names the file and the field path, e.g.
//   recipes/quick.json: field "stages[1].lr" is a string, expected a number
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <posttrain/core/validate.hpp>

#include "task.hpp"

namespace reference_trainer {

struct model_options {
  std::string arch = "llama";
  long hidden_size = 64, intermediate_size = 192, layers = 2, heads = 4, kv_heads = 2;
  bool tie_word_embeddings = true;
};

// One stage of a recipe. Which fields matter depends on `stage`:
//   pretrain, sft   steps, batch, lr
//   rl              steps, prompts, samples, lr, algo, temperature, max_new_tokens, kl_coef,
//                   epochs, mini_batch
//   dpo             (online DPO, Qwen 2) steps, prompts, samples, lr, algo (offline loss), beta
//   rs_sft          (rejection-sampling SFT, Llama 3 / DeepSeek-V3) steps, prompts, samples, lr:
//                   best of `samples` by the verifier per prompt, SFT on the correct ones
//   sft, rs_sft     loss: "token_mean" (default) or "sum" (Tülu 3)
//   reward_model    a scalar-head copy of the policy trained on preference rows from its own
//                   samples (`prompts` prompts × `samples`, verifier-ranked, Llama 3's edited >
//                   chosen > rejected); steps, batch (rows per step), lr; held-out pairs from
//                   `held_out` eval prompts
//   round           one Llama 3 round (iterative_round's phases, stages/round.hpp): best of `samples` by the reward
//                   model for `prompts` prompts → `steps` SFT passes → pairs → `runs` DPO runs of
//                   `steps` passes (algo, beta; format tokens masked) averaged
//   dpo             pairs: "online" (new pairs every step) or "offline" (generated once from
//                   `prompts` prompts before the stage, stored as JSONL, `batch` pairs a step);
//                   mask_format: Llama 3's format-token masking
//   rl              order: "random" or "reward_variance" (Qwen2.5: the stage's prompts scored
//                   first and taken high-variance first)
//   rl, dpo, rs_sft reward: "verifier" (default), "rm" (the last reward_model stage's model) or
//                   "verifier+rm" (verifier + rm_weight · RM score, DeepSeek-V3)
//   every stage     checkpoint_every: mid-stage checkpoint every K steps (default: the recipe's;
//                   a round's steps are its SFT passes, then each DPO run's passes)
struct stage_options {
  std::string stage, algo, loss = "token_mean";
  std::string reward = "verifier", pairs = "online", order = "random";
  long steps = 10, batch = 16, prompts = 8, samples = 8, epochs = 1, mini_batch = 0;
  long max_new_tokens = 16, runs = 1, held_out = 32;
  double lr = 1e-3, temperature = 1.0, kl_coef = 0.0, beta = 0.1, max_grad_norm = 1.0;
  double weight_decay = 0.0, rm_weight = 1.0;
  bool mask_format = false;
  long checkpoint_every = -1;  // mid-stage checkpoint every K steps; -1 = the recipe's; 0 = none
  bool uses_reward_model() const { return stage == "round" || reward != "verifier"; }
};

struct recipe {
  std::string file, name, conventions = "trl";
  std::uint64_t seed = 1;
  long threads = 0;
  long eval_max_new_tokens = 16;
  std::string data;  // a directory of pretrain/sft/rl/eval .jsonl; empty = generate them
  long train_size = 2000, eval_size = 100;
  long checkpoint_every = 0;  // default of the stages' checkpoint_every (checkpoint.hpp)
  task_options task;
  model_options model;
  std::vector<stage_options> stages;
};

namespace recipe_detail {

struct reader {
  const std::string& file;

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    posttrain::detail::fail("recipe", file, ": field \"", field, "\" ", what);
  }
  static std::string kind(const nlohmann::json& j) {
    if (j.is_string()) return "a string";
    if (j.is_boolean()) return "a boolean";
    if (j.is_number()) return "a number";
    if (j.is_array()) return "an array";
    if (j.is_object()) return "an object";
    return "null";
  }
  void known(const nlohmann::json& obj, const std::string& path,
             const std::set<std::string>& keys) const {
    if (!obj.is_object()) fail(path, "is " + kind(obj) + ", expected an object");
    for (auto it = obj.begin(); it != obj.end(); ++it)
      if (!keys.count(it.key())) {
        std::string list;
        for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k;
        fail(path.empty() ? it.key() : path + "." + it.key(), "is not a known field (known: " + list + ")");
      }
  }
  void get(const nlohmann::json& o, const std::string& path, const char* key, long& v) const {
    if (!o.contains(key)) return;
    const auto& j = o[key];
    if (!j.is_number_integer()) fail(path + key, "is " + kind(j) + ", expected an integer");
    v = j.get<long>();
  }
  void get(const nlohmann::json& o, const std::string& path, const char* key, double& v) const {
    if (!o.contains(key)) return;
    const auto& j = o[key];
    if (!j.is_number()) fail(path + key, "is " + kind(j) + ", expected a number");
    v = j.get<double>();
  }
  void get(const nlohmann::json& o, const std::string& path, const char* key, bool& v) const {
    if (!o.contains(key)) return;
    const auto& j = o[key];
    if (!j.is_boolean()) fail(path + key, "is " + kind(j) + ", expected true or false");
    v = j.get<bool>();
  }
  void get(const nlohmann::json& o, const std::string& path, const char* key, std::string& v) const {
    if (!o.contains(key)) return;
    const auto& j = o[key];
    if (!j.is_string()) fail(path + key, "is " + kind(j) + ", expected a string");
    v = j.get<std::string>();
  }
};

}  // namespace recipe_detail

inline recipe read_recipe(const std::string& path) {
  std::ifstream in(path);
  posttrain::expect(static_cast<bool>(in), "recipe", "cannot open ", path,
                    " (a recipe is a JSON file, e.g. examples/reference_trainer/recipes/quick.json)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    posttrain::detail::fail("recipe", path, ": is not valid JSON: ", e.what());
  }
  recipe r;
  r.file = path;
  const recipe_detail::reader rd{path};
  rd.known(j, "", {"name", "seed", "threads", "conventions", "data", "task", "model", "eval", "stages",
                   "checkpoint_every"});
  rd.get(j, "", "checkpoint_every", r.checkpoint_every);
  if (r.checkpoint_every < 0) rd.fail("checkpoint_every", "is negative, expected 0 (off) or K >= 1");
  rd.get(j, "", "name", r.name);
  long seed = static_cast<long>(r.seed);
  rd.get(j, "", "seed", seed);
  if (seed < 0) rd.fail("seed", "is negative, expected an integer >= 0");
  r.seed = static_cast<std::uint64_t>(seed);
  rd.get(j, "", "threads", r.threads);
  rd.get(j, "", "conventions", r.conventions);
  rd.get(j, "", "data", r.data);
  if (j.contains("task")) {
    const auto& t = j["task"];
    rd.known(t, "task", {"train", "eval", "max_operand", "multiply", "kind"});
    // kind: "gsm8k" or a list of kinds to mix, e.g. ["gsm8k", "math", "ifeval"].
    if (t.contains("kind")) {
      const auto& k = t["kind"];
      std::vector<std::string> kinds;
      if (k.is_string()) {
        kinds.push_back(k.get<std::string>());
      } else if (k.is_array() && !k.empty()) {
        for (std::size_t i = 0; i < k.size(); ++i) {
          if (!k[i].is_string())
            rd.fail("task.kind[" + std::to_string(i) + "]", "is " + recipe_detail::reader::kind(k[i]) + ", expected a string");
          kinds.push_back(k[i].get<std::string>());
        }
      } else {
        rd.fail("task.kind", "is " + recipe_detail::reader::kind(k) + ", expected a task name or a non-empty array of them");
      }
      std::string valid;
      for (const auto& n : task_kinds()) valid += (valid.empty() ? "" : ", ") + n;
      std::set<std::string> seen;
      for (const auto& n : kinds) {
        if (std::find(task_kinds().begin(), task_kinds().end(), n) == task_kinds().end())
          rd.fail("task.kind", "names unknown task \"" + n + "\"; known: " + valid);
        if (!seen.insert(n).second) rd.fail("task.kind", "names \"" + n + "\" twice");
      }
      r.task.kinds = kinds;
    }
    rd.get(t, "task.", "train", r.train_size);
    rd.get(t, "task.", "eval", r.eval_size);
    long mo = r.task.max_operand;
    rd.get(t, "task.", "max_operand", mo);
    if (mo < 1 || mo > 1000) rd.fail("task.max_operand", "is " + std::to_string(mo) + ", expected 1..1000");
    r.task.max_operand = static_cast<int>(mo);
    rd.get(t, "task.", "multiply", r.task.multiply);
    if (r.train_size < 1 || r.eval_size < 1) rd.fail("task", "needs train >= 1 and eval >= 1");
  }
  r.task.seed = r.seed;
  if (j.contains("model")) {
    const auto& m = j["model"];
    rd.known(m, "model", {"arch", "hidden_size", "intermediate_size", "layers", "heads", "kv_heads",
                          "tie_word_embeddings"});
    rd.get(m, "model.", "arch", r.model.arch);
    if (r.model.arch != "llama" && r.model.arch != "qwen2")
      rd.fail("model.arch", "is \"" + r.model.arch + "\", expected \"llama\" or \"qwen2\"");
    rd.get(m, "model.", "hidden_size", r.model.hidden_size);
    rd.get(m, "model.", "intermediate_size", r.model.intermediate_size);
    rd.get(m, "model.", "layers", r.model.layers);
    rd.get(m, "model.", "heads", r.model.heads);
    rd.get(m, "model.", "kv_heads", r.model.kv_heads);
    rd.get(m, "model.", "tie_word_embeddings", r.model.tie_word_embeddings);
  }
  if (j.contains("eval")) {
    const auto& e = j["eval"];
    rd.known(e, "eval", {"max_new_tokens"});
    rd.get(e, "eval.", "max_new_tokens", r.eval_max_new_tokens);
  }
  if (!j.contains("stages") || !j["stages"].is_array() || j["stages"].empty())
    rd.fail("stages", "is missing or not a non-empty array of stages");
  for (std::size_t i = 0; i < j["stages"].size(); ++i) {
    const auto& s = j["stages"][i];
    const std::string p = "stages[" + std::to_string(i) + "].";
    rd.known(s, p.substr(0, p.size() - 1),
             {"stage", "algo", "loss", "steps", "batch", "prompts", "samples", "epochs", "mini_batch",
              "max_new_tokens", "lr", "temperature", "kl_coef", "beta", "max_grad_norm",
              "weight_decay", "reward", "rm_weight", "pairs", "order", "runs", "held_out",
              "mask_format", "checkpoint_every"});
    stage_options st;
    rd.get(s, p, "stage", st.stage);
    static const std::set<std::string> kinds{"pretrain", "sft", "rs_sft", "rl", "dpo",
                                             "reward_model", "round"};
    if (!kinds.count(st.stage))
      rd.fail(p + "stage", "is \"" + st.stage +
                               "\", expected one of: pretrain, sft, rs_sft, reward_model, rl, dpo, round");
    rd.get(s, p, "algo", st.algo);
    rd.get(s, p, "loss", st.loss);
    if (st.loss != "token_mean" && st.loss != "sum")
      rd.fail(p + "loss", "is \"" + st.loss + "\", expected \"token_mean\" or \"sum\"");
    rd.get(s, p, "steps", st.steps);
    rd.get(s, p, "batch", st.batch);
    rd.get(s, p, "prompts", st.prompts);
    rd.get(s, p, "samples", st.samples);
    rd.get(s, p, "epochs", st.epochs);
    rd.get(s, p, "mini_batch", st.mini_batch);
    rd.get(s, p, "max_new_tokens", st.max_new_tokens);
    rd.get(s, p, "lr", st.lr);
    rd.get(s, p, "temperature", st.temperature);
    rd.get(s, p, "kl_coef", st.kl_coef);
    rd.get(s, p, "beta", st.beta);
    rd.get(s, p, "max_grad_norm", st.max_grad_norm);
    rd.get(s, p, "weight_decay", st.weight_decay);
    rd.get(s, p, "reward", st.reward);
    rd.get(s, p, "rm_weight", st.rm_weight);
    rd.get(s, p, "pairs", st.pairs);
    rd.get(s, p, "order", st.order);
    rd.get(s, p, "runs", st.runs);
    rd.get(s, p, "held_out", st.held_out);
    rd.get(s, p, "mask_format", st.mask_format);
    auto one_of = [&](const char* key, const std::string& v, const std::set<std::string>& ok) {
      if (ok.count(v)) return;
      std::string list;
      for (const auto& k : ok) list += (list.empty() ? "\"" : ", \"") + k + "\"";
      rd.fail(p + key, "is \"" + v + "\", expected one of: " + list);
    };
    one_of("reward", st.reward, {"verifier", "rm", "verifier+rm"});
    one_of("pairs", st.pairs, {"online", "offline"});
    one_of("order", st.order, {"random", "reward_variance"});
    if (st.runs < 1 || st.held_out < 1) rd.fail(p + "runs", "and held_out must be >= 1");
    if (st.stage == "round" && st.runs > 12)
      rd.fail(p + "runs", "is " + std::to_string(st.runs) + ", at most 12 (a round's checkpoint holds every run's result)");
    rd.get(s, p, "checkpoint_every", st.checkpoint_every);
    if (s.contains("checkpoint_every") && st.checkpoint_every < 0)
      rd.fail(p + "checkpoint_every", "is negative, expected 0 (off) or K >= 1");
    if (st.steps < 0 || st.batch < 1 || st.prompts < 1 || st.samples < 1 || st.epochs < 1 ||
        st.mini_batch < 0 || st.max_new_tokens < 1)
      rd.fail(p.substr(0, p.size() - 1), "has a count out of range (steps >= 0; batch, prompts, "
              "samples, epochs, max_new_tokens >= 1; mini_batch >= 0)");
    if (!(st.lr > 0)) rd.fail(p + "lr", "must be > 0");
    if (st.stage == "rl" && st.algo.empty()) st.algo = "grpo";
    if (st.stage == "dpo" && st.algo.empty()) st.algo = "dpo";
    if (st.stage == "round" && st.algo.empty()) st.algo = "dpo_nll";
    if (st.checkpoint_every < 0) st.checkpoint_every = r.checkpoint_every;
    r.stages.push_back(st);
  }
  return r;
}

}  // namespace reference_trainer
