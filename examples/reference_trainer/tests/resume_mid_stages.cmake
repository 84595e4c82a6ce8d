# Mid-stage resume of the stage kinds s5-recipes added (reward_model, offline / RM-scored dpo,
# round): for each case "K:N" SIGINT after step N of stage K (exit 130, midstageK_<stage> saved),
# then --resume; every stage checkpoint (and the reward model's files) must equal the
# uninterrupted run's byte for byte.
#   cmake -DTRAINER=... -DRECIPE=... -DWORK=dir -DSTAGES=stage1_sft,... -DCASES=2:2,3:2
#         -DFILES=stage2_reward_model/reward_model/score.safetensors,...
#   (comma-separated lists) -P resume_mid_stages.cmake
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
file(REMOVE_RECURSE "${WORK}")
foreach(v STAGES CASES FILES)
  string(REPLACE "," ";" ${v} "${${v}}")
endforeach()
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
  resume("${out}")
  expect_same_checkpoints("${out}" ${_files})
  expect_same_step_lines("${out}")
endforeach()
