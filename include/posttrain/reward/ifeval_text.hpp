#pragma once
// Text primitives of open-instruct's IFEval checkers (open_instruct/IFEvalG/instructions_util.py)
// and the two nltk tokenisers they call, host-only, on UTF-8 byte strings:
//
//   count_words(s)            len(nltk RegexpTokenizer(r"\w+").tokenize(s)): maximal \w runs
//   split_into_sentences(s)   instructions_util.split_into_sentences: the regex splitter
//                             (Mr./Dr./websites/digits/acronyms/Inc. protected, <stop> split)
//   punkt_sentences(s)        nltk punkt english (PunktTokenizer("english").tokenize), see below
//   count_sentences(s)        punkt_sentences(s).size()
//   word_tokenize(s)          nltk.word_tokenize: punkt sentences, then NLTKWordTokenizer
//                             (nltk 3.9.2 regex pipeline: quotes, punctuation, brackets,
//                             dashes, clitics 's n't 'll, MacIntyre contractions cannot/gonna)
//   pattern                   a keyword open-instruct hands to `re` as a regular expression
//
// Punkt: the algorithm of nltk 3.9.2 punkt.py is reproduced (period-context matching, the punkt
// word tokeniser, first pass with the english abbreviation list, second pass with the english
// collocations and frequent sentence starters, boundary realignment of closing quotes and
// brackets), with the english model's abbreviation (156), sentence-starter (39) and collocation
// (37) tables transcribed. The model's orthographic statistics (20 366 word types) are NOT
// embedded: every word is treated as never seen, so the orthographic heuristic answers False
// for a lower-case next word and "unknown" otherwise. Consequences (the only differences from
// nltk on text it tokenises): after an abbreviation or an ellipsis, a capitalised next word
// breaks the sentence only when it is a frequent sentence starter ("He", "The", "However", ...),
// where nltk also breaks when the corpus saw that word lower-case and never capitalised
// mid-sentence ("etc. Then"); after an initial ("A."), a capitalised next word never breaks.
//
// Characters: ASCII whitespace (Python str.isspace over ASCII, as text.hpp); \w and \b classify
// whole UTF-8 code points as Python 3's `re` does: '_' and str.isalnum() (Unicode letters and
// numbers; not combining marks), from unicode_word.hpp, generated with Python 3.11. Case (upper / lower / case-insensitive matching) is ASCII only.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/reward/text.hpp"
#include "posttrain/reward/unicode_word.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace reward::ifeval {

// ---------------------------------------------------------------- code points

namespace detail {

// Bytes of the UTF-8 sequence starting at s[i] (1 for ASCII and for a stray continuation byte).
inline std::size_t cp_length(std::string_view s, std::size_t i) {
  const auto u = static_cast<unsigned char>(s[i]);
  std::size_t n = 1;
  if (u >= 0xf0) n = 4;
  else if (u >= 0xe0) n = 3;
  else if (u >= 0xc0) n = 2;
  return std::min(n, s.size() - i);
}

inline char32_t cp_at(std::string_view s, std::size_t i) {
  const std::size_t n = cp_length(s, i);
  const auto b = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[i + k])); };
  if (n == 1) return b(0);
  if (n == 2) return ((b(0) & 0x1f) << 6) | (b(1) & 0x3f);
  if (n == 3) return ((b(0) & 0x0f) << 12) | ((b(1) & 0x3f) << 6) | (b(2) & 0x3f);
  return ((b(0) & 0x07) << 18) | ((b(1) & 0x3f) << 12) | ((b(2) & 0x3f) << 6) | (b(3) & 0x3f);
}

// Start of the code point that ends just before byte i (i > 0).
inline std::size_t cp_start_before(std::string_view s, std::size_t i) {
  std::size_t j = i - 1;
  while (j > 0 && (static_cast<unsigned char>(s[j]) & 0xc0) == 0x80) --j;
  return j;
}

// Python 3 `re` \w on str: '_' and str.isalnum(), i.e. the Unicode letters (L*) and the code
// points with a numeric value, from the table generated with Python 3.11 (Unicode 14.0). So
// combining marks (Devanagari vowel signs, U+0301 in a decomposed "café") end a word and
// circled digits are word characters, as in open-instruct.
inline bool is_word_cp(char32_t c) {
  if (c < 0x80) return text::is_word(static_cast<char>(c));
  return unicode::is_alnum_non_ascii(c);
}

}  // namespace detail

// regex \w at byte i (the code point starting there).
inline bool word_at(std::string_view s, std::size_t i) {
  return i < s.size() && detail::is_word_cp(detail::cp_at(s, i));
}
// regex \w for the code point ending just before byte i.
inline bool word_before(std::string_view s, std::size_t i) {
  return i > 0 && detail::is_word_cp(detail::cp_at(s, detail::cp_start_before(s, i)));
}
// regex \b at byte i.
inline bool word_boundary(std::string_view s, std::size_t i) {
  return word_before(s, i) != word_at(s, i);
}

inline bool ascii_upper(char c) { return c >= 'A' && c <= 'Z'; }
inline bool ascii_lower(char c) { return c >= 'a' && c <= 'z'; }
inline char fold(char c) { return ascii_upper(c) ? static_cast<char>(c - 'A' + 'a') : c; }

// Python str.isupper() / str.islower(): at least one cased (ASCII) letter, none of the other case.
inline bool is_upper(std::string_view s) {
  bool cased = false;
  for (char c : s) {
    if (ascii_lower(c)) return false;
    cased = cased || ascii_upper(c);
  }
  return cased;
}
inline bool is_lower(std::string_view s) {
  bool cased = false;
  for (char c : s) {
    if (ascii_upper(c)) return false;
    cased = cased || ascii_lower(c);
  }
  return cased;
}

// Number of code points (Python len()).
inline std::size_t cp_count(std::string_view s) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size(); i += detail::cp_length(s, i)) ++n;
  return n;
}

// RegexpTokenizer(r"\w+").tokenize(s): the number of maximal runs of word code points.
inline std::size_t count_words(std::string_view s) {
  std::size_t n = 0;
  bool in_word = false;
  for (std::size_t i = 0; i < s.size(); i += detail::cp_length(s, i)) {
    const bool w = word_at(s, i);
    if (w && !in_word) ++n;
    in_word = w;
  }
  return n;
}

// ---------------------------------------------------------------- re.sub machinery

namespace detail {

// One left-to-right pass of re.sub: `m(s, i, replacement)` returns the length of a match starting
// at byte i (0: none) and sets its replacement; unmatched bytes are copied. Lookarounds read s.
template <class Matcher>
std::string sub(std::string_view s, Matcher&& m) {
  std::string out;
  out.reserve(s.size() + 16);
  std::string repl;
  std::size_t i = 0;
  while (i < s.size()) {
    repl.clear();
    const std::size_t len = m(s, i, repl);
    if (len > 0) {
      out += repl;
      i += len;
    } else {
      out.push_back(s[i]);
      ++i;
    }
  }
  return out;
}

inline bool starts_with_at(std::string_view s, std::size_t i, std::string_view w) {
  return s.size() >= i && s.substr(i).starts_with(w);
}
inline bool istarts_with_at(std::string_view s, std::size_t i, std::string_view w) {
  if (s.size() < i + w.size()) return false;
  for (std::size_t k = 0; k < w.size(); ++k)
    if (fold(s[i + k]) != fold(w[k])) return false;
  return true;
}
inline bool one_of(char c, std::string_view set) { return set.find(c) != std::string_view::npos; }

// Python regex `$` without MULTILINE: the end, or just before a final '\n'.
inline bool at_end(std::string_view s, std::size_t i) {
  return i == s.size() || (i + 1 == s.size() && s[i] == '\n');
}

}  // namespace detail

// ---------------------------------------------------------------- split_into_sentences

namespace detail {

inline bool alpha(char c) { return ascii_upper(c) || ascii_lower(c); }

// Length of a match of _STARTERS at s[i] (0: none).
inline std::size_t starter_length(std::string_view s, std::size_t i) {
  static constexpr std::array<std::string_view, 20> plain = {
      "Mr", "Mrs", "Ms", "Dr", "Prof", "Capt", "Cpt", "Lt", "He", "She", "It", "They", "Their",
      "Our", "We", "But", "However", "That", "This", "Wherever"};
  // Alternation order; "He\s" style entries need one whitespace after the word.
  for (std::size_t k = 0; k < plain.size(); ++k) {
    const std::string_view w = plain[k];
    if (!starts_with_at(s, i, w)) continue;
    const bool needs_space = k >= 8 && k <= 18;
    if (!needs_space) return w.size();
    if (i + w.size() < s.size() && text::is_space(s[i + w.size()])) return w.size() + 1;
  }
  return 0;
}

}  // namespace detail

// instructions_util.split_into_sentences (a pure regex splitter; not nltk).
inline std::vector<std::string> split_into_sentences(std::string_view input) {
  using namespace detail;
  std::string t = " " + std::string(input) + "  ";
  std::replace(t.begin(), t.end(), '\n', ' ');
  // (Mr|St|Mrs|Ms|Dr)[.] -> \1<prd>
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    for (std::string_view w : {"Mr", "St", "Mrs", "Ms", "Dr"})
      if (starts_with_at(s, i, w) && i + w.size() < s.size() && s[i + w.size()] == '.') {
        r = std::string(w) + "<prd>";
        return w.size() + 1;
      }
    return 0;
  });
  // [.](com|net|org|io|gov|edu|me) -> <prd>\1
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    if (s[i] != '.') return 0;
    for (std::string_view w : {"com", "net", "org", "io", "gov", "edu", "me"})
      if (starts_with_at(s, i + 1, w)) {
        r = "<prd>" + std::string(w);
        return w.size() + 1;
      }
    return 0;
  });
  // ([0-9])[.]([0-9]) -> \1<prd>\2
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    if (i + 2 < s.size() && text::is_digit(s[i]) && s[i + 1] == '.' && text::is_digit(s[i + 2])) {
      r = std::string(1, s[i]) + "<prd>" + s[i + 2];
      return 3;
    }
    return 0;
  });
  // \.{2,} -> "<prd>" * len + "<stop>"
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    std::size_t j = i;
    while (j < s.size() && s[j] == '.') ++j;
    if (j - i < 2) return 0;
    for (std::size_t k = i; k < j; ++k) r += "<prd>";
    r += "<stop>";
    return j - i;
  });
  if (text::contains(t, "Ph.D")) t = text::replace_all(t, "Ph.D.", "Ph<prd>D<prd>");
  // \s([A-Za-z])[.]  -> " \1<prd> "
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    if (i + 3 < s.size() && text::is_space(s[i]) && alpha(s[i + 1]) && s[i + 2] == '.' &&
        s[i + 3] == ' ') {
      r = std::string(" ") + s[i + 1] + "<prd> ";
      return 4;
    }
    return 0;
  });
  // ([A-Z][.][A-Z][.](?:[A-Z][.])?) _STARTERS -> \1<stop> \2
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    const auto pair_at = [&](std::size_t k) {
      return k + 1 < s.size() && ascii_upper(s[k]) && s[k + 1] == '.';
    };
    if (!pair_at(i) || !pair_at(i + 2)) return 0;
    for (std::size_t acr : {std::size_t{6}, std::size_t{4}}) {  // greedy optional third pair
      if (acr == 6 && !pair_at(i + 4)) continue;
      const std::size_t sp = i + acr;
      if (sp < s.size() && s[sp] == ' ') {
        const std::size_t st = starter_length(s, sp + 1);
        if (st > 0) {
          r = std::string(s.substr(i, acr)) + "<stop> " + std::string(s.substr(sp + 1, st));
          return acr + 1 + st;
        }
      }
    }
    return 0;
  });
  // ([A-Za-z])[.]([A-Za-z])[.]([A-Za-z])[.] and ([A-Za-z])[.]([A-Za-z])[.]
  for (std::size_t letters : {std::size_t{3}, std::size_t{2}}) {
    t = sub(t, [letters](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
      for (std::size_t k = 0; k < letters; ++k)
        if (!(i + 2 * k + 1 < s.size() && alpha(s[i + 2 * k]) && s[i + 2 * k + 1] == '.')) return 0;
      for (std::size_t k = 0; k < letters; ++k) r += std::string(1, s[i + 2 * k]) + "<prd>";
      return 2 * letters;
    });
  }
  // " (Inc|Ltd|Jr|Sr|Co)[.] " _STARTERS -> " \1<stop> \2", then " (Inc|...)[.]" -> " \1<prd>"
  const auto suffix_at = [](std::string_view s, std::size_t i) -> std::size_t {
    if (s[i] != ' ') return 0;
    for (std::string_view w : {"Inc", "Ltd", "Jr", "Sr", "Co"})
      if (starts_with_at(s, i + 1, w) && i + 1 + w.size() < s.size() && s[i + 1 + w.size()] == '.')
        return w.size();
    return 0;
  };
  t = sub(t, [&](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    const std::size_t w = suffix_at(s, i);
    if (w == 0) return 0;
    const std::size_t sp = i + 2 + w;
    if (!(sp < s.size() && s[sp] == ' ')) return 0;
    const std::size_t st = starter_length(s, sp + 1);
    if (st == 0) return 0;
    r = " " + std::string(s.substr(i + 1, w)) + "<stop> " + std::string(s.substr(sp + 1, st));
    return w + 3 + st;
  });
  t = sub(t, [&](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    const std::size_t w = suffix_at(s, i);
    if (w == 0) return 0;
    r = " " + std::string(s.substr(i + 1, w)) + "<prd>";
    return w + 2;
  });
  // " ([A-Za-z])[.]" -> " \1<prd>"
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    if (i + 2 < s.size() && s[i] == ' ' && alpha(s[i + 1]) && s[i + 2] == '.') {
      r = std::string(" ") + s[i + 1] + "<prd>";
      return 3;
    }
    return 0;
  });
  if (text::contains(t, "\xe2\x80\x9d")) t = text::replace_all(t, ".\xe2\x80\x9d", "\xe2\x80\x9d.");
  if (text::contains(t, "\"")) t = text::replace_all(t, ".\"", "\".");
  if (text::contains(t, "!")) t = text::replace_all(t, "!\"", "\"!");
  if (text::contains(t, "?")) t = text::replace_all(t, "?\"", "\"?");
  t = text::replace_all(t, ".", ".<stop>");
  t = text::replace_all(t, "?", "?<stop>");
  t = text::replace_all(t, "!", "!<stop>");
  t = text::replace_all(t, "<prd>", ".");
  std::vector<std::string> sentences;
  for (const auto& part : text::split(t, "<stop>")) sentences.emplace_back(text::strip(part));
  if (!sentences.empty() && sentences.back().empty()) sentences.pop_back();
  return sentences;
}

// ---------------------------------------------------------------- punkt (english)

namespace punkt {

inline constexpr std::array<std::string_view, 156> abbrev_types = {
    ". . ", "a.a", "a.c", "a.d", "a.g", "a.h", "a.m", "a.m.e", "a.s", "a.t", "adm", "ala", "ariz",
    "aug", "ave", "b.f", "b.v", "bros", "c", "c.i.t", "c.o.m.b", "c.v", "calif", "chg", "cie", "co",
    "col", "colo", "conn", "corp", "cos", "ct", "d", "d.c", "d.h", "d.w", "dec", "dr", "e", "e.f",
    "e.h", "e.l", "e.m", "f", "f.g", "f.j", "feb", "fla", "fri", "ft", "g", "g.d", "g.f", "g.k",
    "ga", "gen", "h", "h.c", "h.f", "h.m", "i.m.s", "ill", "inc", "j.b", "j.c", "j.j", "j.k", "j.p",
    "j.r", "jan", "jr", "k", "kan", "ky", "l", "l.a", "l.f", "l.p", "lt", "ltd", "m", "m.b.a",
    "m.d.c", "m.j", "maj", "messrs", "mg", "mich", "minn", "mr", "mrs", "ms", "n", "n.c", "n.d",
    "n.h", "n.j", "n.m", "n.v", "n.y", "nev", "nov", "oct", "ok", "okla", "ore", "p", "p.a.m",
    "p.m", "pa", "ph.d", "prof", "r", "r.a", "r.h", "r.i", "r.j", "r.k", "r.t", "rep", "reps", "s",
    "s.a", "s.a.y", "s.c", "s.g", "s.p.a", "s.s", "sen", "sep", "sept", "sr", "st", "sw", "t",
    "t.j", "tenn", "tues", "u.k", "u.n", "u.s", "u.s.a", "u.s.s.r", "v", "va", "vs", "vt", "w",
    "w.c", "w.r", "w.va", "w.w", "wash", "wed", "wis", "yr"};

inline constexpr std::array<std::string_view, 39> sent_starters = {
    "according", "although", "among", "both", "but", "despite", "even", "he", "however", "i", "if",
    "in", "indeed", "instead", "it", "many", "meanwhile", "moreover", "most", "nevertheless",
    "nonetheless", "nor", "sales", "separately", "similarly", "since", "so", "some", "the", "there",
    "these", "they", "this", "though", "thus", "under", "when", "while", "yet"};

inline constexpr std::array<std::pair<std::string_view, std::string_view>, 37> collocations = {{
    {"##number##", "abreast"}, {"##number##", "aes"}, {"##number##", "business"},
    {"##number##", "cbot"}, {"##number##", "colgate"}, {"##number##", "commodities"},
    {"##number##", "cooper"}, {"##number##", "corrections"}, {"##number##", "credit"},
    {"##number##", "dividend"}, {"##number##", "financing"}, {"##number##", "genentech"},
    {"##number##", "henley"}, {"##number##", "insider"}, {"##number##", "international"},
    {"##number##", "leisure"}, {"##number##", "letters"}, {"##number##", "notable"},
    {"##number##", "pay-fone"}, {"##number##", "pegasus"}, {"##number##", "pepper"},
    {"##number##", "review"}, {"##number##", "rj"}, {"##number##", "wedgestone"},
    {"##number##", "who"}, {"##number##", "zimmer"}, {"b", "edelman"}, {"b", "levine"},
    {"b", "smith"}, {"b", "stewart"}, {"b", "wigton"}, {"i", "magnin"}, {"i", "toussie"},
    {"j", "aron"}, {"j", "fialka"}, {"j", "walter"}, {"o", "ludcke"}}};

template <std::size_t N>
bool in(const std::array<std::string_view, N>& table, std::string_view w) {
  return std::binary_search(table.begin(), table.end(), w);
}

// string.whitespace (ASCII, without \x1c-\x1f): _get_last_whitespace_index.
inline bool string_whitespace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// PunktLanguageVars._re_non_word_chars: ) " ; } ] * : @ ' ( { [ ? !
inline bool non_word(char c) { return c != 0 && detail::one_of(c, ")\";}]*:@'({[?!"); }
// _re_word_start excludes ( " ` { [ : ; & # * @ ) } ] - ,
inline bool word_start(char c) { return !detail::one_of(c, "(\"`{[:;&#*@)}]-,"); }

// _re_multi_char_punct (?:\-{2,}|\.{2,}|(?:\.\s){2,}\.) at s[i]: its length, 0 if none.
inline std::size_t multi_char(std::string_view s, std::size_t i) {
  for (char c : {'-', '.'}) {
    std::size_t j = i;
    while (j < s.size() && s[j] == c) ++j;
    if (j - i >= 2) return j - i;
  }
  std::size_t r = 0;
  while (i + 2 * r + 1 < s.size() && s[i + 2 * r] == '.' && text::is_space(s[i + 2 * r + 1])) ++r;
  for (; r >= 2; --r)
    if (i + 2 * r < s.size() && s[i + 2 * r] == '.') return 2 * r + 1;
  return 0;
}

// PunktLanguageVars.word_tokenize (findall of _word_tokenize_fmt).
inline std::vector<std::string> word_tokens(std::string_view s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    if (text::is_space(s[i])) {
      ++i;
      continue;
    }
    std::size_t len = multi_char(s, i);
    if (len == 0 && word_start(s[i])) {
      std::size_t j = i + detail::cp_length(s, i);
      for (;;) {
        if (j >= s.size() || text::is_space(s[j]) || non_word(s[j]) || multi_char(s, j) > 0) break;
        if (s[j] == ',' && (j + 1 >= s.size() || text::is_space(s[j + 1]) || non_word(s[j + 1]) ||
                            multi_char(s, j + 1) > 0))
          break;
        j += detail::cp_length(s, j);
      }
      len = j - i;
    }
    if (len == 0) len = detail::cp_length(s, i);
    out.emplace_back(s.substr(i, len));
    i += len;
  }
  return out;
}

struct token {
  std::string tok, type;
  bool period_final = false, sentbreak = false, abbr = false, ellipsis = false;

  explicit token(std::string t) : tok(std::move(t)) {
    type = text::lower(tok);
    if (numeric(type)) type = "##number##";
    period_final = !tok.empty() && tok.back() == '.';
  }
  // _RE_NUMERIC ^-?[\.,]?\d[\d,\.-]*\.?$
  static bool numeric(std::string_view s) {
    std::size_t i = 0;
    if (i < s.size() && s[i] == '-') ++i;
    if (i < s.size() && (s[i] == '.' || s[i] == ',')) ++i;
    if (!(i < s.size() && text::is_digit(s[i]))) return false;
    for (++i; i < s.size(); ++i)
      if (!(text::is_digit(s[i]) || s[i] == ',' || s[i] == '.' || s[i] == '-')) return false;
    return true;
  }
  std::string type_no_period() const {
    return type.size() > 1 && type.back() == '.' ? type.substr(0, type.size() - 1) : type;
  }
  std::string type_no_sentperiod() const { return sentbreak ? type_no_period() : type; }
  bool first_upper() const { return ascii_upper(tok[0]); }
  bool first_lower() const { return ascii_lower(tok[0]); }
  bool is_ellipsis() const {
    return tok.size() >= 2 && std::all_of(tok.begin(), tok.end(), [](char c) { return c == '.'; });
  }
  // _RE_INITIAL [^\W\d]\.$ (re.match): one letter or '_' then a period.
  bool is_initial() const {
    if (tok.empty() || text::is_digit(tok[0]) || !word_at(tok, 0)) return false;
    const std::size_t n = detail::cp_length(tok, 0);
    return tok.size() == n + 1 && tok[n] == '.';
  }
};

// _tokenize_words: the punkt word tokens of every non-blank line.
inline std::vector<token> tokenize_words(std::string_view s) {
  std::vector<token> out;
  for (const auto& line : text::split(s, "\n")) {
    if (text::strip(line).empty()) continue;
    for (auto& w : word_tokens(line)) out.emplace_back(std::move(w));
  }
  return out;
}

inline void first_pass(token& t) {
  const std::string& tok = t.tok;
  if (tok == "." || tok == "?" || tok == "!") {
    t.sentbreak = true;
  } else if (t.is_ellipsis()) {
    t.ellipsis = true;
  } else if (t.period_final && !tok.ends_with("..")) {
    const std::string base = text::lower(std::string_view(tok).substr(0, tok.size() - 1));
    if (in(abbrev_types, base) || in(abbrev_types, text::after_last(base, "-")))
      t.abbr = true;
    else
      t.sentbreak = true;
  }
}

enum class ortho { no, unknown };  // the orthographic heuristic, with no orthographic statistics

inline ortho ortho_heuristic(const token& t) {
  if (t.tok.size() == 1 && detail::one_of(t.tok[0], ";:,.!?")) return ortho::no;
  if (t.first_lower()) return ortho::no;  // lower case and never seen at a sentence start
  return ortho::unknown;
}

inline void second_pass(token& t1, const token& t2) {
  if (!t1.period_final) return;
  const std::string typ = t1.type_no_period();
  const std::string next_typ = t2.type_no_sentperiod();
  const bool initial = t1.is_initial();
  for (const auto& [a, b] : collocations)
    if (a == typ && b == next_typ) {
      t1.sentbreak = false;
      t1.abbr = true;
      return;
    }
  if ((t1.abbr || t1.ellipsis) && !initial) {
    if (t2.first_upper() && in(sent_starters, next_typ)) {
      t1.sentbreak = true;
      return;
    }
  }
  if (initial || typ == "##number##") {
    const ortho h = ortho_heuristic(t2);
    if (h == ortho::no || (initial && t2.first_upper())) {
      t1.sentbreak = false;
      t1.abbr = true;
    }
  }
}

inline bool contains_sentbreak(std::string_view context) {
  std::vector<token> toks = tokenize_words(context);
  for (auto& t : toks) first_pass(t);
  for (std::size_t i = 0; i + 1 < toks.size(); ++i) {
    second_pass(toks[i], toks[i + 1]);
    if (toks[i].sentbreak) return true;  // a token follows it
  }
  return false;
}

struct end_match {
  std::size_t pos;        // the sentence-end character
  std::size_t after_end;  // end of after_tok
  std::size_t next_tok;   // start of next_tok, npos when after_tok is punctuation
};

// finditer of period_context_re: [.?!](?=(?P<after_tok>NonWord|\s+(?P<next_tok>\S+)))
inline std::vector<end_match> end_contexts(std::string_view s) {
  std::vector<end_match> out;
  for (std::size_t p = 0; p < s.size(); ++p) {
    if (!detail::one_of(s[p], ".?!")) continue;
    if (p + 1 < s.size() && non_word(s[p + 1])) {
      out.push_back({p, p + 2, std::string_view::npos});
      continue;
    }
    std::size_t j = p + 1;
    while (j < s.size() && text::is_space(s[j])) ++j;
    if (j == p + 1 || j == s.size()) continue;
    std::size_t k = j;
    while (k < s.size() && !text::is_space(s[k])) ++k;
    out.push_back({p, k, j});
  }
  return out;
}

// PunktSentenceTokenizer.span_tokenize (realign_boundaries=True): [start, stop) of each sentence.
inline std::vector<std::pair<std::size_t, std::size_t>> sentence_spans(std::string_view s) {
  using slice = std::pair<std::size_t, std::size_t>;
  // _match_potential_end_contexts + _slices_from_text
  std::vector<slice> slices;
  std::size_t last_break = 0;
  const auto decide = [&](const end_match& m, slice word) {
    std::string context(s.substr(word.first, word.second - std::min(word.first, word.second)));
    context += s.substr(m.pos, m.after_end - m.pos);
    if (contains_sentbreak(context)) {
      slices.emplace_back(last_break, m.pos + 1);
      last_break = m.next_tok != std::string_view::npos ? m.next_tok : m.pos + 1;
    }
  };
  slice previous_slice{0, 0};
  const end_match* previous = nullptr;
  const std::vector<end_match> matches = end_contexts(s);
  for (const auto& m : matches) {
    const std::size_t from = std::min(previous_slice.second, m.pos);
    std::size_t idx = 0;
    for (std::size_t i = m.pos; i > from; --i)
      if (string_whitespace(s[i - 1])) {
        idx = i - 1 - from;
        break;
      }
    const std::size_t start = idx != 0 ? idx + previous_slice.second + 1 : previous_slice.first;
    const slice prev_word{start, m.pos};
    if (previous != nullptr && previous_slice.second <= prev_word.first) decide(*previous, previous_slice);
    previous = &m;
    previous_slice = prev_word;
  }
  if (previous != nullptr) decide(*previous, previous_slice);
  std::size_t end = s.size();
  while (end > 0 && text::is_space(s[end - 1])) --end;
  slices.emplace_back(last_break, end);
  // _realign_boundaries: closing quotes / brackets after a break join the previous sentence.
  const auto text_of = [&](slice sl) {
    return sl.first < sl.second ? s.substr(sl.first, sl.second - sl.first) : std::string_view{};
  };
  std::vector<slice> out;
  std::size_t realign = 0;
  for (std::size_t k = 0; k < slices.size(); ++k) {
    const slice s1{slices[k].first + realign, slices[k].second};
    if (k + 1 == slices.size()) {
      if (!text_of(s1).empty()) out.push_back(s1);
      continue;
    }
    // re_boundary_realignment ["')\]}]+?(?:\s+|(?=--)|$) (MULTILINE), matched at sentence2's start
    const std::string_view t2 = text_of(slices[k + 1]);
    std::size_t closers = 0, m_end = 0;
    for (std::size_t c = 1; c <= t2.size() && detail::one_of(t2[c - 1], "\"')]}"); ++c) {
      std::size_t w = c;
      while (w < t2.size() && text::is_space(t2[w])) ++w;
      if (w > c) {
        closers = c, m_end = w;
        break;
      }
      if (detail::starts_with_at(t2, c, "--") || c == t2.size() || t2[c] == '\n') {
        closers = c, m_end = c;
        break;
      }
    }
    if (closers > 0) {
      out.emplace_back(s1.first, slices[k + 1].first + closers);
      realign = m_end;
    } else {
      realign = 0;
      if (!text_of(s1).empty()) out.push_back(s1);
    }
  }
  return out;
}

}  // namespace punkt

inline std::vector<std::string> punkt_sentences(std::string_view s) {
  std::vector<std::string> out;
  for (const auto& [a, b] : punkt::sentence_spans(s))
    out.emplace_back(a < b ? s.substr(a, b - a) : std::string_view{});
  return out;
}

inline std::size_t count_sentences(std::string_view s) { return punkt::sentence_spans(s).size(); }

// ---------------------------------------------------------------- NLTKWordTokenizer

namespace treebank {

using detail::at_end;
using detail::istarts_with_at;
using detail::one_of;
using detail::starts_with_at;
using detail::sub;

// Length of one of the UTF-8 quotes in `quotes` at s[i] (0: none).
inline std::size_t quote_at(std::string_view s, std::size_t i,
                            std::initializer_list<std::string_view> quotes) {
  for (std::string_view q : quotes)
    if (starts_with_at(s, i, q)) return q.size();
  return 0;
}

inline constexpr std::string_view laquo = "\xc2\xab", raquo = "\xc2\xbb", ldquo = "\xe2\x80\x9c",
                                  rdquo = "\xe2\x80\x9d", lsquo = "\xe2\x80\x98",
                                  rsquo = "\xe2\x80\x99", bdquo = "\xe2\x80\x9e";

// ([^\.])(\.)(closers*)\s*$ at s[i]: the length of the closers run, or npos when no match.
inline std::size_t final_period(std::string_view s, std::size_t i, bool wide) {
  if (!(i + 1 < s.size() && s[i] != '.' && s[i + 1] == '.')) return std::string_view::npos;
  std::size_t j = i + 2;
  for (;;) {
    if (j < s.size() && one_of(s[j], wide ? "])}>\"' " : "])}>\"'")) {
      ++j;
      continue;
    }
    const std::size_t q = wide ? quote_at(s, j, {raquo, rdquo, rsquo}) : 0;
    if (q == 0) break;
    j += q;
  }
  for (std::size_t k = j; k < s.size(); ++k)
    if (!text::is_space(s[k])) return std::string_view::npos;
  return j - (i + 2);
}

inline std::string pad(std::string_view x) {
  std::string out;  // appended piecewise: " " + std::string(x) + " " trips GCC 12's -Wrestrict
  out.reserve(x.size() + 2);
  out.push_back(' ');
  out.append(x);
  out.push_back(' ');
  return out;
}

inline std::vector<std::string> tokenize(std::string_view input) {
  std::string t(input);
  // STARTING_QUOTES
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    std::size_t n = quote_at(s, i, {laquo, ldquo, lsquo, bdquo});
    if (n == 0)
      while (i + n < s.size() && s[i + n] == '`') ++n;
    if (n > 0) r = pad(s.substr(i, n));
    return n;
  });
  if (!t.empty() && t[0] == '"') t = "``" + t.substr(1);
  t = text::replace_all(t, "``", " `` ");
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    if (!one_of(s[i], " ([{<") || i + 1 >= s.size()) return 0;
    if (s[i + 1] == '"') return r = std::string(1, s[i]) + " `` ", 2;
    if (starts_with_at(s, i + 1, "''")) return r = std::string(1, s[i]) + " `` ", 3;
    return 0;
  });
  // (?i)(\')(?!re|ve|ll|m|t|s|d|n)(\w)\b -> \1 \2
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    if (s[i] != '\'' || i + 1 >= s.size()) return 0;
    for (std::string_view w : {"re", "ve", "ll", "m", "t", "s", "d", "n"})
      if (istarts_with_at(s, i + 1, w)) return 0;
    if (!word_at(s, i + 1)) return 0;
    const std::size_t n = detail::cp_length(s, i + 1);
    if (!word_boundary(s, i + 1 + n)) return 0;
    r = "' " + std::string(s.substr(i + 1, n));
    return 1 + n;
  });
  // PUNCTUATION
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    const std::size_t c = final_period(s, i, true);
    if (c == std::string_view::npos) return 0;
    r = std::string(1, s[i]) + " . " + std::string(s.substr(i + 2, c)) + " ";
    return s.size() - i;
  });
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    if (!one_of(s[i], ":,") || i + 1 >= s.size() || text::is_digit(s[i + 1])) return 0;
    r = std::string(" ") + s[i] + " " + s[i + 1];
    return 2;
  });
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    if (!one_of(s[i], ":,") || !at_end(s, i + 1)) return 0;
    r = pad(s.substr(i, 1));
    return 1;
  });
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    std::size_t j = i;
    while (j < s.size() && s[j] == '.') ++j;
    if (j - i < 2) return 0;
    r = pad(s.substr(i, j - i));
    return j - i;
  });
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    if (!one_of(s[i], ";@#$%&")) return 0;
    r = pad(s.substr(i, 1));
    return 1;
  });
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    const std::size_t c = final_period(s, i, false);
    if (c == std::string_view::npos) return 0;
    r = std::string(1, s[i]) + " ." + std::string(s.substr(i + 2, c)) + " ";
    return s.size() - i;
  });
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    if (!one_of(s[i], "?!")) return 0;
    r = pad(s.substr(i, 1));
    return 1;
  });
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    if (s[i] == '\'' || !starts_with_at(s, i + 1, "' ")) return 0;
    r = std::string(1, s[i]) + " ' ";
    return 3;
  });
  t = text::replace_all(t, "*", " * ");
  // PARENS_BRACKETS, DOUBLE_DASHES
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    if (!one_of(s[i], "][(){}<>")) return 0;
    r = pad(s.substr(i, 1));
    return 1;
  });
  t = text::replace_all(t, "--", " -- ");
  t = " " + t + " ";
  // ENDING_QUOTES
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    const std::size_t n = quote_at(s, i, {raquo, rdquo, rsquo});
    if (n > 0) r = pad(s.substr(i, n));
    return n;
  });
  t = text::replace_all(t, "''", " '' ");
  t = text::replace_all(t, "\"", " '' ");
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    std::size_t j = i;
    while (j < s.size() && text::is_space(s[j])) ++j;
    if (j == i) return 0;
    r = " ";
    return j - i;
  });
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    if (one_of(s[i], "' ") || i + 1 >= s.size() || s[i + 1] != '\'') return 0;
    if (i + 3 < s.size() && one_of(s[i + 2], "sSmMdD") && s[i + 3] == ' ')
      return r = std::string(1, s[i]) + " " + std::string(s.substr(i + 1, 2)) + " ", 4;
    if (i + 2 < s.size() && s[i + 2] == ' ') return r = std::string(1, s[i]) + " ' ", 3;
    return 0;
  });
  t = sub(t, [](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
    if (one_of(s[i], "' ")) return 0;
    for (std::string_view w : {"'ll", "'LL", "'re", "'RE", "'ve", "'VE", "n't", "N'T"})
      if (starts_with_at(s, i + 1, w) && i + 4 < s.size() && s[i + 4] == ' ') {
        r = std::string(1, s[i]) + " " + std::string(w) + " ";
        return 5;
      }
    return 0;
  });
  // CONTRACTIONS2 / CONTRACTIONS3 (case-insensitive): " \1 \2 "
  struct split_word {
    std::string_view a, b;
    bool lead_space;  // CONTRACTIONS3: " ('t)(is)\b"
    bool space_after;  // (wan)(na)(?=\s) instead of \b
  };
  static constexpr std::array<split_word, 10> contractions = {{{"can", "not", false, false},
                                                                {"d", "'ye", false, false},
                                                                {"gim", "me", false, false},
                                                                {"gon", "na", false, false},
                                                                {"got", "ta", false, false},
                                                                {"lem", "me", false, false},
                                                                {"more", "'n", false, false},
                                                                {"wan", "na", false, true},
                                                                {"'t", "is", true, false},
                                                                {"'t", "was", true, false}}};
  for (const auto& c : contractions) {
    t = sub(t, [&c](std::string_view s, std::size_t i, std::string& r) -> std::size_t {
      std::size_t j = i;
      if (c.lead_space) {
        if (s[i] != ' ') return 0;
        ++j;
      } else if (!word_boundary(s, i)) {
        return 0;
      }
      if (!istarts_with_at(s, j, c.a) || !istarts_with_at(s, j + c.a.size(), c.b)) return 0;
      const std::size_t e = j + c.a.size() + c.b.size();
      if (c.space_after ? !(e < s.size() && text::is_space(s[e])) : !word_boundary(s, e)) return 0;
      r = " " + std::string(s.substr(j, c.a.size())) + " " +
          std::string(s.substr(j + c.a.size(), c.b.size())) + " ";
      return e - i;
    });
  }
  return text::split_whitespace(t);
}

}  // namespace treebank

// nltk.word_tokenize(s): punkt sentences, each split by NLTKWordTokenizer.
inline std::vector<std::string> word_tokenize(std::string_view s) {
  std::vector<std::string> out;
  for (const auto& sentence : punkt_sentences(s))
    for (auto& w : treebank::tokenize(sentence)) out.push_back(std::move(w));
  return out;
}

// ---------------------------------------------------------------- keyword patterns

// A keyword open-instruct passes to re.search / re.findall as a regular expression. Supported:
// literal text and '.', which matches any one code point except '\n'. Any other metacharacter
// (\ ^ $ * + ? { } [ ] | ( )) throws posttrain::error: real keywords are words and phrases, and
// reproducing Python's regex engine is out of scope.
class pattern {
 public:
  pattern(std::string_view p, bool ignore_case, std::string_view where)
      : text_(p), icase_(ignore_case) {
    for (char c : text_)
      expect(!detail::one_of(c, "\\^$*+?{}[]|()"), where, "keyword '", text_,
             "' contains the regular-expression metacharacter '", std::string(1, c),
             "' (open-instruct uses it as a Python regex; only literal text and '.' are supported)");
  }

  // Length of a match at s[i], or npos.
  std::size_t match_at(std::string_view s, std::size_t i) const {
    std::size_t j = i;
    for (char c : text_) {
      if (j >= s.size()) return std::string_view::npos;
      if (c == '.') {
        if (s[j] == '\n') return std::string_view::npos;
        j += detail::cp_length(s, j);
      } else {
        if (icase_ ? fold(s[j]) != fold(c) : s[j] != c) return std::string_view::npos;
        ++j;
      }
    }
    return j - i;
  }

  // len(re.findall(p, s)): non-overlapping, left to right (an empty pattern matches len(s)+1 times).
  std::size_t count(std::string_view s) const {
    if (text_.empty()) return cp_count(s) + 1;
    std::size_t n = 0;
    for (std::size_t i = 0; i < s.size();) {
      const std::size_t len = match_at(s, i);
      if (len != std::string_view::npos) {
        ++n;
        i += len;
      } else {
        ++i;
      }
    }
    return n;
  }

  bool search(std::string_view s) const {
    for (std::size_t i = 0; i <= s.size(); ++i)
      if (match_at(s, i) != std::string_view::npos) return true;
    return false;
  }

  // re.search(r"\b" + p + r"\b", s)
  bool search_word(std::string_view s) const {
    for (std::size_t i = 0; i <= s.size(); ++i) {
      if (!word_boundary(s, i)) continue;
      const std::size_t len = match_at(s, i);
      if (len != std::string_view::npos && word_boundary(s, i + len)) return true;
    }
    return false;
  }

  const std::string& str() const { return text_; }

 private:
  std::string text_;
  bool icase_;
};

}  // namespace reward::ifeval

POSTTRAIN_NAMESPACE_END
