# Shared by the trainer's script tests (include()d; they are run with cmake -P and get TRAINER,
# RECIPE and WORK from -D).
#   run_expect(rc what COMMAND...)   runs the command; fails, naming `what`, unless its exit code
#                                    is rc; leaves its stdout / stderr in out / err
#   count_matches(var regex text)    var = how many times regex matches text
#   run_trainer(out rc [VAR=value...]) the trainer on RECIPE into out (with those environment
#                                    variables), exit code rc
#   resume(out)                      --resume into out, exit code 0
#   expect_same_checkpoints(out files...) each checkpoints/<file> of out equals WORK/a's, byte for
#                                    byte (a = the uninterrupted run)
#   expect_same_step_lines(out)      out's metrics.jsonl has as many step lines as WORK/a's (every
#                                    step once: a resumed run drops the lines it runs again)
function(run_expect expect_rc what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL expect_rc)
    message(FATAL_ERROR "${what}: exit code ${rc}, expected ${expect_rc}: ${out} ${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
  set(err "${err}" PARENT_SCOPE)
endfunction()

function(count_matches var regex text)
  string(REGEX MATCHALL "${regex}" matches "${text}")
  list(LENGTH matches n)
  set(${var} ${n} PARENT_SCOPE)
endfunction()

function(run_trainer out expect_rc)
  run_expect(${expect_rc} "${out}" ${CMAKE_COMMAND} -E env ${ARGN} "${TRAINER}" --recipe "${RECIPE}"
             --out "${out}" --quiet)
endfunction()

function(resume out)
  run_expect(0 "${out}: --resume" "${TRAINER}" --recipe "${RECIPE}" --out "${out}" --resume --quiet)
endfunction()

function(expect_same_checkpoints out)
  foreach(f ${ARGN})
    execute_process(COMMAND "${CMAKE_COMMAND}" -E compare_files "${WORK}/a/checkpoints/${f}"
                    "${out}/checkpoints/${f}" RESULT_VARIABLE diff)
    if(NOT diff EQUAL 0)
      message(FATAL_ERROR "${out}: ${f} differs from the uninterrupted run's")
    endif()
  endforeach()
endfunction()

function(expect_same_step_lines out)
  file(STRINGS "${WORK}/a/metrics.jsonl" a_steps REGEX "\"step\"")
  file(STRINGS "${out}/metrics.jsonl" steps REGEX "\"step\"")
  list(LENGTH a_steps na)
  list(LENGTH steps n)
  if(NOT n EQUAL na)
    message(FATAL_ERROR "${out}: ${n} step lines in metrics.jsonl, the uninterrupted run has ${na}")
  endif()
endfunction()
