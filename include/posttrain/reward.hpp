#pragma once
// posttrain::reward: the RLVR verifiers (open-instruct ground_truth_utils.py / math_utils.py),
// host-only, as their own target and umbrella (link posttrain::reward). Not part of
// <posttrain/posttrain.hpp>: a training loop that only computes losses does not parse them.
//
//   reward/gsm8k.hpp      gsm8k_verifier
//   reward/math.hpp       math_verifier, strict_math_verifier (Hendrycks string + sympy halves)
//   reward/math_expr.hpp  sympy_is_equiv; math_expr/{number,lexer,parser,evaluator}.hpp
//   reward/squad.hpp      flan_verifier, string_matcher_verifier, f1_verifier
//   reward/length.hpp     max_length_verifier, up_to_max_length_verifier
//   reward/ifeval.hpp     ifeval_verifier (ifeval_literal.hpp, ifeval_text.hpp)
//   reward/combine.hpp    verifiable_reward, r1 format reward, combine_reward
//   reward/concept.hpp    reward::verifier concept, check_verifier
// reward/verifiers.hpp (the former umbrella) still includes all of them. See docs/reward/.
#include "posttrain/reward/verifiers.hpp"
