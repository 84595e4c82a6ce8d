#pragma once
// MATH-style problems answered in \boxed{} (verifier "math", reward/math.hpp): exact fractions and
// linear equations with a canonical answer (an integer "7", or a reduced "\frac{7}{6}" /
// "-\frac{1}{2}"). The math verifier compares with sympy's rules, so an equivalent form
// ("\boxed{\frac{14}{12}}", "\boxed{7/6}", "\boxed{0.5}" for 1/2) also scores 1.
//
//   question  "Compute $\frac{1}{2}+\frac{2}{3}$."      solution  "\boxed{\frac{7}{6}}"
//   question  "Solve $3x+4=9$ for $x$."                  solution  "\boxed{\frac{5}{3}}"
//   question  "Compute $\frac{2}{3}\cdot\frac{9}{4}$."   solution  "\boxed{\frac{3}{2}}"
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <string>

#include <posttrain/pipeline/generator.hpp>

#include "common.hpp"

namespace reference_trainer::tasks {

// p/q in lowest terms as the canonical LaTeX answer ("3", "\frac{7}{6}", "-\frac{1}{2}").
inline std::string latex_fraction(long p, long q) {
  if (q < 0) p = -p, q = -q;
  const long g = std::gcd(std::labs(p), q);
  if (g > 1) p /= g, q /= g;
  if (q == 1) return std::to_string(p);
  return std::string(p < 0 ? "-" : "") + "\\frac{" + std::to_string(std::labs(p)) + "}{" + std::to_string(q) + "}";
}

class math_generator {
 public:
  math_generator(std::uint64_t seed, int max_operand) : rng_(seed), max_(max_operand) {}

  problem next() {
    const int kind = static_cast<int>(pick(3));
    problem p;
    p.verifier = "math";
    long num = 0, den = 1;
    if (kind == 0) {  // a/b + c/d
      const long a = operand(), b = 2 + pick(static_cast<std::uint64_t>(max_)), c = operand(),
                 d = 2 + pick(static_cast<std::uint64_t>(max_));
      p.question = "Compute $\\frac{" + std::to_string(a) + "}{" + std::to_string(b) + "}+\\frac{" +
                   std::to_string(c) + "}{" + std::to_string(d) + "}$.";
      num = a * d + c * b;
      den = b * d;
    } else if (kind == 1) {  // a x + b = c
      const long a = 1 + pick(static_cast<std::uint64_t>(max_)), b = operand(), c = operand();
      p.question = "Solve $" + (a == 1 ? std::string() : std::to_string(a)) + "x+" + std::to_string(b) +
                   "=" + std::to_string(c) + "$ for $x$.";
      num = c - b;
      den = a;
    } else {  // a/b · c/d
      const long a = operand(), b = 2 + pick(static_cast<std::uint64_t>(max_)), c = operand(),
                 d = 2 + pick(static_cast<std::uint64_t>(max_));
      p.question = "Compute $\\frac{" + std::to_string(a) + "}{" + std::to_string(b) + "}\\cdot\\frac{" +
                   std::to_string(c) + "}{" + std::to_string(d) + "}$.";
      num = a * c;
      den = b * d;
    }
    p.answer = latex_fraction(num, den);
    p.solution = "\\boxed{" + p.answer + "}";
    // Off by one (num/den + 1): never equal to the answer.
    p.wrong = "\\boxed{" + latex_fraction(num + den, den) + "}";
    return p;
  }

 private:
  long operand() { return 1 + static_cast<long>(pick(static_cast<std::uint64_t>(max_))); }
  long pick(std::uint64_t n) { return static_cast<long>(rng_.next() % n); }
  posttrain::pipeline::generate::sample_rng rng_;
  int max_;
};

}  // namespace reference_trainer::tasks
