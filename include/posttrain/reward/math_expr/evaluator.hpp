#pragma once
// The evaluator of the sympy half of the MATH check (reward/math_expr.hpp): exact, sympy Float
// and complex-double values of an expression tree, and the equality test.
#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/reward/math_expr/number.hpp"
#include "posttrain/reward/math_expr/parser.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace reward {

namespace math_expr_detail {

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
  // A power with a Float exponent and a non-Float base, or a value computed from one: sympy keeps
  // Pow(2, 0.5) unevaluated, and simplify never equates it with a number or an irrational
  // (2^{0.5} is neither \sqrt{2} nor 1.4142135623730951 there; checked with sympy 1.14).
  bool float_pow = false;
  // An irrational root of rationals (\sqrt{2}, 2^{1/3}) or a value computed from one: sympy keeps
  // it symbolic and never equates it with a Float (\sqrt{2} vs 1.4142135623730951 is not equal
  // there, 0.5\sqrt{2} vs \frac{\sqrt{2}}{2} is).
  bool irrational = false;
  // A Float (decimal) took part in computing the value.
  bool has_float = false;
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
    if (a.k == value::kind::exact && b.k == value::kind::exact) return exact(a.q / b.q);
    // sympy divides as Mul(a, Pow(b, -1)): with a Float, 1/b is rounded first, then the product
    // (so \frac{2.1}{0.7} is 3 there, 2.1 times the rounded 1/0.7, not the rounded 2.1/0.7).
    const int p = std::max(a.prec, b.prec);
    const rational inverse = round_to_bits(rational(bigint(1)) / round_to_bits(b.q, p), p);
    return flt(round_to_bits(a.q, p) * inverse, p);
  }
  if (b.z == 0.0) return bad();
  return num(a.z / b.z, a.mag / std::abs(b.z));
}
inline bool is_unit(const rational& q) {  // +-1
  return q.is_integer() && q.num.mag.size() == 1 && q.num.mag[0] == 1;
}
inline value power(const value& a, const value& b) {
  if (a.k == value::kind::bad || b.k == value::kind::bad || is_inf(a) || is_inf(b)) return bad();
  // Integer ** Float: sympy keeps Pow(4, 0.5) and its simplify finds the exact value when there
  // is one (4^{0.5} is 2 there); otherwise the power is a value no Float or irrational equals
  // (value::float_pow).
  if (a.k == value::kind::exact && b.k == value::kind::flt) {
    value e = b;
    e.k = value::kind::exact;  // the Float's value is a dyadic rational
    e.prec = 0;
    const value r = power(a, e);
    if (r.k == value::kind::exact) return r;
  }
  // Float ** Integer is a Float: the exact power of the rounded base, rounded (mpmath's
  // mpf_pow_int), so 1.1^2 is 1.2100000000000002, not 1.21, and 1.5^2 is 2.25.
  if (a.k == value::kind::flt && b.k == value::kind::exact && b.q.is_integer() && b.q.num.bits() <= 16) {
    const auto p = static_cast<std::uint64_t>(std::abs(to_double(b.q.num)));
    if (a.q.is_zero()) return b.q.num.neg ? bad() : p == 0 ? flt(rational(bigint(1)), a.prec) : a;
    if ((a.q.num.bits() + a.q.den.bits()) * p > max_bits) return bad();
    rational out(pow(a.q.num, p), pow(a.q.den, p));
    if (b.q.num.neg) out = rational(out.den, out.num);
    return flt(out, a.prec);
  }
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
  value r;
  if (x == 0.0) {
    if (y == 0.0) r = num(1.0, 1.0);
    else if (y.real() > 0) r = num(0.0, 0.0);
    else return bad();
  } else {
    r = num(std::pow(x, y), 0.0);
  }
  if (b.k == value::kind::flt && a.k != value::kind::flt) r.float_pow = true;
  if (a.k == value::kind::exact && b.k == value::kind::exact) r.irrational = true;  // e.g. 2^{1/2}
  return r;
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
  // Post-order over an explicit stack, not recursion: a sum of ~1000 terms inside parentheses is
  // a tree ~1000 levels deep, which overflowed a 512 KiB worker stack when each level was a frame.
  value eval(int root) const {
    struct frame {
      int n;
      bool expanded;
    };
    std::vector<frame> todo{{root, false}};
    std::vector<value> done;  // values of finished subtrees, in order
    while (!todo.empty()) {
      const frame f = todo.back();
      todo.pop_back();
      const node& nd = nodes_[static_cast<std::size_t>(f.n)];
      if (!f.expanded && !nd.args.empty()) {
        todo.push_back({f.n, true});
        for (std::size_t k = nd.args.size(); k-- > 0;) todo.push_back({nd.args[k], false});
        continue;
      }
      const std::size_t first = done.size() - nd.args.size();
      value v = apply(nd, std::span<const value>(done.data() + first, nd.args.size()));
      for (std::size_t k = first; k < done.size(); ++k) {
        if (done[k].float_pow && v.k == value::kind::num) v.float_pow = true;
        if (done[k].irrational && v.k == value::kind::num) v.irrational = true;
        if (done[k].has_float || done[k].k == value::kind::flt) v.has_float = true;
      }
      if (v.k == value::kind::flt) v.has_float = true;
      done.resize(first);
      done.push_back(std::move(v));
    }
    return std::move(done.back());
  }

 private:
  // The value of one node from its arguments' values.
  value apply(const node& nd, std::span<const value> a) const {
    switch (nd.kind) {
      case op::integer: {
        bigint v, ten(10);
        for (const char c : nd.text) v = v * ten + bigint(c - '0');
        return exact(rational(v));
      }
      case op::decimal: return decimal_value(nd.text);
      case op::symbol: return num(point_.at(nd.text), 0.0);
      case op::infinity: return infinity(1.0);
      case op::add: return add(a[0], a[1]);
      case op::mul: return mul(a[0], a[1]);
      case op::div: return div(a[0], a[1]);
      case op::pow: return power(a[0], a[1]);
      case op::neg: return neg(a[0]);
      case op::func:
      case op::undefined: {
        const std::vector<value> args(a.begin(), a.end());
        return nd.kind == op::func ? apply_func(nd.text, args) : opaque(nd.text, args);
      }
      case op::relation: return bad();
    }
    return bad();
  }

  const std::vector<node>& nodes_;
  const std::map<std::string, std::complex<double>>& point_;
};



// Tree walks with an explicit stack (trees can be ~1000 levels deep, see evaluator::eval).
inline void collect_symbols(const parsed& p, int n, std::set<std::string>& out) {
  std::vector<int> todo{n};
  while (!todo.empty()) {
    const node& nd = p.nodes[static_cast<std::size_t>(todo.back())];
    todo.pop_back();
    if (nd.kind == op::symbol) out.insert(nd.text);
    todo.insert(todo.end(), nd.args.begin(), nd.args.end());
  }
}
inline bool has_kind(const parsed& p, int n, op k) {
  std::vector<int> todo{n};
  while (!todo.empty()) {
    const node& nd = p.nodes[static_cast<std::size_t>(todo.back())];
    todo.pop_back();
    if (nd.kind == k) return true;
    todo.insert(todo.end(), nd.args.begin(), nd.args.end());
  }
  return false;
}

// a == b at one point: exact, Float (compare after rounding to the larger precision) or numeric.
// `constant`: no free symbols (sympy's simplify then decides on numbers, not on identities).
inline std::optional<bool> equal_at(const value& a, const value& b, double tolerance, bool constant = false) {
  if (a.k == value::kind::bad || b.k == value::kind::bad) return std::nullopt;
  if (is_inf(a) || is_inf(b)) return false;  // oo - oo is nan, oo - x is oo
  if (constant && a.float_pow != b.float_pow) return false;  // see value::float_pow
  if (constant && (a.has_float || b.has_float) && a.irrational != b.irrational) return false;
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

}  // namespace reward

POSTTRAIN_NAMESPACE_END
