#pragma once
// The parser of the sympy half of the MATH check (reward/math_expr.hpp): LaTeX.g4's rules as
// recursive descent, building the expression tree parse_latex would build.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/reward/math_expr/lexer.hpp"
#include "posttrain/reward/math_expr/number.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace reward {

namespace math_expr_detail {

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
  explicit parser(std::vector<token> t)
      : toks_(std::move(t)), failed_expr_(toks_.size() + 1, 0), stack_base_(frame_address()) {}

  // The stack the parse may use below the frame that constructed the parser. The grammar is
  // recursive descent (~1.3 KiB of frames per nesting level with GCC -O2, more inside function
  // arguments); sympy's own recursion limit allows 111 nested groups (~150 KiB). Past this the
  // input counts as "not equivalent", so a 256 KiB worker stack keeps 64 KiB for its caller.
  // AddressSanitizer's redzones make frames 5-6x larger (111 groups need ~0.9 MiB with GCC 12
  // -O2 -fsanitize=address): sanitized builds allow 8x the stack (and the contract tests give
  // their threads 8x the 256 KiB).
#if defined(__SANITIZE_ADDRESS__)
  static constexpr std::size_t max_parse_stack = 8 * 192 * 1024;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  static constexpr std::size_t max_parse_stack = 8 * 192 * 1024;
#else
  static constexpr std::size_t max_parse_stack = 192 * 1024;
#endif
#else
  static constexpr std::size_t max_parse_stack = 192 * 1024;
#endif
  std::vector<node> nodes;

  // math: relation (not strict: whatever follows the relation is ignored).
  int parse() { return relation(); }

 private:
  std::vector<token> toks_;
  std::vector<char> failed_expr_;  // expr() at this token position throws parse_error
  std::uintptr_t stack_base_;
  // The current frame's address (the real stack, also under ASan's fake stacks for locals).
  static std::uintptr_t frame_address() {
    return reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  }
  void check_stack() const {
    const std::uintptr_t here = frame_address();
    const std::uintptr_t used = here < stack_base_ ? stack_base_ - here : here - stack_base_;
    if (used > max_parse_stack) throw unsupported{};
  }
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
  // expr() at a position either always fails or always gives the same tree (its result depends
  // on the position alone, unless a script's digit limit is pending), so a failure is recorded
  // and not parsed again: without it the alternatives that retry the same expr after a failed
  // longer alternative (bars, function arguments, scripts) take time exponential in the nesting.
  int expr() {
    const nesting level(group_depth_, max_group_depth);
    const std::size_t at_pos = pos_;
    const bool memo = digit_limit_ == 0;
    if (memo && failed_expr_[at_pos]) throw parse_error{};
    try {
      return additive();
    } catch (const parse_error&) {
      if (memo) failed_expr_[at_pos] = 1;
      throw;
    }
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
  // The grammar's recursion over leading signs is a loop here (971 signs would be 971 frames);
  // sign_depth_ still counts one level per sign plus one per unary on the stack, as the
  // recursive form did, so the limit is unchanged.
  struct levels {
    explicit levels(int& d) : depth(d) {}
    void add(int limit) {
      ++count;
      if (++depth > limit) throw unsupported{};
    }
    ~levels() { depth -= count; }
    levels(const levels&) = delete;
    levels& operator=(const levels&) = delete;
    int& depth;
    int count = 0;
  };
  int unary(bool nofunc) {
    levels level(sign_depth_);
    std::vector<char> minus;  // the signs, outermost first
    level.add(max_signs + 1);
    while (at(tk::add) || at(tk::sub)) {
      minus.push_back(at(tk::sub));
      ++pos_;
      level.add(max_signs + 1);
    }
    int r = unsigned_unary(nofunc);
    for (std::size_t k = minus.size(); k-- > 0;)
      if (minus[k]) r = make(op::neg, "", {r});
    return r;
  }
  int unsigned_unary(bool nofunc) {
    std::vector<int> list{postfix(false)};
    for (;;) {
      const auto next = attempt([&] { return postfix(nofunc); });
      if (!next) break;
      list.push_back(*next);
      if (list.size() > max_factors) throw unsupported{};
    }
    return postfix_list(list, 0);
  }
  // Walks with an explicit stack: a tree can be ~1000 levels deep (a long sum).
  bool has_symbol(int n) const {
    std::vector<int> todo{n};
    while (!todo.empty()) {
      const node& nd = nodes[static_cast<std::size_t>(todo.back())];
      todo.pop_back();
      if (nd.kind == op::symbol) return true;
      todo.insert(todo.end(), nd.args.begin(), nd.args.end());
    }
    return false;
  }
  // convert_postfix_list: implicit products; a lone 'x' between two symbol-free factors is "times".
  // The recursion of convert_postfix_list(arr, i) unrolled: the decisions are made left to
  // right (which factors are a skipped 'x'), the products built right to left, creating the
  // nodes in the order the recursive form did.
  int postfix_list(const std::vector<int>& arr, std::size_t first) {
    std::vector<char> skipped(arr.size(), 0);
    for (std::size_t i = first + 1; i + 1 < arr.size(); ++i) {
      const node& r = nodes[static_cast<std::size_t>(arr[i])];
      skipped[i] = r.kind == op::symbol && r.text == "x" && !has_symbol(arr[i - 1]) &&
                   !has_symbol(arr[i + 1]);
    }
    int rest = arr.back();
    for (std::size_t i = arr.size() - 1; i-- > first;)
      if (!skipped[i]) rest = make(op::mul, "", {arr[i], rest});
    return rest;
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
    charge(1);  // the comparison's work budget and deadline cover parsing too
    check_stack();  // every nesting level passes through comp()
    const nesting level(comp_depth_, max_comp_depth);
    switch (peek().type) {
      case tk::lparen: return group(tk::rparen);
      case tk::lbracket: return group(tk::rbracket);
      case tk::lbrace: return group(tk::rbrace);
      case tk::lbrace_lit: return group(tk::rbrace_lit);
      case tk::bar: {
        // '|' expr '|' (abs) or, failing that, the ket '|' expr '\rangle'. Both start with the
        // same expr, whose result depends only on where it starts: parse it once and pick the
        // alternative by the closing token (trying abs and then re-parsing for the ket doubled
        // the work per nested bar: 2^n for n bars).
        ++pos_;
        const int e = expr();
        if (at(tk::bar)) {
          ++pos_;
          return make(op::func, "abs", {e});
        }
        expect(tk::r_angle);
        return make(op::undefined, "\\ket", {e});
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
    // argument: the script takes every digit of the run but the last, which is the argument.
    // "\log_2 8" is log base 2 of 8, and "\log_2 32" log base 23 of 2 (sympy 1.14 parses it
    // as log(2, 23); the grammar, not the intended math).
    if (!attempt(scripts_and_argument)) {
      std::size_t run = 0;
      while (peek(1 + run).type == tk::digit) ++run;  // the digits after the first script mark
      digit_limit_ = run > 1 ? run - 1 : 1;
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

}  // namespace math_expr_detail

}  // namespace reward

POSTTRAIN_NAMESPACE_END
