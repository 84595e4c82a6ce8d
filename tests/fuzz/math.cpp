// Fuzz target: the MATH verifiers and the sympy half. Input: prediction NUL label (both views into
// libFuzzer's exact-size buffer). A finding: a crash, a sanitizer report, a stack overflow on the
// 256 KiB worker stack, a score outside [0, 1], or an execution past libFuzzer's -timeout (every
// comparison must end inside its work budget).
#include "posttrain/reward/math.hpp"
#include "reward/contract.h"
#include "fuzz/fuzz.h"

POSTTRAIN_FUZZ_TARGET(math) {
  namespace rw = posttrain::reward;
  const auto parts = fuzz::split(data, size);
  const std::string_view prediction = parts.first, label = parts.second;
  contract::on_stack([&] {
    fuzz::check_score(rw::math_verifier{}.score(prediction, label));
    fuzz::check_score(rw::strict_math_verifier{}.score(prediction, label));
    rw::equiv_options small;
    small.work_limit = std::uint64_t{1} << 22;  // keeps each execution short
    (void)rw::sympy_equiv_outcome(prediction, label, small);
    (void)rw::sympy_equiv_outcome(label, prediction, small);
  });
  return 0;
}
