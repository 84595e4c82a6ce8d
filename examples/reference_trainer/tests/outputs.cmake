# What a run leaves behind: metrics.jsonl with one line per step of every stage and one per
# evaluation, an HF checkpoint (config.json + model.safetensors + trainer_state.json) per stage
# that the trainer can start from again (--init), and the summary.
#   cmake -DTRAINER=... -DRECIPE=smoke_quick.json -DWORK=dir -P outputs.cmake
file(REMOVE_RECURSE "${WORK}")
execute_process(COMMAND "${TRAINER}" --recipe "${RECIPE}" --out "${WORK}/run" --quiet RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the run failed (${rc})")
endif()
file(STRINGS "${WORK}/run/metrics.jsonl" lines)
set(steps 0)
set(evals 0)
foreach(l IN LISTS lines)
  if(l MATCHES "\"event\":\"eval\"")
    math(EXPR evals "${evals} + 1")
  elseif(l MATCHES "\"step\":[0-9]+")
    math(EXPR steps "${steps} + 1")
  endif()
endforeach()
# smoke_quick: pretrain 3 + sft 3 + rl 2 steps; evaluations before and after each of 3 stages.
if(NOT steps EQUAL 8 OR NOT evals EQUAL 4)
  message(FATAL_ERROR "metrics.jsonl has ${steps} step lines and ${evals} eval lines, expected 8 and 4")
endif()
foreach(stage stage1_pretrain stage2_sft stage3_rl)
  foreach(f config.json model.safetensors trainer_state.json)
    if(NOT EXISTS "${WORK}/run/checkpoints/${stage}/${f}")
      message(FATAL_ERROR "checkpoint ${stage} has no ${f}")
    endif()
  endforeach()
endforeach()
if(NOT EXISTS "${WORK}/run/summary.txt")
  message(FATAL_ERROR "no summary.txt")
endif()
# The last checkpoint loads as a starting point (HF layout read back by the model's loader).
execute_process(COMMAND "${TRAINER}" --recipe "${RECIPE}" --out "${WORK}/again" --quiet
                        --init "${WORK}/run/checkpoints/stage3_rl" RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "--init from the run's checkpoint failed (${rc}): ${err}")
endif()
