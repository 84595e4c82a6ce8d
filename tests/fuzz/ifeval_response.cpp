// Fuzz target: every IFEval instruction on an arbitrary response. Input: the response; its first
// byte also picks one instruction's label (all 54 are checked together as well).
#include <optional>

#include "posttrain/reward/ifeval.hpp"
#include "reward/contract.h"
#include "reward/ifeval_labels.h"
#include "fuzz/fuzz.h"

POSTTRAIN_FUZZ_TARGET(ifeval_response) {
  namespace rw = posttrain::reward;
  const std::string_view response(reinterpret_cast<const char*>(data), size);
  contract::on_stack([&] {
    rw::ifeval_verifier v;
    v.detect_language = [](std::string_view) { return std::optional<std::string>("en"); };
    fuzz::check_score(v.score(response, ifeval_labels::all_instructions));
    if (size > 0) {
      const auto& labels = ifeval_labels::one_per_instruction;
      fuzz::check_score(v.score(response.substr(1), labels[data[0] % labels.size()]));
    }
  });
  return 0;
}
