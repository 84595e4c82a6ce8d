#pragma once
// The lexer of the sympy half of the MATH check (reward/math_expr.hpp): sympy's LaTeX.g4 token
// rules.
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "posttrain/config.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace reward {

namespace math_expr_detail {

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

}  // namespace math_expr_detail

}  // namespace reward

POSTTRAIN_NAMESPACE_END
