#pragma once
// MATH verifiers (open-instruct ground_truth_utils.py MathVerifier "math", StrictMathVerifier
// "strict_math"; helpers from math_utils.py, which takes them from lm-evaluation-harness
// minerva_math and Hendrycks et al.'s MATH code).
//
// Candidate answers of math_verifier, in order:
//   1. last_boxed_only_string: if "\boxed " (with a space) occurs, "\boxed " + the text after its
//      last occurrence up to the next '$'; otherwise the last "\boxed" (else the last "\fbox")
//      up to the brace that closes its first '{' (nested braces counted). remove_boxed then
//      strips "\boxed{" ... "}" (or "\boxed "); a "\fbox{...}" or "\boxed" without braces fails
//      remove_boxed and gives no candidate (open-instruct catches the AssertionError).
//   2. Minerva: re.search(r"Final Answer: The final answer is(.*?). I hope it is correct.",
//      prediction + "I hope it is correct.") -> group(1).strip() -> normalize_final_answer;
//      skipped when the result is "[invalidanswer]" (no match).
//   3. only if there is no candidate yet: the text between the last two '$' -> normalized.
//   4. only if there is still none: normalize_final_answer(prediction) and prediction itself.
// Score 1.0 iff some candidate c satisfies `is_equiv(c, label) or hendrycks_is_equiv(c, label)`,
// as open-instruct's MathVerifier:
//   * is_equiv is the sympy half (parse_latex both, simplify(a - b) == 0), here
//     sympy_is_equiv from math_expr.hpp: a documented approximation (exact rationals, sympy
//     Float rounding, seeded complex points for symbols); see that header and
//     docs/reward/verifiers.md for where it can differ;
//   * hendrycks_is_equiv: strip_string(c) == strip_string(label), and when strip_string raises
//     (Python exceptions below, marked "raises"), plain c == label.
// strict_math_verifier: the Minerva candidate, else normalize_final_answer(prediction); the same
// two checks (StrictMathVerifier uses sympy too).
//
// Regex steps are transcribed as hand-written scans with Python `re` semantics ('.' does not match
// a newline; lazy and greedy groups as documented at each function); bytes, not code points
// (see text.hpp).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/reward/concept.hpp"
#include "posttrain/reward/math_expr.hpp"
#include "posttrain/reward/text.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace reward {

namespace math_detail {

// Python exceptions raised inside strip_string (IndexError, AssertionError, ValueError):
// hendrycks_is_equiv catches them and falls back to plain equality.
struct strip_failed {};

// Minerva normalize_final_answer substitution list (math_utils.py SUBSTITUTIONS), applied in order.
inline constexpr std::string_view substitutions[][2] = {
    {"an ", ""},           {"a ", ""},      {".$", "$"},
    {"\\$", ""},           {"\\ ", ""},     {" ", ""},
    {"mbox", "text"},      {",\\text{and}", ","}, {"\\text{and}", ","},
    {"\\text{m}", "\\text{}"},
};

// Minerva removal list (math_utils.py REMOVED_EXPRESSIONS), removed in order.
inline constexpr std::string_view removed_expressions[] = {
    "square",    "ways",      "integers",   "dollars",  "mph",       "inches",   "ft",
    "hours",     "km",        "units",      "\\ldots",  "sue",       "points",   "feet",
    "minutes",   "digits",    "cents",      "degrees",  "cm",        "gm",       "pounds",
    "meters",    "meals",     "edges",      "students", "childrentickets",       "multiples",
    "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2", "\\text{}^3", "\\text{\n}", "\\text{}",
    "\\mathrm{th}", "^\\circ", "^{\\circ}", "\\;",      ",\\!",      "{,}",      "\"",
    "\\dots",
};

// Applies f to every line of s (split on '\n', newlines kept): the regexes below use '.', which
// never crosses a newline, so each line is matched on its own.
template <class F>
std::string per_line(std::string_view s, F f) {
  std::string out;
  std::size_t pos = 0;
  for (;;) {
    const std::size_t nl = s.find('\n', pos);
    out += f(s.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos));
    if (nl == std::string_view::npos) break;
    out.push_back('\n');
    pos = nl + 1;
  }
  return out;
}

// re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", "$\\3$", line): a line holding two '$' becomes "$" + the text
// between its first two '$' + "$".
inline std::string unwrap_dollars_line(std::string_view line) {
  const std::size_t a = line.find('$');
  if (a == std::string_view::npos) return std::string(line);
  const std::size_t b = line.find('$', a + 1);
  if (b == std::string_view::npos) return std::string(line);
  return "$" + std::string(line.substr(a + 1, b - a - 1)) + "$";
}

// re.sub(r"(\\<command>\{)(.*?)(\})", "\\2", line): each "\<command>{...}" (lazy: up to the first
// '}') becomes its content.
inline std::string unwrap_lazy_line(std::string_view line, std::string_view open) {
  std::string out;
  std::size_t pos = 0;
  for (;;) {
    const std::size_t hit = line.find(open, pos);
    if (hit == std::string_view::npos) break;
    const std::size_t close = line.find('}', hit + open.size());
    if (close == std::string_view::npos) break;  // no later start can match either
    out.append(line.substr(pos, hit - pos));
    out.append(line.substr(hit + open.size(), close - hit - open.size()));
    pos = close + 1;
  }
  out.append(line.substr(pos));
  return out;
}

// re.sub(r"(\\boxed\{)(.*)(\})", "\\2", line): greedy, from the first "\boxed{" to the last '}'.
inline std::string unwrap_boxed_greedy_line(std::string_view line) {
  const std::string_view open = "\\boxed{";
  const std::size_t hit = line.find(open);
  if (hit == std::string_view::npos) return std::string(line);
  const std::size_t close = line.rfind('}');
  if (close == std::string_view::npos || close < hit + open.size()) return std::string(line);
  return std::string(line.substr(0, hit)) +
         std::string(line.substr(hit + open.size(), close - hit - open.size())) +
         std::string(line.substr(close + 1));
}

// re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", s) ([^{] matches a newline, '.' does not) and
// re.sub(r"(sqrt)([^{])", "sqrt{\\2}", s).
inline std::string fix_shorthand_frac(std::string_view s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    if (s.substr(i, 4) == "frac" && i + 5 < s.size() && s[i + 4] != '{' && s[i + 5] != '\n') {
      out += "frac{";
      out.push_back(s[i + 4]);
      out += "}{";
      out.push_back(s[i + 5]);
      out += "}";
      i += 6;
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}
inline std::string fix_shorthand_sqrt(std::string_view s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    if (s.substr(i, 4) == "sqrt" && i + 4 < s.size() && s[i + 4] != '{') {
      out += "sqrt{";
      out.push_back(s[i + 4]);
      out += "}";
      i += 5;
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

// Python int(s) for base 10: surrounding whitespace, optional sign, digits with single '_'
// between digits. Returns str(int(s)); raises (strip_failed) when int() would raise ValueError.
inline std::string python_int_str(std::string_view s) {
  s = text::strip(s);
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty() || !text::is_digit(s.front()) || !text::is_digit(s.back())) throw strip_failed{};
  std::string digits;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (text::is_digit(s[i])) {
      digits.push_back(s[i]);
    } else if (s[i] == '_' && text::is_digit(s[i + 1])) {
      continue;  // s.back() is a digit, so s[i + 1] exists; "__" fails on the next byte
    } else {
      throw strip_failed{};
    }
  }
  const std::size_t nz = digits.find_first_not_of('0');
  if (nz == std::string::npos) return "0";
  return (negative ? "-" : "") + digits.substr(nz);
}

inline std::string fix_sqrt(std::string_view s) {
  if (!text::contains(s, "\\sqrt")) return std::string(s);
  const auto splits = text::split(s, "\\sqrt");
  std::string out = splits[0];
  for (std::size_t k = 1; k < splits.size(); ++k) {
    const std::string& part = splits[k];
    if (part.empty()) throw strip_failed{};  // split[0] raises IndexError
    if (part[0] != '{')
      out += "\\sqrt{" + part.substr(0, 1) + "}" + part.substr(1);
    else
      out += "\\sqrt" + part;
  }
  return out;
}

inline std::string fix_fracs(std::string_view s) {
  const auto parts = text::split(s, "\\frac");
  std::string out = parts[0];
  for (std::size_t k = 1; k < parts.size(); ++k) {
    const std::string& part = parts[k];
    out += "\\frac";
    if (part.empty()) throw strip_failed{};  // substr[0] raises IndexError
    if (part[0] == '{') {
      out += part;
    } else {
      if (part.size() < 2) return std::string(s);  // the AssertionError is caught: unchanged
      const char a = part[0], b = part[1];
      if (b != '{')
        out += std::string("{") + a + "}{" + b + "}" + part.substr(2);
      else
        out += std::string("{") + a + "}" + b + part.substr(2);
    }
  }
  return out;
}

inline std::string fix_a_slash_b(std::string_view s) {
  const auto parts = text::split(s, "/");
  if (parts.size() != 2) return std::string(s);
  const std::string a = python_int_str(parts[0]);  // ValueError propagates (raises)
  const std::string b = python_int_str(parts[1]);
  if (s != a + "/" + b) return std::string(s);  // the AssertionError is caught: unchanged
  return "\\frac{" + a + "}{" + b + "}";
}

inline std::string remove_right_units(std::string_view s) {
  if (!text::contains(s, "\\text{ ")) return std::string(s);
  const auto parts = text::split(s, "\\text{ ");
  if (parts.size() != 2) throw strip_failed{};  // assert len(splits) == 2 (raises)
  return parts[0];
}

}  // namespace math_detail

// Minerva normalize_final_answer (Lewkowycz et al. 2022, appendix D, as in math_utils.py).
inline std::string normalize_final_answer(std::string_view answer) {
  using namespace math_detail;
  std::string s(text::after_last(answer, "="));
  for (const auto& sub : substitutions) s = text::replace_all(s, sub[0], sub[1]);
  for (const auto expr : removed_expressions) s = text::replace_all(s, expr, "");
  s = per_line(s, unwrap_dollars_line);
  s = per_line(s, [](std::string_view l) { return unwrap_lazy_line(l, "\\text{"); });
  s = per_line(s, [](std::string_view l) { return unwrap_lazy_line(l, "\\textbf{"); });
  s = per_line(s, [](std::string_view l) { return unwrap_lazy_line(l, "\\overline{"); });
  s = per_line(s, unwrap_boxed_greedy_line);
  s = fix_shorthand_frac(s);
  s = fix_shorthand_sqrt(s);
  s = text::replace_all(s, "$", "");
  const std::string no_commas = text::replace_all(s, ",", "");
  if (text::is_all_digits(no_commas)) s = no_commas;
  return s;
}

// Hendrycks strip_string; std::nullopt where the Python raises.
inline std::optional<std::string> strip_string(std::string_view input) {
  using namespace math_detail;
  try {
    std::string s = text::replace_all(input, "\n", "");
    s = text::replace_all(s, "\\!", "");
    s = text::replace_all(s, "\\\\", "\\");
    s = text::replace_all(s, "tfrac", "frac");
    s = text::replace_all(s, "dfrac", "frac");
    s = text::replace_all(s, "\\left", "");
    s = text::replace_all(s, "\\right", "");
    s = text::replace_all(s, "^{\\circ}", "");
    s = text::replace_all(s, "^\\circ", "");
    s = text::replace_all(s, "\\$", "");
    s = remove_right_units(s);
    s = text::replace_all(s, "\\%", "");
    s = text::replace_all(s, " .", " 0.");
    s = text::replace_all(s, "{.", "{0.");
    if (s.empty()) return s;
    if (s[0] == '.') s = "0" + s;
    {  // drop a short "k = " prefix
      const auto parts = text::split(s, "=");
      if (parts.size() == 2 && parts[0].size() <= 2) s = parts[1];
    }
    s = fix_sqrt(s);
    s = text::replace_all(s, " ", "");
    s = fix_fracs(s);
    if (s == "0.5") s = "\\frac{1}{2}";
    s = fix_a_slash_b(s);
    return s;
  } catch (const strip_failed&) {
    return std::nullopt;
  }
}

// hendrycks_is_equiv: strip_string equality, plain equality when strip_string raises.
inline bool hendrycks_is_equiv(std::string_view a, std::string_view b) {
  const auto sa = strip_string(a);
  const auto sb = strip_string(b);
  if (!sa || !sb) return a == b;
  return *sa == *sb;
}

// The test MathVerifier and StrictMathVerifier apply to each candidate:
// `is_equiv(answer, label) or hendrycks_is_equiv(answer, label)`. `status` (when given) is set
// to gave_up / timed_out when the sympy half stopped early and the string half did not match.
inline bool math_answer_matches(std::string_view answer, std::string_view label,
                                const equiv_options& options = {}, verify_status* status = nullptr) {
  const equiv_outcome o = sympy_equiv_outcome(answer, label, options);
  if (o == equiv_outcome::equivalent || hendrycks_is_equiv(answer, label)) return true;
  if (status && *status == verify_status::scored) {
    if (o == equiv_outcome::gave_up) *status = verify_status::gave_up;
    if (o == equiv_outcome::timed_out) *status = verify_status::timed_out;
  }
  return false;
}

// last_boxed_only_string followed by remove_boxed; std::nullopt where either gives nothing.
inline std::optional<std::string> last_boxed_answer(std::string_view s) {
  const std::string_view spaced = "\\boxed ";
  if (text::contains(s, spaced)) {
    const std::string_view tail = text::after_last(s, spaced);
    return std::string(tail.substr(0, tail.find('$')));  // remove_boxed strips "\boxed "
  }
  std::size_t idx = s.rfind("\\boxed");
  if (idx == std::string_view::npos) {
    idx = s.rfind("\\fbox");
    if (idx == std::string_view::npos) return std::nullopt;
  }
  long open = 0;
  for (std::size_t i = idx; i < s.size(); ++i) {
    if (s[i] == '{') ++open;
    if (s[i] == '}') {
      --open;
      if (open == 0) {
        const std::string_view boxed = s.substr(idx, i + 1 - idx);
        const std::string_view left = "\\boxed{";
        if (boxed.substr(0, left.size()) != left) return std::nullopt;  // \fbox, "\boxed}"...
        return std::string(boxed.substr(left.size(), boxed.size() - left.size() - 1));
      }
    }
  }
  return std::nullopt;  // unbalanced
}

// get_unnormalized_answer: re.search(r"Final Answer: The final answer is(.*?). I hope it is
// correct.", text + "I hope it is correct.").group(1).strip(), or "[invalidanswer]".
//
// For a head ending at g the match is group = s[g, end), '.' = s[end], then the tail at end + 1
// followed by a character other than '\n', with the smallest such end and no newline in
// s[g, end]. Both the heads and the tails are visited left to right once (a cursor over the
// tails, which only moves forward as g grows), so the scan is linear; trying every end after
// every head was quadratic on a line repeating the head.
inline std::string minerva_unnormalized_answer(std::string_view prediction) {
  const std::string t = std::string(prediction) + "I hope it is correct.";
  const std::string_view s = t;
  const std::string_view head = "Final Answer: The final answer is";
  const std::string_view tail = " I hope it is correct";
  const auto valid_tail = [&](std::size_t q) {
    return q + tail.size() < s.size() && s[q + tail.size()] != '\n';
  };
  std::size_t q = 0, q_from = 0;  // q: the first valid tail at or after q_from (npos: none)
  bool q_known = false;
  std::size_t nl = 0, nl_from = 0;  // nl: the first '\n' at or after nl_from
  bool nl_known = false;
  for (std::size_t start = s.find(head); start != std::string_view::npos;
       start = s.find(head, start + 1)) {
    const std::size_t g = start + head.size();
    if (!q_known || (q != std::string_view::npos && q < g + 1)) {
      q_from = std::max(q_from, g + 1);
      q = s.find(tail, q_from);
      while (q != std::string_view::npos && !valid_tail(q)) q = s.find(tail, q + 1);
      if (q != std::string_view::npos) q_from = q;
      q_known = true;
    }
    if (q == std::string_view::npos) break;  // no tail after this head, none after later ones
    if (!nl_known || (nl != std::string_view::npos && nl < g)) {
      nl_from = std::max(nl_from, g);
      nl = s.find('\n', nl_from);
      nl_known = true;
    }
    const std::size_t end = q - 1;  // q >= g + 1
    if (nl == std::string_view::npos || nl > end) return std::string(text::strip(s.substr(g, end - g)));
  }
  return "[invalidanswer]";
}

// The Minerva candidate (normalize_final_answer of the Final Answer sentence), if any.
inline std::optional<std::string> minerva_answer(std::string_view prediction) {
  std::string a = normalize_final_answer(minerva_unnormalized_answer(prediction));
  if (a == "[invalidanswer]") return std::nullopt;
  return a;
}

// The candidates math_verifier tries, in order.
inline std::vector<std::string> math_candidates(std::string_view prediction) {
  std::vector<std::string> all;
  if (auto boxed = last_boxed_answer(prediction)) all.push_back(std::move(*boxed));
  if (auto minerva = minerva_answer(prediction)) all.push_back(std::move(*minerva));
  if (all.empty()) {
    const std::size_t last = prediction.rfind('$');
    if (last != std::string_view::npos && last > 0) {
      const std::size_t before = prediction.rfind('$', last - 1);
      if (before != std::string_view::npos)
        all.push_back(normalize_final_answer(prediction.substr(before + 1, last - before - 1)));
    }
  }
  if (all.empty()) {
    all.push_back(normalize_final_answer(prediction));
    all.emplace_back(prediction);
  }
  return all;
}

// `equiv` bounds each sympy comparison (work, and time when equiv.time_limit > 0, as
// open-instruct's 5 s); check() also says whether a comparison gave up or timed out.
struct math_verifier {
  static std::string name() { return "math"; }
  double weight = 1.0;
  equiv_options equiv;
  verify_result check(std::string_view prediction, std::string_view label) const {
    verify_result r;
    for (const auto& c : math_candidates(prediction))
      if (math_answer_matches(c, label, equiv, &r.status)) return {1.0, verify_status::scored};
    return r;
  }
  double score(std::string_view prediction, std::string_view label) const { return check(prediction, label).score; }
};

struct strict_math_verifier {
  static std::string name() { return "strict_math"; }
  double weight = 1.0;
  equiv_options equiv;
  verify_result check(std::string_view prediction, std::string_view label) const {
    auto m = minerva_answer(prediction);
    const std::string c = m ? std::move(*m) : normalize_final_answer(prediction);
    verify_result r;
    if (math_answer_matches(c, label, equiv, &r.status)) return {1.0, verify_status::scored};
    return r;
  }
  double score(std::string_view prediction, std::string_view label) const { return check(prediction, label).score; }
};

}  // namespace reward

POSTTRAIN_NAMESPACE_END
