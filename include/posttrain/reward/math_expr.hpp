#pragma once
// The sympy half of open-instruct's MATH equivalence (math_utils.py is_equiv): parse both strings
// with sympy.parsing.latex.parse_latex (ANTLR backend, sympy 1.14) and accept when
// sympy.simplify(a - b) == 0; any parse error, TypeError (a relation such as "x=1"), exception or
// 5 s timeout counts as "not equivalent".
//
// This is a deterministic approximation, not sympy:
//   * Lexer: the token rules of sympy's LaTeX.g4 (longest match; "\left", "\right", "\,", "\!"...
//     skipped; "\pi", "\alpha", "\text" are plain SYMBOL tokens; "dx", "do" are DIFFERENTIAL
//     tokens; a character no rule accepts, such as '%', '$', "\%", is an error anywhere in the
//     string, as the lexer raises before the parser gives up).
//   * Parser: the grammar's rules as recursive descent. parse_latex is not strict: the parse
//     stops where the relation cannot go on ("1,2" is 1, "2(1,2)" is 2) but an unclosed group is
//     an error ("(1,2)"). Where ANTLR predicts with lookahead we try the longer alternative and
//     back off when it fails; a '.' after digits is always part of the number ("1." fails).
//   * Semantics (what sympy builds): LETTER and SYMBOL are free symbols, so "\pi" and "e" are
//     symbols, not constants; "\infty" is oo (any comparison with it fails, as oo - oo is nan);
//     "x(y)" and "f(x)" are undefined functions; an unbraced numeric script takes every digit of
//     the run but the last ("\log_2 32" is log base 23 of 2, as sympy parses it); implicit products, with "2x3" read as 2·3
//     (convert_postfix_list's 'x' rule); "\sin^{-1}" is asin; "\log_b", "\lg" are logarithms to
//     base b, 10; bra/ket are opaque functions; \int, \sum, \prod, \lim, derivatives and "|_a^b"
//     are not evaluated (treated as "not equivalent": open-instruct may accept such answers).
//   * Equality ("simplify(a - b) == 0"):
//       - without free symbols, rational values (integers, fractions, integer powers, exact roots
//         such as \sqrt{4}, floor, ceil, factorial, binomial) are compared exactly with big
//         rationals (up to 2^32768 in magnitude; larger values count as not equivalent);
//       - Float ** Integer is the exact power of the rounded base, rounded (1.1^2 is not 1.21);
//         a division with a Float multiplies by the rounded reciprocal (\frac{2.1}{0.7} is 3);
//         Integer ** Float is its exact value when it has one (4^{0.5} is 2), else a value no
//         Float or irrational equals (2^{0.5} is neither \sqrt{2} nor 1.4142135623730951);
//         without symbols, a value with a Float never equals an irrational root (\sqrt{2});
//       - decimals are sympy Floats: the decimal rounded to p bits, p = round((max(15, digits) + 1)
//         · log2 10) (53 bits up to 15 significant digits), and arithmetic with them rounds to
//         the larger precision, as mpmath does; "0.1" equals "\frac{1}{10}", "0.1+0.2" does not
//         equal "0.3";
//       - anything else (irrational roots, functions, free symbols) is evaluated in complex
//         double precision at 4 seeded points (symbols drawn with |Re|, |Im| in [0.3, 1.3]:
//         symbols are complex, so \sqrt{x^2} is not x), and equal when
//         |a − b| <= 1e-12 · (M_a + M_b), M the sum of the magnitudes of the terms (a bound on the
//         rounding error of cancellation). Undefined functions get a deterministic pseudo-random
//         value per (name, argument). Where sympy's simplify cannot prove an identity that holds
//         numerically we say equivalent and open-instruct does not; likewise where Float
//         coefficients of symbolic terms differ by an ulp ("0.1x+0.2x" vs "0.3x"): with a
//         decimal present the tolerance is 1e-15, not 1e-12, since sympy never equates a Float
//         with an irrational value, but an ulp of a coefficient stays inside it.
//
// The sub-family's headers: math_expr/number.hpp (big integers, rationals, Float rounding),
// math_expr/lexer.hpp, math_expr/parser.hpp (expression tree), math_expr/evaluator.hpp (values and
// equality); this header is the entry point, sympy_is_equiv.
#include <chrono>
#include <complex>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include "posttrain/config.hpp"
#include "posttrain/reward/math_expr/evaluator.hpp"
#include "posttrain/reward/math_expr/number.hpp"
#include "posttrain/reward/math_expr/parser.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace reward {

// How a comparison ended.
enum class equiv_outcome { equivalent, not_equivalent, gave_up, timed_out };

struct equiv_options {
  // Limb operations (big-number work plus parser steps) one comparison may spend before it gives
  // up: 2^23 is ~0.1 s on one core (GCC -O2, ~10 ns an operation with the allocations). The
  // golden cases need under 2^18, the largest unit cases (974 summands) under 2^22. 2^26 let a
  // fuzzed "2^{7064}" against symbols cost ~0.7 s a comparison (a libFuzzer timeout under ASan).
  std::uint64_t work_limit = std::uint64_t{1} << 23;
  // Wall-clock limit of one comparison; zero or negative: none (the work limit still bounds it).
  std::chrono::nanoseconds time_limit{0};
};

// open-instruct's is_equiv(a, b) (sympy half of the MATH check), approximated as documented at
// the top of this header. Deterministic; never throws for any input.
//
// The outcome says whether the comparison finished: `equivalent` / `not_equivalent`, `gave_up`
// (past the work budget: operands or work too large; scored as not equivalent) or `timed_out`
// (past options.time_limit; scored as not equivalent, as open-instruct's 5 s timeout is).
inline equiv_outcome sympy_equiv_outcome(std::string_view a, std::string_view b,
                                         const equiv_options& options = {}) {
  using namespace math_expr_detail;
  const budget_scope scope(options.work_limit, options.time_limit);
  const auto verdict = [](bool eq) { return eq ? equiv_outcome::equivalent : equiv_outcome::not_equivalent; };
  try {
    // parse_latex strips Python whitespace first; the lexer skips it anyway.
    const auto pa = parse(a);
    const auto pb = parse(b);
    if (!pa || !pb) return verdict(false);
    // Eq/Lt... minus anything raises TypeError.
    for (const parsed* p : {&*pa, &*pb})
      if (has_kind(*p, p->root, op::relation)) return verdict(false);
    // sympy never equates a Float with an irrational value or symbol term, it only cancels Float
    // coefficients; the residual our own double rounding leaves is a few ulps.
    const bool floats = has_kind(*pa, pa->root, op::decimal) || has_kind(*pb, pb->root, op::decimal);
    const double tolerance = floats ? 1e-15 : 1e-12;
    std::set<std::string> symbols;
    collect_symbols(*pa, pa->root, symbols);
    collect_symbols(*pb, pb->root, symbols);
    // Seeded points (splitmix64): complex values so that branch cuts separate what sympy keeps
    // apart for complex symbols.
    std::uint64_t state = 0x5eed5eed5eedULL;
    auto uniform = [&] {
      state += 0x9e3779b97f4a7c15ULL;
      return static_cast<double>(mix(state) >> 11) / 9007199254740992.0;
    };
    auto coordinate = [&] {
      const double m = 0.3 + uniform();
      return uniform() < 0.5 ? -m : m;
    };
    const int points = symbols.empty() ? 1 : sample_points;
    int agreed = 0;
    for (int i = 0; i < points; ++i) {
      std::map<std::string, std::complex<double>> point;
      for (const auto& s : symbols) {
        const double re = coordinate();
        point[s] = {re, coordinate()};
      }
      const value va = evaluator(pa->nodes, point).eval(pa->root);
      const value vb = evaluator(pb->nodes, point).eval(pb->root);
      const auto eq = equal_at(va, vb, tolerance, symbols.empty());
      if (!eq) continue;  // a pole at this point: the others decide
      if (!*eq) return verdict(false);
      ++agreed;
    }
    return verdict(agreed > 0);
  } catch (const unsupported&) {
    return verdict(false);
  } catch (const too_large&) {
    return equiv_outcome::gave_up;
  } catch (const timed_out&) {
    return equiv_outcome::timed_out;
  }
}

inline bool sympy_is_equiv(std::string_view a, std::string_view b, const equiv_options& options = {}) {
  return sympy_equiv_outcome(a, b, options) == equiv_outcome::equivalent;
}

}  // namespace reward

POSTTRAIN_NAMESPACE_END
