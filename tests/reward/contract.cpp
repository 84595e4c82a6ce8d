// The verifier contract (docs/reward/verifiers.md): any prediction up to 1 MiB returns a score in
// [0, 1] (a malformed label may throw posttrain::error), on a 256 KiB worker stack, reading no
// byte outside the view, with bounded work; a comparison given up on scores 0.
//
// The predictions are views into exact-size heap buffers (contract::exact_buffer): under the
// sanitize preset (ASan + UBSan) a read one byte past a view fails here. Work bounds are checked
// through math_expr's work budget (operation counts), not clocks; the only clock is a generous
// per-call ceiling against a regression to seconds. Time per MiB is measured by
// bench/cpu/reward.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include "posttrain/core/error.hpp"
#include "posttrain/reward.hpp"
#include "reward/contract.h"
#include "reward/ifeval_labels.h"

namespace pt = posttrain;
namespace rw = pt::reward;
using contract::exact_buffer;
using contract::on_stack;

namespace {

std::string repeat(std::string_view piece, std::size_t bytes) {
  std::string s;
  s.reserve(bytes + piece.size());
  while (s.size() < bytes) s += piece;
  return s;
}

// Degenerate generations: each piece repeated to 1 MiB hits one scan or parser rule.
const std::vector<std::string>& adversarial_pieces() {
  static const std::vector<std::string> pieces = {
      "</think><answer>", "Final Answer: The final answer is ", "[", "<<", "|", "(", "{",
      "\\boxed{", "\\boxed ", "\\frac", "\\sqrt", "$", "1+", "-", "\\left|", "x", "1,", "**", "*",
      "P.S. ", "The answer is: ", "<answer>", "\n", " ", "a ", "sea ", "\\text{", "é", "\xe0\xa4\x95\xe0\xa4\xbe",
      "\"", "'", "{\"a\": [", "alpha ", "1/", "=", "\\\\", "#### 1", ". ", "Section 1 ", "\xff",
  };
  return pieces;
}

// IFEval: one label holding all 54 instructions (each is checked on every prediction).
std::vector<std::string> labels_to_check() { return {std::string(ifeval_labels::all_instructions)}; }

struct timer {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
};

// Every text verifier on one prediction (a view into an exact-size buffer).
void score_everything(std::string_view prediction, const std::vector<std::string>& labels,
                      double max_seconds_per_call) {
  const auto check = [&](const char* what, auto&& f) {
    const timer t;
    const double s = f();
    EXPECT_TRUE(s >= 0.0 && s <= 1.0) << what << " scored " << s;
    EXPECT_LE(t.seconds(), max_seconds_per_call * contract::time_scale) << what << " on " << prediction.size() << " bytes starting '"
                                                 << prediction.substr(0, 40) << "'";
  };
  check("gsm8k", [&] { return rw::gsm8k_verifier{}.score(prediction, "18"); });
  check("math", [&] { return rw::math_verifier{}.score(prediction, "\\frac{1}{2}"); });
  check("strict_math", [&] { return rw::strict_math_verifier{}.score(prediction, "\\frac{1}{2}"); });
  check("flan", [&] { return rw::flan_verifier{}.score(prediction, "calm"); });
  check("string_matcher", [&] { return rw::string_matcher_verifier{}.score(prediction, "calm"); });
  check("string_f1", [&] { return rw::f1_verifier{}.score(prediction, "the sea is calm"); });
  check("r1_format", [&] { return rw::r1_format_reward(prediction); });
  rw::ifeval_verifier ifeval;
  ifeval.detect_language = [](std::string_view) { return std::optional<std::string>("en"); };
  for (const auto& label : labels)
    check(label.c_str(), [&] { return ifeval.score(prediction, label); });
}

}  // namespace

// 1 MiB of each degenerate piece, every verifier, on a 256 KiB stack (IFEval, whose 54
// instructions together take ~6 s per MiB, gets 128 KiB of each piece here and the whole MiB for
// the pieces its scans were quadratic on; bench/cpu/reward.cpp times every pair at 1 MiB). The
// ceiling (30 s a call, sanitizers included) only catches a return to quadratic scans (minutes).
// Under the sanitizers (~10x slower) the long inputs are 128 KiB, not 1 MiB: that build looks
// for bad reads and undefined behaviour, which the shorter inputs reach the same way, while the
// normal build checks the size.
TEST(VerifierContract, OneMebibyteOfDegenerateOutputOnAWorkerStack) {
  const auto labels = labels_to_check();
  const std::size_t large = contract::sanitized ? 128 << 10 : 1 << 20;
  for (const auto& piece : adversarial_pieces()) {
    const exact_buffer buf(repeat(piece, large));
    const exact_buffer short_buf(repeat(piece, contract::sanitized ? 16 << 10 : 128 << 10));
    on_stack([&] {
      score_everything(buf.view(), {}, 30.0);
      score_everything(short_buf.view(), labels, 30.0);
    });
  }
  for (const char* piece : {"[", "alpha "}) {
    const exact_buffer buf(repeat(piece, large));
    on_stack([&] { score_everything(buf.view(), labels, 30.0); });
  }
}

// Short inputs that end where a parser looks one byte further (a number, an escape, a command),
// and every prefix of them, as exact-size views: ASan reports any read past the end.
TEST(VerifierContract, NoReadPastTheView) {
  const std::vector<std::string> seeds = {
      "1", "1.", "1.5e", "-1", "1_0", "'a'", "u'", "r'\\'", "\"\\u12", "[1, {'a': 2}]", "{\"a\": -Infinity}",
      "\\boxed{\\frac12}", "\\boxed", "\\sqrt", "\\frac1", "Final Answer: The final answer is 1. I hope it is correct.",
      "<<title>>", "</think> <answer>1</answer>", "$1$", "1,234", "\\left|x\\right|", "d", "dx", "&", "=&",
      "\\log_2 8", "x'", "x_{1}", "\\%", "P.S.", "[a]", "**b**", "*a*", "The answer is: 1", "#### 1,2",
      "\\text{ m}", "0.5", "1/2", "\\$", "\\mathit{ab}", "\\binom{4}{2}", "\\sin^{-1} x", "|1|^", "\xe0\xa4",
  };
  const auto labels = labels_to_check();
  for (const auto& seed : seeds)
    for (std::size_t n = 0; n <= seed.size(); ++n) {
      const exact_buffer p(std::string_view(seed).substr(0, n));
      score_everything(p.view(), labels, 20.0);
      EXPECT_NO_FATAL_FAILURE(rw::sympy_is_equiv(p.view(), p.view()));
      try {
        (void)rw::ifeval::parse_python_literal(p.view());
      } catch (const pt::error&) {
      }
      (void)rw::ifeval::is_valid_json(p.view());
      // As labels too: malformed labels throw posttrain::error, nothing else.
      try {
        (void)rw::ifeval_verifier{}.score("x", p.view());
      } catch (const pt::error&) {
      }
      (void)rw::math_verifier{}.score("x", p.view());
    }
}

// Defect class 1: literal_parser::number() read s[pos] before checking pos < size.
TEST(VerifierContract, LiteralNumberAtTheEndOfTheView) {
  for (const char* text : {"1", "12", "-7", "[1, 2", "{'a': 1", "1_000", "0"}) {
    const exact_buffer b(text);
    try {
      (void)rw::ifeval::parse_python_literal(b.view());
    } catch (const pt::error&) {
    }
    (void)rw::ifeval::is_valid_json(b.view());
  }
  const exact_buffer one("1");
  EXPECT_EQ(rw::ifeval::parse_python_literal(one.view()).i, 1);
  const exact_buffer grouped("1_000");
  EXPECT_EQ(rw::ifeval::parse_python_literal(grouped.view()).i, 1000);
}

// Defect class 3: the '|' alternative re-parsed its content for the ket after a failed abs
// (2^n for n nested bars; 20 bars took ~1 s). Checked by work, not time: every case must finish
// within 2^20 operations (the default budget is 2^23).
TEST(VerifierContract, NestedBarsAreParsedInBoundedWork) {
  rw::equiv_options small;
  small.work_limit = std::uint64_t{1} << 20;
  for (int n : {8, 16, 24, 40, 100}) {
    const std::string bars(static_cast<std::size_t>(n), '|');
    // ||...|-3|...|| = 3 (an even or odd nesting of abs of -3 is 3); at 100 bars the grammar's
    // other readings (implicit products of abs values) win, but the parse still ends in budget.
    if (n <= 40)
      EXPECT_EQ(rw::sympy_equiv_outcome(bars + "-3" + bars, "3", small), rw::equiv_outcome::equivalent) << n;
    else
      EXPECT_NE(rw::sympy_equiv_outcome(bars + "-3" + bars, "3", small), rw::equiv_outcome::gave_up) << n;
    // Unclosed: every bar tries abs and ket and fails; "not equivalent", not "gave up".
    EXPECT_EQ(rw::sympy_equiv_outcome(bars + "1", "1", small), rw::equiv_outcome::not_equivalent) << n;
    EXPECT_EQ(rw::sympy_equiv_outcome(bars + "x+" + bars, "1", small), rw::equiv_outcome::not_equivalent) << n;
    // Bars inside other groups and \left| \right| pairs.
    std::string mixed;
    for (int i = 0; i < n; ++i) mixed += i % 2 ? "(|" : "\\left|";
    EXPECT_EQ(rw::sympy_equiv_outcome(mixed, "1", small), rw::equiv_outcome::not_equivalent) << n;
  }
}

// Defect class 4: exact arithmetic under a work budget. \binom{\frac{1}{3}}{4095} took ~40 s;
// now it gives up (scored 0) inside the budget, and a deadline reports timed_out.
TEST(VerifierContract, ExactArithmeticHasAWorkBudget) {
  for (const char* heavy : {"\\binom{\\frac{1}{3}}{4095}", "\\binom{\\frac{2}{7}}{4000}", "4095!-4094!",
                            "\\binom{\\frac{1}{3}}{4095}+\\binom{\\frac{1}{5}}{4095}"}) {
    const timer t;
    EXPECT_EQ(rw::sympy_equiv_outcome(heavy, "1"), rw::equiv_outcome::gave_up) << heavy;
    EXPECT_FALSE(rw::sympy_is_equiv(heavy, heavy)) << heavy;
    EXPECT_LE(t.seconds(), 10.0 * contract::time_scale) << heavy;  // ~0.1 s each; was ~40 s
    EXPECT_EQ(rw::math_verifier{}.score(std::string("$\\boxed{") + heavy + "}$", "1"), 0.0);
  }
  rw::equiv_options deadline;
  deadline.work_limit = ~std::uint64_t{0};
  deadline.time_limit = std::chrono::milliseconds(5);
  const timer t;
  EXPECT_EQ(rw::sympy_equiv_outcome("\\binom{\\frac{1}{3}}{4095}", "1", deadline), rw::equiv_outcome::timed_out);
  EXPECT_LE(t.seconds(), 5.0 * contract::time_scale);
  // Small exact work is unaffected.
  EXPECT_EQ(rw::sympy_equiv_outcome("\\binom{\\frac{1}{3}}{4}", "-\\frac{10}{243}"), rw::equiv_outcome::equivalent);
  EXPECT_EQ(rw::sympy_equiv_outcome("2^{100}+1", "1267650600228229401496703205377"), rw::equiv_outcome::equivalent);
}

// Defect class 5: deep trees and long sign runs on a 256 KiB stack (recursion as deep as the
// tree overflowed 512 KiB at 900 summands inside parentheses).
TEST(VerifierContract, DeepExpressionsOnAWorkerStack) {
  on_stack([] {
    for (int n : {900, 973}) {
      std::string sum = "(1";
      for (int i = 1; i < n; ++i) sum += "+1";
      sum += ")";
      EXPECT_TRUE(rw::sympy_is_equiv(sum, std::to_string(n))) << n;
      EXPECT_TRUE(rw::sympy_is_equiv("2\\cdot" + sum, std::to_string(2 * n))) << n;
      std::string product = "(x";
      for (int i = 1; i < n; ++i) product += "\\cdot x";
      product += ")";
      EXPECT_TRUE(rw::sympy_is_equiv(product, "x^{" + std::to_string(n) + "}")) << n;
      std::string powers = "1";
      for (int i = 1; i < n; ++i) powers += "^1";
      EXPECT_TRUE(rw::sympy_is_equiv(powers, "1")) << n;
    }
    EXPECT_TRUE(rw::sympy_is_equiv(std::string(971, '-') + "1", "-1"));
    // Signs count across groups (sympy's frames do): 2 outside + 961 inside + the group's unary.
    EXPECT_TRUE(rw::sympy_is_equiv("-(" + std::string(961, '-') + "1)", "1"));
    const std::string nested = std::string(111, '(') + "x+1" + std::string(111, ')');
    EXPECT_TRUE(rw::sympy_is_equiv(nested, "1+x"));
    std::string nested_abs;
    for (int i = 0; i < 50; ++i) nested_abs += "|(";  // 100 expr levels (the limit is 112)
    nested_abs += "-2";
    for (int i = 0; i < 50; ++i) nested_abs += ")|";
    EXPECT_TRUE(rw::sympy_is_equiv(nested_abs, "2"));
    EXPECT_TRUE(rw::sympy_is_equiv(std::string(257, 'x'), "x^{257}"));
    // Deep label literals: JSON and Python nesting up to the 512-level limit.
    EXPECT_TRUE(rw::ifeval::is_valid_json(std::string(512, '[') + std::string(512, ']')));
    EXPECT_FALSE(rw::ifeval::is_valid_json(std::string(600, '[') + std::string(600, ']')));
    EXPECT_THROW((void)rw::ifeval::parse_python_literal(std::string(600, '[') + std::string(600, ']')), pt::error);
    // And the verifiers on a whole MiB of nesting.
    EXPECT_EQ(rw::math_verifier{}.score("$\\boxed{" + std::string(1 << 20, '(') + "}$", "1"), 0.0);
    EXPECT_EQ(rw::math_verifier{}.score(std::string(1 << 20, '-') + "1", "-1"), 0.0);
  });
}

// The per-call budget: a reward source reads gave_up / timed_out from verify() and counts them.
TEST(VerifierContract, OutcomesForMetrics) {
  rw::math_verifier v;
  const std::string heavy = "$\\boxed{\\binom{\\frac{1}{3}}{4095}}$";
  EXPECT_EQ(rw::verify(v, heavy, "1").status, rw::verify_status::gave_up);
  EXPECT_EQ(rw::verify(v, heavy, "1").score, 0.0);
  v.equiv.work_limit = ~std::uint64_t{0};
  v.equiv.time_limit = std::chrono::milliseconds(5);
  EXPECT_EQ(rw::verify(v, heavy, "1").status, rw::verify_status::timed_out);
  rw::strict_math_verifier strict;
  strict.equiv = v.equiv;
  EXPECT_EQ(rw::verify(strict, "Final Answer: The final answer is \\binom{\\frac{1}{3}}{4095}. I hope it is correct.", "1")
                .status,
            rw::verify_status::timed_out);
  // A match by the string half is a score, whatever the sympy half did.
  const auto same = rw::verify(v, heavy, "\\binom{\\frac{1}{3}}{4095}");
  EXPECT_EQ(same.score, 1.0);
  EXPECT_EQ(same.status, rw::verify_status::scored);
  // Verifiers without check() always score.
  EXPECT_EQ(rw::verify(rw::gsm8k_verifier{}, "18", "18").status, rw::verify_status::scored);
  rw::verify_counts counts;
  for (const auto* p : {"$\\boxed{1}$", heavy.c_str(), "2"}) counts.add(rw::verify(v, p, "1").status);
  EXPECT_EQ(counts.scored, 2u);
  EXPECT_EQ(counts.timed_out, 1u);
}
