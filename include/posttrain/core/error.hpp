#pragma once
// posttrain::error: the one exception type of the library. Every public entry point validates its
// arguments before it writes anything and throws this with a message that names the argument and
// the expectation, e.g. "posttrain::token_logprobs: targets has 7 elements, expected 8 (one per
// row of logits)".
#include <stdexcept>
#include <string>

#include "posttrain/config.hpp"

POSTTRAIN_NAMESPACE_BEGIN

class error : public std::invalid_argument {
 public:
  explicit error(const std::string& message) : std::invalid_argument(message) {}
};

POSTTRAIN_NAMESPACE_END
