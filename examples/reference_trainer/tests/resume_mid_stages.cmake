# Mid-stage resume of the stage kinds s5-recipes added (reward_model, offline / RM-scored dpo,
# round): for each case "K:N" SIGINT after step N of stage K (exit 130, midstageK_<stage> saved),
# then --resume; every stage checkpoint (and the reward model's files) must equal the
# uninterrupted run's byte for byte.
#   cmake -DTRAINER=... -DRECIPE=... -DWORK=dir -DSTAGES=stage1_sft,... -DCASES=2:2,3:2
#         -DFILES=stage2_reward_model/reward_model/score.safetensors,...
#   (comma-separated lists) -P resume_mid_stages.cmake
file(REMOVE_RECURSE "${WORK}")
foreach(v STAGES CASES FILES)
  string(REPLACE "," ";" ${v} "${${v}}")
endforeach()
function(run_trainer out expect_rc)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env ${ARGN} "${TRAINER}" --recipe "${RECIPE}" --out "${out}" --quiet
                  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(NOT rc EQUAL expect_rc)
    message(FATAL_ERROR "${out}: exit code ${rc}, expected ${expect_rc}: ${err}")
  endif()
endfunction()
run_trainer("${WORK}/a" 0)
set(_files ${FILES})
foreach(s ${STAGES})
  list(APPEND _files "${s}/model.safetensors")
endforeach()
set(_i 0)
foreach(at ${CASES})
  math(EXPR _i "${_i} + 1")
  set(out "${WORK}/case${_i}")
  run_trainer("${out}" 130 POSTTRAIN_RT_INTERRUPT_AT=${at})
  file(GLOB _mid "${out}/checkpoints/midstage*/state.bin")
  if(NOT _mid)
    message(FATAL_ERROR "${out}: Ctrl-C at ${at} left no midstage*/state.bin")
  endif()
  execute_process(COMMAND "${TRAINER}" --recipe "${RECIPE}" --out "${out}" --resume --quiet
                  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${out}: --resume failed (${rc}): ${err}")
  endif()
  foreach(f ${_files})
    execute_process(COMMAND "${CMAKE_COMMAND}" -E compare_files "${WORK}/a/checkpoints/${f}"
                    "${out}/checkpoints/${f}" RESULT_VARIABLE diff)
    if(NOT diff EQUAL 0)
      message(FATAL_ERROR "${out} (Ctrl-C at ${at}): ${f} differs from the uninterrupted run's")
    endif()
  endforeach()
  file(STRINGS "${WORK}/a/metrics.jsonl" a_steps REGEX "\"step\"")
  file(STRINGS "${out}/metrics.jsonl" steps REGEX "\"step\"")
  list(LENGTH a_steps na)
  list(LENGTH steps n)
  if(NOT n EQUAL na)
    message(FATAL_ERROR "${out}: ${n} step lines in metrics.jsonl, the uninterrupted run has ${na}")
  endif()
endforeach()
