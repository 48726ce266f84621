# Fuzzes the SQS request parsers for 60 s with libFuzzer (needs clang-14 and
# libclang-rt-14-dev); run.sh compiles the target itself, outside the CMake build.
add_test(NAME sqs_request_fuzz
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/run.sh 60 ${CMAKE_CURRENT_BINARY_DIR}/sqs_request_fuzz)
set_tests_properties(sqs_request_fuzz PROPERTIES LABELS fuzz TIMEOUT 300)
