# Paired KTO (--algo kto_vanilla_paired) on smoke_qwen2's two dpo stages (offline pairs, then
# RM-scored online pairs). Every paired step logs its loss and reference points KL_c / KL_r; at a
# stage's first step the policy is its frozen reference, so Δc = Δr = 0, KL_c = KL_r = 0 and
# loss = Σ_p (1 − σ(0)) · 2 / (2P) = 0.5 (up to float rounding: the policy's and the reference's
# forwards batch the sequences differently, a few 1e-6 apart in summed log-probs).
#   cmake -DTRAINER=... -DRECIPE=smoke_qwen2.json -DWORK=dir -P kto_paired.cmake
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
file(REMOVE_RECURSE "${WORK}")
run_expect(0 "--algo kto_vanilla_paired" "${TRAINER}" --recipe "${RECIPE}" --algo kto_vanilla_paired
           --out "${WORK}/run" --quiet)
file(STRINGS "${WORK}/run/metrics.jsonl" lines REGEX "\"algo\":\"kto_vanilla_paired\"")
set(steps 0)
set(first 0)
foreach(l IN LISTS lines)
  math(EXPR steps "${steps} + 1")
  string(JSON pairs GET "${l}" pairs)
  if(pairs EQUAL 0)
    continue()  # online step with no pair (every group tied): nothing trained
  endif()
  foreach(key loss kl_chosen kl_rejected chosen_reward rejected_reward reward_accuracy grad_norm)
    string(JSON v ERROR_VARIABLE e GET "${l}" ${key})
    if(e)
      message(FATAL_ERROR "paired KTO step without \"${key}\": ${l}")
    endif()
  endforeach()
  string(JSON step GET "${l}" step)
  if(step EQUAL 1)
    math(EXPR first "${first} + 1")
    string(JSON loss GET "${l}" loss)
    string(JSON klc GET "${l}" kl_chosen)
    string(JSON klr GET "${l}" kl_rejected)
    if(loss LESS 0.499999 OR loss GREATER 0.500001 OR klc GREATER 0.0001 OR klr GREATER 0.0001)
      message(FATAL_ERROR "first paired KTO step: loss ${loss} KL_c ${klc} KL_r ${klr}, expected 0.5, 0, 0: ${l}")
    endif()
  endif()
endforeach()
# smoke_qwen2: two dpo stages of 2 steps each.
if(NOT steps EQUAL 4 OR first LESS 1)
  message(FATAL_ERROR "${steps} paired KTO step lines (${first} first steps checked), expected 4 (at least 1)")
endif()
