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
  // A small work budget (2^20, the default is 2^23) keeps executions short under ASan on a loaded
  // machine (2^23 is ~0.35 s there, and math_verifier may spend it once per candidate): a
  // timeout then means work the budget does not count, which is the defect to find.
  rw::equiv_options small;
  small.work_limit = std::uint64_t{1} << 20;
  rw::math_verifier math;
  math.equiv = small;
  rw::strict_math_verifier strict;
  strict.equiv = small;
  contract::on_stack([&] {
    fuzz::check_score(math.score(prediction, label));
    fuzz::check_score(strict.score(prediction, label));
    (void)rw::sympy_equiv_outcome(prediction, label, small);
    (void)rw::sympy_equiv_outcome(label, prediction, small);
  });
  return 0;
}
