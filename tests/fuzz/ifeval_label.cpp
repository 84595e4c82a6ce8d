// Fuzz target: IFEval labels (ast.literal_eval / json.loads grammars and build_instruction) and
// the literal parsers. Input: label NUL prediction. A malformed label may throw posttrain::error;
// anything else (another exception, a crash, a sanitizer report) is a finding.
#include <optional>

#include "posttrain/core/error.hpp"
#include "posttrain/reward/ifeval.hpp"
#include "reward/contract.h"
#include "fuzz/fuzz.h"

POSTTRAIN_FUZZ_TARGET(ifeval_label) {
  namespace rw = posttrain::reward;
  const auto parts = fuzz::split(data, size);
  const std::string_view label = parts.first, prediction = parts.second;
  contract::on_stack([&] {
    try {
      (void)rw::ifeval::parse_python_literal(label);
    } catch (const posttrain::error&) {
    }
    (void)rw::ifeval::is_valid_json(label);
    rw::ifeval_verifier v;
    v.detect_language = [](std::string_view) { return std::optional<std::string>("en"); };
    try {
      fuzz::check_score(v.score(prediction.empty() ? std::string_view("Some answer. P.S. yes") : prediction, label));
    } catch (const posttrain::error&) {
    }
  });
  return 0;
}
