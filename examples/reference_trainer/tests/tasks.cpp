// The task generators and the library's verifiers agree: every generated row scores 1 with its
// own verifier on the reference solution, and below 1 on a wrong response; equivalent MATH forms
// are accepted; the recipe's task.kind is type-checked.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "recipe.hpp"
#include "task.hpp"

namespace rt = reference_trainer;

namespace {

rt::task_split split_of(std::vector<std::string> kinds, std::size_t train = 300, std::size_t eval = 60) {
  rt::task_options o;
  o.seed = 7;
  o.kinds = std::move(kinds);
  return rt::make_split(o, train, eval);
}

}  // namespace

TEST(Tasks, EveryKindPassesItsOwnVerifierAndFailsAWrongAnswer) {
  for (const std::string kind : {"gsm8k", "math", "ifeval"}) {
    const auto s = split_of({kind});
    for (const auto* rows : {&s.train, &s.eval})
      for (const rt::problem& p : *rows) {
        ASSERT_EQ(p.verifier, kind);
        EXPECT_EQ(rt::verify(p.verifier, p.solution, p.answer), 1.0) << kind << ": " << p.question << " -> " << p.solution << " / " << p.answer;
        EXPECT_LT(rt::verify(p.verifier, p.wrong, p.answer), 1.0) << kind << ": " << p.question << " -> " << p.wrong << " / " << p.answer;
      }
  }
}

TEST(Tasks, MixAlternatesKindsAndKeepsHeldOutPromptsOut) {
  const auto s = split_of({"gsm8k", "math", "ifeval"});
  std::map<std::string, int> n;
  for (const auto& p : s.eval) ++n[p.verifier];
  EXPECT_EQ(n.size(), 3u);
  for (const auto& [k, c] : n) EXPECT_GE(c, 15) << k;
  std::set<std::string> held;
  for (const auto& p : s.eval) held.insert(p.question);
  EXPECT_EQ(held.size(), s.eval.size());
  for (const auto& p : s.train) EXPECT_FALSE(held.count(p.question)) << p.question;
}

TEST(Tasks, Gsm8kOnlyDrawsTheSameProblemsAsBefore) {
  // The gsm8k generator is seeded with the recipe seed itself, whatever else is mixed in.
  rt::task_options o;
  o.seed = 7;
  rt::problem_generator g(o);
  const auto s = split_of({"gsm8k"}, 5, 3);
  EXPECT_EQ(s.eval[0].question, g.next().question);
}

TEST(Tasks, MathAcceptsEquivalentForms) {
  EXPECT_EQ(rt::tasks::latex_fraction(14, 12), "\\frac{7}{6}");
  EXPECT_EQ(rt::tasks::latex_fraction(-3, 6), "-\\frac{1}{2}");
  EXPECT_EQ(rt::tasks::latex_fraction(8, 4), "2");
  EXPECT_EQ(rt::verify("math", "so \\boxed{\\frac{14}{12}}", "\\frac{7}{6}"), 1.0);
  EXPECT_EQ(rt::verify("math", "\\boxed{7/6}", "\\frac{7}{6}"), 1.0);
  EXPECT_EQ(rt::verify("math", "\\boxed{0.5}", "\\frac{1}{2}"), 1.0);
  EXPECT_EQ(rt::verify("math", "\\boxed{\\frac{7}{5}}", "\\frac{7}{6}"), 0.0);
}

TEST(Tasks, IfevalRowsUseTheVerifiersLabelFormat) {
  const auto s = split_of({"ifeval"});
  std::set<std::string> ids;
  for (const auto& p : s.train) {
    for (const auto& [id, kw] : posttrain::reward::ifeval::parse_label(p.answer)) ids.insert(id);
  }
  for (const char* id : {"change_case:english_capital", "change_case:english_lowercase", "punctuation:no_comma",
                         "startend:end_checker", "detectable_format:json_format", "detectable_format:title",
                         "startend:quotation", "length_constraints:number_words"})
    EXPECT_TRUE(ids.count(id)) << id;
}

TEST(Tasks, RecipeTaskKindIsTypeChecked) {
  const auto dir = std::filesystem::temp_directory_path() / "posttrain_rt_tasks_test";
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& task) {
    const auto f = dir / name;
    std::ofstream(f) << R"({"stages": [{"stage": "sft"}], "task": )" << task << "}";
    return f.string();
  };
  EXPECT_EQ(rt::read_recipe(write("a.json", R"({"kind": ["gsm8k", "math", "ifeval"]})")).task.kinds,
            (std::vector<std::string>{"gsm8k", "math", "ifeval"}));
  EXPECT_EQ(rt::read_recipe(write("b.json", R"({"kind": "math"})")).task.kinds, std::vector<std::string>{"math"});
  try {
    rt::read_recipe(write("c.json", R"({"kind": ["gsm8k", "mmlu"]})"));
    FAIL() << "unknown task accepted";
  } catch (const posttrain::error& e) {
    EXPECT_NE(std::string(e.what()).find("field \"task.kind\" names unknown task \"mmlu\"; known: gsm8k, ifeval, math"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(rt::read_recipe(write("d.json", R"({"kind": [3]})")), posttrain::error);
  EXPECT_THROW(rt::read_recipe(write("e.json", R"({"kind": []})")), posttrain::error);
  std::filesystem::remove_all(dir);
}
