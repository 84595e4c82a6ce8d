#pragma once
// The two literal grammars open-instruct's IFEval verifier reads, host-only, without a JSON
// library (the core does not depend on one):
//
//   parse_python_literal(s)  ast.literal_eval for the shapes `str(list_of_dicts)` produces:
//                            lists, tuples, dicts, '…' / "…" strings (Python escapes, adjacent
//                            literals concatenated, u/r prefixes), ints, floats, None/True/False,
//                            unary minus
//   parse_json(s)            json.loads: RFC 8259 plus Python's NaN / Infinity / -Infinity;
//                            control characters inside strings rejected (strict=True); a leading
//                            U+FEFF rejected ("Unexpected UTF-8 BOM")
//   is_valid_json(s)         json.loads(s) does not raise ValueError
//
// Values are `literal`: none, boolean, integer (int64), real,
// string (UTF-8; \u escapes encoded, JSON surrogate pairs combined), list, dict (insertion
// order, string keys only); integers beyond int64 become reals. Bad input throws
// posttrain::error naming the offset.
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/core/validate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace reward::ifeval {

struct literal {
  enum class kind { none, boolean, integer, real, string, list, dict };
  // A dict entry. Declared here, defined below: std::vector allows an incomplete element type,
  // std::pair<std::string, literal> inside literal does not (clang with libstdc++ 12 rejects
  // the instantiation of a pair whose member is the class being defined).
  struct field;
  kind type = kind::none;
  bool b = false;
  std::int64_t i = 0;
  double d = 0.0;
  std::string s;
  std::vector<literal> items;  // list / tuple
  std::vector<field> fields;   // dict, in insertion order

  bool is_none() const { return type == kind::none; }
  bool is_string() const { return type == kind::string; }
  bool is_number() const {
    return type == kind::integer || type == kind::real || type == kind::boolean;
  }
  double number() const {
    return type == kind::integer ? static_cast<double>(i) : type == kind::real ? d : (b ? 1.0 : 0.0);
  }
  // Python truthiness (`if not x`).
  bool truthy() const;
  const literal* find(std::string_view key) const;
};

struct literal::field {
  std::string first;  // the key
  literal second;     // the value
};

inline bool literal::truthy() const {
  switch (type) {
    case kind::none: return false;
    case kind::boolean: return b;
    case kind::integer: return i != 0;
    case kind::real: return d != 0.0;
    case kind::string: return !s.empty();
    case kind::list: return !items.empty();
    case kind::dict: return !fields.empty();
  }
  return false;
}

inline const literal* literal::find(std::string_view key) const {
  for (const auto& [k, v] : fields)
    if (k == key) return &v;
  return nullptr;
}

namespace detail {

inline void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class literal_parser {
 public:
  enum class grammar { python, json };
  literal_parser(std::string_view s, grammar g, std::string_view where) : s_(s), g_(g), where_(where) {}

  literal parse_document() {
    if (g_ == grammar::json) expect(!s_.starts_with("\xef\xbb\xbf"), where_, "unexpected UTF-8 BOM");
    skip_space();
    literal v = value(0);
    skip_space();
    if (pos_ != s_.size()) fail("extra data");
    return v;
  }

 private:
  [[noreturn]] void fail(std::string_view what) const {
    posttrain::detail::fail(where_, what, " at offset ", pos_, " of ",
                            g_ == grammar::json ? "JSON" : "Python literal", " text");
  }
  bool space(char c) const {
    return g_ == grammar::json ? (c == ' ' || c == '\t' || c == '\n' || c == '\r')
                               : (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
                                  c == '\v');
  }
  void skip_space() {
    for (;;) {
      while (pos_ < s_.size() && space(s_[pos_])) ++pos_;
      // Python: a backslash-newline continues the line.
      if (g_ == grammar::python && pos_ + 1 < s_.size() && s_[pos_] == '\\' && s_[pos_ + 1] == '\n')
        pos_ += 2;
      else
        return;
    }
  }
  bool eat(char c) {
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool word(std::string_view w) {
    if (!s_.substr(pos_).starts_with(w)) return false;
    const std::size_t e = pos_ + w.size();
    if (e < s_.size()) {
      const char c = s_[e];
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')
        return false;
    }
    pos_ = e;
    return true;
  }

  // Containers are parsed with an explicit stack of open lists / dicts, not recursion: a
  // prediction of 1 MiB of '[' reaches the 512-level limit, and 512 recursive frames overflowed a
  // 256 KiB worker stack. The grammar and the error offsets are the recursive form's.
  struct open_container {
    literal v;
    char close;
    bool has_key = false;  // dict: the key is read, its value is next
    std::string key;
  };

  literal value(int depth) {
    std::vector<open_container> open;
    for (;;) {
      if (depth + static_cast<int>(open.size()) > 512) fail("nesting too deep");
      skip_space();
      if (pos_ >= s_.size()) fail("expected a value");
      const char c = s_[pos_];
      literal done;
      bool complete = true;
      if (c == '[' || (c == '(' && g_ == grammar::python)) {
        const char close = c == '[' ? ']' : ')';
        ++pos_;
        done.type = literal::kind::list;
        if (!eat(close)) {
          open.push_back({std::move(done), close, false, {}});
          complete = false;
        }
      } else if (c == '{') {
        ++pos_;
        done.type = literal::kind::dict;
        if (!eat('}')) {
          open.push_back({std::move(done), '}', false, {}});
          skip_space();
          complete = false;
        }
      } else {
        done = scalar();
      }
      // Hand the finished value to the innermost open container, closing those that end.
      while (complete) {
        if (open.empty()) return done;
        open_container& f = open.back();
        if (f.v.type == literal::kind::dict) {
          if (!f.has_key) {
            if (!done.is_string()) fail("dictionary keys must be strings");
            if (!eat(':')) fail("expected ':'");
            f.key = std::move(done.s);
            f.has_key = true;
            break;  // its value is next
          }
          f.v.fields.push_back(literal::field{std::move(f.key), std::move(done)});
          f.has_key = false;
          if (eat('}') || (eat_separator("expected ',' or '}'") && g_ == grammar::python && eat('}'))) {
            done = std::move(f.v);
            open.pop_back();
            continue;
          }
          skip_space();
          break;  // the next key
        }
        f.v.items.push_back(std::move(done));
        if (eat(f.close) || (eat_separator("expected ',' or a closing bracket") && g_ == grammar::python &&
                             eat(f.close))) {  // a Python trailing comma
          done = std::move(f.v);
          open.pop_back();
          continue;
        }
        break;  // the next item
      }
    }
  }

  bool eat_separator(std::string_view what) {
    if (!eat(',')) fail(what);
    return true;
  }

  // A string, a keyword or a number.
  literal scalar() {
    literal v;
    const char c = s_[pos_];
    if (c == '"' || (g_ == grammar::python && (c == '\'' || c == 'u' || c == 'U' || c == 'r' ||
                                                 c == 'R') && string_start())) {
      v.type = literal::kind::string;
      v.s = string_value();
      if (g_ == grammar::python)
        for (;;) {  // adjacent literals concatenate
          const std::size_t save = pos_;
          skip_space();
          if (pos_ < s_.size() && string_start()) {
            v.s += string_value();
          } else {
            pos_ = save;
            break;
          }
        }
      return v;
    }
    if (g_ == grammar::json) {
      if (word("true")) return v.type = literal::kind::boolean, v.b = true, v;
      if (word("false")) return v.type = literal::kind::boolean, v.b = false, v;
      if (word("null")) return v;
      if (word("NaN")) return v.type = literal::kind::real, v.d = std::nan(""), v;
      if (word("Infinity")) return v.type = literal::kind::real, v.d = HUGE_VAL, v;
      if (s_.substr(pos_).starts_with("-Infinity")) {
        pos_ += 9;
        return v.type = literal::kind::real, v.d = -HUGE_VAL, v;
      }
    } else {
      if (word("True")) return v.type = literal::kind::boolean, v.b = true, v;
      if (word("False")) return v.type = literal::kind::boolean, v.b = false, v;
      if (word("None")) return v;
    }
    return number();
  }

  bool string_start() const {
    std::size_t p = pos_;
    if (p < s_.size() && g_ == grammar::python && (s_[p] == 'u' || s_[p] == 'U' || s_[p] == 'r' || s_[p] == 'R'))
      ++p;
    return p < s_.size() && (s_[p] == '"' || (g_ == grammar::python && s_[p] == '\''));
  }

  std::string string_value() {
    bool raw = false;
    if (s_[pos_] == 'u' || s_[pos_] == 'U') ++pos_;
    else if (s_[pos_] == 'r' || s_[pos_] == 'R') raw = true, ++pos_;
    const char q = s_[pos_];
    if (g_ == grammar::python && s_.substr(pos_).starts_with(std::string(3, q)))
      fail("triple-quoted strings are not supported");
    ++pos_;
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) fail("unterminated string");
      const char c = s_[pos_];
      if (c == q) {
        ++pos_;
        return out;
      }
      if (g_ == grammar::json && static_cast<unsigned char>(c) < 0x20) fail("invalid control character");
      if (g_ == grammar::python && c == '\n') fail("newline in a string");
      if (c != '\\' || (raw && !(pos_ + 1 < s_.size() && s_[pos_ + 1] == q))) {
        out.push_back(c);
        ++pos_;
        continue;
      }
      if (raw) {  // r'\'' keeps the backslash
        out.push_back('\\');
        out.push_back(q);
        pos_ += 2;
        continue;
      }
      if (pos_ + 1 >= s_.size()) fail("unterminated string");
      const char e = s_[pos_ + 1];
      pos_ += 2;
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/':
          if (g_ == grammar::python) out.push_back('\\');
          out.push_back('/');
          break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': append_utf8(out, unicode_escape()); break;
        default:
          if (g_ == grammar::json) fail("invalid \\escape");
          python_escape(e, out);
      }
    }
  }

  std::uint32_t hex_digits(int n) {
    std::uint32_t v = 0;
    for (int k = 0; k < n; ++k) {
      const int h = pos_ < s_.size() ? hex_value(s_[pos_]) : -1;
      if (h < 0) fail("invalid hexadecimal escape");
      v = v * 16 + static_cast<std::uint32_t>(h);
      ++pos_;
    }
    return v;
  }

  std::uint32_t unicode_escape() {
    std::uint32_t cp = hex_digits(4);
    // json.loads combines a surrogate pair; Python literals never see one from str() of text.
    if (g_ == grammar::json && cp >= 0xd800 && cp <= 0xdbff && s_.substr(pos_).starts_with("\\u")) {
      const std::size_t save = pos_;
      pos_ += 2;
      const std::uint32_t lo = hex_digits(4);
      if (lo >= 0xdc00 && lo <= 0xdfff) return 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      pos_ = save;
    }
    return cp;
  }

  void python_escape(char e, std::string& out) {
    switch (e) {
      case '\'': out.push_back('\''); return;
      case '\n': return;  // line continuation
      case 'a': out.push_back('\a'); return;
      case 'v': out.push_back('\v'); return;
      case 'x': append_utf8(out, hex_digits(2)); return;
      case 'U': {
        const std::uint32_t cp = hex_digits(8);
        if (cp > 0x10ffff) fail("\\U escape out of range");
        append_utf8(out, cp);
        return;
      }
      case 'N': fail("\\N{...} escapes are not supported");
      default: break;
    }
    if (e >= '0' && e <= '7') {
      std::uint32_t v = static_cast<std::uint32_t>(e - '0');
      for (int k = 0; k < 2 && pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '7'; ++k)
        v = v * 8 + static_cast<std::uint32_t>(s_[pos_++] - '0');
      append_utf8(out, v);
      return;
    }
    out.push_back('\\');  // unknown escapes keep the backslash
    out.push_back(e);
  }

  literal number() {
    literal v;
    const std::size_t start = pos_;
    std::string digits;
    bool negative = false;
    if (g_ == grammar::python)
      while (pos_ < s_.size() && (s_[pos_] == '-' || s_[pos_] == '+')) {
        if (s_[pos_] == '-') negative = !negative;
        ++pos_;
        skip_space();
      }
    else if (pos_ < s_.size() && s_[pos_] == '-')
      negative = true, ++pos_;
    const auto digit = [&](std::size_t p) { return p < s_.size() && s_[p] >= '0' && s_[p] <= '9'; };
    const auto digit_run = [&] {
      const std::size_t b = pos_;
      // pos_ < size before s_[pos_]: the view need not be NUL-terminated (a "1" at the end of
      // an exact-size buffer was a one-byte overread).
      while (digit(pos_) || (g_ == grammar::python && pos_ < s_.size() && s_[pos_] == '_' &&
                             digit(pos_ + 1) && pos_ > b)) {
        if (s_[pos_] != '_') digits.push_back(s_[pos_]);
        ++pos_;
      }
      return pos_ > b;
    };
    bool is_real = false;
    const bool int_part = digit_run();
    if (g_ == grammar::json) {
      if (!int_part) fail("expected a value");
      if (digits.size() > 1 && digits[0] == '0') {  // "01": json.loads parses 0, then extra data
        pos_ = start + (negative ? 1 : 0) + 1;
        fail("extra data");
      }
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      if (g_ == grammar::json && !digit(pos_ + 1)) fail("extra data");
      ++pos_;
      digits.push_back('.');
      is_real = true;
      digit_run();
    }
    if (digits.empty() || digits == ".") fail("expected a value");
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      std::size_t p = pos_ + 1;
      if (p < s_.size() && (s_[p] == '+' || s_[p] == '-')) ++p;
      if (digit(p)) {
        digits.push_back('e');
        if (s_[pos_ + 1] == '-') digits.push_back('-');
        pos_ = p;
        digit_run();
        is_real = true;
      } else if (g_ == grammar::json) {
        fail("extra data");
      }
    }
    if (g_ == grammar::python && !is_real && digits.size() > 1 && digits[0] == '0' &&
        digits.find_first_not_of('0') != std::string::npos)
      fail("leading zeros in an integer");
    if (is_real) {
      v.type = literal::kind::real;
      v.d = std::strtod(digits.c_str(), nullptr) * (negative ? -1.0 : 1.0);
      return v;
    }
    errno = 0;
    char* end = nullptr;
    const long long x = std::strtoll(digits.c_str(), &end, 10);
    if (errno == ERANGE) {  // Python ints are unbounded: keep the magnitude as a double
      v.type = literal::kind::real;
      v.d = std::strtod(digits.c_str(), nullptr) * (negative ? -1.0 : 1.0);
      return v;
    }
    v.type = literal::kind::integer;
    v.i = negative ? -x : x;
    return v;
  }

  std::string_view s_;
  grammar g_;
  std::string_view where_;
  std::size_t pos_ = 0;
};

}  // namespace detail

inline literal parse_python_literal(std::string_view s) {
  return detail::literal_parser(s, detail::literal_parser::grammar::python,
                                "reward::ifeval::parse_python_literal")
      .parse_document();
}

inline literal parse_json(std::string_view s) {
  return detail::literal_parser(s, detail::literal_parser::grammar::json, "reward::ifeval::parse_json")
      .parse_document();
}

inline bool is_valid_json(std::string_view s) {
  try {
    parse_json(s);
    return true;
  } catch (const error&) {
    return false;
  }
}

}  // namespace reward::ifeval

POSTTRAIN_NAMESPACE_END
