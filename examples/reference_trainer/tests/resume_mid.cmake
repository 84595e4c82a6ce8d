# Mid-stage checkpoints resume exactly (checkpoint.hpp): N steps + --resume gives the weights of
# the uninterrupted run, byte for byte, for an SFT stage, a GRPO stage and a PPO stage (policy,
# critic and both AdamW states restored).
#   A  the uninterrupted run
#   B  SIGINT after step 2 of stage 1 (sft): exit code 130, midstage1_sft saved; --resume
#   C  SIGINT after step 2 of stage 2 (grpo): the same
#   D  a crash (exit 3, nothing saved) after step 2 of stage 3 (ppo, checkpoint_every 3): no
#      checkpoint yet, --resume restarts stage 3 from stage 2's checkpoint; E crashes after step 4
#      of stage 3 with checkpoint_every 3 (the periodic checkpoint of step 3); --resume
#   cmake -DTRAINER=... -DRECIPE=... -DWORK=dir -P resume_mid.cmake
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
file(REMOVE_RECURSE "${WORK}")
set(_stages stage1_sft stage2_rl stage3_rl)
function(same_as_a out)
  set(files)
  foreach(s ${_stages})
    list(APPEND files "${s}/model.safetensors")
  endforeach()
  expect_same_checkpoints("${out}" ${files})
  expect_same_step_lines("${out}")
  if(EXISTS "${out}/checkpoints/midstage3_rl")
    message(FATAL_ERROR "${out}: the mid-stage checkpoint was not removed after its stage")
  endif()
endfunction()

run_trainer("${WORK}/a" 0)
foreach(case "b;1:2;midstage1_sft" "c;2:2;midstage2_rl")
  list(GET case 0 name)
  list(GET case 1 at)
  list(GET case 2 dir)
  run_trainer("${WORK}/${name}" 130 POSTTRAIN_RT_INTERRUPT_AT=${at})
  if(NOT EXISTS "${WORK}/${name}/checkpoints/${dir}/state.bin")
    message(FATAL_ERROR "${name}: Ctrl-C left no ${dir}/state.bin")
  endif()
  file(READ "${WORK}/${name}/checkpoints/${dir}/trainer_state.json" state)
  if(NOT state MATCHES "\"step\": 2" OR NOT state MATCHES "\"interrupted\": true")
    message(FATAL_ERROR "${name}: trainer_state.json: ${state}")
  endif()
  resume("${WORK}/${name}")
  same_as_a("${WORK}/${name}")
endforeach()
run_trainer("${WORK}/d" 3 POSTTRAIN_RT_CRASH_AT=3:2)
if(EXISTS "${WORK}/d/checkpoints/midstage3_rl")
  message(FATAL_ERROR "d: a checkpoint before step checkpoint_every")
endif()
resume("${WORK}/d")
same_as_a("${WORK}/d")
run_trainer("${WORK}/e" 3 POSTTRAIN_RT_CRASH_AT=3:4)
file(READ "${WORK}/e/checkpoints/midstage3_rl/trainer_state.json" state)
if(NOT state MATCHES "\"step\": 3" OR NOT state MATCHES "\"interrupted\": false")
  message(FATAL_ERROR "e: periodic checkpoint: ${state}")
endif()
resume("${WORK}/e")
same_as_a("${WORK}/e")
