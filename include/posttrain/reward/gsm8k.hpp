#pragma once
// GSM8K verifier (open-instruct ground_truth_utils.py GSM8KVerifier, name "gsm8k").
//
//   response  = re.sub(r"(\d),(\d)", r"\1\2", prediction)      one left-to-right pass:
//               "1,234,567" -> "1234567", but "1,2,3" -> "12,3" (the 2 was consumed)
//   numbers   = re.findall(r"[-+]?(?:\d*\.\d+|\d+)", response)
//   extracted = numbers[-1] if numbers else response
//   score     = 1.0 iff extracted.lower() == label.lower()          exact string equality:
//               "18.0" != "18", "+5" != "5", "18." extracts "18"
//
// Scanning is hand-written (no std::regex); \d is ASCII 0-9 (Python's \d also matches other
// Unicode digits). Empty prediction: no number, extracted = "" and the score is 1 only for an
// empty label.
#include <string>
#include <string_view>

#include "posttrain/config.hpp"
#include "posttrain/reward/text.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace reward {

// One pass of re.sub(r"(\d),(\d)", r"\1\2", s).
inline std::string gsm8k_remove_digit_commas(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    if (i + 2 < s.size() && text::is_digit(s[i]) && s[i + 1] == ',' && text::is_digit(s[i + 2])) {
      out.push_back(s[i]);
      out.push_back(s[i + 2]);
      i += 3;  // the match consumed both digits
    } else {
      out.push_back(s[i]);
      ++i;
    }
  }
  return out;
}

// Length of a match of (?:\d*\.\d+|\d+) at s[i] (0 when none).
inline std::size_t gsm8k_unsigned_number_length(std::string_view s, std::size_t i) {
  std::size_t j = i;
  while (j < s.size() && text::is_digit(s[j])) ++j;
  if (j < s.size() && s[j] == '.' && j + 1 < s.size() && text::is_digit(s[j + 1])) {
    std::size_t k = j + 1;
    while (k < s.size() && text::is_digit(s[k])) ++k;
    return k - i;  // \d*\.\d+ (the first alternative wins)
  }
  return j - i;  // \d+ (0 when no digit)
}

// The last match of re.findall(r"[-+]?(?:\d*\.\d+|\d+)", s); false when there is none.
inline bool gsm8k_last_number(std::string_view s, std::string_view& last) {
  bool found = false;
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t len = 0;
    if ((s[i] == '-' || s[i] == '+') && i + 1 < s.size()) {
      const std::size_t body = gsm8k_unsigned_number_length(s, i + 1);
      if (body > 0) len = body + 1;
    } else {
      len = gsm8k_unsigned_number_length(s, i);
    }
    if (len > 0) {
      last = s.substr(i, len);
      found = true;
      i += len;
    } else {
      ++i;
    }
  }
  return found;
}

// The answer GSM8KVerifier compares: the last number after removing digit commas, or the whole
// comma-stripped response when it holds no number.
inline std::string gsm8k_extract(std::string_view prediction) {
  const std::string response = gsm8k_remove_digit_commas(prediction);
  std::string_view last;
  if (gsm8k_last_number(response, last)) return std::string(last);
  return response;
}

struct gsm8k_verifier {
  static std::string name() { return "gsm8k"; }
  double weight = 1.0;
  double score(std::string_view prediction, std::string_view label) const {
    return text::lower(gsm8k_extract(prediction)) == text::lower(label) ? 1.0 : 0.0;
  }
};

}  // namespace reward

POSTTRAIN_NAMESPACE_END
