# cmake -DFUZZER=... -DWORK=... -DARTIFACTS=... -DSEEDS=... -DDICT=... -DSECONDS=... -P run_fuzzer.cmake
#
# A bounded libFuzzer run for ctest: a fresh scratch corpus directory (where libFuzzer writes new
# inputs) in front of the checked-in seeds (read only), crash files in ARTIFACTS. Fails unless
# libFuzzer exits 0.
foreach(v FUZZER WORK ARTIFACTS SEEDS DICT SECONDS)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_fuzzer.cmake: -D${v}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK}" "${ARTIFACTS}")
file(MAKE_DIRECTORY "${WORK}" "${ARTIFACTS}")
execute_process(
  COMMAND "${FUZZER}" "${WORK}" "${SEEDS}" -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=2048
          "-dict=${DICT}" "-artifact_prefix=${ARTIFACTS}/" -print_final_stats=1
  RESULT_VARIABLE rc)
if(NOT rc STREQUAL "0")
  file(GLOB found "${ARTIFACTS}/*")
  message(FATAL_ERROR "libFuzzer exited with ${rc}; reproducers: ${found}\n"
                      "Reproduce with: ${FUZZER} <file>   (minimize with -minimize_crash=1 -runs=10000)")
endif()
