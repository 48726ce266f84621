# @aws-sdk/client-sqs (AWS JSON 1.0) against a real spoold; needs `npm ci --prefix tests/sqs/js`.
add_test(NAME sqs_js_sdk COMMAND ${CMAKE_CURRENT_LIST_DIR}/run.sh $<TARGET_FILE:spoold>)
set_tests_properties(sqs_js_sdk PROPERTIES LABELS e2e TIMEOUT 300)
