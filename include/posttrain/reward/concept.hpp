#pragma once
// The text verifier concept (open-instruct VerifierFunction, reduced to what is computed here):
//
//   verifier<V>   V names itself (static std::string name(), the lower-case dataset name the
//                 reward dispatch matches) and scores a decoded response against one label:
//                 v.score(std::string_view prediction, std::string_view label) -> double.
//
// The weight a verifier contributes with is the member `weight` when V has one, else 1.0
// (verifier_weight). static_assert(check_verifier<V>()) names what is missing in one sentence each.
#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>

#include "posttrain/config.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace reward {

template <class V>
concept verifier = requires(const V& v, std::string_view prediction, std::string_view label) {
  { V::name() } -> std::convertible_to<std::string>;
  { v.score(prediction, label) } -> std::convertible_to<double>;
};

template <class V>
constexpr bool check_verifier() {
  static_assert(
      requires {
        { V::name() } -> std::convertible_to<std::string>;
      },
      "a verifier needs `static std::string name()` giving the dataset name it verifies");
  static_assert(
      requires(const V& v, std::string_view prediction, std::string_view label) {
        { v.score(prediction, label) } -> std::convertible_to<double>;
      },
      "a verifier needs a const `score(std::string_view prediction, std::string_view label)` "
      "returning the score as a double");
  return verifier<V>;
}

// How a verification ended, for a reward source's metrics: `scored` (the score is the verdict),
// `gave_up` (a comparison passed its work budget: operands or work too large) or `timed_out` (a
// comparison passed the caller's time limit). Both of the latter score 0, "not equivalent", as
// open-instruct scores its 5 s timeout.
enum class verify_status { scored, gave_up, timed_out };

struct verify_result {
  double score = 0.0;
  verify_status status = verify_status::scored;
};

// Counts of outcomes over a batch (what a reward source reports next to the mean reward).
struct verify_counts {
  std::size_t scored = 0, gave_up = 0, timed_out = 0;
  void add(verify_status s) {
    if (s == verify_status::scored) ++scored;
    else if (s == verify_status::gave_up) ++gave_up;
    else ++timed_out;
  }
};

// v.check(prediction, label) for verifiers that can give up (the MATH ones), else a plain score.
template <verifier V>
verify_result verify(const V& v, std::string_view prediction, std::string_view label) {
  if constexpr (requires { { v.check(prediction, label) } -> std::convertible_to<verify_result>; })
    return v.check(prediction, label);
  else
    return {static_cast<double>(v.score(prediction, label)), verify_status::scored};
}

template <class V>
double verifier_weight(const V& v) {
  if constexpr (requires { { v.weight } -> std::convertible_to<double>; })
    return static_cast<double>(v.weight);
  else
    return 1.0;
}

}  // namespace reward

POSTTRAIN_NAMESPACE_END
