// SQuAD-normalised matchers (flan, string_matcher, string_f1): hand-checked cases per rule.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "posttrain/reward/squad.hpp"

namespace pt = posttrain;
using pt::reward::squad_normalize;

TEST(SquadNormalize, Rules) {
  EXPECT_EQ(squad_normalize("The Cat"), "cat");                    // lower + article
  EXPECT_EQ(squad_normalize("a cat, an apple; the end."), "cat apple end");
  EXPECT_EQ(squad_normalize("Theater anathema"), "theater anathema");  // only whole words
  EXPECT_EQ(squad_normalize("  many\t\n spaces  "), "many spaces");
  EXPECT_EQ(squad_normalize("rock'n'roll"), "rocknroll");         // punctuation dropped, no space
  EXPECT_EQ(squad_normalize("a-b"), "ab");                         // "a-b" -> "ab", not an article
  EXPECT_EQ(squad_normalize("(a)"), "");                           // "a" alone is an article
  EXPECT_EQ(squad_normalize("snake_case"), "snakecase");          // '_' is punctuation
  EXPECT_EQ(squad_normalize(""), "");
  EXPECT_EQ(squad_normalize("THE"), "");
}

TEST(SquadVerifiers, Flan) {
  const pt::reward::flan_verifier v;
  EXPECT_EQ(v.score("Reasoning... The answer is: Paris.", "paris"), 1.0);
  EXPECT_EQ(v.score("The answer is: London The answer is: the Paris ", "Paris"), 1.0);  // last
  EXPECT_EQ(v.score("The answer is: Rome", "Paris"), 0.0);
  EXPECT_EQ(v.score("Paris", "paris"), 1.0);  // no marker: the whole prediction
  EXPECT_EQ(v.score("", ""), 1.0);
  EXPECT_EQ(v.score("", "x"), 0.0);
}

TEST(SquadVerifiers, StringMatcher) {
  const pt::reward::string_matcher_verifier v;
  EXPECT_EQ(v.score("<think>x</think><answer> The Eiffel Tower </answer>", "eiffel tower"), 1.0);
  EXPECT_EQ(v.score("The Eiffel Tower", "eiffel tower"), 0.0);             // tags missing
  EXPECT_EQ(v.score("<answer>eiffel tower", "eiffel tower"), 0.0);         // closing tag missing
  EXPECT_EQ(v.score("<answer>a</answer><answer>b</answer>", "b"), 1.0);    // the last <answer>
  EXPECT_EQ(v.score("</answer><answer>b", "b"), 1.0);  // after the last <answer>, no close: to end
  EXPECT_EQ(v.score("<answer></answer>", ""), 1.0);
  EXPECT_EQ(v.score("", ""), 0.0);
}

TEST(SquadVerifiers, F1) {
  // Independent arithmetic: pred {cat sat on}, label {cat on mat}: common 2, P = R = 2/3.
  EXPECT_DOUBLE_EQ(pt::reward::squad_f1("The cat sat on", "cat on the mat"),
                   2.0 * (2.0 / 3.0) * (2.0 / 3.0) / (2.0 / 3.0 + 2.0 / 3.0));
  EXPECT_DOUBLE_EQ(pt::reward::squad_f1("cat sat mat", "cat on mat"), 2.0 / 3.0);
  // Multiset intersection: pred "x x x" vs label "x": common 1, P = 1/3, R = 1.
  EXPECT_DOUBLE_EQ(pt::reward::squad_f1("x x x", "x"), 2.0 * (1.0 / 3.0) / (1.0 / 3.0 + 1.0));
  EXPECT_EQ(pt::reward::squad_f1("", "x"), 0.0);
  EXPECT_EQ(pt::reward::squad_f1("", ""), 0.0);  // num_same == 0 -> 0
  const pt::reward::f1_verifier v;
  EXPECT_EQ(v.score("<think>paris london</think> <answer>Paris</answer>", "paris"), 1.0);
  const std::vector<std::string> labels = {"rome", "paris france", "paris"};
  EXPECT_EQ(v.score("<|assistant|>paris", labels), 1.0);
  const std::vector<std::string> two = {"rome", "paris france"};
  EXPECT_DOUBLE_EQ(v.score("paris", two), 2.0 * 1.0 * 0.5 / 1.5);
  EXPECT_THROW(v.score("paris", std::vector<std::string>{}), pt::error);
}

TEST(SquadVerifiers, RemoveThinkingSection) {
  EXPECT_EQ(pt::reward::remove_thinking_section("<|assistant|> a</think>b</think> <answer>c</answer> "),
            "c");
  EXPECT_EQ(pt::reward::remove_thinking_section(" plain "), "plain");
  EXPECT_EQ(pt::reward::remove_thinking_section(""), "");
}
