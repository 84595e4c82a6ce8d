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

template <class V>
double verifier_weight(const V& v) {
  if constexpr (requires { { v.weight } -> std::convertible_to<double>; })
    return static_cast<double>(v.weight);
  else
    return 1.0;
}

}  // namespace reward

POSTTRAIN_NAMESPACE_END
