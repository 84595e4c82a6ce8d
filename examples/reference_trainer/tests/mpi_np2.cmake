# mpiexec -n 2 trains the same model as one process: the smoke recipe once in one process (A) and
# once on 2 ranks (B, each rank half of every batch); the per-step loss / reward / KL and the
# held-out accuracies must agree to TOL (relative; see docs/reference_trainer.md), and B's outputs
# are written once (rank 0).
#   cmake -DTRAINER=... -DMPIEXEC=... -DRECIPE=... -DWORK=dir -DTOL=1e-4 [-DLAST=row] -P mpi_np2.cmake
# LAST: the summary row of the recipe's last stage (default rl:grpo), the row before `total`.
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
file(REMOVE_RECURSE "${WORK}")
run_expect(0 "one process" "${TRAINER}" --recipe "${RECIPE}" --out "${WORK}/np1" --quiet)
run_expect(0 "mpiexec -n 2" "${MPIEXEC}" -n 2 "${TRAINER}" --recipe "${RECIPE}" --out "${WORK}/np2" --quiet)
if(NOT DEFINED LAST)
  set(LAST "rl:grpo")
endif()
count_matches(n "\n${LAST} +[0-9.]+ +[0-9.]+s[^\n]*\ntotal" "${out}")
if(NOT n EQUAL 1)
  message(FATAL_ERROR "mpiexec -n 2: expected one summary (rank 0's), got ${n}: ${out}")
endif()
execute_process(COMMAND "${TRAINER}" compare "${WORK}/np1" "${WORK}/np2" --tolerance ${TOL}
                RESULT_VARIABLE rc OUTPUT_VARIABLE cmp)
message(STATUS "${cmp}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "np2 differs from np1: ${cmp}")
endif()
