// MATH verifiers: normalize_final_answer, strip_string, hendrycks_is_equiv, candidate extraction,
// math and strict_math. Each rule of open-instruct math_utils.py / ground_truth_utils.py has a
// hand-checked case (the expected strings are worked out by applying the rules in order).
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "posttrain/reward/math.hpp"

namespace pt = posttrain;
using pt::reward::hendrycks_is_equiv;
using pt::reward::last_boxed_answer;
using pt::reward::minerva_unnormalized_answer;
using pt::reward::normalize_final_answer;
using pt::reward::strip_string;

TEST(NormalizeFinalAnswer, Rules) {
  EXPECT_EQ(normalize_final_answer("x = y = 5"), "5");          // after the last '='
  EXPECT_EQ(normalize_final_answer("100,000"), "100000");       // all digits without commas
  EXPECT_EQ(normalize_final_answer("(1,2)"), "(1,2)");          // not all digits: commas kept
  EXPECT_EQ(normalize_final_answer("1,000 dollars"), "1000");   // " " then "dollars" removed
  EXPECT_EQ(normalize_final_answer("a 5"), "5");                // "a " substitution
  EXPECT_EQ(normalize_final_answer("\\$10"), "10");             // "\$" substitution
  EXPECT_EQ(normalize_final_answer("5 \\text{ cm}"), "5");      // "cm", then "\text{}" removed
  EXPECT_EQ(normalize_final_answer("90^\\circ"), "90");
  EXPECT_EQ(normalize_final_answer("\\mbox{yes}"), "yes");      // mbox -> text, then unwrapped
  EXPECT_EQ(normalize_final_answer("x,\\text{and}y"), "x,y");
  EXPECT_EQ(normalize_final_answer("1,\\text{and}2"), "12");  // all digits once "," is dropped
  EXPECT_EQ(normalize_final_answer("The value is $x^2$ here"), "x^2");  // text between $…$
  EXPECT_EQ(normalize_final_answer("\\text{(B)}"), "(B)");
  EXPECT_EQ(normalize_final_answer("\\textbf{7}"), "7");
  EXPECT_EQ(normalize_final_answer("\\overline{AB}"), "AB");
  EXPECT_EQ(normalize_final_answer("\\boxed{\\frac{1}{2}}"), "\\frac{1}{2}");  // greedy
  EXPECT_EQ(normalize_final_answer("\\frac12"), "\\frac{1}{2}");
  EXPECT_EQ(normalize_final_answer("\\frac123"), "\\frac{1}{2}3");
  EXPECT_EQ(normalize_final_answer("\\sqrt3"), "\\sqrt{3}");
  EXPECT_EQ(normalize_final_answer("\\sqrt{3}"), "\\sqrt{3}");
  EXPECT_EQ(normalize_final_answer("3\\ldots"), "3");
  EXPECT_EQ(normalize_final_answer("[invalidanswer]"), "[invalidanswer]");
  EXPECT_EQ(normalize_final_answer(""), "");
}

TEST(StripString, Rules) {
  EXPECT_EQ(strip_string("1\n2"), "12");
  EXPECT_EQ(strip_string("1\\!000"), "1000");
  EXPECT_EQ(strip_string("a\\\\b"), "a\\b");
  EXPECT_EQ(strip_string("\\dfrac{1}{3}"), "\\frac{1}{3}");
  EXPECT_EQ(strip_string("\\tfrac13"), "\\frac{1}{3}");
  EXPECT_EQ(strip_string("\\left( 3, 4 \\right)"), "(3,4)");
  EXPECT_EQ(strip_string("90^{\\circ}"), "90");
  EXPECT_EQ(strip_string("90^\\circ"), "90");
  EXPECT_EQ(strip_string("\\$5"), "5");
  EXPECT_EQ(strip_string("10 \\text{ cm}"), "10");  // right units
  EXPECT_EQ(strip_string("5\\%"), "5");
  EXPECT_EQ(strip_string("x + .5"), "x+0.5");        // " ." -> " 0."
  EXPECT_EQ(strip_string("{.5}"), "{0.5}");
  EXPECT_EQ(strip_string(".25"), "0.25");            // leading '.'
  EXPECT_EQ(strip_string(".5"), "\\frac{1}{2}");     // "0.5" -> \frac{1}{2}
  EXPECT_EQ(strip_string("0.5"), "\\frac{1}{2}");
  EXPECT_EQ(strip_string("0.50"), "0.50");
  EXPECT_EQ(strip_string("k = 7"), "7");             // short prefix dropped
  EXPECT_EQ(strip_string("xyz = 7"), "xyz=7");       // prefix longer than 2: kept
  EXPECT_EQ(strip_string("a=b=c"), "a=b=c");         // more than one '='
  EXPECT_EQ(strip_string("\\sqrt2"), "\\sqrt{2}");
  EXPECT_EQ(strip_string("\\frac1{72}"), "\\frac{1}{72}");
  EXPECT_EQ(strip_string("\\frac1"), "\\frac1");     // too short: fix_fracs leaves it
  EXPECT_EQ(strip_string("3/4"), "\\frac{3}{4}");    // a/b of integers
  EXPECT_EQ(strip_string("-3/4"), "\\frac{-3}{4}");
  EXPECT_EQ(strip_string("03/4"), "03/4");           // str(int) differs: unchanged
  EXPECT_EQ(strip_string("1/2/3"), "1/2/3");
  EXPECT_EQ(strip_string(""), "");
  // Python raises inside strip_string for these (ValueError, IndexError, AssertionError).
  EXPECT_EQ(strip_string("x/4"), std::nullopt);
  EXPECT_EQ(strip_string("\\sqrt"), std::nullopt);
  EXPECT_EQ(strip_string("\\frac"), std::nullopt);
  EXPECT_EQ(strip_string("1\\text{ a}2\\text{ b}"), std::nullopt);
}

TEST(HendrycksIsEquiv, StringsAndFallback) {
  EXPECT_TRUE(hendrycks_is_equiv("\\frac12", "0.5"));
  EXPECT_TRUE(hendrycks_is_equiv("3/4", "\\frac{3}{4}"));
  EXPECT_TRUE(hendrycks_is_equiv("\\dfrac{3}{4}", "\\frac{3}{4}"));
  EXPECT_TRUE(hendrycks_is_equiv("k = 7", "7"));
  EXPECT_FALSE(hendrycks_is_equiv("18.0", "18"));   // strings only: the sympy half is separate
  EXPECT_FALSE(hendrycks_is_equiv("2/4", "\\frac{1}{2}"));
  EXPECT_TRUE(hendrycks_is_equiv("x/4", "x/4"));    // strip raises: plain equality
  EXPECT_FALSE(hendrycks_is_equiv("x/4", "x/4 "));
  EXPECT_TRUE(hendrycks_is_equiv("", ""));
}

TEST(MathExtraction, LastBoxed) {
  EXPECT_EQ(last_boxed_answer("so \\boxed{\\frac{1}{2}} done"), "\\frac{1}{2}");  // nested braces
  EXPECT_EQ(last_boxed_answer("\\boxed{1} and \\boxed{2}"), "2");
  EXPECT_EQ(last_boxed_answer("\\boxed{a}{b}"), "a");
  EXPECT_EQ(last_boxed_answer("\\boxed 5$ and more"), "5");
  EXPECT_EQ(last_boxed_answer("\\boxed{3} then \\boxed 7"), "7");  // "\boxed " wins
  EXPECT_EQ(last_boxed_answer("\\fbox{4}"), std::nullopt);   // remove_boxed rejects \fbox
  EXPECT_EQ(last_boxed_answer("\\boxed{4"), std::nullopt);   // unbalanced
  EXPECT_EQ(last_boxed_answer("\\boxed4"), std::nullopt);
  EXPECT_EQ(last_boxed_answer("no box"), std::nullopt);
  EXPECT_EQ(last_boxed_answer(""), std::nullopt);
}

TEST(MathExtraction, Minerva) {
  EXPECT_EQ(minerva_unnormalized_answer(
                "Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct."),
            "$\\frac{1}{2}$");
  EXPECT_EQ(minerva_unnormalized_answer("Final Answer: The final answer is 5."), "[invalidanswer]");
  EXPECT_EQ(minerva_unnormalized_answer("Final Answer: The final answer is 5. I hope it is correct."),
            "5");
  // '.' matches any byte: the lazy group stops at " " before "5 I hope it is correct.".
  EXPECT_EQ(minerva_unnormalized_answer("Final Answer: The final answer is 5 I hope it is correct."),
            "");
  // The group cannot cross a newline.
  EXPECT_EQ(minerva_unnormalized_answer("Final Answer: The final answer is 5\n. I hope it is correct."),
            "[invalidanswer]");
  EXPECT_EQ(minerva_unnormalized_answer(""), "[invalidanswer]");
}

TEST(MathVerifier, Candidates) {
  const pt::reward::math_verifier v;
  EXPECT_EQ(v.score("The answer is \\boxed{\\dfrac{1}{2}}", "0.5"), 1.0);
  // The sympy half (math_expr.hpp) accepts what strip_string equality misses, as open-instruct.
  EXPECT_EQ(v.score("The answer is \\boxed{18.0}", "18"), 1.0);
  EXPECT_EQ(v.score("The answer is \\boxed{2/4}", "\\frac{1}{2}"), 1.0);
  EXPECT_EQ(v.score("The answer is \\boxed{x+1}", "1+x"), 1.0);
  EXPECT_EQ(v.score("The answer is \\boxed{18.5}", "18"), 0.0);
  EXPECT_EQ(v.score("Final Answer: The final answer is 100,000. I hope it is correct.", "100000"),
            1.0);
  EXPECT_EQ(v.score("Final Answer: The final answer is 3/4. I hope it is correct.",
                    "\\frac{3}{4}"),
            1.0);
  // [invalidanswer] skipped: the last two '$' give the candidate.
  EXPECT_EQ(v.score("we get $x = 3$ and then $4$", "4"), 1.0);
  EXPECT_EQ(v.score("we get $x = 3$ and then $4$", "3"), 0.0);
  // Only if nothing yet: a boxed answer suppresses the $…$ candidate.
  EXPECT_EQ(v.score("\\boxed{2} and $3$", "3"), 0.0);
  EXPECT_EQ(v.score("\\boxed{2} and $3$", "2"), 1.0);
  // Boxed and Minerva candidates are both tried.
  const char* both = "\\boxed{5} Final Answer: The final answer is 4. I hope it is correct.";
  EXPECT_EQ(v.score(both, "5"), 1.0);
  EXPECT_EQ(v.score(both, "4"), 1.0);
  // Fallback: the normalized whole ("k = 7" -> "7") and the raw whole.
  EXPECT_EQ(v.score("k = 7", "7"), 1.0);
  EXPECT_EQ(v.score("42", "42"), 1.0);
  EXPECT_EQ(v.score("x/4", "x/4"), 1.0);
  EXPECT_EQ(v.score("\\fbox{4}", "4"), 0.0);
  EXPECT_EQ(v.score("", ""), 1.0);
  EXPECT_EQ(v.score("", "1"), 0.0);
  EXPECT_EQ(v.score("7", ""), 0.0);
  EXPECT_EQ(pt::reward::math_candidates("\\boxed{2} and $3$"), std::vector<std::string>{"2"});
  EXPECT_EQ(pt::reward::math_candidates("1 = 2"), (std::vector<std::string>{"2", "1 = 2"}));
}

TEST(StrictMathVerifier, MinervaOnly) {
  const pt::reward::strict_math_verifier v;
  const char* both = "\\boxed{5} Final Answer: The final answer is 4. I hope it is correct.";
  EXPECT_EQ(v.score(both, "4"), 1.0);
  EXPECT_EQ(v.score(both, "5"), 0.0);  // no boxed extraction
  EXPECT_EQ(v.score("we get $x = 3$ and then $4$", "4"), 0.0);  // no $…$ extraction
  EXPECT_EQ(v.score("\\boxed{4}", "4"), 1.0);  // fallback normalize_final_answer unwraps \boxed{}
  // StrictMathVerifier runs the sympy half too.
  EXPECT_EQ(v.score("Final Answer: The final answer is $\\frac{2}{4}$. I hope it is correct.", "0.5"),
            1.0);
  EXPECT_EQ(v.score("Final Answer: The final answer is $\\frac{2}{5}$. I hope it is correct.", "0.5"),
            0.0);
  EXPECT_EQ(v.score("", ""), 1.0);
  EXPECT_EQ(pt::reward::strict_math_verifier::name(), "strict_math");
}
