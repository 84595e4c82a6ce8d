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
//     "x(y)" and "f(x)" are undefined functions; implicit products, with "2x3" read as 2·3
//     (convert_postfix_list's 'x' rule); "\sin^{-1}" is asin; "\log_b", "\lg" are logarithms to
//     base b, 10; bra/ket are opaque functions; \int, \sum, \prod, \lim, derivatives and "|_a^b"
//     are not evaluated (treated as "not equivalent": open-instruct may accept such answers).
//   * Equality ("simplify(a - b) == 0"):
//       - without free symbols, rational values (integers, fractions, integer powers, exact roots
//         such as \sqrt{4}, floor, ceil, factorial, binomial) are compared exactly with big
//         rationals (up to 2^32768 in magnitude; larger values count as not equivalent);
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
#include <algorithm>
#include <array>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "posttrain/config.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace reward {

namespace math_expr_detail {

// ---------------------------------------------------------------------------------------------
// Big integers and rationals (exact comparison of integers such as 2^100 or 10^20 + 1, which
// doubles cannot tell apart).

// A value too large for the exact path; the comparison counts as not equivalent.
struct too_large {};

inline constexpr std::size_t max_bits = 32768;

struct bigint {
  std::vector<std::uint32_t> mag;  // little-endian limbs, no leading zero limbs; zero is empty
  bool neg = false;

  bigint() = default;
  explicit bigint(std::int64_t v) {
    neg = v < 0;
    std::uint64_t u = neg ? 0 - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
    while (u) {
      mag.push_back(static_cast<std::uint32_t>(u));
      u >>= 32;
    }
  }
  bool is_zero() const { return mag.empty(); }
  std::size_t bits() const {
    if (mag.empty()) return 0;
    std::size_t b = 32 * (mag.size() - 1);
    for (std::uint32_t top = mag.back(); top; top >>= 1) ++b;
    return b;
  }
  void trim() {
    while (!mag.empty() && mag.back() == 0) mag.pop_back();
    if (mag.empty()) neg = false;
    if (bits() > max_bits) throw too_large{};
  }
  bool bit(std::size_t i) const {
    return i / 32 < mag.size() && ((mag[i / 32] >> (i % 32)) & 1u);
  }
};

inline int cmp_mag(const bigint& a, const bigint& b) {
  if (a.mag.size() != b.mag.size()) return a.mag.size() < b.mag.size() ? -1 : 1;
  for (std::size_t i = a.mag.size(); i-- > 0;)
    if (a.mag[i] != b.mag[i]) return a.mag[i] < b.mag[i] ? -1 : 1;
  return 0;
}
inline bigint add_mag(const bigint& a, const bigint& b) {
  bigint r;
  std::uint64_t carry = 0;
  for (std::size_t i = 0; i < std::max(a.mag.size(), b.mag.size()) || carry; ++i) {
    const std::uint64_t s = carry + (i < a.mag.size() ? a.mag[i] : 0) + (i < b.mag.size() ? b.mag[i] : 0);
    r.mag.push_back(static_cast<std::uint32_t>(s));
    carry = s >> 32;
  }
  r.trim();
  return r;
}
inline bigint sub_mag(const bigint& a, const bigint& b) {  // |a| >= |b|
  bigint r;
  std::int64_t borrow = 0;
  for (std::size_t i = 0; i < a.mag.size(); ++i) {
    std::int64_t d = static_cast<std::int64_t>(a.mag[i]) - borrow - (i < b.mag.size() ? b.mag[i] : 0);
    borrow = d < 0;
    if (d < 0) d += std::int64_t{1} << 32;
    r.mag.push_back(static_cast<std::uint32_t>(d));
  }
  r.trim();
  return r;
}
inline int cmp(const bigint& a, const bigint& b) {
  if (a.neg != b.neg) return a.neg ? -1 : 1;
  const int c = cmp_mag(a, b);
  return a.neg ? -c : c;
}
inline bigint operator-(bigint a) {
  if (!a.is_zero()) a.neg = !a.neg;
  return a;
}
inline bigint operator+(const bigint& a, const bigint& b) {
  bigint r;
  if (a.neg == b.neg) {
    r = add_mag(a, b);
    r.neg = a.neg && !r.is_zero();
  } else if (cmp_mag(a, b) >= 0) {
    r = sub_mag(a, b);
    r.neg = a.neg && !r.is_zero();
  } else {
    r = sub_mag(b, a);
    r.neg = b.neg && !r.is_zero();
  }
  return r;
}
inline bigint operator-(const bigint& a, const bigint& b) { return a + (-b); }
inline bigint operator*(const bigint& a, const bigint& b) {
  if (a.is_zero() || b.is_zero()) return {};
  if (a.bits() + b.bits() > max_bits + 1) throw too_large{};
  bigint r;
  r.mag.assign(a.mag.size() + b.mag.size(), 0);
  for (std::size_t i = 0; i < a.mag.size(); ++i) {
    std::uint64_t carry = 0;
    for (std::size_t j = 0; j < b.mag.size(); ++j) {
      const std::uint64_t cur = r.mag[i + j] + static_cast<std::uint64_t>(a.mag[i]) * b.mag[j] + carry;
      r.mag[i + j] = static_cast<std::uint32_t>(cur);
      carry = cur >> 32;
    }
    r.mag[i + b.mag.size()] += static_cast<std::uint32_t>(carry);
  }
  r.neg = a.neg != b.neg;
  r.trim();
  return r;
}
inline bigint shl(const bigint& a, std::size_t k) {
  if (a.is_zero()) return a;
  if (a.bits() + k > max_bits) throw too_large{};
  bigint r;
  r.mag.assign(k / 32, 0);
  std::uint32_t carry = 0;
  for (const std::uint32_t limb : a.mag) {
    r.mag.push_back(k % 32 ? (limb << (k % 32)) | carry : limb);
    carry = k % 32 ? limb >> (32 - k % 32) : 0;
  }
  r.mag.push_back(carry);
  r.neg = a.neg;
  r.trim();
  return r;
}
inline bigint shr_mag(const bigint& a, std::size_t k) {  // |a| >> k
  bigint r;
  for (std::size_t i = k / 32; i < a.mag.size(); ++i) {
    std::uint64_t v = a.mag[i] >> (k % 32);
    if (k % 32 && i + 1 < a.mag.size()) v |= static_cast<std::uint64_t>(a.mag[i + 1]) << (32 - k % 32);
    r.mag.push_back(static_cast<std::uint32_t>(v));
  }
  r.trim();
  return r;
}
// Truncating division of magnitudes (shift-and-subtract over the quotient's bits: short for the
// small quotients of Euclid's algorithm, simple to check).
inline std::pair<bigint, bigint> divmod_mag(const bigint& a, const bigint& b) {
  bigint q, r = a;
  r.neg = false;
  bigint d = b;
  d.neg = false;
  if (cmp_mag(r, d) < 0) return {q, r};
  const std::size_t shift = r.bits() - d.bits();
  bigint s = shl(d, shift);
  q.mag.assign(shift / 32 + 1, 0);
  for (std::size_t k = shift + 1; k-- > 0;) {
    if (cmp_mag(r, s) >= 0) {
      r = sub_mag(r, s);
      q.mag[k / 32] |= 1u << (k % 32);
    }
    s = shr_mag(s, 1);
  }
  q.trim();
  return {q, r};
}
inline bigint gcd(bigint a, bigint b) {
  a.neg = b.neg = false;
  while (!b.is_zero()) {
    bigint r = divmod_mag(a, b).second;
    a = std::move(b);
    b = std::move(r);
  }
  return a;
}
inline bigint pow(const bigint& a, std::uint64_t e) {
  bigint r(1), base = a;
  for (; e; e >>= 1) {
    if (e & 1) r = r * base;
    if (e > 1) base = base * base;
  }
  return r;
}
inline double to_double(const bigint& a) {
  if (a.is_zero()) return 0.0;
  const std::size_t b = a.bits();
  const std::size_t drop = b > 64 ? b - 64 : 0;
  const bigint top = shr_mag(a, drop);
  std::uint64_t v = 0;
  for (std::size_t i = top.mag.size(); i-- > 0;) v = (v << 32) | top.mag[i];
  const double d = std::ldexp(static_cast<double>(v), static_cast<int>(drop));
  return a.neg ? -d : d;
}
inline std::string hex(const bigint& a) {  // a stable key for hashing
  std::string s = a.neg ? "-" : "";
  char buf[12];
  for (std::size_t i = a.mag.size(); i-- > 0;) {
    std::snprintf(buf, sizeof buf, "%08x", a.mag[i]);
    s += buf;
  }
  return s.empty() ? "0" : s;
}

struct rational {
  bigint num, den{1};  // den > 0, gcd(num, den) = 1
  rational() = default;
  explicit rational(bigint n, bigint d = bigint(1)) : num(std::move(n)), den(std::move(d)) { normalize(); }
  void normalize() {
    if (den.neg) {
      num = -num;
      den = -den;
    }
    const bigint g = gcd(num, den);
    if (!(g.mag.size() == 1 && g.mag[0] == 1) && !g.is_zero()) {
      const bool n = num.neg;
      num = divmod_mag(num, g).first;
      num.neg = n && !num.is_zero();
      den = divmod_mag(den, g).first;
    }
  }
  bool is_zero() const { return num.is_zero(); }
  bool is_integer() const { return den.mag.size() == 1 && den.mag[0] == 1; }
  bool operator==(const rational& o) const { return cmp(num, o.num) == 0 && cmp(den, o.den) == 0; }
};
inline rational operator+(const rational& a, const rational& b) {
  return rational(a.num * b.den + b.num * a.den, a.den * b.den);
}
inline rational operator-(const rational& a) {
  rational r = a;
  r.num = -r.num;
  return r;
}
inline rational operator-(const rational& a, const rational& b) { return a + (-b); }
inline rational operator*(const rational& a, const rational& b) {
  return rational(a.num * b.num, a.den * b.den);
}
inline rational operator/(const rational& a, const rational& b) {  // b != 0
  return rational(a.num * b.den, a.den * b.num);
}
inline double to_double(const rational& q) {
  // Scale so the quotient keeps ~64 significant bits even when both parts overflow a double.
  const long shift = static_cast<long>(q.den.bits()) - static_cast<long>(q.num.bits()) + 64;
  bigint n = q.num;
  n.neg = false;
  bigint t = shift > 0 ? shl(n, static_cast<std::size_t>(shift)) : shr_mag(n, static_cast<std::size_t>(-shift));
  const double v = std::ldexp(to_double(divmod_mag(t, q.den).first), static_cast<int>(-shift));
  return q.num.neg ? -v : v;
}
// floor(q).
inline bigint floor(const rational& q) {
  auto [quot, rem] = divmod_mag(q.num, q.den);
  if (q.num.neg) {
    quot.neg = !quot.is_zero();
    if (!rem.is_zero()) quot = quot - bigint(1);
  }
  return quot;
}
// Round to the nearest value with a `prec`-bit mantissa, ties to even (mpmath's round_nearest):
// the value of a sympy Float of that precision.
inline rational round_to_bits(const rational& q, int prec) {
  if (q.is_zero()) return q;
  bigint n = q.num;
  n.neg = false;
  long e = static_cast<long>(n.bits()) - static_cast<long>(q.den.bits()) - prec;
  for (;;) {
    // |q| / 2^e = n / (den · 2^e)
    const bigint num = e < 0 ? shl(n, static_cast<std::size_t>(-e)) : n;
    const bigint den = e > 0 ? shl(q.den, static_cast<std::size_t>(e)) : q.den;
    auto [m, r] = divmod_mag(num, den);
    if (m.bits() > static_cast<std::size_t>(prec)) {
      ++e;
      continue;
    }
    const int c = cmp_mag(shl(r, 1), den);
    if (c > 0 || (c == 0 && m.bit(0))) m = m + bigint(1);
    rational out = e >= 0 ? rational(shl(m, static_cast<std::size_t>(e)))
                          : rational(m, shl(bigint(1), static_cast<std::size_t>(-e)));
    if (q.num.neg) out = -out;
    return out;
  }
}
// The k-th root of a non-negative integer when it is exact.
inline std::optional<bigint> exact_root(const bigint& a, std::uint64_t k) {
  if (a.is_zero() || k == 1) return a;
  // Newton from above: x <- ((k-1)x + a / x^(k-1)) / k, decreasing until it stops.
  bigint x = shl(bigint(1), (a.bits() + k - 1) / k);
  const bigint kk(static_cast<std::int64_t>(k)), km1(static_cast<std::int64_t>(k - 1));
  for (;;) {
    const bigint y = divmod_mag(km1 * x + divmod_mag(a, pow(x, k - 1)).first, kk).first;
    if (cmp(y, x) >= 0) break;
    x = y;
  }
  if (cmp(pow(x, k), a) == 0) return x;
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Lexer: LaTeX.g4's token rules.

enum class tk {
  add, sub, mul, div, lparen, rparen, lbrace, rbrace, lbrace_lit, rbrace_lit, lbracket, rbracket,
  bar, r_bar, l_bar, l_angle, r_angle, lim, lim_to, integral, sum, prod, func, l_floor, r_floor,
  l_ceil, r_ceil, sqrt, overline, times, cdot, cmd_div, frac, binom, mathit, underscore, caret,
  colon, differential, letter, digit, equal, neq, lt, lte, gt, gte, bang, quotes, symbol, comma,
  dot, end,
};

struct token {
  tk type;
  std::string text;  // LETTER/DIGIT: the character; SYMBOL/func: the name without '\';
                     // DIFFERENTIAL: the variable
};

struct parse_error {};   // sympy raises LaTeXParsingError (or the lexer does)
struct unsupported {};   // parsed by sympy, not evaluated here: counts as not equivalent

inline bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
inline bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

inline std::vector<token> lex(std::string_view s) {
  static const std::set<std::string_view> skipped = {
      "left",  "right",      "thinspace", "medspace", "thickspace",    "quad",
      "qquad", "negthinspace", "negmedspace", "negthickspace", "vrule", "vcenter",
      "vbox",  "vskip",      "vspace",    "hfil"};
  static const std::set<std::string_view> functions = {
      "exp",    "log",    "lg",     "ln",     "sin",    "cos",  "tan",  "csc",
      "sec",    "cot",    "arcsin", "arccos", "arctan", "arccsc", "arcsec", "arccot",
      "sinh",   "cosh",   "tanh",   "arsinh", "arcosh", "artanh"};
  static const std::map<std::string_view, tk> commands = {
      {"langle", tk::l_angle}, {"rangle", tk::r_angle}, {"lim", tk::lim},
      {"to", tk::lim_to}, {"rightarrow", tk::lim_to}, {"Rightarrow", tk::lim_to},
      {"longrightarrow", tk::lim_to}, {"Longrightarrow", tk::lim_to}, {"int", tk::integral},
      {"sum", tk::sum}, {"prod", tk::prod}, {"lfloor", tk::l_floor}, {"rfloor", tk::r_floor},
      {"lceil", tk::l_ceil}, {"rceil", tk::r_ceil}, {"sqrt", tk::sqrt},
      {"overline", tk::overline}, {"times", tk::times}, {"cdot", tk::cdot},
      {"div", tk::cmd_div}, {"frac", tk::frac}, {"dfrac", tk::frac}, {"tfrac", tk::frac},
      {"binom", tk::binom}, {"dbinom", tk::binom}, {"tbinom", tk::binom},
      {"mathit", tk::mathit}, {"neq", tk::neq}, {"leq", tk::lte}, {"le", tk::lte},
      {"leqq", tk::lte}, {"leqslant", tk::lte}, {"geq", tk::gte}, {"ge", tk::gte},
      {"geqq", tk::gte}, {"geqslant", tk::gte}};
  std::vector<token> out;
  std::size_t i = 0;
  auto letters_from = [&](std::size_t j) {
    std::size_t k = j;
    while (k < s.size() && is_letter(s[k])) ++k;
    return k;
  };
  while (i < s.size()) {
    const char c = s[i];
    if (is_ws(c)) {
      ++i;
      continue;
    }
    if (c == '\\') {
      if (i + 1 >= s.size()) throw parse_error{};
      const char n = s[i + 1];
      if (is_letter(n)) {
        const std::size_t end = letters_from(i + 1);
        const std::string_view w = s.substr(i + 1, end - i - 1);
        i = end;
        if ((w == "left" || w == "right") && i < s.size() && s[i] == '|') {  // \left| \right|
          out.push_back({w == "left" ? tk::l_bar : tk::r_bar, ""});
          ++i;
          continue;
        }
        if (skipped.count(w)) continue;
        if (w == "int") {
          if (s.substr(i, 7) == "\\limits" && letters_from(i + 1) == i + 7) i += 7;
          out.push_back({tk::integral, ""});
          continue;
        }
        if (functions.count(w)) {
          out.push_back({tk::func, std::string(w)});
          continue;
        }
        if (const auto it = commands.find(w); it != commands.end()) {
          out.push_back({it->second, std::string(w)});
          continue;
        }
        out.push_back({tk::symbol, std::string(w)});
        continue;
      }
      i += 2;
      switch (n) {
        case ',': case ':': case ';': case '!': case '*': case '-': case '.': case '/':
        case '"': case '(': case '=':
          continue;  // spaces and IGNORE
        case '{': out.push_back({tk::lbrace_lit, ""}); continue;
        case '}': out.push_back({tk::rbrace_lit, ""}); continue;
        default: throw parse_error{};  // "\%", "\$", "\\", "\)": no rule
      }
    }
    if (c == 'd') {  // DIFFERENTIAL: 'd' WS*? ([a-zA-Z] | '\' [a-zA-Z]+), longer than LETTER
      std::size_t j = i + 1;
      while (j < s.size() && is_ws(s[j])) ++j;
      if (j < s.size() && is_letter(s[j])) {
        out.push_back({tk::differential, std::string(1, s[j])});
        i = j + 1;
        continue;
      }
      if (j + 1 < s.size() && s[j] == '\\' && is_letter(s[j + 1])) {
        const std::size_t end = letters_from(j + 1);
        out.push_back({tk::differential, std::string(s.substr(j + 1, end - j - 1))});
        i = end;
        continue;
      }
    }
    if (is_letter(c)) {
      out.push_back({tk::letter, std::string(1, c)});
      ++i;
      continue;
    }
    if (c >= '0' && c <= '9') {
      out.push_back({tk::digit, std::string(1, c)});
      ++i;
      continue;
    }
    if (c == '&' || c == '=') {  // EQUAL: ('&' WS*?)? '=' | '=' (WS*? '&')?
      std::size_t j = i + 1;
      if (c == '&') {
        while (j < s.size() && is_ws(s[j])) ++j;
        if (j >= s.size() || s[j] != '=') throw parse_error{};
        ++j;
      } else {
        std::size_t k = j;
        while (k < s.size() && is_ws(s[k])) ++k;
        if (k < s.size() && s[k] == '&') j = k + 1;
      }
      out.push_back({tk::equal, ""});
      i = j;
      continue;
    }
    if (c == '\'') {
      while (i < s.size() && s[i] == '\'') ++i;
      out.push_back({tk::quotes, ""});
      continue;
    }
    tk t;
    switch (c) {
      case '+': t = tk::add; break;
      case '-': t = tk::sub; break;
      case '*': t = tk::mul; break;
      case '/': t = tk::div; break;
      case '(': t = tk::lparen; break;
      case ')': t = tk::rparen; break;
      case '{': t = tk::lbrace; break;
      case '}': t = tk::rbrace; break;
      case '[': t = tk::lbracket; break;
      case ']': t = tk::rbracket; break;
      case '|': t = tk::bar; break;
      case '_': t = tk::underscore; break;
      case '^': t = tk::caret; break;
      case ':': t = tk::colon; break;
      case '<': t = tk::lt; break;
      case '>': t = tk::gt; break;
      case '!': t = tk::bang; break;
      case ',': t = tk::comma; break;
      case '.': t = tk::dot; break;
      default: throw parse_error{};
    }
    out.push_back({t, ""});
    ++i;
  }
  out.push_back({tk::end, ""});
  return out;
}

// ---------------------------------------------------------------------------------------------
// Expression tree (what parse_latex builds, reduced to what the evaluation needs).

enum class op {
  integer,     // text = decimal digits
  decimal,     // text = digits with one '.'
  symbol,      // text = sympy's symbol name
  infinity,    // \infty (sympy.oo)
  add, mul, div, pow, neg,
  func,        // text = sympy function: sin, asin, exp, log (args: x [, base]), abs, floor,
               // ceiling, factorial, binomial, conjugate, root (x, n)
  undefined,   // text = name: sympy.Function(name)(args...)
  relation,    // Eq, Lt, ...: subtracting raises TypeError
};

struct node {
  op kind;
  std::string text;
  std::vector<int> args;
};

class parser {
 public:
  explicit parser(std::vector<token> t) : toks_(std::move(t)) {}
  std::vector<node> nodes;

  // math: relation (not strict: whatever follows the relation is ignored).
  int parse() { return relation(); }

 private:
  std::vector<token> toks_;
  std::size_t pos_ = 0;
  std::size_t digit_limit_ = 0;  // > 0: a script's number takes at most this many digits
  // Bounds standing in for Python's recursion limit and is_equiv's 5 s timeout (both end in
  // "not equivalent" there). The first four are where sympy 1.14 + antlr 4.11 under CPython
  // 3.11's default limit of 1000 frames start failing (measured: 111 nested parentheses pass,
  // 112 fail; 974 summands; 971 leading signs; 257 implicit factors "xx...x"); the others only
  // keep ours bounded (backtracking over unclosed "f(f(f(..." would take exponential time).
  static constexpr int max_group_depth = 112;  // expr() levels, the outermost included
  static constexpr int max_signs = 971;
  static constexpr std::size_t max_terms = 974;
  static constexpr std::size_t max_factors = 257;
  static constexpr int max_comp_depth = 250;
  static constexpr std::size_t max_steps = 200000;
  static constexpr std::size_t max_nodes = 20000;
  int group_depth_ = 0, sign_depth_ = 0, comp_depth_ = 0;
  std::size_t steps_ = 0;
  struct nesting {  // one level of recursion, released on every exit (exceptions included)
    nesting(int& d, int limit) : depth(d) {
      if (++depth > limit) throw unsupported{};
    }
    ~nesting() { --depth; }
    nesting(const nesting&) = delete;
    nesting& operator=(const nesting&) = delete;
    int& depth;
  };

  const token& peek(std::size_t k = 0) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  bool at(tk t) const { return peek().type == t; }
  void expect(tk t) {
    if (!at(t)) throw parse_error{};
    ++pos_;
  }
  int make(op k, std::string text = {}, std::vector<int> args = {}) {
    if (nodes.size() >= max_nodes) throw unsupported{};
    nodes.push_back({k, std::move(text), std::move(args)});
    return static_cast<int>(nodes.size()) - 1;
  }
  // Runs f; on parse_error restores the position and returns nullopt (ANTLR predicting the
  // shorter alternative because the longer one cannot be parsed).
  template <class F>
  std::optional<int> attempt(F f) {
    const std::size_t saved = pos_;
    const std::size_t saved_nodes = nodes.size();
    try {
      return f();
    } catch (const parse_error&) {
      pos_ = saved;
      nodes.resize(saved_nodes);
      return std::nullopt;
    }
  }

  static bool is_relop(tk t) {
    return t == tk::equal || t == tk::lt || t == tk::lte || t == tk::gt || t == tk::gte || t == tk::neq;
  }
  int relation() {
    int lhs = expr();
    while (is_relop(peek().type)) {  // nothing else takes a relation operator: no way back
      ++pos_;
      lhs = make(op::relation, "", {lhs, expr()});
    }
    return lhs;
  }
  int expr() {
    const nesting level(group_depth_, max_group_depth);
    return additive();
  }
  int additive() {
    int lhs = mp(false);
    for (std::size_t terms = 1; at(tk::add) || at(tk::sub); ++terms) {
      if (terms >= max_terms) throw unsupported{};
      const bool minus = at(tk::sub);
      const auto rhs = attempt([&] {
        ++pos_;
        return mp(false);
      });
      if (!rhs) break;
      lhs = make(op::add, "", {lhs, minus ? make(op::neg, "", {*rhs}) : *rhs});
    }
    return lhs;
  }
  static bool is_mulop(tk t) {
    return t == tk::mul || t == tk::times || t == tk::cdot || t == tk::div || t == tk::cmd_div || t == tk::colon;
  }
  int mp(bool nofunc) {
    int lhs = unary(nofunc);
    for (std::size_t factors = 1; is_mulop(peek().type); ++factors) {
      if (factors >= max_terms) throw unsupported{};
      const bool divide = at(tk::div) || at(tk::cmd_div) || at(tk::colon);
      const auto rhs = attempt([&] {
        ++pos_;
        return unary(nofunc);
      });
      if (!rhs) break;
      lhs = make(divide ? op::div : op::mul, "", {lhs, *rhs});
    }
    return lhs;
  }
  // unary: (+|-) unary | postfix+ ; unary_nofunc: (+|-) unary_nofunc | postfix postfix_nofunc*.
  int unary(bool nofunc) {
    const nesting level(sign_depth_, max_signs + 1);
    if (at(tk::add)) {
      ++pos_;
      return unary(nofunc);
    }
    if (at(tk::sub)) {
      ++pos_;
      return make(op::neg, "", {unary(nofunc)});
    }
    std::vector<int> list{postfix(false)};
    for (;;) {
      const auto next = attempt([&] { return postfix(nofunc); });
      if (!next) break;
      list.push_back(*next);
      if (list.size() > max_factors) throw unsupported{};
    }
    return postfix_list(list, 0);
  }
  bool has_symbol(int n) const {
    const node& nd = nodes[static_cast<std::size_t>(n)];
    if (nd.kind == op::symbol) return true;
    return std::any_of(nd.args.begin(), nd.args.end(), [&](int a) { return has_symbol(a); });
  }
  // convert_postfix_list: implicit products; a lone 'x' between two symbol-free factors is "times".
  int postfix_list(const std::vector<int>& arr, std::size_t i) {
    const int res = arr[i];
    if (i + 1 == arr.size()) return res;
    if (i > 0) {
      const node& r = nodes[static_cast<std::size_t>(res)];
      if (r.kind == op::symbol && r.text == "x" && !has_symbol(arr[i - 1]) && !has_symbol(arr[i + 1]))
        return postfix_list(arr, i + 1);
    }
    const int rest = postfix_list(arr, i + 1);
    return make(op::mul, "", {res, rest});
  }
  // postfix: exp postfix_op*; postfix_op: '!' | eval_at.
  int postfix(bool nofunc) {
    int e = exp(nofunc);
    for (;;) {
      if (at(tk::bang)) {
        ++pos_;
        e = make(op::func, "factorial", {e});
        continue;
      }
      if (at(tk::bar) && (peek(1).type == tk::caret || peek(1).type == tk::underscore)) {
        const auto ev = attempt([&] {
          ++pos_;
          eval_at_part();
          if (at(tk::caret) || at(tk::underscore)) eval_at_part();
          return 0;
        });
        if (ev) throw unsupported{};  // "|_{x=a}^{b}" substitution: not evaluated here
      }
      break;
    }
    return e;
  }
  void eval_at_part() {
    if (!at(tk::caret) && !at(tk::underscore)) throw parse_error{};
    ++pos_;
    expect(tk::lbrace);
    expr();
    if (at(tk::equal)) {
      ++pos_;
      expr();
    }
    expect(tk::rbrace);
  }
  // exp: exp '^' (atom | '{' expr '}') subexpr? | comp
  int exp(bool nofunc) {
    int base = comp(nofunc);
    while (at(tk::caret)) {
      const auto power = attempt([&] {
        ++pos_;
        int e;
        if (at(tk::lbrace)) {
          ++pos_;
          e = expr();
          expect(tk::rbrace);
        } else {
          e = atom();
        }
        if (at(tk::underscore)) attempt([&] { return subexpr_text(), 0; });
        return e;
      });
      if (!power) break;
      base = make(op::pow, "", {base, *power});
    }
    return base;
  }
  int group(tk close) {
    ++pos_;
    const int e = expr();
    expect(close);
    return e;
  }
  int comp(bool nofunc) {
    if (++steps_ > max_steps) throw unsupported{};
    const nesting level(comp_depth_, max_comp_depth);
    switch (peek().type) {
      case tk::lparen: return group(tk::rparen);
      case tk::lbracket: return group(tk::rbracket);
      case tk::lbrace: return group(tk::rbrace);
      case tk::lbrace_lit: return group(tk::rbrace_lit);
      case tk::bar: {
        if (const auto a = attempt([&] {
              ++pos_;
              const int e = expr();
              expect(tk::bar);
              return make(op::func, "abs", {e});
            }))
          return *a;
        return atom();  // ket
      }
      case tk::l_floor:
      case tk::l_ceil: {
        const bool fl = at(tk::l_floor);
        ++pos_;
        const int e = expr();
        expect(fl ? tk::r_floor : tk::r_ceil);
        return make(op::func, fl ? "floor" : "ceiling", {e});
      }
      case tk::func: case tk::integral: case tk::sum: case tk::prod: case tk::lim:
      case tk::sqrt: case tk::overline:
        if (nofunc) throw parse_error{};
        return func();
      case tk::letter:
      case tk::symbol:
        if (!nofunc && named_call_follows())
          if (const auto f = attempt([&] { return func(); })) return *f;
        return atom();
      default: return atom();
    }
  }
  // LETTER/SYMBOL (subexpr? quotes? | quotes? subexpr?) followed by '('.
  bool named_call_follows() {
    const std::size_t saved = pos_;
    bool ok = false;
    try {
      ++pos_;
      name_suffix();
      ok = at(tk::lparen);
    } catch (const parse_error&) {
    }
    pos_ = saved;
    return ok;
  }
  // The subscript's text as sympy prints it, for the symbol's name (approximation: the source
  // tokens, which agree for the usual single letters and numbers).
  std::string subexpr_text() {
    expect(tk::underscore);
    std::string out;
    if (at(tk::lbrace)) {
      const std::size_t start = pos_ + 1;
      ++pos_;
      expr();
      for (std::size_t k = start; k < pos_; ++k) out += toks_[k].text;
      expect(tk::rbrace);
    } else {
      const std::size_t start = pos_;
      atom();
      for (std::size_t k = start; k < pos_; ++k) out += toks_[k].text;
    }
    return out;
  }
  std::string name_suffix() {
    std::string sub, quotes;
    if (at(tk::underscore)) {
      sub = subexpr_text();
      if (at(tk::quotes)) quotes = "'", ++pos_;
    } else if (at(tk::quotes)) {
      quotes = "'";
      ++pos_;
      if (at(tk::underscore)) sub = subexpr_text();
    }
    return (sub.empty() ? "" : "_{" + sub + "}") + quotes;
  }
  int func() {
    const token t = peek();
    switch (t.type) {
      case tk::integral:  // needs an integrand: a bare "\int" ends the parse before it
        if (peek(1).type == tk::end) throw parse_error{};
        throw unsupported{};
      case tk::sum: case tk::prod: case tk::lim:  // need their subscript
        if (peek(1).type != tk::underscore && peek(1).type != tk::caret) throw parse_error{};
        throw unsupported{};
      case tk::sqrt: {
        ++pos_;
        std::optional<int> root;
        if (at(tk::lbracket)) root = group(tk::rbracket);
        if (!at(tk::lbrace)) throw parse_error{};
        const int base = group(tk::rbrace);
        if (root) return make(op::func, "root", {base, *root});
        return make(op::func, "root", {base, make(op::integer, "2")});
      }
      case tk::overline: {
        ++pos_;
        if (!at(tk::lbrace)) throw parse_error{};
        return make(op::func, "conjugate", {group(tk::rbrace)});
      }
      case tk::letter: case tk::symbol: {
        ++pos_;
        const std::string name = t.text + name_suffix();
        expect(tk::lparen);
        std::vector<int> args{expr()};
        while (at(tk::comma)) {
          ++pos_;
          args.push_back(expr());
        }
        expect(tk::rparen);
        return make(op::undefined, name, args);
      }
      default: break;
    }
    // func_normal (subexpr? supexpr? | supexpr? subexpr?) ('(' func_arg ')' | mp_nofunc)
    ++pos_;
    std::optional<int> sub, sup, arg;
    auto script = [&]() -> int {
      ++pos_;
      if (at(tk::lbrace)) return group(tk::rbrace);
      return atom();
    };
    auto scripts_and_argument = [&] {
      sub = sup = std::nullopt;
      if (at(tk::underscore)) {
        sub = script();
        if (at(tk::caret)) sup = script();
      } else if (at(tk::caret)) {
        sup = script();
        if (at(tk::underscore)) sub = script();
      }
      arg = attempt([&] {
        expect(tk::lparen);
        const int a = expr();  // func_arg: expr (',' func_arg)?; only the first is used
        while (at(tk::comma)) {
          ++pos_;
          expr();
        }
        expect(tk::rparen);
        return a;
      });
      if (!arg) arg = mp(true);
      return 0;
    };
    // ANTLR's prediction ends a bare numeric script early when the digits that follow are the
    // argument: "\log_2 8" is log base 2 of 8, not log base 28 of nothing.
    if (!attempt(scripts_and_argument)) {
      digit_limit_ = 1;
      try {
        scripts_and_argument();
      } catch (...) {
        digit_limit_ = 0;
        throw;
      }
      digit_limit_ = 0;
    }
    std::string name = t.text;
    if (name.rfind("arc", 0) == 0) name = "a" + name.substr(3);       // arcsin -> asin
    else if (name.rfind("ar", 0) == 0) name = "a" + name.substr(2);   // arsinh -> asinh
    int result;
    if (name == "log" || name == "lg" || name == "ln") {
      const int base = sub ? *sub : name == "lg" ? make(op::integer, "10") : -1;
      result = base < 0 ? make(op::func, "log", {*arg}) : make(op::func, "log", {*arg, base});
    } else {
      static const std::set<std::string> trig = {"sin", "cos", "tan", "csc", "sec", "cot", "sinh", "cosh", "tanh"};
      if (trig.count(name) && sup && is_minus_one(*sup)) {
        return make(op::func, "a" + name, {*arg});  // \sin^{-1} x = asin(x)
      }
      result = make(op::func, name, {*arg});
    }
    if (sup) result = make(op::pow, "", {result, *sup});
    return result;
  }
  bool is_minus_one(int n) const {
    const node& nd = nodes[static_cast<std::size_t>(n)];
    return nd.kind == op::neg && nodes[static_cast<std::size_t>(nd.args[0])].kind == op::integer &&
           nodes[static_cast<std::size_t>(nd.args[0])].text == "1";
  }
  int atom() {
    const token t = peek();
    switch (t.type) {
      case tk::letter:
      case tk::symbol: {
        ++pos_;
        std::string suffix = name_suffix();
        if (t.type == tk::symbol && t.text == "infty") return make(op::infinity);
        if (t.type == tk::symbol && !suffix.empty() && suffix.back() == '\'')
          suffix.pop_back();  // convert_atom drops a SYMBOL's quotes
        return make(op::symbol, t.text + suffix);
      }
      case tk::digit: return number();
      case tk::differential: ++pos_; return make(op::symbol, "d" + t.text);
      case tk::mathit: {
        ++pos_;
        expect(tk::lbrace);
        std::string text;
        while (at(tk::letter) || at(tk::differential)) {
          text += at(tk::differential) ? "d" + peek().text : peek().text;
          ++pos_;
        }
        expect(tk::rbrace);
        return make(op::symbol, text);
      }
      case tk::frac: {
        ++pos_;
        auto part = [&](bool lower) -> int {
          if (at(tk::digit)) {
            const std::string d = peek().text;
            ++pos_;
            return make(op::integer, d);
          }
          expect(tk::lbrace);
          const std::size_t start = pos_;
          const int e = expr();
          // \frac{d}{dx}, \frac{\partial}{\partial x}: derivatives
          if (lower && ((pos_ == start + 1 && toks_[start].type == tk::differential) ||
                        (pos_ == start + 2 && toks_[start].type == tk::symbol && toks_[start].text == "partial")))
            throw unsupported{};
          expect(tk::rbrace);
          return e;
        };
        const int upper = part(false);
        const int lower = part(true);
        return make(op::div, "", {upper, lower});
      }
      case tk::binom: {
        ++pos_;
        const int n = group_required(tk::lbrace, tk::rbrace);
        const int k = group_required(tk::lbrace, tk::rbrace);
        return make(op::func, "binomial", {n, k});
      }
      case tk::l_angle: {  // bra: an opaque function of its content
        ++pos_;
        const int e = expr();
        if (!at(tk::r_bar) && !at(tk::bar)) throw parse_error{};
        ++pos_;
        return make(op::undefined, "\\bra", {e});
      }
      case tk::l_bar:
      case tk::bar: {  // ket
        ++pos_;
        const int e = expr();
        expect(tk::r_angle);
        return make(op::undefined, "\\ket", {e});
      }
      default: throw parse_error{};
    }
  }
  int group_required(tk open, tk close) {
    if (!at(open)) throw parse_error{};
    return group(close);
  }
  // number: DIGIT+ (',' DIGIT DIGIT DIGIT)* ('.' DIGIT+)?
  int number() {
    std::string digits;
    const std::size_t limit = std::exchange(digit_limit_, 0);  // only the script's own number
    while (at(tk::digit) && (limit == 0 || digits.size() < limit)) {
      digits += peek().text;
      ++pos_;
    }
    while (at(tk::comma) && peek(1).type == tk::digit && peek(2).type == tk::digit && peek(3).type == tk::digit) {
      digits += peek(1).text + peek(2).text + peek(3).text;
      pos_ += 4;
    }
    if (at(tk::dot)) {  // nothing else in the grammar takes a '.': no way back
      ++pos_;
      if (!at(tk::digit)) throw parse_error{};
      digits += '.';
      while (at(tk::digit)) {
        digits += peek().text;
        ++pos_;
      }
      return make(op::decimal, digits);
    }
    // sympy.Number("007") goes through Python's parser, which rejects a leading zero:
    // SympifyError, which is_equiv catches ("not equivalent").
    if (digits.size() > 1 && digits[0] == '0' && digits.find_first_not_of('0') != std::string::npos)
      throw unsupported{};
    return make(op::integer, digits);
  }
};

// ---------------------------------------------------------------------------------------------
// Evaluation.

// exact: a rational; flt: a sympy Float (a rational with a `prec`-bit mantissa); num: a complex
// double with `mag` bounding the magnitudes it was computed from; inf: +-oo (sign in z); bad: zoo,
// nan or too large.
struct value {
  enum class kind { exact, flt, num, inf, bad } k = kind::bad;
  rational q;
  int prec = 0;
  std::complex<double> z;
  double mag = 0.0;
};

inline value bad() { return {}; }
inline std::complex<double> clean(std::complex<double> z) {
  // +0 imaginary parts: a negative real base must take the principal branch (arg = +pi).
  return {z.real() == 0.0 ? 0.0 : z.real(), z.imag() == 0.0 ? 0.0 : z.imag()};
}
inline value num(std::complex<double> z, double mag) {
  if (!std::isfinite(z.real()) || !std::isfinite(z.imag()) || !std::isfinite(mag)) return bad();
  value v;
  v.k = value::kind::num;
  v.z = clean(z);
  v.mag = std::max(mag, std::abs(z));
  return v;
}
inline value exact(rational q) {
  value v;
  v.k = value::kind::exact;
  v.z = to_double(q);
  v.mag = std::abs(v.z);
  v.q = std::move(q);
  return v;
}
inline value flt(const rational& q, int prec) {
  value v = exact(round_to_bits(q, prec));
  v.k = value::kind::flt;
  v.prec = prec;
  return v;
}
inline bool is_rational(const value& v) { return v.k == value::kind::exact || v.k == value::kind::flt; }
inline value infinity(double sign) {
  value v;
  v.k = value::kind::inf;
  v.z = sign;
  return v;
}
inline bool is_inf(const value& v) { return v.k == value::kind::inf; }
// The sign of a real rational, 0 for zero.
inline int sign(const value& v) { return v.q.is_zero() ? 0 : v.q.num.neg ? -1 : 1; }
// sympy's oo arithmetic where it stays determinate (x/oo = 0, oo + 1 = oo, 2·oo = oo); every
// comparison with oo fails later (oo - oo is nan).
inline std::optional<value> infinity_op(char o, const value& a, const value& b) {
  if (!is_inf(a) && !is_inf(b)) return std::nullopt;
  switch (o) {
    case '+':
      if (is_inf(a) && is_inf(b)) return a.z == b.z ? a : bad();
      return is_inf(a) ? a : b;
    case '*': {
      const value& i = is_inf(a) ? a : b;
      const value& o2 = is_inf(a) ? b : a;
      if (is_inf(o2)) return infinity(i.z.real() * o2.z.real());
      if (!is_rational(o2) || sign(o2) == 0) return bad();
      return infinity(i.z.real() * sign(o2));
    }
    case '/':
      if (is_inf(b)) return is_inf(a) ? bad() : exact(rational{});
      if (!is_rational(b) || sign(b) == 0) return bad();
      return infinity(a.z.real() * sign(b));
    default: return bad();
  }
}

// sympy.Float(text): precision from the significant digits (Decimal's digit tuple), at least 15.
inline value decimal_value(const std::string& text) {
  const std::size_t dot = text.find('.');
  const std::string digits = text.substr(0, dot) + text.substr(dot + 1);
  const std::size_t first = digits.find_first_not_of('0');
  const std::size_t sig = first == std::string::npos ? 1 : digits.size() - first;
  const std::size_t dps = std::max<std::size_t>(15, sig);
  const int prec = static_cast<int>(std::lround((static_cast<double>(dps) + 1) * 3.3219280948873626));
  bigint n, ten(10), den(1);
  for (const char c : digits) n = n * ten + bigint(c - '0');
  for (std::size_t k = dot + 1; k < text.size(); ++k) den = den * ten;
  return flt(rational(n, den), prec);
}

// Float arithmetic: both operands rounded to the larger precision, the result rounded again.
template <class F>
value rational_op(const value& a, const value& b, F f) {
  if (a.k == value::kind::exact && b.k == value::kind::exact) return exact(f(a.q, b.q));
  const int p = std::max(a.prec, b.prec);
  return flt(f(round_to_bits(a.q, p), round_to_bits(b.q, p)), p);
}

inline value add(const value& a, const value& b) {
  if (a.k == value::kind::bad || b.k == value::kind::bad) return bad();
  if (auto i = infinity_op('+', a, b)) return *i;
  if (is_rational(a) && is_rational(b)) return rational_op(a, b, [](const rational& x, const rational& y) { return x + y; });
  return num(a.z + b.z, a.mag + b.mag);
}
inline value mul(const value& a, const value& b) {
  if (a.k == value::kind::bad || b.k == value::kind::bad) return bad();
  if (auto i = infinity_op('*', a, b)) return *i;
  if (is_rational(a) && is_rational(b)) return rational_op(a, b, [](const rational& x, const rational& y) { return x * y; });
  return num(a.z * b.z, a.mag * b.mag);
}
inline value neg(value a) {
  if (is_rational(a)) a.q = -a.q;
  if (is_inf(a)) return infinity(-a.z.real());
  a.z = clean(-a.z);
  return a;
}
inline value div(const value& a, const value& b) {
  if (a.k == value::kind::bad || b.k == value::kind::bad) return bad();
  if (auto i = infinity_op('/', a, b)) return *i;
  if (is_rational(a) && is_rational(b)) {
    if (b.q.is_zero()) return bad();  // zoo
    return rational_op(a, b, [](const rational& x, const rational& y) { return x / y; });
  }
  if (b.z == 0.0) return bad();
  return num(a.z / b.z, a.mag / std::abs(b.z));
}
inline bool is_unit(const rational& q) {  // +-1
  return q.is_integer() && q.num.mag.size() == 1 && q.num.mag[0] == 1;
}
inline value power(const value& a, const value& b) {
  if (a.k == value::kind::bad || b.k == value::kind::bad || is_inf(a) || is_inf(b)) return bad();
  if (a.k == value::kind::exact && b.k == value::kind::exact) {
    const rational& base = a.q;
    const rational& e = b.q;
    if (base.is_zero()) {
      if (e.is_zero()) return exact(rational(bigint(1)));  // 0^0 = 1
      if (e.num.neg) return bad();                          // zoo
      return exact(rational{});
    }
    if (e.is_integer() && is_unit(base)) {  // (+-1)^n
      return exact(rational(bigint(base.num.neg && e.num.bit(0) ? -1 : 1)));
    }
    // base^(p/r): exact when r-th roots of numerator and denominator exist (sympy evaluates
    // \sqrt{4} to 2); otherwise irrational or complex, evaluated numerically below.
    if (e.den.bits() <= 7) {
      if (e.num.bits() > 20) return bad();  // |exponent| >= 2^20: too large (or too small)
      const auto p = static_cast<std::uint64_t>(std::abs(to_double(e.num)));
      const auto r = static_cast<std::uint64_t>(to_double(e.den));
      std::optional<rational> root;
      if (r == 1) {
        root = base;
      } else if (!base.num.neg) {
        const auto rn = exact_root(base.num, r);
        const auto rd = exact_root(base.den, r);
        if (rn && rd) root = rational(*rn, *rd);
      }
      if (root) {
        if ((root->num.bits() + root->den.bits()) * p > max_bits) return bad();
        rational out(pow(root->num, p), pow(root->den, p));
        if (e.num.neg) out = rational(out.den, out.num);
        return exact(out);
      }
    }
  }
  const std::complex<double> x = clean(a.z), y = clean(b.z);
  if (x == 0.0) {
    if (y == 0.0) return num(1.0, 1.0);
    if (y.real() > 0) return num(0.0, 0.0);
    return bad();
  }
  return num(std::pow(x, y), 0.0);
}

// A deterministic stand-in for an unknown function's value at an argument.
inline std::uint64_t mix(std::uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  return h ^ (h >> 33);
}
inline std::uint64_t hash_text(std::uint64_t h, std::string_view s) {
  for (const char c : s) h = mix(h ^ static_cast<unsigned char>(c));
  return mix(h ^ 0x9e3779b97f4a7c15ULL);
}
inline std::string key(const value& v) {
  if (is_rational(v)) return hex(v.q.num) + "/" + hex(v.q.den);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9e,%.9e", v.z.real(), v.z.imag());
  return buf;
}
inline value opaque(const std::string& name, const std::vector<value>& args) {
  std::uint64_t h = hash_text(0x1234567, name);
  for (const value& a : args) {
    if (a.k == value::kind::bad || is_inf(a)) return bad();
    h = hash_text(h, key(a));
  }
  const double re = 0.5 + static_cast<double>(h >> 11) / 9007199254740992.0;
  const double im = static_cast<double>(mix(h) >> 11) / 9007199254740992.0 - 0.5;
  return num({re, im}, 0.0);
}

inline value apply_func(const std::string& f, const std::vector<value>& args) {
  for (const value& a : args)
    if (a.k == value::kind::bad || is_inf(a)) return bad();
  const value& x = args[0];
  const std::complex<double> z = clean(x.z);
  using C = std::complex<double>;
  if (f == "root") return power(x, div(exact(rational(bigint(1))), args[1]));
  if (f == "abs") {
    if (is_rational(x)) {
      value v = x;
      v.q.num.neg = false;
      v.z = std::abs(v.z);
      return v;
    }
    return num(std::abs(z), x.mag);
  }
  if (f == "conjugate") {
    if (is_rational(x)) return x;
    return num(std::conj(z), x.mag);
  }
  if (f == "floor" || f == "ceiling") {
    if (is_rational(x)) {
      bigint fl = floor(x.q);
      if (f == "ceiling" && !x.q.is_integer()) fl = fl + bigint(1);
      return exact(rational(fl));
    }
    if (z.imag() == 0.0) return num(f == "floor" ? std::floor(z.real()) : std::ceil(z.real()), x.mag);
    return opaque(f, args);
  }
  if (f == "factorial") {
    if (x.k == value::kind::exact && x.q.is_integer()) {
      if (x.q.num.neg) return bad();  // zoo
      if (x.q.num.bits() > 12) return bad();
      const auto n = static_cast<std::int64_t>(to_double(x.q.num));
      bigint r(1);
      for (std::int64_t i = 2; i <= n; ++i) r = r * bigint(i);
      return exact(rational(r));
    }
    if (z.imag() == 0.0) return num(std::tgamma(z.real() + 1.0), 0.0);
    return opaque(f, args);
  }
  if (f == "binomial") {
    const value& k = args[1];
    if (x.k == value::kind::exact && k.k == value::kind::exact && k.q.is_integer()) {
      if (k.q.num.neg) return exact(rational{});
      if (k.q.num.bits() > 12) return bad();
      const auto kk = static_cast<std::int64_t>(to_double(k.q.num));
      if (x.q.is_integer() && !x.q.num.neg && cmp(k.q.num, x.q.num) > 0) return exact(rational{});
      rational r(bigint(1));
      for (std::int64_t i = 0; i < kk; ++i)
        r = r * (x.q - rational(bigint(i))) / rational(bigint(i + 1));
      return exact(r);
    }
    return opaque(f, args);
  }
  if (f == "log") {
    if (z == 0.0) return bad();
    C v = std::log(z);
    if (args.size() == 2) {
      const C b = std::log(clean(args[1].z));
      if (b == 0.0) return bad();
      v /= b;
    }
    return num(v, 0.0);
  }
  C v;
  if (f == "exp") v = std::exp(z);
  else if (f == "sin") v = std::sin(z);
  else if (f == "cos") v = std::cos(z);
  else if (f == "tan") v = std::tan(z);
  else if (f == "csc") v = 1.0 / std::sin(z);
  else if (f == "sec") v = 1.0 / std::cos(z);
  else if (f == "cot") v = 1.0 / std::tan(z);
  else if (f == "asin") v = std::asin(z);
  else if (f == "acos") v = std::acos(z);
  else if (f == "atan") v = std::atan(z);
  else if (f == "acsc") v = std::asin(1.0 / z);
  else if (f == "asec") v = std::acos(1.0 / z);
  else if (f == "acot") v = std::atan(1.0 / z);
  else if (f == "sinh") v = std::sinh(z);
  else if (f == "cosh") v = std::cosh(z);
  else if (f == "tanh") v = std::tanh(z);
  else if (f == "asinh") v = std::asinh(z);
  else if (f == "acosh") v = std::acosh(z);
  else if (f == "atanh") v = std::atanh(z);
  else return opaque(f, args);
  return num(v, 0.0);
}

class evaluator {
 public:
  evaluator(const std::vector<node>& nodes, const std::map<std::string, std::complex<double>>& point)
      : nodes_(nodes), point_(point) {}
  value eval(int n) const {
    const node& nd = nodes_[static_cast<std::size_t>(n)];
    switch (nd.kind) {
      case op::integer: {
        bigint v, ten(10);
        for (const char c : nd.text) v = v * ten + bigint(c - '0');
        return exact(rational(v));
      }
      case op::decimal: return decimal_value(nd.text);
      case op::symbol: return num(point_.at(nd.text), 0.0);
      case op::infinity: return infinity(1.0);
      case op::add: return add(eval(nd.args[0]), eval(nd.args[1]));
      case op::mul: return mul(eval(nd.args[0]), eval(nd.args[1]));
      case op::div: return div(eval(nd.args[0]), eval(nd.args[1]));
      case op::pow: return power(eval(nd.args[0]), eval(nd.args[1]));
      case op::neg: return neg(eval(nd.args[0]));
      case op::func:
      case op::undefined: {
        std::vector<value> args;
        for (const int a : nd.args) args.push_back(eval(a));
        return nd.kind == op::func ? apply_func(nd.text, args) : opaque(nd.text, args);
      }
      case op::relation: return bad();
    }
    return bad();
  }

 private:
  const std::vector<node>& nodes_;
  const std::map<std::string, std::complex<double>>& point_;
};

struct parsed {
  std::vector<node> nodes;
  int root = -1;
};

inline std::optional<parsed> parse(std::string_view s) {
  try {
    parser p(lex(s));
    const int root = p.parse();
    return parsed{std::move(p.nodes), root};
  } catch (const parse_error&) {
    return std::nullopt;
  }
}

inline void collect_symbols(const parsed& p, int n, std::set<std::string>& out) {
  const node& nd = p.nodes[static_cast<std::size_t>(n)];
  if (nd.kind == op::symbol) out.insert(nd.text);
  for (const int a : nd.args) collect_symbols(p, a, out);
}
inline bool has_kind(const parsed& p, int n, op k) {
  const node& nd = p.nodes[static_cast<std::size_t>(n)];
  if (nd.kind == k) return true;
  return std::any_of(nd.args.begin(), nd.args.end(), [&](int a) { return has_kind(p, a, k); });
}

// a == b at one point: exact, Float (compare after rounding to the larger precision) or numeric.
inline std::optional<bool> equal_at(const value& a, const value& b, double tolerance) {
  if (a.k == value::kind::bad || b.k == value::kind::bad) return std::nullopt;
  if (is_inf(a) || is_inf(b)) return false;  // oo - oo is nan, oo - x is oo
  if (a.k == value::kind::exact && b.k == value::kind::exact) return a.q == b.q;
  if (is_rational(a) && is_rational(b)) {
    const int p = std::max(a.prec, b.prec);
    return round_to_bits(a.q, p) == round_to_bits(b.q, p);
  }
  if (!std::isfinite(a.z.real()) || !std::isfinite(b.z.real())) return std::nullopt;
  return std::abs(a.z - b.z) <= tolerance * (a.mag + b.mag);
}

inline constexpr int sample_points = 4;

}  // namespace math_expr_detail

// open-instruct's is_equiv(a, b) (sympy half of the MATH check), approximated as documented at
// the top of this header. Deterministic; never throws for any input.
inline bool sympy_is_equiv(std::string_view a, std::string_view b) {
  using namespace math_expr_detail;
  try {
    // parse_latex strips Python whitespace first; the lexer skips it anyway.
    const auto pa = parse(a);
    const auto pb = parse(b);
    if (!pa || !pb) return false;
    // Eq/Lt... minus anything raises TypeError.
    for (const parsed* p : {&*pa, &*pb})
      if (has_kind(*p, p->root, op::relation)) return false;
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
      const auto eq = equal_at(va, vb, tolerance);
      if (!eq) continue;  // a pole at this point: the others decide
      if (!*eq) return false;
      ++agreed;
    }
    return agreed > 0;
  } catch (const unsupported&) {
    return false;
  } catch (const too_large&) {
    return false;
  }
}

}  // namespace reward

POSTTRAIN_NAMESPACE_END
