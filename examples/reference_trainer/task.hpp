#pragma once
// The shipped verifiable tasks, mixed by the recipe's task.kind (rows alternate between the kinds):
//
//   gsm8k   arithmetic word problems answered GSM8K-style (below; verifier gsm8k)
//   math    fractions and linear equations answered in \boxed{} (tasks/math.hpp; verifier math)
//   ifeval  "one sentence about X" with IFEval constraints (tasks/ifeval.hpp; verifier ifeval)
//
// gsm8k:
//   prompt    "Ann has 3 pens and gets 5 more. How many pens now?"
//   solution  "3+5=8\n#### 8"                       (the gsm8k verifier reads the last number)
//
// Problems come from a seeded generator (pipeline's xoshiro stream, so the same seed gives the
// same files on every platform): a template (add / take away / groups of), a name, an object, two
// operands in [1, max_operand]. The held-out split is drawn first; a training problem whose prompt
// text equals a held-out prompt is redrawn, so no evaluation prompt is ever trained on.
//
// Files written (the formats pipeline/jsonl.hpp reads, plus a plain-text corpus):
//   pretrain.jsonl   {"text": "Question: ...\nAnswer: 3+5=8\n#### 8"}      the base model's corpus
//   sft.jsonl        {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}
//   rl.jsonl         {"messages": [user], "ground_truth": "8", "dataset": "gsm8k"}   (open-instruct)
//   eval.jsonl       same as rl.jsonl, the held-out split
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <posttrain/pipeline/generator.hpp>
#include <posttrain/reward/gsm8k.hpp>
#include <posttrain/reward/math.hpp>

#include "tasks/common.hpp"
#include "tasks/ifeval.hpp"
#include "tasks/math.hpp"

namespace reference_trainer {

// The task kinds a recipe can mix (task.kind), each scored by the verifier of the same name.
inline const std::vector<std::string>& task_kinds() {
  static const std::vector<std::string> k{"gsm8k", "ifeval", "math"};
  return k;
}

struct task_options {
  std::uint64_t seed = 1;
  int max_operand = 9;
  bool multiply = false;  // adds the "groups of" template (a·b)
  std::vector<std::string> kinds{"gsm8k"};  // row i is of kind kinds[i % size]
};

class problem_generator {
 public:
  explicit problem_generator(const task_options& o) : o_(o), rng_(o.seed) {}

  problem next() {
    static const char* names[] = {"Ann", "Bob", "Cy", "Dee", "Eli", "Fay", "Gus", "Ivy"};
    static const char* things[] = {"pens", "cups", "apples", "books", "coins", "hats"};
    const std::string name = names[pick(8)], obj = things[pick(6)];
    const int kinds = o_.multiply ? 3 : 2;
    const int kind = static_cast<int>(pick(static_cast<std::uint64_t>(kinds)));
    int a = 1 + static_cast<int>(pick(static_cast<std::uint64_t>(o_.max_operand)));
    int b = 1 + static_cast<int>(pick(static_cast<std::uint64_t>(o_.max_operand)));
    problem p;
    int c = 0;
    char op = '+';
    if (kind == 0) {
      c = a + b;
      p.question = name + " has " + std::to_string(a) + " " + obj + " and gets " +
                   std::to_string(b) + " more. How many " + obj + " now?";
    } else if (kind == 1) {
      if (a < b) std::swap(a, b);
      c = a - b;
      op = '-';
      p.question = name + " has " + std::to_string(a) + " " + obj + " and gives away " +
                   std::to_string(b) + ". How many " + obj + " left?";
    } else {
      c = a * b;
      op = '*';
      p.question = name + " has " + std::to_string(a) + " bags of " + std::to_string(b) + " " +
                   obj + ". How many " + obj + "?";
    }
    p.answer = std::to_string(c);
    p.solution = std::to_string(a) + op + std::to_string(b) + "=" + p.answer + "\n#### " + p.answer;
    p.wrong = "#### " + std::to_string(c + 1);
    return p;
  }

 private:
  std::uint64_t pick(std::uint64_t n) { return rng_.next() % n; }
  task_options o_;
  posttrain::pipeline::generate::sample_rng rng_;
};

struct task_split {
  std::vector<problem> train, eval;
};

// n_eval held-out problems with distinct prompts, then n_train training problems whose prompts are
// not held out (duplicates within train are allowed: the prompt space is small by design).
// One generator per kind, seeded apart (gsm8k keeps the seed itself, so a gsm8k-only recipe draws
// the problems it always drew); row i comes from kinds[i % size].
class mixed_generator {
 public:
  explicit mixed_generator(const task_options& o)
      : kinds_(o.kinds), gsm8k_(o), math_(o.seed ^ 0x6d617468ull, o.max_operand),
        ifeval_(o.seed ^ 0x69666576ull) {
    posttrain::expect(!kinds_.empty(), "reference_trainer::task", "task.kind is empty");
  }
  problem next() {
    const std::string& k = kinds_[i_++ % kinds_.size()];
    if (k == "math") return math_.next();
    if (k == "ifeval") return ifeval_.next();
    return gsm8k_.next();
  }

 private:
  std::vector<std::string> kinds_;
  std::size_t i_ = 0;
  problem_generator gsm8k_;
  tasks::math_generator math_;
  tasks::ifeval_generator ifeval_;
};

inline task_split make_split(const task_options& o, std::size_t n_train, std::size_t n_eval) {
  mixed_generator gen(o);
  task_split s;
  std::set<std::string> held;
  for (std::size_t tries = 0; s.eval.size() < n_eval; ++tries) {
    posttrain::expect(tries < 100 * (n_eval + 10), "reference_trainer::make_split",
                      "cannot draw ", n_eval, " distinct held-out problems with max_operand = ",
                      o.max_operand, " (raise task.max_operand or lower task.eval)");
    problem p = gen.next();
    if (held.insert(p.question).second) s.eval.push_back(std::move(p));
  }
  for (std::size_t tries = 0; s.train.size() < n_train; ++tries) {
    posttrain::expect(tries < 100 * (n_train + 10), "reference_trainer::make_split",
                      "cannot draw ", n_train, " training problems outside the held-out split");
    problem p = gen.next();
    if (!held.count(p.question)) s.train.push_back(std::move(p));
  }
  return s;
}

// Writes `path` atomically (temporary file + rename): a crash never leaves half a data file.
inline void write_lines(const std::filesystem::path& path, const std::vector<std::string>& lines) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp);
    posttrain::expect(static_cast<bool>(out), "reference_trainer", "cannot write ", tmp.string());
    for (const auto& l : lines) out << l << '\n';
    out.flush();
    posttrain::expect(out.good(), "reference_trainer", "writing ", tmp.string(), " failed");
  }
  std::filesystem::rename(tmp, path);
}

inline std::string rlvr_row(const problem& p) {
  nlohmann::json j;
  j["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", p.question}}});
  j["ground_truth"] = p.answer;
  j["dataset"] = p.verifier;
  return j.dump();
}

inline void write_task_files(const task_split& s, const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  std::vector<std::string> pre, sft, rl, ev;
  for (const problem& p : s.train) {
    pre.push_back(nlohmann::json{{"text", "Question: " + p.question + "\nAnswer: " + p.solution}}.dump());
    nlohmann::json m;
    m["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", p.question}},
                                           {{"role", "assistant"}, {"content", p.solution}}});
    sft.push_back(m.dump());
    rl.push_back(rlvr_row(p));
  }
  for (const problem& p : s.eval) ev.push_back(rlvr_row(p));
  write_lines(dir / "pretrain.jsonl", pre);
  write_lines(dir / "sft.jsonl", sft);
  write_lines(dir / "rl.jsonl", rl);
  write_lines(dir / "eval.jsonl", ev);
}

// The score of `response` by the verifier the row names (the task kind), as the trainer's reward
// source scores it.
inline double verify(const std::string& verifier, const std::string& response, const std::string& label) {
  if (verifier == "gsm8k") return posttrain::reward::gsm8k_verifier{}.score(response, label);
  if (verifier == "math") return posttrain::reward::math_verifier{}.score(response, label);
  if (verifier == "ifeval") return tasks::ifeval_en_verifier{}.score(response, label);
  posttrain::detail::fail("reference_trainer::verify", "unknown verifier \"", verifier, "\"");
}

// {"text": ...} rows, with the same error discipline as pipeline/jsonl.hpp (file:line: field).
inline std::vector<std::string> read_text_jsonl(const std::string& path) {
  std::ifstream in(path);
  posttrain::expect(static_cast<bool>(in), "read_text_jsonl", "cannot open ", path);
  std::vector<std::string> rows;
  std::string line;
  std::size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      posttrain::detail::fail("read_text_jsonl", path, ":", n, ": field \"<row>\" is not valid JSON: ",
                              e.what());
    }
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
      posttrain::detail::fail("read_text_jsonl", path, ":", n,
                              ": field \"text\" is missing or not a string");
    rows.push_back(j["text"].get<std::string>());
  }
  return rows;
}

}  // namespace reference_trainer
