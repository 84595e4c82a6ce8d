#pragma once
// Python `str` operations the RLVR verifiers are written in (open-instruct ground_truth_utils.py
// and math_utils.py), on byte strings: str.replace (all non-overlapping occurrences, left to
// right), str.split(sep), str.split() / str.strip() whitespace, str.lower(), str.isdigit().
//
// Byte semantics: every function treats the input as a sequence of bytes. ASCII behaves exactly as
// Python's str; non-ASCII UTF-8 is passed through untouched, so Unicode case folding, Unicode
// digits (str.isdigit, regex \d) and Unicode whitespace other than the ASCII set are NOT
// recognised. Bytes >= 0x80 count as word characters (regex \w), as UTF-8 letters do in Python.
#include <string>
#include <string_view>
#include <vector>

#include "posttrain/config.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace reward::text {

// Python's str.isspace() over ASCII: \t \n \v \f \r, \x1c-\x1f and space.
constexpr bool is_space(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return u == ' ' || (u >= 0x09 && u <= 0x0d) || (u >= 0x1c && u <= 0x1f);
}
constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
constexpr bool is_alnum(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
// regex \w (Unicode str pattern): alphanumerics and '_'; non-ASCII bytes count as word bytes.
constexpr bool is_word(char c) noexcept {
  return is_alnum(c) || c == '_' || static_cast<unsigned char>(c) >= 0x80;
}
// string.punctuation: !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~
constexpr bool is_punctuation(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return (u >= 33 && u <= 47) || (u >= 58 && u <= 64) || (u >= 91 && u <= 96) ||
         (u >= 123 && u <= 126);
}

inline std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

inline bool contains(std::string_view s, std::string_view what) {
  return s.find(what) != std::string_view::npos;
}

// str.replace(before, after): every non-overlapping occurrence, scanning left to right.
inline std::string replace_all(std::string_view s, std::string_view before, std::string_view after) {
  if (before.empty()) return std::string(s);
  std::string out;
  out.reserve(s.size());
  std::size_t pos = 0;
  for (;;) {
    const std::size_t hit = s.find(before, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(after);
    pos = hit + before.size();
  }
  out.append(s.substr(pos));
  return out;
}

// str.split(sep) with a non-empty separator: always at least one part.
inline std::vector<std::string> split(std::string_view s, std::string_view sep) {
  std::vector<std::string> parts;
  std::size_t pos = 0;
  for (;;) {
    const std::size_t hit = s.find(sep, pos);
    if (hit == std::string_view::npos) break;
    parts.emplace_back(s.substr(pos, hit - pos));
    pos = hit + sep.size();
  }
  parts.emplace_back(s.substr(pos));
  return parts;
}

// str.split() (no argument): runs of whitespace separate, no empty parts.
inline std::vector<std::string> split_whitespace(std::string_view s) {
  std::vector<std::string> parts;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    std::size_t j = i;
    while (j < s.size() && !is_space(s[j])) ++j;
    if (j > i) parts.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return parts;
}

// str.strip() (no argument).
inline std::string_view strip(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// The text after the last occurrence of sep (str.split(sep)[-1]); all of s if sep is absent.
inline std::string_view after_last(std::string_view s, std::string_view sep) {
  const std::size_t hit = s.rfind(sep);
  return hit == std::string_view::npos ? s : s.substr(hit + sep.size());
}

// str.isdigit() over ASCII: non-empty and every byte a digit.
inline bool is_all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_digit(c)) return false;
  return true;
}

}  // namespace reward::text

POSTTRAIN_NAMESPACE_END
