#pragma once
// IFEval verifier (open-instruct ground_truth_utils.py IFEvalVerifier, name "ifeval"; the
// checkers of open_instruct/IFEvalG/instructions.py, registry INSTRUCTION_DICT), host-only.
//
//   label       str([{"instruction_id": [id, ...], "kwargs": [dict-or-None, ...]}]):
//               ast.literal_eval(label)[0], json.loads'd again when that element is a string
//   answer      remove_thinking_section(prediction) (squad.hpp: after the last "</think>",
//               <answer> tags dropped, stripped)
//   score       0 if prediction or answer is empty; else, over zip(instruction_id, kwargs),
//               the fraction of instructions whose check_following(answer) holds
//               (sum / max(n, 1): an empty instruction list scores 0)
//
// Each instruction is built as build_description(**{k: v for k, v in kwargs if v is not None})
// and then checked; every one of the 54 ids of INSTRUCTION_DICT is implemented with open-instruct's
// semantics (see docs/reward/ifeval.md for the table). Where open-instruct would draw a missing
// argument at random (random.choice / random.randint / generate_keywords), reproduce nothing
// and throw posttrain::error, as for an argument it rejects (unknown keyword -> TypeError,
// relation not in ("less than", "at least") -> ValueError, missing prompt_to_repeat).
//
// Language: response_language, english_capital and english_lowercase call langdetect. The
// verifier holds an optional `detect_language` callback (text -> ISO 639-1 code, or nullopt
// where langdetect raises LangDetectException, which open-instruct counts as followed); when
// such an instruction needs it and none is set, score throws posttrain::error. english_capital /
// english_lowercase only consult it when the text is all upper / lower case (Python's `and`).
//
// Text semantics (tokenisers, \w, case, keyword patterns) are those of ifeval_text.hpp; label and
// json_format parsing those of ifeval_literal.hpp.
#include <algorithm>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/reward/ifeval_literal.hpp"
#include "posttrain/reward/ifeval_text.hpp"
#include "posttrain/reward/squad.hpp"
#include "posttrain/reward/text.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace reward::ifeval {

using language_detector = std::function<std::optional<std::string>(std::string_view)>;

enum class relation { less_than, at_least, other };

// One instruction after build_description: the id and its arguments, normalised as the Python
// constructor stores them (stripped, lower-cased, ...). Only the fields an id uses are set.
struct instruction {
  std::string id;
  std::vector<std::string> words;  // keywords / forbidden words
  std::string word;                // keyword, first/last word, letter, marker, splitter, phrase,
                                   // end phrase, prompt_to_repeat, language
  std::string word2;               // keyword2 of count_increment_word
  double n = 0.0;                  // threshold / count
  double n2 = 0.0;                 // second count (n_words, n_end, m, nth_paragraph)
  relation rel = relation::at_least;
};

namespace detail {

inline constexpr std::string_view where = "reward::ifeval";

// The arguments one build_description receives (None values already dropped).
class args {
 public:
  args(std::string_view id, const literal& kwargs, std::initializer_list<std::string_view> allowed)
      : id_(id) {
    if (kwargs.is_none()) return;
    expect(kwargs.type == literal::kind::dict, where, id, ": kwargs must be a dict or None");
    for (const auto& [k, v] : kwargs.fields) {
      if (v.is_none()) continue;
      expect(std::find(allowed.begin(), allowed.end(), k) != allowed.end(), where, id,
             ": unexpected argument '", k, "' (open-instruct's build_description raises TypeError)");
      present_.emplace_back(k, &v);
    }
  }
  const literal* get(std::string_view name) const {
    for (const auto& [k, v] : present_)
      if (k == name) return v;
    return nullptr;
  }
  [[noreturn]] void random(std::string_view name) const {
    posttrain::detail::fail(where, id_, ": argument '", name,
                            "' is missing or empty; open-instruct would draw it at random, which "
                            "is not reproducible");
  }
  const literal& truthy(std::string_view name) const {  // `if not x: random`
    const literal* v = get(name);
    if (v == nullptr || !v->truthy()) random(name);
    return *v;
  }
  std::string string(std::string_view name, const literal& v) const {
    expect(v.is_string(), where, id_, ": argument '", name, "' must be a string");
    return v.s;
  }
  double number(std::string_view name, const literal& v) const {
    expect(v.is_number(), where, id_, ": argument '", name, "' must be a number");
    return v.number();
  }
  // `if x is None or x < 0: random`
  double count(std::string_view name) const {
    const literal* v = get(name);
    if (v == nullptr) random(name);
    const double x = number(name, *v);
    if (x < 0) random(name);
    return x;
  }
  // Python list indices and slice bounds must be ints.
  double index(std::string_view name, const literal& v) const {
    expect(v.type == literal::kind::integer || v.type == literal::kind::boolean, where, id_,
           ": argument '", name, "' must be an integer (it indexes a Python list or string)");
    return v.number();
  }
  relation rel(std::string_view name, bool validate = true) const {
    const literal* v = get(name);
    if (v == nullptr) random(name);
    if (v->is_string() && v->s == "less than") return relation::less_than;
    if (v->is_string() && v->s == "at least") return relation::at_least;
    expect(!validate, where, id_, ": argument '", name,
           "' must be 'less than' or 'at least' (open-instruct raises ValueError)");
    return relation::other;
  }
  // Arguments given as a string or as a list whose first element is taken (`x[0].strip()`).
  std::string first_string(std::string_view name, const literal& v) const {
    if (v.type == literal::kind::list) {
      expect(!v.items.empty(), where, id_, ": argument '", name, "' is an empty list");
      return string(name, v.items[0]);
    }
    return string(name, v);
  }

 private:
  std::string_view id_;
  std::vector<std::pair<std::string, const literal*>> present_;
};

inline std::string strip(std::string_view s) { return std::string(text::strip(s)); }

inline bool compare(relation r, double actual, double threshold) {
  return r == relation::less_than ? actual < threshold : actual >= threshold;
}

// A Python list index (negative counts from the end); nullopt where Python raises IndexError.
inline std::optional<std::size_t> py_index(double i, std::size_t size) {
  const auto n = static_cast<long long>(size);
  auto k = static_cast<long long>(i);
  if (k < 0) k += n;
  if (k < 0 || k >= n) return std::nullopt;
  return static_cast<std::size_t>(k);
}

// s[a:b] over code points with Python's clamping of negative and out-of-range bounds.
inline std::string py_slice(std::string_view s, double a, double b) {
  std::vector<std::size_t> starts;
  for (std::size_t i = 0; i < s.size(); i += ifeval::detail::cp_length(s, i)) starts.push_back(i);
  const auto n = static_cast<long long>(starts.size());
  const auto clamp = [n](long long k) { return std::clamp(k < 0 ? k + n : k, 0LL, n); };
  const long long lo = clamp(static_cast<long long>(a)), hi = clamp(static_cast<long long>(b));
  if (lo >= hi) return {};
  const std::size_t from = starts[static_cast<std::size_t>(lo)];
  const std::size_t to = hi == n ? s.size() : starts[static_cast<std::size_t>(hi)];
  return std::string(s.substr(from, to - from));
}

inline std::string lstrip_char(std::string_view s, char c) {
  std::size_t b = 0;
  while (b < s.size() && s[b] == c) ++b;
  return std::string(s.substr(b));
}
inline std::string rstrip_char(std::string_view s, char c) {
  std::size_t e = s.size();
  while (e > 0 && s[e - 1] == c) --e;
  return std::string(s.substr(0, e));
}

// re.split(r"\s?\*\*\*\s?", s)
inline std::vector<std::string> split_stars(std::string_view s) {
  std::vector<std::string> parts;
  std::size_t last = 0, p = 0;
  while (p < s.size()) {
    std::size_t b = p;
    if (text::is_space(s[p]) && ifeval::detail::starts_with_at(s, p + 1, "***")) b = p + 1;
    if (!ifeval::detail::starts_with_at(s, b, "***")) {
      ++p;
      continue;
    }
    std::size_t e = b + 3;
    if (e < s.size() && text::is_space(s[e])) ++e;
    parts.emplace_back(s.substr(last, p - last));
    last = p = e;
  }
  parts.emplace_back(s.substr(last));
  return parts;
}

// The paragraph count rule shared by ParagraphChecker / ParagraphBasicChecker(2): empty first
// or last parts are not paragraphs; an empty inner part fails (nullopt).
inline std::optional<std::size_t> count_paragraphs(const std::vector<std::string>& parts) {
  std::size_t n = parts.size();
  for (std::size_t k = 0; k < parts.size(); ++k)
    if (text::strip(parts[k]).empty()) {
      if (k == 0 || k + 1 == parts.size())
        --n;
      else
        return std::nullopt;
    }
  return n;
}

inline bool line_start(std::string_view s, std::size_t p) { return p == 0 || s[p - 1] == '\n'; }

// len(re.findall(r"^\s*\*[^\*].*$", s, re.M)) + len(re.findall(r"^\s*-.*$", s, re.M))
inline std::size_t count_bullets(std::string_view s) {
  const auto count = [&](bool star) {
    std::size_t n = 0, p = 0;
    while (p <= s.size()) {
      if (!line_start(s, p)) {
        ++p;
        continue;
      }
      std::size_t j = p;
      while (j < s.size() && text::is_space(s[j])) ++j;
      bool ok = false;
      if (star) {
        ok = j + 1 < s.size() && s[j] == '*' && s[j + 1] != '*';
        if (ok) j += ifeval::detail::cp_length(s, j + 1) + 1;
      } else {
        ok = j < s.size() && s[j] == '-';
        if (ok) ++j;
      }
      if (!ok) {
        ++p;
        continue;
      }
      while (j < s.size() && s[j] != '\n') ++j;  // .*$
      ++n;
      p = j > p ? j : p + 1;
    }
    return n;
  };
  return count(true) + count(false);
}

// re.findall(r"\[.*?\]", s)
inline std::size_t count_placeholders(std::string_view s) {
  std::size_t n = 0, p = 0;
  while (p < s.size()) {
    if (s[p] == '[') {
      std::size_t j = p + 1;
      while (j < s.size() && s[j] != ']' && s[j] != '\n') ++j;
      if (j < s.size() && s[j] == ']') {
        ++n;
        p = j + 1;
        continue;
      }
      // Every '[' before j fails at the same j (no ']' in between): skip them, or a line of
      // '[' without ']' costs quadratic time.
      p = j;
      continue;
    }
    ++p;
  }
  return n;
}

// HighlightSectionChecker: \*[^\n\*]*\* and \*\*[^\n\*]*\*\* with non-blank insides.
inline std::size_t count_highlights(std::string_view s) {
  const auto count = [&](std::string_view fence) {
    std::size_t n = 0, p = 0;
    while (p < s.size()) {
      if (ifeval::detail::starts_with_at(s, p, fence)) {
        std::size_t j = p + fence.size();
        while (j < s.size() && s[j] != '\n' && s[j] != '*') ++j;
        if (ifeval::detail::starts_with_at(s, j, fence)) {
          if (!text::strip(s.substr(p + fence.size(), j - p - fence.size())).empty()) ++n;
          p = j + fence.size();
          continue;
        }
      }
      ++p;
    }
    return n;
  };
  return count("*") + count("**");
}

// len(re.split(r"\s?" + splitter + r"\s?\d+\s?", s)) - 1: the number of matches.
inline std::size_t count_sections(std::string_view s, const pattern& splitter) {
  const auto rest = [&](std::size_t q) -> std::size_t {  // \s?\d+\s? after the splitter
    std::size_t j = q;
    if (j < s.size() && text::is_space(s[j]) && j + 1 < s.size() && text::is_digit(s[j + 1])) ++j;
    if (!(j < s.size() && text::is_digit(s[j]))) return std::string_view::npos;
    while (j < s.size() && text::is_digit(s[j])) ++j;
    if (j < s.size() && text::is_space(s[j])) ++j;
    return j;
  };
  std::size_t n = 0, p = 0;
  while (p < s.size()) {
    std::size_t end = std::string_view::npos;
    for (std::size_t lead : {std::size_t{1}, std::size_t{0}}) {
      if (lead == 1 && !text::is_space(s[p])) continue;
      const std::size_t len = splitter.match_at(s, p + lead);
      if (len == std::string_view::npos) continue;
      end = rest(p + lead + len);
      if (end != std::string_view::npos) break;
    }
    if (end != std::string_view::npos && end > p) {
      ++n;
      p = end;
    } else {
      ++p;
    }
  }
  return n;
}

// any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", s))
// Line by line, linear: on a line, the leftmost "<<" at p matches up to the last ">>" of the
// line (greedy [^\n]+) when that ">>" starts at p + 3 or later; a later "<<" on the line needs
// the same ">>" further right, so a line has at most one match (searching from every "<<" was
// quadratic on a line of '<').
inline bool has_title(std::string_view s) {
  std::size_t line = 0;
  while (line < s.size()) {
    std::size_t line_end = s.find('\n', line);
    if (line_end == std::string_view::npos) line_end = s.size();
    const std::string_view l = s.substr(line, line_end - line);
    const std::size_t p = l.find("<<");
    if (p != std::string_view::npos) {
      const std::size_t q = l.rfind(">>");
      if (q != std::string_view::npos && q >= p + 3) {
        const std::string t = rstrip_char(lstrip_char(l.substr(p, q + 2 - p), '<'), '>');
        if (!text::strip(t).empty()) return true;
      }
    }
    line = line_end + 1;
  }
  return false;
}

// The postscript marker search (re.findall(pattern, value.lower(), re.M) is non-empty).
inline bool has_postscript(std::string_view value, std::string_view marker) {
  const std::string v = text::lower(value);
  const auto opt_space = [&](std::size_t j) { return j < v.size() && text::is_space(v[j]) ? j + 1 : j; };
  if (marker == "P.P.S" || marker == "P.S.") {
    for (std::size_t p = 0; p < v.size(); ++p) {
      // p\.\s?p\.\s?s   or   p\.\s?s\.   (\s? is greedy; backtracking to zero is tried too)
      const auto lit = [&](std::size_t j, std::string_view w) {
        return ifeval::detail::starts_with_at(v, j, w) ? j + w.size() : std::string_view::npos;
      };
      const auto after = [&](std::size_t j, std::string_view w) -> std::vector<std::size_t> {
        if (j == std::string_view::npos) return {};
        std::vector<std::size_t> out;
        for (std::size_t k : {opt_space(j), j}) {
          const std::size_t e = lit(k, w);
          if (e != std::string_view::npos) out.push_back(e);
        }
        return out;
      };
      const std::size_t first = lit(p, "p.");
      if (first == std::string_view::npos) continue;
      if (marker == "P.S.") {
        if (!after(first, "s.").empty()) return true;
      } else {
        for (std::size_t e : after(first, "p."))
          if (!after(e, "s").empty()) return true;
      }
    }
    return false;
  }
  return pattern(text::lower(marker), false, where).search(v);
}

// RepeatPhraseChecker: re.findall(f"{first} .*? {last}", value) with the found phrases.
inline std::vector<std::string> find_phrases(std::string_view s, const pattern& first,
                                             const pattern& last) {
  std::vector<std::string> out;
  std::size_t p = 0;
  while (p < s.size()) {
    const std::size_t a = first.match_at(s, p);
    if (a != std::string_view::npos && p + a < s.size() && s[p + a] == ' ') {
      std::size_t k = p + a + 1;
      std::size_t end = std::string_view::npos;
      for (;;) {  // lazy .*? : the first " last" reachable without crossing a newline
        if (k < s.size() && s[k] == ' ') {
          const std::size_t b = last.match_at(s, k + 1);
          if (b != std::string_view::npos) {
            end = k + 1 + b;
            break;
          }
        }
        if (k >= s.size() || s[k] == '\n') break;
        k += ifeval::detail::cp_length(s, k);
      }
      if (end != std::string_view::npos) {
        out.emplace_back(s.substr(p, end - p));
        p = end;
        continue;
      }
      // No " last" before k (a newline or the end): a later start before k sees a subset of
      // the same positions and fails too. Skipping them keeps a line repeating `first` linear.
      p = std::max(k, p + 1);
      continue;
    }
    ++p;
  }
  return out;
}

// words[i][0].lower(): the first code point, ASCII letters lower-cased.
inline char32_t cp_at_lower(std::string_view w) {
  const char32_t c = ifeval::detail::cp_at(w, 0);
  return c < 0x80 ? static_cast<char32_t>(fold(static_cast<char>(c))) : c;
}

inline std::u32string code_points(std::string_view s) {
  std::u32string out;
  for (std::size_t i = 0; i < s.size(); i += ifeval::detail::cp_length(s, i))
    out.push_back(ifeval::detail::cp_at(s, i));
  return out;
}

// re.sub(r"[^\w\s]", "", s)
inline std::string keep_word_and_space(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = ifeval::detail::cp_length(s, i);
    if (word_at(s, i) || text::is_space(s[i])) out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

}  // namespace detail

// build_description(**kwargs) of the INSTRUCTION_DICT class registered under `id`.
inline instruction build_instruction(std::string_view id, const literal& kwargs) {
  using detail::args;
  using detail::strip;
  instruction in;
  in.id = std::string(id);
  const auto keyword_like = [&](const args& a, std::string_view name) {
    return strip(a.string(name, a.truthy(name)));
  };
  if (id == "keywords:existence") {
    const args a(id, kwargs, {"keywords"});
    const literal& k = a.truthy("keywords");
    if (k.is_string()) {  // sorted(str) iterates characters
      for (std::size_t i = 0; i < k.s.size(); i += ifeval::detail::cp_length(k.s, i))
        in.words.emplace_back(k.s.substr(i, ifeval::detail::cp_length(k.s, i)));
    } else {
      expect(k.type == literal::kind::list, detail::where, id, ": keywords must be a list");
      for (const auto& w : k.items) in.words.push_back(a.string("keywords", w));
    }
  } else if (id == "keywords:frequency" || id == "keywords:word_count_different_numbers") {
    const args a(id, kwargs, {"keyword", "frequency", "relation"});
    in.word = keyword_like(a, "keyword");
    in.n = a.count("frequency");
    in.rel = a.rel("relation");
  } else if (id == "keywords:forbidden_words") {
    const args a(id, kwargs, {"forbidden_words"});
    const literal& k = a.truthy("forbidden_words");
    expect(k.type == literal::kind::list, detail::where, id, ": forbidden_words must be a list");
    for (const auto& w : k.items) in.words.push_back(a.string("forbidden_words", w));
  } else if (id == "keywords:letter_frequency" || id == "letters:letter_counting2") {
    const args a(id, kwargs, {"letter", "let_frequency", "let_relation"});
    const std::string letter = a.string("letter", a.truthy("letter"));
    if (letter.size() != 1 || !(ascii_lower(letter[0]) || ascii_upper(letter[0]))) a.random("letter");
    in.word = std::string(1, fold(letter[0]));
    in.n = a.count("let_frequency");
    in.rel = a.rel("let_relation");
  } else if (id == "language:response_language") {
    const args a(id, kwargs, {"language"});
    const literal* l = a.get("language");
    if (l == nullptr) a.random("language");
    in.word = a.string("language", *l);
  } else if (id == "length_constraints:number_sentences") {
    const args a(id, kwargs, {"num_sentences", "relation"});
    in.n = a.count("num_sentences");
    in.rel = a.rel("relation");
  } else if (id == "length_constraints:number_paragraphs") {
    in.n = args(id, kwargs, {"num_paragraphs"}).count("num_paragraphs");
  } else if (id == "length_constraints:number_words") {
    const args a(id, kwargs, {"num_words", "relation"});
    in.n = a.count("num_words");
    in.rel = a.rel("relation");
  } else if (id == "length_constraints:nth_paragraph_first_word") {
    const args a(id, kwargs, {"num_paragraphs", "nth_paragraph", "first_word"});
    in.n = a.count("num_paragraphs");
    const literal* nth = a.get("nth_paragraph");
    if (nth == nullptr) a.random("nth_paragraph");
    in.n2 = a.index("nth_paragraph", *nth);
    if (in.n2 <= 0 || in.n2 > in.n) a.random("nth_paragraph");
    const literal* fw = a.get("first_word");
    if (fw == nullptr) a.random("first_word");
    in.word = text::lower(a.string("first_word", *fw));
  } else if (id == "detectable_content:number_placeholders") {
    in.n = args(id, kwargs, {"num_placeholders"}).count("num_placeholders");
  } else if (id == "detectable_content:postscript") {
    const args a(id, kwargs, {"postscript_marker"});
    const literal* m = a.get("postscript_marker");
    if (m == nullptr) a.random("postscript_marker");
    in.word = strip(a.string("postscript_marker", *m));
    if (in.word != "P.P.S" && in.word != "P.S.")
      (void)pattern(text::lower(in.word), false, detail::where);  // validate now
  } else if (id == "detectable_format:number_bullet_lists") {
    in.n = args(id, kwargs, {"num_bullets"}).count("num_bullets");
  } else if (id == "detectable_format:number_highlighted_sections") {
    in.n = args(id, kwargs, {"num_highlights"}).count("num_highlights");
  } else if (id == "detectable_format:multiple_sections") {
    const args a(id, kwargs, {"section_spliter", "num_sections"});
    const literal* sp = a.get("section_spliter");
    if (sp == nullptr) a.random("section_spliter");
    in.word = strip(a.string("section_spliter", *sp));
    (void)pattern(in.word, false, detail::where);
    in.n = a.count("num_sections");
  } else if (id == "combination:repeat_prompt" || id == "copy:copy" || id == "copy:copying_simple") {
    const args a(id, kwargs, {"prompt_to_repeat"});
    const literal* p = a.get("prompt_to_repeat");
    expect(p != nullptr && p->truthy(), detail::where, id,
           ": prompt_to_repeat must be set (open-instruct raises ValueError)");
    in.word = a.string("prompt_to_repeat", *p);
  } else if (id == "startend:end_checker") {
    const args a(id, kwargs, {"end_phrase"});
    const literal* e = a.get("end_phrase");
    if (e == nullptr) a.random("end_phrase");
    in.word = strip(a.string("end_phrase", *e));
  } else if (id == "change_case:capital_word_frequency") {
    const args a(id, kwargs, {"capital_frequency", "capital_relation"});
    const literal* f = a.get("capital_frequency");
    if (f == nullptr) a.random("capital_frequency");
    in.n = a.number("capital_frequency", *f);
    in.rel = a.rel("capital_relation");
  } else if (id == "copy:repeat_phrase") {
    const args a(id, kwargs, {"phrase", "small_n"});
    in.word = keyword_like(a, "phrase");
    in.n = a.number("small_n", a.truthy("small_n"));
    const auto w = text::split_whitespace(in.word);
    expect(!w.empty(), detail::where, id, ": phrase has no words (Python raises IndexError)");
    (void)pattern(w.front(), false, detail::where);
    (void)pattern(w.back(), false, detail::where);
  } else if (id == "new:copy_span_idx") {
    const args a(id, kwargs, {"prompt_to_repeat", "n_start", "n_end"});
    const literal* p = a.get("prompt_to_repeat");
    expect(p != nullptr && p->truthy(), detail::where, id,
           ": prompt_to_repeat must be set (open-instruct raises ValueError)");
    in.word = a.string("prompt_to_repeat", *p);
    in.n = a.index("n_start", a.truthy("n_start"));  // n_start = 0 is drawn at random too
    in.n2 = a.index("n_end", a.truthy("n_end"));
  } else if (id == "keywords:word_once") {
    in.word = keyword_like(args(id, kwargs, {"keyword"}), "keyword");
  } else if (id == "keywords:exclude_word_harder") {
    in.word = keyword_like(args(id, kwargs, {"keyword", "instruction"}), "keyword");
  } else if (id == "first_word:first_word_sent" || id == "last_word:last_word_sent") {
    const std::string_view name = id == "first_word:first_word_sent" ? "first_word" : "last_word";
    const args a(id, kwargs, {name});
    in.word = strip(a.first_string(name, a.truthy(name)));
  } else if (id == "first_word:first_word_answer" || id == "last_word:last_word_answer") {
    const std::string_view name = id == "first_word:first_word_answer" ? "first_word" : "last_word";
    in.word = keyword_like(args(id, kwargs, {name}), name);
  } else if (id == "copy:copying_multiple") {
    const args a(id, kwargs, {"prompt_to_repeat", "N"});
    const literal* p = a.get("prompt_to_repeat");
    expect(p != nullptr && p->truthy(), detail::where, id,
           ": prompt_to_repeat must be set (open-instruct raises ValueError)");
    in.word = a.string("prompt_to_repeat", *p);
    in.n = a.number("N", a.truthy("N"));
  } else if (id == "count:lowercase_counting") {
    const args a(id, kwargs, {"N"});
    in.n = a.number("N", a.truthy("N"));
  } else if (id == "letters:letter_counting") {
    const args a(id, kwargs, {"N", "relation"});
    in.n = a.number("N", a.truthy("N"));
    (void)a.truthy("relation");
    in.rel = a.rel("relation", /*validate=*/false);  // unchecked: another value scores 0
  } else if (id == "count:counting_composition") {
    const args a(id, kwargs, {"n_sent", "n_words"});
    in.n = a.number("n_sent", a.truthy("n_sent"));
    in.n2 = a.number("n_words", a.truthy("n_words"));
  } else if (id == "count:count_increment_word") {
    const args a(id, kwargs, {"keyword1", "keyword2"});
    in.word = keyword_like(a, "keyword1");
    in.word2 = keyword_like(a, "keyword2");
  } else if (id == "keywords:keyword_specific_position") {
    const args a(id, kwargs, {"keyword", "n", "m"});
    in.word = strip(a.first_string("keyword", a.truthy("keyword")));
    in.n = a.index("n", a.truthy("n"));
    in.n2 = a.index("m", a.truthy("m"));
  } else if (id == "detectable_format:constrained_response" || id == "detectable_format:json_format" ||
             id == "detectable_format:title" || id == "combination:two_responses" ||
             id == "change_case:english_capital" || id == "change_case:english_lowercase" ||
             id == "punctuation:no_comma" || id == "startend:quotation" ||
             id == "detectable_format:sentence_hyphens" || id == "keywords:no_adjacent_consecutive" ||
             id == "detectable_format:square_brackets" || id == "paragraphs:paragraphs" ||
             id == "paragraphs:paragraphs2" || id == "detectable_format:bigram_wrapping" ||
             id == "punctuation:punctuation_dot" || id == "punctuation:punctuation_exclamation" ||
             id == "count:count_unique" || id == "keywords:palindrome" || id == "keywords:start_end") {
    const args a(id, kwargs, {});
  } else {
    posttrain::detail::fail(detail::where, "unknown instruction id '", id,
                            "' (not in open-instruct's IFEvalG INSTRUCTION_DICT)");
  }
  // Keyword patterns are validated at build time so a bad one fails before any scoring.
  for (const auto& w : in.words) (void)pattern(w, true, detail::where);
  if (id == "keywords:frequency" || id == "keywords:word_count_different_numbers" ||
      id == "keywords:word_once")
    (void)pattern(in.word, true, detail::where);
  if (id == "count:count_increment_word") {
    (void)pattern(in.word, true, detail::where);
    (void)pattern(in.word2, true, detail::where);
  }
  return in;
}

// check_following(value) of a built instruction. `detect` is consulted only by the language
// instructions (see the header comment).
inline bool check_following(const instruction& in, std::string_view value,
                            const language_detector& detect = {}) {
  using namespace detail;
  const std::string_view id = in.id;
  const auto language = [&](std::string_view expected, std::string_view why) {
    expect(static_cast<bool>(detect), where, in.id, ": needs a language detector (", why,
           "); set ifeval_verifier::detect_language");
    const std::optional<std::string> got = detect(value);
    return !got.has_value() || *got == expected;  // LangDetectException counts as followed
  };
  if (id == "keywords:existence") {
    return std::all_of(in.words.begin(), in.words.end(),
                       [&](const std::string& w) { return pattern(w, true, where).search(value); });
  }
  if (id == "keywords:frequency" || id == "keywords:word_count_different_numbers")
    return compare(in.rel, static_cast<double>(pattern(in.word, true, where).count(value)), in.n);
  if (id == "keywords:forbidden_words") {
    return std::none_of(in.words.begin(), in.words.end(), [&](const std::string& w) {
      return pattern(w, true, where).search_word(value);
    });
  }
  if (id == "keywords:letter_frequency" || id == "letters:letter_counting2") {
    const auto c = std::count_if(value.begin(), value.end(), [&](char ch) { return fold(ch) == in.word[0]; });
    return compare(in.rel, static_cast<double>(c), in.n);
  }
  if (id == "language:response_language") return language(in.word, "langdetect");
  if (id == "length_constraints:number_sentences")
    return compare(in.rel, static_cast<double>(count_sentences(value)), in.n);
  if (id == "length_constraints:number_paragraphs") {
    const auto n = count_paragraphs(split_stars(value));
    return n.has_value() && static_cast<double>(*n) == in.n;
  }
  if (id == "length_constraints:number_words")
    return compare(in.rel, static_cast<double>(count_words(value)), in.n);
  if (id == "length_constraints:nth_paragraph_first_word") {
    const auto paragraphs = text::split(value, "\n\n");
    std::size_t n = paragraphs.size();
    for (const auto& p : paragraphs)
      if (text::strip(p).empty()) --n;
    if (in.n2 > static_cast<double>(n)) return false;
    const std::string_view paragraph = text::strip(paragraphs[static_cast<std::size_t>(in.n2) - 1]);
    if (paragraph.empty()) return false;
    std::string word = lstrip_char(lstrip_char(text::split_whitespace(paragraph).front(), '\''), '"');
    std::string first;
    for (char c : word) {
      if (one_of(c, ".,?!'\"")) break;
      first.push_back(fold(c));
    }
    return static_cast<double>(n) == in.n && first == in.word;
  }
  if (id == "detectable_content:number_placeholders")
    return static_cast<double>(count_placeholders(value)) >= in.n;
  if (id == "detectable_content:postscript") return has_postscript(value, in.word);
  if (id == "detectable_format:number_bullet_lists")
    return static_cast<double>(count_bullets(value)) == in.n;
  if (id == "detectable_format:constrained_response") {
    for (std::string_view o : {"My answer is yes.", "My answer is no.", "My answer is maybe."})
      if (text::contains(value, o)) return true;
    return false;
  }
  if (id == "detectable_format:number_highlighted_sections")
    return static_cast<double>(count_highlights(value)) >= in.n;
  if (id == "detectable_format:multiple_sections")
    return static_cast<double>(count_sections(value, pattern(in.word, false, where))) >= in.n;
  if (id == "detectable_format:json_format") {
    std::string_view v = text::strip(value);
    for (std::string_view prefix : {"```json", "```Json", "```JSON", "```"})
      if (v.starts_with(prefix)) v.remove_prefix(prefix.size());
    if (v.ends_with("```")) v.remove_suffix(3);
    return is_valid_json(text::strip(v));
  }
  if (id == "detectable_format:title") return has_title(value);
  if (id == "combination:two_responses") {
    const auto responses = text::split(value, "******");
    std::vector<std::string_view> valid;
    for (std::size_t k = 0; k < responses.size(); ++k) {
      if (text::strip(responses[k]).empty()) {
        if (k != 0 && k + 1 != responses.size()) return false;
      } else {
        valid.push_back(responses[k]);
      }
    }
    return valid.size() == 2 && text::strip(valid[0]) != text::strip(valid[1]);
  }
  if (id == "combination:repeat_prompt")
    return text::lower(text::strip(value)).starts_with(text::lower(text::strip(in.word)));
  if (id == "startend:end_checker") {
    const std::string v = text::lower(rstrip_char(lstrip_char(text::strip(value), '"'), '"'));
    return v.ends_with(text::lower(text::strip(in.word)));
  }
  if (id == "change_case:capital_word_frequency") {
    const auto words = word_tokenize(value);
    const auto c = std::count_if(words.begin(), words.end(), [](const std::string& w) { return is_upper(w); });
    return compare(in.rel, static_cast<double>(c), in.n);
  }
  if (id == "change_case:english_capital")
    return is_upper(value) && language("en", "langdetect on an all-capitals text");
  if (id == "change_case:english_lowercase")
    return is_lower(value) && language("en", "langdetect on an all-lower-case text");
  if (id == "punctuation:no_comma") return !text::contains(value, ",");
  if (id == "startend:quotation") {
    const std::string_view v = text::strip(value);
    return cp_count(v) > 1 && v.front() == '"' && v.back() == '"';
  }
  if (id == "copy:repeat_phrase") {
    const auto ref = text::split_whitespace(in.word);
    const auto found = find_phrases(value, pattern(ref.front(), false, where),
                                    pattern(ref.back(), false, where));
    if (static_cast<double>(found.size()) != in.n) return false;
    std::size_t satisfied = 0;
    for (const auto& f : found) {
      const auto phrase = text::split_whitespace(f);
      if (phrase.size() != ref.size()) return false;
      std::size_t differences = 0;
      for (std::size_t i = 0; i < phrase.size(); ++i)
        if (phrase[i] != ref[i] && ++differences > 1) return false;
      satisfied += differences == 1 ? 1 : 0;
    }
    return static_cast<double>(satisfied) == in.n;
  }
  if (id == "copy:copy" || id == "copy:copying_simple")
    return text::lower(text::strip(value)) == text::lower(text::strip(in.word));
  if (id == "new:copy_span_idx")
    return text::lower(text::strip(value)) == text::lower(text::strip(py_slice(in.word, in.n, in.n2)));
  if (id == "detectable_format:sentence_hyphens") {
    std::string spaced(value);
    std::replace(spaced.begin(), spaced.end(), '-', ' ');
    const auto gold = split_into_sentences(spaced);
    const auto parts = text::split(value, "-");
    for (std::size_t k = 0; k < std::min(gold.size(), parts.size()); ++k)
      if (text::strip(parts[k]) != parts[k] || parts[k] != gold[k]) return false;
    return true;
  }
  if (id == "keywords:no_adjacent_consecutive") {
    const auto words = text::split_whitespace(value);
    for (std::size_t i = 0; i + 1 < words.size(); ++i) {
      const auto a = static_cast<long long>(cp_at_lower(words[i]));
      const auto b = static_cast<long long>(cp_at_lower(words[i + 1]));
      if (b - a == 1) return false;
    }
    return true;
  }
  if (id == "detectable_format:square_brackets") {
    const auto words = text::split_whitespace(value);
    return std::all_of(words.begin(), words.end(), [](const std::string& w) {
      return w.starts_with('[') && w.ends_with(']');
    });
  }
  if (id == "keywords:word_once") return pattern(in.word, true, where).count(value) == 1;
  if (id == "keywords:exclude_word_harder") return !text::contains(value, " " + in.word + " ");
  if (id == "paragraphs:paragraphs") {
    const auto n = count_paragraphs(split_stars(value));
    return n.has_value() && *n == 2;
  }
  if (id == "paragraphs:paragraphs2") {
    const auto n = count_paragraphs(text::split(value, "\n\n"));
    return n.has_value() && *n == 2;
  }
  if (id == "first_word:first_word_sent" || id == "last_word:last_word_sent") {
    const bool first = id == "first_word:first_word_sent";
    for (const auto& sentence : split_into_sentences(value)) {
      if (text::strip(sentence).empty()) return false;
      const auto words = text::split_whitespace(sentence);
      std::string w = first ? words.front() : keep_word_and_space(words.back());
      if (text::lower(w) != text::lower(in.word)) return false;
    }
    return true;
  }
  if (id == "first_word:first_word_answer") {
    const auto words = text::split_whitespace(value);
    return !words.empty() && text::lower(words.front()) == text::lower(in.word);
  }
  if (id == "last_word:last_word_answer") {
    const auto words = text::split_whitespace(value);
    expect(!words.empty(), where, in.id, ": the response has no words (Python raises IndexError)");
    return text::lower(keep_word_and_space(words.back())) == text::lower(in.word);
  }
  if (id == "detectable_format:bigram_wrapping") {
    const auto words = text::split_whitespace(value);
    for (std::size_t i = 0; i + 1 < words.size(); i += 2)
      if (!(words[i].starts_with("<<") && words[i + 1].ends_with(">>"))) return false;
    return true;
  }
  if (id == "copy:copying_multiple") {
    const auto prompts = text::split(value, "******");
    if (static_cast<double>(prompts.size()) != in.n) return false;
    const std::string ref = text::lower(text::strip(in.word));
    return std::all_of(prompts.begin(), prompts.end(),
                       [&](const std::string& p) { return text::lower(text::strip(p)) == ref; });
  }
  if (id == "punctuation:punctuation_dot") return !text::contains(value, ".");
  if (id == "punctuation:punctuation_exclamation") return !text::contains(value, "!");
  if (id == "count:lowercase_counting") {
    // \b[a-z]+\b: maximal word runs made only of ASCII lower-case letters
    std::size_t n = 0;
    for (std::size_t i = 0; i < value.size();) {
      if (!word_at(value, i)) {
        i += ifeval::detail::cp_length(value, i);
        continue;
      }
      std::size_t j = i;
      bool lower_only = true;
      while (j < value.size() && word_at(value, j)) {
        lower_only = lower_only && ascii_lower(value[j]);
        j += ifeval::detail::cp_length(value, j);
      }
      n += lower_only ? 1 : 0;
      i = j;
    }
    return static_cast<double>(n) <= in.n;
  }
  if (id == "letters:letter_counting") {
    const auto c = std::count_if(value.begin(), value.end(), [](char ch) { return ascii_lower(ch) || ascii_upper(ch); });
    if (in.rel == relation::other) return false;  // Python returns None
    return compare(in.rel, static_cast<double>(c), in.n);
  }
  if (id == "count:counting_composition") {
    const auto paragraphs = split_stars(value);
    std::size_t n = paragraphs.size();
    for (std::size_t k = 0; k < paragraphs.size(); ++k) {
      if (text::strip(paragraphs[k]).empty()) {
        if (k == 0 || k + 1 == paragraphs.size())
          --n;
        else
          return false;
      }
      const auto sentences = split_into_sentences(paragraphs[k]);
      if (static_cast<double>(sentences.size()) != in.n) return false;
      for (const auto& s : sentences)
        if (static_cast<double>(word_tokenize(s).size()) != in.n2) return false;
    }
    return n == 3;
  }
  if (id == "count:count_unique") {
    const auto words = word_tokenize(value);
    return std::set<std::string>(words.begin(), words.end()).size() == words.size();
  }
  if (id == "count:count_increment_word")
    return pattern(in.word, true, where).count(value) == 1 && pattern(in.word2, true, where).count(value) == 2;
  if (id == "keywords:palindrome") {
    for (const auto& w : text::split_whitespace(value)) {
      const std::u32string c = code_points(w);
      if (std::equal(c.begin(), c.end(), c.rbegin())) return true;
    }
    return false;
  }
  if (id == "keywords:keyword_specific_position") {
    const auto sentences = split_into_sentences(value);
    if (static_cast<double>(sentences.size()) < in.n) return false;
    const auto s = py_index(in.n - 1, sentences.size());
    expect(s.has_value(), where, in.id, ": sentence index out of range (Python raises IndexError)");
    const auto words = word_tokenize(sentences[*s]);
    if (static_cast<double>(words.size()) < in.n2) return false;
    const auto w = py_index(in.n2 - 1, words.size());
    expect(w.has_value(), where, in.id, ": word index out of range (Python raises IndexError)");
    return words[*w] == in.word;
  }
  if (id == "keywords:start_end") {
    const auto words = word_tokenize(value);
    return words.size() >= 2 && text::lower(words.front()) == text::lower(words.back());
  }
  posttrain::detail::fail(where, "unknown instruction id '", in.id, "'");
}

// The (instruction id, kwargs) pairs of a label, zip-truncated as open-instruct's loop.
inline std::vector<std::pair<std::string, literal>> parse_label(std::string_view label) {
  const literal outer = parse_python_literal(label);
  expect(outer.type == literal::kind::list && !outer.items.empty(), detail::where,
         "label must be a non-empty list (ast.literal_eval(label)[0])");
  literal first = outer.items[0];
  if (first.is_string()) first = parse_json(first.s);
  expect(first.type == literal::kind::dict, detail::where, "label[0] must be a dict");
  const literal* ids = first.find("instruction_id");
  const literal* kwargs = first.find("kwargs");
  expect(ids != nullptr && kwargs != nullptr, detail::where,
         "label[0] needs the keys 'instruction_id' and 'kwargs'");
  expect(ids->type == literal::kind::list && kwargs->type == literal::kind::list, detail::where,
         "'instruction_id' and 'kwargs' must be lists");
  std::vector<std::pair<std::string, literal>> out;
  for (std::size_t k = 0; k < std::min(ids->items.size(), kwargs->items.size()); ++k) {
    expect(ids->items[k].is_string(), detail::where, "instruction ids must be strings");
    out.emplace_back(ids->items[k].s, kwargs->items[k]);
  }
  return out;
}

}  // namespace reward::ifeval

namespace reward {

struct ifeval_verifier {
  static std::string name() { return "ifeval"; }
  double weight = 1.0;
  ifeval::language_detector detect_language;  // for the three langdetect instructions

  double score(std::string_view prediction, std::string_view label) const {
    const auto pairs = ifeval::parse_label(label);
    const std::string answer = remove_thinking_section(prediction);
    if (prediction.empty() || answer.empty()) return 0.0;
    double followed = 0.0;
    for (const auto& [id, kwargs] : pairs)
      followed += ifeval::check_following(ifeval::build_instruction(id, kwargs), answer, detect_language)
                      ? 1.0
                      : 0.0;
    return followed / static_cast<double>(std::max<std::size_t>(pairs.size(), 1));
  }

  // Instructions built once (build_instruction) and checked against many responses.
  double score(std::string_view prediction, const std::vector<ifeval::instruction>& instructions) const {
    const std::string answer = remove_thinking_section(prediction);
    if (prediction.empty() || answer.empty()) return 0.0;
    double followed = 0.0;
    for (const auto& in : instructions)
      followed += ifeval::check_following(in, answer, detect_language) ? 1.0 : 0.0;
    return followed / static_cast<double>(std::max<std::size_t>(instructions.size(), 1));
  }
};

}  // namespace reward

POSTTRAIN_NAMESPACE_END
