// Fuzz target: the text verifiers (gsm8k, flan, string_matcher, string_f1, the R1 format reward)
// and the MATH answer extraction. Input: prediction NUL label.
#include "posttrain/reward/combine.hpp"
#include "posttrain/reward/gsm8k.hpp"
#include "posttrain/reward/math.hpp"
#include "posttrain/reward/squad.hpp"
#include "reward/contract.h"
#include "fuzz/fuzz.h"

POSTTRAIN_FUZZ_TARGET(text) {
  namespace rw = posttrain::reward;
  const auto parts = fuzz::split(data, size);
  const std::string_view prediction = parts.first, label = parts.second;
  contract::on_stack([&] {
    fuzz::check_score(rw::gsm8k_verifier{}.score(prediction, label));
    fuzz::check_score(rw::flan_verifier{}.score(prediction, label));
    fuzz::check_score(rw::string_matcher_verifier{}.score(prediction, label));
    fuzz::check_score(rw::f1_verifier{}.score(prediction, label));
    fuzz::check_score(rw::r1_format_reward(prediction));
    (void)rw::math_candidates(prediction);
    (void)rw::strip_string(prediction);
    (void)rw::normalize_final_answer(prediction);
  });
  return 0;
}
