# --resume continues exactly: a run of RECIPE into A; a copy B with its last stage checkpoint
# removed, continued with --resume; the last stage's weights of A and B must be byte-identical.
#   cmake -DTRAINER=... -DRECIPE=... -DWORK=dir -DLAST=stageN_name -P resume.cmake
file(REMOVE_RECURSE "${WORK}")
execute_process(COMMAND "${TRAINER}" --recipe "${RECIPE}" --out "${WORK}/a" --quiet RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the full run failed (${rc})")
endif()
file(COPY "${WORK}/a/" DESTINATION "${WORK}/b")
file(REMOVE_RECURSE "${WORK}/b/checkpoints/${LAST}")
execute_process(COMMAND "${TRAINER}" --recipe "${RECIPE}" --out "${WORK}/b" --resume --quiet RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the resumed run failed (${rc})")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" -E compare_files
                "${WORK}/a/checkpoints/${LAST}/model.safetensors"
                "${WORK}/b/checkpoints/${LAST}/model.safetensors" RESULT_VARIABLE same)
if(NOT same EQUAL 0)
  message(FATAL_ERROR "resumed weights differ from the uninterrupted run's")
endif()
