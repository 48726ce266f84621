# Debian's AWS CLI v2 (Query protocol) against a real spoold; needs the awscli package.
add_test(NAME sqs_awscli_smoke
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/smoke.sh $<TARGET_FILE:spoold>)
set_tests_properties(sqs_awscli_smoke PROPERTIES LABELS e2e TIMEOUT 180)
