#pragma once
// RLVR verifiers (open-instruct ground_truth_utils.py / math_utils.py), host-only:
//   gsm8k.hpp    gsm8k_verifier                       last number, exact string equality
//   math.hpp     math_verifier, strict_math_verifier   boxed / Minerva / $…$ / whole, Hendrycks
//                                                      string equivalence (no sympy half)
//   squad.hpp    flan_verifier, string_matcher_verifier, f1_verifier
//   length.hpp   max_length_verifier, up_to_max_length_verifier
//   ifeval.hpp   ifeval_verifier: fraction of IFEvalG instructions followed (54 ids; nltk punkt /
//                word_tokenize reproduced without orthographic statistics; langdetect by callback)
//   combine.hpp  verifiable_reward, r1 format reward, combine_reward (gating, non-stop penalty)
//   concept.hpp  reward::verifier concept, check_verifier
// Code execution, LM-judge and rubric verifiers are out of scope. See docs/reward/verifiers.md.
#include "posttrain/reward/combine.hpp"
#include "posttrain/reward/concept.hpp"
#include "posttrain/reward/gsm8k.hpp"
#include "posttrain/reward/ifeval.hpp"
#include "posttrain/reward/length.hpp"
#include "posttrain/reward/math.hpp"
#include "posttrain/reward/squad.hpp"
#include "posttrain/reward/text.hpp"

POSTTRAIN_NAMESPACE_BEGIN
namespace reward {
static_assert(check_verifier<gsm8k_verifier>());
static_assert(check_verifier<math_verifier>());
static_assert(check_verifier<strict_math_verifier>());
static_assert(check_verifier<flan_verifier>());
static_assert(check_verifier<string_matcher_verifier>());
static_assert(check_verifier<f1_verifier>());
static_assert(check_verifier<ifeval_verifier>());
}  // namespace reward
POSTTRAIN_NAMESPACE_END
