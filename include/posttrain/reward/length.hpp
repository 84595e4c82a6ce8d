#pragma once
// Length verifiers (open-instruct ground_truth_utils.py MaxLenVerifier "max_length",
// UpToMaxLenVerifier "up_to_max_length"). The label is the desired length L (Python float(label));
// n is the number of response tokens; M = max_length_verifier_max_length (32768 by default).
//
//   max_length:        1 − |n − L| / M
//   up_to_max_length:  1 if n < L, else 1 − (n − L) / M
//
// Scores are not clamped (open-instruct's comment "disallow negative rewards" is not enforced by
// its code): n far from L gives a negative score. They read the token count, not the text, so
// they do not model the text `verifier` concept; score_label parses the label as Python float()
// does for plain decimal numbers.
#include <cmath>
#include <cstdlib>
#include <string>
#include <string_view>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/reward/text.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace reward {

namespace length_detail {
inline double parse_length_label(std::string_view label, std::string_view where) {
  const std::string s(text::strip(label));
  char* end = nullptr;
  const double v = s.empty() ? 0.0 : std::strtod(s.c_str(), &end);
  expect(!s.empty() && end == s.c_str() + s.size() && std::isfinite(v), where, "label '", label,
         "' is not a finite number (the desired length)");
  return v;
}
}  // namespace length_detail

struct max_length_verifier {
  static std::string name() { return "max_length"; }
  double weight = 1.0;
  double max_length = 32768.0;  // max_length_verifier_max_length
  double score(std::size_t num_tokens, double desired_length) const {
    expect_positive(max_length, "reward::max_length_verifier", "max_length");
    return 1.0 - std::abs(static_cast<double>(num_tokens) - desired_length) / max_length;
  }
  double score_label(std::size_t num_tokens, std::string_view label) const {
    return score(num_tokens, length_detail::parse_length_label(label, "reward::max_length_verifier"));
  }
};

struct up_to_max_length_verifier {
  static std::string name() { return "up_to_max_length"; }
  double weight = 1.0;
  double max_length = 32768.0;
  double score(std::size_t num_tokens, double desired_length) const {
    expect_positive(max_length, "reward::up_to_max_length_verifier", "max_length");
    const double diff = static_cast<double>(num_tokens) - desired_length;
    if (diff < 0) return 1.0;
    return 1.0 - diff / max_length;
  }
  double score_label(std::size_t num_tokens, std::string_view label) const {
    return score(num_tokens,
                 length_detail::parse_length_label(label, "reward::up_to_max_length_verifier"));
  }
};

}  // namespace reward

POSTTRAIN_NAMESPACE_END
