#pragma once
// Exact numbers for the sympy half of the MATH check (reward/math_expr.hpp): big integers and
// rationals, sympy Float rounding (round_to_bits) and exact roots.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
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

// The per-comparison budget. The bit cap alone does not bound the work: \binom{\frac{1}{3}}{4095}
// is 4095 products and reductions of rationals near the cap (~40 s). Every big-number operation
// and parser step charges its cost in limb operations to the calling thread's budget; when it
// runs out the comparison gives up (too_large: "not equivalent"), and when the caller's deadline
// passes it stops with timed_out (checked every 2^16 charged operations, so a deadline is
// overshot by well under a millisecond).
struct timed_out {};

struct work_budget {
  std::uint64_t left = ~std::uint64_t{0};
  std::uint64_t since_clock = 0;
  bool has_deadline = false;
  std::chrono::steady_clock::time_point deadline{};
};

inline work_budget& thread_budget() {
  static thread_local work_budget b;
  return b;
}

inline void charge(std::uint64_t ops) {
  work_budget& b = thread_budget();
  if (ops >= b.left) throw too_large{};
  b.left -= ops;
  b.since_clock += ops;
  if (b.since_clock >= (std::uint64_t{1} << 16)) {
    b.since_clock = 0;
    if (b.has_deadline && std::chrono::steady_clock::now() > b.deadline) throw timed_out{};
  }
}

// Installs a budget for the current thread for the lifetime of the scope (restoring the previous
// one after, so nested comparisons do not leak their budget).
class budget_scope {
 public:
  budget_scope(std::uint64_t work, std::chrono::nanoseconds time_limit) : saved_(thread_budget()) {
    work_budget& b = thread_budget();
    b = work_budget{};
    b.left = work;
    if (time_limit.count() > 0) {
      b.has_deadline = true;
      b.deadline = std::chrono::steady_clock::now() + time_limit;
    }
  }
  ~budget_scope() { thread_budget() = saved_; }
  budget_scope(const budget_scope&) = delete;
  budget_scope& operator=(const budget_scope&) = delete;

 private:
  work_budget saved_;
};

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
  charge(1 + std::max(a.mag.size(), b.mag.size()));
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
  charge(1 + a.mag.size());
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
  charge(1 + a.mag.size() * b.mag.size());
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
  charge(1 + a.mag.size() + k / 32);
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
  charge(1 + a.mag.size());
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

}  // namespace math_expr_detail

}  // namespace reward

POSTTRAIN_NAMESPACE_END
